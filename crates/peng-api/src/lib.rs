//! The wire contract of peng's HTTP API, version 1: request and response bodies shared by the
//! server and the CLI. A type here is a promise to every client: add optional fields freely,
//! never rename or remove one within `v1`. Timestamps are integer nanoseconds since the Unix
//! epoch (`*_ns`). This crate has no logic and no I/O.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Prefix of every versioned API route.
pub const API_PREFIX: &str = "/api/v1";

/// The body of every error response.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ErrorBody {
    /// One of `not_found`, `invalid`, `conflict`, `unauthorized`, `forbidden`, `unavailable`,
    /// `internal`.
    pub code: String,
    /// What went wrong, lowercase, one line.
    pub error: String,
    /// Further lines, e.g. one diagnostic per problem in a service file.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub details: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct CreateTeamRequest {
    pub name: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct CreateTeamResponse {
    pub team: String,
    /// The team's API token. Shown once; peng keeps only its hash.
    pub token: String,
    /// The token the team's log senders put into GELF messages (`_ingest_token`).
    pub ingest_token: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Team {
    pub name: String,
    pub created_at_ns: i64,
    pub services: usize,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct IngestToken {
    pub team: String,
    pub ingest_token: String,
}

/// The body of `POST /api/v1/plan` and `POST /api/v1/apply`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SpecRequest {
    /// The file name used in diagnostics, e.g. `peng.yaml`.
    pub file_name: String,
    /// The service file's text.
    pub spec_yaml: String,
    /// Absolute directory the file lives in; the service's working directory.
    pub base_dir: String,
    /// Only plan/apply this stage.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stage: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Change {
    /// `create`, `update`, `replace` or `destroy`.
    pub action: String,
    pub address: String,
    #[serde(default)]
    pub details: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Plan {
    pub service: String,
    pub changes: Vec<Change>,
    pub add: usize,
    pub change: usize,
    pub destroy: usize,
    /// The plan rendered as text, Terraform style.
    pub text: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ApplyResponse {
    pub plan: Plan,
    /// What was done, in order, one line each.
    pub events: Vec<String>,
    pub generation: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Instance {
    pub stage: String,
    pub index: u32,
    pub pid: Option<u32>,
    pub port: u16,
    /// `starting`, `running`, `backoff`, `crash-loop` or `stopped`.
    pub state: String,
    pub restarts: u32,
    pub since_ns: i64,
    pub last_exit: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Stage {
    pub name: String,
    pub desired_instances: u32,
    pub instances: Vec<Instance>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SensorState {
    pub sensor: String,
    pub stage: String,
    pub instance: Option<u32>,
    /// `None` before the first run.
    pub ok: Option<bool>,
    pub latency_ms: Option<f64>,
    pub value: Option<f64>,
    pub message: String,
    pub at_ns: Option<i64>,
    /// Since when the sensor has been in its current state.
    pub since_ns: Option<i64>,
    pub consecutive_failures: u32,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SensorPoint {
    pub at_ns: i64,
    pub ok: bool,
    pub latency_ms: f64,
    pub value: Option<f64>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SensorHistory {
    pub sensor: String,
    pub stage: String,
    pub points: Vec<SensorPoint>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Alert {
    pub alert: String,
    pub stage: String,
    /// `ok`, `pending`, `firing` or `resolved`.
    pub state: String,
    pub severity: String,
    pub since_ns: Option<i64>,
    pub started_at_ns: Option<i64>,
    pub value: Option<f64>,
    pub escalated: bool,
    pub message: String,
}

/// `GET /api/v1/services/{team}/{service}`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ServiceStatus {
    pub id: String,
    pub team: String,
    pub service: String,
    pub generation: i64,
    pub applied_at_ns: i64,
    pub applied_by: String,
    pub retention: String,
    pub stages: Vec<Stage>,
    pub sensors: Vec<SensorState>,
    pub alerts: Vec<Alert>,
}

/// One line of `GET /api/v1/services`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ServiceSummary {
    pub id: String,
    pub team: String,
    pub service: String,
    pub generation: i64,
    pub applied_at_ns: i64,
    pub instances_desired: u32,
    pub instances_running: u32,
    pub sensors_ok: u32,
    pub sensors_failing: u32,
    pub alerts_firing: u32,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct LogHit {
    pub timestamp_ns: i64,
    pub team: String,
    pub service: String,
    pub stage: String,
    pub instance: String,
    /// `gelf-udp`, `gelf-tcp`, `gelf-http`, `stdout` or `stderr`.
    pub source: String,
    pub host: String,
    pub level: u8,
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub full_message: Option<String>,
    #[serde(default)]
    pub fields: BTreeMap<String, serde_json::Value>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct LogSearchResponse {
    pub total: usize,
    pub hits: Vec<LogHit>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct AuditEntry {
    pub id: i64,
    pub at_ns: i64,
    pub actor: String,
    pub team: Option<String>,
    pub action: String,
    pub target: String,
    pub detail: String,
}

/// A GELF message that could not be attributed or decoded (admins only).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Rejection {
    pub at_ns: i64,
    pub source: String,
    pub peer: String,
    pub reason: String,
    pub excerpt: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Health {
    pub status: String,
    pub version: String,
}

/// `GET /api/v1/logs/tail`: messages written after a cursor, oldest first.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct LogTailResponse {
    pub hits: Vec<LogHit>,
    /// Pass back as `after` to get what was written next; nothing is skipped or repeated.
    pub cursor: u64,
}

/// A team's new API token after a rotation; every earlier token of the team stops working.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct RotatedToken {
    pub team: String,
    pub token: String,
}
