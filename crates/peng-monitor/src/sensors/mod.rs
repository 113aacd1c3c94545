//! Running sensors: one run of a file sensor or of an instance's health check, bounded by its
//! timeout and judged against its `expect` conditions.
//!
//! The kinds themselves (what a run of `http`, `tcp`, `sql` or `log` does) are
//! `peng-sensors`'s, one folder each; a kind only observes (status, latency, body, value). The
//! conditions are judged here, the same way for every kind, so that a message such as
//! `expected status == 200, got 503` reads the same everywhere. A run never panics on what the
//! network sends and never takes longer than its timeout.

use std::sync::Arc;
use std::time::{Duration, Instant};

use peng_core::{ServiceId, StageName};
use peng_sensors::http::{Http, HttpTarget};
use peng_sensors::tcp::Tcp;
use peng_sensors::{Clients, Run};
use peng_spec::{Condition, HealthProbe, SensorKind, SensorSpec};

pub(crate) use peng_sensors::error_chain;
pub use peng_sensors::http::MAX_BODY_BYTES;
pub use peng_sensors::log::{LogCounter, NO_COUNTER};
pub use peng_sensors::sql::{SqlRunner, NO_RUNNER};
pub use peng_sensors::{Endpoint, Observation};

/// Name of the automatic per-instance health sensor, as alerts refer to it.
pub const HEALTH_SENSOR: &str = "health";

/// Where the instances of a service run. The monitor knows no processes: the server implements
/// this over the process driver.
pub trait InstanceDirectory: Send + Sync {
    /// The instances of `service` on `stage`, running or not.
    fn endpoints(&self, service: &ServiceId, stage: &StageName) -> Vec<Endpoint>;
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
    /// the query's number for sql sensors, the count for log sensors, the first of the values of
    /// a run recorded with [`Monitor::record_external`](crate::Monitor::record_external).
    pub value: Option<f64>,
    /// Further named values of a run recorded with `record_external`, stored as fields of
    /// those names; empty for the scheduler's sensors.
    pub values: Vec<(String, f64)>,
    /// What happened, e.g. `expected status == 200, got 503` or `status 200 in 12ms`.
    pub message: String,
    /// When the run started, nanoseconds since the Unix epoch.
    pub at_ns: i64,
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

/// Shared, cheap-to-clone things a probe needs.
#[derive(Clone)]
pub(crate) struct Probes {
    pub clients: Clients,
}

impl Probes {
    pub fn new(
        sql: Option<Arc<dyn SqlRunner>>,
        logs: Option<Arc<dyn LogCounter>>,
    ) -> Result<Self, reqwest::Error> {
        Ok(Self {
            clients: Clients::new(sql, logs)?,
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
        let run = Run {
            service,
            stage,
            instance,
            timeout: sensor.timeout.as_std(),
            want_body: needs_body(&sensor.expect),
        };
        self.judged(&sensor.kind, &run, &sensor.expect).await
    }

    /// Runs the health probe of one instance, within its timeout: the http or tcp sensor it
    /// is, against the instance itself.
    pub async fn health(
        &self,
        service: &ServiceId,
        stage: &StageName,
        probe: &HealthProbe,
        timeout: Duration,
        at: &Endpoint,
    ) -> Outcome {
        if !at.running {
            return Outcome::failed(Duration::ZERO, "instance not running");
        }
        let kind = match probe {
            HealthProbe::Http { path } => SensorKind::Http(Http {
                target: HttpTarget::Path(path.clone()),
                method: "GET".to_string(),
            }),
            HealthProbe::Tcp => SensorKind::Tcp(Tcp {
                host: None,
                port: None,
            }),
        };
        let run = Run {
            service,
            stage,
            instance: Some(at),
            timeout,
            want_body: false,
        };
        self.judged(&kind, &run, &[]).await
    }

    /// One run of `kind`, within its timeout, judged against `conditions`.
    async fn judged(&self, kind: &SensorKind, run: &Run<'_>, conditions: &[Condition]) -> Outcome {
        let started = Instant::now();
        let fut = async {
            match kind.probe(&self.clients, run).await {
                Ok(observed) => Outcome::judge(conditions, &observed),
                Err(failed) => Outcome::failed(failed.latency, failed.message),
            }
        };
        match tokio::time::timeout(run.timeout, fut).await {
            Ok(outcome) => outcome,
            Err(_) => Outcome::failed(
                started.elapsed(),
                format!("timed out after {}", peng_core::Duration::from(run.timeout)),
            ),
        }
    }
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
