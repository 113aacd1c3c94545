//! `/api/v1/services/{team}/{service}/db/...`: what a team does with its database besides the
//! file. Another team's database answers 404 like one that does not exist.

use axum::extract::State;
use peng_api as wire;
use serde::Deserialize;

use super::error::ApiResult;
use super::extract::{Json, Path, Query};
use super::services::{service_id, stage};
use super::Auth;
use crate::ops::Ops;

#[derive(Deserialize)]
pub struct StageQuery {
    stage: String,
}

pub async fn credentials(
    State(ops): State<Ops>,
    Auth(caller): Auth,
    Path((team, service)): Path<(String, String)>,
    Query(q): Query<StageQuery>,
) -> ApiResult<Json<wire::DbCredentials>> {
    let id = service_id(&team, &service)?;
    let stage = stage(&q.stage)?;
    let creds = ops.db_credentials(&caller, &id, &stage).await?;
    Ok(Json(super::wire::credentials(&id, &stage, creds)))
}

pub async fn backup(
    State(ops): State<Ops>,
    Auth(caller): Auth,
    Path((team, service)): Path<(String, String)>,
    Json(req): Json<wire::DbRequest>,
) -> ApiResult<Json<wire::DbActionResponse>> {
    let id = service_id(&team, &service)?;
    let stage = stage(&req.stage)?;
    let b = ops.db_backup(&caller, &id, &stage).await?;
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
        backup: Some(super::wire::backup(&b)),
    }))
}

pub async fn backups(
    State(ops): State<Ops>,
    Auth(caller): Auth,
    Path((team, service)): Path<(String, String)>,
    Query(q): Query<StageQuery>,
) -> ApiResult<Json<Vec<wire::Backup>>> {
    let id = service_id(&team, &service)?;
    let rows = ops.db_backups(&caller, &id, &stage(&q.stage)?).await?;
    Ok(Json(rows.iter().map(super::wire::backup).collect()))
}

pub async fn restore(
    State(ops): State<Ops>,
    Auth(caller): Auth,
    Path((team, service)): Path<(String, String)>,
    Json(req): Json<wire::DbRequest>,
) -> ApiResult<Json<wire::DbActionResponse>> {
    let id = service_id(&team, &service)?;
    let events = ops
        .db_restore(
            &caller,
            &id,
            &stage(&req.stage)?,
            req.backup_id,
            req.into.as_deref().unwrap_or("service"),
        )
        .await?;
    Ok(Json(wire::DbActionResponse {
        events,
        backup: None,
    }))
}

/// A new password without downtime.
pub async fn rotate(
    State(ops): State<Ops>,
    Auth(caller): Auth,
    Path((team, service)): Path<(String, String)>,
    Json(req): Json<wire::DbRequest>,
) -> ApiResult<Json<wire::DbActionResponse>> {
    let id = service_id(&team, &service)?;
    let events = ops.db_rotate(&caller, &id, &stage(&req.stage)?).await?;
    Ok(Json(wire::DbActionResponse {
        events,
        backup: None,
    }))
}

pub async fn promote(
    State(ops): State<Ops>,
    Auth(caller): Auth,
    Path((team, service)): Path<(String, String)>,
    Json(req): Json<wire::DbRequest>,
) -> ApiResult<Json<wire::DbActionResponse>> {
    let id = service_id(&team, &service)?;
    let events = ops.db_promote(&caller, &id, &stage(&req.stage)?).await?;
    Ok(Json(wire::DbActionResponse {
        events,
        backup: None,
    }))
}
