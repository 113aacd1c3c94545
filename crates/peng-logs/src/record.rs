//! The one shape a log line has inside peng, whatever path it came by.

use std::collections::BTreeMap;

use peng_core::TeamName;

/// One stored log message. Timestamps are nanoseconds since the Unix epoch.
#[derive(Debug, Clone, PartialEq)]
pub struct LogRecord {
    /// When the message says it happened (the sender's clock, or the arrival time).
    pub timestamp_ns: i64,
    /// When peng received it; retention counts from here.
    pub received_ns: i64,
    pub team: TeamName,
    /// May be empty when a GELF sender did not name its service.
    pub service: String,
    pub stage: String,
    pub instance: String,
    pub source: LogSource,
    pub host: String,
    /// Syslog severity 0 (emergency) to 7 (debug).
    pub level: u8,
    pub message: String,
    pub full_message: Option<String>,
    /// Additional fields, names without the GELF leading `_`.
    pub fields: BTreeMap<String, FieldValue>,
}

impl LogRecord {
    /// About what the record holds in memory: its strings and a fixed overhead per field. The
    /// pipeline's queue is bounded by this.
    pub fn approx_bytes(&self) -> usize {
        let fields: usize = self
            .fields
            .iter()
            .map(|(k, v)| {
                k.len()
                    + 48
                    + match v {
                        FieldValue::Str(s) => s.len(),
                        _ => 8,
                    }
            })
            .sum();
        128 + self.service.len()
            + self.stage.len()
            + self.instance.len()
            + self.host.len()
            + self.message.len()
            + self.full_message.as_ref().map_or(0, String::len)
            + fields
    }
}

/// The path a message took into peng.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LogSource {
    GelfUdp,
    GelfTcp,
    GelfHttp,
    Stdout,
    Stderr,
}

impl LogSource {
    pub const ALL: [LogSource; 5] = [
        LogSource::GelfUdp,
        LogSource::GelfTcp,
        LogSource::GelfHttp,
        LogSource::Stdout,
        LogSource::Stderr,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            LogSource::GelfUdp => "gelf-udp",
            LogSource::GelfTcp => "gelf-tcp",
            LogSource::GelfHttp => "gelf-http",
            LogSource::Stdout => "stdout",
            LogSource::Stderr => "stderr",
        }
    }

    pub fn parse(text: &str) -> Option<LogSource> {
        Self::ALL.into_iter().find(|s| s.as_str() == text)
    }

    /// The component name its counters are reported under.
    pub fn component(self) -> &'static str {
        match self {
            LogSource::GelfUdp => "gelf_udp",
            LogSource::GelfTcp => "gelf_tcp",
            LogSource::GelfHttp => "gelf_http",
            LogSource::Stdout | LogSource::Stderr => "instance_output",
        }
    }
}

impl std::fmt::Display for LogSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The value of an additional field, typed as the sender sent it.
#[derive(Debug, Clone, PartialEq)]
pub enum FieldValue {
    Str(String),
    I64(i64),
    F64(f64),
    Bool(bool),
}

impl std::fmt::Display for FieldValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FieldValue::Str(s) => f.write_str(s),
            FieldValue::I64(v) => write!(f, "{v}"),
            FieldValue::F64(v) => write!(f, "{v}"),
            FieldValue::Bool(v) => write!(f, "{v}"),
        }
    }
}

/// The most bytes of one stdout/stderr line that are kept; the rest is cut off.
pub const MAX_OUTPUT_LINE: usize = 64 * 1024;

/// A record for one line an instance wrote to stdout (level 6, info) or stderr (level 3,
/// error). A trailing newline is removed and an over-long line is cut at
/// [`MAX_OUTPUT_LINE`] bytes, on a character boundary.
pub fn output_line(
    team: TeamName,
    service: &str,
    stage: &str,
    instance: &str,
    stderr: bool,
    line: &str,
    received_ns: i64,
) -> LogRecord {
    let line = line.strip_suffix('\n').unwrap_or(line);
    let line = line.strip_suffix('\r').unwrap_or(line);
    let mut end = line.len().min(MAX_OUTPUT_LINE);
    while !line.is_char_boundary(end) {
        end -= 1;
    }
    let (source, level) = if stderr {
        (LogSource::Stderr, 3)
    } else {
        (LogSource::Stdout, 6)
    };
    LogRecord {
        timestamp_ns: received_ns,
        received_ns,
        team,
        service: service.to_string(),
        stage: stage.to_string(),
        instance: instance.to_string(),
        source,
        host: String::new(),
        level,
        message: line[..end].to_string(),
        full_message: None,
        fields: BTreeMap::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn source_names_round_trip() {
        for s in LogSource::ALL {
            assert_eq!(LogSource::parse(s.as_str()), Some(s));
        }
        assert_eq!(LogSource::parse("nope"), None);
    }

    #[test]
    fn output_lines_are_trimmed_and_cut_on_char_boundaries() {
        let team = TeamName::parse("checkout").unwrap();
        let r = output_line(team.clone(), "web", "production", "1", true, "boom\r\n", 5);
        assert_eq!(r.message, "boom");
        assert_eq!(r.level, 3);
        assert_eq!(r.source, LogSource::Stderr);
        let long = "ä".repeat(MAX_OUTPUT_LINE);
        let r = output_line(team, "web", "production", "1", false, &long, 5);
        assert!(r.message.len() <= MAX_OUTPUT_LINE);
        assert_eq!(r.level, 6);
    }
}
