//! Flushed data: block files, overwrites across flushes, retention by block, compaction, and
//! crashes around a flush.

use std::fs;
use std::path::Path;

use peng_core::ErrorKind;
use peng_tsdb::{FieldType, FieldValue, Point, Query, Tsdb, TsdbOptions};

use crate::helpers::{all, float, point};

fn files(dir: &Path, sub: &str) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir.join(sub))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

fn values(db: &Tsdb, measurement: &str) -> Vec<(i64, FieldValue)> {
    db.query(&all(measurement))
        .unwrap()
        .into_iter()
        .flat_map(|s| s.points)
        .collect()
}

#[test]
fn flush_moves_data_into_a_block_file_and_reopen_sees_it() {
    let tmp = tempfile::tempdir().unwrap();
    let db = Tsdb::open(tmp.path()).unwrap();
    let batch: Vec<_> = (0..2500)
        .map(|i| float("cpu", "a", i as f64 * 0.5, 1_000 + i * 10))
        .collect();
    db.write(&batch).unwrap();
    let before = db.query(&all("cpu")).unwrap();
    db.flush().unwrap();
    assert_eq!(files(tmp.path(), "blocks").len(), 1);
    assert_eq!(db.query(&all("cpu")).unwrap(), before);
    assert_eq!(db.stats().points, 2500);
    drop(db);
    let db = Tsdb::open(tmp.path()).unwrap();
    assert_eq!(db.query(&all("cpu")).unwrap(), before);
    assert_eq!(db.stats().points, 2500);
    let q = Query {
        start_ns: 1_000 + 995 * 10,
        end_ns: 1_000 + 1005 * 10,
        ..all("cpu")
    };
    let got = db.query(&q).unwrap();
    assert_eq!(
        got[0].points.iter().map(|p| p.0).collect::<Vec<_>>(),
        (995..1005).map(|i| 1_000 + i * 10).collect::<Vec<_>>()
    );
}

#[test]
fn newest_write_wins_across_flushes() {
    let tmp = tempfile::tempdir().unwrap();
    let db = Tsdb::open(tmp.path()).unwrap();
    db.write(&[
        float("cpu", "a", 1.0, 10),
        float("cpu", "a", 1.0, 20),
        float("cpu", "a", 1.0, 30),
    ])
    .unwrap();
    db.flush().unwrap();
    db.write(&[float("cpu", "a", 2.0, 20)]).unwrap();
    let want = vec![
        (10, FieldValue::Float(1.0)),
        (20, FieldValue::Float(2.0)),
        (30, FieldValue::Float(1.0)),
    ];
    assert_eq!(values(&db, "cpu"), want);
    db.flush().unwrap();
    assert_eq!(values(&db, "cpu"), want);
    db.write(&[float("cpu", "a", 3.0, 30), float("cpu", "a", 0.0, 5)])
        .unwrap();
    drop(db);
    let db = Tsdb::open(tmp.path()).unwrap();
    let want = vec![
        (5, FieldValue::Float(0.0)),
        (10, FieldValue::Float(1.0)),
        (20, FieldValue::Float(2.0)),
        (30, FieldValue::Float(3.0)),
    ];
    assert_eq!(values(&db, "cpu"), want);
    db.compact().unwrap();
    assert_eq!(files(tmp.path(), "blocks").len(), 1);
    assert_eq!(values(&db, "cpu"), want);
    assert_eq!(db.stats().points, 4);
    drop(db);
    assert_eq!(values(&Tsdb::open(tmp.path()).unwrap(), "cpu"), want);
}

#[test]
fn field_types_survive_a_flush_and_reopen() {
    let tmp = tempfile::tempdir().unwrap();
    {
        let db = Tsdb::open(tmp.path()).unwrap();
        db.write(&[float("cpu", "a", 1.0, 10)]).unwrap();
        db.flush().unwrap();
    }
    let db = Tsdb::open(tmp.path()).unwrap();
    let bad = point(
        "cpu",
        &[("host", "a")],
        &[("value", FieldValue::String("x".into()))],
        11,
    );
    assert_eq!(db.write(&[bad]).unwrap_err().kind(), ErrorKind::Conflict);
}

#[test]
fn retention_drops_whole_files_and_filters_straddling_blocks() {
    let tmp = tempfile::tempdir().unwrap();
    let db = Tsdb::open(tmp.path()).unwrap();
    for day in 0..3i64 {
        let batch: Vec<_> = (0..100)
            .map(|i| float("cpu", "a", i as f64, day * 1000 + i))
            .collect();
        db.write(&batch).unwrap();
        db.flush().unwrap();
    }
    db.write(&[float("cpu", "a", 9.0, 2500)]).unwrap();
    assert_eq!(files(tmp.path(), "blocks").len(), 3);
    // Drops file 0 whole, 50 values of file 1.
    assert_eq!(db.delete_before(1050).unwrap(), 150);
    assert_eq!(files(tmp.path(), "blocks").len(), 2);
    let v = values(&db, "cpu");
    assert_eq!(v.len(), 50 + 100 + 1);
    assert_eq!(v[0].0, 1050);
    assert_eq!(db.stats().points, 151);
    // The memtable and the rest.
    assert_eq!(db.delete_before(3000).unwrap(), 151);
    assert!(values(&db, "cpu").is_empty());
    assert_eq!(db.stats().points, 0);
    assert!(files(tmp.path(), "blocks").is_empty());
    drop(db);
    let db = Tsdb::open(tmp.path()).unwrap();
    assert!(values(&db, "cpu").is_empty());
    assert_eq!(db.series(None).unwrap().len(), 1);
}

