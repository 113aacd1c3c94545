//! Dedicated `mariadbd` servers that peng starts, supervises and stops itself.
//!
//! Everything of one server lives in its directory (mode 0700):
//!
//! ```text
//! <dir>/my.cnf          written by peng at every start; the only option file the server reads
//! <dir>/data/           the data directory, binary and relay logs included
//! <dir>/tls/            ca.pem (a copy of peng's CA), server.pem, server-key.pem (0600)
//! <dir>/import/         the only directory the server reads or writes files in (empty)
//! <dir>/tmp/            the server's temporary files
//! <dir>/mariadbd.sock   the admin socket; peng logs in as the OS user it runs as
//! <dir>/mariadbd.pid
//! <dir>/mariadbd.err    the error log, with the server's stdout and stderr
//! <dir>/initialized     written once the data directory was initialised and the baseline held
//! ```
//!
//! A directory without `initialized` is what a crash during initialisation left: its `data/`
//! is wiped and initialised again. A `mariadbd` still running on this `my.cnf` (a crashed peng
//! left it) is stopped before anything else; it is recognised by `--defaults-file=<dir>/my.cnf`
//! in its command line, never by a pid file alone, so a reused pid is never killed.
//!
//! One tokio task per server owns the child. When the server exits without being asked, the task
//! starts it again after 1 s, 2 s, 4 s … at most 30 s (the count starts over once a run lasted
//! five minutes). Children are forked by a thread of their own that lives as long as the task
//! and ask for `PR_SET_PDEATHSIG = SIGTERM`: Linux sends it when the forking *thread* ends, so
//! a peng that dies, even by SIGKILL, takes its servers down with a clean shutdown.
//!
//! The baseline (see [`DedicatedServer::check_baseline`]) is applied at every start and can be
//! checked at any time: no anonymous accounts, `root` only at `localhost`, no `test` database,
//! the password check plugin loaded, and the server-wide variables as `my.cnf` sets them.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom};
use std::net::{IpAddr, Ipv4Addr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use peng_process::{describe, Spawner};
use sqlx::mysql::{MySqlConnectOptions, MySqlPoolOptions, MySqlSslMode};
use sqlx::{ConnectOptions, Connection, MySqlPool, Row};
use tokio::process::{Child, Command};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::accounts::{ident, literal, Drift};
use crate::tls::{create_private_dir, write_file, Ca};
use crate::tools::Tools;
use crate::DbError;

/// What peng wants of one dedicated server.
#[derive(Clone, Debug)]
pub struct DedicatedConfig {
    /// Names the server in messages and logs, e.g. `books/shelf integration primary`.
    pub name: String,
    /// Everything of this server lives here (see the module docs).
    pub dir: PathBuf,
    pub port: u16,
    pub server_id: u32,
    /// Server-wide options written into `my.cnf` as `key=value` (an empty value writes the bare
    /// key): the plan's settings and the platform's mandatory ones. Options peng decides itself
    /// (paths, TLS, binary log, `read_only` …) are refused here.
    pub settings: BTreeMap<String, String>,
    /// Replicas are read-only.
    pub read_only: bool,
}

/// Where the server is in its life, as its supervisor last saw it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ServerState {
    Starting,
    Running {
        pid: u32,
        since: SystemTime,
    },
    /// It exited without being asked and is waiting for its next start.
    Restarting {
        restarts: u32,
        last_exit: String,
    },
    /// It could not even be started again; the supervisor keeps trying.
    Failed(String),
}

/// A running, supervised `mariadbd` (see the module docs).
pub struct DedicatedServer {
    name: String,
    paths: Paths,
    port: u16,
    admin_user: String,
    admin: MySqlPool,
    shared: Arc<Shared>,
    /// What `my.cnf` is made of, to write it again when the role changes, and the values the
    /// checked variables had when the server came up from it.
    cnf: Mutex<CnfInputs>,
    /// Taken by the first `stop`; a server shared between tasks is stopped once.
    stop: std::sync::Mutex<Option<oneshot::Sender<()>>>,
    task: std::sync::Mutex<Option<JoinHandle<()>>>,
}

/// A free TCP port on 127.0.0.1 at the time of asking.
pub fn free_port() -> io::Result<u16> {
    Ok(TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?
        .local_addr()?
        .port())
}

