//! Whether peng can sandbox instances on this machine, decided once at start by trying.
//!
//! peng needs to run as root (to start each team's instances as the team's user) and needs
//! bubblewrap, and bubblewrap needs the kernel to let an unprivileged user make namespaces.
//! Rather than guess from sysctls, the probe runs bwrap exactly as an instance would (as the
//! `nobody` user, every namespace, `/usr/bin/true`); when that fails, its own message is the
//! reason shown to users.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::bwrap::{self, Jail, Sandbox, SystemEntry};
use crate::users::{self, TeamUser};

/// Whether instances run sandboxed.
#[derive(Debug, Clone)]
pub enum Isolation {
    On(Sandbox),
    /// Instances run as peng's own user, unconfined; the reason says why, for every place that
    /// shows a service.
    Off {
        reason: String,
    },
}

impl Isolation {
    pub fn sandbox(&self) -> Option<&Sandbox> {
        match self {
            Isolation::On(s) => Some(s),
            Isolation::Off { .. } => None,
        }
    }

    /// `on (bubblewrap 0.8.0, a user per team)` or `off (why)`.
    pub fn describe(&self) -> String {
        match self {
            Isolation::On(s) => format!("on ({}, a user per team)", s.version),
            Isolation::Off { reason } => format!("off ({reason})"),
        }
    }
}

/// Where bwrap may be installed.
const BWRAP: &[&str] = &["/usr/bin/bwrap", "/usr/local/bin/bwrap", "/bin/bwrap"];

/// Decides whether instances can be sandboxed. `system_dirs` are bound read-only into every
/// sandbox where they exist; `hidden` (peng's data directory) is covered wherever it would
/// otherwise be in view. Blocking: it runs bwrap.
pub fn probe(system_dirs: &[PathBuf], hidden: Vec<PathBuf>) -> Isolation {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Isolation::Off {
            reason: "peng is not running as root, so instances cannot run as users of their own"
                .into(),
        };
    }
    let Some(path) = BWRAP.iter().map(PathBuf::from).find(|p| p.is_file()) else {
        return Isolation::Off {
            reason: "bubblewrap is not installed: apt-get install bubblewrap".into(),
        };
    };
    let version = Command::new(&path)
        .arg("--version")
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| "bubblewrap".into());
    let mut system = bwrap::system_entries(system_dirs);
    system.extend(resolv_conf(&system));
    let sandbox = Sandbox {
        bwrap: path,
        version,
        system,
        hidden,
    };
    match trial(&sandbox) {
        Ok(()) => Isolation::On(sandbox),
        Err(reason) => Isolation::Off {
            reason: format!("bubblewrap cannot make a sandbox here: {reason}"),
        },
    }
}

/// `/etc/resolv.conf` is often a symlink into `/run` (systemd-resolved, resolvconf), which the
/// sandbox replaces by a tmpfs: its target is bound where it is, so name lookups still work.
fn resolv_conf(system: &[SystemEntry]) -> Option<SystemEntry> {
    let link = Path::new("/etc/resolv.conf");
    if !std::fs::symlink_metadata(link)
        .ok()?
        .file_type()
        .is_symlink()
    {
        return None;
    }
    let target = std::fs::canonicalize(link).ok()?;
    let covered = system.iter().any(|e| match e {
        SystemEntry::Bind(dir) => target.starts_with(dir),
        SystemEntry::Symlink { .. } => false,
    });
    (!covered).then_some(SystemEntry::Bind(target))
}

fn trial(sandbox: &Sandbox) -> Result<(), String> {
    use std::os::unix::process::CommandExt;
    let nobody = users::user_by_name("nobody")
        .ok()
        .flatten()
        .map(|p| TeamUser {
            name: p.name,
            uid: p.uid,
            gid: p.gid,
        })
        .unwrap_or(TeamUser {
            name: "nobody".into(),
            uid: 65534,
            gid: 65534,
        });
    let dir = Path::new("/usr");
    let jail = Jail {
        user: &nobody,
        service_dir: dir,
        writable: &[],
        workdir: dir,
        files: &[],
        tmp_bytes: 1 << 20,
    };
    let (program, args) = sandbox.command(&jail, &["true".to_string()]);
    let mut cmd = Command::new(program);
    cmd.args(args)
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .stdin(std::process::Stdio::null());
    // SAFETY: `enter` makes only async-signal-safe calls and does not allocate.
    unsafe {
        cmd.pre_exec(bwrap::enter(&nobody, Vec::new()));
    }
    let out = cmd.output().map_err(|e| e.to_string())?;
    if out.status.success() {
        return Ok(());
    }
    let stderr = String::from_utf8_lossy(&out.stderr);
    let first = stderr.lines().next().unwrap_or("").trim();
    Err(if first.is_empty() {
        out.status.to_string()
    } else {
        first.to_string()
    })
}
