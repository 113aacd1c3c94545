//! The log store: one tantivy index in a directory, holding every team's records.
//!
//! Owns the schema ([`schema`]), writing (called by the pipeline's writer thread), search,
//! tail and retention. Every call here is synchronous and may take milliseconds to seconds:
//! it must never run on a tokio worker (use `spawn_blocking` or the pipeline). A search with a
//! team always carries a mandatory `team:` clause added here, whatever the query text says;
//! only `team: None` (an admin) searches across teams.
//!
//! Timestamps are nanoseconds since the Unix epoch (`i64`). Retention counts from the receive
//! time, so a sender with a wrong clock can neither make its messages vanish early nor keep
//! them forever.

mod build;
pub mod schema;

use std::collections::BTreeMap;
use std::ops::Bound;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering as AtomicOrdering};
use std::sync::Mutex;
use std::time::Duration;

use peng_core::TeamName;
use tantivy::collector::{Count, TopDocs};
use tantivy::query::{BooleanQuery, Occur, Query, RangeQuery, TermQuery};
use tantivy::schema::{IndexRecordOption, OwnedValue, Value};
use tantivy::{
    DocAddress, Index, IndexReader, IndexWriter, Order, ReloadPolicy, Searcher, TantivyDocument,
    Term,
};

use crate::record::{FieldValue, LogRecord, LogSource};
use crate::LogError;
use schema::Fields;

/// The most hits one search returns.
pub const MAX_LIMIT: usize = 10_000;

/// What to search for. The query language is described in [`crate::query`].
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SearchRequest {
    /// `None` searches every team (admins only); `Some` is always enforced.
    pub team: Option<TeamName>,
    pub query: String,
    pub service: Option<String>,
    pub stage: Option<String>,
    /// Inclusive lower bound on the message timestamp, ns.
    pub since_ns: Option<i64>,
    /// Exclusive upper bound on the message timestamp, ns.
    pub until_ns: Option<i64>,
    /// Capped at [`MAX_LIMIT`].
    pub limit: usize,
}

#[derive(Debug, Clone, PartialEq)]
pub struct SearchResponse {
    /// Newest first.
    pub hits: Vec<LogRecord>,
    /// All matching records, not only those returned.
    pub total: usize,
}

#[derive(Debug, Clone, PartialEq)]
pub struct TailResponse {
    /// Oldest first, in the order they were written.
    pub hits: Vec<LogRecord>,
    /// Pass back as `after` to get what came next.
    pub cursor: u64,
}

/// Sizing of the index writer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoreOptions {
    /// Indexing threads of the writer.
    pub writer_threads: usize,
    /// Memory the writer may buffer before it flushes a segment, in bytes (all threads).
    pub writer_memory: usize,
}

impl Default for StoreOptions {
    fn default() -> Self {
        Self {
            writer_threads: 1,
            writer_memory: 64 * 1024 * 1024,
        }
    }
}

/// The tantivy index of all teams' logs.
pub struct LogStore {
    dir: std::path::PathBuf,
    index: Index,
    reader: IndexReader,
    writer: Mutex<IndexWriter>,
    fields: Fields,
    /// Next `seq` to hand out; only touched with `writer` locked.
    next_seq: AtomicU64,
    /// Highest `seq` known committed.
    committed_seq: AtomicU64,
    /// The WAL position just past the last batch added (see [`LogStore::add_through`]);
    /// every commit records it, so that replay starts where the index ends.
    wal_through: AtomicU64,
    /// What the last successful commit covered.
    committed_through: AtomicU64,
}

impl std::fmt::Debug for LogStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogStore").finish_non_exhaustive()
    }
}

impl LogStore {
    /// Opens the index in `dir`, creating the directory and the index when absent.
    pub fn open(dir: &Path) -> Result<LogStore, LogError> {
        Self::open_with(dir, StoreOptions::default())
    }

