use axum::extract::State;
use peng_api as wire;
use peng_core::{now_ns, ServiceId, StageName};
use serde::Deserialize;

use super::extract::{Json, Path, Query};
use crate::app::App;
use crate::auth::Auth;
use crate::error::{ApiError, ApiResult};

pub async fn plan(
    State(app): State<App>,
    auth: Auth,
    Json(req): Json<wire::SpecRequest>,
) -> ApiResult<Json<wire::Plan>> {
    Ok(Json(crate::services::plan(&app, &auth, req).await?))
}

pub async fn apply(
    State(app): State<App>,
    auth: Auth,
    Json(req): Json<wire::SpecRequest>,
) -> ApiResult<Json<wire::ApplyResponse>> {
    Ok(Json(crate::services::apply(&app, &auth, req).await?))
}

pub async fn list(
    State(app): State<App>,
    auth: Auth,
) -> ApiResult<Json<Vec<wire::ServiceSummary>>> {
    Ok(Json(crate::services::summaries(&app, &auth).await?))
}

pub fn service_id(team: &str, service: &str) -> Result<ServiceId, ApiError> {
    ServiceId::parse(&format!("{team}/{service}"))
        .map_err(|_| ApiError::not_found("service not found"))
}

pub async fn status(
    State(app): State<App>,
    auth: Auth,
    Path((team, service)): Path<(String, String)>,
) -> ApiResult<Json<wire::ServiceStatus>> {
    let id = service_id(&team, &service)?;
    Ok(Json(crate::services::status(&app, &auth, &id).await?))
}

#[derive(Deserialize)]
pub struct DestroyQuery {
    #[serde(default)]
    force: bool,
}

pub async fn destroy(
    State(app): State<App>,
    auth: Auth,
    Path((team, service)): Path<(String, String)>,
    Query(q): Query<DestroyQuery>,
) -> ApiResult<Json<wire::ApplyResponse>> {
    let id = service_id(&team, &service)?;
    Ok(Json(
        crate::services::destroy(&app, &auth, &id, q.force).await?,
    ))
}

pub async fn sensors(
    State(app): State<App>,
    auth: Auth,
    Path((team, service)): Path<(String, String)>,
) -> ApiResult<Json<Vec<wire::SensorState>>> {
    let id = service_id(&team, &service)?;
    Ok(Json(
        crate::services::status(&app, &auth, &id).await?.sensors,
    ))
}

#[derive(Deserialize)]
pub struct HistoryQuery {
    stage: String,
    since: Option<String>,
}

pub async fn history(
    State(app): State<App>,
    auth: Auth,
    Path((team, service, sensor)): Path<(String, String, String)>,
    Query(q): Query<HistoryQuery>,
) -> ApiResult<Json<wire::SensorHistory>> {
    let id = service_id(&team, &service)?;
    auth.check_team(&id.team, "service")?;
    let stage = StageName::parse(&q.stage).map_err(|e| ApiError::invalid(e.to_string()))?;
    Ok(Json(
        sensor_history(
            &app,
            &id,
            &sensor,
            &stage,
            q.since.as_deref().unwrap_or("1h"),
        )
        .await?,
    ))
}

pub async fn sensor_history(
    app: &App,
    id: &ServiceId,
    sensor: &str,
    stage: &StageName,
    since: &str,
) -> ApiResult<wire::SensorHistory> {
    let since_ns = super::parse_time(since, now_ns())?;
    let points = app
        .monitor
        .history(id, sensor, stage, since_ns)
        .await?
        .into_iter()
        .map(|(at_ns, ok, latency_ms, value)| wire::SensorPoint {
            at_ns,
            ok,
            latency_ms,
            value,
        })
        .collect();
    Ok(wire::SensorHistory {
        sensor: sensor.to_string(),
        stage: stage.to_string(),
        points,
    })
}
