//! Identifiers, value types and the error vocabulary shared by every part of peng.
//!
//! This crate owns the types that cross crate boundaries: names (`TeamName`, `ServiceId`, …),
//! human-written quantities (`Duration`, `ByteSize`), the stored vocabularies (`DbMode`,
//! `Severity`, `AlertState`: [`states`]), the small `ErrorKind` every error maps to, and the
//! in-process counters every component reports. It must never do I/O, spawn tasks or
//! know about HTTP: everything here is pure and cheap to test.

pub mod calendar;
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

/// Declares the error type of a layer that gathers the errors of several parts (the databases,
/// the server's application layer): a kind, a message that says what went wrong and where, and
/// details (one problem a line), with the constructors they all use. Each layer keeps a type of
/// its own, with the `From` conversions of the parts it calls.
#[macro_export]
macro_rules! kinded_error {
    ($(#[$meta:meta])* $vis:vis struct $name:ident;) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, Eq)]
        $vis struct $name {
            pub kind: $crate::ErrorKind,
            pub message: String,
            pub details: Vec<String>,
        }

        impl $name {
            pub fn new(kind: $crate::ErrorKind, message: impl Into<String>) -> Self {
                $name {
                    kind,
                    message: message.into(),
                    details: Vec::new(),
                }
            }

            pub fn with_details(mut self, details: Vec<String>) -> Self {
                self.details = details;
                self
            }

            pub fn invalid(message: impl Into<String>) -> Self {
                Self::new($crate::ErrorKind::Invalid, message)
            }

            pub fn not_found(message: impl Into<String>) -> Self {
                Self::new($crate::ErrorKind::NotFound, message)
            }

            pub fn forbidden(message: impl Into<String>) -> Self {
                Self::new($crate::ErrorKind::Forbidden, message)
            }

            pub fn internal(message: impl Into<String>) -> Self {
                Self::new($crate::ErrorKind::Internal, message)
            }

            pub fn kind(&self) -> $crate::ErrorKind {
                self.kind
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(&self.message)
            }
        }

        impl std::error::Error for $name {}
    };
}

/// Nanoseconds since the Unix epoch, the one timestamp unit used across peng.
pub fn now_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0)
}
