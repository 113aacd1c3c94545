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

use crate::codec::column::{
    decode_block_into, decode_block_timestamps, encode_block_into, Version,
};
use crate::codec::{put_ivarint, put_str, put_uvarint, DecodeError, Reader};
use crate::error::TsdbError;
use crate::index::SeriesId;
use crate::model::{FieldType, FieldValue};
use crate::sync_dir;

/// Most values in one block: bounds the work to read one value (a block is decoded whole) and
/// keeps compression good (a v3 float block refers back to any earlier value in it; 11 hours
/// of a series at 10 s fit in one).
pub const BLOCK_MAX_POINTS: usize = 4096;
/// The magic of the files this engine writes: format v3.
const MAGIC: &[u8; 8] = b"PTSBLK03";
/// Format v1 and v2 files are read as they are, and rewritten as v3 when merged.
const MAGIC_V2: &[u8; 8] = b"PTSBLK02";
const MAGIC_V1: &[u8; 8] = b"PTSBLK01";
const END_MAGIC: &[u8; 8] = b"PTSBEND1";
const FOOTER_LEN: u64 = 24;

/// Where one block lives and what it covers. The field is a position in the file's table of
/// field names ([`BlockFile::fields`]), so an entry carries no string of its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
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
    /// The block's length in bytes.
    pub fn size(&self) -> u32 {
        self.len
    }
}

/// Entries per group of [`Entries`]: a lookup decodes at most about two groups. A power of
/// two, so that `i & GROUP_MASK == 0` starts a group.
const GROUP: usize = 16;
const GROUP_MASK: usize = GROUP - 1;
const _: () = assert!(GROUP.is_power_of_two());

/// A file's block entries, packed: each entry as varint differences to the one before (about
/// 11 to 16 bytes instead of 48), in groups of [`GROUP`] that start afresh, with the first key
/// and byte position of every group kept aside for binary search.
#[derive(Debug, Default)]
pub struct Entries {
    bytes: Vec<u8>,
    groups: Vec<GroupHead>,
    len: usize,
    prev: Option<BlockEntry>,
}

#[derive(Debug, Clone, Copy)]
struct GroupHead {
    series: SeriesId,
    field: u32,
    at: u64,
}

impl Entries {
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn push(&mut self, e: BlockEntry) {
        if self.len & GROUP_MASK == 0 {
            self.groups.push(GroupHead {
                series: e.series,
                field: e.field,
                at: self.bytes.len() as u64,
            });
            self.prev = None;
        }
        let (series, min_ts, end) = match &self.prev {
            Some(p) => (p.series, p.min_ts, p.offset.wrapping_add(u64::from(p.len))),
            None => (0, 0, 0),
        };
        let out = &mut self.bytes;
        put_ivarint(out, i64::from(e.series) - i64::from(series));
        put_uvarint(out, u64::from(e.field));
        out.push(e.ty.to_byte());
        put_uvarint(out, u64::from(e.count));
        put_ivarint(out, e.min_ts.wrapping_sub(min_ts));
        put_uvarint(out, e.max_ts.wrapping_sub(e.min_ts) as u64);
        put_ivarint(out, e.offset.wrapping_sub(end) as i64);
        put_uvarint(out, u64::from(e.len));
        out.extend_from_slice(&e.crc.to_le_bytes());
        self.prev = Some(e);
        self.len += 1;
    }

    /// All entries in order.
    pub fn iter(&self) -> EntryIter<'_> {
        self.iter_from_group(0)
    }

    fn iter_from_group(&self, group: usize) -> EntryIter<'_> {
        let at = self
            .groups
            .get(group)
            .map_or(self.bytes.len(), |g| g.at as usize);
        EntryIter {
            r: Reader::new(self.bytes.get(at..).unwrap_or(&[])),
            index: group * GROUP,
            len: self.len,
            prev: None,
        }
    }

    fn shrink(&mut self) {
        self.bytes.shrink_to_fit();
        self.groups.shrink_to_fit();
    }
}

/// Decodes [`Entries`] front to back.
pub struct EntryIter<'a> {
    r: Reader<'a>,
    index: usize,
    len: usize,
    prev: Option<BlockEntry>,
}

