//! In-process write rate of a team database: Telegraf-like cpu lines (100 hosts, 10 fields,
//! 10 s apart) parsed from line protocol and stored in batches of 5,000 lines, as `/write`
//! does after reading the body. `cargo run --release -p peng-influx --example write_rate [STEPS
//! [HOSTS]]` prints field values per second and bytes on disk per value; with many hosts (one
//! series each) it shows how the store copes with many series.

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
    let mut parse = std::time::Duration::ZERO;
    for b in &batches {
        let p0 = Instant::now();
        let points = line::parse(b, Precision::Seconds, 0).expect("parse");
        parse += p0.elapsed();
        tsdb.write(&points).expect("write");
    }
    tsdb.flush().expect("flush");
    let secs = start.elapsed().as_secs_f64();
    tsdb.compact().expect("compact");
    let bytes = tsdb.stats().bytes_on_disk;
    println!(
        "{values} values in {secs:.2} s: {:.0} values/s ({:.0}% parsing); {:.2} bytes per value on disk",
        values as f64 / secs,
        parse.as_secs_f64() / secs * 100.0,
        bytes as f64 / values as f64
    );
}
