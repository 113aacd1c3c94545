//! Immutable block files (`blocks/<id>.tsb`): compressed blocks of one series field each, an
//! index of them with min/max time, and a checksummed footer.
//!
//! A file becomes visible only complete (written as `.tmp`, fsync'd, renamed, directory
//! fsync'd). Opening reads just the footer and index; a block is read on demand with one
//! positioned read (merges read a file front to back instead) and verified against its CRC,
//! so damage is reported, never returned. Entries list blocks by series id and field name, so
//! a series field's blocks are found by binary search in each file.

use std::collections::HashMap;
use std::fs::{self, File};
use std::io::{BufWriter, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use crate::codec::column::{decode_block_into, decode_block_timestamps, encode_block_into};
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

/// Where one block lives and what it covers. The field is a position in the file's table of
/// field names ([`BlockFile::fields`]), so an entry carries no string of its own.
#[derive(Debug, Clone, Copy)]
pub struct BlockEntry {
    pub series: SeriesId,
    /// Position of the field's name in [`BlockFile::fields`].
    pub field: u32,
    pub ty: FieldType,
    pub count: u32,
    pub min_ts: i64,
    pub max_ts: i64,
    offset: u64,
    len: u32,
    crc: u32,
}

impl BlockEntry {
    /// Where the entry sorts: by series, then field name (the table is sorted by name).
    fn key(&self) -> (SeriesId, u32) {
        (self.series, self.field)
    }
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
    /// The distinct field names of the file, sorted; entries refer to them by position.
    pub fields: Vec<Box<str>>,
    /// The blocks, ordered by series id and field name (as every writer lists them), and in
    /// file order within one series field.
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
        let decoded = decode_index(&index, index_offset).map_err(corrupt)?;
        drop(index);
        Ok(BlockFile::new(id, path, file, size, decoded))
    }

    fn new(id: u64, path: &Path, file: File, size: u64, decoded: DecodedIndex) -> BlockFile {
        let DecodedIndex {
            covered_wal,
            replaces,
            fields,
            mut entries,
        } = decoded;
        if !entries.windows(2).all(|w| w[0].key() <= w[1].key()) {
            // Not written by this engine (which lists blocks in this order): look blocks up
            // through a sorted copy of the entries. The sort is stable, so the blocks of one
            // series field keep their order in the file.
            tracing::warn!(path = %path.display(), "block index not sorted by series and field; sorting it in memory");
            entries.sort_by_key(BlockEntry::key);
        }
        let max_ts = entries.iter().map(|e| e.max_ts).max().unwrap_or(i64::MIN);
        BlockFile {
            id,
            path: path.to_path_buf(),
            file,
            size,
            covered_wal,
            replaces,
            fields,
            entries,
            max_ts,
        }
    }

    /// The name of an entry's field.
    pub fn field_name(&self, e: &BlockEntry) -> &str {
        self.fields.get(e.field as usize).map_or("", |n| n)
    }

    /// The blocks of one series field, in file order (found by binary search).
    pub fn blocks(&self, series: SeriesId, field: &str) -> &[BlockEntry] {
        let Ok(f) = self.fields.binary_search_by(|n| (**n).cmp(field)) else {
            return &[];
        };
        let key = (series, f as u32);
        let lo = self.entries.partition_point(|e| e.key() < key);
        let n = self.entries[lo..].partition_point(|e| e.key() == key);
        &self.entries[lo..lo + n]
    }

    fn read_raw(&self, e: &BlockEntry) -> Result<Vec<u8>, TsdbError> {
        let mut buf = vec![0u8; e.len as usize];
        self.file
            .read_exact_at(&mut buf, e.offset)
            .map_err(TsdbError::io("reading block", &self.path))?;
        self.verify(e, &buf)?;
        Ok(buf)
    }

    fn verify(&self, e: &BlockEntry, raw: &[u8]) -> Result<(), TsdbError> {
        if crc32fast::hash(raw) != e.crc {
            return Err(TsdbError::corrupt(
                &self.path,
                format!("block at byte {} fails its checksum", e.offset),
            ));
        }
        Ok(())
    }

    /// The values of one block.
    pub fn read(&self, e: &BlockEntry) -> Result<Vec<(i64, FieldValue)>, TsdbError> {
        let raw = self.read_raw(e)?;
        let mut pts = Vec::with_capacity(e.count as usize);
        self.decode(e, &raw, &mut pts)?;
        Ok(pts)
    }

    /// Decodes a block read elsewhere (verified against its CRC first) and appends its values
    /// to `out`.
    fn decode(
        &self,
        e: &BlockEntry,
        raw: &[u8],
        out: &mut Vec<(i64, FieldValue)>,
    ) -> Result<(), TsdbError> {
        let start = out.len();
        decode_block_into(e.ty, raw, out).map_err(|err| {
            TsdbError::corrupt(&self.path, format!("block at byte {}: {err}", e.offset))
        })?;
        let pts = &out[start..];
        self.check(
            e,
            pts.len(),
            pts.first().map(|p| p.0),
            pts.last().map(|p| p.0),
        )
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

    /// A reader that visits blocks in file order through a large read-ahead window (for
    /// merges, which go through a file's entries in order) instead of one read per block.
    pub fn sequential(&self) -> SequentialReader<'_> {
        SequentialReader {
            file: self,
            window: Vec::new(),
            start: 0,
        }
    }
}

