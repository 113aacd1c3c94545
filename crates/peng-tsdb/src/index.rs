//! The series index: which series exist, their dense numeric ids, the type of each of their
//! fields, and the retention cutoff. Kept in memory and persisted as `series.idx`.
//!
//! The file is rewritten whole (temp file, fsync, rename, fsync dir) before any block file
//! refers to a new series id and whenever the cutoff moves, so it is always complete and a
//! damaged record is corruption, not a torn tail. Series are never removed; ids are stable.

use std::cmp::Ordering;
use std::collections::hash_map::RandomState;
use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::hash::{BuildHasher, Hasher};
use std::io::Read;
use std::path::Path;
use std::sync::Arc;

use crate::codec::{
    put_ivarint, put_str, put_uvarint, read_frame_from, DecodeError, Reader, StreamFrame,
};
use crate::error::TsdbError;
use crate::model::{FieldType, NameMap, SeriesKey};
use crate::write_atomically;

pub const FILE_NAME: &str = "series.idx";
const MAGIC: &[u8; 8] = b"PTSIDX01";

pub type SeriesId = u32;

/// A series' tags as the index takes them: key and value pairs, sorted by key.
pub trait Tags {
    fn tag_pairs(&self) -> impl ExactSizeIterator<Item = (&str, &str)> + Clone;
}

impl<K: AsRef<str>, V: AsRef<str>> Tags for BTreeMap<K, V> {
    fn tag_pairs(&self) -> impl ExactSizeIterator<Item = (&str, &str)> + Clone {
        self.iter().map(|(k, v)| (k.as_ref(), v.as_ref()))
    }
}

impl<V: AsRef<str>> Tags for NameMap<V> {
    fn tag_pairs(&self) -> impl ExactSizeIterator<Item = (&str, &str)> + Clone {
        self.iter().map(|(k, v)| (k.as_str(), v.as_ref()))
    }
}

/// A field name, numbered once per store (see [`FieldNames`]).
pub type FieldId = u32;

/// Every field name of the store, kept once; the memtable and the series' field sets refer
/// to names by number.
#[derive(Debug, Default)]
pub struct FieldNames {
    names: Vec<Arc<str>>,
    ids: HashMap<Arc<str>, FieldId>,
}

impl FieldNames {
    pub fn get(&self, name: &str) -> Option<FieldId> {
        self.ids.get(name).copied()
    }

    pub fn intern(&mut self, name: &str) -> FieldId {
        if let Some(id) = self.ids.get(name) {
            return *id;
        }
        let id = self.names.len() as FieldId;
        let name: Arc<str> = Arc::from(name);
        self.names.push(name.clone());
        self.ids.insert(name, id);
        id
    }

    pub fn name(&self, id: FieldId) -> &str {
        self.names.get(id as usize).map_or("", |n| n)
    }
}

/// The fields of a series with their types. Series with the same fields share one set, so a
/// series costs a number here, not a map of names.
#[derive(Debug)]
struct FieldSet {
    /// Sorted by field id, for lookups.
    by_id: Box<[(FieldId, FieldType)]>,
    /// Sorted by field name, for listing and for writing columns in name order.
    by_name: Box<[(FieldId, FieldType)]>,
}

impl FieldSet {
    fn get(&self, id: FieldId) -> Option<FieldType> {
        self.by_id
            .binary_search_by_key(&id, |f| f.0)
            .ok()
            .map(|i| self.by_id[i].1)
    }
}

/// A series key as stored in the index: `str measurement, uvarint tag count, (str key, str
/// value)*`, tags sorted by key (the start of a `series.idx` record). Written only from
/// `&str`s, so it always decodes; should it not, it reads as ending there.
#[derive(Debug, Clone, Copy)]
pub struct KeyRef<'a> {
    bytes: &'a [u8],
}

impl<'a> KeyRef<'a> {
    /// The measurement and tags as bytes: comparing and hashing need no UTF-8 check.
    fn raw(self) -> (&'a [u8], RawTags<'a>) {
        let mut pos = 0;
        let measurement = take(self.bytes, &mut pos).unwrap_or(&[]);
        let left = varint(self.bytes, &mut pos).unwrap_or(0);
        let tags = RawTags {
            bytes: self.bytes,
            pos,
            left,
        };
        (measurement, tags)
    }

    /// The tags, sorted by key.
    pub fn tags(self) -> impl Iterator<Item = (&'a str, &'a str)> {
        self.raw().1.map(|(k, v)| (text(k), text(v)))
    }

