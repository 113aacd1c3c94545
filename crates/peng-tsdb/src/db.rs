//! The `Tsdb` handle: locking, the write path (validate → WAL → memory), queries over block
//! files and memory, retention, flushing and compaction.
//!
//! A write goes through three steps:
//! 1. **Check and append**, under the writer mutex that owns the WAL: the batch is checked
//!    against the series index (types, retention), its record is written to the WAL file
//!    without a sync, and then its new series and field types are registered in the index
//!    (a failed append registers nothing). The record gets the next ticket. Holding the mutex only this long keeps type checks consistent:
//!    a batch is checked against every batch appended before it, synced or not.
//! 2. **Group commit**: one waiting writer syncs the segment for every record written so far
//!    while the others wait; a writer whose record a finished sync covered returns without a
//!    sync of its own. Concurrent writers thus share fsyncs, and a batch is checked and written
//!    while the previous one is being synced.
//! 3. **Apply**, in ticket order (the order of the WAL, so that the newest write of a
//!    timestamp wins the same way live and after replay): its values go into the memtable.
//!
//! A failed sync fails every batch it covered and every later one, and the store refuses
//! writes until it is reopened: after a failed fsync the kernel may have dropped the pages, so
//! a second sync proves nothing. The series and field types such a batch registered stay in
//! the index (without values); the replay at the next open decides what the WAL holds.
//!
//! Readers share a read lock on the in-memory state and are blocked only while a write, flush
//! or retention run installs its result. Flushes, merges, compactions and retention runs take
//! turns on a maintenance lock. A flush holds the writer mutex only to freeze the memtable
//! (after every appended batch is applied) and writes the frozen one into a block file while
//! writes go on into a new memtable; merges run without the writer mutex. A flush that a
//! write finds due is started on a thread of its own, and the write is answered at once. So a
//! large merge neither holds up the write that triggered it nor stops the others: writes wait
//! only once memory holds twice the flush threshold.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs::{self, File, OpenOptions};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard};

use crate::blockfile::{self, BlockEntry, BlockFile, BlockFileWriter};
use crate::error::TsdbError;
use crate::index::{FieldId, KeyRef, SeriesId, SeriesIndex};
use crate::memtable::Memtable;
use crate::model::{
    validate_point, FieldType, FieldUsage, FieldValue, Name, NameMap, Point, Query, SeriesData,
    SeriesKey, TsdbStats,
};
use crate::sync_dir;
use crate::wal::Wal;

/// A query reading at least this many series fields reads them on several threads.
const PARALLEL_COLUMNS: usize = 16;
/// At most this many threads read one query's columns.
const MAX_QUERY_THREADS: usize = 4;

/// Tuning knobs; `TsdbOptions::default()` is what [`Tsdb::open`] uses.
#[derive(Debug, Clone)]
pub struct TsdbOptions {
    /// `write` flushes the WAL into a block file once memory holds this many values, or as
    /// many values as the store has series if that is more (see `docs/tsdb.md`).
    pub flush_threshold_points: u64,
}

impl Default for TsdbOptions {
    fn default() -> TsdbOptions {
        TsdbOptions {
            flush_threshold_points: 500_000,
        }
    }
}

/// An open time-series store. Cheap to share: all methods take `&self`.
pub struct Tsdb {
    store: Arc<Store>,
    /// The thread writing out a flush a write found due, if one was started.
    flusher: Mutex<Option<std::thread::JoinHandle<()>>>,
}

/// What [`Tsdb`] shares with its flush thread.
struct Store {
    dir: PathBuf,
    options: TsdbOptions,
    /// Holds an exclusive `flock` on `dir/LOCK` for as long as the store is open.
    _lock: File,
    writer: Mutex<Writer>,
    /// Held by whoever flushes, merges, compacts or applies retention: one at a time, so that
    /// block file ids follow the order of writes and the cutoff holds still under a merge.
    /// Taken before the writer mutex, never while holding it.
    maint: Mutex<()>,
    state: RwLock<State>,
    commit: Mutex<Commit>,
    /// Signalled when `Commit::synced` or `Commit::applied` moves, or a sync fails.
    committed: Condvar,
}

struct Writer {
    wal: Wal,
}

/// Where the group commit stands: records are numbered by ticket, 1 for the first appended
/// after open; every count below is the highest ticket that got that far.
struct Commit {
    /// Written to the WAL file (step 1).
    written: u64,
    /// Made durable by a sync (step 2).
    synced: u64,
    /// In the memtable, or given up (step 3).
    applied: u64,
    /// A writer is syncing; the others wait for it.
    syncing: bool,
    /// Syncs done since open.
    syncs: u64,
    /// The segment the unsynced records are in (a rotation happens only when all are applied).
    file: Arc<File>,
    path: PathBuf,
    /// Why a sync failed; from then on nothing unsynced is acknowledged.
    failed: Option<String>,
}

struct State {
    index: SeriesIndex,
    mem: Memtable,
    /// The memtable a flush is writing to a block file, or failed to: newer than every block
    /// file and older than `mem`. Read by queries like the others.
    frozen: Option<Arc<Frozen>>,
    /// Open block files by id; a higher id holds newer writes. A series field's blocks are
    /// found in each file by binary search, so there is no map of all blocks to maintain.
    files: BTreeMap<u64, Installed>,
    /// Values in block files at or after the cutoff (a value overwritten after a flush counts
    /// once per copy): the sum of the files' `points`.
    block_points: u64,
}

/// A memtable taken out of the write path to be written to a block file, with what the file
/// needs to know of the index, taken when it was frozen so that writing it holds no lock.
struct Frozen {
    mem: Memtable,
    /// The last WAL segment whose records it holds.
    covered: u64,
    /// Field names by number.
    names: Vec<Arc<str>>,
    /// Its columns in the order of a block file: by series id, then field name.
    layout: Vec<(SeriesId, FieldId, FieldType)>,
}

struct Installed {
    file: Arc<BlockFile>,
    /// Values of this file at or after the cutoff.
    points: u64,
}

impl Tsdb {
    /// Opens (creating if needed) the store in `dir` and recovers what the WAL holds.
    pub fn open(dir: &Path) -> Result<Tsdb, TsdbError> {
        Tsdb::open_with(dir, TsdbOptions::default())
    }

    /// [`Tsdb::open`] with explicit options.
    pub fn open_with(dir: &Path, options: TsdbOptions) -> Result<Tsdb, TsdbError> {
        Ok(Tsdb {
            store: Arc::new(Store::open(dir, options)?),
            flusher: Mutex::new(None),
        })
    }

    /// Stores a batch. `Ok` means every point is durable; any error means none was stored.
    /// Refused: invalid points (`Invalid`), a field written with another type than before in
    /// the same series or earlier in the batch (`Conflict`), points older than the retention
    /// cutoff of [`Tsdb::delete_before`] (`Invalid`).
    pub fn write(&self, points: &[Point]) -> Result<(), TsdbError> {
        if self.store.write(points)? {
            // The batch is stored whatever happens to its flush.
            if let Err(error) = self.flush_in_background() {
                tracing::warn!(%error, "starting a flush failed, data stays in the wal");
            }
        }
        Ok(())
    }

    /// Reads the values of the series and fields the query selects, one entry per series and
    /// field with at least one value in range, ordered by series key and field name. An empty
    /// range (`start_ns >= end_ns`) selects nothing.
    pub fn query(&self, q: &Query) -> Result<Vec<SeriesData>, TsdbError> {
        self.store.query(q)
    }

