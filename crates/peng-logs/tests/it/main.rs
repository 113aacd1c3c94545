//! Integration tests of peng-logs: real sockets on 127.0.0.1, real indexes in temp dirs.

mod compat;
mod fairness;
mod gelf_fixtures;
mod gelf_props;
mod helpers;
mod listeners;
mod partitions;
mod search;
mod wal;
