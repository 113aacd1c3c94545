//! The errors of the storage engine and how each maps to peng's `ErrorKind`.
//!
//! Bad input is `Invalid`, a field type clash is `Conflict`, a disk that fails is
//! `Unavailable`, and bytes on disk that do not decode are `Internal` (corruption): the engine
//! reports them, it never panics on them.

use std::path::PathBuf;

use peng_core::ErrorKind;

use crate::model::FieldType;

/// Everything that can go wrong in the time-series store.
#[derive(Debug, thiserror::Error)]
pub enum TsdbError {
    /// The input breaks a rule (empty measurement, no fields, NaN, …); nothing was written.
    #[error("invalid point: {0}")]
    Invalid(String),
    /// A field already holds values of another type in this series; nothing was written.
    #[error(
        "field type conflict: field '{field}' of measurement '{measurement}' is {existing}, got {new}"
    )]
    FieldTypeConflict {
        measurement: String,
        field: String,
        existing: FieldType,
        new: FieldType,
    },
    /// Points older than the retention cutoff cannot be stored; nothing was written.
    #[error("point at {timestamp_ns} ns is older than the retention cutoff {cutoff_ns} ns")]
    BeforeRetention { timestamp_ns: i64, cutoff_ns: i64 },
    /// The disk failed (read, write, fsync, rename, …).
    #[error("{context} {}: {source}", path.display())]
    Io {
        context: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Another `Tsdb` (in this or another process) has the directory open.
    #[error("data directory {} is in use by another process", .0.display())]
    Locked(PathBuf),
    /// Bytes on disk do not decode: a file was damaged or written by an unknown version.
    #[error("corrupt file {}: {detail}", path.display())]
    Corrupt { path: PathBuf, detail: String },
    /// A previous panic while holding an internal lock left the store unusable.
    #[error("internal lock poisoned by an earlier panic")]
    Poisoned,
}

impl TsdbError {
    /// The class of this error, for callers that map errors to statuses.
    pub fn kind(&self) -> ErrorKind {
        match self {
            TsdbError::Invalid(_) | TsdbError::BeforeRetention { .. } => ErrorKind::Invalid,
            TsdbError::FieldTypeConflict { .. } => ErrorKind::Conflict,
            TsdbError::Io { .. } | TsdbError::Locked(_) => ErrorKind::Unavailable,
            TsdbError::Corrupt { .. } | TsdbError::Poisoned => ErrorKind::Internal,
        }
    }

    pub(crate) fn io(
        context: &'static str,
        path: impl Into<PathBuf>,
    ) -> impl FnOnce(std::io::Error) -> TsdbError {
        let path = path.into();
        move |source| TsdbError::Io {
            context,
            path,
            source,
        }
    }

    pub(crate) fn corrupt(path: impl Into<PathBuf>, detail: impl Into<String>) -> TsdbError {
        TsdbError::Corrupt {
            path: path.into(),
            detail: detail.into(),
        }
    }
}
