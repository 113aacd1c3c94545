//! The errors of planning and of the drivers, each mapped to a `peng_core::ErrorKind` so the
//! server can answer with the right status without knowing this crate's details.

use peng_core::ErrorKind;

#[derive(Debug, thiserror::Error)]
pub enum ProvisionError {
    /// `plan` was called with neither a current nor a desired spec.
    #[error("nothing to plan: neither a current nor a desired service")]
    NothingToPlan,
    /// The current and the desired spec name different services.
    #[error("cannot plan {desired} against the applied state of {current}")]
    ServiceMismatch { current: String, desired: String },
    /// `--stage` names a stage that neither the file nor the applied state declares.
    #[error("stage '{stage}' is not declared by {service}")]
    UnknownStage { service: String, stage: String },
    /// A desired instance list that does not fit the call (wrong service, duplicate index).
    #[error("invalid instance list for {service}: {reason}")]
    InvalidInstances { service: String, reason: String },
    /// The driver was shut down; it takes no more work.
    #[error("the process driver is shut down")]
    ShutDown,
    /// `ProcessDriver::start` was called outside a tokio runtime.
    #[error("the process driver needs a tokio runtime")]
    NoRuntime,
    /// Reading or writing the driver's state directory failed.
    #[error("{what} {path}: {source}")]
    Io {
        what: &'static str,
        path: String,
        #[source]
        source: std::io::Error,
    },
}

impl ProvisionError {
    pub fn kind(&self) -> ErrorKind {
        match self {
            ProvisionError::NothingToPlan
            | ProvisionError::ServiceMismatch { .. }
            | ProvisionError::UnknownStage { .. }
            | ProvisionError::InvalidInstances { .. } => ErrorKind::Invalid,
            ProvisionError::ShutDown => ErrorKind::Unavailable,
            ProvisionError::NoRuntime | ProvisionError::Io { .. } => ErrorKind::Internal,
        }
    }

    pub(crate) fn io(what: &'static str, path: &std::path::Path, source: std::io::Error) -> Self {
        ProvisionError::Io {
            what,
            path: path.display().to_string(),
            source,
        }
    }
}
