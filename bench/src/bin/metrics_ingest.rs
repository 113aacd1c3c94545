//! `metrics-ingest`: how fast the real `peng serve` takes Telegraf's metrics through its
//! InfluxDB-compatible API and makes them queryable, what it keeps on disk per field value, its
//! peak memory and how fast it answers a Grafana panel's query, next to InfluxDB 1.6 and
//! VictoriaMetrics taking the same line protocol in the same run. See `bench/README.md`.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Barrier;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::{Parser, ValueEnum};
use peng_bench::child::ChildGuard;
use peng_bench::figures::{median, mib, ms, per_sec, ratio, thousands};
use peng_bench::procfs::{self, MachineInfo};
use peng_bench::server::{free_ports, ServerGuard};
use rand::rngs::StdRng;
use rand::seq::IndexedRandom;
use rand::{Rng, SeedableRng};
use serde_json::Value;

/// Seconds between two points of a series, as Telegraf's default `interval`.
const INTERVAL: i64 = 10;
/// The database every system is written to.
const DB: &str = "bench";
/// Field values per host and interval: cpu 10, mem 10, disk 7, net 8.
const VALUES_PER_HOST: u64 = 35;
/// Points (lines) per host and interval.
const POINTS_PER_HOST: u64 = 4;
/// How peng and InfluxDB are asked whether everything is there.
const COUNT_QUERY: &str = r#"SELECT count("usage_user") FROM "cpu""#;
/// VictoriaMetrics' form of the panel query (Influx fields become `{measurement}_{field}`).
const VM_PANEL: &str = "avg by (host) (avg_over_time(cpu_usage_user[1m]))";

/// The Grafana panel query over `[from_ms, to_ms]`, as Grafana's InfluxQL data source sends it.
fn panel_query(from_ms: i64, to_ms: i64) -> String {
    format!(
        r#"SELECT mean("usage_user") FROM "cpu" WHERE time >= {from_ms}ms and time <= {to_ms}ms GROUP BY time(1m), "host" fill(null)"#
    )
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum System {
    /// `peng serve`, its InfluxDB 1.x API (`/write`, `/query`).
    Peng,
    /// InfluxDB 1.6 (`influxd`, Debian's `influxdb`).
    Influxdb,
    /// VictoriaMetrics (single node, Debian's `victoria-metrics`): `/write`, PromQL queries.
    VictoriaMetrics,
}

impl System {
    fn name(self) -> &'static str {
        match self {
            System::Peng => "peng",
            System::Influxdb => "influxdb",
            System::VictoriaMetrics => "victoria-metrics",
        }
    }

    fn label(self) -> &'static str {
        match self {
            System::Peng => "peng",
            System::Influxdb => "InfluxDB 1.6",
            System::VictoriaMetrics => "VictoriaMetrics",
        }
    }

    /// Whether it answers InfluxQL on `/query` (VictoriaMetrics is asked in PromQL instead).
    fn influxql(self) -> bool {
        self != System::VictoriaMetrics
    }
}

/// Telegraf-like metrics written to peng's InfluxDB API, InfluxDB 1.6 and VictoriaMetrics.
#[derive(Debug, Parser)]
#[command(name = "metrics-ingest", version)]
struct Args {
    /// The peng binary to start.
    #[arg(long, default_value_os_t = peng_bench::server::default_peng())]
    peng: PathBuf,
    /// The InfluxDB 1.x server binary.
    #[arg(long, default_value = "/usr/bin/influxd")]
    influxd: PathBuf,
    /// The VictoriaMetrics single-node binary.
    #[arg(long, default_value = "/usr/bin/victoria-metrics")]
    victoria_metrics: PathBuf,
    /// Systems to measure, one after the other in this order, each on the same data.
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "peng,influxdb,victoria-metrics"
    )]
    systems: Vec<System>,
    /// Hosts reporting (each sends cpu, mem, disk and net every 10 s: 35 field values).
    #[arg(long, default_value_t = 100)]
    hosts: usize,
    /// Hours of data, ending a minute before the data set is made (100 hosts over 8 hours are
    /// 10,080,000 field values).
    #[arg(long, default_value_t = 8.0)]
    hours: f64,
    /// Seed of the value generator.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Lines per `POST /write`.
    #[arg(long, default_value_t = 5000)]
    batch: usize,
    /// Writers at once (one thread and one connection each); batch i goes to writer i mod
    /// --writers.
    #[arg(long, default_value_t = 2)]
    writers: usize,
    /// Send each batch gzip-compressed (`Content-Encoding: gzip`, as Telegraf does when told
    /// to); compressed before anything is timed.
    #[arg(long)]
    gzip: bool,
    /// Runs of the panel query per system; the median is reported.
    #[arg(long, default_value_t = 11)]
    query_runs: usize,
    /// After all is queryable, a data directory has settled once its size has not changed for
    /// this many seconds ...
    #[arg(long, default_value_t = 10.0)]
    settle_quiet: f64,
    /// ... or this many seconds have passed.
    #[arg(long, default_value_t = 180.0)]
    settle_max: f64,
    /// Hard limit on the whole run, seconds.
    #[arg(long, default_value_t = 3600)]
    max_seconds: u64,
    /// Keep the temporary directory (data directories and logs of every system).
    #[arg(long)]
    keep_data: bool,
    /// Also write the figures as JSON to this file.
    #[arg(long)]
    json: Option<PathBuf>,
}

/// Set by SIGINT or SIGTERM; the run then stops at its next check and cleans up. A second
/// signal exits at once (the children still die with the bench: `PR_SET_PDEATHSIG`).
static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_sig: libc::c_int) {
    if INTERRUPTED.swap(true, Ordering::SeqCst) {
        // SAFETY: _exit is async-signal-safe.
        unsafe { libc::_exit(130) };
    }
}

fn install_signal_handlers() -> Result<()> {
    for sig in [libc::SIGINT, libc::SIGTERM] {
        // SAFETY: a zeroed sigaction is a valid value; the handler only touches an atomic and
        // calls _exit. Handlers are reset to the default in the children by exec.
        let r = unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = on_signal as extern "C" fn(libc::c_int) as libc::sighandler_t;
            sa.sa_flags = libc::SA_RESTART;
            libc::sigemptyset(&mut sa.sa_mask);
            libc::sigaction(sig, &sa, std::ptr::null_mut())
        };
        if r != 0 {
            bail!(
                "cannot install a signal handler: {}",
                std::io::Error::last_os_error()
            );
        }
    }
    Ok(())
}

fn check_interrupted() -> Result<()> {
    if INTERRUPTED.load(Ordering::SeqCst) {
        bail!("interrupted");
    }
    Ok(())
}

