//! The one way into the log store: a queue bounded in bytes, a WAL thread that makes batches
//! durable, and an index thread that makes them searchable.
//!
//! - **WAL thread** (`peng-log-wal`): takes every batch queued since its last round, appends
//!   each to the [`Wal`](crate::wal::Wal) and syncs once for all of them (group commit: while
//!   one sync runs, the next round's batches gather). Only then are durable submitters answered
//!   (HTTP 202) and the batches handed on.
//! - **Index thread** (`peng-log-index`): adds batches to the index in WAL order and commits at
//!   least every [`PipelineConfig::commit_interval`] (sooner when
//!   [`PipelineConfig::max_uncommitted`] records wait); each commit records the WAL position
//!   it covers, and the WAL below it is deleted.
//! - At start, whatever the WAL holds past the index's last commit is added again first
//!   ([`Pipeline::start`]).
//!
//! Memory is bounded in bytes: a batch holds its estimated size in [`PipelineConfig::queue_bytes`]
//! from submission until the index has taken it, and no team may hold more than
//! [`PipelineConfig::team_share`] of it, so one noisy team fills its own share and slows only
//! itself. Past either bound `try_submit` drops and counts (UDP), `submit` waits (TCP: the
//! sender is slowed by TCP itself), and `submit_durable` refuses with [`LogError::QueueFull`]
//! (HTTP answers 503 with `Retry-After`). It must never acknowledge a durable submit before the
//! WAL holds its records on disk.

use std::collections::HashMap;
use std::sync::mpsc as std_mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use peng_core::metrics::{component, gauge};
use peng_core::TeamName;
use tokio::sync::{mpsc, oneshot, OwnedSemaphorePermit, Semaphore};

use crate::index::LogStore;
use crate::record::{LogRecord, LogSource};
use crate::wal::{self, Wal};
use crate::LogError;

/// Component name of the writer's counters.
pub const WRITER: &str = "log_writer";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PipelineConfig {
    /// Bytes of records (estimated) that may wait between submission and the index.
    pub queue_bytes: usize,
    /// The part of `queue_bytes` one team may hold, in percent.
    pub team_share: u8,
    /// Longest time a record waits for its commit (how soon it is searchable).
    pub commit_interval: Duration,
    /// Records added before a commit is forced regardless of time.
    pub max_uncommitted: usize,
}

impl Default for PipelineConfig {
    fn default() -> Self {
        Self {
            queue_bytes: 64 * 1024 * 1024,
            team_share: 50,
            commit_interval: Duration::from_secs(1),
            max_uncommitted: 100_000,
        }
    }
}

type Ack = oneshot::Sender<Result<(), LogError>>;

/// A batch's room in the queue: its bytes of the whole, and of its team's share.
struct Room {
    queue: OwnedSemaphorePermit,
    _team: OwnedSemaphorePermit,
}

impl Room {
    fn bytes(&self) -> usize {
        self.queue.num_permits()
    }
}

enum Cmd {
    Batch {
        records: Vec<LogRecord>,
        ack: Option<Ack>,
        permit: Room,
    },
    Flush(Ack),
    Shutdown(Ack),
}

/// What the WAL thread hands the index thread.
enum Indexed {
    Batch {
        records: Vec<LogRecord>,
        wal_end: u64,
        _permit: Room,
    },
    Flush(Ack),
    Shutdown(Ack),
}

/// Starts the writer threads.
pub struct Pipeline;

