//! The validated service file. Every type here has passed validation: downstream crates take
//! these and never see raw YAML. Equality is structural, which is what `plan` diffs on.

use std::collections::BTreeMap;

use peng_core::{ByteSize, Duration, ServiceId, ServiceName, StageName, TeamName};
pub use peng_core::{DbMode, Severity};
use peng_sensors::SensorKind;

/// The only `apiVersion` this peng understands.
pub const API_VERSION: &str = "peng/v1";

/// One `peng.yaml`, validated.
#[derive(Debug, Clone, PartialEq)]
pub struct ServiceSpec {
    pub service: ServiceName,
    pub team: TeamName,
    /// Stage name → what runs there. At least one stage.
    pub stages: BTreeMap<StageName, StageSpec>,
    pub run: RunSpec,
    pub logging: LoggingSpec,
    /// The service's database, one per stage; `None` when the file has no `database` section.
    pub database: Option<DatabaseSpec>,
    /// Sensors in file order; names unique.
    pub sensors: Vec<SensorSpec>,
    /// Alerts in file order; names unique; `sensor` names a sensor of this file, `health`, or
    /// one of [`INSTANCE_SENSORS`], or (with a database) one of [`DATABASE_SENSORS`].
    pub alerts: Vec<AlertSpec>,
    /// Action plan name → plan; every alert's `plan` and every `escalate.to` names one of these.
    pub action_plans: BTreeMap<String, ActionPlan>,
}

