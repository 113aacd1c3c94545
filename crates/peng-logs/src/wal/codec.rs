//! How a batch of records is written in the WAL: little-endian integers, strings as a `u32`
//! length and UTF-8 bytes. The frame around it (length, checksum) is the WAL's; a batch that
//! passed its checksum and still does not decode is corruption, not a torn write.

use std::collections::BTreeMap;

use peng_core::TeamName;

use crate::record::{FieldValue, LogRecord, LogSource};

/// Appends the encoding of `records` to `out`.
pub fn encode(records: &[LogRecord], out: &mut Vec<u8>) {
    put_u32(out, records.len() as u32);
    for r in records {
        encode_one(r, true, out);
    }
}

/// Appends the encoding of one record as a batch of one, with both times written as 0: what
/// the index stores of a record, whose times it keeps in fast columns (16 bytes a record that
/// compress badly).
pub fn encode_without_times(r: &LogRecord, out: &mut Vec<u8>) {
    put_u32(out, 1);
    encode_one(r, false, out);
}

fn encode_one(r: &LogRecord, times: bool, out: &mut Vec<u8>) {
    let (t, rcv) = if times {
        (r.timestamp_ns, r.received_ns)
    } else {
        (0, 0)
    };
    out.extend_from_slice(&t.to_le_bytes());
    out.extend_from_slice(&rcv.to_le_bytes());
    put_str(out, r.team.as_str());
    put_str(out, &r.service);
    put_str(out, &r.stage);
    put_str(out, &r.instance);
    out.push(source_byte(r.source));
    put_str(out, &r.host);
    out.push(r.level);
    put_str(out, &r.message);
    match &r.full_message {
        Some(full) => {
            out.push(1);
            put_str(out, full);
        }
        None => out.push(0),
    }
    put_u32(out, r.fields.len() as u32);
    for (k, v) in &r.fields {
        put_str(out, k);
        match v {
            FieldValue::Str(s) => {
                out.push(0);
                put_str(out, s);
            }
            FieldValue::I64(i) => {
                out.push(1);
                out.extend_from_slice(&i.to_le_bytes());
            }
            FieldValue::F64(x) => {
                out.push(2);
                out.extend_from_slice(&x.to_le_bytes());
            }
            FieldValue::Bool(b) => {
                out.push(3);
                out.push(u8::from(*b));
            }
        }
    }
}

/// The records of one batch; `Err` says what did not decode.
pub fn decode(mut buf: &[u8]) -> Result<Vec<LogRecord>, String> {
    let b = &mut buf;
    let n = u32_(b)? as usize;
    // every record takes at least 50 bytes, so a count beyond that is corruption
    if n > b.len() / 50 + 1 {
        return Err(format!("{n} records in {} bytes", b.len()));
    }
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let timestamp_ns = i64::from_le_bytes(take::<8>(b)?);
        let received_ns = i64::from_le_bytes(take::<8>(b)?);
        let team = TeamName::parse(str_(b)?).map_err(|e| e.to_string())?;
        let service = str_(b)?.to_string();
        let stage = str_(b)?.to_string();
        let instance = str_(b)?.to_string();
        let source = source_of(byte(b)?)?;
        let host = str_(b)?.to_string();
        let level = byte(b)?;
        let message = str_(b)?.to_string();
        let full_message = match byte(b)? {
            0 => None,
            1 => Some(str_(b)?.to_string()),
            t => return Err(format!("full_message tag {t}")),
        };
        let nfields = u32_(b)? as usize;
        if nfields > b.len() / 6 + 1 {
            return Err(format!("{nfields} fields in {} bytes", b.len()));
        }
        let mut fields = BTreeMap::new();
        for _ in 0..nfields {
            let k = str_(b)?.to_string();
            let v = match byte(b)? {
                0 => FieldValue::Str(str_(b)?.to_string()),
                1 => FieldValue::I64(i64::from_le_bytes(take::<8>(b)?)),
                2 => FieldValue::F64(f64::from_le_bytes(take::<8>(b)?)),
                3 => FieldValue::Bool(byte(b)? != 0),
                t => return Err(format!("field tag {t}")),
            };
            fields.insert(k, v);
        }
        out.push(LogRecord {
            timestamp_ns,
            received_ns,
            team,
            service,
            stage,
            instance,
            source,
            host,
            level,
            message,
            full_message,
            fields,
        });
    }
    if !b.is_empty() {
        return Err(format!("{} bytes after the last record", b.len()));
    }
    Ok(out)
}

