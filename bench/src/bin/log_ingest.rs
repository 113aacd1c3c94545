//! `log-ingest`: how fast the real `peng serve` makes a million Java services' GELF messages
//! searchable over HTTP and TCP, what it keeps on disk per message, its peak memory and how
//! fast it finds one request id, next to tantivy-cli indexing the same messages and
//! syslog-ng writing them to a flat file, in the same run. See `bench/README.md`.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use clap::{Parser, ValueEnum};
use peng_bench::figures::{median, mib, ms, per_sec, ratio, thousands};
use peng_bench::gen::{self, Dataset};
use peng_bench::peers::{self, PeerRun, SyslogNg, TantivyCli};
use peng_bench::procfs::{self, MachineInfo};
use peng_bench::send::{self, HttpCounts, SendOutcome, TcpWrites};
use peng_bench::server::{free_ports, Api, ServerGuard};

/// How the messages reach peng.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Route {
    /// `POST /gelf`, `--batch` newline-separated messages per request.
    Http,
    /// GELF TCP, null-delimited, many messages per write.
    Tcp,
    /// GELF TCP, one message per write (`TCP_NODELAY`).
    TcpEach,
}

impl Route {
    fn name(self) -> &'static str {
        match self {
            Route::Http => "http",
            Route::Tcp => "tcp",
            Route::TcpEach => "tcp-each",
        }
    }

    fn label(self, batch: usize) -> String {
        match self {
            Route::Http => format!("peng, HTTP, {} msgs per POST", thousands(batch as f64)),
            Route::Tcp => "peng, TCP, many msgs per write".into(),
            Route::TcpEach => "peng, TCP, 1 msg per write".into(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Peer {
    /// `tantivy index --num_threads 1` on the same messages as tantivy documents.
    TantivyCli,
    /// syslog-ng taking the same messages over TCP and writing them to a flat file.
    SyslogNg,
}

/// Log ingest of the real `peng serve` next to tantivy-cli and syslog-ng, on the same messages.
#[derive(Debug, Parser)]
#[command(name = "log-ingest", version)]
struct Args {
    /// The peng binary to start.
    #[arg(long, default_value_os_t = peng_bench::server::default_peng())]
    peng: PathBuf,
    /// Messages in the data set (each path and peer takes all of them).
    #[arg(long, default_value_t = 1_000_000)]
    messages: usize,
    /// Seed of the message generator.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Senders at once (HTTP clients or TCP connections, one thread each).
    #[arg(long, default_value_t = 2)]
    senders: usize,
    /// Messages per `POST /gelf`; also how the messages are dealt to the senders (batch i to
    /// sender i mod --senders) on every path.
    #[arg(long, default_value_t = 5000)]
    batch: usize,
    /// How peng gets the messages, each into a fresh peng, in this order.
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "http,tcp,tcp-each"
    )]
    transports: Vec<Route>,
    /// Peers to measure after peng.
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "tantivy-cli,syslog-ng"
    )]
    peers: Vec<Peer>,
    /// The tantivy-cli binary (default: `tantivy` on PATH, else ~/.cache/peng/tools/bin/tantivy).
    #[arg(long)]
    tantivy: Option<PathBuf>,
    /// The syslog-ng binary (default: `syslog-ng` on PATH).
    #[arg(long)]
    syslog_ng: Option<PathBuf>,
    /// Indexing memory of tantivy-cli (`--memory_size`), MiB; peng's index writer has 64.
    #[arg(long, default_value_t = 64)]
    tantivy_memory_mib: usize,
    /// The messages' timestamps spread evenly over this many seconds up to now (0: 10 µs
    /// apart from now on), so that a search of the last 15 minutes meets a store with that much
    /// history: e.g. 1,000,000 messages over 8,640 s and 10,000,000 over 86,400 s have the same
    /// messages per minute, and the last 15 minutes hold the same number in both.
    #[arg(long, default_value_t = 0.0)]
    span_seconds: f64,
    /// Needle searches (one unique request id) per system; the median is reported.
    #[arg(long, default_value_t = 21)]
    needle_searches: usize,
    /// After all is searchable, peng's `logs/` has settled once its size has not changed for
    /// this many seconds ...
    #[arg(long, default_value_t = 5.0)]
    settle_quiet: f64,
    /// ... or this many seconds have passed.
    #[arg(long, default_value_t = 60.0)]
    settle_max: f64,
    /// Hard limit on the whole run, seconds.
    #[arg(long, default_value_t = 1200)]
    max_seconds: u64,
    /// Keep the temporary directory (data directories, logs, the peers' files).
    #[arg(long)]
    keep_data: bool,
    /// Also write the figures as JSON to this file.
    #[arg(long)]
    json: Option<PathBuf>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    match run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("log-ingest: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// One of peng's runs.
struct PengRow {
    path: Route,
    send: SendOutcome,
    http: Option<HttpCounts>,
    searchable: u64,
    /// From the first send to the search that first counted every message.
    until_searchable: Duration,
    /// CPU time of peng from the first send until then.
    cpu: Duration,
    settle_wait: Duration,
    /// Whether `logs/` stopped changing before `--settle-max`.
    settled: bool,
    logs_bytes: u64,
    wal_bytes: u64,
    hwm_kib: u64,
    /// Peak of `RssAnon` sampled every 100 ms until settled: the heap, without mapped files.
    peak_anon_kib: u64,
    needle: Vec<Duration>,
    needle_hits: u64,
    /// [`RECENT_QUERY`] over the last 15 minutes, as many times as the needle.
    recent: Vec<Duration>,
    recent_hits: u64,
}

/// A search of the kind people run most: the errors of the last 15 minutes, newest 100.
const RECENT_QUERY: &str = "level:<=3";

/// A line of the results table.
struct Line {
    system: String,
    messages: u64,
    elapsed: Duration,
    disk_bytes: u64,
    peak_rss_kib: u64,
    cpu: Duration,
    needle: Option<Duration>,
    needle_how: &'static str,
    /// Another way the same needle was searched, shown after the main figure.
    needle_also: Option<(Duration, &'static str)>,
}

impl Line {
    fn rate(&self) -> f64 {
        per_sec(self.messages, self.elapsed)
    }
    fn bytes_per_msg(&self) -> f64 {
        self.disk_bytes as f64 / self.messages.max(1) as f64
    }
    fn cpu_us_per_msg(&self) -> f64 {
        self.cpu.as_secs_f64() * 1e6 / self.messages.max(1) as f64
    }
}

fn now_secs() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

fn tool_version(bin: &Path, arg: &str) -> String {
    Command::new(bin)
        .arg(arg)
        .stdin(Stdio::null())
        .output()
        .ok()
        .and_then(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .next()
                .map(|l| l.trim().to_string())
        })
        .unwrap_or_else(|| "unknown version".into())
}

/// Batch `b` (messages `b*batch..`) goes to sender `b % senders`: each sender's batches.
fn deal(n: usize, batch: usize, senders: usize) -> Vec<Vec<(usize, usize)>> {
    let mut out = vec![Vec::new(); senders];
    let mut from = 0;
    let mut b = 0;
    while from < n {
        let to = (from + batch).min(n);
        out[b % senders].push((from, to));
        from = to;
        b += 1;
    }
    out
}

/// Each sender's messages, one slice each, in the order `deal` gives.
fn per_message<'a>(data: &'a Dataset, dealt: &[Vec<(usize, usize)>]) -> Vec<Vec<&'a [u8]>> {
    dealt
        .iter()
        .map(|batches| {
            batches
                .iter()
                .flat_map(|&(from, to)| (from..to).map(|i| data.message(i)))
                .collect()
        })
        .collect()
}

