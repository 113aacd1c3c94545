//! The series index: which series exist, their dense numeric ids, the type of each of their
//! fields, and the retention cutoff. Kept in memory and persisted as `series.idx`.
//!
//! The file is rewritten whole (temp file, fsync, rename, fsync dir) before any block file
//! refers to a new series id and whenever the cutoff moves, so it is always complete and a
//! damaged record is corruption, not a torn tail. Series are never removed; ids are stable.

use std::collections::hash_map::RandomState;
use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::hash::{BuildHasher, Hash, Hasher};
use std::path::Path;

use crate::codec::{
    frame, put_ivarint, put_str, put_uvarint, read_frame, DecodeError, Frame, Reader,
};
use crate::error::TsdbError;
use crate::model::{FieldType, SeriesKey};
use crate::write_atomically;

pub const FILE_NAME: &str = "series.idx";
const MAGIC: &[u8; 8] = b"PTSIDX01";

pub type SeriesId = u32;

#[derive(Debug, Clone)]
pub struct SeriesEntry {
    pub key: SeriesKey,
    pub fields: BTreeMap<String, FieldType>,
}

#[derive(Debug, Default)]
pub struct SeriesIndex {
    entries: Vec<SeriesEntry>,
    /// Series ids by the hash of their key (measurement and tags), looked up from borrowed
    /// parts so that a point of a known series costs no allocation. Randomly keyed per process.
    by_hash: HashMap<u64, Vec<SeriesId>>,
    hasher: RandomState,
    by_measurement: BTreeMap<String, Vec<SeriesId>>,
    /// Values older than this are deleted; `i64::MIN` when retention never ran.
    pub cutoff_ns: i64,
    /// Whether memory holds something the file does not.
    pub dirty: bool,
}

