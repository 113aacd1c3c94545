//! The write-ahead log: every accepted batch is appended as one CRC-framed record and fsync'd
//! before `write` returns, so an acknowledged batch survives a crash. Appending and syncing are
//! separate steps ([`Wal::write_record`], then `sync_data` on [`Wal::file`]), so that the store
//! can sync the records of concurrent writers together (group commit, see `db.rs`).
//!
//! The log is a sequence of segment files `wal/<seq>.wal`. A flush rotates to a new segment,
//! writes the older segments' data into a block file and then deletes them. At open, segments
//! are replayed in order; a torn or damaged tail (a crash mid-append) ends a segment's replay
//! and is cut off, so every complete batch before it is recovered and later appends do not
//! land behind garbage.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::codec::{
    frame, put_ivarint, put_str, put_uvarint, read_frame, DecodeError, Frame, Reader,
};
use crate::error::TsdbError;
use crate::model::{FieldType, FieldValue, Name, NameMap, Point};
use crate::sync_dir;

const MAGIC: &[u8; 8] = b"PTSWAL01";
const RECORD_BATCH: u8 = 1;
/// Largest encoded batch; frames carry a u32 length.
const MAX_RECORD: usize = 1 << 30;

/// The open, appendable WAL.
pub struct Wal {
    dir: PathBuf,
    seq: u64,
    /// Shared with whoever syncs the segment while the next records are being written.
    file: Arc<File>,
    len: u64,
    /// Set when an append failed and could not be undone: appending more would put
    /// acknowledged data behind a damaged record, so the log refuses until reopened.
    broken: bool,
}

/// One segment's recovered batches.
pub struct Replayed {
    pub batches: Vec<Vec<Point>>,
}

impl Wal {
    /// Opens the WAL in `dir`, deleting segments with `seq <= covered` (their data is already
    /// in block files), replaying the rest and starting a fresh segment for new appends.
    pub fn open(dir: &Path, covered: u64) -> Result<(Wal, Vec<Replayed>), TsdbError> {
        fs::create_dir_all(dir).map_err(TsdbError::io("creating wal directory", dir))?;
        let mut replayed = Vec::new();
        let mut last_seq = covered;
        for (seq, path) in list_segments(dir)? {
            last_seq = last_seq.max(seq);
            if seq <= covered {
                fs::remove_file(&path)
                    .map_err(TsdbError::io("removing flushed wal segment", &path))?;
                continue;
            }
            let batches = replay_segment(&path)?;
            replayed.push(Replayed { batches });
        }
        sync_dir(dir)?;
        let seq = last_seq + 1;
        let (file, len) = create_segment(dir, seq)?;
        Ok((
            Wal {
                dir: dir.to_path_buf(),
                seq,
                file: Arc::new(file),
                len,
                broken: false,
            },
            replayed,
        ))
    }

    /// Appends one batch and fsyncs it.
    #[cfg(test)]
    pub fn append(&mut self, points: &[Point]) -> Result<(), TsdbError> {
        let framed = Wal::encode(points)?;
        self.write_record(&framed)?;
        self.file
            .sync_data()
            .map_err(TsdbError::io("syncing wal", self.path()))
    }

    /// A batch as one framed WAL record; done before taking the writer's lock, so that
    /// concurrent writers encode in parallel and only write and sync in turn.
    pub fn encode(points: &[Point]) -> Result<Vec<u8>, TsdbError> {
        let mut payload = Vec::with_capacity(64 * points.len());
        encode_batch(&mut payload, points);
        if payload.len() > MAX_RECORD {
            return Err(TsdbError::Invalid(format!(
                "batch encodes to {} bytes, more than the {MAX_RECORD} bytes one write may hold; split it",
                payload.len()
            )));
        }
        let mut framed = Vec::with_capacity(payload.len() + 8);
        frame(&mut framed, &payload);
        Ok(framed)
    }

    /// Writes a record made by [`Wal::encode`] to the current segment, without syncing it:
    /// it is durable once `sync_data` on [`Wal::file`] returns after this. A failed write is
    /// cut off again, so the next record starts at a frame boundary.
    pub fn write_record(&mut self, framed: &[u8]) -> Result<(), TsdbError> {
        let path = self.path();
        if self.broken {
            return Err(TsdbError::Io {
                context: "appending to wal after an earlier failed write",
                path,
                source: std::io::Error::other("reopen the store to recover"),
            });
        }
        let mut file = &*self.file;
        let result = file
            .write_all(framed)
            .map_err(TsdbError::io("appending to wal", &path));
        if result.is_err() {
            let undone = file
                .set_len(self.len)
                .and_then(|()| file.seek(SeekFrom::Start(self.len)).map(|_| ()))
                .and_then(|()| file.sync_data());
            if undone.is_err() {
                self.broken = true;
            }
            return result;
        }
        self.len += framed.len() as u64;
        Ok(())
    }

