//! The log store: every team's records, in time partitions of one day (by received time), each
//! a tantivy index (`DIR/v3/YYYY-MM-DD/`, index layout [`schema::SCHEMA_V3`]). A store of an
//! older layout is migrated when it opens (`migrate.rs`).
//!
//! Owns the layouts ([`schema`]), writing (called by the pipeline's index thread), search,
//! tail and retention. A search passes by the partitions whose timestamps lie outside its time
//! range; `tail` follows the write order (`seq`) across partitions; retention drops a whole
//! partition once every service's retention has passed it, and deletes by query only for
//! services that keep less than the longest retention. Every call here is synchronous and may take milliseconds to seconds:
//! it must never run on a tokio worker (use `spawn_blocking` or the pipeline). A search with a
//! team always carries a mandatory `team:` clause added here, whatever the query text says;
//! only `team: None` (an admin) searches across teams.
//!
//! Timestamps are nanoseconds since the Unix epoch (`i64`). Retention counts from the receive
//! time, so a sender with a wrong clock can neither make its messages vanish early nor keep
//! them forever.

mod build;
mod doc;
mod migrate;
mod partition;
pub mod schema;

use std::collections::BTreeMap;
use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering as AtomicOrdering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use peng_core::TeamName;
use tantivy::collector::{Count, TopDocs};
use tantivy::query::{BooleanQuery, Occur, Query, RangeQuery, TermQuery};
use tantivy::schema::{IndexRecordOption, Value};
use tantivy::{DocAddress, Index, Order, Searcher, TantivyDocument, Term};

use partition::Partition;

use crate::record::{FieldValue, LogRecord, LogSource};
use crate::LogError;

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
            writer_threads: std::thread::available_parallelism()
                .map_or(1, |n| n.get())
                .clamp(1, 4),
            writer_memory: 64 * 1024 * 1024,
        }
    }
}

/// The layout of the store's directory: `v3/` day partitions. Layout 1 was one index in the
/// directory itself, layout 2 added `v2/` day partitions beside it.
const STORE_LAYOUT: u32 = 3;

/// Every team's logs.
pub struct LogStore {
    dir: PathBuf,
    opts: StoreOptions,
    /// By day.
    partitions: RwLock<BTreeMap<i64, Arc<Partition>>>,
    /// Next `seq` to hand out; only the index thread adds.
    next_seq: AtomicU64,
    /// Highest `seq` known committed.
    committed_seq: AtomicU64,
    /// The WAL position just past the last batch added (see [`LogStore::add_through`]).
    wal_through: AtomicU64,
    /// A WAL position every batch below which the partitions have committed.
    committed_through: AtomicU64,
    /// One commit round or pruning at a time.
    rounds: Mutex<()>,
}

impl std::fmt::Debug for LogStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogStore")
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

/// A hit before it is loaded: what it is ordered by, and where it is in the searcher that found
/// it (a reload in between may renumber the segments, so the same searcher loads it).
struct Found<K> {
    key: K,
    partition: Arc<Partition>,
    searcher: Searcher,
    addr: DocAddress,
}

impl LogStore {
    /// Opens the store in `dir`, creating the directory when absent.
    pub fn open(dir: &Path) -> Result<LogStore, LogError> {
        Self::open_with(dir, StoreOptions::default())
    }

