//! What applying a service file would change, computed from the applied spec and the new one.
//!
//! `plan` is pure: it compares two validated `ServiceSpec`s and lists changes in the order the
//! user reads them (service, instances stage by stage, databases stage by stage, health,
//! logging, sensors, alerts, action plans; names sorted). It never looks at running processes: the driver's `reconcile` is what
//! makes the instances match, and it leaves identical instances untouched, so an empty plan
//! means an apply touches nothing.
//!
//! Instances are addressed `instance STAGE/INDEX` with indices from 0. An instance is replaced
//! (`-/+`) when anything that reaches its process changes (`run.command`, `run.env`,
//! `run.workdir`, `run.resources`); scaling adds or destroys only the difference, the highest
//! indices first.
//!
//! Databases are addressed `database STAGE`, one per stage of a file with a `database` section.
//! A changed `mode` (or shared `server`) replaces the database: the new one is empty, and the
//! detail line says so. Destroying (or replacing) a protected database carries a detail line
//! saying that it needs `--force` and takes a final backup first; enforcing that is apply's.
//!
//! With a stage (`peng plan --stage S`) only the instances and the database of S are planned;
//! service-wide objects (health, logging, sensors, alerts, action plans) are planned as usual
//! because they are not per stage. The spec to store after `apply --stage S` is
//! [`merge_stage`]: the new file for everything except `stages`, where only S comes from the
//! file and every other stage keeps its applied instance count. `run` and `database` are
//! service-wide in the model, so the instances and databases of the other stages are brought to
//! a changed `run` or `database` by the next apply that covers them.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use peng_core::{ServiceId, StageName};
use peng_spec::{
    ActionPlan, AlertCondition, AlertSpec, Condition, DatabaseSpec, DbMode, HealthCheck,
    HealthProbe, NotifyTarget, RunSpec, SensorSpec, ServiceSpec,
};

use crate::ProvisionError;

/// What happens to one object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Create,
    Update,
    /// Destroyed and created again; counts as one add and one destroy.
    Replace,
    Destroy,
}

impl Action {
    /// The Terraform-style marker: `+`, `~`, `-/+`, `-`.
    pub fn symbol(self) -> &'static str {
        match self {
            Action::Create => "+",
            Action::Update => "~",
            Action::Replace => "-/+",
            Action::Destroy => "-",
        }
    }
}

/// One planned change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub action: Action,
    /// `service TEAM/NAME`, `instance STAGE/INDEX`, `database STAGE`, `health`, `logging`,
    /// `sensor NAME`, `alert NAME`, `action_plan NAME`.
    pub address: String,
    /// One line per changed field, `field: old -> new`; empty for creates and destroys.
    pub details: Vec<String>,
}

/// Every change applying a file would make, in reading order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub service: ServiceId,
    pub changes: Vec<Change>,
}

impl Plan {
    /// `(add, change, destroy)` counted like Terraform: a replace is one add and one destroy.
    pub fn summary(&self) -> (usize, usize, usize) {
        let mut counts = (0, 0, 0);
        for change in &self.changes {
            match change.action {
                Action::Create => counts.0 += 1,
                Action::Update => counts.1 += 1,
                Action::Replace => {
                    counts.0 += 1;
                    counts.2 += 1;
                }
                Action::Destroy => counts.2 += 1,
            }
        }
        counts
    }

    pub fn is_empty(&self) -> bool {
        self.changes.is_empty()
    }
}

impl fmt::Display for Plan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_empty() {
            return writeln!(f, "No changes. {} matches the file.", self.service);
        }
        for change in &self.changes {
            writeln!(f, "{:>3} {}", change.action.symbol(), change.address)?;
            for detail in &change.details {
                writeln!(f, "      {detail}")?;
            }
        }
        let (add, change, destroy) = self.summary();
        writeln!(f)?;
        writeln!(
            f,
            "Plan: {add} to add, {change} to change, {destroy} to destroy."
        )
    }
}

