//! The GELF UDP listener: whole datagrams or chunks, compressed or not.

use std::time::{Duration, Instant};

use peng_core::metrics::component;
use tokio::net::UdpSocket;
use tokio_util::sync::CancellationToken;

use super::{ingest_payload, IngestContext};
use crate::gelf::{ChunkAssembler, ChunkLimits, ChunkPush};
use crate::record::LogSource;

const SOURCE: LogSource = LogSource::GelfUdp;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UdpOptions {
    /// SO_RCVBUF asked for. The kernel caps it at `net.core.rmem_max` unless peng may raise it
    /// past that (`CAP_NET_ADMIN`, as root), which it then does.
    pub recv_buffer: usize,
    pub chunks: ChunkLimits,
    /// Most records handed to the pipeline in one batch.
    pub batch: usize,
}

impl Default for UdpOptions {
    fn default() -> Self {
        Self {
            recv_buffer: 16 * 1024 * 1024,
            chunks: ChunkLimits::default(),
            batch: 256,
        }
    }
}

/// Receives GELF datagrams until `shutdown` is cancelled.
pub async fn serve_udp(socket: UdpSocket, ctx: IngestContext, shutdown: CancellationToken) {
    let sock = socket2::SockRef::from(&socket);
    if let Err(error) = sock.set_recv_buffer_size(ctx.udp.recv_buffer) {
        tracing::warn!(%error, "cannot enlarge the gelf udp receive buffer");
    }
    // Linux reports twice what was set (the other half is its bookkeeping); less means capped.
    if sock.recv_buffer_size().unwrap_or(0) < ctx.udp.recv_buffer.saturating_mul(2) {
        force_recv_buffer(&socket, ctx.udp.recv_buffer);
    }
    let local_port = socket.local_addr().map(|a| a.port()).ok();
    tracing::info!(
        addr = ?socket.local_addr().ok(),
        recv_buffer = sock.recv_buffer_size().unwrap_or(0),
        "gelf udp listening"
    );
    let name = SOURCE.component();
    let received = component::received(name);
    let received_bytes = component::received_bytes(name);
    let expired = component::discarded(name, "chunk_timeout");
    let evicted = component::discarded(name, "chunk_evicted");
    let duplicates = component::discarded(name, "chunk_duplicate");
    let kernel_drops = component::discarded(name, "kernel_drop");
    let mut kernel_seen = local_port.and_then(kernel_udp_drops);
    let mut assembler = ChunkAssembler::new(ctx.udp.chunks);
    let mut evicted_seen = 0;
    let mut buf = vec![0u8; 65_536];
    let mut batch = Vec::new();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        let first = tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = tick.tick() => {
                expired.add(assembler.expire(Instant::now()));
                if let (Some(port), Some(seen)) = (local_port, kernel_seen) {
                    if let Some(now) = kernel_udp_drops(port) {
                        kernel_drops.add(now.saturating_sub(seen));
                        kernel_seen = Some(now);
                    }
                }
                continue;
            }
            r = socket.recv_from(&mut buf) => r,
        };
        let mut next = Some(first);
        // Drain what is already queued, then hand one batch to the pipeline.
        while let Some(result) = next.take() {
            match result {
                Ok((n, peer)) => {
                    received.inc();
                    received_bytes.add(n as u64);
                    let datagram = &buf[..n];
                    let payload = if ChunkAssembler::is_chunk(datagram) {
                        match assembler.push(datagram, Instant::now()) {
                            Ok(ChunkPush::Complete(p)) => Some(p),
                            Ok(ChunkPush::Pending) => None,
                            Ok(ChunkPush::Duplicate) => {
                                duplicates.inc();
                                None
                            }
                            Err(e) => {
                                ctx.reject(SOURCE, Some(peer), &e, datagram);
                                None
                            }
                        }
                    } else {
                        Some(datagram.to_vec())
                    };
                    let now_evicted = assembler.evicted_total();
                    evicted.add(now_evicted - evicted_seen);
                    evicted_seen = now_evicted;
                    if let Some(p) = payload {
                        if let Some(r) = ingest_payload(&ctx, SOURCE, Some(peer), &p, true) {
                            batch.push(r);
                        }
                    }
                }
                Err(error) => {
                    component::errors(name, "receive").inc();
                    tracing::debug!(%error, "gelf udp receive failed");
                }
            }
            if batch.len() < ctx.udp.batch {
                next = match socket.try_recv_from(&mut buf) {
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => None,
                    other => Some(other),
                };
            }
        }
        if !batch.is_empty() {
            let _ = ctx.pipeline.try_submit(std::mem::take(&mut batch));
        }
    }
}

/// Raises the receive buffer past `net.core.rmem_max` where peng may (`SO_RCVBUFFORCE` needs
/// `CAP_NET_ADMIN`): the buffer is what absorbs a burst while the receiving task waits for a
/// core, and the default cap (often 208 KiB or 4 MiB) holds well under a second of traffic.
fn force_recv_buffer(socket: &UdpSocket, bytes: usize) {
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsRawFd;
        let value = libc::c_int::try_from(bytes).unwrap_or(libc::c_int::MAX);
        // SAFETY: the descriptor is the open socket borrowed for this call, and the option
        // value is a c_int whose size is passed with it.
        let rc = unsafe {
            libc::setsockopt(
                socket.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVBUFFORCE,
                std::ptr::from_ref(&value).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        if rc != 0 {
            tracing::debug!(
                error = %std::io::Error::last_os_error(),
                "gelf udp receive buffer stays at net.core.rmem_max"
            );
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = (socket, bytes);
}

/// The kernel's drop count for the UDP socket bound to `port` (`/proc/net/udp*`, last
/// column), or `None` where that is not visible.
fn kernel_udp_drops(port: u16) -> Option<u64> {
    let want = format!(":{port:04X}");
    let mut total = None;
    for file in ["/proc/net/udp", "/proc/net/udp6"] {
        let Ok(text) = std::fs::read_to_string(file) else {
            continue;
        };
        for line in text.lines().skip(1) {
            let cols: Vec<&str> = line.split_whitespace().collect();
            if cols.get(1).is_some_and(|local| local.ends_with(&want)) {
                if let Some(d) = cols.last().and_then(|d| d.parse::<u64>().ok()) {
                    total = Some(total.unwrap_or(0) + d);
                }
            }
        }
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rmem_max() -> Option<usize> {
        std::fs::read_to_string("/proc/sys/net/core/rmem_max")
            .ok()?
            .trim()
            .parse()
            .ok()
    }

    #[tokio::test]
    async fn the_receive_buffer_goes_past_rmem_max_where_peng_may() {
        let Some(max) = rmem_max() else {
            return; // not Linux: nothing to force
        };
        let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let want = max * 2;
        force_recv_buffer(&socket, want);
        let got = socket2::SockRef::from(&socket).recv_buffer_size().unwrap();
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } == 0 {
            assert_eq!(got, want * 2, "root may set SO_RCVBUFFORCE past rmem_max");
        } else {
            assert!(got <= max * 2, "without CAP_NET_ADMIN the cap holds: {got}");
        }
    }
}
