//! InfluxDB line protocol: `measurement[,tag=v...] field=v[,field=v...] [timestamp]`.
//!
//! A body is parsed whole before anything is stored: the first bad line refuses the batch, and
//! the error names its number, its text and what is wrong. (InfluxDB stores the good lines of a
//! batch and answers "partial write"; peng stores a batch entirely or not at all, and a client
//! such as Telegraf drops a refused batch in both cases.)
//!
//! Escapes, as InfluxDB reads them: in a measurement `\,` and `\ `; in tag keys, tag values and
//! field keys `\,`, `\=` and `\ `; in string field values `\"` and `\\`. A backslash before any
//! other character is kept. Lines starting with `#` and blank lines are skipped.

use peng_tsdb::{FieldValue, Name, NameMap, Point};

/// The unit of the timestamps in a body (`precision=`) or of the times in an answer (`epoch=`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Precision {
    #[default]
    Nanoseconds,
    Microseconds,
    Milliseconds,
    Seconds,
    Minutes,
    Hours,
}

impl Precision {
    /// As `/write?precision=` and `/query?epoch=` name it (`n`/`ns`, `u`/`us`/`µ`, `ms`, `s`,
    /// `m`, `h`); `None` for anything else.
    pub fn parse(s: &str) -> Option<Precision> {
        Some(match s {
            "n" | "ns" => Precision::Nanoseconds,
            "u" | "us" | "µ" => Precision::Microseconds,
            "ms" => Precision::Milliseconds,
            "s" => Precision::Seconds,
            "m" => Precision::Minutes,
            "h" => Precision::Hours,
            _ => return None,
        })
    }

    /// Nanoseconds in one unit.
    pub fn nanos(self) -> i64 {
        match self {
            Precision::Nanoseconds => 1,
            Precision::Microseconds => 1_000,
            Precision::Milliseconds => 1_000_000,
            Precision::Seconds => 1_000_000_000,
            Precision::Minutes => 60_000_000_000,
            Precision::Hours => 3_600_000_000_000,
        }
    }
}

/// A line that cannot be read; nothing of its body was stored.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unable to parse '{text}' (line {line}): {reason}")]
pub struct LineError {
    /// 1-based.
    pub line: usize,
    /// The line, cut at 200 bytes.
    pub text: String,
    pub reason: String,
}

/// A body at least this long is parsed in two halves on two threads, where the machine has
/// two cores: a batch's parse is most of a write's work that needs no lock, so a write uses a
/// core the other writes leave idle while they wait for a sync or a lock.
const PARALLEL_BYTES: usize = 256 * 1024;

/// Parses a whole body. Points without a timestamp get `now_ns`. An error names the first
/// line that is wrong.
pub fn parse(body: &str, precision: Precision, now_ns: i64) -> Result<Vec<Point>, LineError> {
    let split = (body.len() >= PARALLEL_BYTES
        && std::thread::available_parallelism().is_ok_and(|n| n.get() > 1))
    .then(|| {
        body[body.len() / 2..]
            .find('\n')
            .map(|i| body.len() / 2 + i + 1)
    })
    .flatten();
    let Some(at) = split else {
        return parse_lines(body, 1, precision, now_ns);
    };
    let (head, tail) = body.split_at(at);
    let tail_first = 1 + head.bytes().filter(|b| *b == b'\n').count();
    let (head, tail) = std::thread::scope(|scope| {
        let tail = scope.spawn(|| parse_lines(tail, tail_first, precision, now_ns));
        let head = parse_lines(head, 1, precision, now_ns);
        // A panic in the other half is the same bug as one here: passed on as it is.
        (
            head,
            tail.join().unwrap_or_else(|e| std::panic::resume_unwind(e)),
        )
    });
    let mut points = head?;
    points.extend(tail?);
    Ok(points)
}

