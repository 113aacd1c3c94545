//! Replicas of dedicated servers, by GTID, over TLS verified against peng's CA.
//!
//! A replica is seeded with a consistent dump of the primary's databases taken together with
//! its GTID position, so it can be attached to a primary that already holds data; it then
//! follows with `MASTER_USE_GTID=slave_pos`. Accounts are not replicated: peng's admin
//! connections run with `sql_log_bin=0`, and peng keeps the accounts of each server itself.
//!
//! [`promote`] makes a replica the primary. When the old primary still answers it is a
//! *switch-over*: the old primary turns read-only, the replica waits until it has every
//! transaction, turns writable, and the old primary follows it; nothing is lost. When the old
//! primary does not answer it is a *fail-over*: the replica applies what it already received
//! and turns writable; transactions the old primary never sent are lost, and the old primary
//! may hold some the new one lacks, so it must be rebuilt as a fresh replica, never reattached.

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::accounts::{literal, validate_database};
use crate::server::{exec, text_rows, DedicatedServer};
use crate::tools::Tools;
use crate::DbError;

/// The account replicas log in with, on every primary.
pub const REPLICATION_USER: &str = "peng_repl";

/// What `SHOW SLAVE STATUS` says about a replica.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReplicaStatus {
    /// The thread that reads the primary's binary log is connected.
    pub io_running: bool,
    /// The thread that applies it runs.
    pub sql_running: bool,
    /// How far the applied events lag behind the primary's clock; `None` while not running.
    pub seconds_behind: Option<u64>,
    /// The last error of either thread.
    pub last_error: Option<String>,
    /// The GTID position received from the primary.
    pub gtid_io_pos: String,
}

/// What [`promote`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Promotion {
    /// The old primary answered, handed over everything and now follows the new one.
    pub switched_over: bool,
    /// The old primary did not answer: destroy it and attach a fresh replica.
    pub old_primary_rebuild_needed: bool,
}

/// How long `attach` and `promote` wait for both replication threads to run.
pub const RUNNING_TIMEOUT: Duration = Duration::from_secs(30);

/// Makes `replica` (started read-only) follow `primary`: the replication account on the primary
/// (`peng_repl@127.0.0.1`, `REQUIRE SSL`, `REPLICATION SLAVE` only), the replica's binary log
/// reset, `databases` dumped from the primary with its GTID position and loaded into the
/// replica, then replication from that position over TLS; returns once both threads run.
pub async fn attach(
    tools: &Tools,
    primary: &DedicatedServer,
    replica: &DedicatedServer,
    databases: &[String],
    repl_password: &str,
) -> Result<(), DbError> {
    for db in databases {
        validate_database(db)?;
    }
    let ctx = |server: &DedicatedServer, what: &str| format!("{}: {what}", server.name());
    ensure_replication_account(primary, repl_password).await?;
    stop_following(replica).await?;
    // the replica's own binary log holds nothing of value yet; emptied so that its GTID state
    // can start where the seed ends
    exec(
        replica.admin(),
        "RESET MASTER",
        &ctx(replica, "resetting the binary log"),
    )
    .await?;

    if databases.is_empty() {
        let position = scalar(primary, "SELECT @@GLOBAL.gtid_binlog_pos").await?;
        exec(
            replica.admin(),
            &format!("SET GLOBAL gtid_slave_pos = {}", literal(&position)),
            &ctx(replica, "setting gtid_slave_pos"),
        )
        .await?;
    } else {
        seed(tools, primary, replica, databases).await?;
    }
    // what the seed brought counts as in the replica's binary log, so that once promoted its
    // transactions continue the primary's sequence
    let position = scalar(replica, "SELECT @@GLOBAL.gtid_slave_pos").await?;
    if !position.is_empty() {
        exec(
            replica.admin(),
            &format!("SET GLOBAL gtid_binlog_state = {}", literal(&position)),
            &ctx(replica, "setting gtid_binlog_state"),
        )
        .await?;
    }
    follow(replica, primary, repl_password, "slave_pos").await
}

/// The replication status of `replica`; an error when it follows no primary.
pub async fn status(replica: &DedicatedServer) -> Result<ReplicaStatus, DbError> {
    replica_status(replica.admin())
        .await?
        .ok_or_else(|| DbError::Invalid(format!("{} follows no primary", replica.name())))
}

