//! peng end to end, as a new user walks it: the real binary, the example service, real GELF
//! clients (Python graypy), a real webhook receiver, restarts and destroy.

mod bad_input;
mod crash;
mod databases;
mod harness;
mod hostile;
mod rotate;
mod stages;
mod ui;

use std::time::{Duration, Instant};

use harness::{eventually, free_port, peng, processes_with, python, Peng, Webhook};

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

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_team_walks_from_yaml_to_alerts_and_back() {
    let tmp = crate::harness::open_tempdir();
    let data = tmp.path().join("data");
    let hook = Webhook::start().await;
    let app_dir = example_copy(tmp.path(), &hook.url);
    let file = app_dir.join("peng.yaml");
    let file = file.to_str().expect("utf8 path");
    let (http_port, gelf_port) = (free_port(), free_port());
    let server = Peng::start(&data, http_port, gelf_port).await;
    let url = server.url();

    // The admin token is written once, readable only by its owner.
    let admin = server.admin_token();
    let mode = std::fs::metadata(data.join("admin.token"))
        .expect("token file")
        .permissions();
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&mode) & 0o777,
        0o600
    );

    // Two teams.
    let books = peng(&url, &admin, &["team", "create", "books", "--json"]).await;
    assert_eq!(books.code, 0, "{books:?}");
    let books: serde_json::Value = serde_json::from_str(&books.stdout).expect("json");
    let token = books["token"].as_str().expect("token").to_string();
    let ingest = books["ingest_token"]
        .as_str()
        .expect("ingest token")
        .to_string();
    let music = peng(&url, &admin, &["team", "create", "music", "--json"]).await;
    let music: serde_json::Value = serde_json::from_str(&music.stdout).expect("json");
    let other = music["token"].as_str().expect("token").to_string();
    let dup = peng(&url, &admin, &["team", "create", "books"]).await;
    assert_eq!(dup.code, 1, "a team is created once: {dup:?}");
    let not_admin = peng(&url, &token, &["team", "create", "sneaky"]).await;
    assert_eq!(not_admin.code, 1);
    assert!(not_admin.stderr.contains("403"), "{not_admin:?}");

    // An invalid file is refused with file:line:col and exit 1, and changes nothing.
    let bad = app_dir.join("bad.yaml");
    let good_text = std::fs::read_to_string(file).expect("read");
    std::fs::write(&bad, good_text.replacen("every: 5s", "every_s: 5s", 1)).expect("write bad");
    let bad = bad.to_str().expect("utf8");
    let v = peng(&url, &token, &["validate", bad]).await;
    assert_eq!(v.code, 1, "{v:?}");
    assert!(
        v.stderr.contains("bad.yaml:") && v.stderr.contains("did you mean 'every'"),
        "{v:?}"
    );
    for cmd in ["plan", "apply"] {
        let out = peng(&url, &token, &[cmd, "-f", bad]).await;
        assert_eq!(out.code, 1, "{cmd} of an invalid file: {out:?}");
        assert!(out.stderr.contains("bad.yaml:"), "{out:?}");
    }
    let list = peng(&url, &token, &["status"]).await;
    assert!(list.stdout.contains("no services"), "{list:?}");

    // Plan, apply, and a re-apply that touches nothing.
    let plan = peng(&url, &token, &["plan", "-f", file]).await;
    assert_eq!(plan.code, 2, "plan with changes exits 2: {plan:?}");
    assert!(
        plan.stdout.contains("+ instance production/1"),
        "{}",
        plan.stdout
    );
    assert!(
        plan.stdout.contains("3 to add") || plan.stdout.contains("to add"),
        "{}",
        plan.stdout
    );
    let apply = peng(&url, &token, &["apply", "-f", file]).await;
    assert_eq!(apply.code, 0, "{apply:?}");
    let s = eventually("3 instances running with healthy sensors", LONG, || async {
        let s = status_json(&url, &token).await;
        (all_running(&s, 3) && health_ok(&s, 3)).then_some(s)
    })
    .await;
    let pids_before: Vec<u64> = instances(&s)
        .iter()
        .filter_map(|i| i["pid"].as_u64())
        .collect();
    let again = peng(&url, &token, &["apply", "-f", file]).await;
    assert_eq!(again.code, 0);
    assert!(again.stdout.contains("No changes"), "{again:?}");
    let replan = peng(&url, &token, &["plan", "-f", file]).await;
    assert_eq!(replan.code, 0, "{replan:?}");
    let s = status_json(&url, &token).await;
    let pids_after: Vec<u64> = instances(&s)
        .iter()
        .filter_map(|i| i["pid"].as_u64())
        .collect();
    assert_eq!(
        pids_before, pids_after,
        "an unchanged re-apply touches no instance"
    );
    assert_eq!(s["generation"], 1);

    // Logs: instance stdout, and GELF from the real graypy client over UDP (chunked and
    // compressed), TCP and HTTP.
    wait_found(
        &url,
        &token,
        "listening",
        "bookshelf listening on 127.0.0.1",
    )
    .await;
    let nonce = format!("{:x}", std::process::id() as u64 * 7919 + http_port as u64);
    let (udp_m, tcp_m, http_m) = (
        format!("udpmark{nonce}"),
        format!("tcpmark{nonce}"),
        format!("httpmark{nonce}"),
    );
    python(&format!(
        r#"
import logging, os, graypy
def send(handler, msg):
    log = logging.getLogger(msg)
    log.setLevel(logging.INFO)
    log.addHandler(handler)
    log.info(msg, extra={{"ingest_token": "{ingest}", "service": "bookshelf", "order_id": 4711}})
    handler.close()
big = "{udp_m} " + os.urandom(12000).hex()
udp = graypy.GELFUDPHandler("127.0.0.1", {gelf_port}, gelf_chunker=graypy.handler.GELFWarningChunker(chunk_size=1024))
assert len(udp.makePickle(logging.makeLogRecord({{"msg": big}}))) > 1024, "the message must need chunks"
send(udp, big)
send(graypy.GELFTCPHandler("127.0.0.1", {gelf_port}), "{tcp_m} over tcp")
send(graypy.GELFHTTPHandler("127.0.0.1", {http_port}, path="/gelf"), "{http_m} over http")
"#
    ))
    .await;
    wait_found(&url, &token, &udp_m, &udp_m).await;
    wait_found(&url, &token, &tcp_m, &tcp_m).await;
    wait_found(&url, &token, &http_m, &http_m).await;
    wait_found(&url, &token, &format!("{tcp_m} AND order_id:4711"), &tcp_m).await;
    // A message without an ingest token is not mixed into any team.
    python(&format!(
        r#"
import logging, graypy
log = logging.getLogger("anon"); log.addHandler(graypy.GELFTCPHandler("127.0.0.1", {gelf_port})); log.warning("anonmark{nonce}")
"#
    ))
    .await;
    let rejected = eventually(
        "the anonymous message to be counted as rejected",
        Duration::from_secs(20),
        || async {
            let out = reqwest::Client::new()
                .get(format!("{url}/api/v1/logs/rejected"))
                .bearer_auth(&admin)
                .send()
                .await
                .ok()?
                .text()
                .await
                .ok()?;
            out.contains(&format!("anonmark{nonce}")).then_some(out)
        },
    )
    .await;
    assert!(rejected.contains("no_token"), "{rejected}");
    assert!(!search(&url, &admin, &format!("anonmark{nonce}"))
        .await
        .contains("anonmark"));

    // The other team sees and changes nothing of this team's.
    let peek = peng(&url, &other, &["status", "books/bookshelf"]).await;
    assert_eq!(peek.code, 1);
    assert!(peek.stderr.contains("404"), "{peek:?}");
    assert!(!search(&url, &other, &udp_m).await.contains(&udp_m));
    assert!(!search(&url, &other, &format!("team:books OR {tcp_m}"))
        .await
        .contains(&tcp_m));
    let steal = peng(&url, &other, &["apply", "-f", file]).await;
    assert_eq!(steal.code, 1);
    assert!(steal.stderr.contains("403"), "{steal:?}");
    let kill = peng(&url, &other, &["destroy", "books/bookshelf"]).await;
    assert_eq!(kill.code, 1);
    let listed = peng(&url, &other, &["status"]).await;
    assert!(!listed.stdout.contains("bookshelf"), "{listed:?}");

    // A killed instance is restarted.
    let victim = instances(&status_json(&url, &token).await)
        .into_iter()
        .find(|i| i["stage"] == "production" && i["index"] == 0)
        .expect("production/0");
    let victim_pid = victim["pid"].as_u64().expect("pid");
    unsafe { libc::kill(victim_pid as i32, libc::SIGKILL) };
    eventually("the killed instance to be restarted", LONG, || async {
        let s = status_json(&url, &token).await;
        let i = instances(&s)
            .into_iter()
            .find(|i| i["stage"] == "production" && i["index"] == 0)?;
        (i["state"] == "running"
            && i["restarts"].as_u64()? >= 1
            && i["pid"].as_u64()? != victim_pid)
            .then_some(())
    })
    .await;

    // A failing health endpoint fires the alert, within two sensor intervals after `for`.
    std::fs::write(app_dir.join("UNHEALTHY"), "").expect("make unhealthy");
    let broke = Instant::now();
    let firing = eventually("the alert to fire", LONG, || async {
        hook.payloads()
            .into_iter()
            .find(|p| p["state"] == "firing" && p["stage"] == "production")
    })
    .await;
    let took = broke.elapsed();
    eprintln!("alert fired {took:?} after the health endpoint started failing");
    assert!(
        took <= Duration::from_secs(4 + 2 * 2 + 2),
        "fired after {took:?}"
    );
    assert_eq!(firing["alert"], "bookshelf-unhealthy");
    assert_eq!(firing["service"], "books/bookshelf");
    assert_eq!(firing["severity"], "critical");
    assert_eq!(firing["runbook"], "https://wiki.example/bookshelf/runbook");
    assert!(firing["started_at"].is_string());
    let st = status_json(&url, &token).await;
    assert!(
        st["alerts"]
            .as_array()
            .expect("alerts")
            .iter()
            .any(|a| a["state"] == "firing"),
        "{st}"
    );

    // Restart peng while the alert fires: everything is still there, instances run once.
    let firing_before = hook
        .payloads()
        .iter()
        .filter(|p| p["state"] == "firing")
        .count();
    server.stop().await;
    let app_path = app_dir.to_str().expect("utf8");
    assert!(
        processes_with(app_path).is_empty(),
        "instances stop with peng: {:?}",
        processes_with(app_path)
    );
    let server = Peng::start(&data, http_port, gelf_port).await;
    eventually("3 instances running again", LONG, || async {
        let s = status_json(&url, &token).await;
        all_running(&s, 3).then_some(())
    })
    .await;
    // Once start-up helpers (such as a pyenv shim) have exec'd, exactly one process per instance.
    let cmdlines = |pids: Vec<u32>| -> Vec<String> {
        pids.into_iter()
            .map(|p| {
                std::fs::read_to_string(format!("/proc/{p}/cmdline"))
                    .unwrap_or_default()
                    .replace('\0', " ")
            })
            .collect()
    };
    eventually(
        "exactly 3 instance processes after the restart",
        Duration::from_secs(20),
        || async {
            let procs = cmdlines(harness::programs_with(app_path));
            (procs.len() == 3 && procs.iter().all(|c| c.contains("app.py"))).then_some(())
        },
    )
    .await;
    let st = status_json(&url, &token).await;
    assert_eq!(st["generation"], 1, "the service is still applied");
    assert!(
        st["alerts"]
            .as_array()
            .expect("alerts")
            .iter()
            .any(|a| a["state"] == "firing"),
        "alert state survives a restart: {st}"
    );
    wait_found(&url, &token, &udp_m, &udp_m).await;
    let hist = peng(
        &url,
        &token,
        &["sensors", "books/bookshelf", "--since", "1h", "--json"],
    )
    .await;
    assert_eq!(hist.code, 0, "{hist:?}");
    let history = reqwest::Client::new()
        .get(format!("{url}/api/v1/services/books/bookshelf/sensors/health/history?stage=production&since=1h"))
        .bearer_auth(&token)
        .send()
        .await
        .expect("history")
        .json::<serde_json::Value>()
        .await
        .expect("history json");
    let oldest = history["points"]
        .as_array()
        .and_then(|p| p.first())
        .and_then(|p| p["at_ns"].as_i64())
        .expect("points");
    let broke_at = peng_core_now_ns() - broke.elapsed().as_nanos() as i64;
    assert!(
        oldest < broke_at,
        "sensor history from before the restart is kept"
    );
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        hook.payloads()
            .iter()
            .filter(|p| p["state"] == "firing")
            .count(),
        firing_before,
        "a restart does not page again for an alert that already fires"
    );

    // Recovery resolves it.
    std::fs::remove_file(app_dir.join("UNHEALTHY")).expect("heal");
    let resolved = eventually("the alert to resolve", LONG, || async {
        hook.payloads()
            .into_iter()
            .find(|p| p["state"] == "resolved" && p["stage"] == "production")
    })
    .await;
    assert!(resolved["resolved_at"].is_string(), "{resolved}");

    // Destroy leaves no process; logs stay for their retention; the audit log tells the story.
    let d = peng(&url, &token, &["destroy", "books/bookshelf"]).await;
    assert_eq!(d.code, 0, "{d:?}");
    eventually(
        "no instance process left",
        Duration::from_secs(20),
        || async { processes_with(app_path).is_empty().then_some(()) },
    )
    .await;
    wait_found(&url, &token, &tcp_m, &tcp_m).await;
    let audit = peng(&url, &token, &["audit"]).await;
    for action in [
        "team.create",
        "service.apply",
        "alert.firing",
        "service.destroy",
    ] {
        assert!(
            audit.stdout.contains(action),
            "audit lacks {action}: {}",
            audit.stdout
        );
    }
    let log = server.server_log();
    server.stop().await;
    assert!(!log.contains("panicked"), "peng serve panicked:\n{log}");
}

fn peng_core_now_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0)
}
