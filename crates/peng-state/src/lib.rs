//! The state store: teams, API tokens, applied service files, the audit log and alert state.
//!
//! SQLite in the data directory now (WAL, `synchronous=FULL`, so a committed change survives a
//! crash); the queries are plain SQL through `sqlx` so that a PostgreSQL backend can follow.
//! Every query is parameterised. Tokens are stored only as SHA-256 hashes; a plaintext token
//! leaves this crate exactly once, when it is created. Changes that the audit log must record
//! are written in the same transaction as their audit entry, so neither exists without the
//! other. This crate knows nothing about HTTP, processes or the service file's format.

mod databases;
mod error;
pub mod keyfile;
mod store;
mod team_users;
mod vocab;

pub use databases::{BackupRow, DatabaseRow, SealedSecret};
pub use error::StateError;
pub use store::*;
pub use team_users::TeamUserRow;
pub use vocab::{AuditAction, BackupKind, DbNode, DbStatus};
