//! Compression of one block's columns: Gorilla delta-of-delta timestamps, Gorilla XOR floats,
//! integers as deltas (v1: zigzag varints; v2: divided by their common divisor and bit-packed,
//! or their deltas again where that is smaller), one bit per boolean, length-prefixed strings.
//!
//! `encode_block_into` and `decode_block_into` are exact inverses for any input of strictly ascending
//! timestamps and values of one type; decoding damaged bytes returns an error.
//!
//! Why v2 integers: Telegraf's integers are mostly byte counts that move in whole pages or
//! blocks (a multiple of 4096: 12 bits a varint spends for nothing), counters that grow at a
//! steady rate (their deltas repeat) and values that never change (a varint byte each). v1
//! costs about 4 bytes for the first kind and 1 byte for the last; v2 about 2.5 and nothing.
//!
//! Why v3: a collector reports at a fixed interval, so a block's timestamps are mostly first +
//! i × interval (a bit a value in the delta-of-delta stream, on every field: 0.12 bytes a
//! value); and Telegraf's CPU percentages are ratios of small jiffy counts, so the quiet states
//! (irq, steal, nice) come back to the same full-precision floats again and again, which the
//! XOR stream pays 50 bits or more for each time. v3 writes the former as two varints and the
//! latter as an index into the values the block wrote before.

use super::{
    put_ivarint, put_str, put_uvarint, unzigzag, zigzag, BitReader, BitWriter, DecodeError, Reader,
};
use crate::model::{FieldType, FieldValue};

/// The block format of a file: they differ in how integer columns are encoded and in when
/// the float encoder opens a new window (v2 opens one where that is shorter; v1 decoders read
/// both the same way). v3 adds a mode byte to timestamps (evenly spaced ones cost a few bytes a
/// block, not a bit a value) and a float code for "equal to entry j of the block's list of
/// values", and writes a block of one float value as that value alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    V1,
    V2,
    V3,
}

/// Most values a v3 block may hold (writers put at most 4,096 in one). Earlier versions are
/// bounded by their size instead: every value took at least one bit of timestamps, which an
/// evenly spaced v3 block does not.
pub const V3_MAX_COUNT: u64 = 1 << 16;

/// v3 timestamp modes (the section's first byte).
const TS_STREAM: u8 = 0;
const TS_REGULAR: u8 = 1;

/// v3 floats: the block's first value and every value written through the XOR stream make a
/// list, and a later value equal to one on it may be given as its index in the list, in just
/// the bits that the list's last index takes. Low-activity gauges (a CPU's irq or steal
/// percentage) come back to a few values again and again, each of them a full-precision float
/// that costs 50 bits or more otherwise. The encoder finds earlier values in a table of up to
/// this many slots, hashed on the bits, each holding the index of a value that landed there: a
/// collision only loses a repeat. A block gets 8 slots per value (a power of two, at least 64):
/// a flush writes many short blocks, and a table is cleared for each.
const SEEN_SLOTS: usize = 8192;

/// v3 float modes (the column's first byte).
const FLOATS_STREAM: u8 = 0;
const FLOATS_CONSTANT: u8 = 1;

/// Bits of the index of a v3 float repeat into a list of `len` values (`len >= 1`).
fn index_bits(len: usize) -> u32 {
    usize::BITS - (len - 1).leading_zeros()
}

/// Encodes a block: `uvarint count, uvarint ts length, timestamps, values`. All values must
/// have type `ty`.
#[cfg(test)]
pub fn encode_block(ty: FieldType, points: &[(i64, FieldValue)]) -> Vec<u8> {
    let mut out = Vec::with_capacity(points.len() * 4 + 16);
    encode_block_into(Version::V3, ty, points, &mut out, &mut Vec::new());
    out
}

/// [`encode_block`], appending to `out`; `scratch` is working space (kept for reuse, so that
/// encoding many small blocks allocates nothing).
pub fn encode_block_into(
    version: Version,
    ty: FieldType,
    points: &[(i64, FieldValue)],
    out: &mut Vec<u8>,
    scratch: &mut Vec<u8>,
) {
    put_uvarint(out, points.len() as u64);
    let mut ts = std::mem::take(scratch);
    ts.clear();
    let times = points.iter().map(|p| p.0);
    let ts = if version == Version::V3 {
        encode_timestamps_v3(ts, times)
    } else {
        encode_timestamps_to(BitWriter::from_vec(ts), times)
    };
    put_uvarint(out, ts.len() as u64);
    out.extend_from_slice(&ts);
    *scratch = ts;
    let values = points.iter().map(|p| &p.1);
    match ty {
        FieldType::Float => {
            let w = BitWriter::from_vec(std::mem::take(out));
            *out = encode_floats_to(
                w,
                values.map(|v| match v {
                    FieldValue::Float(f) => *f,
                    _ => 0.0,
                }),
                version,
            );
        }
        FieldType::Integer => encode_ints(
            version,
            out,
            values.map(|v| match v {
                FieldValue::Integer(i) => *i,
                _ => 0,
            }),
        ),
        FieldType::Unsigned => encode_ints(
            version,
            out,
            values.map(|v| match v {
                FieldValue::Unsigned(u) => *u as i64,
                _ => 0,
            }),
        ),
        FieldType::Boolean => {
            let mut w = BitWriter::from_vec(std::mem::take(out));
            for v in values {
                w.bit(matches!(v, FieldValue::Boolean(true)));
            }
            *out = w.finish();
        }
        FieldType::String => {
            for v in values {
                put_str(out, if let FieldValue::String(s) = v { s } else { "" });
            }
        }
    }
}

/// Decodes a block written by [`encode_block`].
#[cfg(test)]
pub fn decode_block(ty: FieldType, bytes: &[u8]) -> Result<Vec<(i64, FieldValue)>, DecodeError> {
    let mut out = Vec::new();
    decode_block_into(Version::V3, ty, bytes, &mut out)?;
    Ok(out)
}

