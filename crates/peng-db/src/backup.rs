//! Logical backups of one schema, and the restore that makes a backup count.
//!
//! A backup is the output of `mariadb-dump` for one database, without `CREATE DATABASE` or `USE`
//! so that it restores into any name, gzip-compressed while it streams. It is written as
//! `<file>.partial`, synced and renamed, so a crashed backup never looks complete. While the dump
//! streams, the rows of every table are counted from its `INSERT` statements; [`verify`]
//! restores the file into a scratch database and compares those counts with `COUNT(*)`.
//!
//! The tools get their credentials from a temporary option file readable only by peng, never
//! from the command line or the environment, which other users of the machine can read.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{BufWriter, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStderr, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use flate2::read::MultiGzDecoder;
use flate2::write::GzEncoder;
use flate2::Compression;
use sqlx::MySqlPool;

use crate::accounts::{ident, validate_database, Secret};
use crate::DbError;

/// How the MariaDB command-line tools reach a server: over its unix socket when `socket` is set,
/// otherwise over TCP with TLS, verifying the server's certificate against `ca` when given.
#[derive(Clone, Debug)]
pub struct DumpTarget {
    pub socket: Option<PathBuf>,
    pub host: String,
    pub port: u16,
    pub user: String,
    pub password: Option<Secret>,
    pub ca: Option<PathBuf>,
}

/// A finished backup.
#[derive(Clone, Debug)]
pub struct BackupInfo {
    pub file: PathBuf,
    /// Size of the compressed file.
    pub bytes: u64,
    /// Rows per table as the dump holds them (tables without rows too).
    pub tables: BTreeMap<String, u64>,
    pub took: Duration,
    /// The server's GTID position the dump is consistent with, when the binary log is on.
    pub gtid: Option<String>,
}

/// The outcome of restoring a backup into a scratch database.
#[derive(Clone, Debug)]
pub struct Verification {
    pub restore_took: Duration,
    pub tables: Vec<TableCheck>,
    /// Every table has the rows the backup promised, and no table is on one side only.
    pub ok: bool,
}

/// Rows of one table: `expected` from the backup, `actual` after the restore. `None` means the
/// table is missing on that side.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TableCheck {
    pub name: String,
    pub expected: Option<u64>,
    pub actual: Option<u64>,
}

impl TableCheck {
    pub fn ok(&self) -> bool {
        self.expected.is_some() && self.expected == self.actual
    }
}

/// Dumps `database` into the gzip file `out`: a consistent snapshot (`--single-transaction`) with
/// routines, triggers and events, binary columns as hex, and the GTID position when the server
/// writes a binary log.
pub async fn dump(
    dump_tool: &Path,
    target: &DumpTarget,
    database: &str,
    out: &Path,
) -> Result<BackupInfo, DbError> {
    validate_database(database)?;
    let (tool, target, database, out) = (
        dump_tool.to_path_buf(),
        target.clone(),
        database.to_string(),
        out.to_path_buf(),
    );
    tokio::task::spawn_blocking(move || dump_blocking(&tool, &target, &database, &out))
        .await
        .map_err(|e| DbError::Tools(format!("backup task failed: {e}")))?
}

/// Streams the gzip backup `file` into `database`, which must exist, with the `mariadb` client.
/// The file is read once in full first: a damaged backup is refused before it touches the
/// database (a dump drops each table before it recreates it).
pub async fn restore(
    client_tool: &Path,
    target: &DumpTarget,
    database: &str,
    file: &Path,
) -> Result<Duration, DbError> {
    validate_database(database)?;
    let (tool, target, database, file) = (
        client_tool.to_path_buf(),
        target.clone(),
        database.to_string(),
        file.to_path_buf(),
    );
    tokio::task::spawn_blocking(move || restore_blocking(&tool, &target, &database, &file))
        .await
        .map_err(|e| DbError::Tools(format!("restore task failed: {e}")))?
}

