//! `/api/v1/plan`, `/apply`, `/services/...` (status, destroy, sensors) and `/costs`.

use axum::extract::State;
use peng_api as wire;
use peng_core::{now_ns, ServiceId, StageName};
use serde::Deserialize;

use super::error::{ApiError, ApiResult};
use super::extract::{Json, Path, Query};
use super::Auth;
use crate::ops::services::FileRequest;
use crate::ops::Ops;

fn file_request(req: wire::SpecRequest) -> FileRequest {
    FileRequest {
        file_name: req.file_name,
        spec_yaml: req.spec_yaml,
        base_dir: req.base_dir,
        stage: req.stage,
        force: req.force,
    }
}

pub async fn plan(
    State(ops): State<Ops>,
    Auth(caller): Auth,
    Json(req): Json<wire::SpecRequest>,
) -> ApiResult<Json<wire::Plan>> {
    let plan = ops.plan(&caller, file_request(req)).await?;
    Ok(Json(super::wire::plan(&plan)))
}

pub async fn apply(
    State(ops): State<Ops>,
    Auth(caller): Auth,
    Json(req): Json<wire::SpecRequest>,
) -> ApiResult<Json<wire::ApplyResponse>> {
    let applied = ops.apply(&caller, file_request(req)).await?;
    Ok(Json(super::wire::applied(&applied)))
}

pub async fn list(
    State(ops): State<Ops>,
    Auth(caller): Auth,
) -> ApiResult<Json<Vec<wire::ServiceSummary>>> {
    let list = ops.summaries(&caller).await?;
    Ok(Json(list.iter().map(super::wire::summary).collect()))
}

/// A service named in a path; a name that cannot be one is simply not found.
pub fn service_id(team: &str, service: &str) -> Result<ServiceId, ApiError> {
    ServiceId::parse(&format!("{team}/{service}"))
        .map_err(|_| ApiError::not_found("service not found"))
}

pub fn stage(s: &str) -> ApiResult<StageName> {
    StageName::parse(s).map_err(|e| ApiError::invalid(e.to_string()))
}

pub async fn status(
    State(ops): State<Ops>,
    Auth(caller): Auth,
    Path((team, service)): Path<(String, String)>,
) -> ApiResult<Json<wire::ServiceStatus>> {
    let id = service_id(&team, &service)?;
    let st = ops.status(&caller, &id).await?;
    Ok(Json(super::wire::status(&st)))
}

#[derive(Deserialize)]
pub struct DestroyQuery {
    #[serde(default)]
    force: bool,
}

pub async fn destroy(
    State(ops): State<Ops>,
    Auth(caller): Auth,
    Path((team, service)): Path<(String, String)>,
    Query(q): Query<DestroyQuery>,
) -> ApiResult<Json<wire::ApplyResponse>> {
    let id = service_id(&team, &service)?;
    let applied = ops.destroy(&caller, &id, q.force).await?;
    Ok(Json(super::wire::applied(&applied)))
}

pub async fn sensors(
    State(ops): State<Ops>,
    Auth(caller): Auth,
    Path((team, service)): Path<(String, String)>,
) -> ApiResult<Json<Vec<wire::SensorState>>> {
    let id = service_id(&team, &service)?;
    let st = ops.status(&caller, &id).await?;
    Ok(Json(st.sensors.iter().map(super::wire::sensor).collect()))
}

#[derive(Deserialize)]
pub struct HistoryQuery {
    stage: String,
    since: Option<String>,
}

pub async fn history(
    State(ops): State<Ops>,
    Auth(caller): Auth,
    Path((team, service, sensor)): Path<(String, String, String)>,
    Query(q): Query<HistoryQuery>,
) -> ApiResult<Json<wire::SensorHistory>> {
    let id = service_id(&team, &service)?;
    let stage = stage(&q.stage)?;
    let since_ns = crate::ops::logs::parse_time(q.since.as_deref().unwrap_or("1h"), now_ns())?;
    let points = ops
        .sensor_history(&caller, &id, &sensor, &stage, since_ns)
        .await?
        .into_iter()
        .map(|p| wire::SensorPoint {
            at_ns: p.at_ns,
            ok: p.ok,
            latency_ms: p.latency_ms,
            value: p.value,
        })
        .collect();
    Ok(Json(wire::SensorHistory {
        sensor,
        stage: stage.to_string(),
        points,
    }))
}

#[derive(Deserialize)]
pub struct CostQuery {
    team: Option<String>,
}

pub async fn costs(
    State(ops): State<Ops>,
    Auth(caller): Auth,
    Query(q): Query<CostQuery>,
) -> ApiResult<Json<wire::CostReport>> {
    let report = ops.costs(&caller, q.team.as_deref()).await?;
    Ok(Json(super::wire::costs(report)))
}
