//! The one error type of the monitor, mapped to the shared `ErrorKind` so the server can turn
//! it into a status in one place.

use peng_core::ErrorKind;

/// Why a monitor operation failed.
#[derive(Debug, thiserror::Error)]
pub enum MonitorError {
    /// The time-series store refused a read or a write.
    #[error("metrics store: {0}")]
    Tsdb(#[from] peng_tsdb::TsdbError),
    /// A blocking storage call could not be run to completion.
    #[error("storage task failed: {0}")]
    Task(String),
}

impl MonitorError {
    pub fn kind(&self) -> ErrorKind {
        match self {
            MonitorError::Tsdb(e) => e.kind(),
            MonitorError::Task(_) => ErrorKind::Internal,
        }
    }
}
