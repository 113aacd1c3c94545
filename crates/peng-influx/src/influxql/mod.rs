//! InfluxQL: the query language of InfluxDB 1.x, as far as Grafana's InfluxQL data source,
//! Telegraf and the `influx` CLI use it (`docs/metrics.md` lists what is understood).

mod ast;
mod parse;

pub use ast::*;
pub use parse::{parse_query, parse_rfc3339, ParseError};
