//! The one writer of the log store: a bounded queue into a named thread that batches records
//! into the index and commits at least every [`PipelineConfig::commit_interval`].
//!
//! Owns the queue, the commit schedule and the acknowledgements of durable submits. It must
//! never block an async caller ([`PipelineHandle::try_submit`] drops and counts when the queue
//! is full) and must never acknowledge a durable submit before the commit that holds its
//! records succeeded.

use std::sync::Arc;
use std::time::{Duration, Instant};

use peng_core::metrics::{component, gauge};
use tokio::sync::{mpsc, oneshot};

use crate::index::LogStore;
use crate::record::{LogRecord, LogSource};
use crate::LogError;

/// Component name of the writer's counters.
pub const WRITER: &str = "log_writer";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PipelineConfig {
    /// Batches the queue holds before `try_submit` drops (a batch is what one call submits).
    pub queue_batches: usize,
    /// Longest time a record waits for its commit (how soon it is searchable).
    pub commit_interval: Duration,
    /// Longest time a durable submit waits for its commit.
    pub durable_commit_delay: Duration,
    /// Records added before a commit is forced regardless of time.
    pub max_uncommitted: usize,
}

impl Default for PipelineConfig {
    fn default() -> Self {
        Self {
            queue_batches: 1024,
            commit_interval: Duration::from_secs(1),
            durable_commit_delay: Duration::from_millis(100),
            max_uncommitted: 100_000,
        }
    }
}

enum Cmd {
    Batch {
        records: Vec<LogRecord>,
        ack: Option<oneshot::Sender<Result<(), LogError>>>,
    },
    Flush(oneshot::Sender<Result<(), LogError>>),
    Shutdown(oneshot::Sender<Result<(), LogError>>),
}

/// Starts the writer thread.
pub struct Pipeline;

impl Pipeline {
    pub fn start(store: Arc<LogStore>, cfg: PipelineConfig) -> Result<PipelineHandle, LogError> {
        let (tx, rx) = mpsc::channel(cfg.queue_batches.max(1));
        std::thread::Builder::new()
            .name("peng-log-writer".into())
            .spawn(move || writer_loop(store, cfg, rx))?;
        Ok(PipelineHandle { tx })
    }
}

/// Submits records to the writer. Cheap to clone.
#[derive(Clone, Debug)]
pub struct PipelineHandle {
    tx: mpsc::Sender<Cmd>,
}

impl PipelineHandle {
    /// Queues records without waiting. When the queue is full they are dropped and counted
    /// (`reason="queue_full"`) and `LogError::QueueFull` is returned.
    pub fn try_submit(&self, records: Vec<LogRecord>) -> Result<(), LogError> {
        if records.is_empty() {
            return Ok(());
        }
        match self.tx.try_send(Cmd::Batch { records, ack: None }) {
            Ok(()) => Ok(()),
            Err(mpsc::error::TrySendError::Full(Cmd::Batch { records, .. })) => {
                count_discarded(&records, "queue_full");
                Err(LogError::QueueFull)
            }
            Err(mpsc::error::TrySendError::Closed(Cmd::Batch { records, .. })) => {
                count_discarded(&records, "shutdown");
                Err(LogError::Closed)
            }
            Err(_) => Err(LogError::Closed),
        }
    }

    /// Queues records, waiting for room in the queue (backpressure for TCP), not for the
    /// commit.
    pub async fn submit(&self, records: Vec<LogRecord>) -> Result<(), LogError> {
        if records.is_empty() {
            return Ok(());
        }
        self.tx
            .send(Cmd::Batch { records, ack: None })
            .await
            .map_err(|_| LogError::Closed)
    }

    /// Resolves once the commit holding these records succeeded: only then may the caller
    /// acknowledge them (HTTP 202).
    pub async fn submit_durable(&self, records: Vec<LogRecord>) -> Result<(), LogError> {
        if records.is_empty() {
            return Ok(());
        }
        let (ack, done) = oneshot::channel();
        self.tx
            .send(Cmd::Batch {
                records,
                ack: Some(ack),
            })
            .await
            .map_err(|_| LogError::Closed)?;
        done.await.map_err(|_| LogError::Closed)?
    }

    /// Commits everything queued before this call.
    pub async fn flush(&self) -> Result<(), LogError> {
        let (ack, done) = oneshot::channel();
        self.tx
            .send(Cmd::Flush(ack))
            .await
            .map_err(|_| LogError::Closed)?;
        done.await.map_err(|_| LogError::Closed)?
    }

