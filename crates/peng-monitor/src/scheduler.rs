//! The running monitor: one task per (service, stage, sensor) that runs the sensor on its
//! schedule, stores every result in the tsdb, keeps the latest state in memory and evaluates
//! the alerts of that stage; a 1 s ticker that evaluates every alert (so `for` and escalation
//! delays elapse without new results); and a dispatcher that hands alert transitions, in the
//! order they happened, to the server and to the notifiers.
//!
//! Sensors measured outside the scheduler (the server's database statistics, `db.*`) come in
//! through [`Monitor::record_external`] and are stored and judged like the scheduler's; the
//! server adds built-in alerts on them with [`Monitor::apply_with_builtin`].
//!
//! Promises: a reload (`apply` of a changed spec) restarts only the sensors whose definition
//! changed and keeps every alert's state; runs are spread over their interval and at most
//! [`MAX_IN_FLIGHT`] probes run at once; a run that overruns its interval makes the next one
//! skip, counted as `peng_component_discarded_events_total{component="sensor_scheduler",
//! reason="overrun"}`. The tsdb is only called on blocking threads.

use std::collections::hash_map::DefaultHasher;
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant};

use peng_core::metrics::component;
use peng_core::{now_ns, ServiceId, StageName};
use peng_spec::{AlertSpec, HealthCheck, SensorSpec, ServiceSpec};
use peng_tsdb::{FieldValue, Point, Query, Tsdb};
use tokio::sync::{mpsc, Notify, Semaphore};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::alerting::{engine, AlertEvent, AlertRecord, AlertState, Transition};
use crate::error::MonitorError;
use crate::notify::{Notification, Notifier, RetryPolicy};
use crate::sensors::{
    Endpoint, InstanceDirectory, LogCounter, Outcome, Probes, SensorResult, SqlRunner,
    HEALTH_SENSOR,
};

/// Probes running at once, over all services.
pub const MAX_IN_FLIGHT: usize = 64;
/// How often every alert is evaluated, in addition to after each sensor result.
pub const EVALUATE_EVERY: Duration = Duration::from_secs(1);
/// How long `shutdown` waits for the server to take the last alert events.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);
/// The tsdb measurement sensor results are stored in.
pub const MEASUREMENT: &str = "sensor";

/// What the monitor needs from the server.
pub struct MonitorConfig {
    pub tsdb: Arc<Tsdb>,
    pub directory: Arc<dyn InstanceDirectory>,
    /// Runs the queries of sql sensors; `None` makes every sql run fail with
    /// [`NO_RUNNER`](crate::sensors::NO_RUNNER).
    pub sql: Option<Arc<dyn SqlRunner>>,
    /// Counts log messages for log sensors; `None` makes every log run fail with
    /// [`NO_COUNTER`](crate::sensors::NO_COUNTER).
    pub logs: Option<Arc<dyn LogCounter>>,
    /// Alert records as persisted before a restart; adopted when their service is applied.
    pub initial_alerts: Vec<AlertRecord>,
    /// Every alert transition, in order. The server persists the record and audits it.
    pub events: mpsc::Sender<AlertEvent>,
}

/// The latest known state of one sensor on one stage (and one instance, for `health`).
#[derive(Debug, Clone, PartialEq)]
pub struct SensorState {
    pub stage: StageName,
    pub sensor: String,
    pub instance: Option<u32>,
    pub last: SensorResult,
    /// Since when the sensor has been ok (or failing), as of its runs since peng started.
    pub since_ns: i64,
    pub consecutive_failures: u32,
}

/// One point of a sensor's history: timestamp, ok, latency in ms, value.
pub type HistoryPoint = (i64, bool, f64, Option<f64>);

/// Handle on the running monitor. Cloning shares it.
#[derive(Clone)]
pub struct Monitor {
    inner: Arc<Inner>,
}

struct Inner {
    tsdb: Arc<Tsdb>,
    directory: Arc<dyn InstanceDirectory>,
    probes: Probes,
    permits: Semaphore,
    state: Mutex<State>,
    wake: Arc<Notify>,
    cancel: CancellationToken,
    runtime: tokio::runtime::Handle,
    background: Mutex<Vec<JoinHandle<()>>>,
}

type JobKey = (StageName, String);
type StateKey = (StageName, String, Option<u32>);
type AlertKey = (StageName, String);

