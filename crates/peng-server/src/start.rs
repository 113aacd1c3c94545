//! The one module that knows every part: it makes them (state, logs, metrics, monitor,
//! process driver, databases, the isolation decision), hands them to the application layer,
//! binds the listeners, starts the background loops, and stops everything in an order that
//! loses nothing.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use peng_core::{ServiceId, StageName, TeamName};
use peng_logs::index::{LogStore, SearchRequest};
use peng_logs::ingest::{IngestAuth, IngestContext};
use peng_logs::pipeline::Pipeline;
use peng_monitor::{AlertRecord, Endpoint, InstanceDirectory, Monitor};
use peng_provision::driver::process::{InstanceState, ProcessDriver, ProcessDriverConfig};
use peng_sandbox::Isolation;
use peng_spec::{IsolationMode, Platform};
use peng_state::State;
use peng_tsdb::Tsdb;
use tokio::net::{TcpListener, UdpSocket};
use tokio_util::sync::CancellationToken;

use crate::ingest;
use crate::ops::{Addrs, Ops, Parts};

/// Where `peng serve` keeps its data and listens.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub data_dir: PathBuf,
    /// HTTP: API, web UI, `POST /gelf`.
    pub listen: SocketAddr,
    pub gelf_udp: SocketAddr,
    pub gelf_tcp: SocketAddr,
    /// The platform file; `None` for the built-in platform.
    pub platform: Option<PathBuf>,
    /// How often databases are compared with what peng declared, and repaired.
    pub db_reconcile_every: std::time::Duration,
    /// How often database statistics feed the `db.*` sensors.
    pub db_sample_every: std::time::Duration,
    /// A metrics database not written for this long is compacted whole, once (zero: never).
    pub metrics_compact_cold: std::time::Duration,
}

impl ServerConfig {
    /// Defaults for everything but where the data lives and what to listen on.
    pub fn new(
        data_dir: PathBuf,
        listen: SocketAddr,
        gelf_udp: SocketAddr,
        gelf_tcp: SocketAddr,
    ) -> Self {
        ServerConfig {
            data_dir,
            listen,
            gelf_udp,
            gelf_tcp,
            platform: None,
            db_reconcile_every: std::time::Duration::from_secs(30),
            db_sample_every: std::time::Duration::from_secs(10),
            metrics_compact_cold: std::time::Duration::from_secs(4 * 3600),
        }
    }
}

/// Reads the platform file, or the built-in platform without one; returns it with the
/// directory its relative paths resolve against.
pub fn load_platform(
    path: Option<&std::path::Path>,
) -> anyhow::Result<(peng_spec::Platform, PathBuf)> {
    match path {
        None => Ok((peng_spec::Platform::builtin(), PathBuf::from("/"))),
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read the platform file {}", path.display()))?;
            let platform = peng_spec::parse_platform(&path.display().to_string(), &text)
                .map_err(|d| anyhow::anyhow!("{d}"))?;
            let dir = std::fs::canonicalize(path)
                .ok()
                .and_then(|p| p.parent().map(|d| d.to_path_buf()))
                .unwrap_or_else(|| PathBuf::from("."));
            Ok((platform, dir))
        }
    }
}

/// A running server. Dropping it does not stop it; call `shutdown`.
pub struct Server {
    pub addrs: Addrs,
    pub admin_token_file: PathBuf,
    ops: Ops,
    cancel: CancellationToken,
    drain: CancellationToken,
    carriers: Vec<tokio::task::JoinHandle<()>>,
    http: tokio::task::JoinHandle<()>,
    background: Vec<tokio::task::JoinHandle<()>>,
}

