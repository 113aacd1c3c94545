//! The texts the kernel hands out: `/proc/self/mountinfo`, `/proc/self/cgroup` and the small
//! key-value and list files of a cgroup. Parsers never fail: a line they do not understand is
//! skipped, a value they cannot read is absent.

/// One line of `/proc/self/mountinfo`, with the fields detection needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Mount {
    /// The directory of the filesystem that is mounted (field 4), `/` for a whole hierarchy.
    pub root: String,
    /// Where it is mounted (field 5), octal escapes (`\040`) decoded.
    pub mount_point: String,
    /// `cgroup`, `cgroup2`, `tmpfs`, …
    pub fs_type: String,
    /// Mounted read-only (per-mount or superblock option `ro`).
    pub read_only: bool,
    /// Superblock options; for a v1 hierarchy they name its controllers (`rw,cpu,cpuacct`).
    pub super_options: Vec<String>,
}

impl Mount {
    /// A v1 hierarchy that carries `controller`.
    pub fn is_v1_with(&self, controller: &str) -> bool {
        self.fs_type == "cgroup" && self.super_options.iter().any(|o| o == controller)
    }
}

/// Every well-formed line of a mountinfo text.
pub(crate) fn mountinfo(text: &str) -> Vec<Mount> {
    text.lines().filter_map(mount_line).collect()
}

fn mount_line(line: &str) -> Option<Mount> {
    let fields: Vec<&str> = line.split(' ').collect();
    // id parent major:minor root mount-point options [optional…] - type source super-options
    let separator = fields.iter().skip(6).position(|f| *f == "-")? + 6;
    let root = unescape(fields.get(3)?);
    let mount_point = unescape(fields.get(4)?);
    let options = fields.get(5)?;
    let fs_type = fields.get(separator + 1)?.to_string();
    let super_options: Vec<String> = fields
        .get(separator + 3)
        .map(|s| s.split(',').map(str::to_string).collect())
        .unwrap_or_default();
    let read_only =
        options.split(',').any(|o| o == "ro") || super_options.iter().any(|o| o == "ro");
    Some(Mount {
        root,
        mount_point,
        fs_type,
        read_only,
        super_options,
    })
}

/// Decodes the octal escapes the kernel writes for space, tab, newline and backslash.
fn unescape(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\' && i + 3 < bytes.len() {
            let digits = &bytes[i + 1..i + 4];
            if digits.iter().all(|d| (b'0'..=b'7').contains(d)) {
                let value = digits
                    .iter()
                    .fold(0u32, |acc, d| acc * 8 + u32::from(d - b'0'));
                if let Ok(byte) = u8::try_from(value) {
                    out.push(byte);
                    i += 4;
                    continue;
                }
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// One line of `/proc/self/cgroup`: `4:memory:/a/b`, `1:cpu,cpuacct:/`, `0::/system.slice/x`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Membership {
    /// Hierarchy id; 0 is the v2 hierarchy.
    pub id: u32,
    /// The v1 controllers of the hierarchy (empty for v2; `name=systemd` kept as written).
    pub controllers: Vec<String>,
    /// The cgroup, relative to the hierarchy's root (as the reader's cgroup namespace sees it).
    pub path: String,
}

/// Every well-formed line of a `/proc/<pid>/cgroup` text.
pub(crate) fn self_cgroup(text: &str) -> Vec<Membership> {
    text.lines()
        .filter_map(|line| {
            let mut parts = line.splitn(3, ':');
            let id = parts.next()?.trim().parse().ok()?;
            let controllers = parts.next()?;
            let path = parts.next()?;
            if !path.starts_with('/') {
                return None;
            }
            Some(Membership {
                id,
                controllers: controllers
                    .split(',')
                    .filter(|c| !c.is_empty())
                    .map(str::to_string)
                    .collect(),
                path: path.to_string(),
            })
        })
        .collect()
}

/// The value of `key` in a file of `key value` lines (`memory.events`, `cpu.stat`,
/// `pids.events`, `memory.oom_control`).
pub(crate) fn key_value(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|line| {
        let mut words = line.split_whitespace();
        if words.next()? != key {
            return None;
        }
        words.next()?.parse().ok()
    })
}

/// A file holding one number, or `max` (read as `u64::MAX`).
pub(crate) fn number(text: &str) -> Option<u64> {
    match text.trim() {
        "max" => Some(u64::MAX),
        value => value.parse().ok(),
    }
}

/// `cgroup.controllers` and `cgroup.subtree_control`: controller names separated by spaces,
/// with or without the `+` that enables them.
pub(crate) fn controller_list(text: &str) -> Vec<String> {
    text.split_whitespace()
        .map(|word| word.trim_start_matches('+').to_string())
        .filter(|word| !word.is_empty() && !word.starts_with('-'))
        .collect()
}

/// `cgroup.procs`: one pid a line.
pub(crate) fn pids(text: &str) -> Vec<u32> {
    text.lines().filter_map(|l| l.trim().parse().ok()).collect()
}

/// v2 `cpu.max` (`50000 100000`, `max 100000`) as cores; unlimited is infinite.
pub(crate) fn cpu_max(text: &str) -> Option<f64> {
    let mut words = text.split_whitespace();
    let quota = words.next()?;
    let period: f64 = words.next().map_or(Some(100_000.0), |p| p.parse().ok())?;
    if quota == "max" {
        return Some(f64::INFINITY);
    }
    let quota: f64 = quota.parse().ok()?;
    (period > 0.0).then(|| quota / period)
}

