//! `http`: one request, to a path on the service's own instances or to a fixed URL; it observes
//! the status, the latency and, when a condition needs it, the body.
//!
//! ```yaml
//! http: { path: /checkout }                                   # GET, on an instance of the stage
//! http: { url: "https://payments.example/status", method: HEAD }
//! ```

#[cfg(feature = "probe")]
mod probe;

use std::fmt;

use peng_yaml::tree::Entry;
use peng_yaml::{non_empty_string, string, url, Cx};
use serde_json::{json, Value};

use crate::kind::settings;
use crate::{Context, Kind, Subject};

#[cfg(feature = "probe")]
pub use probe::MAX_BODY_BYTES;
#[cfg(feature = "probe")]
pub(crate) use probe::client;

/// `http: { path: /checkout }` against an instance of the stage, or `http: { url: ... }`
/// against a fixed address. `method` defaults to GET.
#[derive(Debug, Clone, PartialEq)]
pub struct Http {
    pub target: HttpTarget,
    pub method: String,
}

#[derive(Debug, Clone, PartialEq)]
pub enum HttpTarget {
    /// A path on the service's own instances; the sensor runs once per stage against one
    /// running instance, taken in turn.
    Path(String),
    /// An absolute http(s) URL.
    Url(String),
}

/// Methods an http sensor may use.
pub const METHODS: &[&str] = &["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"];

impl Kind for Http {
    const KEY: &'static str = "http";
    const KEYS: &'static [&'static str] = &["path", "url", "method"];
    const A_SENSOR: &'static str = "an http sensor";
    const CHECKS: &'static str = "an http sensor checks status, latency and body";
    const OBSERVES: &'static [Subject] = &[Subject::Status, Subject::Latency, Subject::Body];

    fn parse(cx: &mut Cx, entry: &Entry, sensor: &str, _: &Context) -> Option<Http> {
        let f = settings(cx, entry, sensor, Self::KEYS)?;
        let target = match (f.get("path"), f.entry("url")) {
            (Some(_), Some(url)) => {
                cx.err(
                    url.key_pos,
                    format!("{} has both 'path' and 'url'; choose one", f.what),
                );
                None
            }
            (Some(node), None) => {
                non_empty_string(cx, node, &f.label("path"), "a path like /health").and_then(
                    |s| {
                        if s.value.starts_with('/') {
                            Some(HttpTarget::Path(s.value.clone()))
                        } else {
                            cx.err(
                                s.pos,
                                format!(
                                    "{}: the path '{}' must start with '/'",
                                    f.label("path"),
                                    s.value
                                ),
                            );
                            None
                        }
                    },
                )
            }
            (None, Some(url_entry)) => {
                url(cx, &url_entry.value, &f.label("url")).map(HttpTarget::Url)
            }
            (None, None) => {
                cx.err(
                    f.at,
                    format!(
                        "{} needs 'path' (on the service's instances) or 'url'",
                        f.what
                    ),
                );
                None
            }
        };
        let method = match f.get("method") {
            Some(node) => string(cx, node, &f.label("method"), "an HTTP method").and_then(|s| {
                if METHODS.contains(&s.value.as_str()) {
                    Some(s.value.clone())
                } else {
                    cx.err(
                        s.pos,
                        format!(
                            "{}: unknown method '{}'; use one of {}",
                            f.label("method"),
                            s.value,
                            METHODS.join(", ")
                        ),
                    );
                    None
                }
            }),
            None => Some("GET".to_string()),
        };
        Some(Http {
            target: target?,
            method: method?,
        })
    }

    fn schema() -> Value {
        json!({
            "description": "An HTTP request to a path on the service's instances, or to a fixed URL.",
            "type": "object",
            "additionalProperties": false,
            "oneOf": [ { "required": ["path"] }, { "required": ["url"] } ],
            "properties": {
                "path": {
                    "description": "A path on one running instance of the stage, taken in turn.",
                    "type": "string",
                    "pattern": "^/"
                },
                "url": { "$ref": "#/$defs/url" },
                "method": {
                    "description": "Default GET.",
                    "enum": METHODS
                }
            }
        })
    }

    fn needs_instance(&self) -> bool {
        matches!(self.target, HttpTarget::Path(_))
    }

    #[cfg(feature = "probe")]
    fn probe(
        &self,
        clients: &crate::Clients,
        run: &crate::Run<'_>,
    ) -> impl std::future::Future<Output = Result<crate::Observation, crate::Failed>> + Send {
        probe::probe(self, &clients.http, run)
    }
}

impl fmt::Display for Http {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Http { target, method } = self;
        match target {
            HttpTarget::Path(p) => write!(f, "http {method} {p}"),
            HttpTarget::Url(u) => write!(f, "http {method} {u}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kind::read;
    use crate::SensorKind;

    fn http(text: &str) -> Result<SensorKind, Vec<String>> {
        read(text, Context::default())
    }

    #[test]
    fn a_path_or_a_url_with_a_method() {
        let kind = http("http: { path: /checkout }").unwrap();
        assert_eq!(kind.to_string(), "http GET /checkout");
        assert!(kind.needs_instance());
        let kind = http("http: { url: 'https://pay.example/s', method: HEAD }").unwrap();
        assert_eq!(kind.to_string(), "http HEAD https://pay.example/s");
        assert!(!kind.needs_instance());
    }

    #[test]
    fn problems_name_the_sensor() {
        assert_eq!(
            http("http: { path: checkout }").unwrap_err(),
            ["peng.yaml:1:15: 'path' in 'http' of sensor 'x': the path 'checkout' must start with '/'"]
        );
        assert_eq!(
            http("http: { path: /a, url: 'http://b' }").unwrap_err(),
            ["peng.yaml:1:19: 'http' of sensor 'x' has both 'path' and 'url'; choose one"]
        );
        assert_eq!(
            http("http: { path: /a, every: 2s }").unwrap_err(),
            ["peng.yaml:1:19: 'every' belongs to sensor 'x' itself, next to 'name', not inside 'http'"]
        );
        assert_eq!(
            http("http: { path: /a, method: FETCH }").unwrap_err(),
            ["peng.yaml:1:27: 'method' in 'http' of sensor 'x': unknown method 'FETCH'; use one of GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS"]
        );
    }
}