#[derive(Default)]
struct State {
    services: BTreeMap<ServiceId, ServiceEntry>,
    /// `initial_alerts` whose service has not been applied yet.
    restored: BTreeMap<(ServiceId, StageName, String), AlertRecord>,
    /// Transitions not yet handed to the dispatcher; only transitions land here, so it stays
    /// small.
    outbox: VecDeque<Outgoing>,
}

struct ServiceEntry {
    /// The applied spec, its alerts followed by the built-in ones.
    spec: ServiceSpec,
    jobs: BTreeMap<JobKey, JobHandle>,
    latest: BTreeMap<StateKey, SensorState>,
    alerts: BTreeMap<AlertKey, AlertRecord>,
    /// Sensors fed by `record_external`, kept across reloads while their stage exists.
    external: BTreeSet<JobKey>,
}

struct JobHandle {
    job: Job,
    task: JoinHandle<()>,
}

/// What a scheduled task runs; a task is restarted only when this changes.
#[derive(Debug, Clone, PartialEq)]
enum Job {
    Health(HealthCheck),
    Sensor(SensorSpec),
}

impl Job {
    fn every(&self) -> Duration {
        let every = match self {
            Job::Health(h) => h.every.as_std(),
            Job::Sensor(s) => s.every.as_std(),
        };
        every.max(Duration::from_millis(10))
    }

    fn name(&self) -> &str {
        match self {
            Job::Health(_) => HEALTH_SENSOR,
            Job::Sensor(s) => &s.name,
        }
    }
}

struct Outgoing {
    event: AlertEvent,
    notification: Option<Notification>,
}

impl Monitor {
    /// Starts the ticker, the dispatcher and the notifier on the current tokio runtime. No
    /// sensor runs until a service is applied.
    pub fn start(cfg: MonitorConfig) -> Monitor {
        Self::start_with(cfg, RetryPolicy::default())
    }

    /// [`Monitor::start`] with another delivery policy for notifications.
    pub fn start_with(cfg: MonitorConfig, retry: RetryPolicy) -> Monitor {
        let probes = Probes::new(cfg.sql.clone(), cfg.logs.clone()).unwrap_or_else(|error| {
            tracing::error!(%error, "sensor http client setup failed, using defaults");
            Probes {
                clients: peng_sensors::Clients {
                    http: reqwest::Client::default(),
                    sql: cfg.sql,
                    logs: cfg.logs,
                },
            }
        });
        let restored = cfg
            .initial_alerts
            .into_iter()
            .map(|r| ((r.service.clone(), r.stage.clone(), r.alert.clone()), r))
            .collect();
        let inner = Arc::new(Inner {
            tsdb: cfg.tsdb,
            directory: cfg.directory,
            probes,
            permits: Semaphore::new(MAX_IN_FLIGHT),
            state: Mutex::new(State {
                restored,
                ..State::default()
            }),
            wake: Arc::new(Notify::new()),
            cancel: CancellationToken::new(),
            runtime: tokio::runtime::Handle::current(),
            background: Mutex::new(Vec::new()),
        });
        let notifier = Notifier::start(retry);
        let ticker = tokio::spawn(
            ticker(Arc::downgrade(&inner), inner.cancel.clone())
                .instrument(tracing::info_span!("alert_ticker")),
        );
        let dispatcher = tokio::spawn(
            dispatch(
                Arc::downgrade(&inner),
                inner.wake.clone(),
                inner.cancel.clone(),
                cfg.events,
                notifier,
            )
            .instrument(tracing::info_span!("alert_dispatch")),
        );
        lock(&inner.background).extend([ticker, dispatcher]);
        Monitor { inner }
    }

    /// Configures (or reconfigures) a service's sensors, alerts and action plans. Sensors whose
    /// definition is unchanged keep their schedule; alerts keep their state. A firing alert
    /// that the new spec no longer has is resolved. The same as
    /// [`apply_with_builtin`](Monitor::apply_with_builtin) without built-in alerts: built-in
    /// alerts given before are removed.
    pub fn apply(&self, spec: &ServiceSpec) {
        self.apply_with_builtin(spec, Vec::new());
    }

