use axum::extract::State;
use axum::http::StatusCode;
use peng_api as wire;
use peng_core::TeamName;
use peng_state::NewAudit;
use serde::Deserialize;

use super::extract::{Json, Path, Query};
use crate::app::App;
use crate::auth::Auth;
use crate::error::{ApiError, ApiResult};
use crate::ingest;

pub async fn create(
    State(app): State<App>,
    auth: Auth,
    Json(req): Json<wire::CreateTeamRequest>,
) -> ApiResult<(StatusCode, Json<wire::CreateTeamResponse>)> {
    auth.require_admin()?;
    let name = TeamName::parse(&req.name).map_err(|e| ApiError::invalid(e.to_string()))?;
    let audit = NewAudit {
        actor: auth.0.actor(),
        team: Some(name.to_string()),
        action: "team.create".to_string(),
        target: name.to_string(),
        detail: String::new(),
    };
    let token = app.state.create_team(&name, audit).await?;
    let ingest = ingest::ingest_token(&app.secret, &name, 1);
    app.ingest.set(&ingest, name.clone());
    // The team's Unix user is made with the team, so its checkouts can be given to it.
    let unix_user = crate::isolation::team_user(&app, &name)
        .await?
        .map(|u| u.to_string());
    Ok((
        StatusCode::CREATED,
        Json(wire::CreateTeamResponse {
            team: name.to_string(),
            token,
            ingest_token: ingest,
            unix_user,
        }),
    ))
}

pub async fn list(State(app): State<App>, auth: Auth) -> ApiResult<Json<Vec<wire::Team>>> {
    let services = app.state.services(None).await?;
    let teams = app
        .state
        .teams()
        .await?
        .into_iter()
        .filter(|t| auth.0.may_access(&t.name))
        .map(|t| wire::Team {
            services: services
                .iter()
                .filter(|s| s.id.team == t.name && s.destroyed_at.is_none())
                .count(),
            name: t.name.to_string(),
            created_at_ns: t.created_at,
        })
        .collect();
    Ok(Json(teams))
}

pub async fn ingest_token_of(app: &App, auth: &Auth, team: &str) -> ApiResult<wire::IngestToken> {
    let name = TeamName::parse(team).map_err(|_| ApiError::not_found("team not found"))?;
    auth.check_team(&name, "team")?;
    let row = app
        .state
        .team(&name)
        .await?
        .ok_or_else(|| ApiError::not_found("team not found"))?;
    Ok(wire::IngestToken {
        team: name.to_string(),
        ingest_token: ingest::ingest_token(&app.secret, &name, row.ingest_generation),
    })
}

pub async fn ingest_token(
    State(app): State<App>,
    auth: Auth,
    Path(team): Path<String>,
) -> ApiResult<Json<wire::IngestToken>> {
    Ok(Json(ingest_token_of(&app, &auth, &team).await?))
}

#[derive(Deserialize)]
pub struct AuditQuery {
    limit: Option<i64>,
}

pub async fn audit(
    State(app): State<App>,
    auth: Auth,
    Query(q): Query<AuditQuery>,
) -> ApiResult<Json<Vec<wire::AuditEntry>>> {
    let limit = q.limit.unwrap_or(100).clamp(1, 10_000);
    let entries = app
        .state
        .audit_log(auth.team_scope().as_ref(), limit)
        .await?
        .into_iter()
        .map(|a| wire::AuditEntry {
            id: a.id,
            at_ns: a.at,
            actor: a.entry.actor,
            team: a.entry.team,
            action: a.entry.action,
            target: a.entry.target,
            detail: a.entry.detail,
        })
        .collect();
    Ok(Json(entries))
}

/// `POST /api/v1/teams/{team}/token/rotate`: the team (or an admin) replaces its API tokens.
pub async fn rotate_token(
    State(app): State<App>,
    auth: Auth,
    Path(team): Path<String>,
) -> ApiResult<Json<wire::RotatedToken>> {
    let name = TeamName::parse(&team).map_err(|_| ApiError::not_found("team not found"))?;
    auth.check_team(&name, "team")?;
    let audit = NewAudit {
        actor: auth.0.actor(),
        team: Some(name.to_string()),
        action: "team.token.rotate".to_string(),
        target: name.to_string(),
        detail: "every earlier api token of the team was revoked".to_string(),
    };
    let token = app.state.rotate_team_token(&name, audit).await?;
    Ok(Json(wire::RotatedToken {
        team: name.to_string(),
        token,
    }))
}

/// `POST /api/v1/teams/{team}/ingest-token/rotate`: the old ingest token stops working at once;
/// the team's instances are replaced so that they get the new one.
pub async fn rotate_ingest_token(
    State(app): State<App>,
    auth: Auth,
    Path(team): Path<String>,
) -> ApiResult<Json<wire::IngestToken>> {
    let name = TeamName::parse(&team).map_err(|_| ApiError::not_found("team not found"))?;
    auth.check_team(&name, "team")?;
    let _guard = app.apply_lock.lock().await;
    let row = app
        .state
        .team(&name)
        .await?
        .ok_or_else(|| ApiError::not_found("team not found"))?;
    let audit = NewAudit {
        actor: auth.0.actor(),
        team: Some(name.to_string()),
        action: "team.ingest.rotate".to_string(),
        target: name.to_string(),
        detail: "the earlier ingest token was revoked; instances replaced to get the new one"
            .to_string(),
    };
    let generation = app.state.bump_ingest_generation(&name, audit).await?;
    app.ingest.remove_token(&ingest::ingest_token(
        &app.secret,
        &name,
        row.ingest_generation,
    ));
    let token = ingest::ingest_token(&app.secret, &name, generation);
    app.ingest.set(&token, name.clone());
    crate::services::converge_team(&app, &name).await?;
    Ok(Json(wire::IngestToken {
        team: name.to_string(),
        ingest_token: token,
    }))
}
