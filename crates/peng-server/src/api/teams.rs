//! `/api/v1/teams/...` and `/api/v1/audit`.

use axum::extract::State;
use axum::http::StatusCode;
use peng_api as wire;
use serde::Deserialize;

use super::error::ApiResult;
use super::extract::{Json, Path, Query};
use super::Auth;
use crate::ops::Ops;

pub async fn create(
    State(ops): State<Ops>,
    Auth(caller): Auth,
    Json(req): Json<wire::CreateTeamRequest>,
) -> ApiResult<(StatusCode, Json<wire::CreateTeamResponse>)> {
    let made = ops.create_team(&caller, &req.name).await?;
    Ok((
        StatusCode::CREATED,
        Json(wire::CreateTeamResponse {
            team: made.team.to_string(),
            token: made.token,
            ingest_token: made.ingest_token,
            unix_user: made.unix_user,
        }),
    ))
}

pub async fn list(State(ops): State<Ops>, Auth(caller): Auth) -> ApiResult<Json<Vec<wire::Team>>> {
    let teams = ops.teams(&caller).await?;
    Ok(Json(
        teams
            .into_iter()
            .map(|t| wire::Team {
                name: t.name.to_string(),
                created_at_ns: t.created_at_ns,
                services: t.services,
            })
            .collect(),
    ))
}

pub async fn ingest_token(
    State(ops): State<Ops>,
    Auth(caller): Auth,
    Path(team): Path<String>,
) -> ApiResult<Json<wire::IngestToken>> {
    let (team, token) = ops.ingest_token(&caller, &team).await?;
    Ok(Json(wire::IngestToken {
        team: team.to_string(),
        ingest_token: token,
    }))
}

#[derive(Deserialize)]
pub struct AuditQuery {
    limit: Option<i64>,
}

pub async fn audit(
    State(ops): State<Ops>,
    Auth(caller): Auth,
    Query(q): Query<AuditQuery>,
) -> ApiResult<Json<Vec<wire::AuditEntry>>> {
    let entries = ops.audit(&caller, q.limit.unwrap_or(100)).await?;
    Ok(Json(entries.into_iter().map(super::wire::audit).collect()))
}

/// The team (or an admin) replaces its API tokens.
pub async fn rotate_token(
    State(ops): State<Ops>,
    Auth(caller): Auth,
    Path(team): Path<String>,
) -> ApiResult<Json<wire::RotatedToken>> {
    let (team, token) = ops.rotate_token(&caller, &team).await?;
    Ok(Json(wire::RotatedToken {
        team: team.to_string(),
        token,
    }))
}

/// The old ingest token stops working at once; the team's instances are replaced so that they
/// get the new one.
pub async fn rotate_ingest_token(
    State(ops): State<Ops>,
    Auth(caller): Auth,
    Path(team): Path<String>,
) -> ApiResult<Json<wire::IngestToken>> {
    let (team, token) = ops.rotate_ingest_token(&caller, &team).await?;
    Ok(Json(wire::IngestToken {
        team: team.to_string(),
        ingest_token: token,
    }))
}
