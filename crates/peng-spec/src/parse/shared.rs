//! What several sections of the service file read with, beyond [`peng_yaml`]'s values: the
//! names of sensors, alerts and action plans, their uniqueness and labels, and the schedule of
//! a health check or sensor.

use std::collections::BTreeMap;

use peng_core::{Duration, TeamName};
use peng_yaml::tree::{Node, Pos};
use peng_yaml::{duration, string, Cx, Fields};

/// The name alerts use for the automatic per-instance health check.
pub(super) const HEALTH_SENSOR: &str = "health";
const MIN_SENSOR_EVERY: Duration = Duration::from_secs(1);

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
    let every = every(cx, f, MIN_SENSOR_EVERY, default_every);
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

/// `every` of `f`: an interval of at least `min`; `default` when it is not written.
pub(super) fn every(
    cx: &mut Cx,
    f: &Fields<'_>,
    min: Duration,
    default: Duration,
) -> Option<Duration> {
    let Some(node) = f.get("every") else {
        return Some(default);
    };
    let every = duration(cx, node, &f.label("every"))?;
    if every < min {
        cx.err(
            node.pos(),
            format!("{}: {every} is too often; at least {min}", f.label("every")),
        );
        return None;
    }
    Some(every)
}
