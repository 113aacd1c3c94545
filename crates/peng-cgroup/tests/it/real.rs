//! Groups in this machine's cgroups, with real children held to their limits. Without root
//! (or writable cgroups) each test checks instead that detection says why.

use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use peng_cgroup::{Limits, Version};
use peng_core::ErrorKind;

use crate::common::{read, real_cgroups, spawn_in, wait_until, Cleanup, LIMITS, MIB};

/// The limit files of a fresh group hold exactly what was asked.
fn assert_files(version: Version, dirs: &[&Path], limits: &Limits) {
    let quota = (limits.cpu * 100_000.0).round() as u64;
    let mut checked = Vec::new();
    for dir in dirs {
        let file = |name: &str| dir.join(name);
        match version {
            Version::V1 => {
                if file("memory.limit_in_bytes").exists() {
                    let bytes = limits.memory_bytes.to_string();
                    assert_eq!(read(&file("memory.limit_in_bytes")), bytes);
                    if file("memory.memsw.limit_in_bytes").exists() {
                        assert_eq!(read(&file("memory.memsw.limit_in_bytes")), bytes);
                    }
                    checked.push("memory");
                }
                if file("cpu.cfs_quota_us").exists() {
                    assert_eq!(read(&file("cpu.cfs_period_us")), "100000");
                    assert_eq!(read(&file("cpu.cfs_quota_us")), quota.to_string());
                    checked.push("cpu");
                }
            }
            Version::V2 => {
                assert_eq!(read(&file("memory.max")), limits.memory_bytes.to_string());
                if file("memory.swap.max").exists() {
                    assert_eq!(read(&file("memory.swap.max")), "0");
                }
                assert_eq!(read(&file("cpu.max")), format!("{quota} 100000"));
                checked.extend(["memory", "cpu"]);
            }
        }
        if file("pids.max").exists() {
            assert_eq!(read(&file("pids.max")), limits.pids.to_string());
            checked.push("pids");
        }
    }
    checked.sort();
    assert_eq!(checked, ["cpu", "memory", "pids"], "{dirs:?}");
}

#[test]
fn limits_are_written_and_a_child_runs_inside_from_its_start() {
    let Some((cgroups, parent)) = real_cgroups("attach") else {
        return;
    };
    let group = cgroups.create("attach", &LIMITS).unwrap();
    let _cleanup = Cleanup(group.clone());
    assert_eq!(group.name(), "attach");
    assert_files(cgroups.version(), &group.dirs(), &LIMITS);
    assert_eq!(cgroups.open("attach").unwrap().limits(), LIMITS);
    assert_eq!(group.limits(), LIMITS);
    assert_eq!(cgroups.groups(), ["attach"]);
    if cgroups.version() == Version::V1 {
        assert_eq!(cgroups.describe(), "cgroup v1 (memory, cpu, cpuacct, pids)");
    }

    let mut child = spawn_in(&group, "exec sleep 30");
    let pid = child.id();
    assert!(group.procs().contains(&pid), "{:?}", group.procs());
    let membership = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    let suffix = format!("/{parent}/attach");
    let inside = membership.lines().filter(|l| l.ends_with(&suffix)).count();
    // one line per hierarchy the group lives in (v1: memory, cpu, cpuacct, pids; v2: one)
    assert_eq!(inside, group.dirs().len(), "{membership}");
    let usage = group.usage();
    assert_eq!(usage.pids, 1, "{usage:?}");
    assert!(usage.memory_bytes > 0, "{usage:?}");

    group.remove().unwrap();
    assert_eq!(child.wait().unwrap().signal(), Some(libc::SIGKILL));
}

#[test]
fn a_running_process_can_be_attached_by_pid() {
    let Some((cgroups, _)) = real_cgroups("by-pid") else {
        return;
    };
    let group = cgroups.create("by-pid", &LIMITS).unwrap();
    let _cleanup = Cleanup(group.clone());
    let mut child = Command::new("sleep")
        .arg("30")
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    assert!(group.procs().is_empty());
    group.attach(child.id()).unwrap();
    assert_eq!(group.procs(), [child.id()]);
    assert_eq!(group.attach(0).unwrap_err().kind(), ErrorKind::Invalid);
    group.remove().unwrap();
    assert_eq!(child.wait().unwrap().signal(), Some(libc::SIGKILL));
}

#[test]
fn a_child_past_the_memory_limit_is_oom_killed() {
    let Some((cgroups, _)) = real_cgroups("oom") else {
        return;
    };
    let group = cgroups.create("oom", &LIMITS).unwrap();
    let _cleanup = Cleanup(group.clone());
    assert_eq!(group.usage().oom_kills, 0);
    // tail keeps everything since the last newline, and /dev/zero has none
    let status = spawn_in(&group, "head -c 200M /dev/zero | tail")
        .wait()
        .unwrap();
    assert!(!status.success(), "{status:?}");
    let usage = group.usage();
    assert!(usage.oom_kills >= 1, "{usage:?}");
    if let Some(peak) = usage.memory_peak_bytes {
        assert!(peak > 32 * MIB && peak <= LIMITS.memory_bytes, "{usage:?}");
    }
}

