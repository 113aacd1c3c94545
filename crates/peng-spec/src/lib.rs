//! The service file (`peng.yaml`) and the platform file: YAML text in, validated types or
//! compiler-style diagnostics out.
//!
//! This crate owns the file formats: their parsing, every validation rule, the diagnostics
//! (`file:line:col: message`, all problems at once, "did you mean" for unknown keys) and the
//! JSON Schema published for editors. It is pure: no I/O, no clock, no network. Raw YAML never
//! leaves it; everything downstream takes `ServiceSpec` and `Platform`. Every input has a limit
//! ([`limits`]), and no input makes it panic.
//!
//! It reads with `peng-yaml` (the positioned tree, the diagnostics, the checks of each value),
//! and each sensor kind reads its own entry of a sensor and gives its own piece of the schema
//! (`peng-sensors`, one folder per kind); what every sensor has (name, schedule, `expect`) and
//! every rule across the file stay here.

mod condition;
pub mod limits;
pub mod model;
mod parse;
mod platform;
mod schema;

pub use model::*;
pub use parse::parse_service;
/// The sensor kinds, each with its settings (`sensors::http::Http`, `sensors::tcp::Tcp`, …).
pub use peng_sensors as sensors;
pub use peng_sensors::{http::HttpTarget, SensorKind};
pub use peng_yaml::{Diagnostic, Diagnostics};
pub use platform::{
    parse_platform, Capacity, DbOfferings, DbPlan, Isolation, IsolationMode, Platform, Prices,
    SharedCapacity, SharedServer, ANY_TEAM, BUILTIN_PLATFORM_YAML, PLATFORM_KIND,
    RESERVED_SETTINGS, TEAM_PLACEHOLDER,
};
pub use schema::service_schema;
