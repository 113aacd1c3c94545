//! The peers peng's log ingest is measured next to, on the same messages:
//!
//! - **tantivy-cli** (`tantivy index`, one indexing thread), the search library peng's log
//!   store is built on, on its own: the messages as tantivy documents in a file, a schema
//!   equivalent to what peng's searches use.
//! - **syslog-ng**, receiving the same GELF JSON over TCP (one message per line) and writing
//!   it to a flat file: what keeping logs without an index costs.

use std::io::{BufWriter, Read, Seek, SeekFrom, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde_json::{json, Map, Value};

use crate::child::ChildGuard;
use crate::gen::Dataset;
use crate::procfs;
use crate::send::{self, SendOutcome, TcpWrites};

/// What a peer did with the data set.
#[derive(Debug, Clone)]
pub struct PeerRun {
    /// Messages the peer holds at the end (indexed documents, lines written).
    pub stored: u64,
    /// From the start (tantivy-cli: the process; syslog-ng: the first send) until every
    /// message was stored.
    pub elapsed: Duration,
    /// Bytes the peer keeps on disk for the messages.
    pub disk_bytes: u64,
    /// Peak resident memory of the peer's process, KiB.
    pub peak_rss_kib: u64,
    /// CPU time of the peer's process until every message was stored.
    pub cpu: Duration,
    /// Wall time of each needle search.
    pub needle: Vec<Duration>,
    /// Hits of the needle search (the same every time, or the run fails).
    pub needle_hits: u64,
    /// tantivy-cli only: the needle searched inside one process (`tantivy bench`), the search
    /// and the fetch of the hit's stored document, each repetition.
    pub needle_in_process: Vec<Duration>,
    /// The TCP senders' figures (syslog-ng only).
    pub send: Option<SendOutcome>,
}

/// `explicit`, else `name` on `PATH`, else `$HOME/.cache/peng/tools/bin/<name>` (where
/// `bench/log-ingest.sh` installs tantivy-cli).
pub fn find_tool(name: &str, explicit: Option<&Path>) -> Option<PathBuf> {
    if let Some(p) = explicit {
        return p.is_file().then(|| p.to_path_buf());
    }
    let on_path = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join(name))
            .find(|p| p.is_file())
    });
    on_path.or_else(|| {
        let p = PathBuf::from(std::env::var_os("HOME")?)
            .join(".cache/peng/tools/bin")
            .join(name);
        p.is_file().then_some(p)
    })
}

