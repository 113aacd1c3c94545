//! MariaDB databases as peng runs them for teams: the MariaDB tools found on this machine,
//! peng's own certificate authority, dedicated `mariadbd` servers supervised inside peng's data
//! directory, the accounts and grants of a service's schema (created, compared and repaired by
//! difference), replicas, backups that count only once a restore of them worked, and the
//! statistics behind the database sensors.
//!
//! This crate knows MariaDB and nothing about teams, files or HTTP: the server crate decides
//! what should exist and calls in here to make it so.

pub mod accounts;
pub mod backup;
mod error;
pub mod replica;
pub mod server;
pub mod stats;
pub mod tls;
pub mod tools;

pub use error::DbError;