fn main() -> ExitCode {
    let args = Args::parse();
    let r = install_signal_handlers().and_then(|()| run(args));
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(_) if INTERRUPTED.load(Ordering::SeqCst) => {
            eprintln!("metrics-ingest: interrupted; everything it started is stopped");
            ExitCode::from(130)
        }
        Err(e) => {
            eprintln!("metrics-ingest: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The data set

/// One `POST /write` body.
struct Batch {
    /// Line protocol, gzip-compressed with `--gzip`.
    body: Vec<u8>,
    lines: u64,
    /// Its first line, for error messages.
    first_line: String,
}

/// Telegraf's cpu, mem, disk and net of `hosts` hosts every 10 s, as line protocol batches.
struct Dataset {
    batches: Vec<Batch>,
    hosts: usize,
    intervals: usize,
    points: u64,
    values: u64,
    /// Line protocol bytes before compression.
    plain_bytes: u64,
    /// Bytes sent (compressed with `--gzip`).
    body_bytes: u64,
    /// Seconds since the epoch of the first and the last interval.
    first_ts: i64,
    last_ts: i64,
}

impl Dataset {
    /// `usage_user` values in the data set: what the count query must reach.
    fn cpu_points(&self) -> u64 {
        (self.hosts * self.intervals) as u64
    }
}

/// What one host reports, evolving from interval to interval.
struct Host {
    name: String,
    cores: u64,
    /// Busy fraction of the CPU, a random walk.
    load: f64,
    mem_total: u64,
    mem_used: u64,
    mem_cached: u64,
    mem_buffered: u64,
    disk_total: u64,
    disk_used: u64,
    inodes_total: u64,
    inodes_used: u64,
    /// Packets per second received, a random walk.
    pps: f64,
    /// bytes_recv, bytes_sent, packets_recv, packets_sent, err_in, err_out, drop_in, drop_out.
    net: [u64; 8],
}

const PAGE: u64 = 4096;
const GIB: u64 = 1 << 30;

fn pages(bytes: f64) -> u64 {
    (bytes.max(0.0) as u64) / PAGE * PAGE
}

impl Host {
    fn new(i: usize, rng: &mut StdRng) -> Host {
        let roles = ["web", "api", "db", "cache", "worker", "batch"];
        let role = roles[i % roles.len()];
        let cores = *[2u64, 4, 8, 16].choose(rng).unwrap_or(&4);
        let mem_total = *[4u64, 8, 16, 32, 64].choose(rng).unwrap_or(&8) * GIB;
        let disk_total = *[20u64, 50, 100, 250, 500].choose(rng).unwrap_or(&50) * GIB;
        let inodes_total = disk_total / 16384;
        Host {
            name: format!("{role}-{:03}", i / roles.len() + 1),
            cores,
            load: rng.random_range(0.03..0.7),
            mem_total,
            mem_used: pages(mem_total as f64 * rng.random_range(0.2..0.7)),
            mem_cached: pages(mem_total as f64 * rng.random_range(0.05..0.2)),
            mem_buffered: pages(mem_total as f64 * rng.random_range(0.005..0.03)),
            disk_total,
            disk_used: pages(disk_total as f64 * rng.random_range(0.1..0.8)),
            inodes_total,
            inodes_used: (inodes_total as f64 * rng.random_range(0.02..0.3)) as u64,
            pps: rng.random_range(50.0..5000.0),
            net: [
                rng.random_range(1u64 << 30..1 << 40),
                rng.random_range(1u64 << 30..1 << 40),
                rng.random_range(1u64 << 20..1 << 30),
                rng.random_range(1u64 << 20..1 << 30),
                rng.random_range(0..10),
                0,
                rng.random_range(0..1000),
                0,
            ],
        }
    }

    /// Appends this host's four lines for `ts`.
    fn lines(&mut self, ts: i64, rng: &mut StdRng, out: &mut String) {
        use std::fmt::Write as _;
        // cpu-total: jiffies over the interval (USER_HZ 100) split between the states; the
        // total is a little off the ideal, as /proc/stat read 10 s apart is, so percentages
        // have Telegraf's long decimals.
        self.load = (self.load + rng.random_range(-0.04..0.04)).clamp(0.01, 0.97);
        let jitter = self.cores as i64 * 3;
        let total = (self.cores as i64 * 1000 + rng.random_range(-jitter..=jitter)).max(1) as u64;
        let busy = total as f64 * self.load;
        let mut part = |share: f64| -> u64 { (busy * share * rng.random_range(0.7..1.3)) as u64 };
        let user = part(0.68);
        let system = part(0.2);
        let iowait = part(0.04);
        let irq = part(0.004);
        let softirq = part(0.03);
        let steal = part(0.015);
        let nice = part(0.02);
        let guest = 0u64;
        let guest_nice = 0u64;
        let used = user + system + iowait + irq + softirq + steal + nice;
        let idle = total.saturating_sub(used);
        let pct = |j: u64| j as f64 * 100.0 / total as f64;
        let _ = writeln!(
            out,
            "cpu,cpu=cpu-total,host={} usage_user={},usage_system={},usage_idle={},usage_nice={},usage_iowait={},usage_irq={},usage_softirq={},usage_steal={},usage_guest={},usage_guest_nice={} {ts}",
            self.name,
            pct(user),
            pct(system),
            pct(idle),
            pct(nice),
            pct(iowait),
            pct(irq),
            pct(softirq),
            pct(steal),
            pct(guest),
            pct(guest_nice)
        );

        // mem: page-sized random walks.
        let t = self.mem_total as f64;
        let step = |rng: &mut StdRng, v: u64, scale: f64, lo: f64, hi: f64| -> u64 {
            pages((v as f64 + rng.random_range(-scale..scale)).clamp(t * lo, t * hi))
        };
        self.mem_used = step(rng, self.mem_used, t * 0.004, 0.1, 0.85);
        self.mem_cached = step(rng, self.mem_cached, t * 0.002, 0.02, 0.25);
        self.mem_buffered = step(rng, self.mem_buffered, t * 0.0005, 0.002, 0.04);
        let free = self
            .mem_total
            .saturating_sub(self.mem_used + self.mem_cached + self.mem_buffered);
        let available = free + self.mem_cached + self.mem_buffered / 2;
        let active = pages(self.mem_used as f64 * 0.7 + self.mem_cached as f64 * 0.3);
        let inactive = pages(self.mem_cached as f64 * 0.6 + self.mem_used as f64 * 0.2);
        let _ = writeln!(
            out,
            "mem,host={} active={active}i,available={available}i,available_percent={},buffered={}i,cached={}i,free={free}i,inactive={inactive}i,total={}i,used={}i,used_percent={} {ts}",
            self.name,
            available as f64 * 100.0 / t,
            self.mem_buffered,
            self.mem_cached,
            self.mem_total,
            self.mem_used,
            self.mem_used as f64 * 100.0 / t
        );

        // disk /: slowly filling, now and then a cleanup.
        if rng.random_bool(0.002) {
            self.disk_used = pages(self.disk_used as f64 * rng.random_range(0.8..0.95));
        } else {
            self.disk_used += pages(rng.random_range(0.0..4.0e6));
        }
        self.disk_used = self.disk_used.min(self.disk_total - self.disk_total / 20);
        let disk_free = self.disk_total - self.disk_used;
        self.inodes_used = (self.inodes_used as i64 + rng.random_range(-20..=30))
            .clamp(1000, self.inodes_total as i64 - 1) as u64;
        let _ = writeln!(
            out,
            "disk,device=vda1,fstype=ext4,host={},path=/ free={disk_free}i,used={}i,total={}i,used_percent={},inodes_free={}i,inodes_used={}i,inodes_total={}i {ts}",
            self.name,
            self.disk_used,
            self.disk_total,
            self.disk_used as f64 * 100.0 / (self.disk_used + disk_free) as f64,
            self.inodes_total - self.inodes_used,
            self.inodes_used,
            self.inodes_total
        );

        // net eth0: counters that only grow.
        self.pps = (self.pps * rng.random_range(0.9..1.1)).clamp(10.0, 50_000.0);
        let recv = (self.pps * INTERVAL as f64 * rng.random_range(0.9..1.1)) as u64;
        let sent = (recv as f64 * rng.random_range(0.6..1.2)) as u64;
        self.net[0] += recv * rng.random_range(80..1400);
        self.net[1] += sent * rng.random_range(60..1200);
        self.net[2] += recv;
        self.net[3] += sent;
        self.net[4] += u64::from(rng.random_bool(0.001));
        self.net[5] += u64::from(rng.random_bool(0.0002));
        if rng.random_bool(0.03) {
            self.net[6] += rng.random_range(1..20);
        }
        self.net[7] += u64::from(rng.random_bool(0.0005));
        let n = &self.net;
        let _ = writeln!(
            out,
            "net,host={},interface=eth0 bytes_recv={}i,bytes_sent={}i,packets_recv={}i,packets_sent={}i,err_in={}i,err_out={}i,drop_in={}i,drop_out={}i {ts}",
            self.name, n[0], n[1], n[2], n[3], n[4], n[5], n[6], n[7]
        );
    }
}

/// Makes the data set: `intervals` rounds of every host, time first (as a fleet's Telegrafs
/// send it), the last at `last_ts`, cut into batches of `batch` lines.
fn telegraf(
    hosts: usize,
    intervals: usize,
    seed: u64,
    last_ts: i64,
    batch: usize,
    gzip: bool,
) -> Result<Dataset> {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut fleet: Vec<Host> = (0..hosts).map(|i| Host::new(i, &mut rng)).collect();
    let first_ts = last_ts - (intervals as i64 - 1) * INTERVAL;
    let mut plain: Vec<(String, u64)> = Vec::new();
    let mut cur = String::with_capacity(batch * 320);
    let mut in_cur = 0u64;
    let mut buf = String::with_capacity(2048);
    for k in 0..intervals {
        let ts = first_ts + k as i64 * INTERVAL;
        for h in fleet.iter_mut() {
            buf.clear();
            h.lines(ts, &mut rng, &mut buf);
            for line in buf.split_inclusive('\n') {
                cur.push_str(line);
                in_cur += 1;
                if in_cur as usize == batch {
                    plain.push((std::mem::take(&mut cur), in_cur));
                    cur.reserve(batch * 320);
                    in_cur = 0;
                }
            }
        }
    }
    if in_cur > 0 {
        plain.push((cur, in_cur));
    }
    let plain_bytes = plain.iter().map(|(b, _)| b.len() as u64).sum();
    let batches = if gzip {
        gzip_all(plain)?
    } else {
        plain
            .into_iter()
            .map(|(text, lines)| Batch {
                first_line: text.lines().next().unwrap_or_default().to_string(),
                body: text.into_bytes(),
                lines,
            })
            .collect()
    };
    let points = (hosts * intervals) as u64 * POINTS_PER_HOST;
    Ok(Dataset {
        body_bytes: batches.iter().map(|b| b.body.len() as u64).sum(),
        batches,
        hosts,
        intervals,
        points,
        values: (hosts * intervals) as u64 * VALUES_PER_HOST,
        plain_bytes,
        first_ts,
        last_ts,
    })
}

/// Compresses every batch (gzip, default level), on every core.
fn gzip_all(plain: Vec<(String, u64)>) -> Result<Vec<Batch>> {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let chunk = plain.len().div_ceil(threads).max(1);
    let compress = |part: &[(String, u64)]| -> Result<Vec<Batch>> {
        part.iter()
            .map(|(text, lines)| {
                let mut enc = flate2::write::GzEncoder::new(
                    Vec::with_capacity(text.len() / 5),
                    flate2::Compression::default(),
                );
                enc.write_all(text.as_bytes())?;
                Ok(Batch {
                    body: enc.finish()?,
                    lines: *lines,
                    first_line: text.lines().next().unwrap_or_default().to_string(),
                })
            })
            .collect()
    };
    let parts: Vec<Result<Vec<Batch>>> = std::thread::scope(|s| {
        let handles: Vec<_> = plain
            .chunks(chunk)
            .map(|part| s.spawn(move || compress(part)))
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(anyhow::anyhow!("a gzip thread panicked")))
            })
            .collect()
    });
    let mut out = Vec::with_capacity(plain.len());
    for p in parts {
        out.extend(p?);
    }
    Ok(out)
}

