//! The dead-letter list: the last refused payloads, for admins to see why.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use crate::gelf::GelfError;
use crate::record::LogSource;

/// Rejections kept; older ones are forgotten.
pub const MAX_REJECTIONS: usize = 1000;
/// Bytes of a refused payload kept.
pub const REJECTION_SNIPPET: usize = 512;

/// One refused payload.
#[derive(Debug, Clone, PartialEq)]
pub struct Rejection {
    pub time_ns: i64,
    pub source: LogSource,
    pub peer: Option<SocketAddr>,
    /// [`GelfError::reason`].
    pub reason: &'static str,
    /// The error's message.
    pub detail: String,
    /// The first [`REJECTION_SNIPPET`] bytes, as received (possibly compressed). They may
    /// hold an ingest token: show them to admins only.
    pub payload: Vec<u8>,
}

/// A bounded ring of the last [`MAX_REJECTIONS`] rejections. Cloning shares it.
#[derive(Clone, Debug, Default)]
pub struct Rejections(Arc<Mutex<VecDeque<Rejection>>>);

impl Rejections {
    pub fn push(
        &self,
        source: LogSource,
        peer: Option<SocketAddr>,
        error: &GelfError,
        payload: &[u8],
    ) {
        let r = Rejection {
            time_ns: peng_core::now_ns(),
            source,
            peer,
            reason: error.reason(),
            detail: error.to_string(),
            payload: payload[..payload.len().min(REJECTION_SNIPPET)].to_vec(),
        };
        let mut q = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if q.len() >= MAX_REJECTIONS {
            q.pop_front();
        }
        q.push_back(r);
    }

    /// Newest first.
    pub fn list(&self) -> Vec<Rejection> {
        let q = self.0.lock().unwrap_or_else(|p| p.into_inner());
        q.iter().rev().cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ring_is_bounded_and_snippets_are_cut() {
        let r = Rejections::default();
        for i in 0..(MAX_REJECTIONS + 5) {
            let payload = vec![b'x'; i];
            r.push(LogSource::GelfUdp, None, &GelfError::NoToken, &payload);
        }
        let list = r.list();
        assert_eq!(list.len(), MAX_REJECTIONS);
        assert_eq!(list[0].payload.len(), REJECTION_SNIPPET);
        assert_eq!(list[0].reason, "no_token");
    }
}