    /// Whether the series has tag `key` with `value`. Tags are sorted, so the scan stops at
    /// the first greater key.
    pub fn has_tag(self, key: &str, value: &str) -> bool {
        let key = key.as_bytes();
        for (k, v) in self.raw().1 {
            match k.cmp(key) {
                Ordering::Less => {}
                Ordering::Equal => return v == value.as_bytes(),
                Ordering::Greater => return false,
            }
        }
        false
    }

    /// Whether this is the key of `measurement` with exactly `tags`.
    pub fn is<T: Tags + ?Sized>(self, measurement: &str, tags: &T) -> bool {
        let (m, mine) = self.raw();
        let tags = tags.tag_pairs();
        m == measurement.as_bytes()
            && mine.left == tags.len() as u64
            && mine
                .zip(tags)
                .all(|((k, v), (tk, tv))| k == tk.as_bytes() && v == tv.as_bytes())
    }

    pub fn measurement(self) -> &'a str {
        text(self.raw().0)
    }

    pub fn to_key(self) -> SeriesKey {
        let (measurement, _) = self.raw();
        SeriesKey {
            measurement: text(measurement).to_string(),
            tags: self
                .tags()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }
    }

    /// The order of [`SeriesKey`]: measurement, then the sorted tag pairs (UTF-8 sorts as its
    /// bytes do).
    pub fn cmp_key(self, other: KeyRef<'_>) -> Ordering {
        let (m1, t1) = self.raw();
        let (m2, t2) = other.raw();
        m1.cmp(m2).then_with(|| t1.cmp(t2))
    }
}

/// Keys are written only from `str`s, so this does not fail; should it, the text is empty.
fn text(bytes: &[u8]) -> &str {
    std::str::from_utf8(bytes).unwrap_or("")
}

/// A uvarint of a key (see [`Reader::uvarint`]; keys are only read where they were written).
#[inline]
fn varint(bytes: &[u8], pos: &mut usize) -> Option<u64> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let b = *bytes.get(*pos)?;
        *pos += 1;
        v |= u64::from(b & 0x7f) << shift;
        if b < 0x80 {
            return Some(v);
        }
    }
    None
}

/// A length-prefixed string of a key, as bytes.
#[inline]
fn take<'a>(bytes: &'a [u8], pos: &mut usize) -> Option<&'a [u8]> {
    let n = usize::try_from(varint(bytes, pos)?).ok()?;
    let s = bytes.get(*pos..pos.checked_add(n)?)?;
    *pos += n;
    Some(s)
}

/// The tag pairs of a [`KeyRef`], as bytes.
struct RawTags<'a> {
    bytes: &'a [u8],
    pos: usize,
    left: u64,
}

impl<'a> Iterator for RawTags<'a> {
    type Item = (&'a [u8], &'a [u8]);

    fn next(&mut self) -> Option<(&'a [u8], &'a [u8])> {
        if self.left == 0 {
            return None;
        }
        self.left -= 1;
        match (
            take(self.bytes, &mut self.pos),
            take(self.bytes, &mut self.pos),
        ) {
            (Some(k), Some(v)) => Some((k, v)),
            _ => {
                self.left = 0;
                None
            }
        }
    }
}

fn encode_key<'a>(
    out: &mut Vec<u8>,
    measurement: &str,
    count: usize,
    tags: impl Iterator<Item = (&'a str, &'a str)>,
) {
    put_str(out, measurement);
    put_uvarint(out, count as u64);
    for (k, v) in tags {
        put_str(out, k);
        put_str(out, v);
    }
}

/// The series index. Per series it holds its encoded key in one shared byte arena, the
/// number of its field set, and a slot in a hash table: about 60 bytes plus the key.
#[derive(Debug, Default)]
pub struct SeriesIndex {
    /// Encoded keys ([`KeyRef`]) of all series, back to back, in id order.
    keys: Vec<u8>,
    /// Per series, where its key ends in `keys` (it starts where the previous one ends).
    key_ends: Vec<u64>,
    /// Per series, its field set (a position in `sets`).
    field_set: Vec<u32>,
    sets: Vec<FieldSet>,
    /// Field sets by their `by_id` list, and the set that adding a field to a set gives.
    set_ids: HashMap<Box<[(FieldId, FieldType)]>, u32>,
    set_grow: HashMap<(u32, FieldId, FieldType), u32>,
    fields: FieldNames,
    /// Series ids by the hash of their key (measurement and tags), looked up from borrowed
    /// parts so that a point of a known series costs no allocation. Randomly keyed per
    /// process. Another series with the same hash goes to `collisions`.
    by_hash: HashMap<u64, SeriesId>,
    collisions: HashMap<u64, Vec<SeriesId>>,
    hasher: RandomState,
    by_measurement: BTreeMap<String, Vec<SeriesId>>,
    /// Values older than this are deleted; `i64::MIN` when retention never ran.
    pub cutoff_ns: i64,
    /// Whether memory holds something the file does not.
    pub dirty: bool,
}

