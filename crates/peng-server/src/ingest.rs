//! Ingest tokens: the credential a team's log senders put into GELF messages.
//!
//! An ingest token is derived, not stored: `pgi_` + hex(HMAC-SHA256(server secret,
//! "ingest:{team}:{generation}")). So peng can hand it to the team's own instances
//! (`PENG_INGEST_TOKEN`) without keeping a plaintext secret in its database, and bumping the
//! generation revokes it. It can only add messages to the team's stream.

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
