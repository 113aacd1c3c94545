//! Compatibility: a data directory written once by format v1 (`tests/fixtures/v1/`, a block
//! file, the series index and a WAL segment) must open and read back exactly these values.
//! A failure here means the on-disk format changed: add a new version instead of rewriting
//! the fixture. To write the fixture (only when introducing a format version), run with
//! `PENG_TSDB_WRITE_FIXTURE=1`.

use std::fs;
use std::path::{Path, PathBuf};

use peng_tsdb::{FieldValue, Point, Query, SeriesData, Tsdb};

use crate::helpers::{key, point};

const BASE: i64 = 1_700_000_000_000_000_000;
const SEC: i64 = 1_000_000_000;

fn fixture_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/v1")
}

fn flushed() -> Vec<Point> {
    let mut v = Vec::new();
    for i in 0..20i64 {
        v.push(point(
            "sensor",
            &[("service", "checkout"), ("sensor", "http")],
            &[
                (
                    "latency_ms",
                    FieldValue::Float(12.5 + (i % 4) as f64 * 0.25),
                ),
                ("status", FieldValue::Integer(200 + (i % 3))),
                ("bytes", FieldValue::Unsigned(1 << 40 | i as u64)),
                ("ok", FieldValue::Boolean(i % 5 != 0)),
                ("detail", FieldValue::String(format!("run {i}"))),
            ],
            BASE + i * 30 * SEC,
        ));
    }
    v.push(point(
        "mem",
        &[("host", "a")],
        &[("used", FieldValue::Float(-1.0e300))],
        -5,
    ));
    v
}

fn unflushed() -> Vec<Point> {
    vec![
        // Overwrites a flushed value.
        point(
            "sensor",
            &[("service", "checkout"), ("sensor", "http")],
            &[("status", FieldValue::Integer(503))],
            BASE + 60 * SEC,
        ),
        point(
            "mem",
            &[("host", "a")],
            &[("used", FieldValue::Float(0.5))],
            i64::MAX,
        ),
    ]
}

fn write_fixture(dir: &Path) {
    let db = Tsdb::open(dir).unwrap();
    db.write(&flushed()).unwrap();
    db.flush().unwrap();
    db.write(&unflushed()).unwrap();
}

fn copy_dir(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for e in fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let dst = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &dst);
        } else if e.file_name() != "LOCK" {
            fs::copy(e.path(), dst).unwrap();
        }
    }
}

#[test]
fn v1_data_directory_reads_back_exactly() {
    if std::env::var_os("PENG_TSDB_WRITE_FIXTURE").is_some() {
        let tmp = tempfile::tempdir().unwrap();
        write_fixture(tmp.path());
        let _ = fs::remove_dir_all(fixture_dir());
        copy_dir(tmp.path(), &fixture_dir());
    }
    let tmp = tempfile::tempdir().unwrap();
    copy_dir(&fixture_dir(), tmp.path());
    let block_files = fs::read_dir(tmp.path().join("blocks")).unwrap().count();
    assert_eq!(block_files, 1, "the fixture holds one block file");

    let db = Tsdb::open(tmp.path()).unwrap();
    let sensor = key("sensor", &[("service", "checkout"), ("sensor", "http")]);
    assert_eq!(
        db.series(None).unwrap(),
        vec![key("mem", &[("host", "a")]), sensor.clone()]
    );

    let all = |m: &str| Query {
        measurement: m.into(),
        start_ns: i64::MIN,
        end_ns: i64::MAX,
        ..Query::default()
    };
    let got = db.query(&all("sensor")).unwrap();
    let fields: Vec<&str> = got.iter().map(|s| s.field.as_str()).collect();
    assert_eq!(
        fields,
        vec!["bytes", "detail", "latency_ms", "ok", "status"]
    );
    let series = |f: &str| -> &SeriesData { got.iter().find(|s| s.field == f).unwrap() };
    let ts: Vec<i64> = (0..20).map(|i| BASE + i * 30 * SEC).collect();
    assert_eq!(
        series("latency_ms")
            .points
            .iter()
            .map(|p| p.0)
            .collect::<Vec<_>>(),
        ts
    );
    assert_eq!(
        series("latency_ms").points[3],
        (ts[3], FieldValue::Float(13.25))
    );
    assert_eq!(
        series("status").points[1],
        (ts[1], FieldValue::Integer(201))
    );
    assert_eq!(
        series("status").points[2],
        (ts[2], FieldValue::Integer(503))
    );
    assert_eq!(
        series("bytes").points[19],
        (ts[19], FieldValue::Unsigned((1 << 40) | 19))
    );
    assert_eq!(
        series("ok").points[..2],
        [
            (ts[0], FieldValue::Boolean(false)),
            (ts[1], FieldValue::Boolean(true))
        ]
    );
    assert_eq!(
        series("detail").points[7],
        (ts[7], FieldValue::String("run 7".into()))
    );
    for s in &got {
        assert_eq!(s.key, sensor);
        assert_eq!(s.points.len(), 20);
    }
    let mem = db.query(&all("mem")).unwrap();
    // i64::MAX is outside every half-open range, so only the first value shows.
    assert_eq!(mem[0].points, vec![(-5, FieldValue::Float(-1.0e300))]);
    assert_eq!(db.stats().points, 20 * 5 + 1 + 2);
}
