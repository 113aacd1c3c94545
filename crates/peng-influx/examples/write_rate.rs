//! In-process write rate of a team database: Telegraf-like cpu lines (100 hosts, 10 fields,
//! 10 s apart) parsed from line protocol and stored in batches of 5,000 lines, as `/write`
//! does after reading the body. `cargo run --release -p peng-influx --example write_rate [STEPS
//! [HOSTS [WRITERS]]]` prints field values per second and bytes on disk per value; with many
//! hosts (one series each) it shows how the store copes with many series, with several writers
//! (threads taking batches in turn, as concurrent `/write` requests do) how many WAL syncs they
//! shared.

use std::time::Instant;

use peng_influx::line::{self, Precision};

fn main() {
    let steps: i64 = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(500);
    let hosts: i64 = std::env::args()
        .nth(2)
        .and_then(|s| s.parse().ok())
        .unwrap_or(100);
    let writers: usize = std::env::args()
        .nth(3)
        .and_then(|s| s.parse().ok())
        .unwrap_or(1);
    let dir = tempfile::tempdir().expect("tempdir");
    let tsdb = peng_tsdb::Tsdb::open(dir.path()).expect("open");
    let mut batches = Vec::new();
    let mut body = String::new();
    let mut lines = 0;
    let mut values = 0u64;
    for step in 0..steps {
        let t = 1_690_000_000 + step * 10;
        for host in 0..hosts {
            body.push_str(&format!("cpu,cpu=cpu-total,host=host-{host:07} "));
            for f in 0..10 {
                if f > 0 {
                    body.push(',');
                }
                let v = ((step * 7 + host * 13 + f * 3) % 1000) as f64 / 10.0;
                body.push_str(&format!("usage_{f}={v}"));
            }
            body.push_str(&format!(" {t}\n"));
            values += 10;
            lines += 1;
            if lines == 5000 {
                batches.push(std::mem::take(&mut body));
                lines = 0;
            }
        }
    }
    if !body.is_empty() {
        batches.push(body);
    }
    let start = Instant::now();
    let next = std::sync::atomic::AtomicUsize::new(0);
    let parse_nanos = std::sync::atomic::AtomicU64::new(0);
    std::thread::scope(|scope| {
        for _ in 0..writers.max(1) {
            scope.spawn(|| loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let Some(b) = batches.get(i) else {
                    break;
                };
                let p0 = Instant::now();
                let points = line::parse(b, Precision::Seconds, 0).expect("parse");
                parse_nanos.fetch_add(
                    p0.elapsed().as_nanos() as u64,
                    std::sync::atomic::Ordering::Relaxed,
                );
                tsdb.write(&points).expect("write");
            });
        }
    });
    let parse = std::time::Duration::from_nanos(parse_nanos.into_inner());
    let stats = tsdb.stats();
    tsdb.flush().expect("flush");
    let secs = start.elapsed().as_secs_f64();
    tsdb.compact().expect("compact");
    let bytes = tsdb.stats().bytes_on_disk;
    println!(
        "{values} values in {secs:.2} s from {writers} writers: {:.0} values/s ({:.0}% of the writers' time parsing); {} batches, {} WAL syncs; {:.2} bytes per value on disk",
        values as f64 / secs,
        parse.as_secs_f64() / secs / writers.max(1) as f64 * 100.0,
        stats.wal_batches,
        stats.wal_syncs,
        bytes as f64 / values as f64
    );
}