impl Pipeline {
    /// Opens the WAL in `STORE_DIR/wal`, adds to the index what the WAL holds past the index's
    /// last commit (and commits it), then starts the threads.
    pub fn start(store: Arc<LogStore>, cfg: PipelineConfig) -> Result<PipelineHandle, LogError> {
        let dir = store.dir().join("wal");
        let wal = Wal::open(&dir)?;
        let from = store.committed_wal_position();
        let mut replayed = 0usize;
        wal::replay(&dir, from, |records, end| {
            replayed += records.len();
            store.add_through(records, end)?;
            if replayed >= cfg.max_uncommitted {
                store.commit()?;
                replayed = 0;
            }
            Ok(())
        })?;
        if store.wal_position() != store.committed_wal_position() {
            store.commit()?;
            tracing::info!(
                from,
                to = store.wal_position(),
                "log records from the WAL added to the index"
            );
        }
        wal::remove_below(&dir, store.committed_wal_position())?;
        let budget = cfg.queue_bytes.max(1);
        let room = Arc::new(Semaphore::new(budget));
        let team_budget = (budget * usize::from(cfg.team_share.clamp(1, 100)) / 100).max(1);
        let (tx, rx) = mpsc::unbounded_channel();
        let (itx, irx) = std_mpsc::channel();
        std::thread::Builder::new()
            .name("peng-log-wal".into())
            .spawn(move || wal_loop(wal, rx, itx))?;
        let volume = Volume::default();
        let counted = volume.clone();
        std::thread::Builder::new()
            .name("peng-log-index".into())
            .spawn(move || index_loop(store, dir, cfg, irx, counted))?;
        Ok(PipelineHandle {
            tx,
            room,
            budget,
            team_budget,
            teams: Arc::new(Mutex::new(HashMap::new())),
            volume,
        })
    }
}

/// Submits records to the writer. Cheap to clone.
#[derive(Clone, Debug)]
pub struct PipelineHandle {
    tx: mpsc::UnboundedSender<Cmd>,
    room: Arc<Semaphore>,
    budget: usize,
    team_budget: usize,
    teams: Arc<Mutex<HashMap<TeamName, Arc<Semaphore>>>>,
    volume: Volume,
}

/// Messages and bytes (`LogRecord::approx_bytes`) indexed per team and service, since they
/// were last taken: the log volume peng records for each team.
#[derive(Clone, Debug, Default)]
pub struct Volume(Arc<Mutex<VolumeMap>>);

/// (team, service) → (messages, bytes).
type VolumeMap = HashMap<(TeamName, String), (u64, u64)>;

impl Volume {
    fn count(&self, records: &[LogRecord]) {
        let mut map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let mut i = 0;
        // Records of a batch come in runs of one team and service: one lookup a run.
        while let Some(first) = records.get(i) {
            let run = records[i..]
                .iter()
                .take_while(|r| r.team == first.team && r.service == first.service);
            let (mut n, mut bytes) = (0u64, 0u64);
            for r in run {
                n += 1;
                bytes += r.approx_bytes() as u64;
            }
            let slot = map
                .entry((first.team.clone(), first.service.clone()))
                .or_default();
            slot.0 += n;
            slot.1 += bytes;
            i += n as usize;
        }
    }

    /// What was counted since the last call, and starts over.
    pub fn take(&self) -> Vec<(TeamName, String, u64, u64)> {
        let map = std::mem::take(&mut *self.0.lock().unwrap_or_else(|p| p.into_inner()));
        map.into_iter()
            .map(|((team, service), (n, bytes))| (team, service, n, bytes))
            .collect()
    }
}

/// What a batch is taken to hold in memory.
fn batch_bytes(records: &[LogRecord]) -> usize {
    records.iter().map(LogRecord::approx_bytes).sum()
}

/// The records of a batch by team, in their order within each team.
fn by_team(records: Vec<LogRecord>) -> Vec<Vec<LogRecord>> {
    if records.iter().all(|r| r.team == records[0].team) {
        return vec![records];
    }
    let mut out: Vec<Vec<LogRecord>> = Vec::new();
    for r in records {
        match out.iter_mut().find(|g| g[0].team == r.team) {
            Some(g) => g.push(r),
            None => out.push(vec![r]),
        }
    }
    out
}

impl PipelineHandle {
    /// Messages and bytes indexed per team and service since the last call.
    pub fn take_volume(&self) -> Vec<(TeamName, String, u64, u64)> {
        self.volume.take()
    }

    /// The share of one team.
    fn team(&self, team: &TeamName) -> Arc<Semaphore> {
        let mut teams = self.teams.lock().unwrap_or_else(|p| p.into_inner());
        teams
            .entry(team.clone())
            .or_insert_with(|| Arc::new(Semaphore::new(self.team_budget)))
            .clone()
    }

    /// Bytes a batch takes of the queue and of its team's share (a batch larger than either
    /// waits for all of it).
    fn sizes(&self, records: &[LogRecord]) -> (u32, u32) {
        let bytes = batch_bytes(records).max(1);
        let clamp = |max: usize| bytes.min(max).min(u32::MAX as usize) as u32;
        (clamp(self.budget), clamp(self.team_budget))
    }

