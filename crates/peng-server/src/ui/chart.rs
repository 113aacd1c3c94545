//! Inline SVG charts, drawn on the server so that pages need no JavaScript.
//!
//! SVG elements inside HTML are always written with an end tag (`line {}`): the HTML parser
//! does not treat them as void, so `<line ...>` without one would swallow what follows.

use maud::{html, Markup};
use peng_api::SensorPoint;

use super::format::{clock, ms};

const W: f64 = 600.0;
const H: f64 = 150.0;
const LEFT: f64 = 46.0;
const RIGHT: f64 = 10.0;
const TOP: f64 = 10.0;
const BOTTOM: f64 = 28.0;
/// More runs than this are drawn as the slowest run per slot, so a busy hour stays readable.
const MAX_POINTS: usize = 280;
/// Up to this many points get a dot with a tooltip.
const MAX_DOTS: usize = 120;

/// One drawn point: the slowest run of its slot, failed when any run in it failed.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Point {
    at_ns: i64,
    ok: bool,
    latency_ms: f64,
}

/// Latency of each run as a line with a labelled scale and time axis; failed runs as red
/// dots and red marks under the axis.
pub fn latency(points: &[SensorPoint]) -> Markup {
    if points.is_empty() {
        return html! { p class="muted empty" { "No runs in the last hour." } };
    }
    let pts = reduce(points);
    let t0 = pts.first().map_or(0, |p| p.at_ns);
    let t1 = pts.last().map_or(0, |p| p.at_ns);
    let span = (t1 - t0).max(1) as f64;
    let top = nice_ceiling(pts.iter().map(|p| p.latency_ms).fold(0.0, f64::max));
    let plot_w = W - LEFT - RIGHT;
    let plot_h = H - TOP - BOTTOM;
    let x = |t: i64| {
        if t1 == t0 {
            LEFT + plot_w / 2.0
        } else {
            LEFT + (t - t0) as f64 / span * plot_w
        }
    };
    let y = |v: f64| TOP + (1.0 - (v / top).clamp(0.0, 1.0)) * plot_h;
    let line: String = pts
        .iter()
        .map(|p| format!("{:.1},{:.1}", x(p.at_ns), y(p.latency_ms)))
        .collect::<Vec<_>>()
        .join(" ");
    let failed = points.iter().filter(|p| !p.ok).count();
    let base = H - BOTTOM;
    html! {
        svg class="chart" viewBox={ "0 0 " (W) " " (H) } role="img"
            aria-label={ "latency of " (points.len()) " runs, " (failed) " failed" } {
            @for frac in [0.0, 0.5, 1.0] {
                line x1=(LEFT) x2=(W - RIGHT) y1=(fmt1(y(top * frac))) y2=(fmt1(y(top * frac)))
                    stroke=(if frac == 0.0 { "#c3c8d1" } else { "#eceef2" }) {}
                text x=(LEFT - 6.0) y=(fmt1(y(top * frac) + 4.0)) text-anchor="end" class="axis" {
                    (ms(top * frac))
                }
            }
            text x=(LEFT) y=(H - 3.0) class="axis" { (clock(t0)) }
            @if t1 != t0 {
                text x=(W - RIGHT) y=(H - 3.0) text-anchor="end" class="axis" { (clock(t1)) " UTC" }
            }
            polyline points=(line) fill="none" stroke="#2563eb" stroke-width="1.5" stroke-linejoin="round" {}
            @for p in pts.iter().filter(|p| !p.ok) {
                rect x=(fmt1(x(p.at_ns) - 1.5)) y=(fmt1(base + 2.0)) width="3" height="6" fill="#c0262d" {}
            }
            @if pts.len() <= MAX_DOTS {
                @for p in &pts {
                    circle cx=(fmt1(x(p.at_ns))) cy=(fmt1(y(p.latency_ms))) r="2.5"
                        fill=(if p.ok { "#2563eb" } else { "#c0262d" }) {
                        title { (clock(p.at_ns)) " UTC · " (ms(p.latency_ms)) @if !p.ok { " · failed" } }
                    }
                }
            }
        }
    }
}

