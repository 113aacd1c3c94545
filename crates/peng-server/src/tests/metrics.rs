//! The metrics databases' upkeep through the application layer: writes mark buckets, the
//! upkeep rolls them up and applies retention, and a panel over a range longer than the raw
//! retention is answered whole.

use super::Fixture;
use crate::ops::influx::{InfluxQuery, InfluxWrite};
use crate::ops::Caller;

const S: i64 = 1_000_000_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rollups_answer_for_what_the_raw_retention_deleted() {
    let f = Fixture::start().await;
    let team = f.team("books").await;
    let caller = Caller::Team(team.team.clone());
    let query = |q: String| {
        f.ops.influx_query(
            &caller,
            InfluxQuery {
                q,
                db: Some("tg".into()),
                epoch: Some("s".into()),
            },
        )
    };
    let write = |body: String| {
        f.ops.influx_write(
            &caller,
            InfluxWrite {
                db: "tg".into(),
                rp: None,
                precision: None,
                body,
            },
        )
    };
    let answer = |r: peng_influx::QueryResponse| serde_json::to_value(r).expect("json");
    query("CREATE DATABASE tg".into()).await.expect("create");
    // Three hours up to now, every 10 s, in whole hours.
    let hour = 3600 * S;
    let now = peng_core::now_ns();
    let end = now - now.rem_euclid(hour);
    let start = end - 3 * hour;
    let mut body = String::new();
    let mut t = start;
    while t < end {
        body.push_str(&format!("cpu,host=a usage={} {t}\n", (t / (10 * S)) % 100));
        t += 10 * S;
    }
    write(body).await.expect("write");
    let panel = format!(
        r#"SELECT mean("usage"), count("usage"), max("usage") FROM "cpu" WHERE time >= {}ms and time < {}ms GROUP BY time(30m) fill(none)"#,
        start / 1_000_000,
        end / 1_000_000
    );
    let before = answer(query(panel.clone()).await.expect("query"));
    assert_eq!(
        before["results"][0]["series"][0]["values"]
            .as_array()
            .map(Vec::len),
        Some(6),
        "{before}"
    );

    f.ops.maintain_influx().await.expect("upkeep");
    let rolled = answer(
        query(panel.replace(r#"FROM "cpu""#, r#"FROM "rollup_5m"."cpu""#))
            .await
            .expect("query"),
    );
    assert_eq!(rolled["results"], before["results"], "rollups as raw");

    query(r#"ALTER RETENTION POLICY "autogen" ON "tg" DURATION 1h"#.into())
        .await
        .expect("alter");
    let raw_count = answer(
        query(format!(
            r#"SELECT count("usage") FROM "cpu" WHERE time >= {}ms"#,
            start / 1_000_000
        ))
        .await
        .expect("query"),
    );
    let left = raw_count["results"][0]["series"][0]["values"][0][1]
        .as_i64()
        .expect("a count");
    assert!(
        left <= 360,
        "at most an hour of raw values is left: {raw_count}"
    );
    assert_eq!(
        answer(query(panel).await.expect("query"))["results"],
        before["results"],
        "the panel still shows three hours"
    );
    // A write older than the raw retention is refused, naming why.
    let old = write(format!("cpu,host=a usage=1 {start}"))
        .await
        .expect_err("older than the retention");
    assert!(old.message.contains("retention"), "{}", old.message);
    f.stop().await;
}
