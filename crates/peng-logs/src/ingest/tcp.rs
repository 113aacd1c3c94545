//! The GELF TCP listener: uncompressed JSON frames ended by a null byte.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use peng_core::metrics::{component, gauge};
use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

use super::{ingest_payload, IngestContext};
use crate::gelf::GelfError;
use crate::record::LogSource;

const SOURCE: LogSource = LogSource::GelfTcp;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TcpOptions {
    /// Longest frame; a longer one is discarded up to its null byte and counted.
    pub max_frame: usize,
    /// Open connections at most. At the limit a new connection takes the place of the one
    /// idle longest (idle at least [`TcpOptions::evict_after`]); when none is, it is closed
    /// at once and counted.
    pub max_connections: usize,
    /// Open connections from one address at most, with the same eviction among its own.
    pub max_per_address: usize,
    /// How long a connection must have been idle to give its place to a new one.
    pub evict_after: Duration,
    /// A connection that sends nothing for this long is closed.
    pub idle_timeout: Duration,
}

impl Default for TcpOptions {
    fn default() -> Self {
        Self {
            max_frame: 1024 * 1024,
            max_connections: 1024,
            max_per_address: 256,
            evict_after: Duration::from_secs(1),
            idle_timeout: Duration::from_secs(300),
        }
    }
}

/// An open connection as the listener sees it.
struct Open {
    ip: IpAddr,
    /// Milliseconds since the listener started, at its last read.
    last: Arc<AtomicU64>,
    close: CancellationToken,
}

/// The open connections, and who gives way to whom.
#[derive(Default)]
struct Connections {
    open: HashMap<u64, Open>,
    next: u64,
}

impl Connections {
    /// Makes room for a connection from `ip`: `None` when there is none to make.
    fn admit(
        &mut self,
        ip: IpAddr,
        opts: &TcpOptions,
        now_ms: u64,
    ) -> Option<(u64, Arc<AtomicU64>, CancellationToken)> {
        let idle_ms = opts.evict_after.as_millis() as u64;
        let from_ip = self.open.values().filter(|c| c.ip == ip).count();
        let full = self.open.len() >= opts.max_connections;
        let ip_full = from_ip >= opts.max_per_address;
        if full || ip_full {
            // the one idle longest, among the address's own when it is the address's limit
            let victim = self
                .open
                .iter()
                .filter(|(_, c)| !ip_full || c.ip == ip)
                .map(|(id, c)| (*id, c.last.load(Ordering::Relaxed)))
                .filter(|(_, last)| now_ms.saturating_sub(*last) >= idle_ms)
                .min_by_key(|(_, last)| *last)?;
            if let Some(c) = self.open.remove(&victim.0) {
                c.close.cancel();
                component::discarded(SOURCE.component(), "evicted_idle").inc();
            }
        }
        let id = self.next;
        self.next += 1;
        let last = Arc::new(AtomicU64::new(now_ms));
        let close = CancellationToken::new();
        self.open.insert(
            id,
            Open {
                ip,
                last: last.clone(),
                close: close.clone(),
            },
        );
        Some((id, last, close))
    }
}

/// Accepts GELF TCP connections until `shutdown` is cancelled; open connections stop too.
pub async fn serve_tcp(listener: TcpListener, ctx: IngestContext, shutdown: CancellationToken) {
    tracing::info!(addr = ?listener.local_addr().ok(), "gelf tcp listening");
    let conns = Arc::new(Mutex::new(Connections::default()));
    let started = Instant::now();
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
        let now_ms = started.elapsed().as_millis() as u64;
        let admitted = {
            let mut c = conns.lock().unwrap_or_else(|p| p.into_inner());
            let admitted = c.admit(peer.ip(), &ctx.tcp, now_ms);
            open.set(c.open.len() as u64);
            admitted
        };
        let Some((id, last, close)) = admitted else {
            component::discarded(SOURCE.component(), "connection_limit").inc();
            drop(stream);
            continue;
        };
        let ctx = ctx.clone();
        let shutdown = shutdown.clone();
        let conns = conns.clone();
        tokio::spawn(async move {
            let activity = Activity { last, started };
            tokio::select! {
                _ = close.cancelled() => {}
                _ = connection(stream, peer, &ctx, shutdown, &activity) => {}
            }
            conns
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .open
                .remove(&id);
        });
    }
}

/// Where a connection notes that it is in use.
struct Activity {
    last: Arc<AtomicU64>,
    started: Instant,
}

impl Activity {
    /// Waiting for room in the queue is being in use, not idle: such a connection is never
    /// evicted (it is the one being slowed).
    fn busy(&self) {
        self.last.store(u64::MAX, Ordering::Relaxed);
    }

    fn now(&self) {
        self.last
            .store(self.started.elapsed().as_millis() as u64, Ordering::Relaxed);
    }
}

async fn connection(
    mut stream: TcpStream,
    peer: std::net::SocketAddr,
    ctx: &IngestContext,
    shutdown: CancellationToken,
    activity: &Activity,
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
        activity.now();
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
        if !records.is_empty() {
            activity.busy();
            let submitted = ctx.pipeline.submit(records).await;
            activity.now();
            if submitted.is_err() {
                return;
            }
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