/// Batch `b` goes to writer `b % writers`: each writer's batches, in order.
fn deal(batches: &[Batch], writers: usize) -> Vec<Vec<&Batch>> {
    let mut out = vec![Vec::new(); writers];
    for (i, b) in batches.iter().enumerate() {
        out[i % writers].push(b);
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Talking to the systems

/// How to reach one running system.
struct Target {
    system: System,
    base: String,
    /// Basic credentials (peng: the team and its API token).
    auth: Option<(String, String)>,
    http: reqwest::Client,
    /// Count queries sent so far (VictoriaMetrics: each gets a filter of its own).
    probes: std::sync::atomic::AtomicU64,
}

/// What a panel query answered.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Panel {
    series: usize,
    rows: usize,
    /// Rows with a value (not `null`).
    non_null: usize,
}

fn client(timeout: Duration) -> Result<reqwest::Client> {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(timeout)
        .pool_idle_timeout(Duration::from_secs(10))
        .build()
        .context("cannot build the http client")
}

fn clip(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        s.chars().take(n).collect::<String>() + "…"
    }
}

impl Target {
    fn with_auth(&self, req: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match &self.auth {
            Some((u, p)) => req.basic_auth(u, Some(p)),
            None => req,
        }
    }

    /// Sends `req` (described as `what` in errors); the answer's body once it is complete, and
    /// how long that took.
    async fn text(&self, req: reqwest::RequestBuilder, what: &str) -> Result<(String, Duration)> {
        let t = Instant::now();
        let r = self
            .with_auth(req)
            .send()
            .await
            .with_context(|| format!("{what}: request failed"))?;
        let status = r.status();
        let body = r
            .text()
            .await
            .with_context(|| format!("{what}: cannot read the answer"))?;
        let took = t.elapsed();
        if !status.is_success() {
            bail!("{what}: answered {status}: {}", clip(&body, 2000));
        }
        Ok((body, took))
    }

    /// `POST /query` with the form `q=CREATE DATABASE "bench"`, as Telegraf sends it.
    async fn create_database(&self) -> Result<()> {
        let q = format!("CREATE DATABASE \"{DB}\"");
        let what = format!("POST {}/query with the form q={q}", self.base);
        let (body, _) = self
            .text(
                self.http
                    .post(format!("{}/query", self.base))
                    .form(&[("q", q.as_str())]),
                &what,
            )
            .await?;
        let v: Value = serde_json::from_str(&body)
            .with_context(|| format!("{what}: the answer is not JSON: {}", clip(&body, 500)))?;
        influxql_error(&v).map_or(Ok(()), |e| bail!("{what}: answered {e}"))
    }

    /// `GET /query?db=bench&epoch=ms&q=...`: the answer and how long it took to arrive.
    async fn influxql(&self, q: &str) -> Result<(Value, Duration)> {
        let what = format!("GET {}/query?db={DB}&epoch=ms&q={q}", self.base);
        let (body, took) = self
            .text(
                self.http.get(format!("{}/query", self.base)).query(&[
                    ("db", DB),
                    ("epoch", "ms"),
                    ("q", q),
                ]),
                &what,
            )
            .await?;
        let v: Value = serde_json::from_str(&body)
            .with_context(|| format!("{what}: the answer is not JSON: {}", clip(&body, 500)))?;
        if let Some(e) = influxql_error(&v) {
            bail!("{what}: answered {e}");
        }
        Ok((v, took))
    }

    /// `GET /api/v1/...` of VictoriaMetrics (PromQL); the answer's `data`.
    async fn promql(&self, path: &str, params: &[(&str, String)]) -> Result<(Value, Duration)> {
        let what = format!(
            "GET {}{path}?{}",
            self.base,
            params
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join("&")
        );
        let (body, took) = self
            .text(
                self.http.get(format!("{}{path}", self.base)).query(params),
                &what,
            )
            .await?;
        let v: Value = serde_json::from_str(&body)
            .with_context(|| format!("{what}: the answer is not JSON: {}", clip(&body, 500)))?;
        if v.get("status").and_then(Value::as_str) != Some("success") {
            bail!("{what}: answered {}", clip(&body, 500));
        }
        Ok((v.get("data").cloned().unwrap_or(Value::Null), took))
    }

