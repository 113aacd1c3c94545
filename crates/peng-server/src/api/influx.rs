//! InfluxDB 1.x's HTTP API over the teams' databases: `/ping`, `/write`, `/query`, and
//! `/api/v2/write` for newer clients. Answers and errors have InfluxDB's shapes
//! (`{"error": "..."}`, `X-Influxdb-Version`), so Telegraf, the `influx` CLI, Grafana and the
//! client libraries take peng for the database they know.
//!
//! Credentials, as InfluxDB reads them: `u`/`p` parameters, Basic auth, `Authorization: Token
//! USER:PASSWORD` or `Token PASSWORD`, and peng's `Bearer TOKEN`. The password is the team's
//! API token; a user name, when given, must be the team's name.

use std::collections::HashMap;

use axum::extract::{FromRequestParts, Query, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use peng_core::ErrorKind;
use peng_influx::body::{self, BodyError, MAX_BODY};
use serde::Deserialize;

use crate::ops::influx::{InfluxQuery, InfluxWrite};
use crate::ops::{Caller, Ops};

/// The InfluxDB API level peng answers as.
pub const INFLUX_VERSION: &str = "1.8.10";

/// A write's body must arrive within this.
const BODY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// An error in InfluxDB's shape: `{"error": ...}` (v1) or `{"code": ..., "message": ...}` (v2).
#[derive(Debug)]
pub struct InfluxError {
    status: StatusCode,
    message: String,
    v2: bool,
}

impl InfluxError {
    fn new(status: StatusCode, message: impl Into<String>) -> Self {
        InfluxError {
            status,
            message: message.into(),
            v2: false,
        }
    }

    fn v2(mut self) -> Self {
        self.v2 = true;
        self
    }
}

impl From<crate::ops::Error> for InfluxError {
    fn from(e: crate::ops::Error) -> Self {
        let status = match e.kind {
            ErrorKind::NotFound => StatusCode::NOT_FOUND,
            // InfluxDB answers a field type conflict with 400.
            ErrorKind::Invalid | ErrorKind::Conflict => StatusCode::BAD_REQUEST,
            ErrorKind::Unauthorized => StatusCode::UNAUTHORIZED,
            ErrorKind::Forbidden => StatusCode::FORBIDDEN,
            ErrorKind::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            ErrorKind::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        };
        InfluxError::new(status, e.message)
    }
}

fn version_headers(h: &mut HeaderMap) {
    h.insert(
        "x-influxdb-version",
        HeaderValue::from_static(INFLUX_VERSION),
    );
    h.insert("x-influxdb-build", HeaderValue::from_static("OSS"));
}

impl IntoResponse for InfluxError {
    fn into_response(self) -> Response {
        if self.status.is_server_error() {
            tracing::error!(error = %self.message, "influx request failed");
        }
        let body = if self.v2 {
            let code = match self.status {
                StatusCode::NOT_FOUND => "not found",
                StatusCode::UNAUTHORIZED => "unauthorized",
                StatusCode::FORBIDDEN => "forbidden",
                StatusCode::PAYLOAD_TOO_LARGE => "request too large",
                s if s.is_server_error() => "internal error",
                _ => "invalid",
            };
            serde_json::json!({"code": code, "message": self.message})
        } else {
            serde_json::json!({"error": self.message})
        };
        let mut res = (self.status, axum::Json(body)).into_response();
        version_headers(res.headers_mut());
        if let Ok(v) = HeaderValue::from_str(&self.message.replace(['\r', '\n'], " ")) {
            res.headers_mut().insert("x-influxdb-error", v);
        }
        res
    }
}

/// The caller of an InfluxDB route.
pub struct InfluxAuth(pub Caller);

/// User and password from wherever the client put them.
fn credentials(parts: &Parts) -> Option<(Option<String>, String)> {
    let query: HashMap<String, String> = parts
        .uri
        .query()
        .and_then(|q| serde_urlencoded::from_str(q).ok())
        .unwrap_or_default();
    if let Some(p) = query.get("p").filter(|p| !p.is_empty()) {
        return Some((query.get("u").cloned(), p.clone()));
    }
    let auth = parts
        .headers
        .get(header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .trim();
    let (scheme, rest) = auth.split_once(' ')?;
    let rest = rest.trim();
    if scheme.eq_ignore_ascii_case("basic") {
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(rest)
            .ok()?;
        let text = String::from_utf8(decoded).ok()?;
        let (u, p) = text.split_once(':')?;
        return Some((Some(u.to_string()), p.to_string()));
    }
    if scheme.eq_ignore_ascii_case("token") {
        return Some(match rest.split_once(':') {
            Some((u, p)) => (Some(u.to_string()), p.to_string()),
            None => (None, rest.to_string()),
        });
    }
    if scheme.eq_ignore_ascii_case("bearer") {
        return Some((None, rest.to_string()));
    }
    None
}

impl FromRequestParts<Ops> for InfluxAuth {
    type Rejection = InfluxError;

    async fn from_request_parts(parts: &mut Parts, ops: &Ops) -> Result<Self, Self::Rejection> {
        let v2 = parts.uri.path().starts_with("/api/v2/");
        let refuse = |m: &str| {
            let e = InfluxError::new(StatusCode::UNAUTHORIZED, m);
            if v2 {
                e.v2()
            } else {
                e
            }
        };
        let (user, password) = credentials(parts)
            .ok_or_else(|| refuse("unable to parse authentication credentials"))?;
        let caller = ops
            .authenticate(&password)
            .await
            .map_err(InfluxError::from)?
            .ok_or_else(|| refuse("authorization failed"))?;
        if let (Some(u), Caller::Team(t)) = (user.as_deref(), &caller) {
            if !u.is_empty() && u != t.as_str() {
                return Err(refuse("authorization failed"));
            }
        }
        Ok(InfluxAuth(caller))
    }
}

#[derive(Debug, Deserialize)]
pub struct PingParams {
    verbose: Option<String>,
}

/// `GET|HEAD /ping`: 204 with the version headers; `?verbose=true` answers 200 with JSON.
pub async fn ping(Query(p): Query<PingParams>) -> Response {
    let mut res = if p.verbose.as_deref() == Some("true") {
        axum::Json(serde_json::json!({"version": INFLUX_VERSION})).into_response()
    } else {
        StatusCode::NO_CONTENT.into_response()
    };
    version_headers(res.headers_mut());
    res
}

async fn read_body(headers: &HeaderMap, body: axum::body::Body) -> Result<String, InfluxError> {
    let too_large = || {
        InfluxError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("request body too large: more than {MAX_BODY} bytes"),
        )
    };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > MAX_BODY) {
        return Err(too_large());
    }
    let bytes = tokio::time::timeout(BODY_TIMEOUT, axum::body::to_bytes(body, MAX_BODY))
        .await
        .map_err(|_| {
            InfluxError::new(
                StatusCode::REQUEST_TIMEOUT,
                format!("the body did not arrive within {BODY_TIMEOUT:?}"),
            )
        })?
        .map_err(|_| too_large())?;
    let encoding = headers
        .get(header::CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok());
    body::decode(&bytes, encoding).map_err(|e| match e {
        BodyError::TooLarge => too_large(),
        other => InfluxError::new(StatusCode::BAD_REQUEST, other.to_string()),
    })
}