    pub fn open_with(dir: &Path, opts: StoreOptions) -> Result<LogStore, LogError> {
        std::fs::create_dir_all(dir)?;
        let version_file = dir.join("peng-logs-schema");
        match std::fs::read_to_string(&version_file) {
            Ok(v) if v.trim() == schema::SCHEMA_VERSION.to_string() => {}
            Ok(v) => {
                return Err(LogError::Directory(format!(
                    "{} holds log index format {}, this peng reads format {}",
                    dir.display(),
                    v.trim(),
                    schema::SCHEMA_VERSION
                )))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                std::fs::write(&version_file, format!("{}\n", schema::SCHEMA_VERSION))?;
            }
            Err(e) => return Err(e.into()),
        }
        let (schema, fields) = schema::build();
        let mmap = tantivy::directory::MmapDirectory::open(dir)
            .map_err(|e| LogError::Directory(format!("{}: {e}", dir.display())))?;
        let index = Index::open_or_create(mmap, schema)?;
        index
            .tokenizers()
            .register(schema::KEYWORD_TOKENIZER, schema::keyword_analyzer());
        index
            .fast_field_tokenizer()
            .register(schema::KEYWORD_TOKENIZER, schema::keyword_analyzer());
        let threads = opts.writer_threads.max(1);
        let memory = opts.writer_memory.max(threads * 16 * 1024 * 1024);
        let writer = index.writer_with_num_threads(threads, memory)?;
        let reader = index
            .reader_builder()
            .reload_policy(ReloadPolicy::Manual)
            .try_into()?;
        let store = LogStore {
            dir: dir.to_path_buf(),
            index,
            reader,
            writer: Mutex::new(writer),
            fields,
            next_seq: AtomicU64::new(1),
            committed_seq: AtomicU64::new(0),
            wal_through: AtomicU64::new(0),
            committed_through: AtomicU64::new(0),
        };
        let through = committed_wal_position(&store.index)?;
        store.wal_through.store(through, AtomicOrdering::Relaxed);
        store
            .committed_through
            .store(through, AtomicOrdering::Relaxed);
        let max = store.max_seq()?;
        store.next_seq.store(max + 1, AtomicOrdering::Relaxed);
        store.committed_seq.store(max, AtomicOrdering::Relaxed);
        Ok(store)
    }

    fn max_seq(&self) -> Result<u64, LogError> {
        let searcher = self.reader.searcher();
        let top = searcher.search(
            &tantivy::query::AllQuery,
            &TopDocs::with_limit(1).order_by_fast_field::<u64>("seq", Order::Desc),
        )?;
        Ok(top.first().map_or(0, |(s, _)| *s))
    }

    /// Buffers records in the writer; they become searchable (and durable) at the next
    /// [`LogStore::commit`].
    pub fn add(&self, records: &[LogRecord]) -> Result<(), LogError> {
        self.add_locked(&self.lock_writer(), records)
    }

    fn add_locked(&self, writer: &IndexWriter, records: &[LogRecord]) -> Result<(), LogError> {
        for r in records {
            let seq = self.next_seq.fetch_add(1, AtomicOrdering::Relaxed);
            writer.add_document(self.to_doc(r, seq))?;
        }
        Ok(())
    }

    /// [`LogStore::add`] for a batch read from the WAL, which ends at `wal_end`: the next
    /// commit records that the index covers the WAL up to there. Called by the pipeline's
    /// index thread, in WAL order.
    pub fn add_through(&self, records: &[LogRecord], wal_end: u64) -> Result<(), LogError> {
        // One lock for both, so that no commit (retention commits too) sees the documents
        // without their position or the other way round.
        let writer = self.lock_writer();
        self.add_locked(&writer, records)?;
        self.wal_through.store(wal_end, AtomicOrdering::Relaxed);
        Ok(())
    }

    /// The WAL position the index covers once its next commit succeeds (at open: what the
    /// last commit covered).
    pub fn wal_position(&self) -> u64 {
        self.wal_through.load(AtomicOrdering::Relaxed)
    }

    /// The WAL position the last successful commit covers.
    pub fn committed_wal_position(&self) -> u64 {
        self.committed_through.load(AtomicOrdering::Relaxed)
    }

    /// The index's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Makes everything added so far durable and searchable.
    pub fn commit(&self) -> Result<(), LogError> {
        let seq = {
            let mut writer = self.lock_writer();
            self.commit_writer(&mut writer)?;
            self.next_seq.load(AtomicOrdering::Relaxed) - 1
        };
        self.reader.reload()?;
        self.committed_seq.store(seq, AtomicOrdering::Relaxed);
        Ok(())
    }

