//! The service file, v1: YAML text → [`ServiceSpec`] or every problem at once.
//!
//! The YAML is first read into a tree that knows positions ([`crate::tree`]); this module then
//! walks it by hand, section by section. Each check reports into one list and carries on, so a
//! file with five mistakes gets five diagnostics; a value that failed its check is left out of
//! the later checks that depend on it, which keeps one mistake from producing a cascade.
//! Unknown keys are errors, with a suggestion when a known key is close. The limits of
//! [`crate::limits`] are checked here and while the tree is read.

use std::collections::{BTreeMap, BTreeSet};

use peng_core::{ByteSize, Duration, ServiceName, StageName, TeamName};

use crate::condition::{parse_condition, parse_when};
use crate::error::{Diagnostic, Diagnostics};
use crate::limits::*;
use crate::model::*;
use crate::tree::{self, Entry, Map, Node, Pos, Scalar};

/// Parses and validates one service file. `file_name` is only used in diagnostics.
pub fn parse_service(file_name: &str, text: &str) -> Result<ServiceSpec, Diagnostics> {
    parse_file(
        file_name,
        text,
        "the file is empty; a service file needs apiVersion, service, team, stages and run",
        service,
    )
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

// The keys of each section. The schema module's tests check that the JSON Schema describes
// exactly these, so the two cannot drift apart.
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
pub(crate) const STAGE_KEYS: &[&str] = &["instances"];
pub(crate) const RUN_KEYS: &[&str] = &[
    "command",
    "env",
    "workdir",
    "writable",
    "health",
    "resources",
];
pub(crate) const HEALTH_KEYS: &[&str] = &["http", "tcp", "every", "timeout"];
pub(crate) const RESOURCES_KEYS: &[&str] = &["cpu", "memory", "pids"];
pub(crate) const LOGGING_KEYS: &[&str] = &["retention"];
pub(crate) const DATABASE_KEYS: &[&str] = &[
    "engine", "version", "plan", "mode", "server", "replica", "backup", "protect",
];
pub(crate) const BACKUP_KEYS: &[&str] = &["every", "retention"];
pub(crate) const SENSOR_KEYS: &[&str] =
    &["name", "http", "tcp", "sql", "every", "timeout", "expect"];
pub(crate) const HTTP_KEYS: &[&str] = &["path", "url", "method"];
pub(crate) const TCP_KEYS: &[&str] = &["host", "port"];
pub(crate) const ALERT_KEYS: &[&str] = &["name", "sensor", "when", "severity", "plan"];
pub(crate) const PLAN_KEYS: &[&str] = &["runbook", "notify", "escalate"];
pub(crate) const NOTIFY_KEYS: &[&str] = &["webhook"];
pub(crate) const ESCALATE_KEYS: &[&str] = &["after", "to"];

/// Methods an http sensor may use.
pub(crate) const HTTP_METHODS: &[&str] =
    &["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"];

/// The name alerts use for the automatic per-instance health check.
const HEALTH_SENSOR: &str = "health";

const DEFAULT_HEALTH_EVERY: Duration = Duration::from_secs(10);
const DEFAULT_HEALTH_TIMEOUT: Duration = Duration::from_secs(2);
const DEFAULT_SENSOR_EVERY: Duration = Duration::from_secs(30);
const DEFAULT_SENSOR_TIMEOUT: Duration = Duration::from_secs(5);
const MIN_SENSOR_EVERY: Duration = Duration::from_secs(1);
const DEFAULT_RETENTION: Duration = Duration::from_secs(7 * 86_400);
const DEFAULT_CPU: f64 = 0.25;
const DEFAULT_MEMORY: ByteSize = ByteSize(256 << 20);
const DEFAULT_DB_PLAN: &str = "small";
const DEFAULT_BACKUP_EVERY: Duration = Duration::from_secs(86_400);
const DEFAULT_BACKUP_RETENTION: Duration = Duration::from_secs(7 * 86_400);

const NOT_SUPPORTED: &str = "is not supported by this version of peng";

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
fn object_name(cx: &mut Cx, node: &Node, label: &str, what: &str) -> Option<String> {
    let s = string(cx, node, label, &format!("a {what}"))?;
    match TeamName::parse(&s.value) {
        Ok(_) => Some(s.value.clone()),
        Err(_) => {
            cx.err(s.pos, name_rule(what, &s.value));
            None
        }
    }
}

fn name_rule(what: &str, value: &str) -> String {
    if value.len() > 63 {
        format!("{what} '{value}' is longer than 63 characters")
    } else {
        format!(
            "{what} '{value}' must start with a lowercase letter and contain only a-z, 0-9 and '-' (not at the end)"
        )
    }
}

/// An absolute http(s) URL with a host.
fn url(cx: &mut Cx, node: &Node, label: &str) -> Option<String> {
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

fn stages(cx: &mut Cx, entry: &Entry) -> Option<BTreeMap<StageName, StageSpec>> {
    let Node::Map(map) = &entry.value else {
        cx.err(
            entry.value.pos(),
            format!(
                "'stages': expected a mapping of stage name to {{ instances: N }}, found {}",
                entry.value.describe()
            ),
        );
        return None;
    };
    if map.entries.is_empty() {
        cx.err(entry.key_pos, "'stages' must declare at least one stage");
        return None;
    }
    if map.entries.len() > MAX_STAGES {
        cx.err(
            entry.key_pos,
            format!(
                "{} stages declared; at most {MAX_STAGES} are allowed",
                map.entries.len()
            ),
        );
        return None;
    }
    let mut out = BTreeMap::new();
    let mut ok = true;
    for stage in &map.entries {
        let name = match StageName::parse(&stage.key) {
            Ok(name) => Some(name),
            Err(e) => {
                cx.err(stage.key_pos, e.to_string());
                None
            }
        };
        let what = format!("stage '{}'", stage.key);
        let instances =
            fields(cx, &stage.value, stage.key_pos, &what, STAGE_KEYS, &[]).and_then(|f| {
                let node = f.require(cx, "instances")?;
                integer(cx, node, &f.label("instances"), 0, u64::from(MAX_INSTANCES))
            });
        match (name, instances) {
            (Some(name), Some(instances)) => {
                let instances = u32::try_from(instances).unwrap_or(MAX_INSTANCES);
                out.insert(name, StageSpec { instances });
            }
            _ => ok = false,
        }
    }
    ok.then_some(out)
}

fn run(cx: &mut Cx, entry: &Entry) -> Option<RunSpec> {
    let f = fields(cx, &entry.value, entry.key_pos, "run", RUN_KEYS, &[])?;
    let command = f.require(cx, "command").and_then(|node| command(cx, node));
    let env = match f.entry("env").filter(|e| !e.value.is_null()) {
        Some(e) => env(cx, e),
        None => Some(BTreeMap::new()),
    };
    let workdir = match f.get("workdir") {
        Some(node) => non_empty_string(cx, node, &f.label("workdir"), "a directory")
            .and_then(|s| inside_service_dir(cx, s, "run.workdir"))
            .map(|dir| Some(dir).filter(|dir| dir != SERVICE_DIR)),
        None => Some(None),
    };
    let writable = match f.get_some("writable") {
        Some(node) => writable(cx, node, &f.label("writable")),
        None => Some(Vec::new()),
    };
    let health = match f.entry("health").filter(|e| !e.value.is_null()) {
        Some(e) => health(cx, e),
        None => Some(HealthCheck {
            probe: HealthProbe::Tcp,
            every: DEFAULT_HEALTH_EVERY,
            timeout: DEFAULT_HEALTH_TIMEOUT,
        }),
    };
    let resources = match f.entry("resources").filter(|e| !e.value.is_null()) {
        Some(e) => resources(cx, e),
        None => Some(Resources {
            cpu: DEFAULT_CPU,
            memory: DEFAULT_MEMORY,
            pids: None,
        }),
    };
    Some(RunSpec {
        command: command?,
        env: env?,
        workdir: workdir?,
        writable: writable?,
        health: health?,
        resources: resources?,
    })
}

/// `["./bin/app", "--port", "${PORT}"]`, or one string split on whitespace.
fn command(cx: &mut Cx, node: &Node) -> Option<Vec<String>> {
    const EXPECTED: &str =
        "a list of strings like [\"./bin/app\", \"--port\", \"${PORT}\"], or one string";
    // Each argument with where it was written.
    let argv: Vec<(String, Pos)> = match node {
        Node::Scalar(s) if !s.is_null() => s
            .value
            .split_whitespace()
            .map(|arg| (arg.to_string(), s.pos))
            .collect(),
        Node::Seq(seq) => {
            let mut argv = Vec::with_capacity(seq.items.len());
            for item in &seq.items {
                match item {
                    Node::Scalar(s) if !s.is_null() => argv.push((s.value.clone(), s.pos)),
                    other => {
                        cx.err(
                            other.pos(),
                            format!(
                                "'command' in run: expected a list of strings, found {} in the list",
                                other.describe()
                            ),
                        );
                        return None;
                    }
                }
            }
            argv
        }
        other => {
            cx.err(
                other.pos(),
                format!(
                    "'command' in run: expected {EXPECTED}, found {}",
                    other.describe()
                ),
            );
            return None;
        }
    };
    match argv.first() {
        None => {
            cx.err(
                node.pos(),
                "'command' in run: the program to start is empty",
            );
            return None;
        }
        Some((program, pos)) if program.trim().is_empty() => {
            cx.err(*pos, "'command' in run: the program to start is empty");
            return None;
        }
        Some(_) => {}
    }
    let mut ok = true;
    for (index, (arg, pos)) in argv.iter().enumerate() {
        if arg.contains('\0') {
            let which = match index {
                0 => "the program".to_string(),
                n => format!("argument {n}"),
            };
            cx.err(
                *pos,
                format!(
                    "'command' in run: {which} '{}' contains a NUL byte, which cannot be passed to a process",
                    shown(arg)
                ),
            );
            ok = false;
        }
    }
    ok.then(|| argv.into_iter().map(|(arg, _)| arg).collect())
}

/// How the directory of the service file itself is written in the model.
const SERVICE_DIR: &str = ".";

/// A directory inside the service file's directory, normalized without looking at the disk:
/// `./a/../b` is `b`, `a/` is `a`, and the directory itself is `.`. An absolute path, one
/// that leaves the directory with `..`, and a NUL byte are refused at the value.
fn inside_service_dir(cx: &mut Cx, s: &Scalar, what: &str) -> Option<String> {
    let value = s.value.as_str();
    if value.contains('\0') {
        cx.err(
            s.pos,
            format!(
                "{what} '{}' contains a NUL byte, which no path can hold",
                shown(value)
            ),
        );
        return None;
    }
    if value.starts_with('/') {
        cx.err(
            s.pos,
            format!("{what} '{value}' must be relative to the service file's directory"),
        );
        return None;
    }
    let mut parts: Vec<&str> = Vec::new();
    for part in value.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                if parts.pop().is_none() {
                    cx.err(
                        s.pos,
                        format!(
                            "{what} '{value}' leaves the service's directory; give a path inside it"
                        ),
                    );
                    return None;
                }
            }
            name => parts.push(name),
        }
    }
    if parts.is_empty() {
        return Some(SERVICE_DIR.to_string());
    }
    Some(parts.join("/"))
}