/// [`decode_block`], appending to `out` (which keeps what it held before when this fails).
pub fn decode_block_into(
    version: Version,
    ty: FieldType,
    bytes: &[u8],
    out: &mut Vec<(i64, FieldValue)>,
) -> Result<(), DecodeError> {
    let mut r = Reader::new(bytes);
    let count = checked_count(version, r.uvarint()?, bytes.len())?;
    let ts_len = r.len()?;
    let ts_bytes = r.bytes(ts_len)?;
    let rest = r.bytes(r.remaining())?;
    let start = out.len();
    if ty == FieldType::Float {
        // Straight into `out`, without a vector of timestamps and one of values between (a
        // query decodes hundreds of thousands of floats).
        out.reserve(count);
        let decoded = decode_timestamps_of(version, ts_bytes, count, |t| {
            out.push((t, FieldValue::Float(0.0)));
        })
        .and_then(|()| {
            let mut slots = out[start..].iter_mut();
            decode_floats_each(rest, count, version, |v| {
                if let Some(slot) = slots.next() {
                    slot.1 = FieldValue::Float(v);
                }
            })
        });
        if decoded.is_err() {
            out.truncate(start);
        }
        return decoded;
    }
    let mut ts = Vec::with_capacity(count);
    decode_timestamps_of(version, ts_bytes, count, |t| ts.push(t))?;
    out.reserve(count);
    let ts = ts.into_iter();
    let decoded: Result<(), DecodeError> = match ty {
        FieldType::Float => Ok(()), // decoded above
        FieldType::Integer => decode_ints(version, rest, count)
            .map(|v| out.extend(ts.zip(v.into_iter().map(FieldValue::Integer)))),
        FieldType::Unsigned => decode_ints(version, rest, count)
            .map(|v| out.extend(ts.zip(v.into_iter().map(|i| FieldValue::Unsigned(i as u64))))),
        FieldType::Boolean => {
            if rest.len() != count.div_ceil(8) {
                return Err(DecodeError("boolean column has the wrong size"));
            }
            let mut br = BitReader::new(rest);
            let mut res = Ok(());
            for t in ts {
                match br.bit() {
                    Ok(b) => out.push((t, FieldValue::Boolean(b))),
                    Err(e) => {
                        res = Err(e);
                        break;
                    }
                }
            }
            res
        }
        FieldType::String => {
            let mut sr = Reader::new(rest);
            let mut res = Ok(());
            for t in ts {
                match sr.str() {
                    Ok(s) => out.push((t, FieldValue::String(s))),
                    Err(e) => {
                        res = Err(e);
                        break;
                    }
                }
            }
            if res.is_ok() && !sr.is_empty() {
                res = Err(DecodeError("trailing bytes after string column"));
            }
            res
        }
    };
    if decoded.is_err() {
        out.truncate(start);
    }
    decoded
}

/// Reads only the timestamps of a block (for counting without decoding values).
pub fn decode_block_timestamps(version: Version, bytes: &[u8]) -> Result<Vec<i64>, DecodeError> {
    let mut r = Reader::new(bytes);
    let count = checked_count(version, r.uvarint()?, bytes.len())?;
    let ts_len = r.len()?;
    let mut ts = Vec::with_capacity(count);
    decode_timestamps_of(version, r.bytes(ts_len)?, count, |t| ts.push(t))?;
    Ok(ts)
}

/// A block's count, if it can be true of a block of `size` bytes: before v3 each value took at
/// least one bit of timestamps; a v3 block holds at most [`V3_MAX_COUNT`].
fn checked_count(version: Version, count: u64, size: usize) -> Result<usize, DecodeError> {
    let most = match version {
        Version::V1 | Version::V2 => size as u64 * 8,
        Version::V3 => V3_MAX_COUNT,
    };
    if count > most {
        return Err(DecodeError("block count exceeds its size"));
    }
    Ok(count as usize)
}

/// v3: `u8 mode`, then for [`TS_REGULAR`] `ivarint first, uvarint interval` (two or more
/// timestamps, each `interval` after the one before), for [`TS_STREAM`] the bit stream of v1
/// and v2. Appends to `buf`.
fn encode_timestamps_v3<I: Iterator<Item = i64> + Clone>(mut buf: Vec<u8>, ts: I) -> Vec<u8> {
    if let Some((first, interval)) = evenly_spaced(ts.clone()) {
        buf.push(TS_REGULAR);
        put_ivarint(&mut buf, first);
        put_uvarint(&mut buf, interval);
        return buf;
    }
    buf.push(TS_STREAM);
    encode_timestamps_to(BitWriter::from_vec(buf), ts)
}

/// `(first, interval)` of two or more timestamps at one positive interval.
fn evenly_spaced(mut ts: impl Iterator<Item = i64>) -> Option<(i64, u64)> {
    let first = ts.next()?;
    let mut prev = ts.next()?;
    let interval = prev.checked_sub(first).filter(|d| *d > 0)?;
    for t in ts {
        if t.checked_sub(prev) != Some(interval) {
            return None;
        }
        prev = t;
    }
    Some((first, interval as u64))
}

/// The timestamps of a block's timestamp section in format `version`, handed to `each`.
fn decode_timestamps_of(
    version: Version,
    bytes: &[u8],
    count: usize,
    mut each: impl FnMut(i64),
) -> Result<(), DecodeError> {
    if version != Version::V3 {
        return decode_timestamps_each(bytes, count, each);
    }
    let Some((&mode, rest)) = bytes.split_first() else {
        return Err(DecodeError("timestamp section without its mode"));
    };
    match mode {
        TS_STREAM => decode_timestamps_each(rest, count, each),
        TS_REGULAR => {
            let mut r = Reader::new(rest);
            let first = r.ivarint()?;
            let interval = r.uvarint()?;
            if !r.is_empty() {
                return Err(DecodeError("trailing bytes after timestamps"));
            }
            let interval = i64::try_from(interval)
                .ok()
                .filter(|i| *i > 0 && count >= 2)
                .ok_or(DecodeError(
                    "evenly spaced timestamps without a valid interval",
                ))?;
            // The last one must be an i64, so every one before it is.
            (interval.checked_mul(count as i64 - 1))
                .and_then(|span| first.checked_add(span))
                .ok_or(DecodeError("evenly spaced timestamps out of range"))?;
            let mut t = first;
            for i in 0..count {
                if i > 0 {
                    t += interval;
                }
                each(t);
            }
            Ok(())
        }
        _ => Err(DecodeError("unknown timestamp mode")),
    }
}

