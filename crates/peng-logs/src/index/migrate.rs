//! Bringing a store of an older layout to the current one, once, when it is opened.
//!
//! Layouts 1 (one index in the store's directory) and 2 (day partitions in `v2/`) keep their
//! term dictionaries as FSTs, which cost a third of the CPU of indexing high-cardinality ids;
//! layout 3 (`v3/`) has the same columns with sstable dictionaries. tantivy reads only the
//! dictionary kind it was built with, so the old indexes cannot be searched any more; their
//! documents can still be read (the doc store and fast columns do not depend on the
//! dictionary), and are indexed again into day partitions of layout 3, each record with its
//! own `seq`.
//!
//! Crash safety: the new partitions are built in `migrating/`, which only a rename makes
//! `v3/`; the old indexes are removed after that. At open, a `migrating/` without `v3/` is an
//! interrupted migration and starts over; a `v3/` beside old indexes is a finished one whose
//! clean-up was cut short. Either way nothing is lost and nothing doubles.
//!
//! WAL positions carry over: a new day partition's commit covers the largest position any
//! index it took records from covered (the version 1 index, frozen before the day partitions
//! existed, covers less than any of them), so a replay afterwards skips exactly what it did
//! before.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use tantivy::schema::Schema;
use tantivy::{Index, TantivyDocument};

use super::partition::{self, Partition};
use super::schema::{self, Fields};
use super::StoreOptions;
use crate::LogError;

/// Where finished partitions of the current layout live.
pub(super) const CURRENT_DIR: &str = "v3";
const BUILD_DIR: &str = "migrating";
const V2_DIR: &str = "v2";

/// An index of an older layout.
struct Source {
    dir: PathBuf,
    schema: Schema,
    fields: Fields,
}

/// Migrates the store in `dir` to layout 3 when it holds older indexes; returns the number
/// of records moved.
pub(super) fn migrate(dir: &Path, opts: StoreOptions) -> Result<u64, LogError> {
    let sources = sources(dir)?;
    let current = dir.join(CURRENT_DIR);
    if current.exists() {
        if !sources.is_empty() || dir.join(BUILD_DIR).exists() {
            tracing::info!("removing the log indexes a finished migration left behind");
            remove_sources(dir)?;
        }
        return Ok(0);
    }
    if sources.is_empty() {
        return Ok(0);
    }
    let started = Instant::now();
    tracing::info!(
        indexes = sources.len(),
        "log store of an older layout: indexing its records again in layout {}",
        schema::SCHEMA_V3
    );
    let build = dir.join(BUILD_DIR);
    if build.exists() {
        std::fs::remove_dir_all(&build)?;
    }
    std::fs::create_dir_all(&build)?;
    let mut out = Target::new(&build, opts);
    for s in &sources {
        copy(s, &mut out)?;
    }
    let moved = out.finish()?;
    sync_dir(&build)?;
    std::fs::rename(&build, &current)?;
    sync_dir(dir)?;
    remove_sources(dir)?;
    tracing::info!(
        records = moved,
        seconds = started.elapsed().as_secs_f64(),
        "log store migrated to layout {}",
        schema::SCHEMA_V3
    );
    Ok(moved)
}

/// The older indexes in the store: the version 1 index in `dir` itself, then the layout 2
/// day partitions.
fn sources(dir: &Path) -> Result<Vec<Source>, LogError> {
    let mut out = Vec::new();
    if dir.join("meta.json").exists() {
        let (schema, fields) = schema::v1();
        out.push(Source {
            dir: dir.to_path_buf(),
            schema,
            fields,
        });
    }
    let v2 = dir.join(V2_DIR);
    if v2.is_dir() {
        let mut days = Vec::new();
        for e in std::fs::read_dir(&v2)? {
            let e = e?;
            let is_day = e
                .file_name()
                .to_str()
                .and_then(partition::day_of_name)
                .is_some();
            if is_day && e.path().join("meta.json").exists() {
                days.push(e.path());
            }
        }
        days.sort();
        for d in days {
            let (schema, fields) = schema::v2();
            out.push(Source {
                dir: d,
                schema,
                fields,
            });
        }
    }
    Ok(out)
}

