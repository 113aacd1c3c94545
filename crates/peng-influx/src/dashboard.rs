//! A Grafana dashboard for one service, over the team's `peng` database: what
//! `peng dashboards export TEAM/SERVICE` prints, for Grafana's "Import dashboard".
//!
//! It is written as Grafana exports a dashboard to share: the data source is an input
//! (`${DS_PENG}`), which the import asks for (an InfluxDB data source pointing at peng, user the
//! team, password its token). Every panel is a raw InfluxQL query with Grafana's macros
//! (`$timeFilter`, `$__interval`) and the `stage` variable; the test runs each with the
//! macros filled in as Grafana fills them.

use serde_json::{json, Value};

use crate::catalog::OWN_DATABASE;

/// A panel: title, unit, query, legend.
struct Panel {
    title: &'static str,
    unit: &'static str,
    query: String,
    legend: &'static str,
}

/// The dashboard of `team`'s `service` (names as peng validates them: no quotes in them).
pub fn service_dashboard(team: &str, service: &str) -> Value {
    let service_is = format!(r#""service" = '{service}' AND "stage" =~ /^$stage$/"#);
    let panels = [
        Panel {
            title: "Sensor latency",
            unit: "ms",
            query: format!(
                r#"SELECT mean("latency_ms") FROM "sensor" WHERE {service_is} AND $timeFilter GROUP BY time($__interval), "sensor", "stage" fill(null)"#
            ),
            legend: "$tag_sensor ($tag_stage)",
        },
        Panel {
            title: "Sensor values",
            unit: "short",
            query: format!(
                r#"SELECT mean("value") FROM "sensor" WHERE {service_is} AND $timeFilter GROUP BY time($__interval), "sensor", "stage" fill(null)"#
            ),
            legend: "$tag_sensor ($tag_stage)",
        },
        Panel {
            title: "CPU (cores)",
            unit: "short",
            query: format!(
                r#"SELECT non_negative_derivative(mean("cpu_seconds"), 1s) FROM "instance_usage" WHERE {service_is} AND $timeFilter GROUP BY time($__interval), "stage", "instance" fill(null)"#
            ),
            legend: "$tag_stage #$tag_instance",
        },
        Panel {
            title: "Memory",
            unit: "bytes",
            query: format!(
                r#"SELECT mean("memory_bytes") FROM "instance_usage" WHERE {service_is} AND $timeFilter GROUP BY time($__interval), "stage", "instance" fill(null)"#
            ),
            legend: "$tag_stage #$tag_instance",
        },
        Panel {
            title: "Log messages",
            unit: "short",
            query: format!(
                r#"SELECT sum("messages") FROM "log_volume" WHERE "service" = '{service}' AND $timeFilter GROUP BY time($__interval) fill(none)"#
            ),
            legend: "messages",
        },
    ];
    let panels: Vec<Value> = panels
        .iter()
        .enumerate()
        .map(|(i, p)| {
            json!({
                "id": i + 1,
                "type": "timeseries",
                "title": p.title,
                "datasource": {"type": "influxdb", "uid": "${DS_PENG}"},
                "gridPos": {"h": 8, "w": 12, "x": (i % 2) * 12, "y": (i / 2) * 8},
                "fieldConfig": {"defaults": {"unit": p.unit}, "overrides": []},
                "options": {"legend": {"displayMode": "list", "placement": "bottom"}},
                "targets": [{
                    "refId": "A",
                    "datasource": {"type": "influxdb", "uid": "${DS_PENG}"},
                    "rawQuery": true,
                    "resultFormat": "time_series",
                    "query": p.query,
                    "alias": p.legend,
                }],
            })
        })
        .collect();
    json!({
        "__inputs": [{
            "name": "DS_PENG",
            "label": "peng",
            "description": format!("InfluxDB (InfluxQL) data source on peng: database \"{OWN_DATABASE}\", user \"{team}\", password the team's API token"),
            "type": "datasource",
            "pluginId": "influxdb",
            "pluginName": "InfluxDB",
        }],
        "__requires": [
            {"type": "datasource", "id": "influxdb", "name": "InfluxDB", "version": "1.0.0"},
            {"type": "panel", "id": "timeseries", "name": "Time series", "version": ""},
        ],
        "title": format!("{team}/{service}"),
        "uid": format!("peng-{team}-{service}").chars().take(40).collect::<String>(),
        "tags": ["peng", team],
        "timezone": "browser",
        "schemaVersion": 36,
        "version": 1,
        "editable": true,
        "refresh": "30s",
        "time": {"from": "now-6h", "to": "now"},
        "templating": {"list": [{
            "name": "stage",
            "label": "stage",
            "type": "query",
            "datasource": {"type": "influxdb", "uid": "${DS_PENG}"},
            "query": format!(r#"SHOW TAG VALUES FROM "instance_usage" WITH KEY = "stage" WHERE "service" = '{service}'"#),
            "refresh": 2,
            "includeAll": true,
            "multi": true,
            "current": {"selected": true, "text": ["All"], "value": ["$__all"]},
            "sort": 1,
        }]},
        "panels": panels,
    })
}

/// Grafana's rendering of the macros for a range, an interval and chosen stages: what it
/// sends for a panel (`$stage` with several values becomes `(a|b)`).
pub fn render(query: &str, time_filter: &str, interval: &str, stages: &[&str]) -> String {
    let stage = if stages.len() == 1 {
        stages[0].to_string()
    } else {
        format!("({})", stages.join("|"))
    };
    query
        .replace("$timeFilter", time_filter)
        .replace("$__interval", interval)
        .replace("$stage", &stage)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::influxql::parse_query;

    #[test]
    fn every_query_parses_once_rendered() {
        let d = service_dashboard("shop", "checkout");
        let panels = d["panels"].as_array().unwrap();
        assert_eq!(panels.len(), 5);
        for p in panels {
            let q = p["targets"][0]["query"].as_str().unwrap();
            let q = render(q, "time >= now() - 6h", "1m", &["prod", "dev"]);
            parse_query(&q).unwrap_or_else(|e| panic!("{q}: {e}"));
        }
        let v = d["templating"]["list"][0]["query"].as_str().unwrap();
        parse_query(v).unwrap();
    }
}
