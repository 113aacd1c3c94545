//! Sensor kinds: how one run of a sensor probes its target and judges what it saw.
//!
//! Each kind lives in its own file (`http.rs`, `tcp.rs`, `sql.rs`) and is wired in by one line
//! in `Probes::run` and one in `needs_instance`. A kind only observes (status, latency, body,
//! value); the
//! `expect` conditions are judged here, the same way for every kind, so that a message such as
//! `expected status == 200, got 503` reads the same everywhere. A probe never panics on what
//! the network sends and never takes longer than its timeout.

mod http;
mod sql;
mod tcp;

use std::sync::Arc;
use std::time::{Duration, Instant};

use peng_core::{ServiceId, StageName};
use peng_spec::{Condition, HealthProbe, SensorKind, SensorSpec};

pub use sql::{SqlRunner, NO_RUNNER};

/// Name of the automatic per-instance health sensor, as alerts refer to it.
pub const HEALTH_SENSOR: &str = "health";

/// At most this much of a response body is read to judge `body contains` conditions.
pub const MAX_BODY_BYTES: usize = 1 << 20;

/// Where the instances of a service run. The monitor knows no processes: the server implements
/// this over the process driver.
pub trait InstanceDirectory: Send + Sync {
    /// The instances of `service` on `stage`, running or not.
    fn endpoints(&self, service: &ServiceId, stage: &StageName) -> Vec<Endpoint>;
}

/// One instance of a service on a stage and the address it listens on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub instance: u32,
    pub host: String,
    pub port: u16,
    pub running: bool,
}

/// The outcome of one sensor run, as stored and as alerts see it.
#[derive(Debug, Clone, PartialEq)]
pub struct SensorResult {
    pub service: ServiceId,
    pub stage: StageName,
    pub sensor: String,
    /// The instance probed, for the per-instance `health` sensor only.
    pub instance: Option<u32>,
    pub ok: bool,
    pub latency_ms: f64,
    /// The measured value: the latency for http and tcp sensors when a response was obtained,
    /// the query's number for sql sensors, the first of the values of a run recorded with
    /// [`Monitor::record_external`](crate::Monitor::record_external).
    pub value: Option<f64>,
    /// Further named values of a run recorded with `record_external`, stored as fields of
    /// those names; empty for the scheduler's sensors.
    pub values: Vec<(String, f64)>,
    /// What happened, e.g. `expected status == 200, got 503` or `status 200 in 12ms`.
    pub message: String,
    /// When the run started, nanoseconds since the Unix epoch.
    pub at_ns: i64,
}

/// What a probe saw, before the conditions are judged.
#[derive(Debug, Clone, PartialEq)]
pub struct Observation {
    /// The HTTP status, for http probes.
    pub status: Option<u16>,
    pub latency: Duration,
    /// The first [`MAX_BODY_BYTES`] of the body, for http probes that needed it.
    pub body: Option<String>,
    /// The number an sql probe read.
    pub value: Option<f64>,
}

/// The judgement of one run, without the identity of the sensor.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    pub ok: bool,
    pub latency_ms: f64,
    pub value: Option<f64>,
    pub message: String,
}

impl Outcome {
    /// A run that got no observation at all (refused, timed out, no instance to probe).
    pub fn failed(latency: Duration, message: impl Into<String>) -> Self {
        Self {
            ok: false,
            latency_ms: millis(latency),
            value: None,
            message: message.into(),
        }
    }

    /// Judges an observation against the conditions. The value is what the probe read, or
    /// else the latency.
    pub fn judge(conditions: &[Condition], obs: &Observation) -> Self {
        let latency_ms = millis(obs.latency);
        let (ok, message) = match check(conditions, obs) {
            Ok(()) => (true, describe(obs)),
            Err(why) => (false, why),
        };
        Self {
            ok,
            latency_ms,
            value: Some(obs.value.unwrap_or(latency_ms)),
            message,
        }
    }
}

/// Checks every condition; on failure, every failing condition is named, separated by `; `.
/// Without conditions, an http observation passes on a 2xx status and any other on arrival.
pub fn check(conditions: &[Condition], obs: &Observation) -> Result<(), String> {
    if conditions.is_empty() {
        return match obs.status {
            Some(s) if !(200..300).contains(&s) => Err(format!("expected a 2xx status, got {s}")),
            _ => Ok(()),
        };
    }
    let failures: Vec<String> = conditions
        .iter()
        .filter_map(|c| check_one(c, obs).err())
        .collect();
    if failures.is_empty() {
        Ok(())
    } else {
        Err(failures.join("; "))
    }
}