#[test]
fn straddling_blocks_stay_hidden_after_reopen() {
    let tmp = tempfile::tempdir().unwrap();
    {
        let db = Tsdb::open(tmp.path()).unwrap();
        db.write(
            &(0..100)
                .map(|i| float("cpu", "a", i as f64, i))
                .collect::<Vec<_>>(),
        )
        .unwrap();
        db.flush().unwrap();
        assert_eq!(db.delete_before(60).unwrap(), 60);
    }
    let db = Tsdb::open(tmp.path()).unwrap();
    assert_eq!(values(&db, "cpu").len(), 40);
    assert_eq!(db.stats().points, 40);
}

#[test]
fn the_write_that_crosses_the_threshold_flushes() {
    let tmp = tempfile::tempdir().unwrap();
    let db = Tsdb::open_with(
        tmp.path(),
        TsdbOptions {
            flush_threshold_points: 100,
        },
    )
    .unwrap();
    for b in 0..5 {
        db.write(
            &(0..30)
                .map(|i| float("cpu", "a", 1.0, b * 30 + i))
                .collect::<Vec<_>>(),
        )
        .unwrap();
    }
    // The flush runs on a thread of its own.
    db.wait_for_flush();
    assert_eq!(files(tmp.path(), "blocks").len(), 1);
    assert_eq!(values(&db, "cpu").len(), 150);
}

#[test]
fn flushed_files_are_merged_by_tier_and_the_newest_write_still_wins() {
    let tmp = tempfile::tempdir().unwrap();
    let opts = || TsdbOptions {
        flush_threshold_points: 100,
    };
    let db = Tsdb::open_with(tmp.path(), opts()).unwrap();
    let mut most_files = 0;
    for b in 0..40 {
        // Each batch rewrites ts 0..10 (older files hold them too) and adds 50 new values.
        let mut batch: Vec<Point> = (0..10).map(|i| float("cpu", "a", b as f64, i)).collect();
        batch.extend((0..50).map(|i| float("cpu", "a", -1.0, 1000 + b * 50 + i)));
        db.write(&batch).unwrap();
        db.wait_for_flush();
        most_files = most_files.max(files(tmp.path(), "blocks").len());
    }
    assert!(
        most_files <= peng_tsdb::MERGE_FANIN,
        "small files merge as they come: {most_files} at once"
    );
    let check = |db: &Tsdb| {
        let v = values(db, "cpu");
        assert_eq!(v.len(), 10 + 40 * 50);
        assert!(
            v[..10].iter().all(|(_, x)| *x == FieldValue::Float(39.0)),
            "{:?}",
            &v[..10]
        );
    };
    check(&db);
    drop(db);
    let db = Tsdb::open_with(tmp.path(), opts()).unwrap();
    check(&db);
}

#[test]
fn a_crash_after_the_block_file_but_before_wal_removal_loses_and_doubles_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let db = Tsdb::open(tmp.path()).unwrap();
    db.write(&[float("cpu", "a", 1.0, 10), float("cpu", "a", 2.0, 20)])
        .unwrap();
    let wal_dir = tmp.path().join("wal");
    let saved: Vec<(String, Vec<u8>)> = files(tmp.path(), "wal")
        .into_iter()
        .map(|n| (n.clone(), fs::read(wal_dir.join(&n)).unwrap()))
        .collect();
    db.flush().unwrap();
    db.write(&[float("cpu", "a", 3.0, 20)]).unwrap();
    drop(db);
    // Put the flushed segments back, as if the crash came before their removal.
    for (name, bytes) in &saved {
        fs::write(wal_dir.join(name), bytes).unwrap();
    }
    // And a half-written block file.
    fs::write(
        tmp.path().join("blocks").join("0000000000000009.tsb.tmp"),
        b"PTSBLK01 partial",
    )
    .unwrap();
    let db = Tsdb::open(tmp.path()).unwrap();
    assert_eq!(
        values(&db, "cpu"),
        vec![(10, FieldValue::Float(1.0)), (20, FieldValue::Float(3.0))]
    );
    assert_eq!(
        db.stats().points,
        3,
        "two flushed values and one newer copy in memory"
    );
    assert!(!files(tmp.path(), "blocks")
        .iter()
        .any(|n| n.ends_with(".tmp")));
}

