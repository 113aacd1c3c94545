//! `sensors`: each sensor's name, kind, schedule and `expect` conditions. What a kind's own
//! entry holds (`http: { … }`, `sql: "…"`) is read by the kind (`peng-sensors`); this file
//! reads what every sensor has.

use peng_core::Duration;
use peng_sensors::{Context, SensorKind, KINDS};
use peng_yaml::tree::{Entry, Node};
use peng_yaml::{bounded_list, fields, list, string, Cx};

use super::shared::{item_label, object_name, schedule, Unique, HEALTH_SENSOR};
use crate::condition::parse_condition;
use crate::limits::{MAX_CONDITIONS, MAX_SENSORS};
use crate::model::{Condition, SensorSpec};

const DEFAULT_SENSOR_EVERY: Duration = Duration::from_secs(30);
const DEFAULT_SENSOR_TIMEOUT: Duration = Duration::from_secs(5);

/// The keys of a sensor: its name, one key per kind, its schedule and its conditions.
pub(crate) fn sensor_keys() -> Vec<&'static str> {
    let mut keys = vec!["name"];
    keys.extend(KINDS.iter().map(|k| k.key));
    keys.extend(["every", "timeout", "expect"]);
    keys
}

/// The kinds as a message lists them, each between `quote`s: `'http', 'tcp' or 'sql'`.
pub(crate) fn kinds_listed(quote: &str) -> String {
    let keys: Vec<String> = KINDS
        .iter()
        .map(|k| format!("{quote}{}{quote}", k.key))
        .collect();
    match keys.split_last() {
        Some((last, [])) => last.clone(),
        Some((last, rest)) => format!("{} or {last}", rest.join(", ")),
        None => String::new(),
    }
}

pub(super) fn sensors(cx: &mut Cx, node: &Node, has_database: bool) -> Option<Vec<SensorSpec>> {
    let items = list(cx, node, "sensors", MAX_SENSORS)?;
    let mut names = Unique::new("sensor");
    let file = Context { has_database };
    let mut out = Vec::with_capacity(items.len());
    let mut ok = true;
    for (index, item) in items.iter().enumerate() {
        match sensor(cx, item, index, &mut names, &file) {
            Some(s) => out.push(s),
            None => ok = false,
        }
    }
    ok.then_some(out)
}

fn sensor(
    cx: &mut Cx,
    item: &Node,
    index: usize,
    names: &mut Unique,
    file: &Context,
) -> Option<SensorSpec> {
    let what = item_label("sensor", item, index);
    let f = fields(cx, item, item.pos(), &what, &sensor_keys(), &[])?;
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
    let written: Vec<&Entry> = KINDS.iter().filter_map(|k| f.entry(k.key)).collect();
    let kind = match written.as_slice() {
        [] => {
            cx.err(f.at, format!("{what} needs a kind: {}", kinds_listed("'")));
            None
        }
        [entry] => SensorKind::parse(cx, entry, &what, file),
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
    let expect = match f.entry("expect").filter(|e| !e.value.is_null()) {
        Some(e) => expect(cx, e, &what, kind.as_ref()),
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

/// `expect`: conditions, checked against the sensor's kind when it is known.
fn expect(
    cx: &mut Cx,
    entry: &Entry,
    sensor: &str,
    kind: Option<&SensorKind>,
) -> Option<Vec<Condition>> {
    let label = format!("'expect' in {sensor}");
    let seq = bounded_list(
        cx,
        &entry.value,
        &label,
        "a list of conditions like [\"status == 200\"]",
        "conditions",
        MAX_CONDITIONS,
        Some(entry.key_pos),
    )?;
    let mut out = Vec::with_capacity(seq.items.len());
    let mut ok = true;
    for item in &seq.items {
        let Some(s) = string(cx, item, &label, "a condition like \"status == 200\"") else {
            ok = false;
            continue;
        };
        match parse_condition(&s.value) {
            Ok(condition) => match kind.and_then(|k| k.misfit(condition.subject())) {
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
