//! Runs statements against a team's databases and shapes the answers as InfluxDB does.
//!
//! Statements run in order; the first that fails answers with its error and the ones after
//! it are not run (InfluxDB does the same). A failing statement is an answer, not an HTTP
//! error: `200 {"results":[{"statement_id":1,"error":"..."}]}`.

use std::collections::BTreeMap;

use peng_core::TeamName;
use peng_tsdb::{FieldType, FieldValue, Query, SeriesData, SeriesKey, Tsdb};

use std::sync::Arc;

use crate::catalog::{Catalog, CatalogError, OWN_DATABASE};
use crate::database::{
    bucket_of, check_duration, go_duration, part_field, partial_of, shard_group_ns, Database,
    RAW_POLICY, ROLLUP_EVERY_NS, ROLLUP_POLICY,
};
use crate::influxql::{
    Cond, Expr, Fill, GroupTags, Matcher, Select, SelectField, Source, Statement,
};
use crate::line::Precision;
use crate::response::{QueryResponse, Series, StatementResult, Value};

/// Most buckets one series of a `GROUP BY time` answer may have.
pub const MAX_BUCKETS: i64 = 500_000;
/// Values from which an aggregate answers its groups on two threads.
const PARALLEL_VALUES: usize = 50_000;
/// Most rows one raw `SELECT` may read in all.
pub const MAX_RAW_ROWS: usize = 2_000_000;
/// Most rows one `SELECT` may answer, over all its series.
pub const MAX_ROWS: usize = 2_000_000;

/// Who asks and how the answer is written.
pub struct Context<'a> {
    pub team: &'a TeamName,
    /// The `db` parameter: the database of statements that do not name one.
    pub db: Option<&'a str>,
    /// The `epoch` parameter: times as integers of this unit; RFC 3339 strings without it.
    pub epoch: Option<Precision>,
    pub now_ns: i64,
}

/// Runs the statements in order.
pub fn execute(catalog: &Catalog, statements: &[Statement], cx: &Context<'_>) -> QueryResponse {
    let mut results = Vec::new();
    for (statement_id, st) in statements.iter().enumerate() {
        match run(catalog, st, cx) {
            Ok(series) => results.push(StatementResult {
                statement_id,
                series,
                error: None,
            }),
            Err(error) => {
                results.push(StatementResult {
                    statement_id,
                    series: Vec::new(),
                    error: Some(error),
                });
                break;
            }
        }
    }
    QueryResponse { results }
}

fn catalog_error(e: CatalogError) -> String {
    e.to_string()
}

/// A database a statement names: one of the team's, or its view of the platform's store.
enum Target {
    Team(Arc<Database>),
    Own(TeamView),
}

fn target<'a>(catalog: &Catalog, cx: &Context<'a>, on: Option<&'a str>) -> Result<Target, String> {
    let db = on.or(cx.db).ok_or("database name required")?;
    if db == OWN_DATABASE {
        if let Some(own) = catalog.own() {
            return Ok(Target::Own(TeamView {
                tsdb: own.clone(),
                team: cx.team.to_string(),
            }));
        }
    }
    let database = catalog.require(cx.team, db).map_err(catalog_error)?;
    Ok(Target::Team(database))
}

/// The raw values of a database, for SHOW statements.
fn database<'a>(
    catalog: &Catalog,
    cx: &Context<'a>,
    on: Option<&'a str>,
) -> Result<Box<dyn Data>, String> {
    Ok(match target(catalog, cx, on)? {
        Target::Team(d) => Box::new(d.raw().clone()),
        Target::Own(v) => Box::new(v),
    })
}

/// A row of `SHOW RETENTION POLICIES`.
fn policy_row(name: &str, duration_ns: i64, shard_ns: i64, default: bool) -> Vec<Value> {
    vec![
        Value::String(name.into()),
        Value::String(go_duration(duration_ns)),
        Value::String(go_duration(shard_ns)),
        Value::Integer(1),
        Value::Boolean(default),
    ]
}

fn one_column(name: &str, column: &str, values: Vec<String>) -> Vec<Series> {
    if values.is_empty() {
        return Vec::new();
    }
    vec![Series {
        name: name.to_string(),
        tags: None,
        columns: vec![column.to_string()],
        values: values.into_iter().map(|v| vec![Value::String(v)]).collect(),
    }]
}

fn page<T>(items: Vec<T>, limit: Option<u64>, offset: u64) -> Vec<T> {
    let it = items.into_iter().skip(offset as usize);
    match limit {
        Some(n) if n > 0 => it.take(n as usize).collect(),
        _ => it.collect(),
    }
}

fn measurements(data: &dyn Data) -> Result<Vec<String>, String> {
    data.measurements()
}

fn run(catalog: &Catalog, st: &Statement, cx: &Context<'_>) -> Result<Vec<Series>, String> {
    match st {
        Statement::CreateDatabase { name, duration } => {
            if let Some(d) = duration {
                check_duration(*d)?;
            }
            let existing = catalog.get(cx.team, name).map_err(catalog_error)?;
            let db = catalog.create(cx.team, name).map_err(catalog_error)?;
            match (duration, existing) {
                (Some(d), Some(_)) if db.retention().raw_ns != *d => {
                    Err("retention policy conflicts with an existing policy".into())
                }
                (Some(d), None) => {
                    db.init_retention(*d, cx.now_ns)?;
                    Ok(Vec::new())
                }
                _ => Ok(Vec::new()),
            }
        }
        Statement::AlterRetentionPolicy {
            policy,
            on,
            duration,
            default,
        } => {
            let Target::Team(db) = target(catalog, cx, Some(on))? else {
                return Err(format!(
                    "database \"{OWN_DATABASE}\" is peng's record of the team: read-only"
                ));
            };
            if policy != RAW_POLICY && policy != ROLLUP_POLICY {
                return Err(format!("retention policy not found: {policy}"));
            }
            if *default && policy != RAW_POLICY {
                return Err(format!(
                    "{ROLLUP_POLICY} cannot be the default policy: writes go to {RAW_POLICY}"
                ));
            }
            if let Some(d) = duration {
                db.set_retention(policy, *d, cx.now_ns)?;
            }
            Ok(Vec::new())
        }
        Statement::DropDatabase { name } => {
            catalog
                .drop_database(cx.team, name)
                .map_err(catalog_error)?;
            Ok(Vec::new())
        }
        Statement::ShowDatabases => Ok(vec![Series {
            name: "databases".into(),
            tags: None,
            columns: vec!["name".into()],
            values: catalog
                .list(cx.team)
                .map_err(catalog_error)?
                .into_iter()
                .map(|d| vec![Value::String(d)])
                .collect(),
        }]),
        Statement::ShowRetentionPolicies { on } => {
            let values = match target(catalog, cx, on.as_deref())? {
                Target::Team(db) => {
                    let r = db.retention();
                    vec![
                        policy_row(RAW_POLICY, r.raw_ns, r.raw_shard_group_ns(), true),
                        policy_row(ROLLUP_POLICY, r.rollup_ns, shard_group_ns(0), false),
                    ]
                }
                Target::Own(_) => vec![policy_row(RAW_POLICY, 0, shard_group_ns(0), true)],
            };
            Ok(vec![Series {
                name: String::new(),
                tags: None,
                columns: [
                    "name",
                    "duration",
                    "shardGroupDuration",
                    "replicaN",
                    "default",
                ]
                .map(String::from)
                .to_vec(),
                values,
            }])
        }
        Statement::ShowMeasurements {
            on,
            with,
            limit,
            offset,
        } => {
            let tsdb = database(catalog, cx, on.as_deref())?;
            let names: Vec<String> = measurements(tsdb.as_ref())?
                .into_iter()
                .filter(|m| with.as_ref().is_none_or(|w| w.matches(m)))
                .collect();
            Ok(one_column(
                "measurements",
                "name",
                page(names, *limit, *offset),
            ))
        }
        Statement::ShowTagKeys {
            on,
            from,
            limit,
            offset,
        } => {
            let tsdb = database(catalog, cx, on.as_deref())?;
            let mut out = Vec::new();
            for m in chosen(tsdb.as_ref(), from.as_deref())? {
                let mut keys: Vec<String> = tsdb
                    .series(Some(&m))?
                    .into_iter()
                    .flat_map(|k| k.tags.into_keys())
                    .collect();
                keys.sort();
                keys.dedup();
                out.extend(one_column(&m, "tagKey", page(keys, *limit, *offset)));
            }
            Ok(out)
        }
        Statement::ShowTagValues {
            on,
            from,
            keys,
            condition,
            limit,
            offset,
        } => {
            let tsdb = database(catalog, cx, on.as_deref())?;
            let tags_only = condition.as_ref().map(tag_part).transpose()?.flatten();
            let mut out = Vec::new();
            for m in chosen(tsdb.as_ref(), from.as_deref())? {
                let mut pairs: Vec<(String, String)> = tsdb
                    .series(Some(&m))?
                    .into_iter()
                    .filter(|k| tags_only.as_ref().is_none_or(|c| tags_match(c, &k.tags)))
                    .flat_map(|k| k.tags.into_iter())
                    .filter(|(key, _)| keys.matches(key))
                    .collect();
                pairs.sort();
                pairs.dedup();
                let pairs = page(pairs, *limit, *offset);
                if !pairs.is_empty() {
                    out.push(Series {
                        name: m.clone(),
                        tags: None,
                        columns: vec!["key".into(), "value".into()],
                        values: pairs
                            .into_iter()
                            .map(|(k, v)| vec![Value::String(k), Value::String(v)])
                            .collect(),
                    });
                }
            }
            Ok(out)
        }
        Statement::ShowFieldKeys { on, from } => {
            let tsdb = database(catalog, cx, on.as_deref())?;
            let mut out = Vec::new();
            for m in chosen(tsdb.as_ref(), from.as_deref())? {
                let fields = tsdb.fields(&m)?;
                if fields.is_empty() {
                    continue;
                }
                out.push(Series {
                    name: m.clone(),
                    tags: None,
                    columns: vec!["fieldKey".into(), "fieldType".into()],
                    values: fields
                        .into_iter()
                        .map(|(f, t)| vec![Value::String(f), Value::String(type_name(t).into())])
                        .collect(),
                });
            }
            Ok(out)
        }
        Statement::ShowSeries {
            on,
            from,
            condition,
            limit,
            offset,
        } => {
            let tsdb = database(catalog, cx, on.as_deref())?;
            let tags_only = condition.as_ref().map(tag_part).transpose()?.flatten();
            let keys: Vec<String> = tsdb
                .series(from.as_deref())?
                .into_iter()
                .filter(|k| tags_only.as_ref().is_none_or(|c| tags_match(c, &k.tags)))
                .map(|k| series_key_text(&k))
                .collect();
            Ok(one_column("", "key", page(keys, *limit, *offset)))
        }
        Statement::Select(s) => run_select(catalog, s, cx, 0),
    }
}

