//! One tantivy index of the store: a day of received records (layout version 3, in
//! `v3/YYYY-MM-DD/`). Older layouts are migrated when the store opens (`migrate.rs`).
//!
//! A partition keeps what lets a search pass it by without opening a searcher on it: the
//! smallest and largest message timestamp and the largest `seq` it holds (committed), read from
//! its fast columns at every reload. Its writer is opened when it is first written or pruned,
//! and closed again when the day is over.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};

use tantivy::index::IndexSettings;
use tantivy::merge_policy::LogMergePolicy;
use tantivy::store::{Compressor, ZstdCompressor};
use tantivy::{Index, IndexReader, IndexWriter, ReloadPolicy};

use super::doc::RecordDoc;
use super::schema::{self, Fields};
use super::StoreOptions;
use crate::LogError;

const NS_PER_DAY: i64 = 86_400_000_000_000;
/// The file that names a directory's index layout.
pub(crate) const LAYOUT_FILE: &str = "peng-logs-schema";

pub(crate) struct Partition {
    /// `YYYY-MM-DD` of received time.
    pub name: String,
    /// Days since the epoch (UTC) of received time.
    pub day: i64,
    pub dir: PathBuf,
    pub index: Index,
    pub reader: IndexReader,
    pub fields: Fields,
    writer: Mutex<Option<IndexWriter<RecordDoc>>>,
    opts: StoreOptions,
    /// The WAL position just past the last batch added here.
    wal_through: AtomicU64,
    /// What its last commit covered.
    committed_through: AtomicU64,
    dirty: AtomicBool,
    ts_min: AtomicI64,
    ts_max: AtomicI64,
    max_seq: AtomicU64,
}

/// The day (days since the epoch, UTC) a time in ns falls on.
pub(crate) fn day_of(ns: i64) -> i64 {
    ns.div_euclid(NS_PER_DAY)
}

/// `YYYY-MM-DD` of a day since the epoch.
pub(crate) fn day_name(day: i64) -> String {
    let (y, m, d) = peng_core::calendar::civil_from_days(day);
    format!("{y:04}-{m:02}-{d:02}")
}

/// The day a partition directory's name says, when it is one.
pub(crate) fn day_of_name(name: &str) -> Option<i64> {
    let mut it = name.splitn(3, '-');
    let (y, m, d) = (it.next()?, it.next()?, it.next()?);
    if y.len() != 4 || m.len() != 2 || d.len() != 2 {
        return None;
    }
    let (y, m, d): (i64, u32, u32) = (y.parse().ok()?, m.parse().ok()?, d.parse().ok()?);
    let day = peng_core::calendar::days_from_civil(y, m, d);
    (day_name(day) == name).then_some(day)
}

fn register_tokenizers(index: &Index) {
    index
        .tokenizers()
        .register(schema::KEYWORD_TOKENIZER, schema::keyword_analyzer());
    index
        .fast_field_tokenizer()
        .register(schema::KEYWORD_TOKENIZER, schema::keyword_analyzer());
}

