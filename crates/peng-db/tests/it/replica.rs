//! Replicas: seeded from a primary with data, following it over TLS, switched over and failed
//! over.

use std::fs;
use std::time::{Duration, Instant};

use peng_db::replica::{self, Promotion};

use crate::common::{eventually, run, scalar, Site};

const REPL_PASSWORD: &str = "Repl-Password-2024x";

fn databases() -> Vec<String> {
    vec!["shelf".to_string()]
}

async fn count(pool: &sqlx::MySqlPool) -> Option<String> {
    scalar(pool, "SELECT COUNT(*) FROM shelf.books").await
}

async fn wait_count(pool: &sqlx::MySqlPool, want: &str) {
    eventually(&format!("{want} rows"), Duration::from_secs(30), || async {
        (count(pool).await.as_deref() == Some(want)).then_some(())
    })
    .await
}

#[tokio::test]
async fn a_replica_follows_and_is_switched_over() {
    let site = Site::new();
    let primary = site.start(site.config("primary", 1, false)).await;
    let replica = site.start(site.config("replica", 2, true)).await;
    run(
        primary.app(),
        &[
            "CREATE DATABASE shelf",
            "CREATE TABLE shelf.books (id INT PRIMARY KEY, title TEXT) ENGINE=InnoDB",
            "INSERT INTO shelf.books VALUES (1, 'Dune'), (2, 'Emma')",
        ],
    )
    .await;

    let started = Instant::now();
    replica::attach(&site.tools, &primary, &replica, &databases(), REPL_PASSWORD)
        .await
        .expect("attach");
    eprintln!("timing: attach with seed: {:?}", started.elapsed());
    assert_eq!(count(replica.admin()).await.as_deref(), Some("2"));

    let status = replica::status(&replica).await.unwrap();
    assert!(status.io_running && status.sql_running, "{status:?}");
    assert!(status.seconds_behind.is_some(), "{status:?}");
    assert_eq!(status.last_error, None);
    assert!(replica::status(&primary).await.is_err());

    // the replica's accounts are its own: the replication account was not copied
    assert_eq!(
        scalar(
            replica.admin(),
            "SELECT COUNT(*) FROM mysql.user WHERE User = 'peng_repl'"
        )
        .await
        .as_deref(),
        Some("0")
    );

    run(
        primary.app(),
        &["INSERT INTO shelf.books VALUES (3, 'Ulysses')"],
    )
    .await;
    wait_count(replica.admin(), "3").await;
    let status = replica::status(&replica).await.unwrap();
    assert!(status.gtid_io_pos.starts_with("0-1-"), "{status:?}");

    // the replica refuses application writes
    run(
        replica.admin(),
        &[
            "CREATE USER app@'127.0.0.1' IDENTIFIED BY 'App-Password-2024x'",
            "GRANT INSERT, SELECT ON shelf.* TO app@'127.0.0.1'",
        ],
    )
    .await;
    let app = crate::common::user_pool(&replica, "app", "App-Password-2024x");
    let err = sqlx::raw_sql("INSERT INTO shelf.books VALUES (9, 'x')")
        .execute(&app)
        .await
        .expect_err("read-only");
    assert!(err.to_string().contains("read-only"), "{err}");
    app.close().await;

    let started = Instant::now();
    let promotion = replica::promote(
        Some(&primary),
        &replica,
        REPL_PASSWORD,
        Duration::from_secs(30),
    )
    .await
    .expect("switch-over");
    eprintln!("timing: switch-over: {:?}", started.elapsed());
    assert_eq!(
        promotion,
        Promotion {
            switched_over: true,
            old_primary_rebuild_needed: false
        }
    );

    // the new primary takes writes, the old one follows
    run(
        replica.app(),
        &["INSERT INTO shelf.books VALUES (4, 'Middlemarch')"],
    )
    .await;
    wait_count(primary.admin(), "4").await;
    let status = replica::status(&primary).await.unwrap();
    assert!(status.io_running && status.sql_running, "{status:?}");
    assert!(replica::status(&replica).await.is_err());

    // the roles survive a restart: my.cnf was written again
    let cnf = |dir: &std::path::Path| fs::read_to_string(dir.join("my.cnf")).unwrap();
    assert!(cnf(primary.dir()).contains("read_only=ON"));
    assert!(cnf(replica.dir()).contains("read_only=OFF"));
    assert!(primary.check_baseline(false).await.unwrap().is_empty());
    assert!(replica.check_baseline(false).await.unwrap().is_empty());

    replica.stop().await;
    primary.stop().await;
}