fn type_name(t: FieldType) -> &'static str {
    match t {
        FieldType::Float => "float",
        FieldType::Integer => "integer",
        FieldType::Unsigned => "unsigned",
        FieldType::Boolean => "boolean",
        FieldType::String => "string",
    }
}

fn series_key_text(k: &SeriesKey) -> String {
    let mut s = k.measurement.clone();
    for (t, v) in &k.tags {
        s.push(',');
        s.push_str(t);
        s.push('=');
        s.push_str(v);
    }
    s
}

fn chosen(data: &dyn Data, from: Option<&str>) -> Result<Vec<String>, String> {
    Ok(match from {
        Some(m) => vec![m.to_string()],
        None => measurements(data)?,
    })
}

/// The condition without its time comparisons, which must not sit under an OR.
fn tag_part(c: &Cond) -> Result<Option<Cond>, String> {
    Ok(match c {
        Cond::Time { .. } => None,
        Cond::Tag { .. } => Some(c.clone()),
        Cond::And(a, b) => match (tag_part(a)?, tag_part(b)?) {
            (Some(a), Some(b)) => Some(Cond::And(Box::new(a), Box::new(b))),
            (x, None) | (None, x) => x,
        },
        Cond::Or(a, b) => {
            if has_time(a) || has_time(b) {
                return Err("invalid time condition: time cannot be compared under OR".into());
            }
            Some(c.clone())
        }
    })
}

fn has_time(c: &Cond) -> bool {
    match c {
        Cond::Time { .. } => true,
        Cond::Tag { .. } => false,
        Cond::And(a, b) | Cond::Or(a, b) => has_time(a) || has_time(b),
    }
}

/// The inclusive time range the condition's AND-ed time comparisons allow.
fn time_range(c: Option<&Cond>, now_ns: i64) -> (Option<i64>, Option<i64>) {
    let mut lo: Option<i64> = None;
    let mut hi: Option<i64> = None;
    fn walk(c: &Cond, now: i64, lo: &mut Option<i64>, hi: &mut Option<i64>) {
        match c {
            Cond::And(a, b) => {
                walk(a, now, lo, hi);
                walk(b, now, lo, hi);
            }
            Cond::Time { op, at } => {
                let t = at.resolve(now);
                let (l, h) = match *op {
                    ">" => (Some(t.saturating_add(1)), None),
                    ">=" => (Some(t), None),
                    "<" => (None, Some(t.saturating_sub(1))),
                    "<=" => (None, Some(t)),
                    _ => (Some(t), Some(t)),
                };
                if let Some(l) = l {
                    *lo = Some(lo.map_or(l, |x| x.max(l)));
                }
                if let Some(h) = h {
                    *hi = Some(hi.map_or(h, |x| x.min(h)));
                }
            }
            Cond::Tag { .. } | Cond::Or(..) => {}
        }
    }
    if let Some(c) = c {
        walk(c, now_ns, &mut lo, &mut hi);
    }
    (lo, hi)
}

/// A tag condition on a series' tags; a missing tag is the empty string, as in InfluxDB.
fn tags_match(c: &Cond, tags: &BTreeMap<String, String>) -> bool {
    match c {
        Cond::And(a, b) => tags_match(a, tags) && tags_match(b, tags),
        Cond::Or(a, b) => tags_match(a, tags) || tags_match(b, tags),
        Cond::Time { .. } => true,
        Cond::Tag {
            key,
            negate,
            matcher,
        } => {
            let v = tags.get(key).map_or("", String::as_str);
            let hit = match matcher {
                Matcher::Eq(want) => v == want,
                Matcher::Regex(r) => r.is_match(v),
            };
            hit != *negate
        }
    }
}

/// What one column of a SELECT computes.
#[derive(Debug, Clone)]
enum Column {
    /// The raw values of a field.
    Raw(String),
    /// An aggregate of a field over each bucket.
    Agg { func: Agg, field: String },
    /// The derivative of a column per `unit`.
    Derivative {
        inner: Box<Column>,
        unit: i64,
        non_negative: bool,
    },
}

#[derive(Debug, Clone, Copy)]
enum Agg {
    Count,
    Mean,
    Median,
    Min,
    Max,
    Sum,
    First,
    Last,
    Spread,
    Stddev,
    Percentile(f64),
}

impl Column {
    fn field(&self) -> &str {
        match self {
            Column::Raw(f) | Column::Agg { field: f, .. } => f,
            Column::Derivative { inner, .. } => inner.field(),
        }
    }

    fn is_aggregate(&self) -> bool {
        match self {
            Column::Raw(_) => false,
            Column::Agg { .. } => true,
            Column::Derivative { inner, .. } => inner.is_aggregate(),
        }
    }
}

fn column_of(e: &Expr) -> Result<(Column, String), String> {
    match e {
        Expr::Field(f) => Ok((Column::Raw(f.clone()), f.clone())),
        Expr::Call { name, args } => {
            let field = |i: usize| -> Result<String, String> {
                match args.get(i) {
                    Some(Expr::Field(f)) => Ok(f.clone()),
                    Some(Expr::Wildcard) => Err(format!(
                        "{name}(*) is not supported by peng: name the field"
                    )),
                    _ => Err(format!("expected field argument in {name}()")),
                }
            };
            let simple = |func: Agg| -> Result<(Column, String), String> {
                if args.len() != 1 {
                    return Err(format!(
                        "invalid number of arguments for {name}, expected 1, got {}",
                        args.len()
                    ));
                }
                Ok((
                    Column::Agg {
                        func,
                        field: field(0)?,
                    },
                    name.clone(),
                ))
            };
            match name.as_str() {
                "count" => simple(Agg::Count),
                "mean" => simple(Agg::Mean),
                "median" => simple(Agg::Median),
                "min" => simple(Agg::Min),
                "max" => simple(Agg::Max),
                "sum" => simple(Agg::Sum),
                "first" => simple(Agg::First),
                "last" => simple(Agg::Last),
                "spread" => simple(Agg::Spread),
                "stddev" => simple(Agg::Stddev),
                "percentile" => {
                    let n = match args.get(1) {
                        Some(Expr::Number(n)) if args.len() == 2 && (0.0..=100.0).contains(n) => *n,
                        _ => {
                            return Err(
                                "percentile() takes a field and a number from 0 to 100".into()
                            )
                        }
                    };
                    Ok((
                        Column::Agg {
                            func: Agg::Percentile(n),
                            field: field(0)?,
                        },
                        name.clone(),
                    ))
                }
                "derivative" | "non_negative_derivative" => {
                    let inner = match args.first() {
                        Some(e @ (Expr::Field(_) | Expr::Call { .. })) => column_of(e)?.0,
                        _ => return Err(format!("expected field argument in {name}()")),
                    };
                    if matches!(inner, Column::Derivative { .. }) {
                        return Err(format!("{name}() of a derivative is not supported by peng"));
                    }
                    let unit = match args.get(1) {
                        None => 1_000_000_000,
                        Some(Expr::Duration(ns)) if *ns > 0 && args.len() == 2 => *ns,
                        _ => return Err(format!("second argument to {name} must be a duration")),
                    };
                    Ok((
                        Column::Derivative {
                            inner: Box::new(inner),
                            unit,
                            non_negative: name == "non_negative_derivative",
                        },
                        name.clone(),
                    ))
                }
                other => Err(format!("undefined function {other}()")),
            }
        }
        Expr::Wildcard => Err("internal: wildcard is expanded before".into()),
        Expr::Number(_) | Expr::Duration(_) => {
            Err("a constant as a column is not supported by peng".into())
        }
    }
}

