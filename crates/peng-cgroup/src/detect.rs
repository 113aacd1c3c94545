//! Finding the hierarchy peng runs in and preparing the parent of its instances' groups.
//!
//! v1 is chosen when the memory, cpu and pids controllers each sit on a v1 mount; v2 when a
//! cgroup2 mount offers all three in its root's `cgroup.controllers`. Anything else is
//! unavailable, with a reason for each version. Preparing a v2 parent may move peng itself:
//! a cgroup that enables controllers for its children must hold no processes, so whatever runs
//! in peng's own cgroup goes to the leaf `peng-server` first; when peng is found in that leaf
//! again (a restart, a second detection), its parent counts as peng's own cgroup.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use crate::error::CgroupError;
use crate::parse::{self, Membership, Mount};
use crate::{files, valid_name, Controllers, Hierarchy, Version};

/// The leaf peng's own processes move to on v2.
pub(crate) const SERVER_LEAF: &str = "peng-server";

/// The controllers every group is limited by.
const REQUIRED: [&str; 3] = ["memory", "cpu", "pids"];

/// What a v2 group's parent must enable in `cgroup.subtree_control`.
const V2_ENABLE: &str = "+memory +cpu +pids";

/// Finds the hierarchy and creates `<own cgroup>/<parent>` in it, returning one directory per
/// hierarchy (v1) or the one directory (v2).
pub(crate) fn detect(
    root: &Path,
    mountinfo: &str,
    self_cgroup: &str,
    parent: &str,
) -> Result<(Version, Vec<Hierarchy>), CgroupError> {
    if !valid_name(parent) {
        return Err(CgroupError::InvalidName {
            name: parent.to_string(),
        });
    }
    let mounts = parse::mountinfo(mountinfo);
    let members = parse::self_cgroup(self_cgroup);
    let v1 = match v1_layout(root, &mounts, &members) {
        Ok(own) => return prepare_v1(own, parent).map(|h| (Version::V1, h)),
        Err(reason) => reason,
    };
    let v2 = match v2_layout(root, &mounts, &members) {
        Ok(layout) => return prepare_v2(&layout, parent).map(|h| (Version::V2, vec![h])),
        Err(reason) => reason,
    };
    Err(CgroupError::Unavailable {
        reason: format!("cgroup v1: {v1}; cgroup v2: {v2}"),
    })
}

/// peng's own cgroup in each v1 hierarchy that carries a controller we use.
fn v1_layout(
    root: &Path,
    mounts: &[Mount],
    members: &[Membership],
) -> Result<Vec<Hierarchy>, String> {
    let missing: Vec<&str> = REQUIRED
        .into_iter()
        .filter(|c| !mounts.iter().any(|m| m.is_v1_with(c)))
        .collect();
    if missing.len() == REQUIRED.len() {
        return Err("no hierarchy with memory, cpu or pids is mounted".to_string());
    }
    if !missing.is_empty() {
        return Err(format!("no {} hierarchy is mounted", missing.join(", ")));
    }
    let mut found: Vec<(&Mount, Hierarchy)> = Vec::new();
    for controller in ["memory", "cpu", "cpuacct", "pids"] {
        let Some(mount) = mounts.iter().find(|m| m.is_v1_with(controller)) else {
            continue; // cpuacct is optional: without it cpu usage reads 0
        };
        if let Some((_, hierarchy)) = found.iter_mut().find(|(m, _)| std::ptr::eq(*m, mount)) {
            hierarchy.controllers.add(controller);
            continue;
        }
        let mount_dir = mount_dir(root, mount);
        if mount.read_only {
            return Err(format!("{} is mounted read-only", mount_dir.display()));
        }
        let member = members
            .iter()
            .find(|m| m.id != 0 && m.controllers.iter().any(|c| c == controller))
            .ok_or_else(|| {
                format!("/proc/self/cgroup has no line for the {controller} hierarchy")
            })?;
        let mut controllers = Controllers::default();
        controllers.add(controller);
        let dir = mount_dir.join(relative(&member.path, &mount.root));
        found.push((mount, Hierarchy { controllers, dir }));
    }
    Ok(found.into_iter().map(|(_, h)| h).collect())
}

