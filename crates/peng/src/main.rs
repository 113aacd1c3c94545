//! `peng`: `peng serve` runs the platform; every other command is a client of its HTTP API
//! (`--url`/`PENG_URL`, `--token`/`PENG_TOKEN`), except `validate` and `schema`, which work
//! offline.

mod client;
mod output;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "peng",
    version,
    about = "self-service platform: services, logs, sensors and alerts from one YAML file"
)]
struct Cli {
    #[command(flatten)]
    conn: Conn,
    #[command(subcommand)]
    command: Command,
}

#[derive(Args, Clone)]
pub struct Conn {
    /// URL of the peng server.
    #[arg(
        long,
        env = "PENG_URL",
        default_value = "http://127.0.0.1:8080",
        global = true
    )]
    url: String,
    /// API token; without one, the admin token of ./peng-data (or PENG_DATA_DIR) is used when readable.
    #[arg(long, env = "PENG_TOKEN", global = true, hide_env_values = true)]
    token: Option<String>,
    /// Print the API's JSON instead of text.
    #[arg(long, global = true)]
    json: bool,
}

#[derive(Subcommand)]
enum Command {
    /// Run the platform: API, web UI, GELF inputs, instances, sensors, alerts.
    Serve {
        #[arg(long, env = "PENG_DATA_DIR", default_value = "./peng-data")]
        data_dir: PathBuf,
        /// HTTP address (API, web UI, GELF over HTTP).
        #[arg(long, env = "PENG_LISTEN", default_value = "127.0.0.1:8080")]
        listen: SocketAddr,
        /// GELF over UDP.
        #[arg(long, env = "PENG_GELF_UDP", default_value = "127.0.0.1:12201")]
        gelf_udp: SocketAddr,
        /// GELF over TCP.
        #[arg(long, env = "PENG_GELF_TCP", default_value = "127.0.0.1:12201")]
        gelf_tcp: SocketAddr,
        /// The platform file (offerings, capacity, prices); without it, the built-in platform.
        #[arg(long, env = "PENG_PLATFORM")]
        platform: Option<PathBuf>,
        /// How often databases are compared with what peng declared, and repaired.
        #[arg(long, default_value = "30s", value_parser = parse_duration)]
        db_reconcile_every: std::time::Duration,
        /// How often database statistics are sampled for the db.* sensors.
        #[arg(long, default_value = "10s", value_parser = parse_duration)]
        db_sample_every: std::time::Duration,
        /// A metrics database not written for this long is compacted whole, once (0s: never),
        /// as InfluxDB's compact-full-write-cold-duration.
        #[arg(long, env = "PENG_METRICS_COMPACT_COLD", default_value = "4h", value_parser = parse_duration)]
        metrics_compact_cold: std::time::Duration,
    },
    /// Check a service file offline; errors as file:line:col, exit 1 when invalid.
    Validate { file: PathBuf },
    /// Print the JSON Schema of the service file, for editors.
    Schema,
    /// Show what applying a service file would change (exit 0: none, 2: changes, 1: error).
    Plan {
        #[arg(short = 'f', long = "file", default_value = "peng.yaml")]
        file: PathBuf,
        #[arg(long)]
        stage: Option<String>,
    },
    /// Apply a service file: plan, then make it so.
    Apply {
        #[arg(short = 'f', long = "file", default_value = "peng.yaml")]
        file: PathBuf,
        #[arg(long)]
        stage: Option<String>,
        /// Allow destroying a protected database (a final backup is taken first).
        #[arg(long)]
        force: bool,
    },
    /// Stop all instances and sensors of a service and remove it; its logs stay for their retention.
    Destroy {
        /// TEAM/SERVICE
        service: String,
        /// Allow destroying protected databases (a final backup is taken first).
        #[arg(long)]
        force: bool,
    },
    /// Stages, instances, sensors and firing alerts, of one service or of all yours.
    Status { service: Option<String> },
    /// Latest state of a service's sensors, with a short history.
    Sensors {
        /// TEAM/SERVICE
        service: String,
        /// History window, e.g. 15m, 1h.
        #[arg(long, default_value = "15m")]
        since: String,
    },
    /// Teams (admin).
    #[command(subcommand)]
    Team(TeamCmd),
    /// Search and follow logs.
    #[command(subcommand)]
    Logs(LogsCmd),
    /// A service's database: credentials, backups, restores, password rotation, promote.
    #[command(subcommand)]
    Db(DbCmd),
    /// What each team's instances, databases, backups and logs cost, per day and month.
    Costs {
        /// Only this team (teams see only their own).
        #[arg(long)]
        team: Option<String>,
    },
    /// Grafana dashboards over the team's `peng` database.
    #[command(subcommand)]
    Dashboards(DashboardsCmd),
    /// Who changed what.
    Audit {
        #[arg(long, default_value_t = 50)]
        limit: i64,
    },
}

