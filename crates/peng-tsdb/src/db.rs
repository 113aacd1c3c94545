//! The `Tsdb` handle: locking, the write path (validate → WAL → memory), queries, retention
//! and flushing.
//!
//! Writers are serialised by one mutex that owns the WAL, so type checks and the append see a
//! consistent state; readers share a read lock on the in-memory state and are blocked only
//! while a write or flush installs its result.

use std::collections::{BTreeMap, HashMap};
use std::fs::{self, File, OpenOptions};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard};

use crate::error::TsdbError;
use crate::index::{SeriesId, SeriesIndex};
use crate::memtable::Memtable;
use crate::model::{
    validate_point, FieldType, FieldValue, Point, Query, SeriesData, SeriesKey, TsdbStats,
};
use crate::wal::Wal;

/// Tuning knobs; `TsdbOptions::default()` is what [`Tsdb::open`] uses.
#[derive(Debug, Clone)]
pub struct TsdbOptions {
    /// `write` flushes the WAL into blocks once memory holds this many values.
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
    dir: PathBuf,
    options: TsdbOptions,
    /// Holds an exclusive `flock` on `dir/LOCK` for as long as the store is open.
    _lock: File,
    writer: Mutex<Writer>,
    state: RwLock<State>,
}

struct Writer {
    wal: Wal,
}

struct State {
    index: SeriesIndex,
    mem: Memtable,
}

impl Tsdb {
    /// Opens (creating if needed) the store in `dir` and recovers what the WAL holds.
    pub fn open(dir: &Path) -> Result<Tsdb, TsdbError> {
        Tsdb::open_with(dir, TsdbOptions::default())
    }

    /// [`Tsdb::open`] with explicit options.
    pub fn open_with(dir: &Path, options: TsdbOptions) -> Result<Tsdb, TsdbError> {
        fs::create_dir_all(dir).map_err(TsdbError::io("creating data directory", dir))?;
        let lock = lock_dir(dir)?;
        let mut index = SeriesIndex::load(dir)?;
        let (wal, replayed) = Wal::open(&dir.join("wal"), 0)?;
        let mut mem = Memtable::default();
        for segment in replayed {
            for batch in segment.batches {
                apply(&mut index, &mut mem, &batch);
            }
        }
        let tsdb = Tsdb {
            dir: dir.to_path_buf(),
            options,
            _lock: lock,
            writer: Mutex::new(Writer { wal }),
            state: RwLock::new(State { index, mem }),
        };
        Ok(tsdb)
    }

    /// Stores a batch. `Ok` means every point is durable; any error means none was stored.
    pub fn write(&self, points: &[Point]) -> Result<(), TsdbError> {
        if points.is_empty() {
            return Ok(());
        }
        for p in points {
            validate_point(p)?;
        }
        let mut writer = self.lock_writer()?;
        {
            let state = self.read_state()?;
            check_batch(&state.index, points)?;
        }
        writer.wal.append(points)?;
        let should_flush = {
            let mut state = self.write_state()?;
            let State { index, mem } = &mut *state;
            apply(index, mem, points);
            mem.points() >= self.options.flush_threshold_points
        };
        if should_flush {
            // The batch is durable in the WAL already; a failed flush leaves it there.
            if let Err(error) = self.flush_locked(&mut writer) {
                tracing::warn!(%error, "flush after write failed, data stays in the wal");
            }
        }
        Ok(())
    }

    /// Reads the values of the series and fields the query selects, one entry per series and
    /// field with at least one value in range, ordered by series key and field name.
    pub fn query(&self, q: &Query) -> Result<Vec<SeriesData>, TsdbError> {
        if q.start_ns >= q.end_ns {
            return Ok(Vec::new());
        }
        let state = self.read_state()?;
        let mut matched: Vec<(SeriesId, &SeriesKey, Vec<&String>)> = Vec::new();
        for &id in state.index.measurement(&q.measurement) {
            let Some(entry) = state.index.entry(id) else {
                continue;
            };
            if !q
                .tag_filter
                .iter()
                .all(|(k, v)| entry.key.tags.get(k) == Some(v))
            {
                continue;
            }
            let fields: Vec<&String> = match &q.fields {
                None => entry.fields.keys().collect(),
                Some(wanted) => {
                    let mut f: Vec<&String> = wanted
                        .iter()
                        .filter(|w| entry.fields.contains_key(*w))
                        .collect();
                    f.sort();
                    f.dedup();
                    f
                }
            };
            matched.push((id, &entry.key, fields));
        }
        matched.sort_by(|a, b| a.1.cmp(b.1));
        let mut out = Vec::new();
        for (id, key, fields) in matched {
            for field in fields {
                let Some(column) = state.mem.column(id, field) else {
                    continue;
                };
                let points: Vec<(i64, FieldValue)> = column
                    .range(q.start_ns..q.end_ns)
                    .map(|(t, v)| (*t, v.clone()))
                    .collect();
                if !points.is_empty() {
                    out.push(SeriesData {
                        key: key.clone(),
                        field: field.clone(),
                        points,
                    });
                }
            }
        }
        Ok(out)
    }