    /// Room for one team's batch now, or `None`.
    fn try_room(&self, records: &[LogRecord]) -> Option<Room> {
        let (queue, team) = self.sizes(records);
        let team = self
            .team(&records[0].team)
            .try_acquire_many_owned(team)
            .ok()?;
        let queue = self.room.clone().try_acquire_many_owned(queue).ok()?;
        Some(Room { queue, _team: team })
    }

    /// Room for one team's batch, waiting for it: first the team's share, then the queue.
    async fn room(&self, records: &[LogRecord]) -> Result<Room, LogError> {
        let (queue, team) = self.sizes(records);
        let team = self
            .team(&records[0].team)
            .acquire_many_owned(team)
            .await
            .map_err(|_| LogError::Closed)?;
        let queue = self
            .room
            .clone()
            .acquire_many_owned(queue)
            .await
            .map_err(|_| LogError::Closed)?;
        Ok(Room { queue, _team: team })
    }

    fn send(&self, cmd: Cmd) -> Result<(), LogError> {
        self.tx.send(cmd).map_err(|e| {
            if let Cmd::Batch { records, .. } = e.0 {
                count_discarded(&records, "shutdown");
            }
            LogError::Closed
        })
    }

    /// Queues records without waiting. A team's records that find no room (in the queue, or in
    /// the team's share of it) are dropped and counted (`reason="queue_full"`), and
    /// `LogError::QueueFull` is returned; other teams' records of the batch are queued.
    pub fn try_submit(&self, records: Vec<LogRecord>) -> Result<(), LogError> {
        if records.is_empty() {
            return Ok(());
        }
        let mut result = Ok(());
        for group in by_team(records) {
            match self.try_room(&group) {
                Some(permit) => self.send(Cmd::Batch {
                    records: group,
                    ack: None,
                    permit,
                })?,
                None => {
                    count_discarded(&group, "queue_full");
                    result = Err(LogError::QueueFull);
                }
            }
        }
        result
    }

    /// Queues records, waiting for room (backpressure for TCP: a team past its share waits
    /// alone), not for the WAL.
    pub async fn submit(&self, records: Vec<LogRecord>) -> Result<(), LogError> {
        for group in by_team(records) {
            if group.is_empty() {
                continue;
            }
            let permit = self.room(&group).await?;
            self.send(Cmd::Batch {
                records: group,
                ack: None,
                permit,
            })?;
        }
        Ok(())
    }

    /// Resolves once the WAL holds these records on disk: only then may the caller acknowledge
    /// them (HTTP 202). Refuses the whole batch with [`LogError::QueueFull`] when any team of
    /// it has no room, so the sender is told to come back rather than held.
    pub async fn submit_durable(&self, records: Vec<LogRecord>) -> Result<(), LogError> {
        if records.is_empty() {
            return Ok(());
        }
        let groups = by_team(records);
        let mut rooms = Vec::with_capacity(groups.len());
        for group in &groups {
            match self.try_room(group) {
                Some(r) => rooms.push(r),
                None => {
                    for g in &groups {
                        count_discarded(g, "queue_full");
                    }
                    return Err(LogError::QueueFull);
                }
            }
        }
        let mut waits = Vec::with_capacity(groups.len());
        for (group, permit) in groups.into_iter().zip(rooms) {
            let (ack, done) = oneshot::channel();
            self.send(Cmd::Batch {
                records: group,
                ack: Some(ack),
                permit,
            })?;
            waits.push(done);
        }
        for done in waits {
            done.await.map_err(|_| LogError::Closed)??;
        }
        Ok(())
    }

    /// Makes everything queued before this call searchable (an index commit).
    pub async fn flush(&self) -> Result<(), LogError> {
        let (ack, done) = oneshot::channel();
        self.send(Cmd::Flush(ack))?;
        done.await.map_err(|_| LogError::Closed)?
    }

    /// Commits what was queued before this call and stops the writer threads. When this
    /// returns, they no longer hold the store.
    pub async fn shutdown(&self) -> Result<(), LogError> {
        let (ack, done) = oneshot::channel();
        self.send(Cmd::Shutdown(ack))?;
        done.await.map_err(|_| LogError::Closed)?
    }