/// `writable: [data, tmp]`: directories inside the service's, normalized, duplicates dropped.
fn writable(cx: &mut Cx, node: &Node, label: &str) -> Option<Vec<String>> {
    let Node::Seq(seq) = node else {
        cx.err(
            node.pos(),
            format!(
                "{label}: expected a list of directories like [data, tmp], found {}",
                node.describe()
            ),
        );
        return None;
    };
    if seq.items.len() > MAX_WRITABLE {
        cx.err(
            seq.pos,
            format!(
                "{label}: {} directories; at most {MAX_WRITABLE} are allowed",
                seq.items.len()
            ),
        );
        return None;
    }
    let mut out: Vec<String> = Vec::with_capacity(seq.items.len());
    let mut ok = true;
    for item in &seq.items {
        let dir = non_empty_string(cx, item, label, "a directory")
            .and_then(|s| inside_service_dir(cx, s, "run.writable"));
        match dir {
            Some(dir) if out.contains(&dir) => {}
            Some(dir) => out.push(dir),
            None => ok = false,
        }
    }
    ok.then_some(out)
}

fn env(cx: &mut Cx, entry: &Entry) -> Option<BTreeMap<String, String>> {
    let Node::Map(map) = &entry.value else {
        cx.err(
            entry.value.pos(),
            format!(
                "'env' in run: expected a mapping of variable name to value, found {}",
                entry.value.describe()
            ),
        );
        return None;
    };
    if map.entries.len() > MAX_ENV {
        cx.err(
            entry.key_pos,
            format!(
                "{} environment variables; at most {MAX_ENV} are allowed",
                map.entries.len()
            ),
        );
        return None;
    }
    let mut out = BTreeMap::new();
    let mut ok = true;
    for var in &map.entries {
        let key = var.key.as_str();
        let mut chars = key.chars();
        let well_formed = chars
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !well_formed {
            cx.err(
                var.key_pos,
                format!(
                    "environment variable name '{}' must start with a letter or '_' and contain only letters, digits and '_'",
                    shown(key)
                ),
            );
            ok = false;
        } else if key == "PORT" || key.starts_with("PENG_") {
            cx.err(
                var.key_pos,
                format!("environment variable '{key}' is reserved; peng sets PORT and PENG_* for each instance"),
            );
            ok = false;
        }
        match string(
            cx,
            &var.value,
            &format!("environment variable '{}'", shown(key)),
            "a string",
        ) {
            Some(s) if s.value.contains('\0') => {
                cx.err(
                    s.pos,
                    format!(
                        "environment variable '{}': the value contains a NUL byte, which cannot be passed to a process",
                        shown(key)
                    ),
                );
                ok = false;
            }
            Some(s) => {
                out.insert(key.to_string(), s.value.clone());
            }
            None => ok = false,
        }
    }
    ok.then_some(out)
}