/// Plans the move from `current` (applied now, `None` for a new service) to `desired` (the new
/// file, `None` to destroy). With `stage`, only that stage's instances are planned; with
/// `desired == None` and a stage, only that stage is removed.
pub fn plan(
    current: Option<&ServiceSpec>,
    desired: Option<&ServiceSpec>,
    stage: Option<&StageName>,
) -> Result<Plan, ProvisionError> {
    let service = match (current, desired) {
        (Some(c), Some(d)) if c.id() != d.id() => {
            return Err(ProvisionError::ServiceMismatch {
                current: c.id().to_string(),
                desired: d.id().to_string(),
            })
        }
        (_, Some(d)) => d.id(),
        (Some(c), None) => c.id(),
        (None, None) => return Err(ProvisionError::NothingToPlan),
    };
    if let Some(s) = stage {
        let declared = |spec: Option<&ServiceSpec>| spec.is_some_and(|x| x.stages.contains_key(s));
        if !declared(current) && !declared(desired) {
            return Err(ProvisionError::UnknownStage {
                service: service.to_string(),
                stage: s.to_string(),
            });
        }
    }

    // The spec as it will be stored after apply; with a stage only that stage moves.
    let effective: Option<ServiceSpec> = match (stage, desired) {
        (None, d) => d.cloned(),
        (Some(s), Some(d)) => Some(merge_stage(current, d, s)),
        (Some(s), None) => current.map(|c| {
            let mut c = c.clone();
            c.stages.remove(s);
            c
        }),
    };
    let desired = effective.as_ref();

    let mut changes = Vec::new();
    plan_service(&service, current, desired, &mut changes);
    plan_instances(current, desired, stage, &mut changes);
    plan_databases(current, desired, stage, &mut changes);
    plan_health(
        current.map(|c| &c.run.health),
        desired.map(|d| &d.run.health),
        &mut changes,
    );
    plan_logging(current, desired, &mut changes);
    plan_named(
        "sensor",
        by_name(current, |s| s.sensors.iter().map(|x| (x.name.clone(), x))),
        by_name(desired, |s| s.sensors.iter().map(|x| (x.name.clone(), x))),
        sensor_details,
        &mut changes,
    );
    plan_named(
        "alert",
        by_name(current, |s| s.alerts.iter().map(|x| (x.name.clone(), x))),
        by_name(desired, |s| s.alerts.iter().map(|x| (x.name.clone(), x))),
        alert_details,
        &mut changes,
    );
    plan_named(
        "action_plan",
        by_name(current, |s| {
            s.action_plans.iter().map(|(k, v)| (k.clone(), v))
        }),
        by_name(desired, |s| {
            s.action_plans.iter().map(|(k, v)| (k.clone(), v))
        }),
        action_plan_details,
        &mut changes,
    );
    Ok(Plan { service, changes })
}

/// The spec to store after `apply --stage stage`: `desired` for everything but `stages`, where
/// only `stage` is taken from `desired` (or dropped when `desired` no longer declares it) and
/// every other stage keeps its count from `current`.
pub fn merge_stage(
    current: Option<&ServiceSpec>,
    desired: &ServiceSpec,
    stage: &StageName,
) -> ServiceSpec {
    let mut merged = desired.clone();
    merged.stages = current.map(|c| c.stages.clone()).unwrap_or_default();
    match desired.stages.get(stage) {
        Some(s) => {
            merged.stages.insert(stage.clone(), s.clone());
        }
        None => {
            merged.stages.remove(stage);
        }
    }
    merged
}

fn plan_service(
    service: &ServiceId,
    current: Option<&ServiceSpec>,
    desired: Option<&ServiceSpec>,
    changes: &mut Vec<Change>,
) {
    let address = format!("service {service}");
    match (current, desired) {
        (None, Some(_)) => changes.push(change(Action::Create, address, vec![])),
        (Some(_), None) => changes.push(change(Action::Destroy, address, vec![])),
        (Some(c), Some(d)) => {
            let old: Vec<&str> = c.stages.keys().map(|s| s.as_str()).collect();
            let new: Vec<&str> = d.stages.keys().map(|s| s.as_str()).collect();
            if old != new {
                let detail = format!("stages: {old:?} -> {new:?}");
                changes.push(change(Action::Update, address, vec![detail]));
            }
        }
        (None, None) => {}
    }
}

