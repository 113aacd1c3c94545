//! Hard limits for instances: each instance (a process and everything it forks) runs in a
//! cgroup of its own under `<peng's own cgroup>/<parent>`, with a memory limit and no swap
//! beyond it, a cpu quota and a cap on processes, and its usage (cpu time, memory and its peak,
//! processes, OOM kills, refused forks) is read back from the same files. This crate owns
//! finding the hierarchy on cgroup v1 (one mount per controller, `cpu,cpuacct` co-mounts) and
//! v2 (one unified tree, controllers enabled per level, peng's own processes moved to a leaf),
//! creating, reusing, killing and removing groups, and a pre-exec hook that puts a child in its
//! group before it runs. It never starts processes and never knows teams or services: a group
//! is a name the caller chose. It only writes small files, so it can be pointed at a plain
//! directory tree ([`Cgroups::detect_in`]).

#![warn(missing_docs)]

mod detect;
mod error;
mod files;
mod parse;

use std::collections::BTreeSet;
use std::ffi::CString;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

pub use error::CgroupError;

/// The cgroup interface a [`Cgroups`] writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Version {
    /// One hierarchy per controller (`/sys/fs/cgroup/memory`, `/sys/fs/cgroup/cpu,cpuacct`, …).
    V1,
    /// The unified hierarchy, controllers enabled per level in `cgroup.subtree_control`.
    V2,
}

/// The hard limits of one group.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Limits {
    /// Memory the group may use; it gets no swap beyond it. `u64::MAX` is unlimited.
    pub memory_bytes: u64,
    /// CPU time, in cores (`0.5` is half of one core), enforced per 100 ms period.
    pub cpu: f64,
    /// How many processes and threads the group may hold at once. `u64::MAX` is unlimited.
    pub pids: u64,
}

/// What a group uses, read from its files; a file that is missing reads as 0 (or `None`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    /// CPU time used since the group was made, in nanoseconds.
    pub cpu_ns: u64,
    /// Memory charged to the group now (page cache included).
    pub memory_bytes: u64,
    /// The most memory charged at once, where the kernel records it.
    pub memory_peak_bytes: Option<u64>,
    /// Processes and threads in the group now.
    pub pids: u64,
    /// Processes the kernel killed because the group reached its memory limit.
    pub oom_kills: u64,
    /// Forks refused because the group reached its pids limit.
    pub pids_limit_hits: u64,
}

/// The parent under which groups are made, in every hierarchy peng uses.
#[derive(Debug, Clone)]
pub struct Cgroups {
    version: Version,
    /// One per hierarchy: the parent directory and the controllers it carries.
    hierarchies: Vec<Hierarchy>,
}

impl Cgroups {
    /// Finds the hierarchy peng runs in and prepares `<peng's own cgroup>/<parent>` (e.g.
    /// `peng-instances`) per controller. The error says why limits are unavailable (not root,
    /// controllers missing, read-only, …).
    pub fn detect(parent: &str) -> Result<Cgroups, CgroupError> {
        let read = |path: &str| {
            std::fs::read_to_string(path).map_err(|e| CgroupError::Unavailable {
                reason: format!("cannot read {path}: {e}"),
            })
        };
        let mountinfo = read("/proc/self/mountinfo")?;
        let self_cgroup = read("/proc/self/cgroup")?;
        Cgroups::detect_in(Path::new("/"), &mountinfo, &self_cgroup, parent)
    }

    /// Same as [`Cgroups::detect`], from the given `/proc/self/mountinfo` and
    /// `/proc/self/cgroup` texts, with every mount point taken below `root`, so a test can
    /// point it at a directory tree of its own.
    pub fn detect_in(
        root: &Path,
        mountinfo: &str,
        self_cgroup: &str,
        parent: &str,
    ) -> Result<Cgroups, CgroupError> {
        let (version, hierarchies) = detect::detect(root, mountinfo, self_cgroup, parent)?;
        let cgroups = Cgroups {
            version,
            hierarchies,
        };
        tracing::debug!(cgroups = %cgroups.describe(), parent, "cgroup limits available");
        Ok(cgroups)
    }