/// Parses lines, the first of which is line `first` of the body.
fn parse_lines(
    body: &str,
    first: usize,
    precision: Precision,
    now_ns: i64,
) -> Result<Vec<Point>, LineError> {
    let mut points: Vec<Point> = Vec::with_capacity(body.len() / 128);
    for (i, raw) in body.split('\n').enumerate() {
        let line = raw.trim_end_matches('\r').trim_start();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        // Lines in a row are mostly alike: the one before tells how many tags and fields to
        // make room for, so that a line's maps are allocated once and not grown (up to 64, so
        // that a short line after a long one holds little it does not use).
        let room = points
            .last()
            .map_or((0, 0), |p| (p.tags.len().min(64), p.fields.len().min(64)));
        let point = parse_line(line, precision, now_ns, room).map_err(|reason| LineError {
            line: first + i,
            text: cut(line, 200),
            reason,
        })?;
        points.push(point);
    }
    Ok(points)
}

fn cut(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

/// A cursor over one line.
struct Cursor<'a> {
    line: &'a str,
    s: &'a [u8],
    at: usize,
}

impl<'a> Cursor<'a> {
    fn new(line: &'a str) -> Cursor<'a> {
        Cursor {
            line,
            s: line.as_bytes(),
            at: 0,
        }
    }

    fn peek(&self) -> Option<u8> {
        self.s.get(self.at).copied()
    }

    /// The text from `from` to the cursor. Every byte the parser stops at is ASCII, so this is
    /// a whole number of characters of the line, which is UTF-8 already.
    fn since(&self, from: usize) -> Result<&'a str, String> {
        self.line
            .get(from..self.at)
            .ok_or_else(|| "invalid UTF-8".to_string())
    }

    /// Reads up to (not including) the first unescaped byte of `stops`; `escapable` are the
    /// bytes a backslash escapes (the backslash is dropped before them, kept before others).
    fn token(&mut self, stops: &[u8], escapable: &[u8]) -> Result<Name, String> {
        let start = self.at;
        // Most tokens have no backslash: they are copied from the line as they are.
        let plain = self.s[start..]
            .iter()
            .position(|b| *b == b'\\' || stops.contains(b));
        match plain {
            Some(n) if self.s[start + n] == b'\\' => {}
            _ => {
                self.at = plain.map_or(self.s.len(), |n| start + n);
                return self.since(start).map(Name::from);
            }
        }
        let mut out = Vec::new();
        while let Some(b) = self.peek() {
            if b == b'\\' {
                match self.s.get(self.at + 1) {
                    Some(&next) if escapable.contains(&next) => {
                        out.push(next);
                        self.at += 2;
                        continue;
                    }
                    _ => {
                        out.push(b);
                        self.at += 1;
                        continue;
                    }
                }
            }
            if stops.contains(&b) {
                break;
            }
            out.push(b);
            self.at += 1;
        }
        String::from_utf8(out)
            .map(Name::from)
            .map_err(|_| "invalid UTF-8".to_string())
    }

    fn skip_spaces(&mut self) -> usize {
        let start = self.at;
        while self.peek() == Some(b' ') {
            self.at += 1;
        }
        self.at - start
    }
}

