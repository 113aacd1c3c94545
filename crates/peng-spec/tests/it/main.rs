//! Integration tests of the service file: data-driven cases with expected diagnostics, the
//! limits, and properties over arbitrary input.

mod cases;
mod limits;
mod props;

/// The valid example shipped with peng, which these tests also use as a seed.
pub const EXAMPLE: &str = include_str!("../../../../examples/bookshelf/peng.yaml");