    /// The measurements that have a series, sorted (without copying every series key).
    pub fn measurements(&self) -> Result<Vec<String>, TsdbError> {
        self.store.measurements()
    }

    /// All series, or those of one measurement, sorted. Series are never forgotten, also
    /// when retention removed all their values.
    pub fn series(&self, measurement: Option<&str>) -> Result<Vec<SeriesKey>, TsdbError> {
        self.store.series(measurement)
    }

    /// The fields of a measurement with their types, over all its series (a field written with
    /// different types in different series is listed once per type).
    pub fn fields(&self, measurement: &str) -> Result<Vec<(String, FieldType)>, TsdbError> {
        self.store.fields(measurement)
    }

    /// Retention: deletes every value older than `cutoff_ns` and from then on refuses writes
    /// older than it. Block files that end before the cutoff are deleted; blocks straddling it
    /// are filtered on read until their file goes. Returns the number of stored values removed,
    /// exact per stored copy: a value overwritten after it was flushed counts once per copy.
    /// A cutoff at or below the current one does nothing and returns 0.
    pub fn delete_before(&self, cutoff_ns: i64) -> Result<u64, TsdbError> {
        self.store.delete_before(cutoff_ns)
    }

    /// Compresses what the WAL holds into a new block file and deletes the flushed WAL
    /// segments. Also runs, on a thread of its own, when a write leaves memory holding
    /// `flush_threshold_points` values (or, with more series than that, one value per series).
    pub fn flush(&self) -> Result<(), TsdbError> {
        self.store.flush()
    }

    /// [`Tsdb::flush`], then the size-tiered merging a flush from `write` runs, so that a store
    /// flushed on a timer does not pile up small files.
    pub fn flush_and_merge(&self) -> Result<(), TsdbError> {
        self.store.flush_and_merge()
    }

    /// Merges all block files into one, applying overwrites and the retention cutoff, so that
    /// queries read fewer and fuller blocks. Flushes first; writes go on meanwhile (into
    /// memory, and wait once it holds twice the flush threshold). The merged data is built one
    /// series field at a time.
    pub fn compact(&self) -> Result<(), TsdbError> {
        self.store.compact()
    }

    /// Size figures. `points` counts stored values as [`TsdbStats::points`] describes;
    /// `bytes_on_disk` covers the WAL, the series index and the block files.
    pub fn stats(&self) -> TsdbStats {
        self.store.stats()
    }

    /// Where the block files' bytes go: per measurement, field and type, the blocks, values
    /// and compressed bytes, sorted. Not in it: what memory and the WAL hold, and each file's
    /// index of its blocks (the rest of [`TsdbStats::bytes_on_disk`]). Goes through every
    /// block entry in memory (no block is read), holding the store's read lock as a query does.
    pub fn disk_usage(&self) -> Result<Vec<FieldUsage>, TsdbError> {
        self.store.disk_usage()
    }

    /// Starts the flush a write found due on a thread of its own, so that the write (and the
    /// request behind it) is answered without waiting for it. One flush thread at a time:
    /// while it runs, memory takes up to twice the flush threshold, and a write that finds
    /// it past that waits for the thread before it starts the next.
    fn flush_in_background(&self) -> Result<(), TsdbError> {
        let mut flusher = self.flusher.lock().map_err(|_| TsdbError::Poisoned)?;
        if let Some(running) = flusher.take() {
            if !running.is_finished() && !self.store.over_threshold(2)? {
                *flusher = Some(running);
                return Ok(());
            }
            if running.join().is_err() {
                tracing::error!(dir = %self.store.dir.display(), "the flush thread panicked");
            }
            if !self.store.over_threshold(1)? {
                return Ok(());
            }
        }
        let store = self.store.clone();
        let spawned = std::thread::Builder::new()
            .name("tsdb-flush".into())
            .spawn(move || store.flush_due());
        match spawned {
            Ok(thread) => *flusher = Some(thread),
            Err(error) => {
                // The batch is stored; only where its flush runs changes.
                tracing::warn!(%error, "no thread for a flush; flushing in the write");
                self.store.flush_due();
            }
        }
        Ok(())
    }

    /// Waits until the flush a write started (and the merging after it) is done, if one runs:
    /// for callers that need the block files to have settled, such as tests and benchmarks.
    pub fn wait_for_flush(&self) {
        if let Some(thread) = self.flusher.lock().ok().and_then(|mut f| f.take()) {
            let _ = thread.join();
        }
    }
}

impl Drop for Tsdb {
    /// A flush in progress is finished before the store (and its directory lock) goes.
    fn drop(&mut self) {
        if let Some(thread) = self.flusher.get_mut().ok().and_then(Option::take) {
            let _ = thread.join();
        }
    }
}

impl Store {
    /// Opens (creating if needed) the store in `dir` and recovers what the WAL holds.
    fn open(dir: &Path, options: TsdbOptions) -> Result<Store, TsdbError> {
        fs::create_dir_all(dir).map_err(TsdbError::io("creating data directory", dir))?;
        let lock = lock_dir(dir)?;
        let blocks_dir = dir.join("blocks");
        fs::create_dir_all(&blocks_dir)
            .map_err(TsdbError::io("creating block directory", &blocks_dir))?;
        remove_tmp_files(dir)?;
        remove_tmp_files(&blocks_dir)?;
        let mut index = SeriesIndex::load(dir)?;

        let mut files = BTreeMap::new();
        for (id, path) in blockfile::list(&blocks_dir)? {
            files.insert(id, Arc::new(BlockFile::open(&path, id)?));
        }
        // Files replaced by a compacted one, or wholly older than the cutoff, are leftovers of
        // an operation interrupted before it could delete them.
        let replaced: HashSet<u64> = files
            .values()
            .flat_map(|f| f.replaces.iter().copied())
            .collect();
        let cutoff = index.cutoff_ns;
        let stale: Vec<u64> = files
            .values()
            .filter(|f| replaced.contains(&f.id) || f.max_ts < cutoff)
            .map(|f| f.id)
            .collect();
        for id in &stale {
            if let Some(f) = files.remove(id) {
                fs::remove_file(&f.path)
                    .map_err(TsdbError::io("removing stale block file", &f.path))?;
            }
        }
        if !stale.is_empty() {
            sync_dir(&blocks_dir)?;
        }
        let covered = files.values().map(|f| f.covered_wal).max().unwrap_or(0);
        for f in files.values() {
            let ids: Vec<Option<FieldId>> = f.fields.iter().map(|n| index.field_id(n)).collect();
            for e in f.entries.iter() {
                let id = ids.get(e.field as usize).copied().flatten();
                if id.and_then(|id| index.field_type_of(e.series, id)) != Some(e.ty) {
                    return Err(TsdbError::corrupt(
                        &f.path,
                        format!(
                            "block of series {} field '{}' does not match the series index",
                            e.series,
                            f.field_name(&e)
                        ),
                    ));
                }
            }
        }

        let (wal, replayed) = Wal::open(&dir.join("wal"), covered)?;
        let mut mem = Memtable::default();
        for segment in replayed {
            for batch in segment.batches {
                apply(&mut index, &mut mem, &batch, None);
            }
        }
        let mut state = State {
            index,
            mem,
            frozen: None,
            files: BTreeMap::new(),
            block_points: 0,
        };
        for f in files.into_values() {
            state.install_file(f)?;
        }
        let commit = Commit {
            written: 0,
            synced: 0,
            applied: 0,
            syncing: false,
            syncs: 0,
            file: wal.file(),
            path: wal.path(),
            failed: None,
        };
        Ok(Store {
            dir: dir.to_path_buf(),
            options,
            _lock: lock,
            writer: Mutex::new(Writer { wal }),
            maint: Mutex::new(()),
            state: RwLock::new(state),
            commit: Mutex::new(commit),
            committed: Condvar::new(),
        })
    }

