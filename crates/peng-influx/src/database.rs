//! One team database: raw values kept for the database's retention, and 5-minute rollups of
//! every numeric field kept for a retention of their own, usually longer.
//!
//! InfluxDB needs a continuous query and a second retention policy for that; here the rollup
//! is always there, as the retention policy `rollup_5m` beside `autogen`, and both durations
//! are settings of the database (`CREATE DATABASE … WITH DURATION`, `ALTER RETENTION POLICY`).
//!
//! A rollup row holds, per series, numeric field and 5-minute bucket, the partial aggregates
//! from which `mean`, `count`, `sum`, `min`, `max`, `first`, `last` and `spread` over any
//! multiple of 5 minutes are exact: count, sum, min, max, first and last. They are stored in a
//! store of their own (`DIR/rollup_5m/`) as fields named `FIELD\0count`, `FIELD\0sum`, ….
//!
//! Which buckets to roll up: every write marks the 5-minute buckets it touched. The upkeep
//! (once a minute) takes the marks, records them in `database.json` as pending, recomputes
//! those buckets from the raw values and clears them. Late and back-filled values are so
//! rolled up like timely ones; marks made less than a minute before an abrupt stop are lost.
//!
//! Layout: `DIR/` is the raw peng-tsdb store, `DIR/rollup_5m/` the rollup store and
//! `DIR/database.json` the settings and the pending buckets.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use peng_tsdb::{FieldValue, NameMap, Point, Query, SeriesData, SeriesKey, Tsdb, TsdbError};
use serde::{Deserialize, Serialize};

use crate::catalog::CatalogError;

/// The raw values' retention policy, as InfluxDB names the default one.
pub const RAW_POLICY: &str = "autogen";
/// The rollups' retention policy.
pub const ROLLUP_POLICY: &str = "rollup_5m";
/// The width of a rollup bucket.
pub const ROLLUP_EVERY_NS: i64 = 300_000_000_000;
/// Shortest retention a policy may have (InfluxDB's minimum too).
pub const MIN_RETENTION_NS: i64 = 3_600_000_000_000;
/// The partial aggregates a rollup row holds for each numeric field.
pub const PARTS: [&str; 6] = ["count", "sum", "min", "max", "first", "last"];

const META_FILE: &str = "database.json";
const ROLLUP_DIR: &str = "rollup_5m";
/// Series above which a rollup pass reads 5 minutes at a time instead of an hour.
const MANY_SERIES: u64 = 10_000;
/// Points per write into the rollup store.
const ROLLUP_BATCH: usize = 10_000;

/// How long a database keeps its values; 0 is forever (InfluxDB's `INF`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Retention {
    /// Raw values (`autogen`).
    pub raw_ns: i64,
    /// 5-minute rollups (`rollup_5m`).
    pub rollup_ns: i64,
    /// The shard group duration `SHOW RETENTION POLICIES` shows for `autogen`: as InfluxDB,
    /// derived from the duration the database was created with and kept (0: created without
    /// one). peng has no shards; this is for display only.
    #[serde(default)]
    pub raw_shard_ns: i64,
}

impl Retention {
    /// The shard group duration shown for `autogen`.
    pub fn raw_shard_group_ns(&self) -> i64 {
        match self.raw_shard_ns {
            0 => shard_group_ns(0),
            s => s,
        }
    }
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct Meta {
    #[serde(default)]
    retention: Retention,
    /// Starts of the buckets written to and not yet rolled up.
    #[serde(default)]
    pending: BTreeSet<i64>,
}

/// A retention duration is forever (0) or at least an hour.
pub fn check_duration(duration_ns: i64) -> Result<(), String> {
    if duration_ns != 0 && duration_ns < MIN_RETENTION_NS {
        return Err("retention policy duration must be at least 1h0m0s".into());
    }
    Ok(())
}

/// The name of the field holding one partial aggregate of `field` in the rollup store.
pub fn part_field(field: &str, part: &str) -> String {
    format!("{field}\0{part}")
}

/// The start of the rollup bucket holding `ts`.
pub fn bucket_of(ts: i64) -> i64 {
    ts - ts.rem_euclid(ROLLUP_EVERY_NS)
}

/// What was written to a database since the counts were last taken.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WriteCounts {
    /// Batches stored.
    pub batches: u64,
    /// Field values stored.
    pub values: u64,
    /// Bytes of line protocol of the batches stored (after decompression).
    pub bytes: u64,
    /// Batches refused (a bad line, a type conflict, older than the retention).
    pub refused: u64,
}

