//! Compatibility: data directories written once by each format version (`tests/fixtures/v1/`,
//! `v2/` and `v3/`: a block file, the series index and a WAL segment) must open and read back
//! exactly these values. A failure here means the on-disk format changed: add a new version
//! instead of rewriting a fixture. To write the newest one (only when introducing a format
//! version), run with `PENG_TSDB_WRITE_FIXTURE=v3`.

use std::fs;
use std::path::{Path, PathBuf};

use peng_tsdb::{FieldValue, Point, Query, SeriesData, Tsdb};

use crate::helpers::{key, point};

const BASE: i64 = 1_700_000_000_000_000_000;
const SEC: i64 = 1_000_000_000;

fn fixture_dir(version: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(version)
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
    let tmp = fixture_copy("v1", b"PTSBLK01");
    reads_back_exactly(&Tsdb::open(tmp.path()).unwrap());
}

#[test]
fn v2_data_directory_reads_back_exactly() {
    let tmp = fixture_copy("v2", b"PTSBLK02");
    reads_back_exactly(&Tsdb::open(tmp.path()).unwrap());
}

#[test]
fn v3_data_directory_reads_back_exactly() {
    if std::env::var_os("PENG_TSDB_WRITE_FIXTURE").is_some_and(|v| v == "v3") {
        let tmp = tempfile::tempdir().unwrap();
        write_fixture(tmp.path());
        let _ = fs::remove_dir_all(fixture_dir("v3"));
        copy_dir(tmp.path(), &fixture_dir("v3"));
    }
    let tmp = fixture_copy("v3", b"PTSBLK03");
    reads_back_exactly(&Tsdb::open(tmp.path()).unwrap());
}

/// v1 and v2 block files stay as they are until merged, and a merge writes them as v3.
#[test]
fn older_blocks_are_rewritten_as_v3_when_merged() {
    for (version, magic) in [("v1", b"PTSBLK01"), ("v2", b"PTSBLK02")] {
        older_blocks_are_rewritten_when_merged(version, magic);
    }
}

fn older_blocks_are_rewritten_when_merged(version: &str, magic: &[u8; 8]) {
    let tmp = fixture_copy(version, magic);
    let db = Tsdb::open(tmp.path()).unwrap();
    // A second file, so that compaction merges.
    db.write(&[point(
        "other",
        &[("host", "b")],
        &[("n", FieldValue::Integer(1))],
        BASE,
    )])
    .unwrap();
    db.flush().unwrap();
    db.compact().unwrap();
    drop(db);
    let files: Vec<PathBuf> = fs::read_dir(tmp.path().join("blocks"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(files.len(), 1);
    assert_eq!(&fs::read(&files[0]).unwrap()[..8], b"PTSBLK03");
    let db = Tsdb::open(tmp.path()).unwrap();
    let other = db.query(&crate::helpers::all("other")).unwrap();
    assert_eq!(other[0].points, [(BASE, FieldValue::Integer(1))]);
    // The WAL's overwrite and its value at i64::MAX were merged in too; the overwritten copy
    // is gone, the value of "other" added.
    reads_back_exactly_with(&db, 20 * 5 + 1 + 1 + 1);
}

/// A copy of a fixture directory, checked to hold one block file of that format.
fn fixture_copy(version: &str, magic: &[u8; 8]) -> tempfile::TempDir {
    let tmp = tempfile::tempdir().unwrap();
    copy_dir(&fixture_dir(version), tmp.path());
    let files: Vec<PathBuf> = fs::read_dir(tmp.path().join("blocks"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(files.len(), 1, "the fixture holds one block file");
    assert_eq!(&fs::read(&files[0]).unwrap()[..8], magic);
    tmp
}

fn reads_back_exactly(db: &Tsdb) {
    reads_back_exactly_with(db, 20 * 5 + 1 + 2);
}

fn reads_back_exactly_with(db: &Tsdb, values: u64) {
    let sensor = key("sensor", &[("service", "checkout"), ("sensor", "http")]);
    let series: Vec<_> = db
        .series(None)
        .unwrap()
        .into_iter()
        .filter(|k| k.measurement != "other")
        .collect();
    assert_eq!(series, vec![key("mem", &[("host", "a")]), sensor.clone()]);

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
    assert_eq!(db.stats().points, values);
}
