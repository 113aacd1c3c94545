//! The process driver: every instance is a supervised child process on this machine.
//!
//! Each instance gets a free TCP port on 127.0.0.1 (kept across its restarts, a replaced
//! instance gets a new one), runs in its own process group, dies with peng
//! (`PR_SET_PDEATHSIG`, see `supervisor`), has its stdout and stderr forwarded line by line
//! to the output channel (dropped and counted when the channel is full: a child never blocks
//! on peng), and is restarted with exponential backoff when it exits. Stopping sends SIGTERM to
//! the group, waits `stop_grace`, sends SIGKILL and reaps.
//!
//! With isolation on, each instance runs sandboxed as its team's user (`peng_sandbox`), and
//! with cgroups available each runs in a cgroup of its own (`peng_cgroup`) named
//! `TEAM.SERVICE.STAGE.INDEX` under the driver's parent group, limited to its `resources`
//! (memory hard, cpu as a quota, a pids limit). Groups left by a previous run are emptied and
//! removed at start.
//!
//! `reconcile` is the only way instances change: it starts what is missing, stops what is no
//! longer wanted and replaces instances whose `InstanceSpec` changed, leaving identical ones
//! untouched, so a re-apply of an unchanged file touches nothing. A record file per running
//! instance in `state_dir` lets the next `start` kill what a crashed peng left behind (see
//! `records`).

mod records;
mod supervisor;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use peng_core::{ServiceId, StageName};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use crate::{InstanceSpec, ProvisionError};
use peng_process::Spawner;
use supervisor::{Ctx, Status};

/// How the driver runs. `new` gives the production defaults.
#[derive(Debug, Clone)]
pub struct ProcessDriverConfig {
    /// Where the record files of running instances live; created if missing.
    pub state_dir: PathBuf,
    /// Every output line of every instance.
    pub output: mpsc::Sender<InstanceOutput>,
    /// Wait before the first restart (1 s); doubles per consecutive failure.
    pub backoff_initial: Duration,
    /// Longest wait between restarts (30 s).
    pub backoff_max: Duration,
    /// A run this long resets the backoff and clears a crash loop (60 s).
    pub backoff_reset: Duration,
    /// This many restarts within `crash_loop_window` mean a crash loop (5).
    pub crash_loop_restarts: u32,
    /// 5 min.
    pub crash_loop_window: Duration,
    /// Between SIGTERM and SIGKILL when stopping (5 s).
    pub stop_grace: Duration,
    /// Whether instances run sandboxed (`Off` by default; `InstanceSpec::user` must be set
    /// exactly when it is on).
    pub isolation: peng_sandbox::Isolation,
    /// Where instances get their cgroups; `None`: no limits.
    pub cgroups: Option<peng_cgroup::Cgroups>,
    /// What the supervisors have to tell (an instance killed for memory); dropped and counted
    /// when full.
    pub notices: Option<mpsc::Sender<Notice>>,
}

impl ProcessDriverConfig {
    pub fn new(state_dir: PathBuf, output: mpsc::Sender<InstanceOutput>) -> Self {
        ProcessDriverConfig {
            state_dir,
            output,
            backoff_initial: Duration::from_secs(1),
            backoff_max: Duration::from_secs(30),
            backoff_reset: Duration::from_secs(60),
            crash_loop_restarts: 5,
            crash_loop_window: Duration::from_secs(300),
            stop_grace: Duration::from_secs(5),
            isolation: peng_sandbox::Isolation::Off {
                reason: "not configured".into(),
            },
            cgroups: None,
            notices: None,
        }
    }
}

/// Something that happened to an instance that its owners should hear of.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Notice {
    /// The kernel killed the instance's process for memory; it is restarted with backoff.
    OutOfMemory {
        service: ServiceId,
        stage: StageName,
        index: u32,
        limit: peng_core::ByteSize,
        at_ns: i64,
    },
}

/// What one instance has used, for time series and costs.
#[derive(Debug, Clone, PartialEq)]
pub struct InstanceUsage {
    pub service: ServiceId,
    pub stage: StageName,
    pub index: u32,
    /// CPU time of all its processes since its cgroup was made (or, without cgroups, of the
    /// processes alive now).
    pub cpu_seconds: f64,
    pub memory_bytes: u64,
    /// Processes the kernel killed for memory since its cgroup was made.
    pub oom_kills: u64,
    /// Whether these come from a cgroup that also holds the instance to its limits.
    pub limited: bool,
}

/// The cgroup name of one instance.
pub(crate) fn group_name(service: &ServiceId, stage: &StageName, index: u32) -> String {
    format!("{}.{}.{}.{index}", service.team, service.service, stage)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputStream {
    Stdout,
    Stderr,
}

impl OutputStream {
    pub fn as_str(self) -> &'static str {
        match self {
            OutputStream::Stdout => "stdout",
            OutputStream::Stderr => "stderr",
        }
    }
}

