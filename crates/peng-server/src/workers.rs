//! Background workers that carry data between the parts: instance output into the log
//! pipeline, alert transitions into the state store and the audit log, and retention.

use std::time::Duration;

use peng_core::{now_ns, ServiceId, StageName};
use peng_logs::LogRecord;
use peng_monitor::{AlertEvent, AlertRecord, AlertState, Endpoint, InstanceDirectory};
use peng_provision::driver::process::{InstanceOutput, InstanceState, OutputStream, ProcessDriver};
use peng_spec::Severity;
use peng_state::{AlertRow, NewAudit, State};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::app::App;

/// How long sensor results are kept in the metrics store.
pub const SENSOR_HISTORY: Duration = Duration::from_secs(30 * 86_400);

/// The process driver as the monitor's view of where instances listen.
pub struct Directory(pub ProcessDriver);

impl InstanceDirectory for Directory {
    fn endpoints(&self, service: &ServiceId, stage: &StageName) -> Vec<Endpoint> {
        self.0
            .instances(Some(service))
            .into_iter()
            .filter(|i| &i.stage == stage)
            .map(|i| Endpoint {
                instance: i.index,
                host: "127.0.0.1".to_string(),
                port: i.port,
                running: i.state == InstanceState::Running,
            })
            .collect()
    }
}

/// Every line an instance writes becomes a log record of its team's stream.
pub async fn forward_instance_output(
    app: App,
    mut rx: mpsc::Receiver<InstanceOutput>,
    drain: CancellationToken,
) {
    let received = peng_core::metrics::component::received("instance_output");
    let mut batch = Vec::with_capacity(512);
    loop {
        let first = tokio::select! {
            o = rx.recv() => o,
            _ = drain.cancelled() => rx.try_recv().ok(),
        };
        let Some(first) = first else { return };
        batch.push(record_of(first));
        while batch.len() < 512 {
            match rx.try_recv() {
                Ok(o) => batch.push(record_of(o)),
                Err(_) => break,
            }
        }
        received.add(batch.len() as u64);
        // A full queue drops and counts inside the pipeline; an instance is never blocked.
        let _ = app.pipeline.try_submit(std::mem::take(&mut batch));
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

pub async fn alerts_from_state(state: &State) -> anyhow::Result<Vec<AlertRecord>> {
    let mut out = Vec::new();
    for row in state.alerts().await? {
        let (Some(alert_state), Ok(stage)) =
            (AlertState::parse(&row.state), StageName::parse(&row.stage))
        else {
            tracing::warn!(service = %row.service, alert = %row.alert, "skipping an unreadable stored alert state");
            continue;
        };
        let severity = match row.severity.as_str() {
            "critical" => Severity::Critical,
            "warning" => Severity::Warning,
            _ => Severity::Info,
        };
        out.push(AlertRecord {
            service: row.service,
            stage,
            alert: row.alert,
            state: alert_state,
            since_ns: row.since_ns.unwrap_or(0),
            started_at_ns: row.started_at_ns,
            value: row.value,
            severity,
            escalated: row.escalated,
            last_message: row.message,
        });
    }
    Ok(out)
}

/// Alert transitions are persisted (so a restart keeps firing alerts firing) and audited.
pub async fn persist_alert_events(
    app: App,
    mut rx: mpsc::Receiver<AlertEvent>,
    drain: CancellationToken,
) {
    loop {
        let event = tokio::select! {
            e = rx.recv() => e,
            _ = drain.cancelled() => rx.try_recv().ok(),
        };
        let Some(event) = event else { return };
        let r = &event.record;
        let row = AlertRow {
            service: r.service.clone(),
            stage: r.stage.to_string(),
            alert: r.alert.clone(),
            state: r.state.as_str().to_string(),
            since_ns: Some(r.since_ns),
            started_at_ns: r.started_at_ns,
            value: r.value,
            severity: r.severity.as_str().to_string(),
            escalated: r.escalated,
            message: r.last_message.clone(),
        };
        // A destroyed service's alerts resolve as it goes; their state is not kept.
        let live =
            matches!(app.state.service(&r.service).await, Ok(Some(s)) if s.destroyed_at.is_none());
        if live {
            if let Err(error) = app.state.put_alert(&row).await {
                tracing::error!(%error, alert = %r.alert, "cannot persist alert state");
            }
        }
        let audit = NewAudit {
            actor: "peng".to_string(),
            team: Some(r.service.team.to_string()),
            action: format!("alert.{}", event.transition.as_str()),
            target: format!("{}/{}/{}", r.service, r.stage, r.alert),
            detail: r.last_message.clone(),
        };
        if let Err(error) = app.state.audit(audit).await {
            tracing::error!(%error, "cannot write audit entry");
        }
    }
}

/// Once a minute: deletes log messages past their service's retention and sensor history past
/// `SENSOR_HISTORY`, and moves the metrics store's write-ahead log into compressed blocks (so a
/// restart replays at most a minute of it). Once an hour the metrics store's blocks are
/// compacted, so that many small flushes do not leave many small files.
pub async fn retention_loop(app: App, cancel: CancellationToken) {
    let mut tick = tokio::time::interval(Duration::from_secs(60));
    let mut ticks: u64 = 0;
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tick.tick() => {}
        }
        ticks += 1;
        if let Err(error) = enforce_retention(&app).await {
            tracing::warn!(%error, "retention run failed");
        }
        let tsdb = app.tsdb.clone();
        let compact = ticks.is_multiple_of(60);
        let maintained = tokio::task::spawn_blocking(move || {
            tsdb.flush()?;
            if compact {
                tsdb.compact()?;
            }
            Ok::<_, peng_tsdb::TsdbError>(())
        })
        .await;
        match maintained {
            Ok(Ok(())) => {}
            Ok(Err(error)) => tracing::warn!(%error, "metrics store maintenance failed"),
            Err(error) => tracing::warn!(%error, "metrics store maintenance task failed"),
        }
    }
}