/// Subqueries may nest this deep.
const MAX_SUBQUERY_DEPTH: usize = 4;

/// A SELECT over a measurement of a database, or over what its subquery answered.
fn run_select(
    catalog: &Catalog,
    s: &Select,
    cx: &Context<'_>,
    depth: usize,
) -> Result<Vec<Series>, String> {
    match &s.from {
        Source::Measurement(m) => {
            let rp =
                m.rp.as_deref()
                    .filter(|r| !r.is_empty())
                    .unwrap_or(RAW_POLICY);
            match (target(catalog, cx, m.db.as_deref())?, rp) {
                (Target::Team(db), RAW_POLICY) => match rollup_split(&db, s, cx) {
                    Some(split) => select(&Rollups { db, split }, s, &m.name, &m.name, cx),
                    None => select(db.raw(), s, &m.name, &m.name, cx),
                },
                (Target::Team(db), ROLLUP_POLICY) => {
                    let all = Rollups {
                        db,
                        split: i64::MAX,
                    };
                    select(&all, s, &m.name, &m.name, cx)
                }
                (Target::Own(view), RAW_POLICY) => select(&view, s, &m.name, &m.name, cx),
                (_, other) => Err(format!("retention policy not found: {other}")),
            }
        }
        Source::Subquery(inner) => {
            if depth >= MAX_SUBQUERY_DEPTH {
                return Err(format!("subqueries nest at most {MAX_SUBQUERY_DEPTH} deep"));
            }
            // The outer time range bounds the inner query too, as in InfluxDB.
            let mut inner = inner.as_ref().clone();
            if let Some(times) = s.condition.as_ref().and_then(time_part) {
                inner.condition = Some(match inner.condition.take() {
                    Some(c) => Cond::And(Box::new(c), Box::new(times)),
                    None => times,
                });
            }
            let inner_cx = Context {
                team: cx.team,
                db: cx.db,
                epoch: None,
                now_ns: cx.now_ns,
            };
            let answer = run_select(catalog, &inner, &inner_cx, depth + 1)?;
            let derived = Derived::from_answer(answer);
            select(&derived, s, DERIVED, &derived.name, cx)
        }
    }
}

/// The time comparisons of a condition that are AND-ed at its top.
fn time_part(c: &Cond) -> Option<Cond> {
    match c {
        Cond::Time { .. } => Some(c.clone()),
        Cond::And(a, b) => match (time_part(a), time_part(b)) {
            (Some(a), Some(b)) => Some(Cond::And(Box::new(a), Box::new(b))),
            (x, None) | (None, x) => x,
        },
        Cond::Tag { .. } | Cond::Or(..) => None,
    }
}

/// Where a SELECT reads from: a database, or a subquery's answer.
trait Data {
    fn fields(&self, measurement: &str) -> Result<Vec<(String, FieldType)>, String>;
    /// Of one measurement, or all; sorted.
    fn series(&self, measurement: Option<&str>) -> Result<Vec<SeriesKey>, String>;
    fn read(&self, q: &Query) -> Result<Vec<SeriesData>, String>;

    /// Whether `read` answers with rollup partials (fields named by [`part_field`]) rather
    /// than raw values.
    fn partials(&self) -> bool {
        false
    }

    /// The measurements with a series, sorted.
    fn measurements(&self) -> Result<Vec<String>, String> {
        let mut names: Vec<String> = self
            .series(None)?
            .into_iter()
            .map(|k| k.measurement)
            .collect();
        names.dedup();
        Ok(names)
    }
}

impl Data for Arc<Tsdb> {
    fn fields(&self, measurement: &str) -> Result<Vec<(String, FieldType)>, String> {
        Tsdb::fields(self, measurement).map_err(|e| e.to_string())
    }

    fn series(&self, measurement: Option<&str>) -> Result<Vec<SeriesKey>, String> {
        Tsdb::series(self, measurement).map_err(|e| e.to_string())
    }

    fn measurements(&self) -> Result<Vec<String>, String> {
        Tsdb::measurements(self).map_err(|e| e.to_string())
    }

    fn read(&self, q: &Query) -> Result<Vec<SeriesData>, String> {
        self.query(q).map_err(|e| e.to_string())
    }
}

/// A team's view of the platform's store: only series tagged `team=TEAM`, whatever a query
/// says (the filter is added to every read, as the log store adds its team clause).
struct TeamView {
    tsdb: Arc<Tsdb>,
    team: String,
}

impl TeamView {
    fn mine(&self, k: &SeriesKey) -> bool {
        k.tags.get("team") == Some(&self.team)
    }
}

impl Data for TeamView {
    fn fields(&self, measurement: &str) -> Result<Vec<(String, FieldType)>, String> {
        if self.series(Some(measurement))?.is_empty() {
            return Ok(Vec::new());
        }
        self.tsdb.fields(measurement)
    }

    fn series(&self, measurement: Option<&str>) -> Result<Vec<SeriesKey>, String> {
        Ok(self
            .tsdb
            .series(measurement)?
            .into_iter()
            .filter(|k| self.mine(k))
            .collect())
    }

    fn read(&self, q: &Query) -> Result<Vec<SeriesData>, String> {
        let mut q = q.clone();
        q.tag_filter.insert("team".to_string(), self.team.clone());
        let data = self.tsdb.read(&q)?;
        Ok(data.into_iter().filter(|d| self.mine(&d.key)).collect())
    }
}

/// A database read through its rollups: 5-minute partials before `split`, and the raw values
/// from `split` on as one-value partials, so that a range longer than the raw retention is
/// answered whole, and exactly for the aggregates rollups can answer.
struct Rollups {
    db: Arc<Database>,
    split: i64,
}

/// When a SELECT on `autogen` reaches before what the raw values still hold, and rollups can
/// answer it, where to switch from rollups to raw values (a bucket boundary).
fn rollup_split(db: &Database, s: &Select, cx: &Context<'_>) -> Option<i64> {
    let cutoff = db.raw_cutoff(cx.now_ns)?;
    let (lo, _) = time_range(s.condition.as_ref(), cx.now_ns);
    if lo.is_some_and(|lo| lo >= cutoff) || rollup_plan(s).is_err() {
        return None;
    }
    let b = bucket_of(cutoff);
    Some(if b == cutoff { b } else { b + ROLLUP_EVERY_NS })
}

/// Rollups answer `mean`, `count`, `sum`, `min`, `max`, `first`, `last` and `spread` (and
/// derivatives of them) in buckets of a multiple of 5 minutes.
fn rollup_plan(s: &Select) -> Result<(), String> {
    let refuse = || {
        Err(format!(
            "{ROLLUP_POLICY} holds 5-minute aggregates: select mean, count, sum, min, max, first, last or spread (or a derivative of one) with GROUP BY time() of a multiple of 5m"
        ))
    };
    let Some(iv) = s.interval else {
        return refuse();
    };
    if iv.every % ROLLUP_EVERY_NS != 0 || iv.offset % ROLLUP_EVERY_NS != 0 {
        return refuse();
    }
    for f in &s.fields {
        let Ok((col, _)) = column_of(&f.expr) else {
            return refuse();
        };
        let agg = match &col {
            Column::Derivative { inner, .. } => inner.as_ref(),
            c => c,
        };
        match agg {
            Column::Agg { func, .. } if !parts_of(*func).is_empty() => {}
            _ => return refuse(),
        }
    }
    Ok(())
}

/// The partials an aggregate is computed from; none when rollups cannot answer it.
fn parts_of(func: Agg) -> &'static [&'static str] {
    match func {
        Agg::Count => &["count"],
        Agg::Mean => &["sum", "count"],
        Agg::Sum => &["sum"],
        Agg::Min => &["min"],
        Agg::Max => &["max"],
        Agg::First => &["first"],
        Agg::Last => &["last"],
        Agg::Spread => &["min", "max"],
        Agg::Median | Agg::Stddev | Agg::Percentile(_) => &[],
    }
}

impl Data for Rollups {
    fn fields(&self, measurement: &str) -> Result<Vec<(String, FieldType)>, String> {
        Data::fields(self.db.raw(), measurement)
    }

    fn series(&self, measurement: Option<&str>) -> Result<Vec<SeriesKey>, String> {
        Data::series(self.db.raw(), measurement)
    }

    fn measurements(&self) -> Result<Vec<String>, String> {
        Data::measurements(self.db.raw())
    }

    fn partials(&self) -> bool {
        true
    }

    fn read(&self, q: &Query) -> Result<Vec<SeriesData>, String> {
        let mut out = Vec::new();
        if q.start_ns < self.split {
            let mut early = q.clone();
            early.end_ns = q.end_ns.min(self.split);
            out = Data::read(self.db.rollups(), &early)?;
        }
        if q.end_ns > self.split {
            // Raw field → the partials asked of it.
            let mut wanted: BTreeMap<String, Vec<String>> = BTreeMap::new();
            for name in q.fields.iter().flatten() {
                if let Some((field, part)) = name.rsplit_once('\0') {
                    wanted
                        .entry(field.to_string())
                        .or_default()
                        .push(part.to_string());
                }
            }
            let late = Query {
                fields: Some(wanted.keys().cloned().collect()),
                start_ns: q.start_ns.max(self.split),
                ..q.clone()
            };
            for sd in Data::read(self.db.raw(), &late)? {
                for part in wanted.get(&sd.field).into_iter().flatten() {
                    let points: Vec<(i64, FieldValue)> = sd
                        .points
                        .iter()
                        .filter_map(|(t, v)| Some((*t, partial_of(v, part)?)))
                        .collect();
                    if !points.is_empty() {
                        out.push(SeriesData {
                            key: sd.key.clone(),
                            field: part_field(&sd.field, part),
                            points,
                        });
                    }
                }
            }
        }
        Ok(out)
    }
}