fn source_byte(s: LogSource) -> u8 {
    match s {
        LogSource::GelfUdp => 0,
        LogSource::GelfTcp => 1,
        LogSource::GelfHttp => 2,
        LogSource::Stdout => 3,
        LogSource::Stderr => 4,
    }
}

fn source_of(b: u8) -> Result<LogSource, String> {
    LogSource::ALL
        .into_iter()
        .find(|s| source_byte(*s) == b)
        .ok_or_else(|| format!("source {b}"))
}

fn put_u32(out: &mut Vec<u8>, v: u32) {
    out.extend_from_slice(&v.to_le_bytes());
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    put_u32(out, s.len() as u32);
    out.extend_from_slice(s.as_bytes());
}

fn take<const N: usize>(b: &mut &[u8]) -> Result<[u8; N], String> {
    let Some((head, rest)) = b.split_first_chunk::<N>() else {
        return Err("cut short".to_string());
    };
    *b = rest;
    Ok(*head)
}

fn byte(b: &mut &[u8]) -> Result<u8, String> {
    Ok(take::<1>(b)?[0])
}

fn u32_(b: &mut &[u8]) -> Result<u32, String> {
    Ok(u32::from_le_bytes(take::<4>(b)?))
}

fn str_<'a>(b: &mut &'a [u8]) -> Result<&'a str, String> {
    let n = u32_(b)? as usize;
    if n > b.len() {
        return Err(format!("a string of {n} bytes in {}", b.len()));
    }
    let (s, rest) = b.split_at(n);
    *b = rest;
    std::str::from_utf8(s).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn record(i: i64) -> LogRecord {
        let mut fields = BTreeMap::new();
        fields.insert("request_id".to_string(), FieldValue::Str(format!("r-{i}")));
        fields.insert("ms".to_string(), FieldValue::I64(i));
        fields.insert("ratio".to_string(), FieldValue::F64(0.25));
        fields.insert("cached".to_string(), FieldValue::Bool(true));
        LogRecord {
            timestamp_ns: i,
            received_ns: i + 1,
            team: TeamName::parse("books").unwrap(),
            service: "shop".into(),
            stage: "production".into(),
            instance: "0".into(),
            source: LogSource::GelfTcp,
            host: "h1".into(),
            level: 3,
            message: "über böse".into(),
            full_message: Some("java.lang.IllegalStateException\n\tat X".into()),
            fields,
        }
    }

    #[test]
    fn batches_round_trip() {
        let batch: Vec<_> = (0..5).map(record).collect();
        let mut buf = Vec::new();
        encode(&batch, &mut buf);
        assert_eq!(decode(&buf).unwrap(), batch);
        let mut empty = Vec::new();
        encode(&[], &mut empty);
        assert_eq!(decode(&empty).unwrap(), Vec::<LogRecord>::new());
    }

    #[test]
    fn a_cut_batch_is_an_error() {
        let mut buf = Vec::new();
        encode(&[record(1)], &mut buf);
        for n in 0..buf.len() {
            assert!(decode(&buf[..n]).is_err(), "cut at {n}");
        }
        buf.push(0);
        assert!(decode(&buf).is_err());
    }

    proptest! {
        #[test]
        fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = decode(&bytes);
        }
    }
}
