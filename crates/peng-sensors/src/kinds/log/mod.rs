//! `log`: how many of the team's log messages match a search query over a window, as Graylog's
//! event definitions count; it observes the count (`value`) and how long counting took.
//!
//! ```yaml
//! log: { query: "level:<=3 AND service:checkout", window: 5m }
//! ```
//!
//! The count is always of the sensor's own team: the server's [`LogCounter`] adds the team
//! filter, whatever the query says. The query is the search language of `docs/logs.md`. Its
//! syntax belongs to `peng-logs`, which this crate does not depend on (that would bring the
//! index into everything that reads a service file), so here only its length is checked; the
//! server checks the query itself when a file is planned or applied.

#[cfg(feature = "probe")]
mod probe;

use std::fmt;

use peng_core::Duration;
use peng_yaml::tree::Entry;
use peng_yaml::{duration, non_empty_string, Cx};
use serde_json::{json, Value};

use crate::kind::settings;
use crate::{Context, Kind, Subject};

#[cfg(feature = "probe")]
pub use probe::{LogCounter, NO_COUNTER};

/// The longest query, in bytes. A search takes up to 4 KiB; a query run every minute for as long
/// as the file is applied is held to less.
pub const MAX_LOG_QUERY_BYTES: usize = 1024;
/// The shortest window counted over (messages say `1m`).
pub const MIN_WINDOW: Duration = Duration::from_secs(60);
/// The longest window counted over (messages say `24h`).
pub const MAX_WINDOW: Duration = Duration::from_secs(24 * 3600);

/// `log: { query: "level:<=3", window: 5m }`: the team's messages matching `query` whose
/// timestamp is within the last `window`.
#[derive(Debug, Clone, PartialEq)]
pub struct Log {
    /// The search, trimmed; never empty (`*` counts every message).
    pub query: String,
    pub window: Duration,
}

impl Kind for Log {
    const KEY: &'static str = "log";
    const KEYS: &'static [&'static str] = &["query", "window"];
    const A_SENSOR: &'static str = "a log sensor";
    const CHECKS: &'static str = "a log sensor checks value and latency";
    const OBSERVES: &'static [Subject] = &[Subject::Value, Subject::Latency];

    fn parse(cx: &mut Cx, entry: &Entry, sensor: &str, _: &Context) -> Option<Log> {
        let f = settings(cx, entry, sensor, Self::KEYS)?;
        let query = f.require(cx, "query").and_then(|node| {
            let label = f.label("query");
            let s = non_empty_string(
                cx,
                node,
                &label,
                "a log search like \"level:<=3 AND service:checkout\"",
            )?;
            let query = s.value.trim();
            if query.len() > MAX_LOG_QUERY_BYTES {
                cx.err(
                    s.pos,
                    format!(
                        "{label}: the query is {} bytes; at most {MAX_LOG_QUERY_BYTES} are allowed",
                        query.len()
                    ),
                );
                return None;
            }
            Some(query.to_string())
        });
        let window = f.require(cx, "window").and_then(|node| {
            let label = f.label("window");
            let window = duration(cx, node, &label)?;
            if window < MIN_WINDOW || window > MAX_WINDOW {
                cx.err(
                    node.pos(),
                    format!(
                        "{label}: {window} is out of range; count over at least 1m and at most 24h"
                    ),
                );
                return None;
            }
            Some(window)
        });
        Some(Log {
            query: query?,
            window: window?,
        })
    }

    fn schema() -> Value {
        json!({
            "description": "Counts the team's log messages that match a search over a window; the value is the count. Only the team's own messages are counted, whatever the query says.",
            "type": "object",
            "additionalProperties": false,
            "required": ["query", "window"],
            "properties": {
                "query": {
                    "description": "A log search as 'peng logs search' takes it, like 'level:<=3 AND service:checkout'; '*' counts every message.",
                    "type": "string",
                    "minLength": 1,
                    "maxLength": MAX_LOG_QUERY_BYTES
                },
                "window": {
                    "description": "How far back to count, from 1m to 24h.",
                    "$ref": "#/$defs/duration"
                }
            }
        })
    }

    fn needs_instance(&self) -> bool {
        false
    }

    #[cfg(feature = "probe")]
    fn probe(
        &self,
        clients: &crate::Clients,
        run: &crate::Run<'_>,
    ) -> impl std::future::Future<Output = Result<crate::Observation, crate::Failed>> + Send {
        probe::probe(self, clients.logs.as_deref(), run)
    }
}

