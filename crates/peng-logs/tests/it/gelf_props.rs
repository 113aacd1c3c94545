//! The decoder and the chunk assembler never panic and stay within their bounds, whatever the
//! bytes.

use std::time::{Duration, Instant};

use peng_logs::gelf::{decode, ChunkAssembler, ChunkLimits, GelfLimits};
use proptest::prelude::*;

fn chunkish() -> impl Strategy<Value = Vec<u8>> {
    (
        any::<u8>(),
        any::<u8>(),
        any::<u8>(),
        proptest::collection::vec(any::<u8>(), 0..64),
    )
        .prop_map(|(id, seq, count, data)| {
            let mut v = vec![0x1e, 0x0f, 0, 0, 0, 0, 0, 0, 0, id % 8];
            v.push(seq % 8);
            v.push(count % 10);
            v.extend(data);
            v
        })
}

proptest! {
    #[test]
    fn decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = decode(&bytes, &GelfLimits::default());
    }

    #[test]
    fn decode_never_panics_on_json_like_input(s in r#"\{("[_a-z ]{0,6}":(-?[0-9.e]{1,8}|"[a-z ]{0,4}"|null|true|\[\]|\{\}),?){0,6}\}"#) {
        let _ = decode(s.as_bytes(), &GelfLimits::default());
    }

    #[test]
    fn chunks_never_panic_and_stay_bounded(
        datagrams in proptest::collection::vec(prop_oneof![chunkish(), proptest::collection::vec(any::<u8>(), 0..32)], 0..200),
        steps in proptest::collection::vec(0u64..3000, 0..200),
    ) {
        let limits = ChunkLimits { max_bytes: 4096, max_sets: 4, ..ChunkLimits::default() };
        let mut a = ChunkAssembler::new(limits);
        let mut now = Instant::now();
        for (i, d) in datagrams.iter().enumerate() {
            now += Duration::from_millis(steps.get(i).copied().unwrap_or(0));
            let _ = a.push(d, now);
            prop_assert!(a.pending_bytes() <= limits.max_bytes);
            prop_assert!(a.pending_sets() <= limits.max_sets);
        }
    }
}