#[test]
fn a_damaged_block_is_an_internal_error_not_a_panic() {
    let tmp = tempfile::tempdir().unwrap();
    {
        let db = Tsdb::open(tmp.path()).unwrap();
        db.write(
            &(0..100)
                .map(|i| float("cpu", "a", i as f64, i))
                .collect::<Vec<_>>(),
        )
        .unwrap();
        db.flush().unwrap();
    }
    let name = files(tmp.path(), "blocks").remove(0);
    let path = tmp.path().join("blocks").join(name);
    let mut bytes = fs::read(&path).unwrap();
    bytes[20] ^= 0xff;
    fs::write(&path, &bytes).unwrap();
    let db = Tsdb::open(tmp.path()).unwrap();
    let err = db.query(&all("cpu")).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Internal, "{err}");
    drop(db);
    // A damaged footer is found at open.
    let len = bytes.len();
    bytes[len - 1] ^= 0xff;
    fs::write(&path, &bytes).unwrap();
    assert_eq!(
        Tsdb::open(tmp.path()).err().map(|e| e.kind()),
        Some(ErrorKind::Internal)
    );
}

#[test]
fn compaction_applies_retention_and_replaces_files() {
    let tmp = tempfile::tempdir().unwrap();
    let db = Tsdb::open(tmp.path()).unwrap();
    for b in 0..4i64 {
        let batch: Vec<_> = (0..10)
            .map(|i| {
                point(
                    "m",
                    &[],
                    &[
                        ("n", FieldValue::Integer(b * 10 + i)),
                        ("s", FieldValue::String(format!("v{i}"))),
                    ],
                    b * 10 + i,
                )
            })
            .collect();
        db.write(&batch).unwrap();
        db.flush().unwrap();
    }
    db.delete_before(15).unwrap();
    let before = db.query(&all("m")).unwrap();
    db.compact().unwrap();
    assert_eq!(files(tmp.path(), "blocks").len(), 1);
    assert_eq!(db.query(&all("m")).unwrap(), before);
    assert_eq!(db.stats().points, 50);
    drop(db);
    assert_eq!(
        Tsdb::open(tmp.path()).unwrap().query(&all("m")).unwrap(),
        before
    );
}

#[test]
fn bytes_on_disk_shrink_when_the_wal_is_flushed() {
    let tmp = tempfile::tempdir().unwrap();
    let db = Tsdb::open(tmp.path()).unwrap();
    let batch: Vec<_> = (0..10_000)
        .map(|i| float("cpu", "a", 20.0 + (i % 7) as f64 * 0.25, i * 1_000_000_000))
        .collect();
    db.write(&batch).unwrap();
    let wal_bytes = db.stats().bytes_on_disk;
    db.flush().unwrap();
    let block_bytes = db.stats().bytes_on_disk;
    assert!(
        block_bytes * 5 < wal_bytes,
        "wal {wal_bytes} bytes, blocks {block_bytes} bytes"
    );
}

#[test]
fn disk_usage_tells_the_bytes_of_each_field() {
    let tmp = tempfile::tempdir().unwrap();
    let db = Tsdb::open(tmp.path()).unwrap();
    let batch: Vec<_> = (0..3000i64)
        .map(|i| {
            let noisy = ((i * 7919) % 1009) as f64 / 7.0;
            point(
                "cpu",
                &[("host", if i % 2 == 0 { "a" } else { "b" })],
                &[
                    ("idle", FieldValue::Float(noisy)),
                    ("guest", FieldValue::Float(0.0)),
                ],
                1_000 + i * 10,
            )
        })
        .chain((0..500).map(|i| {
            point(
                "mem",
                &[],
                &[("used", FieldValue::Integer(4096 * i))],
                i * 10,
            )
        }))
        .collect();
    db.write(&batch).unwrap();
    // Nothing is in a block file yet.
    assert_eq!(db.disk_usage().unwrap(), vec![]);
    db.flush().unwrap();
    let usage = db.disk_usage().unwrap();
    let names: Vec<(&str, &str, FieldType, u64)> = usage
        .iter()
        .map(|u| (&*u.measurement, &*u.field, u.ty, u.values))
        .collect();
    assert_eq!(
        names,
        vec![
            ("cpu", "guest", FieldType::Float, 3000),
            ("cpu", "idle", FieldType::Float, 3000),
            ("mem", "used", FieldType::Integer, 500),
        ]
    );
    // Two series of cpu, one of mem: a block at least per series field.
    assert!(usage[0].blocks >= 2 && usage[2].blocks >= 1);
    // A constant costs a bit a value, a float that varies many times that.
    assert!(usage[1].bytes > 10 * usage[0].bytes, "{usage:?}");
    let blocks: u64 = usage.iter().map(|u| u.bytes).sum();
    let file: u64 = fs::read_dir(tmp.path().join("blocks"))
        .unwrap()
        .map(|e| e.unwrap().metadata().unwrap().len())
        .sum();
    assert!(blocks > 0 && blocks < file, "{blocks} of {file}");
}