/// One line an instance wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstanceOutput {
    pub service: ServiceId,
    pub stage: StageName,
    pub index: u32,
    pub stream: OutputStream,
    /// Without the line end; at most 64 KiB, longer lines arrive in pieces.
    pub line: String,
    pub ts_ns: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InstanceState {
    /// Being spawned.
    Starting,
    Running,
    /// Exited; waiting to be restarted.
    Backoff,
    /// Restarted too often lately; retried at the longest backoff until a run lasts.
    CrashLoop,
    Stopped,
}

impl InstanceState {
    pub fn as_str(self) -> &'static str {
        match self {
            InstanceState::Starting => "starting",
            InstanceState::Running => "running",
            InstanceState::Backoff => "backoff",
            InstanceState::CrashLoop => "crash-loop",
            InstanceState::Stopped => "stopped",
        }
    }
}

/// What `instances` reports about one instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstanceStatus {
    pub service: ServiceId,
    pub stage: StageName,
    pub index: u32,
    /// Set while a process runs.
    pub pid: Option<u32>,
    pub port: u16,
    pub state: InstanceState,
    pub restarts: u32,
    /// When the current state began.
    pub since_ns: i64,
    /// `exited with status 1`, `killed by signal 9`, `failed to start: ...`.
    pub last_exit: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InstanceAction {
    Started,
    Replaced,
    Stopped,
}

/// What `reconcile` did to one instance, for progress output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstanceEvent {
    pub action: InstanceAction,
    pub stage: StageName,
    pub index: u32,
    /// The new port (started, replaced) or the released one (stopped).
    pub port: u16,
    /// The first process of a started or replaced instance; `None` when it failed to start
    /// (it is retried with backoff, `instances` shows why).
    pub pid: Option<u32>,
}

impl fmt::Display for InstanceEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = match self.action {
            InstanceAction::Started => "started",
            InstanceAction::Replaced => "replaced",
            InstanceAction::Stopped => "stopped",
        };
        write!(f, "instance {}/{} {what}", self.stage, self.index)?;
        match (self.action, self.pid) {
            (InstanceAction::Stopped, _) => Ok(()),
            (_, Some(pid)) => write!(f, " on port {} (pid {pid})", self.port),
            (_, None) => write!(f, " on port {} (failed to start, retrying)", self.port),
        }
    }
}

type Key = (ServiceId, StageName, u32);

struct Instance {
    spec: InstanceSpec,
    port: u16,
    status: Arc<Mutex<Status>>,
    stop: oneshot::Sender<()>,
    task: JoinHandle<()>,
}

struct Inner {
    ctx: Arc<Ctx>,
    instances: Mutex<BTreeMap<Key, Instance>>,
    /// One reconcile (or shutdown) at a time.
    changing: tokio::sync::Mutex<bool>,
}

/// A cheap handle on the driver; clones share it. Dropping the last handle stops every
/// instance in the background; `shutdown` stops them and waits.
#[derive(Clone)]
pub struct ProcessDriver {
    inner: Arc<Inner>,
}

impl ProcessDriver {
    /// Creates the state directory, kills what a previous run left behind (see `records`) and
    /// starts the spawner thread. Must run inside a tokio runtime.
    pub async fn start(cfg: ProcessDriverConfig) -> Result<ProcessDriver, ProvisionError> {
        let runtime =
            tokio::runtime::Handle::try_current().map_err(|_| ProvisionError::NoRuntime)?;
        std::fs::create_dir_all(&cfg.state_dir)
            .map_err(|e| ProvisionError::io("cannot create", &cfg.state_dir, e))?;
        let (dir, grace) = (cfg.state_dir.clone(), cfg.stop_grace);
        let killed = tokio::task::spawn_blocking(move || records::kill_orphans(&dir, grace))
            .await
            .map_err(|e| ProvisionError::io("cannot clean up", &cfg.state_dir, io_error(e)))?
            .map_err(|e| ProvisionError::io("cannot clean up", &cfg.state_dir, e))?;
        if killed > 0 {
            tracing::warn!(killed, "killed instances left over by a previous run");
        }
        if let Some(cgroups) = cfg.cgroups.clone() {
            let removed = tokio::task::spawn_blocking(move || {
                let mut removed = 0;
                for name in cgroups.groups() {
                    if let Some(group) = cgroups.open(&name) {
                        match group.remove() {
                            Ok(()) => removed += 1,
                            Err(error) => {
                                tracing::warn!(%name, %error, "cannot remove a cgroup left over by a previous run")
                            }
                        }
                    }
                }
                removed
            })
            .await
            .unwrap_or(0);
            if removed > 0 {
                tracing::warn!(removed, "removed cgroups left over by a previous run");
            }
        }
        let spawner = Spawner::start("peng-spawner", runtime)
            .map_err(|e| ProvisionError::io("cannot start spawner for", &cfg.state_dir, e))?;
        let ctx = Ctx {
            cfg,
            spawner,
            discarded: peng_core::metrics::component::discarded("instance_output", "queue_full"),
            notices_dropped: peng_core::metrics::component::discarded(
                "instance_notices",
                "queue_full",
            ),
        };
        Ok(ProcessDriver {
            inner: Arc::new(Inner {
                ctx: Arc::new(ctx),
                instances: Mutex::new(BTreeMap::new()),
                changing: tokio::sync::Mutex::new(false),
            }),
        })
    }

