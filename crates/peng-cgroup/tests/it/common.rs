use std::path::Path;

use peng_cgroup::Limits;

pub const MIB: u64 = 1024 * 1024;

/// The limits most tests create groups with.
pub const LIMITS: Limits = Limits {
    memory_bytes: 64 * MIB,
    cpu: 0.5,
    pids: 16,
};

/// A cgroup file's content without the trailing newline.
pub fn read(path: &Path) -> String {
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
        .trim_end()
        .to_string()
}

/// Writes `content` to `path`, making its directory.
pub fn put(path: &Path, content: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, content).unwrap();
}
