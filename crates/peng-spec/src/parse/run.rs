//! `run`: how one instance starts (command, environment, directories), its health check and
//! its resources.

use std::collections::BTreeMap;

use peng_core::{ByteSize, Duration};
use peng_yaml::tree::{Entry, Node, Pos, Scalar};
use peng_yaml::{
    boolean, bounded_list, bounded_map, integer, non_empty_string, section, shown, string, Cx,
};

use super::shared::schedule;
use crate::limits::{MAX_ENV, MAX_PIDS, MAX_WRITABLE};
use crate::model::{HealthCheck, HealthProbe, Resources, RunSpec};

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

const DEFAULT_HEALTH_EVERY: Duration = Duration::from_secs(10);
const DEFAULT_HEALTH_TIMEOUT: Duration = Duration::from_secs(2);
const DEFAULT_CPU: f64 = 0.25;
const DEFAULT_MEMORY: ByteSize = ByteSize(256 << 20);

pub(super) fn run(cx: &mut Cx, entry: &Entry) -> Option<RunSpec> {
    let f = section(cx, entry, "run", RUN_KEYS)?;
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
    let seq = bounded_list(
        cx,
        node,
        label,
        "a list of directories like [data, tmp]",
        "directories",
        MAX_WRITABLE,
        None,
    )?;
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
    let map = bounded_map(
        cx,
        entry,
        "'env' in run",
        "a mapping of variable name to value",
        "environment variables",
        MAX_ENV,
    )?;
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
    let f = section(cx, entry, "run.health", HEALTH_KEYS)?;
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

fn resources(cx: &mut Cx, entry: &Entry) -> Option<Resources> {
    let f = section(cx, entry, "run.resources", RESOURCES_KEYS)?;
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
