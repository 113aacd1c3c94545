//! The InfluxDB 1.x dialect of peng's metrics, so that Telegraf, the `influx` CLI and
//! Grafana's InfluxQL data source work against peng unchanged.
//!
//! - [`line`]: line protocol, the body of `/write`;
//! - [`influxql`]: the query language of `/query`;
//! - [`catalog`]: the team databases, named within the team; [`database`]: one of them, raw
//!   values and 5-minute rollups, each with its retention;
//! - [`exec`]: runs statements against them; [`response`]: the JSON InfluxDB answers with.
//!
//! No networking here: peng-server's `/write`, `/query` and `/ping` routes authenticate the
//! team and call into this crate on a blocking thread.

pub mod body;
pub mod catalog;
pub mod dashboard;
pub mod database;
pub mod exec;
pub mod influxql;
pub mod line;
pub mod response;

pub use catalog::{Catalog, CatalogError};
pub use database::Database;
pub use exec::{execute, Context};
pub use line::{LineError, Precision};
pub use response::QueryResponse;