    pub fn open_with(dir: &Path, opts: StoreOptions) -> Result<LogStore, LogError> {
        std::fs::create_dir_all(dir)?;
        let layout_file = dir.join(partition::LAYOUT_FILE);
        let layout = match std::fs::read_to_string(&layout_file) {
            Ok(v) => Some(v.trim().to_string()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(e.into()),
        };
        match layout.as_deref() {
            None | Some("1" | "2" | "3") => {}
            Some(other) => {
                return Err(LogError::Directory(format!(
                "{} holds log store layout {other}, this peng reads layouts 1 to {STORE_LAYOUT}",
                dir.display()
            )))
            }
        }
        migrate::migrate(dir, opts)?;
        let mut partitions = BTreeMap::new();
        let current = dir.join(migrate::CURRENT_DIR);
        std::fs::create_dir_all(&current)?;
        for e in std::fs::read_dir(&current)? {
            let e = e?;
            let name = e.file_name();
            let Some(day) = name.to_str().and_then(partition::day_of_name) else {
                continue;
            };
            partitions.insert(day, Arc::new(Partition::open_day(&e.path(), day, opts)?));
        }
        if layout.as_deref() != Some("3") {
            std::fs::write(&layout_file, format!("{STORE_LAYOUT}\n"))?;
        }
        let max_seq = partitions.values().map(|p| p.max_seq()).max().unwrap_or(0);
        // Replay starts at the least any partition covers; each partition skips what it has.
        let committed = partitions
            .values()
            .map(|p| p.committed_through())
            .min()
            .unwrap_or(0);
        Ok(LogStore {
            dir: dir.to_path_buf(),
            opts,
            partitions: RwLock::new(partitions),
            next_seq: AtomicU64::new(max_seq + 1),
            committed_seq: AtomicU64::new(max_seq),
            wal_through: AtomicU64::new(committed),
            committed_through: AtomicU64::new(committed),
            rounds: Mutex::new(()),
        })
    }

    fn all(&self) -> Vec<Arc<Partition>> {
        self.partitions
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .cloned()
            .collect()
    }

    /// The partition of a day, opened or made when needed.
    fn day(&self, day: i64) -> Result<Arc<Partition>, LogError> {
        if let Some(p) = self
            .partitions
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(&day)
        {
            return Ok(p.clone());
        }
        let mut map = self.partitions.write().unwrap_or_else(|p| p.into_inner());
        if let Some(p) = map.get(&day) {
            return Ok(p.clone());
        }
        let dir = self
            .dir
            .join(migrate::CURRENT_DIR)
            .join(partition::day_name(day));
        let p = Arc::new(Partition::open_day(&dir, day, self.opts)?);
        map.insert(day, p.clone());
        Ok(p)
    }

    /// Buffers records; they become searchable (and durable) at the next
    /// [`LogStore::commit`].
    pub fn add(&self, records: &[LogRecord]) -> Result<(), LogError> {
        let through = self.wal_through.load(AtomicOrdering::Relaxed);
        self.add_inner(records.to_vec(), through, false)
    }

    /// Adds a batch read from the WAL, which ends at `wal_end`, each record to the partition of
    /// the day it was received; a partition whose last commit covers `wal_end` has the batch
    /// already (a replay after a crash) and skips it. Called by the pipeline's index thread, in
    /// WAL order.
    pub fn add_through(&self, records: Vec<LogRecord>, wal_end: u64) -> Result<(), LogError> {
        self.add_inner(records, wal_end, true)
    }

    fn add_inner(
        &self,
        records: Vec<LogRecord>,
        wal_end: u64,
        from_wal: bool,
    ) -> Result<(), LogError> {
        let mut records = records.into_iter().peekable();
        while let Some(first) = records.next() {
            let day = partition::day_of(first.received_ns);
            let p = self.day(day)?;
            // a batch with nothing new for this partition: its last commit covers it
            let covered = from_wal && p.committed_through() >= wal_end;
            let guard = if covered { None } else { Some(p.writer()?) };
            let mut next = Some(first);
            while let Some(r) = next.take() {
                if let Some(writer) = guard.as_ref().and_then(|g| g.as_ref()) {
                    let seq = self.next_seq.fetch_add(1, AtomicOrdering::Relaxed);
                    writer.add_document(doc::RecordDoc::new(p.fields, r, seq))?;
                }
                next = records.next_if(|r| partition::day_of(r.received_ns) == day);
            }
            drop(guard);
            if !covered {
                p.added(wal_end);
            }
        }
        self.wal_through.store(wal_end, AtomicOrdering::Relaxed);
        Ok(())
    }

    /// The WAL position the store covers once its next commit succeeds.
    pub fn wal_position(&self) -> u64 {
        self.wal_through.load(AtomicOrdering::Relaxed)
    }

    /// A WAL position below which every batch is committed.
    pub fn committed_wal_position(&self) -> u64 {
        self.committed_through.load(AtomicOrdering::Relaxed)
    }

    /// The store's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Makes everything added so far durable and searchable: every partition with something
    /// added commits, with the WAL position it covers. The writers of days that are over are
    /// closed afterwards.
    pub fn commit(&self) -> Result<(), LogError> {
        let _round = self.rounds.lock().unwrap_or_else(|p| p.into_inner());
        let through = self.wal_through.load(AtomicOrdering::Relaxed);
        let seq = self.next_seq.load(AtomicOrdering::Relaxed) - 1;
        let all = self.all();
        for p in &all {
            p.commit()?;
        }
        self.committed_through
            .store(through, AtomicOrdering::Relaxed);
        self.committed_seq.store(seq, AtomicOrdering::Relaxed);
        let newest = all.iter().map(|p| p.day).max();
        for p in &all {
            if Some(p.day) != newest {
                p.close_writer();
            }
        }
        Ok(())
    }

    /// Drops what was added since the last commit (the WAL position goes back with it).
    pub fn rollback(&self) -> Result<(), LogError> {
        for p in self.all() {
            p.rollback()?;
        }
        let committed = self.committed_through.load(AtomicOrdering::Relaxed);
        self.wal_through.store(committed, AtomicOrdering::Relaxed);
        Ok(())
    }

    /// The partitions a search over `[since, until)` must look at, newest first.
    fn in_range(&self, since: Option<i64>, until: Option<i64>) -> Vec<Arc<Partition>> {
        let mut out: Vec<_> = self
            .all()
            .into_iter()
            .filter(|p| p.may_hold(since, until))
            .collect();
        out.reverse();
        out
    }

    /// Records matching the request, newest first.
    pub fn search(&self, req: &SearchRequest) -> Result<SearchResponse, LogError> {
        let node = crate::query::parse(&req.query)?;
        let limit = req.limit.min(MAX_LIMIT);
        let mut total = 0usize;
        let mut found: Vec<Found<i64>> = Vec::new();
        for p in self.in_range(req.since_ns, req.until_ns) {
            let query = request_query(&p, &node, req, None)?;
            let searcher = p.reader.searcher();
            if limit == 0 {
                total += searcher.search(&query, &Count)?;
                continue;
            }
            let top =
                TopDocs::with_limit(limit).order_by_fast_field::<i64>("timestamp", Order::Desc);
            let (docs, n) = searcher.search(&query, &(top, Count))?;
            total += n;
            found.extend(docs.into_iter().map(|(key, addr)| Found {
                key,
                partition: p.clone(),
                searcher: searcher.clone(),
                addr,
            }));
        }
        found.sort_by_key(|f| std::cmp::Reverse(f.key));
        found.truncate(limit);
        Ok(SearchResponse {
            hits: load(found)?,
            total,
        })
    }

    /// For following: with `after: None` the newest `limit` records, else up to `limit` records
    /// written after the cursor, both oldest first. No record is skipped or repeated between
    /// calls that pass the returned cursor back.
    pub fn tail(&self, req: &SearchRequest, after: Option<u64>) -> Result<TailResponse, LogError> {
        let node = crate::query::parse(&req.query)?;
        let committed = self.committed_seq.load(AtomicOrdering::Relaxed);
        let limit = req.limit.clamp(1, MAX_LIMIT);
        let order = if after.is_some() {
            Order::Asc
        } else {
            Order::Desc
        };
        let mut found: Vec<Found<u64>> = Vec::new();
        for p in self.in_range(req.since_ns, req.until_ns) {
            if after.is_some_and(|a| p.max_seq() <= a) {
                continue;
            }
            let query = request_query(&p, &node, req, after)?;
            let searcher = p.reader.searcher();
            let docs = searcher.search(
                &query,
                &TopDocs::with_limit(limit).order_by_fast_field::<u64>("seq", order.clone()),
            )?;
            found.extend(docs.into_iter().map(|(key, addr)| Found {
                key,
                partition: p.clone(),
                searcher: searcher.clone(),
                addr,
            }));
        }
        found.sort_by_key(|f| f.key);
        if after.is_some() {
            found.truncate(limit);
        } else if found.len() > limit {
            found.drain(..found.len() - limit);
        }
        let cursor = match found.last() {
            Some(f) => f.key,
            None => after.unwrap_or(committed),
        };
        Ok(TailResponse {
            hits: load(found)?,
            cursor,
        })
    }

    /// Deletes records received longer ago than their service's retention: each
    /// `(team, service, retention)` in `policies`, and `default` for every other service.
    /// A day partition all of whose records are past every retention goes whole; in the others
    /// only services that keep less than that are deleted by query. Returns how many records
    /// were deleted.
    pub fn apply_retention(
        &self,
        policies: &[(TeamName, String, Duration)],
        default: Duration,
        now_ns: i64,
    ) -> Result<u64, LogError> {
        let _round = self.rounds.lock().unwrap_or_else(|p| p.into_inner());
        let ns = |d: &Duration| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX);
        let longest = policies
            .iter()
            .map(|(_, _, d)| ns(d))
            .chain([ns(&default)])
            .max()
            .unwrap_or(0);
        let shortest = policies
            .iter()
            .map(|(_, _, d)| ns(d))
            .chain([ns(&default)])
            .min()
            .unwrap_or(0);
        let mut deleted = 0u64;
        for p in self.all() {
            // a day ends at the start of the next
            let day_end = (p.day + 1).saturating_mul(86_400_000_000_000);
            if day_end <= now_ns.saturating_sub(longest) {
                deleted += p.num_docs();
                self.drop_partition(&p)?;
                continue;
            }
            let day_start = p.day.saturating_mul(86_400_000_000_000);
            if day_start >= now_ns.saturating_sub(shortest) {
                continue; // nothing in it is old enough for any retention
            }
            deleted += prune(&p, policies, default, now_ns)?;
        }
        Ok(deleted)
    }

