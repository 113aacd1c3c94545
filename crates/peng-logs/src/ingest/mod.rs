//! From bytes on a listener to records of a team: GELF over UDP, TCP and HTTP.
//!
//! **Team attribution.** Every GELF message must carry its team's ingest token: in the
//! additional field `_ingest_token` (any transport) or, over HTTP, in the
//! `X-Peng-Ingest-Token` header or the `token` query parameter (the server passes either as
//! `header_token`). [`IngestAuth`] maps tokens to teams; the server keeps it current. A
//! message without a token is refused with `reason="no_token"`, one whose token is unknown (or
//! whose field and header name different teams) with `reason="bad_token"`; refused messages
//! are counted and kept in the bounded dead-letter list ([`Rejections`]), never stored in any
//! team's stream. The token is never stored. `_service`, `_stage` and `_instance`, when
//! present, fill the record's columns instead of staying additional fields.
//!
//! This module must never block: the listeners hand records to the pipeline with
//! `try_submit` (UDP, drop and count) or `submit` (TCP, backpressure through the socket).

mod auth;
mod rejections;
mod tcp;
mod udp;

pub use auth::IngestAuth;
pub use rejections::{Rejection, Rejections, MAX_REJECTIONS, REJECTION_SNIPPET};
pub use tcp::{serve_tcp, TcpOptions};
pub use udp::{serve_udp, UdpOptions};

use std::net::SocketAddr;

use peng_core::metrics::component;

use crate::gelf::{self, GelfError, GelfLimits, GelfMessage};
use crate::pipeline::PipelineHandle;
use crate::record::{FieldValue, LogRecord, LogSource};

/// The additional field that carries the ingest token.
pub const TOKEN_FIELD: &str = "ingest_token";
/// Longest `_service`, `_stage` or `_instance` value kept; longer ones are cut.
pub const MAX_COLUMN_LEN: usize = 128;

/// What every listener needs. Cheap to clone.
#[derive(Clone, Debug)]
pub struct IngestContext {
    pub auth: IngestAuth,
    pub rejections: Rejections,
    pub pipeline: PipelineHandle,
    pub limits: GelfLimits,
    pub udp: UdpOptions,
    pub tcp: TcpOptions,
}

impl IngestContext {
    pub fn new(auth: IngestAuth, pipeline: PipelineHandle) -> Self {
        Self {
            auth,
            rejections: Rejections::default(),
            pipeline,
            limits: GelfLimits::default(),
            udp: UdpOptions::default(),
            tcp: TcpOptions::default(),
        }
    }

    /// Counts a refused payload and keeps it in the dead-letter list.
    pub fn reject(
        &self,
        source: LogSource,
        peer: Option<SocketAddr>,
        error: &GelfError,
        payload: &[u8],
    ) {
        component::discarded(source.component(), error.reason()).inc();
        self.rejections.push(source, peer, error, payload);
    }

    /// The server's `POST /gelf`: decodes, attributes, counts and records rejections. The
    /// caller then awaits [`PipelineHandle::submit_durable`] before answering 202.
    pub fn decode_http(
        &self,
        body: &[u8],
        content_encoding: Option<&str>,
        header_token: Option<&str>,
        peer: Option<SocketAddr>,
    ) -> Result<Vec<LogRecord>, GelfError> {
        component::received(LogSource::GelfHttp.component()).inc();
        component::received_bytes(LogSource::GelfHttp.component()).add(body.len() as u64);
        decode_http(
            body,
            content_encoding,
            header_token,
            &self.auth,
            &self.limits,
            peng_core::now_ns(),
        )
        .inspect_err(|e| self.reject(LogSource::GelfHttp, peer, e, body))
    }
}