impl ServiceSpec {
    pub fn id(&self) -> ServiceId {
        ServiceId::new(self.team.clone(), self.service.clone())
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct StageSpec {
    /// How many instances run on this stage (0 is allowed: declared but scaled to zero).
    pub instances: u32,
}

#[derive(Debug, Clone, PartialEq)]
pub struct RunSpec {
    /// argv; `${PORT}` and other `${VAR}` of the instance environment are expanded by the driver.
    pub command: Vec<String>,
    pub env: BTreeMap<String, String>,
    /// Working directory inside the service file's directory, relative to it and normalized
    /// without looking at the disk (`./a/../b` is `b`); never absolute, never leaving the
    /// directory with `..`. `None` means the directory of the service file itself (also when
    /// the file says `.`).
    pub workdir: Option<String>,
    /// Directories an instance may write to, relative to the service file's directory and
    /// normalized like `workdir` (`.` is the whole directory); the rest of that directory is
    /// read-only to the instance. Duplicates removed, in file order, at most
    /// [`MAX_WRITABLE`](crate::limits::MAX_WRITABLE). Empty (the default): none of it.
    /// Normalization is lexical: whoever opens these paths must not follow a symbolic link out
    /// of the service's directory.
    pub writable: Vec<String>,
    pub health: HealthCheck,
    pub resources: Resources,
}

/// The automatic per-instance health sensor, named `health` in alerts.
#[derive(Debug, Clone, PartialEq)]
pub struct HealthCheck {
    pub probe: HealthProbe,
    /// Default 10s, at least 1s.
    pub every: Duration,
    /// Default 2s, or half of `every` when that is shorter; always less than `every`.
    pub timeout: Duration,
}

#[derive(Debug, Clone, PartialEq)]
pub enum HealthProbe {
    /// `health: { http: /health }`: GET on the instance's port; healthy on 2xx.
    Http { path: String },
    /// `health: { tcp: true }` (the default when `health` is absent): the port accepts a connection.
    Tcp,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Resources {
    /// CPUs, e.g. 0.5. Default 0.25.
    pub cpu: f64,
    /// Default 256Mi.
    pub memory: ByteSize,
    /// The most processes and threads an instance may have at once, 1 to
    /// [`MAX_PIDS`](crate::limits::MAX_PIDS); `None` means the platform's default
    /// (`isolation.pids` of the platform file).
    pub pids: Option<u32>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct LoggingSpec {
    /// How long log messages of this service are kept. Default 7d, at most 365d.
    pub retention: Duration,
}

/// `database: { engine: mariadb, version: "10.11", plan: small }`: one database per stage of
/// the service. Whether the platform offers the version, the plan and the shared server is
/// checked at plan and apply time against the platform file, not here.
#[derive(Debug, Clone, PartialEq)]
pub struct DatabaseSpec {
    pub engine: DbEngine,
    /// `MAJOR.MINOR` exactly as written (`"10.10"` stays `10.10`).
    pub version: String,
    /// A plan of the platform file. Default `small`.
    pub plan: String,
    /// Default [`DbMode::Dedicated`].
    pub mode: DbMode,
    /// With [`DbMode::Shared`] only: the registered shared server; `None` means the platform's
    /// default shared server.
    pub server: Option<String>,
    /// A replica next to each dedicated server. Default false; never with a shared server.
    pub replica: bool,
    pub backup: BackupSpec,
    /// Deletion protection as written; `None` means on for the stage named `production` and
    /// off elsewhere. See [`DatabaseSpec::protected`].
    pub protect: Option<bool>,
}

impl DatabaseSpec {
    /// Whether destroying the database of `stage` needs `--force` (and a final backup).
    pub fn protected(&self, stage: &StageName) -> bool {
        self.protect
            .unwrap_or_else(|| stage.as_str() == PROTECTED_STAGE)
    }
}

/// The stage whose database is protected when the file does not say.
pub const PROTECTED_STAGE: &str = "production";

/// The sensors peng runs on every service's instances itself; alerts may name them in any
/// file. `instance.oom` fails while a process of the stage was killed for memory (its limit,
/// `run.resources.memory`) within the last 10 minutes; its value is how many were.
pub const INSTANCE_SENSORS: &[&str] = &["instance.oom"];

/// The sensors peng runs on a service's database itself; alerts may name them when the file
/// has a `database` section.
pub const DATABASE_SENSORS: &[&str] = &[
    "db.up",
    "db.connections",
    "db.queries",
    "db.slow_queries",
    "db.replica",
    "db.size",
];

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum DbEngine {
    MariaDb,
}

impl DbEngine {
    pub fn as_str(self) -> &'static str {
        match self {
            DbEngine::MariaDb => "mariadb",
        }
    }
}

/// `backup: { every: 24h, retention: 7d }`.
#[derive(Debug, Clone, PartialEq)]
pub struct BackupSpec {
    /// Default 24h, at least 1m.
    pub every: Duration,
    /// How long a backup is kept. Default 7d, at least `every`, at most 3650d.
    pub retention: Duration,
}

#[derive(Debug, Clone, PartialEq)]
pub struct SensorSpec {
    /// Unique within the file; `health` is reserved for the automatic sensor.
    pub name: String,
    /// What it probes, with the kind's own settings (`peng-sensors`).
    pub kind: SensorKind,
    /// Default 30s, at least 1s.
    pub every: Duration,
    /// Default 5s, or half of `every` when that is shorter; always less than `every`.
    pub timeout: Duration,
    /// All must hold for a run to pass. Empty: http passes on 2xx, tcp on connect.
    pub expect: Vec<Condition>,
}

/// One `expect` entry: `status == 200`, `latency < 500ms`, `body contains 'Bestellung'`,
/// `value > 0`. `status` and `body` need an http sensor, `value` an sql or log sensor.
#[derive(Debug, Clone, PartialEq)]
pub enum Condition {
    Status { op: CmpOp, value: u16 },
    Latency { op: CmpOp, value: Duration },
    BodyContains { text: String, negated: bool },
    Value { op: CmpOp, value: f64 },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CmpOp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

impl CmpOp {
    pub fn holds(self, left: f64, right: f64) -> bool {
        match self {
            CmpOp::Eq => left == right,
            CmpOp::Ne => left != right,
            CmpOp::Lt => left < right,
            CmpOp::Le => left <= right,
            CmpOp::Gt => left > right,
            CmpOp::Ge => left >= right,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            CmpOp::Eq => "==",
            CmpOp::Ne => "!=",
            CmpOp::Lt => "<",
            CmpOp::Le => "<=",
            CmpOp::Gt => ">",
            CmpOp::Ge => ">=",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct AlertSpec {
    pub name: String,
    /// A sensor of the file, `health` for the automatic per-instance health sensor, or one of
    /// one of [`INSTANCE_SENSORS`], or one of [`DATABASE_SENSORS`] when the file has a database.
    pub sensor: String,
    pub when: AlertCondition,
    pub severity: Severity,
    /// Name of an action plan of the file.
    pub plan: String,
}

/// `failing for 2m` or `value < 5 for 10m` (`for D` optional, default 0s).
#[derive(Debug, Clone, PartialEq)]
pub enum AlertCondition {
    Failing {
        for_: Duration,
    },
    Value {
        op: CmpOp,
        threshold: f64,
        for_: Duration,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub struct ActionPlan {
    pub runbook: Option<String>,
    pub notify: Vec<NotifyTarget>,
    pub escalate: Option<Escalation>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum NotifyTarget {
    /// POST of the alert payload as JSON to an http(s) URL.
    Webhook { url: String },
}

#[derive(Debug, Clone, PartialEq)]
pub struct Escalation {
    pub after: Duration,
    /// Another action plan of the same file whose targets are notified on escalation.
    pub to: String,
}