/// (prefix, prefix length, payload bits) per bucket of zigzagged delta-of-delta.
const TS_BUCKETS: [(u64, u32, u32); 5] = [
    (0b10, 2, 7),
    (0b110, 3, 14),
    (0b1110, 4, 20),
    (0b11110, 5, 32),
    (0b11111, 5, 64),
];

#[cfg(test)]
pub fn encode_timestamps(ts: impl Iterator<Item = i64>) -> Vec<u8> {
    encode_timestamps_to(BitWriter::new(), ts)
}

/// Appends encoded timestamps to what `w` holds.
pub fn encode_timestamps_to(mut w: BitWriter, ts: impl Iterator<Item = i64>) -> Vec<u8> {
    let mut prev = 0i64;
    let mut prev_delta = 0i64;
    for (i, t) in ts.enumerate() {
        if i == 0 {
            w.bits(t as u64, 64);
        } else {
            let delta = t.wrapping_sub(prev);
            let zz = zigzag(delta.wrapping_sub(prev_delta));
            if zz == 0 {
                w.bit(false);
            } else {
                for (prefix, plen, bits) in TS_BUCKETS {
                    if bits == 64 || zz < (1u64 << bits) {
                        w.bits(prefix, plen);
                        w.bits(zz, bits);
                        break;
                    }
                }
            }
            prev_delta = delta;
        }
        prev = t;
    }
    w.finish()
}

#[cfg(test)]
pub fn decode_timestamps(bytes: &[u8], count: usize) -> Result<Vec<i64>, DecodeError> {
    if count as u64 > bytes.len() as u64 * 8 {
        return Err(DecodeError("timestamp count exceeds its size"));
    }
    let mut out = Vec::with_capacity(count);
    decode_timestamps_each(bytes, count, |t| out.push(t))?;
    Ok(out)
}

/// [`decode_timestamps`], handing each timestamp to `each` (which may see some before an
/// error is found).
fn decode_timestamps_each(
    bytes: &[u8],
    count: usize,
    mut each: impl FnMut(i64),
) -> Result<(), DecodeError> {
    if count as u64 > bytes.len() as u64 * 8 {
        return Err(DecodeError("timestamp count exceeds its size"));
    }
    let mut r = BitReader::new(bytes);
    let mut prev = 0i64;
    let mut prev_delta = 0i64;
    for i in 0..count {
        let t = if i == 0 {
            r.bits(64)? as i64
        } else {
            let zz = if !r.bit()? {
                0
            } else {
                let mut ones = 1;
                while ones < 5 && r.bit()? {
                    ones += 1;
                }
                let bits = TS_BUCKETS[ones - 1].2;
                r.bits(bits)?
            };
            let delta = prev_delta.wrapping_add(unzigzag(zz));
            prev_delta = delta;
            prev.wrapping_add(delta)
        };
        if i > 0 && t <= prev {
            return Err(DecodeError("timestamps not strictly ascending"));
        }
        each(t);
        prev = t;
    }
    if bytes.len() != r_bytes_used(&r) {
        return Err(DecodeError("trailing bytes after timestamps"));
    }
    Ok(())
}

fn r_bytes_used(r: &BitReader<'_>) -> usize {
    r.pos.div_ceil(8)
}

#[cfg(test)]
pub fn encode_floats(values: impl Iterator<Item = f64> + Clone) -> Vec<u8> {
    encode_floats_to(BitWriter::new(), values, Version::V3)
}

/// Appends encoded floats to what `w` holds. From v2 on, a value that fits the current window
/// still opens a new one when that takes fewer bits: after a value with few leading zeros (a
/// change of exponent) the window stays wide until then, costing every later value bits it
/// does not need (v1 and v2 decode the same way). v3 starts with a mode byte: a column of one
/// value is that value alone; otherwise the stream, where a value equal to one on the block's
/// list (see [`SEEN_SLOTS`]) is written as its index where that is shorter.
pub fn encode_floats_to(
    mut w: BitWriter,
    values: impl Iterator<Item = f64> + Clone,
    version: Version,
) -> Vec<u8> {
    let reopen = version != Version::V1;
    let repeats = version == Version::V3;
    if repeats {
        // A mode byte, where there is a value.
        let mut bits = values.clone().map(f64::to_bits);
        if let Some(first) = bits.next() {
            if bits.all(|b| b == first) {
                w.bits(u64::from(FLOATS_CONSTANT), 8);
                w.bits(first, 64);
                return w.finish();
            }
            w.bits(u64::from(FLOATS_STREAM), 8);
        }
    }
    // v3: the list of values written, and the table of where a value is on it.
    let (mut list, mut seen) = if repeats {
        let n = values.size_hint().0;
        let slots = n
            .saturating_mul(8)
            .next_power_of_two()
            .clamp(64, SEEN_SLOTS);
        (Vec::with_capacity(n), vec![u32::MAX; slots])
    } else {
        (Vec::new(), Vec::new())
    };
    let mut prev = 0u64;
    let mut window: Option<(u32, u32)> = None; // (leading, trailing) zeros
    for (i, v) in values.enumerate() {
        let bits = v.to_bits();
        let slot = seen_slot(bits, seen.len());
        // Whether this value goes on the list.
        let mut listed = i == 0;
        if i == 0 {
            w.bits(bits, 64);
        } else {
            let x = bits ^ prev;
            if x == 0 {
                w.bit(false);
            } else {
                w.bit(true);
                let lz = x.leading_zeros().min(31);
                let tz = x.trailing_zeros();
                let sig = 64 - lz - tz;
                // Bits after the leading `1` of each way to write it.
                let fits = window
                    .filter(|(plz, ptz)| lz >= *plz && tz >= *ptz)
                    .map(|(plz, ptz)| 1 + 64 - plz - ptz);
                let new = 1 + u32::from(repeats) + 11 + sig;
                let on_list = seen
                    .get(slot)
                    .map(|&at| at as usize)
                    .filter(|&at| list.get(at) == Some(&bits));
                let repeat = on_list.map(|_| 2 + index_bits(list.len()));
                let best = [fits, Some(new), repeat].into_iter().flatten().min();
                match (window, on_list) {
                    (Some((plz, ptz)), _)
                        if fits.is_some() && (if reopen { fits == best } else { true }) =>
                    {
                        w.bit(false);
                        w.bits(x >> ptz, 64 - plz - ptz);
                        listed = true;
                    }
                    (_, Some(at)) if repeat == best => {
                        w.bits(0b11, 2);
                        w.bits(at as u64, index_bits(list.len()));
                    }
                    _ => {
                        if repeats {
                            w.bits(0b10, 2);
                        } else {
                            w.bit(true);
                        }
                        w.bits(u64::from(lz), 5);
                        w.bits(u64::from(sig - 1), 6);
                        w.bits(x >> tz, sig);
                        window = Some((lz, tz));
                        listed = true;
                    }
                }
            }
        }
        if repeats && listed {
            if let (Some(s), Ok(at)) = (seen.get_mut(slot), u32::try_from(list.len())) {
                *s = at;
            }
            list.push(bits);
        }
        prev = bits;
    }
    w.finish()
}

