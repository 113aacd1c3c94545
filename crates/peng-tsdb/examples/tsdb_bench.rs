//! Write and query benchmark of the time-series store.
//!
//! `cargo run --release -p peng-tsdb --example tsdb_bench -- [SERIES] [POINTS_PER_SERIES] [BATCH] [DIR]`
//!
//! Writes SERIES × POINTS_PER_SERIES float values (sensor-like: 10 s interval with jitter-free
//! timestamps, slowly changing values) in batches of BATCH, each batch fsync'd, then flushes,
//! reopens, and times queries. Defaults: 1000 × 1000 in batches of 1000, in a temp dir (pass
//! DIR to measure a real disk; tmpfs makes fsync free).

use std::time::Instant;

use peng_tsdb::{FieldValue, NameMap, Point, Query, Tsdb, TsdbOptions};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let arg = |i: usize, d: usize| args.get(i).and_then(|a| a.parse().ok()).unwrap_or(d);
    let (series, per_series, batch) = (arg(1, 1000), arg(2, 1000), arg(3, 1000));
    let tmp = tempfile::tempdir()?;
    let dir = args
        .get(4)
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| tmp.path().to_path_buf());
    let total = series * per_series;
    let base: i64 = 1_700_000_000_000_000_000;
    let step: i64 = 10_000_000_000;

    let db = Tsdb::open_with(
        &dir,
        TsdbOptions {
            flush_threshold_points: u64::MAX,
        },
    )?;
    let start = Instant::now();
    let mut buf = Vec::with_capacity(batch);
    let mut written = 0usize;
    // Time-major, as a collector sends them: every series at t, then every series at t+1.
    for t in 0..per_series {
        for s in 0..series {
            let mut tags = NameMap::new();
            tags.insert("host".into(), format!("host-{:04}", s % 100).into());
            tags.insert("sensor".into(), format!("sensor-{s:05}").into());
            let mut fields = NameMap::new();
            let v =
                20.0 + ((t as f64 / 50.0).sin() * 5.0 * 100.0).round() / 100.0 + s as f64 * 0.01;
            fields.insert("value".into(), FieldValue::Float(v));
            buf.push(Point {
                measurement: "sensor".into(),
                tags,
                fields,
                timestamp_ns: base + t as i64 * step,
            });
            if buf.len() == batch {
                db.write(&buf)?;
                written += buf.len();
                buf.clear();
            }
        }
    }
    if !buf.is_empty() {
        db.write(&buf)?;
        written += buf.len();
    }
    let write_secs = start.elapsed().as_secs_f64();
    let wal_bytes = db.stats().bytes_on_disk;

    let start = Instant::now();
    db.flush()?;
    let flush_secs = start.elapsed().as_secs_f64();
    let stats = db.stats();
    drop(db);

    let start = Instant::now();
    let db = Tsdb::open(&dir)?;
    let open_secs = start.elapsed().as_secs_f64();

    let all = Query {
        measurement: "sensor".into(),
        start_ns: i64::MIN,
        end_ns: i64::MAX,
        ..Query::default()
    };
    let start = Instant::now();
    let res = db.query(&all)?;
    let full_secs = start.elapsed().as_secs_f64();
    let read: usize = res.iter().map(|s| s.points.len()).sum();

    let mut one = all.clone();
    one.tag_filter
        .insert("sensor".into(), "sensor-00042".into());
    one.start_ns = base + (per_series as i64 / 2) * step;
    one.end_ns = one.start_ns + 60 * step;
    let n = 1000;
    let start = Instant::now();
    let mut got = 0;
    for _ in 0..n {
        got += db
            .query(&one)?
            .iter()
            .map(|s| s.points.len())
            .sum::<usize>();
    }
    let one_us = start.elapsed().as_secs_f64() / n as f64 * 1e6;

    println!(
        "series {series}, points {total}, batch {batch}, dir {}",
        dir.display()
    );
    println!(
        "write:   {:.0} points/s ({written} points in {write_secs:.2} s, {} fsync'd batches)",
        written as f64 / write_secs,
        written.div_ceil(batch)
    );
    println!(
        "wal:     {:.1} bytes/point before flush",
        wal_bytes as f64 / total as f64
    );
    println!("flush:   {flush_secs:.2} s");
    println!(
        "disk:    {} bytes after flush, {:.2} bytes/point",
        stats.bytes_on_disk,
        stats.bytes_on_disk as f64 / total as f64
    );
    println!("open:    {:.1} ms", open_secs * 1e3);
    println!(
        "query:   all {read} points in {:.1} ms ({:.0} points/s)",
        full_secs * 1e3,
        read as f64 / full_secs
    );
    println!(
        "query:   one series, 60 points of 10 minutes: {one_us:.0} µs ({} points each)",
        got / n
    );
    Ok(())
}