    fn write(&self, points: &[Point]) -> Result<bool, TsdbError> {
        if points.is_empty() {
            return Ok(false);
        }
        for p in points {
            validate_point(p)?;
        }
        let record = Wal::encode(points)?;
        // Step 1: check, register and append.
        let (ticket, registered) = {
            let mut writer = self.lock_writer()?;
            let known = {
                let state = self.read_state()?;
                check_batch(&state.index, points)?
            };
            if let Some(why) = &self.lock_commit()?.failed {
                return Err(sync_failed(&writer.wal.path(), why));
            }
            // Registered only once the record is written: a failed append leaves no trace.
            writer.wal.write_record(&record)?;
            let registered = register(&mut self.write_state()?.index, points, Some(&known));
            let mut commit = self.lock_commit()?;
            commit.written += 1;
            (commit.written, registered)
        };
        // Steps 2 and 3; the ticket is given up on every path, or later writers would wait.
        let order = fill_order(points, &registered);
        let synced = self.sync_upto(ticket);
        let should_flush = self.apply_in_turn(ticket, |state| {
            synced?;
            fill(
                state.index.cutoff_ns,
                &mut state.mem,
                points,
                &registered,
                &order,
            );
            Ok(state.over_threshold(self.options.flush_threshold_points, 1))
        })?;
        Ok(should_flush)
    }

    /// Whether memory holds `times` times the flush threshold or more.
    fn over_threshold(&self, times: u64) -> Result<bool, TsdbError> {
        let state = self.read_state()?;
        Ok(state.over_threshold(self.options.flush_threshold_points, times))
    }

    /// The flush a write found due, and then the merging by tier; on the flush thread. Errors
    /// are logged: the batches are durable in the WAL already, and a failed flush leaves them
    /// there.
    fn flush_due(&self) {
        let Ok(maint) = self.lock_maint() else {
            return;
        };
        // An explicit flush may have come first.
        if !self.over_threshold(1).unwrap_or(false) {
            return;
        }
        if let Err(error) = self.flush_maint(&maint) {
            tracing::warn!(%error, "flush after write failed, data stays in the wal");
        } else if let Err(error) = self.merge_tier(&maint) {
            tracing::warn!(%error, "merging block files failed; they stay as they were");
        }
    }

    /// Step 2 of a write: returns once the record `ticket` is durable. The first writer to find
    /// it unsynced syncs the segment for every record written so far; the others wait for that
    /// sync and sync again only if their record came after it.
    fn sync_upto(&self, ticket: u64) -> Result<(), TsdbError> {
        let mut commit = self.lock_commit()?;
        loop {
            if let Some(why) = &commit.failed {
                return Err(sync_failed(&commit.path, why));
            }
            if commit.synced >= ticket {
                return Ok(());
            }
            if commit.syncing {
                commit = self
                    .committed
                    .wait(commit)
                    .map_err(|_| TsdbError::Poisoned)?;
                continue;
            }
            commit.syncing = true;
            let (target, file) = (commit.written, commit.file.clone());
            drop(commit);
            let result = file.sync_data();
            commit = self.lock_commit()?;
            commit.syncing = false;
            commit.syncs += 1;
            match result {
                Ok(()) => commit.synced = commit.synced.max(target),
                Err(e) => {
                    tracing::error!(error = %e, path = %commit.path.display(), "syncing the wal failed; the store refuses writes until reopened");
                    commit.failed = Some(e.to_string());
                }
            }
            self.committed.notify_all();
        }
    }

    /// Step 3 of a write: waits until every record before `ticket` is applied, runs `f` on the
    /// state, then lets the next record's writer apply.
    fn apply_in_turn<T>(
        &self,
        ticket: u64,
        f: impl FnOnce(&mut State) -> Result<T, TsdbError>,
    ) -> Result<T, TsdbError> {
        let mut commit = self.lock_commit()?;
        while commit.applied + 1 < ticket {
            commit = self
                .committed
                .wait(commit)
                .map_err(|_| TsdbError::Poisoned)?;
        }
        drop(commit);
        let result = self.write_state().and_then(|mut state| f(&mut state));
        let mut commit = self.lock_commit()?;
        commit.applied = ticket;
        self.committed.notify_all();
        result
    }

    /// Waits until every record written to the WAL is applied; called with the writer mutex
    /// held (so no record is added meanwhile) before the memtable is flushed or the WAL rotated.
    fn wait_applied(&self) -> Result<(), TsdbError> {
        let mut commit = self.lock_commit()?;
        while commit.applied < commit.written {
            commit = self
                .committed
                .wait(commit)
                .map_err(|_| TsdbError::Poisoned)?;
        }
        Ok(())
    }

    /// Size-tiered merging, after each flush: when the newest [`MERGE_FANIN`] block files are
    /// of one size tier (tier = how many times 4 fits between the file and 4 MiB), they become
    /// one file of the next tier. Every value is rewritten about once per tier, and a store
    /// keeps at most 3 files per tier: reads look into a few files, and blocks stay full.
    /// Returns whether files were merged. Writes go on meanwhile.
    fn merge_tier(&self, maint: &MutexGuard<'_, ()>) -> Result<bool, TsdbError> {
        let chosen = {
            let state = self.read_state()?;
            newest_tier(&state.files)
        };
        if chosen.len() < MERGE_FANIN {
            return Ok(false);
        }
        self.merge(maint, &chosen)?;
        Ok(true)
    }

    /// Merges the block files `chosen` (the newest ones, so that the merged file, which gets
    /// the next id, keeps their place in the order of writes: a flush, which would take a
    /// newer id, waits for `maint`) into one. Writes go on meanwhile.
    fn merge(&self, _maint: &MutexGuard<'_, ()>, chosen: &[u64]) -> Result<(), TsdbError> {
        let blocks_dir = self.dir.join("blocks");
        let new_file = {
            let state = self.read_state()?;
            // Oldest first, so that where values overlap the newer file's win.
            let inputs: Vec<Arc<BlockFile>> = state
                .files
                .values()
                .filter(|f| chosen.contains(&f.file.id))
                .map(|f| f.file.clone())
                .collect();
            let covered = inputs.iter().map(|f| f.covered_wal).max().unwrap_or(0);
            let id = state.files.keys().next_back().copied().unwrap_or(0) + 1;
            let mut w = BlockFileWriter::create(&blocks_dir, id)?;
            if let Err(e) = merge_files(&inputs, state.index.cutoff_ns, &mut w) {
                w.abandon();
                return Err(e);
            }
            let replaces: Vec<u64> = inputs.iter().map(|f| f.id).collect();
            // All at or after the cutoff, which cannot move while `maint` is held.
            let values = w.values();
            (w.finish(covered, &replaces)?, values)
        };
        let old: Vec<Arc<BlockFile>> = {
            let mut state = self.write_state()?;
            let old = chosen
                .iter()
                .filter_map(|id| state.uninstall_file(*id))
                .collect();
            state.install_written(Arc::new(new_file.0), new_file.1);
            old
        };
        // A replaced file that cannot be removed now is removed at the next open.
        for f in &old {
            fs::remove_file(&f.path)
                .map_err(TsdbError::io("removing merged block file", &f.path))?;
        }
        sync_dir(&blocks_dir)
    }

