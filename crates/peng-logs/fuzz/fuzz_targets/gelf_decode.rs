//! Any bytes through the GELF decoder and the HTTP body decoder: no panic, bounded output.
#![no_main]

use libfuzzer_sys::fuzz_target;
use peng_logs::gelf::{decode, GelfLimits};
use peng_logs::ingest::{decode_http, IngestAuth};

fuzz_target!(|data: &[u8]| {
    let limits = GelfLimits {
        max_decompressed: 64 * 1024,
        ..GelfLimits::default()
    };
    if let Ok(m) = decode(data, &limits) {
        assert!(m.fields.len() <= limits.max_fields);
    }
    let auth = IngestAuth::default();
    for enc in [None, Some("gzip"), Some("deflate")] {
        let _ = decode_http(data, enc, Some("t"), &auth, &limits, 0);
    }
});
