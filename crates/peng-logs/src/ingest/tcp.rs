//! The GELF TCP listener: uncompressed JSON frames ended by a null byte.

use std::sync::Arc;
use std::time::Duration;

use peng_core::metrics::{component, gauge};
use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use super::{ingest_payload, IngestContext};
use crate::gelf::GelfError;
use crate::record::LogSource;

const SOURCE: LogSource = LogSource::GelfTcp;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TcpOptions {
    /// Longest frame; a longer one is discarded up to its null byte and counted.
    pub max_frame: usize,
    /// Open connections at most; more are closed at once and counted.
    pub max_connections: usize,
    /// A connection that sends nothing for this long is closed.
    pub idle_timeout: Duration,
}

impl Default for TcpOptions {
    fn default() -> Self {
        Self {
            max_frame: 1024 * 1024,
            max_connections: 1024,
            idle_timeout: Duration::from_secs(300),
        }
    }
}

/// Accepts GELF TCP connections until `shutdown` is cancelled; open connections stop too.
pub async fn serve_tcp(listener: TcpListener, ctx: IngestContext, shutdown: CancellationToken) {
    tracing::info!(addr = ?listener.local_addr().ok(), "gelf tcp listening");
    let slots = Arc::new(Semaphore::new(ctx.tcp.max_connections));
    let open = gauge("peng_gelf_tcp_connections", &[]);
    loop {
        let accepted = tokio::select! {
            _ = shutdown.cancelled() => break,
            a = listener.accept() => a,
        };
        let (stream, peer) = match accepted {
            Ok(a) => a,
            Err(error) => {
                component::errors(SOURCE.component(), "accept").inc();
                tracing::debug!(%error, "gelf tcp accept failed");
                // Out of file descriptors and the like: do not spin.
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            component::discarded(SOURCE.component(), "connection_limit").inc();
            drop(stream);
            continue;
        };
        let ctx = ctx.clone();
        let shutdown = shutdown.clone();
        let open = open.clone();
        let total = ctx.tcp.max_connections;
        open.set((total - slots.available_permits()) as u64);
        tokio::spawn(async move {
            connection(stream, peer, &ctx, shutdown).await;
            drop(permit);
        });
    }
}

async fn connection(
    mut stream: TcpStream,
    peer: std::net::SocketAddr,
    ctx: &IngestContext,
    shutdown: CancellationToken,
) {
    let name = SOURCE.component();
    let max = ctx.tcp.max_frame;
    let mut frame: Vec<u8> = Vec::new();
    let mut discarding = false;
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let read = tokio::select! {
            _ = shutdown.cancelled() => return,
            r = tokio::time::timeout(ctx.tcp.idle_timeout, stream.read(&mut buf)) => r,
        };
        let n = match read {
            Err(_) => {
                component::discarded(name, "idle_timeout").inc();
                return;
            }
            Ok(Err(_)) => {
                component::errors(name, "receive").inc();
                return;
            }
            Ok(Ok(0)) => {
                // A last frame without its null byte (often newline-terminated) still counts.
                let last = frame.trim_ascii();
                if !discarding && !last.is_empty() {
                    component::received(name).inc();
                    if let Some(r) = ingest_payload(ctx, SOURCE, Some(peer), last, false) {
                        let _ = ctx.pipeline.submit(vec![r]).await;
                    }
                }
                return;
            }
            Ok(Ok(n)) => n,
        };
        component::received_bytes(name).add(n as u64);
        let mut records = Vec::new();
        let mut rest = &buf[..n];
        while !rest.is_empty() {
            match rest.iter().position(|b| *b == 0) {
                Some(end) => {
                    if discarding {
                        discarding = false;
                    } else if frame.len() + end > max {
                        frame.clear();
                        too_long(ctx, peer, max, &rest[..end]);
                    } else {
                        frame.extend_from_slice(&rest[..end]);
                        if !frame.trim_ascii().is_empty() {
                            component::received(name).inc();
                            if let Some(r) = ingest_payload(ctx, SOURCE, Some(peer), &frame, false)
                            {
                                records.push(r);
                            }
                        }
                        frame.clear();
                    }
                    rest = &rest[end + 1..];
                }
                None => {
                    if !discarding {
                        if frame.len() + rest.len() > max {
                            too_long(ctx, peer, max, &frame);
                            frame = Vec::new();
                            discarding = true;
                        } else {
                            frame.extend_from_slice(rest);
                        }
                    }
                    rest = &[];
                }
            }
        }
        if !records.is_empty() && ctx.pipeline.submit(records).await.is_err() {
            return;
        }
    }
}

fn too_long(ctx: &IngestContext, peer: std::net::SocketAddr, max: usize, head: &[u8]) {
    component::received(SOURCE.component()).inc();
    ctx.reject(
        SOURCE,
        Some(peer),
        &GelfError::FrameTooLong { limit: max },
        head,
    );
}
