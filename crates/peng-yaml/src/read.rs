//! Reading values out of the tree, each check reporting into one list and carrying on: a
//! whole file ([`parse_file`]), mappings checked against their allowed keys ([`fields`],
//! [`Fields`]), scalars of each type, URLs and list sections. A value that failed its check is
//! `None`, so the checks that depend on it are skipped and one mistake is said once.

use peng_core::Duration;

use crate::diagnostic::{Diagnostic, Diagnostics};
use crate::limits::MAX_FILE_BYTES;
use crate::tree::{self, Entry, Map, Node, Pos, Scalar, Seq};

/// The problems found so far in one file.
#[derive(Default)]
pub struct Cx {
    problems: Vec<(Pos, String)>,
}

impl Cx {
    pub fn err(&mut self, pos: Pos, message: impl Into<String>) {
        self.problems.push((pos, message.into()));
    }

    /// Every problem reported, sorted by position, as diagnostics of `file`.
    pub fn into_diagnostics(mut self, file: &str) -> Diagnostics {
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
pub fn parse_file<T>(
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
pub struct Fields<'a> {
    pub map: &'a Map,
    pub at: Pos,
    pub what: String,
}

impl<'a> Fields<'a> {
    pub fn entry(&self, key: &str) -> Option<&'a Entry> {
        self.map.get(key)
    }

    pub fn get(&self, key: &str) -> Option<&'a Node> {
        self.entry(key).map(|e| &e.value)
    }

    /// Like `get`, but `key:` with no value counts as absent (for optional sections).
    pub fn get_some(&self, key: &str) -> Option<&'a Node> {
        self.get(key).filter(|n| !n.is_null())
    }

    pub fn require(&self, cx: &mut Cx, key: &str) -> Option<&'a Node> {
        let node = self.get(key);
        if node.is_none() {
            cx.err(self.at, format!("missing key '{key}' in {}", self.what));
        }
        node
    }

    /// `'key' in what`, for messages about a value.
    pub fn label(&self, key: &str) -> String {
        format!("'{key}' in {}", self.what)
    }
}

/// Checks that `node` is a mapping with only `allowed` keys. `hints` replace the generic
/// unknown-key message for keys that deserve a specific one.
pub fn fields<'a>(
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

/// [`fields`] of a section written as `key: { … }`: missing keys are reported at `key`.
pub fn section<'a>(
    cx: &mut Cx,
    entry: &'a Entry,
    what: &str,
    allowed: &[&str],
) -> Option<Fields<'a>> {
    fields(cx, &entry.value, entry.key_pos, what, allowed, &[])
}

/// A list of at most `max` items. Otherwise says `LABEL: expected EXPECTED, found …` at the
/// value, or `LABEL: N ITEMS; at most MAX are allowed` at `count_at` (the list itself when
/// `None`).
pub fn bounded_list<'a>(
    cx: &mut Cx,
    node: &'a Node,
    label: &str,
    expected: &str,
    items: &str,
    max: usize,
    count_at: Option<Pos>,
) -> Option<&'a Seq> {
    let Node::Seq(seq) = node else {
        wrong_type(cx, node, label, expected);
        return None;
    };
    let count = seq.items.len();
    let at = count_at.unwrap_or(seq.pos);
    within(cx, at, count, max, || format!("{label}: {count} {items}")).then_some(seq)
}

/// A mapping of at most `max` entries. Otherwise says `LABEL: expected EXPECTED, found …` at
/// the value, or `N COUNTED; at most MAX are allowed` at its key.
pub fn bounded_map<'a>(
    cx: &mut Cx,
    entry: &'a Entry,
    label: &str,
    expected: &str,
    counted: &str,
    max: usize,
) -> Option<&'a Map> {
    let Node::Map(map) = &entry.value else {
        wrong_type(cx, &entry.value, label, expected);
        return None;
    };
    let count = map.entries.len();
    within(cx, entry.key_pos, count, max, || {
        format!("{count} {counted}")
    })
    .then_some(map)
}

/// Says `LABEL: expected EXPECTED, found …` at `node`.
fn wrong_type(cx: &mut Cx, node: &Node, label: &str, expected: &str) {
    cx.err(
        node.pos(),
        format!("{label}: expected {expected}, found {}", node.describe()),
    );
}

/// Whether `count` is at most `max`; otherwise says `COUNTED; at most MAX are allowed` at `at`.
fn within(
    cx: &mut Cx,
    at: Pos,
    count: usize,
    max: usize,
    counted: impl FnOnce() -> String,
) -> bool {
    if count > max {
        cx.err(at, format!("{}; at most {max} are allowed", counted()));
    }
    count <= max
}

pub fn unknown_key(key: &str, what: &str, allowed: &[&str]) -> String {
    let mut message = format!("unknown key '{}' in {what}", shown(key));
    match suggest(key, allowed.iter().copied()) {
        Some(close) => message.push_str(&format!("; did you mean '{close}'?")),
        None => message.push_str(&format!("; expected one of {}", allowed.join(", "))),
    }
    message
}

/// `value` for a message: control characters (a NUL byte above all) escaped, so that a
/// diagnostic is one line of text whatever the file held.
pub fn shown(value: &str) -> String {
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
pub fn suggest<'a>(word: &str, known: impl Iterator<Item = &'a str>) -> Option<&'a str> {
    let word = word.to_ascii_lowercase();
    known
        .map(|k| (strsim::jaro_winkler(&word, &k.to_ascii_lowercase()), k))
        .filter(|(score, _)| *score >= 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, k)| k)
}

/// A string value: any scalar except null. Plain numbers are accepted as their text.
pub fn string<'a>(cx: &mut Cx, node: &'a Node, label: &str, expected: &str) -> Option<&'a Scalar> {
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

pub fn non_empty_string<'a>(
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

pub fn duration(cx: &mut Cx, node: &Node, label: &str) -> Option<Duration> {
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
pub fn integer(cx: &mut Cx, node: &Node, label: &str, min: u64, max: u64) -> Option<u64> {
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

pub fn boolean(node: &Node) -> Option<bool> {
    match node {
        Node::Scalar(s) if !s.quoted => match s.value.as_str() {
            "true" | "True" | "TRUE" => Some(true),
            "false" | "False" | "FALSE" => Some(false),
            _ => None,
        },
        _ => None,
    }
}

/// An absolute http(s) URL with a host.
pub fn url(cx: &mut Cx, node: &Node, label: &str) -> Option<String> {
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
pub fn list<'a>(cx: &mut Cx, node: &'a Node, key: &str, max: usize) -> Option<&'a [Node]> {
    let Node::Seq(seq) = node else {
        wrong_type(cx, node, &format!("'{key}'"), "a list");
        return None;
    };
    let count = seq.items.len();
    within(cx, seq.pos, count, max, || {
        format!("{count} {key} declared")
    })
    .then_some(&seq.items)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggestions_need_to_be_close() {
        let keys = ["name", "http", "tcp", "sql", "every", "timeout", "expect"];
        assert_eq!(suggest("every_s", keys.into_iter()), Some("every"));
        assert_eq!(suggest("xyz", keys.into_iter()), None);
    }

    #[test]
    fn unknown_keys_name_the_close_one_or_all() {
        let keys = ["every", "timeout"];
        assert_eq!(
            unknown_key("evry", "sensor 'a'", &keys),
            "unknown key 'evry' in sensor 'a'; did you mean 'every'?"
        );
        assert_eq!(
            unknown_key("x\0", "run", &keys),
            "unknown key 'x\\0' in run; expected one of every, timeout"
        );
    }
}