fn check_one(condition: &Condition, obs: &Observation) -> Result<(), String> {
    match condition {
        Condition::Status { op, value } => match obs.status {
            Some(s) if op.holds(f64::from(s), f64::from(*value)) => Ok(()),
            Some(s) => Err(format!("expected status {} {value}, got {s}", op.as_str())),
            None => Err(format!(
                "expected status {} {value}, got no status",
                op.as_str()
            )),
        },
        Condition::Latency { op, value } => {
            let got = millis(obs.latency);
            let want = millis(value.as_std());
            if op.holds(got, want) {
                Ok(())
            } else {
                Err(format!(
                    "expected latency {} {value}, got {}",
                    op.as_str(),
                    fmt_ms(got)
                ))
            }
        }
        Condition::BodyContains { text, negated } => {
            let body = obs.body.as_deref().unwrap_or("");
            match (body.contains(text.as_str()), negated) {
                (true, false) | (false, true) => Ok(()),
                (false, false) => Err(format!("expected body to contain '{text}'")),
                (true, true) => Err(format!("expected body not to contain '{text}'")),
            }
        }
        Condition::Value { op, value } => match obs.value {
            Some(got) if op.holds(got, *value) => Ok(()),
            Some(got) => Err(format!("expected value {} {value}, got {got}", op.as_str())),
            None => Err(format!(
                "expected value {} {value}, got no value",
                op.as_str()
            )),
        },
    }
}

/// Whether any condition needs the response body.
pub fn needs_body(conditions: &[Condition]) -> bool {
    conditions
        .iter()
        .any(|c| matches!(c, Condition::BodyContains { .. }))
}

fn describe(obs: &Observation) -> String {
    let took = fmt_ms(millis(obs.latency));
    match (obs.status, obs.value) {
        (Some(s), _) => format!("status {s} in {took}"),
        (None, Some(v)) => format!("value {v} in {took}"),
        (None, None) => format!("connected in {took}"),
    }
}