impl WriteCounts {
    pub fn is_empty(&self) -> bool {
        *self == WriteCounts::default()
    }
}

/// A team database. Cheap to share.
pub struct Database {
    raw: Arc<Tsdb>,
    rollup: Arc<Tsdb>,
    dir: PathBuf,
    meta: Mutex<Meta>,
    /// Buckets written to since the upkeep last took them.
    dirty: Mutex<BTreeSet<i64>>,
    counts: Mutex<WriteCounts>,
    cold: Mutex<Cold>,
}

/// When the database was last written, for [`Database::compact_if_cold`].
struct Cold {
    last_write: std::time::Instant,
    /// Compacted whole since the last write.
    compacted: bool,
}

impl Database {
    /// Opens (creating if needed) the database in `dir`.
    pub fn open(dir: &Path) -> Result<Database, CatalogError> {
        let raw = Arc::new(Tsdb::open(dir)?);
        let rollup = Arc::new(Tsdb::open(&dir.join(ROLLUP_DIR))?);
        let path = dir.join(META_FILE);
        let meta = match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| CatalogError::Io {
                context: "reading",
                path: path.clone(),
                source: std::io::Error::new(std::io::ErrorKind::InvalidData, e),
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Meta::default(),
            Err(source) => {
                return Err(CatalogError::Io {
                    context: "reading",
                    path,
                    source,
                })
            }
        };
        Ok(Database {
            raw,
            rollup,
            dir: dir.to_path_buf(),
            meta: Mutex::new(meta),
            dirty: Mutex::new(BTreeSet::new()),
            counts: Mutex::new(WriteCounts::default()),
            cold: Mutex::new(Cold {
                last_write: std::time::Instant::now(),
                compacted: false,
            }),
        })
    }

    /// The raw values.
    pub fn raw(&self) -> &Arc<Tsdb> {
        &self.raw
    }

    /// The rollup store (fields named by [`part_field`]).
    pub fn rollups(&self) -> &Arc<Tsdb> {
        &self.rollup
    }

    pub fn retention(&self) -> Retention {
        lock(&self.meta).retention
    }

    /// Stores a batch whole (see [`Tsdb::write`]) and marks its buckets for the rollup.
    pub fn write(&self, points: &[Point]) -> Result<(), TsdbError> {
        self.raw.write(points)?;
        let mut last = None;
        let mut marks = Vec::new();
        for p in points {
            let b = bucket_of(p.timestamp_ns);
            if last != Some(b) {
                marks.push(b);
                last = Some(b);
            }
        }
        lock(&self.dirty).extend(marks);
        let mut cold = lock(&self.cold);
        cold.last_write = std::time::Instant::now();
        cold.compacted = false;
        Ok(())
    }

    /// Compacts both stores whole ([`Tsdb::compact`]: one block file each, full blocks) once
    /// the database has not been written for `cold`, and then not again until it is written
    /// to: InfluxDB's `compact-full-write-cold-duration`. Merging by size tier after flushes
    /// keeps a database that is written to in few files; this makes a quiet one as small as
    /// its format allows. Returns whether it compacted.
    pub fn compact_if_cold(&self, cold: std::time::Duration) -> Result<bool, TsdbError> {
        let since = {
            let c = lock(&self.cold);
            if c.compacted || c.last_write.elapsed() < cold {
                return Ok(false);
            }
            c.last_write
        };
        self.raw.compact()?;
        self.rollup.compact()?;
        let mut c = lock(&self.cold);
        // A write during the compaction may have added a file: compact again once cold.
        if c.last_write == since {
            c.compacted = true;
        }
        Ok(true)
    }