impl DedicatedServer {
    /// Makes the server run: stops an orphan of a crashed peng, initialises the data directory
    /// when it is not complete, writes `my.cnf` and the TLS files, starts `mariadbd` under
    /// supervision, waits until it answers on its socket (at most 60 s) and applies the baseline.
    pub async fn start(
        tools: &Tools,
        ca: &Ca,
        cfg: DedicatedConfig,
    ) -> Result<DedicatedServer, DbError> {
        let paths = Paths::new(&cfg.dir);
        validate(&cfg, &paths)?;
        create_private_dir(&paths.dir)?;
        create_private_dir(&paths.import)?;
        create_private_dir(&paths.tmp)?;
        stop_orphans(&paths.cnf).await?;
        let admin_user = os_user()?;
        let spawner = Spawner::start("peng-mariadbd", tokio::runtime::Handle::current()).map_err(
            DbError::io("starting the thread that starts database servers"),
        )?;
        let fresh = !paths.marker.exists();
        if fresh {
            initialise(&spawner, tools, &cfg.name, &paths, &admin_user).await?;
        }
        let tls = ca.issue_server(
            &paths.tls,
            &[IpAddr::V4(Ipv4Addr::LOCALHOST)],
            &["localhost"],
        )?;
        let inputs = CnfInputs {
            port: cfg.port,
            server_id: cfg.server_id,
            settings: cfg.settings.clone(),
            read_only: cfg.read_only,
            as_root: admin_user == "root",
            tls_ca: tls.ca,
            tls_cert: tls.cert,
            tls_key: tls.key,
            expected: BTreeMap::new(),
        };
        write_file(&paths.cnf, &render_cnf(&paths, &inputs), 0o600)?;

        let started = Instant::now();
        let mut child = spawn(&spawner, tools, &paths).await?;
        let pid = child.id().unwrap_or_default();
        if let Err(e) = wait_ready(&cfg.name, &paths, &admin_user, &mut child).await {
            stop_child(&mut child).await;
            return Err(e);
        }
        tracing::info!(server = %cfg.name, pid, took_ms = started.elapsed().as_millis() as u64, "database server up");

        let shared = Arc::new(Shared {
            state: Mutex::new(ServerState::Running {
                pid,
                since: SystemTime::now(),
            }),
            restarts: AtomicU32::new(0),
        });
        let (stop_tx, stop_rx) = oneshot::channel();
        let supervisor = Supervisor {
            name: cfg.name.clone(),
            tools: tools.clone(),
            paths: paths.clone(),
            shared: shared.clone(),
        };
        let task = tokio::spawn(supervisor.run(child, spawner, stop_rx));
        let server = DedicatedServer {
            name: cfg.name,
            admin: admin_pool(&paths, &admin_user),
            paths,
            port: cfg.port,
            admin_user,
            shared,
            cnf: Mutex::new(inputs),
            stop: std::sync::Mutex::new(Some(stop_tx)),
            task: std::sync::Mutex::new(Some(task)),
        };
        let prepared = async {
            server.record_expected().await?;
            let drift = server.check_baseline(true).await?;
            if fresh {
                write_file(&server.paths.marker, "initialized\n", 0o600)?;
            }
            Ok::<_, DbError>(drift)
        };
        match prepared.await {
            Ok(drift) => {
                for d in drift.iter().filter(|_| !fresh) {
                    tracing::warn!(server = %server.name, drift = %d, "baseline repaired at start");
                }
                Ok(server)
            }
            Err(e) => {
                let _ = server.stop().await;
                Err(e)
            }
        }
    }

    /// The admin pool: the OS user peng runs as over the socket (`root` when peng is root),
    /// with `sql_log_bin=0` so that nothing done through it is replicated.
    pub fn admin(&self) -> &MySqlPool {
        &self.admin
    }