fn parse_line(
    line: &str,
    precision: Precision,
    now_ns: i64,
    (tag_room, field_room): (usize, usize),
) -> Result<Point, String> {
    let mut c = Cursor::new(line);
    let measurement = c.token(b", ", b", ")?;
    if measurement.is_empty() {
        return Err("missing measurement".into());
    }
    // Names are gathered first and sorted once: inserting them one by one in a sorted map would
    // be quadratic on a line whose names come in reverse order.
    let mut tags = Vec::with_capacity(tag_room);
    while c.peek() == Some(b',') {
        c.at += 1;
        let key = c.token(b",= ", b",= ")?;
        if c.peek() != Some(b'=') {
            return Err(format!("missing tag value for tag key '{key}'"));
        }
        c.at += 1;
        let value = c.token(b", ", b",= ")?;
        if key.is_empty() {
            return Err("missing tag key".into());
        }
        if value.is_empty() {
            return Err(format!("missing tag value for tag key '{key}'"));
        }
        tags.push((key, value));
    }
    let (tags, duplicate) = NameMap::from_pairs(tags);
    if let Some(key) = duplicate {
        return Err(format!("duplicate tag '{key}'"));
    }
    if c.skip_spaces() == 0 || c.peek().is_none() {
        return Err("missing fields".into());
    }
    let mut fields = Vec::with_capacity(field_room);
    loop {
        let key = c.token(b"= ,", b",= ")?;
        if key.is_empty() {
            return Err("missing field key".into());
        }
        if c.peek() != Some(b'=') {
            return Err(format!("missing field value for field '{key}'"));
        }
        c.at += 1;
        let value = field_value(&mut c).map_err(|e| format!("{e} (field '{key}')"))?;
        fields.push((key, value));
        match c.peek() {
            Some(b',') => c.at += 1,
            Some(b' ') | None => break,
            Some(other) => {
                return Err(format!(
                    "unexpected '{}' after the value of a field",
                    char::from(other)
                ))
            }
        }
    }
    // Of a field given twice, the later value counts.
    let fields = NameMap::from_pairs(fields).0;
    c.skip_spaces();
    let timestamp_ns = if c.peek().is_none() {
        now_ns
    } else {
        let rest = &line[c.at..];
        let text = rest.trim_end();
        let t: i64 = text
            .parse()
            .map_err(|_| format!("bad timestamp '{}'", cut(text, 40)))?;
        t.checked_mul(precision.nanos())
            .ok_or_else(|| format!("timestamp {t} out of range"))?
    };
    Ok(Point {
        measurement,
        tags,
        fields,
        timestamp_ns,
    })
}

fn field_value(c: &mut Cursor<'_>) -> Result<FieldValue, String> {
    if c.peek() == Some(b'"') {
        c.at += 1;
        let mut out = Vec::new();
        loop {
            match c.peek() {
                None => return Err("unterminated string".into()),
                Some(b'"') => {
                    c.at += 1;
                    break;
                }
                Some(b'\\') if matches!(c.s.get(c.at + 1), Some(b'"') | Some(b'\\')) => {
                    out.push(c.s[c.at + 1]);
                    c.at += 2;
                }
                Some(b) => {
                    out.push(b);
                    c.at += 1;
                }
            }
        }
        return String::from_utf8(out)
            .map(FieldValue::String)
            .map_err(|_| "invalid UTF-8 in a string".to_string());
    }
    let start = c.at;
    while let Some(b) = c.peek() {
        if b == b',' || b == b' ' {
            break;
        }
        c.at += 1;
    }
    let raw = c.since(start)?;
    if raw.is_empty() {
        return Err("missing field value".into());
    }
    match raw {
        "t" | "T" | "true" | "True" | "TRUE" => return Ok(FieldValue::Boolean(true)),
        "f" | "F" | "false" | "False" | "FALSE" => return Ok(FieldValue::Boolean(false)),
        _ => {}
    }
    if let Some(int) = raw.strip_suffix('i') {
        return int
            .parse()
            .map(FieldValue::Integer)
            .map_err(|_| format!("invalid integer '{}'", cut(raw, 40)));
    }
    if let Some(uint) = raw.strip_suffix('u') {
        return uint
            .parse()
            .map(FieldValue::Unsigned)
            .map_err(|_| format!("invalid unsigned integer '{}'", cut(raw, 40)));
    }
    // Rust also reads "inf", "nan" and "infinity"; InfluxDB stores none of them.
    let numeric = raw
        .bytes()
        .all(|b| b.is_ascii_digit() || matches!(b, b'.' | b'-' | b'+' | b'e' | b'E'));
    match raw.parse::<f64>() {
        Ok(f) if numeric && f.is_finite() => Ok(FieldValue::Float(f)),
        _ => Err(format!("invalid number '{}'", cut(raw, 40))),
    }
}

