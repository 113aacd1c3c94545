//! Fair shares: idle connections give way to new senders, and one team that floods the queue
//! fills only its own share of it.

use std::sync::Arc;
use std::time::Duration;

use peng_logs::index::{LogStore, SearchRequest};
use peng_logs::ingest::{serve_tcp, IngestAuth, IngestContext};
use peng_logs::pipeline::{Pipeline, PipelineConfig};
use peng_logs::LogError;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

use crate::helpers::{record, team};

#[tokio::test]
async fn idle_connections_give_way_to_a_new_sender() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(LogStore::open(dir.path()).unwrap());
    let cfg = PipelineConfig {
        commit_interval: Duration::from_millis(100),
        ..Default::default()
    };
    let pipeline = Pipeline::start(store.clone(), cfg).unwrap();
    let auth = IngestAuth::default();
    auth.set("tok-quiet-0123456789", team("quiet"));
    let mut ctx = IngestContext::new(auth, pipeline.clone());
    ctx.tcp.max_connections = 8;
    ctx.tcp.evict_after = Duration::from_millis(200);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let shutdown = CancellationToken::new();
    tokio::spawn(serve_tcp(listener, ctx, shutdown.clone()));

    // Every place taken by a connection that sends nothing.
    let mut idle = Vec::new();
    for _ in 0..8 {
        idle.push(TcpStream::connect(addr).await.unwrap());
    }
    tokio::time::sleep(Duration::from_millis(400)).await;
    let mut sender = TcpStream::connect(addr).await.unwrap();
    sender
        .write_all(b"{\"version\":\"1.1\",\"host\":\"h\",\"short_message\":\"still heard\",\"_ingest_token\":\"tok-quiet-0123456789\"}\0")
        .await
        .unwrap();
    let mut found = 0;
    for _ in 0..200 {
        found = store
            .search(&SearchRequest {
                team: Some(team("quiet")),
                query: "heard".into(),
                limit: 0,
                ..Default::default()
            })
            .unwrap()
            .total;
        if found == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(found, 1, "the new sender was let in");
    // the one idle longest was closed to make room
    let mut closed = 0;
    for mut c in idle {
        let mut buf = [0u8; 1];
        if let Ok(Ok(0)) = tokio::time::timeout(Duration::from_millis(100), c.read(&mut buf)).await
        {
            closed += 1;
        }
    }
    assert_eq!(closed, 1);
    shutdown.cancel();
    pipeline.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_team_that_floods_the_queue_fills_only_its_own_share() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(LogStore::open(dir.path()).unwrap());
    let cfg = PipelineConfig {
        queue_bytes: 256 * 1024,
        ..Default::default()
    };
    let pipeline = Pipeline::start(store.clone(), cfg).unwrap();
    let big = "x".repeat(1000);
    let (mut noisy_refused, mut quiet_refused, mut quiet_sent) = (0, 0, 0);
    for i in 0..20_000 {
        let r = record("noisy", "flood", i, 6, &big);
        match pipeline.try_submit(vec![r]) {
            Ok(()) => {}
            Err(LogError::QueueFull) => noisy_refused += 1,
            Err(e) => panic!("{e}"),
        }
        if i % 100 == 0 {
            let r = record("quiet", "orders", i, 6, "a quiet line");
            quiet_sent += 1;
            if pipeline.try_submit(vec![r]).is_err() {
                quiet_refused += 1;
            }
        }
    }
    assert!(noisy_refused > 0, "the flood met its share's bound");
    assert_eq!(quiet_refused, 0, "the quiet team always found room");
    pipeline.flush().await.unwrap();
    let quiet = store
        .search(&SearchRequest {
            team: Some(team("quiet")),
            query: "quiet".into(),
            limit: 0,
            ..Default::default()
        })
        .unwrap()
        .total;
    assert_eq!(quiet, quiet_sent);
    pipeline.shutdown().await.unwrap();
}