    /// How many `usage_user` values the system answers with now.
    async fn count(&self, data: &Dataset) -> Result<u64> {
        if self.system.influxql() {
            let (v, _) = self.influxql(COUNT_QUERY).await?;
            // {"results":[{"series":[{"values":[[0,N]]}]}]}; no series while empty.
            Ok(v.pointer("/results/0/series/0/values/0/1")
                .and_then(Value::as_u64)
                .unwrap_or(0))
        } else {
            // VictoriaMetrics caches which series a filter selects; asked within its first
            // second or so after a write, the cached answer lacks the new series until a
            // periodic refresh up to 10 s later. A filter of its own per probe (a host no
            // series has) keeps the probe from measuring its own cache entry.
            let probe = self.probes.fetch_add(1, Ordering::Relaxed);
            let window = data.last_ts - data.first_ts + INTERVAL;
            let (v, _) = self
                .promql(
                    "/api/v1/query",
                    &[
                        (
                            "query",
                            format!(
                                "sum(count_over_time(cpu_usage_user{{host!=\"probe-{probe}\"}}[{window}s]))"
                            ),
                        ),
                        ("time", data.last_ts.to_string()),
                        ("nocache", "1".into()),
                    ],
                )
                .await?;
            Ok(v.pointer("/result/0/value/1")
                .and_then(Value::as_str)
                .and_then(|s| s.parse::<f64>().ok())
                .map_or(0, |n| n as u64))
        }
    }

    /// The panel query over the whole data set: what it answered and how long that took.
    async fn panel(&self, data: &Dataset) -> Result<(Panel, Duration)> {
        if self.system.influxql() {
            let q = panel_query(data.first_ts * 1000, data.last_ts * 1000);
            let (v, took) = self.influxql(&q).await?;
            let mut p = Panel::default();
            let series = v
                .pointer("/results/0/series")
                .and_then(Value::as_array)
                .map_or(&[][..], Vec::as_slice);
            for s in series {
                p.series += 1;
                let rows = s.get("values").and_then(Value::as_array);
                for r in rows.into_iter().flatten() {
                    p.rows += 1;
                    if r.get(1).is_some_and(|x| !x.is_null()) {
                        p.non_null += 1;
                    }
                }
            }
            Ok((p, took))
        } else {
            let (v, took) = self
                .promql(
                    "/api/v1/query_range",
                    &[
                        ("query", VM_PANEL.to_string()),
                        ("start", data.first_ts.to_string()),
                        ("end", data.last_ts.to_string()),
                        ("step", "60".into()),
                    ],
                )
                .await?;
            let mut p = Panel::default();
            let series = v
                .get("result")
                .and_then(Value::as_array)
                .map_or(&[][..], Vec::as_slice);
            for s in series {
                p.series += 1;
                let n = s
                    .get("values")
                    .and_then(Value::as_array)
                    .map_or(0, Vec::len);
                p.rows += n;
                p.non_null += n;
            }
            Ok((p, took))
        }
    }
}

/// The error of an InfluxQL answer: top-level `error`, or the first statement's.
fn influxql_error(v: &Value) -> Option<String> {
    if let Some(e) = v.get("error") {
        return Some(format!("error {e}"));
    }
    v.pointer("/results/0/error")
        .map(|e| format!("error in the statement's result: {e}"))
}

// ---------------------------------------------------------------------------------------------
// Writing

/// What the writers did.
#[derive(Debug, Clone, Copy)]
struct Sent {
    first: Instant,
    /// When the last write was answered.
    last: Instant,
    lines: u64,
    posts: u64,
    /// Answers `503` or `429`, each followed by a wait and the same batch again.
    retried: u64,
    retry_wait: Duration,
}

impl Sent {
    fn duration(&self) -> Duration {
        self.last.saturating_duration_since(self.first)
    }
}

struct WriterOutcome {
    start: Instant,
    end: Instant,
    lines: u64,
    posts: u64,
    retried: u64,
    retry_wait: Duration,
}

/// Posts every writer's batches to `url`, writers at once (a thread, a runtime and a
/// connection each). Any answer but 2xx, 503 and 429 is an error naming the request.
fn write_all(
    target: &Target,
    url: &str,
    gzip: bool,
    per_writer: &[Vec<&Batch>],
    deadline: Instant,
) -> Result<Sent> {
    let barrier = Barrier::new(per_writer.len());
    let results: Vec<Result<WriterOutcome>> = std::thread::scope(|scope| {
        let handles: Vec<_> = per_writer
            .iter()
            .enumerate()
            .map(|(n, batches)| {
                let barrier = &barrier;
                std::thread::Builder::new()
                    .name(format!("writer-{n}"))
                    .spawn_scoped(scope, move || -> Result<WriterOutcome> {
                        let rt = tokio::runtime::Builder::new_current_thread()
                            .enable_all()
                            .build()
                            .context("cannot start an async runtime for a writer")?;
                        let http = client(Duration::from_secs(300))?;
                        barrier.wait();
                        rt.block_on(post_batches(target, &http, url, gzip, batches, deadline))
                    })
            })
            .collect();
        peng_bench::send::join_scoped(handles, "a writer")
    });
    let mut sent: Option<Sent> = None;
    for r in results {
        let w = r?;
        let s = sent.get_or_insert(Sent {
            first: w.start,
            last: w.end,
            lines: 0,
            posts: 0,
            retried: 0,
            retry_wait: Duration::ZERO,
        });
        s.first = s.first.min(w.start);
        s.last = s.last.max(w.end);
        s.lines += w.lines;
        s.posts += w.posts;
        s.retried += w.retried;
        s.retry_wait += w.retry_wait;
    }
    sent.context("no writers")
}

async fn post_batches(
    target: &Target,
    http: &reqwest::Client,
    url: &str,
    gzip: bool,
    batches: &[&Batch],
    deadline: Instant,
) -> Result<WriterOutcome> {
    let start = Instant::now();
    let mut o = WriterOutcome {
        start,
        end: start,
        lines: 0,
        posts: 0,
        retried: 0,
        retry_wait: Duration::ZERO,
    };
    for b in batches {
        loop {
            check_interrupted()?;
            if Instant::now() > deadline {
                bail!("the time limit (--max-seconds) was reached while writing");
            }
            let mut req = http
                .post(url)
                .header(reqwest::header::CONTENT_TYPE, "text/plain; charset=utf-8")
                .body(b.body.clone());
            if gzip {
                req = req.header(reqwest::header::CONTENT_ENCODING, "gzip");
            }
            let describe = || {
                format!(
                    "POST {url}{} ({} lines, {} bytes; the first: {})",
                    if gzip { " (gzip)" } else { "" },
                    b.lines,
                    b.body.len(),
                    clip(&b.first_line, 300)
                )
            };
            let r = target
                .with_auth(req)
                .send()
                .await
                .with_context(|| format!("{}: request failed", describe()))?;
            let status = r.status();
            if status.is_success() {
                o.posts += 1;
                o.lines += b.lines;
                break;
            }
            if status == reqwest::StatusCode::SERVICE_UNAVAILABLE
                || status == reqwest::StatusCode::TOO_MANY_REQUESTS
            {
                let wait = peng_bench::send::retry_after(&r);
                o.retried += 1;
                o.retry_wait += wait;
                tokio::time::sleep(wait).await;
                continue;
            }
            let text = r.text().await.unwrap_or_default();
            bail!("{}: answered {status}: {}", describe(), clip(&text, 2000));
        }
    }
    o.end = Instant::now();
    Ok(o)
}

// ---------------------------------------------------------------------------------------------
// Running the systems

/// A started system; dropping it stops the process.
enum Proc {
    Peng(ServerGuard),
    Other { child: ChildGuard, log: PathBuf },
}

impl Proc {
    fn pid(&self) -> u32 {
        match self {
            Proc::Peng(s) => s.pid,
            Proc::Other { child, .. } => child.pid,
        }
    }

    fn exited(&mut self) -> Option<std::process::ExitStatus> {
        match self {
            Proc::Peng(s) => s.exited(),
            Proc::Other { child, .. } => child.exited(),
        }
    }

    fn log_tail(&self, lines: usize) -> String {
        match self {
            Proc::Peng(s) => s.log_tail(lines),
            Proc::Other { log, .. } => {
                let text = std::fs::read_to_string(log).unwrap_or_default();
                let all: Vec<&str> = text.lines().collect();
                all[all.len().saturating_sub(lines)..].join("\n")
            }
        }
    }

    fn stop(&mut self) {
        match self {
            Proc::Peng(s) => s.stop(),
            Proc::Other { child, .. } => child.stop(),
        }
    }
}