fn plan_instances(
    current: Option<&ServiceSpec>,
    desired: Option<&ServiceSpec>,
    only: Option<&StageName>,
    changes: &mut Vec<Change>,
) {
    let count = |spec: Option<&ServiceSpec>, stage: &StageName| {
        spec.and_then(|s| s.stages.get(stage))
            .map_or(0, |s| s.instances)
    };
    let stages: BTreeSet<&StageName> = match only {
        Some(s) => BTreeSet::from([s]),
        None => current
            .into_iter()
            .chain(desired)
            .flat_map(|s| s.stages.keys())
            .collect(),
    };
    let process_changes = match (current, desired) {
        (Some(c), Some(d)) => run_details(&c.run, &d.run),
        _ => Vec::new(),
    };
    for stage in stages {
        let (old, new) = (count(current, stage), count(desired, stage));
        if !process_changes.is_empty() {
            for index in 0..old.min(new) {
                let address = format!("instance {stage}/{index}");
                changes.push(change(Action::Replace, address, process_changes.clone()));
            }
        }
        for index in old..new {
            changes.push(change(
                Action::Create,
                format!("instance {stage}/{index}"),
                vec![],
            ));
        }
        for index in (new..old).rev() {
            changes.push(change(
                Action::Destroy,
                format!("instance {stage}/{index}"),
                vec![],
            ));
        }
    }
}

/// The detail line of a database whose destruction is guarded.
pub const PROTECTED_DETAIL: &str =
    "protected: destroying needs --force and takes a final backup first";

fn plan_databases(
    current: Option<&ServiceSpec>,
    desired: Option<&ServiceSpec>,
    only: Option<&StageName>,
    changes: &mut Vec<Change>,
) {
    let stages: BTreeSet<&StageName> = match only {
        Some(s) => BTreeSet::from([s]),
        None => current
            .into_iter()
            .chain(desired)
            .flat_map(|s| s.stages.keys())
            .collect(),
    };
    for stage in stages {
        let address = format!("database {stage}");
        match (database_on(current, stage), database_on(desired, stage)) {
            (None, Some(_)) => changes.push(change(Action::Create, address, vec![])),
            (Some(old), None) => {
                let details = if old.protected(stage) {
                    vec![PROTECTED_DETAIL.to_string()]
                } else {
                    vec![]
                };
                changes.push(change(Action::Destroy, address, details));
            }
            (Some(old), Some(new)) => {
                let (replaced, mut details) = database_details(old, new, stage);
                if replaced && old.protected(stage) {
                    details.push(PROTECTED_DETAIL.to_string());
                }
                let action = if replaced {
                    Action::Replace
                } else {
                    Action::Update
                };
                if !details.is_empty() {
                    changes.push(change(action, address, details));
                }
            }
            (None, None) => {}
        }
    }
}

/// The database of `stage`, when the spec declares the stage and has a database.
fn database_on<'a>(spec: Option<&'a ServiceSpec>, stage: &StageName) -> Option<&'a DatabaseSpec> {
    spec.filter(|s| s.stages.contains_key(stage))
        .and_then(|s| s.database.as_ref())
}

/// Whether the database must be replaced (a new, empty one), and the detail lines.
fn database_details(
    old: &DatabaseSpec,
    new: &DatabaseSpec,
    stage: &StageName,
) -> (bool, Vec<String>) {
    const EMPTY: &str = "(a new, empty database; back up and restore to move data)";
    let mut d = Vec::new();
    let server = |db: &DatabaseSpec| match (db.mode, &db.server) {
        (DbMode::Dedicated, _) => None,
        (DbMode::Shared, Some(name)) => Some(name.clone()),
        (DbMode::Shared, None) => Some("(default)".to_string()),
    };
    let moved = old.engine != new.engine || old.mode != new.mode || server(old) != server(new);
    diff_display(&mut d, "engine", old.engine.as_str(), new.engine.as_str());
    if old.mode != new.mode {
        d.push(format!(
            "mode: {} -> {} {EMPTY}",
            old.mode.as_str(),
            new.mode.as_str()
        ));
    } else if server(old) != server(new) {
        d.push(format!(
            "server: {} -> {} {EMPTY}",
            server(old).unwrap_or_default(),
            server(new).unwrap_or_default()
        ));
    }
    diff_display(&mut d, "version", &old.version, &new.version);
    diff_display(&mut d, "plan", &old.plan, &new.plan);
    diff_display(&mut d, "replica", old.replica, new.replica);
    diff_display(&mut d, "backup.every", old.backup.every, new.backup.every);
    diff_display(
        &mut d,
        "backup.retention",
        old.backup.retention,
        new.backup.retention,
    );
    diff_display(
        &mut d,
        "protect",
        old.protected(stage),
        new.protected(stage),
    );
    (moved, d)
}

