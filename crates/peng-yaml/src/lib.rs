//! The YAML tree with positions and compiler-style diagnostics, for peng's files.
//!
//! This crate owns reading YAML text into a tree that remembers where every key and value was
//! written ([`tree`]), refusing what no peng file needs (anchors, tags, several documents) and
//! what would make a small file expensive ([`limits`]); the checks every format reads its values
//! with, each reporting into one list and carrying on ([`Cx`], [`fields`], [`string`],
//! [`duration`], …); and the diagnostics they end in (`peng.yaml:14:7: message`, all problems
//! of a file at once, "did you mean" for unknown keys). It knows no file format: which keys a
//! section has and what they mean belong to the format's crate (`peng-spec`, and each sensor
//! kind of `peng-sensors`). It is pure: no I/O, no clock, and no input makes it panic.

mod diagnostic;
pub mod limits;
mod read;
pub mod tree;

pub use diagnostic::{Diagnostic, Diagnostics};
pub use read::{
    boolean, bounded_list, bounded_map, duration, fields, integer, list, non_empty_string,
    parse_file, section, shown, string, suggest, unknown_key, url, Cx, Fields,
};
