//! Time partitions: a day of received records each; searches pass by days outside their
//! range, `tail` follows the write order across days, retention drops whole days, and a store
//! made before partitions keeps its index as the oldest one.

use std::path::Path;
use std::time::Duration;

use peng_logs::index::{LogStore, SearchRequest};
use peng_logs::LogRecord;

use crate::helpers::{record, team};

const DAY: i64 = 86_400;

/// A record received at `secs` (and stamped with that time).
fn at(secs: i64, message: &str) -> LogRecord {
    record("checkout", "orders", secs, 6, message)
}

fn search(store: &LogStore, q: &str, since: Option<i64>, until: Option<i64>) -> Vec<String> {
    store
        .search(&SearchRequest {
            team: Some(team("checkout")),
            query: q.into(),
            since_ns: since.map(|s| s * 1_000_000_000),
            until_ns: until.map(|s| s * 1_000_000_000),
            limit: 100,
            ..Default::default()
        })
        .unwrap()
        .hits
        .into_iter()
        .map(|r| r.message)
        .collect()
}

fn day_dirs(dir: &Path) -> Vec<String> {
    let mut out: Vec<String> = std::fs::read_dir(dir.join("v3"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    out.sort();
    out
}

const D0: i64 = 20_000 * DAY; // 2024-10-04

#[test]
fn days_are_partitions_searched_by_time_and_tailed_in_write_order() {
    let dir = tempfile::tempdir().unwrap();
    let store = LogStore::open(dir.path()).unwrap();
    // written out of day order: the tail follows the writes, searches the timestamps
    store.add(&[at(D0 + 2 * DAY + 5, "c1")]).unwrap();
    store
        .add(&[at(D0 + 10, "a1"), at(D0 + DAY + 10, "b1")])
        .unwrap();
    store.add(&[at(D0 + 20, "a2")]).unwrap();
    store.commit().unwrap();
    assert_eq!(
        day_dirs(dir.path()),
        ["2024-10-04", "2024-10-05", "2024-10-06"]
    );
    assert_eq!(store.partitions(), 3);
    assert_eq!(search(&store, "", None, None), ["c1", "b1", "a2", "a1"]);
    assert_eq!(
        search(&store, "", Some(D0 + DAY), Some(D0 + 2 * DAY)),
        ["b1"]
    );
    assert_eq!(search(&store, "a1 OR c1", Some(D0), None), ["c1", "a1"]);
    let req = SearchRequest {
        team: Some(team("checkout")),
        limit: 2,
        ..Default::default()
    };
    let mut cursor = 0;
    let mut seen = Vec::new();
    loop {
        let page = store.tail(&req, Some(cursor)).unwrap();
        if page.hits.is_empty() {
            break;
        }
        seen.extend(page.hits.into_iter().map(|r| r.message));
        cursor = page.cursor;
    }
    assert_eq!(seen, ["c1", "a1", "b1", "a2"]);
    let newest = store.tail(&req, None).unwrap();
    let newest: Vec<_> = newest.hits.into_iter().map(|r| r.message).collect();
    assert_eq!(newest, ["b1", "a2"]);
    // reopened: the same, and new writes continue the order
    drop(store);
    let store = LogStore::open(dir.path()).unwrap();
    store.add(&[at(D0 + 30, "a3")]).unwrap();
    store.commit().unwrap();
    let page = store.tail(&req, Some(cursor)).unwrap();
    assert_eq!(page.hits[0].message, "a3");
}

#[test]
fn retention_drops_whole_days_and_deletes_by_query_only_what_keeps_less() {
    let dir = tempfile::tempdir().unwrap();
    let store = LogStore::open(dir.path()).unwrap();
    store
        .add(&[
            at(D0 + 10, "old"),
            at(D0 + 2 * DAY + 10, "recent"),
            record("checkout", "short", D0 + 2 * DAY + 20, 6, "short-lived"),
            record("checkout", "short", D0 + 3 * DAY - 60, 6, "short-but-new"),
        ])
        .unwrap();
    store.commit().unwrap();
    let now = (D0 + 3 * DAY) * 1_000_000_000;
    let policies = vec![(
        team("checkout"),
        "short".to_string(),
        Duration::from_secs(3600),
    )];
    let deleted = store
        .apply_retention(&policies, Duration::from_secs(2 * DAY as u64), now)
        .unwrap();
    assert_eq!(deleted, 2);
    assert_eq!(
        day_dirs(dir.path()),
        ["2024-10-06"],
        "the first day went whole"
    );
    assert_eq!(search(&store, "", None, None), ["short-but-new", "recent"]);
    // nothing more to do: nothing is deleted twice
    assert_eq!(
        store
            .apply_retention(&policies, Duration::from_secs(2 * DAY as u64), now)
            .unwrap(),
        0
    );
}

#[test]
fn a_batch_a_partition_has_committed_is_not_added_again() {
    let dir = tempfile::tempdir().unwrap();
    let store = LogStore::open(dir.path()).unwrap();
    let batch = [at(D0 + 1, "x1"), at(D0 + DAY + 1, "y1")];
    store.add_through(batch.to_vec(), 100).unwrap();
    store.commit().unwrap();
    assert_eq!(store.committed_wal_position(), 100);
    // a replay of the same batch (a crash after the commit, before the WAL was cut)
    store.add_through(batch.to_vec(), 100).unwrap();
    store.add_through(vec![at(D0 + 2, "x2")], 130).unwrap();
    store.commit().unwrap();
    assert_eq!(search(&store, "", None, None), ["y1", "x2", "x1"]);
    drop(store);
    let store = LogStore::open(dir.path()).unwrap();
    assert_eq!(
        store.committed_wal_position(),
        100,
        "the least any day covers"
    );
    store.add_through(vec![at(D0 + 2, "x2")], 130).unwrap();
    store.commit().unwrap();
    assert_eq!(search(&store, "x2", None, None), ["x2"]);
}