fn run(args: Args) -> Result<()> {
    if args.messages == 0 || args.messages > 10_000_000 {
        bail!("--messages must be between 1 and 10000000");
    }
    if args.senders == 0 || args.senders > 64 {
        bail!("--senders must be between 1 and 64");
    }
    if args.batch == 0 || args.batch > 20_000 {
        bail!("--batch must be between 1 and 20000 (peng takes at most 8 MiB per POST)");
    }
    if args.needle_searches == 0 || args.needle_searches > 1000 {
        bail!("--needle-searches must be between 1 and 1000");
    }
    if !(0.5..=600.0).contains(&args.settle_quiet) || !(0.5..=600.0).contains(&args.settle_max) {
        bail!("--settle-quiet and --settle-max must be between 0.5 and 600 seconds");
    }
    if !(0.0..=30.0 * 86_400.0).contains(&args.span_seconds) {
        bail!("--span-seconds must be between 0 and 30 days");
    }
    if args.tantivy_memory_mib < 16 || args.tantivy_memory_mib > 4000 {
        bail!("--tantivy-memory-mib must be between 16 and 4000");
    }
    let mut transports = args.transports.clone();
    transports.dedup();
    let mut peer_list = args.peers.clone();
    peer_list.dedup();
    // Find the peers' programs before anything runs.
    let tantivy = if peer_list.contains(&Peer::TantivyCli) {
        Some(
            peers::find_tool("tantivy", args.tantivy.as_deref()).context(
                "tantivy-cli not found (on PATH, ~/.cache/peng/tools/bin or --tantivy); \
             bench/log-ingest.sh installs it, or leave it out with --peers",
            )?,
        )
    } else {
        None
    };
    let syslog_ng = if peer_list.contains(&Peer::SyslogNg) {
        Some(
            peers::find_tool("syslog-ng", args.syslog_ng.as_deref())
                .or_else(|| peers::find_tool("syslog-ng", Some(Path::new("/usr/sbin/syslog-ng"))))
                .context(
                    "syslog-ng not found (apt-get install --no-install-recommends \
                     syslog-ng-core), or leave it out with --peers",
                )?,
        )
    } else {
        None
    };
    let started = Instant::now();
    let deadline = started + Duration::from_secs(args.max_seconds);
    let machine = MachineInfo::read();
    let tmp = tempfile::Builder::new()
        .prefix("peng-log-ingest-")
        .tempdir()
        .context("cannot create a temporary directory")?;

    // The data set, made before anything is timed. Each fresh peng hands out its own ingest
    // token, of the same length; it is put into the messages before that peng's run.
    let t = Instant::now();
    let placeholder = format!("pgi_{}", "0".repeat(40));
    let (first, step) = if args.span_seconds > 0.0 {
        (
            now_secs() - args.span_seconds,
            args.span_seconds / args.messages.max(1) as f64,
        )
    } else {
        (now_secs(), 1e-5)
    };
    let mut data = gen::java_services(args.messages, args.seed, &placeholder, first, step);
    let needle_at = args.messages * 61 / 100;
    let needle = data
        .request_id(needle_at)
        .context("the needle message has no _request_id")?;
    eprintln!(
        "log-ingest: {} messages, {:.0} B of JSON on average, {:.1}% with a stack trace, made in {:.1} s; needle: request id {needle} (message {needle_at})",
        thousands(data.len() as f64),
        data.avg_len(),
        data.with_trace as f64 * 100.0 / data.len() as f64,
        t.elapsed().as_secs_f64()
    );
    let dealt = deal(data.len(), args.batch, args.senders);

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;

    let mut peng_rows = Vec::new();
    for &p in &transports {
        let dir = tmp.path().join(format!("peng-{}", p.name()));
        std::fs::create_dir_all(&dir)?;
        let row = run_peng(&args, &rt, &mut data, &dealt, p, &dir, &needle, deadline)?;
        if !args.keep_data {
            let _ = std::fs::remove_dir_all(dir.join("data"));
        }
        peng_rows.push(row);
    }

    let mut tantivy_run = None;
    if let Some(bin) = &tantivy {
        let work = tmp.path().join("tantivy-cli");
        std::fs::create_dir_all(&work)?;
        let docs = work.join("docs.json");
        let t = Instant::now();
        let bytes = peers::write_tantivy_docs(&data, "bench", &docs)?;
        eprintln!(
            "log-ingest: [tantivy-cli] {} documents, {} MiB, written in {:.1} s (not timed); indexing",
            thousands(data.len() as f64),
            bytes >> 20,
            t.elapsed().as_secs_f64()
        );
        let query = format!("fields.request_id:\"{needle}\"");
        let r = TantivyCli {
            bin,
            work: &work,
            memory: args.tantivy_memory_mib << 20,
            needle_query: &query,
            needle_runs: args.needle_searches,
            deadline,
        }
        .run(&docs)?;
        eprintln!(
            "log-ingest: [tantivy-cli] {} documents in {:.2} s; needle found {}",
            thousands(r.stored as f64),
            r.elapsed.as_secs_f64(),
            r.needle_hits
        );
        if r.stored != data.len() as u64 {
            bail!(
                "tantivy-cli indexed {} of {} documents",
                r.stored,
                data.len()
            );
        }
        let _ = std::fs::remove_file(&docs);
        if !args.keep_data {
            let _ = std::fs::remove_dir_all(work.join("index"));
        }
        tantivy_run = Some(r);
    }

    let mut syslog_run = None;
    if let Some(bin) = &syslog_ng {
        let work = tmp.path().join("syslog-ng");
        std::fs::create_dir_all(&work)?;
        eprintln!("log-ingest: [syslog-ng] sending over tcp, many messages per write");
        let per_conn = per_message(&data, &dealt);
        let r = SyslogNg {
            bin,
            work: &work,
            needle: &needle,
            needle_runs: args.needle_searches,
            deadline,
        }
        .run(&per_conn, data.len() as u64)?;
        eprintln!(
            "log-ingest: [syslog-ng] {} lines written {:.2} s after the first send",
            thousands(r.stored as f64),
            r.elapsed.as_secs_f64()
        );
        if !args.keep_data {
            let _ = std::fs::remove_file(work.join("messages.log"));
        }
        syslog_run = Some(r);
    }

    let report = Report {
        args: &args,
        machine: &machine,
        data: &data,
        needle: &needle,
        peng: &peng_rows,
        tantivy: tantivy_run.as_ref(),
        tantivy_version: tantivy.as_deref().map(|b| tool_version(b, "--version")),
        syslog_ng: syslog_run.as_ref(),
        syslog_ng_version: syslog_ng.as_deref().map(|b| tool_version(b, "--version")),
        total: started.elapsed(),
    };
    report.print();
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_vec_pretty(&report.json())?)
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    if args.keep_data {
        let kept = tmp.keep();
        eprintln!("log-ingest: kept {}", kept.display());
    }
    Ok(())
}