    /// [`apply`](Monitor::apply), with alerts that are not in the file but that peng adds
    /// itself (e.g. `db-connections`, `value > 90 for 2m` on `db.connections`). They live like
    /// the file's alerts: one per stage, persisted, resolved when a later apply no longer has
    /// them. A built-in alert whose `plan` is not an action plan of the file notifies the
    /// file's first action plan (by name), or no one when the file has none; it is still
    /// recorded and sent as [`AlertEvent`]s. One named like an alert of the file is ignored:
    /// the file wins.
    pub fn apply_with_builtin(&self, spec: &ServiceSpec, builtin: Vec<AlertSpec>) {
        let spec = &with_builtin(spec, builtin);
        let id = spec.id();
        let now = now_ns();
        let mut guard = lock(&self.inner.state);
        let State {
            services,
            restored,
            outbox,
        } = &mut *guard;
        let entry = services.entry(id.clone()).or_insert_with(|| ServiceEntry {
            spec: spec.clone(),
            jobs: BTreeMap::new(),
            latest: BTreeMap::new(),
            alerts: BTreeMap::new(),
            external: BTreeSet::new(),
        });

        let desired = desired_jobs(spec);
        entry.jobs.retain(|key, handle| {
            let keep = desired.get(key) == Some(&handle.job);
            if !keep {
                handle.task.abort();
            }
            keep
        });
        if !self.inner.cancel.is_cancelled() {
            for (key, job) in desired {
                if let std::collections::btree_map::Entry::Vacant(slot) = entry.jobs.entry(key) {
                    let task = self.spawn_job(&id, &slot.key().0, job.clone());
                    slot.insert(JobHandle { job, task });
                }
            }
        }
        entry
            .external
            .retain(|(stage, _)| spec.stages.contains_key(stage));
        let (jobs, external) = (&entry.jobs, &entry.external);
        entry.latest.retain(|(stage, sensor, _), _| {
            let key = (stage.clone(), sensor.clone());
            jobs.contains_key(&key) || external.contains(&key)
        });

        let old_spec = std::mem::replace(&mut entry.spec, spec.clone());
        let wanted: BTreeMap<AlertKey, &AlertSpec> = spec
            .stages
            .keys()
            .flat_map(|stage| {
                spec.alerts
                    .iter()
                    .map(|a| ((stage.clone(), a.name.clone()), a))
            })
            .collect();
        let gone: Vec<AlertKey> = entry
            .alerts
            .keys()
            .filter(|k| !wanted.contains_key(*k))
            .cloned()
            .collect();
        for key in gone {
            if let Some(record) = entry.alerts.remove(&key) {
                let old = old_spec.alerts.iter().find(|a| a.name == key.1);
                retire(
                    record,
                    old.map(|a| (&old_spec, a)),
                    now,
                    "alert removed from the service file",
                    outbox,
                );
            }
        }
        for ((stage, name), alert) in wanted {
            let record = entry
                .alerts
                .entry((stage.clone(), name.clone()))
                .or_insert_with(|| {
                    restored
                        .remove(&(id.clone(), stage.clone(), name.clone()))
                        .unwrap_or_else(|| {
                            AlertRecord::new(id.clone(), stage, name, alert.severity, now)
                        })
                });
            record.severity = alert.severity;
        }
        let leftovers: Vec<_> = restored.keys().filter(|k| k.0 == id).cloned().collect();
        for key in leftovers {
            if let Some(record) = restored.remove(&key) {
                retire(
                    record,
                    None,
                    now,
                    "alert removed from the service file",
                    outbox,
                );
            }
        }
        drop(guard);
        self.inner.wake.notify_one();
    }

    /// Stops a service's sensors and forgets its state; its firing alerts are resolved.
    pub fn remove(&self, id: &ServiceId) {
        let now = now_ns();
        let mut guard = lock(&self.inner.state);
        let State {
            services,
            restored,
            outbox,
        } = &mut *guard;
        if let Some(entry) = services.remove(id) {
            for handle in entry.jobs.values() {
                handle.task.abort();
            }
            for ((_, name), record) in entry.alerts {
                let spec = entry.spec.alerts.iter().find(|a| a.name == name);
                retire(
                    record,
                    spec.map(|a| (&entry.spec, a)),
                    now,
                    "service removed",
                    outbox,
                );
            }
        }
        let leftovers: Vec<_> = restored.keys().filter(|k| &k.0 == id).cloned().collect();
        for key in leftovers {
            if let Some(record) = restored.remove(&key) {
                retire(record, None, now, "service removed", outbox);
            }
        }
        drop(guard);
        self.inner.wake.notify_one();
    }

