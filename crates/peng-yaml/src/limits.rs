//! The limits of reading any peng file, checked before or while the tree is built. The
//! limits of each format's content are the format's (`peng_spec::limits`).

/// The largest file read: 256 KiB.
pub const MAX_FILE_BYTES: usize = 256 * 1024;
/// The longest string, key or value: 4 KiB.
pub const MAX_STRING_BYTES: usize = 4 * 1024;
/// The deepest nesting of lists and mappings.
pub const MAX_DEPTH: usize = 16;
