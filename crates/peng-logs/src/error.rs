//! The crate's error type.

use peng_core::ErrorKind;

use crate::gelf::GelfError;

/// Errors of the log store, search and pipeline.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    /// The query text is wrong; `position` is a byte offset into it.
    #[error("query error at position {position}: {message}")]
    Query { position: usize, message: String },
    /// A request parameter is out of bounds.
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Gelf(#[from] GelfError),
    /// The write queue is full; the records were dropped and counted.
    #[error("log queue is full")]
    QueueFull,
    /// The pipeline has stopped.
    #[error("log pipeline is shut down")]
    Closed,
    /// A commit failed; the records waiting for it were not stored.
    #[error("log commit failed: {0}")]
    Commit(String),
    #[error("log index: {0}")]
    Index(#[from] tantivy::TantivyError),
    #[error("log index directory: {0}")]
    Directory(String),
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
}

impl LogError {
    pub fn kind(&self) -> ErrorKind {
        match self {
            LogError::Query { .. } | LogError::Invalid(_) => ErrorKind::Invalid,
            LogError::Gelf(e) => e.kind(),
            LogError::QueueFull | LogError::Closed | LogError::Commit(_) => ErrorKind::Unavailable,
            LogError::Index(_) | LogError::Directory(_) | LogError::Io(_) => ErrorKind::Internal,
        }
    }
}
