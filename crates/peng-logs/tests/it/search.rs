//! Search over a real index: the query language, filters, team isolation, tail, retention.

use std::time::Duration;

use peng_logs::index::{LogStore, SearchRequest};
use peng_logs::{FieldValue, LogError};

use crate::helpers::{record, team, with_field};

fn store() -> (tempfile::TempDir, LogStore) {
    let dir = tempfile::tempdir().unwrap();
    let store = LogStore::open(dir.path()).unwrap();
    let mut full = record("checkout", "orders", 100, 3, "payment failed for order");
    full.full_message = Some("java.lang.IllegalStateException: card declined".into());
    store
        .add(&[
            with_field(
                with_field(full, "user_id", FieldValue::I64(42)),
                "http.status",
                FieldValue::I64(500),
            ),
            with_field(
                record("checkout", "orders", 101, 6, "order 17 shipped to customer"),
                "took_ms",
                FieldValue::F64(250.5),
            ),
            with_field(
                record("checkout", "cart", 102, 4, "cart timeout after 30s"),
                "user",
                FieldValue::Str("Alice.Smith".into()),
            ),
            with_field(
                record("checkout", "cart", 103, 6, "disk full on node-3"),
                "took_ms",
                FieldValue::I64(12),
            ),
            record(
                "search",
                "index",
                104,
                3,
                "payment service secret of team search",
            ),
        ])
        .unwrap();
    store.commit().unwrap();
    (dir, store)
}

fn messages(store: &LogStore, team_name: Option<&str>, q: &str) -> Vec<String> {
    let resp = store
        .search(&SearchRequest {
            team: team_name.map(team),
            query: q.to_string(),
            limit: 100,
            ..Default::default()
        })
        .unwrap_or_else(|e| panic!("query {q:?} failed: {e}"));
    assert_eq!(resp.total, resp.hits.len(), "{q}");
    resp.hits.into_iter().map(|r| r.message).collect()
}

fn count(store: &LogStore, q: &str) -> usize {
    messages(store, Some("checkout"), q).len()
}

