//! A team's walk from its YAML file to alerts and back, one scenario a test, each on a peng of
//! its own (see `Walk`): the files, the logs, supervision and alerts, and destroy.

use std::time::Duration;

use crate::harness::{eventually, peng, processes_with, programs_with, python};
use crate::{all_running, instances, search, wait_found, Walk, LONG};

/// The pids of the instances in `status`.
fn pids(status: &serde_json::Value) -> Vec<u64> {
    instances(status)
        .iter()
        .filter_map(|i| i["pid"].as_u64())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn files_are_checked_before_anything_changes_and_applied_once() {
    let walk = Walk::start().await;
    let (url, token, admin, file) = (&walk.url, &walk.token, &walk.admin, walk.file.as_str());

    // The admin token is written once, readable only by its owner.
    let mode = std::fs::metadata(walk.data.join("admin.token"))
        .expect("token file")
        .permissions();
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&mode) & 0o777,
        0o600
    );

    // A team is created once, and by the admin only.
    let dup = peng(url, admin, &["team", "create", "books"]).await;
    assert_eq!(dup.code, 1, "a team is created once: {dup:?}");
    let not_admin = peng(url, token, &["team", "create", "sneaky"]).await;
    assert_eq!(not_admin.code, 1);
    assert!(not_admin.stderr.contains("403"), "{not_admin:?}");

    // An invalid file is refused with file:line:col and exit 1, and changes nothing.
    let bad = walk.app_dir.join("bad.yaml");
    let good_text = std::fs::read_to_string(file).expect("read");
    std::fs::write(&bad, good_text.replacen("every: 5s", "every_s: 5s", 1)).expect("write bad");
    let bad = bad.to_str().expect("utf8");
    let v = peng(url, token, &["validate", bad]).await;
    assert_eq!(v.code, 1, "{v:?}");
    assert!(
        v.stderr.contains("bad.yaml:") && v.stderr.contains("did you mean 'every'"),
        "{v:?}"
    );
    for cmd in ["plan", "apply"] {
        let out = peng(url, token, &[cmd, "-f", bad]).await;
        assert_eq!(out.code, 1, "{cmd} of an invalid file: {out:?}");
        assert!(out.stderr.contains("bad.yaml:"), "{out:?}");
    }
    let list = peng(url, token, &["status"]).await;
    assert!(list.stdout.contains("no services"), "{list:?}");

    // Plan, apply, and a re-apply that touches nothing.
    let plan = peng(url, token, &["plan", "-f", file]).await;
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
    let pids_before = pids(&walk.apply().await);
    let again = peng(url, token, &["apply", "-f", file]).await;
    assert_eq!(again.code, 0);
    assert!(again.stdout.contains("No changes"), "{again:?}");
    let replan = peng(url, token, &["plan", "-f", file]).await;
    assert_eq!(replan.code, 0, "{replan:?}");
    let s = walk.status().await;
    assert_eq!(
        pids_before,
        pids(&s),
        "an unchanged re-apply touches no instance"
    );
    assert_eq!(s["generation"], 1);

    walk.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn logs_reach_their_team_and_no_one_else() {
    let walk = Walk::applied().await;
    let (url, token, admin, other) = (&walk.url, &walk.token, &walk.admin, &walk.other);
    let (nonce, http_port, gelf_port) = (&walk.nonce, walk.http_port, walk.gelf_port);

    // Logs: instance stdout, and GELF from the real graypy client over UDP (chunked and
    // compressed), TCP and HTTP.
    wait_found(url, token, "listening", "bookshelf listening on 127.0.0.1").await;
    let (udp_m, tcp_m, http_m) = (
        format!("udpmark{nonce}"),
        format!("tcpmark{nonce}"),
        format!("httpmark{nonce}"),
    );
    walk.send_gelf(&format!(
        r#"
big = "{udp_m} " + os.urandom(12000).hex()
udp = graypy.GELFUDPHandler("127.0.0.1", {gelf_port}, gelf_chunker=graypy.handler.GELFWarningChunker(chunk_size=1024))
assert len(udp.makePickle(logging.makeLogRecord({{"msg": big}}))) > 1024, "the message must need chunks"
send(udp, big)
send(graypy.GELFTCPHandler("127.0.0.1", {gelf_port}), "{tcp_m} over tcp")
send(graypy.GELFHTTPHandler("127.0.0.1", {http_port}, path="/gelf"), "{http_m} over http")
"#
    ))
    .await;
    wait_found(url, token, &udp_m, &udp_m).await;
    wait_found(url, token, &tcp_m, &tcp_m).await;
    wait_found(url, token, &http_m, &http_m).await;
    wait_found(url, token, &format!("{tcp_m} AND order_id:4711"), &tcp_m).await;

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
                .bearer_auth(admin)
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
    assert!(!search(url, admin, &format!("anonmark{nonce}"))
        .await
        .contains("anonmark"));

    // The other team sees and changes nothing of this team's.
    let pids_before = pids(&walk.status().await);
    let peek = peng(url, other, &["status", "books/bookshelf"]).await;
    assert_eq!(peek.code, 1);
    assert!(peek.stderr.contains("404"), "{peek:?}");
    assert!(!search(url, other, &udp_m).await.contains(&udp_m));
    assert!(!search(url, other, &format!("team:books OR {tcp_m}"))
        .await
        .contains(&tcp_m));
    let steal = peng(url, other, &["apply", "-f", &walk.file]).await;
    assert_eq!(steal.code, 1);
    assert!(steal.stderr.contains("403"), "{steal:?}");
    let kill = peng(url, other, &["destroy", "books/bookshelf"]).await;
    assert_eq!(kill.code, 1);
    let listed = peng(url, other, &["status"]).await;
    assert!(!listed.stdout.contains("bookshelf"), "{listed:?}");
    let s = walk.status().await;
    assert_eq!(
        pids(&s),
        pids_before,
        "the other team's apply and destroy touch no instance"
    );
    assert_eq!(s["generation"], 1);

    walk.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn instances_are_restarted_and_alerts_page_once_across_a_peng_restart() {
    let mut walk = Walk::applied().await;
    let (url, token) = (&walk.url.clone(), &walk.token.clone());
    let logged = walk.mark("before").await;

    // A killed instance is restarted.
    let victim = instances(&walk.status().await)
        .into_iter()
        .find(|i| i["stage"] == "production" && i["index"] == 0)
        .expect("production/0");
    let victim_pid = victim["pid"].as_u64().expect("pid");
    unsafe { libc::kill(victim_pid as i32, libc::SIGKILL) };
    eventually("the killed instance to be restarted", LONG, || async {
        let s = walk.status().await;
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
    let (broke, took, firing) = walk.break_health().await;
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
    let st = walk.status().await;
    assert!(
        st["alerts"]
            .as_array()
            .expect("alerts")
            .iter()
            .any(|a| a["state"] == "firing"),
        "{st}"
    );

    // Restart peng while the alert fires: everything is still there, instances run once.
    let firings = |walk: &Walk| {
        walk.hook
            .payloads()
            .iter()
            .filter(|p| p["state"] == "firing")
            .count()
    };
    let firing_before = firings(&walk);
    walk.stop().await;
    assert!(
        processes_with(walk.app_path()).is_empty(),
        "instances stop with peng: {:?}",
        processes_with(walk.app_path())
    );
    walk.start_again().await;
    eventually("3 instances running again", LONG, || async {
        all_running(&walk.status().await, 3).then_some(())
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
            let procs = cmdlines(programs_with(walk.app_path()));
            (procs.len() == 3 && procs.iter().all(|c| c.contains("app.py"))).then_some(())
        },
    )
    .await;
    let st = walk.status().await;
    assert_eq!(st["generation"], 1, "the service is still applied");
    assert!(
        st["alerts"]
            .as_array()
            .expect("alerts")
            .iter()
            .any(|a| a["state"] == "firing"),
        "alert state survives a restart: {st}"
    );
    wait_found(url, token, &logged, &logged).await;
    let hist = peng(
        url,
        token,
        &["sensors", "books/bookshelf", "--since", "1h", "--json"],
    )
    .await;
    assert_eq!(hist.code, 0, "{hist:?}");
    let history = reqwest::Client::new()
        .get(format!("{url}/api/v1/services/books/bookshelf/sensors/health/history?stage=production&since=1h"))
        .bearer_auth(token)
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
    let broke_at = now_ns() - broke.elapsed().as_nanos() as i64;
    assert!(
        oldest < broke_at,
        "sensor history from before the restart is kept"
    );
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        firings(&walk),
        firing_before,
        "a restart does not page again for an alert that already fires"
    );

    // Recovery resolves it.
    let resolved = walk.heal().await;
    assert!(resolved["resolved_at"].is_string(), "{resolved}");

    // The service's Grafana dashboard: every panel's query, with the macros filled in as
    // Grafana fills them, answers from the team's `peng` database; sensors and memory have data.
    let out = peng(url, token, &["dashboards", "export", "books/bookshelf"]).await;
    assert_eq!(out.code, 0, "{out:?}");
    let dashboard: serde_json::Value = serde_json::from_str(&out.stdout).expect("dashboard json");
    let panels = dashboard["panels"].as_array().expect("panels").clone();
    assert!(panels.len() >= 4, "{dashboard}");
    eventually("every dashboard panel to show data", LONG, || async {
        for panel in &panels {
            let q = peng_influx::dashboard::render(
                panel["targets"][0]["query"].as_str()?,
                "time >= now() - 1h",
                "10s",
                &["production", "integration"],
            );
            let answer: serde_json::Value = reqwest::Client::new()
                .get(format!("{url}/query"))
                .query(&[("db", "peng"), ("q", q.as_str()), ("epoch", "ms")])
                .bearer_auth(token)
                .send()
                .await
                .ok()?
                .json()
                .await
                .ok()?;
            let result = &answer["results"][0];
            assert!(result["error"].is_null(), "{q}: {answer}");
            let title = panel["title"].as_str()?;
            if title != "Sensor values" && result["series"].as_array().is_none_or(Vec::is_empty) {
                return None;
            }
        }
        Some(())
    })
    .await;
    let bad = peng(url, token, &["dashboards", "export", "books/nothing"]).await;
    assert_ne!(bad.code, 0, "a service that does not exist: {bad:?}");

    walk.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn destroy_leaves_no_process_but_the_logs_and_the_audit_trail() {
    let walk = Walk::applied().await;
    let (url, token) = (&walk.url, &walk.token);
    let logged = walk.mark("kept").await;
    // The service pages and recovers before it goes, for the audit log to tell.
    walk.break_health().await;
    walk.heal().await;

    // Destroy leaves no process; logs stay for their retention; the audit log tells the story.
    let d = peng(url, token, &["destroy", "books/bookshelf"]).await;
    assert_eq!(d.code, 0, "{d:?}");
    eventually(
        "no instance process left",
        Duration::from_secs(20),
        || async { processes_with(walk.app_path()).is_empty().then_some(()) },
    )
    .await;
    wait_found(url, token, &logged, &logged).await;
    let audit = peng(url, token, &["audit"]).await;
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

    walk.finish().await;
}

fn now_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0)
}