/// The slot of a table of `slots` (a power of two) that a float's bits hash to.
fn seen_slot(bits: u64, slots: usize) -> usize {
    ((bits ^ (bits >> 31)).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 32) as usize & (slots.max(1) - 1)
}

#[cfg(test)]
pub fn decode_floats(
    bytes: &[u8],
    count: usize,
    version: Version,
) -> Result<Vec<f64>, DecodeError> {
    let mut out = Vec::with_capacity(count.min(bytes.len() * 8));
    decode_floats_each(bytes, count, version, |v| out.push(v))?;
    Ok(out)
}

/// Decodes `count` floats, handing each to `each` (which may see some before an error is
/// found).
fn decode_floats_each(
    bytes: &[u8],
    count: usize,
    version: Version,
    mut each: impl FnMut(f64),
) -> Result<(), DecodeError> {
    let repeats = version == Version::V3;
    let mut r = BitReader::new(bytes);
    if repeats && count > 0 {
        match r.bits(8)? as u8 {
            FLOATS_STREAM => {}
            FLOATS_CONSTANT => {
                // The count was checked against the block's limit.
                let v = f64::from_bits(r.bits(64)?);
                if bytes.len() != r_bytes_used(&r) {
                    return Err(DecodeError("trailing bytes after floats"));
                }
                for _ in 0..count {
                    each(v);
                }
                return Ok(());
            }
            _ => return Err(DecodeError("unknown float mode")),
        }
    }
    if count as u64 > bytes.len() as u64 * 8 {
        return Err(DecodeError("float count exceeds its size"));
    }
    // v3: the list of values written (the first and those of the XOR stream).
    let mut list: Vec<u64> = Vec::new();
    let mut prev = 0u64;
    let mut window: Option<(u32, u32)> = None;
    for i in 0..count {
        let bits = if i == 0 {
            let b = r.bits(64)?;
            list.push(b);
            b
        } else if !r.bit()? {
            prev
        } else if !r.bit()? {
            let (lz, tz) = window.ok_or(DecodeError("float window used before it was set"))?;
            let b = prev ^ (r.bits(64 - lz - tz)? << tz);
            if repeats {
                list.push(b);
            }
            b
        } else if repeats && r.bit()? {
            let at = r.bits(index_bits(list.len()))? as usize;
            *list
                .get(at)
                .ok_or(DecodeError("float repeat past the values written"))?
        } else {
            let lz = r.bits(5)? as u32;
            let sig = r.bits(6)? as u32 + 1;
            if lz + sig > 64 {
                return Err(DecodeError("float window out of range"));
            }
            let tz = 64 - lz - sig;
            window = Some((lz, tz));
            let b = prev ^ (r.bits(sig)? << tz);
            if repeats {
                list.push(b);
            }
            b
        };
        each(f64::from_bits(bits));
        prev = bits;
    }
    if bytes.len() != r_bytes_used(&r) {
        return Err(DecodeError("trailing bytes after floats"));
    }
    Ok(())
}

fn encode_ints(version: Version, out: &mut Vec<u8>, values: impl Iterator<Item = i64>) {
    match version {
        Version::V1 => {
            let mut prev = 0i64;
            for v in values {
                put_ivarint(out, v.wrapping_sub(prev));
                prev = v;
            }
        }
        Version::V2 | Version::V3 => encode_ints_v2(out, values),
    }
}

fn decode_ints(version: Version, bytes: &[u8], count: usize) -> Result<Vec<i64>, DecodeError> {
    if version != Version::V1 {
        return decode_ints_v2(bytes, count);
    }
    if count > bytes.len() {
        return Err(DecodeError("integer count exceeds its size"));
    }
    let mut r = Reader::new(bytes);
    let mut out = Vec::with_capacity(count);
    let mut prev = 0i64;
    for _ in 0..count {
        prev = prev.wrapping_add(r.ivarint()?);
        out.push(prev);
    }
    if !r.is_empty() {
        return Err(DecodeError("trailing bytes after integers"));
    }
    Ok(out)
}

