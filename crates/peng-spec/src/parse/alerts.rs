//! `alerts`: rules over the sensors, each naming its action plan.

use std::collections::BTreeSet;

use peng_yaml::tree::Node;
use peng_yaml::{fields, list, string, suggest, Cx};

use super::action_plans::plan_reference;
use super::shared::{item_label, object_name, Unique, HEALTH_SENSOR};
use crate::condition::parse_when;
use crate::limits::MAX_ALERTS;
use crate::model::{AlertSpec, Severity, DATABASE_SENSORS, INSTANCE_SENSORS};

pub(crate) const ALERT_KEYS: &[&str] = &["name", "sensor", "when", "severity", "plan"];

pub(super) fn alerts(
    cx: &mut Cx,
    node: &Node,
    sensors: Option<&BTreeSet<&str>>,
    has_database: bool,
    plans: Option<&BTreeSet<&str>>,
) -> Option<Vec<AlertSpec>> {
    let items = list(cx, node, "alerts", MAX_ALERTS)?;
    let mut names = Unique::new("alert");
    let mut out = Vec::with_capacity(items.len());
    let mut ok = true;
    for (index, item) in items.iter().enumerate() {
        match alert(cx, item, index, &mut names, sensors, has_database, plans) {
            Some(a) => out.push(a),
            None => ok = false,
        }
    }
    ok.then_some(out)
}

fn alert(
    cx: &mut Cx,
    item: &Node,
    index: usize,
    names: &mut Unique,
    sensors: Option<&BTreeSet<&str>>,
    has_database: bool,
    plans: Option<&BTreeSet<&str>>,
) -> Option<AlertSpec> {
    let what = item_label("alert", item, index);
    let f = fields(cx, item, item.pos(), &what, ALERT_KEYS, &[])?;
    let name = f.require(cx, "name").and_then(|node| {
        let name = object_name(cx, node, &f.label("name"), "alert name")?;
        names.check(cx, &name, node.pos()).then_some(name)
    });
    let sensor = f.require(cx, "sensor").and_then(|node| {
        let s = string(cx, node, &f.label("sensor"), "a sensor name")?;
        // When the sensors section itself is broken, its names are unknown: do not guess.
        let known = sensors?;
        let database_sensors: &[&str] = if has_database { DATABASE_SENSORS } else { &[] };
        let name = s.value.as_str();
        if name == HEALTH_SENSOR
            || known.contains(name)
            || INSTANCE_SENSORS.contains(&name)
            || database_sensors.contains(&name)
        {
            return Some(s.value.clone());
        }
        let mut message = format!("unknown sensor '{name}' in {what}");
        let candidates = known
            .iter()
            .copied()
            .chain([HEALTH_SENSOR])
            .chain(INSTANCE_SENSORS.iter().copied())
            .chain(database_sensors.iter().copied());
        match suggest(name, candidates) {
            Some(close) => message.push_str(&format!("; did you mean '{close}'?")),
            None if DATABASE_SENSORS.contains(&name) => message
                .push_str("; the db.* sensors exist only in a file with a 'database' section"),
            None if has_database => message.push_str(
                "; name a sensor of this file, 'health', 'instance.oom' or a db.* sensor",
            ),
            None => message.push_str("; name a sensor of this file, 'health' or 'instance.oom'"),
        }
        cx.err(s.pos, message);
        None
    });
    let when = f.require(cx, "when").and_then(|node| {
        let s = string(
            cx,
            node,
            &f.label("when"),
            "a condition like \"failing for 2m\"",
        )?;
        parse_when(&s.value)
            .map_err(|message| cx.err(s.pos, format!("{what}: {message}")))
            .ok()
    });
    let severity = f.require(cx, "severity").and_then(|node| {
        let s = string(cx, node, &f.label("severity"), "info, warning or critical")?;
        match s.value.as_str() {
            "info" => Some(Severity::Info),
            "warning" => Some(Severity::Warning),
            "critical" => Some(Severity::Critical),
            other => {
                cx.err(
                    s.pos,
                    format!(
                        "{}: unknown severity '{other}'; use info, warning or critical",
                        f.label("severity")
                    ),
                );
                None
            }
        }
    });
    let plan = f.require(cx, "plan").and_then(|node| {
        let s = string(cx, node, &f.label("plan"), "an action plan name")?;
        plan_reference(cx, s, plans?, &what)
    });
    Some(AlertSpec {
        name: name?,
        sensor: sensor?,
        when: when?,
        severity: severity?,
        plan: plan?,
    })
}