/// Starts a fresh peng, sends it the whole data set over `p`, and measures it; the server is
/// stopped before this returns, also on errors.
#[allow(clippy::too_many_arguments)]
fn run_peng(
    args: &Args,
    rt: &tokio::runtime::Runtime,
    data: &mut Dataset,
    dealt: &[Vec<(usize, usize)>],
    p: Route,
    dir: &Path,
    needle: &str,
    deadline: Instant,
) -> Result<PengRow> {
    let ports = free_ports()?;
    // Started on the main thread: the server is tied to this thread's life (PDEATHSIG).
    let mut server =
        ServerGuard::start(&args.peng, &dir.join("data"), ports, &dir.join("peng.log"))?;
    let r = measure_peng(args, rt, &mut server, data, dealt, p, needle, deadline);
    let tail = server.log_tail(20);
    server.stop();
    r.map_err(|e| e.context(format!("[{}] the last lines peng wrote:\n{tail}", p.name())))
}

#[allow(clippy::too_many_arguments)]
fn measure_peng(
    args: &Args,
    rt: &tokio::runtime::Runtime,
    server: &mut ServerGuard,
    data: &mut Dataset,
    dealt: &[Vec<(usize, usize)>],
    p: Route,
    needle: &str,
    deadline: Instant,
) -> Result<PengRow> {
    rt.block_on(
        Api::new(server.base_url(), String::new())?.wait_healthy(server, Duration::from_secs(60)),
    )?;
    let token_file = server.data_dir.join("admin.token");
    let admin = std::fs::read_to_string(&token_file)
        .with_context(|| format!("cannot read {}", token_file.display()))?;
    let api = Api::new(server.base_url(), admin.trim().to_string())?;
    let token = rt.block_on(api.create_team("bench"))?.ingest_token;
    data.set_ingest_token(&token).map_err(|e| anyhow!(e))?;
    let data = &*data;
    let pid = server.pid;
    let idle = procfs::memory(pid).unwrap_or_default();
    eprintln!(
        "log-ingest: [{}] peng pid {pid} (http {}, gelf tcp {}), idle RSS {}; sending from {} senders",
        p.name(),
        server.ports.http,
        server.ports.gelf_tcp,
        mib(idle.rss_kib),
        args.senders
    );
    let count = |api: &Api| -> Result<u64> {
        Ok(rt
            .block_on(api.search_total("*", &[("limit", "0"), ("team", "bench")]))?
            .0)
    };
    let sampler = procfs::PeakSampler::start(pid)?;
    let ticks_before = procfs::process_ticks(pid).unwrap_or(0);
    let (outcome, http) = match p {
        Route::Http => {
            let per_sender: Vec<Vec<(&[u8], u64)>> = dealt
                .iter()
                .map(|batches| {
                    batches
                        .iter()
                        .map(|&(from, to)| (data.span(from, to), (to - from) as u64))
                        .collect()
                })
                .collect();
            let (o, c) = send::send_http(&server.base_url(), &token, &per_sender, deadline)?;
            (o, Some(c))
        }
        Route::Tcp | Route::TcpEach => {
            let per_conn = per_message(data, dealt);
            let writes = if p == Route::Tcp {
                TcpWrites::Buffered
            } else {
                TcpWrites::PerMessage
            };
            let o = send::send_tcp(
                server.ports.gelf_tcp,
                &per_conn,
                b"\0",
                writes,
                None,
                deadline,
            )?;
            (o, None)
        }
    };
    eprintln!(
        "log-ingest: [{}] sent {} in {:.2} s ({} msg/s){}; waiting until searchable",
        p.name(),
        thousands(outcome.sent as f64),
        outcome.duration().as_secs_f64(),
        thousands(per_sec(outcome.sent, outcome.duration())),
        http.map_or(String::new(), |c| format!(
            ", {} batches accepted, {} answers 503",
            c.accepted, c.retried_503
        ))
    );
    if outcome.cut_short {
        bail!("the time limit (--max-seconds) was reached while sending");
    }
    let want = data.len() as u64;
    let (mut found, mut changed) = (0u64, Instant::now());
    let reached = loop {
        let n = count(&api)?;
        let now = Instant::now();
        if n >= want {
            break now;
        }
        if n != found {
            (found, changed) = (n, now);
        }
        if now.duration_since(changed) > Duration::from_secs(30) || now > deadline {
            bail!("{n} of {want} messages searchable, and no more for 30 s");
        }
        if let Some(status) = server.exited() {
            bail!("peng exited ({status})");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let searchable = count(&api)?;
    let cpu_ticks = procfs::process_ticks(pid)
        .unwrap_or(0)
        .saturating_sub(ticks_before);
    let until_searchable = reached.saturating_duration_since(outcome.first);
    eprintln!(
        "log-ingest: [{}] all {} searchable {:.2} s after the first send; letting logs/ settle",
        p.name(),
        thousands(searchable as f64),
        until_searchable.as_secs_f64()
    );

    // Merges go on after the last commit: wait until the directory stops changing.
    let logs = server.data_dir.join("logs");
    let settle_start = Instant::now();
    let (mut size, mut since) = (procfs::dir_size(&logs), Instant::now());
    let settled = loop {
        std::thread::sleep(Duration::from_millis(500));
        let now_size = procfs::dir_size(&logs);
        if now_size != size {
            (size, since) = (now_size, Instant::now());
        }
        if since.elapsed().as_secs_f64() >= args.settle_quiet {
            break true;
        }
        if settle_start.elapsed().as_secs_f64() >= args.settle_max {
            break false;
        }
    };
    let settle_wait = settle_start.elapsed();
    let wal_bytes = procfs::dir_size(&logs.join("wal"));
    let hwm_kib = procfs::memory(pid).map_or(0, |m| m.hwm_kib);
    let peak_anon_kib = sampler.finish().anon_kib;

    let query = format!("request_id:\"{needle}\"");
    let mut needle_times = Vec::with_capacity(args.needle_searches);
    let mut hits = None;
    for _ in 0..args.needle_searches {
        let (n, took) =
            rt.block_on(api.search_total(&query, &[("limit", "10"), ("team", "bench")]))?;
        if hits.is_some_and(|h| h != n) {
            bail!("the needle search found {n}, before {hits:?}");
        }
        hits = Some(n);
        needle_times.push(took);
    }
    let mut recent = Vec::with_capacity(args.needle_searches);
    let mut recent_hits = 0;
    for _ in 0..args.needle_searches {
        let (n, took) = rt.block_on(api.search_total(
            RECENT_QUERY,
            &[("limit", "100"), ("team", "bench"), ("since", "15m")],
        ))?;
        recent_hits = n;
        recent.push(took);
    }
    Ok(PengRow {
        path: p,
        send: outcome,
        http,
        searchable,
        until_searchable,
        cpu: Duration::from_secs_f64(cpu_ticks as f64 / procfs::clock_ticks()),
        settle_wait,
        settled,
        logs_bytes: size,
        wal_bytes,
        hwm_kib,
        peak_anon_kib,
        needle: needle_times,
        needle_hits: hits.unwrap_or(0),
        recent,
        recent_hits,
    })
}

struct Report<'a> {
    args: &'a Args,
    machine: &'a MachineInfo,
    data: &'a Dataset,
    needle: &'a str,
    peng: &'a [PengRow],
    tantivy: Option<&'a PeerRun>,
    tantivy_version: Option<String>,
    syslog_ng: Option<&'a PeerRun>,
    syslog_ng_version: Option<String>,
    total: Duration,
}

impl Report<'_> {
    fn lines(&self) -> Vec<Line> {
        let mut lines: Vec<Line> = self
            .peng
            .iter()
            .map(|r| Line {
                system: r.path.label(self.args.batch),
                messages: r.searchable,
                elapsed: r.until_searchable,
                disk_bytes: r.logs_bytes,
                peak_rss_kib: r.hwm_kib,
                cpu: r.cpu,
                needle: median(&r.needle),
                needle_how: "API",
                needle_also: None,
            })
            .collect();
        if let Some(t) = self.tantivy {
            lines.push(Line {
                system: "tantivy-cli, 1 indexing thread".into(),
                messages: t.stored,
                elapsed: t.elapsed,
                disk_bytes: t.disk_bytes,
                peak_rss_kib: t.peak_rss_kib,
                cpu: t.cpu,
                needle: median(&t.needle_in_process),
                needle_how: "in process",
                needle_also: median(&t.needle).map(|d| (d, "a `tantivy search` process")),
            });
        }
        if let Some(s) = self.syslog_ng {
            lines.push(Line {
                system: "syslog-ng, TCP to a flat file".into(),
                messages: s.stored,
                elapsed: s.elapsed,
                disk_bytes: s.disk_bytes,
                peak_rss_kib: s.peak_rss_kib,
                cpu: s.cpu,
                needle: median(&s.needle),
                needle_how: "grep",
                needle_also: None,
            });
        }
        lines
    }

    fn print(&self) {
        let m = self.machine;
        let a = self.args;
        println!();
        println!("Log ingest benchmark");
        println!(
            "  command:  {}",
            std::env::args().collect::<Vec<_>>().join(" ")
        );
        println!("  peng:     {}", a.peng.display());
        if let Some(v) = &self.tantivy_version {
            println!("  tantivy:  {v}");
        }
        if let Some(v) = &self.syslog_ng_version {
            println!("  syslog:   {v}");
        }
        println!(
            "  machine:  nproc {}, {}, {} RAM, Linux {}; load {} at the start, {} at the end",
            m.cpus,
            m.cpu_model,
            mib(m.mem_total_kib),
            m.kernel,
            m.loadavg,
            procfs::loadavg()
        );
        println!(
            "  data:     {} messages (seed {}), {:.0} B of GELF JSON on average ({} MiB), {:.1}% with a stack trace; {} senders; needle request id {}",
            thousands(self.data.len() as f64),
            a.seed,
            self.data.avg_len(),
            (self.data.bytes.len() - self.data.len()) >> 20,
            self.data.with_trace as f64 * 100.0 / self.data.len().max(1) as f64,
            a.senders,
            self.needle
        );
        println!(
            "  whole run {:.0} s (data set, every system, settling, searches)",
            self.total.as_secs_f64()
        );
        println!();
        let lines = self.lines();
        println!("| system | msg/s until searchable (syslog-ng: written) | seconds | bytes on disk / msg | peak RSS | CPU µs / msg | needle search, median of {} |", a.needle_searches);
        println!("|---|---|---|---|---|---|---|");
        for l in &lines {
            println!(
                "| {} | {} | {:.2} | {:.0} | {} | {:.1} | {} |",
                l.system,
                thousands(l.rate()),
                l.elapsed.as_secs_f64(),
                l.bytes_per_msg(),
                mib(l.peak_rss_kib),
                l.cpu_us_per_msg(),
                l.needle
                    .map_or("-".into(), |d| format!("{} ({})", ms(d), l.needle_how))
                    + &l.needle_also
                        .map_or(String::new(), |(d, how)| format!("; {} ({how})", ms(d)))
            );
        }
        println!();
        for peer in ["tantivy-cli", "syslog-ng"] {
            let Some(base) = lines.iter().find(|l| l.system.starts_with(peer)) else {
                continue;
            };
            for (r, l) in self.peng.iter().zip(&lines) {
                println!(
                    "  peng {} / {peer}: msg/s {}, bytes/msg {}, peak RSS {}, CPU/msg {}{}",
                    r.path.name(),
                    ratio(l.rate(), base.rate()),
                    ratio(l.bytes_per_msg(), base.bytes_per_msg()),
                    ratio(l.peak_rss_kib as f64, base.peak_rss_kib as f64),
                    ratio(l.cpu_us_per_msg(), base.cpu_us_per_msg()),
                    match (l.needle, base.needle) {
                        (Some(x), Some(y)) => format!(
                            ", needle {} ({} / {})",
                            ratio(x.as_secs_f64(), y.as_secs_f64()),
                            l.needle_how,
                            base.needle_how
                        ),
                        _ => String::new(),
                    }
                );
            }
        }
        println!();
        for r in self.peng {
            println!(
                "  peng {}: sent in {:.2} s ({} msg/s){}; logs/ {} MiB after {:.1} s {} (of which WAL {} MiB); peak RSS is VmHWM, of which anonymous at most {} (RssAnon sampled every 100 ms; the rest are pages of mapped index files); needle found {}",
                r.path.name(),
                r.send.duration().as_secs_f64(),
                thousands(per_sec(r.send.sent, r.send.duration())),
                r.http.map_or(String::new(), |c| format!(
                    ", {} POSTs accepted, {} answered 503 (waited {:.0} s in all)",
                    c.accepted,
                    c.retried_503,
                    c.retry_wait.as_secs_f64()
                )),
                r.logs_bytes >> 20,
                r.settle_wait.as_secs_f64(),
                if r.settled {
                    format!("(unchanged for the last {} s)", a.settle_quiet)
                } else {
                    "(still changing at --settle-max)".to_string()
                },
                r.wal_bytes >> 20,
                mib(r.peak_anon_kib),
                r.needle_hits
            );
            println!(
                "  peng {}: `{RECENT_QUERY}` since 15m, newest 100 of {} hits: median {} of {}",
                r.path.name(),
                thousands(r.recent_hits as f64),
                median(&r.recent).map_or("-".into(), ms),
                r.recent.len()
            );
        }
        if let Some(t) = self.tantivy {
            println!(
                "  tantivy-cli: `tantivy index --num_threads 1 --memory_size {}` from a file of the same messages as documents, timed from start to exit (one commit, merges waited for); index {} MiB; peak RSS is ru_maxrss; needle in process is `tantivy bench` (search, then fetch of the stored hit, per repetition), and also as a `tantivy search` process (opens the index each time), found {}",
                a.tantivy_memory_mib << 20,
                t.disk_bytes >> 20,
                t.needle_hits
            );
        }
        if let Some(s) = self.syslog_ng {
            println!(
                "  syslog-ng: the same GELF JSON, one per line, over {} TCP connections (sent in {:.2} s), parsed as JSON, written as received to one file ({} MiB), flow control on; timed from the first send until the file has every line; peak RSS is VmHWM; needle is `grep -F -c`, found {}",
                a.senders,
                s.send.map_or(0.0, |o| o.duration().as_secs_f64()),
                s.disk_bytes >> 20,
                s.needle_hits
            );
        }
    }

    fn json(&self) -> serde_json::Value {
        let lines: Vec<serde_json::Value> = self
            .lines()
            .iter()
            .map(|l| {
                serde_json::json!({
                    "system": l.system,
                    "messages": l.messages,
                    "seconds": l.elapsed.as_secs_f64(),
                    "messages_per_second": l.rate(),
                    "disk_bytes": l.disk_bytes,
                    "bytes_per_message": l.bytes_per_msg(),
                    "peak_rss_kib": l.peak_rss_kib,
                    "cpu_seconds": l.cpu.as_secs_f64(),
                    "needle_median_seconds": l.needle.map(|d| d.as_secs_f64()),
                    "needle_how": l.needle_how,
                    "needle_also_median_seconds": l.needle_also.map(|(d, _)| d.as_secs_f64()),
                    "needle_also_how": l.needle_also.map(|(_, how)| how),
                })
            })
            .collect();
        let recent: Vec<serde_json::Value> = self
            .peng
            .iter()
            .map(|r| {
                serde_json::json!({
                    "path": r.path.name(),
                    "peak_anon_kib": r.peak_anon_kib,
                    "query": RECENT_QUERY,
                    "since": "15m",
                    "hits": r.recent_hits,
                    "median_seconds": median(&r.recent).map(|d| d.as_secs_f64()),
                })
            })
            .collect();
        serde_json::json!({
            "peng_paths": recent,
            "messages": self.data.len(),
            "avg_message_bytes": self.data.avg_len(),
            "with_stack_trace": self.data.with_trace,
            "seed": self.args.seed,
            "senders": self.args.senders,
            "batch": self.args.batch,
            "needle_request_id": self.needle,
            "machine": { "cpus": self.machine.cpus, "cpu_model": self.machine.cpu_model, "kernel": self.machine.kernel },
            "tantivy_version": self.tantivy_version,
            "syslog_ng_version": self.syslog_ng_version,
            "peng_settle_seconds": self.peng.iter().map(|r| (r.path.name(), r.settle_wait.as_secs_f64())).collect::<std::collections::BTreeMap<_, _>>(),
            "peng_settled": self.peng.iter().map(|r| (r.path.name(), r.settled)).collect::<std::collections::BTreeMap<_, _>>(),
            "peng_wal_bytes": self.peng.iter().map(|r| (r.path.name(), r.wal_bytes)).collect::<std::collections::BTreeMap<_, _>>(),
            "http_503": self.peng.iter().filter_map(|r| r.http.map(|c| c.retried_503)).sum::<u64>(),
            "rows": lines,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_are_dealt_in_turn_and_cover_everything() {
        let d = deal(12, 5, 2);
        assert_eq!(d, vec![vec![(0, 5), (10, 12)], vec![(5, 10)]]);
        let d = deal(3, 5, 2);
        assert_eq!(d, vec![vec![(0, 3)], vec![]]);
    }

    #[test]
    fn median_is_the_middle() {
        let v: Vec<Duration> = [5, 1, 3]
            .iter()
            .map(|&s| Duration::from_millis(s))
            .collect();
        assert_eq!(median(&v), Some(Duration::from_millis(3)));
        assert_eq!(median(&[]), None);
    }
}
