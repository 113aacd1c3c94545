//! The service file, v1: YAML text → [`ServiceSpec`] or every problem at once.
//!
//! The YAML is first read into a tree that knows positions ([`peng_yaml::tree`]); this module then
//! walks it by hand, section by section. Each check reports into one list and carries on, so a
//! file with five mistakes gets five diagnostics; a value that failed its check is left out of
//! the later checks that depend on it, which keeps one mistake from producing a cascade.
//! Unknown keys are errors, with a suggestion when a known key is close. The limits of
//! [`crate::limits`] are checked here and while the tree is read.
//!
//! This file holds the top level; each section has a file of its own (`stages`, `run`,
//! `logging`, `database`, `sensors`, `alerts`, `action_plans`), and `shared` what several of
//! them read with beyond [`peng_yaml`]'s values.

mod action_plans;
mod alerts;
mod database;
mod logging;
mod run;
mod sensors;
mod shared;
mod stages;

use std::collections::{BTreeMap, BTreeSet};

use peng_core::{ServiceName, TeamName};
use peng_yaml::tree::{Node, Pos};
use peng_yaml::{fields, parse_file, string, Cx, Diagnostics};

use crate::model::{LoggingSpec, ServiceSpec, API_VERSION};

use self::action_plans::action_plans;
use self::alerts::alerts;
use self::database::database;
use self::logging::{logging, DEFAULT_RETENTION};
use self::run::run;
use self::sensors::sensors;
use self::stages::stages;

// The keys of each section. The schema module's tests check that the JSON Schema describes
// exactly these, so the two cannot drift apart.
#[cfg(test)]
pub(crate) use self::{
    action_plans::{ESCALATE_KEYS, NOTIFY_KEYS, PLAN_KEYS},
    alerts::ALERT_KEYS,
    database::{BACKUP_KEYS, DATABASE_KEYS},
    logging::LOGGING_KEYS,
    run::{HEALTH_KEYS, RESOURCES_KEYS, RUN_KEYS},
    sensors::sensor_keys,
    stages::STAGE_KEYS,
};

// What the JSON Schema and the platform file read with.
pub(crate) use self::database::{db_version, offering_name_problem};
pub(crate) use self::sensors::kinds_listed;

/// Parses and validates one service file. `file_name` is only used in diagnostics.
pub fn parse_service(file_name: &str, text: &str) -> Result<ServiceSpec, Diagnostics> {
    parse_file(
        file_name,
        text,
        "the file is empty; a service file needs apiVersion, service, team, stages and run",
        service,
    )
}

/// The keys of the top level.
pub(crate) const TOP_KEYS: &[&str] = &[
    "apiVersion",
    "service",
    "team",
    "stages",
    "run",
    "logging",
    "database",
    "sensors",
    "alerts",
    "action_plans",
];

fn service(cx: &mut Cx, root: &Node) -> Option<ServiceSpec> {
    let top = fields(
        cx,
        root,
        Pos::START,
        "the service file",
        TOP_KEYS,
        &[(
            "config",
            "'config' is not supported by this version of peng",
        )],
    )?;

    match top.get("apiVersion") {
        None => cx.err(
            Pos::START,
            format!("missing key 'apiVersion'; this peng reads '{API_VERSION}'"),
        ),
        Some(node) => match node {
            Node::Scalar(s) if s.value == API_VERSION => {}
            other => cx.err(
                other.pos(),
                format!(
                    "unsupported apiVersion {}; this peng reads '{API_VERSION}'",
                    other.describe()
                ),
            ),
        },
    }

    let service = top.require(cx, "service").and_then(|node| {
        let s = string(cx, node, "'service'", "a service name")?;
        ServiceName::parse(&s.value)
            .map_err(|e| cx.err(s.pos, e.to_string()))
            .ok()
    });
    let team = top.require(cx, "team").and_then(|node| {
        let s = string(cx, node, "'team'", "a team name")?;
        TeamName::parse(&s.value)
            .map_err(|e| cx.err(s.pos, e.to_string()))
            .ok()
    });
    let stages = match top.entry("stages") {
        Some(e) => stages(cx, e),
        None => {
            cx.err(
                Pos::START,
                "missing key 'stages'; declare at least one stage, like 'production: { instances: 1 }'",
            );
            None
        }
    };
    let run = match top.entry("run") {
        Some(e) => run(cx, e),
        None => {
            cx.err(
                Pos::START,
                "missing key 'run'; it says how to start the service",
            );
            None
        }
    };
    let logging = match top.entry("logging").filter(|e| !e.value.is_null()) {
        Some(e) => logging(cx, e),
        None => Some(LoggingSpec {
            retention: DEFAULT_RETENTION,
        }),
    };
    let plans = match top.entry("action_plans").filter(|e| !e.value.is_null()) {
        Some(e) => action_plans(cx, e),
        None => Some(BTreeMap::new()),
    };
    let database = match top.entry("database").filter(|e| !e.value.is_null()) {
        Some(e) => database(cx, e).map(Some),
        None => Some(None),
    };
    // Declared is enough for the rules that depend on it: a broken section is reported once,
    // not again at every sql sensor and db.* alert.
    let has_database = top.get_some("database").is_some();
    let sensors = match top.get_some("sensors") {
        Some(node) => sensors(cx, node, has_database),
        None => Some(Vec::new()),
    };
    // References are checked against every name declared, even in a sensor or plan that has
    // problems of its own, so that one mistake is reported once.
    let known_sensors = match top.get_some("sensors") {
        Some(node) => declared_sensor_names(node),
        None => Some(BTreeSet::new()),
    };
    let known_plans = match top.get_some("action_plans") {
        Some(node) => declared_plan_names(node),
        None => Some(BTreeSet::new()),
    };
    let alerts = match top.get_some("alerts") {
        Some(node) => alerts(
            cx,
            node,
            known_sensors.as_ref(),
            has_database,
            known_plans.as_ref(),
        ),
        None => Some(Vec::new()),
    };

    Some(ServiceSpec {
        service: service?,
        team: team?,
        stages: stages?,
        run: run?,
        logging: logging?,
        database: database?,
        sensors: sensors?,
        alerts: alerts?,
        action_plans: plans?,
    })
}

/// Names of the sensors as written, or `None` when the section is not a list.
fn declared_sensor_names(node: &Node) -> Option<BTreeSet<&str>> {
    let Node::Seq(seq) = node else { return None };
    Some(
        seq.items
            .iter()
            .filter_map(|item| match item {
                Node::Map(map) => match map.get("name").map(|e| &e.value) {
                    Some(Node::Scalar(s)) => Some(s.value.as_str()),
                    _ => None,
                },
                _ => None,
            })
            .collect(),
    )
}

/// Names of the action plans as written, or `None` when the section is not a mapping.
fn declared_plan_names(node: &Node) -> Option<BTreeSet<&str>> {
    let Node::Map(map) = node else { return None };
    Some(map.entries.iter().map(|e| e.key.as_str()).collect())
}

#[cfg(test)]
mod tests;