impl Server {
    /// Opens the data directory, binds every listener, brings back the declared services and
    /// starts serving.
    pub async fn start(cfg: ServerConfig) -> anyhow::Result<Server> {
        let (platform, platform_dir) = load_platform(cfg.platform.as_deref())?;
        std::fs::create_dir_all(&cfg.data_dir)
            .with_context(|| format!("cannot create data dir {}", cfg.data_dir.display()))?;
        // Made absolute once: instances run elsewhere, and every path handed to them (the
        // database CA, ...) derives from this one.
        let data_dir = std::fs::canonicalize(&cfg.data_dir)
            .with_context(|| format!("cannot resolve data dir {}", cfg.data_dir.display()))?;
        let dir = &data_dir;
        // Tokens, the server secret and every team's logs live here: only peng's user may look.
        std::fs::set_permissions(dir, std::os::unix::fs::PermissionsExt::from_mode(0o700))
            .with_context(|| format!("cannot restrict data dir {}", dir.display()))?;
        let state = State::open(&dir.join("state.db"))
            .await
            .context("cannot open the state database")?;
        let admin_token_file = dir.join("admin.token");
        if let Some(token) = state.ensure_admin_token().await? {
            peng_state::keyfile::write_private(&admin_token_file, &token)
                .with_context(|| format!("cannot write {}", admin_token_file.display()))?;
            tracing::info!(file = %admin_token_file.display(), "first start: wrote the admin token (mode 0600)");
            eprintln!(
                "peng: first start, the admin token is in {} (mode 0600)",
                admin_token_file.display()
            );
        }
        let secret = peng_state::keyfile::load_or_create_secret(&dir.join("secret.key"))
            .context("cannot read the server secret")?;

        let tsdb =
            Arc::new(Tsdb::open(&dir.join("metrics")).context("cannot open the metrics store")?);
        let influx = Arc::new(peng_influx::Catalog::with_own(
            &dir.join("influx"),
            tsdb.clone(),
        ));
        let logs =
            Arc::new(LogStore::open(&dir.join("logs")).context("cannot open the log index")?);
        let pipeline = Pipeline::start(logs.clone(), Default::default())
            .context("cannot start the log pipeline")?;
        let ingest_auth = IngestAuth::default();
        for team in state.teams().await? {
            ingest_auth.set(
                &ingest::ingest_token(&secret, &team.name, team.ingest_generation),
                team.name.clone(),
            );
        }
        let ingest_ctx = IngestContext::new(ingest_auth.clone(), pipeline.clone());

        let http = TcpListener::bind(cfg.listen)
            .await
            .with_context(|| format!("cannot listen on {}", cfg.listen))?;
        let udp = UdpSocket::bind(cfg.gelf_udp)
            .await
            .with_context(|| format!("cannot bind gelf udp {}", cfg.gelf_udp))?;
        let tcp = TcpListener::bind(cfg.gelf_tcp)
            .await
            .with_context(|| format!("cannot bind gelf tcp {}", cfg.gelf_tcp))?;
        let addrs = Addrs {
            http: http.local_addr()?,
            gelf_udp: udp.local_addr()?,
            gelf_tcp: tcp.local_addr()?,
        };

        let setup = isolation(&platform, dir).await?;
        let (output_tx, output_rx) = tokio::sync::mpsc::channel(8192);
        let (notice_tx, notice_rx) = tokio::sync::mpsc::channel(256);
        let mut driver_cfg = ProcessDriverConfig::new(dir.join("instances"), output_tx);
        driver_cfg.isolation = setup.isolation;
        driver_cfg.cgroups = setup.cgroups;
        driver_cfg.notices = Some(notice_tx);
        let driver = ProcessDriver::start(driver_cfg)
            .await
            .context("cannot start the process driver")?;

        let databases = Arc::new(
            peng_databases::Databases::open(dir, Arc::new(platform), platform_dir)
                .map_err(|e| anyhow::anyhow!("cannot open the databases: {e}"))?,
        );

        let (alert_tx, alert_rx) = tokio::sync::mpsc::channel(1024);
        let initial_alerts = alerts_from_state(&state).await?;
        let monitor = Monitor::start(peng_monitor::MonitorConfig {
            tsdb: tsdb.clone(),
            directory: Arc::new(Directory(driver.clone())),
            initial_alerts,
            events: alert_tx,
            sql: Some(Arc::new(SqlSensors {
                databases: databases.clone(),
                state: state.clone(),
            })),
            logs: Some(Arc::new(LogSensors(logs.clone()))),
        });

        let ops = Ops::new(Parts {
            state,
            logs,
            pipeline,
            ingest: ingest_auth,
            ingest_ctx,
            tsdb,
            influx,
            monitor,
            driver,
            databases,
            secret,
            addrs,
            data_dir: data_dir.clone(),
            limits: setup.limits,
        });
        let cancel = CancellationToken::new();
        let mut background = vec![
            tokio::spawn(peng_logs::ingest::serve_udp(
                udp,
                ops.ingest_context(),
                cancel.clone(),
            )),
            tokio::spawn(peng_logs::ingest::serve_tcp(
                tcp,
                ops.ingest_context(),
                cancel.clone(),
            )),
            tokio::spawn(crate::workers::retention_loop(ops.clone(), cancel.clone())),
            tokio::spawn(crate::workers::cold_compaction_loop(
                ops.clone(),
                cfg.metrics_compact_cold,
                cancel.clone(),
            )),
        ];
        background.extend(crate::workers::database_loops(
            &ops,
            cfg.db_reconcile_every,
            cfg.db_sample_every,
            &cancel,
        ));
        // Carriers run until everything that feeds them has stopped, then drain and end.
        let drain = CancellationToken::new();
        let carriers = vec![
            tokio::spawn(crate::workers::forward_instance_output(
                ops.clone(),
                output_rx,
                drain.clone(),
            )),
            tokio::spawn(crate::workers::persist_alert_events(
                ops.clone(),
                alert_rx,
                drain.clone(),
            )),
            tokio::spawn(crate::workers::usage_loop(
                ops.clone(),
                notice_rx,
                drain.clone(),
            )),
        ];
        background.retain(|h| !h.is_finished());

        ops.restore_all()
            .await
            .map_err(|e| anyhow::anyhow!("cannot restore the services: {e}"))?;

        let router = crate::api::router(ops.clone(), crate::ui::router());
        let http_cancel = cancel.clone();
        let http = tokio::spawn(crate::http::serve(http, router, http_cancel));
        tracing::info!(http = %addrs.http, gelf_udp = %addrs.gelf_udp, gelf_tcp = %addrs.gelf_tcp, "peng is serving");
        Ok(Server {
            addrs,
            admin_token_file,
            ops,
            cancel,
            drain,
            carriers,
            http,
            background,
        })
    }

