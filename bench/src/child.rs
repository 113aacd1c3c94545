//! A process the benchmark starts: it dies with the thread that started it
//! (`PR_SET_PDEATHSIG`), is stopped when its guard is dropped (SIGTERM, then SIGKILL after a
//! grace period; also on errors and panics), and can be waited for with what it used (peak
//! resident memory and CPU time, from `wait4`).

use std::os::unix::process::CommandExt;
use std::process::{Child, Command, ExitStatus};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

/// How a process ended, and what it used over its whole life.
#[derive(Debug, Clone, Copy)]
pub struct Exit {
    /// The raw wait status (see `libc::WIFEXITED`).
    pub status: i32,
    /// From the spawn to the exit being seen (polled every 2 ms).
    pub wall: Duration,
    /// Peak resident memory (`ru_maxrss`), KiB.
    pub max_rss_kib: u64,
    /// User plus system CPU time.
    pub cpu: Duration,
}

impl Exit {
    pub fn success(&self) -> bool {
        libc::WIFEXITED(self.status) && libc::WEXITSTATUS(self.status) == 0
    }

    pub fn describe(&self) -> String {
        if libc::WIFEXITED(self.status) {
            format!("exit code {}", libc::WEXITSTATUS(self.status))
        } else if libc::WIFSIGNALED(self.status) {
            format!("killed by signal {}", libc::WTERMSIG(self.status))
        } else {
            format!("wait status {}", self.status)
        }
    }
}

/// A running child; dropping the guard stops it.
pub struct ChildGuard {
    child: Option<Child>,
    pub pid: u32,
    pub started: Instant,
    /// Reaped by [`ChildGuard::wait`]: the pid is no longer ours to signal.
    reaped: bool,
    /// How long SIGTERM gets before SIGKILL.
    pub grace: Duration,
}

impl ChildGuard {
    /// Starts `cmd`. Call from the thread that outlives the child (the main thread): the child
    /// gets SIGTERM when that thread ends, so even a killed benchmark leaves nothing behind.
    pub fn spawn(mut cmd: Command, what: &str) -> Result<ChildGuard> {
        // SAFETY: prctl is async-signal-safe; nothing else runs between fork and exec.
        unsafe {
            cmd.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let started = Instant::now();
        let child = cmd
            .spawn()
            .with_context(|| format!("cannot start {what}"))?;
        Ok(ChildGuard {
            pid: child.id(),
            child: Some(child),
            started,
            reaped: false,
            grace: Duration::from_secs(5),
        })
    }

    /// `Some(status)` when the process has already exited.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        if self.reaped {
            return None;
        }
        self.child
            .as_mut()
            .and_then(|c| c.try_wait().ok().flatten())
    }

    /// Waits for the process to exit, at most until `deadline` (then an error; the guard still
    /// stops it when dropped).
    pub fn wait(&mut self, deadline: Instant) -> Result<Exit> {
        if self.reaped {
            bail!("process {} was already waited for", self.pid);
        }
        loop {
            let mut status = 0;
            // SAFETY: a zeroed rusage is a valid value for wait4 to fill.
            let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
            // SAFETY: waiting for our own child, not yet reaped; both pointers are valid.
            let r = unsafe {
                libc::wait4(
                    self.pid as libc::pid_t,
                    &mut status,
                    libc::WNOHANG,
                    &mut usage,
                )
            };
            if r == self.pid as libc::pid_t {
                self.reaped = true;
                let tv = |t: libc::timeval| {
                    Duration::from_secs(t.tv_sec.max(0) as u64)
                        + Duration::from_micros(t.tv_usec.max(0) as u64)
                };
                return Ok(Exit {
                    status,
                    wall: self.started.elapsed(),
                    max_rss_kib: usage.ru_maxrss.max(0) as u64,
                    cpu: tv(usage.ru_utime) + tv(usage.ru_stime),
                });
            }
            if r < 0 {
                bail!(
                    "cannot wait for process {}: {}",
                    self.pid,
                    std::io::Error::last_os_error()
                );
            }
            if Instant::now() >= deadline {
                bail!("process {} still running at the time limit", self.pid);
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    /// SIGTERM, then SIGKILL once the grace period has passed; waits for the exit.
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        if self.reaped {
            return;
        }
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        // SAFETY: signalling our own child by its pid, which we have not yet reaped.
        unsafe {
            libc::kill(child.id() as libc::pid_t, libc::SIGTERM);
        }
        let until = Instant::now() + self.grace;
        while Instant::now() < until {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        self.stop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wait_reports_the_exit_and_usage() {
        let mut cmd = Command::new("sh");
        cmd.args(["-c", "exit 3"]);
        let mut c = ChildGuard::spawn(cmd, "sh").unwrap();
        let e = c.wait(Instant::now() + Duration::from_secs(10)).unwrap();
        assert!(!e.success());
        assert_eq!(e.describe(), "exit code 3");
        assert!(e.max_rss_kib > 0);
    }

    #[test]
    fn dropping_the_guard_stops_the_process() {
        let mut cmd = Command::new("sleep");
        cmd.arg("60");
        let c = ChildGuard::spawn(cmd, "sleep").unwrap();
        let pid = c.pid;
        let t = Instant::now();
        drop(c);
        assert!(t.elapsed() < Duration::from_secs(5));
        // SAFETY: signal 0 only checks whether the pid exists.
        let alive = unsafe { libc::kill(pid as libc::pid_t, 0) } == 0;
        assert!(!alive);
    }
}