fn free_tcp_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")
        .context("cannot find a free tcp port")?
        .local_addr()?
        .port())
}

/// Starts `system` with its data under `dir`: the process, its base URL and the directory
/// whose size is measured.
fn start(args: &Args, system: System, dir: &Path) -> Result<(Proc, String, PathBuf)> {
    match system {
        System::Peng => {
            let data = dir.join("data");
            // Compacted whole 5 s after the last write, as InfluxDB is told below.
            let server = ServerGuard::start_with(
                &args.peng,
                &data,
                free_ports()?,
                &dir.join("peng.log"),
                &["--metrics-compact-cold", "5s"],
            )?;
            let base = server.base_url();
            // Only the InfluxDB databases: the rest of the data directory is peng's own state
            // and log store (reported beside).
            Ok((Proc::Peng(server), base, data.join("influx")))
        }
        System::Influxdb => {
            let port = free_tcp_port()?;
            let mut rpc = free_tcp_port()?;
            while rpc == port {
                rpc = free_tcp_port()?;
            }
            let home = dir.join("influxdb");
            std::fs::create_dir_all(&home)?;
            let log = dir.join("influxd.log");
            let out = std::fs::File::create(&log)
                .with_context(|| format!("cannot create {}", log.display()))?;
            let mut cmd = Command::new(&args.influxd);
            cmd.env("INFLUXDB_META_DIR", home.join("meta"))
                .env("INFLUXDB_DATA_DIR", home.join("data"))
                .env("INFLUXDB_DATA_WAL_DIR", home.join("wal"))
                .env("INFLUXDB_HTTP_BIND_ADDRESS", format!("127.0.0.1:{port}"))
                .env("INFLUXDB_BIND_ADDRESS", format!("127.0.0.1:{rpc}"))
                .env("INFLUXDB_REPORTING_DISABLED", "true")
                .env("INFLUXDB_HTTP_LOG_ENABLED", "false")
                .env("INFLUXDB_DATA_QUERY_LOG_ENABLED", "false")
                // Its own statistics would otherwise go into an `_internal` database in the
                // same directory every 10 s.
                .env("INFLUXDB_MONITOR_STORE_ENABLED", "false")
                // Snapshot the cache and fully compact soon after the last write, so that the
                // size on disk settles within the wait.
                .env("INFLUXDB_DATA_CACHE_SNAPSHOT_WRITE_COLD_DURATION", "2s")
                .env("INFLUXDB_DATA_COMPACT_FULL_WRITE_COLD_DURATION", "5s")
                .stdin(Stdio::null())
                .stdout(out.try_clone()?)
                .stderr(out);
            let child = ChildGuard::spawn(cmd, &args.influxd.display().to_string())?;
            Ok((
                Proc::Other { child, log },
                format!("http://127.0.0.1:{port}"),
                home,
            ))
        }
        System::VictoriaMetrics => {
            let port = free_tcp_port()?;
            let data = dir.join("victoria-metrics-data");
            let log = dir.join("victoria-metrics.log");
            let out = std::fs::File::create(&log)
                .with_context(|| format!("cannot create {}", log.display()))?;
            let mut cmd = Command::new(&args.victoria_metrics);
            cmd.arg(format!("-storageDataPath={}", data.display()))
                .arg(format!("-httpListenAddr=127.0.0.1:{port}"))
                .arg("-retentionPeriod=100y")
                .arg("-search.disableCache")
                .stdin(Stdio::null())
                .stdout(out.try_clone()?)
                .stderr(out);
            let child = ChildGuard::spawn(cmd, &args.victoria_metrics.display().to_string())?;
            Ok((
                Proc::Other { child, log },
                format!("http://127.0.0.1:{port}"),
                data,
            ))
        }
    }
}

