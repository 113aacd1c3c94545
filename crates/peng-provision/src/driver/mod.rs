//! Drivers make the instances of a plan real. Each driver lives in its own folder with the
//! same shape (`mod.rs` for the handle and its types, the machinery beside it, `tests.rs`).

pub mod process;
