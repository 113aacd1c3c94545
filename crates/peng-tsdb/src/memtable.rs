//! The in-memory table of values that are in the WAL but not yet in a block file.
//!
//! Per series and field, values are kept sorted by timestamp with one value per timestamp:
//! inserting at a timestamp already present replaces the value (newer write wins).

use std::collections::{BTreeMap, HashMap};

use crate::index::SeriesId;
use crate::model::FieldValue;

/// One field's values of one series, sorted by timestamp, one per timestamp. Writes usually
/// come in time order and are appended; an older one is put in its place.
#[derive(Debug, Default, Clone)]
pub struct Column {
    values: Vec<(i64, FieldValue)>,
}

impl Column {
    /// Stores a value; `true` if its timestamp was not held before.
    pub fn insert(&mut self, ts: i64, value: FieldValue) -> bool {
        match self.values.last() {
            None => {}
            Some((last, _)) if *last < ts => {}
            Some(_) => {
                return match self.values.binary_search_by_key(&ts, |(t, _)| *t) {
                    Ok(i) => {
                        self.values[i].1 = value;
                        false
                    }
                    Err(i) => {
                        self.values.insert(i, (ts, value));
                        true
                    }
                };
            }
        }
        self.values.push((ts, value));
        true
    }

    /// All values, oldest first.
    pub fn values(&self) -> &[(i64, FieldValue)] {
        &self.values
    }

    /// The values with `lo <= ts <= hi`.
    pub fn range(&self, lo: i64, hi: i64) -> &[(i64, FieldValue)] {
        let a = self.values.partition_point(|(t, _)| *t < lo);
        let b = self.values.partition_point(|(t, _)| *t <= hi);
        &self.values[a..b.max(a)]
    }

    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// Removes the values older than `cutoff`; returns how many.
    fn delete_before(&mut self, cutoff: i64) -> usize {
        let n = self.values.partition_point(|(t, _)| *t < cutoff);
        self.values.drain(..n);
        n
    }
}

#[derive(Debug, Default)]
pub struct Memtable {
    series: HashMap<SeriesId, BTreeMap<String, Column>>,
    points: u64,
}

impl Memtable {
    pub fn insert(&mut self, id: SeriesId, field: &str, ts: i64, value: FieldValue) {
        let fields = self.series.entry(id).or_default();
        let column = match fields.get_mut(field) {
            Some(c) => c,
            None => fields.entry(field.to_string()).or_default(),
        };
        if column.insert(ts, value) {
            self.points += 1;
        }
    }

    /// Values held (one per series, field and timestamp).
    pub fn points(&self) -> u64 {
        self.points
    }

    pub fn is_empty(&self) -> bool {
        self.points == 0
    }

    pub fn column(&self, id: SeriesId, field: &str) -> Option<&Column> {
        self.series.get(&id)?.get(field)
    }

    pub fn series(&self) -> &HashMap<SeriesId, BTreeMap<String, Column>> {
        &self.series
    }

    /// Removes values older than `cutoff_ns`; returns how many.
    pub fn delete_before(&mut self, cutoff_ns: i64) -> u64 {
        let mut removed = 0u64;
        for fields in self.series.values_mut() {
            for column in fields.values_mut() {
                removed += column.delete_before(cutoff_ns) as u64;
            }
            fields.retain(|_, c| !c.is_empty());
        }
        self.series.retain(|_, f| !f.is_empty());
        self.points -= removed;
        removed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn newer_write_wins_and_counts_once() {
        let mut m = Memtable::default();
        m.insert(0, "v", 10, FieldValue::Integer(1));
        m.insert(0, "v", 10, FieldValue::Integer(2));
        m.insert(0, "v", 5, FieldValue::Integer(3));
        assert_eq!(m.points(), 2);
        let col = m.column(0, "v").unwrap();
        assert_eq!(col.values().last(), Some(&(10, FieldValue::Integer(2))));
        assert_eq!(
            col.values().iter().map(|v| v.0).collect::<Vec<_>>(),
            [5, 10]
        );
        assert_eq!(col.range(6, 10).len(), 1);
        assert_eq!(col.range(11, 4).len(), 0);
        assert_eq!(m.delete_before(10), 1);
        assert_eq!(m.points(), 1);
        assert_eq!(m.delete_before(11), 1);
        assert!(m.is_empty() && m.series().is_empty());
    }
}