/// Restores the backup into a fresh `scratch_db` on the scratch server (created with a marking
/// comment, and dropped again whatever happens), counts the rows of each table and compares
/// them with the backup's. An existing database of that name without the mark is refused.
/// A backup that cannot be restored at all is an error; one whose tables differ is a
/// verification with `ok: false`.
pub async fn verify(
    client_tool: &Path,
    scratch_admin: &MySqlPool,
    scratch: &DumpTarget,
    info: &BackupInfo,
    scratch_db: &str,
) -> Result<Verification, DbError> {
    validate_database(scratch_db)?;
    let db = ident(scratch_db);
    // A scratch database left by an interrupted verification is dropped; any other database
    // of that name is someone's data and is never touched.
    let existing: Option<String> = sqlx::query_scalar(
        "SELECT CAST(SCHEMA_COMMENT AS CHAR) FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = ?",
    )
    .bind(scratch_db)
    .fetch_optional(scratch_admin)
    .await
    .map_err(DbError::sql(format!("look for scratch database `{scratch_db}`")))?;
    match existing.as_deref() {
        None => {}
        Some(SCRATCH_COMMENT) => {
            sqlx::raw_sql(&format!("DROP DATABASE {db}"))
                .execute(scratch_admin)
                .await
                .map_err(DbError::sql(format!("drop scratch database `{scratch_db}`")))?;
        }
        Some(_) => {
            return Err(DbError::Invalid(format!(
                "database `{scratch_db}` exists and is not a scratch database; refusing to restore into it"
            )))
        }
    }
    sqlx::raw_sql(&format!(
        "CREATE DATABASE {db} CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci COMMENT '{SCRATCH_COMMENT}'"
    ))
    .execute(scratch_admin)
    .await
    .map_err(DbError::sql(format!("create scratch database `{scratch_db}`")))?;

    let result = restore_and_count(client_tool, scratch_admin, scratch, info, scratch_db).await;
    let dropped = sqlx::raw_sql(&format!("DROP DATABASE IF EXISTS {db}"))
        .execute(scratch_admin)
        .await
        .map_err(DbError::sql(format!(
            "drop scratch database `{scratch_db}`"
        )));
    let verification = result?;
    dropped?;
    Ok(verification)
}

/// Deletes the backups in `dir` older than `retention`, except the newest one for which
/// `verified` says yes: a schema always keeps a backup known to restore. Leftover `.partial`
/// files older than `retention` go too. Returns the removed files.
pub fn prune(
    dir: &Path,
    retention: Duration,
    now: SystemTime,
    verified: &dyn Fn(&Path) -> bool,
) -> Result<Vec<PathBuf>, DbError> {
    let entries =
        fs::read_dir(dir).map_err(DbError::io(format!("list backups in {}", dir.display())))?;
    let mut backups = Vec::new();
    let mut partials = Vec::new();
    for entry in entries {
        let entry = entry.map_err(DbError::io(format!("list backups in {}", dir.display())))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if let Some(stem) = name.strip_suffix(PARTIAL_SUFFIX) {
            if let Some((at, _)) = parse_backup_file_name(stem) {
                partials.push((at, entry.path()));
            }
        } else if let Some((at, _)) = parse_backup_file_name(name) {
            backups.push((at, entry.path()));
        }
    }
    backups.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| b.1.cmp(&a.1)));
    let newest_verified = backups
        .iter()
        .find(|(_, path)| verified(path))
        .map(|(_, p)| p.clone());
    let expired = |at: SystemTime| now.duration_since(at).is_ok_and(|age| age > retention);
    let mut removed = Vec::new();
    for (at, path) in backups.into_iter().chain(partials) {
        if expired(at) && Some(&path) != newest_verified.as_ref() {
            fs::remove_file(&path)
                .map_err(DbError::io(format!("remove backup {}", path.display())))?;
            removed.push(path);
        }
    }
    removed.sort();
    Ok(removed)
}

