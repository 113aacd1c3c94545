//! Dedicated servers for the tests of `server`, `replica` and `stats`: each test gets its own
//! temporary directory, CA and free ports; a server still running when a test fails is stopped
//! by its guard.

use std::collections::BTreeMap;
use std::future::Future;
use std::ops::Deref;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use peng_db::server::{free_port, DedicatedConfig, DedicatedServer};
use peng_db::tls::Ca;
use peng_db::tools::Tools;
use sqlx::mysql::{MySqlConnectOptions, MySqlPoolOptions, MySqlSslMode};
use sqlx::{ConnectOptions, MySqlPool};
use tempfile::TempDir;

/// A directory for a test's servers, with peng's CA in `ca/`.
pub struct Site {
    pub tools: Tools,
    pub ca: Ca,
    pub dir: TempDir,
}

impl Site {
    pub fn new() -> Site {
        let tools = Tools::discover().expect("MariaDB programs");
        let dir = tempfile::tempdir().expect("temp dir");
        let ca = Ca::load_or_create(&dir.path().join("ca")).expect("CA");
        Site { tools, ca, dir }
    }

    pub fn config(&self, name: &str, server_id: u32, read_only: bool) -> DedicatedConfig {
        DedicatedConfig {
            name: format!("test {name}"),
            dir: self.server_dir(name),
            port: free_port().expect("free port"),
            server_id,
            settings: BTreeMap::from([
                ("innodb_buffer_pool_size".to_string(), "32M".to_string()),
                ("max_connections".to_string(), "40".to_string()),
            ]),
            read_only,
        }
    }

    pub fn server_dir(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub async fn start(&self, cfg: DedicatedConfig) -> Running {
        let name = cfg.name.clone();
        let started = Instant::now();
        let server = DedicatedServer::start(&self.tools, &self.ca, cfg)
            .await
            .unwrap_or_else(|e| panic!("starting {name}: {e}"));
        eprintln!("timing: start of {name}: {:?}", started.elapsed());
        let app = MySqlPoolOptions::new()
            .max_connections(2)
            .connect_lazy_with(
                MySqlConnectOptions::new()
                    .socket(server.socket())
                    .username(server.admin_user())
                    .disable_statement_logging(),
            );
        Running(Some(server), app)
    }
}

/// A started server; dropped while a test unwinds, it is shut down before the directory goes.
pub struct Running(Option<DedicatedServer>, MySqlPool);

impl Running {
    /// A pool like an application's: its writes go to the binary log and replicate (the admin
    /// pool's do not).
    pub fn app(&self) -> &MySqlPool {
        &self.1
    }

    pub async fn stop(mut self) {
        self.1.close().await;
        if let Some(server) = self.0.take() {
            server.stop().await.expect("stop");
        }
    }

    /// Hands the server over, e.g. to `destroy` it.
    pub fn take(mut self) -> DedicatedServer {
        self.0.take().expect("server")
    }
}

impl Deref for Running {
    type Target = DedicatedServer;

    fn deref(&self) -> &DedicatedServer {
        self.0.as_ref().expect("server")
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let Some(server) = self.0.take() else {
            return;
        };
        let pid = server.pid();
        // dropping the handle tells its supervisor to stop; the test's runtime may not get to
        // run it, so the process is stopped here as well
        drop(server);
        if let Some(pid) = pid {
            unsafe {
                libc::kill(pid as i32, libc::SIGTERM);
            }
            let deadline = Instant::now() + Duration::from_secs(30);
            while alive(pid) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }
}

/// Whether `pid` runs (zombies do not count).
pub fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|stat| {
            let state = stat
                .rsplit_once(')')
                .and_then(|(_, rest)| rest.trim_start().chars().next());
            !matches!(state, Some('Z') | Some('X'))
        })
        .unwrap_or(false)
}

/// Polls `check` every 100 ms until it returns `Some`, at most `timeout`.
pub async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let started = Instant::now();
    loop {
        if let Some(value) = check().await {
            return value;
        }
        if started.elapsed() > timeout {
            panic!("{what}: not within {timeout:?}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// One value of a single-row query, as text.
pub async fn scalar(pool: &sqlx::MySqlPool, sql: &str) -> Option<String> {
    use sqlx::Row;
    let rows = sqlx::raw_sql(sql).fetch_all(pool).await.ok()?;
    rows.first()?
        .try_get_unchecked::<Option<String>, _>(0)
        .ok()?
}

/// Runs statements, panicking with the statement on error.
pub async fn run(pool: &sqlx::MySqlPool, statements: &[&str]) {
    for sql in statements {
        sqlx::raw_sql(sql)
            .execute(pool)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
    }
}

pub fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path)
        .expect("metadata")
        .permissions()
        .mode()
        & 0o777
}

/// A pool of `user` over TCP with TLS verified against peng's CA.
pub fn user_pool(server: &DedicatedServer, user: &str, password: &str) -> MySqlPool {
    MySqlPoolOptions::new()
        .max_connections(2)
        .connect_lazy_with(
            MySqlConnectOptions::new()
                .host("127.0.0.1")
                .port(server.port())
                .username(user)
                .password(password)
                .ssl_mode(MySqlSslMode::VerifyCa)
                .ssl_ca(server.ca_pem())
                .disable_statement_logging(),
        )
}
