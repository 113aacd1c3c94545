use std::net::SocketAddr;

use axum::body::Bytes;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, StatusCode};
use peng_api as wire;
use peng_core::now_ns;
use peng_logs::index::SearchRequest;
use peng_logs::{FieldValue, LogRecord};
use serde::Deserialize;

use super::extract::{Json, Query};
use crate::app::App;
use crate::auth::Auth;
use crate::error::{ApiError, ApiResult};

#[derive(Deserialize, Default)]
pub struct SearchQuery {
    #[serde(default)]
    pub q: String,
    pub since: Option<String>,
    pub until: Option<String>,
    pub service: Option<String>,
    pub stage: Option<String>,
    pub limit: Option<usize>,
    /// Admins may narrow a search to one team.
    pub team: Option<String>,
}

pub async fn search(
    State(app): State<App>,
    auth: Auth,
    Query(q): Query<SearchQuery>,
) -> ApiResult<Json<wire::LogSearchResponse>> {
    Ok(Json(run_search(&app, &auth, q).await?))
}

pub async fn run_search(
    app: &App,
    auth: &Auth,
    q: SearchQuery,
) -> ApiResult<wire::LogSearchResponse> {
    let now = now_ns();
    let team = match (auth.team_scope(), q.team.as_deref()) {
        (Some(own), _) => Some(own),
        (None, Some(t)) => {
            Some(peng_core::TeamName::parse(t).map_err(|e| ApiError::invalid(e.to_string()))?)
        }
        (None, None) => None,
    };
    let req = SearchRequest {
        team,
        query: q.q,
        service: q.service.filter(|s| !s.is_empty()),
        stage: q.stage.filter(|s| !s.is_empty()),
        since_ns: q
            .since
            .as_deref()
            .map(|s| super::parse_time(s, now))
            .transpose()?,
        until_ns: q
            .until
            .as_deref()
            .map(|s| super::parse_time(s, now))
            .transpose()?,
        limit: q.limit.unwrap_or(100).min(10_000),
    };
    let store = app.logs.clone();
    let res = tokio::task::spawn_blocking(move || store.search(&req))
        .await
        .map_err(|e| ApiError::internal(format!("search task failed: {e}")))??;
    Ok(wire::LogSearchResponse {
        total: res.total,
        hits: res.hits.into_iter().map(wire_hit).collect(),
    })
}

#[derive(Deserialize, Default)]
pub struct TailQuery {
    #[serde(default)]
    pub q: String,
    pub service: Option<String>,
    pub stage: Option<String>,
    /// The cursor of the previous answer; without it, the newest `limit` messages.
    pub after: Option<u64>,
    pub limit: Option<usize>,
}

/// For following the log: by write order, so late messages with old timestamps are not missed.
pub async fn tail(
    State(app): State<App>,
    auth: Auth,
    Query(q): Query<TailQuery>,
) -> ApiResult<Json<wire::LogTailResponse>> {
    let req = SearchRequest {
        team: auth.team_scope(),
        query: q.q,
        service: q.service.filter(|s| !s.is_empty()),
        stage: q.stage.filter(|s| !s.is_empty()),
        since_ns: None,
        until_ns: None,
        limit: q.limit.unwrap_or(1000).min(10_000),
    };
    let store = app.logs.clone();
    let after = q.after;
    let res = tokio::task::spawn_blocking(move || store.tail(&req, after))
        .await
        .map_err(|e| ApiError::internal(format!("tail task failed: {e}")))??;
    Ok(Json(wire::LogTailResponse {
        hits: res.hits.into_iter().map(wire_hit).collect(),
        cursor: res.cursor,
    }))
}

pub fn wire_hit(r: LogRecord) -> wire::LogHit {
    wire::LogHit {
        timestamp_ns: r.timestamp_ns,
        team: r.team.to_string(),
        service: r.service,
        stage: r.stage,
        instance: r.instance,
        source: r.source.as_str().to_string(),
        host: r.host,
        level: r.level,
        message: r.message,
        full_message: r.full_message,
        fields: r
            .fields
            .into_iter()
            .map(|(k, v)| {
                let v = match v {
                    FieldValue::Str(s) => serde_json::Value::String(s),
                    FieldValue::I64(i) => serde_json::Value::from(i),
                    FieldValue::F64(f) => serde_json::Value::from(f),
                    FieldValue::Bool(b) => serde_json::Value::Bool(b),
                };
                (k, v)
            })
            .collect(),
    }
}

