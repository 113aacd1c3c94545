//! Byte- and bit-level encodings shared by the WAL, the series index and the block files:
//! LEB128 varints, zigzag, length-prefixed strings, CRC32 framing, and a bit writer/reader.
//!
//! Decoders never trust their input: every read is bounds-checked and returns a
//! [`DecodeError`] instead of panicking.

pub mod column;

use std::fmt;

/// Why a byte string did not decode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodeError(pub &'static str);

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

pub fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

pub fn unzigzag(v: u64) -> i64 {
    ((v >> 1) as i64) ^ -((v & 1) as i64)
}

pub fn put_uvarint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

pub fn put_ivarint(out: &mut Vec<u8>, v: i64) {
    put_uvarint(out, zigzag(v));
}

pub fn put_str(out: &mut Vec<u8>, s: &str) {
    put_uvarint(out, s.len() as u64);
    out.extend_from_slice(s.as_bytes());
}

/// A cursor over untrusted bytes.
pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub fn new(buf: &'a [u8]) -> Reader<'a> {
        Reader { buf, pos: 0 }
    }

    #[inline]
    pub fn is_empty(&self) -> bool {
        self.pos >= self.buf.len()
    }

    #[inline]
    pub fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    /// Bytes consumed so far.
    #[inline]
    pub fn position(&self) -> usize {
        self.pos
    }

    #[inline]
    pub fn bytes(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        if n > self.remaining() {
            return Err(DecodeError("unexpected end of data"));
        }
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    #[inline]
    pub fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.bytes(1)?[0])
    }

    #[inline]
    pub fn u32_le(&mut self) -> Result<u32, DecodeError> {
        let b = self.bytes(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    pub fn u64_le(&mut self) -> Result<u64, DecodeError> {
        let b = self.bytes(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_le_bytes(a))
    }

    #[inline]
    pub fn uvarint(&mut self) -> Result<u64, DecodeError> {
        // Most lengths and differences fit in one byte.
        if let Some(&b) = self.buf.get(self.pos) {
            if b < 0x80 {
                self.pos += 1;
                return Ok(u64::from(b));
            }
        }
        let mut v: u64 = 0;
        for shift in (0..64).step_by(7) {
            let b = self.u8()?;
            if shift == 63 && b > 1 {
                return Err(DecodeError("varint overflows 64 bits"));
            }
            v |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(DecodeError("varint longer than 10 bytes"))
    }

    #[inline]
    pub fn ivarint(&mut self) -> Result<i64, DecodeError> {
        Ok(unzigzag(self.uvarint()?))
    }

    /// A length or count that must fit in what is left (every item takes at least one byte),
    /// so garbage cannot ask for a huge allocation.
    #[inline]
    pub fn len(&mut self) -> Result<usize, DecodeError> {
        let n = self.uvarint()?;
        if n > self.remaining() as u64 {
            return Err(DecodeError("length exceeds the data"));
        }
        Ok(n as usize)
    }

    pub fn str(&mut self) -> Result<String, DecodeError> {
        self.str_ref().map(str::to_string)
    }

    /// A `str` borrowed from the input, checked to be UTF-8.
    #[inline]
    pub fn str_ref(&mut self) -> Result<&'a str, DecodeError> {
        let b = self.bytes_ref()?;
        std::str::from_utf8(b).map_err(|_| DecodeError("string is not utf-8"))
    }

    /// The bytes of a `str`, not checked to be UTF-8.
    #[inline]
    pub fn bytes_ref(&mut self) -> Result<&'a [u8], DecodeError> {
        let n = self.len()?;
        self.bytes(n)
    }
}

/// Appends bits most-significant first. Bits gather in a word that goes out whole once full,
/// so that a value of many bits costs a few shifts, not a loop over its bytes.
#[derive(Default)]
pub struct BitWriter {
    out: Vec<u8>,
    /// Bits not yet in `out`: the low `pending` bits of `acc`, the oldest highest.
    acc: u64,
    pending: u32, // 0..64 between calls
}

impl BitWriter {
    #[cfg(test)]
    pub fn new() -> BitWriter {
        BitWriter::default()
    }

    /// Appends to the bytes of `out` (whose last byte is complete).
    pub fn from_vec(out: Vec<u8>) -> BitWriter {
        BitWriter {
            out,
            acc: 0,
            pending: 0,
        }
    }

    pub fn bit(&mut self, b: bool) {
        self.bits(u64::from(b), 1);
    }

