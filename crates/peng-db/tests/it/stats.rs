//! Statistics move with the work a server does.

use std::time::Duration;

use peng_db::replica;
use peng_db::stats::{self, Rates};

use crate::common::{eventually, run, Site};

#[tokio::test]
async fn the_numbers_move_after_queries() {
    let site = Site::new();
    let primary = site.start(site.config("primary", 1, false)).await;
    let before = stats::sample(primary.admin()).await.unwrap();
    assert_eq!(before.max_connections, 40);
    assert!(before.threads_connected >= 1);
    assert!(before.used_percent() > 0.0 && before.used_percent() <= 100.0);
    assert!(before.replica.is_none());

    run(
        primary.app(),
        &[
            "CREATE DATABASE shelf",
            "CREATE TABLE shelf.books (id INT PRIMARY KEY, title TEXT) ENGINE=InnoDB",
        ],
    )
    .await;
    for i in 0..50 {
        run(
            primary.app(),
            &[&format!(
                "INSERT INTO shelf.books VALUES ({i}, REPEAT('x', 2000))"
            )],
        )
        .await;
    }
    // a slow query: slower than the session's long_query_time
    let mut conn = primary.app().acquire().await.unwrap();
    for sql in ["SET SESSION long_query_time = 0.1", "SELECT SLEEP(0.3)"] {
        sqlx::raw_sql(sql).execute(&mut *conn).await.unwrap();
    }
    drop(conn);
    // InnoDB reports table sizes from its statistics, refreshed by ANALYZE
    run(primary.app(), &["ANALYZE TABLE shelf.books"]).await;

    let after = stats::sample(primary.admin()).await.unwrap();
    assert!(
        after.questions >= before.questions + 50,
        "{before:?} {after:?}"
    );
    assert!(
        after.slow_queries > before.slow_queries,
        "{before:?} {after:?}"
    );
    assert!(after.data_bytes > before.data_bytes, "{before:?} {after:?}");
    let rates = Rates::between(&before, &after).expect("rates");
    assert!(
        rates.queries_per_s > 0.0 && rates.slow_queries_per_s > 0.0,
        "{rates:?}"
    );

    // a replica reports its replication
    let replica = site.start(site.config("replica", 2, true)).await;
    replica::attach(
        &site.tools,
        &primary,
        &replica,
        &["shelf".to_string()],
        "Repl-Password-2024x",
    )
    .await
    .unwrap();
    let status = eventually("replica stats", Duration::from_secs(30), || async {
        stats::sample(replica.admin()).await.ok()?.replica
    })
    .await;
    assert!(status.io_running && status.sql_running, "{status:?}");
    replica.stop().await;
    primary.stop().await;
}