/// Waits until `GET {base}{path}` answers `want`, the process exits, or a minute passes.
fn wait_ready(
    rt: &tokio::runtime::Runtime,
    proc: &mut Proc,
    system: System,
    base: &str,
) -> Result<()> {
    let (path, want) = match system {
        System::Peng => ("/healthz", 200),
        System::Influxdb => ("/ping", 204),
        System::VictoriaMetrics => ("/health", 200),
    };
    let http = client(Duration::from_secs(1))?;
    let limit = Duration::from_secs(60);
    let until = Instant::now() + limit;
    loop {
        check_interrupted()?;
        if let Some(status) = proc.exited() {
            bail!("it exited ({status}) before answering {path}");
        }
        let ok = rt.block_on(async {
            http.get(format!("{base}{path}"))
                .send()
                .await
                .is_ok_and(|r| r.status().as_u16() == want)
        });
        if ok {
            return Ok(());
        }
        if Instant::now() > until {
            bail!("{path} did not answer {want} within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// peng: the admin token from `DATA/admin.token`, then `POST /api/v1/teams` for the team
/// `bench`; its API token is the password of the InfluxDB API (user: the team's name).
fn peng_credentials(
    rt: &tokio::runtime::Runtime,
    base: &str,
    data: &Path,
) -> Result<(String, String)> {
    let token_file = data.join("admin.token");
    let admin = std::fs::read_to_string(&token_file)
        .with_context(|| format!("cannot read {}", token_file.display()))?;
    let api = peng_bench::server::Api::new(base.to_string(), admin.trim().to_string())?;
    let token = rt.block_on(api.create_team(DB))?.token;
    Ok((DB.to_string(), token))
}

/// Bytes a directory takes: allocated (as `du` counts them) and apparent; and of the
/// allocated, what lies under directories named `wal`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct DiskUse {
    /// The stored values, as the peers store them (peng: without its rollups).
    allocated: u64,
    apparent: u64,
    wal_allocated: u64,
    /// peng's 5-minute rollups (`rollup_5m` directories), which the peers do not make.
    rollup_allocated: u64,
}

fn disk_use(dir: &Path) -> DiskUse {
    use std::os::unix::fs::MetadataExt;
    let mut u = DiskUse::default();
    let mut stack = vec![(dir.to_path_buf(), false, false)];
    while let Some((d, in_wal, in_rollups)) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let Ok(m) = e.path().symlink_metadata() else {
                continue;
            };
            if m.is_dir() {
                stack.push((
                    e.path(),
                    in_wal || e.file_name() == "wal",
                    in_rollups || e.file_name() == "rollup_5m",
                ));
            } else if m.is_file() {
                let alloc = m.blocks() * 512;
                if in_rollups {
                    u.rollup_allocated += alloc;
                    continue;
                }
                u.allocated += alloc;
                u.apparent += m.len();
                if in_wal {
                    u.wal_allocated += alloc;
                }
            }
        }
    }
    u
}

/// One system's figures.
struct Row {
    system: System,
    version: String,
    sent: Sent,
    /// From the first send until the count query first saw every value.
    until_queryable: Duration,
    /// CPU time of the system's process from the first send until then.
    cpu: Duration,
    /// Values the count query saw (`usage_user` values).
    counted: u64,
    settle_wait: Duration,
    settled: bool,
    disk: DiskUse,
    /// peng only: its whole data directory (state, log store, metrics).
    whole_data_dir: Option<DiskUse>,
    idle_rss_kib: u64,
    /// `VmHWM` once settled (ingest and settling).
    hwm_kib: u64,
    /// `VmHWM` after the panel queries too.
    hwm_end_kib: u64,
    panel: Vec<Duration>,
    panel_answer: Panel,
}

/// Starts `system`, writes the data set, measures, and stops it (also on errors).
fn run_system(
    args: &Args,
    rt: &tokio::runtime::Runtime,
    data: &Dataset,
    system: System,
    dir: &Path,
    deadline: Instant,
) -> Result<Row> {
    // Started on the main thread: the process is tied to this thread's life (PDEATHSIG).
    let (mut proc, base, measured) = start(args, system, dir)?;
    let r = measure(
        args, rt, &mut proc, system, &base, &measured, data, deadline,
    );
    let tail = proc.log_tail(20);
    proc.stop();
    r.map_err(|e| {
        e.context(format!(
            "[{}] the last lines it wrote:\n{tail}",
            system.name()
        ))
    })
}

#[allow(clippy::too_many_arguments)]
fn measure(
    args: &Args,
    rt: &tokio::runtime::Runtime,
    proc: &mut Proc,
    system: System,
    base: &str,
    measured: &Path,
    data: &Dataset,
    deadline: Instant,
) -> Result<Row> {
    let name = system.name();
    wait_ready(rt, proc, system, base)?;
    let auth = match proc {
        Proc::Peng(s) => Some(peng_credentials(rt, base, &s.data_dir)?),
        Proc::Other { .. } => None,
    };
    let target = Target {
        system,
        base: base.to_string(),
        auth,
        http: client(Duration::from_secs(300))?,
        probes: std::sync::atomic::AtomicU64::new(0),
    };
    if system.influxql() {
        rt.block_on(target.create_database())?;
    }
    let pid = proc.pid();
    let idle = procfs::memory(pid).unwrap_or_default();
    eprintln!(
        "metrics-ingest: [{name}] pid {pid} at {base}, idle RSS {}; writing from {} writers",
        mib(idle.rss_kib),
        args.writers
    );

    let per_writer = deal(&data.batches, args.writers);
    let url = format!("{base}/write?db={DB}&precision=s");
    let ticks_before = procfs::process_ticks(pid).unwrap_or(0);
    let sent = write_all(&target, &url, args.gzip, &per_writer, deadline)?;
    eprintln!(
        "metrics-ingest: [{name}] {} lines written in {:.2} s ({} values/s){}; waiting until queryable",
        thousands(sent.lines as f64),
        sent.duration().as_secs_f64(),
        thousands(per_sec(data.values, sent.duration())),
        if sent.retried > 0 {
            format!(", {} answers 503/429", sent.retried)
        } else {
            String::new()
        }
    );

    let want = data.cpu_points();
    let (mut seen, mut changed) = (0u64, Instant::now());
    let reached = loop {
        check_interrupted()?;
        let n = rt.block_on(target.count(data))?;
        let now = Instant::now();
        if n >= want {
            break now;
        }
        if n != seen {
            (seen, changed) = (n, now);
        }
        if now.duration_since(changed) > Duration::from_secs(60) || now > deadline {
            bail!("the count query sees {n} of {want} usage_user values, and no more for 60 s");
        }
        if let Some(status) = proc.exited() {
            bail!("it exited ({status})");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let counted = rt.block_on(target.count(data))?;
    let cpu_ticks = procfs::process_ticks(pid)
        .unwrap_or(0)
        .saturating_sub(ticks_before);
    let until_queryable = reached.saturating_duration_since(sent.first);
    if counted != want {
        eprintln!(
            "metrics-ingest: [{name}] warning: the count query answers {counted}, the data set has {want}"
        );
    }
    eprintln!(
        "metrics-ingest: [{name}] all queryable {:.2} s after the first write; letting the data directory settle",
        until_queryable.as_secs_f64()
    );

    if system == System::VictoriaMetrics {
        for path in ["/internal/force_flush", "/internal/force_merge"] {
            rt.block_on(target.text(
                target.http.get(format!("{base}{path}")),
                &format!("GET {base}{path}"),
            ))?;
        }
    }
    let settle_start = Instant::now();
    let (mut disk, mut since) = (disk_use(measured), Instant::now());
    let settled = loop {
        check_interrupted()?;
        std::thread::sleep(Duration::from_millis(500));
        let now = disk_use(measured);
        if now != disk {
            (disk, since) = (now, Instant::now());
        }
        if since.elapsed().as_secs_f64() >= args.settle_quiet {
            break true;
        }
        if settle_start.elapsed().as_secs_f64() >= args.settle_max {
            break false;
        }
    };
    let settle_wait = settle_start.elapsed();
    let hwm_kib = procfs::memory(pid).map_or(0, |m| m.hwm_kib);
    let whole_data_dir = match proc {
        Proc::Peng(s) => Some(disk_use(&s.data_dir)),
        Proc::Other { .. } => None,
    };

    let mut panel = Vec::with_capacity(args.query_runs);
    let mut panel_answer = None;
    for _ in 0..args.query_runs {
        check_interrupted()?;
        let (p, took) = rt.block_on(target.panel(data))?;
        if panel_answer.is_some_and(|q| q != p) {
            bail!("the panel query answered {p:?}, before {panel_answer:?}");
        }
        panel_answer = Some(p);
        panel.push(took);
    }
    let hwm_end_kib = procfs::memory(pid).map_or(0, |m| m.hwm_kib);
    Ok(Row {
        system,
        version: String::new(),
        sent,
        until_queryable,
        cpu: Duration::from_secs_f64(cpu_ticks as f64 / procfs::clock_ticks()),
        counted,
        settle_wait,
        settled,
        disk,
        whole_data_dir,
        idle_rss_kib: idle.rss_kib,
        hwm_kib,
        hwm_end_kib,
        panel,
        panel_answer: panel_answer.unwrap_or_default(),
    })
}

// ---------------------------------------------------------------------------------------------
// The report

/// Bytes as MiB with a decimal: `2.4 MiB`.
fn mib_of(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1u64 << 20) as f64)
}

fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// The first line `bin arg` prints; else the Debian package's version; else "unknown".
fn tool_version(bin: &Path, arg: &str, package: &str) -> String {
    let printed = Command::new(bin)
        .arg(arg)
        .stdin(Stdio::null())
        .output()
        .ok()
        .and_then(|o| {
            let text = String::from_utf8_lossy(&o.stdout).into_owned()
                + &String::from_utf8_lossy(&o.stderr);
            text.lines()
                .map(str::trim)
                .find(|l| !l.is_empty())
                .map(str::to_string)
        });
    printed
        .or_else(|| {
            let o = Command::new("dpkg-query")
                .args(["-W", "-f=${Version}", package])
                .stdin(Stdio::null())
                .output()
                .ok()?;
            let v = String::from_utf8_lossy(&o.stdout).trim().to_string();
            (o.status.success() && !v.is_empty()).then(|| format!("Debian package {package} {v}"))
        })
        .unwrap_or_else(|| "unknown version".into())
}

impl Row {
    fn written_rate(&self, data: &Dataset) -> f64 {
        per_sec(data.values, self.sent.duration())
    }
    fn queryable_rate(&self, data: &Dataset) -> f64 {
        per_sec(data.values, self.until_queryable)
    }
    fn bytes_per_value(&self, data: &Dataset) -> f64 {
        self.disk.allocated as f64 / data.values.max(1) as f64
    }
    fn cpu_us_per_value(&self, data: &Dataset) -> f64 {
        self.cpu.as_secs_f64() * 1e6 / data.values.max(1) as f64
    }
}

struct Report<'a> {
    args: &'a Args,
    machine: &'a MachineInfo,
    data: &'a Dataset,
    rows: &'a [Row],
    left_out: &'a [String],
    warnings: Vec<String>,
    total: Duration,
}

