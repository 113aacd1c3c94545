use std::collections::BTreeSet;
use std::os::unix::process::CommandExt;
use std::time::{Duration, Instant};

use peng_provision::driver::process::{InstanceAction, InstanceState, OutputStream};

use crate::*;

const SLEEPER: &[&str] = &["sh", "-c", "echo up $PENG_INSTANCE; exec sleep 60"];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instances_get_their_own_port_environment_and_output() {
    let mut h = Harness::new().await;
    let script = "echo \"port=$PORT svc=$PENG_SERVICE team=$PENG_TEAM stage=$PENG_STAGE i=$PENG_INSTANCE x=${X}\"; echo oops >&2; exec sleep 60";
    let desired: Vec<_> = (0..2)
        .map(|i| {
            let mut spec = instance("books/shelf", "production", i, &["sh", "-c", script]);
            spec.env.insert("X".into(), "port-${PORT}".into());
            spec
        })
        .collect();
    let events = h
        .driver
        .reconcile(&service("books/shelf"), desired)
        .await
        .expect("reconcile");
    assert_eq!(events.len(), 2);
    assert!(events
        .iter()
        .all(|e| e.action == InstanceAction::Started && e.pid.is_some()));
    let all = h.running(2).await;
    let ports: BTreeSet<u16> = all.iter().map(|s| s.port).collect();
    assert_eq!(ports.len(), 2, "{all:?}");

    let mut stdout = Vec::new();
    let mut stderr = 0;
    let deadline = Instant::now() + Duration::from_secs(20);
    while stdout.len() < 2 || stderr < 2 {
        let line = tokio::time::timeout_at(deadline.into(), h.output.recv())
            .await
            .expect("output in time")
            .expect("channel open");
        assert_eq!(line.service, service("books/shelf"));
        match line.stream {
            OutputStream::Stdout => stdout.push((line.index, line.line)),
            OutputStream::Stderr => {
                assert_eq!(line.line, "oops");
                stderr += 1;
            }
        }
    }
    stdout.sort();
    for (status, (index, line)) in all.iter().zip(&stdout) {
        let p = status.port;
        assert_eq!(
            line,
            &format!("port={p} svc=books/shelf team=books stage=production i={index} x=port-{p}")
        );
    }
    h.driver.shutdown().await;
    assert!(all.iter().all(|s| !alive(s.pid)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http_server_answers_on_its_port() {
    let h = Harness::new().await;
    let spec = instance(
        "books/web",
        "integration",
        0,
        &[
            "python3",
            "-m",
            "http.server",
            "--bind",
            "127.0.0.1",
            "${PORT}",
        ],
    );
    h.driver
        .reconcile(&service("books/web"), vec![spec])
        .await
        .expect("reconcile");
    let addr = h
        .driver
        .endpoint(&service("books/web"), &stage("integration"), 0)
        .expect("endpoint");
    wait_for("http server accepts", || {
        std::net::TcpStream::connect(addr).ok()
    })
    .await;
    assert_eq!(
        h.driver
            .endpoints(&service("books/web"), &stage("integration")),
        vec![(0, addr)]
    );
    h.driver.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_instance_is_restarted_on_the_same_port() {
    let h = Harness::new().await;
    let spec = instance("books/shelf", "production", 0, SLEEPER);
    h.driver
        .reconcile(&service("books/shelf"), vec![spec])
        .await
        .expect("reconcile");
    let before = h.running(1).await.remove(0);
    let pid = before.pid.expect("pid");
    kill_group(pid, libc::SIGKILL);
    let after = wait_for("restart", || {
        h.status("production", 0)
            .filter(|s| s.restarts == 1 && s.pid.is_some() && s.pid != Some(pid))
    })
    .await;
    assert_eq!(after.port, before.port);
    assert_eq!(after.last_exit.as_deref(), Some("killed by signal 9"));
    assert_eq!(after.state, InstanceState::Running);
    let restarts = peng_core::metrics::snapshot()
        .into_iter()
        .find(|s| {
            s.name == "peng_instance_restarts_total"
                && s.labels.contains(&("service".into(), "books/shelf".into()))
        })
        .map(|s| s.value);
    assert!(restarts.is_some_and(|v| v >= 1), "{restarts:?}");
    h.driver.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_that_keeps_failing_is_a_crash_loop() {
    let h = Harness::new().await;
    let spec = instance("books/broken", "production", 0, &["sh", "-c", "exit 3"]);
    h.driver
        .reconcile(&service("books/broken"), vec![spec])
        .await
        .expect("reconcile");
    let s = wait_for("crash loop", || {
        h.status("production", 0)
            .filter(|s| s.state == InstanceState::CrashLoop)
    })
    .await;
    assert!(s.restarts >= 2, "{s:?}");
    assert_eq!(s.last_exit.as_deref(), Some("exited with status 3"));
    // it keeps being retried
    let restarts = s.restarts;
    wait_for("retries go on", || {
        h.status("production", 0).filter(|s| s.restarts > restarts)
    })
    .await;

    let missing = instance(
        "books/missing",
        "production",
        0,
        &["/nonexistent/peng-test"],
    );
    let events = h
        .driver
        .reconcile(&service("books/missing"), vec![missing])
        .await
        .expect("reconcile");
    assert_eq!(events[0].pid, None);
    let s = wait_for("start failure shown", || {
        h.driver
            .instances(Some(&service("books/missing")))
            .pop()
            .filter(|s| s.last_exit.is_some())
    })
    .await;
    assert!(
        s.last_exit
            .as_deref()
            .is_some_and(|e| e.starts_with("failed to start")),
        "{s:?}"
    );
    h.driver.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scaling_down_stops_only_the_highest_index() {
    let h = Harness::new().await;
    let svc = service("books/shelf");
    let two: Vec<_> = (0..2)
        .map(|i| instance("books/shelf", "production", i, SLEEPER))
        .collect();
    h.driver
        .reconcile(&svc, two.clone())
        .await
        .expect("reconcile");
    let before = h.running(2).await;

    let events = h
        .driver
        .reconcile(&svc, two[..1].to_vec())
        .await
        .expect("reconcile");
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].action, InstanceAction::Stopped);
    assert_eq!(events[0].index, 1);
    let after = h.statuses();
    assert_eq!(after.len(), 1);
    assert_eq!(after[0].pid, before[0].pid);
    assert!(alive(before[0].pid));
    assert!(!alive(before[1].pid));
    h.driver.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_spec_replaces_and_an_identical_one_touches_nothing() {
    let h = Harness::new().await;
    let svc = service("books/shelf");
    let spec = instance("books/shelf", "production", 0, SLEEPER);
    h.driver
        .reconcile(&svc, vec![spec.clone()])
        .await
        .expect("reconcile");
    let first = h.running(1).await.remove(0);

    let events = h
        .driver
        .reconcile(&svc, vec![spec.clone()])
        .await
        .expect("reconcile");
    assert!(events.is_empty(), "{events:?}");
    assert_eq!(h.statuses()[0].pid, first.pid);

    let mut changed = spec;
    changed.env.insert("MODE".into(), "fast".into());
    let events = h
        .driver
        .reconcile(&svc, vec![changed])
        .await
        .expect("reconcile");
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0].action, InstanceAction::Replaced);
    let second = h.running(1).await.remove(0);
    assert_ne!(second.pid, first.pid);
    assert!(!alive(first.pid));
    assert_eq!(
        events[0].to_string(),
        format!(
            "instance production/0 replaced on port {} (pid {})",
            second.port,
            second.pid.unwrap_or_default()
        )
    );
    h.driver.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_service_leaves_no_process_and_no_record() {
    let h = Harness::new().await;
    let svc = service("books/shelf");
    // a grandchild in the group, and a leader that ignores SIGTERM until killed
    let spec = instance(
        "books/shelf",
        "production",
        0,
        &["sh", "-c", "trap '' TERM; sleep 60 & sleep 60; wait"],
    );
    let other = instance("books/other", "production", 0, SLEEPER);
    h.driver
        .reconcile(&svc, vec![spec])
        .await
        .expect("reconcile");
    h.driver
        .reconcile(&service("books/other"), vec![other])
        .await
        .expect("reconcile");
    let all = h.running(2).await;
    let pid = all
        .iter()
        .find(|s| s.service == svc)
        .and_then(|s| s.pid)
        .expect("pid");
    wait_for("grandchild", || {
        (group_members(pid).len() >= 2).then_some(())
    })
    .await;
    let records = || {
        std::fs::read_dir(h.dir.path())
            .map(|d| d.count())
            .unwrap_or(0)
    };
    assert_eq!(records(), 2);

    let events = h.driver.stop_service(&svc).await.expect("stop");
    assert_eq!(events.len(), 1);
    assert!(group_members(pid).is_empty(), "{:?}", group_members(pid));
    assert!(!alive(Some(pid)));
    assert_eq!(records(), 1);
    assert_eq!(h.driver.instances(Some(&svc)), vec![]);
    assert_eq!(h.driver.instances(None).len(), 1);

    h.driver.shutdown().await;
    assert_eq!(records(), 0);
    assert!(h.driver.instances(None).is_empty());
    let err = h
        .driver
        .reconcile(&svc, vec![])
        .await
        .expect_err("shut down");
    assert_eq!(err.kind(), peng_core::ErrorKind::Unavailable);
}

/// A process group started by the test itself, as a crashed peng would have left it.
struct Orphan(std::process::Child);

impl Orphan {
    fn spawn() -> Orphan {
        let child = std::process::Command::new("sleep")
            .arg("60")
            .process_group(0)
            .spawn()
            .expect("spawn sleep");
        Orphan(child)
    }

    fn pid(&self) -> u32 {
        self.0.id()
    }

    fn record(&self, start_time_delta: u64) -> String {
        let (_, _, start) = stat(self.pid()).expect("stat of orphan");
        format!(
            "pid={}\nstart_time={}\nservice=books/shelf\nstage=production\nindex=0\n",
            self.pid(),
            start + start_time_delta
        )
    }

    fn exited(&mut self) -> bool {
        matches!(self.0.try_wait(), Ok(Some(_)))
    }
}

impl Drop for Orphan {
    fn drop(&mut self) {
        kill_group(self.pid(), libc::SIGKILL);
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_driver_kills_orphans_but_never_a_reused_pid() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut orphan = Orphan::spawn();
    let mut stranger = Orphan::spawn();
    std::fs::write(
        dir.path().join("books.shelf.production.0.instance"),
        orphan.record(0),
    )
    .expect("write record");
    // same pid, another start time: a process that merely reuses the pid
    std::fs::write(
        dir.path().join("books.shelf.production.1.instance"),
        stranger.record(7),
    )
    .expect("write record");
    std::fs::write(dir.path().join("books.shelf.production.2.instance"), "junk")
        .expect("write record");

    let h = Harness::on(dir).await;
    wait_for("orphan killed", || orphan.exited().then_some(())).await;
    assert!(!stranger.exited());
    assert!(alive(Some(stranger.pid())));
    let left = std::fs::read_dir(h.dir.path())
        .map(|d| d.count())
        .unwrap_or(usize::MAX);
    assert_eq!(left, 0);
    h.driver.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instances_of_a_forgotten_driver_are_killed_by_the_next_one() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (tx, _rx) = tokio::sync::mpsc::channel(16);
    let state_dir = dir.path().to_path_buf();
    // the first driver runs on its own runtime, which is then dropped without a shutdown,
    // as if peng had been killed; the leader ignores SIGTERM and has a grandchild
    let pids = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async {
            let driver = ProcessDriver::start(config(state_dir, tx))
                .await
                .expect("start");
            let spec = instance(
                "books/shelf",
                "production",
                0,
                &["sh", "-c", "sleep 60 & sleep 60; wait"],
            );
            driver
                .reconcile(&service("books/shelf"), vec![spec])
                .await
                .expect("reconcile");
            let pid = driver.instances(None)[0].pid.expect("pid");
            wait_for("grandchild", || {
                (group_members(pid).len() >= 2).then_some(())
            })
            .await;
            std::mem::forget(driver);
            group_members(pid)
        })
    })
    .join()
    .expect("first driver thread");
    struct Guard(Vec<u32>);
    impl Drop for Guard {
        fn drop(&mut self) {
            for pid in &self.0 {
                kill_group(*pid, libc::SIGKILL);
            }
        }
    }
    let _guard = Guard(pids.clone());
    let h = Harness::on(dir).await;
    wait_for("no leftover process", || {
        pids.iter().all(|p| !alive(Some(*p))).then_some(())
    })
    .await;
    h.driver.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_output_queue_drops_and_counts_but_never_blocks_the_child() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (tx, _rx) = tokio::sync::mpsc::channel(1);
    let driver = ProcessDriver::start(config(dir.path().to_path_buf(), tx))
        .await
        .expect("start");
    let discarded = peng_core::metrics::component::discarded("instance_output", "queue_full");
    let before = discarded.get();
    let spec = instance(
        "books/chatty",
        "production",
        0,
        &[
            "sh",
            "-c",
            "seq 1 5000; echo finished > done; exec sleep 60",
        ],
    );
    let mut spec = spec;
    spec.workdir = dir.path().to_path_buf();
    driver
        .reconcile(&service("books/chatty"), vec![spec])
        .await
        .expect("reconcile");
    let pids: Vec<u32> = driver
        .instances(None)
        .iter()
        .filter_map(|s| s.pid)
        .collect();
    struct Guard(Vec<u32>);
    impl Drop for Guard {
        fn drop(&mut self) {
            for pid in &self.0 {
                kill_group(*pid, libc::SIGKILL);
            }
        }
    }
    let _guard = Guard(pids);
    let marker = dir.path().join("done");
    wait_for("child wrote everything", || marker.exists().then_some(())).await;
    wait_for("drops counted", || {
        (discarded.get() - before >= 4000).then_some(())
    })
    .await;
    driver.shutdown().await;
}