    /// Which cgroup interface is in use.
    pub fn version(&self) -> Version {
        self.version
    }

    /// `cgroup v1 (memory, cpu, cpuacct, pids)`, for logs and status pages.
    pub fn describe(&self) -> String {
        let mut all = Controllers::default();
        for h in &self.hierarchies {
            all = all.union(h.controllers);
        }
        let version = match self.version {
            Version::V1 => "v1",
            Version::V2 => "v2",
        };
        format!("cgroup {version} ({})", all.names().join(", "))
    }

    /// Creates the group `name` (a plain file name of `[A-Za-z0-9._-]`, not `.` or `..`) with
    /// `limits`, or reuses an existing empty one and applies the limits again. A group that
    /// still holds processes is not reused ([`CgroupError::InUse`]).
    pub fn create(&self, name: &str, limits: &Limits) -> Result<Group, CgroupError> {
        check_name(name)?;
        check_limits(limits)?;
        let group = self.group(name, *limits);
        let mut made = Vec::new();
        let result = group.hierarchies.iter().try_for_each(|h| {
            if files::mkdir(&h.dir)? {
                made.push(h.dir.clone());
                return Ok(());
            }
            let count = group_pids(&h.dir).len();
            if count > 0 {
                return Err(CgroupError::InUse {
                    path: h.dir.clone(),
                    count,
                });
            }
            Ok(())
        });
        let result = result.and_then(|()| group.apply(limits));
        if let Err(error) = result {
            // A group is made whole or not at all; what this call made goes again.
            for dir in made {
                let _ = std::fs::remove_dir(dir);
            }
            return Err(error);
        }
        tracing::debug!(group = name, ?limits, "cgroup ready");
        Ok(group)
    }

    /// Names of the groups under the parent in any hierarchy, sorted; after a crash these are
    /// the groups the previous peng left.
    pub fn groups(&self) -> Vec<String> {
        let mut names = BTreeSet::new();
        for h in &self.hierarchies {
            let Ok(entries) = std::fs::read_dir(&h.dir) else {
                continue;
            };
            for entry in entries.flatten() {
                let is_dir = entry.file_type().is_ok_and(|t| t.is_dir());
                if let (true, Ok(name)) = (is_dir, entry.file_name().into_string()) {
                    if valid_name(&name) {
                        names.insert(name);
                    }
                }
            }
        }
        names.into_iter().collect()
    }

    /// The existing group `name` (in at least one hierarchy), its limits read from its files.
    pub fn open(&self, name: &str) -> Option<Group> {
        if !valid_name(name) {
            return None;
        }
        let mut group = self.group(name, Limits::UNREAD);
        if !group.hierarchies.iter().any(|h| h.dir.is_dir()) {
            return None;
        }
        group.limits = group.read_limits();
        Some(group)
    }

    fn group(&self, name: &str, limits: Limits) -> Group {
        Group {
            name: name.to_string(),
            version: self.version,
            hierarchies: self
                .hierarchies
                .iter()
                .map(|h| Hierarchy {
                    controllers: h.controllers,
                    dir: h.dir.join(name),
                })
                .collect(),
            limits,
        }
    }
}

/// One instance's cgroup, in every hierarchy.
#[derive(Debug, Clone)]
pub struct Group {
    name: String,
    version: Version,
    /// One per hierarchy: the group's directory and the controllers it carries.
    hierarchies: Vec<Hierarchy>,
    limits: Limits,
}

/// How long [`Group::kill_all`] keeps killing before it gives up.
const KILL_TIMEOUT: Duration = Duration::from_secs(2);

impl Group {
    /// The name the group was created or opened with.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The group's directories, one per hierarchy (v2 has one).
    pub fn dirs(&self) -> Vec<&Path> {
        self.hierarchies.iter().map(|h| h.dir.as_path()).collect()
    }

