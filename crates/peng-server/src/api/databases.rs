//! `/api/v1/services/{team}/{service}/db/...`: what a team does with its database besides the
//! file, and `/api/v1/costs`. Every route checks the team first: another team's database answers
//! 404 like a database that does not exist.

use axum::extract::State;
use peng_api as wire;
use peng_core::{ServiceId, StageName, TeamName};
use serde::Deserialize;

use super::extract::{Json, Path, Query};
use super::services::service_id;
use crate::app::App;
use crate::auth::Auth;
use crate::error::{ApiError, ApiResult};

#[derive(Deserialize)]
pub struct StageQuery {
    stage: String,
}

fn stage(s: &str) -> ApiResult<StageName> {
    StageName::parse(s).map_err(|e| ApiError::invalid(e.to_string()))
}

/// The service, checked to belong to the caller's team and to be live.
async fn owned(app: &App, auth: &Auth, team: &str, service: &str) -> ApiResult<ServiceId> {
    let id = service_id(team, service)?;
    auth.check_team(&id.team, "service")?;
    match app.state.service(&id).await? {
        Some(row) if row.destroyed_at.is_none() => Ok(id),
        _ => Err(ApiError::not_found(format!("service {id} not found"))),
    }
}

pub async fn credentials(
    State(app): State<App>,
    auth: Auth,
    Path((team, service)): Path<(String, String)>,
    Query(q): Query<StageQuery>,
) -> ApiResult<Json<wire::DbCredentials>> {
    let id = owned(&app, &auth, &team, &service).await?;
    let creds = app
        .databases
        .credentials(
            &app.state,
            &id,
            &stage(&q.stage)?,
            app.driver.isolation().sandbox().is_some(),
        )
        .await?;
    app.state
        .audit(peng_state::NewAudit {
            actor: auth.0.actor(),
            team: Some(id.team.to_string()),
            action: "database.credentials".to_string(),
            target: format!("{id} {}", q.stage),
            detail: "credentials shown".to_string(),
        })
        .await?;
    Ok(Json(creds))
}

pub async fn backup(
    State(app): State<App>,
    auth: Auth,
    Path((team, service)): Path<(String, String)>,
    Json(req): Json<wire::DbRequest>,
) -> ApiResult<Json<wire::DbActionResponse>> {
    let id = owned(&app, &auth, &team, &service).await?;
    let stage = stage(&req.stage)?;
    let retention = crate::services::database_spec(&app, &id)
        .await?
        .map(|d| d.backup.retention.as_std());
    let b = app
        .databases
        .backup(
            &app.state,
            &id,
            &stage,
            "manual",
            retention,
            &auth.0.actor(),
        )
        .await?;
    Ok(Json(wire::DbActionResponse {
        events: vec![format!(
            "backup {} of {id} on {stage}: {} bytes in {} ms; verified: {}{}",
            b.id,
            b.bytes,
            b.took_ms,
            match b.verified {
                Some(true) => "yes",
                _ => "no",
            },
            b.restore_ms
                .map(|ms| format!(" (restore took {ms} ms)"))
                .unwrap_or_default()
        )],
        backup: Some(b),
    }))
}

pub async fn backups(
    State(app): State<App>,
    auth: Auth,
    Path((team, service)): Path<(String, String)>,
    Query(q): Query<StageQuery>,
) -> ApiResult<Json<Vec<wire::Backup>>> {
    let id = owned(&app, &auth, &team, &service).await?;
    let stage = stage(&q.stage)?;
    let rows = app.state.backups(Some(&id), Some(&stage), false).await?;
    // An empty list must mean "no backups yet", never "no such stage" (a typo of the stage).
    if rows.is_empty() && app.state.database(&id, &stage).await?.is_none() {
        return Err(ApiError::not_found(format!(
            "{id} has no database on stage '{stage}'"
        )));
    }
    Ok(Json(crate::databases::backups_wire(&rows)))
}

pub async fn restore(
    State(app): State<App>,
    auth: Auth,
    Path((team, service)): Path<(String, String)>,
    Json(req): Json<wire::DbRequest>,
) -> ApiResult<Json<wire::DbActionResponse>> {
    let id = owned(&app, &auth, &team, &service).await?;
    let stage = stage(&req.stage)?;
    let events = app
        .databases
        .restore(
            &app.state,
            &id,
            &stage,
            req.backup_id,
            req.into.as_deref().unwrap_or("service"),
            &auth.0.actor(),
        )
        .await?;
    Ok(Json(wire::DbActionResponse {
        events,
        backup: None,
    }))
}

/// A new password without downtime: the account not in use gets it, instances are replaced
/// onto it, then the old account is locked.
pub async fn rotate(
    State(app): State<App>,
    auth: Auth,
    Path((team, service)): Path<(String, String)>,
    Json(req): Json<wire::DbRequest>,
) -> ApiResult<Json<wire::DbActionResponse>> {
    let id = owned(&app, &auth, &team, &service).await?;
    let stage = stage(&req.stage)?;
    let _guard = app.apply_lock.lock().await;
    app.databases.rotate_begin(&app.state, &id, &stage).await?;
    let mut events = crate::services::converge_service(&app, &id).await?;
    events.extend(
        app.databases
            .rotate_finish(&app.state, &id, &stage, &auth.0.actor())
            .await?,
    );
    Ok(Json(wire::DbActionResponse {
        events,
        backup: None,
    }))
}

pub async fn promote(
    State(app): State<App>,
    auth: Auth,
    Path((team, service)): Path<(String, String)>,
    Json(req): Json<wire::DbRequest>,
) -> ApiResult<Json<wire::DbActionResponse>> {
    let id = owned(&app, &auth, &team, &service).await?;
    let stage = stage(&req.stage)?;
    let _guard = app.apply_lock.lock().await;
    let mut events = app
        .databases
        .promote(&app.state, &id, &stage, &auth.0.actor())
        .await?;
    // Instances learn the new address by being replaced with it; the old primary comes back
    // as the replica when it was lost.
    events.extend(crate::services::converge_service(&app, &id).await?);
    Ok(Json(wire::DbActionResponse {
        events,
        backup: None,
    }))
}

#[derive(Deserialize)]
pub struct CostQuery {
    team: Option<String>,
}

pub async fn costs(
    State(app): State<App>,
    auth: Auth,
    Query(q): Query<CostQuery>,
) -> ApiResult<Json<wire::CostReport>> {
    let team = match (&q.team, auth.team_scope()) {
        (Some(t), _) => {
            let t = TeamName::parse(t).map_err(|e| ApiError::invalid(e.to_string()))?;
            auth.check_team(&t, "team")?;
            Some(t)
        }
        (None, scope) => scope,
    };
    Ok(Json(crate::services::costs(&app, team.as_ref()).await?))
}
