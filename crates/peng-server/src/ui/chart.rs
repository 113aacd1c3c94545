//! Inline SVG charts, drawn on the server so that pages need no JavaScript.
//!
//! SVG elements inside HTML are always written with an end tag (`line {}`): the HTML parser
//! does not treat them as void, so `<line ...>` without one would swallow what follows.

use crate::ops::services::SensorPoint;
use maud::{html, Markup};

use super::format::{bytes, clock, ms};

const W: f64 = 600.0;
const H: f64 = 150.0;
const LEFT: f64 = 46.0;
const RIGHT: f64 = 10.0;
const TOP: f64 = 10.0;
const BOTTOM: f64 = 28.0;
/// More points than this are drawn as the largest per slot, so a busy hour stays readable.
const MAX_POINTS: usize = 280;
/// Up to this many points get a dot with a tooltip.
const MAX_DOTS: usize = 120;
const MIB: f64 = 1024.0 * 1024.0;

/// What a chart's values are, which sets its scale and how its axis and captions write them.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Unit {
    /// Milliseconds; the scale is 1, 2 or 5 times a power of ten, at least 1 ms.
    Ms,
    /// CPU cores; the scale is 1, 2 or 5 times a power of ten, at least 0.01.
    Cores,
    /// Bytes; the scale is a power of two, at least 1 MiB.
    Bytes,
}

impl Unit {
    /// A value as captions and tooltips write it: `12.5 ms`, `0.042`, `120.3 MiB`.
    pub fn value(self, v: f64) -> String {
        match self {
            Unit::Ms => ms(v),
            Unit::Cores if v.abs() < 0.1 => format!("{v:.3}"),
            Unit::Cores => format!("{v:.2}"),
            Unit::Bytes => bytes(v.max(0.0) as u64),
        }
    }

    /// A grid line's value, short enough for the axis: `500 ms`, `0.25`, `512 MiB`.
    fn axis(self, v: f64) -> String {
        match self {
            Unit::Ms => ms(v),
            Unit::Cores => trimmed(v, 3),
            Unit::Bytes => {
                let unit = [("GiB", MIB * 1024.0), ("MiB", MIB), ("KiB", 1024.0)]
                    .into_iter()
                    .find(|(_, size)| v >= *size);
                match unit {
                    Some((name, size)) => format!("{} {name}", trimmed(v / size, 1)),
                    None => format!("{v:.0} B"),
                }
            }
        }
    }

    /// The top of the scale for values up to `v`.
    fn ceiling(self, v: f64) -> f64 {
        match self {
            Unit::Ms => nice_ceiling(v, 1.0),
            Unit::Cores => nice_ceiling(v, 0.01),
            Unit::Bytes => pow2_ceiling(v, MIB),
        }
    }
}

/// One line of a [`lines`] chart.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    /// Its tooltip.
    pub name: String,
    /// Ascending in time.
    pub points: Vec<(i64, f64)>,
    pub color: &'static str,
    /// Dashed: a limit or a reservation rather than a measurement.
    pub dashed: bool,
    /// Two points further apart than this are not joined (nothing was recorded between them);
    /// a point left alone is drawn as a dot. `None`: every point is joined.
    pub max_gap_ns: Option<i64>,
}

