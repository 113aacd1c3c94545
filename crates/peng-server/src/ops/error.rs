//! The application layer's error: a kind (which only the API turns into an HTTP status, and
//! the UI into a page), a message that says what and where, and details (one problem a line).

use peng_core::ErrorKind;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    pub kind: ErrorKind,
    pub message: String,
    pub details: Vec<String>,
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Error {
            kind,
            message: message.into(),
            details: Vec::new(),
        }
    }

    pub fn with_details(mut self, details: Vec<String>) -> Self {
        self.details = details;
        self
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::NotFound, message)
    }

    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Invalid, message)
    }

    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Forbidden, message)
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Internal, message)
    }

    /// A task on the blocking pool that did not finish (it panicked or was cancelled).
    pub fn task(what: &str, e: tokio::task::JoinError) -> Self {
        Self::internal(format!("{what} task failed: {e}"))
    }
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Error {}

macro_rules! from_kinded {
    ($($ty:ty),* $(,)?) => {$(
        impl From<$ty> for Error {
            fn from(e: $ty) -> Self {
                Error::new(e.kind(), e.to_string())
            }
        }
    )*};
}

from_kinded!(
    peng_state::StateError,
    peng_provision::ProvisionError,
    peng_logs::LogError,
    peng_monitor::MonitorError,
    peng_tsdb::TsdbError,
    peng_logs::gelf::GelfError,
    peng_sandbox::SandboxError,
);

impl From<peng_databases::Error> for Error {
    fn from(e: peng_databases::Error) -> Self {
        Error {
            kind: e.kind,
            message: e.message,
            details: e.details,
        }
    }
}

impl From<peng_spec::Diagnostics> for Error {
    fn from(d: peng_spec::Diagnostics) -> Self {
        let details: Vec<String> = d.0.iter().map(|x| x.to_string()).collect();
        let n = details.len();
        Error::invalid(format!(
            "the service file has {n} error{}",
            if n == 1 { "" } else { "s" }
        ))
        .with_details(details)
    }
}
