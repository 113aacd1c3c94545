//! The work of the background loops, one step at a time: what a loop in `workers` does on each
//! tick or message. Instance output into the log pipeline, alert transitions into the state
//! and the audit log, retention, the metrics store's upkeep, database reconcile, statistics
//! and scheduled backups, and instances' usage with the `instance.oom` sensor.

use std::time::Duration;

use peng_core::{now_ns, ServiceId, StageName};
use peng_costs::usage::USAGE_MEASUREMENT;
use peng_logs::LogRecord;
use peng_monitor::AlertEvent;
use peng_provision::driver::process::{InstanceOutput, Notice, OutputStream};
use peng_state::{AlertRow, AuditAction, NewAudit};

use super::{blocking, Caller, Ops, Parts, Result};

/// How long sensor results are kept in the metrics store.
pub const SENSOR_HISTORY: Duration = Duration::from_secs(30 * 86_400);

/// The built-in sensor that says whether a stage's instances were killed for memory.
pub const OOM_SENSOR: &str = "instance.oom";

/// How long an OOM kill keeps `instance.oom` failing.
/// Longest one database's rollup pass may run in one upkeep; the rest waits for the next.
const ROLLUP_BUDGET: Duration = Duration::from_secs(10);
const OOM_WINDOW: Duration = Duration::from_secs(600);

impl Ops {
    /// Instance output lines become log records of their team's stream. A full pipeline
    /// drops and counts inside the pipeline: an instance is never blocked.
    pub fn submit_output(&self, lines: Vec<InstanceOutput>) {
        let records: Vec<LogRecord> = lines.into_iter().map(record_of).collect();
        let _ = self.p().pipeline.try_submit(records);
    }

    /// An alert transition is persisted (so a restart keeps firing alerts firing) and audited.
    pub async fn record_alert_event(&self, event: AlertEvent) {
        let p = self.p();
        let r = &event.record;
        let row = AlertRow {
            service: r.service.clone(),
            stage: r.stage.clone(),
            alert: r.alert.clone(),
            state: r.state,
            since_ns: Some(r.since_ns),
            started_at_ns: r.started_at_ns,
            value: r.value,
            severity: r.severity,
            escalated: r.escalated,
            message: r.last_message.clone(),
        };
        // A destroyed service's alerts resolve as it goes; their state is not kept.
        let live =
            matches!(p.state.service(&r.service).await, Ok(Some(s)) if s.destroyed_at.is_none());
        if live {
            if let Err(error) = p.state.put_alert(&row).await {
                tracing::error!(%error, alert = %r.alert, "cannot persist alert state");
            }
        }
        let audit = NewAudit {
            actor: Caller::System.actor(),
            team: Some(r.service.team.to_string()),
            action: AuditAction::of_alert(event.transition),
            target: format!("{}/{}/{}", r.service, r.stage, r.alert),
            detail: r.last_message.clone(),
        };
        if let Err(error) = p.state.audit(audit).await {
            tracing::error!(%error, "cannot write audit entry");
        }
    }

    /// Deletes log messages past their service's retention and sensor history past
    /// `SENSOR_HISTORY`; returns how many messages went.
    pub async fn enforce_retention(&self) -> Result<u64> {
        let p = self.p();
        let policies: Vec<_> = p
            .state
            .services(None)
            .await?
            .into_iter()
            .map(|row| {
                (
                    row.id.team,
                    row.id.service.to_string(),
                    Duration::from_nanos(row.retention_ns.max(0) as u64),
                )
            })
            .collect();
        let logs = p.logs.clone();
        let tsdb = p.tsdb.clone();
        let now = now_ns();
        let deleted = blocking("retention", move || -> Result<u64> {
            let n = logs.apply_retention(&policies, Duration::from_secs(7 * 86_400), now)?;
            tsdb.delete_before(now - SENSOR_HISTORY.as_nanos() as i64)?;
            Ok(n)
        })
        .await??;
        if deleted > 0 {
            tracing::info!(deleted, "log retention removed messages");
        }
        Ok(deleted)
    }

    /// Moves the metrics store's write-ahead log into compressed blocks (a restart replays
    /// less); with `compact`, merges its blocks too.
    pub async fn maintain_metrics(&self, compact: bool) -> Result<()> {
        let tsdb = self.p().tsdb.clone();
        blocking("metrics upkeep", move || {
            tsdb.flush()?;
            if compact {
                tsdb.compact()?;
            }
            Ok::<_, peng_tsdb::TsdbError>(())
        })
        .await??;
        Ok(())
    }