/// Several series on one scale and time axis. `label` says what the chart shows to screen
/// readers.
pub fn lines(series: &[Series], unit: Unit, label: &str) -> Markup {
    let all = || series.iter().flat_map(|s| s.points.iter());
    let (Some(t0), Some(t1)) = (all().map(|p| p.0).min(), all().map(|p| p.0).max()) else {
        return html! { p class="muted empty" { "Nothing recorded." } };
    };
    let frame = Frame::new(t0, t1, all().map(|p| p.1).fold(0.0, f64::max), unit);
    html! {
        svg class="chart" viewBox={ "0 0 " (W) " " (H) } role="img" aria-label=(label) {
            (frame.axes())
            @for s in series {
                @for run in runs(&reduce_max(&s.points, t0, t1), s.max_gap_ns.unwrap_or(i64::MAX)) {
                    @if let [(t, v)] = run {
                        circle cx=(fmt1(frame.x(*t))) cy=(fmt1(frame.y(*v))) r="2" fill=(s.color) {
                            title { (s.name) " · " (clock(*t)) " UTC · " (unit.value(*v)) }
                        }
                    } @else {
                        polyline points=(frame.polyline(run)) fill="none" stroke=(s.color)
                            stroke-width="1.5" stroke-linejoin="round"
                            stroke-dasharray=[s.dashed.then_some("5 4")] {
                            title { (s.name) }
                        }
                    }
                }
            }
        }
    }
}

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
    let frame = Frame::new(
        t0,
        t1,
        pts.iter().map(|p| p.latency_ms).fold(0.0, f64::max),
        Unit::Ms,
    );
    let line: Vec<(i64, f64)> = pts.iter().map(|p| (p.at_ns, p.latency_ms)).collect();
    let failed = points.iter().filter(|p| !p.ok).count();
    let base = H - BOTTOM;
    html! {
        svg class="chart" viewBox={ "0 0 " (W) " " (H) } role="img"
            aria-label={ "latency of " (points.len()) " runs, " (failed) " failed" } {
            (frame.axes())
            polyline points=(frame.polyline(&line)) fill="none" stroke="#2563eb" stroke-width="1.5" stroke-linejoin="round" {}
            @for p in pts.iter().filter(|p| !p.ok) {
                rect x=(fmt1(frame.x(p.at_ns) - 1.5)) y=(fmt1(base + 2.0)) width="3" height="6" fill="#c0262d" {}
            }
            @if pts.len() <= MAX_DOTS {
                @for p in &pts {
                    circle cx=(fmt1(frame.x(p.at_ns))) cy=(fmt1(frame.y(p.latency_ms))) r="2.5"
                        fill=(if p.ok { "#2563eb" } else { "#c0262d" }) {
                        title { (clock(p.at_ns)) " UTC · " (ms(p.latency_ms)) @if !p.ok { " · failed" } }
                    }
                }
            }
        }
    }
}

/// Where a chart draws: a value scale from 0 to a readable top with labelled grid lines, and a
/// time axis from `t0` to `t1` (one instant sits in the middle).
struct Frame {
    t0: i64,
    t1: i64,
    top: f64,
    unit: Unit,
}

impl Frame {
    fn new(t0: i64, t1: i64, max: f64, unit: Unit) -> Frame {
        Frame {
            t0,
            t1,
            top: unit.ceiling(max),
            unit,
        }
    }

    fn x(&self, t: i64) -> f64 {
        let plot_w = W - LEFT - RIGHT;
        if self.t1 == self.t0 {
            LEFT + plot_w / 2.0
        } else {
            LEFT + (t - self.t0) as f64 / (self.t1 - self.t0) as f64 * plot_w
        }
    }

    fn y(&self, v: f64) -> f64 {
        let v = if v.is_finite() { v } else { 0.0 };
        TOP + (1.0 - (v / self.top).clamp(0.0, 1.0)) * (H - TOP - BOTTOM)
    }

