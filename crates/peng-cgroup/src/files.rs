//! Reading and writing the small files of a cgroup.
//!
//! Every write is one `open`, one `write`, one `close`, so the kernel sees each value whole and
//! its error comes back from that `write`. In a cgroupfs the files exist as soon as the
//! directory does; a plain directory tree (a test's) has none, so writes create the file.

use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::path::Path;

use crate::error::CgroupError;

/// Replaces the content of `path` with `value`.
pub(crate) fn write(path: &Path, value: &str) -> Result<(), CgroupError> {
    let mut file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(path)
        .map_err(|e| CgroupError::io("write", path, e))?;
    file.write_all(value.as_bytes())
        .map_err(|e| CgroupError::io("write", path, e))
}

/// Writes one pid to a `cgroup.procs`. The kernel moves the process and keeps nothing of the
/// write; in a plain tree the line is appended, so the file lists every pid moved.
pub(crate) fn write_pid(path: &Path, pid: u32) -> Result<(), CgroupError> {
    let mut file = OpenOptions::new()
        .append(true)
        .create(true)
        .open(path)
        .map_err(|e| CgroupError::io("write", path, e))?;
    file.write_all(format!("{pid}\n").as_bytes())
        .map_err(|e| CgroupError::io("write", path, e))
}

/// The content of `path`, `None` when it is missing or unreadable.
pub(crate) fn read(path: &Path) -> Option<String> {
    fs::read_to_string(path).ok()
}

/// Creates the directory `path`; `Ok(false)` when it already exists.
pub(crate) fn mkdir(path: &Path) -> Result<bool, CgroupError> {
    match fs::create_dir(path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists && path.is_dir() => Ok(false),
        Err(e) => Err(CgroupError::io("create", path, e)),
    }
}
