//! A `/write` body: plain or gzip (`Content-Encoding: gzip`), at most [`MAX_BODY`] bytes once
//! decompressed, UTF-8. The cap is met while decompressing, so a small gzip bomb never
//! allocates more than it.

use std::io::Read;

/// Largest body, before and after decompression.
pub const MAX_BODY: usize = 8 << 20;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BodyError {
    #[error("request body too large: more than {MAX_BODY} bytes")]
    TooLarge,
    #[error("unsupported Content-Encoding '{0}': send gzip or nothing")]
    Encoding(String),
    #[error("body is not valid gzip: {0}")]
    Gzip(String),
    #[error("body is not UTF-8 at byte {0}")]
    Utf8(usize),
}

/// The body as text; `encoding` is the `Content-Encoding` header.
pub fn decode(bytes: &[u8], encoding: Option<&str>) -> Result<String, BodyError> {
    let raw = match encoding.map(str::trim) {
        None | Some("") | Some("identity") => {
            if bytes.len() > MAX_BODY {
                return Err(BodyError::TooLarge);
            }
            bytes.to_vec()
        }
        Some(e) if e.eq_ignore_ascii_case("gzip") => {
            // The gzip trailer's last 4 bytes are the length once decompressed (mod 2^32): the
            // output is allocated once, not grown by doubling. Only a hint, believed up to
            // deflate's largest ratio (1032:1) and the cap.
            let hint = bytes
                .last_chunk::<4>()
                .map_or(0, |n| u32::from_le_bytes(*n) as usize);
            let hint = hint.min(bytes.len().saturating_mul(1032)).min(MAX_BODY + 1);
            let mut out = Vec::with_capacity(hint);
            flate2::read::GzDecoder::new(bytes)
                .take(MAX_BODY as u64 + 1)
                .read_to_end(&mut out)
                .map_err(|e| BodyError::Gzip(e.to_string()))?;
            if out.len() > MAX_BODY {
                return Err(BodyError::TooLarge);
            }
            out
        }
        Some(other) => return Err(BodyError::Encoding(other.chars().take(40).collect())),
    };
    String::from_utf8(raw).map_err(|e| BodyError::Utf8(e.utf8_error().valid_up_to()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    #[test]
    fn plain_gzip_and_bombs() {
        assert_eq!(decode(b"cpu v=1", None).unwrap(), "cpu v=1");
        assert_eq!(decode(&gzip(b"cpu v=1"), Some("gzip")).unwrap(), "cpu v=1");
        let bomb = gzip(&vec![b'a'; MAX_BODY + 1]);
        assert!(bomb.len() < 64 * 1024);
        assert_eq!(decode(&bomb, Some("gzip")), Err(BodyError::TooLarge));
        assert!(matches!(
            decode(b"nope", Some("gzip")),
            Err(BodyError::Gzip(_))
        ));
        assert!(matches!(
            decode(b"x", Some("br")),
            Err(BodyError::Encoding(_))
        ));
        assert_eq!(decode(b"ok\xff", None), Err(BodyError::Utf8(2)));
    }
}