fn health(cx: &mut Cx, entry: &Entry) -> Option<HealthCheck> {
    let f = fields(
        cx,
        &entry.value,
        entry.key_pos,
        "run.health",
        HEALTH_KEYS,
        &[],
    )?;
    let probe = match (f.entry("http"), f.entry("tcp")) {
        (Some(_), Some(tcp)) => {
            cx.err(
                tcp.key_pos,
                "run.health has both 'http' and 'tcp'; choose one",
            );
            None
        }
        (Some(http), None) => {
            let s = non_empty_string(cx, &http.value, &f.label("http"), "a path like /health");
            match s {
                Some(s) if s.value.starts_with('/') => Some(HealthProbe::Http {
                    path: s.value.clone(),
                }),
                Some(s) => {
                    cx.err(
                        s.pos,
                        format!(
                            "'http' in run.health: the path '{}' must start with '/'",
                            s.value
                        ),
                    );
                    None
                }
                None => None,
            }
        }
        (None, Some(tcp)) => match boolean(&tcp.value) {
            Some(true) => Some(HealthProbe::Tcp),
            _ => {
                cx.err(
                    tcp.value.pos(),
                    format!(
                        "'tcp' in run.health: expected true, found {}",
                        tcp.value.describe()
                    ),
                );
                None
            }
        },
        (None, None) => {
            cx.err(
                entry.key_pos,
                "run.health needs 'http: /path' or 'tcp: true'",
            );
            None
        }
    };
    let (every, timeout) = schedule(cx, &f, DEFAULT_HEALTH_EVERY, DEFAULT_HEALTH_TIMEOUT)?;
    Some(HealthCheck {
        probe: probe?,
        every,
        timeout,
    })
}

