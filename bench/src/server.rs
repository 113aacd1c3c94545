//! The real `peng serve` under test: started on a fresh data directory and free ports, killed
//! when the guard is dropped (also on errors and panics), and a small client of its API.

use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::child::ChildGuard;

/// Addresses peng is told to listen on.
#[derive(Debug, Clone, Copy)]
pub struct Ports {
    pub http: SocketAddr,
    pub gelf_udp: SocketAddr,
    pub gelf_tcp: SocketAddr,
}

/// Picks free 127.0.0.1 ports: one for HTTP, one free for both UDP and TCP for GELF.
pub fn free_ports() -> Result<Ports> {
    let http = TcpListener::bind("127.0.0.1:0")
        .context("cannot find a free tcp port")?
        .local_addr()?;
    for _ in 0..50 {
        let udp = UdpSocket::bind("127.0.0.1:0").context("cannot find a free udp port")?;
        let addr = udp.local_addr()?;
        if addr.port() != http.port() && TcpListener::bind(addr).is_ok() {
            return Ok(Ports {
                http,
                gelf_udp: addr,
                gelf_tcp: addr,
            });
        }
    }
    bail!("no port free for both udp and tcp on 127.0.0.1 after 50 tries")
}

/// A running `peng serve`; dropping it stops the process (SIGTERM, then SIGKILL after 5 s).
pub struct ServerGuard {
    child: ChildGuard,
    pub pid: u32,
    pub ports: Ports,
    pub data_dir: PathBuf,
    pub log_file: PathBuf,
}

impl ServerGuard {
    /// Starts `peng serve`. Call from the main thread: the child is also asked to die with it
    /// (`PR_SET_PDEATHSIG`), so even a killed benchmark leaves no server behind.
    pub fn start(
        peng: &Path,
        data_dir: &Path,
        ports: Ports,
        log_file: &Path,
    ) -> Result<ServerGuard> {
        ServerGuard::start_with(peng, data_dir, ports, log_file, &[])
    }

    /// [`ServerGuard::start`] with more arguments for `peng serve`.
    pub fn start_with(
        peng: &Path,
        data_dir: &Path,
        ports: Ports,
        log_file: &Path,
        args: &[&str],
    ) -> Result<ServerGuard> {
        if !peng.is_file() {
            bail!(
                "{} does not exist; build it with `cargo build --release -p peng` or pass --peng",
                peng.display()
            );
        }
        let log = std::fs::File::create(log_file)
            .with_context(|| format!("cannot create {}", log_file.display()))?;
        let mut cmd = Command::new(peng);
        cmd.arg("serve")
            .arg("--data-dir")
            .arg(data_dir)
            .arg("--listen")
            .arg(ports.http.to_string())
            .arg("--gelf-udp")
            .arg(ports.gelf_udp.to_string())
            .arg("--gelf-tcp")
            .arg(ports.gelf_tcp.to_string())
            .args(args)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        let child = ChildGuard::spawn(cmd, &peng.display().to_string())?;
        Ok(ServerGuard {
            pid: child.pid,
            child,
            ports,
            data_dir: data_dir.to_path_buf(),
            log_file: log_file.to_path_buf(),
        })
    }

    /// `Some(status)` when the server has already exited.
    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.exited()
    }

    /// The last lines the server wrote, for error messages.
    pub fn log_tail(&self, lines: usize) -> String {
        let text = std::fs::read_to_string(&self.log_file).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    pub fn base_url(&self) -> String {
        format!("http://{}", self.ports.http)
    }

    /// Stops the server now (what dropping the guard does).
    pub fn stop(&mut self) {
        self.child.stop();
    }
}

/// The few API calls the benchmark makes, as admin.
pub struct Api {
    http: reqwest::Client,
    base: String,
    token: String,
}

/// A new team's API token (also its InfluxDB password) and GELF ingest token.
#[derive(Debug, Clone)]
pub struct TeamTokens {
    pub token: String,
    pub ingest_token: String,
}

impl Api {
    /// Another client for the same server, for a thread of its own.
    pub fn another(&self) -> Result<Api> {
        Api::new(self.base.clone(), self.token.clone())
    }

