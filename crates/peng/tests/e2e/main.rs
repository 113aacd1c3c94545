//! peng end to end, as a new user walks it: the real binary, the example service, real GELF
//! clients (Python graypy), a real webhook receiver, restarts and destroy.

mod bad_input;
mod crash;
mod databases;
mod harness;
mod hostile;
mod influx;
mod java;
mod log_durability;
mod metrics_durability;
mod rotate;
mod stages;
mod ui;
mod walk;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use harness::{eventually, free_port, peng, python, Peng, Webhook};

pub(crate) const LONG: Duration = Duration::from_secs(60);

/// The example, copied to a temp dir, with its webhooks pointed at the local receiver, and
/// without its database (the tests of everything else do not need one; `databases.rs` tests
/// the example with it).
pub(crate) fn example_copy(dir: &std::path::Path, hook: &str) -> std::path::PathBuf {
    let dst = example_copy_with_database(dir, hook);
    let yaml = std::fs::read_to_string(dst.join("peng.yaml")).expect("read copy");
    let mut out = Vec::new();
    let mut skip = 0;
    let mut in_database = false;
    for line in yaml.lines() {
        if line.starts_with("database:") {
            in_database = true;
            continue;
        }
        if in_database {
            if line.starts_with(' ') {
                continue;
            }
            in_database = false;
        }
        if line.contains("- name: books-in-stock") {
            skip = 4;
        }
        if skip > 0 {
            skip -= 1;
            continue;
        }
        out.push(line);
    }
    let yaml = out.join("\n") + "\n";
    assert!(
        !yaml.contains("database") && !yaml.contains("sql:"),
        "{yaml}"
    );
    std::fs::write(dst.join("peng.yaml"), yaml).expect("write example");
    dst
}

/// The example as it is, database included, with its webhooks pointed at `hook`.
pub(crate) fn example_copy_with_database(dir: &std::path::Path, hook: &str) -> std::path::PathBuf {
    let src = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/bookshelf");
    let dst = dir.join("bookshelf");
    std::fs::create_dir_all(&dst).expect("mkdir");
    std::fs::copy(format!("{src}/app.py"), dst.join("app.py")).expect("copy app");
    let yaml = std::fs::read_to_string(format!("{src}/peng.yaml")).expect("read example");
    let yaml = yaml.replace("http://127.0.0.1:9", hook);
    std::fs::write(dst.join("peng.yaml"), yaml).expect("write example");
    dst
}

pub(crate) async fn status_json(url: &str, token: &str) -> serde_json::Value {
    let out = peng(url, token, &["status", "books/bookshelf", "--json"]).await;
    assert_eq!(out.code, 0, "status failed: {out:?}");
    serde_json::from_str(&out.stdout).expect("status json")
}

pub(crate) fn instances(status: &serde_json::Value) -> Vec<serde_json::Value> {
    status["stages"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|s| s["instances"].as_array().cloned().unwrap_or_default())
        .collect()
}

pub(crate) fn all_running(status: &serde_json::Value, n: usize) -> bool {
    let inst = instances(status);
    inst.len() == n && inst.iter().all(|i| i["state"] == "running")
}

pub(crate) fn health_ok(status: &serde_json::Value, n: usize) -> bool {
    let health: Vec<_> = status["sensors"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|s| s["sensor"] == "health")
        .collect();
    health.len() == n && health.iter().all(|s| s["ok"] == true)
}

async fn search(url: &str, token: &str, query: &str) -> String {
    let out = peng(url, token, &["logs", "search", query, "--since", "1h"]).await;
    assert_eq!(out.code, 0, "logs search failed: {out:?}");
    out.stdout
}

pub(crate) async fn wait_found(url: &str, token: &str, query: &str, needle: &str) {
    eventually(
        &format!("'{query}' to be searchable"),
        Duration::from_secs(30),
        || async {
            search(url, token, query)
                .await
                .contains(needle)
                .then_some(())
        },
    )
    .await;
}

/// The walk's common start, as a new team finds peng: `peng serve` on a temp dir and free
/// ports, the example copied with its webhooks pointed at a local receiver, and two teams:
/// books, whose example it is, and music, who must see and change none of it.
pub(crate) struct Walk {
    _tmp: tempfile::TempDir,
    pub data: PathBuf,
    pub hook: Webhook,
    pub app_dir: PathBuf,
    /// The example's peng.yaml.
    pub file: String,
    pub http_port: u16,
    pub gelf_port: u16,
    pub url: String,
    /// None only between `stop` and `start_again`.
    pub server: Option<Peng>,
    pub admin: String,
    /// The books team's token and ingest token.
    pub token: String,
    pub ingest: String,
    /// The music team's token.
    pub other: String,
    /// Makes the markers this walk logs its own.
    pub nonce: String,
}