/// The measurement name of a subquery's answer (its series are named as its FROM, but the
/// outer query reads them all).
const DERIVED: &str = "";

/// A subquery's answer as the outer query reads it: each column a field, each group's tags a
/// series.
struct Derived {
    data: Vec<SeriesData>,
    name: String,
}

impl Derived {
    fn from_answer(series: Vec<Series>) -> Derived {
        let name = series.first().map(|s| s.name.clone()).unwrap_or_default();
        let mut data = Vec::new();
        for s in series {
            let key = SeriesKey {
                measurement: DERIVED.to_string(),
                tags: s.tags.clone().unwrap_or_default(),
            };
            for (ci, column) in s.columns.iter().enumerate().skip(1) {
                let points: Vec<(i64, FieldValue)> = s
                    .values
                    .iter()
                    .filter_map(|row| {
                        let Some(Value::Time(t, _)) = row.first() else {
                            return None;
                        };
                        let v = match row.get(ci)? {
                            Value::Float(f) => FieldValue::Float(*f),
                            Value::Integer(i) => FieldValue::Integer(*i),
                            Value::Unsigned(u) => FieldValue::Unsigned(*u),
                            Value::Boolean(b) => FieldValue::Boolean(*b),
                            Value::String(s) => FieldValue::String(s.clone()),
                            Value::Null | Value::Time(..) => return None,
                        };
                        Some((*t, v))
                    })
                    .collect();
                if !points.is_empty() {
                    data.push(SeriesData {
                        key: key.clone(),
                        field: column.clone(),
                        points,
                    });
                }
            }
        }
        Derived { data, name }
    }
}

impl Data for Derived {
    fn fields(&self, _: &str) -> Result<Vec<(String, FieldType)>, String> {
        let mut f: Vec<(String, FieldType)> = self
            .data
            .iter()
            .filter_map(|d| Some((d.field.clone(), d.points.first()?.1.field_type())))
            .collect();
        f.sort();
        f.dedup();
        Ok(f)
    }

    fn series(&self, _: Option<&str>) -> Result<Vec<SeriesKey>, String> {
        let mut k: Vec<SeriesKey> = self.data.iter().map(|d| d.key.clone()).collect();
        k.sort();
        k.dedup();
        Ok(k)
    }

    fn read(&self, q: &Query) -> Result<Vec<SeriesData>, String> {
        Ok(self
            .data
            .iter()
            .filter(|d| q.fields.as_ref().is_none_or(|f| f.contains(&d.field)))
            .map(|d| SeriesData {
                key: d.key.clone(),
                field: d.field.clone(),
                points: d
                    .points
                    .iter()
                    .filter(|(t, _)| *t >= q.start_ns && *t < q.end_ns)
                    .cloned()
                    .collect(),
            })
            .filter(|d| !d.points.is_empty())
            .collect())
    }
}

/// `measurement` is what to read, `name` what the answer's series are called.
/// The values of one field in one group of an answer, with the series each came from (for
/// tag columns). A series' values are moved in whole, not copied: a panel's group is most
/// often one series.
#[derive(Debug, Default)]
struct Points {
    /// In time order once [`Points::sort`] ran.
    values: Vec<(i64, FieldValue)>,
    /// `(first value, series)` of each run of values from one series.
    series: Vec<(usize, usize)>,
}

impl Points {
    fn add(&mut self, mut values: Vec<(i64, FieldValue)>, series: usize) {
        if values.is_empty() {
            return;
        }
        self.series.push((self.values.len(), series));
        if self.values.is_empty() {
            self.values = values;
        } else {
            self.values.append(&mut values);
        }
    }

    /// Puts the values of several series in time order; of equal times, the earlier series'
    /// value comes first.
    fn sort(&mut self) {
        // A series' values come in time order.
        if self.series.len() <= 1 || self.values.is_sorted_by_key(|p| p.0) {
            return;
        }
        let values = std::mem::take(&mut self.values);
        let series = series_of(&self.series, values.len());
        let mut tagged: Vec<(i64, FieldValue, usize)> = values
            .into_iter()
            .zip(series)
            .map(|((t, v), s)| (t, v, s))
            .collect();
        tagged.sort_by_key(|p| p.0);
        self.series.clear();
        self.values.reserve_exact(tagged.len());
        for (i, (t, v, s)) in tagged.into_iter().enumerate() {
            if self.series.last().is_none_or(|r| r.1 != s) {
                self.series.push((i, s));
            }
            self.values.push((t, v));
        }
    }

    /// Each value with its time and the position of its series.
    fn iter(&self) -> impl Iterator<Item = (i64, &FieldValue, usize)> + '_ {
        self.values
            .iter()
            .zip(series_of(&self.series, self.values.len()))
            .map(|((t, v), s)| (*t, v, s))
    }
}

/// The series of each of `len` values, from runs of `(first value, series)`.
fn series_of(runs: &[(usize, usize)], len: usize) -> impl Iterator<Item = usize> + '_ {
    (0..len).scan(0, move |run, i| {
        while runs.get(*run + 1).is_some_and(|r| r.0 <= i) {
            *run += 1;
        }
        Some(runs.get(*run).map_or(0, |r| r.1))
    })
}

