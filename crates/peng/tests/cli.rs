//! The binary in a shell pipeline, without a server: what a user sees when the command
//! reading peng's output stops early, as `head` does.

use std::fs::File;
use std::io::Read;
use std::os::fd::{FromRawFd, OwnedFd};
use std::os::unix::process::ExitStatusExt;
use std::process::{Command, Stdio};

/// A pipe whose buffer holds one page, so that a longer output cannot fit in it and the
/// writer is still writing when the reader goes away.
fn small_pipe() -> (File, OwnedFd) {
    let mut fds = [0; 2];
    // SAFETY: `fds` has room for the two descriptors pipe2 writes.
    let made = unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) };
    assert_eq!(made, 0, "pipe2: {}", std::io::Error::last_os_error());
    // SAFETY: both descriptors were just made and are owned by nothing else.
    let (reader, writer) = unsafe { (File::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    // SAFETY: an fcntl on a descriptor we own.
    let size = unsafe { libc::fcntl(fds[1], libc::F_SETPIPE_SZ, 4096) };
    assert!(
        size >= 4096,
        "F_SETPIPE_SZ: {}",
        std::io::Error::last_os_error()
    );
    (reader, writer)
}

#[test]
fn a_closed_stdout_ends_a_client_command_quietly() {
    let (mut reader, writer) = small_pipe();
    let pipe_size = 4096;
    let child = Command::new(env!("CARGO_BIN_EXE_peng"))
        .arg("schema")
        .stdin(Stdio::null())
        .stdout(writer)
        .stderr(Stdio::piped())
        .spawn()
        .expect("peng starts");

    // The first line, byte by byte so that nothing more is taken from the pipe; then the
    // reader goes, as `head -1` would.
    let mut first = Vec::new();
    let mut byte = [0u8; 1];
    while first.last() != Some(&b'\n') {
        assert_eq!(
            reader.read(&mut byte).expect("read"),
            1,
            "output ended early"
        );
        first.push(byte[0]);
    }
    assert_eq!(first, b"{\n");
    drop(reader);

    let out = child.wait_with_output().expect("peng ends");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !stderr.contains("panicked") && !stderr.contains("Broken pipe"),
        "stderr: {stderr}"
    );
    assert!(stderr.is_empty(), "stderr: {stderr}");
    // The schema is longer than the pipe holds, so peng was still writing: it ends by the
    // signal, as git and ripgrep do (a shell reports 141).
    let schema = schema_len();
    assert!(
        schema > 2 * pipe_size,
        "the schema ({schema} bytes) no longer outgrows the pipe"
    );
    assert_eq!(out.status.signal(), Some(libc::SIGPIPE), "{:?}", out.status);
}

/// How long `peng schema`'s output is, read to the end this time.
fn schema_len() -> usize {
    let out = Command::new(env!("CARGO_BIN_EXE_peng"))
        .arg("schema")
        .output()
        .expect("peng runs");
    assert!(out.status.success(), "{:?}", out.status);
    out.stdout.len()
}