    /// Records one run of a sensor measured outside the scheduler (database statistics):
    /// stored like any sensor run and fed to the alerts of that sensor.
    ///
    /// The first of `values` is the run's `value`, the one `value OP N` alerts compare; every
    /// value is also stored as a field of its own name (`value` too, for the first). A value
    /// named `latency_ms` is the run's latency. Non-finite values are left out. A service that
    /// is not applied has its run stored but judges no alert.
    pub fn record_external(
        &self,
        service: &ServiceId,
        stage: &StageName,
        sensor: &str,
        ok: bool,
        values: &[(&str, f64)],
        message: Option<String>,
    ) {
        let values: Vec<(String, f64)> = values
            .iter()
            .filter(|(_, v)| v.is_finite())
            .map(|(k, v)| (k.to_string(), *v))
            .collect();
        let latency_ms = values
            .iter()
            .find(|(k, _)| k == "latency_ms")
            .map_or(0.0, |(_, v)| *v);
        let result = SensorResult {
            service: service.clone(),
            stage: stage.clone(),
            sensor: sensor.to_string(),
            instance: None,
            ok,
            latency_ms,
            value: values.first().map(|(_, v)| *v),
            message: message.unwrap_or_else(|| if ok { "ok" } else { "failing" }.to_string()),
            values,
            at_ns: now_ns(),
        };
        // Stored in the background, judged now: alerts need not wait for the disk.
        let points = vec![point(&result)];
        let tsdb = self.inner.tsdb.clone();
        self.inner.runtime.spawn(store(tsdb, points));
        let key = (stage.clone(), sensor.to_string());
        {
            let mut guard = lock(&self.inner.state);
            if let Some(entry) = guard.services.get_mut(service) {
                if entry.spec.stages.contains_key(stage) {
                    entry.external.insert(key);
                }
            }
        }
        self.inner.judge(service, stage, sensor, vec![result], None);
    }

    /// The latest state of every sensor of a service, by stage, sensor and instance.
    pub fn latest(&self, id: &ServiceId) -> Vec<SensorState> {
        lock(&self.inner.state)
            .services
            .get(id)
            .map(|e| e.latest.values().cloned().collect())
            .unwrap_or_default()
    }

    /// Alert records of one service, or of all, including restored ones not yet applied.
    pub fn alerts(&self, id: Option<&ServiceId>) -> Vec<AlertRecord> {
        let st = lock(&self.inner.state);
        let live = st
            .services
            .iter()
            .filter(|(sid, _)| id.is_none_or(|want| want == *sid))
            .flat_map(|(_, e)| e.alerts.values().cloned());
        let restored = st
            .restored
            .values()
            .filter(|r| id.is_none_or(|want| *want == r.service))
            .cloned();
        live.chain(restored).collect()
    }

    /// A sensor's stored results on a stage since `since_ns`, oldest first (for `health`, the
    /// results of every instance). Read from the tsdb, so history survives restarts.
    pub async fn history(
        &self,
        service: &ServiceId,
        sensor: &str,
        stage: &StageName,
        since_ns: i64,
    ) -> Result<Vec<HistoryPoint>, MonitorError> {
        let query = Query {
            measurement: MEASUREMENT.to_string(),
            tag_filter: BTreeMap::from([
                ("team".to_string(), service.team.to_string()),
                ("service".to_string(), service.service.to_string()),
                ("stage".to_string(), stage.to_string()),
                ("sensor".to_string(), sensor.to_string()),
            ]),
            fields: Some(vec!["ok".into(), "latency_ms".into(), "value".into()]),
            start_ns: since_ns,
            end_ns: i64::MAX,
        };
        let tsdb = self.inner.tsdb.clone();
        let series = tokio::task::spawn_blocking(move || tsdb.query(&query))
            .await
            .map_err(|e| MonitorError::Task(e.to_string()))??;
        type Row = (Option<bool>, Option<f64>, Option<f64>);
        let mut rows: BTreeMap<(i64, String), Row> = BTreeMap::new();
        for s in series {
            let instance = s.key.tags.get("instance").cloned().unwrap_or_default();
            for (ts, v) in s.points {
                let row = rows.entry((ts, instance.clone())).or_default();
                match s.field.as_str() {
                    "ok" => row.0 = as_f64(&v).map(|x| x != 0.0),
                    "latency_ms" => row.1 = as_f64(&v),
                    "value" => row.2 = as_f64(&v),
                    _ => {}
                }
            }
        }
        Ok(rows
            .into_iter()
            .filter_map(|((ts, _), (ok, latency, value))| {
                Some((ts, ok?, latency.unwrap_or(0.0), value))
            })
            .collect())
    }