fn prepare_v1(own: Vec<Hierarchy>, parent: &str) -> Result<Vec<Hierarchy>, CgroupError> {
    own.into_iter()
        .map(|h| {
            let dir = h.dir.join(parent);
            files::mkdir(&dir).map_err(unavailable)?;
            Ok(Hierarchy {
                controllers: h.controllers,
                dir,
            })
        })
        .collect()
}

/// Where peng sits in a cgroup2 mount that offers every controller we use.
struct V2Layout {
    mount_dir: PathBuf,
    /// peng's own cgroup below `mount_dir`, one name a component.
    own: Vec<String>,
}

fn v2_layout(root: &Path, mounts: &[Mount], members: &[Membership]) -> Result<V2Layout, String> {
    let unified: Vec<&Mount> = mounts.iter().filter(|m| m.fs_type == "cgroup2").collect();
    let Some(first) = unified.first() else {
        return Err("no cgroup2 filesystem is mounted".to_string());
    };
    let offers = |m: &Mount| {
        let path = mount_dir(root, m).join("cgroup.controllers");
        parse::controller_list(&files::read(&path).unwrap_or_default())
    };
    let Some(mount) = unified
        .iter()
        .find(|m| REQUIRED.iter().all(|c| offers(m).iter().any(|o| o == c)))
    else {
        let offered = offers(first);
        let missing: Vec<&str> = REQUIRED
            .into_iter()
            .filter(|c| !offered.iter().any(|o| o == c))
            .collect();
        return Err(format!(
            "{} does not offer {} (cgroup.controllers: {})",
            mount_dir(root, first).display(),
            missing.join(", "),
            if offered.is_empty() {
                "none".to_string()
            } else {
                offered.join(" ")
            }
        ));
    };
    let mount_dir = mount_dir(root, mount);
    if mount.read_only {
        return Err(format!("{} is mounted read-only", mount_dir.display()));
    }
    let member = members
        .iter()
        .find(|m| m.id == 0 && m.controllers.is_empty())
        .ok_or("/proc/self/cgroup has no line for the cgroup2 hierarchy")?;
    let mut own: Vec<String> = relative(&member.path, &mount.root)
        .split('/')
        .filter(|c| !c.is_empty())
        .map(str::to_string)
        .collect();
    if own.last().is_some_and(|c| c == SERVER_LEAF) {
        own.pop();
    }
    Ok(V2Layout { mount_dir, own })
}

fn prepare_v2(layout: &V2Layout, parent: &str) -> Result<Hierarchy, CgroupError> {
    // Each ancestor passes the controllers down to the next, from the root to peng's own.
    let mut dir = layout.mount_dir.clone();
    for name in &layout.own {
        enable_controllers(&dir).map_err(unavailable)?;
        dir.push(name);
    }
    let is_root = layout.own.is_empty() && !dir.join("cgroup.type").exists();
    if !is_root {
        move_into_leaf(&dir).map_err(unavailable)?;
    }
    enable_controllers(&dir).map_err(unavailable)?;
    let parent_dir = dir.join(parent);
    files::mkdir(&parent_dir).map_err(unavailable)?;
    enable_controllers(&parent_dir).map_err(unavailable)?;
    Ok(Hierarchy {
        controllers: Controllers::V2,
        dir: parent_dir,
    })
}

/// Writes `+memory +cpu +pids` to `dir`'s `cgroup.subtree_control` unless all are enabled.
fn enable_controllers(dir: &Path) -> Result<(), CgroupError> {
    let path = dir.join("cgroup.subtree_control");
    let enabled = parse::controller_list(&files::read(&path).unwrap_or_default());
    if REQUIRED.iter().all(|c| enabled.iter().any(|e| e == c)) {
        return Ok(());
    }
    files::write(&path, V2_ENABLE)
}

/// Moves every process of `own` into `own/peng-server`, in rounds, as long as new ones appear
/// (a process may fork while we move).
fn move_into_leaf(own: &Path) -> Result<(), CgroupError> {
    let procs = own.join("cgroup.procs");
    if parse::pids(&files::read(&procs).unwrap_or_default()).is_empty() {
        return Ok(());
    }
    let leaf = own.join(SERVER_LEAF);
    files::mkdir(&leaf)?;
    let leaf_procs = leaf.join("cgroup.procs");
    let mut moved = HashSet::new();
    for _ in 0..10 {
        let fresh: Vec<u32> = parse::pids(&files::read(&procs).unwrap_or_default())
            .into_iter()
            .filter(|pid| !moved.contains(pid))
            .collect();
        if fresh.is_empty() {
            break;
        }
        for pid in fresh {
            match files::write_pid(&leaf_procs, pid) {
                Ok(()) => {}
                Err(e) if e.errno() == Some(libc::ESRCH) => {} // it exited meanwhile
                Err(e) => return Err(e),
            }
            moved.insert(pid);
        }
    }
    tracing::info!(
        leaf = %leaf.display(),
        processes = moved.len(),
        "moved peng's own processes into a leaf cgroup so instances' groups can be limited"
    );
    Ok(())
}

