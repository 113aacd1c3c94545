//! Instances' recorded usage, read back from the metrics store: each instance's points for its
//! service page.
//!
//! The points are what `workers::usage_loop` writes every `USAGE_EVERY`. `cpu_seconds` counts up
//! from the making of an instance's cgroup, so a step down means the instance was replaced and
//! that step is left out; `memory_bytes` is what was in use at that moment.
//! The computations are pure; only `read` touches the store, and it is synchronous.

use std::collections::BTreeMap;

use peng_tsdb::{FieldValue, Query, Tsdb, TsdbError};

use crate::workers::USAGE_MEASUREMENT;

const CPU_FIELD: &str = "cpu_seconds";
const MEMORY_FIELD: &str = "memory_bytes";
const NS: f64 = 1e9;

/// One instance's points, ascending in time.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct InstanceSeries {
    pub stage: String,
    pub index: u32,
    pub cpu_seconds: Vec<(i64, f64)>,
    pub memory_bytes: Vec<(i64, f64)>,
}

impl InstanceSeries {
    /// The time of its first and last point.
    pub fn span(&self) -> Option<(i64, i64)> {
        let times = || {
            self.cpu_seconds
                .iter()
                .chain(&self.memory_bytes)
                .map(|p| p.0)
        };
        Some((times().min()?, times().max()?))
    }
}

/// One service's recent usage with what each of its instances reserves.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ServiceUsage {
    /// Cores each instance reserves (`run.resources.cpu`).
    pub cpu_reserved: f64,
    /// The memory each instance may hold (`run.resources.memory`).
    pub memory_limit: u64,
    /// Instances with points, by stage and index.
    pub instances: Vec<InstanceSeries>,
}

/// Cores used between consecutive points of a `cpu_seconds` counter, at the later point's time.
/// A step down is a new cgroup and gives no point.
pub fn cpu_cores(points: &[(i64, f64)]) -> Vec<(i64, f64)> {
    points
        .windows(2)
        .filter_map(|w| {
            let ((t0, v0), (t1, v1)) = (w[0], w[1]);
            (t1 > t0 && v1 >= v0).then(|| (t1, (v1 - v0) / ((t1 - t0) as f64 / NS)))
        })
        .collect()
}

/// Reads the usage points in `[start_ns, end_ns)` of the series whose tags match `tags` (e.g. a
/// team and a service; nothing for every service), per `(team, service)` tag pair and then per
/// instance, sorted by stage and index.
pub fn read(
    tsdb: &Tsdb,
    tags: BTreeMap<String, String>,
    start_ns: i64,
    end_ns: i64,
) -> Result<BTreeMap<(String, String), Vec<InstanceSeries>>, TsdbError> {
    let data = tsdb.query(&Query {
        measurement: USAGE_MEASUREMENT.to_string(),
        tag_filter: tags,
        fields: Some(vec![CPU_FIELD.to_string(), MEMORY_FIELD.to_string()]),
        start_ns,
        end_ns,
    })?;
    let mut out: BTreeMap<(String, String), BTreeMap<(String, u32), InstanceSeries>> =
        BTreeMap::new();
    for s in data {
        let tag = |k: &str| s.key.tags.get(k).cloned().unwrap_or_default();
        let Ok(index) = tag("instance").parse::<u32>() else {
            continue;
        };
        let stage = tag("stage");
        let series = out
            .entry((tag("team"), tag("service")))
            .or_default()
            .entry((stage.clone(), index))
            .or_insert_with(|| InstanceSeries {
                stage,
                index,
                ..Default::default()
            });
        let points: Vec<(i64, f64)> = s
            .points
            .iter()
            .filter_map(|(t, v)| number(v).map(|v| (*t, v)))
            .collect();
        match s.field.as_str() {
            CPU_FIELD => series.cpu_seconds = points,
            MEMORY_FIELD => series.memory_bytes = points,
            _ => {}
        }
    }
    Ok(out
        .into_iter()
        .map(|(k, v)| (k, v.into_values().collect()))
        .collect())
}

fn number(v: &FieldValue) -> Option<f64> {
    match v {
        FieldValue::Float(f) if f.is_finite() => Some(*f),
        FieldValue::Integer(i) => Some(*i as f64),
        FieldValue::Unsigned(u) => Some(*u as f64),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: i64 = 1_000_000_000;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-9
    }

    #[test]
    fn cpu_is_the_rate_between_points_and_a_step_down_is_a_new_cgroup() {
        // 0.5 cores, then the instance is replaced (its counter starts again near 0), then 1 core.
        let counter = [
            (0, 10.0),
            (10 * S, 15.0),
            (20 * S, 20.0),
            (30 * S, 0.2),
            (40 * S, 10.2),
        ];
        let rates = cpu_cores(&counter);
        assert_eq!(rates.len(), 3, "{rates:?}");
        assert_eq!(rates[0].0, 10 * S);
        assert!(close(rates[0].1, 0.5), "{rates:?}");
        assert!(close(rates[1].1, 0.5), "{rates:?}");
        assert_eq!(
            rates[2].0,
            40 * S,
            "the step down gives no point: {rates:?}"
        );
        assert!(close(rates[2].1, 1.0), "{rates:?}");
        // One point has no rate; two at the same time neither.
        assert!(cpu_cores(&[(0, 1.0)]).is_empty());
        assert!(cpu_cores(&[(S, 1.0), (S, 2.0)]).is_empty());
    }
}
