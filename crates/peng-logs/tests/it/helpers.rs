//! Shared test helpers.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use peng_core::TeamName;
use peng_logs::{FieldValue, LogRecord, LogSource};

pub fn team(name: &str) -> TeamName {
    TeamName::parse(name).expect("valid team name")
}

/// A record at `ts` seconds (received at the same time) for `team`/`service`.
pub fn record(team_name: &str, service: &str, ts: i64, level: u8, message: &str) -> LogRecord {
    LogRecord {
        timestamp_ns: ts * 1_000_000_000,
        received_ns: ts * 1_000_000_000,
        team: team(team_name),
        service: service.to_string(),
        stage: "production".to_string(),
        instance: "1".to_string(),
        source: LogSource::GelfHttp,
        host: "web-1".to_string(),
        level,
        message: message.to_string(),
        full_message: None,
        fields: BTreeMap::new(),
    }
}

pub fn with_field(mut r: LogRecord, name: &str, value: FieldValue) -> LogRecord {
    r.fields.insert(name.to_string(), value);
    r
}

/// Polls `f` until it returns `Some`, for at most `timeout`.
#[allow(dead_code)]
pub fn poll<T>(timeout: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if start.elapsed() > timeout {
            return None;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}