#[cfg(test)]
mod tests {
    use super::*;

    const HYBRID: &str = "\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";

    #[test]
    fn mountinfo_lines_of_a_hybrid_machine() {
        let mounts = mountinfo(HYBRID);
        assert_eq!(mounts.len(), 6);
        assert_eq!(mounts[1].mount_point, "/sys/fs/cgroup/cpu");
        assert_eq!(mounts[1].fs_type, "cgroup");
        assert!(mounts[1].is_v1_with("cpu"));
        assert!(!mounts[1].is_v1_with("cpuacct"));
        assert!(mounts[4].is_v1_with("name=systemd"));
        assert_eq!(mounts[5].fs_type, "cgroup2");
        assert!(!mounts[5].is_v1_with("memory"));
        assert!(!mounts[5].read_only);
    }

    #[test]
    fn co_mounted_cpu_and_cpuacct_with_optional_fields() {
        let line = "30 25 0:26 / /sys/fs/cgroup/cpu,cpuacct ro,nosuid,nodev,noexec,relatime \
                    shared:12 master:3 - cgroup cgroup rw,cpu,cpuacct";
        let mounts = mountinfo(line);
        assert_eq!(mounts.len(), 1);
        let mount = &mounts[0];
        assert_eq!(mount.mount_point, "/sys/fs/cgroup/cpu,cpuacct");
        assert!(mount.is_v1_with("cpu"));
        assert!(mount.is_v1_with("cpuacct"));
        assert!(!mount.is_v1_with("cpuset"));
        assert!(mount.read_only);
        assert_eq!(mount.super_options, ["rw", "cpu", "cpuacct"]);
    }

    #[test]
    fn escaped_mount_points_and_roots() {
        let line = r"50 31 0:40 /docker/abc\040def /mnt/my\040cgroups\011x\134y rw - cgroup2 none rw,nsdelegate";
        let mounts = mountinfo(line);
        assert_eq!(mounts[0].root, "/docker/abc def");
        assert_eq!(mounts[0].mount_point, "/mnt/my cgroups\tx\\y");
        assert_eq!(mounts[0].fs_type, "cgroup2");
        assert_eq!(unescape(r"trailing\04"), r"trailing\04");
        assert_eq!(unescape(r"\999"), r"\999");
        assert_eq!(unescape(r"a\"), r"a\");
    }

    #[test]
    fn malformed_mountinfo_lines_are_skipped() {
        let text = "garbage\n\n1 2 3 4 5 6 no separator here\n1 2 3 / /x rw -\n";
        assert!(mountinfo(text).is_empty());
    }

    #[test]
    fn self_cgroup_lines_v1_and_v2() {
        let text = "\
9:name=systemd:/
4:memory:/process_api/ba98
2:cpu,cpuacct:/user.slice
0::/system.slice/peng.service
bad line
1:cpuset:relative
";
        let lines = self_cgroup(text);
        assert_eq!(lines.len(), 4);
        assert_eq!(lines[0].controllers, ["name=systemd"]);
        assert_eq!(lines[1].controllers, ["memory"]);
        assert_eq!(lines[1].path, "/process_api/ba98");
        assert_eq!(lines[2].controllers, ["cpu", "cpuacct"]);
        assert_eq!(lines[3].id, 0);
        assert!(lines[3].controllers.is_empty());
        assert_eq!(lines[3].path, "/system.slice/peng.service");
    }

    #[test]
    fn a_cgroup_path_may_hold_colons() {
        let lines = self_cgroup("0::/odd:name\n");
        assert_eq!(lines[0].path, "/odd:name");
    }

    #[test]
    fn key_value_files() {
        let oom_control = "oom_kill_disable 0\nunder_oom 0\noom_kill 3\n";
        assert_eq!(key_value(oom_control, "oom_kill"), Some(3));
        let events = "low 0\nhigh 0\nmax 12\noom 2\noom_kill 1\noom_group_kill 0\n";
        assert_eq!(key_value(events, "oom_kill"), Some(1));
        assert_eq!(key_value(events, "max"), Some(12));
        let cpu_stat = "usage_usec 1500000\nuser_usec 1000000\nsystem_usec 500000\n";
        assert_eq!(key_value(cpu_stat, "usage_usec"), Some(1_500_000));
        assert_eq!(key_value(cpu_stat, "usage"), None);
        assert_eq!(key_value("max many\n", "max"), None);
        assert_eq!(key_value("", "max"), None);
    }

    #[test]
    fn numbers_lists_and_cpu_max() {
        assert_eq!(number("16\n"), Some(16));
        assert_eq!(number("max\n"), Some(u64::MAX));
        assert_eq!(number("-1"), None);
        assert_eq!(
            controller_list("cpuset cpu io memory pids\n"),
            ["cpuset", "cpu", "io", "memory", "pids"]
        );
        assert_eq!(
            controller_list("+memory +cpu +pids"),
            ["memory", "cpu", "pids"]
        );
        assert_eq!(controller_list("+memory -cpu"), ["memory"]);
        assert_eq!(pids("12\n345\nx\n\n"), [12, 345]);
        assert_eq!(cpu_max("50000 100000\n"), Some(0.5));
        assert_eq!(cpu_max("max 100000\n"), Some(f64::INFINITY));
        assert_eq!(cpu_max("200000"), Some(2.0));
        assert_eq!(cpu_max("1 0"), None);
        assert_eq!(cpu_max(""), None);
    }
}