/// Bytes read at once by a [`SequentialReader`].
const READ_AHEAD: u64 = 1 << 20;

/// Reads the blocks of one file front to back; see [`BlockFile::sequential`]. Uses positioned
/// reads, so it shares the file with queries.
pub struct SequentialReader<'a> {
    file: &'a BlockFile,
    window: Vec<u8>,
    /// File offset of `window[0]`.
    start: u64,
}

impl SequentialReader<'_> {
    /// Appends the values of one block of this file to `out`. A block in the current window
    /// costs no read; otherwise the window moves to it.
    pub fn read_into(
        &mut self,
        e: &BlockEntry,
        out: &mut Vec<(i64, FieldValue)>,
    ) -> Result<(), TsdbError> {
        let len = u64::from(e.len);
        let in_window =
            e.offset >= self.start && e.offset + len <= self.start + self.window.len() as u64;
        if !in_window {
            // Entries were checked to lie within the file at open.
            let want = len.max(READ_AHEAD.min(self.file.size.saturating_sub(e.offset)));
            self.window.resize(want as usize, 0);
            self.start = e.offset;
            if let Err(err) = self.file.file.read_exact_at(&mut self.window, e.offset) {
                self.window.clear();
                return Err(TsdbError::io("reading block file", &self.file.path)(err));
            }
        }
        let at = (e.offset - self.start) as usize;
        let raw = &self.window[at..at + e.len as usize];
        self.file.verify(e, raw)?;
        self.file.decode(e, raw, out)
    }
}

/// Writes a new block file; columns are added one by one, in order of series id and then
/// field name, and split into blocks.
pub struct BlockFileWriter {
    dir: PathBuf,
    id: u64,
    tmp: PathBuf,
    out: BufWriter<File>,
    offset: u64,
    /// Field names in order of first use, and their positions.
    names: Vec<Box<str>>,
    name_pos: HashMap<Box<str>, u32>,
    entries: Vec<BlockEntry>,
    /// The last column added, to check the order.
    last: Option<(SeriesId, u32)>,
    buf: Vec<u8>,
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
            names: Vec::new(),
            name_pos: HashMap::new(),
            entries: Vec::new(),
            last: None,
            buf: Vec::new(),
        })
    }

    fn field_pos(&mut self, field: &str) -> u32 {
        if let Some(p) = self.name_pos.get(field) {
            return *p;
        }
        let p = self.names.len() as u32;
        self.names.push(field.into());
        self.name_pos.insert(field.into(), p);
        p
    }

    /// Adds the values of one series field, strictly ascending in time, all of type `ty`.
    /// Columns come in order of series id and then field name, each once.
    pub fn add_column(
        &mut self,
        series: SeriesId,
        field: &str,
        ty: FieldType,
        points: &[(i64, FieldValue)],
    ) -> Result<(), TsdbError> {
        if points.is_empty() {
            return Ok(());
        }
        let pos = self.field_pos(field);
        if let Some((s, f)) = self.last {
            let in_order = s < series || (s == series && *self.names[f as usize] < *field);
            if !in_order {
                return Err(TsdbError::Invalid(format!(
                    "block file columns out of order: series {series} field '{field}' after series {s} field '{}'",
                    self.names[f as usize]
                )));
            }
        }
        self.last = Some((series, pos));
        for chunk in points.chunks(BLOCK_MAX_POINTS) {
            let (Some(first), Some(last)) = (chunk.first(), chunk.last()) else {
                continue;
            };
            debug_assert!(chunk.windows(2).all(|w| w[0].0 < w[1].0));
            self.buf.clear();
            encode_block_into(ty, chunk, &mut self.buf);
            self.out
                .write_all(&self.buf)
                .map_err(TsdbError::io("writing block file", &self.tmp))?;
            self.entries.push(BlockEntry {
                series,
                field: pos,
                ty,
                count: chunk.len() as u32,
                min_ts: first.0,
                max_ts: last.0,
                offset: self.offset,
                len: self.buf.len() as u32,
                crc: crc32fast::hash(&self.buf),
            });
            self.offset += self.buf.len() as u64;
        }
        Ok(())
    }

    /// Writes index and footer, makes the file durable under its final name and opens it
    /// (from the entries in memory: the index is not read back).
    pub fn finish(mut self, covered_wal: u64, replaces: &[u64]) -> Result<BlockFile, TsdbError> {
        // Number the field names in sorted order, so that entries sort by (series, name).
        let mut order: Vec<u32> = (0..self.names.len() as u32).collect();
        order.sort_by(|a, b| self.names[*a as usize].cmp(&self.names[*b as usize]));
        let mut new_pos = vec![0u32; order.len()];
        for (new, old) in order.iter().enumerate() {
            new_pos[*old as usize] = new as u32;
        }
        let mut names = std::mem::take(&mut self.names);
        let mut sorted: Vec<Box<str>> = Vec::with_capacity(names.len());
        for old in &order {
            sorted.push(std::mem::take(&mut names[*old as usize]));
        }
        let mut entries = std::mem::take(&mut self.entries);
        for e in &mut entries {
            e.field = new_pos[e.field as usize];
        }
        let index = encode_index(covered_wal, replaces, &sorted, &entries);
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
        let size = self.offset + index.len() as u64 + FOOTER_LEN;
        drop(index);
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
        let file = File::open(&path).map_err(TsdbError::io("opening block file", &path))?;
        let decoded = DecodedIndex {
            covered_wal,
            replaces: replaces.to_vec(),
            fields: sorted,
            entries,
        };
        Ok(BlockFile::new(self.id, &path, file, size, decoded))
    }

    /// Removes the unfinished file.
    pub fn abandon(self) {
        let tmp = self.tmp.clone();
        drop(self);
        let _ = fs::remove_file(tmp);
    }
}

