//! Reassembly of chunked GELF UDP datagrams.
//!
//! A chunk is `1e 0f`, an 8-byte message id, a sequence number and a sequence count, then a
//! slice of the payload. A set completes when every sequence number arrived; it must do so
//! within [`ChunkLimits::timeout`] of its first chunk. Memory is bounded across all incomplete
//! sets by [`ChunkLimits::max_bytes`] and [`ChunkLimits::max_sets`]: when a new chunk would pass
//! either bound, the oldest incomplete sets are evicted (and counted) to make room.

use std::collections::hash_map::Entry;
use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use super::GelfError;

/// The two bytes every chunk starts with.
pub const CHUNK_MAGIC: [u8; 2] = [0x1e, 0x0f];

const HEADER_LEN: usize = 12;
/// Bookkeeping bytes charged per set on top of its chunk bytes: the map entry and one slot per
/// expected chunk.
fn set_overhead(count: u8) -> usize {
    128 + usize::from(count) * std::mem::size_of::<Option<Vec<u8>>>()
}

/// Bounds on chunk reassembly.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkLimits {
    /// Most chunks in one set (GELF: 128).
    pub max_chunks: u8,
    /// Time from a set's first chunk until it is given up (GELF: 5 s).
    pub timeout: Duration,
    /// Most bytes held across all incomplete sets (chunk bytes plus a fixed overhead per set).
    pub max_bytes: usize,
    /// Most incomplete sets held at once.
    pub max_sets: usize,
}

impl Default for ChunkLimits {
    fn default() -> Self {
        Self {
            max_chunks: 128,
            timeout: Duration::from_secs(5),
            max_bytes: 64 * 1024 * 1024,
            max_sets: 10_000,
        }
    }
}

/// What one chunk did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChunkPush {
    /// The set is complete: the reassembled (possibly compressed) payload.
    Complete(Vec<u8>),
    /// Stored; the set still waits for chunks.
    Pending,
    /// This sequence number was already there; the chunk was dropped.
    Duplicate,
}

struct PartialSet {
    first_seen: Instant,
    count: u8,
    received: u8,
    bytes: usize,
    chunks: Vec<Option<Vec<u8>>>,
}

/// Collects chunks into messages. Not thread-safe by itself: one per UDP listener.
pub struct ChunkAssembler {
    limits: ChunkLimits,
    sets: HashMap<[u8; 8], PartialSet>,
    /// Message ids by first arrival, oldest first. May hold ids of sets already completed;
    /// those are skipped when met.
    order: VecDeque<([u8; 8], Instant)>,
    bytes: usize,
    expired: u64,
    evicted: u64,
}

impl ChunkAssembler {
    pub fn new(limits: ChunkLimits) -> Self {
        Self {
            limits,
            sets: HashMap::new(),
            order: VecDeque::new(),
            bytes: 0,
            expired: 0,
            evicted: 0,
        }
    }

    /// Whether a datagram is a chunk (starts with [`CHUNK_MAGIC`]).
    pub fn is_chunk(datagram: &[u8]) -> bool {
        datagram.len() >= 2 && datagram[..2] == CHUNK_MAGIC
    }