impl Walk {
    /// The server and the two teams; nothing applied yet.
    pub(crate) async fn start() -> Walk {
        let tmp = harness::open_tempdir();
        let data = tmp.path().join("data");
        let hook = Webhook::start().await;
        let app_dir = example_copy(tmp.path(), &hook.url);
        let file = app_dir.join("peng.yaml");
        let file = file.to_str().expect("utf8 path").to_string();
        let (http_port, gelf_port) = (free_port(), free_port());
        let server = Peng::start(&data, http_port, gelf_port).await;
        let url = server.url();
        let admin = server.admin_token();
        let team = |name: &'static str| {
            let (url, admin) = (url.clone(), admin.clone());
            async move {
                let out = peng(&url, &admin, &["team", "create", name, "--json"]).await;
                assert_eq!(out.code, 0, "{out:?}");
                serde_json::from_str::<serde_json::Value>(&out.stdout).expect("json")
            }
        };
        let books = team("books").await;
        let music = team("music").await;
        let token = books["token"].as_str().expect("token").to_string();
        let ingest = books["ingest_token"]
            .as_str()
            .expect("ingest token")
            .to_string();
        let other = music["token"].as_str().expect("token").to_string();
        let nonce = format!("{:x}", std::process::id() as u64 * 7919 + http_port as u64);
        Walk {
            _tmp: tmp,
            data,
            hook,
            app_dir,
            file,
            http_port,
            gelf_port,
            url,
            server: Some(server),
            admin,
            token,
            ingest,
            other,
            nonce,
        }
    }

    /// `start`, and the example applied and running.
    pub(crate) async fn applied() -> Walk {
        let walk = Walk::start().await;
        walk.apply().await;
        walk
    }

    /// Applies the example and waits for its 3 instances to run with healthy sensors; returns
    /// that status.
    pub(crate) async fn apply(&self) -> serde_json::Value {
        let apply = peng(&self.url, &self.token, &["apply", "-f", &self.file]).await;
        assert_eq!(apply.code, 0, "{apply:?}");
        eventually("3 instances running with healthy sensors", LONG, || async {
            let s = self.status().await;
            (all_running(&s, 3) && health_ok(&s, 3)).then_some(s)
        })
        .await
    }

    /// The example's status as its team sees it.
    pub(crate) async fn status(&self) -> serde_json::Value {
        status_json(&self.url, &self.token).await
    }

    /// The directory the instances run in, which `processes_with` finds them by.
    pub(crate) fn app_path(&self) -> &str {
        self.app_dir.to_str().expect("utf8")
    }

    /// Runs `body` in Python after a prelude with graypy imported and `send(handler, msg)`,
    /// which logs `msg` through `handler` as the example service of the books team, with an
    /// `order_id` field.
    pub(crate) async fn send_gelf(&self, body: &str) {
        let ingest = &self.ingest;
        python(&format!(
            r#"
import logging, os, graypy
def send(handler, msg):
    log = logging.getLogger(msg)
    log.setLevel(logging.INFO)
    log.addHandler(handler)
    log.info(msg, extra={{"ingest_token": "{ingest}", "service": "bookshelf", "order_id": 4711}})
    handler.close()
{body}
"#
        ))
        .await;
    }

    /// Logs a marker of this walk over GELF TCP and waits until its team finds it; returns it.
    pub(crate) async fn mark(&self, what: &str) -> String {
        let marker = format!("{what}mark{}", self.nonce);
        self.send_gelf(&format!(
            r#"send(graypy.GELFTCPHandler("127.0.0.1", {}), "{marker}")"#,
            self.gelf_port
        ))
        .await;
        wait_found(&self.url, &self.token, &marker, &marker).await;
        marker
    }

    /// Makes the example's health endpoint fail and waits for the page; returns when the health
    /// started failing, how long the page took, and the page.
    pub(crate) async fn break_health(&self) -> (Instant, Duration, serde_json::Value) {
        std::fs::write(self.app_dir.join("UNHEALTHY"), "").expect("make unhealthy");
        let broke = Instant::now();
        let firing = eventually("the alert to fire", LONG, || async {
            self.hook
                .payloads()
                .into_iter()
                .find(|p| p["state"] == "firing" && p["stage"] == "production")
        })
        .await;
        (broke, broke.elapsed(), firing)
    }

    /// Makes the health endpoint pass again and waits for the alert to resolve; returns that
    /// notification.
    pub(crate) async fn heal(&self) -> serde_json::Value {
        std::fs::remove_file(self.app_dir.join("UNHEALTHY")).expect("heal");
        eventually("the alert to resolve", LONG, || async {
            self.hook
                .payloads()
                .into_iter()
                .find(|p| p["state"] == "resolved" && p["stage"] == "production")
        })
        .await
    }

    /// Stops peng the way an operator does.
    pub(crate) async fn stop(&mut self) {
        self.server.take().expect("peng runs").stop().await;
    }

    /// Starts peng again on the same data directory and ports.
    pub(crate) async fn start_again(&mut self) {
        assert!(self.server.is_none(), "peng still runs");
        self.server = Some(Peng::start(&self.data, self.http_port, self.gelf_port).await);
    }

    /// Stops peng, and fails if it panicked at any time during the walk.
    pub(crate) async fn finish(self) {
        let server = self.server.expect("peng runs");
        let log = server.server_log();
        server.stop().await;
        assert!(!log.contains("panicked"), "peng serve panicked:\n{log}");
    }
}
