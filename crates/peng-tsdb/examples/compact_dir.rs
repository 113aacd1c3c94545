//! Compacts a store directory and prints its size before and after:
//! `cargo run --release -p peng-tsdb --example compact_dir DIR`.

fn main() {
    let Some(dir) = std::env::args().nth(1) else {
        eprintln!("usage: compact_dir DIR");
        std::process::exit(2);
    };
    let tsdb = peng_tsdb::Tsdb::open(std::path::Path::new(&dir)).expect("open");
    let before = tsdb.stats();
    let t = std::time::Instant::now();
    tsdb.compact().expect("compact");
    let after = tsdb.stats();
    println!(
        "{} values: {:.2} → {:.2} bytes per value, compaction took {:.2} s",
        after.points,
        before.bytes_on_disk as f64 / before.points.max(1) as f64,
        after.bytes_on_disk as f64 / after.points.max(1) as f64,
        t.elapsed().as_secs_f64()
    );
}