    fn query(&self, q: &Query) -> Result<Vec<SeriesData>, TsdbError> {
        if q.start_ns >= q.end_ns {
            return Ok(Vec::new());
        }
        let state = self.read_state()?;
        let index = &state.index;
        let mut matched: Vec<(SeriesId, KeyRef<'_>, Vec<&str>)> = Vec::new();
        for &id in index.measurement(&q.measurement) {
            let Some(key) = index.key(id) else {
                continue;
            };
            if !q.tag_filter.iter().all(|(k, v)| key.has_tag(k, v)) {
                continue;
            }
            let fields: Vec<&str> = match &q.fields {
                None => index.fields_of(id).map(|f| f.1).collect(),
                Some(wanted) => {
                    let mut f: Vec<&str> = wanted
                        .iter()
                        .filter(|w| index.field_type(id, w).is_some())
                        .map(String::as_str)
                        .collect();
                    f.sort_unstable();
                    f.dedup();
                    f
                }
            };
            matched.push((id, key, fields));
        }
        matched.sort_by(|a, b| a.1.cmp_key(b.1));
        let columns: Vec<(SeriesId, usize, &str)> = matched
            .iter()
            .enumerate()
            .flat_map(|(i, (id, _, fields))| fields.iter().map(move |f| (*id, i, *f)))
            .collect();
        let read = |part: &[(SeriesId, usize, &str)]| {
            part.iter()
                .map(|(id, _, field)| state.read_column(*id, field, q.start_ns, q.end_ns - 1))
                .collect::<Result<Vec<_>, TsdbError>>()
        };
        // Decoding is most of a large query: its columns are read on a few threads.
        let threads = if columns.len() >= PARALLEL_COLUMNS {
            std::thread::available_parallelism().map_or(1, |n| n.get().min(MAX_QUERY_THREADS))
        } else {
            1
        };
        let values: Vec<Vec<(i64, FieldValue)>> = if threads > 1 {
            let chunk = columns.len().div_ceil(threads);
            std::thread::scope(|scope| {
                let handles: Vec<_> = columns
                    .chunks(chunk)
                    .map(|part| scope.spawn(move || read(part)))
                    .collect();
                let mut all = Vec::with_capacity(columns.len());
                for h in handles {
                    match h.join() {
                        Ok(part) => all.extend(part?),
                        Err(_) => return Err(TsdbError::Poisoned),
                    }
                }
                Ok(all)
            })?
        } else {
            read(&columns)?
        };
        let mut out = Vec::new();
        let mut owned: Option<(usize, SeriesKey)> = None;
        for ((_, i, field), points) in columns.iter().zip(values) {
            if points.is_empty() {
                continue;
            }
            if owned.as_ref().is_none_or(|(at, _)| at != i) {
                owned = Some((*i, matched[*i].1.to_key()));
            }
            let Some((_, key)) = &owned else {
                continue;
            };
            out.push(SeriesData {
                key: key.clone(),
                field: field.to_string(),
                points,
            });
        }
        Ok(out)
    }

    fn measurements(&self) -> Result<Vec<String>, TsdbError> {
        let state = self.read_state()?;
        Ok(state
            .index
            .measurement_names()
            .map(str::to_string)
            .collect())
    }

    fn series(&self, measurement: Option<&str>) -> Result<Vec<SeriesKey>, TsdbError> {
        let state = self.read_state()?;
        let index = &state.index;
        let mut keys: Vec<SeriesKey> = match measurement {
            Some(m) => index
                .measurement(m)
                .iter()
                .filter_map(|id| index.key(*id))
                .map(KeyRef::to_key)
                .collect(),
            None => (0..index.len() as SeriesId)
                .filter_map(|id| index.key(id))
                .map(KeyRef::to_key)
                .collect(),
        };
        keys.sort();
        Ok(keys)
    }

    fn fields(&self, measurement: &str) -> Result<Vec<(String, FieldType)>, TsdbError> {
        let state = self.read_state()?;
        let index = &state.index;
        let mut out: Vec<(String, FieldType)> = index
            .field_sets(index.measurement(measurement))
            .into_iter()
            .flat_map(|set| index.set_fields(set).map(|(f, t)| (f.to_string(), t)))
            .collect();
        out.sort();
        out.dedup();
        Ok(out)
    }

    fn delete_before(&self, cutoff_ns: i64) -> Result<u64, TsdbError> {
        let maint = self.lock_maint()?;
        // A memtable a failed flush left frozen is written first: retention then has only
        // `mem` and the block files to look at.
        self.write_frozen(&maint)?;
        let _writer = self.lock_writer()?;
        let old = self.read_state()?.index.cutoff_ns;
        if cutoff_ns <= old {
            return Ok(0);
        }
        // Count first: a failure here changes nothing.
        let (removed, drop_files) = {
            let state = self.read_state()?;
            let mut removed: Vec<(u64, u64)> = Vec::with_capacity(state.files.len());
            for f in state.files.values() {
                let mut n = 0u64;
                for e in f.file.entries.iter() {
                    n += visible_between(&f.file, &e, old, cutoff_ns)?;
                }
                removed.push((f.file.id, n));
            }
            let drop_files: Vec<Arc<BlockFile>> = state
                .files
                .values()
                .filter(|f| f.file.max_ts < cutoff_ns)
                .map(|f| f.file.clone())
                .collect();
            (removed, drop_files)
        };
        let from_blocks: u64 = removed.iter().map(|r| r.1).sum();
        let mut state = self.write_state()?;
        state.index.cutoff_ns = cutoff_ns;
        if let Err(e) = state.index.save(&self.dir) {
            state.index.cutoff_ns = old;
            return Err(e);
        }
        let from_mem = state.mem.delete_before(cutoff_ns);
        for (id, n) in removed {
            if let Some(f) = state.files.get_mut(&id) {
                f.points = f.points.saturating_sub(n);
            }
        }
        state.block_points = state.block_points.saturating_sub(from_blocks);
        for f in &drop_files {
            state.uninstall_file(f.id);
        }
        drop(state);
        // A file that cannot be removed now is removed at the next open.
        for f in &drop_files {
            fs::remove_file(&f.path)
                .map_err(TsdbError::io("removing expired block file", &f.path))?;
        }
        if !drop_files.is_empty() {
            sync_dir(&self.dir.join("blocks"))?;
        }
        Ok(from_mem + from_blocks)
    }

    fn flush(&self) -> Result<(), TsdbError> {
        let maint = self.lock_maint()?;
        self.flush_maint(&maint)
    }

    fn flush_and_merge(&self) -> Result<(), TsdbError> {
        let maint = self.lock_maint()?;
        self.flush_maint(&maint)?;
        while self.merge_tier(&maint)? {}
        Ok(())
    }

    fn compact(&self) -> Result<(), TsdbError> {
        let maint = self.lock_maint()?;
        self.flush_maint(&maint)?;
        let all: Vec<u64> = {
            let state = self.read_state()?;
            if state.files.len() <= 1 {
                return Ok(());
            }
            state.files.keys().copied().collect()
        };
        self.merge(&maint, &all)
    }

    fn disk_usage(&self) -> Result<Vec<FieldUsage>, TsdbError> {
        let state = self.read_state()?;
        let mut by: BTreeMap<(&str, &str, FieldType), (u64, u64, u64)> = BTreeMap::new();
        for f in state.files.values() {
            for e in f.file.entries.iter() {
                let measurement = state.index.key(e.series).map_or("", KeyRef::measurement);
                let sum = by
                    .entry((measurement, f.file.field_name(&e), e.ty))
                    .or_default();
                sum.0 += u64::from(e.count);
                sum.1 += u64::from(e.size());
                sum.2 += 1;
            }
        }
        Ok(by
            .into_iter()
            .map(|((m, f, ty), (values, bytes, blocks))| FieldUsage {
                measurement: m.to_string(),
                field: f.to_string(),
                ty,
                values,
                bytes,
                blocks,
            })
            .collect())
    }

    fn stats(&self) -> TsdbStats {
        let (series, points, block_bytes) = match self.state.read() {
            Ok(s) => (
                s.index.len() as u64,
                s.mem.points() + s.frozen.as_ref().map_or(0, |f| f.mem.points()) + s.block_points,
                s.files.values().map(|f| f.file.size).sum(),
            ),
            Err(_) => (0, 0, 0),
        };
        let wal = self
            .writer
            .lock()
            .map(|w| w.wal.bytes_on_disk())
            .unwrap_or(0);
        let (wal_batches, wal_syncs) = self
            .commit
            .lock()
            .map(|c| (c.written, c.syncs))
            .unwrap_or((0, 0));
        let idx = fs::metadata(self.dir.join(crate::index::FILE_NAME))
            .map(|m| m.len())
            .unwrap_or(0);
        TsdbStats {
            series,
            points,
            bytes_on_disk: wal + idx + block_bytes,
            wal_batches,
            wal_syncs,
        }
    }

    /// A flush: the memtable is frozen under the writer mutex (held only for that), then
    /// written to a block file while writes go on into a new memtable. A memtable an earlier
    /// flush failed to write is written first, so that block files keep the order of writes.
    fn flush_maint(&self, maint: &MutexGuard<'_, ()>) -> Result<(), TsdbError> {
        self.write_frozen(maint)?;
        let mut writer = self.lock_writer()?;
        if !self.freeze(&mut writer)? {
            return Ok(());
        }
        drop(writer);
        self.write_frozen(maint)
    }

    /// Moves the memtable to `State::frozen` once every appended batch is applied, after the
    /// index file has every series it names and the WAL has moved to a new segment; returns
    /// whether memory held anything. Called with `maint` held and no memtable frozen.
    fn freeze(&self, writer: &mut MutexGuard<'_, Writer>) -> Result<bool, TsdbError> {
        self.wait_applied()?;
        {
            let mut state = self.write_state()?;
            // Block files may only name series and fields the index file knows.
            if state.index.dirty {
                state.index.save(&self.dir)?;
            }
            if state.mem.is_empty() {
                return Ok(false);
            }
        }
        // Everything in memory is in segments up to `covered`; new writes wait on `writer`.
        let covered = writer.wal.rotate()?;
        {
            let mut commit = self.lock_commit()?;
            commit.file = writer.wal.file();
            commit.path = writer.wal.path();
        }
        let mut state = self.write_state()?;
        let mem = std::mem::take(&mut state.mem);
        let mut layout = Vec::new();
        for id in mem.series_ids() {
            for (field, _, ty) in state.index.fields_of(id) {
                if mem.column(id, field).is_some() {
                    layout.push((id, field, ty));
                }
            }
        }
        state.frozen = Some(Arc::new(Frozen {
            mem,
            covered,
            names: state.index.field_names(),
            layout,
        }));
        Ok(true)
    }

    /// Writes the frozen memtable, if any, to a block file, installs it in place of the
    /// memtable and deletes the WAL segments it covers. Holds no lock while encoding; on an
    /// error the memtable stays frozen (and queried), its values in the WAL.
    fn write_frozen(&self, _maint: &MutexGuard<'_, ()>) -> Result<(), TsdbError> {
        let (frozen, id) = {
            let state = self.read_state()?;
            let Some(frozen) = state.frozen.clone() else {
                return Ok(());
            };
            (
                frozen,
                state.files.keys().next_back().copied().unwrap_or(0) + 1,
            )
        };
        let mut w = BlockFileWriter::create(&self.dir.join("blocks"), id)?;
        for &(series, field, ty) in &frozen.layout {
            // The layout lists only columns the memtable has.
            let Some(column) = frozen.mem.column(series, field) else {
                continue;
            };
            // A column without a name would be left out of the file while the WAL segments
            // holding it are deleted: refused, so the memtable stays frozen and read instead.
            let Some(name) = frozen.names.get(field as usize) else {
                w.abandon();
                return Err(TsdbError::Invalid(format!(
                    "flushing series {series}: field number {field} has no name in the index"
                )));
            };
            if let Err(e) = w.add_column(series, name, ty, column.values()) {
                w.abandon();
                return Err(e);
            }
        }
        let values = w.values();
        let file = w.finish(frozen.covered, &[])?;
        {
            let mut state = self.write_state()?;
            state.install_written(Arc::new(file), values);
            state.frozen = None;
        }
        // Freed here, after the lock is released.
        let covered = frozen.covered;
        drop(frozen);
        crate::wal::remove_upto(&self.dir.join("wal"), covered)
    }

    fn lock_maint(&self) -> Result<MutexGuard<'_, ()>, TsdbError> {
        self.maint.lock().map_err(|_| TsdbError::Poisoned)
    }