fn tail_of(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// Additional fields peng makes columns of or drops, rather than keeping them as fields.
const NOT_FIELDS: &[&str] = &["_ingest_token", "_service", "_stage", "_instance", "_id"];

/// One GELF message as the document the tantivy-cli peer indexes: the columns peng fills
/// from it (`timestamp` in nanoseconds, `team`, `service`, `host`, `level`), `message` (the
/// short message), `full_message`, and the additional fields without their `_` in `fields`.
pub fn tantivy_doc(gelf: &[u8], team: &str) -> Result<Value> {
    let v: Value = serde_json::from_slice(gelf).context("a message is not JSON")?;
    let Value::Object(m) = v else {
        bail!("a message is not a JSON object");
    };
    let mut fields = Map::new();
    let mut doc = Map::new();
    doc.insert("team".into(), team.into());
    for (k, v) in m {
        match k.as_str() {
            "timestamp" => {
                let ns = v.as_f64().map_or(0, |s| (s * 1e9) as i64);
                doc.insert("timestamp".into(), ns.into());
            }
            "host" | "full_message" => {
                doc.insert(k, v);
            }
            "short_message" => {
                doc.insert("message".into(), v);
            }
            "level" => {
                doc.insert("level".into(), v);
            }
            "_service" => {
                doc.insert("service".into(), v);
            }
            _ if NOT_FIELDS.contains(&k.as_str()) => {}
            _ => {
                if let Some(name) = k.strip_prefix('_') {
                    fields.insert(name.to_string(), v);
                }
            }
        }
    }
    doc.insert("fields".into(), Value::Object(fields));
    Ok(Value::Object(doc))
}

/// The index the tantivy-cli peer writes into: its `meta.json` (what `tantivy new` would
/// write after its questions). Columns are whole values (`raw`, no positions, no field
/// norms), `message` and `full_message` are words with positions (for phrases), `timestamp`
/// and `level` are indexed and fast (ranges, order), additional fields are one JSON field
/// indexed as whole values; everything a hit shows is stored (the default docstore, lz4 in
/// 16 KiB blocks).
pub fn tantivy_meta() -> Value {
    let raw = json!({
        "indexing": { "record": "basic", "fieldnorms": false, "tokenizer": "raw" },
        "stored": true, "fast": false
    });
    let words = json!({
        "indexing": { "record": "position", "fieldnorms": false, "tokenizer": "default" },
        "stored": true, "fast": false
    });
    let num = json!({ "indexed": true, "fieldnorms": false, "fast": true, "stored": true });
    json!({
        "index_settings": { "docstore_compression": "lz4", "docstore_blocksize": 16384 },
        "segments": [],
        "schema": [
            { "name": "timestamp", "type": "i64", "options": num },
            { "name": "team", "type": "text", "options": raw },
            { "name": "service", "type": "text", "options": raw },
            { "name": "host", "type": "text", "options": raw },
            { "name": "level", "type": "u64", "options": num },
            { "name": "message", "type": "text", "options": words },
            { "name": "full_message", "type": "text", "options": words },
            { "name": "fields", "type": "json_object", "options": {
                "stored": true,
                "indexing": { "record": "basic", "fieldnorms": false, "tokenizer": "raw" },
                "fast": false,
                "expand_dots_enabled": true
            } }
        ],
        "opstamp": 0
    })
}

/// Writes the data set as tantivy documents, one JSON object per line; returns the bytes.
pub fn write_tantivy_docs(data: &Dataset, team: &str, path: &Path) -> Result<u64> {
    let file =
        std::fs::File::create(path).with_context(|| format!("cannot create {}", path.display()))?;
    let mut out = BufWriter::with_capacity(1 << 20, file);
    for i in 0..data.len() {
        serde_json::to_writer(&mut out, &tantivy_doc(data.message(i), team)?)?;
        out.write_all(b"\n")?;
    }
    out.flush()?;
    Ok(std::fs::metadata(path)?.len())
}

/// Documents in a tantivy index, from its `meta.json` (each segment's `max_doc` less its
/// deletes).
fn tantivy_doc_count(index: &Path) -> Result<u64> {
    let meta: Value = serde_json::from_slice(&std::fs::read(index.join("meta.json"))?)?;
    let segments = meta
        .get("segments")
        .and_then(Value::as_array)
        .context("meta.json has no segments")?;
    Ok(segments
        .iter()
        .map(|s| {
            let max = s.get("max_doc").and_then(Value::as_u64).unwrap_or(0);
            let del = s
                .get("deletes")
                .and_then(|d| d.get("num_deleted_docs"))
                .and_then(Value::as_u64)
                .unwrap_or(0);
            max - del.min(max)
        })
        .sum())
}

/// Settings of the tantivy-cli run.
pub struct TantivyCli<'a> {
    pub bin: &'a Path,
    /// A directory of its own for the documents file, the index and the logs.
    pub work: &'a Path,
    /// `tantivy index --memory_size`, bytes.
    pub memory: usize,
    pub needle_query: &'a str,
    pub needle_runs: usize,
    pub deadline: Instant,
}

