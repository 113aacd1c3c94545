//! The JSON API, version 1 (`/api/v1/...`), the GELF HTTP input (`POST /gelf`), liveness
//! (`/healthz`) and the internal counters (`/metrics`).
//!
//! Handlers read the request (extractors whose rejections are JSON errors), ask the
//! application layer, and turn its answer into wire types (`wire.rs`) and its error into a
//! status (`error.rs`). They hold no logic and take no lock. Every route is declared once, in
//! [`routes`], with who may call it and a request the isolation tests send to it: the router is
//! built from that list and nothing else, so a route cannot escape those tests.

mod databases;
pub(crate) mod error;
mod extract;
mod influx;
mod logs;
mod services;
mod teams;
mod wire;

use axum::extract::{DefaultBodyLimit, FromRequestParts};
use axum::http::request::Parts;
use axum::http::{header, Method, StatusCode};
use axum::response::IntoResponse;
use axum::routing::{delete, get, post, MethodRouter};
use axum::Router;
use peng_core::ErrorKind;

use crate::ops::{Caller, Ops};
use error::{ApiError, ApiResult};
use extract::Json;

/// Largest request body the API accepts (service files are at most 256 KiB).
pub const API_BODY_LIMIT: usize = 1 << 20;
/// Largest `POST /gelf` body, compressed or not; decompressed size is capped by the decoder.
pub const GELF_BODY_LIMIT: usize = 8 << 20;

/// Who may call a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// No token: liveness, and GELF (which carries its own ingest token).
    Public,
    /// Any team token (or the admin's); a team sees and changes only its own things.
    Team,
    /// The admin token only.
    Admin,
}

/// What the isolation tests send to a route: its path with `{team}`, `{service}`, `{stage}`
/// and `{sensor}` to fill in, and its body (which may also name `{dir}`, a service directory). A request a team may send for its own things.
#[derive(Debug, Clone, Copy)]
#[cfg_attr(not(test), allow(dead_code))] // read by the isolation matrix
pub struct Probe {
    pub path: &'static str,
    pub body: Option<&'static str>,
}

/// One route of the API.
#[cfg_attr(not(test), allow(dead_code))] // method, access and probe: the isolation matrix's
pub struct Route {
    pub method: Method,
    /// As axum writes it (`/api/v1/services/{team}/{service}`).
    pub path: &'static str,
    pub access: Access,
    pub probe: Probe,
    handler: MethodRouter<Ops>,
}

fn route(
    method: Method,
    path: &'static str,
    access: Access,
    probe: Probe,
    handler: MethodRouter<Ops>,
) -> Route {
    Route {
        method,
        path,
        access,
        probe,
        handler,
    }
}

const fn at(path: &'static str) -> Probe {
    Probe { path, body: None }
}

const fn with(path: &'static str, body: &'static str) -> Probe {
    Probe {
        path,
        body: Some(body),
    }
}

const SPEC_REQUEST: &str = r#"{"file_name":"peng.yaml","base_dir":"{dir}","spec_yaml":"apiVersion: peng/v1\nservice: {service}\nteam: {team}\nstages:\n  {stage}: { instances: 0 }\nrun:\n  command: [\"true\"]\n"}"#;
const DB_REQUEST: &str = r#"{"stage":"{stage}"}"#;