#[test]
fn a_fork_loop_stops_at_the_pids_limit() {
    let Some((cgroups, _)) = real_cgroups("pids") else {
        return;
    };
    let group = cgroups.create("pids", &LIMITS).unwrap();
    let _cleanup = Cleanup(group.clone());
    let mut child = spawn_in(&group, "for i in $(seq 100); do sleep 5 & done; wait");
    let mut most = 0;
    let hit = wait_until(Duration::from_secs(10), || {
        let usage = group.usage();
        most = most.max(usage.pids).max(group.procs().len() as u64);
        usage.pids_limit_hits > 0
    });
    let usage = group.usage();
    assert!(hit, "no fork was refused: {usage:?}");
    assert!(
        most <= LIMITS.pids,
        "{most} processes in a group limited to {}",
        LIMITS.pids
    );
    assert!(
        most >= LIMITS.pids / 2,
        "the loop hardly ran: at most {most} processes"
    );
    group.remove().unwrap();
    child.wait().unwrap();
}

#[test]
fn busy_loops_get_no_more_than_the_cpu_quota() {
    let Some((cgroups, _)) = real_cgroups("cpu") else {
        return;
    };
    let group = cgroups.create("cpu", &LIMITS).unwrap();
    let _cleanup = Cleanup(group.clone());
    let start = Instant::now();
    // two loops, so more than one core would be used without the quota
    let mut child = spawn_in(&group, "while :; do :; done & while :; do :; done");
    std::thread::sleep(Duration::from_secs(3));
    let used = group.usage().cpu_ns as f64;
    let allowed = LIMITS.cpu * start.elapsed().as_nanos() as f64;
    group.remove().unwrap();
    child.wait().unwrap();
    assert!(
        used <= 1.2 * allowed,
        "used {:.2}s of cpu, the quota allows {:.2}s",
        used / 1e9,
        allowed / 1e9
    );
    assert!(
        used >= 0.3 * allowed,
        "the loops got {:.2}s of cpu out of {:.2}s allowed",
        used / 1e9,
        allowed / 1e9
    );
}

#[test]
fn remove_kills_what_is_left_and_the_directories_go() {
    let Some((cgroups, parent)) = real_cgroups("remove") else {
        return;
    };
    let group = cgroups.create("remove", &LIMITS).unwrap();
    let _cleanup = Cleanup(group.clone());
    let mut child = spawn_in(&group, "sleep 60 & sleep 60 & wait");
    assert!(wait_until(Duration::from_secs(5), || group.procs().len() == 3));
    let dirs: Vec<PathBuf> = group.dirs().iter().map(|d| d.to_path_buf()).collect();
    assert!(dirs.iter().all(|d| d.is_dir()));

    group.remove().unwrap();
    assert_eq!(child.wait().unwrap().signal(), Some(libc::SIGKILL));
    assert!(group.procs().is_empty());
    for dir in &dirs {
        assert!(!dir.exists(), "{} is still there", dir.display());
        assert!(dir.parent().unwrap().ends_with(&parent));
    }
    assert!(cgroups.open("remove").is_none());
    assert!(cgroups.groups().is_empty());
    // a second removal finds nothing to do
    group.remove().unwrap();
}

#[test]
fn an_empty_group_is_reused_with_new_limits_and_a_busy_one_is_not() {
    let Some((cgroups, _)) = real_cgroups("reuse") else {
        return;
    };
    let group = cgroups.create("reuse", &LIMITS).unwrap();
    let _cleanup = Cleanup(group.clone());
    // raising memory needs memory+swap raised first on v1, lowering the other way round
    let raised = Limits {
        memory_bytes: 128 * MIB,
        cpu: 1.5,
        pids: 32,
    };
    let lowered = Limits {
        memory_bytes: 32 * MIB,
        cpu: 0.25,
        pids: 8,
    };
    for limits in [raised, lowered] {
        let again = cgroups.create("reuse", &limits).unwrap();
        assert_files(cgroups.version(), &again.dirs(), &limits);
        assert_eq!(cgroups.open("reuse").unwrap().limits(), limits);
    }

    let mut child = spawn_in(&group, "exec sleep 30");
    assert!(wait_until(Duration::from_secs(5), || !group
        .procs()
        .is_empty()));
    let error = cgroups.create("reuse", &LIMITS).unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Conflict, "{error}");
    assert!(
        error
            .to_string()
            .contains("/reuse is in use (1 in its cgroup.procs)"),
        "{error}"
    );
    group.remove().unwrap();
    child.wait().unwrap();
}