    /// Counts a batch sent to this database: stored with `values` field values, or refused.
    pub fn count_write(&self, stored: Option<u64>, body_bytes: u64) {
        let mut c = lock(&self.counts);
        match stored {
            Some(values) => {
                c.batches += 1;
                c.values += values;
                c.bytes += body_bytes;
            }
            None => c.refused += 1,
        }
    }

    /// What was counted since the last call, and starts over.
    pub fn take_counts(&self) -> WriteCounts {
        std::mem::take(&mut *lock(&self.counts))
    }

    /// Sets the duration of one retention policy (0 = forever) and applies it at once.
    pub fn set_retention(&self, policy: &str, duration_ns: i64, now_ns: i64) -> Result<(), String> {
        self.set_duration(policy, duration_ns, now_ns, false)
    }

    /// The duration a new database was created with (`CREATE DATABASE … WITH DURATION`).
    pub fn init_retention(&self, duration_ns: i64, now_ns: i64) -> Result<(), String> {
        self.set_duration(RAW_POLICY, duration_ns, now_ns, true)
    }

    fn set_duration(
        &self,
        policy: &str,
        duration_ns: i64,
        now_ns: i64,
        creating: bool,
    ) -> Result<(), String> {
        check_duration(duration_ns)?;
        {
            let mut meta = lock(&self.meta);
            let mut retention = meta.retention;
            match policy {
                RAW_POLICY => {
                    retention.raw_ns = duration_ns;
                    if creating {
                        retention.raw_shard_ns = shard_group_ns(duration_ns);
                    }
                }
                ROLLUP_POLICY => retention.rollup_ns = duration_ns,
                other => return Err(format!("retention policy not found: {other}")),
            }
            if retention != meta.retention {
                let previous = meta.retention;
                meta.retention = retention;
                if let Err(e) = self.save(&meta) {
                    meta.retention = previous;
                    return Err(e.to_string());
                }
            }
        }
        self.apply_retention(now_ns)
            .map(drop)
            .map_err(|e| e.to_string())
    }

    /// Deletes raw values and rollups past their retention.
    pub fn apply_retention(&self, now_ns: i64) -> Result<u64, TsdbError> {
        let r = self.retention();
        let mut deleted = 0;
        if r.raw_ns > 0 {
            deleted += self.raw.delete_before(now_ns.saturating_sub(r.raw_ns))?;
        }
        if r.rollup_ns > 0 {
            deleted += self
                .rollup
                .delete_before(now_ns.saturating_sub(r.rollup_ns))?;
        }
        Ok(deleted)
    }

    /// The oldest time the raw values are complete from, with their retention; `None` when
    /// they are kept forever.
    pub fn raw_cutoff(&self, now_ns: i64) -> Option<i64> {
        let raw = self.retention().raw_ns;
        (raw > 0).then(|| now_ns.saturating_sub(raw))
    }