    /// The application layer of this server, for in-process tests.
    #[cfg(test)]
    pub(crate) fn ops(&self) -> &Ops {
        &self.ops
    }

    /// Stops in the order that loses nothing: sensors (handing over their last alert
    /// transitions), then instances (their last output lines), then the listeners; then the
    /// carriers drain what is queued, and the log pipeline commits what it holds.
    pub async fn shutdown(self) {
        self.ops.stop_instances().await;
        self.cancel.cancel();
        // Databases stop after the instances that use them.
        self.ops.stop_databases().await;
        let _ = self.http.await;
        for h in self.background {
            if tokio::time::timeout(std::time::Duration::from_secs(10), h)
                .await
                .is_err()
            {
                tracing::warn!("a listener did not stop within 10s");
            }
        }
        self.drain.cancel();
        for h in self.carriers {
            let _ = h.await;
        }
        self.ops.finish().await;
    }
}

/// What start-up decided about isolation.
struct Setup {
    pub isolation: Isolation,
    pub cgroups: Option<peng_cgroup::Cgroups>,
    /// `cgroup v1 (memory, cpu, cpuacct, pids)` or `off (why)`.
    pub limits: String,
}

/// Probes the machine and applies the platform's `isolation.mode`: `off` never sandboxes,
/// `auto` sandboxes when it can, `required` refuses to start when it cannot sandbox or limit.
/// Whatever is off is said at start, with why.
async fn isolation(platform: &Platform, data_dir: &Path) -> anyhow::Result<Setup> {
    let settings = platform.isolation.clone();
    let hidden = vec![data_dir.to_path_buf()];
    let parent = cgroup_parent(data_dir);
    let (isolation, cgroups) = tokio::task::spawn_blocking(move || {
        let isolation = match settings.mode {
            IsolationMode::Off => Isolation::Off {
                reason: "isolation.mode is off in the platform file".into(),
            },
            IsolationMode::Auto | IsolationMode::Required => {
                peng_sandbox::probe(&settings.system_dirs, hidden)
            }
        };
        (isolation, peng_cgroup::Cgroups::detect(&parent))
    })
    .await
    .context("the isolation probe failed")?;
    let (cgroups, limits) = match cgroups {
        Ok(c) => {
            let text = c.describe();
            (Some(c), text)
        }
        Err(e) => (None, format!("off ({e})")),
    };
    if platform.isolation.mode == IsolationMode::Required {
        if let Isolation::Off { reason } = &isolation {
            anyhow::bail!("isolation.mode is required in the platform file, but instances cannot be sandboxed: {reason}");
        }
        if cgroups.is_none() {
            anyhow::bail!("isolation.mode is required in the platform file, but instances cannot be limited: {limits}");
        }
    }
    match &isolation {
        Isolation::On(_) => {
            tracing::info!(isolation = %isolation.describe(), %limits, "instances run sandboxed")
        }
        Isolation::Off { .. } => {
            tracing::warn!(isolation = %isolation.describe(), %limits, "instances run unsandboxed, as peng's own user");
            eprintln!(
                "peng: isolation {}: instances run as peng's own user and can read what it can",
                isolation.describe()
            );
        }
    }
    if cgroups.is_none() {
        eprintln!("peng: limits {limits}: instances are not held to their resources");
    }
    Ok(Setup {
        isolation,
        cgroups,
        limits,
    })
}

