//! A hostile tenant, end to end: peng as root (how a platform server runs it), another team
//! with a database, a backup and a running instance, and a service whose program tries to reach
//! what is not its own (`hostile.py`). Every attempt must fail or be contained, while the same
//! instance still serves HTTP, sends GELF and uses its database. Without root, peng must say
//! that isolation is off, and why, wherever the service is shown.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::harness::{eventually, free_port, open_tempdir, peng, Peng};
use crate::LONG;

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

async fn team(url: &str, admin: &str, name: &str) -> String {
    let out = peng(url, admin, &["team", "create", name, "--json"]).await;
    assert_eq!(out.code, 0, "{out:?}");
    let v: Value = serde_json::from_str(&out.stdout).expect("json");
    v["token"].as_str().expect("token").to_string()
}

async fn status(url: &str, token: &str, service: &str) -> Value {
    let out = peng(url, token, &["status", service, "--json"]).await;
    assert_eq!(out.code, 0, "{out:?}");
    serde_json::from_str(&out.stdout).expect("status json")
}

fn first_instance(s: &Value) -> Value {
    s["stages"][0]["instances"][0].clone()
}

fn find(dir: &Path, suffix: &str) -> Option<PathBuf> {
    for entry in std::fs::read_dir(dir).ok()?.flatten() {
        let path = entry.path();
        if path.is_dir() {
            if let Some(found) = find(&path, suffix) {
                return Some(found);
            }
        } else if path.to_string_lossy().ends_with(suffix) {
            return Some(path);
        }
    }
    None
}