    /// Bytes of records waiting between submission and the index.
    pub fn queued_bytes(&self) -> usize {
        self.budget - self.room.available_permits().min(self.budget)
    }
}

fn count_discarded(records: &[LogRecord], reason: &str) {
    for r in records {
        component::discarded(r.source.component(), reason).inc();
    }
}

/// Largest group the WAL thread writes before it syncs.
const GROUP_BYTES: usize = 16 * 1024 * 1024;

fn wal_loop(mut wal: Wal, mut rx: mpsc::UnboundedReceiver<Cmd>, itx: std_mpsc::Sender<Indexed>) {
    let depth = gauge("peng_log_queue_batches", &[]);
    while let Some(first) = rx.blocking_recv() {
        let mut group = vec![first];
        let mut bytes = 0usize;
        while bytes < GROUP_BYTES {
            match rx.try_recv() {
                Ok(cmd) => {
                    if let Cmd::Batch { permit, .. } = &cmd {
                        bytes += permit.bytes();
                    }
                    group.push(cmd);
                }
                Err(_) => break,
            }
        }
        depth.set(rx.len() as u64);
        // Append every batch, then one sync for the group; only then answer and hand on.
        let mut written: Vec<Written> = Vec::with_capacity(group.len());
        let mut stop = None;
        for cmd in group {
            match cmd {
                Cmd::Batch {
                    records,
                    ack,
                    permit,
                } => {
                    component::received(WRITER).add(records.len() as u64);
                    match wal.append(&records) {
                        Ok(end) => written.push(Written::Batch {
                            records,
                            end,
                            ack,
                            permit,
                        }),
                        Err(error) => {
                            tracing::error!(%error, "log WAL cannot append");
                            component::errors(WRITER, "wal_append").inc();
                            count_discarded(&records, "write_failed");
                            if let Some(ack) = ack {
                                let _ = ack.send(Err(LogError::Commit(error.to_string())));
                            }
                        }
                    }
                }
                Cmd::Flush(ack) => written.push(Written::Flush(ack)),
                Cmd::Shutdown(ack) => {
                    stop = Some(ack);
                    break;
                }
            }
        }
        let synced = wal.sync();
        for w in written {
            let (records, end, ack, permit) = match w {
                Written::Batch {
                    records,
                    end,
                    ack,
                    permit,
                } => (records, end, ack, permit),
                // the index thread answers a flush after its commit
                Written::Flush(ack) => {
                    let _ = itx.send(Indexed::Flush(ack));
                    continue;
                }
            };
            match &synced {
                Ok(()) => {
                    if let Some(ack) = ack {
                        let _ = ack.send(Ok(()));
                    }
                    let _ = itx.send(Indexed::Batch {
                        records,
                        wal_end: end,
                        _permit: permit,
                    });
                }
                Err(error) => {
                    // Not durable: nobody is told it is stored, and the index does not get
                    // it either (it would be lost at the next start otherwise).
                    component::errors(WRITER, "wal_sync").inc();
                    count_discarded(&records, "write_failed");
                    if let Some(ack) = ack {
                        let _ = ack.send(Err(LogError::Commit(error.to_string())));
                    }
                }
            }
        }
        if let Err(error) = &synced {
            tracing::error!(%error, "log WAL cannot sync");
        }
        if let Some(ack) = stop {
            rx.close();
            let _ = itx.send(Indexed::Shutdown(ack));
            return;
        }
    }
    // every handle is gone: the index thread commits and ends when its channel closes
}

/// What one round of the WAL thread wrote, in order.
enum Written {
    Batch {
        records: Vec<LogRecord>,
        end: u64,
        ack: Option<Ack>,
        permit: Room,
    },
    Flush(Ack),
}

struct Pending {
    docs: usize,
    since: Option<Instant>,
    by_source: Vec<(LogSource, u64)>,
}

impl Pending {
    fn new() -> Self {
        Self {
            docs: 0,
            since: None,
            by_source: LogSource::ALL.iter().map(|s| (*s, 0)).collect(),
        }
    }
}

