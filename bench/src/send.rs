//! The senders: GELF over TCP (null-delimited, several connections) and UDP (one datagram per
//! message), as fast as possible or paced to a rate. Messages are generated beforehand; only
//! writing them is timed.

use std::io::Write;
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::sync::Barrier;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

/// What one transport's sending did.
#[derive(Debug, Clone, Copy)]
pub struct SendOutcome {
    /// Messages handed to the kernel.
    pub sent: u64,
    pub bytes: u64,
    /// Send calls that failed (UDP: e.g. ENOBUFS); those messages are not in `sent`.
    pub errors: u64,
    pub first: Instant,
    pub last: Instant,
    /// Stopped by the time limit before every message was sent.
    pub cut_short: bool,
}

impl SendOutcome {
    pub fn duration(&self) -> Duration {
        self.last.saturating_duration_since(self.first)
    }
}

/// What one TCP connection did.
struct ConnOutcome {
    sent: u64,
    bytes: u64,
    start: Instant,
    end: Instant,
    cut: bool,
}

/// Paces one sender to `rate` messages per second (no pacing when `None`).
struct Pacer {
    rate: Option<f64>,
    start: Instant,
}

impl Pacer {
    /// Sleeps until message number `i` is due. Returns true when it slept.
    fn wait_for(&self, i: u64) -> bool {
        let Some(rate) = self.rate else { return false };
        let due = self.start + Duration::from_secs_f64(i as f64 / rate);
        let now = Instant::now();
        if due > now {
            std::thread::sleep(due - now);
            true
        } else {
            false
        }
    }
}

/// Sends each connection's messages (each already ending in `\0`) over its own connection, all
/// connections at once. `rate` is the total over all connections.
pub fn send_tcp(
    addr: SocketAddr,
    per_conn: &[Vec<Vec<u8>>],
    rate: Option<f64>,
    deadline: Instant,
) -> Result<SendOutcome> {
    let streams: Vec<TcpStream> = per_conn
        .iter()
        .map(|_| {
            let s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
                .with_context(|| format!("cannot connect to gelf tcp {addr}"))?;
            s.set_write_timeout(Some(Duration::from_secs(10)))?;
            Ok(s)
        })
        .collect::<Result<_>>()?;
    let per_rate = rate.map(|r| r / per_conn.len() as f64);
    let barrier = Barrier::new(per_conn.len());
    let results: Vec<Result<ConnOutcome>> = std::thread::scope(|scope| {
        let handles: Vec<_> = streams
            .into_iter()
            .zip(per_conn)
            .enumerate()
            .map(|(n, (stream, msgs))| {
                let barrier = &barrier;
                std::thread::Builder::new()
                    .name(format!("tcp-sender-{n}"))
                    .spawn_scoped(scope, move || -> Result<ConnOutcome> {
                        let mut out = std::io::BufWriter::with_capacity(256 * 1024, stream);
                        barrier.wait();
                        let start = Instant::now();
                        let pacer = Pacer {
                            rate: per_rate,
                            start,
                        };
                        let (mut sent, mut bytes, mut cut) = (0u64, 0u64, false);
                        for (i, m) in msgs.iter().enumerate() {
                            if i % 1024 == 0 && Instant::now() > deadline {
                                cut = true;
                                break;
                            }
                            if per_rate.is_some() && pacer.wait_for(i as u64) {
                                out.flush().context("gelf tcp: write failed")?;
                            }
                            out.write_all(m)
                                .context("gelf tcp: write failed (did peng stop reading?)")?;
                            sent += 1;
                            bytes += m.len() as u64;
                        }
                        out.flush().context("gelf tcp: write failed")?;
                        let end = Instant::now();
                        let stream = out
                            .into_inner()
                            .map_err(|e| anyhow::anyhow!("gelf tcp: {}", e.error()))?;
                        let _ = stream.shutdown(std::net::Shutdown::Write);
                        Ok(ConnOutcome {
                            sent,
                            bytes,
                            start,
                            end,
                            cut,
                        })
                    })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| match h {
                Ok(h) => h
                    .join()
                    .unwrap_or_else(|_| Err(anyhow::anyhow!("a tcp sender thread panicked"))),
                Err(e) => Err(anyhow::anyhow!("cannot start a sender thread: {e}")),
            })
            .collect()
    });
    let mut o = SendOutcome {
        sent: 0,
        bytes: 0,
        errors: 0,
        first: Instant::now(),
        last: Instant::now(),
        cut_short: false,
    };
    let mut last = None::<Instant>;
    for r in results {
        let ConnOutcome {
            sent,
            bytes,
            start,
            end,
            cut,
        } = r?;
        o.sent += sent;
        o.bytes += bytes;
        o.first = o.first.min(start);
        last = Some(last.map_or(end, |l: Instant| l.max(end)));
        o.cut_short |= cut;
    }
    o.last = last.unwrap_or(o.first);
    Ok(o)
}

/// Sends every message as one datagram from one socket.
pub fn send_udp(
    addr: SocketAddr,
    msgs: &[Vec<u8>],
    rate: Option<f64>,
    deadline: Instant,
) -> Result<SendOutcome> {
    let sock = UdpSocket::bind("127.0.0.1:0").context("cannot bind a udp socket")?;
    sock.connect(addr)
        .with_context(|| format!("cannot connect the udp socket to {addr}"))?;
    let start = Instant::now();
    let pacer = Pacer { rate, start };
    let mut o = SendOutcome {
        sent: 0,
        bytes: 0,
        errors: 0,
        first: start,
        last: start,
        cut_short: false,
    };
    let mut consecutive_errors = 0u32;
    for (i, m) in msgs.iter().enumerate() {
        if i % 1024 == 0 && Instant::now() > deadline {
            o.cut_short = true;
            break;
        }
        pacer.wait_for(i as u64);
        match sock.send(m) {
            Ok(_) => {
                o.sent += 1;
                o.bytes += m.len() as u64;
                consecutive_errors = 0;
            }
            Err(e) => {
                o.errors += 1;
                consecutive_errors += 1;
                if consecutive_errors >= 10_000 {
                    bail!("gelf udp: 10000 sends in a row failed, the last with: {e}");
                }
                // The local buffer is full (ENOBUFS) or the port refused: give the kernel a moment.
                std::thread::sleep(Duration::from_micros(50));
            }
        }
    }
    o.last = Instant::now();
    Ok(o)
}