impl fmt::Display for Log {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "log {:?} over {}", self.query, self.window)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kind::read;
    use crate::SensorKind;

    fn log(text: &str) -> Result<SensorKind, Vec<String>> {
        read(text, Context::default())
    }

    #[test]
    fn a_query_counted_over_a_window() {
        let kind = log("log: { query: ' level:<=3 AND service:checkout ', window: 5m }").unwrap();
        assert_eq!(
            kind,
            SensorKind::Log(Log {
                query: "level:<=3 AND service:checkout".into(),
                window: Duration::from_secs(300),
            })
        );
        assert_eq!(
            kind.to_string(),
            "log \"level:<=3 AND service:checkout\" over 5m"
        );
        assert!(!kind.needs_instance());
        assert_eq!(kind.key(), "log");
        assert_eq!(kind.misfit(Subject::Value), None);
        assert_eq!(kind.misfit(Subject::Latency), None);
        assert_eq!(
            kind.misfit(Subject::Status).unwrap(),
            "needs an http sensor; a log sensor checks value and latency"
        );
        // The bounds themselves are allowed; a database section is not needed.
        for window in ["1m", "24h", "1h30m"] {
            assert!(log(&format!("log: {{ query: '*', window: {window} }}")).is_ok());
        }
    }

    #[test]
    fn the_window_is_from_one_minute_to_a_day() {
        assert_eq!(
            log("log: { query: x, window: 59s }").unwrap_err(),
            ["peng.yaml:1:26: 'window' in 'log' of sensor 'x': 59s is out of range; count over at least 1m and at most 24h"]
        );
        assert_eq!(
            log("log: { query: x, window: 25h }").unwrap_err(),
            ["peng.yaml:1:26: 'window' in 'log' of sensor 'x': 1d1h is out of range; count over at least 1m and at most 24h"]
        );
        assert_eq!(
            log("log: { query: x, window: soon }").unwrap_err(),
            ["peng.yaml:1:26: 'window' in 'log' of sensor 'x': 'soon' is not a duration; write it like 500ms, 30s, 2m, 1h30m or 14d"]
        );
    }

    #[test]
    fn problems_name_the_sensor_and_where() {
        assert_eq!(
            log("log: { window: 5m }").unwrap_err(),
            ["peng.yaml:1:1: missing key 'query' in 'log' of sensor 'x'"]
        );
        assert_eq!(
            log("log: { query: 'level:3' }").unwrap_err(),
            ["peng.yaml:1:1: missing key 'window' in 'log' of sensor 'x'"]
        );
        assert_eq!(
            log("log: { query: '  ', window: 5m }").unwrap_err(),
            ["peng.yaml:1:15: 'query' in 'log' of sensor 'x': expected a log search like \"level:<=3 AND service:checkout\", found an empty string"]
        );
        assert_eq!(
            log("log: { query: [a], window: 5m }").unwrap_err(),
            ["peng.yaml:1:15: 'query' in 'log' of sensor 'x': expected a log search like \"level:<=3 AND service:checkout\", found a list"]
        );
        assert_eq!(
            log("log: \"level:3\"").unwrap_err(),
            ["peng.yaml:1:6: 'log' of sensor 'x': expected a mapping, found 'level:3'"]
        );
        assert_eq!(
            log("log: { query: x, window: 5m, since: 1h }").unwrap_err(),
            ["peng.yaml:1:30: unknown key 'since' in 'log' of sensor 'x'; expected one of query, window"]
        );
        assert_eq!(
            log("log: { query: x, window: 5m, every: 1m }").unwrap_err(),
            ["peng.yaml:1:30: 'every' belongs to sensor 'x' itself, next to 'name', not inside 'log'"]
        );
        // Both problems at once, each where it is.
        assert_eq!(
            log("log:\n  query: ''\n  window: 1s\n").unwrap_err(),
            [
                "peng.yaml:2:10: 'query' in 'log' of sensor 'x': expected a log search like \"level:<=3 AND service:checkout\", found an empty string",
                "peng.yaml:3:11: 'window' in 'log' of sensor 'x': 1s is out of range; count over at least 1m and at most 24h",
            ]
        );
    }

    #[test]
    fn the_query_is_limited_in_length() {
        let longest = "a".repeat(MAX_LOG_QUERY_BYTES);
        assert!(log(&format!("log: {{ query: {longest}, window: 5m }}")).is_ok());
        assert_eq!(
            log(&format!("log: {{ query: {longest}b, window: 5m }}")).unwrap_err(),
            ["peng.yaml:1:15: 'query' in 'log' of sensor 'x': the query is 1025 bytes; at most 1024 are allowed"]
        );
    }

    #[test]
    fn the_schema_piece_says_what_parse_reads() {
        let schema = Log::schema();
        assert_eq!(schema["type"], "object");
        assert_eq!(schema["additionalProperties"], false);
        assert_eq!(schema["required"], json!(["query", "window"]));
        let described: Vec<&str> = schema["properties"]
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(described, ["query", "window"]);
        assert_eq!(Log::KEYS, ["query", "window"]);
        assert_eq!(
            schema["properties"]["query"]["maxLength"],
            MAX_LOG_QUERY_BYTES
        );
        assert_eq!(schema["properties"]["window"]["$ref"], "#/$defs/duration");
    }
}
