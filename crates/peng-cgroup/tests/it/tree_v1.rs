//! cgroup v1 against a directory tree laid out like a common distribution's: cpu and cpuacct
//! co-mounted, memory seen from inside a container (its mount's root is the container's
//! cgroup), swap accounted.

use std::path::Path;

use peng_cgroup::{Cgroups, Limits, Usage, Version};

use crate::common::{put, read, LIMITS, MIB};

const MOUNTINFO: &str = "\
25 24 0:23 / /sys/fs/cgroup ro,nosuid,nodev,noexec - tmpfs tmpfs ro,mode=755
26 25 0:24 / /sys/fs/cgroup/systemd rw,nosuid - cgroup cgroup rw,xattr,name=systemd
30 25 0:28 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid,nodev,noexec,relatime shared:12 - cgroup cgroup rw,cpu,cpuacct
31 25 0:29 /docker/abc /sys/fs/cgroup/memory rw,nosuid,nodev,noexec,relatime shared:13 - cgroup cgroup rw,memory
32 25 0:30 / /sys/fs/cgroup/pids rw,nosuid,nodev,noexec,relatime shared:14 - cgroup cgroup rw,pids
";

const SELF: &str = "\
12:pids:/user.slice/peng
4:memory:/docker/abc
3:cpu,cpuacct:/user.slice/peng
1:name=systemd:/user.slice/peng
0::/user.slice/peng
";

/// peng's own cgroup in each hierarchy exists before detection, as in a real cgroupfs.
fn detect(root: &Path) -> Cgroups {
    let base = root.join("sys/fs/cgroup");
    for own in [
        "memory",
        "cpu,cpuacct/user.slice/peng",
        "pids/user.slice/peng",
    ] {
        std::fs::create_dir_all(base.join(own)).unwrap();
    }
    Cgroups::detect_in(root, MOUNTINFO, SELF, "peng-instances").unwrap()
}

#[test]
fn one_directory_per_hierarchy_with_co_mounted_cpu_and_cpuacct() {
    let tmp = tempfile::tempdir().unwrap();
    let cgroups = detect(tmp.path());
    assert_eq!(cgroups.version(), Version::V1);
    assert_eq!(cgroups.describe(), "cgroup v1 (memory, cpu, cpuacct, pids)");
    let base = tmp.path().join("sys/fs/cgroup");
    let memory = base.join("memory/peng-instances/web-1");
    let cpu = base.join("cpu,cpuacct/user.slice/peng/peng-instances/web-1");
    let pids = base.join("pids/user.slice/peng/peng-instances/web-1");
    // swap is accounted where the kernel shows memsw files; this group was left behind
    put(
        &memory.join("memory.memsw.limit_in_bytes"),
        "9223372036854771712\n",
    );

    let group = cgroups.create("web-1", &LIMITS).unwrap();
    assert_eq!(group.dirs(), [&memory, &cpu, &pids]);
    assert_eq!(read(&memory.join("memory.limit_in_bytes")), "67108864");
    assert_eq!(
        read(&memory.join("memory.memsw.limit_in_bytes")),
        "67108864"
    );
    assert_eq!(read(&cpu.join("cpu.cfs_period_us")), "100000");
    assert_eq!(read(&cpu.join("cpu.cfs_quota_us")), "50000");
    assert_eq!(read(&pids.join("pids.max")), "16");
    assert_eq!(cgroups.open("web-1").unwrap().limits(), LIMITS);

    // a tiny cpu share still gets the smallest quota the kernel takes
    let tiny = Limits {
        memory_bytes: 8 * MIB,
        cpu: 0.001,
        pids: u64::MAX,
    };
    cgroups.create("web-1", &tiny).unwrap();
    assert_eq!(read(&cpu.join("cpu.cfs_quota_us")), "1000");
    assert_eq!(read(&pids.join("pids.max")), "max");
    assert_eq!(cgroups.open("web-1").unwrap().limits().pids, u64::MAX);
}

#[test]
fn usage_comes_from_each_hierarchy() {
    let tmp = tempfile::tempdir().unwrap();
    let cgroups = detect(tmp.path());
    let group = cgroups.create("web-1", &LIMITS).unwrap();
    assert_eq!(group.usage(), Usage::default());
    let base = tmp.path().join("sys/fs/cgroup");
    let memory = base.join("memory/peng-instances/web-1");
    let cpu = base.join("cpu,cpuacct/user.slice/peng/peng-instances/web-1");
    let pids = base.join("pids/user.slice/peng/peng-instances/web-1");
    put(&memory.join("memory.usage_in_bytes"), "1048576\n");
    put(&memory.join("memory.max_usage_in_bytes"), "2097152\n");
    put(
        &memory.join("memory.oom_control"),
        "oom_kill_disable 0\nunder_oom 0\noom_kill 3\n",
    );
    put(&cpu.join("cpuacct.usage"), "123456789\n");
    put(&pids.join("pids.current"), "7\n");
    put(&pids.join("pids.events"), "max 9\n");
    put(&pids.join("cgroup.procs"), "99999011\n99999012\n");
    put(&memory.join("cgroup.procs"), "99999012\n99999013\n");
    assert_eq!(
        group.usage(),
        Usage {
            cpu_ns: 123_456_789,
            memory_bytes: MIB,
            memory_peak_bytes: Some(2 * MIB),
            pids: 7,
            oom_kills: 3,
            pids_limit_hits: 9,
        }
    );
    assert_eq!(group.procs(), [99999011, 99999012, 99999013]);
}