    fn lock_writer(&self) -> Result<MutexGuard<'_, Writer>, TsdbError> {
        self.writer.lock().map_err(|_| TsdbError::Poisoned)
    }

    fn lock_commit(&self) -> Result<MutexGuard<'_, Commit>, TsdbError> {
        self.commit.lock().map_err(|_| TsdbError::Poisoned)
    }

    fn read_state(&self) -> Result<RwLockReadGuard<'_, State>, TsdbError> {
        self.state.read().map_err(|_| TsdbError::Poisoned)
    }

    fn write_state(&self) -> Result<RwLockWriteGuard<'_, State>, TsdbError> {
        self.state.write().map_err(|_| TsdbError::Poisoned)
    }
}

impl State {
    /// Whether memory holds `times` times the flush threshold ([`flush_threshold`]) or more.
    fn over_threshold(&self, threshold_points: u64, times: u64) -> bool {
        let limit = flush_threshold(threshold_points, self.index.len());
        self.mem.points() >= limit.saturating_mul(times)
    }

    /// Makes a block file visible, after older files, and counts its values at or after the
    /// cutoff.
    fn install_file(&mut self, file: Arc<BlockFile>) -> Result<(), TsdbError> {
        let points = visible_from(&file, self.index.cutoff_ns)?;
        self.block_points += points;
        self.files.insert(file.id, Installed { file, points });
        Ok(())
    }

    /// [`State::install_file`] for a file just written with `points` values, all at or after
    /// the cutoff: nothing to count.
    fn install_written(&mut self, file: Arc<BlockFile>, points: u64) {
        debug_assert!(visible_from(&file, self.index.cutoff_ns).is_ok_and(|n| n == points));
        self.block_points += points;
        self.files.insert(file.id, Installed { file, points });
    }

    /// Forgets a block file; returns it.
    fn uninstall_file(&mut self, id: u64) -> Option<Arc<BlockFile>> {
        let f = self.files.remove(&id)?;
        self.block_points = self.block_points.saturating_sub(f.points);
        Some(f.file)
    }