pub async fn enforce_retention(app: &App) -> anyhow::Result<u64> {
    let policies: Vec<_> = app
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
    let logs = app.logs.clone();
    let tsdb = app.tsdb.clone();
    let now = now_ns();
    let deleted = tokio::task::spawn_blocking(move || -> anyhow::Result<u64> {
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

/// Keeps databases as declared: every `reconcile_every` the servers' baseline, accounts and
/// grants are compared and repaired (drift); every `sample_every` the statistics feed the
/// `db.*` sensors; once a minute due backups are taken.
pub async fn database_loop(
    app: App,
    reconcile_every: Duration,
    sample_every: Duration,
    cancel: CancellationToken,
) {
    let mut reconcile = tokio::time::interval(reconcile_every);
    let mut sample = tokio::time::interval(sample_every);
    let mut backups = tokio::time::interval(Duration::from_secs(60));
    for tick in [&mut reconcile, &mut sample, &mut backups] {
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    }
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = reconcile.tick() => {
                if let Err(e) = app.databases.reconcile(&app.state).await {
                    tracing::warn!(error = %e.message, "database reconcile failed");
                }
            }
            _ = sample.tick() => {
                app.databases.sample(&app.state, &app.monitor).await;
            }
            _ = backups.tick() => {
                match crate::services::live_specs(&app).await {
                    Ok(specs) => app.databases.scheduled_backups(&app.state, &specs).await,
                    Err(e) => tracing::warn!(error = %e.message, "cannot list services for backups"),
                }
            }
        }
    }
}

/// Runs `sql` sensors as the read-only account of the service's database.
pub struct SqlSensors {
    pub databases: std::sync::Arc<crate::databases::Databases>,
    pub state: peng_state::State,
}

impl peng_monitor::SqlRunner for SqlSensors {
    fn query_value(
        &self,
        service: &peng_core::ServiceId,
        stage: &peng_core::StageName,
        query: &str,
        timeout: Duration,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<f64, String>> + Send + '_>> {
        let (service, stage, query) = (service.clone(), stage.clone(), query.to_string());
        Box::pin(async move {
            match tokio::time::timeout(
                timeout,
                self.databases
                    .query_value(&self.state, &service, &stage, &query),
            )
            .await
            {
                Ok(result) => result,
                Err(_) => Err(format!("no answer within {timeout:?}")),
            }
        })
    }
}

/// The built-in sensor that says whether a stage's instances were killed for memory.
pub const OOM_SENSOR: &str = "instance.oom";

/// How long an OOM kill keeps `instance.oom` failing.
const OOM_WINDOW: Duration = Duration::from_secs(600);

/// How often instances' usage is recorded.
pub const USAGE_EVERY: Duration = Duration::from_secs(10);

/// The tsdb measurement of instances' usage: tags `team, service, stage, instance`, fields
/// `cpu_seconds` (cumulative), `memory_bytes`, `oom_kills` (cumulative).
pub const USAGE_MEASUREMENT: &str = "instance_usage";

type InstanceKey = (ServiceId, StageName, u32);

/// When processes of each stage were killed for memory, from two sources that must not count
/// one kill twice: the supervisors' notices (an instance that ended for memory, known at once)
/// and the OOM-kill counts of the instances' cgroups (every kill, also of a process that did
/// not end its instance, seen at the next sample).
#[derive(Default)]
struct OomWatch {
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

/// Every `USAGE_EVERY`: each running instance's CPU seconds and memory go to the metrics store,
/// and with limits on, every stage's `instance.oom` sensor runs: failing while a process of the
/// stage was killed for memory within the last 10 minutes, its value how many were. Between the
/// samples, the supervisors' notices of an instance killed for memory are audited and fail its
/// stage's `instance.oom` at once. Runs until `drain`, then handles the notices still queued.
pub async fn usage_loop(
    app: App,
    mut notices: mpsc::Receiver<peng_provision::driver::process::Notice>,
    drain: CancellationToken,
) {
    let mut tick = tokio::time::interval(USAGE_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut oom = OomWatch::default();
    loop {
        tokio::select! {
            notice = notices.recv() => match notice {
                Some(notice) => on_notice(&app, &mut oom, notice).await,
                None => return,
            },
            _ = drain.cancelled() => {
                while let Ok(notice) = notices.try_recv() {
                    on_notice(&app, &mut oom, notice).await;
                }
                return;
            }
            _ = tick.tick() => sample(&app, &mut oom).await,
        }
    }
}

async fn on_notice(app: &App, oom: &mut OomWatch, notice: peng_provision::driver::process::Notice) {
    use peng_provision::driver::process::Notice;
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
        actor: "peng".to_string(),
        team: Some(service.team.to_string()),
        action: "instance.oom".to_string(),
        target: service.to_string(),
        detail: text.clone(),
    };
    if let Err(error) = app.state.audit(audit).await {
        tracing::error!(%error, "cannot write audit entry");
    }
    let n = oom.recent(&service, &stage, now_ns());
    app.monitor.record_external(
        &service,
        &stage,
        OOM_SENSOR,
        false,
        &[("value", n as f64)],
        Some(text),
    );
}

async fn sample(app: &App, oom: &mut OomWatch) {
    let driver = app.driver.clone();
    let Ok(usage) = tokio::task::spawn_blocking(move || driver.usage(None)).await else {
        return;
    };
    let now = now_ns();
    let points: Vec<peng_tsdb::Point> = usage.iter().map(|u| usage_point(u, now)).collect();
    if !points.is_empty() {
        let tsdb = app.tsdb.clone();
        match tokio::task::spawn_blocking(move || tsdb.write(&points)).await {
            Ok(Ok(())) => {}
            Ok(Err(error)) => tracing::warn!(%error, "cannot store instance usage"),
            Err(error) => tracing::warn!(%error, "cannot store instance usage"),
        }
    }
    if app.driver.cgroups().is_none() {
        return;
    }
    for u in &usage {
        oom.observe(
            (u.service.clone(), u.stage.clone(), u.index),
            u.oom_kills,
            now,
        );
    }
    let Ok(specs) = crate::services::live_specs(app).await else {
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
            app.monitor.record_external(
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
    let known: std::collections::HashSet<InstanceKey> = app
        .driver
        .instances(None)
        .into_iter()
        .map(|i| (i.service, i.stage, i.index))
        .collect();
    oom.retain(&known);
}

fn usage_point(u: &peng_provision::driver::process::InstanceUsage, at_ns: i64) -> peng_tsdb::Point {
    use peng_tsdb::FieldValue;
    peng_tsdb::Point {
        measurement: USAGE_MEASUREMENT.to_string(),
        tags: std::collections::BTreeMap::from([
            ("team".to_string(), u.service.team.to_string()),
            ("service".to_string(), u.service.service.to_string()),
            ("stage".to_string(), u.stage.to_string()),
            ("instance".to_string(), u.index.to_string()),
        ]),
        fields: std::collections::BTreeMap::from([
            ("cpu_seconds".to_string(), FieldValue::Float(u.cpu_seconds)),
            (
                "memory_bytes".to_string(),
                FieldValue::Float(u.memory_bytes as f64),
            ),
            (
                "oom_kills".to_string(),
                FieldValue::Float(u.oom_kills as f64),
            ),
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
