//! One GELF payload to a [`GelfMessage`].

use std::collections::BTreeMap;
use std::io::Read;

use serde_json::{Map, Value};

use super::{GelfError, GelfLimits, GelfMessage};
use crate::record::FieldValue;

/// Field names that are columns of a stored record (or Graylog internals) and so are never
/// taken from additional fields. `service`, `stage` and `instance` are not here: they fill
/// their columns (see `ingest`).
const RESERVED: &[&str] = &[
    "id",
    "team",
    "source",
    "timestamp",
    "received",
    "level",
    "message",
    "full_message",
    "short_message",
    "host",
    "_exists_",
];

/// Decodes one complete GELF payload (not a UDP chunk): gzip (`1f 8b`), zlib (`78 xx` with a
/// valid header checksum) or plain JSON.
pub fn decode(payload: &[u8], limits: &GelfLimits) -> Result<GelfMessage, GelfError> {
    let json = decompress(payload, limits.max_decompressed)?;
    decode_json(&json, limits)
}

/// Decodes an uncompressed JSON payload (TCP frames, HTTP bulk lines).
pub fn decode_json(json: &[u8], limits: &GelfLimits) -> Result<GelfMessage, GelfError> {
    if json.len() > limits.max_decompressed {
        return Err(GelfError::TooLarge {
            limit: limits.max_decompressed,
        });
    }
    if json.iter().all(|b| b.is_ascii_whitespace()) {
        return Err(GelfError::Empty);
    }
    let value: Value =
        serde_json::from_slice(json).map_err(|e| GelfError::InvalidJson(e.to_string()))?;
    match value {
        Value::Object(map) => from_object(map, limits),
        _ => Err(GelfError::NotObject),
    }
}

/// The payload decompressed by its magic bytes, never more than `limit` bytes.
pub(crate) fn decompress(
    payload: &[u8],
    limit: usize,
) -> Result<std::borrow::Cow<'_, [u8]>, GelfError> {
    if payload.is_empty() {
        return Err(GelfError::Empty);
    }
    if is_gzip(payload) {
        read_capped(flate2::read::MultiGzDecoder::new(payload), limit, "gzip").map(Into::into)
    } else if is_zlib(payload) {
        read_capped(flate2::read::ZlibDecoder::new(payload), limit, "zlib").map(Into::into)
    } else if payload.len() > limit {
        Err(GelfError::TooLarge { limit })
    } else {
        Ok(payload.into())
    }
}

pub(crate) fn is_gzip(p: &[u8]) -> bool {
    p.len() >= 2 && p[0] == 0x1f && p[1] == 0x8b
}

pub(crate) fn is_zlib(p: &[u8]) -> bool {
    p.len() >= 2 && p[0] == 0x78 && (u16::from(p[0]) * 256 + u16::from(p[1])) % 31 == 0
}

/// Reads at most `limit` bytes; one more byte available means the payload is too large. The
/// buffer grows with the data actually produced, so a small bomb cannot reserve a big buffer.
pub(crate) fn read_capped(
    reader: impl Read,
    limit: usize,
    format: &'static str,
) -> Result<Vec<u8>, GelfError> {
    let mut out = Vec::new();
    let cap = u64::try_from(limit).unwrap_or(u64::MAX).saturating_add(1);
    reader
        .take(cap)
        .read_to_end(&mut out)
        .map_err(|e| GelfError::Decompress {
            format,
            detail: e.to_string(),
        })?;
    if out.len() > limit {
        return Err(GelfError::TooLarge { limit });
    }
    Ok(out)
}

/// Takes the message apart, moving its strings rather than copying them.
fn from_object(mut map: Map<String, Value>, limits: &GelfLimits) -> Result<GelfMessage, GelfError> {
    let host = match map.remove("host") {
        None => String::new(),
        Some(Value::String(s)) if !s.trim().is_empty() => s,
        Some(_) => return Err(GelfError::BadHost),
    };
    // `message` is only a fallback for `short_message`, as in Graylog.
    let (short, fallback) = (map.remove("short_message"), map.remove("message"));
    let short_message = [short, fallback]
        .into_iter()
        .flatten()
        .find_map(|v| match v {
            Value::String(s) if !s.trim().is_empty() => Some(s),
            _ => None,
        })
        .ok_or(GelfError::NoShortMessage)?;
    let full_message = match map.remove("full_message") {
        Some(Value::String(s)) if !s.is_empty() => Some(s),
        _ => None,
    };
    let timestamp_ns = map.remove("timestamp").as_ref().and_then(timestamp_ns);
    let level = map.remove("level").as_ref().and_then(level).unwrap_or(1);
    map.remove("version");

    let mut fields = BTreeMap::new();
    let mut dropped_fields = 0;
    for (mut name, value) in map {
        if name.starts_with('_') {
            name.remove(0);
        }
        if !valid_name(&name) || RESERVED.contains(&name.as_str()) {
            dropped_fields += 1;
            continue;
        }
        let value = match value {
            Value::Null => continue,
            Value::String(s) => FieldValue::Str(s),
            Value::Bool(b) => FieldValue::Bool(b),
            Value::Number(n) => match n.as_i64() {
                Some(i) => FieldValue::I64(i),
                None => match n.as_f64() {
                    Some(f) if f.is_finite() => FieldValue::F64(f),
                    _ => FieldValue::Str(n.to_string()),
                },
            },
            other @ (Value::Array(_) | Value::Object(_)) => FieldValue::Str(other.to_string()),
        };
        if fields.len() >= limits.max_fields {
            dropped_fields += 1;
            continue;
        }
        fields.insert(name, value);
    }
    Ok(GelfMessage {
        host,
        short_message,
        full_message,
        timestamp_ns,
        level,
        fields,
        dropped_fields,
    })
}