/// Removes the older indexes and an unfinished build (never `v3/`, `wal/` or the layout file).
fn remove_sources(dir: &Path) -> Result<(), LogError> {
    for sub in [V2_DIR, BUILD_DIR] {
        let p = dir.join(sub);
        if p.exists() {
            std::fs::remove_dir_all(&p)?;
        }
    }
    // the version 1 index: the files of the store's own directory, but its layout file
    for e in std::fs::read_dir(dir)? {
        let path = e?.path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if path.is_file() && name != partition::LAYOUT_FILE {
            std::fs::remove_file(&path)?;
        }
    }
    Ok(())
}

fn sync_dir(dir: &Path) -> Result<(), LogError> {
    std::fs::File::open(dir)?.sync_all()?;
    Ok(())
}

/// Reads every live record of `s` (with its `seq`) into `out`.
fn copy(s: &Source, out: &mut Target) -> Result<(), LogError> {
    let mmap = tantivy::directory::MmapDirectory::open(&s.dir)
        .map_err(|e| LogError::Directory(format!("{}: {e}", s.dir.display())))?;
    let index = Index::open_or_create(mmap, s.schema.clone())?;
    let wal = super::committed_wal_position(&index)?;
    let reader = index.reader()?;
    let searcher = reader.searcher();
    let mut n = 0u64;
    for seg in searcher.segment_readers() {
        let seqs = seg.fast_fields().u64("seq")?;
        let store = seg.get_store_reader(16)?;
        for doc in seg.doc_ids_alive() {
            let d: TantivyDocument = store.get(doc)?;
            let Some(record) = super::read_doc(&s.fields, &d) else {
                return Err(LogError::Directory(format!(
                    "{}: document {doc} of segment {} is not a log record",
                    s.dir.display(),
                    seg.segment_id().uuid_string()
                )));
            };
            let seq = seqs.first(doc).unwrap_or(0);
            out.add(record, seq, wal)?;
            n += 1;
        }
    }
    tracing::info!(index = %s.dir.display(), records = n, "older log index read");
    Ok(())
}

/// The day partitions being built; one writer open at a time (records come mostly in day
/// order, and a writer per day of a long history would not fit in memory).
struct Target {
    dir: PathBuf,
    opts: StoreOptions,
    open: Option<(i64, Partition)>,
    /// Per day, the WAL position its commit covers.
    covers: BTreeMap<i64, u64>,
    moved: u64,
}

impl Target {
    fn new(dir: &Path, opts: StoreOptions) -> Target {
        Target {
            dir: dir.to_path_buf(),
            opts,
            open: None,
            covers: BTreeMap::new(),
            moved: 0,
        }
    }

    fn add(&mut self, r: crate::record::LogRecord, seq: u64, wal: u64) -> Result<(), LogError> {
        let day = partition::day_of(r.received_ns);
        if self.open.as_ref().is_some_and(|(d, _)| *d != day) {
            self.close()?;
        }
        if self.open.is_none() {
            let p = Partition::open_day(&self.dir.join(partition::day_name(day)), day, self.opts)?;
            self.open = Some((day, p));
        }
        let covers = self.covers.entry(day).or_insert(0);
        *covers = (*covers).max(wal);
        if let Some((_, p)) = &self.open {
            let guard = p.writer()?;
            if let Some(w) = guard.as_ref() {
                w.add_document(super::doc::RecordDoc::new(p.fields, r, seq))?;
            }
            p.added(*covers);
        }
        self.moved += 1;
        Ok(())
    }

    fn close(&mut self) -> Result<(), LogError> {
        if let Some((_, p)) = self.open.take() {
            p.commit()?;
            p.close_writer();
        }
        Ok(())
    }

    fn finish(mut self) -> Result<u64, LogError> {
        self.close()?;
        Ok(self.moved)
    }
}
