//! Any sequence of datagrams through the chunk assembler: no panic, memory within its limits.
#![no_main]

use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use peng_logs::gelf::{ChunkAssembler, ChunkLimits};

fuzz_target!(|data: &[u8]| {
    let limits = ChunkLimits {
        max_bytes: 16 * 1024,
        max_sets: 8,
        ..ChunkLimits::default()
    };
    let mut a = ChunkAssembler::new(limits);
    let start = Instant::now();
    // Input: [len, time step, bytes...]*; each record is one datagram.
    let mut rest = data;
    let mut now = start;
    while rest.len() >= 2 {
        let len = usize::from(rest[0]);
        now += Duration::from_millis(u64::from(rest[1]) * 50);
        rest = &rest[2..];
        let take = len.min(rest.len());
        let _ = a.push(&rest[..take], now);
        rest = &rest[take..];
        assert!(a.pending_bytes() <= limits.max_bytes);
        assert!(a.pending_sets() <= limits.max_sets);
    }
});
