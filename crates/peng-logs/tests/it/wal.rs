//! The WAL between ingest and the index: what it holds past the index's last commit is added
//! at the next start, once, and the index's commits delete what they cover.

use std::sync::Arc;

use peng_logs::index::{LogStore, SearchRequest};
use peng_logs::pipeline::{Pipeline, PipelineConfig};
use peng_logs::wal::Wal;

use crate::helpers::{record, team};

fn count(store: &LogStore, query: &str) -> usize {
    store
        .search(&SearchRequest {
            team: Some(team("checkout")),
            query: query.into(),
            limit: 0,
            ..Default::default()
        })
        .unwrap()
        .total
}

fn wal_files(dir: &std::path::Path) -> usize {
    std::fs::read_dir(dir.join("wal")).unwrap().count()
}

#[tokio::test]
async fn what_the_wal_holds_past_the_index_is_added_once_at_start() {
    let dir = tempfile::tempdir().unwrap();
    // A first life: some records committed to the index through the pipeline.
    {
        let store = Arc::new(LogStore::open(dir.path()).unwrap());
        let pipeline = Pipeline::start(store.clone(), PipelineConfig::default()).unwrap();
        let batch: Vec<_> = (0..10)
            .map(|i| record("checkout", "orders", i, 6, "committed"))
            .collect();
        pipeline.submit_durable(batch).await.unwrap();
        pipeline.flush().await.unwrap();
        assert_eq!(count(&store, "committed"), 10);
        pipeline.shutdown().await.unwrap();
    }
    // What a crash leaves: batches in the WAL that no index commit covers, and a torn frame.
    {
        let mut wal = Wal::open(&dir.path().join("wal")).unwrap();
        for b in 0..3 {
            let batch: Vec<_> = (0..5)
                .map(|i| record("checkout", "orders", 100 + b * 5 + i, 6, "walonly"))
                .collect();
            wal.append(&batch).unwrap();
        }
        wal.sync().unwrap();
    }
    let seg = std::fs::read_dir(dir.path().join("wal"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .max()
        .unwrap();
    let mut bytes = std::fs::read(&seg).unwrap();
    bytes.extend_from_slice(&[42, 0, 0, 0, 1, 2, 3]);
    std::fs::write(&seg, bytes).unwrap();

    for life in 0..2 {
        let store = Arc::new(LogStore::open(dir.path()).unwrap());
        let pipeline = Pipeline::start(store.clone(), PipelineConfig::default()).unwrap();
        assert_eq!(count(&store, "walonly"), 15, "life {life}");
        assert_eq!(count(&store, "committed"), 10, "life {life}");
        // appending goes on after the cut tail
        pipeline
            .submit_durable(vec![record("checkout", "orders", 500 + life, 6, "later")])
            .await
            .unwrap();
        pipeline.flush().await.unwrap();
        assert_eq!(count(&store, "later"), 1 + life as usize);
        pipeline.shutdown().await.unwrap();
    }
}

#[tokio::test]
async fn commits_delete_the_wal_they_cover_and_the_queue_is_bounded_in_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(LogStore::open(dir.path()).unwrap());
    let cfg = PipelineConfig {
        queue_bytes: 64 * 1024,
        ..Default::default()
    };
    let pipeline = Pipeline::start(store.clone(), cfg).unwrap();
    // Far more than the queue's bound, submitted without waiting: some are refused, counted,
    // and the rest stored; nothing is half-taken.
    let mut refused = 0;
    let mut taken = 0;
    for i in 0..2_000 {
        let big = record(
            "checkout",
            "orders",
            i,
            6,
            &format!("bulk {}", "x".repeat(1000)),
        );
        match pipeline.try_submit(vec![big]) {
            Ok(()) => taken += 1,
            Err(peng_logs::LogError::QueueFull) => refused += 1,
            Err(e) => panic!("{e}"),
        }
    }
    assert!(
        refused > 0,
        "a 64 KiB queue refuses some of 2 MB submitted at once"
    );
    pipeline.flush().await.unwrap();
    assert_eq!(count(&store, "bulk"), taken);
    // a batch larger than the whole queue is taken once the queue is empty
    let huge: Vec<_> = (0..200)
        .map(|i| record("checkout", "orders", i, 6, &"y".repeat(1000)))
        .collect();
    assert!(pipeline.queued_bytes() <= 64 * 1024);
    pipeline.submit_durable(huge).await.unwrap();
    pipeline.flush().await.unwrap();
    assert_eq!(count(&store, "yyyy*"), 0);
    assert_eq!(wal_files(dir.path()), 1, "one segment, the current one");
    assert_eq!(store.wal_position(), store.committed_wal_position());
    pipeline.shutdown().await.unwrap();
}
