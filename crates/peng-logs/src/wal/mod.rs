//! The write-ahead log of the log store: every batch that reaches the pipeline is appended
//! here and synced (`fdatasync`) before anyone is told it is stored, and before the index sees
//! it. The index commit records the WAL position it covers (atomically with its segments, in
//! tantivy's commit payload); on start the WAL is replayed from there, and WAL below it is
//! deleted. So a crash loses nothing acknowledged, and replay adds nothing twice.
//!
//! Layout: `DIR/NNNNNNNNNNNNNNNNNNNN.wal` segments, named by the position of their first byte
//! (positions count bytes across all segments, so a position names one place for good). A
//! segment holds frames: `u32` payload length, `u32` CRC-32 of the payload, the payload (a batch,
//! see [`codec`]). Only the newest segment is appended to; a new one starts past
//! [`SEGMENT_BYTES`]. A frame cut short or failing its checksum at the end of the newest segment
//! is what a crash in the middle of a write leaves: the segment is cut there at open. Anywhere
//! else it is corruption, and an error.

pub mod codec;

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use crate::record::LogRecord;
use crate::LogError;

/// Size past which a new segment is started.
pub const SEGMENT_BYTES: u64 = 8 * 1024 * 1024;
/// The largest frame payload accepted when reading (a batch is far smaller).
const MAX_FRAME: usize = 256 * 1024 * 1024;
const HEADER: usize = 8;

/// The appending end of the WAL.
pub struct Wal {
    dir: PathBuf,
    file: File,
    /// Position of the segment's first byte.
    base: u64,
    /// Bytes in the segment (all valid frames).
    len: u64,
    /// Appended but not yet synced.
    dirty: bool,
    buf: Vec<u8>,
}

impl std::fmt::Debug for Wal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Wal")
            .field("dir", &self.dir)
            .field("end", &self.end())
            .finish()
    }
}

fn segment_name(base: u64) -> String {
    format!("{base:020}.wal")
}

/// The segments in `dir`, oldest first, as (first position, path).
fn segments(dir: &Path) -> Result<Vec<(u64, PathBuf)>, LogError> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        let Some(base) = name
            .to_str()
            .and_then(|n| n.strip_suffix(".wal"))
            .and_then(|n| n.parse::<u64>().ok())
        else {
            continue;
        };
        out.push((base, entry.path()));
    }
    out.sort();
    Ok(out)
}

fn sync_dir(dir: &Path) -> Result<(), LogError> {
    File::open(dir)?.sync_all()?;
    Ok(())
}

/// One frame read from a segment.
enum Frame {
    /// A whole frame: its payload and the segment offset just past it.
    Whole(Vec<u8>, u64),
    /// The segment ends here, cleanly.
    End,
    /// Cut short or failing its checksum at this offset.
    Torn(u64, String),
}

fn read_frame(r: &mut impl Read, at: u64) -> Result<Frame, LogError> {
    let mut header = [0u8; HEADER];
    let mut got = 0;
    while got < HEADER {
        match r.read(&mut header[got..])? {
            0 if got == 0 => return Ok(Frame::End),
            0 => return Ok(Frame::Torn(at, "a header cut short".into())),
            n => got += n,
        }
    }
    let len = u32::from_le_bytes([header[0], header[1], header[2], header[3]]) as usize;
    let crc = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
    if len > MAX_FRAME {
        return Ok(Frame::Torn(at, format!("a frame length of {len} bytes")));
    }
    let mut payload = vec![0u8; len];
    let mut got = 0;
    while got < len {
        match r.read(&mut payload[got..])? {
            0 => return Ok(Frame::Torn(at, "a frame cut short".into())),
            n => got += n,
        }
    }
    if crc32fast::hash(&payload) != crc {
        return Ok(Frame::Torn(at, "a checksum mismatch".into()));
    }
    Ok(Frame::Whole(payload, at + (HEADER + len) as u64))
}

impl Wal {
    /// Opens the WAL in `dir` (created when absent) for appending after its last whole frame;
    /// a torn frame at the end of the newest segment is cut off.
    pub fn open(dir: &Path) -> Result<Wal, LogError> {
        std::fs::create_dir_all(dir)?;
        let segs = segments(dir)?;
        let (base, path) = match segs.last() {
            Some((base, path)) => (*base, path.clone()),
            None => {
                let path = dir.join(segment_name(0));
                File::create(&path)?.sync_all()?;
                sync_dir(dir)?;
                (0, path)
            }
        };
        let mut file = OpenOptions::new().read(true).write(true).open(&path)?;
        let mut reader = std::io::BufReader::new(&mut file);
        let mut at = 0u64;
        loop {
            match read_frame(&mut reader, at)? {
                Frame::Whole(_, next) => at = next,
                Frame::End => break,
                Frame::Torn(off, why) => {
                    tracing::warn!(segment = %path.display(), offset = off, %why, "the log WAL ends in a torn write; cut there");
                    break;
                }
            }
        }
        drop(reader);
        if file.metadata()?.len() != at {
            file.set_len(at)?;
            file.sync_all()?;
        }
        file.seek(SeekFrom::Start(at))?;
        Ok(Wal {
            dir: dir.to_path_buf(),
            file,
            base,
            len: at,
            dirty: false,
            buf: Vec::new(),
        })
    }

