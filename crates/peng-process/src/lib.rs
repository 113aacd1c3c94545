//! Child processes that never outlive peng, for every part that starts them (instances,
//! database servers).
//!
//! Linux sends `PR_SET_PDEATHSIG` when the *thread* that forked a child ends, not the process.
//! Tokio's blocking threads come and go, so children are forked by a [`Spawner`]: one thread
//! that lives as long as its owner. [`die_with_parent`] asks for the signal in the child, and
//! gives up when peng died between the fork and that request. [`backoff`] and [`describe`] are
//! the restart wait and the exit text every supervisor shares.
//!
//! The death signal reaches the child only, not what the child starts: a script such as
//! `mariadb-install-db` runs its `mariadbd --bootstrap` as a grandchild that would go on writing
//! a data directory after peng is gone, beside the one a restarted peng begins. [`tree`] runs such
//! a program as the first process of a PID namespace of its own (util-linux `unshare --pid
//! --fork --kill-child`): when the wrapper dies, its child dies, and with the namespace's first
//! process the kernel kills every process in it. Where namespaces cannot be made (no privilege),
//! the program runs as it is.

use std::ffi::OsStr;
use std::io;
use std::os::unix::process::ExitStatusExt;
use std::process::{ExitStatus, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use tokio::process::{Child, Command};
use tokio::sync::oneshot;

/// The thread that forks children (see the crate docs).
pub struct Spawner {
    tx: std::sync::mpsc::Sender<(Command, oneshot::Sender<io::Result<Child>>)>,
}

impl Spawner {
    /// Starts the thread, named `name`; children are registered with `runtime`'s reaper.
    pub fn start(name: &str, runtime: tokio::runtime::Handle) -> io::Result<Spawner> {
        let (tx, rx) = std::sync::mpsc::channel::<(Command, oneshot::Sender<io::Result<Child>>)>();
        std::thread::Builder::new()
            .name(name.to_string())
            .spawn(move || {
                // tokio's process support registers the child with the runtime's reaper.
                let _guard = runtime.enter();
                while let Ok((mut command, reply)) = rx.recv() {
                    let _ = reply.send(command.spawn());
                }
            })?;
        Ok(Spawner { tx })
    }

    /// Forks `command` on the spawner's thread.
    pub async fn spawn(&self, command: Command) -> io::Result<Child> {
        let gone = || io::Error::other("the spawner thread is gone");
        let (reply, answer) = oneshot::channel();
        self.tx.send((command, reply)).map_err(|_| gone())?;
        answer.await.map_err(|_| gone())?
    }
}

/// Makes the child of `cmd` receive `signal` when the thread that forks it ends; the child does
/// not start at all when peng is already gone. Fork it with a [`Spawner`].
pub fn die_with_parent(cmd: &mut Command, signal: libc::c_int) {
    let parent = std::process::id();
    // SAFETY: the closure runs between fork and exec and only makes async-signal-safe system
    // calls without allocating.
    unsafe {
        cmd.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, signal as libc::c_ulong, 0, 0, 0) != 0 {
                return Err(io::Error::last_os_error());
            }
            // peng died between fork and prctl: the signal will never come, so give up
            if libc::getppid() as u32 != parent {
                return Err(io::Error::from_raw_os_error(libc::ESRCH));
            }
            Ok(())
        });
    }
}

/// The wrapper that puts a program in a PID namespace of its own, killed with its wrapper.
const UNSHARE: &str = "/usr/bin/unshare";
const UNSHARE_ARGS: [&str; 4] = ["--pid", "--fork", "--kill-child=SIGKILL", "--"];

/// A command running `program` so that its whole process tree dies when the command's own
/// process does (see the crate docs); `program` alone where that cannot be had. Give it
/// [`die_with_parent`] and fork it with a [`Spawner`] so that the tree also dies with peng.
pub fn tree(program: impl AsRef<OsStr>) -> Command {
    if namespaces_work() {
        let mut cmd = Command::new(UNSHARE);
        cmd.args(UNSHARE_ARGS).arg(program);
        cmd
    } else {
        Command::new(program)
    }
}