    /// Stops every sensor and the ticker, then hands the transitions still waiting to the
    /// server (for at most [`SHUTDOWN_GRACE`]) before returning. Notifications already queued are still delivered.
    pub async fn shutdown(&self) {
        self.inner.cancel.cancel();
        {
            let st = lock(&self.inner.state);
            for entry in st.services.values() {
                for handle in entry.jobs.values() {
                    handle.task.abort();
                }
            }
        }
        let tasks: Vec<_> = lock(&self.inner.background).drain(..).collect();
        for mut task in tasks {
            match tokio::time::timeout(SHUTDOWN_GRACE, &mut task).await {
                Ok(Ok(())) => {}
                Ok(Err(error)) => tracing::warn!(%error, "monitor task ended abnormally"),
                Err(_) => {
                    tracing::warn!("alert events not taken within the shutdown grace, dropped");
                    task.abort();
                }
            }
        }
    }

    fn spawn_job(&self, id: &ServiceId, stage: &StageName, job: Job) -> JoinHandle<()> {
        let span = tracing::info_span!("sensor", service = %id, %stage, sensor = job.name());
        self.inner.runtime.spawn(
            run_job(Arc::downgrade(&self.inner), id.clone(), stage.clone(), job).instrument(span),
        )
    }
}

/// `spec` with the built-in alerts appended: those named like an alert of the file are
/// dropped, and each gets an action plan of the file (its own when the file has it, else the
/// first by name, else none).
fn with_builtin(spec: &ServiceSpec, builtin: Vec<AlertSpec>) -> ServiceSpec {
    let mut spec = spec.clone();
    let fallback = spec.action_plans.keys().next().cloned().unwrap_or_default();
    for mut alert in builtin {
        if spec.alerts.iter().any(|a| a.name == alert.name) {
            tracing::debug!(alert = %alert.name, "built-in alert named like an alert of the file, ignored");
            continue;
        }
        if !spec.action_plans.contains_key(&alert.plan) {
            alert.plan = fallback.clone();
        }
        spec.alerts.push(alert);
    }
    spec
}

fn desired_jobs(spec: &ServiceSpec) -> BTreeMap<JobKey, Job> {
    let mut jobs = BTreeMap::new();
    for stage in spec.stages.keys() {
        jobs.insert(
            (stage.clone(), HEALTH_SENSOR.to_string()),
            Job::Health(spec.run.health.clone()),
        );
        for sensor in &spec.sensors {
            jobs.insert(
                (stage.clone(), sensor.name.clone()),
                Job::Sensor(sensor.clone()),
            );
        }
    }
    jobs
}

/// Takes an alert out of service: a firing one is resolved and the change announced.
fn retire(
    mut record: AlertRecord,
    spec: Option<(&ServiceSpec, &AlertSpec)>,
    now: i64,
    why: &str,
    outbox: &mut VecDeque<Outgoing>,
) {
    if record.state != AlertState::Firing {
        return;
    }
    record.state = AlertState::Resolved;
    record.since_ns = now;
    record.last_message = why.to_string();
    let notification =
        spec.and_then(|(spec, alert)| notification(spec, alert, Transition::Resolved, &record));
    outbox.push_back(Outgoing {
        event: AlertEvent {
            record,
            transition: Transition::Resolved,
        },
        notification,
    });
}

fn notification(
    spec: &ServiceSpec,
    alert: &AlertSpec,
    transition: Transition,
    record: &AlertRecord,
) -> Option<Notification> {
    let plan = spec.action_plans.get(&alert.plan)?;
    let (plan_name, targets, runbook) = match transition {
        Transition::Firing | Transition::Resolved => (
            alert.plan.clone(),
            plan.notify.clone(),
            plan.runbook.clone(),
        ),
        Transition::Escalated => {
            let esc = plan.escalate.as_ref()?;
            let to = spec.action_plans.get(&esc.to)?;
            let runbook = plan.runbook.clone().or_else(|| to.runbook.clone());
            (esc.to.clone(), to.notify.clone(), runbook)
        }
    };
    if targets.is_empty() {
        return None;
    }
    Some(Notification {
        transition,
        record: record.clone(),
        sensor: alert.sensor.clone(),
        plan: plan_name,
        runbook,
        targets,
    })
}