#[derive(Debug, Deserialize)]
pub struct WriteParams {
    db: Option<String>,
    rp: Option<String>,
    precision: Option<String>,
}

/// `POST /write?db=&rp=&precision=`: 204 once every point is durable.
pub async fn write(
    State(ops): State<Ops>,
    InfluxAuth(caller): InfluxAuth,
    Query(p): Query<WriteParams>,
    headers: HeaderMap,
    body: axum::body::Body,
) -> Result<Response, InfluxError> {
    let w = Target {
        db: p.db.unwrap_or_default(),
        rp: p.rp,
        precision: p.precision,
    };
    store(&ops, &caller, w, &headers, body).await
}

#[derive(Debug, Deserialize)]
pub struct WriteV2Params {
    bucket: Option<String>,
    precision: Option<String>,
}

/// `POST /api/v2/write?bucket=DB[/RP]&precision=`, as InfluxDB 1.8 offers it to v2 clients.
pub async fn write_v2(
    State(ops): State<Ops>,
    InfluxAuth(caller): InfluxAuth,
    Query(p): Query<WriteV2Params>,
    headers: HeaderMap,
    body: axum::body::Body,
) -> Result<Response, InfluxError> {
    let bucket = p.bucket.unwrap_or_default();
    let (db, rp) = match bucket.split_once('/') {
        Some((db, rp)) => (db.to_string(), Some(rp.to_string())),
        None => (bucket, None),
    };
    let w = Target {
        db,
        rp,
        precision: p.precision,
    };
    store(&ops, &caller, w, &headers, body)
        .await
        .map_err(InfluxError::v2)
}

