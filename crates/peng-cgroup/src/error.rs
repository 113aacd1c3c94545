use std::io;
use std::path::{Path, PathBuf};

use peng_core::ErrorKind;

/// What went wrong with a cgroup. Messages name the file or directory concerned.
#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    /// Limits cannot be enforced here: not root, controllers missing, mounted read-only, …
    #[error("cgroup limits unavailable: {reason}")]
    Unavailable {
        /// Why, naming the mount, file or controller.
        reason: String,
    },
    /// A group or parent name that is not a plain file name of `[A-Za-z0-9._-]`.
    #[error(
        "invalid cgroup name {name:?}: use letters, digits, '.', '_' and '-' (not '.' or '..')"
    )]
    InvalidName {
        /// The name as given.
        name: String,
    },
    /// Limits the kernel cannot take (zero memory, no cpu, …).
    #[error("invalid cgroup limits: {0}")]
    InvalidLimits(String),
    /// A pid that names no other process (0 would be peng itself).
    #[error("invalid pid {0}")]
    InvalidPid(u32),
    /// An existing group still holds processes, so it is not reused.
    #[error("cgroup {} is in use ({count} in its cgroup.procs)", path.display())]
    InUse {
        /// The group's directory.
        path: PathBuf,
        /// How many processes it holds.
        count: usize,
    },
    /// A file or directory could not be read, written, created or removed.
    #[error("cannot {action} {}: {source}", path.display())]
    Io {
        /// `write`, `read`, `create`, `remove`.
        action: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// What the kernel said.
        #[source]
        source: io::Error,
    },
}

impl CgroupError {
    /// The class of the error, for the one mapping to HTTP statuses in the server.
    pub fn kind(&self) -> ErrorKind {
        match self {
            CgroupError::Unavailable { .. } => ErrorKind::Unavailable,
            CgroupError::InvalidName { .. }
            | CgroupError::InvalidLimits(_)
            | CgroupError::InvalidPid(_) => ErrorKind::Invalid,
            CgroupError::InUse { .. } => ErrorKind::Conflict,
            CgroupError::Io { source, .. } => match source.kind() {
                io::ErrorKind::NotFound => ErrorKind::NotFound,
                io::ErrorKind::PermissionDenied | io::ErrorKind::ReadOnlyFilesystem => {
                    ErrorKind::Unavailable
                }
                io::ErrorKind::ResourceBusy => ErrorKind::Conflict,
                _ => ErrorKind::Internal,
            },
        }
    }

    pub(crate) fn io(action: &'static str, path: &Path, source: io::Error) -> CgroupError {
        CgroupError::Io {
            action,
            path: path.to_path_buf(),
            source,
        }
    }

    /// The OS error number behind an I/O failure.
    pub(crate) fn errno(&self) -> Option<i32> {
        match self {
            CgroupError::Io { source, .. } => source.raw_os_error(),
            _ => None,
        }
    }
}