fn select(
    tsdb: &dyn Data,
    s: &Select,
    measurement: &str,
    name: &str,
    cx: &Context<'_>,
) -> Result<Vec<Series>, String> {
    let tags_only = s.condition.as_ref().map(tag_part).transpose()?.flatten();
    let (lo, hi) = time_range(s.condition.as_ref(), cx.now_ns);
    // Columns, with `*` expanded to every field (and every tag not grouped by).
    let mut columns: Vec<(Column, String)> = Vec::new();
    let mut tag_columns: Vec<String> = Vec::new();
    for SelectField { expr, alias } in &s.fields {
        if *expr == Expr::Wildcard {
            for (f, _) in tsdb.fields(measurement)? {
                columns.push((Column::Raw(f.clone()), f));
            }
            let mut keys: Vec<String> = tsdb
                .series(Some(measurement))?
                .into_iter()
                .flat_map(|k| k.tags.into_keys())
                .collect();
            keys.sort();
            keys.dedup();
            tag_columns = keys
                .into_iter()
                .filter(|k| match &s.group_tags {
                    GroupTags::None => true,
                    GroupTags::All => false,
                    GroupTags::List(l) => !l.contains(k),
                })
                .collect();
            continue;
        }
        let (col, name) = column_of(expr)?;
        columns.push((col, alias.clone().unwrap_or(name)));
    }
    let wildcard = s.fields.iter().any(|f| f.expr == Expr::Wildcard);
    let aggregate = columns.iter().any(|(c, _)| c.is_aggregate());
    if aggregate && columns.iter().any(|(c, _)| !c.is_aggregate()) {
        return Err("mixing aggregate and non-aggregate queries is not supported".into());
    }
    if aggregate && !tag_columns.is_empty() {
        return Err("mixing aggregate and non-aggregate queries is not supported".into());
    }
    if s.interval.is_some() && !aggregate {
        return Err("GROUP BY requires at least one aggregate function".into());
    }
    let names = unique_names(columns.iter().map(|(_, n)| n.clone()).collect());
    let partial = tsdb.partials();
    if partial {
        rollup_plan(s)?;
    }
    let mut fields: Vec<String> = if partial {
        columns
            .iter()
            .flat_map(|(c, _)| {
                let func = match c {
                    Column::Agg { func, .. } => Some(*func),
                    Column::Derivative { inner, .. } => match inner.as_ref() {
                        Column::Agg { func, .. } => Some(*func),
                        _ => None,
                    },
                    Column::Raw(_) => None,
                };
                let parts = func.map_or(&[][..], parts_of);
                parts.iter().map(|p| part_field(c.field(), p))
            })
            .collect()
    } else {
        columns.iter().map(|(c, _)| c.field().to_string()).collect()
    };
    fields.sort();
    fields.dedup();
    // For GROUP BY time the range ends now when no upper bound is given, as in InfluxDB.
    let hi = hi.or(if s.interval.is_some() {
        Some(cx.now_ns)
    } else {
        None
    });
    let data = tsdb.read(&Query {
        measurement: measurement.to_string(),
        tag_filter: BTreeMap::new(),
        fields: Some(fields),
        start_ns: lo.unwrap_or(i64::MIN),
        end_ns: hi.map_or(i64::MAX, |h| h.saturating_add(1)),
    })?;
    // Groups: tag set → field → points (with the series' tags, for tag columns).
    let mut groups: BTreeMap<BTreeMap<String, String>, BTreeMap<String, Points>> = BTreeMap::new();
    let mut series_tags: Vec<BTreeMap<String, String>> = Vec::new();
    for sd in data {
        if !tags_only
            .as_ref()
            .is_none_or(|c| tags_match(c, &sd.key.tags))
        {
            continue;
        }
        let group: BTreeMap<String, String> = match &s.group_tags {
            GroupTags::None => BTreeMap::new(),
            GroupTags::All => sd.key.tags.clone(),
            GroupTags::List(l) => l
                .iter()
                .map(|t| (t.clone(), sd.key.tags.get(t).cloned().unwrap_or_default()))
                .collect(),
        };
        let idx = match series_tags.iter().position(|t| *t == sd.key.tags) {
            Some(i) => i,
            None => {
                series_tags.push(sd.key.tags.clone());
                series_tags.len() - 1
            }
        };
        groups
            .entry(group)
            .or_default()
            .entry(sd.field)
            .or_default()
            .add(sd.points, idx);
    }
    // Each group's rows, in group order; an aggregate over many values answers its groups
    // on two threads.
    type Rows = (BTreeMap<String, String>, Vec<Vec<Value>>);
    let answer = |group: BTreeMap<String, String>,
                  mut by_field: BTreeMap<String, Points>|
     -> Result<Option<Rows>, String> {
        for pts in by_field.values_mut() {
            pts.sort();
        }
        let rows = if aggregate {
            let earliest = by_field
                .values()
                .filter_map(|p| p.values.first())
                .map(|p| p.0)
                .min();
            let latest = by_field
                .values()
                .filter_map(|p| p.values.last())
                .map(|p| p.0)
                .max();
            let (Some(start), Some(end)) = (lo.or(earliest), hi.or(latest)) else {
                return Ok(None);
            };
            // Without GROUP BY time the row's time is the lower bound, or 0 without one.
            let whole = lo.unwrap_or(0);
            let by = &by_field;
            aggregate_rows(&columns, by, s, (start, end, whole), cx.epoch, partial)?
        } else {
            raw_rows_of(&columns, &tag_columns, &series_tags, &by_field, cx.epoch)
        };
        Ok(Some((group, rows)))
    };
    let values: usize = groups
        .values()
        .flat_map(|f| f.values())
        .map(|p| p.values.len())
        .sum();
    let answers: Vec<Result<Option<Rows>, String>> =
        if aggregate && groups.len() > 1 && values >= PARALLEL_VALUES {
            let mut first: Vec<_> = groups.into_iter().collect();
            let second = first.split_off(first.len() / 2);
            std::thread::scope(|scope| {
                let other = scope.spawn(|| {
                    second
                        .into_iter()
                        .map(|(g, f)| answer(g, f))
                        .collect::<Vec<_>>()
                });
                let mut all: Vec<_> = first.into_iter().map(|(g, f)| answer(g, f)).collect();
                match other.join() {
                    Ok(rest) => all.extend(rest),
                    Err(_) => all.push(Err("internal: a query thread failed".into())),
                }
                all
            })
        } else {
            groups.into_iter().map(|(g, f)| answer(g, f)).collect()
        };
    let mut out = Vec::new();
    let mut raw_rows = 0usize;
    let mut answered = 0usize;
    for a in answers {
        let Some((group, mut rows)) = a? else {
            continue;
        };
        if !aggregate {
            raw_rows += rows.len();
            if raw_rows > MAX_RAW_ROWS {
                return Err(format!(
                    "more than {MAX_RAW_ROWS} rows: narrow the time range or aggregate with GROUP BY time"
                ));
            }
        }
        if s.descending {
            rows.reverse();
        }
        let rows = page(rows, s.limit, s.offset);
        if rows.is_empty() {
            continue;
        }
        answered += rows.len();
        if answered > MAX_ROWS {
            return Err(format!(
                "more than {MAX_ROWS} rows in all: narrow the time range, use a larger GROUP BY time() interval, or SLIMIT"
            ));
        }
        let mut cols = vec!["time".to_string()];
        cols.extend(names.iter().cloned());
        cols.extend(tag_columns.iter().cloned());
        let (cols, rows) = if wildcard {
            wildcard_order(cols, rows)
        } else {
            (cols, rows)
        };
        out.push(Series {
            name: name.to_string(),
            tags: (s.group_tags != GroupTags::None).then_some(group),
            columns: cols,
            values: rows,
        });
    }
    Ok(page(out, s.slimit, s.soffset))
}

/// `SELECT *` lists fields and tags together in name order after `time`, as InfluxDB does.
fn wildcard_order(cols: Vec<String>, rows: Vec<Vec<Value>>) -> (Vec<String>, Vec<Vec<Value>>) {
    let mut order: Vec<usize> = (1..cols.len()).collect();
    order.sort_by(|a, b| cols[*a].cmp(&cols[*b]));
    order.insert(0, 0);
    let cols = order.iter().map(|i| cols[*i].clone()).collect();
    let rows = rows
        .into_iter()
        .map(|row| order.iter().map(|i| row[*i].clone()).collect())
        .collect();
    (cols, rows)
}

/// InfluxDB names repeated columns `mean`, `mean_1`, `mean_2`.
fn unique_names(names: Vec<String>) -> Vec<String> {
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    names
        .into_iter()
        .map(|n| {
            let count = seen.entry(n.clone()).or_insert(0);
            let out = if *count == 0 {
                n.clone()
            } else {
                format!("{n}_{count}")
            };
            *count += 1;
            out
        })
        .collect()
}

fn raw_rows_of(
    columns: &[(Column, String)],
    tag_columns: &[String],
    series_tags: &[BTreeMap<String, String>],
    by_field: &BTreeMap<String, Points>,
    epoch: Option<Precision>,
) -> Vec<Vec<Value>> {
    // One row per time and series, as InfluxDB merges the fields of one point.
    let mut rows: BTreeMap<(i64, usize), Vec<Value>> = BTreeMap::new();
    let width = columns.len();
    for (i, (col, _)) in columns.iter().enumerate() {
        let Some(points) = by_field.get(col.field()) else {
            continue;
        };
        match col {
            Column::Derivative {
                unit, non_negative, ..
            } => {
                for (t, v, s) in raw_derivative(points, *unit, *non_negative) {
                    rows.entry((t, s))
                        .or_insert_with(|| vec![Value::Null; width])[i] = v;
                }
            }
            _ => {
                for (t, v, s) in points.iter() {
                    rows.entry((t, s))
                        .or_insert_with(|| vec![Value::Null; width])[i] = value_of(v);
                }
            }
        }
    }
    rows.into_iter()
        .map(|((t, s), cells)| {
            let mut row = vec![Value::Time(t, epoch)];
            row.extend(cells);
            for k in tag_columns {
                row.push(
                    series_tags
                        .get(s)
                        .and_then(|tags| tags.get(k))
                        .map_or(Value::Null, |v| Value::String(v.clone())),
                );
            }
            row
        })
        .collect()
}

fn raw_derivative(points: &Points, unit: i64, non_negative: bool) -> Vec<(i64, Value, usize)> {
    let mut out = Vec::new();
    let mut prev: Option<(i64, f64)> = None;
    for (t, v, s) in points.iter() {
        let Some(x) = numeric(v) else { continue };
        if let Some((pt, px)) = prev {
            if t > pt {
                let d = (x - px) / ((t as f64 - pt as f64) / unit as f64);
                if !(non_negative && d < 0.0) {
                    out.push((t, Value::Float(d), s));
                }
            }
        }
        prev = Some((t, x));
    }
    out
}

fn numeric(v: &FieldValue) -> Option<f64> {
    match v {
        FieldValue::Float(f) => Some(*f),
        FieldValue::Integer(i) => Some(*i as f64),
        FieldValue::Unsigned(u) => Some(*u as f64),
        FieldValue::Boolean(_) | FieldValue::String(_) => None,
    }
}

fn value_of(v: &FieldValue) -> Value {
    match v {
        FieldValue::Float(f) => Value::Float(*f),
        FieldValue::Integer(i) => Value::Integer(*i),
        FieldValue::Unsigned(u) => Value::Unsigned(*u),
        FieldValue::Boolean(b) => Value::Boolean(*b),
        FieldValue::String(s) => Value::String(s.clone()),
    }
}

