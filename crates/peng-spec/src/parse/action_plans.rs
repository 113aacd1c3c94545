//! `action_plans`: who is notified when an alert fires, and where an unresolved alert
//! escalates to.

use std::collections::{BTreeMap, BTreeSet};

use peng_core::TeamName;
use peng_yaml::tree::{Entry, Node, Pos, Scalar};
use peng_yaml::{
    bounded_list, bounded_map, duration, fields, section, string, suggest, url, Cx, Fields,
};

use super::shared::name_rule;
use crate::limits::{MAX_ACTION_PLANS, MAX_NOTIFY};
use crate::model::{ActionPlan, Escalation, NotifyTarget};

pub(crate) const PLAN_KEYS: &[&str] = &["runbook", "notify", "escalate"];
pub(crate) const NOTIFY_KEYS: &[&str] = &["webhook"];
pub(crate) const ESCALATE_KEYS: &[&str] = &["after", "to"];

const NOT_SUPPORTED: &str = "is not supported by this version of peng";

/// Checks that `s` names a plan of the file.
pub(super) fn plan_reference(
    cx: &mut Cx,
    s: &Scalar,
    plans: &BTreeSet<&str>,
    what: &str,
) -> Option<String> {
    if plans.contains(s.value.as_str()) {
        return Some(s.value.clone());
    }
    let mut message = format!("unknown action plan '{}' in {what}", s.value);
    match suggest(&s.value, plans.iter().copied()) {
        Some(close) => message.push_str(&format!("; did you mean '{close}'?")),
        None => message.push_str("; define it under action_plans"),
    }
    cx.err(s.pos, message);
    None
}

pub(super) fn action_plans(cx: &mut Cx, entry: &Entry) -> Option<BTreeMap<String, ActionPlan>> {
    let map = bounded_map(
        cx,
        entry,
        "'action_plans'",
        "a mapping of plan name to plan",
        "action plans declared",
        MAX_ACTION_PLANS,
    )?;
    let names: BTreeSet<&str> = map.entries.iter().map(|e| e.key.as_str()).collect();
    let mut out = BTreeMap::new();
    let mut ok = true;
    // Where each escalation was written, to report a cycle at one of its edges.
    let mut edges: BTreeMap<&str, (&str, Pos)> = BTreeMap::new();
    for plan_entry in &map.entries {
        let name = plan_entry.key.as_str();
        let name_ok = TeamName::parse(name).is_ok();
        if !name_ok {
            cx.err(plan_entry.key_pos, name_rule("action plan name", name));
        }
        match action_plan(cx, plan_entry, &names) {
            Some((plan, to_pos)) if name_ok => {
                if let (Some(escalation), Some(pos)) = (&plan.escalate, to_pos) {
                    if let Some(target) = names.get(escalation.to.as_str()) {
                        edges.insert(name, (target, pos));
                    }
                }
                out.insert(name.to_string(), plan);
            }
            _ => ok = false,
        }
    }
    // An escalation chain that comes back to where it started would page in a loop.
    let mut reported = BTreeSet::new();
    for start in edges.keys().copied() {
        let mut path = vec![start];
        let mut current = start;
        while let Some((next, pos)) = edges.get(current) {
            if *next == start {
                if path.iter().all(|p| !reported.contains(p)) {
                    path.push(start);
                    cx.err(*pos, format!("escalation cycle: {}", path.join(" → ")));
                    reported.extend(path.iter().copied());
                }
                ok = false;
                break;
            }
            if path.contains(next) {
                break;
            }
            path.push(next);
            current = next;
        }
    }
    ok.then_some(out)
}

/// One plan, and where its `escalate.to` was written.
fn action_plan(
    cx: &mut Cx,
    entry: &Entry,
    names: &BTreeSet<&str>,
) -> Option<(ActionPlan, Option<Pos>)> {
    let what = format!("action plan '{}'", entry.key);
    let f = section(cx, entry, &what, PLAN_KEYS)?;
    let runbook = match f.get("runbook") {
        Some(node) => url(cx, node, &f.label("runbook")).map(Some),
        None => Some(None),
    };
    let notify = f
        .require(cx, "notify")
        .and_then(|node| notify(cx, node, &f));
    let mut to_pos = None;
    let escalate = match f.entry("escalate").filter(|e| !e.value.is_null()) {
        Some(e) => {
            let escalate_what = format!("'escalate' of {what}");
            section(cx, e, &escalate_what, ESCALATE_KEYS)
                .and_then(|g| {
                    let after = g.require(cx, "after").and_then(|node| {
                        let after = duration(cx, node, &g.label("after"))?;
                        if after.as_std().is_zero() {
                            cx.err(
                                node.pos(),
                                format!("{}: must be more than 0s", g.label("after")),
                            );
                            return None;
                        }
                        Some(after)
                    });
                    let to = g.require(cx, "to").and_then(|node| {
                        let s = string(cx, node, &g.label("to"), "an action plan name")?;
                        to_pos = Some(s.pos);
                        if s.value == entry.key {
                            cx.err(
                                s.pos,
                                format!("{what} escalates to itself; name another plan"),
                            );
                            return None;
                        }
                        plan_reference(cx, s, names, &escalate_what)
                    });
                    Some(Escalation {
                        after: after?,
                        to: to?,
                    })
                })
                .map(Some)
        }
        None => Some(None),
    };
    Some((
        ActionPlan {
            runbook: runbook?,
            notify: notify?,
            escalate: escalate?,
        },
        to_pos,
    ))
}

fn notify(cx: &mut Cx, node: &Node, plan: &Fields<'_>) -> Option<Vec<NotifyTarget>> {
    let label = plan.label("notify");
    let seq = bounded_list(
        cx,
        node,
        &label,
        "a list like [{ webhook: \"https://…\" }]",
        "targets",
        MAX_NOTIFY,
        None,
    )?;
    if seq.items.is_empty() {
        cx.err(
            seq.pos,
            format!("{label}: name at least one target to notify"),
        );
        return None;
    }
    let what = format!("a notify target of {}", plan.what);
    let hint = format!("notify target 'email' {NOT_SUPPORTED}; use 'webhook'");
    let mut out = Vec::with_capacity(seq.items.len());
    let mut ok = true;
    for item in &seq.items {
        let target = fields(
            cx,
            item,
            item.pos(),
            &what,
            NOTIFY_KEYS,
            &[("email", &hint)],
        )
        .and_then(|f| {
            if f.map.entries.iter().any(|e| e.key == "email") {
                return None;
            }
            let node = f.require(cx, "webhook")?;
            url(cx, node, &f.label("webhook")).map(|url| NotifyTarget::Webhook { url })
        });
        match target {
            Some(t) => out.push(t),
            None => ok = false,
        }
    }
    ok.then_some(out)
}
