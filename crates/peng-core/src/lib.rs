//! Identifiers, value types and the error vocabulary shared by every part of peng.
//!
//! This crate owns the types that cross crate boundaries: names (`TeamName`, `ServiceId`, …),
//! human-written quantities (`Duration`, `ByteSize`), the stored vocabularies (`DbMode`,
//! `Severity`, `AlertState`: [`states`]), the small `ErrorKind` every error maps to, and the
//! in-process counters every component reports. It must never do I/O, spawn tasks or
//! know about HTTP: everything here is pure and cheap to test.

pub mod metrics;
mod names;
mod quantity;
pub mod states;

pub use names::{NameError, ServiceId, ServiceName, StageName, TeamName};
pub use quantity::{ByteSize, Duration, QuantityError};
pub use states::{AlertState, DbMode, Severity, Transition, UnknownValue};

/// The small set of error classes that every crate's error maps to. Only the server turns a
/// kind into an HTTP status, in one place.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// The thing asked for does not exist (or the caller may not know that it exists).
    NotFound,
    /// The input is malformed or breaks a rule; the message says which and where.
    Invalid,
    /// The request conflicts with the current state (already exists, over capacity, …).
    Conflict,
    /// No or wrong credentials.
    Unauthorized,
    /// Valid credentials, but not for this team's things.
    Forbidden,
    /// A dependency (disk, a child process, a remote) is not available right now.
    Unavailable,
    /// A bug or an unexpected failure inside peng.
    Internal,
}

/// Nanoseconds since the Unix epoch, the one timestamp unit used across peng.
pub fn now_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0)
}
