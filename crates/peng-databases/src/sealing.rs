//! Database passwords at rest: sealed with ChaCha20-Poly1305 under a key that lives only in
//! the data directory (`db.key`, 32 random bytes, mode 0600), never in the state database.
//!
//! Each secret gets a fresh random nonce, and the name of what it belongs to
//! (`team/service/stage/account`) is bound in as associated data, so a ciphertext copied onto
//! another row does not open.

use std::path::Path;

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};
use peng_state::SealedSecret;
use rand::RngCore;

pub struct Sealer {
    cipher: ChaCha20Poly1305,
}

impl Sealer {
    /// Reads the key from `path`, creating it on first start.
    pub fn load_or_create(path: &Path) -> std::io::Result<Sealer> {
        let key = peng_state::keyfile::load_or_create_secret(path)?;
        if key.len() != 32 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!(
                    "{}: the database key must be 32 bytes (64 hex digits), found {}",
                    path.display(),
                    key.len()
                ),
            ));
        }
        Ok(Sealer {
            cipher: ChaCha20Poly1305::new(Key::from_slice(&key)),
        })
    }

    pub fn seal(&self, owner: &str, plaintext: &str) -> SealedSecret {
        let mut nonce = [0u8; 12];
        rand::rng().fill_bytes(&mut nonce);
        let ciphertext = self
            .cipher
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: plaintext.as_bytes(),
                    aad: owner.as_bytes(),
                },
            )
            // Encryption fails only for messages beyond 256 GiB.
            .unwrap_or_default();
        SealedSecret {
            nonce: nonce.to_vec(),
            ciphertext,
        }
    }

    pub fn open(&self, owner: &str, sealed: &SealedSecret) -> Result<String, String> {
        if sealed.nonce.len() != 12 {
            return Err(format!("sealed secret of {owner} has a bad nonce"));
        }
        let plain = self
            .cipher
            .decrypt(
                Nonce::from_slice(&sealed.nonce),
                Payload {
                    msg: &sealed.ciphertext,
                    aad: owner.as_bytes(),
                },
            )
            .map_err(|_| {
                format!("sealed secret of {owner} does not open with this data dir's db.key")
            })?;
        String::from_utf8(plain).map_err(|_| format!("sealed secret of {owner} is not text"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seals_opens_and_refuses_another_owner_or_key() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db.key");
        let sealer = Sealer::load_or_create(&path).unwrap();
        let mode = std::os::unix::fs::PermissionsExt::mode(
            &std::fs::metadata(&path).unwrap().permissions(),
        );
        assert_eq!(mode & 0o777, 0o600);
        let sealed = sealer.seal("books/shelf/production/app_a", "Secret-Pass-1234567890");
        assert!(
            !sealed.ciphertext.windows(6).any(|w| w == b"Secret"),
            "ciphertext must not contain the plaintext"
        );
        assert_eq!(
            sealer
                .open("books/shelf/production/app_a", &sealed)
                .unwrap(),
            "Secret-Pass-1234567890"
        );
        assert!(sealer.open("books/shelf/production/ro", &sealed).is_err());
        let again = Sealer::load_or_create(&path).unwrap();
        assert!(again.open("books/shelf/production/app_a", &sealed).is_ok());
        let other = Sealer::load_or_create(&dir.path().join("other.key")).unwrap();
        assert!(other.open("books/shelf/production/app_a", &sealed).is_err());
    }
}
