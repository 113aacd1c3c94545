//! Integration tests of `peng-tsdb` through its public API only.

mod api;
mod blocks;
mod concurrent;
mod crash;
mod fixture;
mod helpers;
mod many;
mod model;