impl EntryIter<'_> {
    fn decode(&mut self) -> Result<BlockEntry, DecodeError> {
        if self.index & GROUP_MASK == 0 {
            self.prev = None;
        }
        let (series, min_ts, end) = match &self.prev {
            Some(p) => (p.series, p.min_ts, p.offset.wrapping_add(u64::from(p.len))),
            None => (0, 0, 0),
        };
        let r = &mut self.r;
        let series = u32::try_from(i64::from(series) + r.ivarint()?)
            .map_err(|_| DecodeError("packed series out of range"))?;
        let field = u32::try_from(r.uvarint()?).map_err(|_| DecodeError("packed field"))?;
        let ty = FieldType::from_byte(r.u8()?).ok_or(DecodeError("packed type"))?;
        let count = u32::try_from(r.uvarint()?).map_err(|_| DecodeError("packed count"))?;
        let min_ts = min_ts.wrapping_add(r.ivarint()?);
        let max_ts = min_ts.wrapping_add(r.uvarint()? as i64);
        let offset = end.wrapping_add(r.ivarint()? as u64);
        let len = u32::try_from(r.uvarint()?).map_err(|_| DecodeError("packed length"))?;
        let crc = r.u32_le()?;
        Ok(BlockEntry {
            series,
            field,
            ty,
            count,
            min_ts,
            max_ts,
            offset,
            len,
            crc,
        })
    }
}

