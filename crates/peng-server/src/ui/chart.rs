//! Inline SVG charts, drawn on the server so that pages need no JavaScript.

use maud::{html, Markup};
use peng_api::SensorPoint;

const W: f64 = 900.0;
const H: f64 = 120.0;

/// Latency of each run as a line, failed runs as red marks at the bottom.
pub fn latency(points: &[SensorPoint]) -> Markup {
    if points.is_empty() {
        return html! { p class="muted" { "no runs yet" } };
    }
    let t0 = points.first().map(|p| p.at_ns).unwrap_or(0) as f64;
    let t1 = points.last().map(|p| p.at_ns).unwrap_or(0) as f64;
    let span = (t1 - t0).max(1.0);
    let max = points.iter().map(|p| p.latency_ms).fold(1.0_f64, f64::max) * 1.1;
    let x = |t: i64| 40.0 + (t as f64 - t0) / span * (W - 50.0);
    let y = |v: f64| 10.0 + (1.0 - v / max) * (H - 30.0);
    let line: String = points
        .iter()
        .map(|p| format!("{:.1},{:.1} ", x(p.at_ns), y(p.latency_ms)))
        .collect();
    html! {
        svg width=(W) height=(H) viewBox={ "0 0 " (W) " " (H) } role="img" aria-label="sensor latency chart" style="background:#fff;display:block;margin:.3rem 0 1rem" {
            text x="2" y="14" font-size="10" fill="#6b7280" { (format!("{max:.0}ms")) }
            text x="2" y=(H - 22.0) font-size="10" fill="#6b7280" { "0" }
            line x1="40" y1=(H - 20.0) x2=(W - 10.0) y2=(H - 20.0) stroke="#e3e6eb";
            polyline points=(line) fill="none" stroke="#2563eb" stroke-width="1.5";
            @for p in points.iter().filter(|p| !p.ok) {
                rect x=(format!("{:.1}", x(p.at_ns) - 1.5)) y=(H - 18.0) width="3" height="8" fill="#c0262d";
            }
        }
    }
}
