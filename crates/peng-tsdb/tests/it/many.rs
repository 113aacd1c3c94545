//! Many series with few values each, written time-major as a fleet of collectors does: every
//! flush holds one value per series field, files are merged by tier across series, and every
//! value stays findable through flushes, merges, overwrites, reopening, retention and
//! compaction. (`examples/many_series.rs` does the same with 1,000,000 series in release.)

use std::collections::BTreeMap;

use peng_tsdb::{FieldType, FieldValue, NameMap, Point, Query, Tsdb, TsdbOptions};

const SERIES: usize = 6_000;
const STEPS: i64 = 4;

fn host(h: usize) -> String {
    format!("host-{h:05}")
}

fn value(step: i64, h: usize, f: usize) -> f64 {
    (step * 1_000_000 + h as i64 * 10 + f as i64) as f64
}

/// Series `h` has fields `f0`..`f2`, and every 7th series an integer `extra` too.
fn point(step: i64, h: usize) -> Point {
    let mut fields: NameMap<FieldValue> = (0..3)
        .map(|f| (format!("f{f}").into(), FieldValue::Float(value(step, h, f))))
        .collect();
    if h.is_multiple_of(7) {
        fields.insert("extra".into(), FieldValue::Integer(step));
    }
    Point {
        measurement: if h.is_multiple_of(2) { "cpu" } else { "mem" }.into(),
        tags: NameMap::from([
            ("host".into(), host(h).into()),
            ("rack".into(), format!("r{}", h % 10).into()),
        ]),
        fields,
        timestamp_ns: step * 10,
    }
}

fn query(h: usize) -> Query {
    Query {
        measurement: if h.is_multiple_of(2) { "cpu" } else { "mem" }.into(),
        tag_filter: BTreeMap::from([("host".to_string(), host(h))]),
        fields: None,
        start_ns: i64::MIN,
        end_ns: i64::MAX,
    }
}

fn values_per_series(h: usize) -> u64 {
    if h.is_multiple_of(7) {
        4
    } else {
        3
    }
}

fn check(db: &Tsdb, steps: std::ops::Range<i64>, overwritten: bool) {
    let total: u64 = (0..SERIES).map(values_per_series).sum::<u64>() * steps.clone().count() as u64;
    assert_eq!(db.stats().series, SERIES as u64);
    for h in (0..SERIES).step_by(397).chain([SERIES - 1]) {
        let got = db.query(&query(h)).unwrap();
        assert_eq!(got.len() as u64, values_per_series(h), "{}", host(h));
        for column in got {
            let want: Vec<(i64, FieldValue)> = steps
                .clone()
                .map(|s| {
                    let v = match column.field.as_str() {
                        "extra" => FieldValue::Integer(s),
                        f => {
                            let f: usize = f[1..].parse().unwrap();
                            let v = value(s, h, f);
                            // Step 1 of field f0 was written again with its negation.
                            if overwritten && s == 1 && f == 0 {
                                FieldValue::Float(-v)
                            } else {
                                FieldValue::Float(v)
                            }
                        }
                    };
                    (s * 10, v)
                })
                .collect();
            assert_eq!(column.points, want, "{} {}", host(h), column.field);
        }
    }
    // Counted per stored copy: the overwrites may still be stored twice.
    let points = db.stats().points;
    assert!(
        points >= total && points <= total + SERIES as u64,
        "{points} of {total}"
    );
}

#[test]
fn many_series_with_few_values_each() {
    let tmp = tempfile::tempdir().unwrap();
    let opts = || TsdbOptions {
        flush_threshold_points: 2_000,
    };
    let db = Tsdb::open_with(tmp.path(), opts()).unwrap();
    for step in 0..STEPS {
        let points: Vec<Point> = (0..SERIES).map(|h| point(step, h)).collect();
        for batch in points.chunks(500) {
            db.write(batch).unwrap();
        }
    }
    // Overwrite one field of step 1 in every series, after it was flushed.
    let again: Vec<Point> = (0..SERIES)
        .map(|h| {
            let mut p = point(1, h);
            p.fields = NameMap::from([("f0".into(), FieldValue::Float(-value(1, h, 0)))]);
            p
        })
        .collect();
    db.write(&again).unwrap();
    check(&db, 0..STEPS, true);
    assert_eq!(
        db.fields("cpu").unwrap(),
        [
            ("extra".to_string(), FieldType::Integer),
            ("f0".to_string(), FieldType::Float),
            ("f1".to_string(), FieldType::Float),
            ("f2".to_string(), FieldType::Float),
        ]
    );
    assert_eq!(db.series(Some("mem")).unwrap().len(), SERIES / 2);
    let rack = Query {
        tag_filter: BTreeMap::from([("rack".to_string(), "r4".to_string())]),
        fields: Some(vec!["f2".into(), "nope".into()]),
        start_ns: 10,
        end_ns: 30,
        ..query(0)
    };
    let got = db.query(&rack).unwrap();
    assert_eq!(got.len(), SERIES / 10);
    assert!(got.windows(2).all(|w| w[0].key < w[1].key));
    assert!(got.iter().all(|s| s.field == "f2" && s.points.len() == 2));
    drop(db);

    let db = Tsdb::open_with(tmp.path(), opts()).unwrap();
    check(&db, 0..STEPS, true);
    db.delete_before(10).unwrap();
    check(&db, 1..STEPS, true);
    db.compact().unwrap();
    let total: u64 = (0..SERIES).map(values_per_series).sum::<u64>() * (STEPS - 1) as u64;
    assert_eq!(db.stats().points, total, "compaction keeps one copy");
    check(&db, 1..STEPS, true);
    drop(db);
    check(&Tsdb::open(tmp.path()).unwrap(), 1..STEPS, true);
}