impl SeriesIndex {
    pub fn new() -> SeriesIndex {
        let mut index = SeriesIndex {
            cutoff_ns: i64::MIN,
            ..SeriesIndex::default()
        };
        index.set_for(Vec::new());
        index
    }

    pub fn len(&self) -> usize {
        self.key_ends.len()
    }

    #[cfg(test)]
    pub fn get(&self, key: &SeriesKey) -> Option<SeriesId> {
        self.find(&key.measurement, &key.tags)
    }

    fn hash_of<'a>(
        &self,
        measurement: &[u8],
        tags: impl Iterator<Item = (&'a [u8], &'a [u8])>,
    ) -> u64 {
        let mut h = self.hasher.build_hasher();
        h.write(measurement);
        h.write_u8(0xff);
        for (k, v) in tags {
            h.write(k);
            h.write_u8(0xff);
            h.write(v);
            h.write_u8(0xff);
        }
        h.finish()
    }

    /// The id of the series with this measurement and tags.
    pub fn find<T: Tags + ?Sized>(&self, measurement: &str, tags: &T) -> Option<SeriesId> {
        let hash = self.hash_of(
            measurement.as_bytes(),
            tags.tag_pairs().map(|(k, v)| (k.as_bytes(), v.as_bytes())),
        );
        let first = *self.by_hash.get(&hash)?;
        if self.key(first).is_some_and(|k| k.is(measurement, tags)) {
            return Some(first);
        }
        self.collisions
            .get(&hash)?
            .iter()
            .copied()
            .find(|id| self.key(*id).is_some_and(|k| k.is(measurement, tags)))
    }

    pub fn key(&self, id: SeriesId) -> Option<KeyRef<'_>> {
        let i = id as usize;
        let end = *self.key_ends.get(i)? as usize;
        let start = if i == 0 {
            0
        } else {
            self.key_ends[i - 1] as usize
        };
        self.keys.get(start..end).map(|bytes| KeyRef { bytes })
    }

    /// The id of the series, adding it when it is new.
    pub fn get_or_insert<T: Tags + ?Sized>(&mut self, measurement: &str, tags: &T) -> SeriesId {
        if let Some(id) = self.find(measurement, tags) {
            return id;
        }
        let tags = tags.tag_pairs();
        let id = self.push(measurement, tags.len(), tags, 0);
        self.dirty = true;
        id
    }

    fn push<'a>(
        &mut self,
        measurement: &str,
        count: usize,
        tags: impl Iterator<Item = (&'a str, &'a str)> + Clone,
        set: u32,
    ) -> SeriesId {
        let hash = self.hash_of(
            measurement.as_bytes(),
            tags.clone().map(|(k, v)| (k.as_bytes(), v.as_bytes())),
        );
        encode_key(&mut self.keys, measurement, count, tags);
        self.add(hash, measurement, set)
    }

    /// Registers the series whose key was just appended to `keys`.
    fn add(&mut self, hash: u64, measurement: &str, set: u32) -> SeriesId {
        let id = self.key_ends.len() as SeriesId;
        self.key_ends.push(self.keys.len() as u64);
        self.field_set.push(set);
        if let std::collections::hash_map::Entry::Vacant(v) = self.by_hash.entry(hash) {
            v.insert(id);
        } else {
            self.collisions.entry(hash).or_default().push(id);
        }
        match self.by_measurement.get_mut(measurement) {
            Some(ids) => ids.push(id),
            None => {
                self.by_measurement
                    .insert(measurement.to_string(), vec![id]);
            }
        }
        id
    }

    /// The number of a field name, if any series has that field.
    pub fn field_id(&self, name: &str) -> Option<FieldId> {
        self.fields.get(name)
    }

    fn set_of(&self, id: SeriesId) -> Option<&FieldSet> {
        self.sets.get(*self.field_set.get(id as usize)? as usize)
    }

    /// The type of a field (by number) of a series.
    pub fn field_type_of(&self, id: SeriesId, field: FieldId) -> Option<FieldType> {
        self.set_of(id)?.get(field)
    }

    /// The type of a field of a series.
    pub fn field_type(&self, id: SeriesId, name: &str) -> Option<FieldType> {
        self.set_of(id)?.get(self.fields.get(name)?)
    }

    /// Whether the series has each of `fields` (sorted by name, each once) with that type; if
    /// so, `out` holds their numbers in that order. Walks the series' fields in name order, so
    /// that the common case (a point of known fields) hashes no name.
    pub fn resolve_fields<'a>(
        &self,
        id: SeriesId,
        fields: impl Iterator<Item = (&'a str, FieldType)>,
        out: &mut Vec<FieldId>,
    ) -> bool {
        out.clear();
        let Some(set) = self.set_of(id) else {
            return false;
        };
        let mut have = set.by_name.iter();
        for (name, ty) in fields {
            let found = have.by_ref().find(|(f, _)| self.fields.name(*f) >= name);
            match found {
                Some((f, t)) if *t == ty && self.fields.name(*f) == name => out.push(*f),
                _ => return false,
            }
        }
        true
    }

    /// Every field name, by number.
    pub fn field_names(&self) -> Vec<Arc<str>> {
        self.fields.names.clone()
    }

    /// The fields of a series in name order: (number, name, type).
    pub fn fields_of(&self, id: SeriesId) -> impl Iterator<Item = (FieldId, &str, FieldType)> + '_ {
        self.set_of(id)
            .map_or(&[][..], |s| &s.by_name[..])
            .iter()
            .map(|(f, ty)| (*f, self.fields.name(*f), *ty))
    }

    /// The field set numbers of the series `ids`, each once.
    pub fn field_sets(&self, ids: &[SeriesId]) -> Vec<u32> {
        let mut sets: Vec<u32> = ids
            .iter()
            .filter_map(|id| self.field_set.get(*id as usize).copied())
            .collect();
        sets.sort_unstable();
        sets.dedup();
        sets
    }

    /// The fields of a field set in name order: (name, type).
    pub fn set_fields(&self, set: u32) -> impl Iterator<Item = (&str, FieldType)> + '_ {
        self.sets
            .get(set as usize)
            .map_or(&[][..], |s| &s.by_name[..])
            .iter()
            .map(|(f, ty)| (self.fields.name(*f), *ty))
    }

    /// The number of the field set with exactly these fields (sorted by id), made if new.
    fn set_for(&mut self, by_id: Vec<(FieldId, FieldType)>) -> u32 {
        if let Some(set) = self.set_ids.get(&by_id[..]) {
            return *set;
        }
        let set = self.sets.len() as u32;
        let mut by_name = by_id.clone();
        let names = &self.fields;
        by_name.sort_by(|a, b| names.name(a.0).cmp(names.name(b.0)));
        let by_id = by_id.into_boxed_slice();
        self.set_ids.insert(by_id.clone(), set);
        self.sets.push(FieldSet {
            by_id,
            by_name: by_name.into_boxed_slice(),
        });
        set
    }

    /// Records the type of a field and returns the field's number; returns the type already
    /// recorded when it differs.
    #[cfg(test)]
    pub fn set_field_type(
        &mut self,
        id: SeriesId,
        field: &str,
        ty: FieldType,
    ) -> Result<FieldId, FieldType> {
        let f = self.fields.intern(field);
        let Some(&set) = self.field_set.get(id as usize) else {
            return Ok(f);
        };
        match self.sets.get(set as usize).and_then(|s| s.get(f)) {
            Some(existing) if existing != ty => Err(existing),
            Some(_) => Ok(f),
            None => {
                self.grow(id, set, vec![(f, ty)]);
                Ok(f)
            }
        }
    }

    /// Gives series `id`, of field set `set`, the fields `new` (none of which it has) as well.
    fn grow(&mut self, id: SeriesId, set: u32, mut new: Vec<(FieldId, FieldType)>) {
        let one = match new.as_slice() {
            [] => return,
            [one] => Some(*one),
            _ => None,
        };
        // One new field, as series gain them over time: the growth is remembered, so that the
        // next series that gains it finds the set without hashing it.
        let cached = one.and_then(|(f, ty)| self.set_grow.get(&(set, f, ty)).copied());
        let grown = match cached {
            Some(g) => g,
            None => {
                let mut by_id: Vec<(FieldId, FieldType)> = self
                    .sets
                    .get(set as usize)
                    .map_or(&[][..], |s| &s.by_id[..])
                    .to_vec();
                by_id.append(&mut new);
                by_id.sort_unstable_by_key(|x| x.0);
                let g = self.set_for(by_id);
                if let Some((f, ty)) = one {
                    self.set_grow.insert((set, f, ty), g);
                }
                g
            }
        };
        self.field_set[id as usize] = grown;
        self.dirty = true;
    }

    /// Records the types of a point's fields (each name once), pushing to `out` each field's
    /// number, or `None` for one the series has with another type. The series'
    /// field set grows once for all the new fields: grown one field at a time, a point of n new
    /// fields would make n sets of up to n fields each (one line of 20,000 fields took 4.7 GB).
    pub fn set_field_types<'a>(
        &mut self,
        id: SeriesId,
        fields: impl Iterator<Item = (&'a str, FieldType)>,
        out: &mut Vec<Option<FieldId>>,
    ) {
        let set = self.field_set.get(id as usize).copied();
        let mut new: Vec<(FieldId, FieldType)> = Vec::new();
        for (name, ty) in fields {
            let f = self.fields.intern(name);
            let existing = set
                .and_then(|s| self.sets.get(s as usize))
                .and_then(|s| s.get(f));
            match existing {
                Some(t) if t != ty => out.push(None),
                Some(_) => out.push(Some(f)),
                None => {
                    new.push((f, ty));
                    out.push(Some(f));
                }
            }
        }
        if let Some(set) = set {
            self.grow(id, set, new);
        }
    }

    /// Every measurement with a series, sorted.
    pub fn measurement_names(&self) -> impl Iterator<Item = &str> {
        self.by_measurement.keys().map(String::as_str)
    }

    /// Ids of the series of `measurement`.
    pub fn measurement(&self, measurement: &str) -> &[SeriesId] {
        self.by_measurement
            .get(measurement)
            .map(Vec::as_slice)
            .unwrap_or(&[])
    }

    /// Loads `dir/series.idx`, or an empty index when the file does not exist.
    pub fn load(dir: &Path) -> Result<SeriesIndex, TsdbError> {
        let path = dir.join(FILE_NAME);
        let file = match fs::File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(SeriesIndex::new()),
            Err(e) => return Err(TsdbError::io("reading series index", &path)(e)),
        };
        // Read frame by frame: the file of a million series is over 100 MB.
        let mut r = std::io::BufReader::with_capacity(1 << 20, file);
        decode(&mut r).map_err(|e| match e {
            LoadError::Io(e) => TsdbError::io("reading series index", &path)(e),
            LoadError::Decode(e) => TsdbError::corrupt(&path, e.to_string()),
        })
    }

    /// Writes the index durably and clears `dirty`.
    pub fn save(&mut self, dir: &Path) -> Result<(), TsdbError> {
        write_atomically(dir, FILE_NAME, &self.encode())?;
        self.dirty = false;
        Ok(())
    }

    fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.keys.len() + self.len() * 48 + 64);
        out.extend_from_slice(MAGIC);
        let mut header = Vec::new();
        put_ivarint(&mut header, self.cutoff_ns);
        put_uvarint(&mut header, self.len() as u64);
        begin_frame(&mut out);
        out.extend_from_slice(&header);
        end_frame(&mut out, MAGIC.len());
        for id in 0..self.len() as SeriesId {
            let at = out.len();
            begin_frame(&mut out);
            if let Some(k) = self.key(id) {
                out.extend_from_slice(k.bytes);
            }
            let fields = self.set_of(id).map_or(&[][..], |s| &s.by_name[..]);
            put_uvarint(&mut out, fields.len() as u64);
            for (f, ty) in fields {
                put_str(&mut out, self.fields.name(*f));
                out.push(ty.to_byte());
            }
            end_frame(&mut out, at);
        }
        out
    }
}

