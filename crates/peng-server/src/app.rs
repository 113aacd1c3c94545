//! Start-up, the shared application state, and shutdown.

use std::net::SocketAddr;
use std::ops::Deref;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use peng_logs::index::LogStore;
use peng_logs::ingest::{IngestAuth, IngestContext};
use peng_logs::pipeline::{Pipeline, PipelineHandle};
use peng_monitor::Monitor;
use peng_provision::driver::process::{ProcessDriver, ProcessDriverConfig};
use peng_state::State;
use peng_tsdb::Tsdb;
use tokio::net::{TcpListener, UdpSocket};
use tokio_util::sync::CancellationToken;

use crate::ingest;

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

/// Addresses actually bound (a configured port 0 is resolved here).
#[derive(Debug, Clone, Copy)]
pub struct Addrs {
    pub http: SocketAddr,
    pub gelf_udp: SocketAddr,
    pub gelf_tcp: SocketAddr,
}

/// Everything a request handler or worker may use. Cheap to clone.
#[derive(Clone)]
pub struct App(Arc<Inner>);

pub struct Inner {
    pub state: State,
    pub logs: Arc<LogStore>,
    pub pipeline: PipelineHandle,
    pub ingest: IngestAuth,
    /// The GELF listeners' shared context (attribution, dead letters, pipeline).
    pub ingest_ctx: IngestContext,
    pub tsdb: Arc<Tsdb>,
    pub monitor: Monitor,
    pub driver: ProcessDriver,
    pub databases: Arc<crate::databases::Databases>,
    pub secret: Vec<u8>,
    pub addrs: Addrs,
    /// Absolute, symbolic links resolved: every path derived from it and handed to an
    /// instance is absolute too.
    pub data_dir: PathBuf,
    /// Whether instances are held to their resources: `cgroup v1 (...)` or `off (why)`.
    pub limits: String,
    /// Applies and destroys run one at a time, so that a plan is applied to the state it was
    /// computed from.
    pub apply_lock: tokio::sync::Mutex<()>,
}

impl Deref for App {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}

/// A running server. Dropping it does not stop it; call `shutdown`.
pub struct Server {
    pub addrs: Addrs,
    pub admin_token_file: PathBuf,
    app: App,
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
            ingest::write_private(&admin_token_file, &token)
                .with_context(|| format!("cannot write {}", admin_token_file.display()))?;
            tracing::info!(file = %admin_token_file.display(), "first start: wrote the admin token (mode 0600)");
            eprintln!(
                "peng: first start, the admin token is in {} (mode 0600)",
                admin_token_file.display()
            );
        }
        let secret = ingest::load_or_create_secret(&dir.join("secret.key"))
            .context("cannot read the server secret")?;

        let tsdb =
            Arc::new(Tsdb::open(&dir.join("metrics")).context("cannot open the metrics store")?);
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

        let setup = crate::isolation::setup(&platform, dir).await?;
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
            crate::databases::Databases::open(dir, Arc::new(platform), platform_dir)
                .context("cannot open the databases")?,
        );

        let (alert_tx, alert_rx) = tokio::sync::mpsc::channel(1024);
        let initial_alerts = crate::workers::alerts_from_state(&state).await?;
        let monitor = Monitor::start(peng_monitor::MonitorConfig {
            tsdb: tsdb.clone(),
            directory: Arc::new(crate::workers::Directory(driver.clone())),
            initial_alerts,
            events: alert_tx,
            sql: Some(Arc::new(crate::workers::SqlSensors {
                databases: databases.clone(),
                state: state.clone(),
            })),
        });

        let app = App(Arc::new(Inner {
            state,
            logs,
            pipeline,
            ingest: ingest_auth,
            ingest_ctx,
            tsdb,
            monitor,
            driver,
            databases,
            secret,
            addrs,
            data_dir: data_dir.clone(),
            limits: setup.limits,
            apply_lock: tokio::sync::Mutex::new(()),
        }));
        let cancel = CancellationToken::new();
        let mut background = vec![
            tokio::spawn(peng_logs::ingest::serve_udp(
                udp,
                app.ingest_ctx.clone(),
                cancel.clone(),
            )),
            tokio::spawn(peng_logs::ingest::serve_tcp(
                tcp,
                app.ingest_ctx.clone(),
                cancel.clone(),
            )),
            tokio::spawn(crate::workers::retention_loop(app.clone(), cancel.clone())),
            tokio::spawn(crate::workers::database_loop(
                app.clone(),
                cfg.db_reconcile_every,
                cfg.db_sample_every,
                cancel.clone(),
            )),
        ];
        // Carriers run until everything that feeds them has stopped, then drain and end.
        let drain = CancellationToken::new();
        let carriers = vec![
            tokio::spawn(crate::workers::forward_instance_output(
                app.clone(),
                output_rx,
                drain.clone(),
            )),
            tokio::spawn(crate::workers::persist_alert_events(
                app.clone(),
                alert_rx,
                drain.clone(),
            )),
            tokio::spawn(crate::workers::usage_loop(
                app.clone(),
                notice_rx,
                drain.clone(),
            )),
        ];
        background.retain(|h| !h.is_finished());

        crate::services::restore_all(&app).await?;

        let router = crate::api::router(app.clone());
        let http_cancel = cancel.clone();
        let http = tokio::spawn(crate::http::serve(http, router, http_cancel));
        tracing::info!(http = %addrs.http, gelf_udp = %addrs.gelf_udp, gelf_tcp = %addrs.gelf_tcp, "peng is serving");
        Ok(Server {
            addrs,
            admin_token_file,
            app,
            cancel,
            drain,
            carriers,
            http,
            background,
        })
    }

    /// Stops in the order that loses nothing: sensors (handing over their last alert
    /// transitions), then instances (their last output lines), then the listeners; then the
    /// carriers drain what is queued, and the log pipeline commits what it holds.
    pub async fn shutdown(self) {
        self.app.monitor.shutdown().await;
        self.app.driver.shutdown().await;
        self.cancel.cancel();
        // Databases stop after the instances that use them.
        self.app.databases.shutdown().await;
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
        if let Err(error) = self.app.pipeline.shutdown().await {
            tracing::error!(%error, "log pipeline did not shut down cleanly");
        }
        if let Err(error) = self.app.tsdb.flush() {
            tracing::error!(%error, "metrics store flush failed");
        }
        self.app.state.close().await;
    }
}