    /// The account of [`admin`](Self::admin), for the command-line tools over the socket.
    pub fn admin_user(&self) -> &str {
        &self.admin_user
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn dir(&self) -> &Path {
        &self.paths.dir
    }

    pub fn socket(&self) -> &Path {
        &self.paths.socket
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The CA certificate that clients verify this server with.
    pub fn ca_pem(&self) -> &Path {
        &self.paths.ca
    }

    pub fn state(&self) -> ServerState {
        lock(&self.shared.state).clone()
    }

    /// The server process while it runs.
    pub fn pid(&self) -> Option<u32> {
        match self.state() {
            ServerState::Running { pid, .. } => Some(pid),
            _ => None,
        }
    }

    /// How often the supervisor started the server again since [`start`](Self::start).
    pub fn restarts(&self) -> u32 {
        self.shared.restarts.load(Ordering::Relaxed)
    }

    /// Whether `dir` holds a data directory that was initialised completely (a server started
    /// on a directory without one begins empty).
    pub fn initialised(dir: &Path) -> bool {
        Paths::new(dir).marker.exists()
    }

    /// The last `lines` lines of the error log.
    pub fn error_log_tail(&self, lines: usize) -> String {
        tail(&self.paths.log, lines)
    }

    /// Stops the server cleanly: SIGTERM (a clean shutdown for `mariadbd`), up to 60 s, then
    /// SIGKILL. Takes `&self` so that a server others still hold (an `Arc` handed to a status
    /// query) can be stopped; their queries then fail as for a server that went away.
    pub async fn stop(&self) -> Result<(), DbError> {
        self.admin.close().await;
        let stop = self.stop.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(stop) = stop {
            let _ = stop.send(());
        }
        let task = self.task.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(task) = task {
            task.await.map_err(|e| {
                DbError::Unavailable(format!("{}: the supervisor failed: {e}", self.name))
            })?;
        }
        Ok(())
    }

    /// Stops the server and removes its directory with everything in it.
    pub async fn destroy(&self) -> Result<(), DbError> {
        let dir = self.paths.dir.clone();
        self.stop().await?;
        fs::remove_dir_all(&dir).map_err(DbError::io(format!("removing {}", dir.display())))
    }

    /// Makes the server read-only or writable, now (`SET GLOBAL`) and for its next starts
    /// (`my.cnf`). Accounts with `READ_ONLY ADMIN` (peng's admin) still write.
    pub async fn set_read_only(&self, on: bool) -> Result<(), DbError> {
        let value = if on { "ON" } else { "OFF" };
        exec(
            &self.admin,
            &format!("SET GLOBAL read_only = {value}"),
            &format!("{}: setting read_only", self.name),
        )
        .await?;
        let text = {
            let mut inputs = lock(&self.cnf);
            inputs.read_only = on;
            render_cnf(&self.paths, &inputs)
        };
        write_file(&self.paths.cnf, &text, 0o600)?;
        self.record_expected().await
    }

    /// Checks the baseline and, with `repair`, restores it; returns each difference found.
    ///
    /// - anonymous accounts: dropped (mariadb-secure-installation "remove anonymous users");
    /// - `root` at any host but `localhost`: dropped ("disallow root login remotely");
    /// - the `test` database and the grants on `test` and `test\_%` in `mysql.db`: dropped
    ///   ("remove test database and access to it");
    /// - the `simple_password_check` plugin: installed again when missing;
    /// - server-wide variables from `my.cnf` changed with `SET GLOBAL`: set back (a variable that
    ///   cannot change at runtime is reported, not repaired).
    pub async fn check_baseline(&self, repair: bool) -> Result<Vec<Drift>, DbError> {
        let mut drift = Vec::new();
        let ctx = |what: &str| format!("{}: {what}", self.name);

        let accounts = text_rows(
            &self.admin,
            "SELECT User, Host FROM mysql.user WHERE User = '' OR (User = 'root' AND Host <> 'localhost')",
            &ctx("reading accounts"),
        )
        .await?;
        for row in accounts {
            let (user, host) = (row.at(0), row.at(1));
            let problem = if user.is_empty() {
                "anonymous account"
            } else {
                "root may log in from another host than localhost"
            };
            let object = format!("user {}@{}", literal(&user), literal(&host));
            self.fix(&mut drift, repair, object, problem, "dropped", |pool| {
                let sql = format!("DROP USER {}@{}", literal(&user), literal(&host));
                async move { exec(&pool, &sql, "dropping an account").await }
            })
            .await?;
        }

        let test_db = text_rows(
            &self.admin,
            "SELECT SCHEMA_NAME FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = 'test'",
            &ctx("reading databases"),
        )
        .await?;
        if !test_db.is_empty() {
            self.fix(
                &mut drift,
                repair,
                "database `test`".into(),
                "the test database exists",
                "dropped",
                |pool| async move { exec(&pool, "DROP DATABASE test", "dropping test").await },
            )
            .await?;
        }
        let test_grants = text_rows(
            &self.admin,
            r"SELECT Db, User, Host FROM mysql.db WHERE Db IN ('test', 'test\\_%')",
            &ctx("reading database grants"),
        )
        .await?;
        for row in test_grants {
            let (db, user, host) = (row.at(0), row.at(1), row.at(2));
            let object = format!(
                "grant on {} to {}@{}",
                ident(&db),
                literal(&user),
                literal(&host)
            );
            self.fix(
                &mut drift,
                repair,
                object,
                "grant on the test databases",
                "deleted",
                |pool| {
                    let sql = format!(
                        "DELETE FROM mysql.db WHERE Db = {} AND User = {} AND Host = {}",
                        literal(&db),
                        literal(&user),
                        literal(&host)
                    );
                    async move {
                        exec(&pool, &sql, "deleting a test grant").await?;
                        exec(&pool, "FLUSH PRIVILEGES", "flushing privileges").await
                    }
                },
            )
            .await?;
        }

        let plugin = text_rows(
            &self.admin,
            "SELECT PLUGIN_STATUS FROM information_schema.PLUGINS \
             WHERE PLUGIN_NAME = 'simple_password_check'",
            &ctx("reading plugins"),
        )
        .await?;
        if plugin.first().map(|row| row.at(0)).as_deref() != Some("ACTIVE") {
            self.fix(
                &mut drift,
                repair,
                "plugin simple_password_check".into(),
                "the password check is not active",
                "installed",
                |pool| async move {
                    exec(
                        &pool,
                        "INSTALL SONAME 'simple_password_check'",
                        "installing simple_password_check",
                    )
                    .await
                },
            )
            .await?;
        }

        let expected = lock(&self.cnf).expected.clone();
        let actual =
            global_variables(&self.admin, expected.keys(), &ctx("reading variables")).await?;
        for (name, want) in &expected {
            let have = actual.get(name).map(String::as_str).unwrap_or("(unset)");
            if have.eq_ignore_ascii_case(want) {
                continue;
            }
            let object = format!("variable {name}");
            let problem = format!("is {have}, my.cnf sets {want}");
            let sql = format!("SET GLOBAL {name} = {}", sql_value(want));
            let fixed = if repair {
                exec(&self.admin, &sql, &ctx(&format!("setting {name}"))).await
            } else {
                Ok(())
            };
            let (problem, repaired) = match (repair, fixed) {
                (false, _) => (problem, false),
                (true, Ok(())) => (format!("{problem}; set back"), true),
                (true, Err(e)) => (format!("{problem}; cannot set it back: {e}"), false),
            };
            drift.push(Drift {
                object,
                problem,
                repaired,
            });
        }
        Ok(drift)
    }

    async fn fix<F, Fut>(
        &self,
        drift: &mut Vec<Drift>,
        repair: bool,
        object: String,
        problem: &str,
        done: &str,
        action: F,
    ) -> Result<(), DbError>
    where
        F: FnOnce(MySqlPool) -> Fut,
        Fut: std::future::Future<Output = Result<(), DbError>>,
    {
        if repair {
            action(self.admin.clone()).await.map_err(|e| match e {
                DbError::Sql { context, source } => DbError::Sql {
                    context: format!("{}: {context} ({object})", self.name),
                    source,
                },
                other => other,
            })?;
        }
        drift.push(Drift {
            object,
            problem: if repair {
                format!("{problem}; {done}")
            } else {
                problem.to_string()
            },
            repaired: repair,
        });
        Ok(())
    }

    /// Remembers the runtime value of every checked variable as the server reports it (sizes
    /// rounded, booleans as ON/OFF), to compare with later.
    async fn record_expected(&self) -> Result<(), DbError> {
        let names: Vec<String> = {
            let inputs = lock(&self.cnf);
            BASELINE_VARIABLES
                .iter()
                .map(|name| name.to_string())
                .chain(inputs.settings.keys().map(|key| normalize(key)))
                .collect()
        };
        let values = global_variables(
            &self.admin,
            names.iter(),
            &format!("{}: reading variables", self.name),
        )
        .await?;
        lock(&self.cnf).expected = values;
        Ok(())
    }
}

/// Runs one statement over the text protocol (`CHANGE MASTER`, `CREATE USER` … cannot be
/// prepared everywhere).
pub(crate) async fn exec(pool: &MySqlPool, sql: &str, context: &str) -> Result<(), DbError> {
    sqlx::raw_sql(sql)
        .execute(pool)
        .await
        .map(|_| ())
        .map_err(DbError::sql(context))
}

/// One row of [`text_rows`]: every cell as text (`None` for NULL), in `SELECT` order.
#[derive(Debug, Clone, Default)]
pub(crate) struct TextRow(Vec<(String, Option<String>)>);

impl TextRow {
    /// Cell `index`, empty when NULL or missing.
    pub(crate) fn at(&self, index: usize) -> String {
        self.0
            .get(index)
            .and_then(|(_, value)| value.clone())
            .unwrap_or_default()
    }

    /// The cell of column `name`, `None` when NULL or missing.
    pub(crate) fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(column, _)| column.eq_ignore_ascii_case(name))
            .and_then(|(_, value)| value.as_deref())
    }
}

