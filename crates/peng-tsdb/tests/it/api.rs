use peng_core::ErrorKind;
use peng_tsdb::{FieldValue, Query, Tsdb, TsdbError};

use crate::helpers::{all, float, key, point, tags};

#[test]
fn write_then_query_returns_values_in_time_order() {
    let tmp = tempfile::tempdir().unwrap();
    let db = Tsdb::open(tmp.path()).unwrap();
    db.write(&[
        float("cpu", "a", 3.0, 30),
        float("cpu", "a", 1.0, 10),
        float("cpu", "b", 2.0, 20),
    ])
    .unwrap();
    db.write(&[float("cpu", "a", 2.0, 20)]).unwrap();
    let got = db.query(&all("cpu")).unwrap();
    assert_eq!(got.len(), 2);
    assert_eq!(got[0].key, key("cpu", &[("host", "a")]));
    assert_eq!(got[0].field, "value");
    assert_eq!(
        got[0].points,
        vec![
            (10, FieldValue::Float(1.0)),
            (20, FieldValue::Float(2.0)),
            (30, FieldValue::Float(3.0))
        ]
    );
    assert_eq!(got[1].key, key("cpu", &[("host", "b")]));
    assert!(db.query(&all("mem")).unwrap().is_empty());
}

#[test]
fn same_series_field_and_time_keeps_the_newest_value() {
    let tmp = tempfile::tempdir().unwrap();
    let db = Tsdb::open(tmp.path()).unwrap();
    db.write(&[float("cpu", "a", 1.0, 10)]).unwrap();
    db.write(&[float("cpu", "a", 2.0, 10), float("cpu", "a", 3.0, 10)])
        .unwrap();
    let got = db.query(&all("cpu")).unwrap();
    assert_eq!(got[0].points, vec![(10, FieldValue::Float(3.0))]);
    assert_eq!(db.stats().points, 1);
}

#[test]
fn query_filters_by_tags_fields_and_half_open_range() {
    let tmp = tempfile::tempdir().unwrap();
    let db = Tsdb::open(tmp.path()).unwrap();
    let fields = |i: i64| {
        vec![
            ("n", FieldValue::Integer(i)),
            ("ok", FieldValue::Boolean(i % 2 == 0)),
        ]
    };
    let mut batch = Vec::new();
    for i in 0..10 {
        batch.push(point(
            "http",
            &[("svc", "a"), ("stage", "prod")],
            &fields(i),
            i * 10,
        ));
        batch.push(point(
            "http",
            &[("svc", "b"), ("stage", "prod")],
            &fields(i),
            i * 10,
        ));
    }
    db.write(&batch).unwrap();
    let q = Query {
        measurement: "http".into(),
        tag_filter: tags(&[("svc", "a")]),
        fields: Some(vec!["n".into(), "missing".into()]),
        start_ns: 20,
        end_ns: 50,
    };
    let got = db.query(&q).unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].field, "n");
    assert_eq!(
        got[0].points,
        vec![
            (20, FieldValue::Integer(2)),
            (30, FieldValue::Integer(3)),
            (40, FieldValue::Integer(4))
        ]
    );
    let everything = db
        .query(&Query {
            tag_filter: tags(&[("stage", "prod")]),
            ..all("http")
        })
        .unwrap();
    assert_eq!(everything.len(), 4);
    let none = db
        .query(&Query {
            tag_filter: tags(&[("stage", "dev")]),
            ..all("http")
        })
        .unwrap();
    assert!(none.is_empty());
    assert!(db
        .query(&Query {
            start_ns: 50,
            end_ns: 50,
            ..all("http")
        })
        .unwrap()
        .is_empty());
}

#[test]
fn all_field_types_round_trip() {
    let tmp = tempfile::tempdir().unwrap();
    let values = vec![
        ("f", FieldValue::Float(-0.0)),
        ("i", FieldValue::Integer(i64::MIN)),
        ("u", FieldValue::Unsigned(u64::MAX)),
        ("b", FieldValue::Boolean(false)),
        ("s", FieldValue::String("héllo, \"world\"\n".into())),
    ];
    {
        let db = Tsdb::open(tmp.path()).unwrap();
        db.write(&[point("m", &[], &values, -5)]).unwrap();
    }
    let db = Tsdb::open(tmp.path()).unwrap();
    let got = db.query(&all("m")).unwrap();
    let mut got: Vec<(String, FieldValue)> = got
        .into_iter()
        .map(|s| (s.field, s.points[0].1.clone()))
        .collect();
    got.sort_by(|a, b| a.0.cmp(&b.0));
    let mut want: Vec<(String, FieldValue)> = values
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
    want.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(got, want);
}