    /// The teams' metrics databases: retention, the 5-minute rollups of what was written
    /// since the last run (at most `ROLLUP_BUDGET` per database, the rest waits for the next),
    /// write-ahead logs into blocks, merged by size tier.
    pub async fn maintain_influx(&self) -> Result<()> {
        let catalog = self.p().influx.clone();
        let now = now_ns();
        blocking("metrics databases upkeep", move || {
            for (team, db, database) in catalog.all()? {
                let run = || -> std::result::Result<(), peng_influx::CatalogError> {
                    database.apply_retention(now)?;
                    database.roll_up(now, ROLLUP_BUDGET)?;
                    database.maintain()?;
                    Ok(())
                };
                if let Err(error) = run() {
                    tracing::warn!(%team, database = %db, %error, "metrics database upkeep failed");
                }
            }
            Ok::<_, peng_influx::CatalogError>(())
        })
        .await??;
        Ok(())
    }

    /// Compacts whole every metrics database not written for `cold` since its last compaction.
    pub async fn compact_cold_influx(&self, cold: std::time::Duration) -> Result<()> {
        let catalog = self.p().influx.clone();
        blocking("compacting cold metrics databases", move || {
            for (team, db, database) in catalog.all()? {
                let started = std::time::Instant::now();
                match database.compact_if_cold(cold) {
                    Ok(true) => tracing::info!(%team, database = %db, took_ms = started.elapsed().as_millis() as u64, "compacted cold metrics database"),
                    Ok(false) => {}
                    Err(error) => {
                        tracing::warn!(%team, database = %db, %error, "compacting cold metrics database failed")
                    }
                }
            }
            Ok::<_, peng_influx::CatalogError>(())
        })
        .await??;
        Ok(())
    }

    /// Compares every database with what peng declared and repairs what differs.
    pub async fn reconcile_databases(&self) -> Result<()> {
        Ok(self.p().databases.reconcile(&self.p().state).await?)
    }

    /// Databases' statistics feed their `db.*` sensors.
    pub async fn sample_databases(&self) {
        self.p()
            .databases
            .sample(&self.p().state, &self.p().monitor)
            .await;
    }

    /// Takes the backups that are due by their files' schedules.
    pub async fn scheduled_backups(&self) -> Result<()> {
        let specs = super::services::live_specs(self.p()).await?;
        self.p()
            .databases
            .scheduled_backups(&self.p().state, &specs)
            .await;
        Ok(())
    }

    /// Records every running instance's usage, and with limits on runs every stage's
    /// `instance.oom` (see [`OomWatch`]).
    pub async fn sample_usage(&self, oom: &mut OomWatch) {
        sample(self.p(), oom).await
    }

    /// What a supervisor reported: an instance killed for memory is audited and fails its
    /// stage's `instance.oom` at once.
    pub async fn on_notice(&self, oom: &mut OomWatch, notice: Notice) {
        on_notice(self.p(), oom, notice).await
    }
}

fn record_of(o: InstanceOutput) -> LogRecord {
    peng_logs::output_line(
        o.service.team.clone(),
        o.service.service.as_str(),
        o.stage.as_str(),
        &o.index.to_string(),
        o.stream == OutputStream::Stderr,
        &o.line,
        o.ts_ns,
    )
}

type InstanceKey = (ServiceId, StageName, u32);

/// When processes of each stage were killed for memory, from two sources that must not count
/// one kill twice: the supervisors' notices (an instance that ended for memory, known at once)
/// and the OOM-kill counts of the instances' cgroups (every kill, also of a process that did
/// not end its instance, seen at the next sample).
#[derive(Default)]
pub struct OomWatch {
    /// The last count seen per instance, kept while the instance exists (a restart keeps its
    /// cgroup and its count).
    seen: std::collections::HashMap<InstanceKey, u64>,
    kills: std::collections::HashMap<(ServiceId, StageName), Vec<i64>>,
}

impl OomWatch {
    /// An instance ended for memory: counted now, and not again when its cgroup's count shows it.
    fn notice(&mut self, key: InstanceKey, at_ns: i64) {
        if let Some(count) = self.seen.get_mut(&key) {
            *count = count.saturating_add(1);
        }
        self.kills.entry((key.0, key.1)).or_default().push(at_ns);
    }

    /// The cgroups' counts at one sample.
    fn observe(&mut self, key: InstanceKey, count: u64, at_ns: i64) {
        let new = match self.seen.insert(key.clone(), count) {
            Some(before) if count >= before => count - before,
            // a new cgroup (the instance was replaced): its count starts again
            Some(_) => count,
            // the first look at this instance since peng started: counted from here on
            None => 0,
        };
        if new > 0 {
            let at = self.kills.entry((key.0, key.1)).or_default();
            at.extend(std::iter::repeat_n(at_ns, new as usize));
        }
    }

