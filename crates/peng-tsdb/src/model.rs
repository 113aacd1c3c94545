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
    pub tags: NameMap<Name>,
    pub fields: NameMap<FieldValue>,
    pub timestamp_ns: i64,
}

/// A point's tags or fields: sorted by name, one value per name, as a `BTreeMap` would hold
/// them, in one vector. A point has a few names, usually sent in order (Telegraf sorts them),
/// so an insert is mostly a push; a tree would cost allocations and pointer chasing per name
/// on every point of every batch.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NameMap<V> {
    entries: Vec<(Name, V)>,
}

impl<V> Default for NameMap<V> {
    fn default() -> NameMap<V> {
        NameMap {
            entries: Vec::new(),
        }
    }
}

impl<V> NameMap<V> {
    pub fn new() -> NameMap<V> {
        NameMap::default()
    }

    pub fn with_capacity(n: usize) -> NameMap<V> {
        NameMap {
            entries: Vec::with_capacity(n),
        }
    }

    /// The map of `pairs` in any order, the later of two equal names winning, and the first
    /// name (in name order) given more than once. Sorting makes it O(n log n) however the
    /// names come; [`NameMap::insert`] one by one is quadratic on names in reverse order, and a
    /// line of line protocol may carry hundreds of thousands.
    pub fn from_pairs(mut pairs: Vec<(Name, V)>) -> (NameMap<V>, Option<Name>) {
        if pairs.is_sorted_by(|a, b| a.0 < b.0) {
            return (NameMap { entries: pairs }, None);
        }
        // Stable: of equal names, the later one stays later.
        pairs.sort_by(|a, b| a.0.cmp(&b.0));
        let mut duplicate = None;
        // `later` is the one looked at, `kept` the one before it that stays.
        pairs.dedup_by(|later, kept| {
            if later.0 != kept.0 {
                return false;
            }
            duplicate.get_or_insert_with(|| kept.0.clone());
            std::mem::swap(later, kept);
            true
        });
        (NameMap { entries: pairs }, duplicate)
    }

    fn find(&self, name: &str) -> Result<usize, usize> {
        match self.entries.last() {
            Some((last, _)) if last.as_str() < name => Err(self.entries.len()),
            _ => self.entries.binary_search_by(|(k, _)| k.as_str().cmp(name)),
        }
    }

    /// Sets `name` to `value`; the value it had before, if any.
    pub fn insert(&mut self, name: Name, value: V) -> Option<V> {
        match self.find(&name) {
            Ok(i) => Some(std::mem::replace(&mut self.entries[i].1, value)),
            Err(i) => {
                self.entries.insert(i, (name, value));
                None
            }
        }
    }

    pub fn get(&self, name: &str) -> Option<&V> {
        self.find(name).ok().map(|i| &self.entries[i].1)
    }

    pub fn contains_key(&self, name: &str) -> bool {
        self.find(name).is_ok()
    }

    pub fn remove(&mut self, name: &str) -> Option<V> {
        self.find(name).ok().map(|i| self.entries.remove(i).1)
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Names and values, by name.
    pub fn iter(&self) -> impl DoubleEndedIterator<Item = (&Name, &V)> + ExactSizeIterator + Clone {
        self.entries.iter().map(|(k, v)| (k, v))
    }

    pub fn keys(&self) -> impl DoubleEndedIterator<Item = &Name> + ExactSizeIterator + Clone {
        self.entries.iter().map(|(k, _)| k)
    }

    pub fn values(&self) -> impl DoubleEndedIterator<Item = &V> + ExactSizeIterator + Clone {
        self.entries.iter().map(|(_, v)| v)
    }
}

impl<V> std::ops::Index<&str> for NameMap<V> {
    type Output = V;

    fn index(&self, name: &str) -> &V {
        match self.get(name) {
            Some(v) => v,
            None => panic!("no entry named {name:?}"),
        }
    }
}

impl<V> FromIterator<(Name, V)> for NameMap<V> {
    fn from_iter<I: IntoIterator<Item = (Name, V)>>(iter: I) -> NameMap<V> {
        NameMap::from_pairs(iter.into_iter().collect()).0
    }
}

impl<V> Extend<(Name, V)> for NameMap<V> {
    fn extend<I: IntoIterator<Item = (Name, V)>>(&mut self, iter: I) {
        let mut pairs = std::mem::take(&mut self.entries);
        pairs.extend(iter);
        *self = NameMap::from_pairs(pairs).0;
    }
}

impl<V, const N: usize> From<[(Name, V); N]> for NameMap<V> {
    fn from(entries: [(Name, V); N]) -> NameMap<V> {
        entries.into_iter().collect()
    }
}

impl<V> IntoIterator for NameMap<V> {
    type Item = (Name, V);
    type IntoIter = std::vec::IntoIter<(Name, V)>;

