//! `sensors`: each sensor's name, kind, schedule and `expect` conditions.

use peng_core::Duration;

use super::shared::{item_label, object_name, schedule, Unique, HEALTH_SENSOR};
use crate::condition::parse_condition;
use crate::limits::{MAX_CONDITIONS, MAX_SENSORS, MAX_SQL_QUERY_BYTES};
use crate::model::{Condition, HttpTarget, SensorKind, SensorSpec};
use peng_yaml::tree::{Entry, Node};
use peng_yaml::{fields, integer, list, non_empty_string, string, url, Cx};

pub(crate) const SENSOR_KEYS: &[&str] =
    &["name", "http", "tcp", "sql", "every", "timeout", "expect"];
pub(crate) const HTTP_KEYS: &[&str] = &["path", "url", "method"];
pub(crate) const TCP_KEYS: &[&str] = &["host", "port"];

/// Methods an http sensor may use.
pub(crate) const HTTP_METHODS: &[&str] =
    &["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"];

const DEFAULT_SENSOR_EVERY: Duration = Duration::from_secs(30);
const DEFAULT_SENSOR_TIMEOUT: Duration = Duration::from_secs(5);

pub(super) fn sensors(cx: &mut Cx, node: &Node, has_database: bool) -> Option<Vec<SensorSpec>> {
    let items = list(cx, node, "sensors", MAX_SENSORS)?;
    let mut names = Unique::new("sensor");
    let mut out = Vec::with_capacity(items.len());
    let mut ok = true;
    for (index, item) in items.iter().enumerate() {
        match sensor(cx, item, index, &mut names, has_database) {
            Some(s) => out.push(s),
            None => ok = false,
        }
    }
    ok.then_some(out)
}

/// The kinds of sensor, as `expect` checks its conditions against them.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Http,
    Tcp,
    Sql,
}

const SENSOR_KINDS: &[&str] = &["http", "tcp", "sql"];

fn sensor(
    cx: &mut Cx,
    item: &Node,
    index: usize,
    names: &mut Unique,
    has_database: bool,
) -> Option<SensorSpec> {
    let what = item_label("sensor", item, index);
    let f = fields(cx, item, item.pos(), &what, SENSOR_KEYS, &[])?;
    let name = f.require(cx, "name").and_then(|node| {
        let name = object_name(cx, node, &f.label("name"), "sensor name")?;
        if name == HEALTH_SENSOR {
            cx.err(
                node.pos(),
                "sensor name 'health' is reserved for the automatic health check of each instance",
            );
            return None;
        }
        names.check(cx, &name, node.pos()).then_some(name)
    });
    let written: Vec<&Entry> = SENSOR_KINDS.iter().filter_map(|k| f.entry(k)).collect();
    let kind = match written.as_slice() {
        [] => {
            cx.err(f.at, format!("{what} needs a kind: 'http', 'tcp' or 'sql'"));
            None
        }
        [entry] => match entry.key.as_str() {
            "http" => http_sensor(cx, entry, &what),
            "tcp" => tcp_sensor(cx, entry, &what),
            _ => sql_sensor(cx, entry, &what, has_database),
        },
        [first, second, ..] => {
            cx.err(
                second.key_pos,
                format!(
                    "{what} has both '{}' and '{}'; choose one",
                    first.key, second.key
                ),
            );
            None
        }
    };
    let schedule = schedule(cx, &f, DEFAULT_SENSOR_EVERY, DEFAULT_SENSOR_TIMEOUT);
    let kind_tag = kind.as_ref().map(|k| match k {
        SensorKind::Http { .. } => Kind::Http,
        SensorKind::Tcp { .. } => Kind::Tcp,
        SensorKind::Sql { .. } => Kind::Sql,
    });
    let expect = match f.entry("expect").filter(|e| !e.value.is_null()) {
        Some(e) => expect(cx, e, &what, kind_tag),
        None => Some(Vec::new()),
    };
    let (every, timeout) = schedule?;
    Some(SensorSpec {
        name: name?,
        kind: kind?,
        every,
        timeout,
        expect: expect?,
    })
}