    /// Makes the instances of `service` exactly `desired`: starts the missing ones, stops the
    /// extra ones (highest index first in the events), replaces those whose spec changed and
    /// leaves the rest alone. Returns what it did, stops first.
    pub async fn reconcile(
        &self,
        service: &ServiceId,
        desired: Vec<InstanceSpec>,
    ) -> Result<Vec<InstanceEvent>, ProvisionError> {
        let shut_down = self.inner.changing.lock().await;
        if *shut_down {
            return Err(ProvisionError::ShutDown);
        }
        let mut wanted: BTreeMap<Key, InstanceSpec> = BTreeMap::new();
        for spec in desired {
            let invalid = |reason: String| ProvisionError::InvalidInstances {
                service: service.to_string(),
                reason,
            };
            if &spec.service != service {
                return Err(invalid(format!(
                    "instance {} belongs to {}",
                    spec.address(),
                    spec.service
                )));
            }
            let key = (spec.service.clone(), spec.stage.clone(), spec.index);
            if wanted.insert(key, spec.clone()).is_some() {
                return Err(invalid(format!(
                    "instance {} is listed twice",
                    spec.address()
                )));
            }
        }

        let mut stopping = Vec::new();
        let mut starting = Vec::new();
        {
            let mut instances = self.lock();
            let existing: Vec<Key> = instances
                .keys()
                .filter(|k| &k.0 == service)
                .cloned()
                .collect();
            for key in existing.into_iter().rev() {
                match wanted.get(&key) {
                    Some(spec) if instances.get(&key).is_some_and(|i| &i.spec == spec) => {}
                    Some(_) => {
                        if let Some(old) = instances.remove(&key) {
                            stopping.push((old, false));
                        }
                    }
                    None => {
                        if let Some(old) = instances.remove(&key) {
                            stopping.push((old, true));
                        }
                    }
                }
            }
            for (key, spec) in &wanted {
                if !instances.contains_key(key) {
                    let replaced = stopping
                        .iter()
                        .any(|(old, _)| old.spec.address() == spec.address());
                    starting.push((spec.clone(), replaced));
                }
            }
        }

        let mut events = Vec::new();
        let mut waits = Vec::new();
        for (old, removed) in stopping {
            if removed {
                events.push(InstanceEvent {
                    action: InstanceAction::Stopped,
                    stage: old.spec.stage.clone(),
                    index: old.spec.index,
                    port: old.port,
                    pid: None,
                });
            }
            let _ = old.stop.send(());
            waits.push(old.task);
        }
        for task in waits {
            let _ = task.await;
        }
        for (spec, replaced) in starting {
            let (port, pid) = self.start_instance(spec.clone()).await;
            events.push(InstanceEvent {
                action: if replaced {
                    InstanceAction::Replaced
                } else {
                    InstanceAction::Started
                },
                stage: spec.stage,
                index: spec.index,
                port,
                pid,
            });
        }
        Ok(events)
    }

    /// Stops every instance of `service`.
    pub async fn stop_service(
        &self,
        service: &ServiceId,
    ) -> Result<Vec<InstanceEvent>, ProvisionError> {
        self.reconcile(service, Vec::new()).await
    }

    /// Stops every instance and waits for them; later `reconcile`s fail with `ShutDown`.
    pub async fn shutdown(&self) {
        let mut shut_down = self.inner.changing.lock().await;
        *shut_down = true;
        let all: Vec<Instance> = std::mem::take(&mut *self.lock()).into_values().collect();
        let mut tasks = Vec::new();
        for instance in all {
            let _ = instance.stop.send(());
            tasks.push(instance.task);
        }
        for task in tasks {
            let _ = task.await;
        }
    }

    /// Status of the instances of one service, or of all, in service, stage, index order.
    pub fn instances(&self, service: Option<&ServiceId>) -> Vec<InstanceStatus> {
        self.lock()
            .iter()
            .filter(|(k, _)| service.is_none_or(|s| &k.0 == s))
            .map(|((service, stage, index), i)| {
                let s = i.status.lock().unwrap_or_else(|p| p.into_inner()).clone();
                InstanceStatus {
                    service: service.clone(),
                    stage: stage.clone(),
                    index: *index,
                    pid: s.pid,
                    port: i.port,
                    state: s.state,
                    restarts: s.restarts,
                    since_ns: s.since_ns,
                    last_exit: s.last_exit,
                }
            })
            .collect()
    }

