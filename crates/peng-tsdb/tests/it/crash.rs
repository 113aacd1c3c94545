//! Recovery after crashes, simulated by damaging the files a killed process would leave.

use std::fs;
use std::path::{Path, PathBuf};

use peng_tsdb::Tsdb;

use crate::helpers::{all, float};

fn wal_segments(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = fs::read_dir(dir.join("wal"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    v.sort();
    v
}

/// Writes `batches` batches of 10 points each and returns the WAL segment holding them.
fn write_batches(dir: &Path, batches: i64) -> PathBuf {
    let db = Tsdb::open(dir).unwrap();
    for b in 0..batches {
        let batch: Vec<_> = (0..10)
            .map(|i| float("cpu", "a", i as f64, b * 10 + i))
            .collect();
        db.write(&batch).unwrap();
    }
    drop(db);
    let segs = wal_segments(dir);
    segs.into_iter()
        .max_by_key(|p| fs::metadata(p).unwrap().len())
        .unwrap()
}

fn count(dir: &Path) -> usize {
    let db = Tsdb::open(dir).unwrap();
    db.query(&all("cpu"))
        .unwrap()
        .first()
        .map(|s| s.points.len())
        .unwrap_or(0)
}

#[test]
fn every_truncation_of_the_wal_tail_recovers_all_complete_batches() {
    let tmp = tempfile::tempdir().unwrap();
    let seg = write_batches(tmp.path(), 3);
    let full = fs::read(&seg).unwrap();
    let one_batch = (full.len() - 8) / 3;
    for cut in (full.len() - one_batch)..full.len() {
        fs::write(&seg, &full[..cut]).unwrap();
        assert_eq!(count(tmp.path()), 20, "cut at {cut}");
        // The torn tail was cut off: new writes land after the complete batches.
        let db = Tsdb::open(tmp.path()).unwrap();
        db.write(&[float("cpu", "a", 0.0, 1000)]).unwrap();
        drop(db);
        assert_eq!(count(tmp.path()), 21, "cut at {cut}");
        for p in wal_segments(tmp.path()) {
            if p != seg {
                fs::remove_file(p).unwrap();
            }
        }
    }
}

#[test]
fn a_garbage_tail_is_cut_off() {
    for garbage in [
        vec![0u8; 100],
        vec![0xff; 3],
        (0..=255u8).collect::<Vec<u8>>(),
        b"\x05\0\0\0garbage".to_vec(),
    ] {
        let tmp = tempfile::tempdir().unwrap();
        let seg = write_batches(tmp.path(), 2);
        let mut bytes = fs::read(&seg).unwrap();
        bytes.extend_from_slice(&garbage);
        fs::write(&seg, &bytes).unwrap();
        assert_eq!(count(tmp.path()), 20);
        let db = Tsdb::open(tmp.path()).unwrap();
        db.write(&[float("cpu", "a", 0.0, 1000)]).unwrap();
        drop(db);
        assert_eq!(count(tmp.path()), 21);
    }
}

#[test]
fn a_segment_torn_at_creation_is_ignored() {
    let tmp = tempfile::tempdir().unwrap();
    write_batches(tmp.path(), 1);
    fs::write(tmp.path().join("wal").join("9999999999999999.wal"), b"PTS").unwrap();
    assert_eq!(count(tmp.path()), 10);
}

#[test]
fn reopen_returns_the_same_data() {
    let tmp = tempfile::tempdir().unwrap();
    write_batches(tmp.path(), 5);
    let before = Tsdb::open(tmp.path()).unwrap().query(&all("cpu")).unwrap();
    for _ in 0..3 {
        assert_eq!(
            Tsdb::open(tmp.path()).unwrap().query(&all("cpu")).unwrap(),
            before
        );
    }
    let db = Tsdb::open(tmp.path()).unwrap();
    db.flush().unwrap();
    drop(db);
    assert_eq!(
        Tsdb::open(tmp.path()).unwrap().query(&all("cpu")).unwrap(),
        before
    );
}