    /// Values of one series field in `[lo, hi]` (inclusive) and at or after the cutoff,
    /// ascending, the newest write winning.
    fn read_column(
        &self,
        id: SeriesId,
        field: &str,
        lo: i64,
        hi: i64,
    ) -> Result<Vec<(i64, FieldValue)>, TsdbError> {
        let lo = lo.max(self.index.cutoff_ns);
        if lo > hi {
            return Ok(Vec::new());
        }
        // Every run (a block, or what memory holds) is appended to `out`, oldest first. Runs
        // of one series field rarely overlap (only after an overwrite or a late write): then
        // `out` is the answer as it is, and only otherwise are the runs merged.
        let mut out: Vec<(i64, FieldValue)> = Vec::new();
        let mut starts: Vec<usize> = Vec::new();
        let mut ordered = true;
        let mut run_end = |out: &mut Vec<(i64, FieldValue)>, start: usize| {
            if out.len() > start {
                ordered &= start == 0 || out[start - 1].0 < out[start].0;
                starts.push(start);
            }
        };
        let mut buf = Vec::new();
        for f in self.files.values() {
            for e in f.file.blocks(id, field) {
                if e.max_ts < lo || e.min_ts > hi {
                    continue;
                }
                let start = out.len();
                f.file.read_into(&e, &mut buf, &mut out)?;
                if e.min_ts < lo || e.max_ts > hi {
                    let run = &out[start..];
                    let (a, b) = (
                        run.partition_point(|p| p.0 < lo),
                        run.partition_point(|p| p.0 <= hi),
                    );
                    out.truncate(start + b.max(a));
                    out.drain(start..start + a);
                }
                run_end(&mut out, start);
            }
        }
        if let Some(field) = self.index.field_id(field) {
            // Newer than the block files, older than what came after the freeze.
            let frozen = self.frozen.as_ref().map(|f| &f.mem);
            for mem in frozen.into_iter().chain([&self.mem]) {
                if let Some(column) = mem.column(id, field) {
                    let start = out.len();
                    out.extend_from_slice(column.range(lo, hi));
                    run_end(&mut out, start);
                }
            }
        }
        if ordered {
            return Ok(out);
        }
        let mut runs = Vec::with_capacity(starts.len());
        for &start in starts.iter().rev() {
            runs.push(out.split_off(start));
        }
        runs.reverse();
        Ok(merge_runs(runs))
    }
}

/// Writes the merge of `inputs` (oldest first) into `w`: per series field, in the order of
/// series id and field name, the values at or after `cutoff`, a newer file's winning where
/// they overlap. Reads each input front to back, as its entries list the blocks.
fn merge_files(
    inputs: &[Arc<BlockFile>],
    cutoff: i64,
    w: &mut BlockFileWriter,
) -> Result<(), TsdbError> {
    let mut next: Vec<_> = inputs.iter().map(|f| f.entries.iter().peekable()).collect();
    let mut readers: Vec<_> = inputs.iter().map(|f| f.sequential()).collect();
    let mut values: Vec<(i64, FieldValue)> = Vec::new();
    let mut block: Vec<(i64, FieldValue)> = Vec::new();
    loop {
        // The smallest (series, field) among the inputs' next entries.
        let mut key: Option<(SeriesId, &str)> = None;
        for (f, entries) in inputs.iter().zip(next.iter_mut()) {
            if let Some(e) = entries.peek() {
                let k = (e.series, f.field_name(e));
                if key.is_none_or(|key| k < key) {
                    key = Some(k);
                }
            }
        }
        let Some((series, field)) = key else {
            return Ok(());
        };
        values.clear();
        let mut ty = None;
        let mut sorted = true;
        for ((f, entries), reader) in inputs.iter().zip(next.iter_mut()).zip(&mut readers) {
            while let Some(e) = entries.next_if(|e| e.series == series && f.field_name(e) == field)
            {
                ty = Some(e.ty);
                if e.max_ts < cutoff {
                    continue;
                }
                block.clear();
                reader.read_into(&e, &mut block)?;
                if e.min_ts < cutoff {
                    block.retain(|p| p.0 >= cutoff);
                }
                if let (Some(last), Some(first)) = (values.last(), block.first()) {
                    sorted &= last.0 < first.0;
                }
                values.append(&mut block);
            }
        }
        if !sorted {
            // Overlapping runs: the stable sort keeps them in file order per timestamp, and
            // of equal timestamps the last (newest) one stays.
            values.sort_by_key(|p| p.0);
            values.dedup_by(|later, kept| {
                if later.0 == kept.0 {
                    std::mem::swap(later, kept);
                    true
                } else {
                    false
                }
            });
        }
        if let Some(ty) = ty {
            w.add_column(series, field, ty, &values)?;
        }
    }
}

/// The number of values in memory at which a write flushes: `points`, or the number of series
/// if that is more. A flush rewrites `series.idx` whole when series were added, so with very
/// many series it waits for at least one value per series: the rewrite then costs at most one
/// series record per flushed value, whatever the number of series, instead of growing with it.
/// Memory for values grows with the series count as the index does.
fn flush_threshold(points: u64, series: usize) -> u64 {
    points.max(series as u64)
}

/// How many block files of one tier are merged into one of the next.
pub const MERGE_FANIN: usize = 4;
/// Files under this size are of tier 0.
const TIER_BASE_BYTES: u64 = 4 << 20;

fn tier(size: u64) -> u32 {
    let mut t = 0;
    let mut bound = TIER_BASE_BYTES;
    while size >= bound && t < 32 {
        t += 1;
        bound = bound.saturating_mul(4);
    }
    t
}

/// The newest block files of the newest file's tier, newest first, at most [`MERGE_FANIN`].
fn newest_tier(files: &BTreeMap<u64, Installed>) -> Vec<u64> {
    let mut newest = files.values().rev().map(|f| &f.file);
    let Some(first) = newest.next() else {
        return Vec::new();
    };
    let t = tier(first.size);
    std::iter::once(first)
        .chain(newest.take_while(|f| tier(f.size) == t))
        .take(MERGE_FANIN)
        .map(|f| f.id)
        .collect()
}

/// Concatenates ascending runs given oldest first; where they overlap, later runs win.
fn merge_runs(mut runs: Vec<Vec<(i64, FieldValue)>>) -> Vec<(i64, FieldValue)> {
    runs.retain(|r| !r.is_empty());
    let disjoint = runs.windows(2).all(|w| match (w[0].last(), w[1].first()) {
        (Some(a), Some(b)) => a.0 < b.0,
        _ => true,
    });
    if disjoint {
        if runs.len() == 1 {
            return runs.pop().unwrap_or_default();
        }
        let mut out = Vec::with_capacity(runs.iter().map(Vec::len).sum());
        for mut run in runs {
            out.append(&mut run);
        }
        return out;
    }
    let mut merged: BTreeMap<i64, FieldValue> = BTreeMap::new();
    for run in runs {
        merged.extend(run);
    }
    merged.into_iter().collect()
}

/// How many values of a file are at or after `cutoff`.
fn visible_from(file: &BlockFile, cutoff: i64) -> Result<u64, TsdbError> {
    let mut points = 0u64;
    for e in file.entries.iter() {
        // `visible_between` is half-open.
        points += visible_between(file, &e, cutoff, i64::MAX)? + u64::from(e.max_ts == i64::MAX);
    }
    Ok(points)
}

/// How many values of a block lie in `[from, to)`.
fn visible_between(file: &BlockFile, e: &BlockEntry, from: i64, to: i64) -> Result<u64, TsdbError> {
    if e.max_ts < from || e.min_ts >= to {
        return Ok(0);
    }
    if e.min_ts >= from && e.max_ts < to {
        return Ok(u64::from(e.count));
    }
    Ok(file
        .read_timestamps(e)?
        .iter()
        .filter(|t| **t >= from && **t < to)
        .count() as u64)
}

