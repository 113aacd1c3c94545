//! Sensor kinds: each kind's settings, how the service file writes them (its parsing and its
//! piece of the JSON Schema), how a plan shows them, which `expect` subjects its runs observe,
//! and its probe.
//!
//! Each kind is a folder of `src/kinds/` with the same files: `mod.rs` (the settings type and
//! its [`Kind`] implementation) and `probe.rs` (one run). The registry, one line per kind in
//! `src/kinds/mod.rs`, makes [`SensorKind`] and every dispatch from it; `docs/sensors.md` walks
//! through adding a kind. What every sensor has whatever its kind (name, schedule, the `expect`
//! language) belongs to the service file (`peng-spec`); running sensors on a schedule and judging
//! what a run observed belong to `peng-monitor`.
//!
//! Reading is pure: peng-spec uses this crate without its `probe` feature. The probes (the
//! `probe` feature, on by default, which the monitor uses) observe and never judge, never panic
//! on what the network sends, and leave their time limit to the caller.

#[macro_use]
mod registry;
mod kind;
mod kinds;
#[cfg(feature = "probe")]
mod probe;

pub use kind::{Context, Kind, KindInfo, Subject};
pub use kinds::*;
#[cfg(feature = "probe")]
pub use probe::{error_chain, Clients, Endpoint, Failed, Observation, Run};