fn read_layout(dir: &Path) -> Result<Option<u32>, LogError> {
    match std::fs::read_to_string(dir.join(LAYOUT_FILE)) {
        Ok(v) => v.trim().parse().map(Some).map_err(|_| {
            LogError::Directory(format!(
                "{}: '{}' is not an index layout version",
                dir.join(LAYOUT_FILE).display(),
                v.trim()
            ))
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e.into()),
    }
}

impl Partition {
    /// The day partition in `dir`, created when absent.
    pub fn open_day(dir: &Path, day: i64, opts: StoreOptions) -> Result<Partition, LogError> {
        std::fs::create_dir_all(dir)?;
        let (schema, fields) = schema::v2();
        let index = match read_layout(dir)? {
            Some(schema::SCHEMA_V3) => Index::open_in_dir(dir)?,
            Some(v) => {
                return Err(LogError::Directory(format!(
                    "{} holds log index layout {v}, a time partition has layout {}",
                    dir.display(),
                    schema::SCHEMA_V3
                )))
            }
            None => {
                // A directory left by a crash before its layout file was written is empty of
                // anything committed: it starts over.
                let settings = IndexSettings {
                    docstore_compression: Compressor::Zstd(ZstdCompressor {
                        compression_level: Some(3),
                    }),
                    docstore_blocksize: 64 * 1024,
                    ..Default::default()
                };
                for e in std::fs::read_dir(dir)? {
                    let p = e?.path();
                    if p.is_dir() {
                        std::fs::remove_dir_all(&p)?;
                    } else {
                        std::fs::remove_file(&p)?;
                    }
                }
                let index = Index::builder()
                    .schema(schema)
                    .settings(settings)
                    .create_in_dir(dir)?;
                std::fs::write(dir.join(LAYOUT_FILE), format!("{}\n", schema::SCHEMA_V3))?;
                index
            }
        };
        Self::from_index(dir, day_name(day), day, index, fields, opts)
    }

    fn from_index(
        dir: &Path,
        name: String,
        day: i64,
        index: Index,
        fields: Fields,
        opts: StoreOptions,
    ) -> Result<Partition, LogError> {
        register_tokenizers(&index);
        let reader = index
            .reader_builder()
            .reload_policy(ReloadPolicy::Manual)
            .try_into()?;
        let committed = super::committed_wal_position(&index)?;
        let p = Partition {
            name,
            day,
            dir: dir.to_path_buf(),
            index,
            reader,
            fields,
            writer: Mutex::new(None),
            opts,
            wal_through: AtomicU64::new(committed),
            committed_through: AtomicU64::new(committed),
            dirty: AtomicBool::new(false),
            ts_min: AtomicI64::new(i64::MAX),
            ts_max: AtomicI64::new(i64::MIN),
            max_seq: AtomicU64::new(0),
        };
        p.refresh_stats()?;
        Ok(p)
    }

    /// The writer, opened when needed.
    pub fn writer(&self) -> Result<MutexGuard<'_, Option<IndexWriter<RecordDoc>>>, LogError> {
        let mut guard = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        if guard.is_none() {
            let threads = self.opts.writer_threads.max(1);
            let memory = self.opts.writer_memory.max(threads * 16 * 1024 * 1024);
            let writer: IndexWriter<RecordDoc> =
                self.index.writer_with_num_threads(threads, memory)?;
            // Append-only: segments of similar size merge in larger steps, and the newest
            // small ones wait for company rather than being merged at every commit.
            let mut policy = LogMergePolicy::default();
            policy.set_min_num_segments(8);
            policy.set_max_docs_before_merge(5_000_000);
            writer.set_merge_policy(Box::new(policy));
            *guard = Some(writer);
        }
        Ok(guard)
    }

    /// Notes that documents up to WAL position `wal_end` were added (with the writer locked).
    pub fn added(&self, wal_end: u64) {
        self.wal_through.store(wal_end, Ordering::Relaxed);
        self.dirty.store(true, Ordering::Relaxed);
    }

    pub fn committed_through(&self) -> u64 {
        self.committed_through.load(Ordering::Relaxed)
    }

    pub fn is_dirty(&self) -> bool {
        self.dirty.load(Ordering::Relaxed)
    }

    /// Commits with the WAL position of what was added as its payload (with the writer
    /// locked, so no add slips between the documents and the position).
    pub fn commit_locked(&self, writer: &mut IndexWriter<RecordDoc>) -> Result<(), LogError> {
        let through = self.wal_through.load(Ordering::Relaxed);
        let mut prepared = writer.prepare_commit()?;
        prepared.set_payload(&format!("{{\"wal\":{through}}}"));
        prepared.commit()?;
        self.committed_through.store(through, Ordering::Relaxed);
        self.dirty.store(false, Ordering::Relaxed);
        Ok(())
    }

    /// Commits what was added, if anything, and makes it searchable.
    pub fn commit(&self) -> Result<(), LogError> {
        if !self.is_dirty() {
            return Ok(());
        }
        {
            let mut guard = self.writer()?;
            if let Some(w) = guard.as_mut() {
                self.commit_locked(w)?;
            }
        }
        self.reload()
    }

    /// Drops what was added since the last commit.
    pub fn rollback(&self) -> Result<(), LogError> {
        let mut guard = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(w) = guard.as_mut() {
            w.rollback()?;
        }
        self.wal_through
            .store(self.committed_through(), Ordering::Relaxed);
        self.dirty.store(false, Ordering::Relaxed);
        Ok(())
    }

    /// Closes the writer (its memory and threads) when nothing waits for a commit.
    pub fn close_writer(&self) {
        if self.is_dirty() {
            return;
        }
        let mut guard = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(w) = guard.take() {
            if let Err(error) = w.wait_merging_threads() {
                tracing::warn!(partition = %self.name, %error, "log partition's merges ended with an error");
            }
        }
    }

    pub fn reload(&self) -> Result<(), LogError> {
        self.reader.reload()?;
        self.refresh_stats()
    }

    fn refresh_stats(&self) -> Result<(), LogError> {
        let searcher = self.reader.searcher();
        let (mut lo, mut hi, mut seq) = (i64::MAX, i64::MIN, 0u64);
        for seg in searcher.segment_readers() {
            if seg.num_docs() == 0 {
                continue;
            }
            let ff = seg.fast_fields();
            if let Ok(ts) = ff.i64("timestamp") {
                lo = lo.min(ts.min_value());
                hi = hi.max(ts.max_value());
            }
            if let Ok(s) = ff.u64("seq") {
                seq = seq.max(s.max_value());
            }
        }
        self.ts_min.store(lo, Ordering::Relaxed);
        self.ts_max.store(hi, Ordering::Relaxed);
        self.max_seq.store(seq, Ordering::Relaxed);
        Ok(())
    }

    /// Whether committed records may fall in `[since, until)`.
    pub fn may_hold(&self, since: Option<i64>, until: Option<i64>) -> bool {
        let (lo, hi) = (
            self.ts_min.load(Ordering::Relaxed),
            self.ts_max.load(Ordering::Relaxed),
        );
        if lo > hi {
            return false; // empty
        }
        since.is_none_or(|s| hi >= s) && until.is_none_or(|u| lo < u)
    }

    pub fn max_seq(&self) -> u64 {
        self.max_seq.load(Ordering::Relaxed)
    }

    /// Number of committed records.
    pub fn num_docs(&self) -> u64 {
        self.reader.searcher().num_docs()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn day_names_round_trip_and_others_are_not_days() {
        for day in [-719_468, -1, 0, 1, 10_956, 20_422, 20_787, 2_932_896] {
            let name = day_name(day);
            assert_eq!(day_of_name(&name), Some(day), "{name}");
        }
        assert_eq!(day_name(0), "1970-01-01");
        assert_eq!(day_name(20_422), "2025-11-30");
        assert_eq!(day_of(-1), -1);
        assert_eq!(day_of(NS_PER_DAY), 1);
        for bad in [
            "v1",
            "2025-13-01",
            "2025-02-30",
            "2025-1-01",
            "wal",
            "20251130",
        ] {
            assert_eq!(day_of_name(bad), None, "{bad}");
        }
    }
}
