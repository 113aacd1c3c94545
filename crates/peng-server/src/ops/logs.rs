//! Logs: search and tail within the caller's team (the team filter is a mandatory clause inside
//! `peng-logs`), the refused GELF messages (admins), GELF arriving over HTTP, and the check of
//! the queries of a service file's log sensors.

use std::net::SocketAddr;

use peng_core::{now_ns, TeamName};
use peng_logs::index::{SearchRequest, SearchResponse, TailResponse};
use peng_logs::ingest::Rejection;
use peng_logs::LogSource;
use peng_spec::{SensorKind, ServiceSpec};

use super::{blocking, Caller, Error, Ops, Result};

/// A search as people write it: times as a duration ago (`15m`) or RFC 3339. The API reads
/// it from the query string as it is.
#[derive(Debug, Clone, Default, serde::Deserialize)]
pub struct Search {
    #[serde(default)]
    pub q: String,
    pub since: Option<String>,
    pub until: Option<String>,
    pub service: Option<String>,
    pub stage: Option<String>,
    pub limit: Option<usize>,
    /// Admins may narrow a search to one team; a team always searches its own.
    pub team: Option<String>,
}

/// A tail: what was written after `after` (a cursor of the previous answer), oldest first.
#[derive(Debug, Clone, Default, serde::Deserialize)]
pub struct Tail {
    #[serde(default)]
    pub q: String,
    pub service: Option<String>,
    pub stage: Option<String>,
    /// The cursor of the previous answer; without it, the newest `limit` messages.
    pub after: Option<u64>,
    pub limit: Option<usize>,
}

impl Ops {
    /// Messages matching the query, newest first, within the caller's team.
    pub async fn search_logs(&self, caller: &Caller, s: Search) -> Result<SearchResponse> {
        let now = now_ns();
        let team = match (caller.team_scope(), s.team.as_deref()) {
            (Some(own), _) => Some(own),
            (None, Some(t)) => Some(TeamName::parse(t).map_err(|e| Error::invalid(e.to_string()))?),
            (None, None) => None,
        };
        let req = SearchRequest {
            team,
            query: s.q,
            service: s.service.filter(|s| !s.is_empty()),
            stage: s.stage.filter(|s| !s.is_empty()),
            since_ns: s.since.as_deref().map(|t| parse_time(t, now)).transpose()?,
            until_ns: s.until.as_deref().map(|t| parse_time(t, now)).transpose()?,
            limit: s.limit.unwrap_or(100).min(10_000),
        };
        let store = self.p().logs.clone();
        Ok(blocking("search", move || store.search(&req)).await??)
    }

    /// For following the log: by write order, so late messages with old timestamps are not
    /// missed.
    pub async fn tail_logs(&self, caller: &Caller, t: Tail) -> Result<TailResponse> {
        let req = SearchRequest {
            team: caller.team_scope(),
            query: t.q,
            service: t.service.filter(|s| !s.is_empty()),
            stage: t.stage.filter(|s| !s.is_empty()),
            since_ns: None,
            until_ns: None,
            limit: t.limit.unwrap_or(1000).min(10_000),
        };
        let store = self.p().logs.clone();
        let after = t.after;
        Ok(blocking("tail", move || store.tail(&req, after)).await??)
    }

    /// GELF messages that could not be attributed or decoded (admins: payloads may hold
    /// ingest tokens), newest first.
    pub fn rejected_logs(&self, caller: &Caller) -> Result<Vec<Rejection>> {
        caller.require_admin()?;
        Ok(self.p().ingest_ctx.rejections.list())
    }

    /// Checks an ingest token given outside the body (header or query) before the body is
    /// read, so that an unknown sender cannot make peng buffer its bodies. A bad one is
    /// counted and listed with the refused messages.
    pub fn check_ingest_token(&self, token: &str, peer: SocketAddr) -> Result<()> {
        if self.p().ingest.resolve(token).is_some() {
            return Ok(());
        }
        let e = peng_logs::gelf::GelfError::BadToken;
        self.p()
            .ingest_ctx
            .reject(LogSource::GelfHttp, Some(peer), &e, b"");
        Err(e.into())
    }

    /// A `POST /gelf` body: decoded (gzip/deflate, bulk) and stored durably before this
    /// returns. The work runs in a task of its own, so a sender that hangs up cannot cancel a
    /// message that arrived whole.
    pub async fn ingest_gelf(
        &self,
        body: bytes::Bytes,
        encoding: Option<String>,
        token: Option<String>,
        peer: SocketAddr,
    ) -> Result<()> {
        let ctx = self.p().ingest_ctx.clone();
        let pipeline = self.p().pipeline.clone();
        let task = tokio::spawn(async move {
            let records = blocking("gelf decode", move || {
                ctx.decode_http(&body, encoding.as_deref(), token.as_deref(), Some(peer))
            })
            .await??;
            if !records.is_empty() {
                pipeline.submit_durable(records).await?;
            }
            Ok::<_, Error>(())
        });
        task.await.map_err(|e| Error::task("gelf", e))?
    }
}

/// Parses the query of every log sensor of `spec` as its runs will: one that does not parse
/// refuses the file, with the sensor named and the position in the query. The syntax is
/// `peng-logs`'s, which the service file's reader does not know. A query that parses but asks
/// what the store cannot search (`level:error`) makes the sensor's runs fail with the store's
/// message.
pub(super) fn check_log_sensors(file_name: &str, spec: &ServiceSpec) -> Result<()> {
    let problems: Vec<String> = spec
        .sensors
        .iter()
        .filter_map(|sensor| match &sensor.kind {
            SensorKind::Log(log) => peng_logs::query::parse(&log.query)
                .err()
                .map(|e| format!("sensor '{}': {e}", sensor.name)),
            _ => None,
        })
        .collect();
    match problems.len() {
        0 => Ok(()),
        n => Err(Error::invalid(format!(
            "{file_name}: {n} log sensor {}; nothing was changed",
            if n == 1 {
                "query has an error"
            } else {
                "queries have errors"
            }
        ))
        .with_details(problems)),
    }
}

/// A time given as a duration ago (`15m`, `2h`) or an RFC 3339 time, in ns.
pub fn parse_time(value: &str, now_ns: i64) -> Result<i64> {
    if let Ok(d) = peng_core::Duration::parse(value) {
        return Ok(now_ns.saturating_sub(d.as_nanos_i64()));
    }
    match humantime::parse_rfc3339_weak(value) {
        Ok(t) => {
            let since_epoch = t
                .duration_since(std::time::UNIX_EPOCH)
                .map_err(|_| Error::invalid(format!("'{value}' is before 1970")))?;
            i64::try_from(since_epoch.as_nanos()).map_err(|_| {
                Error::invalid(format!(
                    "'{value}' is after 2262, past the range of timestamps"
                ))
            })
        }
        Err(_) => Err(Error::invalid(format!(
            "'{value}' is neither a duration ago (15m, 2h) nor a time (2026-11-28T10:00:00Z)"
        ))),
    }
}
