//! Real UDP and TCP sockets on 127.0.0.1 through the pipeline into a real index.

use std::io::Write;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use peng_core::metrics::component;
use peng_logs::gelf::ChunkLimits;
use peng_logs::index::{LogStore, SearchRequest};
use peng_logs::ingest::{serve_tcp, serve_udp, IngestAuth, IngestContext, UdpOptions};
use peng_logs::pipeline::{Pipeline, PipelineConfig};
use peng_logs::LogRecord;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio_util::sync::CancellationToken;

use crate::helpers::team;

struct Harness {
    _dir: tempfile::TempDir,
    store: Arc<LogStore>,
    ctx: IngestContext,
    udp: SocketAddr,
    tcp: SocketAddr,
    shutdown: CancellationToken,
}

const TOKEN: &str = "tok-checkout-0123456789";

async fn start(udp_opts: UdpOptions) -> Harness {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(LogStore::open(dir.path()).unwrap());
    let cfg = PipelineConfig {
        commit_interval: Duration::from_millis(100),
        ..Default::default()
    };
    let pipeline = Pipeline::start(store.clone(), cfg).unwrap();
    let auth = IngestAuth::default();
    auth.set(TOKEN, team("checkout"));
    let mut ctx = IngestContext::new(auth, pipeline);
    ctx.udp = udp_opts;
    ctx.tcp.max_frame = 64 * 1024;
    let shutdown = CancellationToken::new();
    let udp_sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let tcp_listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let udp = udp_sock.local_addr().unwrap();
    let tcp = tcp_listener.local_addr().unwrap();
    tokio::spawn(serve_udp(udp_sock, ctx.clone(), shutdown.clone()));
    tokio::spawn(serve_tcp(tcp_listener, ctx.clone(), shutdown.clone()));
    Harness {
        _dir: dir,
        store,
        ctx,
        udp,
        tcp,
        shutdown,
    }
}

impl Harness {
    /// Polls until `query` finds `n` records of team checkout.
    async fn wait_for(&self, query: &str, n: usize) -> Vec<LogRecord> {
        for _ in 0..500 {
            let resp = self
                .store
                .search(&SearchRequest {
                    team: Some(team("checkout")),
                    query: query.to_string(),
                    limit: 100,
                    ..Default::default()
                })
                .unwrap();
            if resp.total >= n {
                return resp.hits;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("{query:?} never found {n} records");
    }

    /// Polls until the dead-letter list holds a rejection with `reason`.
    async fn wait_rejected(&self, reason: &str) {
        for _ in 0..500 {
            if self
                .ctx
                .rejections
                .list()
                .iter()
                .any(|r| r.reason == reason)
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!(
            "no rejection {reason}; have {:?}",
            self.ctx.rejections.list()
        );
    }
}

fn gelf(message: &str, extra: &str) -> String {
    format!(
        r#"{{"version":"1.1","host":"app-1","short_message":"{message}","level":4,"_ingest_token":"{TOKEN}","_service":"orders"{extra}}}"#
    )
}

fn zlib(data: &[u8]) -> Vec<u8> {
    let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
    z.write_all(data).unwrap();
    z.finish().unwrap()
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut z = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    z.write_all(data).unwrap();
    z.finish().unwrap()
}

fn chunks(id: u64, payload: &[u8], size: usize) -> Vec<Vec<u8>> {
    let parts: Vec<&[u8]> = payload.chunks(size).collect();
    parts
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let mut v = vec![0x1e, 0x0f];
            v.extend_from_slice(&id.to_be_bytes());
            v.push(i as u8);
            v.push(parts.len() as u8);
            v.extend_from_slice(p);
            v
        })
        .collect()
}

/// Incompressible filler so that chunking really happens after compression.
fn noise(n: usize) -> String {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            char::from(b'a' + (x % 26) as u8)
        })
        .collect()
}

async fn udp_client() -> UdpSocket {
    UdpSocket::bind("127.0.0.1:0").await.unwrap()
}

