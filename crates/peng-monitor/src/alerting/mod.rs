//! Alert rules over sensor results: the records the server persists, the transitions it is
//! told about, and the engine (a pure state machine in [`engine`]) that moves records along.
//!
//! An alert exists once per stage of its service. It is `Pending` from the first evaluation
//! where its condition holds, `Firing` once it has held continuously for its `for` duration,
//! and `Resolved` when it stops holding. Without a result to judge (nothing has run yet, or
//! every instance is gone), an alert keeps its state: a restart or a reload never resolves a
//! firing alert by itself.

pub mod engine;

use peng_core::{ServiceId, StageName};
use peng_spec::Severity;

pub use peng_core::{AlertState, Transition};

/// The state of one alert on one stage: what the server persists and passes back as
/// `initial_alerts` after a restart.
#[derive(Debug, Clone, PartialEq)]
pub struct AlertRecord {
    pub service: ServiceId,
    pub stage: StageName,
    pub alert: String,
    pub state: AlertState,
    /// When the current state began: pending since (also while firing), resolved at, ok since.
    pub since_ns: i64,
    /// Firing since; kept after resolving so that the resolved notice can name it.
    pub started_at_ns: Option<i64>,
    /// The latest value the rule looked at, when there was one.
    pub value: Option<f64>,
    pub severity: Severity,
    /// The escalation plan was notified for the current firing.
    pub escalated: bool,
    /// The message of the sensor result the rule last looked at.
    pub last_message: String,
}

impl AlertRecord {
    /// A new alert that has not seen its condition hold.
    pub fn new(
        service: ServiceId,
        stage: StageName,
        alert: String,
        severity: Severity,
        now_ns: i64,
    ) -> Self {
        Self {
            service,
            stage,
            alert,
            state: AlertState::Ok,
            since_ns: now_ns,
            started_at_ns: None,
            value: None,
            severity,
            escalated: false,
            last_message: String::new(),
        }
    }
}

/// One transition with the record as it is after it, sent to the server in order.
#[derive(Debug, Clone, PartialEq)]
pub struct AlertEvent {
    pub record: AlertRecord,
    pub transition: Transition,
}