fn remove_tmp_files(dir: &Path) -> Result<(), TsdbError> {
    for entry in fs::read_dir(dir).map_err(TsdbError::io("listing directory", dir))? {
        let entry = entry.map_err(TsdbError::io("listing directory", dir))?;
        if entry
            .file_name()
            .to_str()
            .is_some_and(|n| n.ends_with(".tmp"))
        {
            let path = entry.path();
            fs::remove_file(&path).map_err(TsdbError::io("removing unfinished file", &path))?;
        }
    }
    Ok(())
}

/// Checks a validated batch against the retention cutoff and the recorded field types, and
/// against itself (two new points may disagree on a field's type). Looks series and fields up
/// from the points' own strings: nothing is copied. Returns each point's series id where the
/// index knows the series (valid for [`apply`] as long as the writer lock is held).
fn check_batch(index: &SeriesIndex, points: &[Point]) -> Result<Vec<Option<SeriesId>>, TsdbError> {
    /// A series of the batch: known to the index, or the n-th new one.
    #[derive(Clone, Copy, PartialEq, Eq, Hash)]
    enum Slot {
        Known(SeriesId),
        New(usize),
    }
    let mut new_series: HashMap<(&str, &NameMap<Name>), usize> = HashMap::new();
    // Types of the fields the index does not know yet, as first seen in the batch.
    let mut new_types: HashMap<(Slot, &str), FieldType> = HashMap::new();
    let mut last: Option<(&Point, Slot)> = None;
    let mut ids = Vec::with_capacity(points.len());
    let mut scratch = Vec::new();
    for p in points {
        if p.timestamp_ns < index.cutoff_ns {
            return Err(TsdbError::BeforeRetention {
                timestamp_ns: p.timestamp_ns,
                cutoff_ns: index.cutoff_ns,
            });
        }
        let slot = match last {
            Some((q, slot)) if q.measurement == p.measurement && q.tags == p.tags => slot,
            _ => match index.find(&p.measurement, &p.tags) {
                Some(id) => Slot::Known(id),
                None => {
                    let n = new_series.len();
                    Slot::New(*new_series.entry((&p.measurement, &p.tags)).or_insert(n))
                }
            },
        };
        last = Some((p, slot));
        ids.push(match slot {
            Slot::Known(id) => Some(id),
            Slot::New(_) => None,
        });
        if let Slot::Known(id) = slot {
            if index.resolve_fields(id, point_fields(p), &mut scratch) {
                // The series has all these fields, with these types.
                continue;
            }
        }
        for (name, value) in &p.fields {
            let new = value.field_type();
            let known = match slot {
                Slot::Known(id) => index.field_type(id, name),
                Slot::New(_) => None,
            };
            // A field (or series) the index does not know yet: only these are recorded.
            let existing =
                known.unwrap_or_else(|| *new_types.entry((slot, name.as_str())).or_insert(new));
            if existing != new {
                return Err(TsdbError::FieldTypeConflict {
                    measurement: p.measurement.to_string(),
                    field: name.to_string(),
                    existing,
                    new,
                });
            }
        }
    }
    Ok(ids)
}

/// A point's field names and types, sorted by name.
fn point_fields(p: &Point) -> impl Iterator<Item = (&str, FieldType)> {
    p.fields.iter().map(|(n, v)| (n.as_str(), v.field_type()))
}

/// Puts a batch (checked, or replayed from the WAL) into the index and the memtable. `known`
/// holds the series ids [`check_batch`] found, one per point.
fn apply(
    index: &mut SeriesIndex,
    mem: &mut Memtable,
    points: &[Point],
    known: Option<&[Option<SeriesId>]>,
) {
    let registered = register(index, points, known);
    let order = fill_order(points, &registered);
    fill(index.cutoff_ns, mem, points, &registered, &order);
}

/// Where a batch's values go: per point its series (`None`: before the cutoff), and per field
/// value of those points, in order, its field number (`None`: a type conflict, skipped).
struct Registered {
    series: Vec<Option<SeriesId>>,
    fields: Vec<Option<FieldId>>,
}

/// Adds a batch's new series and field types to the index. `known` holds the series ids
/// [`check_batch`] found, one per point.
fn register(
    index: &mut SeriesIndex,
    points: &[Point],
    known: Option<&[Option<SeriesId>]>,
) -> Registered {
    let mut out = Registered {
        series: Vec::with_capacity(points.len()),
        fields: Vec::with_capacity(points.len() * points.first().map_or(1, |p| p.fields.len())),
    };
    let mut last: Option<(&str, &NameMap<Name>, SeriesId)> = None;
    let mut fields = Vec::new();
    for (i, p) in points.iter().enumerate() {
        if p.timestamp_ns < index.cutoff_ns {
            out.series.push(None);
            continue;
        }
        let id = match (known.and_then(|k| k.get(i)).copied().flatten(), last) {
            (Some(id), _) => id,
            (None, Some((m, t, id))) if m == p.measurement && *t == p.tags => id,
            (None, _) => index.get_or_insert(&p.measurement, &p.tags),
        };
        last = Some((&p.measurement, &p.tags, id));
        out.series.push(Some(id));
        if index.resolve_fields(id, point_fields(p), &mut fields) {
            out.fields.extend(fields.iter().copied().map(Some));
            continue;
        }
        let start = out.fields.len();
        index.set_field_types(id, point_fields(p), &mut out.fields);
        for ((name, _), field) in p.fields.iter().zip(&out.fields[start..]) {
            if field.is_none() {
                // Only reachable if the WAL holds a batch that was never checked.
                let existing = index.field_type(id, name);
                tracing::warn!(measurement = %p.measurement, field = %name, ?existing, "skipping value of conflicting type");
            }
        }
    }
    out
}

/// Puts a registered batch's values at or after `cutoff_ns` into the memtable.
/// The order in which [`fill`] puts a registered batch's points into the memtable: by series,
/// and within a series in the batch's order (so that the later of two points with the same
/// timestamp still wins). A batch holds each series' points spread out (a collector sends
/// every series at one time, then every series at the next); put in one after the other, a
/// series' columns stay in the cache instead of being fetched again for every point. Made
/// before the batch's turn to apply, since it needs no lock. Per point: its index and where
/// its field numbers start in `Registered::fields`.
fn fill_order(points: &[Point], registered: &Registered) -> Vec<(SeriesId, u32, u32)> {
    let mut order = Vec::with_capacity(points.len());
    let mut offset = 0u32;
    for (i, (p, id)) in points.iter().zip(&registered.series).enumerate() {
        let Some(id) = *id else {
            continue;
        };
        // A batch is at most 1 GiB, so fewer than 2^32 points and field values.
        order.push((id, i as u32, offset));
        offset += p.fields.len() as u32;
    }
    // Stable: a series' points keep the batch's order.
    order.sort_by_key(|o| o.0);
    order
}

/// Puts a registered batch's values at or after `cutoff_ns` into the memtable, in the order
/// of [`fill_order`].
fn fill(
    cutoff_ns: i64,
    mem: &mut Memtable,
    points: &[Point],
    registered: &Registered,
    order: &[(SeriesId, u32, u32)],
) {
    for &(id, i, offset) in order {
        let Some(p) = points.get(i as usize) else {
            continue;
        };
        // The cutoff may have moved since the batch was registered.
        if p.timestamp_ns < cutoff_ns {
            continue;
        }
        let ids = registered.fields.iter().skip(offset as usize);
        let mut columns = mem.series_mut(id, p.fields.len());
        for (field, value) in ids.zip(p.fields.values()) {
            if let Some(field) = field {
                columns.insert(*field, p.timestamp_ns, value.clone());
            }
        }
    }
}