/// A one-line summary of the runs under a chart.
pub fn summary(points: &[SensorPoint]) -> String {
    let Some(last) = points.last() else {
        return String::new();
    };
    let failed = points.iter().filter(|p| !p.ok).count();
    let max = points.iter().map(|p| p.latency_ms).fold(0.0, f64::max);
    format!(
        "{} run{}, {} failed · last {} · max {}",
        points.len(),
        if points.len() == 1 { "" } else { "s" },
        failed,
        ms(last.latency_ms),
        ms(max)
    )
}

fn fmt1(v: f64) -> String {
    format!("{v:.1}")
}

/// The points to draw: all of them when few, else the slowest run per time slot.
fn reduce(points: &[SensorPoint]) -> Vec<Point> {
    let all = points.iter().map(|p| Point {
        at_ns: p.at_ns,
        ok: p.ok,
        latency_ms: if p.latency_ms.is_finite() {
            p.latency_ms.max(0.0)
        } else {
            0.0
        },
    });
    if points.len() <= MAX_POINTS {
        return all.collect();
    }
    let t0 = points.first().map_or(0, |p| p.at_ns);
    let t1 = points.last().map_or(0, |p| p.at_ns);
    let width = ((t1 - t0) / MAX_POINTS as i64).max(1);
    let mut out: Vec<Point> = Vec::with_capacity(MAX_POINTS + 1);
    let mut slot = i64::MIN;
    for p in all {
        let s = (p.at_ns - t0) / width;
        match out.last_mut() {
            Some(last) if s == slot => {
                last.ok &= p.ok;
                if p.latency_ms > last.latency_ms {
                    last.latency_ms = p.latency_ms;
                    last.at_ns = p.at_ns;
                }
            }
            _ => {
                slot = s;
                out.push(p);
            }
        }
    }
    out
}

/// The smallest 1, 2 or 5 times a power of ten at or above `v` (and at least 1 ms).
fn nice_ceiling(v: f64) -> f64 {
    if !v.is_finite() || v <= 1.0 {
        return 1.0;
    }
    let mag = 10f64.powf(v.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .into_iter()
        .map(|m| m * mag)
        .find(|c| *c >= v)
        .unwrap_or(10.0 * mag)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pt(at_ns: i64, ok: bool, latency_ms: f64) -> SensorPoint {
        SensorPoint {
            at_ns,
            ok,
            latency_ms,
            value: None,
        }
    }

    #[test]
    fn scales_round_up_to_readable_numbers() {
        assert_eq!(nice_ceiling(0.3), 1.0);
        assert_eq!(nice_ceiling(7.0), 10.0);
        assert_eq!(nice_ceiling(12.0), 20.0);
        assert_eq!(nice_ceiling(331.0), 500.0);
        assert_eq!(nice_ceiling(f64::NAN), 1.0);
    }

    #[test]
    fn svg_elements_are_closed_so_the_html_parser_does_not_nest_them() {
        let svg = latency(&[pt(1, true, 3.0), pt(2_000_000_000, false, 9.0)]).into_string();
        assert!(svg.contains("</polyline>"), "{svg}");
        assert!(svg.contains("</line>"), "{svg}");
        assert!(svg.contains("</circle>"), "{svg}");
        assert!(svg.contains("failed"), "{svg}");
    }

    #[test]
    fn one_run_is_drawn_as_a_dot_and_none_as_a_note() {
        assert!(latency(&[pt(5, true, 1.0)])
            .into_string()
            .contains("<circle"));
        assert!(latency(&[]).into_string().contains("No runs"));
    }

    #[test]
    fn many_runs_keep_the_slowest_per_slot_and_every_failure() {
        let pts: Vec<_> = (0..3600)
            .map(|i| {
                pt(
                    i * 1_000_000_000,
                    i != 1800,
                    if i == 900 { 500.0 } else { 2.0 },
                )
            })
            .collect();
        let r = reduce(&pts);
        assert!(r.len() <= MAX_POINTS + 1, "{}", r.len());
        assert!(r.iter().any(|p| p.latency_ms == 500.0));
        assert_eq!(r.iter().filter(|p| !p.ok).count(), 1);
        assert_eq!(
            summary(&pts),
            "3600 runs, 1 failed · last 2.0 ms · max 500 ms"
        );
    }
}