impl Report<'_> {
    fn print(&self) {
        let (a, d, m) = (self.args, self.data, self.machine);
        println!();
        println!("Metrics ingest benchmark (InfluxDB line protocol)");
        println!(
            "  command:          {}",
            std::env::args().collect::<Vec<_>>().join(" ")
        );
        for r in self.rows {
            println!("  {:<18}{}", format!("{}:", r.system.name()), r.version);
        }
        for n in self.left_out {
            println!("  {:<18}{n}", "left out:");
        }
        println!(
            "  machine:          nproc {}, {}, {} RAM, Linux {}; load {} at the start, {} at the end",
            m.cpus,
            m.cpu_model,
            mib(m.mem_total_kib),
            m.kernel,
            m.loadavg,
            procfs::loadavg()
        );
        println!(
            "  data:             {} hosts × {} intervals of {INTERVAL} s ({:.2} h, seed {}): {} points, {} field values, {} MiB of line protocol{}; {} writers, {} lines per POST ({} POSTs)",
            d.hosts,
            thousands(d.intervals as f64),
            (d.last_ts - d.first_ts + INTERVAL) as f64 / 3600.0,
            a.seed,
            thousands(d.points as f64),
            thousands(d.values as f64),
            d.plain_bytes >> 20,
            if a.gzip {
                format!(", {} MiB gzip-compressed", d.body_bytes >> 20)
            } else {
                String::new()
            },
            a.writers,
            thousands(a.batch as f64),
            thousands(d.batches.len() as f64)
        );
        println!(
            "  whole run {:.0} s (data set, every system, settling, queries)",
            self.total.as_secs_f64()
        );
        println!();
        println!(
            "| system | values/s, written | values/s, until queryable | seconds until queryable | bytes on disk / value | peak RSS | CPU µs / value | panel query, median of {} |",
            a.query_runs
        );
        println!("|---|---|---|---|---|---|---|---|");
        for r in self.rows {
            println!(
                "| {} | {} | {} | {:.2} | {:.2} | {} | {:.2} | {} |",
                r.system.label(),
                thousands(r.written_rate(d)),
                thousands(r.queryable_rate(d)),
                r.until_queryable.as_secs_f64(),
                r.bytes_per_value(d),
                mib(r.hwm_kib),
                r.cpu_us_per_value(d),
                median(&r.panel).map_or("-".into(), ms)
            );
        }
        println!();
        if let Some(p) = self.rows.iter().find(|r| r.system == System::Peng) {
            for peer in self.rows.iter().filter(|r| r.system != System::Peng) {
                println!(
                    "  peng / {}: values/s written {}, until queryable {}, bytes/value {}, peak RSS {}, CPU/value {}, panel query time {}",
                    peer.system.label(),
                    ratio(p.written_rate(d), peer.written_rate(d)),
                    ratio(p.queryable_rate(d), peer.queryable_rate(d)),
                    ratio(p.bytes_per_value(d), peer.bytes_per_value(d)),
                    ratio(p.hwm_kib as f64, peer.hwm_kib as f64),
                    ratio(p.cpu_us_per_value(d), peer.cpu_us_per_value(d)),
                    match (median(&p.panel), median(&peer.panel)) {
                        (Some(x), Some(y)) => ratio(x.as_secs_f64(), y.as_secs_f64()),
                        _ => "-".into(),
                    }
                );
            }
            println!();
        }
        for w in &self.warnings {
            println!("  WARNING: {w}");
        }
        for r in self.rows {
            let panel = r.panel_answer;
            println!(
                "  {}: {} POSTs in {:.2} s{}; {} on disk after {:.1} s {} ({} apparent; in WAL directories {}){}{}; RSS idle {}, VmHWM {} after settling, {} after the queries; count {}; panel answer {} series, {} rows, {} with a value, {} to {} over {} runs",
                r.system.name(),
                thousands(r.sent.posts as f64),
                r.sent.duration().as_secs_f64(),
                if r.sent.retried > 0 {
                    format!(
                        ", {} answered 503/429 (waited {:.0} s in all)",
                        r.sent.retried,
                        r.sent.retry_wait.as_secs_f64()
                    )
                } else {
                    String::new()
                },
                mib_of(r.disk.allocated),
                r.settle_wait.as_secs_f64(),
                if r.settled {
                    format!("(unchanged for the last {} s)", a.settle_quiet)
                } else {
                    "(still changing at --settle-max)".to_string()
                },
                mib_of(r.disk.apparent),
                mib_of(r.disk.wal_allocated),
                if r.disk.rollup_allocated > 0 {
                    format!(
                        "; its 5-minute rollups besides {}",
                        mib_of(r.disk.rollup_allocated)
                    )
                } else {
                    String::new()
                },
                r.whole_data_dir.map_or(String::new(), |w| format!(
                    "; the whole data directory {}",
                    mib_of(w.allocated)
                )),
                mib(r.idle_rss_kib),
                mib(r.hwm_kib),
                mib(r.hwm_end_kib),
                thousands(r.counted as f64),
                panel.series,
                thousands(panel.rows as f64),
                thousands(panel.non_null as f64),
                r.panel.iter().min().map_or("-".into(), |d| ms(*d)),
                r.panel.iter().max().map_or("-".into(), |d| ms(*d)),
                r.panel.len()
            );
        }
        println!();
        println!(
            "  The panel query: {} (peng and InfluxDB, GET /query?db={DB}&epoch=ms); {VM_PANEL} with step=60 over the same span (VictoriaMetrics, GET /api/v1/query_range).",
            panel_query(d.first_ts * 1000, d.last_ts * 1000)
        );
    }

    fn json(&self) -> Value {
        let d = self.data;
        let rows: Vec<Value> = self
            .rows
            .iter()
            .map(|r| {
                serde_json::json!({
                    "system": r.system.name(),
                    "version": r.version,
                    "write_seconds": r.sent.duration().as_secs_f64(),
                    "values_per_second_written": r.written_rate(d),
                    "seconds_until_queryable": r.until_queryable.as_secs_f64(),
                    "values_per_second_until_queryable": r.queryable_rate(d),
                    "posts": r.sent.posts,
                    "answers_503_429": r.sent.retried,
                    "counted_usage_user": r.counted,
                    "disk_bytes": r.disk.allocated,
                    "disk_apparent_bytes": r.disk.apparent,
                    "disk_wal_bytes": r.disk.wal_allocated,
                    "disk_rollup_bytes": r.disk.rollup_allocated,
                    "whole_data_dir_bytes": r.whole_data_dir.map(|w| w.allocated),
                    "bytes_per_value": r.bytes_per_value(d),
                    "settle_seconds": r.settle_wait.as_secs_f64(),
                    "settled": r.settled,
                    "idle_rss_kib": r.idle_rss_kib,
                    "peak_rss_kib": r.hwm_kib,
                    "peak_rss_after_queries_kib": r.hwm_end_kib,
                    "cpu_seconds_until_queryable": r.cpu.as_secs_f64(),
                    "cpu_us_per_value": r.cpu_us_per_value(d),
                    "panel_median_seconds": median(&r.panel).map(|x| x.as_secs_f64()),
                    "panel_seconds": r.panel.iter().map(Duration::as_secs_f64).collect::<Vec<_>>(),
                    "panel_series": r.panel_answer.series,
                    "panel_rows": r.panel_answer.rows,
                    "panel_non_null": r.panel_answer.non_null,
                })
            })
            .collect();
        serde_json::json!({
            "hosts": d.hosts,
            "intervals": d.intervals,
            "interval_seconds": INTERVAL,
            "first_ts": d.first_ts,
            "last_ts": d.last_ts,
            "points": d.points,
            "field_values": d.values,
            "line_protocol_bytes": d.plain_bytes,
            "body_bytes": d.body_bytes,
            "gzip": self.args.gzip,
            "seed": self.args.seed,
            "writers": self.args.writers,
            "batch": self.args.batch,
            "query_runs": self.args.query_runs,
            "panel_query": panel_query(d.first_ts * 1000, d.last_ts * 1000),
            "vm_panel_query": VM_PANEL,
            "machine": { "cpus": self.machine.cpus, "cpu_model": self.machine.cpu_model, "kernel": self.machine.kernel },
            "left_out": self.left_out,
            "warnings": self.warnings,
            "rows": rows,
        })
    }
}