impl ServiceEntry {
    fn update_latest(&mut self, r: SensorResult) {
        let key = (r.stage.clone(), r.sensor.clone(), r.instance);
        match self.latest.get_mut(&key) {
            Some(s) => {
                if s.last.ok != r.ok {
                    s.since_ns = r.at_ns;
                }
                s.consecutive_failures = if r.ok {
                    0
                } else {
                    s.consecutive_failures.saturating_add(1)
                };
                s.last = r;
            }
            None => {
                self.latest.insert(
                    key,
                    SensorState {
                        stage: r.stage.clone(),
                        sensor: r.sensor.clone(),
                        instance: r.instance,
                        since_ns: r.at_ns,
                        consecutive_failures: u32::from(!r.ok),
                        last: r,
                    },
                );
            }
        }
    }

    fn evaluate(&mut self, stage: &StageName, now: i64, outbox: &mut VecDeque<Outgoing>) {
        for alert in &self.spec.alerts {
            let Some(record) = self.alerts.get_mut(&(stage.clone(), alert.name.clone())) else {
                continue;
            };
            let latest: Vec<&SensorResult> = self
                .latest
                .iter()
                .filter(|((s, n, _), _)| s == stage && *n == alert.sensor)
                .map(|(_, state)| &state.last)
                .collect();
            let observed = engine::observe(&alert.when, &latest);
            let escalate_after = self
                .spec
                .action_plans
                .get(&alert.plan)
                .and_then(|p| p.escalate.as_ref())
                .map(|e| e.after.as_nanos_i64());
            let for_ns = engine::for_ns(&alert.when);
            for t in engine::step(record, observed.as_ref(), for_ns, escalate_after, now) {
                tracing::info!(
                    service = %record.service,
                    %stage,
                    alert = %alert.name,
                    transition = t.as_str(),
                    message = %record.last_message,
                    "alert transition"
                );
                outbox.push_back(Outgoing {
                    notification: notification(&self.spec, alert, t, record),
                    event: AlertEvent {
                        record: record.clone(),
                        transition: t,
                    },
                });
            }
        }
    }
}

impl Inner {
    async fn run_health(
        &self,
        service: &ServiceId,
        stage: &StageName,
        check: &HealthCheck,
    ) -> (Vec<SensorResult>, Vec<u32>) {
        let endpoints = self.directory.endpoints(service, stage);
        let live = endpoints.iter().map(|e| e.instance).collect();
        let probes = endpoints.iter().map(|at| async move {
            let _permit = self.permits.acquire().await.ok()?;
            let at_ns = now_ns();
            let outcome = self
                .probes
                .health(service, stage, &check.probe, check.timeout.as_std(), at)
                .await;
            Some(result(
                service,
                stage,
                HEALTH_SENSOR,
                Some(at.instance),
                outcome,
                at_ns,
            ))
        });
        let results = futures::future::join_all(probes)
            .await
            .into_iter()
            .flatten()
            .collect();
        (results, live)
    }

    async fn run_sensor(
        &self,
        service: &ServiceId,
        stage: &StageName,
        sensor: &SensorSpec,
        turn: &mut usize,
    ) -> Vec<SensorResult> {
        let instance: Option<Endpoint> = if sensor.kind.needs_instance() {
            let mut running: Vec<Endpoint> = self
                .directory
                .endpoints(service, stage)
                .into_iter()
                .filter(|e| e.running)
                .collect();
            if running.is_empty() {
                let outcome = Outcome::failed(Duration::ZERO, "no running instance to probe");
                return vec![result(
                    service,
                    stage,
                    &sensor.name,
                    None,
                    outcome,
                    now_ns(),
                )];
            }
            running.sort_by_key(|e| e.instance);
            let pick = running.swap_remove(*turn % running.len());
            *turn = turn.wrapping_add(1);
            Some(pick)
        } else {
            None
        };
        let Ok(_permit) = self.permits.acquire().await else {
            return Vec::new();
        };
        let at_ns = now_ns();
        let outcome = self
            .probes
            .run(service, stage, sensor, instance.as_ref())
            .await;
        vec![result(service, stage, &sensor.name, None, outcome, at_ns)]
    }

    /// Stores results, updates the latest state and evaluates the stage's alerts. `live`, for
    /// per-instance sensors, lists the instances that still exist; others are forgotten.
    async fn record(
        &self,
        service: &ServiceId,
        stage: &StageName,
        sensor: &str,
        results: Vec<SensorResult>,
        live: Option<Vec<u32>>,
    ) {
        if !results.is_empty() {
            store(self.tsdb.clone(), results.iter().map(point).collect()).await;
        }
        self.judge(service, stage, sensor, results, live);
    }