/// `YYYYMMDDTHHMMSSZ-<id>.sql.gz`, in UTC, so that names sort by time. `id` is made of
/// `[a-z0-9_-]`, at most 64 characters.
pub fn backup_file_name(at: SystemTime, id: &str) -> Result<String, DbError> {
    let id_ok = !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-');
    if !id_ok {
        return Err(DbError::Invalid(format!(
            "invalid backup id {id:?}: want 1 to 64 characters from a-z, 0-9, _ and -"
        )));
    }
    let secs = at
        .duration_since(UNIX_EPOCH)
        .map_err(|_| DbError::Invalid("backup time before 1970".into()))?
        .as_secs();
    let (y, m, d) = peng_core::calendar::civil_from_days((secs / 86_400) as i64);
    let rem = secs % 86_400;
    Ok(format!(
        "{y:04}{m:02}{d:02}T{:02}{:02}{:02}Z-{id}{BACKUP_SUFFIX}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    ))
}

/// The time and id in a name made by [`backup_file_name`].
pub fn parse_backup_file_name(name: &str) -> Option<(SystemTime, &str)> {
    let rest = name.strip_suffix(BACKUP_SUFFIX)?;
    let (stamp, id) = (rest.get(..16)?, rest.get(16..)?);
    let id = id.strip_prefix('-')?;
    let b = stamp.as_bytes();
    if id.is_empty() || b[8] != b'T' || b[15] != b'Z' {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<u64> {
        let s = stamp.get(r)?;
        s.bytes()
            .all(|c| c.is_ascii_digit())
            .then(|| s.parse().ok())?
    };
    let (y, mo, d) = (num(0..4)?, num(4..6)?, num(6..8)?);
    let (h, mi, s) = (num(9..11)?, num(11..13)?, num(13..15)?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || s > 60 {
        return None;
    }
    let days = u64::try_from(peng_core::calendar::days_from_civil(
        y as i64, mo as u32, d as u32,
    ))
    .ok()?;
    Some((
        UNIX_EPOCH + Duration::from_secs(days * 86_400 + h * 3600 + mi * 60 + s),
        id,
    ))
}

const BACKUP_SUFFIX: &str = ".sql.gz";

/// The comment that marks a database `verify` created.
const SCRATCH_COMMENT: &str = "peng backup verification scratch";
const PARTIAL_SUFFIX: &str = ".partial";

/// The options every dump gets. Without `--databases`, the dump holds no `CREATE DATABASE` or
/// `USE`, so it restores into whatever database the client is pointed at.
const DUMP_FLAGS: &[&str] = &[
    "--single-transaction",
    "--quick",
    "--routines",
    "--triggers",
    "--events",
    "--hex-blob",
    "--skip-lock-tables",
];

/// Added when the server writes a binary log: the GTID position goes into a comment.
const GTID_FLAGS: &[&str] = &["--master-data=2", "--gtid"];

/// Whether a dump failed only because the server has no binary log, or the account may not read
/// its position: the dump is then taken again without one.
fn position_unavailable(message: &str) -> bool {
    [
        "Binlogging on server not active",
        "not using binary logging",
        "privilege",
    ]
    .iter()
    .any(|m| message.contains(m))
}

/// How many bytes at the end of a tool's stderr go into an error.
const STDERR_KEEP: usize = 16 * 1024;

fn dump_blocking(
    tool: &Path,
    target: &DumpTarget,
    database: &str,
    out: &Path,
) -> Result<BackupInfo, DbError> {
    let started = Instant::now();
    let partial = partial_path(out);
    let mut result = dump_to(tool, target, database, &partial, GTID_FLAGS);
    if matches!(&result, Err(DbError::Tools(message)) if position_unavailable(message)) {
        result = dump_to(tool, target, database, &partial, &[]);
    }
    let scan = match result {
        Ok(scan) => scan,
        Err(e) => {
            let _ = fs::remove_file(&partial);
            return Err(e);
        }
    };
    if let Err(e) = fs::rename(&partial, out) {
        let _ = fs::remove_file(&partial);
        return Err(DbError::io(format!(
            "rename {} into place",
            partial.display()
        ))(e));
    }
    if let Some(parent) = out.parent().filter(|p| !p.as_os_str().is_empty()) {
        File::open(parent)
            .and_then(|dir| dir.sync_all())
            .map_err(DbError::io(format!("sync {}", parent.display())))?;
    }
    let bytes = fs::metadata(out)
        .map_err(DbError::io(format!("read {}", out.display())))?
        .len();
    Ok(BackupInfo {
        file: out.to_path_buf(),
        bytes,
        tables: scan.tables,
        took: started.elapsed(),
        gtid: scan.gtid,
    })
}

/// One run of `mariadb-dump` into `partial`, compressed, synced.
fn dump_to(
    tool: &Path,
    target: &DumpTarget,
    database: &str,
    partial: &Path,
    extra: &[&str],
) -> Result<DumpScanner, DbError> {
    let file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(partial)
        .map_err(DbError::io(format!(
            "create backup file {}",
            partial.display()
        )))?;
    let options = OptionFile::write(target)?;
    let mut child = options
        .command(tool)
        .args(DUMP_FLAGS)
        .args(extra)
        .arg(database)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(DbError::io(format!("run {}", tool.display())))?;
    let stderr = collect_stderr(child.stderr.take());
    let mut stdout = child.stdout.take().expect("stdout is piped");

    let mut encoder = GzEncoder::new(
        BufWriter::with_capacity(1 << 20, file),
        Compression::default(),
    );
    let mut scanner = DumpScanner::default();
    let mut buf = vec![0u8; 256 * 1024];
    let streamed: Result<(), DbError> = loop {
        let n = match stdout.read(&mut buf) {
            Ok(0) => break Ok(()),
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => break Err(DbError::io(format!("read from {}", tool.display()))(e)),
        };
        scanner.feed(&buf[..n]);
        if let Err(e) = encoder.write_all(&buf[..n]) {
            break Err(DbError::io(format!(
                "write backup file {}",
                partial.display()
            ))(e));
        }
    };
    drop(stdout);
    if streamed.is_err() {
        let _ = child.kill();
    }
    let status = child
        .wait()
        .map_err(DbError::io(format!("wait for {}", tool.display())))?;
    let stderr = stderr.join().unwrap_or_default();
    streamed?;
    check_status(tool, status, &stderr)?;
    if !scanner.completed {
        return Err(DbError::Tools(format!(
            "{} ended without its closing line; the dump is incomplete{}",
            tool.display(),
            stderr_tail(&stderr)
        )));
    }
    encoder
        .finish()
        .and_then(|w| w.into_inner().map_err(|e| e.into_error()))
        .and_then(|f| f.sync_all())
        .map_err(DbError::io(format!(
            "write backup file {}",
            partial.display()
        )))?;
    Ok(scanner)
}

fn restore_blocking(
    tool: &Path,
    target: &DumpTarget,
    database: &str,
    file: &Path,
) -> Result<Duration, DbError> {
    let started = Instant::now();
    check_backup_file(file)?;
    let options = OptionFile::write(target)?;
    let mut child = options
        .command(tool)
        .arg("--binary-mode")
        .arg(database)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(DbError::io(format!("run {}", tool.display())))?;
    let stderr = collect_stderr(child.stderr.take());
    let mut stdin = child.stdin.take().expect("stdin is piped");
    let fed = open_backup(file).and_then(|mut decoder| {
        std::io::copy(&mut decoder, &mut stdin).map_err(|e| {
            DbError::Verification(format!(
                "backup {} could not be streamed: {e}",
                file.display()
            ))
        })
    });
    drop(stdin);
    if fed.is_err() {
        // Never let the client run the statement it was given half of.
        kill(&mut child);
    }
    let status = child
        .wait()
        .map_err(DbError::io(format!("wait for {}", tool.display())))?;
    let stderr = stderr.join().unwrap_or_default();
    if let Err(e) = fed {
        // The client's own complaint explains a broken pipe better than the pipe does.
        if !status.success() && !stderr.is_empty() {
            check_status(tool, status, &stderr)?;
        }
        return Err(e);
    }
    check_status(tool, status, &stderr)?;
    Ok(started.elapsed())
}

async fn restore_and_count(
    client_tool: &Path,
    admin: &MySqlPool,
    scratch: &DumpTarget,
    info: &BackupInfo,
    scratch_db: &str,
) -> Result<Verification, DbError> {
    let restore_took = restore(client_tool, scratch, scratch_db, &info.file)
        .await
        .map_err(|e| match e {
            DbError::Verification(m) => DbError::Verification(m),
            other => DbError::Verification(format!(
                "backup {} could not be restored: {other}",
                info.file.display()
            )),
        })?;
    let names: Vec<String> = sqlx::query_scalar(
        "SELECT CAST(TABLE_NAME AS CHAR) FROM information_schema.TABLES \
         WHERE TABLE_SCHEMA = ? AND TABLE_TYPE = 'BASE TABLE'",
    )
    .bind(scratch_db)
    .fetch_all(admin)
    .await
    .map_err(DbError::sql(format!("list tables of `{scratch_db}`")))?;
    let mut actual = BTreeMap::new();
    for name in names {
        let count: i64 = sqlx::query_scalar(&format!(
            "SELECT COUNT(*) FROM {}.{}",
            ident(scratch_db),
            ident(&name)
        ))
        .fetch_one(admin)
        .await
        .map_err(DbError::sql(format!(
            "count rows of `{scratch_db}`.`{name}`"
        )))?;
        actual.insert(name, count as u64);
    }
    let tables = compare(&info.tables, &actual);
    let ok = tables.iter().all(TableCheck::ok);
    Ok(Verification {
        restore_took,
        tables,
        ok,
    })
}

/// One check per table on either side, by name.
fn compare(expected: &BTreeMap<String, u64>, actual: &BTreeMap<String, u64>) -> Vec<TableCheck> {
    let mut names: Vec<&String> = expected.keys().chain(actual.keys()).collect();
    names.sort();
    names.dedup();
    names
        .into_iter()
        .map(|name| TableCheck {
            name: name.clone(),
            expected: expected.get(name).copied(),
            actual: actual.get(name).copied(),
        })
        .collect()
}

fn open_backup(file: &Path) -> Result<MultiGzDecoder<std::io::BufReader<File>>, DbError> {
    let f = File::open(file).map_err(DbError::io(format!("open backup {}", file.display())))?;
    Ok(MultiGzDecoder::new(std::io::BufReader::with_capacity(
        1 << 20,
        f,
    )))
}

/// Reads the whole backup: the gzip checksums must hold and the dump must end with its closing
/// line.
fn check_backup_file(file: &Path) -> Result<(), DbError> {
    let mut decoder = open_backup(file)?;
    let mut scanner = DumpScanner::default();
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        match decoder.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => scanner.feed(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => {
                return Err(DbError::Verification(format!(
                    "backup {} is damaged: {e}",
                    file.display()
                )))
            }
        }
    }
    if !scanner.completed {
        return Err(DbError::Verification(format!(
            "backup {} is incomplete: the dump's closing line is missing",
            file.display()
        )));
    }
    Ok(())
}

fn partial_path(out: &Path) -> PathBuf {
    let mut name = out.as_os_str().to_os_string();
    name.push(PARTIAL_SUFFIX);
    PathBuf::from(name)
}

fn kill(child: &mut Child) {
    let _ = child.kill();
}

fn collect_stderr(stderr: Option<ChildStderr>) -> std::thread::JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let mut kept = Vec::new();
        let Some(mut stderr) = stderr else {
            return kept;
        };
        let mut buf = [0u8; 8192];
        while let Ok(n) = stderr.read(&mut buf) {
            if n == 0 {
                break;
            }
            kept.extend_from_slice(&buf[..n]);
            if kept.len() > 2 * STDERR_KEEP {
                kept.drain(..kept.len() - STDERR_KEEP);
            }
        }
        kept
    })
}

