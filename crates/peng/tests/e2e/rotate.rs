//! Rotating a team's API token and ingest token: the old ones stop working at once, the new
//! ones work, and instances are given the new ingest token.

use crate::harness::{eventually, free_port, peng, Peng};
use crate::{all_running, example_copy, instances, status_json, LONG};

async fn post_gelf(url: &str, token: &str) -> u16 {
    reqwest::Client::new()
        .post(format!("{url}/gelf"))
        .header("x-peng-ingest-token", token)
        .body(r#"{"version":"1.1","host":"h","short_message":"rotation probe"}"#)
        .send()
        .await
        .expect("post")
        .status()
        .as_u16()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rotated_tokens_replace_the_old_ones() {
    let tmp = crate::harness::open_tempdir();
    let server = Peng::start(&tmp.path().join("data"), free_port(), free_port()).await;
    let url = server.url();
    let admin = server.admin_token();
    let json = |out: crate::harness::Out| -> serde_json::Value {
        serde_json::from_str(&out.stdout).expect("json")
    };
    let books = json(peng(&url, &admin, &["team", "create", "books", "--json"]).await);
    let music = json(peng(&url, &admin, &["team", "create", "music", "--json"]).await);
    let (old, ingest_old) = (
        books["token"].as_str().expect("t").to_string(),
        books["ingest_token"].as_str().expect("i").to_string(),
    );
    let other = music["token"].as_str().expect("t").to_string();
    let dir = example_copy(tmp.path(), "http://127.0.0.1:9");
    let file = dir.join("peng.yaml");
    assert_eq!(
        peng(&url, &old, &["apply", "-f", file.to_str().expect("utf8")])
            .await
            .code,
        0
    );
    let before = eventually("instances running", LONG, || async {
        let s = status_json(&url, &old).await;
        all_running(&s, 3).then_some(s)
    })
    .await;
    let pids_before: Vec<u64> = instances(&before)
        .iter()
        .filter_map(|i| i["pid"].as_u64())
        .collect();

    // Another team cannot rotate this team's tokens.
    assert_eq!(
        peng(&url, &other, &["team", "rotate-token", "books"])
            .await
            .code,
        1
    );
    assert_eq!(
        peng(&url, &other, &["team", "rotate-ingest-token", "books"])
            .await
            .code,
        1
    );

    let new = json(peng(&url, &old, &["team", "rotate-token", "books", "--json"]).await);
    let new = new["token"].as_str().expect("token").to_string();
    let stale = peng(&url, &old, &["status"]).await;
    assert!(
        stale.code == 1 && stale.stderr.contains("401"),
        "the old api token is revoked: {stale:?}"
    );
    assert_eq!(peng(&url, &new, &["status"]).await.code, 0);

    assert_eq!(post_gelf(&url, &ingest_old).await, 202);
    let rotated = json(
        peng(
            &url,
            &new,
            &["team", "rotate-ingest-token", "books", "--json"],
        )
        .await,
    );
    let ingest_new = rotated["ingest_token"]
        .as_str()
        .expect("ingest")
        .to_string();
    assert_ne!(ingest_new, ingest_old);
    assert_eq!(
        post_gelf(&url, &ingest_old).await,
        401,
        "the old ingest token is revoked"
    );
    assert_eq!(post_gelf(&url, &ingest_new).await, 202);
    eventually(
        "instances replaced with the new ingest token",
        LONG,
        || async {
            let s = status_json(&url, &new).await;
            let pids: Vec<u64> = instances(&s)
                .iter()
                .filter_map(|i| i["pid"].as_u64())
                .collect();
            (all_running(&s, 3) && pids.iter().all(|p| !pids_before.contains(p))).then_some(())
        },
    )
    .await;
    let audit = peng(&url, &admin, &["audit"]).await;
    assert!(
        audit.stdout.contains("team.token.rotate") && audit.stdout.contains("team.ingest.rotate"),
        "{}",
        audit.stdout
    );
    server.stop().await;
}
