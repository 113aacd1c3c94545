//! How the pages write times, durations, latencies and log levels. Times are UTC, and say so.

use maud::{html, Markup};

fn rfc3339(ns: i64) -> String {
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_nanos(ns.max(0) as u64);
    humantime::format_rfc3339_seconds(t).to_string()
}

/// `2026-11-28 04:55:48` (UTC).
pub fn date_time(ns: i64) -> String {
    rfc3339(ns)
        .replace('T', " ")
        .trim_end_matches('Z')
        .to_string()
}

/// `04:55:48` (UTC).
pub fn clock(ns: i64) -> String {
    let s = rfc3339(ns);
    s.get(11..19).unwrap_or(&s).to_string()
}

/// A `<time>` element: the date and time, the full form as its tooltip.
pub fn time(ns: i64) -> Markup {
    html! { time datetime=(rfc3339(ns)) title={ (date_time(ns)) " UTC" } { (date_time(ns)) } }
}

/// `just now`, `42s ago`, `5m ago`, `3h ago`, `2d ago`.
pub fn ago(ns: i64, now_ns: i64) -> String {
    let secs = (now_ns - ns).max(0) / 1_000_000_000;
    match secs {
        0..=4 => "just now".into(),
        5..=59 => format!("{secs}s ago"),
        60..=3599 => format!("{}m ago", secs / 60),
        3600..=86_399 => format!("{}h ago", secs / 3600),
        _ => format!("{}d ago", secs / 86_400),
    }
}

/// A time and how long ago it was: `2026-11-28 04:55:48 UTC (5m ago)`.
pub fn when(ns: i64, now_ns: i64) -> Markup {
    html! { (time(ns)) " UTC " span class="muted" { "(" (ago(ns, now_ns)) ")" } }
}

/// A latency: `0.4 ms`, `12.5 ms`, `331 ms`, `2.50 s`.
pub fn ms(v: f64) -> String {
    if !v.is_finite() {
        "-".into()
    } else if v >= 1000.0 {
        format!("{:.2} s", v / 1000.0)
    } else if v >= 100.0 || v == 0.0 {
        format!("{v:.0} ms")
    } else {
        format!("{v:.1} ms")
    }
}

/// A size: `512 B`, `3.4 KiB`, `12.0 MiB`, `1.50 GiB`.
pub fn bytes(n: u64) -> String {
    const KIB: f64 = 1024.0;
    let v = n as f64;
    if v >= KIB * KIB * KIB {
        format!("{:.2} GiB", v / (KIB * KIB * KIB))
    } else if v >= KIB * KIB {
        format!("{:.1} MiB", v / (KIB * KIB))
    } else if v >= KIB {
        format!("{:.1} KiB", v / KIB)
    } else {
        format!("{n} B")
    }
}

/// An amount of money, to the cent: `1234.50`.
pub fn money(v: f64) -> String {
    if v.is_finite() {
        format!("{v:.2}")
    } else {
        "-".into()
    }
}

/// Syslog severity names, as GELF uses them.
pub fn level_name(level: u8) -> &'static str {
    match level {
        0 => "emerg",
        1 => "alert",
        2 => "crit",
        3 => "error",
        4 => "warning",
        5 => "notice",
        6 => "info",
        _ => "debug",
    }
}

/// The CSS class of a level: errors stand out, warnings a little.
pub fn level_class(level: u8) -> &'static str {
    match level {
        0..=3 => "lvl lvl-err",
        4 => "lvl lvl-warn",
        _ => "lvl",
    }
}

/// At most `max` characters of `s`, and how many were left out.
pub fn clip(s: &str, max: usize) -> (&str, usize) {
    match s.char_indices().nth(max) {
        Some((i, _)) => (&s[..i], s[i..].chars().count()),
        None => (s, 0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_read_as_utc_dates_and_ages() {
        let ns = 1_795_841_748_000_000_000;
        assert_eq!(date_time(ns), "2026-11-28 04:55:48");
        assert_eq!(clock(ns), "04:55:48");
        assert_eq!(ago(ns, ns + 1_000_000_000), "just now");
        assert_eq!(ago(ns, ns + 42_000_000_000), "42s ago");
        assert_eq!(ago(ns, ns + 300_000_000_000), "5m ago");
        assert_eq!(ago(ns, ns + 3 * 3_600_000_000_000), "3h ago");
        assert_eq!(ago(ns, ns - 10), "just now");
        let t = time(ns).into_string();
        assert!(t.contains(r#"datetime="2026-11-28T04:55:48Z""#), "{t}");
    }

    #[test]
    fn latencies_and_levels_read_well() {
        assert_eq!(ms(0.42), "0.4 ms");
        assert_eq!(ms(331.04), "331 ms");
        assert_eq!(ms(2500.0), "2.50 s");
        assert_eq!(level_name(3), "error");
        assert_eq!(level_name(6), "info");
        assert_eq!(level_name(200), "debug");
    }

    #[test]
    fn sizes_and_money_read_well() {
        assert_eq!(bytes(512), "512 B");
        assert_eq!(bytes(3 << 10), "3.0 KiB");
        assert_eq!(bytes(12 << 20), "12.0 MiB");
        assert_eq!(bytes(3 << 29), "1.50 GiB");
        assert_eq!(money(1234.5), "1234.50");
        assert_eq!(money(f64::NAN), "-");
    }

    #[test]
    fn clipping_counts_characters_not_bytes() {
        assert_eq!(clip("äöü", 2), ("äö", 1));
        assert_eq!(clip("abc", 5), ("abc", 0));
    }
}