/// v2 integer modes (the byte after the first value, when there is more than one).
const INTS_CONSTANT: u8 = 0;
const INTS_DELTAS: u8 = 1;
const INTS_DELTA_DELTAS: u8 = 2;
/// Values per bit-packed frame; each frame starts with its width in 7 bits.
const FRAME: usize = 64;

/// v2: `ivarint first`; with more values `u8 mode`: constant (nothing follows), or `uvarint g`
/// (the greatest common divisor of the wrapping differences, which divide exactly) and then
/// either every difference ÷ g (deltas) or the first one as an `ivarint` and each change of
/// it (delta-deltas), zigzagged and bit-packed in frames of 64: 7 bits of width, then each
/// value in that many bits. The encoder writes whichever mode is shorter.
fn encode_ints_v2(out: &mut Vec<u8>, values: impl Iterator<Item = i64>) {
    let values: Vec<i64> = values.collect();
    let Some(&first) = values.first() else {
        return;
    };
    put_ivarint(out, first);
    if values.len() == 1 {
        return;
    }
    let deltas: Vec<i64> = values.windows(2).map(|w| w[1].wrapping_sub(w[0])).collect();
    let g = deltas.iter().fold(0u64, |g, d| gcd(g, d.unsigned_abs()));
    if g == 0 {
        out.push(INTS_CONSTANT);
        return;
    }
    // A divisor of 2^63 only divides i64::MIN and 0, whose quotients would not fit; keep 1.
    let g = if g > i64::MAX as u64 { 1 } else { g };
    let quotients: Vec<u64> = deltas.iter().map(|d| zigzag(d / g as i64)).collect();
    let changes: Vec<u64> = deltas
        .windows(2)
        .map(|w| zigzag((w[1] / g as i64).wrapping_sub(w[0] / g as i64)))
        .collect();
    let first_q = deltas[0] / g as i64;
    let plain = packed_bits(&quotients);
    let dd = packed_bits(&changes) + 8 * ivarint_len(first_q) as u64;
    out.push(if dd < plain {
        INTS_DELTA_DELTAS
    } else {
        INTS_DELTAS
    });
    put_uvarint(out, g);
    let mut w = BitWriter::from_vec(std::mem::take(out));
    if dd < plain {
        let mut head = Vec::new();
        put_ivarint(&mut head, first_q);
        for b in head {
            w.bits(u64::from(b), 8);
        }
        pack(&mut w, &changes);
    } else {
        pack(&mut w, &quotients);
    }
    *out = w.finish();
}

fn decode_ints_v2(bytes: &[u8], count: usize) -> Result<Vec<i64>, DecodeError> {
    if count == 0 {
        return if bytes.is_empty() {
            Ok(Vec::new())
        } else {
            Err(DecodeError("trailing bytes after integers"))
        };
    }
    let mut r = Reader::new(bytes);
    let first = r.ivarint()?;
    let mut out = Vec::with_capacity(count.min(bytes.len() * 8 + 1));
    out.push(first);
    if count == 1 {
        return if r.is_empty() {
            Ok(out)
        } else {
            Err(DecodeError("trailing bytes after integers"))
        };
    }
    let mode = r.u8()?;
    if mode == INTS_CONSTANT {
        if !r.is_empty() {
            return Err(DecodeError("trailing bytes after integers"));
        }
        // A constant column costs nothing per value, so its count cannot be checked against
        // its size; it is checked against the block's timestamps (at least a bit per value).
        out.resize(count, first);
        return Ok(out);
    }
    let g = r.uvarint()?;
    if g == 0 || g > i64::MAX as u64 {
        return Err(DecodeError("integer divisor out of range"));
    }
    let rest = r.bytes(r.remaining())?;
    let mut br = BitReader::new(rest);
    let mut prev = first;
    match mode {
        INTS_DELTAS => unpack(&mut br, count - 1, |q| {
            prev = prev.wrapping_add(unzigzag(q).wrapping_mul(g as i64));
            out.push(prev);
        })?,
        INTS_DELTA_DELTAS => {
            let mut head = Vec::new();
            loop {
                let b = br.bits(8)? as u8;
                head.push(b);
                if b & 0x80 == 0 || head.len() >= 10 {
                    break;
                }
            }
            let mut q = Reader::new(&head).ivarint()?;
            prev = prev.wrapping_add(q.wrapping_mul(g as i64));
            out.push(prev);
            unpack(&mut br, count - 2, |c| {
                q = q.wrapping_add(unzigzag(c));
                prev = prev.wrapping_add(q.wrapping_mul(g as i64));
                out.push(prev);
            })?;
        }
        _ => return Err(DecodeError("unknown integer mode")),
    }
    if rest.len() != r_bytes_used(&br) {
        return Err(DecodeError("trailing bytes after integers"));
    }
    Ok(out)
}

fn gcd(mut a: u64, mut b: u64) -> u64 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

fn ivarint_len(v: i64) -> usize {
    let mut buf = Vec::with_capacity(10);
    put_ivarint(&mut buf, v);
    buf.len()
}

fn width(frame: &[u64]) -> u32 {
    64 - frame.iter().fold(0, |a, v| a | v).leading_zeros()
}

/// Bits [`pack`] writes for `values`.
fn packed_bits(values: &[u64]) -> u64 {
    values
        .chunks(FRAME)
        .map(|f| 7 + u64::from(width(f)) * f.len() as u64)
        .sum()
}

fn pack(w: &mut BitWriter, values: &[u64]) {
    for frame in values.chunks(FRAME) {
        let bits = width(frame);
        w.bits(u64::from(bits), 7);
        for v in frame {
            w.bits(*v, bits);
        }
    }
}