/// Runs a query over the text protocol and returns every cell as text.
pub(crate) async fn text_rows(
    pool: &MySqlPool,
    sql: &str,
    context: &str,
) -> Result<Vec<TextRow>, DbError> {
    let rows = sqlx::raw_sql(sql)
        .fetch_all(pool)
        .await
        .map_err(DbError::sql(context))?;
    rows.iter()
        .map(|row| {
            use sqlx::Column;
            row.columns()
                .iter()
                .map(|column| {
                    let value: Option<String> = row
                        .try_get_unchecked(column.ordinal())
                        .map_err(DbError::sql(context))?;
                    Ok((column.name().to_string(), value))
                })
                .collect::<Result<Vec<_>, DbError>>()
                .map(TextRow)
        })
        .collect()
}

/// `SHOW GLOBAL VARIABLES` for `names`, lowercase names to values.
pub(crate) async fn global_variables<'a>(
    pool: &MySqlPool,
    names: impl Iterator<Item = &'a String>,
    context: &str,
) -> Result<BTreeMap<String, String>, DbError> {
    let list: Vec<String> = names.map(|name| literal(name)).collect();
    if list.is_empty() {
        return Ok(BTreeMap::new());
    }
    let rows = text_rows(
        pool,
        &format!(
            "SHOW GLOBAL VARIABLES WHERE Variable_name IN ({})",
            list.join(", ")
        ),
        context,
    )
    .await?;
    Ok(rows
        .iter()
        .map(|row| (row.at(0).to_ascii_lowercase(), row.at(1)))
        .collect())
}

/// Variables of the baseline that every server's `my.cnf` sets, checked by
/// [`DedicatedServer::check_baseline`].
const BASELINE_VARIABLES: &[&str] = &[
    "require_secure_transport",
    "local_infile",
    "read_only",
    "gtid_strict_mode",
    "log_slave_updates",
    "binlog_format",
    "server_id",
    "simple_password_check_minimal_length",
    "strict_password_validation",
];

/// Options of `my.cnf` that peng decides; a plan cannot set them. Written with `_`: MariaDB
/// takes `-` and `_` alike, so compare a key lowercased with `-` replaced by `_`.
pub const OWNED_OPTIONS: &[&str] = &[
    "datadir",
    "socket",
    "port",
    "pid_file",
    "log_error",
    "bind_address",
    "skip_name_resolve",
    "skip_networking",
    "skip_grant_tables",
    "user",
    "ssl",
    "ssl_ca",
    "ssl_cert",
    "ssl_key",
    "require_secure_transport",
    "plugin_load",
    "plugin_load_add",
    "plugin_dir",
    "init_file",
    "log_bin",
    "log_bin_index",
    "relay_log",
    "binlog_format",
    "gtid_strict_mode",
    "log_slave_updates",
    "server_id",
    "read_only",
    "local_infile",
    "secure_file_priv",
    "tmpdir",
    "symbolic_links",
    "skip_symbolic_links",
    "strict_password_validation",
];

const READY_TIMEOUT: Duration = Duration::from_secs(60);
const STOP_GRACE: Duration = Duration::from_secs(60);
const BACKOFF_INITIAL: Duration = Duration::from_secs(1);
const BACKOFF_MAX: Duration = Duration::from_secs(30);
/// A run this long starts the backoff over.
const BACKOFF_RESET: Duration = Duration::from_secs(300);
/// The longest unix socket path (`sun_path` holds 108 bytes with the terminating NUL).
const MAX_SOCKET_PATH: usize = 107;