    /// Recomputes the rollups of the buckets written to, oldest first, for at most `budget`;
    /// what is left stays pending for the next call. Returns the buckets done.
    pub fn roll_up(&self, now_ns: i64, budget: Duration) -> Result<usize, CatalogError> {
        let started = Instant::now();
        let taken = std::mem::take(&mut *lock(&self.dirty));
        let cutoff = self.raw_cutoff(now_ns);
        let mut pending = {
            let mut meta = lock(&self.meta);
            let before = meta.pending.len();
            meta.pending.extend(taken);
            // Buckets the raw values no longer hold completely cannot be recomputed.
            if let Some(cutoff) = cutoff {
                meta.pending = meta.pending.split_off(&bucket_of(cutoff));
            }
            if meta.pending.len() != before {
                self.save(&meta)?;
            }
            meta.pending.clone()
        };
        let window = if self.raw.stats().series > MANY_SERIES {
            ROLLUP_EVERY_NS
        } else {
            12 * ROLLUP_EVERY_NS
        };
        let mut done = 0;
        while let Some(&lo) = pending.first() {
            if started.elapsed() > budget {
                break;
            }
            // A run of consecutive buckets, at most `window` long.
            let mut hi = lo + ROLLUP_EVERY_NS;
            let mut run = vec![lo];
            while hi - lo < window && pending.contains(&hi) {
                run.push(hi);
                hi += ROLLUP_EVERY_NS;
            }
            self.roll_range(lo, hi, now_ns)?;
            for b in &run {
                pending.remove(b);
            }
            done += run.len();
            let mut meta = lock(&self.meta);
            for b in &run {
                meta.pending.remove(b);
            }
        }
        // Saved once per pass: a bucket done again after an abrupt stop comes out the same.
        if done > 0 {
            self.save(&lock(&self.meta))?;
        }
        Ok(done)
    }

    /// Rolls up `[lo, hi)` (bucket-aligned) from the raw values.
    fn roll_range(&self, lo: i64, hi: i64, now_ns: i64) -> Result<(), TsdbError> {
        let keep_from = match self.retention().rollup_ns {
            0 => i64::MIN,
            r => now_ns.saturating_sub(r),
        };
        for measurement in self.raw.measurements()? {
            let data = self.raw.query(&Query {
                measurement,
                tag_filter: BTreeMap::new(),
                fields: None,
                start_ns: lo,
                end_ns: hi,
            })?;
            let mut rows: BTreeMap<(&SeriesKey, i64), NameMap<FieldValue>> = BTreeMap::new();
            for sd in &data {
                for (bucket, parts) in partials(sd) {
                    if bucket < keep_from {
                        continue;
                    }
                    let row = rows.entry((&sd.key, bucket)).or_default();
                    for (part, v) in PARTS.iter().zip(parts) {
                        row.insert(part_field(&sd.field, part).into(), v);
                    }
                }
            }
            let points: Vec<Point> = rows
                .into_iter()
                .map(|((key, bucket), fields)| Point {
                    measurement: key.measurement.as_str().into(),
                    tags: key
                        .tags
                        .iter()
                        .map(|(k, v)| (k.as_str().into(), v.as_str().into()))
                        .collect(),
                    fields,
                    timestamp_ns: bucket,
                })
                .collect();
            for chunk in points.chunks(ROLLUP_BATCH) {
                self.rollup.write(chunk)?;
            }
        }
        Ok(())
    }

    /// Moves both stores' write-ahead logs into blocks and merges their block files by size
    /// tier (a full compaction would rewrite a large database every time).
    pub fn maintain(&self) -> Result<(), TsdbError> {
        for store in [&self.raw, &self.rollup] {
            store.flush_and_merge()?;
        }
        Ok(())
    }

    fn save(&self, meta: &Meta) -> Result<(), CatalogError> {
        let path = self.dir.join(META_FILE);
        let io = |source| CatalogError::Io {
            context: "writing",
            path: path.clone(),
            source,
        };
        let bytes = serde_json::to_vec(meta).map_err(|e| io(std::io::Error::other(e)))?;
        let tmp = self.dir.join(format!("{META_FILE}.tmp"));
        {
            use std::io::Write;
            let mut f = std::fs::File::create(&tmp).map_err(io)?;
            f.write_all(&bytes).map_err(io)?;
            f.sync_data().map_err(io)?;
        }
        std::fs::rename(&tmp, &path).map_err(io)?;
        std::fs::File::open(&self.dir)
            .and_then(|d| d.sync_all())
            .map_err(io)
    }
}

