//! cgroup v2 against a directory tree laid out like `/sys/fs/cgroup` on a systemd machine
//! where peng runs as `peng.service`. Pids in the tree are above any pid_max, so nothing
//! real is ever named.

use std::path::{Path, PathBuf};

use peng_cgroup::{Cgroups, Usage, Version};
use peng_core::ErrorKind;

use crate::common::{put, read, LIMITS};

const MOUNTINFO: &str = "\
22 27 0:21 / /proc rw,relatime - proc proc rw
27 1 254:0 / / rw,relatime - ext4 /dev/vda rw
28 27 0:25 / /mnt/with\\040space rw,relatime - tmpfs none rw
30 23 0:26 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:4 - cgroup2 cgroup2 rw,nsdelegate,memory_recursiveprot
";

const SELF: &str = "0::/system.slice/peng.service\n";

/// A fresh tree: the root offers and enables the controllers, `system.slice` does not enable
/// them yet, and peng.service holds two processes.
fn tree() -> (tempfile::TempDir, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let cgroup = tmp.path().join("sys/fs/cgroup");
    put(
        &cgroup.join("cgroup.controllers"),
        "cpuset cpu io memory hugetlb pids rdma misc\n",
    );
    put(
        &cgroup.join("cgroup.subtree_control"),
        "cpu io memory pids\n",
    );
    put(&cgroup.join("system.slice/cgroup.subtree_control"), "");
    put(
        &cgroup.join("system.slice/peng.service/cgroup.procs"),
        "99999001\n99999002\n",
    );
    (tmp, cgroup)
}

fn detect(root: &Path, self_cgroup: &str) -> Cgroups {
    Cgroups::detect_in(root, MOUNTINFO, self_cgroup, "peng-instances").unwrap()
}

#[test]
fn controllers_are_enabled_down_to_the_parent_and_peng_moves_to_a_leaf() {
    let (tmp, cgroup) = tree();
    let cgroups = detect(tmp.path(), SELF);
    assert_eq!(cgroups.version(), Version::V2);
    assert_eq!(cgroups.describe(), "cgroup v2 (memory, cpu, pids)");

    let service = cgroup.join("system.slice/peng.service");
    // the root already passes all three down, so it is left alone
    assert_eq!(
        read(&cgroup.join("cgroup.subtree_control")),
        "cpu io memory pids"
    );
    assert_eq!(
        read(&cgroup.join("system.slice/cgroup.subtree_control")),
        "+memory +cpu +pids"
    );
    assert_eq!(
        read(&service.join("peng-server/cgroup.procs")),
        "99999001\n99999002"
    );
    assert_eq!(
        read(&service.join("cgroup.subtree_control")),
        "+memory +cpu +pids"
    );
    assert_eq!(
        read(&service.join("peng-instances/cgroup.subtree_control")),
        "+memory +cpu +pids"
    );
    assert!(cgroups.groups().is_empty());
}

#[test]
fn peng_found_in_its_leaf_keeps_the_same_parent() {
    let (tmp, cgroup) = tree();
    let first = detect(tmp.path(), SELF);
    let service = cgroup.join("system.slice/peng.service");
    // what the kernel shows once the processes moved
    put(&service.join("cgroup.procs"), "");
    let again = detect(tmp.path(), "0::/system.slice/peng.service/peng-server\n");
    again.create("web-1", &LIMITS).unwrap();
    assert_eq!(first.groups(), ["web-1"]);
    assert!(!service.join("peng-server/peng-server").exists());
    assert!(!service.join("peng-server/peng-instances").exists());
}

#[test]
fn the_root_cgroup_may_hold_processes() {
    let (tmp, cgroup) = tree();
    put(&cgroup.join("cgroup.procs"), "99999003\n");
    let cgroups = detect(tmp.path(), "0::/\n");
    cgroups.create("web-1", &LIMITS).unwrap();
    assert!(!cgroup.join("peng-server").exists());
    assert!(cgroup.join("peng-instances/web-1").is_dir());
}

