//! Ingest tokens: the credential a team's log senders put into GELF messages.
//!
//! An ingest token is derived, not stored: `pgi_` + hex(HMAC-SHA256(server secret,
//! "ingest:{team}:{generation}")). So peng can hand it to the team's own instances
//! (`PENG_INGEST_TOKEN`) without keeping a plaintext secret in its database, and bumping the
//! generation revokes it. It can only add messages to the team's stream.

use std::path::Path;

use hmac::{Hmac, Mac};
use peng_core::TeamName;
use sha2::Sha256;

pub fn ingest_token(secret: &[u8], team: &TeamName, generation: i64) -> String {
    let mut mac =
        <Hmac<Sha256> as Mac>::new_from_slice(secret).expect("hmac takes keys of any length");
    mac.update(format!("ingest:{team}:{generation}").as_bytes());
    let bytes = mac.finalize().into_bytes();
    format!("pgi_{}", hex::encode(&bytes[..20]))
}

/// Reads the server secret from `path`, creating it (32 random bytes, mode 0600) on first start.
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

    #[test]
    fn tokens_differ_by_team_generation_and_secret() {
        let t = TeamName::parse("books").unwrap();
        let u = TeamName::parse("music").unwrap();
        let a = ingest_token(b"secret", &t, 1);
        assert!(a.starts_with("pgi_") && a.len() == 44);
        assert_eq!(a, ingest_token(b"secret", &t, 1));
        assert_ne!(a, ingest_token(b"secret", &u, 1));
        assert_ne!(a, ingest_token(b"secret", &t, 2));
        assert_ne!(a, ingest_token(b"other", &t, 1));
    }
}