    /// The current segment, for syncing what [`Wal::write_record`] wrote.
    pub fn file(&self) -> Arc<File> {
        self.file.clone()
    }

    /// The path of the current segment.
    pub fn path(&self) -> PathBuf {
        segment_path(&self.dir, self.seq)
    }

    /// Starts a new segment; returns the sequence number of the one just closed.
    pub fn rotate(&mut self) -> Result<u64, TsdbError> {
        let old = self.seq;
        let (file, len) = create_segment(&self.dir, old + 1)?;
        self.file = Arc::new(file);
        self.len = len;
        self.seq = old + 1;
        self.broken = false;
        Ok(old)
    }

    /// Bytes of all segments.
    pub fn bytes_on_disk(&self) -> u64 {
        list_segments(&self.dir)
            .map(|segs| {
                segs.iter()
                    .filter_map(|(_, p)| fs::metadata(p).ok())
                    .map(|m| m.len())
                    .sum()
            })
            .unwrap_or(0)
    }
}

fn segment_path(dir: &Path, seq: u64) -> PathBuf {
    dir.join(format!("{seq:016}.wal"))
}

fn list_segments(dir: &Path) -> Result<Vec<(u64, PathBuf)>, TsdbError> {
    let mut out = BTreeMap::new();
    for entry in fs::read_dir(dir).map_err(TsdbError::io("listing wal directory", dir))? {
        let entry = entry.map_err(TsdbError::io("listing wal directory", dir))?;
        let name = entry.file_name();
        let Some(stem) = name.to_str().and_then(|n| n.strip_suffix(".wal")) else {
            continue;
        };
        if let Ok(seq) = stem.parse::<u64>() {
            out.insert(seq, entry.path());
        }
    }
    Ok(out.into_iter().collect())
}

fn create_segment(dir: &Path, seq: u64) -> Result<(File, u64), TsdbError> {
    let path = segment_path(dir, seq);
    let mut file = OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .open(&path)
        .map_err(TsdbError::io("creating wal segment", &path))?;
    file.write_all(MAGIC)
        .and_then(|()| file.sync_all())
        .map_err(TsdbError::io("writing wal segment header", &path))?;
    sync_dir(dir)?;
    Ok((file, MAGIC.len() as u64))
}

/// Reads one segment; cuts off a torn or damaged tail so the file ends at a frame boundary.
fn replay_segment(path: &Path) -> Result<Vec<Vec<Point>>, TsdbError> {
    let mut bytes = Vec::new();
    File::open(path)
        .and_then(|mut f| f.read_to_end(&mut bytes))
        .map_err(TsdbError::io("reading wal segment", path))?;
    if bytes.len() < MAGIC.len() {
        // Crashed while creating the segment: nothing was acknowledged in it.
        tracing::warn!(path = %path.display(), "wal segment without complete header, ignoring it");
        return Ok(Vec::new());
    }
    if &bytes[..MAGIC.len()] != MAGIC {
        return Err(TsdbError::corrupt(path, "not a wal segment (bad magic)"));
    }
    let mut r = Reader::new(&bytes[MAGIC.len()..]);
    let mut batches = Vec::new();
    let mut good_end = MAGIC.len();
    loop {
        match read_frame(&mut r) {
            Frame::End => break,
            Frame::Ok(payload) => {
                let batch = decode_batch(payload).map_err(|e| {
                    TsdbError::corrupt(path, format!("wal record at byte {good_end}: {e}"))
                })?;
                batches.push(batch);
                good_end = MAGIC.len() + r.position();
            }
            Frame::Bad(why) => {
                tracing::warn!(
                    path = %path.display(),
                    offset = good_end,
                    dropped_bytes = bytes.len() - good_end,
                    reason = why,
                    "cutting off torn wal tail"
                );
                let f = OpenOptions::new()
                    .write(true)
                    .open(path)
                    .map_err(TsdbError::io("opening wal segment to cut its tail", path))?;
                f.set_len(good_end as u64)
                    .and_then(|()| f.sync_all())
                    .map_err(TsdbError::io("cutting torn wal tail", path))?;
                break;
            }
        }
    }
    Ok(batches)
}

