//! `gelf-ingest`: how fast the real `peng serve` takes GELF over UDP and TCP until it is
//! searchable, what it loses, what it stores per message and how much memory it holds.
//! See `bench/README.md`.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context, Result};
use clap::{Parser, ValueEnum};
use peng_bench::figures::{mib, thousands};
use peng_bench::procfs::{self, MachineInfo};
use peng_bench::send::{self, SendOutcome};
use peng_bench::server::{free_ports, Api, ServerGuard};
use peng_bench::{gen, prom};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Transport {
    /// One uncompressed datagram per message.
    Udp,
    /// One zlib-compressed datagram per message (graypy's default).
    UdpZlib,
    /// Null-delimited messages over `--connections` connections.
    Tcp,
}

impl Transport {
    fn name(self) -> &'static str {
        match self {
            Transport::Udp => "udp",
            Transport::UdpZlib => "udp-zlib",
            Transport::Tcp => "tcp",
        }
    }

    /// The value of `_bench_transport` (a single search term).
    fn marker(self) -> &'static str {
        match self {
            Transport::Udp => "udp",
            Transport::UdpZlib => "udpzlib",
            Transport::Tcp => "tcp",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Compress {
    None,
    Zlib,
}

/// GELF ingest benchmark against the real `peng serve`.
#[derive(Debug, Parser)]
#[command(name = "gelf-ingest", version)]
struct Args {
    /// The peng binary to start.
    #[arg(long, default_value_os_t = peng_bench::server::default_peng())]
    peng: PathBuf,
    /// Transports to measure, in order.
    #[arg(long, value_enum, value_delimiter = ',', default_value = "udp,tcp")]
    transports: Vec<Transport>,
    /// Messages per transport.
    #[arg(long, default_value_t = 200_000)]
    messages: usize,
    /// TCP connections sending at once.
    #[arg(long, default_value_t = 4)]
    connections: usize,
    /// `zlib` also measures UDP with zlib-compressed datagrams (`udp-zlib`, after `udp`).
    #[arg(long, value_enum, default_value = "none")]
    udp_compress: Compress,
    /// Send at most this many messages per second per transport (default: as fast as possible).
    #[arg(long)]
    rate: Option<f64>,
    /// Hard limit on the whole run, seconds; whatever is unfinished then is reported as such.
    #[arg(long, default_value_t = 300)]
    max_seconds: u64,
    /// A transport is done when the searchable count has not grown for this many seconds.
    #[arg(long, default_value_t = 5.0)]
    settle_seconds: f64,
    /// Seed of the message generator.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Keep the temporary data directory (and peng's log) and print where it is.
    #[arg(long)]
    keep_data: bool,
    /// Also write the figures as JSON to this file.
    #[arg(long)]
    json: Option<PathBuf>,
    /// While each transport sends, search every 500 ms (`level:<=3`, the last 15 minutes,
    /// newest 100) and report how those searches fared: does peng answer under load?
    #[arg(long)]
    probe_searches: bool,
}

/// Searches from a thread of its own while a transport sends.
struct Prober {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    handle: std::thread::JoinHandle<Vec<Result<Duration, String>>>,
}

/// How the searches during sending fared.
#[derive(Debug, Clone, Default)]
struct Probes {
    answered: Vec<Duration>,
    failed: Vec<String>,
}

impl Probes {
    /// Answered and failed, the median and slowest answer, the first failure.
    fn summary(&self) -> String {
        let mut sorted = self.answered.clone();
        sorted.sort();
        let ms = |d: &Duration| format!("{:.1} ms", d.as_secs_f64() * 1e3);
        let mut out = format!("{} answered", sorted.len());
        if let (Some(mid), Some(max)) = (sorted.get(sorted.len() / 2), sorted.last()) {
            out += &format!(" (median {}, slowest {})", ms(mid), ms(max));
        }
        out += &format!(", {} failed", self.failed.len());
        if let Some(first) = self.failed.first() {
            out += &format!(" (first: {first})");
        }
        out
    }
}

impl Prober {
    fn start(api: Api) -> Result<Prober> {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = stop.clone();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let handle = std::thread::Builder::new()
            .name("prober".into())
            .spawn(move || {
                let mut out = Vec::new();
                while !flag.load(std::sync::atomic::Ordering::Relaxed) {
                    let r = rt.block_on(
                        api.search_total("level:<=3", &[("limit", "100"), ("since", "15m")]),
                    );
                    out.push(r.map(|(_, took)| took).map_err(|e| format!("{e:#}")));
                    std::thread::sleep(Duration::from_millis(500));
                }
                out
            })?;
        Ok(Prober { stop, handle })
    }

    fn finish(self) -> Probes {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let mut p = Probes::default();
        for r in self.handle.join().unwrap_or_default() {
            match r {
                Ok(d) => p.answered.push(d),
                Err(e) => p.failed.push(e),
            }
        }
        p
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    match run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("gelf-ingest: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(mut args: Args) -> Result<()> {
    if args.messages == 0 || args.messages > 10_000_000 {
        bail!("--messages must be between 1 and 10000000");
    }
    if args.connections == 0 || args.connections > 256 {
        bail!("--connections must be between 1 and 256");
    }
    if args.rate.is_some_and(|r| !(r.is_finite() && r > 0.0)) {
        bail!("--rate must be a positive number of messages per second");
    }
    if !(0.5..=120.0).contains(&args.settle_seconds) {
        bail!("--settle-seconds must be between 0.5 and 120");
    }
    if args.udp_compress == Compress::Zlib && !args.transports.contains(&Transport::UdpZlib) {
        let at = args
            .transports
            .iter()
            .position(|t| *t == Transport::Udp)
            .map_or(0, |i| i + 1);
        args.transports.insert(at, Transport::UdpZlib);
    }
    args.transports.dedup();
    let started = Instant::now();
    let deadline = started + Duration::from_secs(args.max_seconds);
    let machine = MachineInfo::read();

    let tmp = tempfile::Builder::new()
        .prefix("peng-bench-")
        .tempdir()
        .context("cannot create a temporary directory")?;
    let data_dir = tmp.path().join("data");
    let ports = free_ports()?;
    // Started on the main thread: the server is tied to this thread's life (PDEATHSIG).
    let mut server =
        ServerGuard::start(&args.peng, &data_dir, ports, &tmp.path().join("peng.log"))?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let outcome = runtime.block_on(async {
        // A backstop: every loop below also watches the deadline.
        match tokio::time::timeout_at(
            (deadline + Duration::from_secs(30)).into(),
            bench(&args, &mut server, &machine, deadline),
        )
        .await
        {
            Ok(r) => r,
            Err(_) => Err(anyhow::anyhow!(
                "the run exceeded --max-seconds {} by more than 30 s",
                args.max_seconds
            )),
        }
    });
    let log_tail = server.log_tail(20);
    drop(server);
    if args.keep_data {
        let kept = tmp.keep();
        eprintln!(
            "gelf-ingest: kept the data directory and peng.log in {}",
            kept.display()
        );
    }
    match outcome {
        Ok(report) => {
            if let Some(path) = &args.json {
                std::fs::write(path, serde_json::to_vec_pretty(&report)?)
                    .with_context(|| format!("cannot write {}", path.display()))?;
            }
            Ok(())
        }
        Err(e) => Err(e.context(format!("the last lines peng wrote:\n{log_tail}"))),
    }
}

/// Thread id to (name, CPU ticks), kept for threads that have exited since.
type Threads = BTreeMap<u32, (String, u64)>;

/// Samples peng's memory every 50 ms and its threads' CPU time every 100 ms on its own thread.
/// Threads are remembered after they exit (tantivy restarts its indexing thread at every
/// commit), so their CPU time is not lost between two snapshots.
struct Sampler {
    pid: u32,
    stop: Arc<AtomicBool>,
    /// (peak VmRSS since the last reset, peak VmRSS overall, last VmHWM), KiB.
    peaks: Arc<Mutex<(u64, u64, u64)>>,
    threads: Arc<Mutex<Threads>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

fn merge_threads(into: &Mutex<Threads>, pid: u32) {
    let now = procfs::thread_ticks(pid);
    let mut g = into.lock().unwrap_or_else(|e| e.into_inner());
    g.extend(now);
}

impl Sampler {
    fn start(pid: u32) -> Sampler {
        let stop = Arc::new(AtomicBool::new(false));
        let peaks = Arc::new(Mutex::new((0, 0, 0)));
        let threads = Arc::new(Mutex::new(procfs::thread_ticks(pid)));
        let (s, p, t) = (stop.clone(), peaks.clone(), threads.clone());
        let thread = std::thread::Builder::new()
            .name("sampler".into())
            .spawn(move || {
                let mut read_threads = true;
                while !s.load(Ordering::Relaxed) {
                    if let Some(m) = procfs::memory(pid) {
                        let mut g = p.lock().unwrap_or_else(|e| e.into_inner());
                        g.0 = g.0.max(m.rss_kib);
                        g.1 = g.1.max(m.rss_kib);
                        g.2 = m.hwm_kib;
                    }
                    if read_threads {
                        merge_threads(&t, pid);
                    }
                    read_threads = !read_threads;
                    std::thread::sleep(Duration::from_millis(50));
                }
            })
            .ok();
        Sampler {
            pid,
            stop,
            peaks,
            threads,
            thread,
        }
    }

    fn memory(&self) -> (u64, u64, u64) {
        *self.peaks.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn reset_phase(&self) {
        self.peaks.lock().unwrap_or_else(|e| e.into_inner()).0 = 0;
    }

    /// Every thread seen so far with its latest CPU time, read fresh for the living ones.
    fn threads(&self) -> Threads {
        merge_threads(&self.threads, self.pid);
        self.threads
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

impl Drop for Sampler {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// One transport's figures.
struct Row {
    transport: Transport,
    avg_payload: f64,
    send: SendOutcome,
    found: u64,
    /// From the first send to the poll that first saw the final count.
    until_searchable: Duration,
    complete: bool,
    timed_out: bool,
    disk_delta: i64,
    rss_peak_kib: u64,
    hwm_kib: u64,
    peng_cpu_send: f64,
    peng_cpu_searchable: f64,
    bench_cpu_send: f64,
    hot_threads: Vec<(String, usize, f64)>,
    probes: Option<Probes>,
    metric_deltas: Vec<(String, f64)>,
    kernel_udp: Vec<(String, i64)>,
}

impl Row {
    fn lost(&self) -> u64 {
        (self.send.sent + self.send.errors).saturating_sub(self.found)
    }
    fn send_rate(&self) -> f64 {
        per_sec(self.send.sent, self.send.duration())
    }
    fn searchable_rate(&self) -> f64 {
        per_sec(self.found, self.until_searchable)
    }
}

fn per_sec(n: u64, d: Duration) -> f64 {
    if d.is_zero() {
        0.0
    } else {
        n as f64 / d.as_secs_f64()
    }
}

fn now_secs() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

async fn bench(
    args: &Args,
    server: &mut ServerGuard,
    machine: &MachineInfo,
    deadline: Instant,
) -> Result<serde_json::Value> {
    let waiting = Api::new(server.base_url(), String::new())?;
    waiting
        .wait_healthy(server, Duration::from_secs(60))
        .await?;
    let token_file = server.data_dir.join("admin.token");
    let admin = std::fs::read_to_string(&token_file)
        .with_context(|| format!("cannot read {}", token_file.display()))?;
    let api = Api::new(server.base_url(), admin.trim().to_string())?;
    let ingest_token = api.create_team("bench").await?.ingest_token;
    let run_id = format!(
        "b{:x}{:05x}",
        now_secs() as u64,
        std::process::id() & 0xfffff
    );
    let pid = server.pid;
    let idle = procfs::memory(pid).unwrap_or_default();
    let sampler = Sampler::start(pid);
    eprintln!(
        "gelf-ingest: peng pid {pid} (http {}, gelf {}), run {run_id}, idle RSS {} MiB",
        server.ports.http,
        server.ports.gelf_udp,
        idle.rss_kib / 1024
    );

    let mut rows = Vec::new();
    let mut skipped = Vec::new();
    for (i, &t) in args.transports.iter().enumerate() {
        if Instant::now() + Duration::from_secs(5) > deadline {
            skipped.push(t.name());
            continue;
        }
        let seed = args.seed.wrapping_add(i as u64 * 7919);
        let row = run_transport(
            args,
            t,
            seed,
            &api,
            server,
            &sampler,
            &ingest_token,
            &run_id,
            deadline,
        )
        .await?;
        rows.push(row);
    }

    let logs_dir = server.data_dir.join("logs");
    let disk_total = procfs::dir_size(&logs_dir);
    let stored_total = api.count(&format!("run:{run_id}")).await.unwrap_or(0);
    let (_, rss_peak, hwm) = sampler.memory();
    let end_mem = procfs::memory(pid).unwrap_or_default();
    drop(sampler);
    print_report(
        args,
        machine,
        &run_id,
        &rows,
        &skipped,
        idle.rss_kib,
        rss_peak,
        hwm.max(end_mem.hwm_kib),
        disk_total,
        stored_total,
    );
    Ok(json_report(
        args,
        machine,
        &run_id,
        &rows,
        disk_total,
        stored_total,
        rss_peak,
        hwm,
    ))
}

#[allow(clippy::too_many_arguments)]
async fn run_transport(
    args: &Args,
    t: Transport,
    seed: u64,
    api: &Api,
    server: &ServerGuard,
    sampler: &Sampler,
    ingest_token: &str,
    run_id: &str,
    deadline: Instant,
) -> Result<Row> {
    let pid = server.pid;
    let tags = gen::Tags {
        ingest_token: ingest_token.to_string(),
        run: run_id.to_string(),
        transport: t.marker().to_string(),
    };
    let gen_start = Instant::now();
    let msgs = gen::generate(args.messages, seed, &tags, now_secs());
    let avg_payload = msgs.iter().map(|m| m.len()).sum::<usize>() as f64 / msgs.len() as f64;
    let zlib_payloads: Vec<Vec<u8>> = match t {
        Transport::UdpZlib => msgs
            .iter()
            .map(|m| gen::zlib(m))
            .collect::<std::io::Result<_>>()?,
        Transport::Udp | Transport::Tcp => Vec::new(),
    };
    eprintln!(
        "gelf-ingest: [{}] generated {} messages (avg {avg_payload:.0} B) in {:.1} s; sending{}",
        t.name(),
        args.messages,
        gen_start.elapsed().as_secs_f64(),
        args.rate
            .map_or(String::new(), |r| format!(" at {r} msg/s"))
    );

    let metrics_before = prom::parse(&api.metrics().await?);
    let snmp_before = procfs::udp_snmp();
    let sock_drops_before = procfs::udp_socket_drops(server.ports.gelf_udp.port());
    let logs_dir = server.data_dir.join("logs");
    let disk_before = procfs::dir_size(&logs_dir);
    let threads_before = sampler.threads();
    let peng_before = procfs::process_ticks(pid).unwrap_or(0);
    let self_before = procfs::process_ticks(std::process::id()).unwrap_or(0);
    sampler.reset_phase();

    let prober = if args.probe_searches {
        Some(Prober::start(api.another()?)?)
    } else {
        None
    };
    let outcome = match t {
        Transport::Udp => send::send_udp(server.ports.gelf_udp, &msgs, args.rate, deadline)?,
        Transport::UdpZlib => {
            send::send_udp(server.ports.gelf_udp, &zlib_payloads, args.rate, deadline)?
        }
        Transport::Tcp => {
            let mut conns: Vec<Vec<&[u8]>> = vec![Vec::new(); args.connections];
            for (i, m) in msgs.iter().enumerate() {
                conns[i % args.connections].push(m);
            }
            send::send_tcp(
                server.ports.gelf_tcp,
                &conns,
                b"\0",
                send::TcpWrites::Buffered,
                args.rate,
                deadline,
            )?
        }
    };
    let probes = prober.map(Prober::finish);
    let hz = procfs::clock_ticks();
    let peng_at_send_end = procfs::process_ticks(pid).unwrap_or(0);
    let self_at_send_end = procfs::process_ticks(std::process::id()).unwrap_or(0);
    drop(zlib_payloads);
    drop(msgs);
    eprintln!(
        "gelf-ingest: [{}] sent {} in {:.2} s ({:.0} msg/s); waiting until searchable",
        t.name(),
        outcome.sent,
        outcome.duration().as_secs_f64(),
        per_sec(outcome.sent, outcome.duration())
    );

    let query = format!("run:{run_id} AND bench_transport:{}", t.marker());
    let settle = Duration::from_secs_f64(args.settle_seconds);
    let (mut found, mut reached_at, mut last_change) = (0u64, outcome.first, Instant::now());
    let mut threads_at_reached = sampler.threads();
    let mut peng_at_reached = procfs::process_ticks(pid).unwrap_or(0);
    let (mut complete, mut timed_out) = (false, false);
    // Bounded: ends by reaching the count, by `settle` without growth, or by the deadline.
    loop {
        let count = api.count(&query).await?;
        let now = Instant::now();
        if count != found {
            found = count;
            reached_at = now;
            last_change = now;
            threads_at_reached = sampler.threads();
            peng_at_reached = procfs::process_ticks(pid).unwrap_or(0);
        }
        if found >= outcome.sent {
            complete = true;
            break;
        }
        if now.duration_since(last_change) >= settle {
            break;
        }
        if now >= deadline {
            timed_out = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    let metrics_after = prom::parse(&api.metrics().await?);
    let snmp_after = procfs::udp_snmp();
    let sock_drops_after = procfs::udp_socket_drops(server.ports.gelf_udp.port());
    let disk_after = procfs::dir_size(&logs_dir);
    let (phase_peak, _, hwm) = sampler.memory();
    let until_searchable = reached_at.saturating_duration_since(outcome.first);
    let send_secs = outcome.duration().as_secs_f64().max(1e-3);
    let mut kernel_udp: Vec<(String, i64)> =
        ["InDatagrams", "InErrors", "RcvbufErrors", "SndbufErrors"]
            .iter()
            .map(|k| {
                let d = snmp_after.get(*k).copied().unwrap_or(0) as i64
                    - snmp_before.get(*k).copied().unwrap_or(0) as i64;
                (format!("/proc/net/snmp Udp {k}"), d)
            })
            .collect();
    if let (Some(a), Some(b)) = (sock_drops_before, sock_drops_after) {
        kernel_udp.push((
            "drops on peng's udp socket (/proc/net/udp)".to_string(),
            b as i64 - a as i64,
        ));
    }
    let row = Row {
        transport: t,
        avg_payload,
        send: outcome,
        found,
        until_searchable,
        complete,
        timed_out,
        disk_delta: disk_after as i64 - disk_before as i64,
        rss_peak_kib: phase_peak,
        hwm_kib: hwm,
        peng_cpu_send: (peng_at_send_end.saturating_sub(peng_before)) as f64 / hz / send_secs,
        peng_cpu_searchable: (peng_at_reached.saturating_sub(peng_before)) as f64
            / hz
            / until_searchable.as_secs_f64().max(1e-3),
        bench_cpu_send: (self_at_send_end.saturating_sub(self_before)) as f64 / hz / send_secs,
        hot_threads: {
            let mut hot = procfs::thread_cpu_delta(&threads_before, &threads_at_reached);
            let seen: f64 = hot.iter().map(|t| t.2).sum();
            let total = peng_at_reached.saturating_sub(peng_before) as f64 / hz;
            if total - seen > 0.05 {
                hot.push((
                    "(threads too short-lived to sample)".to_string(),
                    0,
                    total - seen,
                ));
            }
            hot
        },
        probes,
        metric_deltas: prom::delta(&metrics_before, &metrics_after)
            .into_iter()
            .filter(|(k, _)| k.starts_with("peng_"))
            .collect(),
        kernel_udp: if matches!(t, Transport::Tcp) {
            Vec::new()
        } else {
            kernel_udp
        },
    };
    eprintln!(
        "gelf-ingest: [{}] {} of {} searchable after {:.2} s{}",
        t.name(),
        row.found,
        row.send.sent,
        until_searchable.as_secs_f64(),
        if timed_out {
            " (time limit reached)"
        } else {
            ""
        }
    );
    Ok(row)
}

#[allow(clippy::too_many_arguments)]
fn print_report(
    args: &Args,
    m: &MachineInfo,
    run_id: &str,
    rows: &[Row],
    skipped: &[&str],
    idle_rss: u64,
    rss_peak: u64,
    hwm: u64,
    disk_total: u64,
    stored_total: u64,
) {
    let cmd: Vec<String> = std::env::args().collect();
    println!();
    println!("GELF ingest benchmark, run {run_id}");
    println!("  command:  {}", cmd.join(" "));
    println!("  peng:     {}", args.peng.display());
    println!(
        "  machine:  {} CPUs, {}, {} RAM, Linux {}",
        m.cpus,
        m.cpu_model,
        mib(m.mem_total_kib),
        m.kernel
    );
    println!(
        "  load:     /proc/loadavg {} at start, {} at the end (other work on the machine competes with peng)",
        m.loadavg,
        procfs::loadavg()
    );
    println!(
        "  udp:      net.core.rmem_default {} B, rmem_max {} B",
        m.rmem_default, m.rmem_max
    );
    println!(
        "  run:      {} messages per transport; tcp over {} connections; {}; sender and peng share the machine",
        thousands(args.messages as f64),
        args.connections,
        args.rate.map_or("unpaced (as fast as possible)".to_string(), |r| format!("paced at {} msg/s", thousands(r)))
    );
    println!();

    let mut lines: Vec<(String, Vec<String>)> = Vec::new();
    let mut add = |label: &str, f: &dyn Fn(&Row) -> String| {
        lines.push((label.to_string(), rows.iter().map(f).collect()))
    };
    add("avg message (JSON)", &|r| format!("{:.0} B", r.avg_payload));
    add("messages sent", &|r| {
        thousands(r.send.sent as f64) + if r.send.cut_short { " (cut)" } else { "" }
    });
    add("send errors", &|r| thousands(r.send.errors as f64));
    add("send time", &|r| {
        format!("{:.2} s", r.send.duration().as_secs_f64())
    });
    add("send rate", &|r| {
        format!("{} msg/s", thousands(r.send_rate()))
    });
    add("searchable", &|r| thousands(r.found as f64));
    add("lost", &|r| {
        let sent = (r.send.sent + r.send.errors).max(1);
        format!(
            "{} ({:.1}%)",
            thousands(r.lost() as f64),
            r.lost() as f64 * 100.0 / sent as f64
        )
    });
    add("first send → all searchable", &|r| {
        format!(
            "{:.2} s{}",
            r.until_searchable.as_secs_f64(),
            if r.timed_out { " (time limit)" } else { "" }
        )
    });
    add("  of which after send end", &|r| {
        format!(
            "{:.2} s",
            r.until_searchable
                .saturating_sub(r.send.duration())
                .as_secs_f64()
        )
    });
    add("msg/s until searchable", &|r| {
        thousands(r.searchable_rate())
    });
    add("disk growth / message", &|r| {
        if r.found == 0 {
            "-".into()
        } else {
            format!("{:.0} B", r.disk_delta as f64 / r.found as f64)
        }
    });
    add("peng RSS peak (VmRSS)", &|r| mib(r.rss_peak_kib));
    add("peng VmHWM after", &|r| mib(r.hwm_kib));
    add("peng CPU while sending", &|r| {
        format!("{:.0}% of a core", r.peng_cpu_send * 100.0)
    });
    add("peng CPU until searchable", &|r| {
        format!("{:.0}% of a core", r.peng_cpu_searchable * 100.0)
    });
    add("sender CPU while sending", &|r| {
        format!("{:.0}% of a core", r.bench_cpu_send * 100.0)
    });

    let label_w = lines
        .iter()
        .map(|(l, _)| l.chars().count())
        .max()
        .unwrap_or(10)
        + 2;
    let col_w = lines
        .iter()
        .flat_map(|(_, v)| v.iter().map(|s| s.chars().count()))
        .chain(rows.iter().map(|r| r.transport.name().len()))
        .max()
        .unwrap_or(8)
        + 3;
    print!("{:label_w$}", "");
    for r in rows {
        print!("{:>col_w$}", r.transport.name());
    }
    println!();
    for (label, values) in &lines {
        print!("{label:label_w$}");
        for v in values {
            print!("{v:>col_w$}");
        }
        println!();
    }
    println!();
    println!(
        "  total: {} messages stored, DATA/logs is {} → {:.0} bytes on disk per message; peng RSS idle {}, peak {}, VmHWM {}",
        thousands(stored_total as f64),
        mib(disk_total / 1024),
        if stored_total > 0 { disk_total as f64 / stored_total as f64 } else { 0.0 },
        mib(idle_rss),
        mib(rss_peak),
        mib(hwm)
    );
    if !skipped.is_empty() {
        println!("  skipped for the time limit: {}", skipped.join(", "));
    }
    for r in rows {
        println!();
        println!(
            "[{}] peng threads by CPU from first send until searchable ({:.2} s):",
            r.transport.name(),
            r.until_searchable.as_secs_f64()
        );
        let wall = r.until_searchable.as_secs_f64().max(1e-3);
        for (name, n, secs) in r.hot_threads.iter().filter(|t| t.2 > 0.0).take(6) {
            let count = if *n > 0 {
                format!("x{n}")
            } else {
                String::new()
            };
            println!(
                "    {name:<36} {count:<4} {secs:>7.2} s CPU  {:>4.0}% of a core",
                secs / wall * 100.0
            );
        }
        if let Some(p) = &r.probes {
            println!(
                "  [{}] searches while sending (`level:<=3`, since 15m, newest 100, every 500 ms): {}",
                r.transport.name(),
                p.summary()
            );
        }
        if !r.kernel_udp.is_empty() {
            println!(
                "  [{}] kernel UDP counters (whole namespace):",
                r.transport.name()
            );
            for (k, v) in &r.kernel_udp {
                println!("    {k:<48} {}", thousands(*v as f64));
            }
        }
        println!("  [{}] peng /metrics that changed:", r.transport.name());
        if r.metric_deltas.is_empty() {
            println!("    (none)");
        }
        for (k, v) in &r.metric_deltas {
            println!("    {k:<90} {}", thousands(*v));
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn json_report(
    args: &Args,
    m: &MachineInfo,
    run_id: &str,
    rows: &[Row],
    disk_total: u64,
    stored_total: u64,
    rss_peak: u64,
    hwm: u64,
) -> serde_json::Value {
    let transports: BTreeMap<&str, serde_json::Value> = rows
        .iter()
        .map(|r| {
            (
                r.transport.name(),
                serde_json::json!({
                    "avg_message_bytes": r.avg_payload,
                    "sent": r.send.sent,
                    "send_errors": r.send.errors,
                    "send_seconds": r.send.duration().as_secs_f64(),
                    "send_rate": r.send_rate(),
                    "searchable": r.found,
                    "complete": r.complete,
                    "lost": r.lost(),
                    "seconds_until_searchable": r.until_searchable.as_secs_f64(),
                    "messages_per_second_until_searchable": r.searchable_rate(),
                    "disk_growth_bytes": r.disk_delta,
                    "peng_rss_peak_kib": r.rss_peak_kib,
                    "peng_vmhwm_kib": r.hwm_kib,
                    "peng_cpu_cores_while_sending": r.peng_cpu_send,
                    "peng_cpu_cores_until_searchable": r.peng_cpu_searchable,
                    "searches_while_sending": r.probes.as_ref().map(|p| serde_json::json!({
                        "answered_seconds": p.answered.iter().map(Duration::as_secs_f64).collect::<Vec<_>>(),
                        "failed": p.failed,
                    })),
                    "hot_threads": r.hot_threads.iter().take(8).map(|(n, c, s)| serde_json::json!({"name": n, "threads": c, "cpu_seconds": s})).collect::<Vec<_>>(),
                    "metrics_delta": r.metric_deltas.iter().map(|(k, v)| (k.clone(), serde_json::json!(v))).collect::<serde_json::Map<_, _>>(),
                    "kernel_udp_delta": r.kernel_udp.iter().map(|(k, v)| (k.clone(), serde_json::json!(v))).collect::<serde_json::Map<_, _>>(),
                }),
            )
        })
        .collect();
    serde_json::json!({
        "run": run_id,
        "messages_per_transport": args.messages,
        "connections": args.connections,
        "rate": args.rate,
        "machine": { "cpus": m.cpus, "cpu_model": m.cpu_model, "mem_total_kib": m.mem_total_kib, "kernel": m.kernel },
        "transports": transports,
        "stored_total": stored_total,
        "logs_dir_bytes": disk_total,
        "bytes_on_disk_per_message": if stored_total > 0 { disk_total as f64 / stored_total as f64 } else { 0.0 },
        "peng_rss_peak_kib": rss_peak,
        "peng_vmhwm_kib": hwm,
    })
}