    pub fn new(base: String, token: String) -> Result<Api> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(15))
            // The runtime is not driven while the benchmark sends from its own threads, so a
            // pooled connection the server closed meanwhile (it closes idle ones after 30 s)
            // goes unnoticed: never reuse one that has been idle that long.
            .pool_idle_timeout(Duration::from_secs(10))
            .no_proxy()
            .build()
            .context("cannot build the http client")?;
        Ok(Api { http, base, token })
    }

    /// Waits until `GET /healthz` answers 200, the server exits, or `limit` passes.
    pub async fn wait_healthy(&self, server: &mut ServerGuard, limit: Duration) -> Result<()> {
        let until = Instant::now() + limit;
        loop {
            if let Some(status) = server.exited() {
                bail!(
                    "peng serve exited ({status}) before it was healthy; its output:\n{}",
                    server.log_tail(30)
                );
            }
            if let Ok(r) = self
                .http
                .get(format!("{}/healthz", self.base))
                .timeout(Duration::from_secs(1))
                .send()
                .await
            {
                if r.status().is_success() {
                    return Ok(());
                }
            }
            if Instant::now() > until {
                bail!(
                    "peng serve was not healthy after {limit:?}; its output:\n{}",
                    server.log_tail(30)
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn json(&self, req: reqwest::RequestBuilder, what: &str) -> Result<serde_json::Value> {
        let r = req
            .bearer_auth(&self.token)
            .send()
            .await
            .with_context(|| format!("{what}: request failed"))?;
        let status = r.status();
        let body = r
            .text()
            .await
            .with_context(|| format!("{what}: cannot read the answer"))?;
        if !status.is_success() {
            bail!("{what}: {status}: {body}");
        }
        serde_json::from_str(&body)
            .with_context(|| format!("{what}: the answer is not JSON: {body}"))
    }

    /// Creates a team; returns its tokens.
    pub async fn create_team(&self, name: &str) -> Result<TeamTokens> {
        let what = "POST /api/v1/teams";
        let v = self
            .json(
                self.http
                    .post(format!("{}/api/v1/teams", self.base))
                    .json(&serde_json::json!({ "name": name })),
                what,
            )
            .await?;
        let get = |key: &str| {
            v.get(key)
                .and_then(|t| t.as_str())
                .map(str::to_string)
                .with_context(|| format!("{what}: no {key} in the answer: {v}"))
        };
        Ok(TeamTokens {
            token: get("token")?,
            ingest_token: get("ingest_token")?,
        })
    }

    /// How many records match a query over the last hour (the answer's `total`).
    pub async fn count(&self, query: &str) -> Result<u64> {
        let what = "GET /api/v1/logs/search";
        let req = self
            .http
            .get(format!("{}/api/v1/logs/search", self.base))
            .query(&[("q", query), ("since", "1h"), ("limit", "1")]);
        let v = self.json(req, what).await?;
        v.get("total")
            .and_then(|t| t.as_u64())
            .with_context(|| format!("{what}: no total in the answer"))
    }

    /// `GET /api/v1/logs/search` with the given parameters besides `q`: the answer's `total`
    /// and how long the request took, to the end of its body.
    pub async fn search_total(
        &self,
        query: &str,
        params: &[(&str, &str)],
    ) -> Result<(u64, Duration)> {
        let what = "GET /api/v1/logs/search";
        let req = self
            .http
            .get(format!("{}/api/v1/logs/search", self.base))
            .query(&[("q", query)])
            .query(params);
        let t = Instant::now();
        let v = self.json(req, what).await?;
        let took = t.elapsed();
        let total = v
            .get("total")
            .and_then(|t| t.as_u64())
            .with_context(|| format!("{what}: no total in the answer"))?;
        Ok((total, took))
    }

    /// `GET /metrics`, Prometheus text.
    pub async fn metrics(&self) -> Result<String> {
        let r = self
            .http
            .get(format!("{}/metrics", self.base))
            .bearer_auth(&self.token)
            .send()
            .await
            .context("GET /metrics: request failed")?;
        let status = r.status();
        let body = r
            .text()
            .await
            .context("GET /metrics: cannot read the answer")?;
        if !status.is_success() {
            bail!("GET /metrics: {status}: {body}");
        }
        Ok(body)
    }
}

/// The release binary the benchmarks start unless told otherwise: `$CARGO_TARGET_DIR`, else the
/// workspace's `target`, `/release/peng`.
pub fn default_peng() -> std::path::PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| {
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("..")
                .join("target")
        });
    target.join("release").join("peng")
}