    /// Every commit carries the WAL position its documents reach, in the same atomic step
    /// as its segments (tantivy's commit payload, kept in `meta.json`).
    fn commit_writer(&self, writer: &mut IndexWriter) -> Result<(), LogError> {
        let mut prepared = writer.prepare_commit()?;
        let through = self.wal_through.load(AtomicOrdering::Relaxed);
        prepared.set_payload(&format!("{{\"wal\":{through}}}"));
        prepared.commit()?;
        self.committed_through
            .store(through, AtomicOrdering::Relaxed);
        Ok(())
    }

    /// Drops what was added since the last commit (the WAL position goes back with it).
    pub fn rollback(&self) -> Result<(), LogError> {
        let mut writer = self.lock_writer();
        writer.rollback()?;
        let committed = self.committed_through.load(AtomicOrdering::Relaxed);
        self.wal_through.store(committed, AtomicOrdering::Relaxed);
        Ok(())
    }

    fn lock_writer(&self) -> std::sync::MutexGuard<'_, IndexWriter> {
        self.writer.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Records matching the request, newest first.
    pub fn search(&self, req: &SearchRequest) -> Result<SearchResponse, LogError> {
        let query = self.request_query(req, None)?;
        let searcher = self.reader.searcher();
        let limit = req.limit.min(MAX_LIMIT);
        if limit == 0 {
            let total = searcher.search(&query, &Count)?;
            return Ok(SearchResponse {
                hits: Vec::new(),
                total,
            });
        }
        let top = TopDocs::with_limit(limit).order_by_fast_field::<i64>("timestamp", Order::Desc);
        let (docs, total) = searcher.search(&query, &(top, Count))?;
        let hits = self.load(&searcher, docs.into_iter().map(|(_, a)| a))?;
        Ok(SearchResponse { hits, total })
    }

    /// For following: with `after: None` the newest `limit` records, else up to `limit` records
    /// written after the cursor, both oldest first. No record is skipped or repeated between
    /// calls that pass the returned cursor back.
    pub fn tail(&self, req: &SearchRequest, after: Option<u64>) -> Result<TailResponse, LogError> {
        let query = self.request_query(req, after)?;
        let searcher = self.reader.searcher();
        let committed = self.committed_seq.load(AtomicOrdering::Relaxed);
        let limit = req.limit.clamp(1, MAX_LIMIT);
        let order = if after.is_some() {
            Order::Asc
        } else {
            Order::Desc
        };
        let mut docs = searcher.search(
            &query,
            &TopDocs::with_limit(limit).order_by_fast_field::<u64>("seq", order),
        )?;
        if after.is_none() {
            docs.reverse();
        }
        let cursor = match docs.last() {
            Some((seq, _)) => *seq,
            None => after.unwrap_or(committed),
        };
        let hits = self.load(&searcher, docs.into_iter().map(|(_, a)| a))?;
        Ok(TailResponse { hits, cursor })
    }

    /// Deletes records received longer ago than their service's retention: each
    /// `(team, service, retention)` in `policies`, and `default` for every other service.
    /// Returns how many records were deleted.
    pub fn apply_retention(
        &self,
        policies: &[(TeamName, String, Duration)],
        default: Duration,
        now_ns: i64,
    ) -> Result<u64, LogError> {
        let f = &self.fields;
        let older_than = |d: Duration| -> Box<dyn Query> {
            let cutoff = now_ns.saturating_sub(i64::try_from(d.as_nanos()).unwrap_or(i64::MAX));
            Box::new(RangeQuery::new(
                Bound::Unbounded,
                Bound::Excluded(Term::from_field_i64(f.received, cutoff)),
            ))
        };
        let mut queries: Vec<Box<dyn Query>> = Vec::new();
        let mut declared: Vec<(Occur, Box<dyn Query>)> = Vec::new();
        for (team, service, keep) in policies {
            let this_service = || -> Box<dyn Query> {
                Box::new(BooleanQuery::new(vec![
                    (Occur::Must, self.raw_term(f.team, team.as_str())),
                    (Occur::Must, self.raw_term(f.service, service)),
                ]))
            };
            queries.push(Box::new(BooleanQuery::new(vec![
                (Occur::Must, this_service()),
                (Occur::Must, older_than(*keep)),
            ])));
            declared.push((Occur::MustNot, this_service()));
        }
        let mut rest = vec![(Occur::Must, older_than(default))];
        rest.extend(declared);
        queries.push(Box::new(BooleanQuery::new(rest)));

        let searcher = self.reader.searcher();
        let mut deleted = 0u64;
        for q in &queries {
            deleted += searcher.search(q.as_ref(), &Count)? as u64;
        }
        if deleted == 0 {
            return Ok(0);
        }
        {
            let mut writer = self.lock_writer();
            for q in queries {
                writer.delete_query(q)?;
            }
            self.commit_writer(&mut writer)?;
        }
        self.reader.reload()?;
        Ok(deleted)
    }

