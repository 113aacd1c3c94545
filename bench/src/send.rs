//! The senders: GELF over TCP (several connections, many messages per write or one each), UDP
//! (one datagram per message) and HTTP (batches per `POST /gelf`), as fast as possible or (TCP,
//! UDP) paced to a rate. Messages are generated beforehand; only sending them is timed.

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

/// How a TCP sender hands its messages to the kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TcpWrites {
    /// Through a 256 KiB buffer: many messages per `write`, as fast as the kernel takes them.
    Buffered,
    /// One `write` per message (the message and its terminator), Nagle's algorithm off
    /// (`TCP_NODELAY`), as an appender that sends each event on its own does.
    PerMessage,
}

/// Sends each connection's messages, each followed by `terminator`, over its own connection,
/// all connections at once (one thread each). `rate` is the total over all connections.
pub fn send_tcp(
    addr: SocketAddr,
    per_conn: &[Vec<&[u8]>],
    terminator: &[u8],
    writes: TcpWrites,
    rate: Option<f64>,
    deadline: Instant,
) -> Result<SendOutcome> {
    let streams: Vec<TcpStream> = per_conn
        .iter()
        .map(|_| {
            let s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
                .with_context(|| format!("cannot connect to tcp {addr}"))?;
            s.set_write_timeout(Some(Duration::from_secs(30)))?;
            s.set_nodelay(writes == TcpWrites::PerMessage)?;
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
                        barrier.wait();
                        let start = Instant::now();
                        let pacer = Pacer {
                            rate: per_rate,
                            start,
                        };
                        let (sent, bytes, cut) = match writes {
                            TcpWrites::Buffered => {
                                write_buffered(stream, msgs, terminator, &pacer, deadline)?
                            }
                            TcpWrites::PerMessage => {
                                write_each(stream, msgs, terminator, &pacer, deadline)?
                            }
                        };
                        Ok(ConnOutcome {
                            sent,
                            bytes,
                            start,
                            end: Instant::now(),
                            cut,
                        })
                    })
            })
            .collect();
        join_scoped(handles, "a tcp sender")
    });
    merge(results)
}

/// `(sent, bytes, cut short)` of one connection writing through a buffer.
fn write_buffered(
    stream: TcpStream,
    msgs: &[&[u8]],
    terminator: &[u8],
    pacer: &Pacer,
    deadline: Instant,
) -> Result<(u64, u64, bool)> {
    let mut out = std::io::BufWriter::with_capacity(256 * 1024, stream);
    let (mut sent, mut bytes, mut cut) = (0u64, 0u64, false);
    for (i, m) in msgs.iter().enumerate() {
        if i % 1024 == 0 && Instant::now() > deadline {
            cut = true;
            break;
        }
        if pacer.rate.is_some() && pacer.wait_for(i as u64) {
            out.flush().context("tcp: write failed")?;
        }
        out.write_all(m)
            .and_then(|()| out.write_all(terminator))
            .context("tcp: write failed (did the server stop reading?)")?;
        sent += 1;
        bytes += (m.len() + terminator.len()) as u64;
    }
    out.flush().context("tcp: write failed")?;
    let stream = out
        .into_inner()
        .map_err(|e| anyhow::anyhow!("tcp: {}", e.error()))?;
    let _ = stream.shutdown(std::net::Shutdown::Write);
    Ok((sent, bytes, cut))
}

/// `(sent, bytes, cut short)` of one connection writing every message on its own.
fn write_each(
    mut stream: TcpStream,
    msgs: &[&[u8]],
    terminator: &[u8],
    pacer: &Pacer,
    deadline: Instant,
) -> Result<(u64, u64, bool)> {
    let mut frame = Vec::with_capacity(64 * 1024);
    let (mut sent, mut bytes, mut cut) = (0u64, 0u64, false);
    for (i, m) in msgs.iter().enumerate() {
        if i % 1024 == 0 && Instant::now() > deadline {
            cut = true;
            break;
        }
        pacer.wait_for(i as u64);
        frame.clear();
        frame.extend_from_slice(m);
        frame.extend_from_slice(terminator);
        stream
            .write_all(&frame)
            .context("tcp: write failed (did the server stop reading?)")?;
        sent += 1;
        bytes += frame.len() as u64;
    }
    let _ = stream.shutdown(std::net::Shutdown::Write);
    Ok((sent, bytes, cut))
}