/// `sql: "SELECT ..."`: one statement, run as the read-only user of the service's database.
fn sql_sensor(cx: &mut Cx, entry: &Entry, sensor: &str, has_database: bool) -> Option<SensorKind> {
    let label = format!("'sql' in {sensor}");
    let s = non_empty_string(
        cx,
        &entry.value,
        &label,
        "an SQL query like \"SELECT COUNT(*) FROM orders\"",
    )?;
    if !has_database {
        cx.err(
            entry.key_pos,
            format!("{sensor} runs an sql query, but this file has no 'database' section"),
        );
        return None;
    }
    let query = s.value.trim();
    let query = query.strip_suffix(';').unwrap_or(query).trim_end();
    if query.len() > MAX_SQL_QUERY_BYTES {
        cx.err(
            s.pos,
            format!(
                "{label}: the query is {} bytes; at most {MAX_SQL_QUERY_BYTES} are allowed",
                query.len()
            ),
        );
        return None;
    }
    if query.is_empty() {
        cx.err(s.pos, format!("{label}: the query is empty"));
        return None;
    }
    if has_statement_separator(query) {
        cx.err(
            s.pos,
            format!("{label}: one statement only; ';' may only end the query"),
        );
        return None;
    }
    Some(SensorKind::Sql {
        query: query.to_string(),
    })
}

/// Whether `query` holds a `;` outside quoted text and comments, i.e. more than one statement.
pub(super) fn has_statement_separator(query: &str) -> bool {
    let mut quote: Option<char> = None;
    let mut chars = query.chars().peekable();
    while let Some(c) = chars.next() {
        match quote {
            Some(q) => {
                if c == '\\' && q != '`' {
                    chars.next();
                } else if c == q {
                    quote = None;
                }
            }
            None => match c {
                '\'' | '"' | '`' => quote = Some(c),
                ';' => return true,
                // `-- ` and `#` comments run to the end of the line, `/* */` to its end.
                '-' if chars.peek() == Some(&'-') => {
                    chars.by_ref().take_while(|c| *c != '\n').for_each(drop);
                }
                '#' => chars.by_ref().take_while(|c| *c != '\n').for_each(drop),
                '/' if chars.peek() == Some(&'*') => {
                    chars.next();
                    let mut last = ' ';
                    for c in chars.by_ref() {
                        if last == '*' && c == '/' {
                            break;
                        }
                        last = c;
                    }
                }
                _ => {}
            },
        }
    }
    false
}

fn misplaced_hint(key: &str, block: &str, sensor: &str) -> String {
    format!("'{key}' belongs to {sensor} itself, next to 'name', not inside '{block}'")
}

fn http_sensor(cx: &mut Cx, entry: &Entry, sensor: &str) -> Option<SensorKind> {
    let what = format!("'http' of {sensor}");
    let (timeout, every) = (
        misplaced_hint("timeout", "http", sensor),
        misplaced_hint("every", "http", sensor),
    );
    let f = fields(
        cx,
        &entry.value,
        entry.key_pos,
        &what,
        HTTP_KEYS,
        &[("timeout", &timeout), ("every", &every)],
    )?;
    let target = match (f.get("path"), f.entry("url")) {
        (Some(_), Some(url)) => {
            cx.err(
                url.key_pos,
                format!("{what} has both 'path' and 'url'; choose one"),
            );
            None
        }
        (Some(node), None) => non_empty_string(cx, node, &f.label("path"), "a path like /health")
            .and_then(|s| {
                if s.value.starts_with('/') {
                    Some(HttpTarget::Path(s.value.clone()))
                } else {
                    cx.err(
                        s.pos,
                        format!(
                            "{}: the path '{}' must start with '/'",
                            f.label("path"),
                            s.value
                        ),
                    );
                    None
                }
            }),
        (None, Some(url_entry)) => url(cx, &url_entry.value, &f.label("url")).map(HttpTarget::Url),
        (None, None) => {
            cx.err(
                f.at,
                format!("{what} needs 'path' (on the service's instances) or 'url'"),
            );
            None
        }
    };
    let method = match f.get("method") {
        Some(node) => string(cx, node, &f.label("method"), "an HTTP method").and_then(|s| {
            if HTTP_METHODS.contains(&s.value.as_str()) {
                Some(s.value.clone())
            } else {
                cx.err(
                    s.pos,
                    format!(
                        "{}: unknown method '{}'; use one of {}",
                        f.label("method"),
                        s.value,
                        HTTP_METHODS.join(", ")
                    ),
                );
                None
            }
        }),
        None => Some("GET".to_string()),
    };
    Some(SensorKind::Http {
        target: target?,
        method: method?,
    })
}