#[test]
fn limit_files_hold_exactly_the_limits() {
    let (tmp, cgroup) = tree();
    let cgroups = detect(tmp.path(), SELF);
    let parent = cgroup.join("system.slice/peng.service/peng-instances");
    // a group left behind, on a kernel with swap accounting: reused, and its swap closed
    put(&parent.join("left/memory.swap.max"), "max\n");
    let left = cgroups.create("left", &LIMITS).unwrap();
    assert_eq!(left.dirs(), [parent.join("left")]);
    let fresh = cgroups.create("fresh", &LIMITS).unwrap();
    for group in ["left", "fresh"] {
        let dir = parent.join(group);
        assert_eq!(read(&dir.join("memory.max")), "67108864");
        assert_eq!(read(&dir.join("cpu.max")), "50000 100000");
        assert_eq!(read(&dir.join("pids.max")), "16");
    }
    assert_eq!(read(&parent.join("left/memory.swap.max")), "0");
    // without the file the kernel has no swap accounting: nothing to close
    assert!(!parent.join("fresh/memory.swap.max").exists());

    assert_eq!(cgroups.groups(), ["fresh", "left"]);
    assert_eq!(cgroups.open("left").unwrap().limits(), LIMITS);
    assert!(cgroups.open("missing").is_none());
    assert!(cgroups.open("../left").is_none());

    fresh.attach(99999004).unwrap();
    assert_eq!(fresh.procs(), [99999004]);
    assert_eq!(read(&parent.join("fresh/cgroup.procs")), "99999004");
    let error = cgroups.create("fresh", &LIMITS).unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Conflict, "{error}");
    let error = cgroups.create("../fresh", &LIMITS).unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Invalid, "{error}");
}

#[test]
fn usage_is_read_from_the_kernel_files() {
    let (tmp, cgroup) = tree();
    let cgroups = detect(tmp.path(), SELF);
    let group = cgroups.create("web-1", &LIMITS).unwrap();
    assert_eq!(group.usage(), Usage::default());

    let dir = cgroup.join("system.slice/peng.service/peng-instances/web-1");
    put(&dir.join("memory.current"), "12345678\n");
    put(&dir.join("memory.peak"), "23456789\n");
    put(
        &dir.join("memory.events"),
        "low 0\nhigh 0\nmax 7\noom 3\noom_kill 2\noom_group_kill 0\n",
    );
    put(
        &dir.join("cpu.stat"),
        "usage_usec 1500000\nuser_usec 1000000\nsystem_usec 500000\n\
         nr_periods 30\nnr_throttled 12\nthrottled_usec 450000\n",
    );
    put(&dir.join("pids.current"), "5\n");
    put(&dir.join("pids.events"), "max 4\n");
    assert_eq!(
        group.usage(),
        Usage {
            cpu_ns: 1_500_000_000,
            memory_bytes: 12_345_678,
            memory_peak_bytes: Some(23_456_789),
            pids: 5,
            oom_kills: 2,
            pids_limit_hits: 4,
        }
    );
}

#[test]
fn unavailable_v2_says_why() {
    let (tmp, cgroup) = tree();
    put(&cgroup.join("cgroup.controllers"), "cpuset cpu io memory\n");
    let error = Cgroups::detect_in(tmp.path(), MOUNTINFO, SELF, "peng-instances").unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Unavailable);
    let text = error.to_string();
    assert!(
        text.starts_with(
            "cgroup limits unavailable: cgroup v1: no hierarchy with memory, cpu or pids is \
             mounted; cgroup v2: "
        ),
        "{text}"
    );
    let offer = format!(
        "{} does not offer pids (cgroup.controllers: cpuset cpu io memory)",
        cgroup.display()
    );
    assert!(text.ends_with(&offer), "{text}");

    let (tmp, cgroup) = tree();
    let read_only = MOUNTINFO.replace("relatime shared:4", "relatime,ro shared:4");
    let error = Cgroups::detect_in(tmp.path(), &read_only, SELF, "peng-instances").unwrap_err();
    let text = error.to_string();
    assert!(
        text.ends_with(&format!("{} is mounted read-only", cgroup.display())),
        "{text}"
    );
    assert!(!cgroup
        .join("system.slice/peng.service/peng-server")
        .exists());
}
