//! `database`: the engine, version, plan and mode of the service's database, its backups and
//! its protection; also the version and offering names the platform file shares.

use peng_core::Duration;
use peng_yaml::tree::{Entry, Node};
use peng_yaml::{boolean, duration, section, string, suggest, Cx};

use super::shared::every;
use crate::limits::{MAX_BACKUP_RETENTION, MAX_OFFERING_NAME, MIN_BACKUP_EVERY};
use crate::model::{BackupSpec, DatabaseSpec, DbEngine, DbMode};

pub(crate) const DATABASE_KEYS: &[&str] = &[
    "engine", "version", "plan", "mode", "server", "replica", "backup", "protect",
];
pub(crate) const BACKUP_KEYS: &[&str] = &["every", "retention"];

const DEFAULT_DB_PLAN: &str = "small";
const DEFAULT_BACKUP_EVERY: Duration = Duration::from_secs(86_400);
const DEFAULT_BACKUP_RETENTION: Duration = Duration::from_secs(7 * 86_400);

pub(super) fn database(cx: &mut Cx, entry: &Entry) -> Option<DatabaseSpec> {
    let f = section(cx, entry, "database", DATABASE_KEYS)?;
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

pub(super) fn is_db_version(text: &str) -> bool {
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
    let f = section(cx, entry, "database.backup", BACKUP_KEYS)?;
    let every = every(cx, &f, MIN_BACKUP_EVERY, DEFAULT_BACKUP_EVERY);
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