impl TantivyCli<'_> {
    /// Indexes the documents file (made beforehand, not timed) with `tantivy index
    /// --num_threads 1`, timed from the start of the process to its end (it commits once and
    /// waits for its merges before it exits), then runs the needle search `needle_runs`
    /// times, each a `tantivy search` process.
    pub fn run(&self, docs: &Path) -> Result<PeerRun> {
        let index = self.work.join("index");
        std::fs::create_dir_all(&index)?;
        std::fs::write(
            index.join("meta.json"),
            serde_json::to_vec_pretty(&tantivy_meta())?,
        )?;
        let log = self.work.join("tantivy-index.log");
        let out = std::fs::File::create(&log)?;
        let mut cmd = Command::new(self.bin);
        cmd.arg("index")
            .arg("--index")
            .arg(&index)
            .arg("--file")
            .arg(docs)
            .arg("--num_threads")
            .arg("1")
            .arg("--memory_size")
            .arg(self.memory.to_string())
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out);
        let mut child = ChildGuard::spawn(cmd, "tantivy index")?;
        let exit = child.wait(self.deadline)?;
        if !exit.success() {
            bail!(
                "tantivy index ended with {}; its output:\n{}",
                exit.describe(),
                tail_of(&log, 20)
            );
        }
        let stored = tantivy_doc_count(&index)?;
        let disk_bytes = procfs::dir_size(&index);
        let mut needle = Vec::with_capacity(self.needle_runs);
        let mut needle_hits = None;
        let found = self.work.join("tantivy-search.out");
        for _ in 0..self.needle_runs {
            let mut cmd = Command::new(self.bin);
            cmd.arg("search")
                .arg("--index")
                .arg(&index)
                .arg("--query")
                .arg(self.needle_query)
                .stdin(Stdio::null())
                .stdout(std::fs::File::create(&found)?)
                .stderr(Stdio::piped());
            let mut child = ChildGuard::spawn(cmd, "tantivy search")?;
            let e = child.wait(self.deadline)?;
            if !e.success() {
                bail!("tantivy search ended with {}", e.describe());
            }
            let hits = std::fs::read_to_string(&found)?.lines().count() as u64;
            if needle_hits.is_some_and(|h| h != hits) {
                bail!("tantivy search found {hits} documents, before {needle_hits:?}");
            }
            needle_hits = Some(hits);
            needle.push(e.wall);
        }
        let needle_in_process = self.bench_needle(&index, needle_hits.unwrap_or(0))?;
        Ok(PeerRun {
            stored,
            elapsed: exit.wall,
            disk_bytes,
            peak_rss_kib: exit.max_rss_kib,
            cpu: exit.cpu,
            needle,
            needle_hits: needle_hits.unwrap_or(0),
            needle_in_process,
            send: None,
        })
    }

    /// `tantivy bench --num_repeat N` with the needle query: in one process, N times the
    /// search (top 10 and count), then N times the search again and the fetch of the stored
    /// hits, each reported in microseconds. Each repetition's search plus fetch.
    fn bench_needle(&self, index: &Path, hits: u64) -> Result<Vec<Duration>> {
        let queries = self.work.join("needle-query.txt");
        std::fs::write(&queries, format!("{}\n", self.needle_query))?;
        let out = self.work.join("tantivy-bench.out");
        let mut cmd = Command::new(self.bin);
        cmd.arg("bench")
            .arg("--index")
            .arg(index)
            .arg("--queries")
            .arg(&queries)
            .arg("--num_repeat")
            .arg(self.needle_runs.to_string())
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&out)?)
            .stderr(Stdio::null());
        let e = ChildGuard::spawn(cmd, "tantivy bench")?.wait(self.deadline)?;
        if !e.success() {
            bail!("tantivy bench ended with {}", e.describe());
        }
        let text = std::fs::read_to_string(&out)?;
        let (search, fetch) = parse_tantivy_bench(&text, self.needle_query, hits)?;
        if search.len() != self.needle_runs || fetch.len() != self.needle_runs {
            bail!(
                "tantivy bench reported {} searches and {} fetches, not {}",
                search.len(),
                fetch.len(),
                self.needle_runs
            );
        }
        Ok(search
            .iter()
            .zip(&fetch)
            .map(|(s, f)| Duration::from_micros(s + f))
            .collect())
    }
}

