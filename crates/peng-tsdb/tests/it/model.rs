//! Property test: any sequence of writes, flushes, reopens, compactions and retention runs
//! reads back like a plain map keyed by series, field and timestamp.

use std::collections::BTreeMap;

use peng_tsdb::{FieldValue, Name, Point, Query, SeriesKey, Tsdb, TsdbOptions};
use proptest::prelude::*;

use crate::helpers::tags;

#[derive(Debug, Clone)]
enum Op {
    Write(Vec<Point>),
    Flush,
    Reopen,
    Compact,
    DeleteBefore(i64),
    Query {
        measurement: usize,
        host: Option<usize>,
        start: i64,
        end: i64,
    },
}

const MEASUREMENTS: [&str; 2] = ["cpu", "disk"];
const HOSTS: [&str; 3] = ["a", "b", "c"];

fn value_for(field: usize, raw: i64) -> (Name, FieldValue) {
    // The field name fixes the type, so generated batches never conflict.
    match field {
        0 => ("f".into(), FieldValue::Float(raw as f64 / 8.0)),
        1 => ("i".into(), FieldValue::Integer(raw)),
        2 => ("u".into(), FieldValue::Unsigned(raw.unsigned_abs())),
        3 => ("b".into(), FieldValue::Boolean(raw % 2 == 0)),
        _ => ("s".into(), FieldValue::String(format!("s{raw}"))),
    }
}

fn arb_point() -> impl Strategy<Value = Point> {
    (
        0..2usize,
        0..3usize,
        proptest::collection::btree_map(0..5usize, -1000i64..1000, 1..4),
        -50i64..250,
    )
        .prop_map(|(m, h, fields, ts)| Point {
            measurement: MEASUREMENTS[m].into(),
            tags: [("host".into(), HOSTS[h].into())].into(),
            fields: fields
                .into_iter()
                .map(|(f, raw)| value_for(f, raw))
                .collect(),
            timestamp_ns: ts,
        })
}

fn arb_op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => proptest::collection::vec(arb_point(), 1..40).prop_map(Op::Write),
        2 => Just(Op::Flush),
        1 => Just(Op::Reopen),
        1 => Just(Op::Compact),
        1 => (-50i64..150).prop_map(Op::DeleteBefore),
        2 => (0..2usize, proptest::option::of(0..3usize), -60i64..260, -60i64..260)
            .prop_map(|(measurement, host, start, end)| Op::Query { measurement, host, start, end }),
    ]
}

type Model = BTreeMap<(SeriesKey, String), BTreeMap<i64, FieldValue>>;
type Rows = Vec<(SeriesKey, String, Vec<(i64, FieldValue)>)>;

fn expected(model: &Model, q: &Query) -> Rows {
    model
        .iter()
        .filter(|((k, _), _)| k.measurement == q.measurement)
        .filter(|((k, _), _)| {
            q.tag_filter
                .iter()
                .all(|(tk, tv)| k.tags.get(tk) == Some(tv))
        })
        .map(|((k, f), pts)| {
            let pts: Vec<(i64, FieldValue)> = if q.start_ns < q.end_ns {
                pts.range(q.start_ns..q.end_ns)
                    .map(|(t, v)| (*t, v.clone()))
                    .collect()
            } else {
                Vec::new()
            };
            (k.clone(), f.clone(), pts)
        })
        .filter(|(_, _, pts)| !pts.is_empty())
        .collect()
}

fn run(ops: Vec<Op>) -> Result<(), TestCaseError> {
    let tmp = tempfile::tempdir().unwrap();
    let options = TsdbOptions {
        flush_threshold_points: 150,
    };
    let mut db = Some(Tsdb::open_with(tmp.path(), options.clone()).unwrap());
    let mut model: Model = BTreeMap::new();
    let mut cutoff = i64::MIN;
    for op in ops {
        let current = db.as_ref().unwrap();
        match op {
            Op::Write(points) => {
                let refused = points.iter().any(|p| p.timestamp_ns < cutoff);
                let res = current.write(&points);
                prop_assert_eq!(res.is_err(), refused, "{:?}", res);
                if !refused {
                    for p in points {
                        let key = SeriesKey {
                            measurement: p.measurement.to_string(),
                            tags: p
                                .tags
                                .iter()
                                .map(|(k, v)| (k.to_string(), v.to_string()))
                                .collect(),
                        };
                        for (f, v) in p.fields {
                            model
                                .entry((key.clone(), f.to_string()))
                                .or_default()
                                .insert(p.timestamp_ns, v);
                        }
                    }
                }
            }
            Op::Flush => current.flush().unwrap(),
            Op::Compact => current.compact().unwrap(),
            Op::Reopen => {
                drop(db.take()); // release the directory lock first
                db = Some(Tsdb::open_with(tmp.path(), options.clone()).unwrap());
            }
            Op::DeleteBefore(t) => {
                let want: u64 = if t > cutoff {
                    model
                        .values_mut()
                        .map(|pts| {
                            let keep = pts.split_off(&t);
                            let n = pts.len() as u64;
                            *pts = keep;
                            n
                        })
                        .sum()
                } else {
                    0
                };
                cutoff = cutoff.max(t);
                let removed = current.delete_before(t).unwrap();
                // Copies overwritten after a flush are counted per copy, so at least.
                prop_assert!(removed >= want, "removed {} want {}", removed, want);
            }
            Op::Query {
                measurement,
                host,
                start,
                end,
            } => {
                let q = Query {
                    measurement: MEASUREMENTS[measurement].into(),
                    tag_filter: host
                        .map(|h| tags(&[("host", HOSTS[h])]))
                        .unwrap_or_default(),
                    fields: None,
                    start_ns: start,
                    end_ns: end,
                };
                let got: Vec<_> = current
                    .query(&q)
                    .unwrap()
                    .into_iter()
                    .map(|s| (s.key, s.field, s.points))
                    .collect();
                prop_assert_eq!(got, expected(&model, &q));
            }
        }
        // The full picture after every step.
        let current = db.as_ref().unwrap();
        for m in MEASUREMENTS {
            let q = Query {
                measurement: m.into(),
                start_ns: i64::MIN,
                end_ns: i64::MAX,
                ..Query::default()
            };
            let got: Vec<_> = current
                .query(&q)
                .unwrap()
                .into_iter()
                .map(|s| (s.key, s.field, s.points))
                .collect();
            prop_assert_eq!(got, expected(&model, &q));
        }
    }
    // Without overwritten copies on disk, the count is exact after a compaction.
    let current = db.as_ref().unwrap();
    current.compact().unwrap();
    let stored: u64 = model.values().map(|p| p.len() as u64).sum();
    prop_assert_eq!(current.stats().points, stored);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]
    #[test]
    fn store_behaves_like_a_map(ops in proptest::collection::vec(arb_op(), 1..30)) {
        run(ops)?;
    }
}
