//! The costs page's content: the cost report as a table with its totals, and the platform's
//! capacity, reserved against what it may hand out. The report comes already scoped to the
//! viewer (a team's own lines; for the admin every team's and the platform's `unused capacity`),
//! so this only draws it.

use maud::{html, Markup};
use peng_costs::CostReport;

use super::format::{bytes, money};
use super::scroll;

/// The team of the line for what no team reserves.
const PLATFORM: &str = "platform";

pub fn report(r: &CostReport) -> Markup {
    let cur = &r.currency;
    html! {
        @if r.lines.is_empty() {
            p class="empty muted" { "Nothing to pay for yet: no instances, databases, backups or logs." }
        } @else {
            (scroll(html! { table id="costs" {
                tr {
                    th { "Team" } th { "Item" } th { "Detail" }
                    th class="num" { "Per day (" (cur) ")" } th class="num" { "Per month (" (cur) ")" }
                }
                @for l in &r.lines {
                    tr class=(if l.team == PLATFORM { "platform" } else { "" }) {
                        td { (l.team) } td class="nowrap" { (l.item) } td class="muted" { (l.detail) }
                        td class="num" { (money(l.per_day)) } td class="num" { (money(l.per_month)) }
                    }
                }
                tr class="total" {
                    td colspan="3" { "Total" }
                    td class="num" { (money(r.total_day)) } td class="num" { (money(r.total_month)) }
                }
            } }))
        }
        h2 { "Capacity" }
        p class="muted" {
            "What the platform file lets services reserve, and what they reserve now: instances' "
            code { "resources" } " and dedicated database servers (twice with a replica). "
            "An apply that would reserve more than is available is refused."
        }
        (scroll(html! { table id="capacity" {
            tr {
                th { "Resource" } th class="num" { "Reserved" } th class="num" { "Available" }
                th class="num" { "Free" } th { "Use" }
            }
            (row("cpu", r.reserved.cpu, r.capacity.cpu, |v| format!("{v:.2}")))
            (row("memory", r.reserved.memory as f64, r.capacity.memory as f64, |v| bytes(v as u64)))
            (row("disk", r.reserved.disk as f64, r.capacity.disk as f64, |v| bytes(v as u64)))
        } }))
    }
}

fn row(name: &str, reserved: f64, available: f64, show: impl Fn(f64) -> String) -> Markup {
    let over = reserved > available;
    let share = if available > 0.0 {
        reserved / available * 100.0
    } else {
        0.0
    };
    html! {
        tr {
            td { (name) }
            td class="num" { (show(reserved)) }
            td class="num" { (show(available)) }
            @if over {
                td class="num fail" { "over by " (show(reserved - available)) }
            } @else {
                td class="num" { (show(available - reserved)) }
            }
            td class="nowrap" {
                meter min="0" max=(available) value=(reserved.min(available)) high=(available * 0.9) optimum="0" {}
                " " span class=(if over { "fail" } else { "muted" }) { (format!("{share:.0}%")) }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use peng_costs::{CostLine, Reservation};

    const GIB: u64 = 1 << 30;

    fn line(team: &str, item: &str, detail: &str, per_month: f64) -> CostLine {
        CostLine {
            team: team.into(),
            item: item.into(),
            detail: detail.into(),
            per_day: per_month / (730.0 / 24.0),
            per_month,
        }
    }

    fn sample(lines: Vec<CostLine>) -> CostReport {
        let total_month: f64 = lines.iter().map(|l| l.per_month).sum();
        CostReport {
            currency: "EUR".into(),
            total_day: total_month / (730.0 / 24.0),
            total_month,
            lines,
            capacity: Reservation {
                cpu: 8.0,
                memory: 16 * GIB,
                disk: 100 * GIB,
            },
            reserved: Reservation {
                cpu: 1.5,
                memory: 3 * GIB,
                disk: 120 * GIB,
            },
        }
    }

    #[test]
    fn lines_totals_and_capacity_are_drawn() {
        let r = sample(vec![
            line(
                "books",
                "instances",
                "3 instances: 0.75 cpu reserved, 1.10 used; 0.75 GiB reserved, 0.31 used",
                36.5,
            ),
            line(
                "books",
                "databases",
                "plans 15.00/month; 1 dedicated servers",
                15.0,
            ),
            line(
                "platform",
                "unused capacity",
                "6.50 cpu, 13.00 GiB memory",
                200.0,
            ),
        ]);
        let html = report(&r).into_string();
        for want in [
            "Per day (EUR)",
            "Per month (EUR)",
            "<td>books</td>",
            "3 instances: 0.75 cpu reserved, 1.10 used; 0.75 GiB reserved, 0.31 used",
            "36.50",
            "1.20",
            r#"<tr class="platform"><td>platform</td><td class="nowrap">unused capacity</td>"#,
            "251.50",
            "8.27",
            "1.50",
            "8.00",
            "6.50",
            "3.00 GiB",
            "16.00 GiB",
            "over by 20.00 GiB",
            "<meter",
        ] {
            assert!(html.contains(want), "{want:?} missing in {html}");
        }
    }

    #[test]
    fn details_are_escaped_and_an_empty_report_says_so() {
        let html = report(&sample(vec![line("books", "logs", "<b>x</b>", 1.0)])).into_string();
        assert!(html.contains("&lt;b&gt;x&lt;/b&gt;"), "{html}");
        let html = report(&sample(Vec::new())).into_string();
        assert!(html.contains("Nothing to pay for yet"), "{html}");
        assert!(html.contains(r#"id="capacity""#), "{html}");
    }
}
