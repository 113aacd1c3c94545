//! The service page's Usage section: for each instance (`stage/index`) that was recorded in the
//! last hour, its CPU in cores against what it reserves and its memory against its limit, both
//! on the same time axis so that the instances can be compared.

use maud::{html, Markup};

use super::chart::{self, Series, Unit};
use peng_costs::usage::USAGE_EVERY;
use peng_costs::usage::{cpu_cores, InstanceSeries, ServiceUsage};

const USED: &str = "#2563eb";
const LIMIT: &str = "#d97706";
const MIN_SPAN: std::time::Duration = std::time::Duration::from_secs(60);

pub fn section(u: &ServiceUsage) -> Markup {
    let spans = u.instances.iter().filter_map(InstanceSeries::span);
    let (Some(t0), Some(t1)) = (spans.clone().map(|s| s.0).min(), spans.map(|s| s.1).max()) else {
        return html! { p class="empty muted" { "No usage recorded in the last hour." } };
    };
    // The limits span the time axis, which shows at least a minute so that they stay visible.
    let t0 = t0.min(t1 - MIN_SPAN.as_nanos() as i64);
    // Points are recorded every USAGE_EVERY: a longer silence means the instance did not run.
    let gap = USAGE_EVERY.as_nanos() as i64 * 3;
    let used = |name: &str, points: Vec<(i64, f64)>| Series {
        name: name.to_string(),
        points,
        color: USED,
        dashed: false,
        max_gap_ns: Some(gap),
    };
    let flat = |name: String, v: f64| Series {
        name,
        points: vec![(t0, v), (t1, v)],
        color: LIMIT,
        dashed: true,
        max_gap_ns: None,
    };
    let reserved = Unit::Cores.value(u.cpu_reserved);
    let limit = Unit::Bytes.value(u.memory_limit as f64);
    html! {
        div class="charts" {
            @for i in &u.instances {
                @let name = format!("{}/{}", i.stage, i.index);
                @let cpu = cpu_cores(&i.cpu_seconds);
                figure {
                    figcaption {
                        strong { (name) " · CPU" } " "
                        span class="muted" {
                            "cores, last hour: " (summary(&cpu, Unit::Cores)) " · reserved " (reserved) " (dashed)"
                        }
                    }
                    @if cpu.is_empty() {
                        p class="muted empty" { "No CPU figure yet: it takes two samples, " (USAGE_EVERY.as_secs()) " s apart." }
                    } @else {
                        (chart::lines(
                            &[used(&name, cpu.clone()), flat(format!("reserved {reserved}"), u.cpu_reserved)],
                            Unit::Cores,
                            &format!("CPU of {name} in cores, with the {reserved} reserved"),
                        ))
                    }
                }
                figure {
                    figcaption {
                        strong { (name) " · memory" } " "
                        span class="muted" {
                            "last hour: " (summary(&i.memory_bytes, Unit::Bytes)) " · limit " (limit) " (dashed)"
                        }
                    }
                    @if i.memory_bytes.is_empty() {
                        p class="muted empty" { "No memory recorded." }
                    } @else {
                        (chart::lines(
                            &[used(&name, i.memory_bytes.clone()), flat(format!("limit {limit}"), u.memory_limit as f64)],
                            Unit::Bytes,
                            &format!("memory of {name}, with the {limit} limit"),
                        ))
                    }
                }
            }
        }
    }
}

/// `now 0.012 · max 0.051`, or `none` without points.
fn summary(points: &[(i64, f64)], unit: Unit) -> String {
    let Some(last) = points.last() else {
        return "none".into();
    };
    let max = points.iter().map(|p| p.1).fold(0.0, f64::max);
    format!("now {} · max {}", unit.value(last.1), unit.value(max))
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: i64 = 1_000_000_000;

    #[test]
    fn each_instance_gets_a_cpu_and_a_memory_chart_with_its_limits() {
        let u = ServiceUsage {
            cpu_reserved: 0.5,
            memory_limit: 512 * 1024 * 1024,
            instances: vec![
                InstanceSeries {
                    stage: "production".into(),
                    index: 0,
                    cpu_seconds: vec![(0, 1.0), (10 * S, 2.0), (20 * S, 0.1), (30 * S, 1.1)],
                    memory_bytes: vec![(0, 100.0 * 1048576.0), (30 * S, 200.0 * 1048576.0)],
                },
                InstanceSeries {
                    stage: "production".into(),
                    index: 1,
                    cpu_seconds: vec![(30 * S, 0.5)],
                    memory_bytes: vec![(30 * S, 50.0 * 1048576.0)],
                },
            ],
        };
        let html = section(&u).into_string();
        for want in [
            "production/0 · CPU",
            "cores, last hour: now 0.10 · max 0.10 · reserved 0.50 (dashed)",
            "production/0 · memory",
            "last hour: now 200.0 MiB · max 200.0 MiB · limit 512.0 MiB (dashed)",
            "production/1 · memory",
            "No CPU figure yet",
            "<title>reserved 0.50</title>",
            "<title>limit 512.0 MiB</title>",
            r#"aria-label="memory of production/1, with the 512.0 MiB limit""#,
        ] {
            assert!(html.contains(want), "{want:?} missing in {html}");
        }
        assert_eq!(html.matches("<svg").count(), 3, "{html}");
        assert_eq!(html.matches("stroke-dasharray").count(), 3, "{html}");
    }

    #[test]
    fn no_points_is_said_so() {
        let html = section(&ServiceUsage::default()).into_string();
        assert!(
            html.contains("No usage recorded in the last hour."),
            "{html}"
        );
    }
}