    /// All series, or those of one measurement, sorted.
    pub fn series(&self, measurement: Option<&str>) -> Result<Vec<SeriesKey>, TsdbError> {
        let state = self.read_state()?;
        let mut keys: Vec<SeriesKey> = match measurement {
            Some(m) => state
                .index
                .measurement(m)
                .iter()
                .filter_map(|id| state.index.entry(*id))
                .map(|e| e.key.clone())
                .collect(),
            None => state
                .index
                .entries()
                .iter()
                .map(|e| e.key.clone())
                .collect(),
        };
        keys.sort();
        Ok(keys)
    }

    /// Deletes every value older than `cutoff_ns` and refuses later writes older than it.
    /// Returns how many stored values were removed.
    pub fn delete_before(&self, cutoff_ns: i64) -> Result<u64, TsdbError> {
        let _writer = self.lock_writer()?;
        let mut state = self.write_state()?;
        if cutoff_ns <= state.index.cutoff_ns {
            return Ok(0);
        }
        state.index.cutoff_ns = cutoff_ns;
        state.index.save(&self.dir)?;
        Ok(state.mem.delete_before(cutoff_ns))
    }

    /// Makes everything written so far part of the durable files other than the WAL.
    pub fn flush(&self) -> Result<(), TsdbError> {
        let mut writer = self.lock_writer()?;
        self.flush_locked(&mut writer)
    }

    /// Size figures; the byte count is read from the file system.
    pub fn stats(&self) -> TsdbStats {
        let (series, points) = match self.state.read() {
            Ok(s) => (s.index.len() as u64, s.mem.points()),
            Err(_) => (0, 0),
        };
        let wal = self
            .writer
            .lock()
            .map(|w| w.wal.bytes_on_disk())
            .unwrap_or(0);
        let idx = fs::metadata(self.dir.join(crate::index::FILE_NAME))
            .map(|m| m.len())
            .unwrap_or(0);
        TsdbStats {
            series,
            points,
            bytes_on_disk: wal + idx,
        }
    }

    fn flush_locked(&self, _writer: &mut MutexGuard<'_, Writer>) -> Result<(), TsdbError> {
        let mut state = self.write_state()?;
        if state.index.dirty {
            state.index.save(&self.dir)?;
        }
        Ok(())
    }

    fn lock_writer(&self) -> Result<MutexGuard<'_, Writer>, TsdbError> {
        self.writer.lock().map_err(|_| TsdbError::Poisoned)
    }

    fn read_state(&self) -> Result<RwLockReadGuard<'_, State>, TsdbError> {
        self.state.read().map_err(|_| TsdbError::Poisoned)
    }

    fn write_state(&self) -> Result<RwLockWriteGuard<'_, State>, TsdbError> {
        self.state.write().map_err(|_| TsdbError::Poisoned)
    }
}

/// Checks a validated batch against the retention cutoff and the recorded field types, and
/// against itself (two new points may disagree on a field's type).
fn check_batch(index: &SeriesIndex, points: &[Point]) -> Result<(), TsdbError> {
    let mut new_types: HashMap<(SeriesKey, &str), FieldType> = HashMap::new();
    for p in points {
        if p.timestamp_ns < index.cutoff_ns {
            return Err(TsdbError::BeforeRetention {
                timestamp_ns: p.timestamp_ns,
                cutoff_ns: index.cutoff_ns,
            });
        }
        let key = SeriesKey {
            measurement: p.measurement.clone(),
            tags: p.tags.clone(),
        };
        let known = index.get(&key).and_then(|id| index.entry(id));
        for (name, value) in &p.fields {
            let new = value.field_type();
            let existing = match known.and_then(|e| e.fields.get(name)) {
                Some(t) => *t,
                None => *new_types.entry((key.clone(), name.as_str())).or_insert(new),
            };
            if existing != new {
                return Err(TsdbError::FieldTypeConflict {
                    measurement: p.measurement.clone(),
                    field: name.clone(),
                    existing,
                    new,
                });
            }
        }
    }
    Ok(())
}

/// Puts a batch (checked, or replayed from the WAL) into the index and the memtable.
fn apply(index: &mut SeriesIndex, mem: &mut Memtable, points: &[Point]) {
    let mut last: Option<(&str, &BTreeMap<String, String>, SeriesId)> = None;
    for p in points {
        if p.timestamp_ns < index.cutoff_ns {
            continue;
        }
        let id = match last {
            Some((m, t, id)) if m == p.measurement && *t == p.tags => id,
            _ => index.get_or_insert(&SeriesKey {
                measurement: p.measurement.clone(),
                tags: p.tags.clone(),
            }),
        };
        last = Some((&p.measurement, &p.tags, id));
        for (name, value) in &p.fields {
            if let Err(existing) = index.set_field_type(id, name, value.field_type()) {
                // Only reachable if the WAL holds a batch that was never checked.
                tracing::warn!(measurement = %p.measurement, field = %name, %existing, "skipping value of conflicting type");
                continue;
            }
            mem.insert(id, name, p.timestamp_ns, value.clone());
        }
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
