//! The background loops: when each step of `ops::maintenance` runs. Carriers (instance
//! output, alert transitions, supervisors' notices) run until everything that feeds them has
//! stopped, then drain; the periodic loops stop when cancelled.

use std::time::Duration;

use peng_costs::usage::USAGE_EVERY;
use peng_monitor::AlertEvent;
use peng_provision::driver::process::{InstanceOutput, Notice};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::ops::maintenance::OomWatch;
use crate::ops::Ops;

/// Every line an instance writes becomes a log record of its team's stream, in batches.
pub async fn forward_instance_output(
    ops: Ops,
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
        batch.push(first);
        while batch.len() < 512 {
            match rx.try_recv() {
                Ok(o) => batch.push(o),
                Err(_) => break,
            }
        }
        received.add(batch.len() as u64);
        ops.submit_output(std::mem::take(&mut batch));
    }
}

/// Alert transitions, in order, into the state and the audit log.
pub async fn persist_alert_events(
    ops: Ops,
    mut rx: mpsc::Receiver<AlertEvent>,
    drain: CancellationToken,
) {
    loop {
        let event = tokio::select! {
            e = rx.recv() => e,
            _ = drain.cancelled() => rx.try_recv().ok(),
        };
        let Some(event) = event else { return };
        ops.record_alert_event(event).await;
    }
}

/// Once a minute: retention of logs and sensor history, and the metrics store's write-ahead
/// log into compressed blocks (so a restart replays at most a minute of it); the same for the
/// teams' metrics databases, with their retention and rollups, whose block files are merged
/// by size tier after each flush. Once an hour the platform store's blocks are compacted, so
/// that many small flushes do not leave many files.
pub async fn retention_loop(ops: Ops, cancel: CancellationToken) {
    let mut tick = tokio::time::interval(Duration::from_secs(60));
    let mut ticks: u64 = 0;
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tick.tick() => {}
        }
        ticks += 1;
        if let Err(error) = ops.enforce_retention().await {
            tracing::warn!(%error, "retention run failed");
        }
        if let Err(error) = ops.maintain_metrics(ticks.is_multiple_of(60)).await {
            tracing::warn!(%error, "metrics store maintenance failed");
        }
        if let Err(error) = ops.maintain_influx().await {
            tracing::warn!(%error, "metrics databases upkeep failed");
        }
    }
}

/// Compacts each metrics database whole once it has not been written for `cold` (see
/// `Database::compact_if_cold`), looking every quarter of `cold` (1 s to 1 min). Zero: never.
pub async fn cold_compaction_loop(ops: Ops, cold: Duration, cancel: CancellationToken) {
    if cold.is_zero() {
        return;
    }
    let mut tick =
        tokio::time::interval((cold / 4).clamp(Duration::from_secs(1), Duration::from_secs(60)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tick.tick() => {}
        }
        if let Err(error) = ops.compact_cold_influx(cold).await {
            tracing::warn!(%error, "compacting cold metrics databases failed");
        }
    }
}

/// Keeps databases as declared, in three loops of their own so that a long one (a backup
/// verified on the scratch server, a reconcile of many databases) never delays the others:
/// every `reconcile_every` drift is found and repaired; every `sample_every` the statistics
/// feed the `db.*` sensors; once a minute due backups are taken.
pub fn database_loops(
    ops: &Ops,
    reconcile_every: Duration,
    sample_every: Duration,
    cancel: &CancellationToken,
) -> Vec<tokio::task::JoinHandle<()>> {
    let every = |period: Duration| {
        let mut tick = tokio::time::interval(period);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick
    };
    let (o, c, mut tick) = (ops.clone(), cancel.clone(), every(reconcile_every));
    let reconcile = tokio::spawn(async move {
        while !c.is_cancelled() {
            tokio::select! {
                _ = c.cancelled() => return,
                _ = tick.tick() => {
                    if let Err(e) = o.reconcile_databases().await {
                        tracing::warn!(error = %e.message, "database reconcile failed");
                    }
                }
            }
        }
    });
    let (o, c, mut tick) = (ops.clone(), cancel.clone(), every(sample_every));
    let sample = tokio::spawn(async move {
        while !c.is_cancelled() {
            tokio::select! {
                _ = c.cancelled() => return,
                _ = tick.tick() => o.sample_databases().await,
            }
        }
    });
    let (o, c, mut tick) = (ops.clone(), cancel.clone(), every(Duration::from_secs(60)));
    let backups = tokio::spawn(async move {
        while !c.is_cancelled() {
            tokio::select! {
                _ = c.cancelled() => return,
                _ = tick.tick() => {
                    if let Err(e) = o.scheduled_backups().await {
                        tracing::warn!(error = %e.message, "cannot take scheduled backups");
                    }
                }
            }
        }
    });
    vec![reconcile, sample, backups]
}

/// Every `USAGE_EVERY` instances' usage is recorded; between the samples, the supervisors'
/// notices are handled as they come. Runs until `drain`, then handles what is still queued.
pub async fn usage_loop(ops: Ops, mut notices: mpsc::Receiver<Notice>, drain: CancellationToken) {
    let mut tick = tokio::time::interval(USAGE_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut oom = OomWatch::default();
    loop {
        tokio::select! {
            notice = notices.recv() => match notice {
                Some(notice) => ops.on_notice(&mut oom, notice).await,
                None => return,
            },
            _ = drain.cancelled() => {
                while let Ok(notice) = notices.try_recv() {
                    ops.on_notice(&mut oom, notice).await;
                }
                return;
            }
            _ = tick.tick() => ops.sample_usage(&mut oom).await,
        }
    }
}