/// The fields of `run` that reach the process, as detail lines; empty when none changed.
fn run_details(old: &RunSpec, new: &RunSpec) -> Vec<String> {
    let mut details = Vec::new();
    diff(&mut details, "run.command", &old.command, &new.command);
    let keys: BTreeSet<&String> = old.env.keys().chain(new.env.keys()).collect();
    for key in keys {
        let (a, b) = (old.env.get(key), new.env.get(key));
        // Values are not shown: env often carries credentials, and plans land in CI logs.
        let what = match (a, b) {
            (None, Some(_)) => "added",
            (Some(_), None) => "removed",
            _ => "changed",
        };
        if a != b {
            details.push(format!("run.env.{key}: {what}"));
        }
    }
    if old.workdir != new.workdir {
        details.push(format!(
            "run.workdir: {} -> {}",
            opt(old.workdir.as_ref()),
            opt(new.workdir.as_ref())
        ));
    }
    let (a, b) = (&old.resources, &new.resources);
    if a.cpu != b.cpu {
        details.push(format!("run.resources.cpu: {} -> {}", a.cpu, b.cpu));
    }
    if a.memory != b.memory {
        details.push(format!(
            "run.resources.memory: {} -> {}",
            a.memory, b.memory
        ));
    }
    details
}

fn plan_health(
    current: Option<&HealthCheck>,
    desired: Option<&HealthCheck>,
    changes: &mut Vec<Change>,
) {
    plan_one("health", current, desired, changes, |a, b| {
        let mut d = Vec::new();
        diff_display(&mut d, "probe", probe(&a.probe), probe(&b.probe));
        diff_display(&mut d, "every", a.every, b.every);
        diff_display(&mut d, "timeout", a.timeout, b.timeout);
        d
    });
}

fn plan_logging(
    current: Option<&ServiceSpec>,
    desired: Option<&ServiceSpec>,
    changes: &mut Vec<Change>,
) {
    plan_one(
        "logging",
        current.map(|c| &c.logging),
        desired.map(|d| &d.logging),
        changes,
        |a, b| {
            let mut d = Vec::new();
            diff_display(&mut d, "retention", a.retention, b.retention);
            d
        },
    );
}

/// An object that exists exactly once per service.
fn plan_one<T>(
    address: &str,
    current: Option<&T>,
    desired: Option<&T>,
    changes: &mut Vec<Change>,
    details: impl Fn(&T, &T) -> Vec<String>,
) {
    match (current, desired) {
        (None, Some(_)) => changes.push(change(Action::Create, address.to_string(), vec![])),
        (Some(_), None) => changes.push(change(Action::Destroy, address.to_string(), vec![])),
        (Some(a), Some(b)) => {
            let d = details(a, b);
            if !d.is_empty() {
                changes.push(change(Action::Update, address.to_string(), d));
            }
        }
        (None, None) => {}
    }
}

