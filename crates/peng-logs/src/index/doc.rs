//! A record as tantivy indexes it, without copying it into a generic document first.
//!
//! tantivy's own `TantivyDocument` would take every string of a record once more (and the
//! additional fields as an owned JSON object), which cost the index thread a fifth of a core at
//! full ingest. [`RecordDoc`] owns the record and hands tantivy references into it through the
//! `Document` and `Value` traits; what each column gets is the same as `TantivyDocument` gave
//! (layout 3 in [`super::schema`]).

use std::collections::btree_map;
use std::collections::BTreeMap;

use tantivy::schema::document::{Document, ReferenceValue, ReferenceValueLeaf, Value};
use tantivy::schema::Field;

use super::schema::Fields;
use crate::record::{FieldValue, LogRecord};

/// One record with its `seq` and its stored bytes (the WAL encoding without the two times,
/// which the fast columns hold; a hit takes them from there, see `load`).
pub(crate) struct RecordDoc {
    f: Fields,
    seq: u64,
    r: LogRecord,
    stored: Vec<u8>,
}

impl RecordDoc {
    pub(crate) fn new(f: Fields, r: LogRecord, seq: u64) -> RecordDoc {
        let stored = if f.record.is_some() {
            let mut bytes = Vec::with_capacity(r.approx_bytes());
            crate::wal::codec::encode_without_times(&r, &mut bytes);
            bytes
        } else {
            Vec::new()
        };
        RecordDoc { f, seq, r, stored }
    }
}

/// A value of a [`RecordDoc`]: a borrowed leaf, or the additional fields as a JSON object
/// (all of them, or only the numbers and booleans).
#[derive(Clone, Debug)]
pub(crate) enum Val<'a> {
    Str(&'a str),
    U64(u64),
    I64(i64),
    Bytes(&'a [u8]),
    Field(&'a FieldValue),
    Object {
        fields: &'a BTreeMap<String, FieldValue>,
        numbers_only: bool,
    },
}

impl<'a> Value<'a> for Val<'a> {
    type ArrayIter = std::iter::Empty<Self>;
    type ObjectIter = ObjectIter<'a>;

    fn as_value(&self) -> ReferenceValue<'a, Self> {
        let leaf = match *self {
            Val::Str(s) => ReferenceValueLeaf::Str(s),
            Val::U64(u) => ReferenceValueLeaf::U64(u),
            Val::I64(i) => ReferenceValueLeaf::I64(i),
            Val::Bytes(b) => ReferenceValueLeaf::Bytes(b),
            Val::Field(FieldValue::Str(s)) => ReferenceValueLeaf::Str(s),
            Val::Field(FieldValue::I64(i)) => ReferenceValueLeaf::I64(*i),
            Val::Field(FieldValue::F64(x)) => ReferenceValueLeaf::F64(*x),
            Val::Field(FieldValue::Bool(b)) => ReferenceValueLeaf::Bool(*b),
            Val::Object {
                fields,
                numbers_only,
            } => {
                return ReferenceValue::Object(ObjectIter {
                    it: fields.iter(),
                    numbers_only,
                })
            }
        };
        ReferenceValue::Leaf(leaf)
    }
}

pub(crate) struct ObjectIter<'a> {
    it: btree_map::Iter<'a, String, FieldValue>,
    numbers_only: bool,
}

impl<'a> Iterator for ObjectIter<'a> {
    type Item = (&'a str, Val<'a>);

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            let (k, v) = self.it.next()?;
            if self.numbers_only && matches!(v, FieldValue::Str(_)) {
                continue;
            }
            return Some((k.as_str(), Val::Field(v)));
        }
    }
}

impl Document for RecordDoc {
    type Value<'a> = Val<'a>;
    type FieldsValuesIter<'a> = std::vec::IntoIter<(Field, Val<'a>)>;

    fn iter_fields_and_values(&self) -> Self::FieldsValuesIter<'_> {
        let (f, r) = (&self.f, &self.r);
        let mut out = Vec::with_capacity(18 + r.fields.len());
        out.push((f.timestamp, Val::I64(r.timestamp_ns)));
        out.push((f.received, Val::I64(r.received_ns)));
        out.push((f.seq, Val::U64(self.seq)));
        out.push((f.team, Val::Str(r.team.as_str())));
        out.push((f.service, Val::Str(&r.service)));
        out.push((f.stage, Val::Str(&r.stage)));
        out.push((f.instance, Val::Str(&r.instance)));
        out.push((f.source, Val::Str(r.source.as_str())));
        out.push((f.host, Val::Str(&r.host)));
        out.push((f.level, Val::U64(u64::from(r.level))));
        out.push((f.message, Val::Str(&r.message)));
        let optional = [
            ("service", r.service.is_empty()),
            ("stage", r.stage.is_empty()),
            ("instance", r.instance.is_empty()),
            ("host", r.host.is_empty()),
        ];
        for (name, empty) in optional {
            if !empty {
                out.push((f.present, Val::Str(name)));
            }
        }
        if let Some(full) = &r.full_message {
            out.push((f.full_message, Val::Str(full)));
            out.push((f.present, Val::Str("full_message")));
        }
        if !r.fields.is_empty() {
            for k in r.fields.keys() {
                out.push((f.present, Val::Str(k)));
            }
            out.push((
                f.fields,
                Val::Object {
                    fields: &r.fields,
                    numbers_only: false,
                },
            ));
            let has_numbers = r.fields.values().any(|v| !matches!(v, FieldValue::Str(_)));
            if let (Some(nums), true) = (f.nums, has_numbers) {
                out.push((
                    nums,
                    Val::Object {
                        fields: &r.fields,
                        numbers_only: true,
                    },
                ));
            }
        }
        if let Some(record) = f.record {
            out.push((record, Val::Bytes(&self.stored)));
        }
        out.into_iter()
    }
}