fn run(args: Args) -> Result<()> {
    if args.hosts == 0 || args.hosts > 100_000 {
        bail!("--hosts must be between 1 and 100000");
    }
    if !(args.hours > 0.0 && args.hours <= 24.0 * 365.0) {
        bail!("--hours must be more than 0 and at most a year");
    }
    if args.writers == 0 || args.writers > 64 {
        bail!("--writers must be between 1 and 64");
    }
    if args.batch == 0 || args.batch > 20_000 {
        bail!("--batch must be between 1 and 20000 (peng takes at most 8 MiB per POST)");
    }
    if args.query_runs == 0 || args.query_runs > 1000 {
        bail!("--query-runs must be between 1 and 1000");
    }
    if !(0.5..=600.0).contains(&args.settle_quiet) || !(0.5..=3600.0).contains(&args.settle_max) {
        bail!("--settle-quiet must be between 0.5 and 600 s, --settle-max between 0.5 and 3600 s");
    }
    let intervals = ((args.hours * 3600.0 / INTERVAL as f64).round() as usize).max(1);
    let values = (args.hosts * intervals) as u64 * VALUES_PER_HOST;
    if values > 200_000_000 {
        bail!("{values} field values is more than this benchmark holds in memory (200,000,000)");
    }

    let mut systems = Vec::new();
    let mut left_out = Vec::new();
    for s in &args.systems {
        if systems.contains(s) {
            continue;
        }
        let (bin, package) = match s {
            System::Peng => {
                if !args.peng.is_file() {
                    bail!(
                        "{} does not exist; build it with `cargo build --release -p peng`, pass --peng, or leave peng out with --systems",
                        args.peng.display()
                    );
                }
                systems.push(*s);
                continue;
            }
            System::Influxdb => (&args.influxd, "influxdb"),
            System::VictoriaMetrics => (&args.victoria_metrics, "victoria-metrics"),
        };
        if bin.is_file() {
            systems.push(*s);
        } else {
            let note = format!(
                "{} ({} not found; apt-get install {package} adds it)",
                s.label(),
                bin.display()
            );
            eprintln!("metrics-ingest: leaving out {note}");
            left_out.push(note);
        }
    }
    if systems.is_empty() {
        bail!("no system to measure");
    }

    let started = Instant::now();
    let deadline = started + Duration::from_secs(args.max_seconds);
    let machine = MachineInfo::read();
    let tmp = tempfile::Builder::new()
        .prefix("peng-metrics-ingest-")
        .tempdir()
        .context("cannot create a temporary directory")?;

    // The data set, made before anything is timed; it ends a minute ago, on a multiple of the
    // interval, so that nothing is in the future or within VictoriaMetrics' 30 s of latency.
    let t = Instant::now();
    let last_ts = (now_secs() - 60) / INTERVAL * INTERVAL;
    let data = telegraf(
        args.hosts, intervals, args.seed, last_ts, args.batch, args.gzip,
    )?;
    eprintln!(
        "metrics-ingest: {} points, {} field values ({} hosts, {} intervals of {INTERVAL} s), {} MiB of line protocol{}, in {} batches; made in {:.1} s",
        thousands(data.points as f64),
        thousands(data.values as f64),
        data.hosts,
        thousands(data.intervals as f64),
        data.plain_bytes >> 20,
        if args.gzip {
            format!(" ({} MiB gzip-compressed)", data.body_bytes >> 20)
        } else {
            String::new()
        },
        thousands(data.batches.len() as f64),
        t.elapsed().as_secs_f64()
    );

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let mut rows = Vec::new();
    for &s in &systems {
        let dir = tmp.path().join(s.name());
        std::fs::create_dir_all(&dir)?;
        let mut row = run_system(&args, &rt, &data, s, &dir, deadline)?;
        row.version = match s {
            System::Peng => tool_version(&args.peng, "--version", "peng"),
            System::Influxdb => tool_version(&args.influxd, "version", "influxdb"),
            System::VictoriaMetrics => {
                tool_version(&args.victoria_metrics, "-version", "victoria-metrics")
            }
        };
        if !args.keep_data {
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir)?;
        }
        rows.push(row);
    }

    let mut warnings = Vec::new();
    let peng = rows.iter().find(|r| r.system == System::Peng);
    let influx = rows.iter().find(|r| r.system == System::Influxdb);
    if let (Some(p), Some(i)) = (peng, influx) {
        let (a, b) = (p.panel_answer, i.panel_answer);
        if a.series != b.series || a.rows != b.rows {
            warnings.push(format!(
                "the panel query's answers differ: peng {} series, {} rows; InfluxDB {} series, {} rows",
                a.series, a.rows, b.series, b.rows
            ));
        } else if a.non_null != b.non_null {
            warnings.push(format!(
                "the panel query's answers have the same shape but not the same values present: peng {} rows with a value, InfluxDB {}",
                a.non_null, b.non_null
            ));
        }
    }
    for r in &rows {
        if r.counted != data.cpu_points() {
            warnings.push(format!(
                "{} counts {} usage_user values, the data set has {}",
                r.system.label(),
                r.counted,
                data.cpu_points()
            ));
        }
    }

    let report = Report {
        args: &args,
        machine: &machine,
        data: &data,
        rows: &rows,
        left_out: &left_out,
        warnings,
        total: started.elapsed(),
    };
    report.print();
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_vec_pretty(&report.json())?)
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    if args.keep_data {
        let kept = tmp.keep();
        eprintln!("metrics-ingest: kept {}", kept.display());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_data_set_is_what_it_says() {
        let d = telegraf(3, 7, 1, 1_700_000_000, 10, false).unwrap();
        assert_eq!(d.points, 3 * 7 * 4);
        assert_eq!(d.values, 3 * 7 * 35);
        assert_eq!(d.first_ts, 1_700_000_000 - 60);
        let text: String = d
            .batches
            .iter()
            .map(|b| String::from_utf8(b.body.clone()).unwrap())
            .collect();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len() as u64, d.points);
        assert_eq!(d.batches.iter().map(|b| b.lines).sum::<u64>(), d.points);
        let fields: usize = lines
            .iter()
            .map(|l| l.split(' ').nth(1).unwrap().split(',').count())
            .sum();
        assert_eq!(fields as u64, d.values);
        assert!(lines[0].starts_with("cpu,cpu=cpu-total,host=web-001 usage_user="));
        assert!(lines.last().unwrap().ends_with(" 1700000000"));
        // Seeded: the same again.
        let again = telegraf(3, 7, 1, 1_700_000_000, 10, false).unwrap();
        assert!(d
            .batches
            .iter()
            .zip(&again.batches)
            .all(|(a, b)| a.body == b.body));
    }

    #[test]
    fn counters_grow_and_percentages_stay_in_range() {
        let d = telegraf(2, 50, 7, 1_700_000_000, 1000, false).unwrap();
        let text = String::from_utf8(d.batches[0].body.clone()).unwrap();
        let mut last_bytes = std::collections::BTreeMap::new();
        for l in text.lines() {
            let mut parts = l.split(' ');
            let key = parts.next().unwrap();
            let fields = parts.next().unwrap();
            for f in fields.split(',') {
                let (k, v) = f.split_once('=').unwrap();
                if k.starts_with("usage_") || k.ends_with("_percent") {
                    let x: f64 = v.parse().unwrap();
                    assert!((0.0..=100.0).contains(&x), "{k}={v}");
                }
                if key.starts_with("net,") && k == "bytes_recv" {
                    let x: u64 = v.trim_end_matches('i').parse().unwrap();
                    let prev = last_bytes.insert(key.to_string(), x);
                    assert!(prev.is_none_or(|p| p < x));
                }
            }
        }
    }

    #[test]
    fn gzip_batches_decompress_to_the_same_lines() {
        use std::io::Read;
        let plain = telegraf(2, 3, 1, 1_700_000_000, 5, false).unwrap();
        let gz = telegraf(2, 3, 1, 1_700_000_000, 5, true).unwrap();
        assert_eq!(plain.batches.len(), gz.batches.len());
        for (p, g) in plain.batches.iter().zip(&gz.batches) {
            let mut out = Vec::new();
            flate2::read::GzDecoder::new(&g.body[..])
                .read_to_end(&mut out)
                .unwrap();
            assert_eq!(out, p.body);
        }
    }

    #[test]
    fn batches_are_dealt_in_turn() {
        let d = telegraf(1, 3, 1, 1_700_000_000, 5, false).unwrap();
        let dealt = deal(&d.batches, 2);
        assert_eq!(dealt[0].len(), 2);
        assert_eq!(dealt[1].len(), 1);
    }
}