    /// Adds one chunk (a datagram starting with [`CHUNK_MAGIC`]). Sets older than the timeout
    /// are expired first.
    pub fn push(&mut self, datagram: &[u8], now: Instant) -> Result<ChunkPush, GelfError> {
        self.expire(now);
        if datagram.len() <= HEADER_LEN || datagram[..2] != CHUNK_MAGIC {
            return Err(GelfError::ChunkTruncated {
                len: datagram.len(),
            });
        }
        let mut id = [0u8; 8];
        id.copy_from_slice(&datagram[2..10]);
        let seq = datagram[10];
        let count = datagram[11];
        let data = &datagram[HEADER_LEN..];
        if count > self.limits.max_chunks {
            return Err(GelfError::TooManyChunks {
                count,
                limit: self.limits.max_chunks,
            });
        }
        if seq >= count {
            return Err(GelfError::ChunkBadSequence { seq, count });
        }
        if count == 1 {
            return Ok(ChunkPush::Complete(data.to_vec()));
        }
        if let Some(set) = self.sets.get(&id) {
            if set.count != count {
                return Err(GelfError::ChunkCountMismatch {
                    count,
                    expected: set.count,
                });
            }
            if set.chunks[usize::from(seq)].is_some() {
                return Ok(ChunkPush::Duplicate);
            }
        }
        let overhead = set_overhead(count);
        if data.len() + overhead > self.limits.max_bytes {
            return Err(GelfError::TooLarge {
                limit: self.limits.max_bytes,
            });
        }
        // Room for the worst case (a new set); the set may itself be evicted here.
        self.make_room(data.len() + overhead, !self.sets.contains_key(&id));
        let charge = data.len()
            + if self.sets.contains_key(&id) {
                0
            } else {
                overhead
            };

        if self.order.len() > 4 * self.limits.max_sets.max(1024) {
            let sets = &self.sets;
            self.order
                .retain(|(id, seen)| sets.get(id).is_some_and(|s| s.first_seen == *seen));
        }
        let set = match self.sets.entry(id) {
            Entry::Occupied(e) => e.into_mut(),
            Entry::Vacant(e) => {
                self.order.push_back((id, now));
                e.insert(PartialSet {
                    first_seen: now,
                    count,
                    received: 0,
                    bytes: overhead,
                    chunks: vec![None; usize::from(count)],
                })
            }
        };
        set.chunks[usize::from(seq)] = Some(data.to_vec());
        set.received += 1;
        set.bytes += data.len();
        self.bytes += charge;
        if set.received < set.count {
            return Ok(ChunkPush::Pending);
        }
        let Some(set) = self.sets.remove(&id) else {
            return Ok(ChunkPush::Pending);
        };
        self.bytes -= set.bytes;
        let payload = set.chunks.into_iter().flatten().flatten().collect();
        Ok(ChunkPush::Complete(payload))
    }

    /// Drops sets whose first chunk is older than the timeout; returns how many.
    pub fn expire(&mut self, now: Instant) -> u64 {
        let mut n = 0;
        while let Some(&(id, first_seen)) = self.order.front() {
            if now.saturating_duration_since(first_seen) < self.limits.timeout {
                break;
            }
            self.order.pop_front();
            if self.remove_if_same(&id, first_seen) {
                n += 1;
            }
        }
        self.expired += n;
        n
    }

    /// Sets given up because they timed out, since this assembler was made.
    pub fn expired_total(&self) -> u64 {
        self.expired
    }

    /// Sets evicted to stay within the memory bounds, since this assembler was made.
    pub fn evicted_total(&self) -> u64 {
        self.evicted
    }

    /// Incomplete sets held now.
    pub fn pending_sets(&self) -> usize {
        self.sets.len()
    }

    /// Bytes charged for incomplete sets now; never above `max_bytes`.
    pub fn pending_bytes(&self) -> usize {
        self.bytes
    }

    /// Evicts the oldest sets until `charge` more bytes and, for a new set, one
    /// more set fit.
    fn make_room(&mut self, charge: usize, is_new: bool) {
        loop {
            let too_many = is_new && self.sets.len() >= self.limits.max_sets;
            let too_big = self.bytes + charge > self.limits.max_bytes;
            if !too_many && !too_big {
                return;
            }
            let Some((id, first_seen)) = self.order.pop_front() else {
                return;
            };
            // When `keep` itself is the oldest it goes too; the chunk then starts it afresh.
            if self.remove_if_same(&id, first_seen) {
                self.evicted += 1;
            }
        }
    }