    /// Commits what was queued before this call and stops the writer thread. When this
    /// returns, the writer no longer holds the store.
    pub async fn shutdown(&self) -> Result<(), LogError> {
        let (ack, done) = oneshot::channel();
        self.tx
            .send(Cmd::Shutdown(ack))
            .await
            .map_err(|_| LogError::Closed)?;
        done.await.map_err(|_| LogError::Closed)?
    }
}

fn count_discarded(records: &[LogRecord], reason: &str) {
    for r in records {
        component::discarded(r.source.component(), reason).inc();
    }
}

struct Pending {
    docs: usize,
    since: Option<Instant>,
    acks: Vec<oneshot::Sender<Result<(), LogError>>>,
    oldest_ack: Option<Instant>,
    by_source: Vec<(LogSource, u64)>,
}

impl Pending {
    fn new() -> Self {
        Self {
            docs: 0,
            since: None,
            acks: Vec::new(),
            oldest_ack: None,
            by_source: LogSource::ALL.iter().map(|s| (*s, 0)).collect(),
        }
    }
}

fn writer_loop(store: Arc<LogStore>, cfg: PipelineConfig, mut rx: mpsc::Receiver<Cmd>) {
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
    {
        Ok(rt) => rt,
        Err(error) => {
            tracing::error!(%error, "log writer cannot start its timer");
            component::errors(WRITER, "start").inc();
            return;
        }
    };
    let depth = gauge("peng_log_queue_batches", &[]);
    let mut p = Pending::new();
    loop {
        let deadline = [
            p.since.map(|t| t + cfg.commit_interval),
            p.oldest_ack.map(|t| t + cfg.durable_commit_delay),
        ]
        .into_iter()
        .flatten()
        .min();
        let msg = match deadline {
            Some(d) => {
                rt.block_on(async { tokio::time::timeout_at(d.into(), rx.recv()).await.ok() })
            }
            None => Some(rt.block_on(rx.recv())),
        };
        depth.set((rx.max_capacity() - rx.capacity()) as u64);
        match msg {
            Some(Some(Cmd::Batch { records, ack })) => {
                component::received(WRITER).add(records.len() as u64);
                match store.add(&records) {
                    Ok(()) => {
                        let now = Instant::now();
                        p.docs += records.len();
                        p.since.get_or_insert(now);
                        for r in &records {
                            if let Some(slot) = p.by_source.iter_mut().find(|(s, _)| *s == r.source)
                            {
                                slot.1 += 1;
                            }
                        }
                        if let Some(ack) = ack {
                            p.acks.push(ack);
                            p.oldest_ack.get_or_insert(now);
                        }
                    }
                    Err(error) => {
                        tracing::error!(%error, "log writer cannot add records");
                        component::errors(WRITER, "add").inc();
                        count_discarded(&records, "write_failed");
                        if let Some(ack) = ack {
                            let _ = ack.send(Err(error));
                        }
                    }
                }
            }
            Some(Some(Cmd::Flush(ack))) => {
                let _ = ack.send(commit(&store, &mut p));
                continue;
            }
            Some(Some(Cmd::Shutdown(ack))) => {
                rx.close();
                let result = commit(&store, &mut p);
                // Let go of the store before answering, so that the caller can reopen it.
                drop(store);
                let _ = ack.send(result);
                return;
            }
            Some(None) => {
                let _ = commit(&store, &mut p);
                return;
            }
            None => {}
        }
        let now = Instant::now();
        let due = p.docs >= cfg.max_uncommitted
            || p.since.is_some_and(|t| now >= t + cfg.commit_interval)
            || p.oldest_ack
                .is_some_and(|t| now >= t + cfg.durable_commit_delay);
        if due {
            let _ = commit(&store, &mut p);
        }
    }
}

/// Commits and answers everyone waiting; on failure the uncommitted records are dropped and
/// counted, and durable submitters get the error.
fn commit(store: &LogStore, p: &mut Pending) -> Result<(), LogError> {
    let pending = std::mem::replace(p, Pending::new());
    if pending.docs == 0 && pending.acks.is_empty() {
        return Ok(());
    }
    match store.commit() {
        Ok(()) => {
            component::processed(WRITER).add(pending.docs as u64);
            for (source, n) in pending.by_source {
                if n > 0 {
                    component::processed(source.component()).add(n);
                }
            }
            for ack in pending.acks {
                let _ = ack.send(Ok(()));
            }
            Ok(())
        }
        Err(error) => {
            tracing::error!(%error, "log commit failed");
            component::errors(WRITER, "commit").inc();
            component::discarded(WRITER, "commit_failed").add(pending.docs as u64);
            let _ = store.rollback();
            let message = error.to_string();
            for ack in pending.acks {
                let _ = ack.send(Err(LogError::Commit(message.clone())));
            }
            Err(LogError::Commit(message))
        }
    }
}