#[derive(Clone, Debug)]
struct Paths {
    dir: PathBuf,
    data: PathBuf,
    cnf: PathBuf,
    socket: PathBuf,
    pid: PathBuf,
    log: PathBuf,
    tls: PathBuf,
    ca: PathBuf,
    marker: PathBuf,
    import: PathBuf,
    tmp: PathBuf,
}

impl Paths {
    fn new(dir: &Path) -> Paths {
        let dir = std::path::absolute(dir).unwrap_or_else(|_| dir.to_path_buf());
        Paths {
            data: dir.join("data"),
            cnf: dir.join("my.cnf"),
            socket: dir.join("mariadbd.sock"),
            pid: dir.join("mariadbd.pid"),
            log: dir.join("mariadbd.err"),
            tls: dir.join("tls"),
            ca: dir.join("tls").join("ca.pem"),
            marker: dir.join("initialized"),
            import: dir.join("import"),
            tmp: dir.join("tmp"),
            dir,
        }
    }
}

struct CnfInputs {
    port: u16,
    server_id: u32,
    settings: BTreeMap<String, String>,
    read_only: bool,
    as_root: bool,
    tls_ca: PathBuf,
    tls_cert: PathBuf,
    tls_key: PathBuf,
    /// Checked variable → its value when the server came up.
    expected: BTreeMap<String, String>,
}