#[tokio::test]
async fn a_replica_is_failed_over_when_the_primary_is_gone() {
    let site = Site::new();
    let primary = site.start(site.config("primary", 1, false)).await;
    let replica = site.start(site.config("replica", 2, true)).await;
    run(
        primary.app(),
        &[
            "CREATE DATABASE shelf",
            "CREATE TABLE shelf.books (id INT PRIMARY KEY, title TEXT) ENGINE=InnoDB",
        ],
    )
    .await;
    replica::attach(&site.tools, &primary, &replica, &databases(), REPL_PASSWORD)
        .await
        .expect("attach");
    run(
        primary.app(),
        &["INSERT INTO shelf.books VALUES (1, 'Dune')"],
    )
    .await;
    wait_count(replica.admin(), "1").await;

    let old = primary.take();
    old.stop().await.unwrap();
    let started = Instant::now();
    let promotion = replica::promote(None, &replica, REPL_PASSWORD, Duration::from_secs(10))
        .await
        .expect("fail-over");
    eprintln!("timing: fail-over: {:?}", started.elapsed());
    assert_eq!(
        promotion,
        Promotion {
            switched_over: false,
            old_primary_rebuild_needed: true
        }
    );
    run(
        replica.app(),
        &["INSERT INTO shelf.books VALUES (2, 'Emma')"],
    )
    .await;
    assert_eq!(count(replica.admin()).await.as_deref(), Some("2"));

    // a fresh replica of the new primary
    let fresh = site.start(site.config("fresh", 3, true)).await;
    let started = Instant::now();
    replica::attach(&site.tools, &replica, &fresh, &databases(), REPL_PASSWORD)
        .await
        .expect("attach to the new primary");
    eprintln!(
        "timing: attach to the promoted server: {:?}",
        started.elapsed()
    );
    assert_eq!(count(fresh.admin()).await.as_deref(), Some("2"));
    run(
        replica.app(),
        &["INSERT INTO shelf.books VALUES (3, 'Ulysses')"],
    )
    .await;
    wait_count(fresh.admin(), "3").await;

    fresh.stop().await;
    replica.stop().await;
}

#[tokio::test]
async fn a_hung_primary_is_failed_over() {
    // promote with a handle of a primary that no longer answers: fail-over, not an error
    let site = Site::new();
    let primary = site.start(site.config("primary", 1, false)).await;
    let replica = site.start(site.config("replica", 2, true)).await;
    replica::attach(&site.tools, &primary, &replica, &[], REPL_PASSWORD)
        .await
        .expect("attach without databases");
    run(primary.app(), &["CREATE DATABASE later"]).await;
    eventually(
        "the database replicates",
        Duration::from_secs(30),
        || async {
            scalar(
                replica.admin(),
                "SELECT SCHEMA_NAME FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = 'later'",
            )
            .await
        },
    )
    .await;
    let pid = primary.pid().expect("pid");
    unsafe {
        libc::kill(pid as i32, libc::SIGSTOP);
    }
    // A busy machine may let the server answer a moment longer: hung means stopped.
    let stopped = Instant::now();
    while !is_stopped(pid) {
        assert!(
            stopped.elapsed() < Duration::from_secs(10),
            "the primary did not stop"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let started = Instant::now();
    let promotion = replica::promote(
        Some(&primary),
        &replica,
        REPL_PASSWORD,
        Duration::from_secs(5),
    )
    .await
    .expect("fail-over");
    eprintln!(
        "timing: fail-over from a hung primary: {:?}",
        started.elapsed()
    );
    assert!(promotion.old_primary_rebuild_needed);
    unsafe {
        libc::kill(pid as i32, libc::SIGCONT);
    }
    replica.stop().await;
    primary.take().destroy().await.unwrap();
}

/// Whether every thread of process `pid` is stopped (`T` in `/proc/PID/task/*/stat`).
fn is_stopped(pid: u32) -> bool {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return false;
    };
    tasks.flatten().all(|t| {
        std::fs::read_to_string(t.path().join("stat")).is_ok_and(|stat| {
            stat.rfind(')')
                .and_then(|i| stat.get(i + 1..))
                .and_then(|rest| rest.split_whitespace().next())
                .is_some_and(|state| state == "T" || state == "t")
        })
    })
}
