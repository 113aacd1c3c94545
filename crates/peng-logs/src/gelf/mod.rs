//! GELF 1.1 as Graylog's `GelfCodec` accepts it: payload decoding (gzip, zlib or plain JSON,
//! detected by magic bytes) and UDP chunk reassembly.
//!
//! This module owns the wire format only. It is pure: no sockets, no clocks (callers pass the
//! current instant), no knowledge of teams. It must never panic or allocate without bound on
//! any input: decompression stops at [`GelfLimits::max_decompressed`], and the
//! [`ChunkAssembler`] holds at most [`ChunkLimits::max_bytes`] across incomplete sets.
//!
//! Rules taken from Graylog (see `docs/logs.md`):
//! - a missing `host` is accepted (empty host); a blank or non-string `host` is rejected;
//! - a blank or non-string `short_message` falls back to `message`; neither is an error;
//! - a missing or non-numeric `timestamp` means "use the receive time"
//!   ([`GelfMessage::timestamp_ns`] is `None`);
//! - `level` defaults to 1 (alert) when missing or not a syslog level 0–7;
//! - every other key is an additional field: the leading `_` is stripped, the name must match
//!   `^[\w.\-]+$`, `_id` is dropped, nulls are skipped, objects and arrays are kept as their
//!   JSON text.

mod chunk;
pub(crate) mod decode;

pub use chunk::{ChunkAssembler, ChunkLimits, ChunkPush, CHUNK_MAGIC};
pub use decode::{decode, decode_json, valid_name};

use std::collections::BTreeMap;

use crate::record::FieldValue;

/// Bounds on one GELF payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GelfLimits {
    /// Most bytes a payload may have after decompression (Graylog's default: 8 MiB).
    pub max_decompressed: usize,
    /// Most additional fields kept from one message; later ones are dropped and counted in
    /// [`GelfMessage::dropped_fields`].
    pub max_fields: usize,
}

impl Default for GelfLimits {
    fn default() -> Self {
        Self {
            max_decompressed: 8 * 1024 * 1024,
            max_fields: 256,
        }
    }
}

/// A decoded GELF message, before it is tied to a team.
#[derive(Debug, Clone, PartialEq)]
pub struct GelfMessage {
    /// Empty when the sender sent no `host`.
    pub host: String,
    pub short_message: String,
    pub full_message: Option<String>,
    /// `None` when the message had no usable timestamp: the caller uses the receive time.
    pub timestamp_ns: Option<i64>,
    pub level: u8,
    /// Additional fields without their leading `_`.
    pub fields: BTreeMap<String, FieldValue>,
    /// Additional fields dropped: invalid names, reserved names, or past `max_fields`.
    pub dropped_fields: usize,
}

/// Why a GELF payload, chunk or frame was refused. [`GelfError::reason`] is the short label
/// used on the `discarded` counter and in the dead-letter list.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GelfError {
    #[error("empty payload")]
    Empty,
    #[error("payload larger than {limit} bytes after decompression")]
    TooLarge { limit: usize },
    #[error("cannot decompress {format} payload: {detail}")]
    Decompress {
        format: &'static str,
        detail: String,
    },
    #[error("invalid json: {0}")]
    InvalidJson(String),
    #[error("payload is not a json object")]
    NotObject,
    #[error("'host' must be a non-blank string")]
    BadHost,
    #[error("'short_message' (or 'message') must be a non-blank string")]
    NoShortMessage,
    #[error("chunk header truncated: {len} bytes, at least 13 needed")]
    ChunkTruncated { len: usize },
    #[error("chunk sequence number {seq} not below sequence count {count}")]
    ChunkBadSequence { seq: u8, count: u8 },
    #[error("chunk sequence count {count} is over the limit of {limit}")]
    TooManyChunks { count: u8, limit: u8 },
    #[error("chunk sequence count {count} differs from {expected} of earlier chunks")]
    ChunkCountMismatch { count: u8, expected: u8 },
    #[error("frame longer than {limit} bytes")]
    FrameTooLong { limit: usize },
    #[error("unsupported content encoding '{0}'")]
    BadEncoding(String),
    #[error("line {line}: {error}")]
    InBulk { line: usize, error: Box<GelfError> },
    #[error("no ingest token: send it in the '_ingest_token' field")]
    NoToken,
    #[error("unknown ingest token")]
    BadToken,
}

impl GelfError {
    /// A short, stable label for counters and the dead-letter list.
    pub fn reason(&self) -> &'static str {
        match self {
            GelfError::Empty => "empty",
            GelfError::TooLarge { .. } => "too_large",
            GelfError::Decompress { .. } => "bad_compression",
            GelfError::InvalidJson(_) => "invalid_json",
            GelfError::NotObject => "not_object",
            GelfError::BadHost => "bad_host",
            GelfError::NoShortMessage => "no_short_message",
            GelfError::ChunkTruncated { .. } => "chunk_truncated",
            GelfError::ChunkBadSequence { .. } => "chunk_bad_sequence",
            GelfError::TooManyChunks { .. } => "too_many_chunks",
            GelfError::ChunkCountMismatch { .. } => "chunk_count_mismatch",
            GelfError::FrameTooLong { .. } => "frame_too_long",
            GelfError::BadEncoding(_) => "bad_encoding",
            GelfError::InBulk { error, .. } => error.reason(),
            GelfError::NoToken => "no_token",
            GelfError::BadToken => "bad_token",
        }
    }

    pub fn kind(&self) -> peng_core::ErrorKind {
        match self {
            GelfError::NoToken | GelfError::BadToken => peng_core::ErrorKind::Unauthorized,
            GelfError::InBulk { error, .. } => error.kind(),
            _ => peng_core::ErrorKind::Invalid,
        }
    }
}