fn millis(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn fmt_ms(ms: f64) -> String {
    if ms < 10.0 {
        format!("{ms:.1}ms")
    } else {
        format!("{ms:.0}ms")
    }
}

/// Whether a run of this kind needs a running instance of the stage to probe.
pub(crate) fn needs_instance(kind: &SensorKind) -> bool {
    match kind {
        SensorKind::Http { .. } => http::needs_instance(kind),
        SensorKind::Tcp { .. } => tcp::needs_instance(kind),
        SensorKind::Sql { .. } => false,
    }
}

/// Shared, cheap-to-clone things a probe needs.
#[derive(Clone)]
pub(crate) struct Probes {
    pub client: reqwest::Client,
    pub sql: Option<Arc<dyn SqlRunner>>,
}

impl Probes {
    pub fn new(sql: Option<Arc<dyn SqlRunner>>) -> Result<Self, reqwest::Error> {
        Ok(Self {
            client: http::client()?,
            sql,
        })
    }

    /// Runs one file sensor of `service` on `stage` against `instance` (when the kind needs
    /// one), within its timeout.
    pub async fn run(
        &self,
        service: &ServiceId,
        stage: &StageName,
        sensor: &SensorSpec,
        instance: Option<&Endpoint>,
    ) -> Outcome {
        let started = Instant::now();
        let fut = async {
            match &sensor.kind {
                SensorKind::Http { .. } => http::run(&self.client, sensor, instance).await,
                SensorKind::Tcp { .. } => tcp::run(sensor, instance).await,
                SensorKind::Sql { .. } => {
                    sql::run(self.sql.as_deref(), service, stage, sensor).await
                }
            }
        };
        within(sensor.timeout.as_std(), started, fut).await
    }

    /// Runs the health probe of one instance, within its timeout.
    pub async fn health(&self, probe: &HealthProbe, timeout: Duration, at: &Endpoint) -> Outcome {
        let started = Instant::now();
        if !at.running {
            return Outcome::failed(Duration::ZERO, "instance not running");
        }
        let fut = async {
            match probe {
                HealthProbe::Http { path } => http::health(&self.client, at, path).await,
                HealthProbe::Tcp => tcp::health(at).await,
            }
        };
        within(timeout, started, fut).await
    }
}

async fn within(
    timeout: Duration,
    started: Instant,
    fut: impl std::future::Future<Output = Outcome>,
) -> Outcome {
    match tokio::time::timeout(timeout, fut).await {
        Ok(outcome) => outcome,
        Err(_) => Outcome::failed(
            started.elapsed(),
            format!("timed out after {}", peng_core::Duration::from(timeout)),
        ),
    }
}

/// The error and its causes on one line: reqwest and io errors hide the useful part in sources.
pub(crate) fn error_chain(error: &dyn std::error::Error) -> String {
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

#[cfg(test)]
mod tests {
    use super::*;
    use peng_spec::CmpOp;

    fn obs(status: Option<u16>, ms: u64, body: Option<&str>) -> Observation {
        Observation {
            status,
            latency: Duration::from_millis(ms),
            body: body.map(str::to_string),
            value: None,
        }
    }

    #[test]
    fn status_conditions() {
        let c = [Condition::Status {
            op: CmpOp::Eq,
            value: 200,
        }];
        assert!(check(&c, &obs(Some(200), 5, None)).is_ok());
        assert_eq!(
            check(&c, &obs(Some(503), 5, None)),
            Err("expected status == 200, got 503".to_string())
        );
        assert_eq!(
            check(&c, &obs(None, 5, None)),
            Err("expected status == 200, got no status".to_string())
        );
        let lt = [Condition::Status {
            op: CmpOp::Lt,
            value: 500,
        }];
        assert!(check(&lt, &obs(Some(404), 5, None)).is_ok());
    }

    #[test]
    fn latency_conditions() {
        let c = [Condition::Latency {
            op: CmpOp::Lt,
            value: peng_core::Duration::from_millis(500),
        }];
        assert!(check(&c, &obs(Some(200), 120, None)).is_ok());
        assert_eq!(
            check(&c, &obs(Some(200), 734, None)),
            Err("expected latency < 500ms, got 734ms".to_string())
        );
    }

    #[test]
    fn body_conditions() {
        let contains = [Condition::BodyContains {
            text: "Bestellung".into(),
            negated: false,
        }];
        let not = [Condition::BodyContains {
            text: "Exception".into(),
            negated: true,
        }];
        let page = obs(Some(200), 5, Some("<h1>Ihre Bestellung</h1>"));
        assert!(check(&contains, &page).is_ok());
        assert!(check(&not, &page).is_ok());
        let broken = obs(Some(200), 5, Some("NullPointerException"));
        assert_eq!(
            check(&contains, &broken),
            Err("expected body to contain 'Bestellung'".to_string())
        );
        assert_eq!(
            check(&not, &broken),
            Err("expected body not to contain 'Exception'".to_string())
        );
        assert!(check(&contains, &obs(Some(200), 5, None)).is_err());
        assert!(needs_body(&contains) && !needs_body(&[]));
    }

    #[test]
    fn every_failing_condition_is_named() {
        let c = [
            Condition::Status {
                op: CmpOp::Eq,
                value: 200,
            },
            Condition::BodyContains {
                text: "ok".into(),
                negated: false,
            },
        ];
        assert_eq!(
            check(&c, &obs(Some(500), 5, Some("boom"))),
            Err("expected status == 200, got 500; expected body to contain 'ok'".to_string())
        );
    }

    #[test]
    fn without_conditions_http_needs_2xx() {
        assert!(check(&[], &obs(Some(204), 5, None)).is_ok());
        assert_eq!(
            check(&[], &obs(Some(500), 5, None)),
            Err("expected a 2xx status, got 500".to_string())
        );
        assert!(check(&[], &obs(None, 5, None)).is_ok());
    }

    #[test]
    fn value_conditions_judge_the_number_read() {
        let c = [Condition::Value {
            op: CmpOp::Gt,
            value: 0.0,
        }];
        let read = |v: f64| Observation {
            value: Some(v),
            ..obs(None, 3, None)
        };
        assert!(check(&c, &read(12.0)).is_ok());
        assert_eq!(
            check(&c, &read(0.0)),
            Err("expected value > 0, got 0".to_string())
        );
        assert_eq!(
            check(&c, &obs(None, 3, None)),
            Err("expected value > 0, got no value".to_string())
        );
        let o = Outcome::judge(&[], &read(42.0));
        assert!(o.ok);
        assert_eq!(o.value, Some(42.0));
        assert_eq!(o.message, "value 42 in 3.0ms");
    }

    #[test]
    fn judged_outcome_carries_latency_as_value() {
        let o = Outcome::judge(&[], &obs(Some(200), 12, None));
        assert!(o.ok);
        assert_eq!(o.value, Some(12.0));
        assert_eq!(o.message, "status 200 in 12ms");
        let f = Outcome::failed(Duration::from_millis(3), "instance not running");
        assert!(!f.ok && f.value.is_none());
    }
}
