//! The in-memory table of values that are in the WAL but not yet in a block file.
//!
//! Per series and field, values are kept sorted by timestamp with one value per timestamp:
//! inserting at a timestamp already present replaces the value (newer write wins). Fields are
//! named by their number in the index ([`FieldId`]); a series' columns sit in one small
//! vector, and a column of one value needs no allocation of its own, so that many series with
//! few values each stay cheap. Series are found by their id in a vector (ids are dense), not
//! through a hash map: a write touches one series per point.

use crate::index::{FieldId, SeriesId};
use crate::model::FieldValue;

/// One field's values of one series, sorted by timestamp, one per timestamp. Writes usually
/// come in time order and are appended; an older one is put in its place.
#[derive(Debug, Clone)]
pub struct Column {
    values: Values,
}

#[derive(Debug, Clone)]
enum Values {
    One((i64, FieldValue)),
    Many(Vec<(i64, FieldValue)>),
}

impl Column {
    fn new(ts: i64, value: FieldValue) -> Column {
        Column {
            values: Values::One((ts, value)),
        }
    }

    /// Stores a value; `true` if its timestamp was not held before.
    pub fn insert(&mut self, ts: i64, value: FieldValue) -> bool {
        if let Values::One(one) = &mut self.values {
            if one.0 == ts {
                one.1 = value;
                return false;
            }
            let one = std::mem::replace(one, (ts, FieldValue::Boolean(false)));
            let mut v = Vec::with_capacity(4);
            v.push(one);
            self.values = Values::Many(v);
        }
        let Values::Many(values) = &mut self.values else {
            return false;
        };
        match values.last() {
            Some((last, _)) if *last >= ts => match find(values, ts) {
                Ok(i) => {
                    values[i].1 = value;
                    false
                }
                Err(i) => {
                    values.insert(i, (ts, value));
                    true
                }
            },
            _ => {
                values.push((ts, value));
                true
            }
        }
    }

    /// All values, oldest first.
    pub fn values(&self) -> &[(i64, FieldValue)] {
        match &self.values {
            Values::One(one) => std::slice::from_ref(one),
            Values::Many(v) => v,
        }
    }

    /// The values with `lo <= ts <= hi`.
    pub fn range(&self, lo: i64, hi: i64) -> &[(i64, FieldValue)] {
        let values = self.values();
        let a = values.partition_point(|(t, _)| *t < lo);
        let b = values.partition_point(|(t, _)| *t <= hi);
        &values[a..b.max(a)]
    }

    /// Removes the values older than `cutoff`; returns how many. A column left empty is to be
    /// dropped by the caller (`None`).
    fn delete_before(self, cutoff: i64) -> (usize, Option<Column>) {
        match self.values {
            Values::One(one) if one.0 < cutoff => (1, None),
            Values::One(_) => (0, Some(self)),
            Values::Many(mut v) => {
                let n = v.partition_point(|(t, _)| *t < cutoff);
                v.drain(..n);
                let rest = (!v.is_empty()).then_some(Column {
                    values: Values::Many(v),
                });
                (n, rest)
            }
        }
    }
}

/// Where `ts` is, or would go, in values sorted by time whose last one is not older. A late
/// value is usually only a little late (concurrent batches applied out of order), so the last
/// few values are looked at one by one, back from the end, before a binary search.
fn find(values: &[(i64, FieldValue)], ts: i64) -> Result<usize, usize> {
    const NEAR: usize = 16;
    let from = values.len().saturating_sub(NEAR);
    for i in (from..values.len()).rev() {
        let t = values[i].0;
        if t == ts {
            return Ok(i);
        }
        if t < ts {
            return Err(i + 1);
        }
    }
    values[..from].binary_search_by_key(&ts, |(t, _)| *t)
}

/// The columns of one series, sorted by field number.
pub type Columns = Vec<(FieldId, Column)>;

#[derive(Debug, Default)]
pub struct Memtable {
    /// By series id; empty for a series without values here.
    series: Vec<Columns>,
    /// The ids of the series with values, in the order they got their first one.
    present: Vec<SeriesId>,
    points: u64,
}