    fn polyline(&self, points: &[(i64, f64)]) -> String {
        points
            .iter()
            .map(|&(t, v)| format!("{:.1},{:.1}", self.x(t), self.y(v)))
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// Grid lines at 0, half and the top with their values, and the first and last time.
    fn axes(&self) -> Markup {
        html! {
            @for frac in [0.0, 0.5, 1.0] {
                line x1=(LEFT) x2=(W - RIGHT) y1=(fmt1(self.y(self.top * frac))) y2=(fmt1(self.y(self.top * frac)))
                    stroke=(if frac == 0.0 { "#c3c8d1" } else { "#eceef2" }) {}
                text x=(LEFT - 6.0) y=(fmt1(self.y(self.top * frac) + 4.0)) text-anchor="end" class="axis" {
                    (self.unit.axis(self.top * frac))
                }
            }
            text x=(LEFT) y=(H - 3.0) class="axis" { (clock(self.t0)) }
            @if self.t1 != self.t0 {
                text x=(W - RIGHT) y=(H - 3.0) text-anchor="end" class="axis" { (clock(self.t1)) " UTC" }
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

/// The points to draw of one series: all of them when few, else the largest per time slot of
/// the chart's span `t0..t1`.
fn reduce_max(points: &[(i64, f64)], t0: i64, t1: i64) -> Vec<(i64, f64)> {
    if points.len() <= MAX_POINTS {
        return points.to_vec();
    }
    let width = ((t1 - t0) / MAX_POINTS as i64).max(1);
    let mut out: Vec<(i64, f64)> = Vec::with_capacity(MAX_POINTS + 1);
    let mut slot = i64::MIN;
    for &(t, v) in points {
        let s = (t - t0) / width;
        match out.last_mut() {
            Some(last) if s == slot => {
                if v > last.1 {
                    *last = (t, v);
                }
            }
            _ => {
                slot = s;
                out.push((t, v));
            }
        }
    }
    out
}

/// `points` cut where two neighbours are more than `gap_ns` apart.
fn runs(points: &[(i64, f64)], gap_ns: i64) -> Vec<&[(i64, f64)]> {
    let mut out = Vec::new();
    let mut start = 0;
    for i in 1..=points.len() {
        if i == points.len() || points[i].0 - points[i - 1].0 > gap_ns {
            out.push(&points[start..i]);
            start = i;
        }
    }
    out
}

/// The smallest 1, 2 or 5 times a power of ten at or above `v`, and at least `floor`.
fn nice_ceiling(v: f64, floor: f64) -> f64 {
    if !v.is_finite() || v <= floor {
        return floor;
    }
    let mag = 10f64.powf(v.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .into_iter()
        .map(|m| m * mag)
        .find(|c| *c >= v)
        .unwrap_or(10.0 * mag)
}

/// The smallest power of two at or above `v`, and at least `floor`.
fn pow2_ceiling(v: f64, floor: f64) -> f64 {
    if !v.is_finite() || v <= floor {
        return floor;
    }
    2f64.powf(v.log2().ceil())
}

/// `v` with at most `decimals` decimals and no trailing zeros: `0.25`, `1`, `1.5`.
fn trimmed(v: f64, decimals: usize) -> String {
    let s = format!("{v:.decimals$}");
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    }
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
        assert_eq!(nice_ceiling(0.3, 1.0), 1.0);
        assert_eq!(nice_ceiling(7.0, 1.0), 10.0);
        assert_eq!(nice_ceiling(12.0, 1.0), 20.0);
        assert_eq!(nice_ceiling(331.0, 1.0), 500.0);
        assert_eq!(nice_ceiling(f64::NAN, 1.0), 1.0);
        assert_eq!(nice_ceiling(0.3, 0.01), 0.5);
        assert_eq!(nice_ceiling(0.0, 0.01), 0.01);
        assert_eq!(pow2_ceiling(512.0 * MIB, MIB), 512.0 * MIB);
        assert_eq!(pow2_ceiling(513.0 * MIB, MIB), 1024.0 * MIB);
        assert_eq!(pow2_ceiling(0.0, MIB), MIB);
        assert_eq!(Unit::Bytes.axis(512.0 * MIB), "512 MiB");
        assert_eq!(Unit::Bytes.axis(1024.0 * MIB), "1 GiB");
        assert_eq!(Unit::Bytes.axis(0.0), "0 B");
        assert_eq!(Unit::Cores.axis(0.25), "0.25");
        assert_eq!(Unit::Cores.axis(0.005), "0.005");
        assert_eq!(Unit::Cores.axis(1.0), "1");
        assert_eq!(Unit::Cores.value(0.0421), "0.042");
    }

    fn series(name: &str, points: Vec<(i64, f64)>, dashed: bool) -> Series {
        Series {
            name: name.into(),
            points,
            color: "#2563eb",
            dashed,
            max_gap_ns: (!dashed).then_some(30_000_000_000),
        }
    }

    /// Every element opened is closed, in order: what an XML parser would accept.
    fn assert_well_formed(svg: &str) {
        let mut open: Vec<&str> = Vec::new();
        let mut rest = svg;
        while let Some(i) = rest.find('<') {
            rest = &rest[i + 1..];
            let end = rest.find('>').expect("a tag is closed with >");
            let tag = &rest[..end];
            assert!(!tag.ends_with('/'), "self-closed <{tag}> in {svg}");
            if let Some(name) = tag.strip_prefix('/') {
                assert_eq!(open.pop(), Some(name), "</{name}> in {svg}");
            } else {
                let name = tag.split_whitespace().next().expect("a tag name");
                open.push(name);
            }
            rest = &rest[end + 1..];
        }
        assert!(open.is_empty(), "{open:?} never closed in {svg}");
    }

    #[test]
    fn line_charts_are_well_formed_with_a_dashed_limit_and_labelled_axes() {
        let used: Vec<(i64, f64)> = (1..=360).map(|i| (i * 10_000_000_000, 0.1)).collect();
        let svg = lines(
            &[
                series("production/0", used, false),
                series(
                    "reserved",
                    vec![(10_000_000_000, 0.5), (3_600_000_000_000, 0.5)],
                    true,
                ),
            ],
            Unit::Cores,
            "cpu of production/0",
        )
        .into_string();
        assert_well_formed(&svg);
        assert!(svg.starts_with("<svg"), "{svg}");
        assert_eq!(svg.matches("<polyline").count(), 2, "{svg}");
        assert_eq!(svg.matches("stroke-dasharray").count(), 1, "{svg}");
        assert!(svg.contains(r#"aria-label="cpu of production/0""#), "{svg}");
        assert!(
            svg.contains(">0.5</text>"),
            "the scale reaches the limit: {svg}"
        );
        assert!(svg.contains(">0.25</text>"), "{svg}");
        assert!(svg.contains(" UTC</text>"), "{svg}");
        assert!(svg.contains("<title>production/0</title>"), "{svg}");
        // 360 points become at most one per slot.
        let drawn = svg
            .split("<polyline points=\"")
            .nth(1)
            .and_then(|p| p.split('"').next())
            .expect("points");
        assert!(drawn.split(' ').count() <= MAX_POINTS + 1, "{drawn}");
    }

    #[test]
    fn a_gap_breaks_a_line_and_a_point_alone_is_a_dot() {
        let s = 1_000_000_000;
        let points = vec![(0, 1.0), (10 * s, 2.0), (20 * s, 3.0), (600 * s, 4.0)];
        let svg = lines(
            &[series("production/1", points, false)],
            Unit::Bytes,
            "memory",
        )
        .into_string();
        assert_well_formed(&svg);
        assert_eq!(svg.matches("<polyline").count(), 1, "{svg}");
        assert_eq!(svg.matches("<circle").count(), 1, "{svg}");
        assert!(svg.contains(">1 MiB</text>"), "{svg}");
        assert!(
            lines(&[series("x", Vec::new(), false)], Unit::Bytes, "memory")
                .into_string()
                .contains("Nothing recorded")
        );
    }

    #[test]
    fn svg_elements_are_closed_so_the_html_parser_does_not_nest_them() {
        let svg = latency(&[pt(1, true, 3.0), pt(2_000_000_000, false, 9.0)]).into_string();
        assert_well_formed(&svg);
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
