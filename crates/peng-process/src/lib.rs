//! Child processes that never outlive peng, for every part that starts them (instances,
//! database servers).
//!
//! Linux sends `PR_SET_PDEATHSIG` when the *thread* that forked a child ends, not the process.
//! Tokio's blocking threads come and go, so children are forked by a [`Spawner`]: one thread
//! that lives as long as its owner. [`die_with_parent`] asks for the signal in the child, and
//! gives up when peng died between the fork and that request. [`backoff`] and [`describe`] are
//! the restart wait and the exit text every supervisor shares.

use std::io;
use std::os::unix::process::ExitStatusExt;
use std::process::ExitStatus;
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
}