/// The replication status of the server behind `admin`, `None` when it follows no primary.
pub async fn replica_status(admin: &sqlx::MySqlPool) -> Result<Option<ReplicaStatus>, DbError> {
    let rows = text_rows(admin, "SHOW SLAVE STATUS", "reading the replica status").await?;
    let Some(row) = rows.first() else {
        return Ok(None);
    };
    let text = |name: &str| row.get(name).unwrap_or_default().to_string();
    let last_error = [text("Last_SQL_Error"), text("Last_IO_Error")]
        .into_iter()
        .find(|e| !e.is_empty());
    Ok(Some(ReplicaStatus {
        io_running: text("Slave_IO_Running") == "Yes",
        sql_running: text("Slave_SQL_Running") == "Yes",
        seconds_behind: row
            .get("Seconds_Behind_Master")
            .and_then(|s| s.parse().ok()),
        last_error,
        gtid_io_pos: text("Gtid_IO_Pos"),
    }))
}

/// Makes `replica` the primary; see the module docs for switch-over and fail-over. A
/// switch-over whose replica does not catch up within `timeout` is undone (the old primary
/// turns writable again) and reported as an error.
pub async fn promote(
    primary: Option<&DedicatedServer>,
    replica: &DedicatedServer,
    repl_password: &str,
    timeout: Duration,
) -> Result<Promotion, DbError> {
    let answering = match primary {
        Some(primary) => answers(primary).await.then_some(primary),
        None => None,
    };
    let Some(primary) = answering else {
        if let Some(primary) = primary {
            tracing::warn!(primary = %primary.name(), replica = %replica.name(), "the primary does not answer; failing over");
        }
        apply_received(replica, timeout).await?;
        make_primary(replica, repl_password).await?;
        return Ok(Promotion {
            switched_over: false,
            old_primary_rebuild_needed: true,
        });
    };

    primary.set_read_only(true).await?;
    let position = scalar(primary, "SELECT @@GLOBAL.gtid_binlog_pos").await?;
    if let Err(e) = wait_for(replica, &position, timeout).await {
        // the old primary stays the primary
        if let Err(undo) = primary.set_read_only(false).await {
            tracing::error!(primary = %primary.name(), error = %undo, "cannot make the primary writable again");
        }
        return Err(e);
    }
    make_primary(replica, repl_password).await?;
    stop_following(primary).await?;
    follow(primary, replica, repl_password, "current_pos").await?;
    Ok(Promotion {
        switched_over: true,
        old_primary_rebuild_needed: false,
    })
}

/// Creates or updates the replication account: `REPLICATION SLAVE` only, TLS required, from
/// 127.0.0.1 (replicas run on this machine).
async fn ensure_replication_account(
    server: &DedicatedServer,
    password: &str,
) -> Result<(), DbError> {
    let account = format!("{}@'127.0.0.1'", literal(REPLICATION_USER));
    let password = literal(password);
    let context = format!("{}: the replication account", server.name());
    for sql in [
        format!("CREATE USER IF NOT EXISTS {account} IDENTIFIED BY {password} REQUIRE SSL"),
        format!("ALTER USER {account} IDENTIFIED BY {password} REQUIRE SSL"),
        format!("GRANT REPLICATION SLAVE ON *.* TO {account}"),
    ] {
        exec(server.admin(), &sql, &context).await?;
    }
    Ok(())
}

async fn stop_following(server: &DedicatedServer) -> Result<(), DbError> {
    let context = format!("{}: stopping replication", server.name());
    exec(server.admin(), "STOP SLAVE", &context).await?;
    exec(server.admin(), "RESET SLAVE ALL", &context).await
}

