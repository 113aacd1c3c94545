//! `--stage`: a change reaches one stage while the others keep what they were applied with.

use crate::harness::{eventually, free_port, peng, Peng};
use crate::{example_copy, instances, status_json, LONG};

fn count(status: &serde_json::Value, stage: &str) -> usize {
    instances(status)
        .iter()
        .filter(|i| i["stage"] == stage && i["state"] == "running")
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn apply_with_stage_changes_only_that_stage() {
    let tmp = crate::harness::open_tempdir();
    let server = Peng::start(&tmp.path().join("data"), free_port(), free_port()).await;
    let url = server.url();
    let admin = server.admin_token();
    let team = peng(&url, &admin, &["team", "create", "books", "--json"]).await;
    let team: serde_json::Value = serde_json::from_str(&team.stdout).expect("team json");
    let token = team["token"].as_str().expect("token").to_string();
    let dir = example_copy(tmp.path(), "http://127.0.0.1:9");
    let file = dir.join("peng.yaml");
    let f = file.to_str().expect("utf8");
    assert_eq!(peng(&url, &token, &["apply", "-f", f]).await.code, 0);
    let original = std::fs::read_to_string(&file).expect("read");

    // Both stages scale in the file; only integration is applied.
    let scaled = original
        .replace(
            "integration: { instances: 1 }",
            "integration: { instances: 2 }",
        )
        .replace(
            "production: { instances: 2 }",
            "production: { instances: 3 }",
        );
    std::fs::write(&file, &scaled).expect("write");
    let plan = peng(&url, &token, &["plan", "-f", f, "--stage", "integration"]).await;
    assert_eq!(plan.code, 2, "{plan:?}");
    assert!(
        plan.stdout.contains("+ instance integration/1"),
        "{}",
        plan.stdout
    );
    assert!(!plan.stdout.contains("production/2"), "{}", plan.stdout);
    assert_eq!(
        peng(&url, &token, &["apply", "-f", f, "--stage", "integration"])
            .await
            .code,
        0
    );
    eventually(
        "integration scaled to 2, production still 2",
        LONG,
        || async {
            let s = status_json(&url, &token).await;
            (count(&s, "integration") == 2 && count(&s, "production") == 2).then_some(())
        },
    )
    .await;
    let again = peng(&url, &token, &["plan", "-f", f, "--stage", "integration"]).await;
    assert_eq!(again.code, 0, "integration is as the file says: {again:?}");
    let full = peng(&url, &token, &["plan", "-f", f]).await;
    assert_eq!(full.code, 2, "production is not yet: {full:?}");
    assert!(
        full.stdout.contains("+ instance production/2"),
        "{}",
        full.stdout
    );

    // A change to `run` reaches every stage, so it is not applied stage by stage.
    std::fs::write(
        &file,
        scaled.replace(
            "\"--port\", \"${PORT}\"]",
            "\"--port\", \"${PORT}\"]\n  env: { COLOUR: blue }",
        ),
    )
    .expect("write");
    let refused = peng(&url, &token, &["apply", "-f", f, "--stage", "integration"]).await;
    assert_eq!(refused.code, 1, "{refused:?}");
    assert!(refused.stderr.contains("without --stage"), "{refused:?}");
    server.stop().await;
}