    /// A closure for `CommandExt::pre_exec`: it moves the calling process into the group by
    /// writing `0` to each hierarchy's `cgroup.procs`. It is safe between fork and exec: the
    /// paths are prepared here, and the closure only calls `open`, `write` and `close`, without
    /// allocating. A failure stops the child before it runs.
    pub fn attach_self(&self) -> impl FnMut() -> io::Result<()> + Send + Sync + 'static {
        let paths: Vec<Option<CString>> = self
            .hierarchies
            .iter()
            .map(|h| CString::new(h.dir.join("cgroup.procs").as_os_str().as_bytes()).ok())
            .collect();
        move || {
            for path in &paths {
                let Some(path) = path else {
                    return Err(io::Error::from_raw_os_error(libc::EINVAL));
                };
                // SAFETY: `path` is a NUL-terminated string that outlives the call.
                let fd = unsafe { libc::open(path.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC) };
                if fd < 0 {
                    return Err(io::Error::last_os_error());
                }
                // SAFETY: `fd` is open and the buffer is one valid byte.
                let written = unsafe { libc::write(fd, b"0".as_ptr().cast(), 1) };
                let error = (written < 0).then(io::Error::last_os_error);
                // SAFETY: `fd` is ours and closed once.
                unsafe { libc::close(fd) };
                if let Some(error) = error {
                    return Err(error);
                }
            }
            Ok(())
        }
    }

    /// Moves the process `pid` (with all its threads) into the group, in every hierarchy.
    pub fn attach(&self, pid: u32) -> Result<(), CgroupError> {
        if pid == 0 || i32::try_from(pid).is_err() {
            return Err(CgroupError::InvalidPid(pid));
        }
        for h in &self.hierarchies {
            files::write_pid(&h.dir.join("cgroup.procs"), pid)?;
        }
        Ok(())
    }

    /// What the group uses now; missing files read as 0 (or `None`).
    pub fn usage(&self) -> Usage {
        let mut usage = Usage::default();
        for h in &self.hierarchies {
            let read = |file: &str| files::read(&h.dir.join(file));
            let number = |file: &str| read(file).and_then(|t| parse::number(&t));
            let key = |file: &str, key: &str| read(file).and_then(|t| parse::key_value(&t, key));
            let c = h.controllers;
            match self.version {
                Version::V1 => {
                    if c.memory {
                        usage.memory_bytes = number("memory.usage_in_bytes").unwrap_or(0);
                        usage.memory_peak_bytes = number("memory.max_usage_in_bytes");
                        usage.oom_kills = key("memory.oom_control", "oom_kill").unwrap_or(0);
                    }
                    if c.cpuacct {
                        usage.cpu_ns = number("cpuacct.usage").unwrap_or(0);
                    }
                }
                Version::V2 => {
                    if c.memory {
                        usage.memory_bytes = number("memory.current").unwrap_or(0);
                        usage.memory_peak_bytes = number("memory.peak");
                        usage.oom_kills = key("memory.events", "oom_kill").unwrap_or(0);
                    }
                    if c.cpu {
                        let usec = key("cpu.stat", "usage_usec").unwrap_or(0);
                        usage.cpu_ns = usec.saturating_mul(1000);
                    }
                }
            }
            if c.pids {
                usage.pids = number("pids.current").unwrap_or(0);
                usage.pids_limit_hits = key("pids.events", "max").unwrap_or(0);
            }
        }
        usage
    }

    /// Every process in the group, in any hierarchy, sorted and without duplicates.
    pub fn procs(&self) -> Vec<u32> {
        let all: BTreeSet<u32> = self
            .hierarchies
            .iter()
            .flat_map(|h| group_pids(&h.dir))
            .collect();
        all.into_iter().collect()
    }

    /// Sends SIGKILL to everything in the group (on v2 through `cgroup.kill` where the kernel
    /// has it), again and again, until the group is empty or 2 seconds have passed.
    pub fn kill_all(&self) {
        let deadline = Instant::now() + KILL_TIMEOUT;
        let kill_file = match self.version {
            Version::V2 => self
                .hierarchies
                .first()
                .map(|h| h.dir.join("cgroup.kill"))
                .filter(|p| p.exists()),
            Version::V1 => None,
        };
        // peng itself is never in an instance's group; if it were, it would stay alive
        let me = std::process::id();
        loop {
            let pids: Vec<u32> = self.procs().into_iter().filter(|p| *p != me).collect();
            if pids.is_empty() {
                return;
            }
            if Instant::now() >= deadline {
                tracing::warn!(group = %self.name, remaining = pids.len(), "processes survived SIGKILL");
                return;
            }
            let by_file = kill_file
                .as_deref()
                .is_some_and(|path| files::write(path, "1").is_ok());
            if !by_file {
                for pid in pids {
                    // pids from cgroup.procs are positive; 0 or a negative number would
                    // signal a whole process group
                    if let Ok(pid @ 1..) = i32::try_from(pid) {
                        // SAFETY: kill takes plain integers.
                        unsafe { libc::kill(pid, libc::SIGKILL) };
                    }
                }
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Kills what is left in the group ([`Group::kill_all`]) and removes its directory in every
    /// hierarchy. A directory that is already gone is fine.
    pub fn remove(&self) -> Result<(), CgroupError> {
        self.kill_all();
        for h in &self.hierarchies {
            remove_dir(&h.dir)?;
        }
        tracing::debug!(group = %self.name, "cgroup removed");
        Ok(())
    }

    /// The limits as written by [`Cgroups::create`], or as read from the files by
    /// [`Cgroups::open`] (unlimited reads as `u64::MAX` and an infinite `cpu`, a missing file
    /// as 0).
    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// Writes `limits` to every hierarchy's files.
    fn apply(&self, limits: &Limits) -> Result<(), CgroupError> {
        let quota = quota_us(limits.cpu);
        for h in &self.hierarchies {
            let path = |file: &str| h.dir.join(file);
            let c = h.controllers;
            match self.version {
                Version::V1 => {
                    if c.memory {
                        write_v1_memory(&h.dir, &v1_number(limits.memory_bytes))?;
                    }
                    if c.cpu {
                        files::write(&path("cpu.cfs_period_us"), &CPU_PERIOD_US.to_string())?;
                        files::write(&path("cpu.cfs_quota_us"), &quota.to_string())?;
                    }
                }
                Version::V2 => {
                    if c.memory {
                        files::write(&path("memory.max"), &v2_number(limits.memory_bytes))?;
                        let swap = path("memory.swap.max");
                        if swap.exists() {
                            files::write(&swap, "0")?;
                        }
                    }
                    if c.cpu {
                        files::write(&path("cpu.max"), &format!("{quota} {CPU_PERIOD_US}"))?;
                    }
                }
            }
            if c.pids {
                files::write(&path("pids.max"), &v2_number(limits.pids))?;
            }
        }
        Ok(())
    }

    /// The limits in the group's files.
    fn read_limits(&self) -> Limits {
        let mut limits = Limits::UNREAD;
        for h in &self.hierarchies {
            let read = |file: &str| files::read(&h.dir.join(file));
            let number = |file: &str| read(file).and_then(|t| parse::number(&t));
            let c = h.controllers;
            match self.version {
                Version::V1 => {
                    if c.memory {
                        // v1 shows "unlimited" as the largest page multiple below 2^63
                        limits.memory_bytes = number("memory.limit_in_bytes")
                            .map(|n| if n >= V1_UNLIMITED { u64::MAX } else { n })
                            .unwrap_or(0);
                    }
                    if c.cpu {
                        let quota: Option<i64> =
                            read("cpu.cfs_quota_us").and_then(|t| t.trim().parse().ok());
                        let period = number("cpu.cfs_period_us").filter(|p| *p > 0);
                        limits.cpu = match (quota, period) {
                            (Some(q), _) if q < 0 => f64::INFINITY,
                            (Some(q), Some(p)) => q as f64 / p as f64,
                            _ => 0.0,
                        };
                    }
                }
                Version::V2 => {
                    if c.memory {
                        limits.memory_bytes = number("memory.max").unwrap_or(0);
                    }
                    if c.cpu {
                        limits.cpu = read("cpu.max")
                            .and_then(|t| parse::cpu_max(&t))
                            .unwrap_or(0.0);
                    }
                }
            }
            if c.pids {
                limits.pids = number("pids.max").unwrap_or(0);
            }
        }
        limits
    }
}

/// The CFS period every quota is written against, in microseconds.
const CPU_PERIOD_US: u64 = 100_000;

/// Below this a v1 memory limit is a number; at or above it, unlimited (4 EiB, far above any
/// machine, below the `2^63 - page size` the kernel shows).
const V1_UNLIMITED: u64 = 1 << 62;

/// The v1 quota for `cpu` cores: `round(cpu × period)`, at least 1 ms.
fn quota_us(cpu: f64) -> u64 {
    // `as` saturates; limits are checked to be finite and positive
    ((cpu * CPU_PERIOD_US as f64).round() as u64).max(1000)
}

fn v1_number(value: u64) -> String {
    if value == u64::MAX {
        "-1".to_string()
    } else {
        value.to_string()
    }
}

fn v2_number(value: u64) -> String {
    if value == u64::MAX {
        "max".to_string()
    } else {
        value.to_string()
    }
}

/// `memory.limit_in_bytes`, and the same value as `memory.memsw.limit_in_bytes` where swap is
/// accounted, so the group gets no swap beyond its limit. The kernel keeps the memory limit at
/// or below the memory+swap one: lowering, the memory limit goes first; raising, it fails with
/// EINVAL until memory+swap is raised, so then that one goes first.
fn write_v1_memory(dir: &Path, value: &str) -> Result<(), CgroupError> {
    let limit = dir.join("memory.limit_in_bytes");
    let memsw = dir.join("memory.memsw.limit_in_bytes");
    if !memsw.exists() {
        return files::write(&limit, value);
    }
    match files::write(&limit, value) {
        Ok(()) => files::write(&memsw, value),
        Err(e) if e.errno() == Some(libc::EINVAL) => {
            files::write(&memsw, value)?;
            files::write(&limit, value)
        }
        Err(e) => Err(e),
    }
}

/// Removes a group's directory. Right after its last process died the kernel may still count
/// it as populated for a moment, so EBUSY is retried for a while.
fn remove_dir(dir: &Path) -> Result<(), CgroupError> {
    let deadline = Instant::now() + KILL_TIMEOUT;
    loop {
        match std::fs::remove_dir(dir) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) && Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(e) => return Err(CgroupError::io("remove", dir, e)),
        }
    }
}

