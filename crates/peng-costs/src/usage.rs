//! Instances' recorded usage, read back from the metrics store: each instance's points for its
//! service page, and each service's average use, which the cost report charges where it exceeds
//! the reservation.
//!
//! The points are what the server writes every `USAGE_EVERY`. `cpu_seconds` counts up
//! from the making of an instance's cgroup, so a step down means the instance was replaced and
//! that step is left out; `memory_bytes` is what was in use at that moment, and counts until the
//! next point, for at most `HOLD` (an instance that stopped being recorded stopped running).
//! The computations are pure; only `read` touches the store, and it is synchronous.

use std::collections::BTreeMap;

use peng_tsdb::{FieldValue, Query, Tsdb, TsdbError};

use crate::Used;

/// How often instances' usage is recorded.
pub const USAGE_EVERY: std::time::Duration = std::time::Duration::from_secs(10);

/// The metrics store's measurement of instances' usage: tags `team, service, stage, instance`,
/// fields `cpu_seconds` (cumulative), `memory_bytes`, `oom_kills` (cumulative).
pub const USAGE_MEASUREMENT: &str = "instance_usage";

const CPU_FIELD: &str = "cpu_seconds";
const MEMORY_FIELD: &str = "memory_bytes";
const NS: f64 = 1e9;

/// The longest a memory point counts for: two recording intervals, so one late tick loses
/// nothing and a stopped instance is not charged for the time it was gone.
const HOLD: std::time::Duration = USAGE_EVERY.saturating_mul(2);

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

/// CPU seconds used over the points of a `cpu_seconds` counter: the sum of its steps up.
pub fn cpu_seconds_used(points: &[(i64, f64)]) -> f64 {
    points.windows(2).map(|w| (w[1].1 - w[0].1).max(0.0)).sum()
}

/// Byte-seconds of memory held up to `end_ns`: each point's value until the next point, for at
/// most `HOLD`.
pub fn memory_byte_seconds(points: &[(i64, f64)], end_ns: i64) -> f64 {
    let hold = HOLD.as_nanos() as i64;
    points
        .iter()
        .enumerate()
        .map(|(i, &(t, v))| {
            let next = points.get(i + 1).map_or(end_ns, |p| p.0).min(end_ns);
            v.max(0.0) * (next - t).clamp(0, hold) as f64 / NS
        })
        .sum()
}

/// What a service's instances used on average from `start_ns`, or from their first point when
/// that is later, to `end_ns`: cores (CPU seconds over the window's seconds) and the
/// time-weighted mean of their memory summed. `None` without points.
pub fn average(instances: &[InstanceSeries], start_ns: i64, end_ns: i64) -> Option<Used> {
    let first = instances
        .iter()
        .filter_map(|i| i.span())
        .map(|s| s.0)
        .min()?;
    let from = first.max(start_ns);
    // A window shorter than one recording interval would make one point weigh too much.
    let secs = ((end_ns - from) as f64 / NS).max(USAGE_EVERY.as_secs_f64());
    let cpu: f64 = instances
        .iter()
        .map(|i| cpu_seconds_used(&i.cpu_seconds))
        .sum();
    let memory: f64 = instances
        .iter()
        .map(|i| memory_byte_seconds(&i.memory_bytes, end_ns))
        .sum();
    Some(Used {
        cpu: cpu / secs,
        memory: (memory / secs) as u64,
    })
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
        assert!(close(cpu_seconds_used(&counter), 20.0));
        // One point has no rate; two at the same time neither.
        assert!(cpu_cores(&[(0, 1.0)]).is_empty());
        assert!(cpu_cores(&[(S, 1.0), (S, 2.0)]).is_empty());
        assert!(close(cpu_seconds_used(&[(0, 1.0)]), 0.0));
    }

    #[test]
    fn memory_counts_until_the_next_point_but_not_across_a_gap() {
        let mib = 1024.0 * 1024.0;
        let points = [
            (0, 100.0 * mib),
            (10 * S, 200.0 * mib),
            (500 * S, 50.0 * mib),
        ];
        // 100 MiB for 10 s, 200 MiB for HOLD (not the 490 s gap), 50 MiB until the end.
        let held = memory_byte_seconds(&points, 505 * S);
        let hold = HOLD.as_secs_f64();
        assert!(close(held, (1000.0 + 200.0 * hold + 250.0) * mib), "{held}");
        // Nothing counts after the end, nor before the first point.
        assert!(close(memory_byte_seconds(&points, 5 * S), 500.0 * mib));
    }

    #[test]
    fn the_average_of_a_service_sums_its_instances_over_the_window() {
        let gib = 1024.0 * 1024.0 * 1024.0;
        let instance = |index, cores: f64, memory: f64| InstanceSeries {
            stage: "production".into(),
            index,
            cpu_seconds: (0..=60)
                .map(|i| (i * 10 * S, i as f64 * 10.0 * cores))
                .collect(),
            memory_bytes: (0..=60).map(|i| (i * 10 * S, memory)).collect(),
        };
        let both = [instance(0, 0.5, gib), instance(1, 0.25, 0.5 * gib)];
        // The service's first point is later than the window's start: the window starts there.
        let used = average(&both, -3600 * S, 600 * S).expect("points");
        assert!(close(used.cpu, 0.75), "{used:?}");
        assert_eq!(used.memory, (1.5 * gib) as u64, "{used:?}");
        // A window that starts later counts only what was used in it.
        let half: Vec<InstanceSeries> = both
            .iter()
            .map(|i| InstanceSeries {
                cpu_seconds: i.cpu_seconds[30..].to_vec(),
                memory_bytes: i.memory_bytes[30..].to_vec(),
                ..i.clone()
            })
            .collect();
        let used = average(&half, 300 * S, 600 * S).expect("points");
        assert!(close(used.cpu, 0.75), "{used:?}");
        assert!(average(&[], 0, 600 * S).is_none());
    }
}