impl Iterator for EntryIter<'_> {
    type Item = BlockEntry;

    fn next(&mut self) -> Option<BlockEntry> {
        if self.index >= self.len {
            return None;
        }
        // Written by `Entries::push` from valid entries, so this does not fail; should it,
        // the iteration ends.
        let e = self.decode().ok();
        self.index = if e.is_some() {
            self.index + 1
        } else {
            self.len
        };
        self.prev = e;
        e
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
    /// The distinct field names of the file in order of first use; entries refer to them by
    /// position.
    pub fields: Vec<Box<str>>,
    /// The blocks, ordered by series id and field name (as every writer lists them), and in
    /// file order within one series field.
    pub entries: Entries,
    /// Newest timestamp in the file (`i64::MIN` when empty).
    pub max_ts: i64,
    /// The block format, from the file's magic.
    pub version: Version,
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
        let version = match &head {
            MAGIC => Version::V3,
            MAGIC_V2 => Version::V2,
            MAGIC_V1 => Version::V1,
            _ => return Err(TsdbError::corrupt(path, "not a block file (bad magic)")),
        };
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
        // Read in chunks (a merged file's index can be hundreds of MB), checked against its
        // CRC at the end; decoding is bounds-checked, so garbage fails before that, too.
        let mut stream = IndexStream {
            file: &file,
            next: index_offset,
            end: data_end,
            buf: Vec::new(),
            at: 0,
            crc: crc32fast::Hasher::new(),
        };
        let decoded = decode_index(&mut stream, index_offset).map_err(|e| match e {
            IndexError::Io(e) => TsdbError::io("reading block file", path)(e),
            IndexError::Decode(e) => corrupt(e),
        })?;
        if stream.crc.finalize() != index_crc {
            return Err(TsdbError::corrupt(path, "index checksum mismatch"));
        }
        Ok(BlockFile::new(id, path, file, size, decoded, None, version))
    }

    /// `written_max_ts`: the newest timestamp, for entries from a [`BlockFileWriter`] (which
    /// keeps them in order); other entries are checked and sorted if needed.
    fn new(
        id: u64,
        path: &Path,
        file: File,
        size: u64,
        decoded: DecodedIndex,
        written_max_ts: Option<i64>,
        version: Version,
    ) -> BlockFile {
        let DecodedIndex {
            covered_wal,
            replaces,
            fields,
            mut entries,
        } = decoded;
        let name = |e: &BlockEntry| fields.get(e.field as usize).map_or("", |n| &**n);
        let key = |e: &BlockEntry| (e.series, name(e));
        let mut sorted = true;
        let mut max_ts = i64::MIN;
        if let Some(written) = written_max_ts {
            max_ts = written;
        } else {
            let mut prev: Option<BlockEntry> = None;
            for e in entries.iter() {
                sorted &= prev.is_none_or(|p| key(&p) <= key(&e));
                max_ts = max_ts.max(e.max_ts);
                prev = Some(e);
            }
        }
        if !sorted {
            // Not written by this engine (which lists blocks in this order): look blocks up
            // through a sorted copy of the entries. The sort is stable, so the blocks of one
            // series field keep their order in the file.
            tracing::warn!(path = %path.display(), "block index not sorted by series and field; sorting it in memory");
            let mut all: Vec<BlockEntry> = entries.iter().collect();
            all.sort_by(|a, b| key(a).cmp(&key(b)));
            entries = Entries::default();
            for e in all {
                entries.push(e);
            }
        }
        entries.shrink();
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
            version,
        }
    }

    /// The name of an entry's field.
    pub fn field_name(&self, e: &BlockEntry) -> &str {
        self.fields.get(e.field as usize).map_or("", |n| n)
    }

    /// The blocks of one series field, in file order (found by binary search).
    pub fn blocks<'a>(
        &'a self,
        series: SeriesId,
        field: &'a str,
    ) -> impl Iterator<Item = BlockEntry> + 'a {
        let target = (series, field);
        let groups = &self.entries.groups;
        let name = |f: u32| self.fields.get(f as usize).map_or("", |n| &**n);
        // The first group starting at or after the target; matches may begin in the one before.
        let g = groups.partition_point(|h| (h.series, name(h.field)) < target);
        self.entries
            .iter_from_group(g.saturating_sub(1))
            .skip_while(move |e| (e.series, self.field_name(e)) < target)
            .take_while(move |e| e.series == series && self.field_name(e) == field)
    }

    fn read_raw(&self, e: &BlockEntry) -> Result<Vec<u8>, TsdbError> {
        let mut buf = Vec::new();
        self.read_raw_into(e, &mut buf)?;
        Ok(buf)
    }

    /// Reads a block's bytes into `buf` (resized to fit) and checks them.
    fn read_raw_into(&self, e: &BlockEntry, buf: &mut Vec<u8>) -> Result<(), TsdbError> {
        buf.resize(e.len as usize, 0);
        self.file
            .read_exact_at(buf, e.offset)
            .map_err(TsdbError::io("reading block", &self.path))?;
        self.verify(e, buf)
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
    #[cfg(test)]
    pub fn read(&self, e: &BlockEntry) -> Result<Vec<(i64, FieldValue)>, TsdbError> {
        let mut pts = Vec::with_capacity(e.count as usize);
        self.read_into(e, &mut Vec::new(), &mut pts)?;
        Ok(pts)
    }

    /// Appends the values of one block to `out`, reading it through `buf` (working space kept
    /// for the next block). `out` keeps what it held before when this fails.
    pub fn read_into(
        &self,
        e: &BlockEntry,
        buf: &mut Vec<u8>,
        out: &mut Vec<(i64, FieldValue)>,
    ) -> Result<(), TsdbError> {
        self.read_raw_into(e, buf)?;
        self.decode(e, buf, out)
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
        decode_block_into(self.version, e.ty, raw, out).map_err(|err| {
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
        let ts = decode_block_timestamps(self.version, &raw).map_err(|err| {
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
    entries: Entries,
    /// The last column added, to check the order.
    last: Option<(SeriesId, u32)>,
    buf: Vec<u8>,
    scratch: Vec<u8>,
    values: u64,
    max_ts: i64,
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
            entries: Entries::default(),
            last: None,
            buf: Vec::new(),
            scratch: Vec::new(),
            values: 0,
            max_ts: i64::MIN,
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
            encode_block_into(Version::V3, ty, chunk, &mut self.buf, &mut self.scratch);
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
            self.values += chunk.len() as u64;
            self.max_ts = self.max_ts.max(last.0);
        }
        Ok(())
    }

    /// Values added so far.
    pub fn values(&self) -> u64 {
        self.values
    }

    /// Writes index and footer, makes the file durable under its final name and opens it
    /// (from the entries in memory: the index is not read back).
    pub fn finish(mut self, covered_wal: u64, replaces: &[u64]) -> Result<BlockFile, TsdbError> {
        // Streamed: a merged file's index can be hundreds of MB.
        let (index_len, index_crc) = write_index(
            &mut self.out,
            covered_wal,
            replaces,
            &self.names,
            &self.entries,
        )
        .map_err(TsdbError::io("writing block file", &self.tmp))?;
        let Ok(index_len) = u32::try_from(index_len) else {
            let _ = fs::remove_file(&self.tmp);
            return Err(TsdbError::Invalid(format!(
                "block index of {index_len} bytes exceeds the 4 GiB a block file can list"
            )));
        };
        let mut footer = Vec::with_capacity(FOOTER_LEN as usize);
        footer.extend_from_slice(&self.offset.to_le_bytes());
        footer.extend_from_slice(&index_len.to_le_bytes());
        footer.extend_from_slice(&index_crc.to_le_bytes());
        footer.extend_from_slice(END_MAGIC);
        self.out
            .write_all(&footer)
            .and_then(|()| self.out.flush())
            .map_err(TsdbError::io("writing block file", &self.tmp))?;
        let size = self.offset + u64::from(index_len) + FOOTER_LEN;
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
            fields: std::mem::take(&mut self.names),
            entries: std::mem::take(&mut self.entries),
        };
        Ok(BlockFile::new(
            self.id,
            &path,
            file,
            size,
            decoded,
            Some(self.max_ts),
            Version::V3,
        ))
    }

    /// Removes the unfinished file.
    pub fn abandon(self) {
        let tmp = self.tmp.clone();
        drop(self);
        let _ = fs::remove_file(tmp);
    }
}

#[cfg(test)]
fn encode_index(
    covered_wal: u64,
    replaces: &[u64],
    fields: &[Box<str>],
    entries: &Entries,
) -> Vec<u8> {
    let mut out = Vec::new();
    let written = write_index(&mut out, covered_wal, replaces, fields, entries);
    assert!(written.is_ok());
    out
}

/// Writes a file's index; returns its length and CRC32.
fn write_index(
    out: &mut impl Write,
    covered_wal: u64,
    replaces: &[u64],
    fields: &[Box<str>],
    entries: &Entries,
) -> std::io::Result<(u64, u32)> {
    let mut crc = crc32fast::Hasher::new();
    let mut len = 0u64;
    let mut buf = Vec::with_capacity(1 << 16);
    let mut emit = |buf: &mut Vec<u8>| {
        crc.update(buf);
        len += buf.len() as u64;
        let r = out.write_all(buf);
        buf.clear();
        r
    };
    put_uvarint(&mut buf, covered_wal);
    put_uvarint(&mut buf, replaces.len() as u64);
    for id in replaces {
        put_uvarint(&mut buf, *id);
    }
    put_uvarint(&mut buf, entries.len() as u64);
    for e in entries.iter() {
        put_uvarint(&mut buf, u64::from(e.series));
        put_str(&mut buf, fields.get(e.field as usize).map_or("", |n| n));
        buf.push(e.ty.to_byte());
        put_uvarint(&mut buf, u64::from(e.count));
        put_ivarint(&mut buf, e.min_ts);
        put_ivarint(&mut buf, e.max_ts);
        put_uvarint(&mut buf, e.offset);
        put_uvarint(&mut buf, u64::from(e.len));
        buf.extend_from_slice(&e.crc.to_le_bytes());
        if buf.len() >= 1 << 16 {
            emit(&mut buf)?;
        }
    }
    emit(&mut buf)?;
    Ok((len, crc.finalize()))
}

struct DecodedIndex {
    covered_wal: u64,
    replaces: Vec<u64>,
    /// Distinct, in order of first use.
    fields: Vec<Box<str>>,
    entries: Entries,
}

/// Bytes of an index held in memory at once while opening a file.
const INDEX_CHUNK: usize = 1 << 20;
/// Longest encoded entry (names are at most 64 KiB), with room to spare.
const ENTRY_MAX: usize = 128 << 10;

/// Reads a file's index front to back in chunks of [`INDEX_CHUNK`], hashing what it reads.
struct IndexStream<'a> {
    file: &'a File,
    /// File offset of the next byte to read, and where the index ends.
    next: u64,
    end: u64,
    buf: Vec<u8>,
    /// Bytes of `buf` already decoded.
    at: usize,
    crc: crc32fast::Hasher,
}

impl IndexStream<'_> {
    /// The undecoded bytes in memory: at least `want` (≤ half a chunk) unless the index ends
    /// sooner.
    fn fill(&mut self, want: usize) -> std::io::Result<&[u8]> {
        if self.buf.len() - self.at < want && self.next < self.end {
            self.buf.drain(..self.at);
            self.at = 0;
            let n = (self.end - self.next).min(INDEX_CHUNK as u64) as usize;
            let old = self.buf.len();
            self.buf.resize(old + n, 0);
            self.file.read_exact_at(&mut self.buf[old..], self.next)?;
            self.crc.update(&self.buf[old..]);
            self.next += n as u64;
        }
        Ok(&self.buf[self.at..])
    }

    fn consume(&mut self, n: usize) {
        self.at += n;
    }
}