    fn remove_if_same(&mut self, id: &[u8; 8], first_seen: Instant) -> bool {
        match self.sets.get(id) {
            Some(set) if set.first_seen == first_seen => {
                self.bytes -= set.bytes;
                self.sets.remove(id);
                true
            }
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunk(id: u64, seq: u8, count: u8, data: &[u8]) -> Vec<u8> {
        let mut v = CHUNK_MAGIC.to_vec();
        v.extend_from_slice(&id.to_be_bytes());
        v.push(seq);
        v.push(count);
        v.extend_from_slice(data);
        v
    }

    #[test]
    fn out_of_order_chunks_complete_once() {
        let mut a = ChunkAssembler::new(ChunkLimits::default());
        let t = Instant::now();
        assert_eq!(a.push(&chunk(1, 2, 3, b"c"), t), Ok(ChunkPush::Pending));
        assert_eq!(a.push(&chunk(1, 0, 3, b"a"), t), Ok(ChunkPush::Pending));
        assert_eq!(a.push(&chunk(1, 0, 3, b"x"), t), Ok(ChunkPush::Duplicate));
        assert_eq!(
            a.push(&chunk(1, 1, 3, b"b"), t),
            Ok(ChunkPush::Complete(b"abc".to_vec()))
        );
        assert_eq!(a.pending_sets(), 0);
        assert_eq!(a.pending_bytes(), 0);
    }

    #[test]
    fn bad_headers_are_refused() {
        let mut a = ChunkAssembler::new(ChunkLimits::default());
        let t = Instant::now();
        assert_eq!(
            a.push(&[0x1e, 0x0f, 1, 2], t).unwrap_err().reason(),
            "chunk_truncated"
        );
        assert_eq!(
            a.push(&chunk(1, 3, 3, b"a"), t).unwrap_err().reason(),
            "chunk_bad_sequence"
        );
        assert_eq!(
            a.push(&chunk(1, 0, 129, b"a"), t).unwrap_err().reason(),
            "too_many_chunks"
        );
        assert_eq!(
            a.push(&chunk(1, 0, 0, b"a"), t).unwrap_err().reason(),
            "chunk_bad_sequence"
        );
        a.push(&chunk(2, 0, 2, b"a"), t).unwrap();
        assert_eq!(
            a.push(&chunk(2, 1, 3, b"a"), t).unwrap_err().reason(),
            "chunk_count_mismatch"
        );
        assert_eq!(
            a.push(&chunk(3, 0, 1, b"single"), t),
            Ok(ChunkPush::Complete(b"single".to_vec()))
        );
    }

    #[test]
    fn incomplete_sets_expire() {
        let mut a = ChunkAssembler::new(ChunkLimits::default());
        let t = Instant::now();
        a.push(&chunk(1, 0, 2, b"a"), t).unwrap();
        a.push(&chunk(2, 0, 2, b"a"), t + Duration::from_secs(3))
            .unwrap();
        assert_eq!(a.expire(t + Duration::from_secs(5)), 1);
        assert_eq!(a.pending_sets(), 1);
        // The late chunk of the expired set starts a new set instead of completing it.
        assert_eq!(
            a.push(&chunk(1, 1, 2, b"b"), t + Duration::from_secs(5)),
            Ok(ChunkPush::Pending)
        );
        assert_eq!(a.expired_total(), 1);
    }

    #[test]
    fn memory_is_bounded_by_evicting_the_oldest() {
        let limits = ChunkLimits {
            max_bytes: 10 * 1024,
            max_sets: 5,
            ..ChunkLimits::default()
        };
        let mut a = ChunkAssembler::new(limits);
        let t = Instant::now();
        for id in 0..100u64 {
            a.push(&chunk(id, 0, 2, &[0u8; 1000]), t).unwrap();
            assert!(a.pending_bytes() <= limits.max_bytes);
            assert!(a.pending_sets() <= limits.max_sets);
        }
        assert_eq!(a.pending_sets(), 5);
        assert_eq!(a.evicted_total(), 95);
        // The newest sets survive and can still complete.
        assert_eq!(
            a.push(&chunk(99, 1, 2, b"!"), t).unwrap(),
            ChunkPush::Complete({
                let mut v = vec![0u8; 1000];
                v.push(b'!');
                v
            })
        );
        let limits = ChunkLimits {
            max_bytes: 3000,
            ..ChunkLimits::default()
        };
        let mut a = ChunkAssembler::new(limits);
        for seq in 0..10 {
            a.push(&chunk(7, seq, 10, &[1u8; 1000]), t).unwrap();
            assert!(a.pending_bytes() <= limits.max_bytes);
        }
    }
}
