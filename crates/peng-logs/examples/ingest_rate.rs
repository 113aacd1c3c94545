//! Records per second through the pipeline into the index, until searchable, and bytes on
//! disk per record: `cargo run --release -p peng-logs --example ingest_rate [N] [WRITER_THREADS]`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use peng_core::TeamName;
use peng_logs::index::{LogStore, SearchRequest, StoreOptions};
use peng_logs::pipeline::{Pipeline, PipelineConfig};
use peng_logs::{FieldValue, LogRecord, LogSource};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(200_000);
    let dir = tempfile::tempdir()?;
    let threads: usize = std::env::args()
        .nth(2)
        .and_then(|a| a.parse().ok())
        .unwrap_or(1);
    let opts = StoreOptions {
        writer_threads: threads,
        ..StoreOptions::default()
    };
    let store = Arc::new(LogStore::open_with(dir.path(), opts)?);
    let pipeline = Pipeline::start(store.clone(), PipelineConfig::default())?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let team = TeamName::parse("checkout")?;
    let base = peng_core::now_ns();
    let start = Instant::now();
    rt.block_on(async {
        let mut batch = Vec::with_capacity(256);
        for i in 0..n {
            let mut fields = BTreeMap::new();
            fields.insert("user_id".to_string(), FieldValue::I64((i % 5000) as i64));
            fields.insert(
                "http.status".to_string(),
                FieldValue::I64(if i % 50 == 0 { 500 } else { 200 }),
            );
            fields.insert(
                "took_ms".to_string(),
                FieldValue::F64((i % 900) as f64 * 1.5),
            );
            fields.insert(
                "logger".to_string(),
                FieldValue::Str("de.shop.checkout.OrderController".into()),
            );
            fields.insert(
                "thread".to_string(),
                FieldValue::Str(format!("http-nio-8080-exec-{}", i % 16)),
            );
            batch.push(LogRecord {
                timestamp_ns: base + i as i64,
                received_ns: base + i as i64,
                team: team.clone(),
                service: format!("svc-{}", i % 8),
                stage: "production".into(),
                instance: format!("{}", i % 3),
                source: LogSource::GelfUdp,
                host: format!("web-{}", i % 4),
                level: (i % 8) as u8,
                message: format!(
                    "order {i} for customer {} processed in {} ms, cart had {} items",
                    i % 9973,
                    i % 900,
                    i % 7
                ),
                full_message: None,
                fields,
            });
            if batch.len() == 256 {
                pipeline.submit(std::mem::take(&mut batch)).await?;
            }
        }
        pipeline.submit(batch).await?;
        pipeline.flush().await
    })?;
    let elapsed = start.elapsed();
    let found = store
        .search(&SearchRequest {
            query: String::new(),
            limit: 0,
            ..Default::default()
        })?
        .total;
    // the whole store: partitions and WAL
    let bytes = store.disk_bytes();
    let t = Instant::now();
    let hits = store.search(&SearchRequest {
        team: Some(team),
        query: "http.status:500 AND customer".into(),
        limit: 100,
        ..Default::default()
    })?;
    println!(
        "{n} records in {:.2}s: {:.0} records/s until searchable; {found} found; {:.0} bytes/record on disk; search over all: {} hits in {:?}",
        elapsed.as_secs_f64(),
        n as f64 / elapsed.as_secs_f64(),
        bytes as f64 / n as f64,
        hits.total,
        t.elapsed()
    );
    rt.block_on(pipeline.shutdown())?;
    Ok(())
}