struct Shared {
    state: Mutex<ServerState>,
    restarts: AtomicU32,
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// `innodb-buffer-pool-size` and `innodb_buffer_pool_size` are the same option.
fn normalize(key: &str) -> String {
    key.trim().to_ascii_lowercase().replace('-', "_")
}

fn validate(cfg: &DedicatedConfig, paths: &Paths) -> Result<(), DbError> {
    let mut problems = Vec::new();
    if cfg.name.trim().is_empty() {
        problems.push("the server has no name".to_string());
    }
    if cfg.server_id == 0 {
        problems.push("server_id 0 turns replication off; use 1 or more".to_string());
    }
    let socket = paths.socket.as_os_str().len();
    if socket > MAX_SOCKET_PATH {
        problems.push(format!(
            "the socket path {} is {socket} bytes, longer than the {MAX_SOCKET_PATH} a unix \
             socket allows; use a shorter data directory",
            paths.socket.display()
        ));
    }
    for (key, value) in &cfg.settings {
        let key_ok = !key.is_empty()
            && key
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.');
        if !key_ok {
            problems.push(format!("setting {key:?}: not an option name"));
        } else if OWNED_OPTIONS.contains(&normalize(key).as_str()) {
            problems.push(format!("setting {key}: peng sets this option itself"));
        }
        if value.chars().any(|c| c.is_control() || c == '#') {
            problems.push(format!(
                "setting {key}: the value may hold no line breaks, control characters or '#'"
            ));
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(DbError::Invalid(format!(
            "{}: {}",
            cfg.name,
            problems.join("; ")
        )))
    }
}

fn render_cnf(paths: &Paths, inputs: &CnfInputs) -> String {
    let mut lines: Vec<(String, String)> = Vec::new();
    let mut put = |key: &str, value: String| lines.push((key.to_string(), value));
    let path = |p: &Path| p.display().to_string();
    put("datadir", path(&paths.data));
    put("socket", path(&paths.socket));
    put("port", inputs.port.to_string());
    put("pid-file", path(&paths.pid));
    put("log-error", path(&paths.log));
    put("bind-address", "127.0.0.1".into());
    put("skip-name-resolve", String::new());
    if inputs.as_root {
        put("user", "root".into());
    }
    put("ssl-ca", path(&inputs.tls_ca));
    put("ssl-cert", path(&inputs.tls_cert));
    put("ssl-key", path(&inputs.tls_key));
    put("require_secure_transport", "ON".into());
    put("plugin-load-add", "simple_password_check".into());
    put("strict_password_validation", "ON".into());
    put("local_infile", "OFF".into());
    put("skip-symbolic-links", String::new());
    put("secure_file_priv", path(&paths.import));
    put("tmpdir", path(&paths.tmp));
    put("log_bin", path(&paths.data.join("binlog")));
    put("relay_log", path(&paths.data.join("relay")));
    put("binlog_format", "ROW".into());
    put("gtid_strict_mode", "ON".into());
    put("log_slave_updates", "ON".into());
    put("server_id", inputs.server_id.to_string());
    put(
        "read_only",
        if inputs.read_only { "ON" } else { "OFF" }.into(),
    );
    let mut defaults: BTreeMap<&str, &str> =
        BTreeMap::from([("simple_password_check_minimal_length", "14")]);
    for key in inputs.settings.keys() {
        defaults.remove(normalize(key).as_str());
    }
    for (key, value) in defaults {
        put(key, value.to_string());
    }
    for (key, value) in &inputs.settings {
        put(key.trim(), value.trim().to_string());
    }
    let mut text = String::from(
        "# Written by peng at every start of this server; edits here are overwritten.\n[mariadbd]\n",
    );
    for (key, value) in lines {
        if value.is_empty() {
            text.push_str(&format!("{key}\n"));
        } else {
            text.push_str(&format!("{key}={value}\n"));
        }
    }
    text
}

/// A variable's value as `SET GLOBAL` takes it: numbers bare, the rest quoted.
fn sql_value(value: &str) -> String {
    if !value.is_empty() && value.chars().all(|c| c.is_ascii_digit()) {
        value.to_string()
    } else {
        literal(value)
    }
}

/// The OS user peng runs as: the admin account `mariadb-install-db` creates for it.
fn os_user() -> Result<String, DbError> {
    // SAFETY: geteuid cannot fail; getpwuid_r writes only into the buffers given.
    let uid = unsafe { libc::geteuid() };
    if uid == 0 {
        return Ok("root".into());
    }
    let mut buf = vec![0 as libc::c_char; 4096];
    let mut pwd: libc::passwd = unsafe { std::mem::zeroed() };
    let mut result: *mut libc::passwd = std::ptr::null_mut();
    let rc = unsafe { libc::getpwuid_r(uid, &mut pwd, buf.as_mut_ptr(), buf.len(), &mut result) };
    if rc != 0 || result.is_null() {
        return Err(DbError::Unavailable(format!(
            "cannot find the name of user {uid}"
        )));
    }
    // SAFETY: pw_name points into `buf`, NUL-terminated, while `buf` lives.
    let name = unsafe { std::ffi::CStr::from_ptr(pwd.pw_name) };
    Ok(name.to_string_lossy().into_owned())
}

/// Runs `mariadb-install-db` on the data directory. The script bootstraps a `mariadbd` of its
/// own; the whole run is one process tree that dies with peng (see `peng_process::tree`), so a
/// crashed peng leaves no bootstrap writing to a directory its successor starts over.
async fn initialise(
    spawner: &Spawner,
    tools: &Tools,
    name: &str,
    paths: &Paths,
    user: &str,
) -> Result<(), DbError> {
    if paths.data.exists() {
        tracing::warn!(server = %name, dir = %paths.data.display(), "data directory was not completely initialised; starting over");
        fs::remove_dir_all(&paths.data)
            .map_err(DbError::io(format!("removing {}", paths.data.display())))?;
    }
    let started = Instant::now();
    let running = || format!("running {}", tools.install_db.display());
    let mut cmd = peng_process::tree(&tools.install_db);
    cmd.arg("--no-defaults")
        .arg(format!("--datadir={}", paths.data.display()))
        .arg(format!("--user={user}"))
        .arg("--auth-root-authentication-method=socket")
        .arg("--skip-test-db")
        // servers bootstrapping at the same time in one temporary directory clash on the
        // names of their temporary tables
        .arg(format!("--tmpdir={}", paths.tmp.display()))
        .current_dir(&paths.dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    peng_process::die_with_parent(&mut cmd, libc::SIGKILL);
    let child = spawner.spawn(cmd).await.map_err(DbError::io(running()))?;
    let output = child
        .wait_with_output()
        .await
        .map_err(DbError::io(running()))?;
    if !output.status.success() {
        let mut text = String::from_utf8_lossy(&output.stdout).into_owned();
        text.push_str(&String::from_utf8_lossy(&output.stderr));
        // the cause comes first, a long generic advice after it
        let head: Vec<&str> = text.lines().take(12).collect();
        return Err(DbError::Unavailable(format!(
            "{name}: {} {}:\n{}",
            tools.install_db.display(),
            describe(output.status),
            head.join("\n")
        )));
    }
    tracing::info!(server = %name, took_ms = started.elapsed().as_millis() as u64, "data directory initialised");
    Ok(())
}

fn admin_options(socket: &Path, user: &str) -> MySqlConnectOptions {
    MySqlConnectOptions::new()
        .socket(socket)
        .username(user)
        .ssl_mode(MySqlSslMode::Disabled)
        .disable_statement_logging()
}

fn admin_pool(paths: &Paths, user: &str) -> MySqlPool {
    MySqlPoolOptions::new()
        .max_connections(4)
        .min_connections(0)
        .acquire_timeout(Duration::from_secs(10))
        .idle_timeout(Duration::from_secs(60))
        .after_connect(|conn, _| {
            Box::pin(async move {
                use sqlx::Executor;
                conn.execute("SET SESSION sql_log_bin = 0").await?;
                Ok(())
            })
        })
        .connect_lazy_with(admin_options(&paths.socket, user))
}

/// Polls the socket until the server logs us in, the child exits or the timeout passes.
async fn wait_ready(
    name: &str,
    paths: &Paths,
    user: &str,
    child: &mut Child,
) -> Result<(), DbError> {
    let started = Instant::now();
    let options = admin_options(&paths.socket, user);
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Err(DbError::Unavailable(format!(
                "{name}: mariadbd {} while starting; its error log ends with:\n{}",
                describe(status),
                tail(&paths.log, 20)
            )));
        }
        if paths.socket.exists() {
            if let Ok(conn) = sqlx::MySqlConnection::connect_with(&options).await {
                let _ = conn.close().await;
                return Ok(());
            }
        }
        if started.elapsed() > READY_TIMEOUT {
            return Err(DbError::Unavailable(format!(
                "{name}: mariadbd did not accept connections on {} within {} s; its error log \
                 ends with:\n{}",
                paths.socket.display(),
                READY_TIMEOUT.as_secs(),
                tail(&paths.log, 20)
            )));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Everything the supervisor task needs to start the server again.
struct Supervisor {
    name: String,
    tools: Tools,
    paths: Paths,
    shared: Arc<Shared>,
}

impl Supervisor {
    async fn run(self, mut child: Child, spawner: Spawner, mut stop: oneshot::Receiver<()>) {
        let mut failures: u32 = 0;
        let mut started = Instant::now();
        loop {
            let exit = tokio::select! {
                exit = child.wait() => exit,
                // asked to stop, or the handle was dropped
                _ = &mut stop => {
                    stop_child(&mut child).await;
                    return;
                }
            };
            let last_exit = match exit {
                Ok(status) => describe(status),
                Err(e) => format!("lost track of the process: {e}"),
            };
            if started.elapsed() >= BACKOFF_RESET {
                failures = 0;
            }
            loop {
                failures = failures.saturating_add(1);
                let restarts = self.shared.restarts.load(Ordering::Relaxed) + 1;
                let delay = backoff(failures);
                tracing::warn!(server = %self.name, exit = %last_exit, ?delay, "database server exited; starting it again");
                self.set(ServerState::Restarting {
                    restarts,
                    last_exit: last_exit.clone(),
                });
                tokio::select! {
                    _ = tokio::time::sleep(delay) => {}
                    _ = &mut stop => return,
                }
                self.shared.restarts.store(restarts, Ordering::Relaxed);
                match spawn(&spawner, &self.tools, &self.paths).await {
                    Ok(next) => {
                        child = next;
                        break;
                    }
                    Err(e) => {
                        tracing::error!(server = %self.name, error = %e, "cannot start the database server");
                        self.set(ServerState::Failed(e.to_string()));
                    }
                }
            }
            started = Instant::now();
            self.set(ServerState::Running {
                pid: child.id().unwrap_or_default(),
                since: SystemTime::now(),
            });
        }
    }

    fn set(&self, state: ServerState) {
        *lock(&self.shared.state) = state;
    }
}

fn backoff(failures: u32) -> Duration {
    peng_process::backoff(BACKOFF_INITIAL, BACKOFF_MAX, failures)
}

async fn spawn(spawner: &Spawner, tools: &Tools, paths: &Paths) -> Result<Child, DbError> {
    let context = || format!("starting {}", tools.mariadbd.display());
    let log = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&paths.log)
        .map_err(DbError::io(context()))?;
    let log_err = log.try_clone().map_err(DbError::io(context()))?;
    let mut cmd = Command::new(&tools.mariadbd);
    // --defaults-file must come first; it is also how an orphan is recognised
    cmd.arg(defaults_arg(&paths.cnf));
    cmd.env_clear();
    for key in ["PATH", "LANG", "LC_ALL", "TZ", "TMPDIR"] {
        if let Some(value) = std::env::var_os(key) {
            cmd.env(key, value);
        }
    }
    cmd.current_dir(&paths.dir)
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(log_err)
        .process_group(0)
        .kill_on_drop(false);
    // SIGTERM: a server whose peng is gone shuts down cleanly.
    peng_process::die_with_parent(&mut cmd, libc::SIGTERM);
    spawner.spawn(cmd).await.map_err(DbError::io(context()))
}

fn defaults_arg(cnf: &Path) -> String {
    format!("--defaults-file={}", cnf.display())
}

/// SIGTERM (a clean shutdown), up to `STOP_GRACE`, then SIGKILL; reaps the child.
async fn stop_child(child: &mut Child) {
    let Some(pid) = child.id() else {
        return;
    };
    signal(pid, libc::SIGTERM);
    if tokio::time::timeout(STOP_GRACE, child.wait())
        .await
        .is_err()
    {
        signal(pid, libc::SIGKILL);
        let _ = child.wait().await;
    }
}

fn signal(pid: u32, signal: i32) {
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return;
    };
    // SAFETY: kill has no memory-safety preconditions.
    unsafe {
        libc::kill(pid, signal);
    }
}

/// Stops every `mariadbd` started with this `my.cnf` that is not ours: what a crashed peng
/// left running.
async fn stop_orphans(cnf: &Path) -> Result<(), DbError> {
    for pid in orphans(cnf) {
        tracing::warn!(pid, cnf = %cnf.display(), "stopping a database server left by an earlier peng");
        signal(pid, libc::SIGTERM);
        let deadline = Instant::now() + STOP_GRACE;
        while alive(pid) && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        if alive(pid) {
            signal(pid, libc::SIGKILL);
            let deadline = Instant::now() + Duration::from_secs(10);
            while alive(pid) && Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        if alive(pid) {
            return Err(DbError::Unavailable(format!(
                "a database server (pid {pid}) still runs on {} and does not stop",
                cnf.display()
            )));
        }
    }
    Ok(())
}

/// Processes whose command line is `mariadbd --defaults-file=<cnf> …`.
fn orphans(cnf: &Path) -> Vec<u32> {
    let wanted = defaults_arg(cnf);
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    let me = std::process::id();
    entries
        .flatten()
        .filter_map(|entry| entry.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| *pid != me)
        .filter(|pid| {
            let Ok(cmdline) = fs::read(format!("/proc/{pid}/cmdline")) else {
                return false;
            };
            let mut args = cmdline.split(|b| *b == 0);
            let is_server = args
                .next()
                .and_then(|program| program.rsplit(|b| *b == b'/').next())
                .is_some_and(|base| base.starts_with(b"mariadbd") || base.starts_with(b"mysqld"));
            is_server && args.any(|arg| arg == wanted.as_bytes())
        })
        .collect()
}

/// Whether `pid` still runs (a zombie does not).
fn alive(pid: u32) -> bool {
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => {
            // the state follows the command name in parentheses, which may hold spaces
            let state = stat
                .rsplit_once(')')
                .and_then(|(_, rest)| rest.trim_start().chars().next());
            !matches!(state, Some('Z') | Some('X'))
        }
        Err(_) => false,
    }
}

/// The last `lines` lines of a file, reading at most its last 64 KiB.
fn tail(path: &Path, lines: usize) -> String {
    let mut text = String::new();
    if let Ok(mut file) = File::open(path) {
        let len = file.metadata().map(|m| m.len()).unwrap_or(0);
        let _ = file.seek(SeekFrom::Start(len.saturating_sub(64 * 1024)));
        let mut bytes = Vec::new();
        let _ = file.read_to_end(&mut bytes);
        text = String::from_utf8_lossy(&bytes).into_owned();
    }
    last_lines(&text, lines)
}

fn last_lines(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(settings: &[(&str, &str)]) -> DedicatedConfig {
        DedicatedConfig {
            name: "books/shelf test primary".into(),
            dir: PathBuf::from("/var/lib/peng/db/x"),
            port: 3307,
            server_id: 7,
            settings: settings
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            read_only: false,
        }
    }

    fn inputs(cfg: &DedicatedConfig) -> CnfInputs {
        CnfInputs {
            port: cfg.port,
            server_id: cfg.server_id,
            settings: cfg.settings.clone(),
            read_only: cfg.read_only,
            as_root: true,
            tls_ca: "/t/ca.pem".into(),
            tls_cert: "/t/server.pem".into(),
            tls_key: "/t/server-key.pem".into(),
            expected: BTreeMap::new(),
        }
    }

    #[test]
    fn my_cnf_holds_the_baseline_and_the_settings() {
        let cfg = config(&[
            ("innodb_buffer_pool_size", "256M"),
            ("max_connections", "50"),
        ]);
        let paths = Paths::new(&cfg.dir);
        let text = render_cnf(&paths, &inputs(&cfg));
        for line in [
            "[mariadbd]",
            "datadir=/var/lib/peng/db/x/data",
            "socket=/var/lib/peng/db/x/mariadbd.sock",
            "port=3307",
            "bind-address=127.0.0.1",
            "skip-name-resolve",
            "user=root",
            "ssl-ca=/t/ca.pem",
            "require_secure_transport=ON",
            "plugin-load-add=simple_password_check",
            "simple_password_check_minimal_length=14",
            "log_bin=/var/lib/peng/db/x/data/binlog",
            "binlog_format=ROW",
            "gtid_strict_mode=ON",
            "log_slave_updates=ON",
            "server_id=7",
            "read_only=OFF",
            "local_infile=OFF",
            "innodb_buffer_pool_size=256M",
            "max_connections=50",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} missing in\n{text}");
        }
    }

    #[test]
    fn a_setting_replaces_a_default_but_not_an_owned_option() {
        let cfg = config(&[("simple-password-check-minimal-length", "20")]);
        let text = render_cnf(&Paths::new(&cfg.dir), &inputs(&cfg));
        assert!(!text.contains("simple_password_check_minimal_length=14"));
        assert!(text.contains("simple-password-check-minimal-length=20"));

        let cfg = config(&[
            ("Bind-Address", "0.0.0.0"),
            ("x", "1\nuser=evil"),
            ("a b", ""),
        ]);
        let err = validate(&cfg, &Paths::new(&cfg.dir))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("Bind-Address: peng sets this option itself"),
            "{err}"
        );
        assert!(
            err.contains("setting x: the value may hold no line breaks"),
            "{err}"
        );
        assert!(err.contains("\"a b\": not an option name"), "{err}");
    }