/// `^[\w.\-]+$`, at most 128 bytes.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 128
        && name
            .chars()
            .all(|c| c.is_alphanumeric() || c == '_' || c == '.' || c == '-')
}

/// Seconds since the epoch (decimals allowed, numeric strings accepted) to nanoseconds;
/// `None` for anything else or a time outside what `i64` nanoseconds can hold. Decimal
/// notation is converted exactly (`1700000000.25` is `…250000000` ns, not a float's guess).
fn timestamp_ns(v: &Value) -> Option<i64> {
    let text = match v {
        Value::Number(n) => n.to_string(),
        Value::String(s) => s.trim().to_string(),
        _ => return None,
    };
    if let Some(ns) = decimal_seconds_to_ns(&text) {
        return Some(ns);
    }
    let secs: f64 = text.parse().ok()?;
    if !secs.is_finite() || secs < 0.0 || secs * 1e9 >= i64::MAX as f64 {
        return None;
    }
    Some((secs * 1e9) as i64)
}

/// `123` or `123.456` (no sign, no exponent) to nanoseconds, digits past 9 decimals cut.
fn decimal_seconds_to_ns(text: &str) -> Option<i64> {
    let (int, frac) = text.split_once('.').unwrap_or((text, ""));
    if int.is_empty() || !int.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    if !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let secs: i64 = int.parse().ok()?;
    let mut nanos: i64 = 0;
    for (i, b) in frac.bytes().take(9).enumerate() {
        nanos += i64::from(b - b'0') * 10i64.pow(8 - i as u32);
    }
    secs.checked_mul(1_000_000_000)?.checked_add(nanos)
}