fn group_pids(dir: &Path) -> Vec<u32> {
    parse::pids(&files::read(&dir.join("cgroup.procs")).unwrap_or_default())
}

fn check_name(name: &str) -> Result<(), CgroupError> {
    if valid_name(name) {
        Ok(())
    } else {
        Err(CgroupError::InvalidName {
            name: name.to_string(),
        })
    }
}

/// A plain file name: `[A-Za-z0-9._-]`, 1 to 255 bytes, not `.` or `..`.
pub(crate) fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 255
        && name != "."
        && name != ".."
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

fn check_limits(limits: &Limits) -> Result<(), CgroupError> {
    let invalid = |why: String| Err(CgroupError::InvalidLimits(why));
    if limits.memory_bytes == 0 {
        return invalid("memory must be more than 0 bytes".to_string());
    }
    if !(limits.cpu.is_finite() && limits.cpu > 0.0) {
        return invalid(format!(
            "cpu must be a positive number of cores, not {}",
            limits.cpu
        ));
    }
    if limits.pids == 0 {
        return invalid("pids must be at least 1".to_string());
    }
    Ok(())
}

impl Limits {
    /// What a limit file that is missing reads as.
    const UNREAD: Limits = Limits {
        memory_bytes: 0,
        cpu: 0.0,
        pids: 0,
    };
}

