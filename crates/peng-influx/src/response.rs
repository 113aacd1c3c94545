//! The JSON of `/query` answers, as InfluxDB 1.x writes it.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::line::Precision;

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct QueryResponse {
    pub results: Vec<StatementResult>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct StatementResult {
    pub statement_id: usize,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub series: Vec<Series>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Series {
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tags: Option<BTreeMap<String, String>>,
    pub columns: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub values: Vec<Vec<Value>>,
}

/// A cell of an answer.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    Float(f64),
    Integer(i64),
    Unsigned(u64),
    Boolean(bool),
    String(String),
    /// A time in nanoseconds, written per `epoch` (RFC 3339 without it).
    Time(i64, Option<Precision>),
}

impl Value {
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Value::Float(f) => Some(*f),
            Value::Integer(i) => Some(*i as f64),
            Value::Unsigned(u) => Some(*u as f64),
            _ => None,
        }
    }
}

impl Serialize for Value {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Value::Null => s.serialize_none(),
            // As Go writes a float64: without ".0" when it is whole.
            Value::Float(f) if f.fract() == 0.0 && f.abs() < 1e15 => s.serialize_i64(*f as i64),
            Value::Float(f) if f.is_finite() => s.serialize_f64(*f),
            Value::Float(_) => s.serialize_none(),
            Value::Integer(i) => s.serialize_i64(*i),
            Value::Unsigned(u) => s.serialize_u64(*u),
            Value::Boolean(b) => s.serialize_bool(*b),
            Value::String(v) => s.serialize_str(v),
            Value::Time(ns, Some(p)) => s.serialize_i64(ns.div_euclid(p.nanos())),
            Value::Time(ns, None) => s.serialize_str(&rfc3339(*ns)),
        }
    }
}

/// `2023-07-22T04:26:40Z`, with as many fraction digits as needed (Go's RFC3339Nano).
pub fn rfc3339(ns: i64) -> String {
    let secs = ns.div_euclid(1_000_000_000);
    let frac = ns.rem_euclid(1_000_000_000);
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (y, m, d) = peng_core::calendar::civil_from_days(days);
    let mut out = format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    );
    if frac != 0 {
        let f = format!("{frac:09}");
        out.push('.');
        out.push_str(f.trim_end_matches('0'));
    }
    out.push('Z');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_as_influxdb_writes_them() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_690_000_000_500_000_000), "2023-07-22T04:26:40.5Z");
        assert_eq!(rfc3339(-1), "1969-12-31T23:59:59.999999999Z");
        let v = serde_json::to_string(&vec![
            Value::Time(1_690_000_000_123_456_789, Some(Precision::Milliseconds)),
            Value::Null,
            Value::Float(f64::NAN),
            Value::Integer(3),
            Value::Float(9.0),
            Value::Float(2.5),
        ])
        .unwrap();
        assert_eq!(v, "[1690000000123,null,null,3,9,2.5]");
    }
}