enum IndexError {
    Io(std::io::Error),
    Decode(DecodeError),
}

impl From<DecodeError> for IndexError {
    fn from(e: DecodeError) -> IndexError {
        IndexError::Decode(e)
    }
}

impl From<std::io::Error> for IndexError {
    fn from(e: std::io::Error) -> IndexError {
        IndexError::Io(e)
    }
}

fn decode_index(s: &mut IndexStream<'_>, data_end: u64) -> Result<DecodedIndex, IndexError> {
    let index_len = s.end - s.next;
    let mut r = Reader::new(s.fill(64)?);
    let covered_wal = r.uvarint()?;
    let n_replaces = r.uvarint()?;
    let used = r.position();
    s.consume(used);
    if n_replaces > index_len {
        return Err(DecodeError("length exceeds the data").into());
    }
    let mut replaces = Vec::new();
    for _ in 0..n_replaces {
        let mut r = Reader::new(s.fill(16)?);
        replaces.push(r.uvarint()?);
        let used = r.position();
        s.consume(used);
    }
    let mut r = Reader::new(s.fill(16)?);
    let n = r.uvarint()?;
    let used = r.position();
    s.consume(used);
    if n > index_len {
        return Err(DecodeError("length exceeds the data").into());
    }
    let mut entries = Entries::default();
    // Field names in order of first use.
    let mut names: Vec<Box<str>> = Vec::new();
    let mut name_pos: HashMap<Box<str>, u32> = HashMap::new();
    let mut last: Option<u32> = None;
    for _ in 0..n {
        let mut r = Reader::new(s.fill(ENTRY_MAX)?);
        let series =
            u32::try_from(r.uvarint()?).map_err(|_| DecodeError("series id out of range"))?;
        let name = r.str_ref()?;
        let field = match last {
            Some(p) if names.get(p as usize).is_some_and(|l| **l == *name) => p,
            _ => {
                // Few names: a scan costs less than hashing.
                let known = if names.len() <= 16 {
                    names.iter().position(|n| **n == *name).map(|p| p as u32)
                } else {
                    name_pos.get(name).copied()
                };
                let p = match known {
                    Some(p) => p,
                    None => {
                        let p = names.len() as u32;
                        names.push(name.into());
                        name_pos.insert(name.into(), p);
                        p
                    }
                };
                last = Some(p);
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
        let used = r.position();
        s.consume(used);
        if count == 0
            || min_ts > max_ts
            || offset < MAGIC.len() as u64
            || offset
                .checked_add(u64::from(len))
                .is_none_or(|end| end > data_end)
        {
            return Err(DecodeError("block entry out of range").into());
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
    if !s.fill(1)?.is_empty() {
        return Err(DecodeError("trailing bytes after block index").into());
    }
    Ok(DecodedIndex {
        covered_wal,
        replaces,
        fields: names,
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
        // Three blocks, the last one partly full.
        let n = 2 * BLOCK_MAX_POINTS as i64 + 500;
        let pts: Vec<(i64, FieldValue)> =
            (0..n).map(|i| (i * 10, FieldValue::Integer(i))).collect();
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
                (12, vec![1, 2], 4, (n - 1) * 10)
            );
            let mut all = Vec::new();
            for e in f.entries.iter().filter(|e| e.series == 3) {
                all.extend(f.read(&e).unwrap());
            }
            assert_eq!(all, pts);
            let last = f.entries.iter().last().unwrap();
            assert_eq!(f.read_timestamps(&last).unwrap(), vec![5]);
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
        let all: Vec<BlockEntry> = f.entries.iter().collect();
        for (a, b) in all.iter().zip(all.iter().rev()) {
            let mut got = Vec::new();
            forward.read_into(a, &mut got).unwrap();
            assert_eq!(got, f.read(a).unwrap());
            got.clear();
            backward.read_into(b, &mut got).unwrap();
            assert_eq!(got, f.read(b).unwrap());
        }
    }

    /// An index larger than the chunks it is read in opens to the same entries, and damage
    /// anywhere in it is found.
    #[test]
    fn a_large_index_is_read_in_chunks() {
        let tmp = tempfile::tempdir().unwrap();
        let mut w = BlockFileWriter::create(tmp.path(), 5).unwrap();
        let long = "f".repeat(100);
        for s in 0..12_000u32 {
            for name in ["a", long.as_str()] {
                let pts = [(i64::from(s), FieldValue::Unsigned(u64::from(s)))];
                w.add_column(s, name, FieldType::Unsigned, &pts).unwrap();
            }
        }
        let written = w.finish(9, &[3, 4]).unwrap();
        let path = file_path(tmp.path(), 5);
        let bytes = fs::read(&path).unwrap();
        let index_len = u32::from_le_bytes(
            bytes[bytes.len() - 16..bytes.len() - 12]
                .try_into()
                .unwrap(),
        );
        assert!(index_len as usize > INDEX_CHUNK, "{index_len}");
        let read = BlockFile::open(&path, 5).unwrap();
        assert_eq!((read.covered_wal, read.replaces.clone()), (9, vec![3, 4]));
        assert_eq!(read.fields, written.fields);
        assert!(read.entries.iter().eq(written.entries.iter()));
        for at in [bytes.len() - 30, bytes.len() - 24 - INDEX_CHUNK - 7] {
            let mut bad = bytes.clone();
            bad[at] ^= 0x10;
            fs::write(&path, &bad).unwrap();
            assert!(BlockFile::open(&path, 5).is_err(), "byte {at}");
        }
    }

    #[test]
    fn blocks_are_found_by_series_and_field() {
        let tmp = tempfile::tempdir().unwrap();
        let mut w = BlockFileWriter::create(tmp.path(), 1).unwrap();
        let col = |n: i64| -> Vec<(i64, FieldValue)> {
            (0..n).map(|t| (t, FieldValue::Integer(t))).collect()
        };
        // Series 0, 2, 4, ...: fields "zz", "b" and "a" (in name order), and some columns
        // long enough for several blocks, so that groups of entries start anywhere.
        let series: Vec<u32> = (0..200).map(|s| s * 2).collect();
        for s in &series {
            for f in ["a", "b", "zz"] {
                let n = if (s + f.len() as u32) % 7 == 3 {
                    2500
                } else {
                    1
                };
                w.add_column(*s, f, FieldType::Integer, &col(n)).unwrap();
            }
        }
        let err = w
            .add_column(398, "b", FieldType::Integer, &col(1))
            .unwrap_err();
        assert_eq!(err.kind(), peng_core::ErrorKind::Invalid);
        let f = w.finish(1, &[]).unwrap();
        let all: Vec<BlockEntry> = f.entries.iter().collect();
        assert_eq!(all.len(), f.entries.len());
        for s in 0..402u32 {
            for name in ["a", "b", "c", "zz"] {
                let want: Vec<BlockEntry> = all
                    .iter()
                    .filter(|e| e.series == s && f.field_name(e) == name)
                    .copied()
                    .collect();
                assert_eq!(f.blocks(s, name).collect::<Vec<_>>(), want, "{s} {name}");
                if s % 2 == 0 && s < 400 && name != "c" {
                    let n: u32 = want.iter().map(|e| e.count).sum();
                    assert!(n == 1 || n == 2500);
                } else {
                    assert!(want.is_empty());
                }
            }
        }
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
            encode_block_into(
                Version::V3,
                FieldType::Integer,
                &pts,
                &mut block,
                &mut Vec::new(),
            );
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
        let mut packed = Entries::default();
        for e in entries {
            packed.push(e);
        }
        let index = encode_index(4, &[], &names, &packed);
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
                .flat_map(|e| f.read(&e).unwrap())
                .map(|p| p.0)
                .collect()
        };
        assert_eq!(times(1, "b"), [0, 10]);
        assert_eq!(times(0, "a"), [5]);
        assert_eq!(times(0, "b"), [7]);
        assert!(times(1, "a").is_empty());
    }

    /// Entries keep their field names in a per-file table now; the index and blocks of every
    /// version's fixture still encode back to the same bytes (an encoder change that alters a
    /// version's bytes fails here).
    #[test]
    fn the_fixtures_encode_to_the_same_bytes() {
        for (name, version) in [
            ("v1", Version::V1),
            ("v2", Version::V2),
            ("v3", Version::V3),
        ] {
            let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("tests/fixtures")
                .join(name)
                .join("blocks");
            let files = list(&dir).unwrap();
            assert!(!files.is_empty(), "{name}");
            for (id, path) in files {
                let bytes = fs::read(&path).unwrap();
                let f = BlockFile::open(&path, id).unwrap();
                assert_eq!(f.version, version);
                let index = encode_index(f.covered_wal, &f.replaces, &f.fields, &f.entries);
                let end = bytes.len() - FOOTER_LEN as usize;
                assert_eq!(&bytes[end - index.len()..end], &index[..]);
                // And every block encodes back to its bytes.
                for e in f.entries.iter() {
                    let mut block = Vec::new();
                    let values = f.read(&e).unwrap();
                    encode_block_into(version, e.ty, &values, &mut block, &mut Vec::new());
                    let at = e.offset as usize;
                    assert_eq!(&bytes[at..at + e.len as usize], &block[..], "{name}");
                }
            }
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
                    .map(|e| f.read(&e))
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
