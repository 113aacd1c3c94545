use std::collections::BTreeMap;

use peng_tsdb::{FieldValue, Point, Query, SeriesKey};

pub fn tags(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

pub fn point(
    measurement: &str,
    tag_pairs: &[(&str, &str)],
    fields: &[(&str, FieldValue)],
    ts: i64,
) -> Point {
    Point {
        measurement: measurement.into(),
        tags: tag_pairs
            .iter()
            .map(|(k, v)| ((*k).into(), (*v).into()))
            .collect(),
        fields: fields
            .iter()
            .map(|(k, v)| ((*k).into(), v.clone()))
            .collect(),
        timestamp_ns: ts,
    }
}

pub fn float(measurement: &str, host: &str, value: f64, ts: i64) -> Point {
    point(
        measurement,
        &[("host", host)],
        &[("value", FieldValue::Float(value))],
        ts,
    )
}

pub fn key(measurement: &str, tag_pairs: &[(&str, &str)]) -> SeriesKey {
    SeriesKey {
        measurement: measurement.to_string(),
        tags: tags(tag_pairs),
    }
}

pub fn all(measurement: &str) -> Query {
    Query {
        measurement: measurement.to_string(),
        start_ns: i64::MIN,
        end_ns: i64::MAX,
        ..Query::default()
    }
}