/// Per 5-minute bucket of one series field: count, sum, min, max, first and last, in the
/// order of [`PARTS`]; nothing for booleans and strings.
pub fn partials(sd: &SeriesData) -> Vec<(i64, [FieldValue; 6])> {
    let mut out: Vec<(i64, [FieldValue; 6])> = Vec::new();
    let mut acc: Option<(i64, Acc)> = None;
    for (t, v) in &sd.points {
        let b = bucket_of(*t);
        match &mut acc {
            Some((bucket, a)) if *bucket == b => a.add(v),
            _ => {
                if let Some((bucket, a)) = acc.take() {
                    out.push((bucket, a.finish()));
                }
                acc = Acc::new(v).map(|a| (b, a));
            }
        }
    }
    if let Some((bucket, a)) = acc {
        out.push((bucket, a.finish()));
    }
    out
}

/// The partial aggregates of one raw value, as [`partials`] gives them for a bucket.
pub fn partial_of(v: &FieldValue, part: &str) -> Option<FieldValue> {
    let a = Acc::new(v)?;
    let parts = a.finish();
    PARTS
        .iter()
        .position(|p| *p == part)
        .and_then(|i| parts.get(i).cloned())
}

/// A bucket's aggregates in the field's own type (sums of integers saturate).
struct Acc {
    count: i64,
    sum: Num,
    min: Num,
    max: Num,
    first: Num,
    last: Num,
}

#[derive(Clone, Copy, PartialEq, PartialOrd)]
enum Num {
    F(f64),
    I(i64),
    U(u64),
}

impl Num {
    fn of(v: &FieldValue) -> Option<Num> {
        match v {
            FieldValue::Float(f) => Some(Num::F(*f)),
            FieldValue::Integer(i) => Some(Num::I(*i)),
            FieldValue::Unsigned(u) => Some(Num::U(*u)),
            FieldValue::Boolean(_) | FieldValue::String(_) => None,
        }
    }

    fn value(self) -> FieldValue {
        match self {
            Num::F(f) => FieldValue::Float(f),
            Num::I(i) => FieldValue::Integer(i),
            Num::U(u) => FieldValue::Unsigned(u),
        }
    }

    fn plus(self, other: Num) -> Num {
        match (self, other) {
            (Num::F(a), Num::F(b)) => Num::F(a + b),
            (Num::I(a), Num::I(b)) => Num::I(a.saturating_add(b)),
            (Num::U(a), Num::U(b)) => Num::U(a.saturating_add(b)),
            // A field keeps its type within a series: not reached.
            (a, _) => a,
        }
    }
}

impl Acc {
    fn new(v: &FieldValue) -> Option<Acc> {
        let n = Num::of(v)?;
        Some(Acc {
            count: 1,
            sum: n,
            min: n,
            max: n,
            first: n,
            last: n,
        })
    }

    fn add(&mut self, v: &FieldValue) {
        let Some(n) = Num::of(v) else { return };
        self.count += 1;
        self.sum = self.sum.plus(n);
        if n < self.min {
            self.min = n;
        }
        if n > self.max {
            self.max = n;
        }
        self.last = n;
    }

