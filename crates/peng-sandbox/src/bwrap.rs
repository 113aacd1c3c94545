//! The command line that runs an instance inside bubblewrap.
//!
//! bubblewrap (`bwrap`, Debian's package of the same name) is started as the team's user, never
//! as root: the pre-exec step ([`enter`]) drops to that user before `exec`, and bwrap makes its
//! namespaces as an unprivileged user (a user namespace mapping only that uid). What the
//! instance then sees:
//!
//! - **Filesystem**: a fresh root holding only the platform's system directories read-only
//!   (`/usr`, `/etc`, …; symlinks such as `/bin -> usr/bin` kept as symlinks), a private
//!   `/proc` of its own PID namespace, a minimal `/dev`, private tmpfs `/tmp`, `/var/tmp` and
//!   `/run`, the service's directory read-only at its own path with the `writable` directories
//!   bound read-write over it, and the files handed to it (the database CA, …) copied into
//!   `/run/peng/` from descriptors peng opened. peng's data directory, home directories and
//!   other teams' checkouts are not in that root at all; where one lies under a bound system
//!   directory, an empty tmpfs covers it.
//! - **Processes**: its own PID namespace (it sees itself and its children only; bwrap is its
//!   pid 1 and reaper), IPC, UTS and cgroup namespaces, no capabilities, `no_new_privs` (bwrap
//!   sets it), no further user namespaces (`--disable-userns`), and it dies with peng
//!   (`--die-with-parent`).
//! - **Network**: the host's, as before, so it listens on its port and reaches its database and
//!   the GELF inputs on 127.0.0.1.

use std::ffi::OsString;
use std::os::fd::RawFd;
use std::path::{Path, PathBuf};

use crate::users::TeamUser;

/// Where handed files appear inside the sandbox.
pub const FILES_DIR: &str = "/run/peng";

/// A system directory as it is on the host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SystemEntry {
    /// Bound read-only at the same path (a directory, or a file such as the target of a
    /// symlinked `/etc/resolv.conf`).
    Bind(PathBuf),
    /// A symlink (e.g. `/bin -> usr/bin` on merged-/usr systems), recreated as one.
    Symlink { path: PathBuf, target: PathBuf },
}

/// What peng knows at start about how to sandbox on this machine. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Sandbox {
    pub(crate) bwrap: PathBuf,
    pub(crate) version: String,
    pub(crate) system: Vec<SystemEntry>,
    /// Host paths no instance may see even where they lie under a bound directory (peng's data
    /// directory).
    pub(crate) hidden: Vec<PathBuf>,
}

/// One instance's sandbox.
#[derive(Debug, Clone)]
pub struct Jail<'a> {
    pub user: &'a TeamUser,
    /// The service file's directory: read-only at its own path.
    pub service_dir: &'a Path,
    /// Directories inside `service_dir` the instance may write to.
    pub writable: &'a [PathBuf],
    /// Where the program starts; inside `service_dir`.
    pub workdir: &'a Path,
    /// `(name, fd)`: the file open at `fd` (in the child) appears read-only as
    /// `/run/peng/NAME`.
    pub files: &'a [(String, RawFd)],
    /// Size of the private `/tmp` (its pages count against the instance's memory limit too).
    pub tmp_bytes: u64,
}

impl Sandbox {
    /// `bwrap 0.8.0`.
    pub fn version(&self) -> &str {
        &self.version
    }

    /// Host paths covered inside every sandbox.
    pub fn hidden(&self) -> &[PathBuf] {
        &self.hidden
    }

    /// The program to exec and its arguments: bwrap, its options, then `command`.
    pub fn command(&self, jail: &Jail<'_>, command: &[String]) -> (PathBuf, Vec<OsString>) {
        let mut a = Args::default();
        a.push_all(&[
            "--unshare-user",
            "--unshare-pid",
            "--unshare-ipc",
            "--unshare-uts",
            "--unshare-cgroup-try",
            "--disable-userns",
            "--die-with-parent",
            "--cap-drop",
            "ALL",
        ]);
        let mut bound: Vec<&Path> = Vec::new();
        for entry in &self.system {
            match entry {
                SystemEntry::Bind(path) => {
                    a.push("--ro-bind");
                    a.path(path);
                    a.path(path);
                    bound.push(path);
                }
                SystemEntry::Symlink { path, target } => {
                    a.push("--symlink");
                    a.path(target);
                    a.path(path);
                }
            }
        }
        a.push_all(&["--proc", "/proc", "--dev", "/dev"]);
        let size = jail.tmp_bytes.max(1 << 20).to_string();
        for tmp in ["/tmp", "/var/tmp", "/run"] {
            a.push_all(&["--size", &size, "--tmpfs", tmp]);
        }
        a.push("--ro-bind");
        a.path(jail.service_dir);
        a.path(jail.service_dir);
        bound.push(jail.service_dir);
        for dir in jail.writable {
            a.push("--bind");
            a.path(dir);
            a.path(dir);
        }
        for (name, fd) in jail.files {
            a.push_all(&["--perms", "0400", "--ro-bind-data", &fd.to_string()]);
            a.path(&Path::new(FILES_DIR).join(name));
        }
        // Mounted last, so they cover whatever bind put them in view.
        for hidden in &self.hidden {
            if bound.iter().any(|b| hidden.starts_with(b)) {
                a.push_all(&["--size", "4096", "--tmpfs"]);
                a.path(hidden);
            }
        }
        a.push("--chdir");
        a.path(jail.workdir);
        a.push("--");
        for arg in command {
            a.push(arg);
        }
        (self.bwrap.clone(), a.0)
    }
}