fn aggregate_rows(
    columns: &[(Column, String)],
    by_field: &BTreeMap<String, Points>,
    s: &Select,
    (start, end, whole): (i64, i64, i64),
    epoch: Option<Precision>,
    partial: bool,
) -> Result<Vec<Vec<Value>>, String> {
    // Bucket starts: one bucket for the whole range without GROUP BY time.
    let (first, every) = match s.interval {
        Some(iv) => (
            start.saturating_sub(start.wrapping_sub(iv.offset).rem_euclid(iv.every)),
            iv.every,
        ),
        None => (start, end.saturating_sub(start).saturating_add(1).max(1)),
    };
    let count = (end.saturating_sub(first) / every).saturating_add(1);
    if count > MAX_BUCKETS {
        return Err(format!(
            "the query would make {count} buckets, more than {MAX_BUCKETS}: use a larger GROUP BY time() interval or a shorter range"
        ));
    }
    let count = count.max(0) as usize;
    let mut cells: Vec<Vec<Value>> = Vec::with_capacity(columns.len());
    for (col, _) in columns {
        let points = by_field.get(col.field()).map_or(&[][..], |p| &p.values[..]);
        let (agg_col, deriv) = match col {
            Column::Derivative {
                inner,
                unit,
                non_negative,
            } => (inner.as_ref(), Some((*unit, *non_negative))),
            other => (other, None),
        };
        let Column::Agg { func, .. } = agg_col else {
            return Err("mixing aggregate and non-aggregate queries is not supported".into());
        };
        let mut values = vec![Value::Null; count];
        let mut i = 0;
        for (b, slot) in values.iter_mut().enumerate() {
            let lo = first.saturating_add((b as i64).saturating_mul(every));
            let hi = lo.saturating_add(every);
            while i < points.len() && points[i].0 < lo {
                i += 1;
            }
            if partial {
                *slot = combine(*func, col.field(), by_field, lo, hi)?;
                continue;
            }
            let j = i + points[i..].iter().take_while(|p| p.0 < hi).count();
            *slot = aggregate(*func, &points[i..j], col.field())?;
            i = j;
        }
        // The fill applies to the aggregate, before a derivative of it (as in InfluxDB).
        fill_column(&mut values, s.fill);
        if let Some((unit, non_negative)) = deriv {
            values = bucket_derivative(&values, every, unit, non_negative);
        }
        cells.push(values);
    }
    let derivative = columns
        .iter()
        .any(|(c, _)| matches!(c, Column::Derivative { .. }));
    let no_data = by_field.values().all(|p| p.values.is_empty());
    // One selector alone, without GROUP BY time: the row has the selected point's time.
    let selector_time = match columns {
        [(Column::Agg { func, field }, _)] if s.interval.is_none() => selected_time(
            *func,
            by_field.get(field).map_or(&[][..], |p| &p.values[..]),
        ),
        _ => None,
    };
    let mut rows = Vec::with_capacity(count);
    for b in 0..count {
        let t = if s.interval.is_some() {
            first.saturating_add((b as i64).saturating_mul(every))
        } else {
            selector_time.unwrap_or(whole)
        };
        let empty = cells.iter().all(|c| c[b] == Value::Null);
        // A derivative has rows only where it could be computed.
        if empty && (s.fill == Fill::None || derivative || s.interval.is_none() && no_data) {
            continue;
        }
        // One allocation per row; the cells are moved, not cloned.
        let mut row = Vec::with_capacity(1 + cells.len());
        row.push(Value::Time(t, epoch));
        row.extend(
            cells
                .iter_mut()
                .map(|c| std::mem::replace(&mut c[b], Value::Null)),
        );
        rows.push(row);
    }
    Ok(rows)
}

/// `fill(...)` of the empty buckets of one column (`null` and `none` leave them empty).
fn fill_column(values: &mut [Value], fill: Fill) {
    match fill {
        Fill::Value(v) => {
            let filler = if v.fract() == 0.0 && v.abs() < 9e15 {
                Value::Integer(v as i64)
            } else {
                Value::Float(v)
            };
            for c in values.iter_mut().filter(|c| **c == Value::Null) {
                *c = filler.clone();
            }
        }
        Fill::Previous => {
            let mut previous = Value::Null;
            for c in values.iter_mut() {
                if *c == Value::Null {
                    *c = previous.clone();
                } else {
                    previous = c.clone();
                }
            }
        }
        Fill::Linear => {
            let original = values.to_vec();
            for (b, c) in values.iter_mut().enumerate() {
                if *c == Value::Null {
                    *c = linear(&original, b);
                }
            }
        }
        Fill::Null | Fill::None => {}
    }
}

fn linear(values: &[Value], b: usize) -> Value {
    let before = values[..b]
        .iter()
        .enumerate()
        .rev()
        .find_map(|(i, v)| v.as_f64().map(|x| (i, x)));
    let after = values[b + 1..]
        .iter()
        .enumerate()
        .find_map(|(i, v)| v.as_f64().map(|x| (b + 1 + i, x)));
    match (before, after) {
        (Some((i0, x0)), Some((i1, x1))) => {
            Value::Float(x0 + (x1 - x0) * (b - i0) as f64 / (i1 - i0) as f64)
        }
        _ => Value::Null,
    }
}

/// The derivative of bucket values: between each bucket and the last non-empty one before it.
fn bucket_derivative(values: &[Value], every: i64, unit: i64, non_negative: bool) -> Vec<Value> {
    let mut out = vec![Value::Null; values.len()];
    let mut prev: Option<(usize, f64)> = None;
    for (b, v) in values.iter().enumerate() {
        let Some(x) = v.as_f64() else { continue };
        if let Some((pb, px)) = prev {
            let dt = (b - pb) as f64 * every as f64 / unit as f64;
            let d = (x - px) / dt;
            if !(non_negative && d < 0.0) {
                out[b] = Value::Float(d);
            }
        }
        prev = Some((b, x));
    }
    out
}

/// The time of the point a selector (`first`, `last`, `min`, `max`, `percentile`) picks; the
/// earliest of equal values. `None` for aggregates, which make a value of their own.
fn selected_time(func: Agg, points: &[(i64, FieldValue)]) -> Option<i64> {
    let value = |p: &(i64, FieldValue)| numeric(&p.1).unwrap_or(f64::NAN);
    match func {
        Agg::First => points.first().map(|p| p.0),
        Agg::Last => points.last().map(|p| p.0),
        // The greatest value, and of equal ones the earliest (which orders as greater).
        Agg::Max => points
            .iter()
            .max_by(|a, b| value(a).total_cmp(&value(b)).then(b.0.cmp(&a.0)))
            .map(|p| p.0),
        Agg::Min => points
            .iter()
            .min_by(|a, b| value(a).total_cmp(&value(b)).then(a.0.cmp(&b.0)))
            .map(|p| p.0),
        Agg::Percentile(p) => {
            let mut v: Vec<&(i64, FieldValue)> = points.iter().collect();
            v.sort_by(|a, b| value(a).total_cmp(&value(b)).then(a.0.cmp(&b.0)));
            let rank = (v.len() as f64 * p / 100.0 + 0.5).floor() as i64 - 1;
            usize::try_from(rank)
                .ok()
                .and_then(|r| v.get(r))
                .map(|p| p.0)
        }
        _ => None,
    }
}

/// An aggregate over `[lo, hi)` from rollup partials (see [`parts_of`]).
fn combine(
    func: Agg,
    field: &str,
    by_field: &BTreeMap<String, Points>,
    lo: i64,
    hi: i64,
) -> Result<Value, String> {
    let part = |p: &str| -> &[(i64, FieldValue)] {
        let points = by_field
            .get(&part_field(field, p))
            .map_or(&[][..], |p| &p.values[..]);
        let a = points.partition_point(|x| x.0 < lo);
        let b = points.partition_point(|x| x.0 < hi);
        &points[a..b.max(a)]
    };
    let total = |p: &str| -> Result<Option<f64>, String> {
        Ok(match aggregate(Agg::Sum, part(p), field)? {
            Value::Integer(i) => Some(i as f64),
            Value::Float(f) => Some(f),
            Value::Unsigned(u) => Some(u as f64),
            _ => None,
        })
    };
    match func {
        Agg::Count => match aggregate(Agg::Sum, part("count"), field)? {
            Value::Null => aggregate(Agg::Count, &[], field),
            v => Ok(v),
        },
        Agg::Mean => match (total("sum")?, total("count")?) {
            (Some(sum), Some(n)) if n > 0.0 => Ok(Value::Float(sum / n)),
            _ => Ok(Value::Null),
        },
        Agg::Sum => aggregate(Agg::Sum, part("sum"), field),
        Agg::Min => aggregate(Agg::Min, part("min"), field),
        Agg::Max => aggregate(Agg::Max, part("max"), field),
        Agg::First => aggregate(Agg::First, part("first"), field),
        Agg::Last => aggregate(Agg::Last, part("last"), field),
        Agg::Spread => {
            let mut both = part("min").to_vec();
            both.extend_from_slice(part("max"));
            aggregate(Agg::Spread, &both, field)
        }
        Agg::Median | Agg::Stddev | Agg::Percentile(_) => Err(format!(
            "{ROLLUP_POLICY} cannot answer {func:?}(): it needs the raw values"
        )
        .to_lowercase()),
    }
}

