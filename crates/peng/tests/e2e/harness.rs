//! What the end-to-end tests need: the real `peng` binary started on a temp dir and free
//! ports, the CLI run as a user would, a webhook receiver, and a look at /proc.

use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::process::{Child, Command};

pub const BIN: &str = env!("CARGO_BIN_EXE_peng");

/// A temporary directory every user may enter: when peng runs as root, a team's instances run
/// as the team's own user, which must be able to read its checkout (peng keeps its data
/// directory inside private, mode 0700, whatever its parent allows).
pub fn open_tempdir() -> tempfile::TempDir {
    let tmp = tempfile::tempdir().expect("tmp");
    std::fs::set_permissions(
        tmp.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .expect("chmod");
    tmp
}

/// A port that was free a moment ago on 127.0.0.1, for TCP and UDP alike.
pub fn free_port() -> u16 {
    loop {
        let tcp = TcpListener::bind("127.0.0.1:0").expect("bind tcp");
        let port = tcp.local_addr().expect("addr").port();
        if UdpSocket::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

/// Polls `check` until it returns Some or the deadline passes.
pub async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let start = Instant::now();
    loop {
        if let Some(v) = check().await {
            return v;
        }
        if start.elapsed() > timeout {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A running `peng serve`; killed when dropped, so a failing test leaves nothing behind.
pub struct Peng {
    pub data_dir: PathBuf,
    pub http: SocketAddr,
    child: Option<Child>,
}

impl Peng {
    pub async fn start(data_dir: &Path, http_port: u16, gelf_port: u16) -> Peng {
        Self::start_with(data_dir, http_port, gelf_port, &[]).await
    }

    /// `start`, with further `peng serve` arguments.
    pub async fn start_with(
        data_dir: &Path,
        http_port: u16,
        gelf_port: u16,
        extra: &[&str],
    ) -> Peng {
        let http: SocketAddr = format!("127.0.0.1:{http_port}").parse().expect("addr");
        let gelf: SocketAddr = format!("127.0.0.1:{gelf_port}").parse().expect("addr");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(data_dir.with_extension("serve.log"))
            .expect("serve log");
        let child = Command::new(BIN)
            .args(["serve", "--data-dir"])
            .arg(data_dir)
            .args([
                "--listen",
                &http.to_string(),
                "--gelf-udp",
                &gelf.to_string(),
                "--gelf-tcp",
                &gelf.to_string(),
            ])
            .args(extra)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .expect("start peng serve");
        let peng = Peng {
            data_dir: data_dir.to_path_buf(),
            http,
            child: Some(child),
        };
        let client = reqwest::Client::builder()
            .no_proxy()
            .build()
            .expect("client");
        let url = format!("{}/healthz", peng.url());
        eventually(
            "peng serve to answer /healthz",
            Duration::from_secs(60),
            || {
                let client = client.clone();
                let url = url.clone();
                async move {
                    client
                        .get(&url)
                        .send()
                        .await
                        .ok()
                        .filter(|r| r.status().is_success())
                        .map(|_| ())
                }
            },
        )
        .await;
        peng
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.http)
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().and_then(|c| c.id()).unwrap_or(0)
    }

    pub fn admin_token(&self) -> String {
        std::fs::read_to_string(self.data_dir.join("admin.token"))
            .expect("admin token")
            .trim()
            .to_string()
    }

    /// `peng team create NAME --json` as the admin: the new team's tokens.
    pub async fn create_team(&self, name: &str) -> serde_json::Value {
        let out = peng(
            &self.url(),
            &self.admin_token(),
            &["team", "create", name, "--json"],
        )
        .await;
        assert_eq!(out.code, 0, "team create {name}: {out:?}");
        serde_json::from_str(&out.stdout).expect("team json")
    }

    pub fn server_log(&self) -> String {
        std::fs::read_to_string(self.data_dir.with_extension("serve.log")).unwrap_or_default()
    }

    /// Kills the server as a crash would (SIGKILL): no shutdown code runs.
    pub async fn crash(mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.start_kill();
            let _ = child.wait().await;
        }
    }

    /// Stops the server the way an operator does (SIGTERM) and waits for it.
    pub async fn stop(mut self) {
        if let Some(mut child) = self.child.take() {
            if let Some(pid) = child.id() {
                unsafe { libc::kill(pid as i32, libc::SIGTERM) };
            }
            let waited = tokio::time::timeout(Duration::from_secs(30), child.wait()).await;
            assert!(
                waited.is_ok(),
                "peng serve did not stop within 30s of SIGTERM"
            );
        }
    }
}

/// The outcome of one CLI call.
#[derive(Debug)]
pub struct Out {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

/// Runs `peng ARGS` against the server with the given token.
pub async fn peng(url: &str, token: &str, args: &[&str]) -> Out {
    let out = Command::new(BIN)
        .args(args)
        .env("PENG_URL", url)
        .env("PENG_TOKEN", token)
        .env_remove("PENG_DATA_DIR")
        .stdin(Stdio::null())
        .output()
        .await
        .expect("run peng");
    Out {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// A local HTTP endpoint that records every JSON body POSTed to it.
pub struct Webhook {
    pub url: String,
    pub received: Arc<Mutex<Vec<serde_json::Value>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Webhook {
    pub async fn start() -> Webhook {
        let received: Arc<Mutex<Vec<serde_json::Value>>> = Arc::default();
        let store = received.clone();
        let app = axum::Router::new().route(
            "/{*path}",
            axum::routing::post(
                move |axum::extract::Path(path): axum::extract::Path<String>, body: String| {
                    let store = store.clone();
                    async move {
                        let mut v: serde_json::Value =
                            serde_json::from_str(&body).unwrap_or(serde_json::Value::String(body));
                        if let Some(obj) = v.as_object_mut() {
                            obj.insert("_path".into(), serde_json::Value::String(path));
                        }
                        store.lock().expect("lock").push(v);
                        "ok"
                    }
                },
            ),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind webhook");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Webhook {
            url,
            received,
            task,
        }
    }

    pub fn payloads(&self) -> Vec<serde_json::Value> {
        self.received.lock().expect("lock").clone()
    }
}

impl Drop for Webhook {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The instances' own programs among `processes_with(needle)`: without the two bubblewrap
/// processes (its monitor and the namespace's pid 1) each sandboxed instance has.
pub fn programs_with(needle: &str) -> Vec<u32> {
    processes_with(needle)
        .into_iter()
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/comm"))
                .is_ok_and(|comm| comm.trim() != "bwrap")
        })
        .collect()
}

/// Waits until no process matches `needle` (see [`processes_with`]); on a timeout the panic
/// names what is left, its state and its command line.
pub async fn no_process_with(what: &str, needle: &str, timeout: Duration) {
    let start = Instant::now();
    loop {
        let pids = processes_with(needle);
        if pids.is_empty() {
            return;
        }
        if start.elapsed() > timeout {
            let left: Vec<String> = pids
                .iter()
                .map(|pid| {
                    let stat =
                        std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
                    let state = stat.rsplit(')').next().unwrap_or("").trim_start();
                    let state = state.split(' ').take(2).collect::<Vec<_>>().join(" ppid ");
                    let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
                    let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
                    format!("{pid} ({state}): {cmd}")
                })
                .collect();
            panic!(
                "timed out after {timeout:?} waiting for {what}; left:\n{}",
                left.join("\n")
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Pids of live processes whose command line contains `needle` or whose working directory is
/// `needle` (instances run in the directory of their service file).
pub fn processes_with(needle: &str) -> Vec<u32> {
    let mut pids = Vec::new();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return pids;
    };
    for e in entries.flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(cmd) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
            continue;
        };
        let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        let zombie = stat
            .rsplit(')')
            .next()
            .is_some_and(|rest| rest.trim_start().starts_with('Z'));
        let cwd = std::fs::read_link(format!("/proc/{pid}/cwd")).unwrap_or_default();
        if (cmd.contains(needle) || cwd == Path::new(needle)) && !zombie {
            pids.push(pid);
        }
    }
    pids
}

/// Runs a Python snippet (the real client libraries) and fails the test with its output.
pub async fn python(script: &str) {
    let out = Command::new("python3")
        .arg("-c")
        .arg(script)
        .output()
        .await
        .expect("run python3");
    assert!(
        out.status.success(),
        "python failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
