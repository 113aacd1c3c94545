//! Tests against real mariadbd servers.

mod accounts;
mod backup;
mod fixture;
mod common;
mod server;
