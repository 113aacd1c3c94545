//! Concurrent writers: group commit shares syncs but keeps every promise of a single writer.

use std::sync::{Arc, Barrier};
use std::thread;

use peng_core::ErrorKind;
use peng_tsdb::{FieldType, FieldValue, Tsdb, TsdbOptions};

use crate::helpers::{all, point};

const THREADS: usize = 8;
const BATCHES: usize = 40;
const POINTS: usize = 50;

fn expected_values(tsdb: &Tsdb) -> Vec<(String, Vec<(i64, FieldValue)>)> {
    let mut got: Vec<(String, Vec<(i64, FieldValue)>)> = tsdb
        .query(&all("cpu"))
        .unwrap()
        .into_iter()
        .map(|s| (format!("{}/{}", s.key.tags["host"], s.field), s.points))
        .collect();
    got.sort_by(|a, b| a.0.cmp(&b.0));
    got
}

/// Every acknowledged value of 8 threads writing into the same series at once is there, in
/// memory, after flushes and after a reopen; the threads shared syncs.
#[test]
fn concurrent_writers_lose_nothing_and_share_syncs() {
    let dir = tempfile::tempdir().unwrap();
    let options = TsdbOptions {
        // Flushes happen while other writers are between append and apply.
        flush_threshold_points: 3_000,
    };
    let tsdb = Arc::new(Tsdb::open_with(dir.path(), options.clone()).unwrap());
    let start = Arc::new(Barrier::new(THREADS));
    let handles: Vec<_> = (0..THREADS)
        .map(|t| {
            let (tsdb, start) = (tsdb.clone(), start.clone());
            thread::spawn(move || {
                start.wait();
                for b in 0..BATCHES {
                    let batch: Vec<_> = (0..POINTS)
                        .map(|i| {
                            // Each thread has its own timestamps, in the same 10 series.
                            let ts = ((b * POINTS + i) * THREADS + t) as i64;
                            let host = format!("h{}", i % 10);
                            point(
                                "cpu",
                                &[("host", &host)],
                                &[
                                    ("idle", FieldValue::Float(ts as f64 / 2.0)),
                                    ("n", FieldValue::Integer(ts)),
                                ],
                                ts,
                            )
                        })
                        .collect();
                    tsdb.write(&batch).unwrap();
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    let total = (THREADS * BATCHES * POINTS) as i64;
    let stats = tsdb.stats();
    assert_eq!(stats.wal_batches, (THREADS * BATCHES) as u64);
    assert!(
        stats.wal_syncs >= 1 && stats.wal_syncs <= stats.wal_batches,
        "{stats:?}"
    );
    let got = expected_values(&tsdb);
    assert_eq!(got.len(), 20);
    for (name, points) in &got {
        let host: i64 = name[1..name.find('/').unwrap()].parse().unwrap();
        let want: Vec<i64> = (0..total)
            .filter(|ts| (ts / THREADS as i64) % POINTS as i64 % 10 == host)
            .collect();
        let ts: Vec<i64> = points.iter().map(|p| p.0).collect();
        assert_eq!(ts, want, "{name}");
        for (ts, v) in points {
            let expect = if name.ends_with("/idle") {
                FieldValue::Float(*ts as f64 / 2.0)
            } else {
                FieldValue::Integer(*ts)
            };
            assert_eq!(*v, expect, "{name} at {ts}");
        }
    }
    assert_eq!(tsdb.stats().points, (total * 2) as u64);
    drop(tsdb);
    let reopened = Tsdb::open_with(dir.path(), options).unwrap();
    assert_eq!(expected_values(&reopened), got);
    assert_eq!(reopened.stats().points, (total * 2) as u64);
}

/// Batches checked while an earlier one is still unsynced are checked against it: of threads
/// racing to create one field with different types, the first wins and the others are refused,
/// live and after a reopen.
#[test]
fn concurrent_type_conflicts_are_refused() {
    for round in 0..5 {
        let dir = tempfile::tempdir().unwrap();
        let tsdb = Arc::new(Tsdb::open(dir.path()).unwrap());
        let start = Arc::new(Barrier::new(THREADS));
        let handles: Vec<_> = (0..THREADS)
            .map(|t| {
                let (tsdb, start) = (tsdb.clone(), start.clone());
                thread::spawn(move || {
                    let value = if t % 2 == 0 {
                        FieldValue::Integer(t as i64)
                    } else {
                        FieldValue::Float(t as f64)
                    };
                    let ty = value.field_type();
                    let p = point("m", &[("host", "a")], &[("x", value)], t as i64);
                    start.wait();
                    (ty, tsdb.write(&[p]).map_err(|e| e.kind()))
                })
            })
            .collect();
        let results: Vec<(FieldType, Result<(), ErrorKind>)> =
            handles.into_iter().map(|h| h.join().unwrap()).collect();
        let won: Vec<FieldType> = results
            .iter()
            .filter(|r| r.1.is_ok())
            .map(|r| r.0)
            .collect();
        assert!(!won.is_empty(), "round {round}: {results:?}");
        assert!(
            won.iter().all(|t| *t == won[0]),
            "round {round}: {results:?}"
        );
        for (ty, r) in &results {
            if *ty != won[0] {
                assert_eq!(*r, Err(ErrorKind::Conflict), "round {round}");
            }
        }
        let check = |tsdb: &Tsdb| {
            assert_eq!(tsdb.fields("m").unwrap(), [("x".to_string(), won[0])]);
            let stored = tsdb.query(&all("m")).unwrap();
            assert_eq!(stored[0].points.len(), won.len(), "round {round}");
        };
        check(&tsdb);
        drop(tsdb);
        check(&Tsdb::open(dir.path()).unwrap());
    }
}
