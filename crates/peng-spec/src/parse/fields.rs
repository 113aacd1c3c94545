//! What every section of the service file reads with: the list of problems ([`Cx`]), mappings
//! checked against their allowed keys ([`Fields`]), scalars of each type, names, URLs, list
//! sections and the schedule of a health check or sensor.

use std::collections::BTreeMap;

use peng_core::{Duration, TeamName};

use crate::error::{Diagnostic, Diagnostics};
use crate::limits::MAX_FILE_BYTES;
use crate::tree::{self, Entry, Map, Node, Pos, Scalar};

/// The name alerts use for the automatic per-instance health check.
pub(super) const HEALTH_SENSOR: &str = "health";
const MIN_SENSOR_EVERY: Duration = Duration::from_secs(1);

#[derive(Default)]
pub(crate) struct Cx {
    problems: Vec<(Pos, String)>,
}

impl Cx {
    pub(crate) fn err(&mut self, pos: Pos, message: impl Into<String>) {
        self.problems.push((pos, message.into()));
    }

    fn into_diagnostics(mut self, file: &str) -> Diagnostics {
        // Stable: problems at the same position keep the order they were found in.
        self.problems.sort_by_key(|(pos, _)| *pos);
        Diagnostics(
            self.problems
                .into_iter()
                .map(|(pos, message)| Diagnostic {
                    file: file.to_string(),
                    line: pos.line,
                    column: pos.column,
                    message,
                })
                .collect(),
        )
    }
}

/// The steps every peng file goes through: size limit, byte order mark, the YAML tree, then
/// `read` on the root; the outcome is the value or every problem found, sorted.
pub(crate) fn parse_file<T>(
    file_name: &str,
    text: &str,
    when_empty: &str,
    read: impl FnOnce(&mut Cx, &Node) -> Option<T>,
) -> Result<T, Diagnostics> {
    let mut cx = Cx::default();
    // Some editors start files with a byte order mark; it is invisible, so columns are counted
    // without it.
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let value = if text.len() > MAX_FILE_BYTES {
        cx.err(
            Pos::START,
            format!(
                "the file is {} bytes; a file may hold at most {MAX_FILE_BYTES} bytes (256 KiB)",
                text.len()
            ),
        );
        None
    } else {
        let (root, problems) = tree::load(text);
        for problem in problems {
            cx.err(problem.pos, problem.message);
        }
        match root {
            Some(root) => read(&mut cx, &root),
            None if cx.problems.is_empty() => {
                cx.err(Pos::START, when_empty);
                None
            }
            None => None,
        }
    };
    match value {
        Some(value) if cx.problems.is_empty() => Ok(value),
        _ => {
            // Every refusal reports why; an empty list here would be a bug in this module.
            debug_assert!(
                !cx.problems.is_empty(),
                "a refused file without a diagnostic"
            );
            if cx.problems.is_empty() {
                cx.err(Pos::START, "the file could not be validated");
            }
            Err(cx.into_diagnostics(file_name))
        }
    }
}

/// A mapping whose keys were checked against the allowed ones. `at` is where a missing key is
/// reported (the key that introduced the mapping), `what` names it in messages.
pub(crate) struct Fields<'a> {
    pub(crate) map: &'a Map,
    pub(crate) at: Pos,
    pub(crate) what: String,
}

impl<'a> Fields<'a> {
    pub(crate) fn entry(&self, key: &str) -> Option<&'a Entry> {
        self.map.get(key)
    }

    pub(crate) fn get(&self, key: &str) -> Option<&'a Node> {
        self.entry(key).map(|e| &e.value)
    }

    /// Like `get`, but `key:` with no value counts as absent (for optional sections).
    pub(crate) fn get_some(&self, key: &str) -> Option<&'a Node> {
        self.get(key).filter(|n| !n.is_null())
    }

    pub(crate) fn require(&self, cx: &mut Cx, key: &str) -> Option<&'a Node> {
        let node = self.get(key);
        if node.is_none() {
            cx.err(self.at, format!("missing key '{key}' in {}", self.what));
        }
        node
    }

    /// `'key' in what`, for messages about a value.
    pub(crate) fn label(&self, key: &str) -> String {
        format!("'{key}' in {}", self.what)
    }
}