    /// Updates the latest state with `results` and evaluates the stage's alerts.
    fn judge(
        &self,
        service: &ServiceId,
        stage: &StageName,
        sensor: &str,
        results: Vec<SensorResult>,
        live: Option<Vec<u32>>,
    ) {
        let now = now_ns();
        let mut guard = lock(&self.state);
        let State {
            services, outbox, ..
        } = &mut *guard;
        let Some(entry) = services.get_mut(service) else {
            return;
        };
        for r in results {
            entry.update_latest(r);
        }
        if let Some(live) = live {
            entry.latest.retain(|(s, n, i), _| {
                !(s == stage && n == sensor && i.is_some_and(|i| !live.contains(&i)))
            });
        }
        entry.evaluate(stage, now, outbox);
        drop(guard);
        self.wake.notify_one();
    }

    fn evaluate_all(&self) {
        let now = now_ns();
        let mut guard = lock(&self.state);
        let State {
            services, outbox, ..
        } = &mut *guard;
        for entry in services.values_mut() {
            let stages: Vec<StageName> = entry.spec.stages.keys().cloned().collect();
            for stage in &stages {
                entry.evaluate(stage, now, outbox);
            }
        }
        drop(guard);
        self.wake.notify_one();
    }

    fn take_outbox(&self) -> Vec<Outgoing> {
        lock(&self.state).outbox.drain(..).collect()
    }
}

async fn run_job(inner: Weak<Inner>, service: ServiceId, stage: StageName, job: Job) {
    let every = job.every();
    tokio::time::sleep(jitter(&service, &stage, job.name(), every)).await;
    let mut interval = tokio::time::interval(every);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let overruns = component::discarded("sensor_scheduler", "overrun");
    let mut turn = 0usize;
    loop {
        interval.tick().await;
        let Some(inner) = inner.upgrade() else {
            return;
        };
        let started = Instant::now();
        match &job {
            Job::Health(check) => {
                let (results, live) = inner.run_health(&service, &stage, check).await;
                inner
                    .record(&service, &stage, HEALTH_SENSOR, results, Some(live))
                    .await;
            }
            Job::Sensor(sensor) => {
                let results = inner.run_sensor(&service, &stage, sensor, &mut turn).await;
                inner
                    .record(&service, &stage, &sensor.name, results, None)
                    .await;
            }
        }
        let took = started.elapsed();
        if took > every {
            let skipped = u64::try_from(took.as_nanos() / every.as_nanos()).unwrap_or(u64::MAX);
            overruns.add(skipped);
            tracing::debug!(?took, skipped, "sensor run overran its interval");
        }
    }
}

async fn ticker(inner: Weak<Inner>, cancel: CancellationToken) {
    let mut interval = tokio::time::interval(EVALUATE_EVERY);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = interval.tick() => {}
        }
        match inner.upgrade() {
            Some(inner) => inner.evaluate_all(),
            None => return,
        }
    }
}

async fn dispatch(
    inner: Weak<Inner>,
    wake: Arc<Notify>,
    cancel: CancellationToken,
    events: mpsc::Sender<AlertEvent>,
    notifier: Notifier,
) {
    loop {
        let batch = match inner.upgrade() {
            Some(inner) => inner.take_outbox(),
            None => return,
        };
        if batch.is_empty() {
            if cancel.is_cancelled() {
                return;
            }
            tokio::select! {
                _ = wake.notified() => {}
                _ = cancel.cancelled() => {}
            }
            continue;
        }
        // Notifications first: a server slow to take events must not delay the pages.
        let mut pending = Vec::with_capacity(batch.len());
        for out in batch {
            if let Some(n) = out.notification {
                notifier.enqueue(n);
            }
            pending.push(out.event);
        }
        for event in pending {
            if events.send(event).await.is_err() {
                tracing::debug!("alert event receiver is gone");
            }
        }
    }
}

/// Writes points on a blocking thread; failures are counted and logged, never retried.
async fn store(tsdb: Arc<Tsdb>, points: Vec<Point>) {
    let n = points.len() as u64;
    match tokio::task::spawn_blocking(move || tsdb.write(&points)).await {
        Ok(Ok(())) => component::processed("sensor").add(n),
        Ok(Err(error)) => {
            component::errors("sensor", "store").inc();
            tracing::warn!(%error, "storing sensor results failed");
        }
        Err(error) => {
            component::errors("sensor", "store").inc();
            tracing::warn!(%error, "storing sensor results failed");
        }
    }
}