#[tokio::test]
async fn chunked_zlib_over_udp_out_of_order_with_duplicates() {
    let h = start(UdpOptions::default()).await;
    let payload = zlib(
        gelf(
            "chunked zlib message",
            &format!(r#","_blob":"{}""#, noise(20_000)),
        )
        .as_bytes(),
    );
    let mut parts = chunks(42, &payload, 1400);
    assert!(parts.len() > 5);
    parts.reverse();
    let dup = parts[1].clone();
    parts.insert(2, dup);
    let c = udp_client().await;
    for p in &parts {
        c.send_to(p, h.udp).await.unwrap();
    }
    let hits = h.wait_for(r#""chunked zlib message""#, 1).await;
    assert_eq!(hits[0].service, "orders");
    assert_eq!(hits[0].level, 4);
    assert_eq!(hits[0].source.as_str(), "gelf-udp");
    assert!(!hits[0].fields.contains_key("ingest_token"));
    // A whole gzip datagram and a plain one.
    c.send_to(&gzip(gelf("gzip datagram", "").as_bytes()), h.udp)
        .await
        .unwrap();
    c.send_to(gelf("plain datagram", "").as_bytes(), h.udp)
        .await
        .unwrap();
    h.wait_for(r#""gzip datagram""#, 1).await;
    h.wait_for(r#""plain datagram""#, 1).await;
    // Chunked gzip too.
    let payload = gzip(
        gelf(
            "chunked gzip message",
            &format!(r#","_blob":"{}""#, noise(5000)),
        )
        .as_bytes(),
    );
    for p in chunks(43, &payload, 1000) {
        c.send_to(&p, h.udp).await.unwrap();
    }
    h.wait_for(r#""chunked gzip message""#, 1).await;
    h.shutdown.cancel();
}

#[tokio::test]
async fn bad_udp_input_is_counted_and_kept_as_dead_letters() {
    let h = start(UdpOptions::default()).await;
    let c = udp_client().await;
    let bad_json_before = component::discarded("gelf_udp", "invalid_json").get();
    c.send_to(b"\x1f\x8bnot really gzip", h.udp).await.unwrap();
    c.send_to(b"{not json", h.udp).await.unwrap();
    c.send_to(b"\x1e\x0f\x01\x02", h.udp).await.unwrap();
    c.send_to(b"\x1e\x0f\x00\x00\x00\x00\x00\x00\x00\x01\x00\xff!", h.udp)
        .await
        .unwrap();
    c.send_to(br#"{"short_message":"no token here"}"#, h.udp)
        .await
        .unwrap();
    c.send_to(
        br#"{"short_message":"bad token","_ingest_token":"guess"}"#,
        h.udp,
    )
    .await
    .unwrap();
    c.send_to(b"[1,2]", h.udp).await.unwrap();
    let mut huge = zlib(&vec![b' '; 9 * 1024 * 1024]);
    huge.truncate(60_000);
    c.send_to(&huge, h.udp).await.unwrap();
    for reason in [
        "bad_compression",
        "invalid_json",
        "chunk_truncated",
        "too_many_chunks",
        "no_token",
        "bad_token",
        "not_object",
    ] {
        h.wait_rejected(reason).await;
    }
    assert!(component::discarded("gelf_udp", "invalid_json").get() > bad_json_before);
    let r = h.ctx.rejections.list();
    let no_token = r.iter().find(|r| r.reason == "no_token").unwrap();
    assert_eq!(no_token.source.as_str(), "gelf-udp");
    assert!(no_token.peer.is_some());
    // Still alive and storing good messages.
    c.send_to(gelf("after the garbage", "").as_bytes(), h.udp)
        .await
        .unwrap();
    h.wait_for(r#""after the garbage""#, 1).await;
    // Nothing unattributable reached any team.
    let all = h
        .store
        .search(&SearchRequest {
            query: "token".into(),
            limit: 10,
            ..Default::default()
        })
        .unwrap();
    assert_eq!(all.total, 0);
    h.shutdown.cancel();
}

#[tokio::test]
async fn oversized_udp_messages_are_refused() {
    let h = start(UdpOptions::default()).await;
    let c = udp_client().await;
    // 12 MiB of spaces compresses to a few KiB; reassembled and then refused by the cap.
    let bomb = zlib(
        format!(
            "{{\"short_message\":\"x\"{}}}",
            " ".repeat(12 * 1024 * 1024)
        )
        .as_bytes(),
    );
    for p in chunks(7, &bomb, 8000) {
        c.send_to(&p, h.udp).await.unwrap();
    }
    h.wait_rejected("too_large").await;
    h.shutdown.cancel();
}

#[tokio::test]
async fn a_flood_of_incomplete_chunk_sets_stays_bounded() {
    let limits = ChunkLimits {
        max_bytes: 256 * 1024,
        max_sets: 100,
        ..ChunkLimits::default()
    };
    let h = start(UdpOptions {
        chunks: limits,
        ..UdpOptions::default()
    })
    .await;
    let evicted_before = component::discarded("gelf_udp", "chunk_evicted").get();
    let kernel_before = component::discarded("gelf_udp", "kernel_drop").get();
    let c = udp_client().await;
    let filler = vec![b'x'; 1000];
    for id in 0..2000u64 {
        let mut p = vec![0x1e, 0x0f];
        p.extend_from_slice(&(1_000_000 + id).to_be_bytes());
        p.extend_from_slice(&[0, 2]);
        p.extend_from_slice(&filler);
        c.send_to(&p, h.udp).await.unwrap();
        if id % 200 == 0 {
            tokio::task::yield_now().await;
        }
    }
    // The listener keeps working and a complete message still gets through.
    let payload = zlib(gelf("after the flood", "").as_bytes());
    for p in chunks(99, &payload, 20) {
        c.send_to(&p, h.udp).await.unwrap();
    }
    h.wait_for(r#""after the flood""#, 1).await;
    // At most 100 sets are held: every other set received was evicted, or the kernel
    // dropped its datagram (counted once a second).
    let mut accounted = 0;
    for _ in 0..300 {
        let evicted = component::discarded("gelf_udp", "chunk_evicted").get() - evicted_before;
        let kernel = component::discarded("gelf_udp", "kernel_drop").get() - kernel_before;
        accounted = evicted + kernel;
        if accounted >= 1900 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        accounted >= 1900,
        "only {accounted} of 2000 sets evicted or dropped"
    );
    h.shutdown.cancel();
}

#[tokio::test]
async fn tcp_frames_null_delimited_with_a_last_newline_frame() {
    let h = start(UdpOptions::default()).await;
    let mut s = TcpStream::connect(h.tcp).await.unwrap();
    let mut data = Vec::new();
    data.extend_from_slice(gelf("tcp one", "").as_bytes());
    data.push(0);
    data.extend_from_slice(b"{broken");
    data.push(0);
    data.extend_from_slice(&vec![b'y'; 100 * 1024]);
    data.push(0);
    data.extend_from_slice(gelf("tcp two", r#","_user_id":42"#).as_bytes());
    data.push(0);
    data.extend_from_slice(gelf("tcp last", "").as_bytes());
    data.push(b'\n');
    // In small pieces, to cross read boundaries inside frames.
    for piece in data.chunks(777) {
        s.write_all(piece).await.unwrap();
    }
    s.shutdown().await.unwrap();
    drop(s);
    let hits = h.wait_for(r#"source:gelf-tcp"#, 3).await;
    assert_eq!(hits.len(), 3);
    h.wait_for("user_id:42", 1).await;
    h.wait_rejected("frame_too_long").await;
    h.wait_rejected("invalid_json").await;
    h.shutdown.cancel();
}

#[tokio::test]
async fn http_bodies_are_durable_once_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = Arc::new(LogStore::open(dir.path()).unwrap());
        // A long commit interval: only the durable path can make this commit quickly.
        let cfg = PipelineConfig {
            commit_interval: Duration::from_secs(3600),
            ..Default::default()
        };
        let pipeline = Pipeline::start(store.clone(), cfg).unwrap();
        let auth = IngestAuth::default();
        auth.set(TOKEN, team("checkout"));
        let ctx = IngestContext::new(auth, pipeline.clone());
        let body = format!("{}\n{}\n", gelf("durable one", ""), gelf("durable two", ""));
        let records = ctx
            .decode_http(&gzip(body.as_bytes()), Some("gzip"), None, None)
            .unwrap();
        assert_eq!(records.len(), 2);
        pipeline.submit_durable(records).await.unwrap();
        // Acknowledged means on disk in the WAL, past what the index has committed (the
        // commit comes at its interval, an hour here).
        let mut in_wal = Vec::new();
        peng_logs::wal::replay(
            &dir.path().join("wal"),
            store.committed_wal_position(),
            |records, _| {
                in_wal.extend(records.into_iter().map(|r| r.message));
                Ok(())
            },
        )
        .unwrap();
        assert_eq!(in_wal, ["durable one", "durable two"]);
        // Not committed yet: stays behind on purpose, then the pipeline is dropped
        // without shutdown.
        pipeline
            .try_submit(vec![crate::helpers::record(
                "checkout",
                "orders",
                5,
                6,
                "maybe lost",
            )])
            .unwrap();
        let err = ctx
            .decode_http(b"{\"short_message\":\"x\"}", None, None, None)
            .unwrap_err();
        assert_eq!(err.reason(), "no_token");
        assert_eq!(ctx.rejections.list()[0].source.as_str(), "gelf-http");
        pipeline.shutdown().await.unwrap();
        assert!(pipeline
            .try_submit(vec![crate::helpers::record(
                "checkout", "orders", 5, 6, "late"
            )])
            .is_err());
    }
    // Reopened, and with a pipeline started again (which adds what the WAL holds past the
    // index): each message exactly once.
    let store = Arc::new(LogStore::open(dir.path()).unwrap());
    let pipeline = Pipeline::start(store.clone(), PipelineConfig::default()).unwrap();
    let resp = store
        .search(&SearchRequest {
            team: Some(team("checkout")),
            query: "durable".into(),
            limit: 10,
            ..Default::default()
        })
        .unwrap();
    assert_eq!(resp.total, 2);
    pipeline.shutdown().await.unwrap();
}
