//! The driver with isolation and limits on: an instance runs as its team's user inside
//! bubblewrap, in a cgroup of its own; the kernel's OOM kill is named as such; a stop reaches
//! the program with SIGTERM first. Needs root (CI runs as root); without it the probe says
//! isolation is off, which `peng-sandbox`'s tests check.

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use peng_provision::driver::process::{InstanceState, Notice, ProcessDriver};
use peng_sandbox::Isolation;
use tokio::sync::mpsc;

use crate::*;

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

struct Sandboxed {
    h: Harness,
    notices: mpsc::Receiver<Notice>,
    service_dir: tempfile::TempDir,
    user: peng_sandbox::TeamUser,
    cgroups: peng_cgroup::Cgroups,
}

async fn sandboxed() -> Option<Sandboxed> {
    if !is_root() {
        return None;
    }
    let dirs: Vec<PathBuf> = ["/usr", "/bin", "/sbin", "/lib", "/lib64", "/etc"]
        .iter()
        .map(PathBuf::from)
        .collect();
    let isolation = peng_sandbox::probe(&dirs, Vec::new());
    assert!(
        matches!(isolation, Isolation::On(_)),
        "as root with bubblewrap, isolation must be on: {}",
        isolation.describe()
    );
    let state = tempfile::tempdir().expect("tmp");
    let parent = format!(
        "peng-it-{}",
        state
            .path()
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("x")
            .trim_start_matches('.')
    );
    let cgroups = peng_cgroup::Cgroups::detect(&parent).expect("cgroups as root");
    let (tx, output) = mpsc::channel(1024);
    let (notice_tx, notices) = mpsc::channel(16);
    let mut cfg = config(state.path().to_path_buf(), tx);
    cfg.isolation = isolation;
    cfg.cgroups = Some(cgroups.clone());
    cfg.notices = Some(notice_tx);
    let driver = ProcessDriver::start(cfg).await.expect("driver starts");
    let h = Harness {
        driver,
        output,
        dir: state,
        seen: Default::default(),
    };
    let service_dir = tempfile::tempdir().expect("tmp");
    std::fs::set_permissions(service_dir.path(), std::fs::Permissions::from_mode(0o755))
        .expect("chmod");
    let user = peng_sandbox::users::ensure("driver-test", &(70000..=79999), None).expect("user");
    Some(Sandboxed {
        h,
        notices,
        service_dir,
        user,
        cgroups,
    })
}

impl Sandboxed {
    fn spec(&self, index: u32, command: &[&str], memory: u64) -> peng_provision::InstanceSpec {
        let mut spec = instance("driver-test/shelf", "production", index, command);
        spec.service_dir = self.service_dir.path().to_path_buf();
        spec.workdir = self.service_dir.path().to_path_buf();
        spec.resources.memory = peng_core::ByteSize(memory);
        spec.pids = 64;
        spec.user = Some(self.user.clone());
        spec
    }

    async fn line(&mut self, want: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let line = tokio::time::timeout_at(deadline.into(), self.h.output.recv())
                .await
                .unwrap_or_else(|_| panic!("no output line containing {want}"))
                .expect("output channel open");
            if line.line.contains(want) {
                return line.line;
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sandboxed_instance_runs_as_its_team_in_its_cgroup_and_stops_gracefully() {
    let Some(mut s) = sandboxed().await else {
        return;
    };
    let script = "trap 'echo got-term; exit 0' TERM; echo uid=$(id -u) procs=$(ls /proc | grep -c '^[0-9]'); while :; do sleep 0.1; done";
    let spec = s.spec(0, &["sh", "-c", script], 64 << 20);
    s.h.driver
        .reconcile(&service("driver-test/shelf"), vec![spec])
        .await
        .expect("reconcile");
    let line = s.line("uid=").await;
    assert!(line.starts_with(&format!("uid={} ", s.user.uid)), "{line}");
    let procs: usize = line
        .rsplit('=')
        .next()
        .and_then(|n| n.parse().ok())
        .expect("procs");
    assert!(procs <= 5, "the instance sees {procs} processes");
    let running = s.h.running(1).await;
    let group = s
        .cgroups
        .open("driver-test.shelf.production.0")
        .expect("the instance's cgroup");
    let pid = running[0].pid.expect("pid");
    assert!(group.procs().contains(&pid), "bwrap runs in the cgroup");
    assert_eq!(group.limits().memory_bytes, 64 << 20);
    assert_eq!(group.limits().pids, 64);
    let usage = s.h.driver.usage(None);
    assert_eq!(usage.len(), 1);
    assert!(usage[0].limited && usage[0].memory_bytes > 0, "{usage:?}");

    s.h.driver
        .stop_service(&service("driver-test/shelf"))
        .await
        .expect("stop");
    s.line("got-term").await;
    assert!(
        s.cgroups.open("driver-test.shelf.production.0").is_none(),
        "the cgroup goes with the instance"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_instance_past_its_memory_limit_is_killed_and_says_so() {
    let Some(mut s) = sandboxed().await else {
        return;
    };
    let hog = "import sys\nprint('allocating', flush=True)\nb = []\nwhile True:\n    b.append(bytearray(1 << 20))\n";
    let spec = s.spec(0, &["python3", "-c", hog], 48 << 20);
    s.h.driver
        .reconcile(&service("driver-test/shelf"), vec![spec])
        .await
        .expect("reconcile");
    let notice = tokio::time::timeout(Duration::from_secs(30), s.notices.recv())
        .await
        .expect("an OOM notice within 30s")
        .expect("notice");
    let Notice::OutOfMemory { limit, index, .. } = notice;
    assert_eq!((limit.0, index), (48 << 20, 0));
    let status = wait_for("the OOM kill in the status", || {
        s.h.status("production", 0)
            .filter(|st| st.last_exit.is_some())
    })
    .await;
    assert_eq!(
        status.last_exit.as_deref(),
        Some("killed: out of memory (limit 48Mi)"),
        "{status:?}"
    );
    assert!(
        matches!(
            status.state,
            InstanceState::Backoff | InstanceState::Starting | InstanceState::Running
        ),
        "restarted with backoff: {status:?}"
    );
    s.h.driver
        .stop_service(&service("driver-test/shelf"))
        .await
        .expect("stop");
}