    #[test]
    fn a_socket_path_too_long_is_refused() {
        let mut cfg = config(&[]);
        cfg.dir = PathBuf::from(format!("/{}", "d".repeat(100)));
        let err = validate(&cfg, &Paths::new(&cfg.dir))
            .unwrap_err()
            .to_string();
        assert!(err.contains("longer than the 107"), "{err}");
    }

    #[test]
    fn backoff_doubles_up_to_thirty_seconds() {
        let secs: Vec<u64> = (1..=7).map(|n| backoff(n).as_secs()).collect();
        assert_eq!(secs, [1, 2, 4, 8, 16, 30, 30]);
        assert_eq!(backoff(1000), BACKOFF_MAX);
    }

    #[test]
    fn values_are_quoted_unless_numbers() {
        assert_eq!(sql_value("134217728"), "134217728");
        assert_eq!(sql_value("OFF"), "'OFF'");
        assert_eq!(sql_value("it's"), "'it''s'");
    }

    #[test]
    fn tails_keep_the_last_lines() {
        assert_eq!(last_lines("a\nb\nc\n", 2), "b\nc");
        assert_eq!(last_lines("a", 5), "a");
    }

    #[test]
    fn orphans_are_found_by_their_option_file_only() {
        // this test process is not a mariadbd, whatever its arguments
        assert!(orphans(Path::new("/nonexistent/my.cnf")).is_empty());
        assert!(alive(std::process::id()));
        assert!(!alive(u32::MAX));
    }
}