/// Points `server` at `primary` over TLS, starts replication and waits until it runs.
async fn follow(
    server: &DedicatedServer,
    primary: &DedicatedServer,
    password: &str,
    gtid: &str,
) -> Result<(), DbError> {
    let sql = format!(
        "CHANGE MASTER TO MASTER_HOST = '127.0.0.1', MASTER_PORT = {port}, \
         MASTER_USER = {user}, MASTER_PASSWORD = {password}, MASTER_USE_GTID = {gtid}, \
         MASTER_SSL = 1, MASTER_SSL_CA = {ca}, MASTER_SSL_VERIFY_SERVER_CERT = 1, \
         MASTER_CONNECT_RETRY = 5",
        port = primary.port(),
        user = literal(REPLICATION_USER),
        password = literal(password),
        ca = literal(&server.ca_pem().display().to_string()),
    );
    let context = format!("{}: following {}", server.name(), primary.name());
    exec(server.admin(), &sql, &context).await?;
    exec(server.admin(), "START SLAVE", &context).await?;
    let started = Instant::now();
    loop {
        let status = status(server).await?;
        if status.io_running && status.sql_running {
            return Ok(());
        }
        if started.elapsed() > RUNNING_TIMEOUT {
            return Err(DbError::Unavailable(format!(
                "{}: replication from {} did not start within {} s: {}",
                server.name(),
                primary.name(),
                RUNNING_TIMEOUT.as_secs(),
                status.last_error.as_deref().unwrap_or("no error reported")
            )));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Stops replication for good and makes `server` writable, with the replication account its
/// future replicas need.
async fn make_primary(server: &DedicatedServer, password: &str) -> Result<(), DbError> {
    stop_following(server).await?;
    server.set_read_only(false).await?;
    ensure_replication_account(server, password).await
}

/// Fail-over: stop receiving and apply what was received, within `timeout`.
async fn apply_received(replica: &DedicatedServer, timeout: Duration) -> Result<(), DbError> {
    let Some(status) = replica_status(replica.admin()).await? else {
        return Ok(());
    };
    exec(
        replica.admin(),
        "STOP SLAVE IO_THREAD",
        &format!("{}: stopping the receiving thread", replica.name()),
    )
    .await?;
    if status.sql_running && !status.gtid_io_pos.is_empty() {
        if let Err(e) = wait_for(replica, &status.gtid_io_pos, timeout).await {
            tracing::warn!(replica = %replica.name(), error = %e, "promoting before everything received was applied");
        }
    }
    Ok(())
}

/// Waits until `replica` applied `position` (`MASTER_GTID_WAIT`).
async fn wait_for(
    replica: &DedicatedServer,
    position: &str,
    timeout: Duration,
) -> Result<(), DbError> {
    let sql = format!(
        "SELECT MASTER_GTID_WAIT({}, {})",
        literal(position),
        timeout.as_secs_f64()
    );
    let answer = scalar(replica, &sql).await?;
    if answer == "0" {
        Ok(())
    } else {
        Err(DbError::Unavailable(format!(
            "{} did not apply GTID position {position} within {timeout:?}",
            replica.name()
        )))
    }
}

async fn answers(server: &DedicatedServer) -> bool {
    let probe = sqlx::raw_sql("SELECT 1").execute(server.admin());
    matches!(
        tokio::time::timeout(Duration::from_secs(5), probe).await,
        Ok(Ok(_))
    )
}

async fn scalar(server: &DedicatedServer, sql: &str) -> Result<String, DbError> {
    let rows = text_rows(server.admin(), sql, &format!("{}: {sql}", server.name())).await?;
    Ok(rows.first().map(|row| row.at(0)).unwrap_or_default())
}

/// `mariadb-dump` of the primary piped into the `mariadb` client of the replica. The load runs
/// with `sql_log_bin=0`; the dump's `SET GLOBAL gtid_slave_pos` carries the position.
async fn seed(
    tools: &Tools,
    primary: &DedicatedServer,
    replica: &DedicatedServer,
    databases: &[String],
) -> Result<(), DbError> {
    let mut dump = Command::new(&tools.dump);
    dump.arg("--no-defaults")
        .arg(format!("--socket={}", primary.socket().display()))
        .arg(format!("--user={}", primary.admin_user()))
        .args([
            "--single-transaction",
            "--gtid",
            "--master-data=1",
            "--routines",
            "--events",
            "--triggers",
            "--databases",
        ])
        .args(databases);
    let mut load = Command::new(&tools.client);
    load.arg("--no-defaults")
        .arg(format!("--socket={}", replica.socket().display()))
        .arg(format!("--user={}", replica.admin_user()))
        .arg("--init-command=SET SESSION sql_log_bin=0")
        .arg("--batch");
    let names = (primary.name().to_string(), replica.name().to_string());
    tokio::task::spawn_blocking(move || pipe(dump, load, names))
        .await
        .map_err(|e| DbError::Tools(format!("seeding task failed: {e}")))?
}

fn pipe(mut dump: Command, mut load: Command, names: (String, String)) -> Result<(), DbError> {
    let (primary, replica) = names;
    let mut dumping = dump
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(DbError::io("running mariadb-dump"))?;
    let output = dumping
        .stdout
        .take()
        .map(Stdio::from)
        .unwrap_or(Stdio::null());
    let loading = load
        .stdin(output)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn();
    let loading = match loading {
        Ok(child) => child,
        Err(e) => {
            let _ = dumping.kill();
            let _ = dumping.wait();
            return Err(DbError::io("running mariadb")(e));
        }
    };
    let mut dump_err = String::new();
    if let Some(mut stderr) = dumping.stderr.take() {
        let _ = stderr.read_to_string(&mut dump_err);
    }
    let loaded = loading
        .wait_with_output()
        .map_err(DbError::io("waiting for mariadb"))?;
    let dumped = dumping
        .wait()
        .map_err(DbError::io("waiting for mariadb-dump"))?;
    if !dumped.success() {
        return Err(DbError::Tools(format!(
            "dumping {primary} to seed {replica}: mariadb-dump {dumped}: {}",
            dump_err.trim()
        )));
    }
    if !loaded.status.success() {
        return Err(DbError::Tools(format!(
            "loading the dump of {primary} into {replica}: mariadb {}: {}",
            loaded.status,
            String::from_utf8_lossy(&loaded.stderr).trim()
        )));
    }
    Ok(())
}