/// The error of a write whose record a failed sync did not make durable.
fn sync_failed(path: &Path, why: &str) -> TsdbError {
    TsdbError::Io {
        context: "syncing wal (failed earlier; reopen the store to recover)",
        path: path.to_path_buf(),
        source: std::io::Error::other(why.to_string()),
    }
}

fn lock_dir(dir: &Path) -> Result<File, TsdbError> {
    use std::os::unix::io::AsRawFd;
    let path = dir.join("LOCK");
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(TsdbError::io("opening lock file", &path))?;
    // SAFETY: flock on a file descriptor we own; no memory is shared with the call.
    let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if rc != 0 {
        let err = std::io::Error::last_os_error();
        if err.raw_os_error() == Some(libc::EWOULDBLOCK) {
            return Err(TsdbError::Locked(dir.to_path_buf()));
        }
        return Err(TsdbError::io("locking data directory", &path)(err));
    }
    Ok(file)
}

#[cfg(test)]
mod tests {
    use std::sync::mpsc;
    use std::time::Duration;

    use super::*;

    fn point(ts: i64, value: f64) -> Point {
        Point {
            measurement: "cpu".into(),
            tags: [("host".into(), "a".into())].into(),
            fields: [("idle".into(), FieldValue::Float(value))].into(),
            timestamp_ns: ts,
        }
    }

    /// The values of series `cpu,host=a`.
    fn values(tsdb: &Tsdb) -> Vec<(i64, FieldValue)> {
        let q = Query {
            measurement: "cpu".into(),
            tag_filter: [("host".to_string(), "a".to_string())].into(),
            fields: None,
            start_ns: i64::MIN,
            end_ns: i64::MAX,
        };
        let mut got = tsdb.query(&q).unwrap();
        assert!(got.len() <= 1);
        got.pop().map(|s| s.points).unwrap_or_default()
    }

    fn files(tsdb: &Tsdb) -> usize {
        tsdb.store.state.read().unwrap().files.len()
    }

    /// Points are put into memory series by series, but within a series in the batch's
    /// order: of two points with one timestamp the later in the batch wins, live and after
    /// the WAL is replayed.
    #[test]
    fn the_later_of_two_points_in_a_batch_wins() {
        let dir = tempfile::tempdir().unwrap();
        let tsdb = Tsdb::open(dir.path()).unwrap();
        let mut other = point(1, 100.0);
        other.tags.insert("host".into(), "b".into());
        let mut other2 = other.clone();
        other2
            .fields
            .insert("idle".into(), FieldValue::Float(200.0));
        let batch = [
            point(2, 1.0),
            other,
            point(1, 2.0),
            point(2, 3.0),
            other2,
            point(1, 4.0),
        ];
        tsdb.write(&batch).unwrap();
        let want = [(1, FieldValue::Float(4.0)), (2, FieldValue::Float(3.0))];
        assert_eq!(values(&tsdb), want);
        assert_eq!(tsdb.stats().points, 3);
        drop(tsdb);
        let tsdb = Tsdb::open(dir.path()).unwrap();
        assert_eq!(values(&tsdb), want, "after replaying the wal");
    }

    /// While a flush or merge holds `maint`, writes past the flush threshold are stored and
    /// answered (memory takes up to twice the threshold) instead of waiting for it.
    #[test]
    fn writes_go_on_while_a_flush_or_merge_runs() {
        let dir = tempfile::tempdir().unwrap();
        let options = TsdbOptions {
            flush_threshold_points: 10,
        };
        let tsdb = Arc::new(Tsdb::open_with(dir.path(), options).unwrap());
        let maint = tsdb.store.maint.lock().unwrap();
        let (done, finished) = mpsc::channel();
        let writer = {
            let tsdb = tsdb.clone();
            std::thread::spawn(move || {
                for ts in 0..15 {
                    tsdb.write(&[point(ts, ts as f64)]).unwrap();
                }
                done.send(()).unwrap();
            })
        };
        finished
            .recv_timeout(Duration::from_secs(30))
            .expect("writes past the threshold did not wait for the flush");
        writer.join().unwrap();
        assert_eq!(values(&tsdb).len(), 15);
        assert_eq!(files(&tsdb), 0);
        drop(maint);
        tsdb.write(&[point(15, 15.0)]).unwrap();
        tsdb.wait_for_flush();
        assert_eq!(files(&tsdb), 1, "the flush that waited ran");
        assert_eq!(values(&tsdb).len(), 16);
        assert_eq!(tsdb.stats().points, 16);
    }

    /// A frozen memtable is read like the others: newer than the block files, older than what
    /// was written after it froze; writing it out changes no answer.
    #[test]
    fn a_frozen_memtable_is_read_between_the_files_and_memory() {
        let dir = tempfile::tempdir().unwrap();
        let tsdb = Tsdb::open(dir.path()).unwrap();
        tsdb.write(&[point(1, 1.0), point(2, 2.0)]).unwrap();
        tsdb.flush().unwrap();
        tsdb.write(&[point(2, 20.0), point(3, 3.0)]).unwrap();
        let maint = tsdb.store.lock_maint().unwrap();
        assert!(tsdb
            .store
            .freeze(&mut tsdb.store.lock_writer().unwrap())
            .unwrap());
        tsdb.write(&[point(3, 30.0), point(4, 4.0)]).unwrap();
        let want = vec![
            (1, FieldValue::Float(1.0)),
            (2, FieldValue::Float(20.0)),
            (3, FieldValue::Float(30.0)),
            (4, FieldValue::Float(4.0)),
        ];
        assert_eq!(values(&tsdb), want);
        assert_eq!(tsdb.stats().points, 6, "one per stored copy");
        tsdb.store.write_frozen(&maint).unwrap();
        assert!(tsdb.store.state.read().unwrap().frozen.is_none());
        assert_eq!(files(&tsdb), 2);
        assert_eq!(values(&tsdb), want);
        drop(maint);
        drop(tsdb);
        let tsdb = Tsdb::open(dir.path()).unwrap();
        assert_eq!(values(&tsdb), want, "after replaying the rest of the wal");
    }

    /// A flush that cannot write its block file leaves the memtable frozen and readable, its
    /// values in the WAL; the next flush writes it first, so the newer values still win.
    #[test]
    fn a_frozen_memtable_that_cannot_be_written_stays_readable() {
        let dir = tempfile::tempdir().unwrap();
        let tsdb = Tsdb::open(dir.path()).unwrap();
        tsdb.write(&[point(1, 1.0), point(2, 2.0)]).unwrap();
        let blocks = dir.path().join("blocks");
        fs::remove_dir(&blocks).unwrap();
        assert!(tsdb.flush().is_err());
        assert!(tsdb.store.state.read().unwrap().frozen.is_some());
        tsdb.write(&[point(2, 20.0)]).unwrap();
        assert_eq!(
            values(&tsdb),
            [(1, FieldValue::Float(1.0)), (2, FieldValue::Float(20.0))]
        );
        fs::create_dir(&blocks).unwrap();
        tsdb.flush().unwrap();
        assert_eq!(files(&tsdb), 2);
        assert_eq!(tsdb.delete_before(2).unwrap(), 1);
        assert_eq!(values(&tsdb), [(2, FieldValue::Float(20.0))]);
        drop(tsdb);
        let tsdb = Tsdb::open(dir.path()).unwrap();
        assert_eq!(values(&tsdb), [(2, FieldValue::Float(20.0))]);
    }
}
