//! The JSON API, version 1 (`/api/v1/...`), the GELF HTTP input (`POST /gelf`), liveness
//! (`/healthz`) and the internal counters (`/metrics`).

mod databases;
mod extract;
pub mod logs;
pub mod services;
mod teams;

use axum::extract::DefaultBodyLimit;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::Router;
use extract::Json;

use crate::app::App;
use crate::auth::Auth;
use crate::error::{ApiError, ApiResult};

/// Largest request body the API accepts (service files are at most 256 KiB).
pub const API_BODY_LIMIT: usize = 1 << 20;
/// Largest `POST /gelf` body, compressed or not; decompressed size is capped by the decoder.
pub const GELF_BODY_LIMIT: usize = 8 << 20;

pub fn router(app: App) -> Router {
    let api = Router::new()
        .route("/teams", post(teams::create).get(teams::list))
        .route("/teams/{team}/ingest-token", get(teams::ingest_token))
        .route(
            "/teams/{team}/ingest-token/rotate",
            post(teams::rotate_ingest_token),
        )
        .route("/teams/{team}/token/rotate", post(teams::rotate_token))
        .route("/plan", post(services::plan))
        .route("/apply", post(services::apply))
        .route("/services", get(services::list))
        .route(
            "/services/{team}/{service}",
            get(services::status).delete(services::destroy),
        )
        .route("/services/{team}/{service}/sensors", get(services::sensors))
        .route(
            "/services/{team}/{service}/sensors/{sensor}/history",
            get(services::history),
        )
        .route(
            "/services/{team}/{service}/db/credentials",
            get(databases::credentials),
        )
        .route(
            "/services/{team}/{service}/db/backup",
            post(databases::backup),
        )
        .route(
            "/services/{team}/{service}/db/backups",
            get(databases::backups),
        )
        .route(
            "/services/{team}/{service}/db/restore",
            post(databases::restore),
        )
        .route(
            "/services/{team}/{service}/db/rotate",
            post(databases::rotate),
        )
        .route(
            "/services/{team}/{service}/db/promote",
            post(databases::promote),
        )
        .route("/costs", get(databases::costs))
        .route("/logs/search", get(logs::search))
        .route("/logs/tail", get(logs::tail))
        .route("/logs/rejected", get(logs::rejected))
        .route("/audit", get(teams::audit))
        .fallback(|| async { ApiError::not_found("no such api route") })
        .method_not_allowed_fallback(|| async {
            let mut e = ApiError::invalid("this route does not take that method");
            e.status = Some(StatusCode::METHOD_NOT_ALLOWED);
            e
        })
        .layer(DefaultBodyLimit::max(API_BODY_LIMIT));
    Router::new()
        .nest("/api/v1", api)
        .route(
            "/gelf",
            post(logs::gelf).layer(DefaultBodyLimit::max(GELF_BODY_LIMIT)),
        )
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .merge(crate::ui::router())
        .with_state(app)
}

async fn healthz() -> Json<peng_api::Health> {
    Json(peng_api::Health {
        status: "ok".to_string(),
        version: env!("CARGO_PKG_VERSION").to_string(),
    })
}

async fn metrics(auth: Auth) -> ApiResult<impl IntoResponse> {
    auth.require_admin()?;
    Ok((
        StatusCode::OK,
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        peng_core::metrics::render_prometheus(),
    ))
}

/// Parses `since`/`until` values: a duration ago (`15m`, `2h`) or an RFC 3339 time.
pub fn parse_time(value: &str, now_ns: i64) -> Result<i64, ApiError> {
    if let Ok(d) = peng_core::Duration::parse(value) {
        return Ok(now_ns.saturating_sub(d.as_nanos_i64()));
    }
    match humantime::parse_rfc3339_weak(value) {
        Ok(t) => {
            let since_epoch = t
                .duration_since(std::time::UNIX_EPOCH)
                .map_err(|_| ApiError::invalid(format!("'{value}' is before 1970")))?;
            i64::try_from(since_epoch.as_nanos()).map_err(|_| {
                ApiError::invalid(format!(
                    "'{value}' is after 2262, past the range of timestamps"
                ))
            })
        }
        Err(_) => Err(ApiError::invalid(format!(
            "'{value}' is neither a duration ago (15m, 2h) nor a time (2026-11-28T10:00:00Z)"
        ))),
    }
}
