//! GELF frames from real senders' shapes as data: `fixtures/gelf/NAME.in` is a payload,
//! `NAME.out` the expected decoding. Refresh expectations with `UPDATE_EXPECT=1` and review
//! the diff.

use std::fmt::Write;
use std::path::Path;

use peng_logs::gelf::{decode, GelfLimits};

fn render(payload: &[u8]) -> String {
    match decode(payload, &GelfLimits::default()) {
        Err(e) => format!("error {}: {e}\n", e.reason()),
        Ok(m) => {
            let mut out = String::new();
            let _ = writeln!(out, "host: {:?}", m.host);
            let _ = writeln!(out, "short_message: {:?}", m.short_message);
            let _ = writeln!(out, "full_message: {:?}", m.full_message);
            let _ = writeln!(out, "timestamp_ns: {:?}", m.timestamp_ns);
            let _ = writeln!(out, "level: {}", m.level);
            for (k, v) in &m.fields {
                let _ = writeln!(out, "field {k}: {v:?}");
            }
            let _ = writeln!(out, "dropped_fields: {}", m.dropped_fields);
            out
        }
    }
}

#[test]
fn gelf_fixtures() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/it/fixtures/gelf");
    let update = std::env::var_os("UPDATE_EXPECT").is_some();
    let mut cases = 0;
    let mut failures = Vec::new();
    let mut entries: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .collect();
    entries.sort();
    for path in entries {
        if path.extension().and_then(|e| e.to_str()) != Some("in") {
            continue;
        }
        cases += 1;
        let payload = std::fs::read(&path).unwrap();
        let got = render(&payload);
        let expected_path = path.with_extension("out");
        if update {
            std::fs::write(&expected_path, &got).unwrap();
            continue;
        }
        let expected = std::fs::read_to_string(&expected_path).unwrap_or_default();
        if got != expected {
            failures.push(format!(
                "{}:\n--- expected\n{expected}--- got\n{got}",
                path.display()
            ));
        }
    }
    assert!(cases >= 8, "fixtures missing in {}", dir.display());
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