#[derive(Subcommand)]
enum DashboardsCmd {
    /// Print a service's dashboard (sensors, CPU, memory) as JSON for Grafana's import.
    Export {
        /// TEAM/SERVICE
        service: String,
    },
}

#[derive(Subcommand)]
enum DbCmd {
    /// Show how the service connects (owning team only; the reading is audited).
    Credentials {
        /// TEAM/SERVICE
        service: String,
        #[arg(long)]
        stage: String,
    },
    /// Take a backup now; it is verified by restoring it on a scratch server.
    Backup {
        /// TEAM/SERVICE
        service: String,
        #[arg(long)]
        stage: String,
    },
    /// List backups, newest first, with their verification.
    Backups {
        /// TEAM/SERVICE
        service: String,
        #[arg(long)]
        stage: String,
    },
    /// Restore a backup (default: the newest verified one).
    Restore {
        /// TEAM/SERVICE
        service: String,
        #[arg(long)]
        stage: String,
        /// The backup id (see `peng db backups`).
        #[arg(long)]
        backup: Option<i64>,
        /// `service`: into the service's own database; `scratch`: into a new database next to it.
        #[arg(long, default_value = "service")]
        into: String,
    },
    /// A new password for the application account, without downtime.
    Rotate {
        /// TEAM/SERVICE
        service: String,
        #[arg(long)]
        stage: String,
    },
    /// Make the replica the primary; instances are moved to the new address.
    Promote {
        /// TEAM/SERVICE
        service: String,
        #[arg(long)]
        stage: String,
    },
}

fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    peng_core::Duration::parse(s)
        .map(|d| d.as_std())
        .map_err(|e| e.to_string())
}

#[derive(Subcommand)]
enum TeamCmd {
    /// Create a team; prints its API token and ingest token once.
    Create {
        name: String,
        /// Print only the API token, e.g. `export PENG_TOKEN=$(peng team create books --quiet)`.
        #[arg(long, short = 'q')]
        quiet: bool,
    },
    /// List teams.
    List,
    /// Print a team's GELF ingest token.
    IngestToken { name: String },
    /// Replace a team's API tokens with a new one (the old ones stop working).
    RotateToken { name: String },
    /// Replace a team's ingest token; its instances are replaced to get the new one.
    RotateIngestToken { name: String },
}

#[derive(Subcommand)]
enum LogsCmd {
    /// Search: words, "phrases", field:value, AND/OR/NOT, field:[a TO b].
    Search {
        #[arg(default_value = "")]
        query: String,
        #[arg(long, default_value = "15m")]
        since: String,
        #[arg(long)]
        until: Option<String>,
        #[arg(long)]
        service: Option<String>,
        #[arg(long)]
        stage: Option<String>,
        #[arg(long, default_value_t = 100)]
        limit: usize,
    },
    /// Follow new messages as they arrive (Ctrl-C to stop).
    Tail {
        #[arg(default_value = "")]
        query: String,
        #[arg(long)]
        service: Option<String>,
        #[arg(long)]
        stage: Option<String>,
    },
}

/// Caps glibc's malloc at two arenas, before any thread starts. By default each thread that
/// allocates may get an arena of its own (up to 8 per core); log records are allocated by the
/// receiving tasks and freed by the index threads, and the freed memory then sits in many
/// arenas: at full log ingest the server's RSS was 350 MiB with the default and 247 MiB with
/// two arenas, at the same throughput (`bench/gelf-ingest.sh --transports tcp`).
fn few_malloc_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets a parameter of the allocator; it is called before any other
    // thread exists. A refusal (0) leaves the default, which is only less frugal.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if matches!(cli.command, Command::Serve { .. }) {
        few_malloc_arenas();
    }
    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    runtime.enable_all();
    // `serve` owns sockets that peers may close at any time: there SIGPIPE stays ignored (as
    // the Rust runtime leaves it) and a closed socket is an error on that socket only.
    if !matches!(cli.command, Command::Serve { .. }) {
        end_quietly_when_stdout_closes();
        runtime.on_thread_start(block_sigpipe_in_this_thread);
    }
    let runtime = match runtime.build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("peng: cannot start the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("peng: {e:#}");
            ExitCode::from(1)
        }
    }
}