fn index_loop(
    store: Arc<LogStore>,
    dir: std::path::PathBuf,
    cfg: PipelineConfig,
    rx: std_mpsc::Receiver<Indexed>,
    volume: Volume,
) {
    let mut p = Pending::new();
    // The WAL position of the last batch received: what a recovery adds again, and no more
    // (what lies beyond is still on its way here).
    let mut received = store.wal_position();
    loop {
        let msg = match p.since {
            Some(t) => {
                let wait = (t + cfg.commit_interval).saturating_duration_since(Instant::now());
                match rx.recv_timeout(wait) {
                    Ok(m) => Some(m),
                    Err(std_mpsc::RecvTimeoutError::Timeout) => None,
                    Err(std_mpsc::RecvTimeoutError::Disconnected) => {
                        let _ = commit(&store, &dir, &mut p, received);
                        return;
                    }
                }
            }
            None => match rx.recv() {
                Ok(m) => Some(m),
                Err(_) => return,
            },
        };
        match msg {
            Some(Indexed::Batch {
                records, wal_end, ..
            }) => {
                received = wal_end;
                // counted before the records move into the index (a failed add starts the
                // count over: `recover` resets `p`)
                p.docs += records.len();
                volume.count(&records);
                for r in &records {
                    if let Some(slot) = p.by_source.iter_mut().find(|(s, _)| *s == r.source) {
                        slot.1 += 1;
                    }
                }
                match store.add_through(records, wal_end) {
                    Ok(()) => {
                        p.since.get_or_insert_with(Instant::now);
                    }
                    Err(error) => {
                        tracing::error!(%error, "log index cannot add records; they stay in the WAL");
                        component::errors(WRITER, "add").inc();
                        recover(&store, &dir, &mut p, received);
                    }
                }
            }
            Some(Indexed::Flush(ack)) => {
                let _ = ack.send(commit(&store, &dir, &mut p, received));
                continue;
            }
            Some(Indexed::Shutdown(ack)) => {
                let result = commit(&store, &dir, &mut p, received);
                // Let go of the store before answering, so that the caller can reopen it.
                drop(store);
                let _ = ack.send(result);
                return;
            }
            None => {}
        }
        let due = p.docs >= cfg.max_uncommitted
            || p.since
                .is_some_and(|t| Instant::now() >= t + cfg.commit_interval);
        if due {
            let _ = commit(&store, &dir, &mut p, received);
        }
    }
}

/// Commits; on success the WAL the index now covers is deleted. On failure what was added is
/// rolled back and added again from the WAL (which still holds it), to be committed next time.
fn commit(
    store: &LogStore,
    dir: &std::path::Path,
    p: &mut Pending,
    received: u64,
) -> Result<(), LogError> {
    if p.docs == 0 {
        return Ok(());
    }
    match store.commit() {
        Ok(()) => {
            let pending = std::mem::replace(p, Pending::new());
            component::processed(WRITER).add(pending.docs as u64);
            for (source, n) in pending.by_source {
                if n > 0 {
                    component::processed(source.component()).add(n);
                }
            }
            if let Err(error) = wal::remove_below(dir, store.committed_wal_position()) {
                tracing::warn!(%error, "cannot delete log WAL segments the index covers");
            }
            Ok(())
        }
        Err(error) => {
            tracing::error!(%error, "log commit failed; its records stay in the WAL");
            component::errors(WRITER, "commit").inc();
            recover(store, dir, p, received);
            Err(LogError::Commit(error.to_string()))
        }
    }
}

/// After a failed add or commit: back to the last commit, and everything since, up to the
/// last batch received, added again from the WAL.
fn recover(store: &LogStore, dir: &std::path::Path, p: &mut Pending, received: u64) {
    if let Err(error) = store.rollback() {
        tracing::error!(%error, "log index cannot roll back");
        return;
    }
    *p = Pending::new();
    let from = store.committed_wal_position();
    let replayed = wal::replay(dir, from, |records, end| {
        if end > received {
            return Ok(());
        }
        p.docs += records.len();
        p.since.get_or_insert_with(Instant::now);
        store.add_through(records, end)
    });
    if let Err(error) = replayed {
        tracing::error!(%error, "log index cannot add the WAL again; a restart will");
    }
}