    /// Writes the low `n` bits of `v` (n ≤ 64).
    #[inline]
    pub fn bits(&mut self, v: u64, n: u32) {
        debug_assert!(n <= 64);
        if n == 0 {
            return;
        }
        let v = if n == 64 { v } else { v & ((1u64 << n) - 1) };
        let free = 64 - self.pending;
        if n < free {
            self.acc = (self.acc << n) | v;
            self.pending += n;
            return;
        }
        // The word fills up: its last `free` bits are the highest of `v`.
        let rest = n - free;
        let word = if free == 64 {
            v
        } else {
            (self.acc << free) | (v >> rest)
        };
        self.out.extend_from_slice(&word.to_be_bytes());
        self.acc = if rest == 0 {
            0
        } else {
            v & ((1u64 << rest) - 1)
        };
        self.pending = rest;
    }

    /// The bytes, the last one padded with zero bits.
    pub fn finish(mut self) -> Vec<u8> {
        if self.pending > 0 {
            let bytes = (self.acc << (64 - self.pending)).to_be_bytes();
            let used = self.pending.div_ceil(8) as usize;
            self.out.extend_from_slice(&bytes[..used]);
        }
        self.out
    }
}

/// Reads bits most-significant first from untrusted bytes.
pub struct BitReader<'a> {
    buf: &'a [u8],
    pos: usize, // in bits
}

impl<'a> BitReader<'a> {
    pub fn new(buf: &'a [u8]) -> BitReader<'a> {
        BitReader { buf, pos: 0 }
    }

    pub fn bit(&mut self) -> Result<bool, DecodeError> {
        Ok(self.bits(1)? == 1)
    }

    /// The next `n` bits (n ≤ 64). Away from the end of the input, one 8-byte load.
    #[inline]
    pub fn bits(&mut self, n: u32) -> Result<u64, DecodeError> {
        debug_assert!(n <= 64);
        if self.pos + n as usize > self.buf.len() * 8 {
            return Err(DecodeError("unexpected end of bits"));
        }
        if n == 0 {
            return Ok(0);
        }
        if n > 56 {
            // with up to 7 bits of the first byte skipped, one word holds 57 bits
            let high = self.bits(n - 32)?;
            return Ok((high << 32) | self.bits(32)?);
        }
        if let Some(word) = self.buf[self.pos / 8..].first_chunk::<8>() {
            let v = (u64::from_be_bytes(*word) << (self.pos % 8)) >> (64 - n);
            self.pos += n as usize;
            return Ok(v);
        }
        let mut v: u64 = 0;
        let mut left = n;
        while left > 0 {
            let byte = self.buf[self.pos / 8];
            let off = (self.pos % 8) as u32;
            let avail = 8 - off;
            let take = avail.min(left);
            let chunk = (u64::from(byte) >> (avail - take)) & ((1u64 << take) - 1);
            v = (v << take) | chunk;
            self.pos += take as usize;
            left -= take;
        }
        Ok(v)
    }
}

/// Frames a non-empty payload as `[len u32 LE][crc32 u32 LE][payload]`.
pub fn frame(out: &mut Vec<u8>, payload: &[u8]) {
    debug_assert!(!payload.is_empty());
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(&crc32fast::hash(payload).to_le_bytes());
    out.extend_from_slice(payload);
}

/// Outcome of reading one frame.
pub enum Frame<'a> {
    Ok(&'a [u8]),
    /// The data ends or the checksum fails: a torn or damaged frame at this position.
    Bad(&'static str),
    End,
}

pub fn read_frame<'a>(r: &mut Reader<'a>) -> Frame<'a> {
    if r.is_empty() {
        return Frame::End;
    }
    let (Ok(len), Ok(crc)) = (r.u32_le(), r.u32_le()) else {
        return Frame::Bad("truncated frame header");
    };
    if len == 0 {
        // Payloads are never empty, and zeroed space (crc32 of nothing is 0) must not pass.
        return Frame::Bad("empty frame");
    }
    let Ok(payload) = r.bytes(len as usize) else {
        return Frame::Bad("truncated frame payload");
    };
    if crc32fast::hash(payload) != crc {
        return Frame::Bad("frame checksum mismatch");
    }
    Frame::Ok(payload)
}