    fn finish(self) -> [FieldValue; 6] {
        [
            FieldValue::Integer(self.count),
            self.sum.value(),
            self.min.value(),
            self.max.value(),
            self.first.value(),
            self.last.value(),
        ]
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// A duration as Go prints it (`720h0m0s`, `0s`), as InfluxDB shows retention policies.
pub fn go_duration(ns: i64) -> String {
    if ns == 0 {
        return "0s".into();
    }
    let secs = ns / 1_000_000_000;
    let frac = ns % 1_000_000_000;
    let (h, m, s) = (secs / 3600, secs / 60 % 60, secs % 60);
    let s = if frac == 0 {
        s.to_string()
    } else {
        let f = format!("{:09}", frac);
        format!("{s}.{}", f.trim_end_matches('0'))
    };
    match (h, m) {
        (0, 0) => format!("{s}s"),
        (0, m) => format!("{m}m{s}s"),
        (h, m) => format!("{h}h{m}m{s}s"),
    }
}

/// The shard group duration InfluxDB derives from a retention duration (shown by `SHOW
/// RETENTION POLICIES`; peng has no shards).
pub fn shard_group_ns(duration_ns: i64) -> i64 {
    const DAY: i64 = 86_400_000_000_000;
    if duration_ns == 0 || duration_ns >= 180 * DAY {
        7 * DAY
    } else if duration_ns >= 2 * DAY {
        DAY
    } else {
        DAY / 24
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: i64 = 1_000_000_000;

    fn point(host: &str, t: i64, v: f64, n: i64) -> Point {
        Point {
            measurement: "cpu".into(),
            tags: [("host".into(), host.into())].into(),
            fields: [
                ("usage".into(), FieldValue::Float(v)),
                ("procs".into(), FieldValue::Integer(n)),
                ("ok".into(), FieldValue::Boolean(true)),
            ]
            .into(),
            timestamp_ns: t,
        }
    }

    #[test]
    fn durations_print_as_influxdb_shows_them() {
        assert_eq!(go_duration(0), "0s");
        assert_eq!(go_duration(720 * 3600 * S), "720h0m0s");
        assert_eq!(go_duration(90 * 60 * S), "1h30m0s");
        assert_eq!(go_duration(1500 * 1_000_000), "1.5s");
        assert_eq!(go_duration(shard_group_ns(0)), "168h0m0s");
        assert_eq!(go_duration(shard_group_ns(30 * 86400 * S)), "24h0m0s");
        assert_eq!(go_duration(shard_group_ns(3600 * S)), "1h0m0s");
    }

    #[test]
    fn rollups_hold_exact_partials_and_late_values_are_rolled_up_again() {
        let tmp = tempfile::tempdir().unwrap();
        let db = Database::open(tmp.path()).unwrap();
        let t0 = 1_700_000_200 * S; // 100 s into a bucket
        let b0 = bucket_of(t0);
        let mut pts = Vec::new();
        for i in 0..60 {
            pts.push(point("a", t0 + i * 10 * S, i as f64 * 0.5, i));
        }
        db.write(&pts).unwrap();
        let now = t0 + 3600 * S;
        let done = db.roll_up(now, Duration::from_secs(60)).unwrap();
        assert_eq!(done, 3, "the buckets of 10 minutes of values");
        let read = |field: &str, part: &str| {
            db.rollups()
                .query(&Query {
                    measurement: "cpu".into(),
                    tag_filter: BTreeMap::new(),
                    fields: Some(vec![part_field(field, part)]),
                    start_ns: i64::MIN,
                    end_ns: i64::MAX,
                })
                .unwrap()
                .into_iter()
                .flat_map(|d| d.points)
                .collect::<Vec<_>>()
        };
        // First bucket: values 0..20 at t0 + 0..190 s (t0 is 100 s into it → 20 values).
        let counts = read("procs", "count");
        assert_eq!(counts[0], (b0, FieldValue::Integer(20)));
        assert_eq!(
            counts.iter().map(|c| c.0).collect::<Vec<_>>(),
            [b0, b0 + 300 * S, b0 + 600 * S]
        );
        assert_eq!(
            read("procs", "sum")[0].1,
            FieldValue::Integer((0..20).sum())
        );
        assert_eq!(read("usage", "max")[0].1, FieldValue::Float(19.0 * 0.5));
        assert_eq!(read("usage", "first")[1].1, FieldValue::Float(20.0 * 0.5));
        assert!(read("ok", "count").is_empty(), "booleans are not rolled up");

        // A late value for the first bucket: the bucket is recomputed.
        db.write(&[point("a", b0 + 5 * S, 100.0, 1000)]).unwrap();
        assert_eq!(db.roll_up(now, Duration::from_secs(60)).unwrap(), 1);
        assert_eq!(read("procs", "count")[0].1, FieldValue::Integer(21));
        assert_eq!(read("usage", "max")[0].1, FieldValue::Float(100.0));

        // Pending buckets survive a restart (marks recorded before a pass ran do).
        db.write(&[point("a", b0 + 700 * S, 1.0, 1)]).unwrap();
        {
            let mut meta = lock(&db.meta);
            meta.pending.extend(std::mem::take(&mut *lock(&db.dirty)));
            db.save(&meta).unwrap();
        }
        drop(db);
        let db = Database::open(tmp.path()).unwrap();
        assert_eq!(db.roll_up(now, Duration::from_secs(60)).unwrap(), 1);
    }

    #[test]
    fn retention_is_a_setting_and_applies_to_each_store() {
        let tmp = tempfile::tempdir().unwrap();
        let db = Database::open(tmp.path()).unwrap();
        let now = 1_700_000_000 * S;
        let old = now - 3 * 3600 * S;
        db.write(&[point("a", old, 1.0, 1), point("a", now - 60 * S, 2.0, 2)])
            .unwrap();
        db.roll_up(now, Duration::from_secs(60)).unwrap();
        assert!(db.set_retention("autogen", 60 * S, now).is_err());
        assert!(db.set_retention("nope", 0, now).is_err());
        db.set_retention(RAW_POLICY, 3600 * S, now).unwrap();
        assert_eq!(db.retention().raw_ns, 3600 * S);
        let q = |store: &Tsdb, field: &str| {
            store
                .query(&Query {
                    measurement: "cpu".into(),
                    tag_filter: BTreeMap::new(),
                    fields: Some(vec![field.to_string()]),
                    start_ns: i64::MIN,
                    end_ns: i64::MAX,
                })
                .unwrap()
                .iter()
                .map(|d| d.points.len())
                .sum::<usize>()
        };
        assert_eq!(q(db.raw(), "usage"), 1, "the old raw value went");
        assert_eq!(
            q(db.rollups(), &part_field("usage", "count")),
            2,
            "its rollup stays"
        );
        db.set_retention(ROLLUP_POLICY, 2 * 3600 * S, now).unwrap();
        assert_eq!(q(db.rollups(), &part_field("usage", "count")), 1);
        drop(db);
        let db = Database::open(tmp.path()).unwrap();
        assert_eq!(
            db.retention(),
            Retention {
                raw_ns: 3600 * S,
                rollup_ns: 2 * 3600 * S,
                raw_shard_ns: 0,
            },
            "settings persist"
        );
    }

    #[test]
    fn a_cold_database_is_compacted_once_until_written_again() {
        let dir = tempfile::tempdir().unwrap();
        let db = Database::open(dir.path()).unwrap();
        let files = || {
            std::fs::read_dir(dir.path().join("blocks"))
                .unwrap()
                .count()
        };
        for t in 0..3 {
            db.write(&[point("a", t * S, 1.0, t)]).unwrap();
            db.raw().flush().unwrap();
        }
        assert_eq!(files(), 3);
        // Written just now: not cold for an hour.
        assert!(!db.compact_if_cold(Duration::from_secs(3600)).unwrap());
        assert_eq!(files(), 3);
        assert!(db.compact_if_cold(Duration::ZERO).unwrap());
        assert_eq!(files(), 1);
        assert!(!db.compact_if_cold(Duration::ZERO).unwrap());
        db.write(&[point("a", 10 * S, 2.0, 10)]).unwrap();
        assert!(db.compact_if_cold(Duration::ZERO).unwrap());
        assert_eq!(files(), 1);
        let stored = db.raw().query(&peng_tsdb::Query {
            measurement: "cpu".into(),
            start_ns: i64::MIN,
            end_ns: i64::MAX,
            ..Default::default()
        });
        assert!(stored.unwrap().iter().all(|s| s.points.len() == 4));
    }
}
