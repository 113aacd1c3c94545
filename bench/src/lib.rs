//! Benchmarks of peng, run against the real `peng serve` binary. See `bench/README.md`.

pub mod child;
pub mod figures;
pub mod gen;
pub mod peers;
pub mod procfs;
pub mod prom;
pub mod send;
pub mod server;