/// A GELF HTTP body to records: `Content-Encoding` gzip or deflate (or compression detected
/// by magic bytes), one JSON object or newline-separated objects. All or nothing: one bad line
/// refuses the body, naming the line.
pub fn decode_http(
    body: &[u8],
    content_encoding: Option<&str>,
    header_token: Option<&str>,
    auth: &IngestAuth,
    limits: &GelfLimits,
    received_ns: i64,
) -> Result<Vec<LogRecord>, GelfError> {
    let max = limits.max_decompressed;
    let raw = match content_encoding
        .map(|e| e.trim().to_ascii_lowercase())
        .as_deref()
    {
        None | Some("") | Some("identity") => gelf::decode::decompress(body, max)?,
        Some("gzip") | Some("x-gzip") => {
            gelf::decode::read_capped(flate2::read::MultiGzDecoder::new(body), max, "gzip")?.into()
        }
        Some("deflate") => {
            if gelf::decode::is_zlib(body) {
                gelf::decode::read_capped(flate2::read::ZlibDecoder::new(body), max, "zlib")?.into()
            } else {
                gelf::decode::read_capped(flate2::read::DeflateDecoder::new(body), max, "deflate")?
                    .into()
            }
        }
        // graypy sends `gzip,deflate` with a zlib body: a list means "one of these", so the
        // body's magic bytes decide, as Graylog does.
        Some(list)
            if list
                .split(',')
                .all(|e| matches!(e.trim(), "gzip" | "x-gzip" | "deflate" | "identity")) =>
        {
            gelf::decode::decompress(body, max)?
        }
        Some(other) => return Err(GelfError::BadEncoding(other.to_string())),
    };
    let lines: Vec<&[u8]> = raw
        .split(|b| *b == b'\n')
        .filter(|l| !l.iter().all(u8::is_ascii_whitespace))
        .collect();
    if lines.is_empty() {
        return Err(GelfError::Empty);
    }
    let single = lines.len() == 1;
    let mut out = Vec::with_capacity(lines.len());
    for (i, line) in lines.into_iter().enumerate() {
        let wrap = |e: GelfError| {
            if single {
                e
            } else {
                GelfError::InBulk {
                    line: i + 1,
                    error: Box::new(e),
                }
            }
        };
        let msg = gelf::decode_json(line, limits).map_err(wrap)?;
        out.push(
            attribute(msg, LogSource::GelfHttp, header_token, auth, received_ns).map_err(wrap)?,
        );
    }
    Ok(out)
}

/// Ties a decoded message to its team by token and makes it a record.
pub fn attribute(
    mut msg: GelfMessage,
    source: LogSource,
    header_token: Option<&str>,
    auth: &IngestAuth,
    received_ns: i64,
) -> Result<LogRecord, GelfError> {
    let field_token = match msg.fields.remove(TOKEN_FIELD) {
        Some(FieldValue::Str(s)) => Some(s),
        Some(_) => return Err(GelfError::BadToken),
        None => None,
    };
    let team = match (field_token.as_deref(), header_token) {
        (None, None) => return Err(GelfError::NoToken),
        (Some(t), None) | (None, Some(t)) => auth.resolve(t).ok_or(GelfError::BadToken)?,
        (Some(a), Some(b)) => {
            let ta = auth.resolve(a).ok_or(GelfError::BadToken)?;
            match auth.resolve(b) {
                Some(tb) if tb == ta => ta,
                _ => return Err(GelfError::BadToken),
            }
        }
    };
    let mut column = |name: &str| match msg.fields.remove(name) {
        Some(v) => {
            let mut s = v.to_string();
            if s.len() > MAX_COLUMN_LEN {
                let mut end = MAX_COLUMN_LEN;
                while !s.is_char_boundary(end) {
                    end -= 1;
                }
                s.truncate(end);
            }
            s
        }
        None => String::new(),
    };
    let service = column("service");
    let stage = column("stage");
    let instance = column("instance");
    Ok(LogRecord {
        timestamp_ns: msg.timestamp_ns.unwrap_or(received_ns),
        received_ns,
        team,
        service,
        stage,
        instance,
        source,
        host: msg.host,
        level: msg.level,
        message: msg.short_message,
        full_message: msg.full_message,
        fields: msg.fields,
    })
}

