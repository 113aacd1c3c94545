//! The in-memory table of values that are in the WAL but not yet in a block file.
//!
//! Per series and field, values are kept sorted by timestamp with one value per timestamp:
//! inserting at a timestamp already present replaces the value (newer write wins).

use std::collections::{BTreeMap, HashMap};

use crate::index::SeriesId;
use crate::model::FieldValue;

pub type Column = BTreeMap<i64, FieldValue>;

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
        if column.insert(ts, value).is_none() {
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
                let keep = column.split_off(&cutoff_ns);
                removed += column.len() as u64;
                *column = keep;
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
        assert_eq!(col.get(&10), Some(&FieldValue::Integer(2)));
        assert_eq!(m.delete_before(10), 1);
        assert_eq!(m.points(), 1);
        assert_eq!(m.delete_before(11), 1);
        assert!(m.is_empty() && m.series().is_empty());
    }
}
