//! Where a store's bytes go: per measurement and field, the values in block files and their
//! compressed bytes per value, with the share of all block bytes:
//! `cargo run --release -p peng-tsdb --example disk_usage DIR` (a store no server has open,
//! e.g. a team database `DATA/influx/TEAM/DB/`).

fn main() {
    let Some(dir) = std::env::args().nth(1) else {
        eprintln!("usage: disk_usage DIR");
        std::process::exit(2);
    };
    let tsdb = peng_tsdb::Tsdb::open(std::path::Path::new(&dir)).expect("open");
    let usage = tsdb.disk_usage().expect("disk usage");
    let values: u64 = usage.iter().map(|u| u.values).sum();
    let bytes: u64 = usage.iter().map(|u| u.bytes).sum();
    println!("| measurement | field | type | values | bytes / value | share of bytes |");
    println!("|---|---|---|---|---|---|");
    let per = |b: u64, v: u64| b as f64 / v.max(1) as f64;
    for u in &usage {
        println!(
            "| {} | {} | {:?} | {} | {:.2} | {:.1}% |",
            u.measurement,
            u.field,
            u.ty,
            u.values,
            per(u.bytes, u.values),
            100.0 * u.bytes as f64 / bytes.max(1) as f64
        );
    }
    let stats = tsdb.stats();
    println!(
        "\n{values} values in blocks: {:.3} bytes per value in blocks, {:.3} with the files' \
         indexes, the series index and the WAL ({} bytes in all)",
        per(bytes, values),
        per(stats.bytes_on_disk, values),
        stats.bytes_on_disk
    );
}