fn aggregate(func: Agg, points: &[(i64, FieldValue)], field: &str) -> Result<Value, String> {
    if let Agg::Count = func {
        return Ok(if points.is_empty() {
            Value::Null
        } else {
            Value::Integer(points.len() as i64)
        });
    }
    if points.is_empty() {
        return Ok(Value::Null);
    }
    match func {
        Agg::First => return Ok(value_of(&points[0].1)),
        Agg::Last => return Ok(value_of(&points[points.len() - 1].1)),
        _ => {}
    }
    let not_numeric =
        || Err(format!("field '{field}' is not numeric: {func:?} needs numbers").to_lowercase());
    let integer = points
        .iter()
        .all(|p| matches!(p.1, FieldValue::Integer(_) | FieldValue::Unsigned(_)));
    let typed = |x: f64| {
        if integer {
            Value::Integer(x as i64)
        } else {
            Value::Float(x)
        }
    };
    // The aggregates of one pass, without copying the values (a panel computes many).
    if let Agg::Mean | Agg::Sum | Agg::Min | Agg::Max | Agg::Spread = func {
        let (mut sum, mut min, mut max) = (0.0, f64::INFINITY, f64::NEG_INFINITY);
        for p in points {
            let Some(x) = numeric(&p.1) else {
                return not_numeric();
            };
            sum += x;
            min = min.min(x);
            max = max.max(x);
        }
        return Ok(match func {
            Agg::Mean => Value::Float(sum / points.len() as f64),
            Agg::Sum => typed(sum),
            Agg::Min => typed(min),
            Agg::Max => typed(max),
            _ => typed(max - min),
        });
    }
    let nums: Vec<f64> = points.iter().filter_map(|p| numeric(&p.1)).collect();
    if nums.len() != points.len() {
        return not_numeric();
    }
    let n = nums.len() as f64;
    Ok(match func {
        Agg::Mean | Agg::Sum | Agg::Min | Agg::Max | Agg::Spread => Value::Null,
        Agg::Median => {
            let mut v = nums;
            v.sort_by(f64::total_cmp);
            let m = v.len() / 2;
            Value::Float(if v.len().is_multiple_of(2) {
                (v[m - 1] + v[m]) / 2.0
            } else {
                v[m]
            })
        }
        Agg::Stddev => {
            if nums.len() < 2 {
                Value::Null
            } else {
                let mean = nums.iter().sum::<f64>() / n;
                let var = nums.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0);
                Value::Float(var.sqrt())
            }
        }
        Agg::Percentile(p) => {
            let mut v = nums;
            v.sort_by(f64::total_cmp);
            // InfluxDB: the value at rank floor(n * p / 100 + 0.5), 1-based.
            let rank = (v.len() as f64 * p / 100.0 + 0.5).floor() as i64 - 1;
            match usize::try_from(rank).ok().and_then(|r| v.get(r)) {
                Some(x) => typed(*x),
                None => Value::Null,
            }
        }
        Agg::Count | Agg::First | Agg::Last => Value::Null,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::influxql::parse_query;
    use crate::line;

    const S: i64 = 1_000_000_000;

    fn setup() -> (tempfile::TempDir, Catalog, TeamName) {
        let dir = tempfile::tempdir().unwrap();
        let catalog = Catalog::new(dir.path());
        let team: TeamName = "shop".parse().unwrap();
        let db = catalog.create(&team, "telegraf").unwrap();
        let body = "\
cpu,host=a,cpu=total usage=10 0
cpu,host=a,cpu=total usage=20 10000000000
cpu,host=a,cpu=total usage=30 20000000000
cpu,host=b,cpu=total usage=1 0
cpu,host=b,cpu=total usage=3 20000000000
net,host=a bytes=100i 0
net,host=a bytes=400i 10000000000
net,host=a bytes=100i 20000000000
";
        db.write(&line::parse(body, Precision::Nanoseconds, 0).unwrap())
            .unwrap();
        (dir, catalog, team)
    }

    fn query(catalog: &Catalog, team: &TeamName, q: &str) -> serde_json::Value {
        let st = parse_query(q).unwrap_or_else(|e| panic!("{q}: {e}"));
        let cx = Context {
            team,
            db: Some("telegraf"),
            epoch: Some(Precision::Seconds),
            now_ns: 100 * S,
        };
        serde_json::to_value(execute(catalog, &st, &cx)).unwrap()
    }

    fn query_at(catalog: &Catalog, team: &TeamName, q: &str, now_ns: i64) -> serde_json::Value {
        let st = parse_query(q).unwrap_or_else(|e| panic!("{q}: {e}"));
        let cx = Context {
            team,
            db: Some("telegraf"),
            epoch: Some(Precision::Seconds),
            now_ns,
        };
        serde_json::to_value(execute(catalog, &st, &cx)).unwrap()
    }

    /// Two hours of two hosts every 10 s, with a gap, rolled up; answers from the rollups
    /// equal those from the raw values, and after the raw values expired the same query on
    /// `autogen` is answered from the rollups, unchanged.
    #[test]
    fn rollups_answer_as_the_raw_values_did_after_these_expired() {
        let dir = tempfile::tempdir().unwrap();
        let catalog = Catalog::new(dir.path());
        let team: TeamName = "shop".parse().unwrap();
        let db = catalog.create(&team, "telegraf").unwrap();
        let t0 = 1_700_000_000 * S - (1_700_000_000 * S).rem_euclid(3600 * S);
        let mut body = String::new();
        for i in 0..720i64 {
            for (h, host) in ["a", "b"].iter().enumerate() {
                if *host == "b" && (100..160).contains(&i) {
                    continue;
                }
                let u = ((i * 7 + h as i64 * 13) % 80) as f64 * 0.25;
                let n = (i * 3 + h as i64) % 50;
                body.push_str(&format!(
                    "cpu,host={host} usage={u},procs={n}i {}\n",
                    t0 + i * 10 * S
                ));
            }
        }
        db.write(&line::parse(&body, Precision::Nanoseconds, 0).unwrap())
            .unwrap();
        let end = t0 + 7200 * S;
        let now = end + 60 * S;
        assert_eq!(
            db.roll_up(now, std::time::Duration::from_secs(60)).unwrap(),
            24
        );
        let range = format!(
            "time >= {}ms and time < {}ms",
            t0 / 1_000_000,
            end / 1_000_000
        );
        let select = |rp: &str, every: &str| {
            format!(
                r#"SELECT mean("usage"), count("usage"), sum("procs"), min("usage"), max("procs"), first("usage"), last("procs"), spread("usage"), non_negative_derivative(max("procs"), 1m) FROM {rp}"cpu" WHERE {range} GROUP BY time({every}), "host" fill(null)"#
            )
        };
        for every in ["5m", "15m", "1h"] {
            let raw = query_at(&catalog, &team, &select("", every), now);
            assert!(raw["results"][0]["series"][1]["values"].is_array(), "{raw}");
            assert_eq!(
                query_at(&catalog, &team, &select(r#""rollup_5m"."#, every), now),
                raw,
                "GROUP BY time({every})"
            );
        }
        let before = query_at(&catalog, &team, &select("", "15m"), now);

        // Raw values kept an hour: the first hour goes, its rollups stay.
        let later = end + 30 * 60 * S;
        db.set_retention(RAW_POLICY, 3600 * S, later).unwrap();
        let raw_only = query_at(
            &catalog,
            &team,
            &format!(r#"SELECT count("usage") FROM "cpu" WHERE {range}"#),
            later,
        );
        assert_eq!(
            raw_only["results"][0]["series"][0]["values"][0][1],
            serde_json::json!(360),
            "without GROUP BY time only the raw values answer: {raw_only}"
        );
        assert_eq!(
            query_at(&catalog, &team, &select("", "15m"), later),
            before,
            "the expired hour comes from the rollups"
        );

        // What rollups cannot answer says so.
        for (what, every) in [(r#"median("usage")"#, "5m"), (r#"mean("usage")"#, "1m")] {
            let refused = query_at(
                &catalog,
                &team,
                &format!(
                    r#"SELECT {what} FROM "rollup_5m"."cpu" WHERE {range} GROUP BY time({every})"#
                ),
                later,
            );
            assert!(
                refused["results"][0]["error"]
                    .as_str()
                    .is_some_and(|e| e.contains("5-minute aggregates")),
                "{refused}"
            );
        }

        let policies = query_at(&catalog, &team, "SHOW RETENTION POLICIES", later);
        assert_eq!(
            policies["results"][0]["series"][0]["values"],
            serde_json::json!([
                ["autogen", "1h0m0s", "168h0m0s", 1, true],
                ["rollup_5m", "0s", "168h0m0s", 1, false]
            ])
        );
        let altered = query_at(
            &catalog,
            &team,
            r#"ALTER RETENTION POLICY "rollup_5m" ON "telegraf" DURATION 400d; CREATE DATABASE "telegraf" WITH DURATION 2h"#,
            later,
        );
        assert_eq!(
            altered["results"][1]["error"],
            "retention policy conflicts with an existing policy"
        );
        assert_eq!(db.retention().rollup_ns, 400 * 86_400 * S);
    }

    #[test]
    fn grafana_panel_mean_by_host() {
        let (_d, c, t) = setup();
        let r = query(
            &c,
            &t,
            r#"SELECT mean("usage") FROM "cpu" WHERE time >= 0ms and time <= 29999ms GROUP BY time(10s), "host" fill(null)"#,
        );
        let series = &r["results"][0]["series"];
        assert_eq!(series[0]["tags"]["host"], "a");
        assert_eq!(series[0]["columns"], serde_json::json!(["time", "mean"]));
        assert_eq!(
            series[0]["values"],
            serde_json::json!([[0, 10], [10, 20], [20, 30]])
        );
        assert_eq!(
            series[1]["values"],
            serde_json::json!([[0, 1], [10, null], [20, 3]])
        );
        let r = query(
            &c,
            &t,
            r#"SELECT mean("usage") FROM "cpu" WHERE "host" = 'b' AND time >= 0ms and time <= 29999ms GROUP BY time(10s) fill(linear)"#,
        );
        assert_eq!(
            r["results"][0]["series"][0]["values"],
            serde_json::json!([[0, 1], [10, 2], [20, 3]])
        );
        let r = query(
            &c,
            &t,
            r#"SELECT mean("usage") FROM "cpu" WHERE "host" = 'b' AND time >= 0ms and time <= 29999ms GROUP BY time(10s) fill(none)"#,
        );
        assert_eq!(
            r["results"][0]["series"][0]["values"],
            serde_json::json!([[0, 1], [20, 3]])
        );
        let r = query(
            &c,
            &t,
            r#"SELECT max("usage"), count("usage"), percentile("usage", 50) FROM "cpu" WHERE "host" =~ /^(a|b)$/"#,
        );
        assert_eq!(
            r["results"][0]["series"][0]["columns"],
            serde_json::json!(["time", "max", "count", "percentile"])
        );
        assert_eq!(
            r["results"][0]["series"][0]["values"][0],
            serde_json::json!([0, 30, 5, 10])
        );
    }

    #[test]
    fn counter_panel_non_negative_derivative() {
        let (_d, c, t) = setup();
        let r = query(
            &c,
            &t,
            r#"SELECT non_negative_derivative(mean("bytes"), 1s) FROM "net" WHERE time >= 0ms and time <= 29999ms GROUP BY time(10s) fill(null)"#,
        );
        assert_eq!(
            r["results"][0]["series"][0]["values"],
            serde_json::json!([[10, 30]])
        );
        let r = query(&c, &t, r#"SELECT derivative("bytes", 10s) FROM "net""#);
        assert_eq!(
            r["results"][0]["series"][0]["values"],
            serde_json::json!([[10, 300], [20, -300]])
        );
    }

    #[test]
    fn raw_selection_and_show_statements() {
        let (_d, c, t) = setup();
        let r = query(
            &c,
            &t,
            r#"SELECT * FROM "cpu" WHERE host = 'b' ORDER BY time DESC LIMIT 1"#,
        );
        assert_eq!(
            r["results"][0]["series"][0]["columns"],
            serde_json::json!(["time", "cpu", "host", "usage"])
        );
        assert_eq!(
            r["results"][0]["series"][0]["values"],
            serde_json::json!([[20, "total", "b", 3]])
        );
        let r = query(&c, &t, "SHOW MEASUREMENTS; SHOW TAG VALUES FROM cpu WITH KEY = host; SHOW FIELD KEYS FROM net; SHOW DATABASES");
        assert_eq!(
            r["results"][0]["series"][0]["values"],
            serde_json::json!([["cpu"], ["net"]])
        );
        assert_eq!(
            r["results"][1]["series"][0]["values"],
            serde_json::json!([["host", "a"], ["host", "b"]])
        );
        assert_eq!(
            r["results"][2]["series"][0]["values"],
            serde_json::json!([["bytes", "integer"]])
        );
        assert_eq!(
            r["results"][3]["series"][0]["values"],
            serde_json::json!([["telegraf"]])
        );
    }

    #[test]
    fn errors_are_answers_and_stop_the_rest() {
        let (_d, c, t) = setup();
        let r = query(&c, &t, "SELECT mean(usage), usage FROM cpu; SHOW DATABASES");
        assert_eq!(
            r["results"][0]["error"],
            "mixing aggregate and non-aggregate queries is not supported"
        );
        assert!(r["results"].get(1).is_none());
        let r = query(&c, &t, "SHOW MEASUREMENTS ON nope");
        assert_eq!(r["results"][0]["error"], "database not found: \"nope\"");
        let r = query(
            &c,
            &t,
            "SELECT mean(usage) FROM cpu WHERE time > now() - 1h OR host = 'a'",
        );
        assert!(r["results"][0]["error"]
            .as_str()
            .unwrap()
            .contains("under OR"));
    }

    #[test]
    fn the_peng_database_shows_a_team_only_its_own_series() {
        let dir = tempfile::tempdir().unwrap();
        let own = Arc::new(Tsdb::open(&dir.path().join("metrics")).unwrap());
        let body = "\
sensor,team=shop,service=web,stage=prod,sensor=up,instance=0 ok=true,latency_ms=3 0
sensor,team=rival,service=vault,stage=prod,sensor=up,instance=0 ok=false,latency_ms=9 0
instance_usage,team=rival,service=vault,stage=prod,instance=0 cpu_seconds=1 0
";
        own.write(&line::parse(body, Precision::Nanoseconds, 0).unwrap())
            .unwrap();
        let catalog = Catalog::with_own(&dir.path().join("influx"), own);
        let shop: TeamName = "shop".parse().unwrap();
        let ask = |q: &str| {
            let cx = Context {
                team: &shop,
                db: Some(OWN_DATABASE),
                epoch: Some(Precision::Seconds),
                now_ns: 100 * S,
            };
            serde_json::to_value(execute(&catalog, &parse_query(q).unwrap(), &cx)).unwrap()
        };
        let r = ask("SHOW DATABASES; SHOW MEASUREMENTS; SELECT * FROM sensor; SHOW TAG VALUES FROM sensor WITH KEY = service; SELECT * FROM sensor WHERE team = 'rival'");
        assert_eq!(
            r["results"][0]["series"][0]["values"],
            serde_json::json!([["peng"]])
        );
        assert_eq!(
            r["results"][1]["series"][0]["values"],
            serde_json::json!([["sensor"]])
        );
        let rows = &r["results"][2]["series"][0]["values"];
        assert_eq!(rows.as_array().map(Vec::len), Some(1), "{r}");
        assert!(
            !r.to_string().contains("rival") && !r.to_string().contains("vault"),
            "{r}"
        );
        let r = ask("SELECT * FROM instance_usage; SHOW FIELD KEYS FROM instance_usage");
        assert!(r["results"][0]["series"].is_null(), "{r}");
        assert!(r["results"][1]["series"].is_null(), "{r}");
        let r = ask("CREATE DATABASE peng");
        assert!(r["results"][0]["error"]
            .as_str()
            .unwrap()
            .contains("read-only"));
        assert!(matches!(
            catalog.require(&shop, OWN_DATABASE),
            Err(CatalogError::ReadOnly)
        ));
    }

    proptest::proptest! {
        /// Any statement the parser accepts runs to an answer or an error, never a panic,
        /// with extreme intervals, offsets, bounds and fills among them.
        #[test]
        fn statements_never_panic(
            func in proptest::sample::select(vec!["mean", "max", "count", "percentile", "derivative", "non_negative_derivative", "spread", "stddev", "first"]),
            every in proptest::sample::select(vec!["1ns", "7s", "10s", "1h", "9223372036854775807ns", "100000w"]),
            offset in proptest::sample::select(vec!["0s", "-5s", "3s", "-9223372036854775807ns"]),
            lo in proptest::sample::select(vec!["-9223372036854775807", "0", "5s", "now() - 1h"]),
            hi in proptest::sample::select(vec!["9223372036854775807", "25s", "now()", "now() + 100000w"]),
            fill in proptest::sample::select(vec!["null", "none", "previous", "linear", "0", "-1.5"]),
            sub in proptest::bool::ANY,
        ) {
            let (_d, c, t) = setup();
            let arg = match func {
                "percentile" => "usage, 90".to_string(),
                "derivative" | "non_negative_derivative" => "mean(usage), 1s".to_string(),
                _ => "usage".to_string(),
            };
            let inner = format!("SELECT {func}({arg}) FROM cpu WHERE time >= {lo} AND time <= {hi} GROUP BY time({every}, {offset}), host fill({fill})");
            let q = if sub { format!("SELECT max({func}) FROM ({inner}) GROUP BY host") } else { inner };
            if let Ok(st) = parse_query(&q) {
                let cx = Context { team: &t, db: Some("telegraf"), epoch: None, now_ns: 100 * S };
                let _ = execute(&c, &st, &cx);
            }
        }
    }

    /// Values of several series put in time order keep their series, and of equal times the
    /// earlier series' value comes first; one series' values are taken as they are.
    #[test]
    fn points_of_several_series_sort_with_their_series() {
        let f = |t: i64, x: f64| (t, FieldValue::Float(x));
        let mut one = Points::default();
        one.add(vec![f(1, 1.0), f(2, 2.0)], 7);
        one.add(Vec::new(), 8);
        one.sort();
        assert_eq!(one.series, vec![(0, 7)]);
        let mut p = Points::default();
        p.add(vec![f(1, 1.0), f(3, 3.0), f(5, 5.0)], 0);
        p.add(vec![f(2, 20.0), f(3, 30.0)], 1);
        p.add(vec![f(0, 100.0), f(6, 600.0)], 2);
        p.sort();
        let got: Vec<(i64, f64, usize)> = p
            .iter()
            .map(|(t, v, s)| (t, numeric(v).unwrap(), s))
            .collect();
        assert_eq!(
            got,
            vec![
                (0, 100.0, 2),
                (1, 1.0, 0),
                (2, 20.0, 1),
                (3, 3.0, 0),
                (3, 30.0, 1),
                (5, 5.0, 0),
                (6, 600.0, 2)
            ]
        );
    }

    #[test]
    fn another_team_sees_nothing_of_the_database() {
        let (_d, c, _t) = setup();
        let other: TeamName = "other".parse().unwrap();
        let r = query(&c, &other, "SHOW DATABASES; SELECT * FROM cpu");
        assert_eq!(
            r["results"][0]["series"][0]["values"],
            serde_json::Value::Null
        );
        assert_eq!(r["results"][1]["error"], "database not found: \"telegraf\"");
    }
}