    /// Kills of the stage within `OOM_WINDOW` before `now_ns`.
    fn recent(&mut self, service: &ServiceId, stage: &StageName, now_ns: i64) -> usize {
        let cutoff = now_ns - OOM_WINDOW.as_nanos() as i64;
        let key = (service.clone(), stage.clone());
        let Some(at) = self.kills.get_mut(&key) else {
            return 0;
        };
        at.retain(|t| *t > cutoff);
        let n = at.len();
        if n == 0 {
            self.kills.remove(&key);
        }
        n
    }

    /// Forgets instances that no longer exist.
    fn retain(&mut self, known: &std::collections::HashSet<InstanceKey>) {
        self.seen.retain(|k, _| known.contains(k));
    }
}

async fn on_notice(p: &Parts, oom: &mut OomWatch, notice: Notice) {
    let Notice::OutOfMemory {
        service,
        stage,
        index,
        limit,
        at_ns,
    } = notice;
    let text =
        format!("{stage}/{index} killed: out of memory (limit {limit}); restarted with backoff");
    tracing::warn!(%service, %stage, index, %limit, "instance killed: out of memory");
    oom.notice((service.clone(), stage.clone(), index), at_ns);
    let audit = NewAudit {
        actor: Caller::System.actor(),
        team: Some(service.team.to_string()),
        action: AuditAction::InstanceOom,
        target: service.to_string(),
        detail: text.clone(),
    };
    if let Err(error) = p.state.audit(audit).await {
        tracing::error!(%error, "cannot write audit entry");
    }
    let n = oom.recent(&service, &stage, now_ns());
    p.monitor.record_external(
        &service,
        &stage,
        OOM_SENSOR,
        false,
        &[("value", n as f64)],
        Some(text),
    );
}

async fn sample(p: &Parts, oom: &mut OomWatch) {
    let driver = p.driver.clone();
    let Ok(usage) = tokio::task::spawn_blocking(move || driver.usage(None)).await else {
        return;
    };
    let now = now_ns();
    let mut points: Vec<peng_tsdb::Point> = usage.iter().map(|u| usage_point(u, now)).collect();
    points.extend(
        p.pipeline
            .take_volume()
            .into_iter()
            .map(|(team, service, n, bytes)| log_volume_point(&team, &service, n, bytes, now)),
    );
    points.extend(
        p.influx
            .take_counts()
            .into_iter()
            .map(|(team, db, counts)| metrics_volume_point(&team, &db, counts, now)),
    );
    if !points.is_empty() {
        let tsdb = p.tsdb.clone();
        match tokio::task::spawn_blocking(move || tsdb.write(&points)).await {
            Ok(Ok(())) => {}
            Ok(Err(error)) => tracing::warn!(%error, "cannot store instance usage"),
            Err(error) => tracing::warn!(%error, "cannot store instance usage"),
        }
    }
    if p.driver.cgroups().is_none() {
        return;
    }
    for u in &usage {
        oom.observe(
            (u.service.clone(), u.stage.clone(), u.index),
            u.oom_kills,
            now,
        );
    }
    let Ok(specs) = super::services::live_specs(p).await else {
        return;
    };
    for spec in specs {
        let id = spec.id();
        for stage in spec.stages.keys() {
            let n = oom.recent(&id, stage, now);
            let message = if n == 0 {
                "no process killed for memory in the last 10m".to_string()
            } else {
                format!(
                    "{n} process(es) killed for memory in the last 10m (limit {})",
                    spec.run.resources.memory
                )
            };
            p.monitor.record_external(
                &id,
                stage,
                OOM_SENSOR,
                n == 0,
                &[("value", n as f64)],
                Some(message),
            );
        }
    }
    // Instances waiting to restart keep their count: their cgroup and its OOM count stay.
    let known: std::collections::HashSet<InstanceKey> = p
        .driver
        .instances(None)
        .into_iter()
        .map(|i| (i.service, i.stage, i.index))
        .collect();
    oom.retain(&known);
}

