//! The process driver against real processes: `sh`, `sleep` and `python3 -m http.server`.
//! Every test polls with a deadline; a guard kills every process group a test saw, so nothing
//! outlives a failing test.

mod process;
mod sandbox;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use peng_core::{ByteSize, ServiceId, StageName};
use peng_provision::driver::process::{
    InstanceOutput, InstanceStatus, ProcessDriver, ProcessDriverConfig,
};
use peng_provision::InstanceSpec;
use peng_spec::Resources;
use tokio::sync::mpsc;

pub fn service(id: &str) -> ServiceId {
    ServiceId::parse(id).expect("test service id")
}

pub fn stage(name: &str) -> StageName {
    StageName::parse(name).expect("test stage name")
}

pub fn instance(service_id: &str, stage_name: &str, index: u32, command: &[&str]) -> InstanceSpec {
    InstanceSpec {
        service: service(service_id),
        stage: stage(stage_name),
        index,
        command: command.iter().map(|s| s.to_string()).collect(),
        env: BTreeMap::new(),
        service_dir: PathBuf::from("/tmp"),
        workdir: PathBuf::from("/tmp"),
        writable: Vec::new(),
        files: BTreeMap::new(),
        resources: Resources {
            cpu: 0.25,
            memory: ByteSize(256 << 20),
            pids: None,
        },
        pids: 512,
        user: None,
    }
}

/// A driver on a temp state dir with fast backoff, its output channel, and a guard that kills
/// every process group it has seen when dropped.
pub struct Harness {
    pub driver: ProcessDriver,
    pub output: mpsc::Receiver<InstanceOutput>,
    pub dir: tempfile::TempDir,
    pub seen: std::sync::Mutex<Vec<u32>>,
}

impl Harness {
    pub async fn new() -> Harness {
        let dir = tempfile::tempdir().expect("temp dir");
        Self::on(dir).await
    }

    pub async fn on(dir: tempfile::TempDir) -> Harness {
        let (tx, output) = mpsc::channel(1024);
        let driver = ProcessDriver::start(config(dir.path().to_path_buf(), tx))
            .await
            .expect("driver starts");
        Harness {
            driver,
            output,
            dir,
            seen: Default::default(),
        }
    }

    /// Status of all instances, remembering their pids for the guard.
    pub fn statuses(&self) -> Vec<InstanceStatus> {
        let all = self.driver.instances(None);
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        seen.extend(all.iter().filter_map(|s| s.pid));
        all
    }

    pub fn status(&self, stage_name: &str, index: u32) -> Option<InstanceStatus> {
        self.statuses()
            .into_iter()
            .find(|s| s.stage.as_str() == stage_name && s.index == index)
    }

    /// Polls until every listed instance has a running process.
    pub async fn running(&self, n: usize) -> Vec<InstanceStatus> {
        wait_for("instances running", || {
            let all = self.statuses();
            (all.len() == n && all.iter().all(|s| s.pid.is_some() && alive(s.pid))).then_some(all)
        })
        .await
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        let mut pids = self.seen.lock().unwrap_or_else(|p| p.into_inner()).clone();
        pids.extend(self.driver.instances(None).iter().filter_map(|s| s.pid));
        for pid in pids {
            kill_group(pid, libc::SIGKILL);
        }
    }
}

pub fn config(state_dir: PathBuf, output: mpsc::Sender<InstanceOutput>) -> ProcessDriverConfig {
    let mut cfg = ProcessDriverConfig::new(state_dir, output);
    cfg.backoff_initial = Duration::from_millis(20);
    cfg.backoff_max = Duration::from_millis(100);
    cfg.crash_loop_restarts = 3;
    cfg.stop_grace = Duration::from_secs(2);
    cfg
}

pub fn kill_group(pid: u32, signal: i32) {
    if let Ok(pid) = libc::pid_t::try_from(pid) {
        if pid > 1 {
            // SAFETY: plain system call on a process group of a test child.
            unsafe {
                libc::kill(-pid, signal);
            }
        }
    }
}

/// `/proc/PID/stat` fields 3 (state), 5 (pgrp) and 22 (start time).
pub fn stat(pid: u32) -> Option<(char, u32, u64)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &text[text.rfind(')')? + 1..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    Some((
        f.first()?.chars().next()?,
        f.get(2)?.parse().ok()?,
        f.get(19)?.parse().ok()?,
    ))
}

/// A process exists and is not a zombie.
pub fn alive(pid: Option<u32>) -> bool {
    pid.and_then(stat).is_some_and(|(state, _, _)| state != 'Z')
}

/// Live processes in process group `pgid`.
pub fn group_members(pgid: u32) -> Vec<u32> {
    std::fs::read_dir("/proc")
        .map(|d| {
            d.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
                .filter(|p| stat(*p).is_some_and(|(s, g, _)| g == pgid && s != 'Z'))
                .collect()
        })
        .unwrap_or_default()
}

/// Polls `check` every 20 ms for up to 20 s.
pub async fn wait_for<T>(what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(v) = check() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