/// Starts a frame (see `codec::frame`) in place: room for its header.
fn begin_frame(out: &mut Vec<u8>) {
    out.extend_from_slice(&[0u8; 8]);
}

/// Fills in the header of the frame begun at `at`, over the payload written since.
fn end_frame(out: &mut [u8], at: usize) {
    let (head, payload) = out[at..].split_at_mut(8);
    head[..4].copy_from_slice(&(payload.len() as u32).to_le_bytes());
    head[4..].copy_from_slice(&crc32fast::hash(payload).to_le_bytes());
}

enum LoadError {
    Io(std::io::Error),
    Decode(DecodeError),
}

impl From<DecodeError> for LoadError {
    fn from(e: DecodeError) -> LoadError {
        LoadError::Decode(e)
    }
}

fn decode(r: &mut impl Read) -> Result<SeriesIndex, LoadError> {
    let mut magic = [0u8; MAGIC.len()];
    if r.read_exact(&mut magic).is_err() || magic != *MAGIC {
        return Err(DecodeError("not a series index (bad magic)").into());
    }
    let mut buf = Vec::new();
    let mut next = |buf: &mut Vec<u8>| match read_frame_from(r, buf) {
        Ok(StreamFrame::Ok) => Ok(()),
        Ok(StreamFrame::Bad(why)) => Err(LoadError::Decode(DecodeError(why))),
        Ok(StreamFrame::End) => Err(DecodeError("series index ends early").into()),
        Err(e) => Err(LoadError::Io(e)),
    };
    next(&mut buf)?;
    let mut h = Reader::new(&buf);
    let mut index = SeriesIndex::new();
    index.cutoff_ns = h.ivarint()?;
    let count = h.uvarint()?;
    // Consecutive series usually have the same fields: their bytes are compared first.
    let mut prev_fields: Vec<u8> = Vec::new();
    let mut prev_set = 0u32;
    let mut canonical: Vec<u8> = Vec::new();
    for _ in 0..count {
        next(&mut buf)?;
        let mut rec = Reader::new(&buf);
        let measurement = rec.str_ref()?;
        let n_tags = rec.len()?;
        let mut sorted = true;
        let mut prev_key: Option<&str> = None;
        for _ in 0..n_tags {
            let k = rec.str_ref()?;
            rec.str_ref()?;
            sorted &= prev_key.is_none_or(|p| p < k);
            prev_key = Some(k);
        }
        let key_len = rec.position();
        let set = if !prev_fields.is_empty() && buf[key_len..] == prev_fields[..] {
            prev_set
        } else {
            let mut fields: BTreeMap<&str, FieldType> = BTreeMap::new();
            for _ in 0..rec.len()? {
                let name = rec.str_ref()?;
                let ty =
                    FieldType::from_byte(rec.u8()?).ok_or(DecodeError("unknown field type"))?;
                fields.insert(name, ty);
            }
            let mut by_id: Vec<(FieldId, FieldType)> = fields
                .iter()
                .map(|(name, ty)| (index.fields.intern(name), *ty))
                .collect();
            by_id.sort_unstable();
            prev_set = index.set_for(by_id);
            prev_fields.clear();
            prev_fields.extend_from_slice(&buf[key_len..]);
            prev_set
        };
        // The record starts with the key as the index keeps it, when its tags are sorted (as
        // this engine writes them); otherwise it is put in that form.
        let key: &[u8] = if sorted {
            &buf[..key_len]
        } else {
            let mut rec = Reader::new(&buf);
            rec.str_ref()?;
            let mut tags: BTreeMap<&str, &str> = BTreeMap::new();
            for _ in 0..rec.len()? {
                let k = rec.str_ref()?;
                tags.insert(k, rec.str_ref()?);
            }
            canonical.clear();
            encode_key(&mut canonical, measurement, tags.len(), tags.into_iter());
            &canonical
        };
        let (m, tags) = KeyRef { bytes: key }.raw();
        let hash = index.hash_of(m, tags);
        let listed = index
            .by_hash
            .get(&hash)
            .into_iter()
            .chain(index.collisions.get(&hash).into_iter().flatten());
        for id in listed {
            if index.key(*id).is_some_and(|k| k.bytes == key) {
                return Err(DecodeError("series listed twice").into());
            }
        }
        index.keys.extend_from_slice(key);
        index.add(hash, measurement, set);
    }
    if !matches!(read_frame_from(r, &mut buf), Ok(StreamFrame::End)) {
        return Err(DecodeError("trailing data after the last series").into());
    }
    Ok(index)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A point's new fields make one field set, not one per field; known fields and a type
    /// conflict make none, and a conflict is a `None` in its place.
    #[test]
    fn a_point_of_many_new_fields_makes_one_field_set() {
        let mut idx = SeriesIndex::new();
        let id = idx.get_or_insert("m", &BTreeMap::<String, String>::new());
        let names: Vec<String> = (0..1000).rev().map(|i| format!("f{i:04}")).collect();
        let before = idx.sets.len();
        let mut out = Vec::new();
        idx.set_field_types(
            id,
            names.iter().map(|n| (n.as_str(), FieldType::Float)),
            &mut out,
        );
        assert_eq!(idx.sets.len(), before + 1);
        assert_eq!(out.len(), 1000);
        assert!(out.iter().all(Option::is_some));
        assert_eq!(idx.fields_of(id).count(), 1000);
        let mut again = Vec::new();
        idx.set_field_types(
            id,
            [("f0001", FieldType::Float), ("f0002", FieldType::String)].into_iter(),
            &mut again,
        );
        assert_eq!(idx.sets.len(), before + 1);
        assert_eq!(again, [out[998], None]);
        assert_eq!(idx.field_type(id, "f0002"), Some(FieldType::Float));
    }

    #[test]
    fn save_and_load_round_trip() {
        let tmp = tempfile::tempdir().unwrap();
        let mut idx = SeriesIndex::new();
        let a = SeriesKey {
            measurement: "cpu".into(),
            tags: [("h".to_string(), "a".to_string())].into(),
        };
        let b = SeriesKey {
            measurement: "mem".into(),
            tags: BTreeMap::new(),
        };
        let ia = idx.get_or_insert(&a.measurement, &a.tags);
        let ib = idx.get_or_insert(&b.measurement, &b.tags);
        idx.set_field_type(ia, "v", FieldType::Float).unwrap();
        assert_eq!(
            idx.set_field_type(ia, "v", FieldType::Integer),
            Err(FieldType::Float)
        );
        idx.cutoff_ns = 42;
        idx.save(tmp.path()).unwrap();
        let loaded = SeriesIndex::load(tmp.path()).unwrap();
        assert_eq!(loaded.cutoff_ns, 42);
        assert_eq!(loaded.get(&a), Some(ia));
        assert_eq!(loaded.get(&b), Some(ib));
        assert_eq!(
            loaded.fields_of(ia).map(|f| (f.1, f.2)).collect::<Vec<_>>(),
            [("v", FieldType::Float)]
        );
        assert_eq!(loaded.fields_of(ib).count(), 0);
        assert_eq!(loaded.key(ia).map(|k| k.to_key()), Some(a));
        assert_eq!(loaded.key(ib).map(|k| k.to_key()), Some(b));
        assert_eq!(loaded.measurement("cpu"), &[ia]);
    }

    #[test]
    fn series_share_field_sets_and_keep_their_own_types() {
        let mut idx = SeriesIndex::new();
        let tags = |h: &str| BTreeMap::from([("host".to_string(), h.to_string())]);
        let ids: Vec<SeriesId> = (0..100)
            .map(|i| idx.get_or_insert("cpu", &tags(&format!("h{i}"))))
            .collect();
        for id in &ids {
            for f in ["user", "idle", "system"] {
                idx.set_field_type(*id, f, FieldType::Float).unwrap();
            }
        }
        idx.set_field_type(ids[7], "idle", FieldType::Float)
            .unwrap();
        idx.set_field_type(ids[7], "note", FieldType::String)
            .unwrap();
        assert_eq!(
            idx.set_field_type(ids[7], "user", FieldType::Integer),
            Err(FieldType::Float)
        );
        // The empty set, the three growing ones, and the one with "note".
        assert_eq!(idx.sets.len(), 5);
        assert_eq!(idx.field_sets(&ids).len(), 2);
        let names = |id: SeriesId| idx.fields_of(id).map(|f| f.1).collect::<Vec<_>>();
        assert_eq!(names(ids[0]), ["idle", "system", "user"]);
        assert_eq!(names(ids[7]), ["idle", "note", "system", "user"]);
        assert_eq!(idx.field_type(ids[7], "note"), Some(FieldType::String));
        assert_eq!(idx.field_type(ids[8], "note"), None);
        for (i, id) in ids.iter().enumerate() {
            assert_eq!(idx.find("cpu", &tags(&format!("h{i}"))), Some(*id));
            let key = idx.key(*id).unwrap();
            assert!(key.has_tag("host", &format!("h{i}")));
            assert!(!key.has_tag("host", "h") && !key.has_tag("a", "h1") && !key.has_tag("z", ""));
        }
        let mut out = Vec::new();
        let f = |n: &str| idx.field_id(n).unwrap();
        let float = FieldType::Float;
        assert!(idx.resolve_fields(
            ids[7],
            [("idle", float), ("user", float)].into_iter(),
            &mut out
        ));
        assert_eq!(out, [f("idle"), f("user")]);
        let note = ("note", FieldType::String);
        assert!(idx.resolve_fields(ids[7], [note, ("system", float)].into_iter(), &mut out));
        assert_eq!(out, [f("note"), f("system")]);
        assert!(!idx.resolve_fields(ids[8], [note].into_iter(), &mut out));
        assert!(!idx.resolve_fields(ids[7], [("idle", FieldType::Integer)].into_iter(), &mut out));
        assert!(!idx.resolve_fields(ids[7], [("a", float)].into_iter(), &mut out));
        assert!(!idx.resolve_fields(ids[7], [("zz", float)].into_iter(), &mut out));
        assert!(idx.resolve_fields(ids[7], std::iter::empty(), &mut out) && out.is_empty());
        assert_eq!(idx.find("cpu", &tags("h100")), None);
        assert_eq!(idx.find("mem", &tags("h1")), None);
        assert_eq!(idx.find("cpu", &BTreeMap::<String, String>::new()), None);
        let k = |id: SeriesId| idx.key(id).unwrap();
        assert_eq!(
            k(ids[10]).cmp_key(k(ids[9])),
            k(ids[10]).to_key().cmp(&k(ids[9]).to_key())
        );
    }

    /// The in-memory form changed, the file did not: the v1 fixture's index encodes back to
    /// the same bytes.
    #[test]
    fn the_v1_fixture_encodes_to_the_same_bytes() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/v1");
        let bytes = fs::read(dir.join(FILE_NAME)).unwrap();
        let idx = SeriesIndex::load(&dir).unwrap();
        assert!(idx.len() >= 2);
        assert_eq!(idx.encode(), bytes);
    }

    /// This engine writes tags sorted; a record with them in another order (or twice) loads
    /// as the tag map it describes, the last value of a key winning.
    #[test]
    fn unsorted_tags_in_a_record_load_in_order() {
        let tmp = tempfile::tempdir().unwrap();
        let mut out = MAGIC.to_vec();
        let mut header = Vec::new();
        put_ivarint(&mut header, i64::MIN);
        put_uvarint(&mut header, 2);
        crate::codec::frame(&mut out, &header);
        for host in ["x", "y"] {
            let mut rec = Vec::new();
            put_str(&mut rec, "m");
            put_uvarint(&mut rec, 3);
            for (k, v) in [("b", "2"), ("a", "0"), ("a", host)] {
                put_str(&mut rec, k);
                put_str(&mut rec, v);
            }
            put_uvarint(&mut rec, 1);
            put_str(&mut rec, "v");
            rec.push(FieldType::Float.to_byte());
            crate::codec::frame(&mut out, &rec);
        }
        fs::write(tmp.path().join(FILE_NAME), &out).unwrap();
        let idx = SeriesIndex::load(tmp.path()).unwrap();
        for (id, host) in [(0, "x"), (1, "y")] {
            let tags = BTreeMap::from([
                ("a".to_string(), host.to_string()),
                ("b".to_string(), "2".to_string()),
            ]);
            assert_eq!(idx.find("m", &tags), Some(id));
            assert_eq!(idx.field_type(id, "v"), Some(FieldType::Float));
        }
    }

    #[test]
    fn damaged_index_is_corruption() {
        let tmp = tempfile::tempdir().unwrap();
        let mut idx = SeriesIndex::new();
        idx.get_or_insert("cpu", &BTreeMap::<String, String>::new());
        idx.save(tmp.path()).unwrap();
        let path = tmp.path().join(FILE_NAME);
        let mut bytes = fs::read(&path).unwrap();
        for i in 0..bytes.len() {
            bytes[i] ^= 0x20;
            fs::write(&path, &bytes).unwrap();
            let err = SeriesIndex::load(tmp.path()).unwrap_err();
            assert_eq!(err.kind(), peng_core::ErrorKind::Internal, "byte {i}");
            bytes[i] ^= 0x20;
        }
        for cut in 0..bytes.len() {
            fs::write(&path, &bytes[..cut]).unwrap();
            assert!(SeriesIndex::load(tmp.path()).is_err(), "cut {cut}");
        }
    }
}