/// Writes points back as line protocol (nanosecond timestamps): what tests and the
/// benchmark send, and the inverse the parser is checked against.
pub fn format(points: &[Point]) -> String {
    let mut out = String::new();
    for p in points {
        escape_into(&mut out, &p.measurement, &[',', ' ']);
        for (k, v) in &p.tags {
            out.push(',');
            escape_into(&mut out, k, &[',', '=', ' ']);
            out.push('=');
            escape_into(&mut out, v, &[',', '=', ' ']);
        }
        out.push(' ');
        for (i, (k, v)) in p.fields.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            escape_into(&mut out, k, &[',', '=', ' ']);
            out.push('=');
            match v {
                FieldValue::Float(f) => out.push_str(&format!("{f:?}")),
                FieldValue::Integer(n) => out.push_str(&format!("{n}i")),
                FieldValue::Unsigned(n) => out.push_str(&format!("{n}u")),
                FieldValue::Boolean(b) => out.push_str(if *b { "true" } else { "false" }),
                FieldValue::String(s) => {
                    out.push('"');
                    escape_into(&mut out, s, &['"', '\\']);
                    out.push('"');
                }
            }
        }
        out.push_str(&format!(" {}\n", p.timestamp_ns));
    }
    out
}

fn escape_into(out: &mut String, s: &str, special: &[char]) {
    for ch in s.chars() {
        if special.contains(&ch) {
            out.push('\\');
        }
        out.push(ch);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn one(line: &str) -> Point {
        let mut v = parse(line, Precision::Nanoseconds, 7).unwrap();
        assert_eq!(v.len(), 1);
        v.remove(0)
    }

    #[test]
    fn telegraf_lines() {
        let p =
            one("cpu,cpu=cpu-total,host=web-1 usage_user=1.5,usage_idle=97 1690000000000000000");
        assert_eq!(p.measurement, "cpu");
        assert_eq!(p.tags["host"], "web-1");
        assert_eq!(p.tags["cpu"], "cpu-total");
        assert_eq!(p.fields["usage_user"], FieldValue::Float(1.5));
        assert_eq!(p.fields["usage_idle"], FieldValue::Float(97.0));
        assert_eq!(p.timestamp_ns, 1_690_000_000_000_000_000);
        let p =
            one("net,interface=eth0 bytes_recv=123i,up=true,drops=4u,name=\"eth \\\"zero\\\"\"");
        assert_eq!(p.fields["bytes_recv"], FieldValue::Integer(123));
        assert_eq!(p.fields["drops"], FieldValue::Unsigned(4));
        assert_eq!(p.fields["up"], FieldValue::Boolean(true));
        assert_eq!(p.fields["name"], FieldValue::String("eth \"zero\"".into()));
        assert_eq!(p.timestamp_ns, 7, "no timestamp: the server's now");
    }

    #[test]
    fn escapes() {
        let p = one(r#"disk\ io\,x,path=/var\ lib,k\=ey=a\,b value=1 1"#);
        assert_eq!(p.measurement, "disk io,x");
        assert_eq!(p.tags["path"], "/var lib");
        assert_eq!(p.tags["k=ey"], "a,b");
        let p = one(r#"m f="C:\dir\\",g=1 1"#);
        assert_eq!(p.fields["f"], FieldValue::String(r"C:\dir\".into()));
    }

    #[test]
    fn precision_scales_and_comments_are_skipped() {
        let v = parse(
            "# a comment\n\ncpu v=1 1690000000\r\n",
            Precision::Seconds,
            0,
        )
        .unwrap();
        assert_eq!(v[0].timestamp_ns, 1_690_000_000_000_000_000);
        let e = parse("cpu v=1 9223372036854775807", Precision::Seconds, 0).unwrap_err();
        assert!(e.reason.contains("out of range"), "{e}");
    }

    #[test]
    fn errors_name_the_line_and_what_is_wrong() {
        let cases = [
            ("cpu", "missing fields"),
            ("cpu value=", "missing field value"),
            ("cpu value=abc", "invalid number 'abc'"),
            ("cpu value=nan", "invalid number"),
            ("cpu value=1i2", "invalid number '1i2'"),
            ("cpu value=1.5i", "invalid integer"),
            ("cpu,host value=1", "missing tag value"),
            ("cpu,host=a,host=b value=1", "duplicate tag 'host'"),
            ("cpu value=\"open", "unterminated string"),
            ("cpu value=1 12abc", "bad timestamp '12abc'"),
            (",host=a value=1", "missing measurement"),
            ("cpu =1", "missing field key"),
        ];
        for (line, want) in cases {
            let body = format!("ok v=1 1\n{line}\n");
            let e = parse(&body, Precision::Nanoseconds, 0).unwrap_err();
            assert_eq!(e.line, 2, "{line}");
            assert!(e.reason.contains(want), "{line}: {e}");
            assert!(e.to_string().contains(line.trim()), "{e}");
        }
    }

    /// A body long enough to be parsed in two halves gives the points in order and names the
    /// first wrong line by its number in the whole body.
    #[test]
    fn a_large_body_parses_as_one() {
        let lines: Vec<String> = (0..20_000)
            .map(|i| {
                format!(
                    "cpu,host=h{} usage_user={}.5,n={i}i {}",
                    i % 7,
                    i,
                    1_000 + i
                )
            })
            .collect();
        let body = lines.join("\n");
        assert!(body.len() >= PARALLEL_BYTES);
        let points = parse(&body, Precision::Seconds, 0).unwrap();
        assert_eq!(
            points,
            parse_lines(&body, 1, Precision::Seconds, 0).unwrap()
        );
        assert_eq!(points.len(), 20_000);
        assert_eq!(points[19_999].timestamp_ns, 20_999_000_000_000);
        for bad in [[15_000].as_slice(), &[3, 15_000], &[9_999, 10_000]] {
            let mut broken = lines.clone();
            for i in bad {
                broken[*i] = format!("cpu value=x{i}");
            }
            let e = parse(&broken.join("\n"), Precision::Seconds, 0).unwrap_err();
            assert_eq!(e.line, bad[0] + 1, "{bad:?}: {e}");
            assert!(e.text.contains(&format!("x{}", bad[0])), "{e}");
        }
    }

    fn name() -> impl Strategy<Value = String> {
        "[a-zA-Z0-9_ ,=\\\\\"é-]{1,12}".prop_filter("not only spaces", |s| {
            !s.trim().is_empty() && !s.starts_with(' ') && !s.starts_with('#') && !s.ends_with('\\')
        })
    }

    fn value() -> impl Strategy<Value = FieldValue> {
        prop_oneof![
            (-1e12f64..1e12).prop_map(FieldValue::Float),
            any::<i64>().prop_map(FieldValue::Integer),
            any::<u64>().prop_map(FieldValue::Unsigned),
            any::<bool>().prop_map(FieldValue::Boolean),
            "[ -~é]{0,20}".prop_map(FieldValue::String),
        ]
    }

    proptest! {
        #[test]
        fn never_panics(body in proptest::collection::vec(any::<u8>(), 0..200)) {
            let text = String::from_utf8_lossy(&body);
            let _ = parse(&text, Precision::Nanoseconds, 0);
        }

        #[test]
        fn never_panics_on_near_misses(body in "[a-z,= \"\\\\0-9.ieu#\n-]{0,80}") {
            let _ = parse(&body, Precision::Milliseconds, 0);
        }

        #[test]
        fn reads_back_what_it_formats(
            measurement in name(),
            tags in proptest::collection::btree_map(name(), name(), 0..4),
            fields in proptest::collection::btree_map(name(), value(), 1..4),
            timestamp_ns in any::<i64>(),
        ) {
            let p = Point {
                measurement: measurement.into(),
                tags: tags.into_iter().map(|(k, v)| (k.into(), v.into())).collect(),
                fields: fields.into_iter().map(|(k, v)| (k.into(), v)).collect(),
                timestamp_ns,
            };
            let text = format(std::slice::from_ref(&p));
            let back = parse(&text, Precision::Nanoseconds, 0)
                .map_err(|e| TestCaseError::fail(format!("{e}: {text}")))?;
            prop_assert_eq!(back, vec![p]);
        }
    }
}