    fn drop_partition(&self, p: &Arc<Partition>) -> Result<(), LogError> {
        self.partitions
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&p.day);
        p.close_writer();
        tracing::info!(partition = %p.name, "log partition past every retention dropped");
        std::fs::remove_dir_all(&p.dir)?;
        Ok(())
    }

    /// Records in the store now (committed), all teams.
    pub fn count(&self) -> usize {
        self.all().iter().map(|p| p.num_docs() as usize).sum()
    }

    /// Committed records of one team (deleted ones not counted). Cost reporting shares the
    /// store's disk among teams by this.
    pub fn count_team(&self, team: &TeamName) -> Result<usize, LogError> {
        let mut n = 0;
        for p in self.all() {
            let query = raw_term(p.fields.team, team.as_str());
            n += p.reader.searcher().search(&query, &Count)?;
        }
        Ok(n)
    }

    /// The number of time partitions.
    pub fn partitions(&self) -> usize {
        self.all().len()
    }

    /// Bytes the store takes on disk (its WAL included).
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
}

/// Deletes by query what `policies` and `default` say is past retention in one partition.
fn prune(
    p: &Partition,
    policies: &[(TeamName, String, Duration)],
    default: Duration,
    now_ns: i64,
) -> Result<u64, LogError> {
    let f = &p.fields;
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
                (Occur::Must, raw_term(f.team, team.as_str())),
                (Occur::Must, raw_term(f.service, service)),
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

    let searcher = p.reader.searcher();
    let mut deleted = 0u64;
    for q in &queries {
        deleted += searcher.search(q.as_ref(), &Count)? as u64;
    }
    if deleted == 0 {
        return Ok(0);
    }
    {
        let mut guard = p.writer()?;
        if let Some(writer) = guard.as_mut() {
            for q in queries {
                writer.delete_query(q)?;
            }
            p.commit_locked(writer)?;
        }
    }
    p.reload()?;
    Ok(deleted)
}

