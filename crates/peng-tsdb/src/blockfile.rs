//! Immutable block files (`blocks/<id>.tsb`): compressed blocks of one series field each, an
//! index of them with min/max time, and a checksummed footer.
//!
//! A file becomes visible only complete (written as `.tmp`, fsync'd, renamed, directory
//! fsync'd). Opening reads just the footer and index; a block is read on demand with one
//! positioned read and verified against its CRC, so damage is reported, never returned.

use std::fs::{self, File};
use std::io::{BufWriter, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use crate::codec::column::{decode_block, decode_block_timestamps, encode_block};
use crate::codec::{put_ivarint, put_str, put_uvarint, DecodeError, Reader};
use crate::error::TsdbError;
use crate::index::SeriesId;
use crate::model::{FieldType, FieldValue};
use crate::sync_dir;

/// Most values in one block: bounds the work to read one value and keeps compression good.
pub const BLOCK_MAX_POINTS: usize = 1000;
const MAGIC: &[u8; 8] = b"PTSBLK01";
const END_MAGIC: &[u8; 8] = b"PTSBEND1";
const FOOTER_LEN: u64 = 24;

/// Where one block lives and what it covers.
#[derive(Debug, Clone)]
pub struct BlockEntry {
    pub series: SeriesId,
    pub field: String,
    pub ty: FieldType,
    pub count: u32,
    pub min_ts: i64,
    pub max_ts: i64,
    offset: u64,
    len: u32,
    crc: u32,
}

/// An open block file.
#[derive(Debug)]
pub struct BlockFile {
    pub id: u64,
    pub path: PathBuf,
    file: File,
    pub size: u64,
    /// Every WAL segment with a sequence number up to this is in this file or an older one.
    pub covered_wal: u64,
    /// Ids of the files this one replaces (their data is in here).
    pub replaces: Vec<u64>,
    pub entries: Vec<BlockEntry>,
    /// Newest timestamp in the file (`i64::MIN` when empty).
    pub max_ts: i64,
}

pub fn file_path(dir: &Path, id: u64) -> PathBuf {
    dir.join(format!("{id:016}.tsb"))
}

/// Ids and paths of the block files in `dir`, ascending.
pub fn list(dir: &Path) -> Result<Vec<(u64, PathBuf)>, TsdbError> {
    let mut out = Vec::new();
    for entry in fs::read_dir(dir).map_err(TsdbError::io("listing block directory", dir))? {
        let entry = entry.map_err(TsdbError::io("listing block directory", dir))?;
        let name = entry.file_name();
        let Some(stem) = name.to_str().and_then(|n| n.strip_suffix(".tsb")) else {
            continue;
        };
        if let Ok(id) = stem.parse::<u64>() {
            out.push((id, entry.path()));
        }
    }
    out.sort();
    Ok(out)
}

impl BlockFile {
    /// Opens a block file and reads its index.
    pub fn open(path: &Path, id: u64) -> Result<BlockFile, TsdbError> {
        let file = File::open(path).map_err(TsdbError::io("opening block file", path))?;
        let size = file
            .metadata()
            .map_err(TsdbError::io("reading block file size", path))?
            .len();
        let corrupt = |e: DecodeError| TsdbError::corrupt(path, e.to_string());
        if size < MAGIC.len() as u64 + FOOTER_LEN {
            return Err(TsdbError::corrupt(path, "block file too short"));
        }
        let mut head = [0u8; 8];
        file.read_exact_at(&mut head, 0)
            .map_err(TsdbError::io("reading block file", path))?;
        if &head != MAGIC {
            return Err(TsdbError::corrupt(path, "not a block file (bad magic)"));
        }
        let mut footer = [0u8; FOOTER_LEN as usize];
        file.read_exact_at(&mut footer, size - FOOTER_LEN)
            .map_err(TsdbError::io("reading block file", path))?;
        let mut f = Reader::new(&footer);
        let index_offset = f.u64_le().map_err(corrupt)?;
        let index_len = f.u32_le().map_err(corrupt)?;
        let index_crc = f.u32_le().map_err(corrupt)?;
        if f.bytes(8).map_err(corrupt)? != END_MAGIC {
            return Err(TsdbError::corrupt(
                path,
                "bad footer magic (incomplete file?)",
            ));
        }
        let data_end = size - FOOTER_LEN;
        if index_offset < MAGIC.len() as u64
            || index_offset.checked_add(u64::from(index_len)) != Some(data_end)
        {
            return Err(TsdbError::corrupt(path, "index position out of range"));
        }
        let mut index = vec![0u8; index_len as usize];
        file.read_exact_at(&mut index, index_offset)
            .map_err(TsdbError::io("reading block file", path))?;
        if crc32fast::hash(&index) != index_crc {
            return Err(TsdbError::corrupt(path, "index checksum mismatch"));
        }
        let (covered_wal, replaces, entries) =
            decode_index(&index, index_offset).map_err(corrupt)?;
        let max_ts = entries.iter().map(|e| e.max_ts).max().unwrap_or(i64::MIN);
        Ok(BlockFile {
            id,
            path: path.to_path_buf(),
            file,
            size,
            covered_wal,
            replaces,
            entries,
            max_ts,
        })
    }

    fn read_raw(&self, e: &BlockEntry) -> Result<Vec<u8>, TsdbError> {
        let mut buf = vec![0u8; e.len as usize];
        self.file
            .read_exact_at(&mut buf, e.offset)
            .map_err(TsdbError::io("reading block", &self.path))?;
        if crc32fast::hash(&buf) != e.crc {
            return Err(TsdbError::corrupt(
                &self.path,
                format!("block at byte {} fails its checksum", e.offset),
            ));
        }
        Ok(buf)
    }

    /// The values of one block.
    pub fn read(&self, e: &BlockEntry) -> Result<Vec<(i64, FieldValue)>, TsdbError> {
        let raw = self.read_raw(e)?;
        let pts = decode_block(e.ty, &raw).map_err(|err| {
            TsdbError::corrupt(&self.path, format!("block at byte {}: {err}", e.offset))
        })?;
        self.check(
            e,
            pts.len(),
            pts.first().map(|p| p.0),
            pts.last().map(|p| p.0),
        )?;
        Ok(pts)
    }

    /// The timestamps of one block.
    pub fn read_timestamps(&self, e: &BlockEntry) -> Result<Vec<i64>, TsdbError> {
        let raw = self.read_raw(e)?;
        let ts = decode_block_timestamps(&raw).map_err(|err| {
            TsdbError::corrupt(&self.path, format!("block at byte {}: {err}", e.offset))
        })?;
        self.check(e, ts.len(), ts.first().copied(), ts.last().copied())?;
        Ok(ts)
    }

    fn check(
        &self,
        e: &BlockEntry,
        n: usize,
        first: Option<i64>,
        last: Option<i64>,
    ) -> Result<(), TsdbError> {
        if n != e.count as usize || first != Some(e.min_ts) || last != Some(e.max_ts) {
            return Err(TsdbError::corrupt(
                &self.path,
                format!("block at byte {} disagrees with the index", e.offset),
            ));
        }
        Ok(())
    }
}

/// Writes a new block file; columns are added one by one and split into blocks.
pub struct BlockFileWriter {
    dir: PathBuf,
    id: u64,
    tmp: PathBuf,
    out: BufWriter<File>,
    offset: u64,
    entries: Vec<BlockEntry>,
}

impl BlockFileWriter {
    pub fn create(dir: &Path, id: u64) -> Result<BlockFileWriter, TsdbError> {
        let tmp = dir.join(format!("{id:016}.tsb.tmp"));
        let file = File::create(&tmp).map_err(TsdbError::io("creating block file", &tmp))?;
        let mut out = BufWriter::with_capacity(1 << 20, file);
        out.write_all(MAGIC)
            .map_err(TsdbError::io("writing block file", &tmp))?;
        Ok(BlockFileWriter {
            dir: dir.to_path_buf(),
            id,
            tmp,
            out,
            offset: MAGIC.len() as u64,
            entries: Vec::new(),
        })
    }

    /// Adds the values of one series field, strictly ascending in time, all of type `ty`.
    pub fn add_column(
        &mut self,
        series: SeriesId,
        field: &str,
        ty: FieldType,
        points: &[(i64, FieldValue)],
    ) -> Result<(), TsdbError> {
        for chunk in points.chunks(BLOCK_MAX_POINTS) {
            let (Some(first), Some(last)) = (chunk.first(), chunk.last()) else {
                continue;
            };
            debug_assert!(chunk.windows(2).all(|w| w[0].0 < w[1].0));
            let bytes = encode_block(ty, chunk);
            self.out
                .write_all(&bytes)
                .map_err(TsdbError::io("writing block file", &self.tmp))?;
            self.entries.push(BlockEntry {
                series,
                field: field.to_string(),
                ty,
                count: chunk.len() as u32,
                min_ts: first.0,
                max_ts: last.0,
                offset: self.offset,
                len: bytes.len() as u32,
                crc: crc32fast::hash(&bytes),
            });
            self.offset += bytes.len() as u64;
        }
        Ok(())
    }

    /// Writes index and footer, makes the file durable under its final name and opens it.
    pub fn finish(mut self, covered_wal: u64, replaces: &[u64]) -> Result<BlockFile, TsdbError> {
        let index = encode_index(covered_wal, replaces, &self.entries);
        let mut footer = Vec::with_capacity(FOOTER_LEN as usize);
        footer.extend_from_slice(&self.offset.to_le_bytes());
        footer.extend_from_slice(&(index.len() as u32).to_le_bytes());
        footer.extend_from_slice(&crc32fast::hash(&index).to_le_bytes());
        footer.extend_from_slice(END_MAGIC);
        self.out
            .write_all(&index)
            .and_then(|()| self.out.write_all(&footer))
            .and_then(|()| self.out.flush())
            .map_err(TsdbError::io("writing block file", &self.tmp))?;
        let file = self
            .out
            .into_inner()
            .map_err(|e| TsdbError::io("writing block file", &self.tmp)(e.into_error()))?;
        file.sync_all()
            .map_err(TsdbError::io("syncing block file", &self.tmp))?;
        drop(file);
        let path = file_path(&self.dir, self.id);
        fs::rename(&self.tmp, &path)
            .map_err(TsdbError::io("renaming block file into place", &path))?;
        sync_dir(&self.dir)?;
        BlockFile::open(&path, self.id)
    }

    /// Removes the unfinished file.
    pub fn abandon(self) {
        let tmp = self.tmp.clone();
        drop(self);
        let _ = fs::remove_file(tmp);
    }
}

fn encode_index(covered_wal: u64, replaces: &[u64], entries: &[BlockEntry]) -> Vec<u8> {
    let mut out = Vec::with_capacity(entries.len() * 32 + 16);
    put_uvarint(&mut out, covered_wal);
    put_uvarint(&mut out, replaces.len() as u64);
    for id in replaces {
        put_uvarint(&mut out, *id);
    }
    put_uvarint(&mut out, entries.len() as u64);
    for e in entries {
        put_uvarint(&mut out, u64::from(e.series));
        put_str(&mut out, &e.field);
        out.push(e.ty.to_byte());
        put_uvarint(&mut out, u64::from(e.count));
        put_ivarint(&mut out, e.min_ts);
        put_ivarint(&mut out, e.max_ts);
        put_uvarint(&mut out, e.offset);
        put_uvarint(&mut out, u64::from(e.len));
        out.extend_from_slice(&e.crc.to_le_bytes());
    }
    out
}

type DecodedIndex = (u64, Vec<u64>, Vec<BlockEntry>);

fn decode_index(bytes: &[u8], data_end: u64) -> Result<DecodedIndex, DecodeError> {
    let mut r = Reader::new(bytes);
    let covered = r.uvarint()?;
    let replaces = (0..r.len()?)
        .map(|_| r.uvarint())
        .collect::<Result<Vec<_>, _>>()?;
    let n = r.len()?;
    let mut entries = Vec::with_capacity(n);
    for _ in 0..n {
        let series =
            u32::try_from(r.uvarint()?).map_err(|_| DecodeError("series id out of range"))?;
        let field = r.str()?;
        let ty = FieldType::from_byte(r.u8()?).ok_or(DecodeError("unknown field type"))?;
        let count =
            u32::try_from(r.uvarint()?).map_err(|_| DecodeError("block count out of range"))?;
        let min_ts = r.ivarint()?;
        let max_ts = r.ivarint()?;
        let offset = r.uvarint()?;
        let len =
            u32::try_from(r.uvarint()?).map_err(|_| DecodeError("block length out of range"))?;
        let crc = r.u32_le()?;
        if count == 0
            || min_ts > max_ts
            || offset < MAGIC.len() as u64
            || offset + u64::from(len) > data_end
        {
            return Err(DecodeError("block entry out of range"));
        }
        entries.push(BlockEntry {
            series,
            field,
            ty,
            count,
            min_ts,
            max_ts,
            offset,
            len,
            crc,
        });
    }
    if !r.is_empty() {
        return Err(DecodeError("trailing bytes after block index"));
    }
    Ok((covered, replaces, entries))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_open_read() {
        let tmp = tempfile::tempdir().unwrap();
        let mut w = BlockFileWriter::create(tmp.path(), 7).unwrap();
        let pts: Vec<(i64, FieldValue)> = (0..2500)
            .map(|i| (i * 10, FieldValue::Integer(i)))
            .collect();
        w.add_column(3, "n", FieldType::Integer, &pts).unwrap();
        w.add_column(
            4,
            "s",
            FieldType::String,
            &[(5, FieldValue::String("x".into()))],
        )
        .unwrap();
        let f = w.finish(12, &[1, 2]).unwrap();
        let f2 = BlockFile::open(&file_path(tmp.path(), 7), 7).unwrap();
        for f in [f, f2] {
            assert_eq!(
                (f.covered_wal, f.replaces.clone(), f.entries.len(), f.max_ts),
                (12, vec![1, 2], 4, 24990)
            );
            let mut all = Vec::new();
            for e in f.entries.iter().filter(|e| e.series == 3) {
                all.extend(f.read(e).unwrap());
            }
            assert_eq!(all, pts);
            assert_eq!(f.read_timestamps(&f.entries[3]).unwrap(), vec![5]);
        }
    }

    #[test]
    fn any_damage_is_an_error_not_a_panic() {
        let tmp = tempfile::tempdir().unwrap();
        let mut w = BlockFileWriter::create(tmp.path(), 1).unwrap();
        let pts: Vec<(i64, FieldValue)> =
            (0..20).map(|i| (i, FieldValue::Float(i as f64))).collect();
        w.add_column(0, "v", FieldType::Float, &pts).unwrap();
        w.finish(1, &[]).unwrap();
        let path = file_path(tmp.path(), 1);
        let good = fs::read(&path).unwrap();
        for i in 0..good.len() {
            let mut bad = good.clone();
            bad[i] ^= 0x41;
            fs::write(&path, &bad).unwrap();
            if let Ok(f) = BlockFile::open(&path, 1) {
                let read = f
                    .entries
                    .iter()
                    .map(|e| f.read(e))
                    .collect::<Result<Vec<_>, _>>();
                assert!(read.is_err(), "flipped byte {i} went unnoticed");
            }
        }
        for cut in 0..good.len() {
            fs::write(&path, &good[..cut]).unwrap();
            assert!(BlockFile::open(&path, 1).is_err());
        }
    }
}