/// The microseconds of each search and each fetch in `tantivy bench` output (`query\tcount\tµs`
/// lines under `SEARCH`, `query\tµs` under `FETCH STORE`); every search must count `hits`.
fn parse_tantivy_bench(text: &str, query: &str, hits: u64) -> Result<(Vec<u64>, Vec<u64>)> {
    let (mut search, mut fetch) = (Vec::new(), Vec::new());
    let mut in_fetch = false;
    for line in text.lines() {
        if line.starts_with("FETCH STORE") {
            in_fetch = true;
            continue;
        }
        let Some(rest) = line.strip_prefix(query).and_then(|r| r.strip_prefix('\t')) else {
            continue;
        };
        let cols: Vec<&str> = rest.split('\t').collect();
        match (in_fetch, cols.as_slice()) {
            (false, [count, micros]) => {
                let count: u64 = count.trim().parse().context("tantivy bench: a count")?;
                if count != hits {
                    bail!("tantivy bench counted {count} hits, tantivy search {hits}");
                }
                search.push(micros.trim().parse().context("tantivy bench: a time")?);
            }
            (true, [micros]) => fetch.push(micros.trim().parse().context("tantivy bench: a time")?),
            _ => bail!("tantivy bench printed an unexpected line: {line}"),
        }
    }
    Ok((search, fetch))
}

/// Settings of the syslog-ng run.
pub struct SyslogNg<'a> {
    pub bin: &'a Path,
    /// A directory of its own for the configuration, the output file and its state.
    pub work: &'a Path,
    /// Its argument: `grep -F -c` on the output file.
    pub needle: &'a str,
    pub needle_runs: usize,
    pub deadline: Instant,
}

/// The configuration version of an installed syslog-ng (`Config version: 3.35`).
fn syslog_ng_config_version(bin: &Path) -> Result<String> {
    let out = Command::new(bin)
        .arg("--version")
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("cannot run {} --version", bin.display()))?;
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| {
            l.strip_prefix("Config version:")
                .map(|v| v.trim().to_string())
        })
        .context("syslog-ng --version does not say its config version")
}

fn free_tcp_port() -> Result<SocketAddr> {
    Ok(TcpListener::bind("127.0.0.1:0")
        .context("cannot find a free tcp port")?
        .local_addr()?)
}

/// Counts newlines in a growing file from where the last call stopped.
struct LineCounter {
    file: Option<std::fs::File>,
    path: PathBuf,
    pos: u64,
    lines: u64,
    buf: Vec<u8>,
}

impl LineCounter {
    fn poll(&mut self) -> Result<u64> {
        if self.file.is_none() {
            match std::fs::File::open(&self.path) {
                Ok(f) => self.file = Some(f),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
                Err(e) => return Err(e.into()),
            }
        }
        if let Some(f) = self.file.as_mut() {
            f.seek(SeekFrom::Start(self.pos))?;
            loop {
                let n = f.read(&mut self.buf)?;
                if n == 0 {
                    break;
                }
                self.pos += n as u64;
                self.lines += self.buf[..n].iter().filter(|b| **b == b'\n').count() as u64;
            }
        }
        Ok(self.lines)
    }
}

