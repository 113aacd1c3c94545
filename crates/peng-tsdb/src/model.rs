//! The public data model (points, series keys, queries, results) and input validation.
//!
//! Validation lives here so that every entry point applies the same rules: a batch is checked
//! as a whole before any byte is written, and the first broken rule is reported with the point
//! it was found in.

use std::collections::BTreeMap;
use std::fmt;

use crate::error::TsdbError;

/// Longest measurement, tag key, tag value or field name accepted, in bytes.
pub const MAX_NAME_LEN: usize = 64 * 1024;
/// Longest string field value accepted, in bytes (InfluxDB 1.x uses the same limit).
pub const MAX_STRING_LEN: usize = 64 * 1024;

/// A name in a point (measurement, tag key or value, field name): a string kept inline up to
/// 24 bytes, so that the points of a parsed batch, with their dozens of short names each,
/// cost no allocation per name. Derefs to `str`; made with `.into()` from `&str` or `String`.
pub type Name = compact_str::CompactString;

/// One sample: a measurement, its tags, one or more field values and a timestamp.
#[derive(Debug, Clone, PartialEq)]
pub struct Point {
    pub measurement: Name,
    pub tags: BTreeMap<Name, Name>,
    pub fields: BTreeMap<Name, FieldValue>,
    pub timestamp_ns: i64,
}

/// A field value, with the types of InfluxDB 1.x line protocol.
#[derive(Debug, Clone, PartialEq)]
pub enum FieldValue {
    Float(f64),
    Integer(i64),
    Unsigned(u64),
    Boolean(bool),
    String(String),
}

impl FieldValue {
    /// The type of this value.
    pub fn field_type(&self) -> FieldType {
        match self {
            FieldValue::Float(_) => FieldType::Float,
            FieldValue::Integer(_) => FieldType::Integer,
            FieldValue::Unsigned(_) => FieldType::Unsigned,
            FieldValue::Boolean(_) => FieldType::Boolean,
            FieldValue::String(_) => FieldType::String,
        }
    }
}

/// The type of a field; fixed per series and field once the first value is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum FieldType {
    Float,
    Integer,
    Unsigned,
    Boolean,
    String,
}

impl FieldType {
    pub(crate) fn to_byte(self) -> u8 {
        match self {
            FieldType::Float => 1,
            FieldType::Integer => 2,
            FieldType::Unsigned => 3,
            FieldType::Boolean => 4,
            FieldType::String => 5,
        }
    }

    pub(crate) fn from_byte(b: u8) -> Option<FieldType> {
        Some(match b {
            1 => FieldType::Float,
            2 => FieldType::Integer,
            3 => FieldType::Unsigned,
            4 => FieldType::Boolean,
            5 => FieldType::String,
            _ => return None,
        })
    }
}

impl fmt::Display for FieldType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            FieldType::Float => "float",
            FieldType::Integer => "integer",
            FieldType::Unsigned => "unsigned",
            FieldType::Boolean => "boolean",
            FieldType::String => "string",
        })
    }
}

/// A series: a measurement and its full tag set.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SeriesKey {
    pub measurement: String,
    pub tags: BTreeMap<String, String>,
}

/// What to read: one measurement, series whose tags match all of `tag_filter` exactly, the
/// given fields (all when `None`), in `[start_ns, end_ns)`.
#[derive(Debug, Clone, Default)]
pub struct Query {
    pub measurement: String,
    pub tag_filter: BTreeMap<String, String>,
    pub fields: Option<Vec<String>>,
    pub start_ns: i64,
    pub end_ns: i64,
}

/// The values of one field of one series, in ascending time order without duplicates.
#[derive(Debug, Clone, PartialEq)]
pub struct SeriesData {
    pub key: SeriesKey,
    pub field: String,
    pub points: Vec<(i64, FieldValue)>,
}

/// Size figures of the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TsdbStats {
    /// Number of known series.
    pub series: u64,
    /// Stored field values (one per series, field and timestamp). A value overwritten after it
    /// was flushed counts once per copy until the older copy is dropped by retention.
    pub points: u64,
    /// Bytes of all engine files in the data directory.
    pub bytes_on_disk: u64,
    /// Batches written to the WAL since the store was opened.
    pub wal_batches: u64,
    /// WAL syncs since the store was opened: concurrent writers share them (group commit), so
    /// under concurrent load this is below `wal_batches`.
    pub wal_syncs: u64,
}

/// Checks one point against the input rules; the message names what is wrong.
pub(crate) fn validate_point(p: &Point) -> Result<(), TsdbError> {
    let at = || {
        format!(
            "(measurement '{}', timestamp {})",
            truncated(&p.measurement),
            p.timestamp_ns
        )
    };
    if p.measurement.is_empty() {
        return Err(TsdbError::Invalid(format!(
            "empty measurement name at timestamp {}",
            p.timestamp_ns
        )));
    }
    if p.measurement.len() > MAX_NAME_LEN {
        return Err(TsdbError::Invalid(format!(
            "measurement name longer than {MAX_NAME_LEN} bytes {}",
            at()
        )));
    }
    if p.fields.is_empty() {
        return Err(TsdbError::Invalid(format!("point has no fields {}", at())));
    }
    for (k, v) in &p.tags {
        if k.is_empty() {
            return Err(TsdbError::Invalid(format!("empty tag key {}", at())));
        }
        if v.is_empty() {
            return Err(TsdbError::Invalid(format!(
                "empty value for tag '{}' {}",
                truncated(k),
                at()
            )));
        }
        if k.len() > MAX_NAME_LEN || v.len() > MAX_NAME_LEN {
            return Err(TsdbError::Invalid(format!(
                "tag key or value longer than {MAX_NAME_LEN} bytes {}",
                at()
            )));
        }
    }
    for (name, value) in &p.fields {
        if name.is_empty() {
            return Err(TsdbError::Invalid(format!("empty field name {}", at())));
        }
        if name.len() > MAX_NAME_LEN {
            return Err(TsdbError::Invalid(format!(
                "field name longer than {MAX_NAME_LEN} bytes {}",
                at()
            )));
        }
        match value {
            FieldValue::Float(f) if !f.is_finite() => {
                return Err(TsdbError::Invalid(format!(
                    "field '{}' is {f}; only finite floats can be stored {}",
                    truncated(name),
                    at()
                )));
            }
            FieldValue::String(s) if s.len() > MAX_STRING_LEN => {
                return Err(TsdbError::Invalid(format!(
                    "string field '{}' longer than {MAX_STRING_LEN} bytes {}",
                    truncated(name),
                    at()
                )));
            }
            _ => {}
        }
    }
    Ok(())
}

/// Keeps error messages short when a name is huge.
fn truncated(s: &str) -> String {
    if s.len() <= 80 {
        return s.to_string();
    }
    let mut end = 80;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}