/// A mount's directory below `root` (which is `/` outside tests).
fn mount_dir(root: &Path, mount: &Mount) -> PathBuf {
    root.join(mount.mount_point.trim_start_matches('/'))
}

/// `path` (from /proc/self/cgroup) relative to the mounted directory `mount_root`, without a
/// leading slash. A cgroup namespace already shows paths relative to what it mounts.
fn relative(path: &str, mount_root: &str) -> String {
    let inside = Path::new(path)
        .strip_prefix(mount_root)
        .map(|p| p.to_string_lossy().into_owned())
        .unwrap_or_else(|_| path.to_string());
    inside.trim_start_matches('/').to_string()
}

/// Detection failures all say why limits are unavailable; a refused write says who peng is.
fn unavailable(error: CgroupError) -> CgroupError {
    let denied = matches!(&error, CgroupError::Io { source, .. }
        if source.kind() == std::io::ErrorKind::PermissionDenied);
    let reason = if denied {
        // SAFETY: geteuid cannot fail and touches no memory.
        let uid = unsafe { libc::geteuid() };
        format!("{error} (peng runs as uid {uid}; limits need root or a cgroup delegated to it)")
    } else {
        error.to_string()
    };
    CgroupError::Unavailable { reason }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_paths() {
        assert_eq!(
            relative("/system.slice/peng.service", "/"),
            "system.slice/peng.service"
        );
        assert_eq!(relative("/docker/abc/x", "/docker/abc"), "x");
        assert_eq!(relative("/docker/abc", "/docker/abc"), "");
        assert_eq!(relative("/", "/"), "");
        assert_eq!(relative("/x", "/docker/abc"), "x");
    }

    #[test]
    fn nothing_mounted_says_so_for_both_versions() {
        let root = Path::new("/nonexistent");
        let err = detect(root, "", "0::/\n", "peng-instances").unwrap_err();
        assert_eq!(
            err.to_string(),
            "cgroup limits unavailable: cgroup v1: no hierarchy with memory, cpu or pids is \
             mounted; cgroup v2: no cgroup2 filesystem is mounted"
        );
    }

    #[test]
    fn missing_v1_controllers_and_an_empty_cgroup2_are_named() {
        let mountinfo = "\
32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct
35 31 0:32 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory
41 31 0:38 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw
";
        let root = tempfile::tempdir().unwrap();
        let err = detect(root.path(), mountinfo, "0::/\n", "peng-instances").unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("cgroup v1: no pids hierarchy is mounted"),
            "{text}"
        );
        assert!(
            text.contains(
                "sys/fs/cgroup/unified does not offer memory, cpu, pids (cgroup.controllers: none)"
            ),
            "{text}"
        );
        assert_eq!(err.kind(), peng_core::ErrorKind::Unavailable);
    }

    #[test]
    fn read_only_mounts_are_named() {
        let mountinfo = "\
32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct ro,nosuid - cgroup cgroup rw,cpu,cpuacct
35 31 0:32 / /sys/fs/cgroup/memory ro,nosuid - cgroup cgroup rw,memory
39 31 0:36 / /sys/fs/cgroup/pids ro,nosuid - cgroup cgroup rw,pids
";
        let root = tempfile::tempdir().unwrap();
        let err = detect(root.path(), mountinfo, "4:memory:/\n", "peng-instances").unwrap_err();
        assert!(
            err.to_string().contains("memory is mounted read-only"),
            "{err}"
        );
    }

    #[test]
    fn a_parent_must_be_a_plain_name() {
        for parent in ["", ".", "..", "a/b", "a b"] {
            let err = detect(Path::new("/"), "", "", parent).unwrap_err();
            assert_eq!(err.kind(), peng_core::ErrorKind::Invalid, "{parent:?}");
        }
    }
}