fn check_status(tool: &Path, status: ExitStatus, stderr: &[u8]) -> Result<(), DbError> {
    if status.success() {
        return Ok(());
    }
    Err(DbError::Tools(format!(
        "{} failed ({status}){}",
        tool.display(),
        stderr_tail(stderr)
    )))
}

/// The last lines a tool printed on stderr, as `: line; line`.
fn stderr_tail(stderr: &[u8]) -> String {
    let text = String::from_utf8_lossy(stderr);
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    if lines.is_empty() {
        return String::new();
    }
    format!(": {}", lines[lines.len().saturating_sub(5)..].join("; "))
}

/// A temporary option file with the connection settings and credentials, mode 0600, removed
/// when dropped. Passed as `--defaults-file` so that the machine's own option files cannot
/// point a tool elsewhere.
struct OptionFile {
    path: PathBuf,
}

impl OptionFile {
    fn write(target: &DumpTarget) -> Result<OptionFile, DbError> {
        let mut text = String::from("[client]\n");
        text.push_str(&format!("user={}\n", option_value("user", &target.user)?));
        if let Some(password) = &target.password {
            text.push_str(&format!(
                "password={}\n",
                option_value("password", password.expose())?
            ));
        }
        match &target.socket {
            Some(socket) => {
                text.push_str("protocol=SOCKET\n");
                text.push_str(&format!("socket={}\n", option_path("socket", socket)?));
            }
            None => {
                text.push_str("protocol=TCP\n");
                text.push_str(&format!("host={}\n", option_value("host", &target.host)?));
                text.push_str(&format!("port={}\n", target.port));
                text.push_str("ssl\n");
                if let Some(ca) = &target.ca {
                    text.push_str(&format!("ssl-ca={}\n", option_path("ssl-ca", ca)?));
                    text.push_str("ssl-verify-server-cert\n");
                }
            }
        }
        let path = std::env::temp_dir().join(format!("peng-db-{:016x}.cnf", rand::random::<u64>()));
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
            .map_err(DbError::io(format!(
                "create option file {}",
                path.display()
            )))?;
        let options = OptionFile { path };
        file.write_all(text.as_bytes())
            .and_then(|_| file.sync_all())
            .map_err(DbError::io(format!(
                "write option file {}",
                options.path.display()
            )))?;
        Ok(options)
    }

