//! Metrics survive a crash: peng is killed (`SIGKILL`) in the middle of a line-protocol load
//! over `/write` from two writers; after the restart every value of every batch that got `204`
//! is there, and a batch that did not is there whole or not at all. The load is large enough
//! that the store flushes block files and merges them while it runs, so the kill may come in
//! the middle of either.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use serde_json::Value;

use crate::harness::{eventually, free_port, Peng};
use crate::LONG;

const BATCHES: usize = 400;
const PER_BATCH: usize = 2_500;

/// One batch: its own tag value, and timestamps no other batch uses.
fn body(batch: usize) -> String {
    let mut out = String::with_capacity(PER_BATCH * 60);
    for n in 0..PER_BATCH {
        let ts = 1_700_000_000_000_000_000i64 + (batch * PER_BATCH + n) as i64 * 1_000_000;
        out.push_str(&format!(
            "load,batch=b{batch},host=h{} v={n}i,x={}.5 {ts}\n",
            n % 5,
            n % 97
        ));
    }
    out
}

/// Values per batch, from one `count ... GROUP BY "batch"`.
async fn counts(
    client: &reqwest::Client,
    url: &str,
    user: &str,
    token: &str,
) -> Option<BTreeMap<String, u64>> {
    let answer: Value = client
        .get(format!("{url}/query"))
        .basic_auth(user, Some(token))
        .query(&[
            ("db", "load"),
            ("q", r#"SELECT count("v") FROM "load" GROUP BY "batch""#),
        ])
        .send()
        .await
        .ok()?
        .json()
        .await
        .ok()?;
    let mut out = BTreeMap::new();
    for s in answer["results"][0]["series"]
        .as_array()
        .cloned()
        .unwrap_or_default()
    {
        let batch = s["tags"]["batch"].as_str()?.to_string();
        out.insert(batch, s["values"][0][1].as_u64()?);
    }
    Some(out)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_acknowledged_value_survives_a_kill() {
    let tmp = crate::harness::open_tempdir();
    let data = tmp.path().join("data");
    let (http_port, gelf_port) = (free_port(), free_port());
    let server = Peng::start(&data, http_port, gelf_port).await;
    let url = server.url();
    let team = server.create_team("books").await;
    let token = team["token"].as_str().expect("token").to_string();
    let client = reqwest::Client::new();
    let r = client
        .post(format!("{url}/query"))
        .basic_auth("books", Some(&token))
        .form(&[("q", "CREATE DATABASE load")])
        .send()
        .await
        .expect("create database");
    assert_eq!(r.status().as_u16(), 200);

    let acked = Arc::new(Mutex::new(Vec::<usize>::new()));
    let mut writers = Vec::new();
    for writer in 0..2 {
        let (client, url, token, acked) =
            (client.clone(), url.clone(), token.clone(), acked.clone());
        writers.push(tokio::spawn(async move {
            for batch in (writer..BATCHES).step_by(2) {
                let res = client
                    .post(format!("{url}/write?db=load"))
                    .basic_auth("books", Some(&token))
                    .body(body(batch))
                    .send()
                    .await;
                match res {
                    Ok(r) if r.status() == reqwest::StatusCode::NO_CONTENT => {
                        acked.lock().expect("acked").push(batch);
                    }
                    // the server is gone (or refused): the load ends here
                    _ => return,
                }
            }
        }));
    }
    eventually("half of the load acknowledged", LONG, || async {
        (acked.lock().expect("acked").len() >= BATCHES / 2).then_some(())
    })
    .await;
    server.crash().await;
    for w in writers {
        w.await.expect("writer");
    }
    let acked = acked.lock().expect("acked").clone();
    assert!(acked.len() < BATCHES, "the kill came after the whole load");

    let server = Peng::start(&data, http_port, gelf_port).await;
    let stored = eventually("the database to answer after the restart", LONG, || async {
        counts(&client, &url, "books", &token).await
    })
    .await;
    for batch in &acked {
        assert_eq!(
            stored.get(&format!("b{batch}")).copied(),
            Some(PER_BATCH as u64),
            "acknowledged batch {batch}"
        );
    }
    for (batch, n) in &stored {
        assert_eq!(*n, PER_BATCH as u64, "batch {batch} is half there");
    }
    eprintln!(
        "{} batches acknowledged before the kill, {} stored whole after the restart",
        acked.len(),
        stored.len()
    );
    server.stop().await;
}