async fn get(client: &reqwest::Client, url: &str) -> Value {
    let r = client.get(url).send().await.expect("request");
    assert!(r.status().is_success(), "{url}: {}", r.status());
    r.json().await.expect("json")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_hostile_service_reaches_nothing_and_takes_no_more_than_its_file_reserves() {
    let tmp = open_tempdir();
    let data = tmp.path().join("data");
    let server = Peng::start(&data, free_port(), free_port()).await;
    let url = server.url();
    let admin = server.admin_token();
    let client = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("client");

    let hostile_token = team(&url, &admin, "hostile").await;
    let dir = tmp.path().join("hostile");
    std::fs::create_dir_all(dir.join("var")).expect("mkdir");
    std::fs::copy(
        concat!(env!("CARGO_MANIFEST_DIR"), "/tests/e2e/hostile.py"),
        dir.join("hostile.py"),
    )
    .expect("copy program");

    if !is_root() {
        // Not root: peng starts anyway and says, wherever the service is shown, that its
        // instances are not sandboxed and why.
        let yaml = "apiVersion: peng/v1\nservice: hostile\nteam: hostile\nstages:\n  integration: { instances: 1 }\nrun:\n  command: [\"sleep\", \"600\"]\n";
        apply(&url, &hostile_token, &dir, yaml).await;
        let text = peng(&url, &hostile_token, &["status", "hostile/hostile"]).await;
        assert!(
            text.stdout
                .contains("isolation: off (peng is not running as root"),
            "{text:?}"
        );
        assert!(
            server.server_log().contains("isolation off"),
            "said at start"
        );
        return;
    }

    // Another team, with a database, a backup and a running instance.
    let victim_token = team(&url, &admin, "victim").await;
    let vdir = tmp.path().join("victim");
    std::fs::create_dir_all(&vdir).expect("mkdir");
    std::fs::copy(
        concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../examples/bookshelf/app.py"
        ),
        vdir.join("app.py"),
    )
    .expect("copy app");
    let yaml = "apiVersion: peng/v1\nservice: shelf\nteam: victim\nstages:\n  integration: { instances: 1 }\nrun:\n  command: [\"python3\", \"app.py\", \"--port\", \"${PORT}\"]\n  health: { http: /health, every: 2s, timeout: 1s }\ndatabase: { engine: mariadb, version: \"10.11\", plan: small }\n";
    apply(&url, &victim_token, &vdir, yaml).await;
    let backup = peng(
        &url,
        &victim_token,
        &["db", "backup", "victim/shelf", "--stage", "integration"],
    )
    .await;
    assert_eq!(backup.code, 0, "{backup:?}");
    let victim = eventually("the other team's instance to run", LONG, || async {
        let i = first_instance(&status(&url, &victim_token, "victim/shelf").await);
        (i["state"] == "running").then_some(i)
    })
    .await;
    let victim_pid = victim["pid"].as_u64().expect("pid");
    let backups_dir = data.join("backups/victim");
    let backup_file = find(&backups_dir, ".sql.gz").expect("the backup on disk");
    let socket = find(&data.join("databases/victim"), "mariadbd.sock").expect("socket");
    let marker = std::env::temp_dir().join(format!("peng-host-marker-{}", std::process::id()));
    std::fs::write(&marker, "host").expect("marker");
    std::fs::set_permissions(&marker, std::fs::Permissions::from_mode(0o644)).expect("chmod");

    // The hostile service: its program gets every target's real path.
    let targets = serde_json::json!({
        "backups_dir": backups_dir,
        "backup_file": backup_file,
        "socket": socket,
        "peng_pid": server.pid(),
        "victim_pid": victim_pid,
        "host_tmp_marker": marker,
    });
    let yaml = format!(
        r#"apiVersion: peng/v1
service: hostile
team: hostile
stages:
  integration: {{ instances: 1 }}
run:
  command: ["python3", "hostile.py", "${{PORT}}"]
  env:
    DATA_DIR: "{data}"
    TARGETS: '{targets}'
  writable: [var]
  health: {{ http: /health, every: 2s, timeout: 1s }}
  resources: {{ cpu: 0.5, memory: 96Mi, pids: 24 }}
database: {{ engine: mariadb, version: "10.11", plan: small }}
alerts:
  - {{ name: out-of-memory, sensor: instance.oom, when: "value > 0", severity: warning, plan: tell-team }}
action_plans:
  tell-team:
    notify: [{{ webhook: "http://127.0.0.1:9/hostile" }}]
"#,
        data = data.display(),
    );
    // The team's user reads its checkout; only `var` is writable to it.
    let user = peng_sandbox_user("hostile");
    std::os::unix::fs::chown(dir.join("var"), Some(user), Some(user)).expect("chown var");
    apply(&url, &hostile_token, &dir, &yaml).await;
    let inst = eventually("the hostile instance to run", LONG, || async {
        let i = first_instance(&status(&url, &hostile_token, "hostile/hostile").await);
        (i["state"] == "running").then_some(i)
    })
    .await;
    let base = format!("http://127.0.0.1:{}", inst["port"]);
    eventually("the hostile instance to answer", LONG, || async {
        client
            .get(format!("{base}/health"))
            .send()
            .await
            .ok()
            .filter(|r| r.status().is_success())
    })
    .await;

    let st = status(&url, &hostile_token, "hostile/hostile").await;
    let iso = st["isolation"].as_str().unwrap_or_default();
    assert!(
        iso.starts_with("on (") && iso.contains("peng-hostile"),
        "{st}"
    );
    assert!(
        st["limits"]
            .as_str()
            .unwrap_or_default()
            .starts_with("cgroup"),
        "{st}"
    );

    // Everything it tries is refused; what it may do works.
    let probe = get(&client, &format!("{base}/probe")).await;
    for (what, result) in probe.as_object().expect("object") {
        let result = result
            .as_str()
            .map(str::to_string)
            .unwrap_or_else(|| result.to_string());
        match what.as_str() {
            "write writable dir" | "write private /tmp" | "read database CA" => {
                assert!(result.starts_with("ALLOWED"), "{what}: {result}")
            }
            "uid" => assert_ne!(result, "0", "the instance runs as root"),
            // bwrap's pid 1, the program, the request's thread: never the host's processes
            "visible processes" => assert!(
                result.parse::<u32>().is_ok_and(|n| n <= 6),
                "{what}: {result}"
            ),
            _ => assert!(result.starts_with("denied"), "{what}: {result}"),
        }
    }
    assert!(std::fs::read_to_string(dir.join("var/ok.txt")).is_ok());
    assert!(!dir.join("owned.txt").exists());

    // It still serves, sends GELF and uses its database.
    let db = get(&client, &format!("{base}/db")).await;
    assert_eq!(db["answer"], "ALLOWED: db says 42", "{db}");
    eventually("its GELF message to be searchable", LONG, || async {
        let out = peng(
            &url,
            &hostile_token,
            &["logs", "search", "hostile says hello", "--since", "1h"],
        )
        .await;
        out.stdout.contains("hostile says hello").then_some(())
    })
    .await;

    // Forking without bound stops at its pids limit, and peng keeps serving.
    let fork = get(&client, &format!("{base}/fork")).await;
    let forked = fork["forked"].as_u64().expect("forked");
    assert!(forked < 24, "{fork}");
    assert!(
        fork["error"]
            .as_str()
            .unwrap_or_default()
            .contains("Resource temporarily unavailable"),
        "{fork}"
    );
    let health = client
        .get(format!("{url}/healthz"))
        .send()
        .await
        .expect("healthz");
    assert!(health.status().is_success());

    // Burning CPU: over 10 s it gets at most 1.2 x its quota of 0.5 cores.
    let r = client
        .post(format!("{base}/burn?s=14"))
        .send()
        .await
        .expect("burn");
    assert_eq!(r.status().as_u16(), 202);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let cpu = |s: &Value| {
        first_instance(s)["cpu_seconds"]
            .as_f64()
            .expect("cpu_seconds")
    };
    let (t0, c0) = (
        Instant::now(),
        cpu(&status(&url, &hostile_token, "hostile/hostile").await),
    );
    tokio::time::sleep(Duration::from_secs(10)).await;
    let c1 = cpu(&status(&url, &hostile_token, "hostile/hostile").await);
    let used = (c1 - c0) / t0.elapsed().as_secs_f64();
    eprintln!("hostile: cpu used {used:.3} cores against a quota of 0.5");
    assert!(used <= 0.6, "used {used:.3} cores with cpu: 0.5");
    assert!(used >= 0.3, "the burn did not run: {used:.3} cores");

    // Allocating past its memory limit: killed, noticed, said why, restarted with backoff.
    let before = first_instance(&status(&url, &hostile_token, "hostile/hostile").await);
    let r = client
        .post(format!("{base}/oom"))
        .send()
        .await
        .expect("oom");
    assert_eq!(r.status().as_u16(), 202);
    let after = eventually("the OOM kill to be shown", LONG, || async {
        let i = first_instance(&status(&url, &hostile_token, "hostile/hostile").await);
        (i["last_exit"] == "killed: out of memory (limit 96Mi)").then_some(i)
    })
    .await;
    assert!(after["restarts"].as_u64() >= before["restarts"].as_u64());
    let text = peng(&url, &hostile_token, &["status", "hostile/hostile"]).await;
    assert!(
        text.stdout.contains("killed: out of memory (limit 96Mi)"),
        "{text:?}"
    );
    eventually("the OOM kill in the audit log", LONG, || async {
        let audit = peng(&url, &hostile_token, &["audit", "--json"]).await;
        audit
            .stdout
            .contains("integration/0 killed: out of memory (limit 96Mi)")
            .then_some(())
    })
    .await;
    let sensors = status(&url, &hostile_token, "hostile/hostile").await;
    assert!(
        sensors["sensors"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|s| s["sensor"] == "instance.oom" && s["ok"] == false),
        "{sensors}"
    );
    eventually("the out-of-memory alert to fire", LONG, || async {
        let s = status(&url, &hostile_token, "hostile/hostile").await;
        s["alerts"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|a| a["alert"] == "out-of-memory" && a["state"] == "firing")
            .then_some(())
    })
    .await;
    eventually("the instance to come back", LONG, || async {
        let i = first_instance(&status(&url, &hostile_token, "hostile/hostile").await);
        (i["state"] == "running" && i["restarts"].as_u64() > before["restarts"].as_u64())
            .then_some(())
    })
    .await;

    // The other team's instance lived through all of it.
    let v = first_instance(&status(&url, &victim_token, "victim/shelf").await);
    assert_eq!(v["pid"].as_u64(), Some(victim_pid), "{v}");
    let _ = std::fs::remove_file(&marker);
    server.stop().await;
}

/// Writes `yaml` as `dir/peng.yaml` and applies it, which must work.
async fn apply(url: &str, token: &str, dir: &Path, yaml: &str) {
    let file = dir.join("peng.yaml");
    std::fs::write(&file, yaml).expect("write the service file");
    let out = peng(url, token, &["apply", "-f", file.to_str().expect("utf8")]).await;
    assert_eq!(out.code, 0, "{out:?}");
}

/// The uid of the Unix user peng made for `team`.
fn peng_sandbox_user(team: &str) -> u32 {
    let out = std::process::Command::new("id")
        .args(["-u", &format!("peng-{team}")])
        .output()
        .expect("id");
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .unwrap_or_else(|_| panic!("peng made no user for team {team}: {out:?}"))
}
