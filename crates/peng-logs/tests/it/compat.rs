//! The on-disk index of format version 1, written once by this code and kept in
//! `fixtures/index-v1/`: every later version must open it and find the same records, so a
//! change of schema or tokenizer cannot silently strand a data directory.
//! Regenerate (only on purpose, with a new format version) with `UPDATE_INDEX_FIXTURE=1`.

use std::path::{Path, PathBuf};

use peng_logs::index::{LogStore, SearchRequest};
use peng_logs::FieldValue;

use crate::helpers::{record, team, with_field};

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/it/fixtures/index-v1")
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for e in std::fs::read_dir(from).expect("read fixture") {
        let e = e.expect("entry");
        std::fs::copy(e.path(), to.join(e.file_name())).expect("copy");
    }
}

#[test]
fn an_index_of_format_1_opens_and_answers_the_same() {
    if std::env::var_os("UPDATE_INDEX_FIXTURE").is_some() {
        let _ = std::fs::remove_dir_all(fixture());
        let store = LogStore::open(&fixture()).expect("create fixture");
        let records = vec![
            with_field(
                record(
                    "books",
                    "bookshelf",
                    1_795_000_000,
                    6,
                    "listed books for order 4711",
                ),
                "order_id",
                FieldValue::I64(4711),
            ),
            record(
                "books",
                "bookshelf",
                1_795_000_001,
                3,
                "timeout talking to the warehouse",
            ),
            record("music", "player", 1_795_000_002, 6, "played a record"),
        ];
        store.add(&records).expect("add");
        store.commit().expect("commit");
    }
    let tmp = tempfile::tempdir().expect("tmp");
    copy_dir(&fixture(), tmp.path());
    let store = LogStore::open(tmp.path()).expect("a version 1 index opens");
    let search = |team_name: Option<&str>, query: &str| {
        let req = SearchRequest {
            team: team_name.map(team),
            query: query.to_string(),
            limit: 10,
            ..Default::default()
        };
        store.search(&req).expect("search")
    };
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

    // New records go to a time partition beside it; searches see both.
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
    // Retention empties the version 1 index: its files go, the partition stays.
    let now = 1_796_000_100 * 1_000_000_000;
    let deleted = store
        .apply_retention(&[], std::time::Duration::from_secs(3 * 86_400), now)
        .expect("retention");
    assert_eq!(deleted, 3);
    assert_eq!(store.partitions(), 1);
    assert!(!tmp.path().join("meta.json").exists());
    assert_eq!(store.count(), 1);
    drop(store);
    let store = LogStore::open(tmp.path()).expect("reopen without the old index");
    assert_eq!(store.count(), 1);
}