fn unpack(
    r: &mut BitReader<'_>,
    count: usize,
    mut each: impl FnMut(u64),
) -> Result<(), DecodeError> {
    let mut left = count;
    while left > 0 {
        let n = left.min(FRAME);
        let bits = r.bits(7)? as u32;
        if bits > 64 {
            return Err(DecodeError("integer frame width out of range"));
        }
        for _ in 0..n {
            each(r.bits(bits)?);
        }
        left -= n;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn regular_timestamps_cost_one_bit_each() {
        let ts: Vec<i64> = (0..1000)
            .map(|i| 1_700_000_000_000_000_000 + i * 10_000_000_000)
            .collect();
        let enc = encode_timestamps(ts.iter().copied());
        // 64 bits first, one delta in a bucket, then 998 single bits.
        assert!(enc.len() <= 8 + 9 + 998 / 8 + 1, "{} bytes", enc.len());
        assert_eq!(decode_timestamps(&enc, ts.len()).unwrap(), ts);
    }

    #[test]
    fn timestamps_at_the_extremes() {
        let ts = vec![i64::MIN, i64::MIN + 1, -1, 0, 1, i64::MAX - 1, i64::MAX];
        let enc = encode_timestamps(ts.iter().copied());
        assert_eq!(decode_timestamps(&enc, ts.len()).unwrap(), ts);
    }

    #[test]
    fn repeated_floats_cost_one_bit_each() {
        let enc = encode_floats(std::iter::repeat_n(42.5, 1000));
        assert!(enc.len() <= 8 + 999 / 8 + 1, "{} bytes", enc.len());
        assert_eq!(
            decode_floats(&enc, 1000, Version::V3).unwrap(),
            vec![42.5; 1000]
        );
    }

    #[test]
    fn floats_keep_their_exact_bits() {
        let v = vec![
            0.0,
            -0.0,
            f64::MIN_POSITIVE,
            f64::MAX,
            f64::MIN,
            1e-300,
            3.25,
            3.5,
            -7.0,
            5e-324,
        ];
        let enc = encode_floats(v.iter().copied());
        let got = decode_floats(&enc, v.len(), Version::V3).unwrap();
        assert_eq!(
            got.iter().map(|f| f.to_bits()).collect::<Vec<_>>(),
            v.iter().map(|f| f.to_bits()).collect::<Vec<_>>()
        );
    }

    #[test]
    fn booleans_and_strings_round_trip() {
        let pts: Vec<(i64, FieldValue)> = (0..17)
            .map(|i| (i, FieldValue::Boolean(i % 3 == 0)))
            .collect();
        assert_eq!(
            decode_block(FieldType::Boolean, &encode_block(FieldType::Boolean, &pts)).unwrap(),
            pts
        );
        let pts: Vec<(i64, FieldValue)> = vec![
            (1, FieldValue::String(String::new())),
            (2, FieldValue::String("ünïcode ✓".into())),
        ];
        assert_eq!(
            decode_block(FieldType::String, &encode_block(FieldType::String, &pts)).unwrap(),
            pts
        );
    }

    #[test]
    fn damaged_blocks_do_not_panic() {
        let pts: Vec<(i64, FieldValue)> = (0..50)
            .map(|i| (i * 7, FieldValue::Float(i as f64 / 3.0)))
            .collect();
        let enc = encode_block(FieldType::Float, &pts);
        for cut in 0..enc.len() {
            assert!(decode_block(FieldType::Float, &enc[..cut]).is_err());
        }
        for i in 0..enc.len() {
            for ty in [
                FieldType::Float,
                FieldType::Integer,
                FieldType::Boolean,
                FieldType::String,
            ] {
                let mut bad = enc.clone();
                bad[i] ^= 0x5a;
                let _ = decode_block(ty, &bad);
            }
        }
    }

    fn arb_points() -> impl Strategy<Value = (FieldType, Vec<(i64, FieldValue)>)> {
        let ts = proptest::collection::btree_set(any::<i64>(), 0..300);
        prop_oneof![
            (ts.clone(), proptest::collection::vec(any::<f64>(), 300)).prop_map(|(t, v)| (
                FieldType::Float,
                t.into_iter()
                    .zip(v)
                    .map(|(t, v)| (t, FieldValue::Float(v)))
                    .collect()
            )),
            (ts.clone(), proptest::collection::vec(any::<i64>(), 300)).prop_map(|(t, v)| (
                FieldType::Integer,
                t.into_iter()
                    .zip(v)
                    .map(|(t, v)| (t, FieldValue::Integer(v)))
                    .collect()
            )),
            (ts.clone(), proptest::collection::vec(any::<u64>(), 300)).prop_map(|(t, v)| (
                FieldType::Unsigned,
                t.into_iter()
                    .zip(v)
                    .map(|(t, v)| (t, FieldValue::Unsigned(v)))
                    .collect()
            )),
            (ts.clone(), proptest::collection::vec(any::<bool>(), 300)).prop_map(|(t, v)| (
                FieldType::Boolean,
                t.into_iter()
                    .zip(v)
                    .map(|(t, v)| (t, FieldValue::Boolean(v)))
                    .collect()
            )),
            (ts, proptest::collection::vec(".{0,20}", 300)).prop_map(|(t, v)| (
                FieldType::String,
                t.into_iter()
                    .zip(v)
                    .map(|(t, v)| (t, FieldValue::String(v)))
                    .collect()
            )),
        ]
    }

    proptest! {
        #[test]
        fn blocks_round_trip((ty, pts) in arb_points()) {
            for version in [Version::V1, Version::V2, Version::V3] {
                let mut enc = Vec::new();
                encode_block_into(version, ty, &pts, &mut enc, &mut Vec::new());
                let mut got = Vec::new();
                decode_block_into(version, ty, &enc, &mut got).unwrap();
                prop_assert_eq!(got.len(), pts.len());
                for (g, p) in got.iter().zip(&pts) {
                    prop_assert_eq!(g.0, p.0);
                    match (&g.1, &p.1) {
                        // NaN != NaN: compare bits.
                        (FieldValue::Float(a), FieldValue::Float(b)) => prop_assert_eq!(a.to_bits(), b.to_bits()),
                        (a, b) => prop_assert_eq!(a, b),
                    }
                }
                prop_assert_eq!(decode_block_timestamps(version, &enc).unwrap(), pts.iter().map(|p| p.0).collect::<Vec<_>>());
            }
        }

        /// Floats that come back to a few values, at any spacing, in v3: every value keeps
        /// its bits, and a block of them is no larger than in v2 by more than a bit a value and
        /// the mode byte.
        #[test]
        fn recurring_floats_round_trip(
            palette in proptest::collection::vec(any::<f64>(), 1..40),
            picks in proptest::collection::vec(any::<prop::sample::Index>(), 0..600),
        ) {
            let values: Vec<f64> = picks.iter().map(|i| palette[i.index(palette.len())]).collect();
            let v3 = encode_floats_to(BitWriter::new(), values.iter().copied(), Version::V3);
            let v2 = encode_floats_to(BitWriter::new(), values.iter().copied(), Version::V2);
            let got = decode_floats(&v3, values.len(), Version::V3).unwrap();
            prop_assert_eq!(
                got.iter().map(|f| f.to_bits()).collect::<Vec<_>>(),
                values.iter().map(|f| f.to_bits()).collect::<Vec<_>>()
            );
            // A bit a value at most (the longer code of a new window), and the mode byte.
            prop_assert!(v3.len() <= v2.len() + values.len() / 8 + 2, "{} vs {}", v3.len(), v2.len());
        }

        #[test]
        fn clustered_timestamps_round_trip(start in any::<i64>(), gaps in proptest::collection::vec(1i64..1_000_000_000, 0..500)) {
            let mut ts = vec![start];
            for g in gaps {
                match ts.last().and_then(|l| l.checked_add(g)) {
                    Some(t) => ts.push(t),
                    None => break,
                }
            }
            let enc = encode_timestamps(ts.iter().copied());
            prop_assert_eq!(decode_timestamps(&enc, ts.len()).unwrap(), ts);
        }

        #[test]
        fn random_bytes_never_panic(ty in 1u8..=5, bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            for version in [Version::V1, Version::V2, Version::V3] {
                if let Some(ty) = FieldType::from_byte(ty) {
                    let _ = decode_block_into(version, ty, &bytes, &mut Vec::new());
                }
                let _ = decode_block_timestamps(version, &bytes);
            }
            let _ = decode_ints_v2(&bytes, bytes.len());
        }

        /// Every integer sequence survives both versions: extremes, wrapping differences,
        /// common divisors, steady and jumping rates.
        #[test]
        fn integers_round_trip_in_both_versions(
            values in proptest::collection::vec(
                prop_oneof![
                    any::<i64>(),
                    (-1000i64..1000).prop_map(|v| v * 4096),
                    Just(i64::MIN),
                    Just(i64::MAX),
                    Just(0),
                ],
                0..300,
            ),
            steady in any::<bool>(),
        ) {
            let values: Vec<i64> = if steady {
                // A counter: a steady rate with the sequence as small jitter.
                values.iter().enumerate().map(|(i, v)| (i as i64).wrapping_mul(1_000_003).wrapping_add(v % 7)).collect()
            } else {
                values
            };
            for version in [Version::V1, Version::V2] {
                let mut enc = Vec::new();
                encode_ints(version, &mut enc, values.iter().copied());
                prop_assert_eq!(decode_ints(version, &enc, values.len()).unwrap(), values.clone());
                // One value fewer or more is an error, not a wrong answer.
                if !enc.is_empty() {
                    prop_assert!(decode_ints(version, &enc[..enc.len() - 1], values.len()).is_err());
                }
            }
        }
    }

    fn v2_size(values: &[i64]) -> usize {
        let mut enc = Vec::new();
        encode_ints(Version::V2, &mut enc, values.iter().copied());
        assert_eq!(
            decode_ints(Version::V2, &enc, values.len()).unwrap(),
            values
        );
        enc.len()
    }

    #[test]
    fn v2_integers_cost_what_they_vary() {
        // Never changes: the first value and a mode byte.
        assert_eq!(v2_size(&[42; 1000]), 2);
        // Memory in whole pages walking at random by up to ±255 pages: 9 bits a value, where
        // a varint of the bytes takes 3.
        let mut v = 8_000_000_000i64;
        let mut pages = Vec::new();
        let mut x = 12345u64;
        for _ in 0..1000 {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            v += ((x >> 33) % 511) as i64 * 4096 - 255 * 4096;
            pages.push(v);
        }
        let size = v2_size(&pages);
        assert!(size <= 1000 * 9 / 8 + 40, "{size} bytes");
        let mut v1 = Vec::new();
        encode_ints(Version::V1, &mut v1, pages.iter().copied());
        assert!(v1.len() >= 2900, "{} bytes", v1.len());
        // A counter at a steady rate with a little jitter: its delta-deltas are small.
        let counter: Vec<i64> = (0..1000).map(|i| i * 1_000_000 + (i % 3)).collect();
        assert!(
            v2_size(&counter) <= 1000 * 3 / 8 + 40,
            "{} bytes",
            v2_size(&counter)
        );
    }

    #[test]
    fn v2_floats_reopen_a_narrower_window() {
        // One jump to a long mantissa, then changes of one bit: v1 keeps the wide window of
        // the jump for all of them.
        let mut values = vec![1.0];
        values.extend((0..200).map(|i| 1000.123456789 + f64::from(i % 2) * 0.5));
        let v1 = encode_floats_to(BitWriter::new(), values.iter().copied(), Version::V1);
        let v2 = encode_floats_to(BitWriter::new(), values.iter().copied(), Version::V2);
        assert!(v2.len() < v1.len(), "{} vs {}", v2.len(), v1.len());
        assert_eq!(
            decode_floats(&v2, values.len(), Version::V2).unwrap(),
            values
        );
        assert_eq!(
            decode_floats(&v1, values.len(), Version::V2).unwrap(),
            values
        );
        assert_eq!(
            decode_floats(&v1, values.len(), Version::V1).unwrap(),
            values
        );
    }

    #[test]
    fn v3_evenly_spaced_timestamps_cost_a_few_bytes_a_block() {
        let pts: Vec<(i64, FieldValue)> = (0..1000)
            .map(|i| {
                (
                    1_700_000_000_000_000_000 + i * 10_000_000_000,
                    FieldValue::Integer(7),
                )
            })
            .collect();
        let v3 = encode_block(FieldType::Integer, &pts);
        // count, section length, mode, first, interval; then the constant.
        assert!(v3.len() <= 2 + 1 + 1 + 10 + 6 + 2, "{} bytes", v3.len());
        assert_eq!(decode_block(FieldType::Integer, &v3).unwrap(), pts);
        let mut v2 = Vec::new();
        encode_block_into(
            Version::V2,
            FieldType::Integer,
            &pts,
            &mut v2,
            &mut Vec::new(),
        );
        assert!(v2.len() > 120, "{} bytes", v2.len());
        // One off the beat: the bit stream, as before.
        let mut odd = pts.clone();
        odd[500].0 += 1;
        let enc = encode_block(FieldType::Integer, &odd);
        assert_eq!(decode_block(FieldType::Integer, &enc).unwrap(), odd);
        assert!(enc.len() > 120, "{} bytes", enc.len());
    }

    #[test]
    fn v3_blocks_that_cannot_be_are_errors() {
        let bad = |ts: &[u8]| {
            let mut b = vec![3];
            put_uvarint(&mut b, ts.len() as u64);
            b.extend_from_slice(ts);
            b.extend_from_slice(&[0, 0]); // a constant integer 0
            decode_block(FieldType::Integer, &b)
        };
        let mut even = vec![TS_REGULAR];
        put_ivarint(&mut even, 5);
        put_uvarint(&mut even, 10);
        assert_eq!(
            bad(&even).unwrap().iter().map(|p| p.0).collect::<Vec<_>>(),
            [5, 15, 25]
        );
        // No interval, a zero one, one that runs past i64::MAX, an unknown mode, trailing bytes.
        let mut zero = vec![TS_REGULAR];
        put_ivarint(&mut zero, 5);
        put_uvarint(&mut zero, 0);
        let mut past = vec![TS_REGULAR];
        put_ivarint(&mut past, i64::MAX - 15);
        put_uvarint(&mut past, 10);
        let mut trailing = even.clone();
        trailing.push(0);
        for ts in [&[TS_REGULAR][..], &zero, &past, &[9, 0], &trailing, &[]] {
            assert!(bad(ts).is_err(), "{ts:?}");
        }
        // More values than a block may hold, though a constant costs nothing a value.
        let mut b = Vec::new();
        put_uvarint(&mut b, V3_MAX_COUNT + 1);
        put_uvarint(&mut b, even.len() as u64);
        b.extend_from_slice(&even);
        b.extend_from_slice(&[0, 0]);
        assert!(decode_block(FieldType::Integer, &b).is_err());
        // 1.0, then 2.0 and 3.0 in new windows: the list is [1, 2, 3]. A repeat of index 1
        // is 2.0; index 3, past the list, is an error.
        for (at, want) in [(1u64, Some(2.0)), (3, None)] {
            let mut w = BitWriter::new();
            w.bits(u64::from(FLOATS_STREAM), 8);
            w.bits(1.0f64.to_bits(), 64);
            let mut prev = 1.0f64.to_bits();
            for v in [2.0f64, 3.0] {
                let x = v.to_bits() ^ prev;
                let (lz, tz) = (x.leading_zeros().min(31), x.trailing_zeros());
                w.bits(0b110, 3);
                w.bits(u64::from(lz), 5);
                w.bits(u64::from(64 - lz - tz - 1), 6);
                w.bits(x >> tz, 64 - lz - tz);
                prev = v.to_bits();
            }
            w.bits(0b111, 3);
            w.bits(at, index_bits(3));
            let got = decode_floats(&w.finish(), 4, Version::V3);
            match want {
                Some(v) => assert_eq!(got.unwrap(), [1.0, 2.0, 3.0, v]),
                None => assert!(got.is_err(), "{got:?}"),
            }
        }
        // Unknown float modes, and a constant with a byte too many.
        assert!(decode_floats(&[2, 0, 0, 0, 0, 0, 0, 0, 0], 3, Version::V3).is_err());
        let mut constant = vec![FLOATS_CONSTANT];
        constant.extend_from_slice(&2.5f64.to_bits().to_be_bytes());
        assert_eq!(
            decode_floats(&constant, 60_000, Version::V3).unwrap(),
            vec![2.5; 60_000]
        );
        constant.push(0);
        assert!(decode_floats(&constant, 3, Version::V3).is_err());
    }

    #[test]
    fn v3_floats_that_come_back_cost_a_few_bits() {
        // A low-activity gauge: a handful of full-precision percentages, again and again.
        // A handful of full-precision percentages: jiffies over a total, as Telegraf's are.
        let palette = [0.0, 100.0 / 2001.0, 200.0 / 2001.0, 300.0 / 2003.0];
        let mut x = 7u64;
        let values: Vec<f64> = (0..1000)
            .map(|_| {
                x = x
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                palette[(x >> 62) as usize]
            })
            .collect();
        let v3 = encode_floats(values.iter().copied());
        let v2 = encode_floats_to(BitWriter::new(), values.iter().copied(), Version::V2);
        assert_eq!(
            decode_floats(&v3, values.len(), Version::V3).unwrap(),
            values
        );
        // A quarter are unchanged (1 bit), the rest repeats (3 bits and at most 10 of
        // position).
        assert!(v3.len() <= 8 + 1000 * 13 / 8, "{} bytes", v3.len());
        assert!(
            v3.len() * 3 < v2.len(),
            "{} vs {} bytes",
            v3.len(),
            v2.len()
        );
    }
}
