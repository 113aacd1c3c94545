//! The alert state machine, pure: given what the latest sensor results say and the time, it
//! moves a record along and names the transitions. No clock, no I/O, no tasks.

use peng_spec::AlertCondition;

use super::{AlertRecord, AlertState, Transition};
use crate::sensors::SensorResult;

/// What the latest results of a sensor on a stage say about an alert's condition.
#[derive(Debug, Clone, PartialEq)]
pub struct Observed {
    pub holds: bool,
    pub value: Option<f64>,
    pub message: String,
}

/// Judges an alert condition on the latest result of each instance (one result for sensors
/// that are not per instance). `failing` holds when any of them fails; `value OP N` holds when
/// any value satisfies it. `None` when there is nothing to judge.
pub fn observe(condition: &AlertCondition, latest: &[&SensorResult]) -> Option<Observed> {
    match condition {
        AlertCondition::Failing { .. } => {
            let newest = latest.iter().max_by_key(|r| r.at_ns)?;
            let pick = latest.iter().find(|r| !r.ok).unwrap_or(newest);
            Some(Observed {
                holds: !pick.ok,
                value: pick.value,
                message: with_instance(pick),
            })
        }
        AlertCondition::Value { op, threshold, .. } => {
            let with_value: Vec<(&SensorResult, f64)> = latest
                .iter()
                .filter_map(|r| r.value.map(|v| (*r, v)))
                .collect();
            let holding = with_value.iter().find(|(_, v)| op.holds(*v, *threshold));
            let (r, v) = match holding {
                Some(hit) => *hit,
                None => *with_value.iter().max_by_key(|(r, _)| r.at_ns)?,
            };
            Some(Observed {
                holds: holding.is_some(),
                value: Some(v),
                message: with_instance(r),
            })
        }
    }
}

fn with_instance(r: &SensorResult) -> String {
    match r.instance {
        Some(i) => format!("instance {i}: {}", r.message),
        None => r.message.clone(),
    }
}

/// How long the condition must hold before the alert fires.
pub fn for_ns(condition: &AlertCondition) -> i64 {
    match condition {
        AlertCondition::Failing { for_ } | AlertCondition::Value { for_, .. } => {
            for_.as_nanos_i64()
        }
    }
}