fn encode_batch(out: &mut Vec<u8>, points: &[Point]) {
    out.push(RECORD_BATCH);
    put_uvarint(out, points.len() as u64);
    for p in points {
        put_str(out, &p.measurement);
        put_uvarint(out, p.tags.len() as u64);
        for (k, v) in &p.tags {
            put_str(out, k);
            put_str(out, v);
        }
        put_ivarint(out, p.timestamp_ns);
        put_uvarint(out, p.fields.len() as u64);
        for (name, value) in &p.fields {
            put_str(out, name);
            out.push(value.field_type().to_byte());
            match value {
                FieldValue::Float(f) => out.extend_from_slice(&f.to_bits().to_le_bytes()),
                FieldValue::Integer(i) => put_ivarint(out, *i),
                FieldValue::Unsigned(u) => put_uvarint(out, *u),
                FieldValue::Boolean(b) => out.push(u8::from(*b)),
                FieldValue::String(s) => put_str(out, s),
            }
        }
    }
}

fn decode_batch(payload: &[u8]) -> Result<Vec<Point>, DecodeError> {
    let mut r = Reader::new(payload);
    if r.u8()? != RECORD_BATCH {
        return Err(DecodeError("unknown wal record type"));
    }
    let n = r.len()?;
    let mut points = Vec::with_capacity(n);
    for _ in 0..n {
        let measurement = r.str_ref()?.into();
        let n_tags = r.len()?;
        let mut tags = NameMap::with_capacity(n_tags.min(64));
        for _ in 0..n_tags {
            let k: Name = r.str_ref()?.into();
            tags.insert(k, r.str_ref()?.into());
        }
        let timestamp_ns = r.ivarint()?;
        let n_fields = r.len()?;
        let mut fields = NameMap::with_capacity(n_fields.min(64));
        for _ in 0..n_fields {
            let name: Name = r.str_ref()?.into();
            let ty = FieldType::from_byte(r.u8()?).ok_or(DecodeError("unknown field type"))?;
            let value = match ty {
                FieldType::Float => FieldValue::Float(f64::from_bits(r.u64_le()?)),
                FieldType::Integer => FieldValue::Integer(r.ivarint()?),
                FieldType::Unsigned => FieldValue::Unsigned(r.uvarint()?),
                FieldType::Boolean => FieldValue::Boolean(r.u8()? != 0),
                FieldType::String => FieldValue::String(r.str()?),
            };
            fields.insert(name, value);
        }
        points.push(Point {
            measurement,
            tags,
            fields,
            timestamp_ns,
        });
    }
    if !r.is_empty() {
        return Err(DecodeError("trailing bytes after wal record"));
    }
    Ok(points)
}

/// Deletes every segment in `dir` with `seq <= upto`: segments a block file covers. Needs no
/// hold on the [`Wal`], which only writes to a newer segment.
pub fn remove_upto(dir: &Path, upto: u64) -> Result<(), TsdbError> {
    for (seq, path) in list_segments(dir)? {
        if seq <= upto {
            fs::remove_file(&path).map_err(TsdbError::io("removing flushed wal segment", &path))?;
        }
    }
    sync_dir(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn point(ts: i64) -> Point {
        Point {
            measurement: "cpu".into(),
            tags: [("host".into(), "a".into())].into(),
            fields: [
                ("f".into(), FieldValue::Float(1.5)),
                ("i".into(), FieldValue::Integer(-3)),
                ("u".into(), FieldValue::Unsigned(u64::MAX)),
                ("b".into(), FieldValue::Boolean(true)),
                ("s".into(), FieldValue::String("x y".into())),
            ]
            .into(),
            timestamp_ns: ts,
        }
    }

    #[test]
    fn batch_round_trips() {
        let batch = vec![point(1), point(i64::MIN), point(i64::MAX)];
        let mut out = Vec::new();
        encode_batch(&mut out, &batch);
        assert_eq!(decode_batch(&out), Ok(batch));
        for cut in 0..out.len() {
            assert!(decode_batch(&out[..cut]).is_err());
        }
    }

    #[test]
    fn append_rotate_replay() {
        let tmp = tempfile::tempdir().unwrap();
        let (mut wal, replayed) = Wal::open(tmp.path(), 0).unwrap();
        assert!(replayed.is_empty());
        wal.append(&[point(1)]).unwrap();
        let old = wal.rotate().unwrap();
        wal.append(&[point(2), point(3)]).unwrap();
        drop(wal);
        let (_wal, replayed) = Wal::open(tmp.path(), 0).unwrap();
        let counts: Vec<usize> = replayed
            .iter()
            .map(|r| r.batches.iter().map(Vec::len).sum())
            .collect();
        assert_eq!(counts, vec![1, 2]);
        let (_wal, replayed) = Wal::open(tmp.path(), old).unwrap();
        assert_eq!(replayed.iter().map(|r| r.batches.len()).sum::<usize>(), 1);
    }
}
