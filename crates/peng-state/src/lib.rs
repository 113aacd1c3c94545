//! placeholder crate root, filled in by its module