    /// The position just past the last appended frame.
    pub fn end(&self) -> u64 {
        self.base + self.len
    }

    /// Appends one batch (not yet durable: see [`Wal::sync`]) and returns the position just past
    /// it.
    pub fn append(&mut self, records: &[LogRecord]) -> Result<u64, LogError> {
        self.buf.clear();
        self.buf.extend_from_slice(&[0u8; HEADER]);
        codec::encode(records, &mut self.buf);
        let len = (self.buf.len() - HEADER) as u32;
        let crc = crc32fast::hash(&self.buf[HEADER..]);
        self.buf[0..4].copy_from_slice(&len.to_le_bytes());
        self.buf[4..8].copy_from_slice(&crc.to_le_bytes());
        if let Err(e) = self.file.write_all(&self.buf) {
            // Whatever part reached the file is cut again, so the next frame starts clean.
            let _ = self.file.set_len(self.len);
            let _ = self.file.seek(SeekFrom::Start(self.len));
            return Err(e.into());
        }
        self.len += self.buf.len() as u64;
        self.dirty = true;
        Ok(self.end())
    }

    /// Makes every appended frame durable; starts a new segment when this one is full.
    pub fn sync(&mut self) -> Result<(), LogError> {
        if self.dirty {
            self.file.sync_data()?;
            self.dirty = false;
        }
        if self.len >= SEGMENT_BYTES {
            let base = self.end();
            let path = self.dir.join(segment_name(base));
            let file = OpenOptions::new()
                .read(true)
                .write(true)
                .create_new(true)
                .open(&path)?;
            file.sync_all()?;
            sync_dir(&self.dir)?;
            self.file = file;
            self.base = base;
            self.len = 0;
        }
        Ok(())
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

/// Deletes the segments that lie wholly below `pos` (the index covers them). The newest
/// segment is never deleted.
pub fn remove_below(dir: &Path, pos: u64) -> Result<usize, LogError> {
    let segs = segments(dir)?;
    let mut removed = 0;
    for pair in segs.windows(2) {
        let (_, path) = &pair[0];
        let (next_base, _) = pair[1];
        if next_base <= pos {
            std::fs::remove_file(path)?;
            removed += 1;
        }
    }
    if removed > 0 {
        sync_dir(dir)?;
    }
    Ok(removed)
}

/// Reads every batch from position `from` on, oldest first, handing each with the position
/// just past it to `f`. Stops cleanly at a torn frame at the end of the newest segment; a bad
/// frame anywhere else is an error.
pub fn replay(
    dir: &Path,
    from: u64,
    mut f: impl FnMut(Vec<LogRecord>, u64) -> Result<(), LogError>,
) -> Result<(), LogError> {
    let segs = segments(dir)?;
    let count = segs.len();
    for (i, (base, path)) in segs.iter().enumerate() {
        let next = segs.get(i + 1).map(|(b, _)| *b);
        if next.is_some_and(|n| n <= from) {
            continue;
        }
        let newest = i + 1 == count;
        let mut file = File::open(path)?;
        let start = from.saturating_sub(*base);
        if start > file.metadata()?.len() {
            return Err(LogError::Directory(format!(
                "{}: position {from} lies past the end of this segment",
                path.display()
            )));
        }
        file.seek(SeekFrom::Start(start))?;
        let mut reader = std::io::BufReader::with_capacity(1 << 20, file);
        let mut at = start;
        loop {
            match read_frame(&mut reader, at)? {
                Frame::Whole(payload, end) => {
                    let records = codec::decode(&payload).map_err(|why| {
                        LogError::Directory(format!(
                            "{}: the batch at offset {at} does not decode: {why}",
                            path.display()
                        ))
                    })?;
                    at = end;
                    f(records, base + end)?;
                }
                Frame::End => break,
                Frame::Torn(off, why) if newest => {
                    tracing::warn!(segment = %path.display(), offset = off, %why, "the log WAL ends in a torn write");
                    break;
                }
                Frame::Torn(off, why) => {
                    return Err(LogError::Directory(format!(
                        "{}: {why} at offset {off}, in a segment that is not the newest",
                        path.display()
                    )))
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::{FieldValue, LogSource};
    use peng_core::TeamName;

    fn batch(from: i64, n: i64) -> Vec<LogRecord> {
        (from..from + n)
            .map(|i| LogRecord {
                timestamp_ns: i,
                received_ns: i,
                team: TeamName::parse("books").unwrap(),
                service: "shop".into(),
                stage: "dev".into(),
                instance: String::new(),
                source: LogSource::GelfHttp,
                host: "h".into(),
                level: 6,
                message: format!("message {i}"),
                full_message: None,
                fields: [("n".to_string(), FieldValue::I64(i))].into(),
            })
            .collect()
    }

    fn all(dir: &Path, from: u64) -> Vec<(i64, u64)> {
        let mut out = Vec::new();
        replay(dir, from, |records, end| {
            out.extend(records.iter().map(|r| (r.timestamp_ns, end)));
            Ok(())
        })
        .unwrap();
        out
    }

    #[test]
    fn what_was_synced_replays_from_any_position_and_survives_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let mut wal = Wal::open(dir.path()).unwrap();
        let p1 = wal.append(&batch(0, 3)).unwrap();
        let p2 = wal.append(&batch(3, 2)).unwrap();
        wal.sync().unwrap();
        assert_eq!(wal.end(), p2);
        let got = all(dir.path(), 0);
        assert_eq!(got.iter().map(|g| g.0).collect::<Vec<_>>(), [0, 1, 2, 3, 4]);
        assert_eq!(got[0].1, p1);
        assert_eq!(got[4].1, p2);
        let from_p1: Vec<_> = all(dir.path(), p1).iter().map(|g| g.0).collect();
        assert_eq!(from_p1, [3, 4]);
        assert!(all(dir.path(), p2).is_empty());
        drop(wal);
        let mut wal = Wal::open(dir.path()).unwrap();
        assert_eq!(wal.end(), p2);
        let p3 = wal.append(&batch(5, 1)).unwrap();
        wal.sync().unwrap();
        assert_eq!(all(dir.path(), p2), [(5, p3)]);
    }

    #[test]
    fn a_torn_tail_is_cut_at_open_and_appending_goes_on_after_it() {
        let dir = tempfile::tempdir().unwrap();
        let mut wal = Wal::open(dir.path()).unwrap();
        let p1 = wal.append(&batch(0, 2)).unwrap();
        let p2 = wal.append(&batch(2, 2)).unwrap();
        wal.sync().unwrap();
        drop(wal);
        let path = dir.path().join(segment_name(0));
        // a crash in the middle of the second frame
        let f = OpenOptions::new().write(true).open(&path).unwrap();
        f.set_len(p2 - 5).unwrap();
        drop(f);
        assert_eq!(
            all(dir.path(), 0).len(),
            2,
            "replay stops at the torn frame"
        );
        let mut wal = Wal::open(dir.path()).unwrap();
        assert_eq!(wal.end(), p1);
        assert_eq!(std::fs::metadata(&path).unwrap().len(), p1);
        wal.append(&batch(10, 1)).unwrap();
        wal.sync().unwrap();
        let ts: Vec<_> = all(dir.path(), 0).iter().map(|g| g.0).collect();
        assert_eq!(ts, [0, 1, 10]);
    }

    #[test]
    fn a_flipped_bit_at_the_end_is_torn_and_in_an_older_segment_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let mut wal = Wal::open(dir.path()).unwrap();
        let p1 = wal.append(&batch(0, 2)).unwrap();
        wal.append(&batch(2, 2)).unwrap();
        wal.sync().unwrap();
        drop(wal);
        let path = dir.path().join(segment_name(0));
        let mut bytes = std::fs::read(&path).unwrap();
        let last = bytes.len() - 3;
        bytes[last] ^= 0x10;
        std::fs::write(&path, &bytes).unwrap();
        let wal = Wal::open(dir.path()).unwrap();
        assert_eq!(wal.end(), p1);
        drop(wal);
        // the same damage in a segment that is not the newest
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[HEADER + 2] ^= 0x10;
        std::fs::write(&path, &bytes).unwrap();
        File::create(dir.path().join(segment_name(p1))).unwrap();
        let err = replay(dir.path(), 0, |_, _| Ok(())).unwrap_err();
        assert!(err.to_string().contains("not the newest"), "{err}");
    }

    #[test]
    fn segments_roll_over_and_those_below_a_position_are_removed() {
        let dir = tempfile::tempdir().unwrap();
        let mut wal = Wal::open(dir.path()).unwrap();
        let big = batch(0, 1);
        let mut ends = Vec::new();
        // write until two rollovers
        while segments(dir.path()).unwrap().len() < 3 {
            let mut b = big.clone();
            b[0].message = "x".repeat(4 << 20);
            ends.push(wal.append(&b).unwrap());
            wal.sync().unwrap();
        }
        let segs = segments(dir.path()).unwrap();
        assert_eq!(segs[0].0, 0);
        assert!(segs[1].0 >= SEGMENT_BYTES);
        assert_eq!(all(dir.path(), 0).len(), ends.len());
        // nothing below the second segment's start is needed any more
        assert_eq!(remove_below(dir.path(), segs[1].0).unwrap(), 1);
        let after = ends.iter().filter(|e| **e > segs[1].0).count();
        assert_eq!(all(dir.path(), segs[1].0).len(), after);
        // the newest segment stays whatever the position
        remove_below(dir.path(), u64::MAX).unwrap();
        assert_eq!(segments(dir.path()).unwrap().len(), 1);
    }
}
