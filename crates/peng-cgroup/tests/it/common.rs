use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use peng_cgroup::{Cgroups, Group, Limits};
use peng_core::ErrorKind;

pub const MIB: u64 = 1024 * 1024;

/// The limits most tests create groups with.
pub const LIMITS: Limits = Limits {
    memory_bytes: 64 * MIB,
    cpu: 0.5,
    pids: 16,
};

/// The real hierarchy, with a parent of this test's own (tests run in parallel and each
/// removes its parent at the end). `None` when limits are unavailable, after checking that
/// the error says why and that it may fail here: root with writable cgroups must get them.
pub fn real_cgroups(test: &str) -> Option<(Cgroups, String)> {
    let parent = format!("peng-test-{}-{test}", std::process::id());
    match Cgroups::detect(&parent) {
        Ok(cgroups) => Some((cgroups, parent)),
        Err(error) => {
            let text = error.to_string();
            assert_eq!(error.kind(), ErrorKind::Unavailable, "{text}");
            let reason = text.trim_start_matches("cgroup limits unavailable: ");
            assert!(
                !reason.is_empty() && reason != text,
                "no reason given: {text}"
            );
            // SAFETY: geteuid cannot fail.
            let root = unsafe { libc::geteuid() } == 0;
            assert!(
                !root || text.contains("read-only"),
                "running as root with writable cgroups, limits must be available: {text}"
            );
            eprintln!("cgroup limits unavailable here, as the error says: {text}");
            None
        }
    }
}

/// Removes the group (killing what is left) and its test's parent, also when a test fails.
pub struct Cleanup(pub Group);

impl Drop for Cleanup {
    fn drop(&mut self) {
        let _ = self.0.remove();
        for dir in self.0.dirs() {
            if let Some(parent) = dir.parent() {
                let _ = std::fs::remove_dir(parent);
            }
        }
    }
}

/// `sh -c script`, put into `group` between fork and exec.
pub fn spawn_in(group: &Group, script: &str) -> Child {
    let mut command = Command::new("sh");
    command
        .arg("-c")
        .arg(script)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let attach = group.attach_self();
    // SAFETY: the hook only opens, writes and closes prepared paths (see attach_self).
    unsafe { command.pre_exec(attach) };
    command.spawn().expect("spawn sh")
}

/// Polls `done` every 10 ms until it holds or `timeout` passes; whether it held.
pub fn wait_until(timeout: Duration, mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if done() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// A cgroup file's content without the trailing newline.
pub fn read(path: &Path) -> String {
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
        .trim_end()
        .to_string()
}

/// Writes `content` to `path`, making its directory.
pub fn put(path: &Path, content: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, content).unwrap();
}