    /// A command for `tool` that reads only this option file, with an empty environment.
    fn command(&self, tool: &Path) -> Command {
        let mut command = Command::new(tool);
        command
            .env_clear()
            .arg(format!("--defaults-file={}", self.path.display()));
        command
    }
}

impl Drop for OptionFile {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.path);
    }
}

/// A value for an option file, in double quotes with backslashes doubled. Quotes and control
/// characters are refused: they cannot be written safely.
fn option_value(what: &str, value: &str) -> Result<String, DbError> {
    if value.is_empty() || value.chars().any(|c| c.is_control() || c == '"') {
        return Err(DbError::Invalid(format!(
            "the {what} of a database connection may not be empty or hold quotes or control characters"
        )));
    }
    Ok(format!("\"{}\"", value.replace('\\', "\\\\")))
}

fn option_path(what: &str, path: &Path) -> Result<String, DbError> {
    let text = path.to_str().ok_or_else(|| {
        DbError::Invalid(format!("the {what} path {} is not UTF-8", path.display()))
    })?;
    option_value(what, text)
}

/// Follows a dump as it streams and counts the rows of each table from its `INSERT` statements:
/// each top-level `(...)` after `VALUES` is a row; quotes and backslash escapes are respected,
/// so parentheses, quotes and newlines inside values do not count. Also notes the GTID comment
/// and the closing `-- Dump completed` line. Statements inside `DELIMITER ;;` blocks (routine
/// and trigger bodies) are not data.
#[derive(Default)]
struct DumpScanner {
    state: ScanState,
    tables: BTreeMap<String, u64>,
    gtid: Option<String>,
    completed: bool,
    delimited: bool,
    /// The table of the `INSERT` being read.
    current: Option<String>,
}

