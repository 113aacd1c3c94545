//! Just enough of the Prometheus text format to diff peng's `/metrics` before and after a run.

use std::collections::BTreeMap;

/// Series (`name{labels}`) to value; comments and unparsable lines are skipped.
pub fn parse(text: &str) -> BTreeMap<String, f64> {
    let mut out = BTreeMap::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        // The value follows the last space that is outside the label braces.
        let split_at = match line.rfind('}') {
            Some(close) => line[close..].find(' ').map(|i| close + i),
            None => line.find(' '),
        };
        let Some(at) = split_at else { continue };
        let (series, rest) = line.split_at(at);
        if let Some(value) = rest
            .split_whitespace()
            .next()
            .and_then(|v| v.parse::<f64>().ok())
        {
            out.insert(series.to_string(), value);
        }
    }
    out
}

/// Series whose value changed between two scrapes, with the difference.
pub fn delta(before: &BTreeMap<String, f64>, after: &BTreeMap<String, f64>) -> Vec<(String, f64)> {
    after
        .iter()
        .filter_map(|(k, v)| {
            let d = v - before.get(k).copied().unwrap_or(0.0);
            (d != 0.0).then(|| (k.clone(), d))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_diffs() {
        let a = parse(
            "# TYPE x counter\npeng_x{component=\"gelf_udp\",reason=\"a b\"} 3\npeng_y 1\nbad\n",
        );
        assert_eq!(
            a.get("peng_x{component=\"gelf_udp\",reason=\"a b\"}"),
            Some(&3.0)
        );
        assert_eq!(a.get("peng_y"), Some(&1.0));
        let b = parse("peng_x{component=\"gelf_udp\",reason=\"a b\"} 10\npeng_y 1\npeng_z 2");
        assert_eq!(
            delta(&a, &b),
            vec![
                (
                    "peng_x{component=\"gelf_udp\",reason=\"a b\"}".to_string(),
                    7.0
                ),
                ("peng_z".to_string(), 2.0)
            ]
        );
    }
}