#[test]
fn invalid_points_reject_the_whole_batch() {
    let tmp = tempfile::tempdir().unwrap();
    let db = Tsdb::open(tmp.path()).unwrap();
    let good = float("cpu", "a", 1.0, 1);
    let cases = vec![
        (
            point("", &[], &[("v", FieldValue::Float(1.0))], 1),
            "empty measurement",
        ),
        (point("cpu", &[], &[], 1), "no fields"),
        (float("cpu", "a", f64::NAN, 1), "NaN"),
        (float("cpu", "a", f64::INFINITY, 1), "inf"),
        (
            point("cpu", &[("", "x")], &[("v", FieldValue::Float(1.0))], 1),
            "empty tag key",
        ),
        (
            point("cpu", &[("k", "")], &[("v", FieldValue::Float(1.0))], 1),
            "empty tag value",
        ),
        (
            point("cpu", &[], &[("", FieldValue::Float(1.0))], 1),
            "empty field name",
        ),
    ];
    for (bad, what) in cases {
        let err = db.write(&[good.clone(), bad]).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Invalid, "{what}: {err}");
        let msg = err.to_string();
        assert!(
            msg.chars().all(|c| !c.is_uppercase()) || msg.contains("NaN"),
            "{what}: {msg}"
        );
        assert!(!msg.ends_with('.'), "{msg}");
    }
    assert!(db.query(&all("cpu")).unwrap().is_empty());
    assert_eq!(db.stats().series, 0);
}

#[test]
fn field_type_conflicts_are_rejected_and_named() {
    let tmp = tempfile::tempdir().unwrap();
    let db = Tsdb::open(tmp.path()).unwrap();
    db.write(&[float("cpu", "a", 1.0, 1)]).unwrap();
    let bad = point(
        "cpu",
        &[("host", "a")],
        &[("value", FieldValue::Integer(1))],
        2,
    );
    let err = db.write(&[float("cpu", "b", 1.0, 1), bad]).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Conflict);
    let msg = err.to_string();
    for part in ["cpu", "value", "float", "integer"] {
        assert!(msg.contains(part), "{msg}");
    }
    assert_eq!(db.series(None).unwrap(), vec![key("cpu", &[("host", "a")])]);

    // Two new points of one batch that disagree.
    let a = point("mem", &[], &[("v", FieldValue::String("x".into()))], 1);
    let b = point("mem", &[], &[("v", FieldValue::Boolean(true))], 2);
    assert!(matches!(
        db.write(&[a, b]),
        Err(TsdbError::FieldTypeConflict { .. })
    ));
    // Same field name in another series may have another type.
    db.write(&[point(
        "cpu",
        &[("host", "c")],
        &[("value", FieldValue::Integer(1))],
        2,
    )])
    .unwrap();
}

#[test]
fn series_lists_sorted_keys() {
    let tmp = tempfile::tempdir().unwrap();
    let db = Tsdb::open(tmp.path()).unwrap();
    db.write(&[
        float("mem", "z", 1.0, 1),
        float("cpu", "b", 1.0, 1),
        float("cpu", "a", 1.0, 1),
    ])
    .unwrap();
    assert_eq!(
        db.series(None).unwrap(),
        vec![
            key("cpu", &[("host", "a")]),
            key("cpu", &[("host", "b")]),
            key("mem", &[("host", "z")])
        ]
    );
    assert_eq!(
        db.series(Some("mem")).unwrap(),
        vec![key("mem", &[("host", "z")])]
    );
    assert!(db.series(Some("disk")).unwrap().is_empty());
    assert_eq!(db.stats().series, 3);
}

#[test]
fn retention_deletes_old_values_and_refuses_older_writes() {
    let tmp = tempfile::tempdir().unwrap();
    let db = Tsdb::open(tmp.path()).unwrap();
    let batch: Vec<_> = (0..100).map(|i| float("cpu", "a", i as f64, i)).collect();
    db.write(&batch).unwrap();
    assert_eq!(db.delete_before(40).unwrap(), 40);
    assert_eq!(db.delete_before(30).unwrap(), 0);
    let got = db.query(&all("cpu")).unwrap();
    assert_eq!(got[0].points.first().map(|p| p.0), Some(40));
    assert_eq!(got[0].points.len(), 60);
    let err = db.write(&[float("cpu", "a", 1.0, 39)]).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Invalid);
    db.write(&[float("cpu", "a", 1.0, 40)]).unwrap();
    drop(db);
    let db = Tsdb::open(tmp.path()).unwrap();
    assert_eq!(db.query(&all("cpu")).unwrap()[0].points.len(), 60);
}

#[test]
fn a_directory_is_opened_once() {
    let tmp = tempfile::tempdir().unwrap();
    let db = Tsdb::open(tmp.path()).unwrap();
    let err = Tsdb::open(tmp.path()).err().unwrap();
    assert_eq!(err.kind(), ErrorKind::Unavailable);
    drop(db);
    Tsdb::open(tmp.path()).unwrap();
}

#[test]
fn handle_is_send_and_sync_and_shared_by_threads() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Tsdb>();
    let tmp = tempfile::tempdir().unwrap();
    let db = std::sync::Arc::new(Tsdb::open(tmp.path()).unwrap());
    let handles: Vec<_> = (0..4)
        .map(|t| {
            let db = db.clone();
            std::thread::spawn(move || {
                for i in 0..50 {
                    db.write(&[float("cpu", &format!("h{t}"), i as f64, i)])
                        .unwrap();
                    db.query(&all("cpu")).unwrap();
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    assert_eq!(db.stats().points, 200);
}