/// Checks that `node` is a mapping with only `allowed` keys. `hints` replace the generic
/// unknown-key message for keys that deserve a specific one.
pub(crate) fn fields<'a>(
    cx: &mut Cx,
    node: &'a Node,
    at: Pos,
    what: &str,
    allowed: &[&str],
    hints: &[(&str, &str)],
) -> Option<Fields<'a>> {
    let Node::Map(map) = node else {
        cx.err(
            node.pos(),
            format!("{what}: expected a mapping, found {}", node.describe()),
        );
        return None;
    };
    for entry in &map.entries {
        if allowed.contains(&entry.key.as_str()) {
            continue;
        }
        match hints.iter().find(|(key, _)| *key == entry.key) {
            Some((_, hint)) => cx.err(entry.key_pos, hint.to_string()),
            None => cx.err(entry.key_pos, unknown_key(&entry.key, what, allowed)),
        }
    }
    Some(Fields {
        map,
        at,
        what: what.to_string(),
    })
}

pub(crate) fn unknown_key(key: &str, what: &str, allowed: &[&str]) -> String {
    let mut message = format!("unknown key '{}' in {what}", shown(key));
    match suggest(key, allowed.iter().copied()) {
        Some(close) => message.push_str(&format!("; did you mean '{close}'?")),
        None => message.push_str(&format!("; expected one of {}", allowed.join(", "))),
    }
    message
}

/// `value` for a message: control characters (a NUL byte above all) escaped, so that a
/// diagnostic is one line of text whatever the file held.
pub(crate) fn shown(value: &str) -> String {
    value
        .chars()
        .map(|c| match c {
            '\0' => "\\0".to_string(),
            c if c.is_control() => c.escape_default().to_string(),
            c => c.to_string(),
        })
        .collect()
}

/// The known word closest to `word`, if it is close enough to be what was meant.
pub(crate) fn suggest<'a>(word: &str, known: impl Iterator<Item = &'a str>) -> Option<&'a str> {
    let word = word.to_ascii_lowercase();
    known
        .map(|k| (strsim::jaro_winkler(&word, &k.to_ascii_lowercase()), k))
        .filter(|(score, _)| *score >= 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, k)| k)
}

/// A string value: any scalar except null. Plain numbers are accepted as their text.
pub(crate) fn string<'a>(
    cx: &mut Cx,
    node: &'a Node,
    label: &str,
    expected: &str,
) -> Option<&'a Scalar> {
    match node {
        Node::Scalar(s) if !s.is_null() => Some(s),
        other => {
            cx.err(
                other.pos(),
                format!("{label}: expected {expected}, found {}", other.describe()),
            );
            None
        }
    }
}

pub(crate) fn non_empty_string<'a>(
    cx: &mut Cx,
    node: &'a Node,
    label: &str,
    expected: &str,
) -> Option<&'a Scalar> {
    let s = string(cx, node, label, expected)?;
    if s.value.trim().is_empty() {
        cx.err(
            s.pos,
            format!("{label}: expected {expected}, found an empty string"),
        );
        return None;
    }
    Some(s)
}

pub(crate) fn duration(cx: &mut Cx, node: &Node, label: &str) -> Option<Duration> {
    let s = string(cx, node, label, "a duration like 30s")?;
    match Duration::parse(&s.value) {
        Ok(d) => Some(d),
        Err(e) => {
            cx.err(s.pos, format!("{label}: {e}"));
            None
        }
    }
}

/// A whole number written without quotes.
pub(crate) fn integer(cx: &mut Cx, node: &Node, label: &str, min: u64, max: u64) -> Option<u64> {
    let expected = format!("a whole number from {min} to {max}");
    let parsed = match node {
        Node::Scalar(s) if !s.quoted => s.value.parse::<u64>().ok(),
        _ => None,
    };
    match parsed.filter(|v| (min..=max).contains(v)) {
        Some(v) => Some(v),
        None => {
            cx.err(
                node.pos(),
                format!("{label}: expected {expected}, found {}", node.describe()),
            );
            None
        }
    }
}

pub(crate) fn boolean(node: &Node) -> Option<bool> {
    match node {
        Node::Scalar(s) if !s.quoted => match s.value.as_str() {
            "true" | "True" | "TRUE" => Some(true),
            "false" | "False" | "FALSE" => Some(false),
            _ => None,
        },
        _ => None,
    }
}

/// The name of a sensor, alert or action plan: the same rules as team and service names, so
/// it is safe in URLs, metric labels and file names.
pub(super) fn object_name(cx: &mut Cx, node: &Node, label: &str, what: &str) -> Option<String> {
    let s = string(cx, node, label, &format!("a {what}"))?;
    match TeamName::parse(&s.value) {
        Ok(_) => Some(s.value.clone()),
        Err(_) => {
            cx.err(s.pos, name_rule(what, &s.value));
            None
        }
    }
}