/// What a team wrote to one of its metrics databases since the last sample.
fn metrics_volume_point(
    team: &peng_core::TeamName,
    database: &str,
    c: peng_influx::database::WriteCounts,
    at_ns: i64,
) -> peng_tsdb::Point {
    use peng_tsdb::FieldValue;
    let int = |n: u64| FieldValue::Integer(i64::try_from(n).unwrap_or(i64::MAX));
    peng_tsdb::Point {
        measurement: METRICS_VOLUME.into(),
        tags: peng_tsdb::NameMap::from([
            ("team".into(), team.to_string().into()),
            ("database".into(), database.into()),
        ]),
        fields: peng_tsdb::NameMap::from([
            ("batches".into(), int(c.batches)),
            ("values".into(), int(c.values)),
            ("bytes".into(), int(c.bytes)),
            ("refused".into(), int(c.refused)),
        ]),
        timestamp_ns: at_ns,
    }
}

/// The measurement of [`metrics_volume_point`].
pub const METRICS_VOLUME: &str = "metrics_volume";

/// Messages indexed for a team's service since the last sample (`service` is left out when
/// the senders did not name one).
fn log_volume_point(
    team: &peng_core::TeamName,
    service: &str,
    messages: u64,
    bytes: u64,
    at_ns: i64,
) -> peng_tsdb::Point {
    use peng_tsdb::FieldValue;
    let mut tags = peng_tsdb::NameMap::from([("team".into(), team.to_string().into())]);
    if !service.is_empty() {
        tags.insert("service".into(), service.into());
    }
    peng_tsdb::Point {
        measurement: LOG_VOLUME_MEASUREMENT.into(),
        tags,
        fields: peng_tsdb::NameMap::from([
            (
                "messages".into(),
                FieldValue::Integer(i64::try_from(messages).unwrap_or(i64::MAX)),
            ),
            (
                "bytes".into(),
                FieldValue::Integer(i64::try_from(bytes).unwrap_or(i64::MAX)),
            ),
        ]),
        timestamp_ns: at_ns,
    }
}

/// Where log volume goes in the platform's store (and the teams' `peng` database).
pub const LOG_VOLUME_MEASUREMENT: &str = "log_volume";

fn usage_point(u: &peng_provision::driver::process::InstanceUsage, at_ns: i64) -> peng_tsdb::Point {
    use peng_tsdb::FieldValue;
    peng_tsdb::Point {
        measurement: USAGE_MEASUREMENT.into(),
        tags: peng_tsdb::NameMap::from([
            ("team".into(), u.service.team.to_string().into()),
            ("service".into(), u.service.service.to_string().into()),
            ("stage".into(), u.stage.to_string().into()),
            ("instance".into(), u.index.to_string().into()),
        ]),
        fields: peng_tsdb::NameMap::from([
            ("cpu_seconds".into(), FieldValue::Float(u.cpu_seconds)),
            (
                "memory_bytes".into(),
                FieldValue::Float(u.memory_bytes as f64),
            ),
            ("oom_kills".into(), FieldValue::Float(u.oom_kills as f64)),
        ]),
        timestamp_ns: at_ns,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(index: u32) -> InstanceKey {
        (
            ServiceId::parse("books/shelf").expect("id"),
            StageName::parse("production").expect("stage"),
            index,
        )
    }

    #[test]
    fn an_oom_kill_counts_once_whether_noticed_sampled_or_both() {
        let (svc, stage) = (key(0).0, key(0).1);
        let mut w = OomWatch::default();
        let t = 1_000_000_000_000;
        // first look: what happened before peng watched is not counted
        w.observe(key(0), 3, t);
        assert_eq!(w.recent(&svc, &stage, t), 0);
        // the instance ends for memory: noticed at once, and its cgroup's count then shows it
        w.notice(key(0), t + 1);
        assert_eq!(w.recent(&svc, &stage, t + 1), 1);
        w.observe(key(0), 4, t + 2);
        assert_eq!(w.recent(&svc, &stage, t + 2), 1);
        // a child killed without ending the instance: seen by the count alone
        w.observe(key(0), 5, t + 3);
        assert_eq!(w.recent(&svc, &stage, t + 3), 2);
        // another instance of the stage, replaced (a new cgroup whose count starts again)
        w.observe(key(1), 7, t + 4);
        w.observe(key(1), 1, t + 5);
        assert_eq!(w.recent(&svc, &stage, t + 5), 3);
        // ten minutes later they are forgotten
        let later = t + 5 + OOM_WINDOW.as_nanos() as i64;
        assert_eq!(w.recent(&svc, &stage, later), 0);
    }

    #[test]
    fn a_notice_before_the_first_sample_is_counted_once() {
        let (svc, stage) = (key(0).0, key(0).1);
        let mut w = OomWatch::default();
        w.notice(key(0), 10);
        w.observe(key(0), 1, 20);
        assert_eq!(w.recent(&svc, &stage, 30), 1);
        w.retain(&std::collections::HashSet::new());
        assert!(w.seen.is_empty());
    }
}
