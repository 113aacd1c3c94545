//! peng's embedded time-series store: the metrics storage engine behind sensor history and the
//! InfluxDB-compatible endpoint.
//!
//! It owns one data directory and promises: a batch is validated whole and either fully
//! stored or rejected; `write` returns only after the batch is fsync'd; after a crash, every
//! acknowledged batch is there again; the same series, field and timestamp hold the newest
//! value written; a field keeps the type it was first written with. It is synchronous and does
//! no networking: callers in async code run it on a blocking thread. The on-disk format and
//! the durability assumptions are described in `docs/tsdb.md`.

mod blockfile;
mod codec;
mod db;
mod error;
mod index;
mod memtable;
mod model;
mod wal;

use std::fs::{self, File};
use std::io::Write;
use std::path::Path;

pub use db::{Tsdb, TsdbOptions, MERGE_FANIN};
pub use error::TsdbError;
pub use model::{
    FieldType, FieldUsage, FieldValue, Name, NameMap, Point, Query, SeriesData, SeriesKey,
    TsdbStats, MAX_NAME_LEN, MAX_STRING_LEN,
};

/// Makes the directory entries in `dir` (creations, renames, removals) durable.
pub(crate) fn sync_dir(dir: &Path) -> Result<(), TsdbError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(TsdbError::io("syncing directory", dir))
}

/// Replaces `dir/name` with `bytes` so that a crash leaves either the old or the new file.
pub(crate) fn write_atomically(dir: &Path, name: &str, bytes: &[u8]) -> Result<(), TsdbError> {
    let tmp = dir.join(format!("{name}.tmp"));
    let dst = dir.join(name);
    let mut f = File::create(&tmp).map_err(TsdbError::io("creating", &tmp))?;
    f.write_all(bytes)
        .and_then(|()| f.sync_all())
        .map_err(TsdbError::io("writing", &tmp))?;
    drop(f);
    fs::rename(&tmp, &dst).map_err(TsdbError::io("renaming into place", &dst))?;
    sync_dir(dir)
}