/// Every route of the API, the GELF input, liveness and metrics.
pub fn routes() -> Vec<Route> {
    use Access::{Admin, Public, Team};
    use Method as M;
    vec![
        route(M::GET, "/healthz", Public, at("/healthz"), get(healthz)),
        route(M::GET, "/metrics", Admin, at("/metrics"), get(metrics)),
        route(
            M::POST,
            "/gelf",
            Public,
            with(
                "/gelf",
                r#"{"version":"1.1","host":"h","short_message":"m"}"#,
            ),
            post(logs::gelf).layer(DefaultBodyLimit::max(GELF_BODY_LIMIT)),
        ),
        // InfluxDB's API (`influx.rs`); GET also answers HEAD.
        route(M::GET, "/ping", Public, at("/ping"), get(influx::ping)),
        route(
            M::POST,
            "/write",
            Team,
            with("/write?db={team}", "m v=1"),
            post(influx::write).layer(DefaultBodyLimit::max(peng_influx::body::MAX_BODY)),
        ),
        route(
            M::POST,
            "/api/v2/write",
            Team,
            with("/api/v2/write?bucket={team}", "m v=1"),
            post(influx::write_v2).layer(DefaultBodyLimit::max(peng_influx::body::MAX_BODY)),
        ),
        route(
            M::GET,
            "/query",
            Team,
            at("/query?q=SHOW%20DATABASES"),
            get(influx::query),
        ),
        route(
            M::POST,
            "/query",
            Team,
            with("/query?q=SHOW%20DATABASES", ""),
            post(influx::query).layer(DefaultBodyLimit::max(peng_influx::body::MAX_BODY)),
        ),
        route(
            M::POST,
            "/api/v1/teams",
            Admin,
            with("/api/v1/teams", r#"{"name":"probe-team"}"#),
            post(teams::create),
        ),
        route(
            M::GET,
            "/api/v1/teams",
            Team,
            at("/api/v1/teams"),
            get(teams::list),
        ),
        route(
            M::GET,
            "/api/v1/teams/{team}/ingest-token",
            Team,
            at("/api/v1/teams/{team}/ingest-token"),
            get(teams::ingest_token),
        ),
        route(
            M::POST,
            "/api/v1/teams/{team}/ingest-token/rotate",
            Team,
            at("/api/v1/teams/{team}/ingest-token/rotate"),
            post(teams::rotate_ingest_token),
        ),
        route(
            M::POST,
            "/api/v1/teams/{team}/token/rotate",
            Team,
            at("/api/v1/teams/{team}/token/rotate"),
            post(teams::rotate_token),
        ),
        route(
            M::POST,
            "/api/v1/plan",
            Team,
            with("/api/v1/plan", SPEC_REQUEST),
            post(services::plan),
        ),
        route(
            M::POST,
            "/api/v1/apply",
            Team,
            with("/api/v1/apply", SPEC_REQUEST),
            post(services::apply),
        ),
        route(
            M::GET,
            "/api/v1/services",
            Team,
            at("/api/v1/services"),
            get(services::list),
        ),
        route(
            M::GET,
            "/api/v1/services/{team}/{service}",
            Team,
            at("/api/v1/services/{team}/{service}"),
            get(services::status),
        ),
        route(
            M::DELETE,
            "/api/v1/services/{team}/{service}",
            Team,
            at("/api/v1/services/{team}/{service}"),
            delete(services::destroy),
        ),
        route(
            M::GET,
            "/api/v1/services/{team}/{service}/sensors",
            Team,
            at("/api/v1/services/{team}/{service}/sensors"),
            get(services::sensors),
        ),
        route(
            M::GET,
            "/api/v1/services/{team}/{service}/sensors/{sensor}/history",
            Team,
            at("/api/v1/services/{team}/{service}/sensors/{sensor}/history?stage={stage}"),
            get(services::history),
        ),
        route(
            M::GET,
            "/api/v1/services/{team}/{service}/db/credentials",
            Team,
            at("/api/v1/services/{team}/{service}/db/credentials?stage={stage}"),
            get(databases::credentials),
        ),
        route(
            M::POST,
            "/api/v1/services/{team}/{service}/db/backup",
            Team,
            with("/api/v1/services/{team}/{service}/db/backup", DB_REQUEST),
            post(databases::backup),
        ),
        route(
            M::GET,
            "/api/v1/services/{team}/{service}/db/backups",
            Team,
            at("/api/v1/services/{team}/{service}/db/backups?stage={stage}"),
            get(databases::backups),
        ),
        route(
            M::POST,
            "/api/v1/services/{team}/{service}/db/restore",
            Team,
            with("/api/v1/services/{team}/{service}/db/restore", DB_REQUEST),
            post(databases::restore),
        ),
        route(
            M::POST,
            "/api/v1/services/{team}/{service}/db/rotate",
            Team,
            with("/api/v1/services/{team}/{service}/db/rotate", DB_REQUEST),
            post(databases::rotate),
        ),
        route(
            M::POST,
            "/api/v1/services/{team}/{service}/db/promote",
            Team,
            with("/api/v1/services/{team}/{service}/db/promote", DB_REQUEST),
            post(databases::promote),
        ),
        route(
            M::GET,
            "/api/v1/costs",
            Team,
            at("/api/v1/costs"),
            get(services::costs),
        ),
        route(
            M::GET,
            "/api/v1/logs/search",
            Team,
            at("/api/v1/logs/search?q=&since=1h"),
            get(logs::search),
        ),
        route(
            M::GET,
            "/api/v1/logs/tail",
            Team,
            at("/api/v1/logs/tail"),
            get(logs::tail),
        ),
        route(
            M::GET,
            "/api/v1/logs/rejected",
            Admin,
            at("/api/v1/logs/rejected"),
            get(logs::rejected),
        ),
        route(
            M::GET,
            "/api/v1/audit",
            Team,
            at("/api/v1/audit"),
            get(teams::audit),
        ),
    ]
}

/// The router of `routes` (the API under `/api/v1` answers unknown routes and methods with
/// its JSON errors), merged with `other` (the web UI's pages).
pub fn router(ops: Ops, other: Router<Ops>) -> Router {
    let mut api: Router<Ops> = Router::new();
    let mut rest: Router<Ops> = Router::new();
    let mut paths: Vec<(&'static str, MethodRouter<Ops>)> = Vec::new();
    for r in routes() {
        // several methods on one path are one MethodRouter
        match paths.iter_mut().find(|(p, _)| *p == r.path) {
            Some((_, m)) => *m = std::mem::take(m).merge(r.handler),
            None => paths.push((r.path, r.handler)),
        }
    }
    for (path, handler) in paths {
        match path.strip_prefix("/api/v1") {
            Some(sub) => api = api.route(sub, handler),
            None => rest = rest.route(path, handler),
        }
    }
    let api = api
        .fallback(|| async { ApiError::not_found("no such api route") })
        .method_not_allowed_fallback(|| async {
            let mut e = ApiError::invalid("this route does not take that method");
            e.status = Some(StatusCode::METHOD_NOT_ALLOWED);
            e
        })
        .layer(DefaultBodyLimit::max(API_BODY_LIMIT));
    Router::new()
        .nest("/api/v1", api)
        .merge(rest)
        .merge(other)
        .with_state(ops)
}

/// The caller of an API route: `Authorization: Bearer TOKEN` (or the UI's cookie).
pub struct Auth(pub Caller);

impl FromRequestParts<Ops> for Auth {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, ops: &Ops) -> Result<Self, Self::Rejection> {
        let token = crate::auth::token_from_parts(parts).ok_or_else(|| {
            ApiError::new(
                ErrorKind::Unauthorized,
                "missing token: send 'Authorization: Bearer TOKEN'",
            )
        })?;
        match ops.authenticate(&token).await? {
            Some(caller) => Ok(Auth(caller)),
            None => Err(ApiError::new(ErrorKind::Unauthorized, "unknown token")),
        }
    }
}

async fn healthz() -> Json<peng_api::Health> {
    Json(peng_api::Health {
        status: "ok".to_string(),
        version: env!("CARGO_PKG_VERSION").to_string(),
    })
}

async fn metrics(
    axum::extract::State(ops): axum::extract::State<Ops>,
    Auth(caller): Auth,
) -> ApiResult<impl IntoResponse> {
    Ok((
        StatusCode::OK,
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        ops.metrics(&caller)?,
    ))
}