impl Memtable {
    /// Where the values of one series go; `fields` is a hint of how many it has.
    pub fn series_mut(&mut self, id: SeriesId, fields: usize) -> SeriesColumns<'_> {
        let i = id as usize;
        if i >= self.series.len() {
            self.series.resize_with(i + 1, Vec::new);
        }
        let columns = &mut self.series[i];
        if columns.is_empty() {
            columns.reserve(fields);
            self.present.push(id);
        }
        SeriesColumns {
            columns,
            points: &mut self.points,
        }
    }

    #[cfg(test)]
    pub fn insert(&mut self, id: SeriesId, field: FieldId, ts: i64, value: FieldValue) {
        self.series_mut(id, 1).insert(field, ts, value);
    }

    /// Values held (one per series, field and timestamp).
    pub fn points(&self) -> u64 {
        self.points
    }

    pub fn is_empty(&self) -> bool {
        self.points == 0
    }

    pub fn column(&self, id: SeriesId, field: FieldId) -> Option<&Column> {
        let columns = self.series.get(id as usize)?;
        let i = columns.binary_search_by_key(&field, |c| c.0).ok()?;
        Some(&columns[i].1)
    }

    /// The ids of the series with values, ascending.
    pub fn series_ids(&self) -> Vec<SeriesId> {
        let mut ids = self.present.clone();
        ids.sort_unstable();
        // A series is listed again if it was left empty (a point whose fields were all
        // skipped) and got values later.
        ids.dedup();
        ids.retain(|id| self.series.get(*id as usize).is_some_and(|c| !c.is_empty()));
        ids
    }

    /// Removes values older than `cutoff_ns`; returns how many.
    pub fn delete_before(&mut self, cutoff_ns: i64) -> u64 {
        let mut removed = 0u64;
        for columns in &mut self.series {
            let kept: Columns = std::mem::take(columns)
                .into_iter()
                .filter_map(|(f, c)| {
                    let (n, rest) = c.delete_before(cutoff_ns);
                    removed += n as u64;
                    rest.map(|c| (f, c))
                })
                .collect();
            *columns = kept;
        }
        let series = &self.series;
        self.present
            .retain(|id| series.get(*id as usize).is_some_and(|c| !c.is_empty()));
        self.points -= removed;
        removed
    }
}

/// The columns of one series, to insert into; see [`Memtable::series_mut`].
pub struct SeriesColumns<'a> {
    columns: &'a mut Columns,
    points: &'a mut u64,
}

impl SeriesColumns<'_> {
    pub fn insert(&mut self, field: FieldId, ts: i64, value: FieldValue) {
        let new = match self.columns.binary_search_by_key(&field, |c| c.0) {
            Ok(i) => self.columns[i].1.insert(ts, value),
            Err(i) => {
                self.columns.insert(i, (field, Column::new(ts, value)));
                true
            }
        };
        if new {
            *self.points += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn newer_write_wins_and_counts_once() {
        let mut m = Memtable::default();
        m.insert(0, 3, 10, FieldValue::Integer(1));
        m.insert(0, 3, 10, FieldValue::Integer(2));
        m.insert(0, 3, 5, FieldValue::Integer(3));
        m.insert(0, 1, 7, FieldValue::Integer(4));
        assert_eq!(m.points(), 3);
        let col = m.column(0, 3).unwrap();
        assert_eq!(col.values().last(), Some(&(10, FieldValue::Integer(2))));
        assert_eq!(
            col.values().iter().map(|v| v.0).collect::<Vec<_>>(),
            [5, 10]
        );
        assert_eq!(col.range(6, 10).len(), 1);
        assert_eq!(col.range(11, 4).len(), 0);
        assert_eq!(m.column(0, 1).map(|c| c.values().len()), Some(1));
        assert!(m.column(0, 2).is_none() && m.column(1, 3).is_none());
        assert_eq!(m.delete_before(8), 2);
        assert_eq!(m.points(), 1);
        assert!(m.column(0, 1).is_none());
        assert_eq!(m.delete_before(11), 1);
        assert!(m.is_empty() && m.series_ids().is_empty());
    }

    #[test]
    fn late_values_go_in_their_place_near_the_end_or_far_back() {
        let mut c = Column::new(0, FieldValue::Integer(0));
        for t in 1..100 {
            c.insert(t * 10, FieldValue::Integer(t));
        }
        // Near the end, far back, before the first, equal to one near and one far.
        for t in [985, 15, -5, 970, 20] {
            c.insert(t, FieldValue::Integer(-t));
        }
        let ts: Vec<i64> = c.values().iter().map(|v| v.0).collect();
        let mut want: Vec<i64> = (0..100).map(|t| t * 10).collect();
        want.extend([985, 15, -5]);
        want.sort_unstable();
        assert_eq!(ts, want);
        assert_eq!(c.range(970, 970), [(970, FieldValue::Integer(-970))]);
        assert_eq!(c.range(20, 20), [(20, FieldValue::Integer(-20))]);
    }

    #[test]
    fn a_column_of_one_value_grows_in_order() {
        let mut c = Column::new(20, FieldValue::Float(2.0));
        assert!(!c.insert(20, FieldValue::Float(2.5)));
        assert_eq!(c.values(), [(20, FieldValue::Float(2.5))]);
        assert!(c.insert(10, FieldValue::Float(1.0)));
        assert!(c.insert(30, FieldValue::Float(3.0)));
        assert!(c.insert(25, FieldValue::Float(2.7)));
        assert_eq!(
            c.values().iter().map(|v| v.0).collect::<Vec<_>>(),
            [10, 20, 25, 30]
        );
    }
}