fn raw_term(field: tantivy::schema::Field, value: &str) -> Box<dyn Query> {
    Box::new(TermQuery::new(
        Term::from_field_text(field, value),
        IndexRecordOption::Basic,
    ))
}

fn request_query(
    p: &Partition,
    node: &crate::query::Node,
    req: &SearchRequest,
    after_seq: Option<u64>,
) -> Result<Box<dyn Query>, LogError> {
    let f = &p.fields;
    let tokenizers = p.index.tokenizers();
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
    .build(node)?;
    let mut clauses: Vec<(Occur, Box<dyn Query>)> = vec![(Occur::Must, user)];
    if let Some(team) = &req.team {
        clauses.push((Occur::Must, raw_term(f.team, team.as_str())));
    }
    if let Some(service) = &req.service {
        clauses.push((Occur::Must, raw_term(f.service, service)));
    }
    if let Some(stage) = &req.stage {
        clauses.push((Occur::Must, raw_term(f.stage, stage)));
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

/// The records of hits: the stored record, with its two times from the fast columns (layout
/// 3 stores them only there).
fn load<K>(found: Vec<Found<K>>) -> Result<Vec<LogRecord>, LogError> {
    let mut out = Vec::with_capacity(found.len());
    for f in found {
        let doc: TantivyDocument = f.searcher.doc(f.addr)?;
        let Some(mut r) = read_doc(&f.partition.fields, &doc) else {
            continue;
        };
        let columns = f.searcher.segment_reader(f.addr.segment_ord).fast_fields();
        let time = |name: &str| -> Result<i64, LogError> {
            columns.i64(name)?.first(f.addr.doc_id).ok_or_else(|| {
                LogError::Directory(format!(
                    "log partition {}: a record without its {name}",
                    f.partition.name
                ))
            })
        };
        r.timestamp_ns = time("timestamp")?;
        r.received_ns = time("received")?;
        out.push(r);
    }
    Ok(out)
}

fn read_doc(f: &schema::Fields, doc: &TantivyDocument) -> Option<LogRecord> {
    if let Some(field) = f.record {
        let bytes = doc.get_first(field)?.as_bytes()?;
        return crate::wal::codec::decode(bytes).ok()?.pop();
    }
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