    /// Records in the index now (committed), all teams.
    pub fn count(&self) -> usize {
        self.reader.searcher().num_docs() as usize
    }

    /// Committed records of one team (deleted ones not counted). Cost reporting shares the
    /// index's disk among teams by this.
    pub fn count_team(&self, team: &TeamName) -> Result<usize, LogError> {
        let query = self.raw_term(self.fields.team, team.as_str());
        Ok(self.reader.searcher().search(&query, &Count)?)
    }

    /// Bytes the index takes on disk.
    pub fn disk_bytes(&self) -> u64 {
        fn walk(dir: &Path) -> u64 {
            let Ok(entries) = std::fs::read_dir(dir) else {
                return 0;
            };
            entries
                .flatten()
                .map(|e| match e.metadata() {
                    Ok(m) if m.is_dir() => walk(&e.path()),
                    Ok(m) => m.len(),
                    Err(_) => 0,
                })
                .sum()
        }
        walk(&self.dir)
    }

    fn raw_term(&self, field: tantivy::schema::Field, value: &str) -> Box<dyn Query> {
        Box::new(TermQuery::new(
            Term::from_field_text(field, value),
            IndexRecordOption::Basic,
        ))
    }

    fn request_query(
        &self,
        req: &SearchRequest,
        after_seq: Option<u64>,
    ) -> Result<Box<dyn Query>, LogError> {
        let node = crate::query::parse(&req.query)?;
        let f = &self.fields;
        let tokenizers = self.index.tokenizers();
        let (Some(text), Some(keyword)) = (
            tokenizers.get("default"),
            tokenizers.get(schema::KEYWORD_TOKENIZER),
        ) else {
            return Err(LogError::Directory("log index tokenizers missing".into()));
        };
        let user = build::Builder {
            fields: f,
            text,
            keyword,
        }
        .build(&node)?;
        let mut clauses: Vec<(Occur, Box<dyn Query>)> = vec![(Occur::Must, user)];
        if let Some(team) = &req.team {
            clauses.push((Occur::Must, self.raw_term(f.team, team.as_str())));
        }
        if let Some(service) = &req.service {
            clauses.push((Occur::Must, self.raw_term(f.service, service)));
        }
        if let Some(stage) = &req.stage {
            clauses.push((Occur::Must, self.raw_term(f.stage, stage)));
        }
        if req.since_ns.is_some() || req.until_ns.is_some() {
            let lower = req.since_ns.map_or(Bound::Unbounded, |v| {
                Bound::Included(Term::from_field_i64(f.timestamp, v))
            });
            let upper = req.until_ns.map_or(Bound::Unbounded, |v| {
                Bound::Excluded(Term::from_field_i64(f.timestamp, v))
            });
            clauses.push((Occur::Must, Box::new(RangeQuery::new(lower, upper))));
        }
        if let Some(after) = after_seq {
            clauses.push((
                Occur::Must,
                Box::new(RangeQuery::new(
                    Bound::Excluded(Term::from_field_u64(f.seq, after)),
                    Bound::Unbounded,
                )),
            ));
        }
        Ok(Box::new(BooleanQuery::new(clauses)))
    }

