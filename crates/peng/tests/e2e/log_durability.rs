//! Logs survive a crash: peng is killed (`SIGKILL`) in the middle of a 200,000-message HTTP
//! load; after the restart, every message of every batch that got `202` is searchable exactly
//! once, and a batch that did not is there whole or not at all.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;

use crate::harness::{eventually, free_port, Peng};
use crate::LONG;

const BATCHES: usize = 200;
const PER_BATCH: usize = 1_000;

fn body(run: &str, batch: usize) -> String {
    let mut out = String::with_capacity(PER_BATCH * 220);
    for n in 0..PER_BATCH {
        out.push_str(&format!(
            "{{\"version\":\"1.1\",\"host\":\"app-{h}\",\"short_message\":\"order {batch}-{n} placed\",\"level\":6,\"_service\":\"shop\",\"_run\":\"{run}\",\"_batch\":\"b{batch}\",\"_n\":{n},\"_request_id\":\"req-{batch}-{n}-{run}\"}}\n",
            h = n % 7
        ));
    }
    out
}

async fn total(client: &reqwest::Client, url: &str, admin: &str, query: &str) -> Option<u64> {
    let res = client
        .get(format!("{url}/api/v1/logs/search"))
        .bearer_auth(admin)
        .query(&[("q", query), ("since", "1h"), ("limit", "0")])
        .send()
        .await
        .ok()?;
    if !res.status().is_success() {
        return None;
    }
    res.json::<Value>().await.ok()?["total"].as_u64()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_acknowledged_message_survives_a_kill_exactly_once() {
    let tmp = crate::harness::open_tempdir();
    let data = tmp.path().join("data");
    let (http_port, gelf_port) = (free_port(), free_port());
    let server = Peng::start(&data, http_port, gelf_port).await;
    let url = server.url();
    let admin = server.admin_token();
    let team = server.create_team("books").await;
    let ingest = team["ingest_token"]
        .as_str()
        .expect("ingest token")
        .to_string();
    let run = format!("r{}", std::process::id());

    // Two senders post their batches one after the other; each 202 is written down.
    let acked = Arc::new(Mutex::new(Vec::<usize>::new()));
    let client = reqwest::Client::new();
    let mut senders = Vec::new();
    for sender in 0..2 {
        let (client, url, ingest, run, acked) = (
            client.clone(),
            url.clone(),
            ingest.clone(),
            run.clone(),
            acked.clone(),
        );
        senders.push(tokio::spawn(async move {
            for batch in (sender..BATCHES).step_by(2) {
                let res = client
                    .post(format!("{url}/gelf"))
                    .header("x-peng-ingest-token", &ingest)
                    .body(body(&run, batch))
                    .send()
                    .await;
                match res {
                    Ok(r) if r.status() == reqwest::StatusCode::ACCEPTED => {
                        acked.lock().expect("acked").push(batch);
                    }
                    Ok(r) if r.status() == reqwest::StatusCode::SERVICE_UNAVAILABLE => {
                        // the queue is full: come back, as Retry-After says
                        tokio::time::sleep(Duration::from_millis(200)).await;
                    }
                    // the server is gone: the load ends here
                    _ => return,
                }
            }
        }));
    }
    // Killed half-way.
    eventually("half of the load acknowledged", LONG, || async {
        (acked.lock().expect("acked").len() >= BATCHES / 2).then_some(())
    })
    .await;
    server.crash().await;
    for s in senders {
        s.await.expect("sender");
    }
    let acked = acked.lock().expect("acked").clone();
    assert!(acked.len() < BATCHES, "the kill came after the whole load");

    let server = Peng::start(&data, http_port, gelf_port).await;
    let query = format!("run:{run}");
    let stored = eventually("the log to answer after the restart", LONG, || async {
        total(&client, &url, &admin, &query).await
    })
    .await;
    let mut whole = 0;
    for batch in 0..BATCHES {
        let n = total(
            &client,
            &url,
            &admin,
            &format!("run:{run} AND batch:b{batch}"),
        )
        .await
        .expect("search");
        if acked.contains(&batch) {
            assert_eq!(n, PER_BATCH as u64, "acknowledged batch {batch}");
        } else {
            assert!(
                n == 0 || n == PER_BATCH as u64,
                "batch {batch} is half there: {n}"
            );
        }
        if n == PER_BATCH as u64 {
            whole += 1;
        }
    }
    assert_eq!(stored, (whole * PER_BATCH) as u64, "no message twice");
    // and one unique id, once
    let id = format!("req-{}-17-{run}", acked[acked.len() / 2]);
    assert_eq!(
        total(&client, &url, &admin, &format!("request_id:\"{id}\""))
            .await
            .expect("search"),
        1
    );
    eprintln!(
        "{} batches acknowledged before the kill, {whole} stored whole after the restart",
        acked.len()
    );
    server.stop().await;
}