#[derive(Default)]
enum ScanState {
    #[default]
    LineStart,
    /// The first bytes of a line, until they match a pattern or cannot any more.
    Head(Vec<u8>),
    SkipLine,
    /// A backticked table name; `closing` after a backtick that may be doubled.
    Name {
        insert: bool,
        name: Vec<u8>,
        closing: bool,
    },
    /// Between an `INSERT` statement's table name and `VALUES`: the last bytes seen.
    BeforeValues([u8; 6]),
    Values {
        depth: u32,
        quote: Option<u8>,
        escaped: bool,
    },
    Gtid(Vec<u8>),
    Delimiter(Vec<u8>),
}

const INSERT: &[u8] = b"INSERT INTO `";
const CREATE: &[u8] = b"CREATE TABLE `";
const GTID: &[u8] = b"-- SET GLOBAL gtid_slave_pos='";
const COMPLETED: &[u8] = b"-- Dump completed";
const DELIMITER: &[u8] = b"DELIMITER ";

impl DumpScanner {
    fn patterns(&self) -> &'static [&'static [u8]] {
        if self.delimited {
            &[DELIMITER]
        } else {
            &[INSERT, CREATE, GTID, COMPLETED, DELIMITER]
        }
    }

    fn feed(&mut self, bytes: &[u8]) {
        let mut i = 0;
        while i < bytes.len() {
            let b = bytes[i];
            let mut consumed = true;
            self.state = match std::mem::take(&mut self.state) {
                ScanState::LineStart | ScanState::Head(_) if b == b'\n' => ScanState::LineStart,
                ScanState::LineStart => {
                    consumed = false;
                    ScanState::Head(Vec::with_capacity(32))
                }
                ScanState::Head(mut head) => {
                    head.push(b);
                    self.after_head(head)
                }
                ScanState::SkipLine => {
                    if b == b'\n' {
                        ScanState::LineStart
                    } else {
                        ScanState::SkipLine
                    }
                }
                ScanState::Name {
                    insert,
                    mut name,
                    closing,
                } => match (closing, b) {
                    (false, b'`') => ScanState::Name {
                        insert,
                        name,
                        closing: true,
                    },
                    (true, b'`') => {
                        name.push(b'`');
                        ScanState::Name {
                            insert,
                            name,
                            closing: false,
                        }
                    }
                    (true, _) => {
                        consumed = false;
                        let name = String::from_utf8_lossy(&name).into_owned();
                        if insert {
                            self.tables.entry(name.clone()).or_insert(0);
                            self.current = Some(name);
                            ScanState::BeforeValues([0; 6])
                        } else {
                            self.tables.entry(name).or_insert(0);
                            ScanState::SkipLine
                        }
                    }
                    (false, _) => {
                        name.push(b);
                        ScanState::Name {
                            insert,
                            name,
                            closing,
                        }
                    }
                },
                ScanState::BeforeValues(mut last) => {
                    last.rotate_left(1);
                    last[5] = b;
                    if &last == b"VALUES" {
                        ScanState::Values {
                            depth: 0,
                            quote: None,
                            escaped: false,
                        }
                    } else {
                        ScanState::BeforeValues(last)
                    }
                }
                ScanState::Values {
                    depth,
                    quote: Some(q),
                    escaped,
                } => {
                    let (quote, escaped) = if escaped {
                        (Some(q), false)
                    } else if b == b'\\' {
                        (Some(q), true)
                    } else if b == q {
                        (None, false)
                    } else {
                        (Some(q), false)
                    };
                    ScanState::Values {
                        depth,
                        quote,
                        escaped,
                    }
                }
                ScanState::Values {
                    depth, quote: None, ..
                } => match b {
                    b'\'' | b'"' => ScanState::Values {
                        depth,
                        quote: Some(b),
                        escaped: false,
                    },
                    b'(' => {
                        if depth == 0 {
                            if let Some(rows) =
                                self.current.as_ref().and_then(|t| self.tables.get_mut(t))
                            {
                                *rows += 1;
                            }
                        }
                        ScanState::Values {
                            depth: depth + 1,
                            quote: None,
                            escaped: false,
                        }
                    }
                    b')' => ScanState::Values {
                        depth: depth.saturating_sub(1),
                        quote: None,
                        escaped: false,
                    },
                    b';' if depth == 0 => ScanState::SkipLine,
                    _ => ScanState::Values {
                        depth,
                        quote: None,
                        escaped: false,
                    },
                },
                ScanState::Gtid(mut value) => {
                    if b == b'\'' || b == b'\n' {
                        self.gtid = Some(String::from_utf8_lossy(&value).into_owned());
                        consumed = b == b'\'';
                        ScanState::SkipLine
                    } else {
                        value.push(b);
                        ScanState::Gtid(value)
                    }
                }
                ScanState::Delimiter(mut value) => {
                    if b == b'\n' {
                        self.delimited = value.trim_ascii() != b";";
                        ScanState::LineStart
                    } else {
                        value.push(b);
                        ScanState::Delimiter(value)
                    }
                }
            };
            if consumed {
                i += 1;
            }
        }
    }

    /// The state after the first bytes of a line.
    fn after_head(&mut self, head: Vec<u8>) -> ScanState {
        let patterns = self.patterns();
        if let Some(pattern) = patterns.iter().find(|p| head.as_slice() == **p) {
            return match *pattern {
                INSERT | CREATE => ScanState::Name {
                    insert: *pattern == INSERT,
                    name: Vec::new(),
                    closing: false,
                },
                GTID => ScanState::Gtid(Vec::new()),
                COMPLETED => {
                    self.completed = true;
                    ScanState::SkipLine
                }
                _ => ScanState::Delimiter(Vec::new()),
            };
        }
        if patterns.iter().any(|p| p.starts_with(&head)) {
            ScanState::Head(head)
        } else {
            ScanState::SkipLine
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DUMP: &str = r#"/*M!999999\- enable the sandbox mode */
-- MariaDB dump 10.19  Distrib 10.11.19-MariaDB
-- CHANGE MASTER TO MASTER_LOG_FILE='bin.000002', MASTER_LOG_POS=5071;

DROP TABLE IF EXISTS `empty`;
CREATE TABLE `empty` (
  `x` int(11) DEFAULT NULL
) ENGINE=InnoDB;

CREATE TABLE `odd``name` (
  `s` varchar(50) DEFAULT 'INSERT INTO `x` VALUES (1)'
);
LOCK TABLES `odd``name` WRITE;
INSERT INTO `odd``name` VALUES
(1,'a\'(b\\',0x00FF),
(2,NULL,NULL),
(3,'multi
line ( with ) parens','"(";'),
(4,'it''s',_binary 'x)(');
INSERT INTO `odd``name` VALUES (5,'\\'),(6,'');
UNLOCK TABLES;
INSERT INTO `t` (`a`, `b`) VALUES (1,2),(3,4);
DELIMITER ;;
INSERT INTO `t` VALUES (9,9);
CREATE TABLE `fake` (x int);
DELIMITER ;
-- SET GLOBAL gtid_slave_pos='0-1-30,1-2-5';

-- Dump completed on 2026-11-28  6:29:54
"#;

    fn scan(chunks: &[&[u8]]) -> DumpScanner {
        let mut scanner = DumpScanner::default();
        for chunk in chunks {
            scanner.feed(chunk);
        }
        scanner
    }

    #[test]
    fn rows_are_counted_whatever_the_chunking() {
        let whole = scan(&[DUMP.as_bytes()]);
        let expected: BTreeMap<String, u64> = [
            ("empty".to_string(), 0),
            ("odd`name".to_string(), 6),
            ("t".to_string(), 2),
        ]
        .into();
        assert_eq!(whole.tables, expected);
        assert_eq!(whole.gtid.as_deref(), Some("0-1-30,1-2-5"));
        assert!(whole.completed);
        for split in 0..DUMP.len() {
            let (a, b) = DUMP.as_bytes().split_at(split);
            let s = scan(&[a, b]);
            assert_eq!(s.tables, expected, "split at {split}");
            assert!(s.completed);
        }
        let bytes: Vec<&[u8]> = DUMP.as_bytes().chunks(1).collect();
        assert_eq!(scan(&bytes).tables, expected);
    }

    #[test]
    fn a_truncated_dump_is_not_complete() {
        let cut = &DUMP.as_bytes()[..DUMP.len() - 40];
        assert!(!scan(&[cut]).completed);
    }

    #[test]
    fn file_names_round_trip_and_sort_by_time() {
        let at = UNIX_EPOCH + Duration::from_secs(1_709_210_096); // 2024-02-29T12:34:56Z
        let name = backup_file_name(at, "books-7").unwrap();
        assert_eq!(name, "20240229T123456Z-books-7.sql.gz");
        assert_eq!(parse_backup_file_name(&name), Some((at, "books-7")));
        let later = backup_file_name(at + Duration::from_secs(86_400 * 400), "books-7").unwrap();
        assert!(later > name);
        assert_eq!(
            parse_backup_file_name(&later).unwrap().0,
            at + Duration::from_secs(86_400 * 400)
        );
        for bad in [
            "x.sql.gz",
            "20241329T000000Z-a.sql.gz",
            "20240229T123456Z-.sql.gz",
            "20240229T123456Z-a.sql",
        ] {
            assert_eq!(parse_backup_file_name(bad), None, "{bad}");
        }
        assert!(backup_file_name(at, "../x").is_err());
        assert!(backup_file_name(at, "").is_err());
    }

    #[test]
    fn compare_flags_tables_on_one_side() {
        let expected: BTreeMap<String, u64> = [("a".to_string(), 1), ("b".to_string(), 2)].into();
        let actual: BTreeMap<String, u64> = [("b".to_string(), 2), ("c".to_string(), 0)].into();
        let checks = compare(&expected, &actual);
        let ok: Vec<(&str, bool)> = checks.iter().map(|c| (c.name.as_str(), c.ok())).collect();
        assert_eq!(ok, [("a", false), ("b", true), ("c", false)]);
    }

    #[test]
    fn option_values_are_quoted_or_refused() {
        assert_eq!(option_value("password", r"a\b").unwrap(), r#""a\\b""#);
        assert!(option_value("password", "a\"b").is_err());
        assert!(option_value("password", "a\nb").is_err());
        assert!(option_value("user", "").is_err());
    }
}