fn encode_index(
    covered_wal: u64,
    replaces: &[u64],
    fields: &[Box<str>],
    entries: &[BlockEntry],
) -> Vec<u8> {
    let mut out = Vec::with_capacity(entries.len() * 32 + 16);
    put_uvarint(&mut out, covered_wal);
    put_uvarint(&mut out, replaces.len() as u64);
    for id in replaces {
        put_uvarint(&mut out, *id);
    }
    put_uvarint(&mut out, entries.len() as u64);
    for e in entries {
        put_uvarint(&mut out, u64::from(e.series));
        put_str(&mut out, fields.get(e.field as usize).map_or("", |n| n));
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

struct DecodedIndex {
    covered_wal: u64,
    replaces: Vec<u64>,
    /// Sorted, distinct.
    fields: Vec<Box<str>>,
    entries: Vec<BlockEntry>,
}

fn decode_index(bytes: &[u8], data_end: u64) -> Result<DecodedIndex, DecodeError> {
    let mut r = Reader::new(bytes);
    let covered_wal = r.uvarint()?;
    let replaces = (0..r.len()?)
        .map(|_| r.uvarint())
        .collect::<Result<Vec<_>, _>>()?;
    let n = r.len()?;
    let mut entries = Vec::with_capacity(n);
    // Field names in order of first use; entries are renumbered once they are sorted.
    let mut names: Vec<&str> = Vec::new();
    let mut name_pos: HashMap<&str, u32> = HashMap::new();
    let mut last: Option<(&str, u32)> = None;
    for _ in 0..n {
        let series =
            u32::try_from(r.uvarint()?).map_err(|_| DecodeError("series id out of range"))?;
        let name = r.str_ref()?;
        let field = match last {
            Some((l, p)) if l == name => p,
            _ => {
                let p = *name_pos.entry(name).or_insert_with(|| {
                    names.push(name);
                    names.len() as u32 - 1
                });
                last = Some((name, p));
                p
            }
        };
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
            || offset
                .checked_add(u64::from(len))
                .is_none_or(|end| end > data_end)
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
    let mut order: Vec<u32> = (0..names.len() as u32).collect();
    order.sort_by_key(|p| names[*p as usize]);
    let mut new_pos = vec![0u32; order.len()];
    for (new, old) in order.iter().enumerate() {
        new_pos[*old as usize] = new as u32;
    }
    for e in &mut entries {
        e.field = new_pos[e.field as usize];
    }
    let fields = order
        .iter()
        .map(|p| Box::from(names[*p as usize]))
        .collect();
    Ok(DecodedIndex {
        covered_wal,
        replaces,
        fields,
        entries,
    })
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
    fn the_sequential_reader_reads_what_positioned_reads_do() {
        let tmp = tempfile::tempdir().unwrap();
        let mut w = BlockFileWriter::create(tmp.path(), 2).unwrap();
        for s in 0..300u32 {
            let pts: Vec<(i64, FieldValue)> = (0..(s as i64 % 7) * 400 + 1)
                .map(|i| (i, FieldValue::String(format!("{s}-{i}"))))
                .collect();
            w.add_column(s, "v", FieldType::String, &pts).unwrap();
        }
        let f = w.finish(1, &[]).unwrap();
        assert!(f.size > 2 * READ_AHEAD, "spans several windows: {}", f.size);
        let mut forward = f.sequential();
        let mut backward = f.sequential();
        for (a, b) in f.entries.iter().zip(f.entries.iter().rev()) {
            let mut got = Vec::new();
            forward.read_into(a, &mut got).unwrap();
            assert_eq!(got, f.read(a).unwrap());
            got.clear();
            backward.read_into(b, &mut got).unwrap();
            assert_eq!(got, f.read(b).unwrap());
        }
    }

    #[test]
    fn blocks_are_found_by_series_and_field() {
        let tmp = tempfile::tempdir().unwrap();
        let mut w = BlockFileWriter::create(tmp.path(), 1).unwrap();
        let col = |t: i64| vec![(t, FieldValue::Integer(t))];
        for s in [0, 2, 5] {
            for f in ["a", "b", "zz"] {
                w.add_column(s, f, FieldType::Integer, &col(i64::from(s)))
                    .unwrap();
            }
        }
        let err = w
            .add_column(5, "b", FieldType::Integer, &col(9))
            .unwrap_err();
        assert_eq!(err.kind(), peng_core::ErrorKind::Invalid);
        let f = w.finish(1, &[]).unwrap();
        assert_eq!(
            &*f.fields,
            &["a".into(), "b".into(), "zz".into()] as &[Box<str>]
        );
        for s in [0, 2, 5] {
            for name in ["a", "b", "zz"] {
                let found = f.blocks(s, name);
                assert_eq!(found.len(), 1);
                assert_eq!((found[0].series, f.field_name(&found[0])), (s, name));
            }
        }
        assert!(f.blocks(1, "a").is_empty() && f.blocks(2, "c").is_empty());
        assert!(f.blocks(6, "a").is_empty());
    }

    /// A file whose index is not in (series, field) order (this engine never writes one) is
    /// still read: its entries are sorted in memory, blocks of one field keeping their order.
    #[test]
    fn an_unsorted_index_is_sorted_in_memory() {
        let tmp = tempfile::tempdir().unwrap();
        let path = file_path(tmp.path(), 3);
        let mut bytes = MAGIC.to_vec();
        let names: Vec<Box<str>> = vec!["b".into(), "a".into()];
        let mut entries = Vec::new();
        // (series, field position, first timestamp), in file order.
        for (series, field, t) in [(1u32, 0u32, 0i64), (0, 1, 5), (1, 0, 10), (0, 0, 7)] {
            let pts = [(t, FieldValue::Integer(t))];
            let mut block = Vec::new();
            encode_block_into(FieldType::Integer, &pts, &mut block);
            entries.push(BlockEntry {
                series,
                field,
                ty: FieldType::Integer,
                count: 1,
                min_ts: t,
                max_ts: t,
                offset: bytes.len() as u64,
                len: block.len() as u32,
                crc: crc32fast::hash(&block),
            });
            bytes.extend_from_slice(&block);
        }
        let index = encode_index(4, &[], &names, &entries);
        let index_offset = bytes.len() as u64;
        bytes.extend_from_slice(&index);
        bytes.extend_from_slice(&index_offset.to_le_bytes());
        bytes.extend_from_slice(&(index.len() as u32).to_le_bytes());
        bytes.extend_from_slice(&crc32fast::hash(&index).to_le_bytes());
        bytes.extend_from_slice(END_MAGIC);
        fs::write(&path, &bytes).unwrap();
        let f = BlockFile::open(&path, 3).unwrap();
        let times = |s: u32, name: &str| -> Vec<i64> {
            f.blocks(s, name)
                .iter()
                .flat_map(|e| f.read(e).unwrap())
                .map(|p| p.0)
                .collect()
        };
        assert_eq!(times(1, "b"), [0, 10]);
        assert_eq!(times(0, "a"), [5]);
        assert_eq!(times(0, "b"), [7]);
        assert!(times(1, "a").is_empty());
    }

    /// Entries keep their field names in a per-file table now; the v1 fixture's index still
    /// encodes back to the same bytes.
    #[test]
    fn the_v1_fixture_index_encodes_to_the_same_bytes() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/v1/blocks");
        for (id, path) in list(&dir).unwrap() {
            let bytes = fs::read(&path).unwrap();
            let f = BlockFile::open(&path, id).unwrap();
            let index = encode_index(f.covered_wal, &f.replaces, &f.fields, &f.entries);
            let end = bytes.len() - FOOTER_LEN as usize;
            assert_eq!(&bytes[end - index.len()..end], &index[..]);
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
