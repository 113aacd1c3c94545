//! Keys and tokens that live as files in the data directory, readable only by peng's user: the
//! server secret (`secret.key`), the key that seals database passwords (`db.key`), the first
//! admin token (`admin.token`).

use std::path::Path;

/// Reads a hex-encoded key from `path`, creating it (32 random bytes, mode 0600) on first use.
pub fn load_or_create_secret(path: &Path) -> std::io::Result<Vec<u8>> {
    match std::fs::read_to_string(path) {
        Ok(text) => hex::decode(text.trim()).map_err(|e| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("{}: {e}", path.display()),
            )
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let mut bytes = [0u8; 32];
            rand::RngCore::fill_bytes(&mut rand::rng(), &mut bytes);
            write_private(path, &hex::encode(bytes))?;
            Ok(bytes.to_vec())
        }
        Err(e) => Err(e),
    }
}

/// Writes a file only its owner can read (0600), durably.
pub fn write_private(path: &Path, contents: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(contents.as_bytes())?;
    f.write_all(b"\n")?;
    f.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn a_key_is_made_once_private_and_read_back() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("secret.key");
        let key = load_or_create_secret(&path).expect("made");
        assert_eq!(key.len(), 32);
        assert_eq!(load_or_create_secret(&path).expect("read"), key);
        let mode = std::fs::metadata(&path).expect("meta").permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        std::fs::write(&path, "not hex").expect("write");
        assert!(load_or_create_secret(&path).is_err());
    }
}