    fn to_doc(&self, r: &LogRecord, seq: u64) -> TantivyDocument {
        let f = &self.fields;
        let mut doc = TantivyDocument::new();
        doc.add_i64(f.timestamp, r.timestamp_ns);
        doc.add_i64(f.received, r.received_ns);
        doc.add_u64(f.seq, seq);
        doc.add_text(f.team, r.team.as_str());
        doc.add_text(f.service, &r.service);
        doc.add_text(f.stage, &r.stage);
        doc.add_text(f.instance, &r.instance);
        doc.add_text(f.source, r.source.as_str());
        doc.add_text(f.host, &r.host);
        doc.add_u64(f.level, u64::from(r.level));
        doc.add_text(f.message, &r.message);
        let optional = [
            ("service", r.service.is_empty()),
            ("stage", r.stage.is_empty()),
            ("instance", r.instance.is_empty()),
            ("host", r.host.is_empty()),
        ];
        for (name, empty) in optional {
            if !empty {
                doc.add_text(f.present, name);
            }
        }
        if let Some(full) = &r.full_message {
            doc.add_text(f.full_message, full);
            doc.add_text(f.present, "full_message");
        }
        if !r.fields.is_empty() {
            let mut obj = BTreeMap::new();
            for (k, v) in &r.fields {
                doc.add_text(f.present, k);
                let v = match v {
                    FieldValue::Str(s) => OwnedValue::Str(s.clone()),
                    FieldValue::I64(i) => OwnedValue::I64(*i),
                    FieldValue::F64(x) => OwnedValue::F64(*x),
                    FieldValue::Bool(b) => OwnedValue::Bool(*b),
                };
                obj.insert(k.clone(), v);
            }
            doc.add_object(f.fields, obj);
        }
        doc
    }

    fn load(
        &self,
        searcher: &Searcher,
        addrs: impl Iterator<Item = DocAddress>,
    ) -> Result<Vec<LogRecord>, LogError> {
        let mut out = Vec::new();
        for addr in addrs {
            let doc: TantivyDocument = searcher.doc(addr)?;
            if let Some(r) = self.read_doc(&doc) {
                out.push(r);
            }
        }
        Ok(out)
    }

    fn read_doc(&self, doc: &TantivyDocument) -> Option<LogRecord> {
        let f = &self.fields;
        let text = |field| {
            doc.get_first(field)
                .and_then(|v| v.as_str().map(str::to_string))
        };
        let mut fields = BTreeMap::new();
        if let Some(obj) = doc.get_first(f.fields).and_then(|v| v.as_object()) {
            for (k, v) in obj {
                let value = if let Some(s) = v.as_str() {
                    FieldValue::Str(s.to_string())
                } else if let Some(i) = v.as_i64() {
                    FieldValue::I64(i)
                } else if let Some(u) = v.as_u64() {
                    i64::try_from(u).map_or(FieldValue::F64(u as f64), FieldValue::I64)
                } else if let Some(x) = v.as_f64() {
                    FieldValue::F64(x)
                } else if let Some(b) = v.as_bool() {
                    FieldValue::Bool(b)
                } else {
                    continue;
                };
                fields.insert(k.to_string(), value);
            }
        }
        Some(LogRecord {
            timestamp_ns: doc.get_first(f.timestamp)?.as_i64()?,
            received_ns: doc.get_first(f.received)?.as_i64()?,
            team: TeamName::parse(&text(f.team)?).ok()?,
            service: text(f.service).unwrap_or_default(),
            stage: text(f.stage).unwrap_or_default(),
            instance: text(f.instance).unwrap_or_default(),
            source: LogSource::parse(&text(f.source)?)?,
            host: text(f.host).unwrap_or_default(),
            level: u8::try_from(doc.get_first(f.level)?.as_u64()?).ok()?,
            message: text(f.message).unwrap_or_default(),
            full_message: text(f.full_message),
            fields,
        })
    }
}

/// The WAL position the last commit of `index` covers; 0 for an index committed without one.
fn committed_wal_position(index: &Index) -> Result<u64, LogError> {
    let metas = index.load_metas()?;
    let Some(payload) = metas.payload else {
        return Ok(0);
    };
    let value: serde_json::Value = serde_json::from_str(&payload)
        .map_err(|e| LogError::Directory(format!("the index's commit payload: {e}")))?;
    value["wal"].as_u64().ok_or_else(|| {
        LogError::Directory(format!(
            "the index's commit payload names no WAL position: {payload}"
        ))
    })
}