/// `peng status | head -3`: once the reader is gone, a client command ends as git and ripgrep
/// do, killed by SIGPIPE without a word, instead of failing on its next line of output. Only
/// the main thread, which runs the command and prints, can receive the signal: the runtime's
/// threads, which drive the HTTP connections, block it (see [`block_sigpipe_in_this_thread`]).
fn end_quietly_when_stdout_closes() {
    // SAFETY: no other thread exists yet, and SIG_DFL is a valid disposition for SIGPIPE.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

/// A write to a connection the server has closed must be an error of that request, never the
/// end of the process; not every socket write asks the kernel to spare the signal (writev does
/// not), so the threads that drive connections keep SIGPIPE blocked.
fn block_sigpipe_in_this_thread() {
    // SAFETY: the set is initialised by sigemptyset before use; pthread_sigmask changes only
    // the calling thread's mask.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGPIPE);
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
    }
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let conn = cli.conn;
    match cli.command {
        Command::Serve {
            data_dir,
            listen,
            gelf_udp,
            gelf_tcp,
            platform,
            db_reconcile_every,
            db_sample_every,
            metrics_compact_cold,
        } => {
            let mut cfg = peng_server::ServerConfig::new(data_dir, listen, gelf_udp, gelf_tcp);
            cfg.platform = platform;
            cfg.db_reconcile_every = db_reconcile_every;
            cfg.db_sample_every = db_sample_every;
            cfg.metrics_compact_cold = metrics_compact_cold;
            serve(cfg).await
        }
        Command::Validate { file } => Ok(output::validate(&file)),
        Command::Schema => {
            println!(
                "{}",
                serde_json::to_string_pretty(&peng_spec::service_schema())?
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Plan { file, stage } => client::plan(&conn, &file, stage).await,
        Command::Apply { file, stage, force } => client::apply(&conn, &file, stage, force).await,
        Command::Destroy { service, force } => client::destroy(&conn, &service, force).await,
        Command::Db(cmd) => match cmd {
            DbCmd::Credentials { service, stage } => {
                client::db_credentials(&conn, &service, &stage).await
            }
            DbCmd::Backup { service, stage } => client::db_backup(&conn, &service, &stage).await,
            DbCmd::Backups { service, stage } => client::db_backups(&conn, &service, &stage).await,
            DbCmd::Restore {
                service,
                stage,
                backup,
                into,
            } => client::db_restore(&conn, &service, &stage, backup, &into).await,
            DbCmd::Rotate { service, stage } => {
                client::db_action(&conn, &service, &stage, "rotate").await
            }
            DbCmd::Promote { service, stage } => {
                client::db_action(&conn, &service, &stage, "promote").await
            }
        },
        Command::Costs { team } => client::costs(&conn, team.as_deref()).await,
        Command::Status { service } => client::status(&conn, service.as_deref()).await,
        Command::Sensors { service, since } => client::sensors(&conn, &service, &since).await,
        Command::Team(TeamCmd::Create { name, quiet }) => {
            client::team_create(&conn, &name, quiet).await
        }
        Command::Team(TeamCmd::List) => client::team_list(&conn).await,
        Command::Team(TeamCmd::IngestToken { name }) => client::ingest_token(&conn, &name).await,
        Command::Team(TeamCmd::RotateToken { name }) => client::rotate_token(&conn, &name).await,
        Command::Team(TeamCmd::RotateIngestToken { name }) => {
            client::rotate_ingest_token(&conn, &name).await
        }
        Command::Logs(LogsCmd::Search {
            query,
            since,
            until,
            service,
            stage,
            limit,
        }) => {
            client::logs_search(
                &conn,
                &query,
                &since,
                until.as_deref(),
                service.as_deref(),
                stage.as_deref(),
                limit,
            )
            .await
        }
        Command::Logs(LogsCmd::Tail {
            query,
            service,
            stage,
        }) => client::logs_tail(&conn, &query, service.as_deref(), stage.as_deref()).await,
        Command::Audit { limit } => client::audit(&conn, limit).await,
        Command::Dashboards(DashboardsCmd::Export { service }) => {
            client::dashboard_export(&conn, &service).await
        }
    }
}

async fn serve(cfg: peng_server::ServerConfig) -> anyhow::Result<ExitCode> {
    use tracing_subscriber::EnvFilter;
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| EnvFilter::new("info,tantivy=warn")),
        )
        .with_writer(std::io::stderr)
        // colours only for a person at a terminal, not in a log file
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let server = peng_server::Server::start(cfg).await?;
    eprintln!(
        "peng: serving http://{} (gelf udp {}, tcp {}); admin token in {}",
        server.addrs.http,
        server.addrs.gelf_udp,
        server.addrs.gelf_tcp,
        server.admin_token_file.display()
    );
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {},
        _ = term.recv() => {},
    }
    eprintln!("peng: stopping (instances stop with the server)");
    server.shutdown().await;
    Ok(ExitCode::SUCCESS)
}
