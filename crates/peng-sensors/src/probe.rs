//! What every probe takes and gives: the clients probes share ([`Clients`]), one run ([`Run`])
//! and what it saw ([`Observation`]) or why it saw nothing ([`Failed`]).

use std::sync::Arc;
use std::time::Duration;

use peng_core::{ServiceId, StageName};

use crate::log::LogCounter;
use crate::sql::SqlRunner;

/// One instance of a service on a stage and the address it listens on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub instance: u32,
    pub host: String,
    pub port: u16,
    pub running: bool,
}

/// What probes share, made once: the http client, the server's runner of sql queries and its
/// counter of log messages.
#[derive(Clone)]
pub struct Clients {
    pub http: reqwest::Client,
    /// `None` makes every sql run fail with [`NO_RUNNER`](crate::sql::NO_RUNNER).
    pub sql: Option<Arc<dyn SqlRunner>>,
    /// `None` makes every log run fail with [`NO_COUNTER`](crate::log::NO_COUNTER).
    pub logs: Option<Arc<dyn LogCounter>>,
}

impl Clients {
    /// The http client every probe shares (rustls, no proxy from the environment, one redirect
    /// at most), `sql` and `logs`.
    pub fn new(
        sql: Option<Arc<dyn SqlRunner>>,
        logs: Option<Arc<dyn LogCounter>>,
    ) -> Result<Clients, reqwest::Error> {
        Ok(Clients {
            http: crate::http::client()?,
            sql,
            logs,
        })
    }
}

/// One run of a sensor: where, and what the caller will judge.
#[derive(Debug, Clone, Copy)]
pub struct Run<'a> {
    pub service: &'a ServiceId,
    pub stage: &'a StageName,
    /// The instance to probe, for a kind that needs one.
    pub instance: Option<&'a Endpoint>,
    /// The time the run may take; the caller holds it to that, a probe may pass it on.
    pub timeout: Duration,
    /// Whether a condition needs the response body.
    pub want_body: bool,
}

/// What a probe saw, before the conditions are judged.
#[derive(Debug, Clone, PartialEq)]
pub struct Observation {
    /// The HTTP status, for http probes.
    pub status: Option<u16>,
    pub latency: Duration,
    /// The first [`MAX_BODY_BYTES`](crate::http::MAX_BODY_BYTES) of the body, for http probes
    /// that needed it.
    pub body: Option<String>,
    /// The number an sql probe read, or the count a log probe got.
    pub value: Option<f64>,
}

impl Observation {
    /// A run that saw its target answer, and nothing more.
    pub fn answered(latency: Duration) -> Observation {
        Observation {
            status: None,
            latency,
            body: None,
            value: None,
        }
    }
}

/// A run that observed nothing (refused, unreachable, no instance to probe): how long it took
/// and why.
#[derive(Debug, Clone, PartialEq)]
pub struct Failed {
    pub latency: Duration,
    pub message: String,
}

impl Failed {
    pub fn new(latency: Duration, message: impl Into<String>) -> Failed {
        Failed {
            latency,
            message: message.into(),
        }
    }
}

/// The error and its causes on one line: reqwest and io errors hide the useful part in sources.
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut out = error.to_string();
    let mut source = error.source();
    while let Some(e) = source {
        let s = e.to_string();
        if !out.contains(&s) {
            out.push_str(": ");
            out.push_str(&s);
        }
        source = e.source();
    }
    out
}