/// The controllers a hierarchy carries, among those peng uses.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Controllers {
    memory: bool,
    cpu: bool,
    cpuacct: bool,
    pids: bool,
}

impl Controllers {
    /// The unified hierarchy: cpu time is read from `cpu.stat`, there is no cpuacct.
    pub(crate) const V2: Controllers = Controllers {
        memory: true,
        cpu: true,
        cpuacct: false,
        pids: true,
    };

    pub(crate) fn add(&mut self, name: &str) {
        match name {
            "memory" => self.memory = true,
            "cpu" => self.cpu = true,
            "cpuacct" => self.cpuacct = true,
            "pids" => self.pids = true,
            _ => {}
        }
    }

    fn union(self, other: Controllers) -> Controllers {
        Controllers {
            memory: self.memory || other.memory,
            cpu: self.cpu || other.cpu,
            cpuacct: self.cpuacct || other.cpuacct,
            pids: self.pids || other.pids,
        }
    }

    fn names(self) -> Vec<&'static str> {
        [
            (self.memory, "memory"),
            (self.cpu, "cpu"),
            (self.cpuacct, "cpuacct"),
            (self.pids, "pids"),
        ]
        .into_iter()
        .filter_map(|(on, name)| on.then_some(name))
        .collect()
    }
}

/// A directory in one hierarchy and the controllers that hierarchy carries.
#[derive(Debug, Clone)]
pub(crate) struct Hierarchy {
    pub(crate) controllers: Controllers,
    pub(crate) dir: PathBuf,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        for ok in ["web-1", "a", "A.b_c-9", "..."] {
            assert!(valid_name(ok), "{ok}");
        }
        for bad in ["", ".", "..", "a/b", "a b", "é", "a\0", &"x".repeat(256)] {
            assert!(!valid_name(bad), "{bad:?}");
        }
    }

    #[test]
    fn quotas() {
        assert_eq!(quota_us(0.5), 50_000);
        assert_eq!(quota_us(2.0), 200_000);
        assert_eq!(quota_us(0.001), 1000);
        assert_eq!(quota_us(0.123456), 12_346);
    }

    #[test]
    fn limits_are_checked() {
        let ok = Limits {
            memory_bytes: 1,
            cpu: 0.1,
            pids: 1,
        };
        assert!(check_limits(&ok).is_ok());
        for bad in [
            Limits {
                memory_bytes: 0,
                ..ok
            },
            Limits { pids: 0, ..ok },
            Limits { cpu: 0.0, ..ok },
            Limits { cpu: -1.0, ..ok },
            Limits {
                cpu: f64::NAN,
                ..ok
            },
            Limits {
                cpu: f64::INFINITY,
                ..ok
            },
        ] {
            let err = check_limits(&bad).unwrap_err();
            assert_eq!(err.kind(), peng_core::ErrorKind::Invalid, "{bad:?}");
        }
    }

    #[test]
    fn describe_lists_controllers_in_order() {
        let mut cpu = Controllers::default();
        cpu.add("cpu");
        cpu.add("cpuacct");
        let mut memory = Controllers::default();
        memory.add("memory");
        let mut pids = Controllers::default();
        pids.add("pids");
        let dir = PathBuf::from("/x");
        let cgroups = Cgroups {
            version: Version::V1,
            hierarchies: [cpu, memory, pids]
                .into_iter()
                .map(|controllers| Hierarchy {
                    controllers,
                    dir: dir.clone(),
                })
                .collect(),
        };
        assert_eq!(cgroups.describe(), "cgroup v1 (memory, cpu, cpuacct, pids)");
    }
}