/// `every` and `timeout` of a health check or sensor. The default timeout is shortened to half
/// of `every` when `every` is short, so `every: 2s` alone is valid.
fn schedule(
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

fn resources(cx: &mut Cx, entry: &Entry) -> Option<Resources> {
    let f = fields(
        cx,
        &entry.value,
        entry.key_pos,
        "run.resources",
        RESOURCES_KEYS,
        &[],
    )?;
    let cpu = match f.get("cpu") {
        Some(node) => {
            let parsed = match node {
                Node::Scalar(s) if !s.quoted => s.value.parse::<f64>().ok(),
                _ => None,
            };
            match parsed.filter(|v| v.is_finite() && *v > 0.0) {
                Some(cpu) => Some(cpu),
                None => {
                    cx.err(
                        node.pos(),
                        format!(
                            "{}: expected a number of CPUs greater than 0, like 0.5, found {}",
                            f.label("cpu"),
                            node.describe()
                        ),
                    );
                    None
                }
            }
        }
        None => Some(DEFAULT_CPU),
    };
    let memory = match f.get("memory") {
        Some(node) => string(cx, node, &f.label("memory"), "a size like 512Mi").and_then(|s| {
            match ByteSize::parse(&s.value) {
                Ok(size) if size.bytes() > 0 => Some(size),
                Ok(_) => {
                    cx.err(s.pos, format!("{}: must be more than 0", f.label("memory")));
                    None
                }
                Err(e) => {
                    cx.err(s.pos, format!("{}: {e}", f.label("memory")));
                    None
                }
            }
        }),
        None => Some(DEFAULT_MEMORY),
    };
    let pids = match f.get("pids") {
        Some(node) => integer(cx, node, &f.label("pids"), 1, u64::from(MAX_PIDS))
            .map(|pids| Some(u32::try_from(pids).unwrap_or(MAX_PIDS))),
        None => Some(None),
    };
    Some(Resources {
        cpu: cpu?,
        memory: memory?,
        pids: pids?,
    })
}

fn logging(cx: &mut Cx, entry: &Entry) -> Option<LoggingSpec> {
    let f = fields(
        cx,
        &entry.value,
        entry.key_pos,
        "logging",
        LOGGING_KEYS,
        &[],
    )?;
    let retention = match f.get("retention") {
        Some(node) => {
            let retention = duration(cx, node, &f.label("retention"))?;
            if retention.as_std().is_zero() || retention > MAX_RETENTION {
                cx.err(
                    node.pos(),
                    format!(
                        "{}: {retention} is out of range; keep logs for more than 0s and at most 365d",
                        f.label("retention")
                    ),
                );
                return None;
            }
            retention
        }
        None => DEFAULT_RETENTION,
    };
    Some(LoggingSpec { retention })
}

fn database(cx: &mut Cx, entry: &Entry) -> Option<DatabaseSpec> {
    let f = fields(
        cx,
        &entry.value,
        entry.key_pos,
        "database",
        DATABASE_KEYS,
        &[],
    )?;
    let engine = match f.get("engine") {
        Some(node) => {
            string(cx, node, &f.label("engine"), "mariadb").and_then(|s| match s.value.as_str() {
                "mariadb" => Some(DbEngine::MariaDb),
                other => {
                    cx.err(
                        s.pos,
                        format!(
                            "{}: unknown engine '{other}'; this peng provides mariadb",
                            f.label("engine")
                        ),
                    );
                    None
                }
            })
        }
        None => Some(DbEngine::MariaDb),
    };
    let version = f
        .require(cx, "version")
        .and_then(|node| db_version(cx, node, &f.label("version")));
    let plan = match f.get("plan") {
        Some(node) => offering_name(cx, node, &f.label("plan"), "plan name"),
        None => Some(DEFAULT_DB_PLAN.to_string()),
    };
    let mode =
        match f.get("mode") {
            Some(node) => string(cx, node, &f.label("mode"), "dedicated or shared").and_then(|s| {
                match s.value.as_str() {
                    "dedicated" => Some(DbMode::Dedicated),
                    "shared" => Some(DbMode::Shared),
                    other => {
                        let mut message = format!("{}: unknown mode '{other}'", f.label("mode"));
                        match suggest(other, ["dedicated", "shared"].into_iter()) {
                            Some(close) => message.push_str(&format!("; did you mean '{close}'?")),
                            None => message.push_str("; use dedicated or shared"),
                        }
                        cx.err(s.pos, message);
                        None
                    }
                }
            }),
            None => Some(DbMode::Dedicated),
        };
    let server = match f.entry("server") {
        Some(e) => {
            let name = offering_name(cx, &e.value, &f.label("server"), "shared server name");
            if mode == Some(DbMode::Dedicated) {
                cx.err(
                    e.key_pos,
                    "'server' in database names a shared server; it needs 'mode: shared'",
                );
                None
            } else {
                name.map(Some)
            }
        }
        None => Some(None),
    };
    let replica = match f.entry("replica") {
        Some(e) => match boolean(&e.value) {
            Some(true) if mode == Some(DbMode::Shared) => {
                cx.err(
                    e.value.pos(),
                    "'replica: true' needs a dedicated database; a database on a shared server has no replica of its own",
                );
                None
            }
            Some(replica) => Some(replica),
            None => {
                cx.err(
                    e.value.pos(),
                    format!(
                        "{}: expected true or false, found {}",
                        f.label("replica"),
                        e.value.describe()
                    ),
                );
                None
            }
        },
        None => Some(false),
    };
    let backup = match f.entry("backup").filter(|e| !e.value.is_null()) {
        Some(e) => backup(cx, e),
        None => Some(BackupSpec {
            every: DEFAULT_BACKUP_EVERY,
            retention: DEFAULT_BACKUP_RETENTION,
        }),
    };
    let protect = match f.get("protect") {
        Some(node) => match boolean(node) {
            Some(protect) => Some(Some(protect)),
            None => {
                cx.err(
                    node.pos(),
                    format!(
                        "{}: expected true or false, found {}",
                        f.label("protect"),
                        node.describe()
                    ),
                );
                None
            }
        },
        None => Some(None),
    };
    Some(DatabaseSpec {
        engine: engine?,
        version: version?,
        plan: plan?,
        mode: mode?,
        server: server?,
        replica: replica?,
        backup: backup?,
        protect: protect?,
    })
}

/// `MAJOR.MINOR`, quoted or not: an unquoted `10.11` is read as written, so `10.10` stays
/// `10.10`.
pub(crate) fn db_version(cx: &mut Cx, node: &Node, label: &str) -> Option<String> {
    let s = string(cx, node, label, "a version like \"10.11\"")?;
    if is_db_version(&s.value) {
        return Some(s.value.clone());
    }
    cx.err(
        s.pos,
        format!(
            "{label}: '{}' is not a version; write MAJOR.MINOR like \"10.11\"",
            s.value
        ),
    );
    None
}

fn is_db_version(text: &str) -> bool {
    let number =
        |part: &str| (1..=4).contains(&part.len()) && part.bytes().all(|b| b.is_ascii_digit());
    match text.split_once('.') {
        Some((major, minor)) => number(major) && number(minor),
        None => false,
    }
}

/// The name of a database plan or a shared server of the platform file: lowercase letters,
/// digits and '-', at most [`MAX_OFFERING_NAME`] characters.
pub(crate) fn offering_name(cx: &mut Cx, node: &Node, label: &str, what: &str) -> Option<String> {
    let s = string(cx, node, label, &format!("a {what}"))?;
    match offering_name_problem(what, &s.value) {
        None => Some(s.value.clone()),
        Some(problem) => {
            cx.err(s.pos, problem);
            None
        }
    }
}

/// Why `value` is not a valid plan or shared server name, if it is not.
pub(crate) fn offering_name_problem(what: &str, value: &str) -> Option<String> {
    if value.is_empty() || value.len() > MAX_OFFERING_NAME {
        return Some(format!(
            "{what} '{value}' must be 1 to {MAX_OFFERING_NAME} characters long"
        ));
    }
    if !value
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    {
        return Some(format!(
            "{what} '{value}' may contain only a-z, 0-9 and '-'"
        ));
    }
    None
}

fn backup(cx: &mut Cx, entry: &Entry) -> Option<BackupSpec> {
    let f = fields(
        cx,
        &entry.value,
        entry.key_pos,
        "database.backup",
        BACKUP_KEYS,
        &[],
    )?;
    let every = match f.get("every") {
        Some(node) => duration(cx, node, &f.label("every")).and_then(|every| {
            if every < MIN_BACKUP_EVERY {
                cx.err(
                    node.pos(),
                    format!(
                        "{}: {every} is too often; at least {MIN_BACKUP_EVERY}",
                        f.label("every")
                    ),
                );
                return None;
            }
            Some(every)
        }),
        None => Some(DEFAULT_BACKUP_EVERY),
    };
    let retention = match f.get("retention") {
        Some(node) => duration(cx, node, &f.label("retention")).and_then(|retention| {
            if retention > MAX_BACKUP_RETENTION {
                cx.err(
                    node.pos(),
                    format!(
                        "{}: {retention} is too long; keep backups at most 3650d",
                        f.label("retention")
                    ),
                );
                return None;
            }
            // Compared only when `every` is known, so one mistake is reported once.
            if let Some(every) = every.filter(|every| retention < *every) {
                cx.err(
                    node.pos(),
                    format!(
                        "{}: {retention} is shorter than every ({every}); a backup must be kept until the next one is taken",
                        f.label("retention")
                    ),
                );
                return None;
            }
            Some(retention)
        }),
        None => every.map(|every| DEFAULT_BACKUP_RETENTION.max(every)),
    };
    Some(BackupSpec {
        every: every?,
        retention: retention?,
    })
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
struct Unique {
    what: &'static str,
    seen: BTreeMap<String, Pos>,
}

impl Unique {
    fn new(what: &'static str) -> Self {
        Self {
            what,
            seen: BTreeMap::new(),
        }
    }

    fn check(&mut self, cx: &mut Cx, name: &str, pos: Pos) -> bool {
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

fn sensors(cx: &mut Cx, node: &Node, has_database: bool) -> Option<Vec<SensorSpec>> {
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

/// The label of list item `index` in messages: its name when it has a usable one.
fn item_label(kind: &str, item: &Node, index: usize) -> String {
    if let Node::Map(map) = item {
        if let Some(Node::Scalar(s)) = map.get("name").map(|e| &e.value) {
            if !s.is_null() && s.value.len() <= 63 {
                return format!("{kind} '{}'", s.value);
            }
        }
    }
    format!("{kind} #{}", index + 1)
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
fn has_statement_separator(query: &str) -> bool {
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

fn alerts(
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

/// Checks that `s` names a plan of the file.
fn plan_reference(cx: &mut Cx, s: &Scalar, plans: &BTreeSet<&str>, what: &str) -> Option<String> {
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

fn action_plans(cx: &mut Cx, entry: &Entry) -> Option<BTreeMap<String, ActionPlan>> {
    let Node::Map(map) = &entry.value else {
        cx.err(
            entry.value.pos(),
            format!(
                "'action_plans': expected a mapping of plan name to plan, found {}",
                entry.value.describe()
            ),
        );
        return None;
    };
    if map.entries.len() > MAX_ACTION_PLANS {
        cx.err(
            entry.key_pos,
            format!(
                "{} action plans declared; at most {MAX_ACTION_PLANS} are allowed",
                map.entries.len()
            ),
        );
        return None;
    }
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
    let f = fields(cx, &entry.value, entry.key_pos, &what, PLAN_KEYS, &[])?;
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
            fields(cx, &e.value, e.key_pos, &escalate_what, ESCALATE_KEYS, &[])
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
    let Node::Seq(seq) = node else {
        cx.err(
            node.pos(),
            format!(
                "{label}: expected a list like [{{ webhook: \"https://…\" }}], found {}",
                node.describe()
            ),
        );
        return None;
    };
    if seq.items.is_empty() {
        cx.err(
            seq.pos,
            format!("{label}: name at least one target to notify"),
        );
        return None;
    }
    if seq.items.len() > MAX_NOTIFY {
        cx.err(
            seq.pos,
            format!(
                "{label}: {} targets; at most {MAX_NOTIFY} are allowed",
                seq.items.len()
            ),
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

#[cfg(test)]
mod tests {
    use super::*;

    fn messages(text: &str) -> Vec<String> {
        match parse_service("peng.yaml", text) {
            Ok(spec) => panic!("expected errors, got {spec:?}"),
            Err(d) => d.iter().map(ToString::to_string).collect(),
        }
    }

    const MINIMAL: &str = "apiVersion: peng/v1\nservice: shop\nteam: books\nstages: { production: { instances: 1 } }\nrun: { command: ./shop }\n";

    #[test]
    fn minimal_file_gets_defaults() {
        let spec = parse_service("peng.yaml", MINIMAL).unwrap();
        assert_eq!(spec.run.command, vec!["./shop"]);
        assert_eq!(spec.run.health.probe, HealthProbe::Tcp);
        assert_eq!(spec.run.health.every, Duration::from_secs(10));
        assert_eq!(spec.run.health.timeout, Duration::from_secs(2));
        assert_eq!(spec.run.resources.cpu, 0.25);
        assert_eq!(spec.run.resources.memory, ByteSize(256 << 20));
        assert_eq!(spec.logging.retention, Duration::from_secs(7 * 86_400));
        assert!(spec.sensors.is_empty() && spec.alerts.is_empty() && spec.action_plans.is_empty());
    }

    #[test]
    fn unknown_key_suggests_the_close_one() {
        let text = format!(
            "{MINIMAL}sensors:\n  - name: checkout-page\n    http: {{ path: /checkout }}\n    every_s: 30s\n"
        );
        assert_eq!(
            messages(&text),
            vec!["peng.yaml:9:5: unknown key 'every_s' in sensor 'checkout-page'; did you mean 'every'?"]
        );
    }

    #[test]
    fn short_every_shortens_the_default_timeout() {
        let text = format!("{MINIMAL}sensors:\n  - {{ name: a, tcp: {{}}, every: 2s }}\n");
        let spec = parse_service("peng.yaml", &text).unwrap();
        assert_eq!(spec.sensors[0].timeout, Duration::from_secs(1));
    }

    #[test]
    fn missing_keys_name_the_parent() {
        let text = "apiVersion: peng/v1\nservice: shop\nteam: books\nstages: { production: {} }\nrun:\n  env: {}\n";
        assert_eq!(
            messages(text),
            vec![
                "peng.yaml:4:11: missing key 'instances' in stage 'production'",
                "peng.yaml:5:1: missing key 'command' in run",
            ]
        );
    }

    #[test]
    fn suggestions_need_to_be_close() {
        assert_eq!(
            suggest("every_s", SENSOR_KEYS.iter().copied()),
            Some("every")
        );
        assert_eq!(suggest("xyz", SENSOR_KEYS.iter().copied()), None);
    }

    #[test]
    fn one_sql_statement_with_quotes_and_comments() {
        for one in [
            "SELECT 1",
            "SELECT ';' FROM t",
            "SELECT \"a;b\", `c;d` FROM t WHERE x = 'it\\'s; fine'",
            "SELECT 1 -- no; more\nFROM t",
            "SELECT 1 # no; more\nFROM t",
            "SELECT /* a; b */ 1",
        ] {
            assert!(!has_statement_separator(one), "{one}");
        }
        for two in [
            "SELECT 1; SELECT 2",
            "SELECT 'a'; DROP TABLE t",
            "SELECT 1 /* x */; 2",
        ] {
            assert!(has_statement_separator(two), "{two}");
        }
    }

    #[test]
    fn database_protection_defaults_to_production() {
        let text = format!("{MINIMAL}database: {{ version: '10.11' }}\n");
        let database = parse_service("peng.yaml", &text).unwrap().database.unwrap();
        let (production, integration) = (
            StageName::parse("production").unwrap(),
            StageName::parse("integration").unwrap(),
        );
        assert!(database.protected(&production));
        assert!(!database.protected(&integration));
        let off = DatabaseSpec {
            protect: Some(false),
            ..database.clone()
        };
        assert!(!off.protected(&production));
        let on = DatabaseSpec {
            protect: Some(true),
            ..database
        };
        assert!(on.protected(&integration));
    }

    #[test]
    fn versions_are_major_dot_minor() {
        for good in ["10.11", "10.10", "11.4", "8.0"] {
            assert!(is_db_version(good), "{good}");
        }
        for bad in ["10", "10.", ".11", "10.11.2", "v10.11", "10.1a", ""] {
            assert!(!is_db_version(bad), "{bad}");
        }
    }

    fn run_with(lines: &str) -> String {
        MINIMAL.replace("run: { command: ./shop }\n", &format!("run:\n{lines}"))
    }

    #[test]
    fn directories_are_normalized_inside_the_service_directory() {
        for (written, workdir) in [
            (".", None),
            ("./", None),
            ("a/..", None),
            ("./a/../b", Some("b")),
            ("a/./b//c/", Some("a/b/c")),
            ("~/x", Some("~/x")),
        ] {
            let text = run_with(&format!("  command: ./shop\n  workdir: '{written}'\n"));
            let spec = parse_service("peng.yaml", &text).expect(written);
            assert_eq!(spec.run.workdir.as_deref(), workdir, "{written}");
        }
        let text = run_with("  command: ./shop\n  writable: [., data, ./data/, a/../data, logs]\n");
        let spec = parse_service("peng.yaml", &text).unwrap();
        assert_eq!(spec.run.writable, [".", "data", "logs"]);
        let text = run_with("  command: ./shop\n  writable:\n");
        assert!(parse_service("peng.yaml", &text)
            .unwrap()
            .run
            .writable
            .is_empty());
    }

    #[test]
    fn an_absolute_workdir_is_refused_at_its_value() {
        let text = run_with("  command: ./shop\n  workdir: /var/lib/peng\n");
        assert_eq!(
            messages(&text),
            vec!["peng.yaml:7:12: run.workdir '/var/lib/peng' must be relative to the service file's directory"]
        );
    }

    #[test]
    fn an_empty_program_is_refused_where_it_is_written() {
        let text = run_with("  command: [\"\", --port, '${PORT}']\n");
        assert_eq!(
            messages(&text),
            vec!["peng.yaml:6:13: 'command' in run: the program to start is empty"]
        );
        // Later arguments may be empty.
        let text = run_with("  command: [./shop, \"\"]\n");
        assert_eq!(
            parse_service("peng.yaml", &text).unwrap().run.command,
            ["./shop", ""]
        );
    }

    #[test]
    fn nul_bytes_are_refused_however_they_are_written() {
        for escape in ["\\0", "\\x00", "\\u0000", "\\U00000000"] {
            let text = run_with(&format!("  command: \"./shop {escape}x\"\n"));
            let all = messages(&text);
            assert_eq!(all.len(), 1, "{escape}: {all:?}");
            assert!(
                all[0].starts_with(
                    "peng.yaml:6:12: 'command' in run: argument 1 '\\0x' contains a NUL byte"
                ),
                "{all:?}"
            );
        }
        // Written as such, the byte would end the text for the YAML reader: the whole file is
        // refused, at the byte.
        let text = run_with("  command: ./shop\n  env: { A: \"x\0\" }\n");
        assert_eq!(
            messages(&text),
            vec![
                "peng.yaml:7:15: the file holds a NUL byte; a peng file is text without NUL bytes"
            ]
        );
    }

    #[test]
    fn pids_are_optional() {
        let spec = parse_service("peng.yaml", MINIMAL).unwrap();
        assert_eq!(spec.run.resources.pids, None);
        let text = run_with("  command: ./shop\n  resources: { pids: 65536 }\n");
        let spec = parse_service("peng.yaml", &text).unwrap();
        assert_eq!(spec.run.resources.pids, Some(65536));
        let text = run_with("  command: ./shop\n  resources: { pids: '12' }\n");
        assert_eq!(
            messages(&text),
            vec!["peng.yaml:7:22: 'pids' in run.resources: expected a whole number from 1 to 65536, found '12'"]
        );
    }

    #[test]
    fn escalation_cycles_are_refused() {
        let text = format!(
            "{MINIMAL}action_plans:\n  a: {{ notify: [{{ webhook: 'http://x/a' }}], escalate: {{ after: 1m, to: b }} }}\n  b: {{ notify: [{{ webhook: 'http://x/b' }}], escalate: {{ after: 1m, to: a }} }}\n"
        );
        let all = messages(&text);
        assert_eq!(all.len(), 1, "{all:?}");
        assert!(all[0].contains("escalation cycle: a → b → a"), "{all:?}");
    }
}