/// Whether `unshare --pid` runs here; asked once.
fn namespaces_work() -> bool {
    static WORKS: OnceLock<bool> = OnceLock::new();
    *WORKS.get_or_init(|| {
        std::process::Command::new(UNSHARE)
            .args(UNSHARE_ARGS)
            .arg("true")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|status| status.success())
    })
}

/// The wait before the `failures`-th consecutive restart: `initial`, doubling, at most `max`.
pub fn backoff(initial: Duration, max: Duration, failures: u32) -> Duration {
    let shift = failures.saturating_sub(1).min(31);
    initial.saturating_mul(1u32 << shift).min(max)
}

/// `exited with status 1`, `killed by signal 9`.
pub fn describe(status: ExitStatus) -> String {
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exited with status {code}"),
        (None, Some(signal)) => format!("killed by signal {signal}"),
        (None, None) => "exited".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_maximum() {
        let (i, m) = (Duration::from_secs(1), Duration::from_secs(30));
        let waits: Vec<u64> = (1..=7).map(|n| backoff(i, m, n).as_secs()).collect();
        assert_eq!(waits, vec![1, 2, 4, 8, 16, 30, 30]);
        assert_eq!(backoff(i, m, u32::MAX), m);
    }

    #[tokio::test]
    async fn a_child_forked_by_the_spawner_runs_and_its_exit_is_described() {
        let spawner = Spawner::start("test-spawner", tokio::runtime::Handle::current()).unwrap();
        let mut cmd = Command::new("sh");
        cmd.args(["-c", "exit 3"]);
        die_with_parent(&mut cmd, libc::SIGTERM);
        let status = spawner.spawn(cmd).await.unwrap().wait().await.unwrap();
        assert_eq!(describe(status), "exited with status 3");
        let mut cmd = Command::new("sh");
        cmd.args(["-c", "kill -9 $$"]);
        let status = spawner.spawn(cmd).await.unwrap().wait().await.unwrap();
        assert_eq!(describe(status), "killed by signal 9");
    }

    /// The pids of the processes named `needle`, zombies left out.
    fn running_with(needle: &str) -> Vec<u32> {
        let mut pids = Vec::new();
        for entry in std::fs::read_dir("/proc").unwrap().flatten() {
            let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
                continue;
            };
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            let zombie = stat
                .rsplit(')')
                .next()
                .is_some_and(|r| r.trim_start().starts_with('Z'));
            if cmdline.starts_with(needle.as_bytes()) && !zombie {
                pids.push(pid);
            }
        }
        pids
    }

    #[tokio::test]
    async fn a_tree_dies_whole_with_its_wrapper_where_namespaces_work() {
        if !namespaces_work() {
            eprintln!(
                "skipped: unshare --pid is not allowed here; tree() runs programs as they are"
            );
            assert_eq!(tree("sh").as_std().get_program(), "sh");
            return;
        }
        // a grandchild, which a death signal on the child alone would leave running
        let needle = format!("peng-process-tree-{}", std::process::id());
        let mut cmd = tree("bash");
        cmd.args(["-c", &format!("(exec -a {needle} sleep 300) & wait")]);
        cmd.stdin(Stdio::null());
        let mut child = cmd.spawn().unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while running_with(&needle).is_empty() {
            assert!(
                std::time::Instant::now() < deadline,
                "the tree never started"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let depth = |pid: String| {
            let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
            let line = status
                .lines()
                .find(|l| l.starts_with("NSpid:"))
                .unwrap()
                .to_string();
            line.split_whitespace().count()
        };
        let grandchild = running_with(&needle)[0];
        assert_eq!(
            depth(grandchild.to_string()),
            depth("self".to_string()) + 1,
            "the grandchild is not in a namespace of its own"
        );
        child.start_kill().unwrap();
        child.wait().await.unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while !running_with(&needle).is_empty() {
            assert!(
                std::time::Instant::now() < deadline,
                "the grandchild outlived its wrapper"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}