impl SyslogNg<'_> {
    /// Starts syslog-ng with a TCP source on a free 127.0.0.1 port (a message per line, parsed
    /// as JSON) and a file destination (each message as it came, one per line), with flow
    /// control so that nothing is dropped; sends `per_conn` over TCP, many messages per write;
    /// timed from the first send until the file holds every message. Then the needle: `grep
    /// -F -c` on the file, `needle_runs` times.
    pub fn run(&self, per_conn: &[Vec<&[u8]>], total: u64) -> Result<PeerRun> {
        let addr = free_tcp_port()?;
        let out_file = self.work.join("messages.log");
        let conf = self.work.join("syslog-ng.conf");
        let version = syslog_ng_config_version(self.bin)?;
        std::fs::write(
            &conf,
            format!(
                r#"@version: {version}
options {{
  chain-hostnames(no); use-dns(no); dns-cache(no); use-fqdn(no); keep-hostname(yes);
  stats-freq(0); log-msg-size(1048576); create-dirs(no);
}};
source s_gelf {{
  network(ip("127.0.0.1") port({port}) transport("tcp") flags(no-parse)
          max-connections(16) log-iw-size(20000));
}};
parser p_json {{ json-parser(prefix(".gelf.")); }};
destination d_file {{ file("{out}" template("$MSG\n") log-fifo-size(20000)); }};
log {{ source(s_gelf); parser(p_json); destination(d_file); flags(flow-control); }};
"#,
                port = addr.port(),
                out = out_file.display(),
            ),
        )?;
        let log = self.work.join("syslog-ng.log");
        let common = |cmd: &mut Command| {
            cmd.arg("--no-caps")
                .arg("--cfgfile")
                .arg(&conf)
                .arg("--persist-file")
                .arg(self.work.join("syslog-ng.persist"))
                .arg("--pidfile")
                .arg(self.work.join("syslog-ng.pid"))
                .arg("--control")
                .arg(self.work.join("syslog-ng.ctl"));
        };
        let mut check = Command::new(self.bin);
        common(&mut check);
        let checked = check
            .arg("--syntax-only")
            .stdin(Stdio::null())
            .output()
            .context("cannot run syslog-ng --syntax-only")?;
        if !checked.status.success() {
            bail!(
                "syslog-ng does not take the configuration: {}",
                String::from_utf8_lossy(&checked.stderr)
            );
        }
        let mut cmd = Command::new(self.bin);
        common(&mut cmd);
        let out = std::fs::File::create(&log)?;
        cmd.arg("--foreground")
            .arg("--stderr")
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out);
        let mut child = ChildGuard::spawn(cmd, "syslog-ng")?;
        let pid = child.pid;
        let up_by = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = child.exited() {
                bail!(
                    "syslog-ng exited ({status}); its output:\n{}",
                    tail_of(&log, 20)
                );
            }
            if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                break;
            }
            if Instant::now() > up_by {
                bail!(
                    "syslog-ng did not listen on {addr} within 20 s; its output:\n{}",
                    tail_of(&log, 20)
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let cpu_before = procfs::process_ticks(pid).unwrap_or(0);
        let outcome = send::send_tcp(
            addr,
            per_conn,
            b"\n",
            TcpWrites::Buffered,
            None,
            self.deadline,
        )?;
        let mut counter = LineCounter {
            file: None,
            path: out_file.clone(),
            pos: 0,
            lines: 0,
            buf: vec![0; 1 << 20],
        };
        let (mut last, mut changed) = (0, Instant::now());
        let done_at = loop {
            let n = counter.poll()?;
            let now = Instant::now();
            if n >= total {
                break now;
            }
            if n != last {
                (last, changed) = (n, now);
            }
            if now.duration_since(changed) > Duration::from_secs(30) || now > self.deadline {
                bail!("syslog-ng wrote {n} of {total} messages and then nothing for 30 s");
            }
            if let Some(status) = child.exited() {
                bail!(
                    "syslog-ng exited ({status}); its output:\n{}",
                    tail_of(&log, 20)
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let cpu = procfs::process_ticks(pid)
            .unwrap_or(0)
            .saturating_sub(cpu_before);
        let peak_rss_kib = procfs::memory(pid).map_or(0, |m| m.hwm_kib);
        child.stop();
        let stored = counter.poll()?;
        let disk_bytes = std::fs::metadata(&out_file)?.len();
        let mut needle = Vec::with_capacity(self.needle_runs);
        let mut needle_hits = None;
        for _ in 0..self.needle_runs {
            let found = self.work.join("grep.out");
            let mut cmd = Command::new("grep");
            cmd.arg("-F")
                .arg("-c")
                .arg(self.needle)
                .arg(&out_file)
                .stdin(Stdio::null())
                .stdout(std::fs::File::create(&found)?)
                .stderr(Stdio::null());
            let mut g = ChildGuard::spawn(cmd, "grep")?;
            let e = g.wait(self.deadline)?;
            // grep exits 1 when nothing matched: that is a count of 0, not a failure.
            let hits: u64 = std::fs::read_to_string(&found)?.trim().parse().unwrap_or(0);
            if !e.success() && hits != 0 {
                bail!("grep ended with {}", e.describe());
            }
            if needle_hits.is_some_and(|h| h != hits) {
                bail!("grep counted {hits} lines, before {needle_hits:?}");
            }
            needle_hits = Some(hits);
            needle.push(e.wall);
        }
        Ok(PeerRun {
            stored,
            elapsed: done_at.saturating_duration_since(outcome.first),
            disk_bytes,
            peak_rss_kib,
            cpu: Duration::from_secs_f64(cpu as f64 / procfs::clock_ticks()),
            needle,
            needle_hits: needle_hits.unwrap_or(0),
            needle_in_process: Vec::new(),
            send: Some(outcome),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_gelf_message_becomes_the_document_peng_would_index() {
        let gelf = br#"{"version":"1.1","host":"orders-1","short_message":"Order 1 created","full_message":"trace","timestamp":1700000000.5,"level":6,"_ingest_token":"pgi_x","_service":"orders","_request_id":"r-1","_order_id":12}"#;
        let d = tantivy_doc(gelf, "bench").unwrap();
        assert_eq!(
            d,
            json!({
                "team": "bench", "host": "orders-1", "message": "Order 1 created",
                "full_message": "trace", "timestamp": 1_700_000_000_500_000_000i64, "level": 6,
                "service": "orders", "fields": { "request_id": "r-1", "order_id": 12 }
            })
        );
    }

    #[test]
    fn the_meta_names_every_document_field() {
        let meta = tantivy_meta();
        let names: Vec<&str> = meta["schema"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f["name"].as_str().unwrap())
            .collect();
        let gelf = br#"{"host":"h","short_message":"m","full_message":"f","timestamp":1,"level":3,"_service":"s","_x":1}"#;
        let doc = tantivy_doc(gelf, "t").unwrap();
        for k in doc.as_object().unwrap().keys() {
            assert!(names.contains(&k.as_str()), "{k}");
        }
    }

    #[test]
    fn tantivy_bench_output_is_read() {
        let q = "fields.request_id:\"ab-1\"";
        let text = format!(
            "Index : \"x\"\nQuery : \"y\"\n----\n\n\n\nSEARCH\n\nquery\tnum hits\ttime in microsecs\n{q}\t1\t120\n{q}\t1\t80\n\n\nFETCH STORE\n\nquery\ttime in microsecs\n{q}\t30\n{q}\t25\n"
        );
        assert_eq!(
            parse_tantivy_bench(&text, q, 1).unwrap(),
            (vec![120, 80], vec![30, 25])
        );
        assert!(parse_tantivy_bench(&text, q, 2).is_err());
    }

    #[test]
    fn line_counter_follows_a_growing_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let mut c = LineCounter {
            file: None,
            path: path.clone(),
            pos: 0,
            lines: 0,
            buf: vec![0; 4],
        };
        assert_eq!(c.poll().unwrap(), 0);
        std::fs::write(&path, b"a\nbb\nccc").unwrap();
        assert_eq!(c.poll().unwrap(), 2);
        std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap()
            .write_all(b"\nd\n")
            .unwrap();
        assert_eq!(c.poll().unwrap(), 4);
    }
}
