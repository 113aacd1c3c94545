//! A crash of `peng serve` (SIGKILL, no shutdown code): its instances die with it, and the
//! next start brings back exactly the declared instances, with no orphans and no duplicates.

use std::time::Duration;

use crate::harness::{eventually, free_port, peng, processes_with, Peng};
use crate::{all_running, example_copy, status_json, LONG};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn after_a_crash_instances_come_back_exactly_once() {
    let tmp = crate::harness::open_tempdir();
    let data = tmp.path().join("data");
    let (http_port, gelf_port) = (free_port(), free_port());
    let server = Peng::start(&data, http_port, gelf_port).await;
    let url = server.url();
    let admin = server.admin_token();
    let team = peng(&url, &admin, &["team", "create", "books", "--json"]).await;
    let team: serde_json::Value = serde_json::from_str(&team.stdout).expect("team json");
    let token = team["token"].as_str().expect("token").to_string();
    let dir = example_copy(tmp.path(), "http://127.0.0.1:9");
    let app_dir = dir.to_str().expect("utf8").to_string();
    assert_eq!(
        peng(
            &url,
            &token,
            &["apply", "-f", &format!("{app_dir}/peng.yaml")]
        )
        .await
        .code,
        0
    );
    eventually("3 instances running", LONG, || async {
        all_running(&status_json(&url, &token).await, 3).then_some(())
    })
    .await;

    server.crash().await;
    eventually(
        "the instances to die with the crashed server",
        Duration::from_secs(20),
        || async { processes_with(&app_dir).is_empty().then_some(()) },
    )
    .await;

    let server = Peng::start(&data, http_port, gelf_port).await;
    eventually("3 instances running again", LONG, || async {
        all_running(&status_json(&url, &token).await, 3).then_some(())
    })
    .await;
    let exactly_three = || async {
        let procs = crate::harness::programs_with(&app_dir);
        let cmdlines: Vec<String> = procs
            .iter()
            .map(|p| std::fs::read_to_string(format!("/proc/{p}/cmdline")).unwrap_or_default())
            .collect();
        (cmdlines.len() == 3 && cmdlines.iter().all(|c| c.contains("app.py"))).then_some(())
    };
    eventually(
        "exactly 3 instance processes",
        Duration::from_secs(20),
        exactly_three,
    )
    .await;
    assert_eq!(status_json(&url, &token).await["generation"], 1);
    server.stop().await;
    assert!(
        processes_with(&app_dir).is_empty(),
        "a clean stop leaves no instance"
    );
}