/// Decodes and attributes one complete (reassembled) payload from UDP or TCP, counting and
/// recording a rejection.
pub(crate) fn ingest_payload(
    ctx: &IngestContext,
    source: LogSource,
    peer: Option<SocketAddr>,
    payload: &[u8],
    compressed_allowed: bool,
) -> Option<LogRecord> {
    let decoded = if compressed_allowed {
        gelf::decode(payload, &ctx.limits)
    } else {
        gelf::decode_json(payload, &ctx.limits)
    };
    let result = decoded.and_then(|m| attribute(m, source, None, &ctx.auth, peng_core::now_ns()));
    match result {
        Ok(r) => Some(r),
        Err(e) => {
            ctx.reject(source, peer, &e, payload);
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use peng_core::TeamName;

    fn auth() -> IngestAuth {
        let a = IngestAuth::default();
        a.set("tok-checkout", TeamName::parse("checkout").unwrap());
        a.set("tok-search", TeamName::parse("search").unwrap());
        a
    }

    fn http(body: &str, header: Option<&str>) -> Result<Vec<LogRecord>, GelfError> {
        decode_http(
            body.as_bytes(),
            None,
            header,
            &auth(),
            &GelfLimits::default(),
            7,
        )
    }

    #[test]
    fn tokens_tie_messages_to_teams() {
        let r = http(
            r#"{"short_message":"a","_ingest_token":"tok-checkout","_service":"orders","_stage":"production","_instance":2,"_x":1}"#,
            None,
        )
        .unwrap();
        assert_eq!(r[0].team.as_str(), "checkout");
        assert_eq!(r[0].service, "orders");
        assert_eq!(r[0].stage, "production");
        assert_eq!(r[0].instance, "2");
        assert_eq!(r[0].timestamp_ns, 7);
        assert_eq!(r[0].fields.len(), 1, "token and columns are not fields");
        let r = http(r#"{"short_message":"a"}"#, Some("tok-search")).unwrap();
        assert_eq!(r[0].team.as_str(), "search");
        assert_eq!(
            http(r#"{"short_message":"a"}"#, None).unwrap_err(),
            GelfError::NoToken
        );
        assert_eq!(
            http(r#"{"short_message":"a"}"#, Some("nope")).unwrap_err(),
            GelfError::BadToken
        );
        assert_eq!(
            http(
                r#"{"short_message":"a","_ingest_token":"tok-checkout"}"#,
                Some("tok-search")
            )
            .unwrap_err(),
            GelfError::BadToken
        );
        assert_eq!(
            http(r#"{"short_message":"a","_ingest_token":5}"#, None).unwrap_err(),
            GelfError::BadToken
        );
        let a = auth();
        a.remove_team(&TeamName::parse("checkout").unwrap());
        assert_eq!(a.resolve("tok-checkout"), None);
    }

    #[test]
    fn bulk_bodies_are_all_or_nothing() {
        let ok = http(
            "{\"short_message\":\"a\"}\n\n{\"short_message\":\"b\"}\n",
            Some("tok-search"),
        )
        .unwrap();
        assert_eq!(ok.len(), 2);
        let err = http(
            "{\"short_message\":\"a\"}\n{\"host\":\"h\"}\n",
            Some("tok-search"),
        )
        .unwrap_err();
        assert_eq!(err.reason(), "no_short_message");
        assert!(err.to_string().starts_with("line 2:"), "{err}");
        assert_eq!(
            http("  \n", Some("tok-search")).unwrap_err(),
            GelfError::Empty
        );
    }

    #[test]
    fn content_encodings() {
        use std::io::Write;
        let body = br#"{"short_message":"zipped"}"#;
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(body).unwrap();
        let gz = gz.finish().unwrap();
        let mut raw = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::fast());
        raw.write_all(body).unwrap();
        let raw = raw.finish().unwrap();
        let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::fast());
        z.write_all(body).unwrap();
        let z = z.finish().unwrap();
        let l = GelfLimits::default();
        for (enc, data) in [
            (Some("gzip"), &gz),
            (None, &gz),
            (Some("deflate"), &raw),
            (Some("deflate"), &z),
        ] {
            let r = decode_http(data, enc, Some("tok-search"), &auth(), &l, 1).unwrap();
            assert_eq!(r[0].message, "zipped");
        }
        assert_eq!(
            decode_http(body, Some("br"), Some("tok-search"), &auth(), &l, 1)
                .unwrap_err()
                .reason(),
            "bad_encoding"
        );
    }
}