pub async fn rejected(State(app): State<App>, auth: Auth) -> ApiResult<Json<Vec<wire::Rejection>>> {
    auth.require_admin()?;
    Ok(Json(
        app.ingest_ctx
            .rejections
            .list()
            .into_iter()
            .map(|r| wire::Rejection {
                at_ns: r.time_ns,
                source: r.source.as_str().to_string(),
                peer: r.peer.map(|p| p.to_string()).unwrap_or_default(),
                reason: format!("{}: {}", r.reason, r.detail),
                excerpt: String::from_utf8_lossy(&r.payload).into_owned(),
            })
            .collect(),
    ))
}

/// Longest wait for a `POST /gelf` body, so slow senders cannot hold memory.
pub const GELF_BODY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

#[derive(Deserialize)]
pub struct GelfQuery {
    token: Option<String>,
}

/// `POST /gelf`, as Graylog's GELF HTTP input: 202 once the messages are durable.
///
/// The accept loop keeps half-closed connections open (`http.rs`) for senders such as graypy
/// that close their side without reading the answer. The work still runs in its own task, so
/// that a sender that vanishes altogether cannot cancel a message that arrived whole before it
/// is stored. Decompressing and parsing run on the blocking pool, off the async workers.
pub async fn gelf(
    State(app): State<App>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Query(q): Query<GelfQuery>,
    headers: HeaderMap,
    body: axum::body::Body,
) -> ApiResult<StatusCode> {
    let encoding = headers
        .get(axum::http::header::CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let header_token = headers
        .get("x-peng-ingest-token")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
        .or(q.token);
    // A token in the header or query is checked before the body is read, so an unknown
    // sender cannot make peng buffer its bodies.
    if let Some(token) = header_token.as_deref() {
        if app.ingest.resolve(token).is_none() {
            let e = peng_logs::gelf::GelfError::BadToken;
            app.ingest_ctx
                .reject(peng_logs::LogSource::GelfHttp, Some(peer), &e, b"");
            return Err(e.into());
        }
    }
    let too_large =
        || ApiError::too_large(format!("body larger than {} bytes", super::GELF_BODY_LIMIT));
    let declared = headers
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > super::GELF_BODY_LIMIT) {
        return Err(too_large());
    }
    let task = tokio::spawn(async move {
        // Without a Content-Length the limit is met while reading; the only error that
        // `to_bytes` has then is the limit or a broken connection.
        let read = axum::body::to_bytes(body, super::GELF_BODY_LIMIT);
        let read = tokio::time::timeout(GELF_BODY_TIMEOUT, read)
            .await
            .map_err(|_| {
                let mut e = ApiError::invalid(format!(
                    "the body did not arrive within {GELF_BODY_TIMEOUT:?}"
                ));
                e.status = Some(StatusCode::REQUEST_TIMEOUT);
                e
            })?;
        let body: Bytes = read.map_err(|e| {
            if declared.is_none() {
                too_large()
            } else {
                ApiError::invalid(format!("cannot read the request body: {e}"))
            }
        })?;
        let ctx = app.ingest_ctx.clone();
        let records = tokio::task::spawn_blocking(move || {
            ctx.decode_http(
                &body,
                encoding.as_deref(),
                header_token.as_deref(),
                Some(peer),
            )
        })
        .await
        .map_err(|e| ApiError::internal(format!("gelf decode task failed: {e}")))??;
        if !records.is_empty() {
            app.pipeline.submit_durable(records).await?;
        }
        Ok::<_, ApiError>(())
    });
    task.await
        .map_err(|e| ApiError::internal(format!("gelf task failed: {e}")))??;
    Ok(StatusCode::ACCEPTED)
}