    fn into_iter(self) -> Self::IntoIter {
        self.entries.into_iter()
    }
}

impl<'a, V> IntoIterator for &'a NameMap<V> {
    type Item = (&'a Name, &'a V);
    type IntoIter =
        std::iter::Map<std::slice::Iter<'a, (Name, V)>, fn(&'a (Name, V)) -> (&'a Name, &'a V)>;

    fn into_iter(self) -> Self::IntoIter {
        self.entries.iter().map(|(k, v)| (k, v))
    }
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

/// The block files' share of one field of one measurement (see [`crate::Tsdb::disk_usage`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldUsage {
    pub measurement: String,
    pub field: String,
    pub ty: FieldType,
    /// Values in its blocks, every copy (an overwritten value until a merge drops the older
    /// one, an expired one until its block file goes).
    pub values: u64,
    /// Compressed bytes of those blocks: timestamps, values and a block's few header bytes.
    pub bytes: u64,
    pub blocks: u64,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_name_map_keeps_names_sorted_and_once() {
        let mut m: NameMap<i32> = NameMap::new();
        for (k, v) in [("b", 1), ("d", 2), ("a", 3), ("c", 4), ("b", 5)] {
            m.insert(k.into(), v);
        }
        assert_eq!(m.len(), 4);
        let keys: Vec<&str> = m.keys().map(|k| k.as_str()).collect();
        assert_eq!(keys, ["a", "b", "c", "d"]);
        assert_eq!(m["b"], 5, "the newer value replaces the older");
        assert_eq!(m.insert("d".into(), 6), Some(2));
        assert_eq!(m.get("e"), None);
        assert!(m.contains_key("a") && !m.contains_key(""));
        assert_eq!(m.remove("a"), Some(3));
        assert_eq!(m.remove("a"), None);
        let pairs: Vec<(String, i32)> = m.into_iter().map(|(k, v)| (k.into(), v)).collect();
        assert_eq!(
            pairs,
            [("b".into(), 5), ("c".into(), 4), ("d".into(), 6)].to_vec()
        );
        let built = NameMap::from([("z".into(), 1), ("y".into(), 2), ("z".into(), 3)]);
        assert_eq!(built.iter().next(), Some((&Name::from("y"), &2)));
        assert_eq!(built["z"], 3);
        let same: NameMap<i32> = [("y".into(), 2), ("z".into(), 3)].into_iter().collect();
        assert_eq!(built, same);
    }

    #[test]
    fn pairs_in_any_order_make_the_same_map_and_name_a_duplicate() {
        let pairs = |names: &[(&str, i32)]| -> Vec<(Name, i32)> {
            names.iter().map(|(k, v)| ((*k).into(), *v)).collect()
        };
        let (m, dup) = NameMap::from_pairs(pairs(&[("c", 1), ("a", 2), ("b", 3), ("a", 4)]));
        assert_eq!(dup.as_deref(), Some("a"));
        let got: Vec<(&str, i32)> = m.iter().map(|(k, v)| (k.as_str(), *v)).collect();
        assert_eq!(got, [("a", 4), ("b", 3), ("c", 1)], "the later 'a' wins");
        let (m, dup) = NameMap::from_pairs(pairs(&[("a", 1), ("b", 2)]));
        assert_eq!((m.len(), dup), (2, None));
        // Many names in reverse order (one by one into a sorted vector: minutes of moving).
        let n = 200_000;
        let many: Vec<(Name, i32)> = (0..n)
            .rev()
            .map(|i| (format!("f{i:07}").into(), i))
            .collect();
        let (m, dup) = NameMap::from_pairs(many);
        assert_eq!((m.len(), dup), (n as usize, None));
        assert!(m.keys().is_sorted());
        // Extending keeps the later value of a name, as inserting does.
        let mut m = NameMap::from([("a".into(), 1), ("c".into(), 2)]);
        m.extend([("b".into(), 3), ("a".into(), 4)]);
        let got: Vec<(&str, i32)> = m.iter().map(|(k, v)| (k.as_str(), *v)).collect();
        assert_eq!(got, [("a", 4), ("b", 3), ("c", 2)]);
    }
}
