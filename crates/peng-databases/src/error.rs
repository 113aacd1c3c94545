//! The one error of this crate: a kind (which the server maps to a status), a message that says
//! what went wrong and where, and details (a file's problems, one a line).

use peng_core::ErrorKind;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
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

    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Invalid, message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::NotFound, message)
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Internal, message)
    }

    pub fn kind(&self) -> ErrorKind {
        self.kind
    }
}

impl From<peng_state::StateError> for Error {
    fn from(e: peng_state::StateError) -> Self {
        Error::new(e.kind(), e.to_string())
    }
}

impl From<peng_db::DbError> for Error {
    fn from(e: peng_db::DbError) -> Self {
        Error::new(e.kind(), e.to_string())
    }
}