    /// What each running instance of one service (or of all) has used. Blocking reads of
    /// cgroup files or `/proc`: call it from a blocking thread.
    pub fn usage(&self, service: Option<&ServiceId>) -> Vec<InstanceUsage> {
        let running: Vec<(Key, Option<u32>, Option<peng_cgroup::Group>)> = self
            .lock()
            .iter()
            .filter(|(k, _)| service.is_none_or(|s| &k.0 == s))
            .map(|(k, i)| {
                let s = i.status.lock().unwrap_or_else(|p| p.into_inner());
                (k.clone(), s.pid, s.cgroup.clone())
            })
            .filter(|(_, pid, _)| pid.is_some())
            .collect();
        let unlimited: Vec<u32> = running
            .iter()
            .filter(|(_, _, g)| g.is_none())
            .filter_map(|(_, pid, _)| *pid)
            .collect();
        let by_group = records::group_usage(&unlimited);
        running
            .into_iter()
            .map(|((service, stage, index), pid, group)| match group {
                Some(g) => {
                    let u = g.usage();
                    InstanceUsage {
                        service,
                        stage,
                        index,
                        cpu_seconds: u.cpu_ns as f64 / 1e9,
                        memory_bytes: u.memory_bytes,
                        oom_kills: u.oom_kills,
                        limited: true,
                    }
                }
                None => {
                    let (cpu_seconds, memory_bytes) = pid
                        .and_then(|p| by_group.get(&p).copied())
                        .unwrap_or((0.0, 0));
                    InstanceUsage {
                        service,
                        stage,
                        index,
                        cpu_seconds,
                        memory_bytes,
                        oom_kills: 0,
                        limited: false,
                    }
                }
            })
            .collect()
    }

    /// Whether instances run sandboxed, and why not.
    pub fn isolation(&self) -> &peng_sandbox::Isolation {
        &self.inner.ctx.cfg.isolation
    }

    /// The cgroups instances get, when limits are on.
    pub fn cgroups(&self) -> Option<&peng_cgroup::Cgroups> {
        self.inner.ctx.cfg.cgroups.as_ref()
    }

    /// Where one instance listens (whether or not its process runs right now).
    pub fn endpoint(
        &self,
        service: &ServiceId,
        stage: &StageName,
        index: u32,
    ) -> Option<SocketAddr> {
        let key = (service.clone(), stage.clone(), index);
        self.lock().get(&key).map(|i| local(i.port))
    }

    /// Index and address of every instance of a stage whose process runs, for sensors.
    pub fn endpoints(&self, service: &ServiceId, stage: &StageName) -> Vec<(u32, SocketAddr)> {
        self.instances(Some(service))
            .into_iter()
            .filter(|i| &i.stage == stage && i.pid.is_some())
            .map(|i| (i.index, local(i.port)))
            .collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<Key, Instance>> {
        self.inner
            .instances
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }

    async fn start_instance(&self, spec: InstanceSpec) -> (u16, Option<u32>) {
        let in_use: BTreeSet<u16> = self.lock().values().map(|i| i.port).collect();
        let port = free_port(&in_use);
        let status = Arc::new(Mutex::new(Status::new()));
        let (stop, stop_rx) = oneshot::channel();
        let (first_tx, first_rx) = oneshot::channel();
        let task = tokio::spawn(supervisor::supervise(
            self.inner.ctx.clone(),
            spec.clone(),
            port,
            status.clone(),
            stop_rx,
            first_tx,
        ));
        let key = (spec.service.clone(), spec.stage.clone(), spec.index);
        self.lock().insert(
            key,
            Instance {
                spec,
                port,
                status,
                stop,
                task,
            },
        );
        let pid = first_rx.await.ok().flatten();
        (port, pid)
    }
}

fn local(port: u16) -> SocketAddr {
    SocketAddr::from((Ipv4Addr::LOCALHOST, port))
}

/// A port the kernel calls free on 127.0.0.1 that no other instance holds. Released before the
/// child binds it; a clash with another program in that window shows as a crash and a restart.
fn free_port(in_use: &BTreeSet<u16>) -> u16 {
    let mut last = 0;
    for _ in 0..20 {
        let port = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .unwrap_or(0);
        if port != 0 && !in_use.contains(&port) {
            return port;
        }
        last = port;
    }
    last
}

fn io_error(e: tokio::task::JoinError) -> std::io::Error {
    std::io::Error::other(e.to_string())
}