/// Where a write goes, as its parameters say.
struct Target {
    db: String,
    rp: Option<String>,
    precision: Option<String>,
}

/// Reads a write's body and stores it: 204 once durable.
async fn store(
    ops: &Ops,
    caller: &Caller,
    to: Target,
    headers: &HeaderMap,
    body: axum::body::Body,
) -> Result<Response, InfluxError> {
    // Refused before the body is read.
    if to.db.is_empty() {
        return Err(InfluxError::new(
            StatusCode::BAD_REQUEST,
            "database is required",
        ));
    }
    let body = read_body(headers, body).await?;
    ops.influx_write(
        caller,
        InfluxWrite {
            db: to.db,
            rp: to.rp,
            precision: to.precision,
            body,
        },
    )
    .await?;
    let mut res = StatusCode::NO_CONTENT.into_response();
    version_headers(res.headers_mut());
    Ok(res)
}

#[derive(Debug, Default, Deserialize)]
pub struct QueryParams {
    q: Option<String>,
    db: Option<String>,
    epoch: Option<String>,
    pretty: Option<String>,
}

/// `GET|POST /query`: parameters in the URL, or for POST also as a form in the body.
pub async fn query(
    State(ops): State<Ops>,
    InfluxAuth(caller): InfluxAuth,
    method: Method,
    Query(mut p): Query<QueryParams>,
    headers: HeaderMap,
    body: axum::body::Body,
) -> Result<Response, InfluxError> {
    let is_form = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
    if method == Method::POST && is_form {
        let text = read_body(&headers, body).await?;
        let form: QueryParams = serde_urlencoded::from_str(&text).map_err(|e| {
            InfluxError::new(StatusCode::BAD_REQUEST, format!("bad form body: {e}"))
        })?;
        p.q = form.q.or(p.q);
        p.db = form.db.or(p.db);
        p.epoch = form.epoch.or(p.epoch);
        p.pretty = form.pretty.or(p.pretty);
    }
    let q = p.q.filter(|q| !q.trim().is_empty()).ok_or_else(|| {
        InfluxError::new(StatusCode::BAD_REQUEST, "missing required parameter \"q\"")
    })?;
    let answer = ops
        .influx_query(
            &caller,
            InfluxQuery {
                q,
                db: p.db,
                epoch: p.epoch,
            },
        )
        .await?;
    let json = if p.pretty.as_deref() == Some("true") {
        serde_json::to_vec_pretty(&answer)
    } else {
        serde_json::to_vec(&answer)
    }
    .map_err(|e| InfluxError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    let mut res = (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        json,
    )
        .into_response();
    version_headers(res.headers_mut());
    Ok(res)
}
