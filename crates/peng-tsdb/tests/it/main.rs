//! Integration tests of `peng-tsdb` through its public API only.

mod api;
mod crash;
mod helpers;