pub(super) fn name_rule(what: &str, value: &str) -> String {
    if value.len() > 63 {
        format!("{what} '{value}' is longer than 63 characters")
    } else {
        format!(
            "{what} '{value}' must start with a lowercase letter and contain only a-z, 0-9 and '-' (not at the end)"
        )
    }
}

/// An absolute http(s) URL with a host.
pub(super) fn url(cx: &mut Cx, node: &Node, label: &str) -> Option<String> {
    let s = string(cx, node, label, "an http(s) URL")?;
    let value = s.value.as_str();
    let rest = value
        .strip_prefix("https://")
        .or_else(|| value.strip_prefix("http://"));
    let host = rest.map(|r| r.split(['/', '?', '#']).next().unwrap_or(""));
    let ok = matches!(host, Some(h) if !h.is_empty()) && !value.chars().any(char::is_whitespace);
    if !ok {
        cx.err(
            s.pos,
            format!("{label}: expected an http:// or https:// URL with a host, found '{value}'"),
        );
        return None;
    }
    Some(value.to_string())
}

/// A list section (`sensors`, `alerts`): checks the type and the count limit.
pub(crate) fn list<'a>(cx: &mut Cx, node: &'a Node, key: &str, max: usize) -> Option<&'a [Node]> {
    let Node::Seq(seq) = node else {
        cx.err(
            node.pos(),
            format!("'{key}': expected a list, found {}", node.describe()),
        );
        return None;
    };
    if seq.items.len() > max {
        cx.err(
            seq.pos,
            format!(
                "{} {key} declared; at most {max} are allowed",
                seq.items.len()
            ),
        );
        return None;
    }
    Some(&seq.items)
}

/// Remembers names already taken in a section and reports the second use.
pub(super) struct Unique {
    what: &'static str,
    seen: BTreeMap<String, Pos>,
}

impl Unique {
    pub(super) fn new(what: &'static str) -> Self {
        Self {
            what,
            seen: BTreeMap::new(),
        }
    }

    pub(super) fn check(&mut self, cx: &mut Cx, name: &str, pos: Pos) -> bool {
        if let Some(first) = self.seen.get(name) {
            cx.err(
                pos,
                format!(
                    "duplicate {} name '{name}'; first used at line {} column {}",
                    self.what, first.line, first.column
                ),
            );
            return false;
        }
        self.seen.insert(name.to_string(), pos);
        true
    }
}

/// The label of list item `index` in messages: its name when it has a usable one.
pub(super) fn item_label(kind: &str, item: &Node, index: usize) -> String {
    if let Node::Map(map) = item {
        if let Some(Node::Scalar(s)) = map.get("name").map(|e| &e.value) {
            if !s.is_null() && s.value.len() <= 63 {
                return format!("{kind} '{}'", s.value);
            }
        }
    }
    format!("{kind} #{}", index + 1)
}

/// `every` and `timeout` of a health check or sensor. The default timeout is shortened to half
/// of `every` when `every` is short, so `every: 2s` alone is valid.
pub(super) fn schedule(
    cx: &mut Cx,
    f: &Fields<'_>,
    default_every: Duration,
    default_timeout: Duration,
) -> Option<(Duration, Duration)> {
    let every = match f.get("every") {
        Some(node) => duration(cx, node, &f.label("every")).and_then(|every| {
            if every < MIN_SENSOR_EVERY {
                cx.err(
                    node.pos(),
                    format!(
                        "{}: {every} is too often; at least {MIN_SENSOR_EVERY}",
                        f.label("every")
                    ),
                );
                return None;
            }
            Some(every)
        }),
        None => Some(default_every),
    };
    let timeout = match f.get("timeout") {
        Some(node) => duration(cx, node, &f.label("timeout")).and_then(|timeout| {
            if timeout.as_std().is_zero() {
                cx.err(
                    node.pos(),
                    format!("{}: must be more than 0s", f.label("timeout")),
                );
                return None;
            }
            // Compared only when `every` is known, so one mistake is reported once.
            if let Some(every) = every.filter(|every| timeout >= *every) {
                cx.err(
                    node.pos(),
                    format!(
                        "{}: {timeout} must be shorter than every ({every})",
                        f.label("timeout")
                    ),
                );
                return None;
            }
            Some(timeout)
        }),
        None => every.map(|every| default_timeout.min(Duration(every.as_std() / 2))),
    };
    Some((every?, timeout?))
}