fn tcp_sensor(cx: &mut Cx, entry: &Entry, sensor: &str) -> Option<SensorKind> {
    let what = format!("'tcp' of {sensor}");
    let (timeout, every) = (
        misplaced_hint("timeout", "tcp", sensor),
        misplaced_hint("every", "tcp", sensor),
    );
    let f = fields(
        cx,
        &entry.value,
        entry.key_pos,
        &what,
        TCP_KEYS,
        &[("timeout", &timeout), ("every", &every)],
    )?;
    let host = match f.get("host") {
        Some(node) => non_empty_string(cx, node, &f.label("host"), "a host name or address")
            .map(|s| Some(s.value.clone())),
        None => Some(None),
    };
    let port = match f.get("port") {
        Some(node) => integer(cx, node, &f.label("port"), 1, 65535)
            .map(|p| Some(u16::try_from(p).unwrap_or(u16::MAX))),
        None => Some(None),
    };
    if let (Some(Some(_)), Some(None)) = (&host, &port) {
        cx.err(
            f.at,
            format!("{what} has a 'host' but no 'port'; name the port to connect to"),
        );
        return None;
    }
    Some(SensorKind::Tcp {
        host: host?,
        port: port?,
    })
}

/// `expect`: conditions, checked against the sensor's kind when it is known.
fn expect(cx: &mut Cx, entry: &Entry, sensor: &str, kind: Option<Kind>) -> Option<Vec<Condition>> {
    let label = format!("'expect' in {sensor}");
    let Node::Seq(seq) = &entry.value else {
        cx.err(
            entry.value.pos(),
            format!(
                "{label}: expected a list of conditions like [\"status == 200\"], found {}",
                entry.value.describe()
            ),
        );
        return None;
    };
    if seq.items.len() > MAX_CONDITIONS {
        cx.err(
            entry.key_pos,
            format!(
                "{label}: {} conditions; at most {MAX_CONDITIONS} are allowed",
                seq.items.len()
            ),
        );
        return None;
    }
    let mut out = Vec::with_capacity(seq.items.len());
    let mut ok = true;
    for item in &seq.items {
        let Some(s) = string(cx, item, &label, "a condition like \"status == 200\"") else {
            ok = false;
            continue;
        };
        match parse_condition(&s.value) {
            Ok(condition) => match kind.and_then(|k| misfit(&condition, k)) {
                Some(why) => {
                    cx.err(s.pos, format!("{sensor}: condition '{}' {why}", s.value));
                    ok = false;
                }
                None => out.push(condition),
            },
            Err(message) => {
                cx.err(s.pos, format!("{sensor}: {message}"));
                ok = false;
            }
        }
    }
    ok.then_some(out)
}

/// Why `condition` cannot be checked by a sensor of `kind`, if it cannot.
fn misfit(condition: &Condition, kind: Kind) -> Option<&'static str> {
    match (condition, kind) {
        (Condition::Latency { .. }, _)
        | (Condition::Status { .. } | Condition::BodyContains { .. }, Kind::Http)
        | (Condition::Value { .. }, Kind::Sql) => None,
        (Condition::Status { .. } | Condition::BodyContains { .. }, Kind::Tcp) => {
            Some("needs an http sensor; a tcp sensor can only check latency")
        }
        (Condition::Status { .. } | Condition::BodyContains { .. }, Kind::Sql) => {
            Some("needs an http sensor; an sql sensor checks value and latency")
        }
        (Condition::Value { .. }, Kind::Http) => {
            Some("needs an sql sensor; an http sensor checks status, latency and body")
        }
        (Condition::Value { .. }, Kind::Tcp) => {
            Some("needs an sql sensor; a tcp sensor can only check latency")
        }
    }
}
