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
    /// The Unix user its instances run as, `peng-books (uid 70001)`; `None` when instances
    /// are not sandboxed.
    #[serde(default)]
    pub unix_user: Option<String>,
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
    /// Allow destroying a protected database (a final backup is taken first).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub force: bool,
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
    /// `exited with status 1`, `killed by signal 9`, `killed: out of memory (limit 512Mi)`,
    /// `failed to start: ...`.
    pub last_exit: Option<String>,
    /// CPU time used by its processes (since its cgroup was made), while it runs.
    #[serde(default)]
    pub cpu_seconds: Option<f64>,
    /// Memory in use, while it runs.
    #[serde(default)]
    pub memory_bytes: Option<u64>,
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
    /// One per stage with a `database:`.
    #[serde(default)]
    pub databases: Vec<DatabaseStatus>,
    /// Whether the instances run sandboxed as the team's user: `on (...; runs as peng-books
    /// (uid 70001))` or `off (why)`.
    #[serde(default)]
    pub isolation: String,
    /// Whether the kernel holds them to `resources`: `cgroup v1 (...)` or `off (why)`.
    #[serde(default)]
    pub limits: String,
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

/// A service's database on one stage, as `peng status` and the UI show it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct DatabaseStatus {
    pub stage: String,
    /// `dedicated` or `shared`.
    pub mode: String,
    /// The shared server's name; empty for dedicated.
    pub server: String,
    pub version: String,
    pub plan: String,
    pub database: String,
    /// `creating`, `ready`, `rotating`, `promoting`, or `failing: why`.
    pub state: String,
    /// Where the primary takes connections.
    pub host: String,
    pub port: u16,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replica: Option<ReplicaState>,
    pub protected: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_backup: Option<Backup>,
    /// What recent reconciles found different from what peng declared (and repaired), newest
    /// last, at most 20.
    #[serde(default)]
    pub drift: Vec<Drift>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ReplicaState {
    pub host: String,
    pub port: u16,
    pub io_running: bool,
    pub sql_running: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lag_seconds: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Drift {
    pub object: String,
    pub problem: String,
    pub repaired: bool,
    pub at_ns: i64,
}

/// One backup of a database.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Backup {
    pub id: i64,
    pub service: String,
    pub stage: String,
    /// `scheduled`, `manual` or `final`.
    pub kind: String,
    pub started_at_ns: i64,
    pub bytes: i64,
    pub took_ms: i64,
    /// Rows per table as the backup holds them.
    pub tables: BTreeMap<String, u64>,
    /// `None` while not verified; `true` once a restore of it gave the same row counts.
    pub verified: Option<bool>,
    /// How long the verifying restore took.
    pub restore_ms: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// `POST /api/v1/services/{team}/{service}/db/...`: which stage, and options of the action.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
pub struct DbRequest {
    pub stage: String,
    /// restore: the backup to restore (default: the newest verified one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backup_id: Option<i64>,
    /// restore: `service` (into the service's own database) or `scratch` (a new database
    /// next to it, which the service's accounts may read and write).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub into: Option<String>,
}

/// What a database action did.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct DbActionResponse {
    pub events: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backup: Option<Backup>,
}

/// `peng db credentials`: how the service's instances connect. Shown to the owning team only.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct DbCredentials {
    pub service: String,
    pub stage: String,
    pub host: String,
    pub port: u16,
    pub database: String,
    pub user: String,
    pub password: String,
    pub read_only_user: String,
    pub read_only_password: String,
    /// The CA certificate (PEM) the server's TLS certificate is signed by.
    pub ca_pem: String,
    /// Exactly the environment the instances get.
    pub env: BTreeMap<String, String>,
}

/// `GET /api/v1/costs`: what things cost, from the platform file's prices.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct CostReport {
    pub currency: String,
    pub lines: Vec<CostLine>,
    pub total_day: f64,
    pub total_month: f64,
    /// What the platform may hand out and what is reserved now.
    pub capacity: Capacity,
    pub reserved: Capacity,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct CostLine {
    /// The team, or `platform` for unused capacity.
    pub team: String,
    /// `instances`, `databases`, `backups`, `logs` or `unused capacity`.
    pub item: String,
    /// What is counted, e.g. `3 instances: 0.75 cpu reserved, 1.10 used; 0.75 GiB reserved,
    /// 0.31 used` (instances are charged, per service and resource, the larger of the two).
    pub detail: String,
    pub per_day: f64,
    pub per_month: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Capacity {
    pub cpu: f64,
    pub memory_bytes: u64,
    pub disk_bytes: u64,
}