fn by_name<'a, T: 'a, I>(
    spec: Option<&'a ServiceSpec>,
    items: impl Fn(&'a ServiceSpec) -> I,
) -> BTreeMap<String, &'a T>
where
    I: Iterator<Item = (String, &'a T)>,
{
    spec.map(|s| items(s).collect()).unwrap_or_default()
}

/// Objects identified by name: created, updated in place or destroyed, in name order.
fn plan_named<T>(
    kind: &str,
    current: BTreeMap<String, &T>,
    desired: BTreeMap<String, &T>,
    details: fn(&T, &T) -> Vec<String>,
    changes: &mut Vec<Change>,
) {
    let names: BTreeSet<&String> = current.keys().chain(desired.keys()).collect();
    for name in names {
        plan_one(
            &format!("{kind} {name}"),
            current.get(name).copied(),
            desired.get(name).copied(),
            changes,
            details,
        );
    }
}

fn sensor_details(a: &SensorSpec, b: &SensorSpec) -> Vec<String> {
    let mut d = Vec::new();
    diff_display(&mut d, "kind", a.kind.to_string(), b.kind.to_string());
    diff_display(&mut d, "every", a.every, b.every);
    diff_display(&mut d, "timeout", a.timeout, b.timeout);
    let conditions = |s: &SensorSpec| s.expect.iter().map(condition).collect::<Vec<_>>();
    diff(&mut d, "expect", &conditions(a), &conditions(b));
    d
}

fn alert_details(a: &AlertSpec, b: &AlertSpec) -> Vec<String> {
    let mut d = Vec::new();
    diff_display(&mut d, "sensor", &a.sensor, &b.sensor);
    diff_display(&mut d, "when", alert_when(&a.when), alert_when(&b.when));
    diff_display(&mut d, "severity", a.severity.as_str(), b.severity.as_str());
    diff_display(&mut d, "plan", &a.plan, &b.plan);
    d
}

fn action_plan_details(a: &ActionPlan, b: &ActionPlan) -> Vec<String> {
    let mut d = Vec::new();
    if a.runbook != b.runbook {
        d.push(format!(
            "runbook: {} -> {}",
            opt(a.runbook.as_ref()),
            opt(b.runbook.as_ref())
        ));
    }
    let targets = |p: &ActionPlan| {
        p.notify
            .iter()
            .map(|t| match t {
                NotifyTarget::Webhook { url } => format!("webhook {url}"),
            })
            .collect::<Vec<_>>()
    };
    diff(&mut d, "notify", &targets(a), &targets(b));
    let escalate = |p: &ActionPlan| match &p.escalate {
        Some(e) => format!("after {} to {}", e.after, e.to),
        None => "(none)".to_string(),
    };
    diff_display(&mut d, "escalate", escalate(a), escalate(b));
    d
}

fn probe(p: &HealthProbe) -> String {
    match p {
        HealthProbe::Http { path } => format!("http {path}"),
        HealthProbe::Tcp => "tcp".to_string(),
    }
}

fn condition(c: &Condition) -> String {
    match c {
        Condition::Status { op, value } => format!("status {} {value}", op.as_str()),
        Condition::Latency { op, value } => format!("latency {} {value}", op.as_str()),
        Condition::BodyContains { text, negated } => {
            let not = if *negated { "not " } else { "" };
            format!("body {not}contains '{text}'")
        }
        Condition::Value { op, value } => format!("value {} {value}", op.as_str()),
    }
}

fn alert_when(w: &AlertCondition) -> String {
    match w {
        AlertCondition::Failing { for_ } => format!("failing for {for_}"),
        AlertCondition::Value {
            op,
            threshold,
            for_,
        } => format!("value {} {threshold} for {for_}", op.as_str()),
    }
}

fn change(action: Action, address: String, details: Vec<String>) -> Change {
    Change {
        action,
        address,
        details,
    }
}

fn diff<T: PartialEq + fmt::Debug>(out: &mut Vec<String>, field: &str, a: &T, b: &T) {
    if a != b {
        out.push(format!("{field}: {a:?} -> {b:?}"));
    }
}

fn diff_display<T: PartialEq + fmt::Display>(out: &mut Vec<String>, field: &str, a: T, b: T) {
    if a != b {
        out.push(format!("{field}: {a} -> {b}"));
    }
}

fn opt(v: Option<&String>) -> String {
    match v {
        Some(s) => format!("{s:?}"),
        None => "(none)".to_string(),
    }
}

#[cfg(test)]
mod tests;