#[derive(Default)]
struct Args(Vec<OsString>);

impl Args {
    fn push(&mut self, s: &str) {
        self.0.push(s.into());
    }
    fn push_all(&mut self, all: &[&str]) {
        self.0.extend(all.iter().map(OsString::from));
    }
    fn path(&mut self, p: &Path) {
        self.0.push(p.as_os_str().to_owned());
    }
}

/// Reads the system directories of the host: each path that exists, as a directory to bind or
/// as a symlink to recreate; missing ones are left out.
pub fn system_entries(paths: &[PathBuf]) -> Vec<SystemEntry> {
    let mut out = Vec::new();
    for path in paths {
        let Ok(meta) = std::fs::symlink_metadata(path) else {
            continue;
        };
        if meta.file_type().is_symlink() {
            if let Ok(target) = std::fs::read_link(path) {
                out.push(SystemEntry::Symlink {
                    path: path.clone(),
                    target,
                });
            }
        } else if meta.is_dir() {
            out.push(SystemEntry::Bind(path.clone()));
        }
    }
    out
}

/// A closure for `pre_exec` that makes the child the team's user: it keeps the descriptors in
/// `inherit` open across `exec` (they were opened close-on-exec by the parent, and are
/// numbered in bwrap's arguments), drops every supplementary group, then sets gid and uid.
/// Root privileges end here, before anything of the team's runs. Only async-signal-safe
/// system calls, no allocation.
pub fn enter(
    user: &TeamUser,
    inherit: Vec<RawFd>,
) -> impl FnMut() -> std::io::Result<()> + Send + Sync + 'static {
    let (uid, gid) = (user.uid, user.gid);
    move || {
        let check = |rc: libc::c_int| {
            if rc == -1 {
                Err(std::io::Error::last_os_error())
            } else {
                Ok(())
            }
        };
        for fd in &inherit {
            // SAFETY: fcntl on a descriptor number; no memory is touched.
            check(unsafe { libc::fcntl(*fd, libc::F_SETFD, 0) })?;
        }
        // SAFETY: plain credential system calls in the child between fork and exec.
        unsafe {
            check(libc::setgroups(0, std::ptr::null()))?;
            check(libc::setgid(gid))?;
            check(libc::setuid(uid))?;
        }
        // never back: a failed drop must not leave root in place
        // SAFETY: as above.
        if unsafe { libc::setuid(0) } == 0 {
            return Err(std::io::Error::from_raw_os_error(libc::EPERM));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sandbox() -> Sandbox {
        Sandbox {
            bwrap: PathBuf::from("/usr/bin/bwrap"),
            version: "bwrap 0.8.0".into(),
            system: vec![
                SystemEntry::Bind("/usr".into()),
                SystemEntry::Symlink {
                    path: "/bin".into(),
                    target: "usr/bin".into(),
                },
                SystemEntry::Bind("/etc".into()),
            ],
            hidden: vec!["/etc/peng-data".into(), "/var/lib/peng".into()],
        }
    }

    fn text(args: &[OsString]) -> String {
        args.iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect::<Vec<_>>()
            .join(" ")
    }

    #[test]
    fn the_command_line_binds_what_the_instance_needs_and_nothing_else() {
        let user = TeamUser {
            name: "peng-books".into(),
            uid: 70001,
            gid: 70001,
        };
        let writable = [PathBuf::from("/srv/books/shelf/cache")];
        let files = [("DB_SSL_CA".to_string(), 9)];
        let jail = Jail {
            user: &user,
            service_dir: Path::new("/srv/books/shelf"),
            writable: &writable,
            workdir: Path::new("/srv/books/shelf/app"),
            files: &files,
            tmp_bytes: 64 << 20,
        };
        let (program, args) = sandbox().command(&jail, &["python3".into(), "app.py".into()]);
        assert_eq!(program, Path::new("/usr/bin/bwrap"));
        let t = text(&args);
        assert!(t.starts_with("--unshare-user --unshare-pid --unshare-ipc --unshare-uts --unshare-cgroup-try --disable-userns --die-with-parent --cap-drop ALL "), "{t}");
        assert!(
            t.contains("--ro-bind /usr /usr --symlink usr/bin /bin --ro-bind /etc /etc"),
            "{t}"
        );
        assert!(t.contains("--size 67108864 --tmpfs /tmp"), "{t}");
        assert!(t.contains("--ro-bind /srv/books/shelf /srv/books/shelf --bind /srv/books/shelf/cache /srv/books/shelf/cache"), "{t}");
        assert!(
            t.contains("--perms 0400 --ro-bind-data 9 /run/peng/DB_SSL_CA"),
            "{t}"
        );
        // the data dir under /etc is covered; the one under /var is not in view anyway
        assert!(t.contains("--tmpfs /etc/peng-data"), "{t}");
        assert!(!t.contains("/var/lib/peng"), "{t}");
        assert!(
            t.ends_with("--chdir /srv/books/shelf/app -- python3 app.py"),
            "{t}"
        );
    }

    #[test]
    fn system_entries_keep_symlinks_and_skip_what_is_missing() {
        let dir = tempfile::tempdir().expect("tmp");
        let real = dir.path().join("usr");
        std::fs::create_dir(&real).expect("mkdir");
        let link = dir.path().join("bin");
        std::os::unix::fs::symlink("usr", &link).expect("symlink");
        let entries = system_entries(&[real.clone(), link.clone(), dir.path().join("nope")]);
        assert_eq!(
            entries,
            vec![
                SystemEntry::Bind(real),
                SystemEntry::Symlink {
                    path: link,
                    target: "usr".into()
                }
            ]
        );
    }
}