impl SeriesIndex {
    pub fn new() -> SeriesIndex {
        SeriesIndex {
            cutoff_ns: i64::MIN,
            ..SeriesIndex::default()
        }
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn get(&self, key: &SeriesKey) -> Option<SeriesId> {
        self.find(&key.measurement, &key.tags)
    }

    fn hash_of(&self, measurement: &str, tags: &BTreeMap<String, String>) -> u64 {
        let mut h = self.hasher.build_hasher();
        measurement.hash(&mut h);
        tags.hash(&mut h);
        h.finish()
    }

    /// The id of the series with this measurement and tags.
    pub fn find(&self, measurement: &str, tags: &BTreeMap<String, String>) -> Option<SeriesId> {
        self.by_hash
            .get(&self.hash_of(measurement, tags))?
            .iter()
            .copied()
            .find(|id| {
                self.entries
                    .get(*id as usize)
                    .is_some_and(|e| e.key.measurement == measurement && e.key.tags == *tags)
            })
    }

    pub fn entry(&self, id: SeriesId) -> Option<&SeriesEntry> {
        self.entries.get(id as usize)
    }

    /// The id of `key`, adding the series when it is new.
    pub fn get_or_insert(
        &mut self,
        measurement: &str,
        tags: &BTreeMap<String, String>,
    ) -> SeriesId {
        if let Some(id) = self.find(measurement, tags) {
            return id;
        }
        let id = self.entries.len() as SeriesId;
        self.push(SeriesEntry {
            key: SeriesKey {
                measurement: measurement.to_string(),
                tags: tags.clone(),
            },
            fields: BTreeMap::new(),
        });
        self.dirty = true;
        id
    }

    /// Records the type of a field; returns the type already recorded when it differs.
    pub fn set_field_type(
        &mut self,
        id: SeriesId,
        field: &str,
        ty: FieldType,
    ) -> Result<(), FieldType> {
        let Some(entry) = self.entries.get_mut(id as usize) else {
            return Ok(());
        };
        match entry.fields.get(field) {
            Some(existing) if *existing != ty => Err(*existing),
            Some(_) => Ok(()),
            None => {
                entry.fields.insert(field.to_string(), ty);
                self.dirty = true;
                Ok(())
            }
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

    pub fn entries(&self) -> &[SeriesEntry] {
        &self.entries
    }

    fn push(&mut self, entry: SeriesEntry) {
        let id = self.entries.len() as SeriesId;
        let hash = self.hash_of(&entry.key.measurement, &entry.key.tags);
        self.by_hash.entry(hash).or_default().push(id);
        self.by_measurement
            .entry(entry.key.measurement.clone())
            .or_default()
            .push(id);
        self.entries.push(entry);
    }

    /// Loads `dir/series.idx`, or an empty index when the file does not exist.
    pub fn load(dir: &Path) -> Result<SeriesIndex, TsdbError> {
        let path = dir.join(FILE_NAME);
        let bytes = match fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(SeriesIndex::new()),
            Err(e) => return Err(TsdbError::io("reading series index", &path)(e)),
        };
        decode(&bytes).map_err(|e| TsdbError::corrupt(&path, e.to_string()))
    }

    /// Writes the index durably and clears `dirty`.
    pub fn save(&mut self, dir: &Path) -> Result<(), TsdbError> {
        write_atomically(dir, FILE_NAME, &self.encode())?;
        self.dirty = false;
        Ok(())
    }

    fn encode(&self) -> Vec<u8> {
        let mut out = MAGIC.to_vec();
        let mut header = Vec::new();
        put_ivarint(&mut header, self.cutoff_ns);
        put_uvarint(&mut header, self.entries.len() as u64);
        frame(&mut out, &header);
        let mut rec = Vec::new();
        for e in &self.entries {
            rec.clear();
            put_str(&mut rec, &e.key.measurement);
            put_uvarint(&mut rec, e.key.tags.len() as u64);
            for (k, v) in &e.key.tags {
                put_str(&mut rec, k);
                put_str(&mut rec, v);
            }
            put_uvarint(&mut rec, e.fields.len() as u64);
            for (name, ty) in &e.fields {
                put_str(&mut rec, name);
                rec.push(ty.to_byte());
            }
            frame(&mut out, &rec);
        }
        out
    }
}

fn decode(bytes: &[u8]) -> Result<SeriesIndex, DecodeError> {
    let mut r = Reader::new(bytes);
    if r.bytes(MAGIC.len())? != MAGIC {
        return Err(DecodeError("not a series index (bad magic)"));
    }
    let mut next = || match read_frame(&mut r) {
        Frame::Ok(p) => Ok(p),
        Frame::Bad(why) => Err(DecodeError(why)),
        Frame::End => Err(DecodeError("series index ends early")),
    };
    let mut h = Reader::new(next()?);
    let mut index = SeriesIndex::new();
    index.cutoff_ns = h.ivarint()?;
    let count = h.uvarint()?;
    for _ in 0..count {
        let mut rec = Reader::new(next()?);
        let measurement = rec.str()?;
        let mut tags = BTreeMap::new();
        for _ in 0..rec.len()? {
            let k = rec.str()?;
            tags.insert(k, rec.str()?);
        }
        let mut fields = BTreeMap::new();
        for _ in 0..rec.len()? {
            let name = rec.str()?;
            let ty = FieldType::from_byte(rec.u8()?).ok_or(DecodeError("unknown field type"))?;
            fields.insert(name, ty);
        }
        let key = SeriesKey { measurement, tags };
        if index.get(&key).is_some() {
            return Err(DecodeError("series listed twice"));
        }
        index.push(SeriesEntry { key, fields });
    }
    if !matches!(read_frame(&mut r), Frame::End) {
        return Err(DecodeError("trailing data after the last series"));
    }
    Ok(index)
}

#[cfg(test)]
mod tests {
    use super::*;

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
            loaded.entry(ia).map(|e| e.fields.clone()),
            Some([("v".to_string(), FieldType::Float)].into())
        );
        assert_eq!(loaded.measurement("cpu"), &[ia]);
    }

    #[test]
    fn damaged_index_is_corruption() {
        let tmp = tempfile::tempdir().unwrap();
        let mut idx = SeriesIndex::new();
        idx.get_or_insert("cpu", &BTreeMap::new());
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