fn level(v: &Value) -> Option<u8> {
    let n = match v {
        Value::Number(n) => n.as_f64()?,
        Value::String(s) => s.trim().parse::<f64>().ok()?,
        _ => return None,
    };
    if (0.0..8.0).contains(&n) {
        Some(n as u8)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    fn limits() -> GelfLimits {
        GelfLimits::default()
    }

    fn ok(json: &str) -> GelfMessage {
        decode(json.as_bytes(), &limits()).unwrap()
    }

    fn err(json: &str) -> GelfError {
        decode(json.as_bytes(), &limits()).unwrap_err()
    }

    #[test]
    fn full_message_is_decoded() {
        let m = ok(
            r#"{"version":"1.1","host":"web-1","short_message":"hello","full_message":"long\ntext",
            "timestamp":1700000000.25,"level":3,"_user_id":42,"_ratio":0.5,"_ok":true,"_name":"x",
            "_nested":{"a":[1,2]},"_none":null,"_id":"dropped","facility":"app"}"#,
        );
        assert_eq!(m.host, "web-1");
        assert_eq!(m.short_message, "hello");
        assert_eq!(m.full_message.as_deref(), Some("long\ntext"));
        assert_eq!(m.timestamp_ns, Some(1_700_000_000_250_000_000));
        assert_eq!(m.level, 3);
        assert_eq!(m.fields.get("user_id"), Some(&FieldValue::I64(42)));
        assert_eq!(m.fields.get("ratio"), Some(&FieldValue::F64(0.5)));
        assert_eq!(m.fields.get("ok"), Some(&FieldValue::Bool(true)));
        assert_eq!(m.fields.get("name"), Some(&FieldValue::Str("x".into())));
        assert_eq!(
            m.fields.get("nested"),
            Some(&FieldValue::Str(r#"{"a":[1,2]}"#.into()))
        );
        assert_eq!(
            m.fields.get("facility"),
            Some(&FieldValue::Str("app".into()))
        );
        assert!(!m.fields.contains_key("none"));
        assert!(!m.fields.contains_key("id"));
        assert_eq!(m.dropped_fields, 1);
    }

    #[test]
    fn host_rules_follow_graylog() {
        assert_eq!(ok(r#"{"short_message":"a"}"#).host, "");
        assert_eq!(
            err(r#"{"host":" ","short_message":"a"}"#),
            GelfError::BadHost
        );
        assert_eq!(err(r#"{"host":5,"short_message":"a"}"#), GelfError::BadHost);
    }

    #[test]
    fn short_message_falls_back_to_message() {
        assert_eq!(ok(r#"{"host":"h","message":"m"}"#).short_message, "m");
        assert_eq!(
            ok(r#"{"host":"h","short_message":"","message":"m"}"#).short_message,
            "m"
        );
        assert_eq!(
            ok(r#"{"host":"h","short_message":7,"message":"m"}"#).short_message,
            "m"
        );
        assert_eq!(
            err(r#"{"host":"h","short_message":" "}"#),
            GelfError::NoShortMessage
        );
        assert_eq!(err(r#"{"host":"h"}"#), GelfError::NoShortMessage);
    }

    #[test]
    fn timestamp_and_level_fall_back() {
        let m = ok(r#"{"short_message":"a","timestamp":"soon","level":"high"}"#);
        assert_eq!(m.timestamp_ns, None);
        assert_eq!(m.level, 1);
        let m = ok(r#"{"short_message":"a","timestamp":"1700000000","level":"6"}"#);
        assert_eq!(m.timestamp_ns, Some(1_700_000_000_000_000_000));
        assert_eq!(m.level, 6);
        assert_eq!(ok(r#"{"short_message":"a","level":9}"#).level, 1);
        assert_eq!(
            ok(r#"{"short_message":"a","timestamp":1e300}"#).timestamp_ns,
            None
        );
        assert_eq!(
            ok(r#"{"short_message":"a","timestamp":-1}"#).timestamp_ns,
            None
        );
    }

    #[test]
    fn field_names_are_checked() {
        let m = ok(
            r#"{"short_message":"a","_http.status":500,"_a-b":1,"_bad name":1,"_":1,"_level":2,"_ünï":1}"#,
        );
        assert!(m.fields.contains_key("http.status"));
        assert!(m.fields.contains_key("a-b"));
        assert!(m.fields.contains_key("ünï"));
        assert!(!m.fields.contains_key("bad name"));
        assert!(!m.fields.contains_key("level"));
        assert_eq!(m.dropped_fields, 3);
    }

    #[test]
    fn field_count_is_bounded() {
        let mut json = String::from(r#"{"short_message":"a""#);
        for i in 0..300 {
            json.push_str(&format!(r#","_f{i}":{i}"#));
        }
        json.push('}');
        let m = ok(&json);
        assert_eq!(m.fields.len(), 256);
        assert_eq!(m.dropped_fields, 44);
    }

    #[test]
    fn bad_json_is_refused() {
        assert!(matches!(err("{"), GelfError::InvalidJson(_)));
        assert_eq!(err("[1]"), GelfError::NotObject);
        assert_eq!(err(""), GelfError::Empty);
        assert_eq!(err("  "), GelfError::Empty);
        let deep = "[".repeat(10_000);
        assert!(matches!(err(&deep), GelfError::InvalidJson(_)));
    }

    #[test]
    fn gzip_and_zlib_are_detected() {
        let json = br#"{"host":"h","short_message":"zipped"}"#;
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(json).unwrap();
        let gz = gz.finish().unwrap();
        assert_eq!(decode(&gz, &limits()).unwrap().short_message, "zipped");
        let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::best());
        z.write_all(json).unwrap();
        let z = z.finish().unwrap();
        assert!(is_zlib(&z));
        assert_eq!(decode(&z, &limits()).unwrap().short_message, "zipped");
        let broken = &gz[..gz.len() / 2];
        assert_eq!(
            decode(broken, &limits()).unwrap_err().reason(),
            "bad_compression"
        );
    }

    #[test]
    fn decompression_is_capped() {
        let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::best());
        z.write_all(&vec![b' '; 20 * 1024 * 1024]).unwrap();
        let bomb = z.finish().unwrap();
        assert!(bomb.len() < 100 * 1024);
        assert_eq!(
            decode(&bomb, &limits()).unwrap_err(),
            GelfError::TooLarge {
                limit: 8 * 1024 * 1024
            }
        );
        let small = GelfLimits {
            max_decompressed: 10,
            ..limits()
        };
        assert_eq!(
            decode(br#"{"short_message":"abc"}"#, &small)
                .unwrap_err()
                .reason(),
            "too_large"
        );
    }
}
