//! `/api/v1/logs/...` and `POST /gelf`.

use std::net::SocketAddr;

use axum::body::Bytes;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, StatusCode};
use peng_api as wire;
use serde::Deserialize;

use super::error::{ApiError, ApiResult};
use super::extract::{Json, Query};
use super::Auth;
use crate::ops::logs::{Search, Tail};
use crate::ops::Ops;

pub async fn search(
    State(ops): State<Ops>,
    Auth(caller): Auth,
    Query(q): Query<Search>,
) -> ApiResult<Json<wire::LogSearchResponse>> {
    let res = ops.search_logs(&caller, q).await?;
    Ok(Json(wire::LogSearchResponse {
        total: res.total,
        hits: res.hits.into_iter().map(super::wire::hit).collect(),
    }))
}

/// For following the log: by write order, so late messages with old timestamps are not missed.
pub async fn tail(
    State(ops): State<Ops>,
    Auth(caller): Auth,
    Query(q): Query<Tail>,
) -> ApiResult<Json<wire::LogTailResponse>> {
    let res = ops.tail_logs(&caller, q).await?;
    Ok(Json(wire::LogTailResponse {
        hits: res.hits.into_iter().map(super::wire::hit).collect(),
        cursor: res.cursor,
    }))
}

pub async fn rejected(
    State(ops): State<Ops>,
    Auth(caller): Auth,
) -> ApiResult<Json<Vec<wire::Rejection>>> {
    let list = ops.rejected_logs(&caller)?;
    Ok(Json(list.into_iter().map(super::wire::rejection).collect()))
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
/// that close their side without reading the answer; the body is read in a task of its own,
/// so that a sender that vanishes cannot cancel a message that arrived whole.
pub async fn gelf(
    State(ops): State<Ops>,
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
        ops.check_ingest_token(token, peer)?;
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
        ops.ingest_gelf(body, encoding, header_token, peer).await?;
        Ok::<_, ApiError>(())
    });
    task.await
        .map_err(|e| ApiError::internal(format!("gelf task failed: {e}")))??;
    Ok(StatusCode::ACCEPTED)
}
