//! Automated monitoring: the sensors of a service file plus one health sensor per instance,
//! run on schedule, stored as time series, judged by alert rules, and announced to the action
//! plans' webhooks.
//!
//! This crate owns running sensors (`sensors/`: a run within its timeout, judged against its
//! conditions; the kinds themselves, one folder each, are `peng-sensors`'s), the scheduler, the
//! alert engine (`alerting/`) and the notifiers (`notify/`, one file per kind). It knows no
//! processes (instances come through [`InstanceDirectory`]), no HTTP server, no SQL (sql
//! sensors run through the server's [`SqlRunner`], database statistics arrive through
//! [`Monitor::record_external`]) and no logs (log sensors count through the server's
//! [`LogCounter`]): the server persists the [`AlertRecord`]s it is sent as
//! [`AlertEvent`]s and passes them back on restart. It must never block a tokio worker on the tsdb, never let a slow webhook delay
//! alert evaluation, and never resolve or re-announce a firing alert because of a reload or a
//! restart.

pub mod alerting;
mod error;
pub mod notify;
mod scheduler;
pub mod sensors;

pub use alerting::{AlertEvent, AlertRecord, AlertState, Transition};
pub use error::MonitorError;
pub use notify::{Notification, RetryPolicy};
pub use scheduler::{
    point, HistoryPoint, Monitor, MonitorConfig, SensorState, EVALUATE_EVERY, MAX_IN_FLIGHT,
    MEASUREMENT,
};
pub use sensors::{
    Endpoint, InstanceDirectory, LogCounter, SensorResult, SqlRunner, HEALTH_SENSOR, NO_COUNTER,
    NO_RUNNER,
};
