//! Provisioning: from a validated service file to running instances.
//!
//! This crate owns the plan (what applying a file would change, pure and Terraform-styled),
//! the instance specs derived from a service file, and the drivers that make instances real
//! (`driver::process` now: supervised local child processes). It must never parse YAML (it
//! takes `peng_spec::ServiceSpec`), never talk HTTP and never store state beyond the driver's
//! own records of the processes it started: the catalog decides what is applied.

pub mod driver;
mod error;
pub mod instance;
pub mod plan;

pub use error::ProvisionError;
pub use instance::{instance_specs, InstanceSpec};
pub use plan::{merge_stage, plan, Action, Change, Plan};