/// Outcome of reading one frame from a stream ([`read_frame_from`]).
pub enum StreamFrame {
    /// The payload is in the caller's buffer.
    Ok,
    Bad(&'static str),
    End,
}

/// [`read_frame`] from a stream, the payload into `buf`, so that a large file of frames needs
/// no buffer of its size.
pub fn read_frame_from(
    r: &mut impl std::io::Read,
    buf: &mut Vec<u8>,
) -> std::io::Result<StreamFrame> {
    use std::io::Read as _;
    let mut head = [0u8; 8];
    let mut got = 0;
    while got < head.len() {
        match r.read(&mut head[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    if got == 0 {
        return Ok(StreamFrame::End);
    }
    if got < head.len() {
        return Ok(StreamFrame::Bad("truncated frame header"));
    }
    let len = u32::from_le_bytes([head[0], head[1], head[2], head[3]]);
    let crc = u32::from_le_bytes([head[4], head[5], head[6], head[7]]);
    if len == 0 {
        return Ok(StreamFrame::Bad("empty frame"));
    }
    buf.clear();
    // Grows with what is there, so a damaged length cannot ask for a huge allocation.
    r.take(u64::from(len)).read_to_end(buf)?;
    if buf.len() < len as usize {
        return Ok(StreamFrame::Bad("truncated frame payload"));
    }
    if crc32fast::hash(buf) != crc {
        return Ok(StreamFrame::Bad("frame checksum mismatch"));
    }
    Ok(StreamFrame::Ok)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints_round_trip_at_the_edges() {
        for v in [0u64, 1, 127, 128, 16383, 16384, u64::MAX - 1, u64::MAX] {
            let mut out = Vec::new();
            put_uvarint(&mut out, v);
            assert_eq!(Reader::new(&out).uvarint(), Ok(v));
        }
        for v in [0i64, -1, 1, i64::MIN, i64::MAX] {
            let mut out = Vec::new();
            put_ivarint(&mut out, v);
            assert_eq!(Reader::new(&out).ivarint(), Ok(v));
        }
    }

    #[test]
    fn malformed_varints_are_errors() {
        assert!(Reader::new(&[0x80]).uvarint().is_err());
        assert!(Reader::new(&[0xff; 11]).uvarint().is_err());
        let overflow = [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02];
        assert!(Reader::new(&overflow).uvarint().is_err());
        assert!(Reader::new(&[5, b'a']).str().is_err());
    }

    #[test]
    fn bits_round_trip() {
        let mut w = BitWriter::new();
        w.bit(true);
        w.bits(0b101, 3);
        w.bits(u64::MAX, 64);
        w.bits(0, 0);
        w.bits(0x1234, 13);
        let bytes = w.finish();
        let mut r = BitReader::new(&bytes);
        assert_eq!(r.bit(), Ok(true));
        assert_eq!(r.bits(3), Ok(0b101));
        assert_eq!(r.bits(64), Ok(u64::MAX));
        assert_eq!(r.bits(13), Ok(0x1234));
        assert!(r.bits(8).is_err());
    }

    proptest::proptest! {
        /// Any widths, any values (bits above the width ignored): read back as written, in
        /// as many bytes as the bits need, after what the vector held.
        #[test]
        fn any_bits_round_trip(
            writes in proptest::collection::vec((proptest::prelude::any::<u64>(), 0u32..=64), 0..200),
            head in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..3),
        ) {
            let mut w = BitWriter::from_vec(head.clone());
            for &(v, n) in &writes {
                w.bits(v, n);
            }
            let bytes = w.finish();
            let total: u64 = writes.iter().map(|&(_, n)| u64::from(n)).sum();
            proptest::prop_assert_eq!(bytes.len() as u64, head.len() as u64 + total.div_ceil(8));
            proptest::prop_assert_eq!(&bytes[..head.len()], &head[..]);
            let mut r = BitReader::new(&bytes[head.len()..]);
            for &(v, n) in &writes {
                let want = if n == 64 { v } else { v & ((1u64 << n) - 1) };
                proptest::prop_assert_eq!(r.bits(n), Ok(want));
            }
            // the padding of the last byte is zeros
            let pad = (8 - total % 8) % 8;
            proptest::prop_assert_eq!(r.bits(pad as u32), Ok(0));
        }
    }

    #[test]
    fn frames_detect_damage() {
        let mut out = Vec::new();
        frame(&mut out, b"hello");
        assert!(matches!(
            read_frame(&mut Reader::new(&out)),
            Frame::Ok(b"hello")
        ));
        let mut bad = out.clone();
        bad[9] ^= 1;
        assert!(matches!(read_frame(&mut Reader::new(&bad)), Frame::Bad(_)));
        assert!(matches!(
            read_frame(&mut Reader::new(&out[..6])),
            Frame::Bad(_)
        ));
        assert!(matches!(read_frame(&mut Reader::new(&[])), Frame::End));
        assert!(matches!(
            read_frame(&mut Reader::new(&[0; 8])),
            Frame::Bad(_)
        ));
    }
}
