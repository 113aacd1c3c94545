//! `tcp`: a connection to a port, of the instance itself or of a fixed host; it observes the
//! latency of the connect.
//!
//! ```yaml
//! tcp: {}                                # the instance's own port
//! tcp: { host: cache.internal, port: 6379 }
//! ```

#[cfg(feature = "probe")]
mod probe;

use std::fmt;

use peng_yaml::tree::Entry;
use peng_yaml::{integer, non_empty_string, Cx};
use serde_json::{json, Value};

use crate::kind::settings;
use crate::{Context, Kind, Subject};

/// The host connected to when only a port is written.
const DEFAULT_HOST: &str = "127.0.0.1";

/// `tcp: { port: 5432 }`, or `tcp: {}` for the instance's own port; `host` defaults to
/// 127.0.0.1.
#[derive(Debug, Clone, PartialEq)]
pub struct Tcp {
    pub host: Option<String>,
    pub port: Option<u16>,
}

impl Kind for Tcp {
    const KEY: &'static str = "tcp";
    const KEYS: &'static [&'static str] = &["host", "port"];
    const A_SENSOR: &'static str = "a tcp sensor";
    const CHECKS: &'static str = "a tcp sensor can only check latency";
    const OBSERVES: &'static [Subject] = &[Subject::Latency];

    fn parse(cx: &mut Cx, entry: &Entry, sensor: &str, _: &Context) -> Option<Tcp> {
        let f = settings(cx, entry, sensor, Self::KEYS)?;
        let host = match f.get("host") {
            Some(node) => non_empty_string(cx, node, &f.label("host"), "a host name or address")
                .map(|s| Some(s.value.clone())),
            None => Some(None),
        };
        let port = match f.get("port") {
            Some(node) => integer(cx, node, &f.label("port"), 1, 65535)
                .map(|p| Some(u16::try_from(p).unwrap_or(u16::MAX))),
            None => Some(None),
        };
        if let (Some(Some(_)), Some(None)) = (&host, &port) {
            cx.err(
                f.at,
                format!(
                    "{} has a 'host' but no 'port'; name the port to connect to",
                    f.what
                ),
            );
            return None;
        }
        Some(Tcp {
            host: host?,
            port: port?,
        })
    }

    fn schema() -> Value {
        json!({
            "description": "A TCP connect; {} for the instance's own port.",
            "type": "object",
            "additionalProperties": false,
            "dependentRequired": { "host": ["port"] },
            "properties": {
                "host": {
                    "description": "Default 127.0.0.1.",
                    "type": "string",
                    "minLength": 1
                },
                "port": {
                    "type": "integer",
                    "minimum": 1,
                    "maximum": 65535
                }
            }
        })
    }

    fn needs_instance(&self) -> bool {
        self.port.is_none()
    }

    #[cfg(feature = "probe")]
    fn probe(
        &self,
        _: &crate::Clients,
        run: &crate::Run<'_>,
    ) -> impl std::future::Future<Output = Result<crate::Observation, crate::Failed>> + Send {
        probe::probe(self, run)
    }
}

impl fmt::Display for Tcp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let host = self.host.as_deref().unwrap_or(DEFAULT_HOST);
        match self.port {
            Some(p) => write!(f, "tcp {host}:{p}"),
            None => write!(f, "tcp {host}:(instance port)"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kind::read;
    use crate::SensorKind;

    fn tcp(text: &str) -> Result<SensorKind, Vec<String>> {
        read(text, Context::default())
    }

    #[test]
    fn the_instance_port_or_a_fixed_one() {
        let kind = tcp("tcp: {}").unwrap();
        assert_eq!(kind.to_string(), "tcp 127.0.0.1:(instance port)");
        assert!(kind.needs_instance());
        let kind = tcp("tcp: { host: cache.internal, port: 6379 }").unwrap();
        assert_eq!(kind.to_string(), "tcp cache.internal:6379");
        assert!(!kind.needs_instance());
        assert_eq!(
            tcp("tcp: { port: 5432 }").unwrap().to_string(),
            "tcp 127.0.0.1:5432"
        );
    }

    #[test]
    fn a_host_needs_a_port() {
        assert_eq!(
            tcp("tcp: { host: cache }").unwrap_err(),
            ["peng.yaml:1:1: 'tcp' of sensor 'x' has a 'host' but no 'port'; name the port to connect to"]
        );
        assert_eq!(
            tcp("tcp: { port: 0 }").unwrap_err(),
            ["peng.yaml:1:14: 'port' in 'tcp' of sensor 'x': expected a whole number from 1 to 65535, found '0'"]
        );
    }
}