fn result(
    service: &ServiceId,
    stage: &StageName,
    sensor: &str,
    instance: Option<u32>,
    outcome: Outcome,
    at_ns: i64,
) -> SensorResult {
    SensorResult {
        service: service.clone(),
        stage: stage.clone(),
        sensor: sensor.to_string(),
        instance,
        ok: outcome.ok,
        latency_ms: outcome.latency_ms,
        value: outcome.value,
        values: Vec::new(),
        message: outcome.message,
        at_ns,
    }
}

/// The tsdb point of a result: measurement `sensor`, tags `team, service, stage, sensor`
/// (+ `instance`), fields `ok` (0/1), `latency_ms`, when present `value`, and the named
/// `values` of an external run under their names.
pub fn point(r: &SensorResult) -> Point {
    let mut tags = BTreeMap::from([
        ("team".to_string(), r.service.team.to_string()),
        ("service".to_string(), r.service.service.to_string()),
        ("stage".to_string(), r.stage.to_string()),
        ("sensor".to_string(), r.sensor.clone()),
    ]);
    if let Some(i) = r.instance {
        tags.insert("instance".to_string(), i.to_string());
    }
    let mut fields = BTreeMap::from([
        ("ok".to_string(), FieldValue::Integer(i64::from(r.ok))),
        (
            "latency_ms".to_string(),
            FieldValue::Float(finite(r.latency_ms)),
        ),
    ]);
    for (name, v) in r.values.iter().filter(|(_, v)| v.is_finite()) {
        fields.insert(name.clone(), FieldValue::Float(*v));
    }
    // Written last: the fields `ok` and `value` mean the same for every sensor.
    fields.insert("ok".to_string(), FieldValue::Integer(i64::from(r.ok)));
    if let Some(v) = r.value.filter(|v| v.is_finite()) {
        fields.insert("value".to_string(), FieldValue::Float(v));
    }
    Point {
        measurement: MEASUREMENT.into(),
        tags: tags
            .into_iter()
            .map(|(k, v)| (k.into(), v.into()))
            .collect(),
        fields: fields.into_iter().map(|(k, v)| (k.into(), v)).collect(),
        timestamp_ns: r.at_ns,
    }
}

fn finite(v: f64) -> f64 {
    if v.is_finite() {
        v
    } else {
        0.0
    }
}

fn as_f64(v: &FieldValue) -> Option<f64> {
    match v {
        FieldValue::Float(f) => Some(*f),
        FieldValue::Integer(i) => Some(*i as f64),
        FieldValue::Unsigned(u) => Some(*u as f64),
        FieldValue::Boolean(b) => Some(f64::from(u8::from(*b))),
        FieldValue::String(_) => None,
    }
}

/// A stable offset within the interval, so that sensors with the same interval do not all
/// run at the same instant, and a restart keeps the spread.
fn jitter(service: &ServiceId, stage: &StageName, sensor: &str, every: Duration) -> Duration {
    let mut h = DefaultHasher::new();
    (service, stage, sensor).hash(&mut h);
    let nanos = u64::try_from(every.as_nanos()).unwrap_or(u64::MAX).max(1);
    Duration::from_nanos(h.finish() % nanos)
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jitter_stays_within_the_interval() {
        let id = ServiceId::parse("checkout/orders").expect("valid id");
        let stage = StageName::parse("production").expect("valid stage");
        let every = Duration::from_millis(200);
        for name in ["a", "b", "health", "checkout-page"] {
            assert!(jitter(&id, &stage, name, every) < every);
        }
        assert_eq!(
            jitter(&id, &stage, "a", every),
            jitter(&id, &stage, "a", every)
        );
    }

    #[test]
    fn points_carry_the_documented_tags_and_fields() {
        let r = SensorResult {
            service: ServiceId::parse("checkout/orders").expect("valid id"),
            stage: StageName::parse("production").expect("valid stage"),
            sensor: "health".into(),
            instance: Some(1),
            ok: false,
            latency_ms: 3.5,
            value: None,
            values: Vec::new(),
            message: "instance not running".into(),
            at_ns: 42,
        };
        let p = point(&r);
        assert_eq!(p.measurement, "sensor");
        assert_eq!(
            p.tags.keys().map(|k| k.as_str()).collect::<Vec<_>>(),
            ["instance", "sensor", "service", "stage", "team"]
        );
        assert_eq!(p.tags["service"], "orders");
        assert_eq!(p.fields["ok"], FieldValue::Integer(0));
        assert_eq!(p.fields["latency_ms"], FieldValue::Float(3.5));
        assert!(!p.fields.contains_key("value"));
        assert_eq!(p.timestamp_ns, 42);
    }
}