/// One parent group per data directory, so that two pengs on one machine (tests run many)
/// never clean up each other's instances.
fn cgroup_parent(data_dir: &Path) -> String {
    use sha2::{Digest, Sha256};
    let hash = Sha256::digest(data_dir.as_os_str().as_encoded_bytes());
    format!("peng-{}", hex::encode(&hash[..4]))
}

/// The process driver as the monitor's view of where instances listen.
struct Directory(ProcessDriver);

impl InstanceDirectory for Directory {
    fn endpoints(&self, service: &ServiceId, stage: &StageName) -> Vec<Endpoint> {
        self.0
            .instances(Some(service))
            .into_iter()
            .filter(|i| &i.stage == stage)
            .map(|i| Endpoint {
                instance: i.index,
                host: "127.0.0.1".to_string(),
                port: i.port,
                running: i.state == InstanceState::Running,
            })
            .collect()
    }
}

/// Runs `sql` sensors as the read-only account of the service's database.
struct SqlSensors {
    databases: Arc<peng_databases::Databases>,
    state: State,
}

impl peng_monitor::SqlRunner for SqlSensors {
    fn query_value(
        &self,
        service: &ServiceId,
        stage: &StageName,
        query: &str,
        timeout: std::time::Duration,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<f64, String>> + Send + '_>> {
        let (service, stage, query) = (service.clone(), stage.clone(), query.to_string());
        Box::pin(async move {
            match tokio::time::timeout(
                timeout,
                self.databases
                    .query_value(&self.state, &service, &stage, &query),
            )
            .await
            {
                Ok(result) => result,
                Err(_) => Err(format!("no answer within {timeout:?}")),
            }
        })
    }
}

/// Counts for `log` sensors in the log store. The store adds the team as a mandatory clause, so
/// a sensor counts its own team's messages whatever its query says.
struct LogSensors(Arc<LogStore>);

impl peng_monitor::LogCounter for LogSensors {
    fn count(
        &self,
        team: &TeamName,
        query: &str,
        since_ns: i64,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<u64, String>> + Send + '_>> {
        let store = self.0.clone();
        let req = SearchRequest {
            team: Some(team.clone()),
            query: query.to_string(),
            since_ns: Some(since_ns),
            limit: 0,
            ..SearchRequest::default()
        };
        Box::pin(async move {
            match tokio::task::spawn_blocking(move || store.search(&req)).await {
                Ok(Ok(found)) => Ok(u64::try_from(found.total).unwrap_or(u64::MAX)),
                Ok(Err(e)) => Err(e.to_string()),
                Err(e) => Err(format!("the log count did not finish: {e}")),
            }
        })
    }
}

/// The alerts as the state kept them, for the monitor to go on from.
async fn alerts_from_state(state: &State) -> anyhow::Result<Vec<AlertRecord>> {
    Ok(state
        .alerts()
        .await?
        .into_iter()
        .map(|row| AlertRecord {
            service: row.service,
            stage: row.stage,
            alert: row.alert,
            state: row.state,
            since_ns: row.since_ns.unwrap_or(0),
            started_at_ns: row.started_at_ns,
            value: row.value,
            severity: row.severity,
            escalated: row.escalated,
            last_message: row.message,
        })
        .collect())
}
