//! A sandbox per instance: what keeps a team's code from peng and from other teams.
//!
//! This crate owns the three pieces of that: the team's Unix user and group, made once with
//! the system's tools ([`users`]); the bubblewrap command line that gives an instance its own
//! root, process tree and private `/tmp` and hands it exactly the files it needs ([`bwrap`]);
//! and the start-up probe that decides whether peng can sandbox at all and, when it cannot,
//! says why ([`probe`]). Limits (memory, cpu, processes) are `peng-cgroup`'s.
//!
//! It never decides what runs or when (the process driver does), never records anything (the
//! caller keeps which user a team has), and never leaves root privileges to anything of a
//! team's: the child drops to the team's user between fork and exec, and bubblewrap itself
//! runs unprivileged.

pub mod bwrap;
pub mod probe;
pub mod users;

pub use bwrap::{enter, Jail, Sandbox, FILES_DIR};
pub use probe::{probe, Isolation};
pub use users::TeamUser;

use peng_core::ErrorKind;

#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    #[error("cannot read the user database: {0}")]
    UserDatabase(std::io::Error),
    #[error("{tool}: {message}")]
    Tool { tool: String, message: String },
    #[error("user {name} (uid {uid}) exists but was not made by peng for this team (its comment is '{comment}'); remove it or rename the team")]
    ForeignUser {
        name: String,
        uid: u32,
        comment: String,
    },
    #[error("no free uid left in isolation.uids {range}; widen the range in the platform file")]
    NoFreeId { range: String },
}

impl SandboxError {
    pub fn kind(&self) -> ErrorKind {
        match self {
            SandboxError::ForeignUser { .. } | SandboxError::NoFreeId { .. } => ErrorKind::Conflict,
            SandboxError::UserDatabase(_) | SandboxError::Tool { .. } => ErrorKind::Unavailable,
        }
    }
}
