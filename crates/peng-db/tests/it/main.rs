//! Tests against real mariadbd servers.

mod accounts;
mod backup;
mod common;
mod fixture;
mod replica;
mod server;
mod stats;
