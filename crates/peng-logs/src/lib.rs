//! Central log management: every GELF message (UDP, TCP, HTTP) and every line an instance
//! writes lands, tied to its team, in a tantivy index that is searchable within seconds and
//! pruned by each service's retention.
//!
//! This crate owns the GELF wire format ([`gelf`]), attribution of messages to teams by ingest
//! token ([`ingest`]), the UDP/TCP listeners, the writer thread ([`pipeline`]), the index and
//! its retention ([`index`]) and the search language ([`query`]). It must never store a
//! message it cannot tie to a team, never let a team's search reach another team's records,
//! never block a tokio worker on the index, and never grow memory with input: every queue,
//! frame, chunk set and query is bounded, and whatever is refused is counted. It knows nothing
//! about HTTP routing: the server calls [`ingest::decode_http`] and [`index::LogStore::search`].

mod error;
pub mod gelf;
pub mod index;
pub mod ingest;
pub mod pipeline;
pub mod query;
mod record;
pub mod wal;

pub use error::LogError;
pub use record::{output_line, FieldValue, LogRecord, LogSource, MAX_OUTPUT_LINE};