/// One outcome of several senders: the sums, the first start and the last end.
fn merge(results: Vec<Result<ConnOutcome>>) -> Result<SendOutcome> {
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

/// What the HTTP senders did besides sending.
#[derive(Debug, Clone, Copy, Default)]
pub struct HttpCounts {
    /// Requests answered 2xx (one per batch).
    pub accepted: u64,
    /// Answers `503` (the write queue was full), each followed by a wait and the same batch.
    pub retried_503: u64,
    /// Seconds waited for `Retry-After` in all, over all senders.
    pub retry_wait: Duration,
}

/// Sends GELF over HTTP: each sender (one thread, one connection) posts its batches, each a
/// body of newline-separated messages, to `POST {base}/gelf` one after the other with the
/// ingest token in `X-Peng-Ingest-Token`. A `503` is answered by waiting its `Retry-After`
/// (seconds; 1 when absent) and posting the same batch again; any other answer but 2xx is an
/// error. `SendOutcome::sent` counts the messages of accepted batches.
pub fn send_http(
    base: &str,
    ingest_token: &str,
    per_sender: &[Vec<(&[u8], u64)>],
    deadline: Instant,
) -> Result<(SendOutcome, HttpCounts)> {
    let barrier = Barrier::new(per_sender.len());
    let url = format!("{base}/gelf");
    let results: Vec<Result<(ConnOutcome, HttpCounts)>> = std::thread::scope(|scope| {
        let handles: Vec<_> = per_sender
            .iter()
            .enumerate()
            .map(|(n, batches)| {
                let (barrier, url) = (&barrier, &url);
                std::thread::Builder::new()
                    .name(format!("http-sender-{n}"))
                    .spawn_scoped(scope, move || {
                        let rt = tokio::runtime::Builder::new_current_thread()
                            .enable_all()
                            .build()
                            .context("cannot start an async runtime for an http sender")?;
                        let client = reqwest::Client::builder()
                            .no_proxy()
                            .timeout(Duration::from_secs(120))
                            .build()
                            .context("cannot build the http client")?;
                        barrier.wait();
                        rt.block_on(post_batches(&client, url, ingest_token, batches, deadline))
                    })
            })
            .collect();
        join_scoped(handles, "an http sender")
    });
    let mut counts = HttpCounts::default();
    let mut conns = Vec::new();
    for r in results {
        match r {
            Ok((c, n)) => {
                counts.accepted += n.accepted;
                counts.retried_503 += n.retried_503;
                counts.retry_wait += n.retry_wait;
                conns.push(Ok(c));
            }
            Err(e) => conns.push(Err(e)),
        }
    }
    Ok((merge(conns)?, counts))
}

async fn post_batches(
    client: &reqwest::Client,
    url: &str,
    token: &str,
    batches: &[(&[u8], u64)],
    deadline: Instant,
) -> Result<(ConnOutcome, HttpCounts)> {
    let start = Instant::now();
    let mut counts = HttpCounts::default();
    let (mut sent, mut bytes, mut cut) = (0u64, 0u64, false);
    'batches: for (body, messages) in batches {
        loop {
            if Instant::now() > deadline {
                cut = true;
                break 'batches;
            }
            let r = client
                .post(url)
                .header("x-peng-ingest-token", token)
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(body.to_vec())
                .send()
                .await
                .context("POST /gelf failed")?;
            let status = r.status();
            if status.is_success() {
                counts.accepted += 1;
                sent += messages;
                bytes += body.len() as u64;
                continue 'batches;
            }
            if status == reqwest::StatusCode::SERVICE_UNAVAILABLE {
                let wait = retry_after(&r);
                counts.retried_503 += 1;
                counts.retry_wait += wait;
                tokio::time::sleep(wait).await;
                continue;
            }
            let text = r.text().await.unwrap_or_default();
            bail!(
                "POST /gelf: {status}: {}",
                text.chars().take(300).collect::<String>()
            );
        }
    }
    Ok((
        ConnOutcome {
            sent,
            bytes,
            start,
            end: Instant::now(),
            cut,
        },
        counts,
    ))
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

/// How long an answer asks to wait before trying again (`Retry-After` in seconds; 1 s when it
/// says nothing usable).
pub fn retry_after(r: &reqwest::Response) -> Duration {
    r.headers()
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map_or(Duration::from_secs(1), Duration::from_secs)
}

/// Waits for threads started with `Builder::spawn_scoped`: each one's result, or an error
/// naming `what` (`"a writer"`) when it could not start or panicked.
pub fn join_scoped<'scope, T>(
    handles: Vec<std::io::Result<std::thread::ScopedJoinHandle<'scope, Result<T>>>>,
    what: &str,
) -> Vec<Result<T>> {
    handles
        .into_iter()
        .map(|h| match h {
            Ok(h) => h
                .join()
                .unwrap_or_else(|_| Err(anyhow::anyhow!("{what} thread panicked"))),
            Err(e) => Err(anyhow::anyhow!("cannot start {what} thread: {e}")),
        })
        .collect()
}