/// Moves `record` along. `observed` is `None` when there is nothing to judge: the state is
/// kept, only the escalation clock runs. `escalate_after_ns` is the plan's escalation delay.
pub fn step(
    record: &mut AlertRecord,
    observed: Option<&Observed>,
    for_ns: i64,
    escalate_after_ns: Option<i64>,
    now_ns: i64,
) -> Vec<Transition> {
    let mut out = Vec::new();
    if let Some(o) = observed {
        record.value = o.value;
        record.last_message.clone_from(&o.message);
        match (record.state, o.holds) {
            (AlertState::Ok | AlertState::Resolved, true) => {
                record.state = AlertState::Pending;
                record.since_ns = now_ns;
            }
            (AlertState::Pending, false) => {
                record.state = AlertState::Ok;
                record.since_ns = now_ns;
            }
            (AlertState::Firing, false) => {
                record.state = AlertState::Resolved;
                record.since_ns = now_ns;
                out.push(Transition::Resolved);
            }
            _ => {}
        }
        if record.state == AlertState::Pending && now_ns.saturating_sub(record.since_ns) >= for_ns {
            record.state = AlertState::Firing;
            record.started_at_ns = Some(now_ns);
            record.escalated = false;
            out.push(Transition::Firing);
        }
    }
    if let (AlertState::Firing, false, Some(after), Some(started)) = (
        record.state,
        record.escalated,
        escalate_after_ns,
        record.started_at_ns,
    ) {
        if now_ns.saturating_sub(started) >= after {
            record.escalated = true;
            out.push(Transition::Escalated);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use peng_core::{Duration, ServiceId, StageName};
    use peng_spec::{CmpOp, Severity};

    const S: i64 = 1_000_000_000;

    fn record() -> AlertRecord {
        AlertRecord::new(
            ServiceId::parse("checkout/orders").expect("valid id"),
            StageName::parse("production").expect("valid stage"),
            "down".into(),
            Severity::Critical,
            0,
        )
    }

    fn result(ok: bool, value: Option<f64>, instance: Option<u32>, at_ns: i64) -> SensorResult {
        SensorResult {
            service: ServiceId::parse("checkout/orders").expect("valid id"),
            stage: StageName::parse("production").expect("valid stage"),
            sensor: "health".into(),
            instance,
            ok,
            latency_ms: value.unwrap_or(0.0),
            value,
            values: Vec::new(),
            message: if ok { "fine".into() } else { "broken".into() },
            at_ns,
        }
    }

    fn seen(holds: bool) -> Observed {
        Observed {
            holds,
            value: Some(1.0),
            message: "m".into(),
        }
    }

    #[test]
    fn pending_then_firing_after_for_then_resolved() {
        let mut r = record();
        assert!(step(&mut r, Some(&seen(true)), 2 * S, None, 10 * S).is_empty());
        assert_eq!((r.state, r.since_ns), (AlertState::Pending, 10 * S));
        assert!(step(&mut r, Some(&seen(true)), 2 * S, None, 11 * S).is_empty());
        assert_eq!(
            step(&mut r, Some(&seen(true)), 2 * S, None, 12 * S),
            vec![Transition::Firing]
        );
        assert_eq!(r.started_at_ns, Some(12 * S));
        assert!(step(&mut r, Some(&seen(true)), 2 * S, None, 13 * S).is_empty());
        assert_eq!(
            step(&mut r, Some(&seen(false)), 2 * S, None, 14 * S),
            vec![Transition::Resolved]
        );
        assert_eq!((r.state, r.since_ns), (AlertState::Resolved, 14 * S));
        assert_eq!(r.started_at_ns, Some(12 * S));
    }

    #[test]
    fn a_blip_shorter_than_for_never_fires() {
        let mut r = record();
        step(&mut r, Some(&seen(true)), 5 * S, None, S);
        assert!(step(&mut r, Some(&seen(false)), 5 * S, None, 2 * S).is_empty());
        assert_eq!(r.state, AlertState::Ok);
        assert!(step(&mut r, Some(&seen(true)), 5 * S, None, 3 * S).is_empty());
        assert_eq!(r.since_ns, 3 * S, "pending restarts from the new blip");
    }

    #[test]
    fn zero_for_fires_at_once() {
        let mut r = record();
        assert_eq!(
            step(&mut r, Some(&seen(true)), 0, None, S),
            vec![Transition::Firing]
        );
    }

    #[test]
    fn nothing_to_judge_keeps_a_firing_alert() {
        let mut r = record();
        step(&mut r, Some(&seen(true)), 0, None, S);
        assert!(step(&mut r, None, 0, None, 100 * S).is_empty());
        assert_eq!(r.state, AlertState::Firing);
    }

    #[test]
    fn escalates_once_after_its_delay() {
        let mut r = record();
        step(&mut r, Some(&seen(true)), 0, Some(3 * S), S);
        assert!(step(&mut r, Some(&seen(true)), 0, Some(3 * S), 3 * S).is_empty());
        assert_eq!(
            step(&mut r, None, 0, Some(3 * S), 4 * S),
            vec![Transition::Escalated]
        );
        assert!(r.escalated);
        assert!(step(&mut r, Some(&seen(true)), 0, Some(3 * S), 9 * S).is_empty());
        step(&mut r, Some(&seen(false)), 0, Some(3 * S), 10 * S);
        step(&mut r, Some(&seen(true)), 0, Some(3 * S), 11 * S);
        assert!(!r.escalated, "a new firing can escalate again");
    }

    #[test]
    fn failing_holds_when_any_instance_fails() {
        let cond = AlertCondition::Failing {
            for_: Duration::from_secs(1),
        };
        let a = result(true, Some(3.0), Some(0), 5);
        let b = result(false, None, Some(1), 4);
        let o = observe(&cond, &[&a, &b]).expect("observed");
        assert!(o.holds);
        assert_eq!(o.message, "instance 1: broken");
        let o = observe(&cond, &[&a]).expect("observed");
        assert!(!o.holds);
        assert!(observe(&cond, &[]).is_none());
    }

    #[test]
    fn value_conditions_on_latest_values() {
        let cond = AlertCondition::Value {
            op: CmpOp::Gt,
            threshold: 100.0,
            for_: Duration::default(),
        };
        let slow = result(true, Some(250.0), None, 1);
        let fast = result(true, Some(20.0), None, 2);
        let down = result(false, None, None, 3);
        assert!(observe(&cond, &[&slow]).expect("observed").holds);
        let o = observe(&cond, &[&fast]).expect("observed");
        assert!(!o.holds);
        assert_eq!(o.value, Some(20.0));
        assert!(observe(&cond, &[&down]).is_none());
        assert_eq!(for_ns(&cond), 0);
    }
}
