//! Stores of older layouts, written once by the code of their time and kept as fixtures:
//! `fixtures/index-v1/` (one index, layout 1) and `fixtures/store-v2/` (day partitions with
//! FST dictionaries, layout 2). Every later version must open them, migrate them and find the
//! same records, so a change of schema, tokenizer or dictionary cannot silently strand a data
//! directory.

use std::path::{Path, PathBuf};

use peng_logs::index::{LogStore, SearchRequest};
use peng_logs::FieldValue;

use crate::helpers::{record, team};

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/it/fixtures/index-v1")
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for e in std::fs::read_dir(from).expect("read fixture") {
        let e = e.expect("entry");
        if e.path().is_dir() {
            copy_dir(&e.path(), &to.join(e.file_name()));
        } else {
            std::fs::copy(e.path(), to.join(e.file_name())).expect("copy");
        }
    }
}

fn search(
    store: &LogStore,
    team_name: Option<&str>,
    query: &str,
) -> peng_logs::index::SearchResponse {
    let req = SearchRequest {
        team: team_name.map(team),
        query: query.to_string(),
        limit: 10,
        ..Default::default()
    };
    store.search(&req).expect("search")
}

/// The files under `dir`, relative, sorted.
fn files(dir: &Path) -> Vec<String> {
    fn walk(base: &Path, dir: &Path, out: &mut Vec<String>) {
        for e in std::fs::read_dir(dir).expect("read dir") {
            let p = e.expect("entry").path();
            if p.is_dir() {
                walk(base, &p, out);
            } else if let Ok(rel) = p.strip_prefix(base) {
                out.push(rel.display().to_string());
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}

#[test]
fn an_index_of_format_1_opens_and_answers_the_same() {
    let tmp = tempfile::tempdir().expect("tmp");
    copy_dir(&fixture(), tmp.path());
    let store = LogStore::open(tmp.path()).expect("a version 1 index opens");
    assert!(
        !tmp.path().join("meta.json").exists(),
        "the version 1 index is migrated and removed"
    );
    let search = |team_name: Option<&str>, query: &str| search(&store, team_name, query);
    let hit = search(Some("books"), "order_id:4711");
    assert_eq!(hit.total, 1);
    assert_eq!(hit.hits[0].message, "listed books for order 4711");
    assert_eq!(hit.hits[0].timestamp_ns, 1_795_000_000_000_000_000);
    assert_eq!(
        hit.hits[0].fields.get("order_id"),
        Some(&FieldValue::I64(4711))
    );
    assert_eq!(search(Some("books"), "warehouse AND level:3").total, 1);
    assert_eq!(
        search(Some("books"), "played").total,
        0,
        "teams stay apart in old indexes too"
    );
    assert_eq!(search(None, "").total, 3);

    // New records go to a time partition of their own day; searches see both.
    store
        .add(&[record(
            "books",
            "bookshelf",
            1_796_000_000,
            6,
            "listed more books",
        )])
        .expect("add");
    store.commit().expect("commit");
    assert_eq!(search(Some("books"), "listed").total, 2);
    drop(store);
    let store = LogStore::open(tmp.path()).expect("reopen");
    assert_eq!(store.partitions(), 2);
    assert_eq!(
        store
            .search(&SearchRequest {
                team: Some(team("books")),
                query: "listed".into(),
                limit: 10,
                ..Default::default()
            })
            .expect("search")
            .total,
        2
    );
    // Retention drops the migrated day whole.
    let now = 1_796_000_100 * 1_000_000_000;
    let deleted = store
        .apply_retention(&[], std::time::Duration::from_secs(3 * 86_400), now)
        .expect("retention");
    assert_eq!(deleted, 3);
    assert_eq!(store.partitions(), 1);
    assert_eq!(store.count(), 1);
    drop(store);
    let store = LogStore::open(tmp.path()).expect("reopen");
    assert_eq!(store.count(), 1);
}

fn store_v2() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/it/fixtures/store-v2")
}

/// What the layout 2 fixture holds, checked on a store that was migrated from it.
fn answers_like_the_v2_fixture(store: &LogStore) {
    assert_eq!(store.count(), 5);
    assert_eq!(store.partitions(), 2);
    let hit = search(
        store,
        Some("books"),
        "request_id:8d1e5a4c-2f0b-4c1e-9a51-0c6f1f1c2a77",
    );
    assert_eq!(hit.total, 1);
    assert_eq!(hit.hits[0].message, "listed books for order 4711");
    assert_eq!(
        hit.hits[0].fields.get("order_id"),
        Some(&FieldValue::I64(4711))
    );
    let stack = search(store, Some("books"), "SocketTimeoutException");
    assert_eq!(stack.total, 1);
    assert!(stack.hits[0]
        .full_message
        .as_deref()
        .is_some_and(|f| f.contains("Warehouse.java:42")));
    assert_eq!(search(store, Some("music"), "took_ms:>12").total, 1);
    assert_eq!(search(store, Some("music"), "bookshelf OR books").total, 0);
    // the write order survives: tail returns the records as they were written
    let tail = store
        .tail(
            &SearchRequest {
                team: None,
                limit: 10,
                ..Default::default()
            },
            None,
        )
        .expect("tail");
    let messages: Vec<_> = tail.hits.iter().map(|r| r.message.as_str()).collect();
    assert_eq!(
        messages,
        [
            "listed books for order 4711",
            "timeout talking to the warehouse",
            "played a record",
            "listed more books the next day",
            "skipped a record"
        ]
    );
    // the WAL positions the old partitions covered carry over: the 18th committed through
    // 1000 (nothing was added to it later), the 19th through 2000; replay starts at the least
    assert_eq!(store.committed_wal_position(), 1000);
}

#[test]
fn a_store_of_layout_2_is_migrated_with_every_record_its_order_and_wal_position() {
    let tmp = tempfile::tempdir().expect("tmp");
    copy_dir(&store_v2(), tmp.path());
    let store = LogStore::open(tmp.path()).expect("a layout 2 store opens");
    answers_like_the_v2_fixture(&store);
    assert!(
        !tmp.path().join("v2").exists(),
        "the old partitions are removed"
    );
    assert_eq!(
        std::fs::read_to_string(tmp.path().join("peng-logs-schema"))
            .expect("layout")
            .trim(),
        "3"
    );
    // a new record takes the next seq and the migrated store reopens as it is
    store
        .add(&[record(
            "books",
            "bookshelf",
            1_795_100_002,
            6,
            "listed again",
        )])
        .expect("add");
    store.commit().expect("commit");
    drop(store);
    let store = LogStore::open(tmp.path()).expect("reopen");
    assert_eq!(store.count(), 6);
    let tail = store
        .tail(
            &SearchRequest {
                limit: 10,
                ..Default::default()
            },
            None,
        )
        .expect("tail");
    assert_eq!(
        tail.hits.last().map(|r| r.message.as_str()),
        Some("listed again")
    );
}

#[test]
fn a_migration_cut_short_starts_over_and_one_whose_clean_up_was_cut_short_is_finished() {
    // cut short while building: the half-built partitions are thrown away
    let tmp = tempfile::tempdir().expect("tmp");
    copy_dir(&store_v2(), tmp.path());
    let junk = tmp.path().join("migrating/2026-11-18");
    std::fs::create_dir_all(&junk).expect("mkdir");
    std::fs::write(junk.join("meta.json"), "half written").expect("write");
    let store = LogStore::open(tmp.path()).expect("opens");
    answers_like_the_v2_fixture(&store);
    assert!(!tmp.path().join("migrating").exists());
    drop(store);

    // cut short after the switch, before the old partitions were removed: they go, unread
    let done = tempfile::tempdir().expect("tmp");
    copy_dir(tmp.path(), done.path());
    copy_dir(&store_v2().join("v2"), &done.path().join("v2"));
    std::fs::write(done.path().join("peng-logs-schema"), "2\n").expect("write");
    let before = files(&done.path().join("v3"));
    let store = LogStore::open(done.path()).expect("opens");
    answers_like_the_v2_fixture(&store);
    assert!(!done.path().join("v2").exists());
    assert_eq!(
        files(&done.path().join("v3")),
        before,
        "nothing indexed twice"
    );
}

#[test]
fn a_store_of_an_unknown_layout_is_refused_by_name() {
    let tmp = tempfile::tempdir().expect("tmp");
    std::fs::write(tmp.path().join("peng-logs-schema"), "9\n").expect("write");
    let err = LogStore::open(tmp.path()).expect_err("refused").to_string();
    assert!(err.contains("layout 9"), "{err}");
    assert!(err.contains(&tmp.path().display().to_string()), "{err}");
}