#[test]
fn words_phrases_and_default_or() {
    let (_d, s) = store();
    assert_eq!(count(&s, "payment"), 1);
    assert_eq!(count(&s, "PAYMENT"), 1);
    // Terms next to each other are OR-ed, as in Graylog.
    assert_eq!(count(&s, "payment shipped"), 2);
    assert_eq!(count(&s, r#""order 17 shipped""#), 1);
    assert_eq!(count(&s, r#""17 order""#), 0);
    // Bare words also search the full message.
    assert_eq!(count(&s, "declined"), 1);
    assert_eq!(count(&s, "full_message:declined"), 1);
    assert_eq!(count(&s, "message:declined"), 0);
    assert_eq!(count(&s, ""), 4);
    assert_eq!(count(&s, "*"), 4);
}

#[test]
fn hits_are_newest_first_and_whole() {
    let (_d, s) = store();
    let resp = s
        .search(&SearchRequest {
            team: Some(team("checkout")),
            query: "service:orders".into(),
            limit: 10,
            ..Default::default()
        })
        .unwrap();
    assert_eq!(resp.hits.len(), 2);
    assert_eq!(resp.hits[0].message, "order 17 shipped to customer");
    let old = &resp.hits[1];
    assert_eq!(old.timestamp_ns, 100_000_000_000);
    assert_eq!(old.level, 3);
    assert_eq!(old.host, "web-1");
    assert_eq!(old.fields.get("user_id"), Some(&FieldValue::I64(42)));
    assert_eq!(old.fields.get("http.status"), Some(&FieldValue::I64(500)));
    assert!(old
        .full_message
        .as_deref()
        .unwrap()
        .contains("card declined"));
    assert_eq!(
        resp.hits[0].fields.get("took_ms"),
        Some(&FieldValue::F64(250.5))
    );
}

#[test]
fn fields_columns_and_extras() {
    let (_d, s) = store();
    assert_eq!(count(&s, "level:3"), 1);
    assert_eq!(count(&s, "level:6"), 2);
    assert_eq!(count(&s, "service:cart"), 2);
    assert_eq!(count(&s, "host:web-1"), 4);
    assert_eq!(count(&s, "source:gelf-http"), 4);
    assert_eq!(count(&s, "user_id:42"), 1);
    assert_eq!(count(&s, "user_id:43"), 0);
    assert_eq!(count(&s, "http.status:500"), 1);
    assert_eq!(count(&s, "user:alice.smith"), 1);
    assert_eq!(count(&s, r#"user:"Alice.Smith""#), 1);
    assert_eq!(count(&s, "took_ms:250.5"), 1);
    assert_eq!(count(&s, "took_ms:12"), 1);
    assert_eq!(count(&s, "unknown_field:x"), 0);
}

#[test]
fn boolean_operators() {
    let (_d, s) = store();
    assert_eq!(count(&s, "order AND payment"), 1);
    assert_eq!(count(&s, "order AND NOT payment"), 1);
    assert_eq!(count(&s, "order -payment"), 1);
    assert_eq!(count(&s, "NOT service:cart"), 2);
    assert_eq!(count(&s, "(payment OR disk) AND level:3"), 1);
    assert_eq!(count(&s, "service:(cart OR orders) AND level:6"), 2);
    assert_eq!(count(&s, "+disk shipped"), 1);
}

#[test]
fn ranges_wildcards_and_exists() {
    let (_d, s) = store();
    assert_eq!(count(&s, "level:[3 TO 4]"), 2);
    assert_eq!(count(&s, "level:{3 TO 6]"), 3);
    assert_eq!(count(&s, "level:<4"), 1);
    assert_eq!(count(&s, "took_ms:>=100"), 1);
    assert_eq!(count(&s, "took_ms:[10 TO 20]"), 1);
    assert_eq!(count(&s, "took_ms:[* TO 1000]"), 2);
    assert_eq!(count(&s, "http.status:[500 TO 599]"), 1);
    assert_eq!(count(&s, "timestamp:[101000000000 TO 102000000000]"), 2);
    assert_eq!(count(&s, "pay*"), 1);
    assert_eq!(count(&s, "ship?ed"), 1);
    assert_eq!(count(&s, "service:car*"), 2);
    assert_eq!(count(&s, "user:ali*"), 1);
    assert_eq!(count(&s, "user:bob*"), 0);
    assert_eq!(count(&s, "_exists_:user_id"), 1);
    assert_eq!(count(&s, "_exists_:took_ms"), 2);
    assert_eq!(count(&s, "_exists_:full_message"), 1);
    assert_eq!(count(&s, "took_ms:*"), 2);
    assert_eq!(count(&s, "NOT _exists_:took_ms"), 2);
}

#[test]
fn filters_and_time_ranges() {
    let (_d, s) = store();
    let req = |since: Option<i64>, until: Option<i64>, service: Option<&str>| SearchRequest {
        team: Some(team("checkout")),
        query: String::new(),
        service: service.map(str::to_string),
        stage: Some("production".into()),
        since_ns: since.map(|s| s * 1_000_000_000),
        until_ns: until.map(|s| s * 1_000_000_000),
        limit: 100,
    };
    assert_eq!(s.search(&req(Some(101), None, None)).unwrap().total, 3);
    assert_eq!(s.search(&req(Some(101), Some(103), None)).unwrap().total, 2);
    assert_eq!(
        s.search(&req(None, Some(101), Some("orders")))
            .unwrap()
            .total,
        1
    );
    let mut staged = req(None, None, None);
    staged.stage = Some("integration".into());
    assert_eq!(s.search(&staged).unwrap().total, 0);
    let mut counted = req(None, None, None);
    counted.limit = 0;
    let resp = s.search(&counted).unwrap();
    assert_eq!((resp.total, resp.hits.len()), (4, 0));
    counted.limit = 2;
    let resp = s.search(&counted).unwrap();
    assert_eq!((resp.total, resp.hits.len()), (4, 2));
}

#[test]
fn a_team_never_sees_another_teams_records() {
    let (_d, s) = store();
    assert_eq!(
        messages(&s, Some("checkout"), "team:search"),
        Vec::<String>::new()
    );
    assert_eq!(
        messages(&s, Some("checkout"), "team:search OR payment").len(),
        1
    );
    assert_eq!(messages(&s, Some("checkout"), "secret").len(), 0);
    assert_eq!(messages(&s, Some("checkout"), "NOT team:checkout").len(), 0);
    assert_eq!(
        messages(&s, Some("search"), "*"),
        vec!["payment service secret of team search".to_string()]
    );
    // An admin (no team) sees all.
    assert_eq!(messages(&s, None, "payment").len(), 2);
    assert_eq!(messages(&s, None, "team:search").len(), 1);
}

#[test]
fn bad_queries_are_clear_errors() {
    let (_d, s) = store();
    let err = |q: &str| {
        s.search(&SearchRequest {
            team: Some(team("checkout")),
            query: q.to_string(),
            limit: 10,
            ..Default::default()
        })
        .unwrap_err()
    };
    match err("level:high") {
        LogError::Query { position, message } => {
            assert_eq!(position, 0);
            assert!(message.contains("level must be a number"), "{message}");
        }
        other => panic!("{other}"),
    }
    assert!(matches!(err("took_ms:[a TO b]"), LogError::Query { .. }));
    assert!(matches!(err("(a"), LogError::Query { position: 0, .. }));
    assert!(matches!(err("level:3*"), LogError::Query { .. }));
    assert_eq!(err(&"x".repeat(5000)).kind(), peng_core::ErrorKind::Invalid);
}

#[test]
fn tail_follows_without_gaps() {
    let (_d, s) = store();
    let req = SearchRequest {
        team: Some(team("checkout")),
        limit: 2,
        ..Default::default()
    };
    let first = s.tail(&req, None).unwrap();
    assert_eq!(first.hits.len(), 2);
    assert_eq!(first.hits[1].message, "disk full on node-3");
    let none = s.tail(&req, Some(first.cursor)).unwrap();
    assert!(none.hits.is_empty());
    assert_eq!(none.cursor, first.cursor);
    // Records with an older timestamp still come next: the cursor is write order.
    s.add(&[
        record("checkout", "cart", 50, 6, "late one"),
        record("checkout", "cart", 51, 6, "late two"),
        record("checkout", "cart", 52, 6, "late three"),
    ])
    .unwrap();
    s.commit().unwrap();
    let next = s.tail(&req, Some(first.cursor)).unwrap();
    assert_eq!(
        next.hits
            .iter()
            .map(|r| r.message.as_str())
            .collect::<Vec<_>>(),
        ["late one", "late two"]
    );
    let last = s.tail(&req, Some(next.cursor)).unwrap();
    assert_eq!(last.hits.len(), 1);
    assert_eq!(last.hits[0].message, "late three");
}

#[test]
fn retention_deletes_old_records_of_the_right_service_only() {
    let dir = tempfile::tempdir().unwrap();
    let s = LogStore::open(dir.path()).unwrap();
    let day = 86_400;
    let now = 100 * day;
    s.add(&[
        record("checkout", "orders", now - 10 * day, 6, "orders ten days"),
        record("checkout", "orders", now - 2 * day, 6, "orders two days"),
        record("checkout", "cart", now - 10 * day, 6, "cart ten days"),
        record(
            "search",
            "orders",
            now - 10 * day,
            6,
            "other team orders ten days",
        ),
        record(
            "search",
            "index",
            now - 40 * day,
            6,
            "undeclared forty days",
        ),
        record(
            "search",
            "index",
            now - 20 * day,
            6,
            "undeclared twenty days",
        ),
    ])
    .unwrap();
    s.commit().unwrap();
    let policies = vec![
        (
            team("checkout"),
            "orders".to_string(),
            Duration::from_secs(7 * 86_400),
        ),
        (
            team("checkout"),
            "cart".to_string(),
            Duration::from_secs(14 * 86_400),
        ),
        (
            team("search"),
            "orders".to_string(),
            Duration::from_secs(14 * 86_400),
        ),
    ];
    let deleted = s
        .apply_retention(
            &policies,
            Duration::from_secs(30 * 86_400),
            now * 1_000_000_000,
        )
        .unwrap();
    assert_eq!(deleted, 2);
    let mut left = messages(&s, None, "");
    left.sort();
    assert_eq!(
        left,
        [
            "cart ten days",
            "orders two days",
            "other team orders ten days",
            "undeclared twenty days"
        ]
    );
    assert_eq!(
        s.apply_retention(
            &policies,
            Duration::from_secs(30 * 86_400),
            now * 1_000_000_000
        )
        .unwrap(),
        0
    );
}

#[test]
fn committed_records_survive_reopening() {
    let dir = tempfile::tempdir().unwrap();
    {
        let s = LogStore::open(dir.path()).unwrap();
        s.add(&[record("checkout", "orders", 1, 6, "kept across restarts")])
            .unwrap();
        s.commit().unwrap();
        s.add(&[record("checkout", "orders", 2, 6, "never committed")])
            .unwrap();
    }
    let s = LogStore::open(dir.path()).unwrap();
    assert_eq!(messages(&s, Some("checkout"), ""), ["kept across restarts"]);
    // Sequence numbers continue after a restart, so a tail cursor stays valid.
    let req = SearchRequest {
        team: Some(team("checkout")),
        limit: 10,
        ..Default::default()
    };
    let cursor = s.tail(&req, None).unwrap().cursor;
    s.add(&[record("checkout", "orders", 3, 6, "after restart")])
        .unwrap();
    s.commit().unwrap();
    let next = s.tail(&req, Some(cursor)).unwrap();
    assert_eq!(next.hits.len(), 1);
    assert_eq!(next.hits[0].message, "after restart");
}

#[test]
fn per_team_counts_and_disk_size_for_cost_reporting() {
    let (_d, s) = store();
    assert_eq!(s.count_team(&team("checkout")).unwrap(), 4);
    assert_eq!(s.count_team(&team("search")).unwrap(), 1);
    assert_eq!(s.count_team(&team("nobody")).unwrap(), 0);
    assert!(s.disk_bytes() > 0);
}
