//! What a sensor kind provides ([`Kind`]), and what the file format asks of every kind at once
//! ([`KindInfo`]).

use std::fmt;

use peng_yaml::tree::Entry;
use peng_yaml::{fields, Cx, Fields};
use serde_json::Value;

#[cfg(feature = "probe")]
use crate::probe::{Clients, Failed, Observation, Run};

/// What a run observes, and what an `expect` condition may check: `status == 200`,
/// `latency < 500ms`, `body contains 'x'`, `value > 0`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Subject {
    Status,
    Latency,
    Body,
    Value,
}

/// What a kind may know of the file around its sensor.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Context {
    /// The file has a `database` section (declared is enough, even with problems of its own, so
    /// that a broken section is reported once and not again at every sensor).
    pub has_database: bool,
}

/// One sensor kind: its settings type, implemented in the kind's folder and listed once in the
/// registry (`src/kinds/mod.rs`).
///
/// `Debug` must print the settings as a struct named like the registry's variant (derive it on
/// `struct Http { … }`): the validated file is shown that way (`peng-spec`'s test cases), and
/// `Display` is the kind as a plan shows it (`http GET /books`).
pub trait Kind: fmt::Debug + fmt::Display + Clone + PartialEq + Sized {
    /// The key that selects the kind in a sensor: `http`.
    const KEY: &'static str;
    /// The keys of its mapping, which its [`schema`](Kind::schema) describes alike; empty when
    /// the kind is written as one value (`sql: "SELECT …"`).
    const KEYS: &'static [&'static str];
    /// A sensor of this kind in a message: `an http sensor`.
    const A_SENSOR: &'static str;
    /// What a sensor of this kind can check, said when a condition does not fit it: `a tcp
    /// sensor can only check latency`.
    const CHECKS: &'static str;
    /// The subjects its runs observe, which its `expect` conditions may check.
    const OBSERVES: &'static [Subject];

    /// Reads the kind's entry of a sensor (`http: { path: /books }`); `sensor` names the sensor
    /// in messages (`sensor 'checkout-page'`). Every problem is reported into `cx`; `None` when
    /// there was one.
    fn parse(cx: &mut Cx, entry: &Entry, sensor: &str, file: &Context) -> Option<Self>;

    /// The JSON Schema of the kind's entry, published at `/$defs/sensor/properties/KEY` of the
    /// service file's schema, whose `$defs` (`url`, `duration`, `name`) it may refer to.
    fn schema() -> Value;

    /// Whether a run needs a running instance of the stage to probe.
    fn needs_instance(&self) -> bool;

    /// One run: what it observed, or why it observed nothing. The caller bounds it in time and
    /// judges the observation against the sensor's conditions.
    #[cfg(feature = "probe")]
    fn probe(
        &self,
        clients: &Clients,
        run: &Run<'_>,
    ) -> impl std::future::Future<Output = Result<Observation, Failed>> + Send;
}

/// What the file format asks of a kind without a sensor of it at hand; [`crate::KINDS`] holds
/// one per kind, in registry order.
#[derive(Debug, Clone, Copy)]
pub struct KindInfo {
    pub key: &'static str,
    pub keys: &'static [&'static str],
    pub a_sensor: &'static str,
    pub observes: &'static [Subject],
    pub schema: fn() -> Value,
}

impl KindInfo {
    pub const fn of<K: Kind>() -> KindInfo {
        KindInfo {
            key: K::KEY,
            keys: K::KEYS,
            a_sensor: K::A_SENSOR,
            observes: K::OBSERVES,
            schema: K::schema,
        }
    }
}

/// The mapping of a kind written as one (`tcp: { port: 5432 }`), checked against `allowed`;
/// `every` and `timeout` written inside it are pointed back to the sensor itself. Messages
/// name it `'tcp' of SENSOR` ([`Fields::what`]).
pub(crate) fn settings<'a>(
    cx: &mut Cx,
    entry: &'a Entry,
    sensor: &str,
    allowed: &[&str],
) -> Option<Fields<'a>> {
    let block = entry.key.as_str();
    let misplaced = |key: &str| {
        format!("'{key}' belongs to {sensor} itself, next to 'name', not inside '{block}'")
    };
    let (timeout, every) = (misplaced("timeout"), misplaced("every"));
    fields(
        cx,
        &entry.value,
        entry.key_pos,
        &format!("'{block}' of {sensor}"),
        allowed,
        &[("timeout", &timeout), ("every", &every)],
    )
}

/// Reads `text`, a mapping of one kind's key to its settings, as the kind of `sensor 'x'`: the
/// kind, or the diagnostics.
#[cfg(test)]
pub(crate) fn read(text: &str, file: Context) -> Result<crate::SensorKind, Vec<String>> {
    use peng_yaml::tree::{self, Node};

    let (root, problems) = tree::load(text);
    assert!(problems.is_empty(), "{problems:?}");
    let Some(Node::Map(map)) = root else {
        panic!("a mapping: {text}")
    };
    let mut cx = Cx::default();
    let kind = crate::SensorKind::parse(&mut cx, &map.entries[0], "sensor 'x'", &file);
    let diagnostics = cx.into_diagnostics("peng.yaml");
    match kind {
        Some(kind) if diagnostics.is_empty() => Ok(kind),
        _ => Err(diagnostics.iter().map(ToString::to_string).collect()),
    }
}
