//! How the store copes with very many series: `cargo run --release -p peng-tsdb --example
//! many_series -- [SERIES] [STEPS] [FIELDS] [DIR]` (defaults 1,000,000 series, 2 steps, 10
//! float fields; a temp dir unless DIR is given).
//!
//! Writes `cpu,host=host-NNNNNNN` series time-major (every series at t, then every series at
//! t + 10 s) in fsync'd batches of 5,000 points, as a collector fleet would, then checks that
//! every series and value is there (counts, and spot queries of exact values), before and
//! after reopening and after compaction. Prints values/s of the writes alone (points are built
//! between batches, outside the timing), bytes per value on disk after the last flush and after
//! `compact()`, the time to open the store and its resident memory (VmRSS) at each stage. Exits
//! non-zero when a check fails.

use std::collections::BTreeMap;
use std::time::Instant;

use peng_tsdb::{FieldValue, NameMap, Point, Query, Tsdb};

const BATCH: usize = 5_000;
const BASE: i64 = 1_690_000_000_000_000_000;
const STEP: i64 = 10_000_000_000;

fn host(h: usize) -> String {
    format!("host-{h:07}")
}

fn value(step: usize, h: usize, f: usize) -> f64 {
    ((step * 7 + h * 13 + f * 3) % 1000) as f64 / 10.0
}

fn point(step: usize, h: usize, fields: usize) -> Point {
    Point {
        measurement: "cpu".into(),
        tags: NameMap::from([
            ("cpu".into(), "cpu-total".into()),
            ("host".into(), host(h).into()),
        ]),
        fields: (0..fields)
            .map(|f| {
                let name = format!("usage_{f}");
                (name.into(), FieldValue::Float(value(step, h, f)))
            })
            .collect(),
        timestamp_ns: BASE + step as i64 * STEP,
    }
}

/// Resident memory of this process in MB.
fn rss_mb() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<u64>().ok())
        })
        .map_or(0, |kb| kb / 1024)
}

fn check(db: &Tsdb, series: usize, steps: usize, fields: usize) -> Result<(), String> {
    let stats = db.stats();
    let values = (series * steps * fields) as u64;
    if stats.series != series as u64 || stats.points != values {
        return Err(format!(
            "expected {series} series and {values} values, the store has {} and {}",
            stats.series, stats.points
        ));
    }
    // First, last and a spread of series in between.
    let probes = [0, series / 3, series / 2, series.saturating_sub(1)];
    for h in probes {
        let q = Query {
            measurement: "cpu".into(),
            tag_filter: BTreeMap::from([("host".to_string(), host(h))]),
            fields: None,
            start_ns: i64::MIN,
            end_ns: i64::MAX,
        };
        let got = db.query(&q).map_err(|e| e.to_string())?;
        if got.len() != fields {
            return Err(format!(
                "{}: {} fields, expected {fields}",
                host(h),
                got.len()
            ));
        }
        for column in &got {
            let f: usize = column
                .field
                .strip_prefix("usage_")
                .and_then(|n| n.parse().ok())
                .ok_or_else(|| format!("unexpected field {}", column.field))?;
            let want: Vec<(i64, FieldValue)> = (0..steps)
                .map(|s| (BASE + s as i64 * STEP, FieldValue::Float(value(s, h, f))))
                .collect();
            if column.points != want {
                return Err(format!("{} {}: wrong values", host(h), column.field));
            }
        }
    }
    Ok(())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let arg = |i: usize, d: usize| args.get(i).and_then(|a| a.parse().ok()).unwrap_or(d);
    let (series, steps, fields) = (arg(1, 1_000_000), arg(2, 2), arg(3, 10));
    let tmp = tempfile::tempdir()?;
    let dir = args
        .get(4)
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| tmp.path().to_path_buf());
    let values = series * steps * fields;

    let db = Tsdb::open(&dir)?;
    let mut writing = std::time::Duration::ZERO;
    let mut batch = Vec::with_capacity(BATCH);
    for step in 0..steps {
        for h in 0..series {
            batch.push(point(step, h, fields));
            if batch.len() == BATCH || (step + 1 == steps && h + 1 == series) {
                let t = Instant::now();
                db.write(&batch)?;
                writing += t.elapsed();
                batch.clear();
            }
        }
    }
    let t = Instant::now();
    db.flush()?;
    writing += t.elapsed();
    let secs = writing.as_secs_f64();
    let flushed = db.stats();
    println!(
        "{series} series x {steps} steps x {fields} fields = {values} values: {:.0} values/s \
         ({secs:.1} s writing), {:.2} bytes per value after the last flush, RSS {} MB",
        values as f64 / secs,
        flushed.bytes_on_disk as f64 / values as f64,
        rss_mb()
    );
    check(&db, series, steps, fields)?;
    drop(db);

    let rss_closed = rss_mb();
    let t = Instant::now();
    let db = Tsdb::open(&dir)?;
    println!(
        "reopened in {:.2} s; RSS {} MB (+{} MB for the open store)",
        t.elapsed().as_secs_f64(),
        rss_mb(),
        rss_mb().saturating_sub(rss_closed)
    );
    check(&db, series, steps, fields)?;

    let t = Instant::now();
    db.compact()?;
    let compacted = db.stats();
    println!(
        "compacted in {:.1} s: {:.2} bytes per value, RSS {} MB",
        t.elapsed().as_secs_f64(),
        compacted.bytes_on_disk as f64 / values as f64,
        rss_mb()
    );
    check(&db, series, steps, fields)?;
    println!("all {series} series and {values} values read back");
    Ok(())
}
