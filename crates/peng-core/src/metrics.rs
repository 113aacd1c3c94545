//! Named counters every component reports, in the shape of Vector's component spec:
//! `peng_component_received_events_total`, `peng_component_processed_events_total`,
//! `peng_component_discarded_events_total` (with a `reason`), `peng_component_errors_total`
//! (with a `stage`). Counters live in one process-wide registry so that `/metrics` and the UI
//! show the same numbers. Getting a counter is a map lookup; keep the handle and increment it
//! on hot paths.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

/// A monotonically increasing counter. Cloning shares the value.
#[derive(Debug, Clone, Default)]
pub struct Counter(Arc<AtomicU64>);

impl Counter {
    pub fn inc(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }

    pub fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }

    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// A value that goes up and down (queue depth, open connections).
#[derive(Debug, Clone, Default)]
pub struct Gauge(Arc<AtomicU64>);

impl Gauge {
    pub fn set(&self, v: u64) {
        self.0.store(v, Ordering::Relaxed);
    }

    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

type Key = (String, Vec<(String, String)>);

#[derive(Default)]
struct Registry {
    counters: BTreeMap<Key, Counter>,
    gauges: BTreeMap<Key, Gauge>,
}

fn registry() -> &'static Mutex<Registry> {
    static REG: OnceLock<Mutex<Registry>> = OnceLock::new();
    REG.get_or_init(Default::default)
}

fn key(name: &str, labels: &[(&str, &str)]) -> Key {
    let mut l: Vec<(String, String)> = labels
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    l.sort();
    (name.to_string(), l)
}

/// The counter with this name and labels, created at zero on first use.
pub fn counter(name: &str, labels: &[(&str, &str)]) -> Counter {
    let mut reg = registry().lock().unwrap_or_else(|p| p.into_inner());
    reg.counters.entry(key(name, labels)).or_default().clone()
}

/// The gauge with this name and labels, created at zero on first use.
pub fn gauge(name: &str, labels: &[(&str, &str)]) -> Gauge {
    let mut reg = registry().lock().unwrap_or_else(|p| p.into_inner());
    reg.gauges.entry(key(name, labels)).or_default().clone()
}

/// One reading of a counter or gauge.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: Vec<(String, String)>,
    pub value: u64,
}

/// Every counter and gauge with its current value, sorted by name and labels.
pub fn snapshot() -> Vec<Sample> {
    let reg = registry().lock().unwrap_or_else(|p| p.into_inner());
    let c = reg.counters.iter().map(|((n, l), c)| Sample {
        name: n.clone(),
        labels: l.clone(),
        value: c.get(),
    });
    let g = reg.gauges.iter().map(|((n, l), g)| Sample {
        name: n.clone(),
        labels: l.clone(),
        value: g.get(),
    });
    let mut all: Vec<Sample> = c.chain(g).collect();
    all.sort_by(|a, b| (&a.name, &a.labels).cmp(&(&b.name, &b.labels)));
    all
}

/// The registry in Prometheus text exposition format.
pub fn render_prometheus() -> String {
    let mut out = String::new();
    for s in snapshot() {
        out.push_str(&s.name);
        if !s.labels.is_empty() {
            out.push('{');
            for (i, (k, v)) in s.labels.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                let v = v
                    .replace('\\', "\\\\")
                    .replace('"', "\\\"")
                    .replace('\n', "\\n");
                out.push_str(&format!("{k}=\"{v}\""));
            }
            out.push('}');
        }
        out.push_str(&format!(" {}\n", s.value));
    }
    out
}

/// Shorthands for the component counters, so every component uses the same names.
pub mod component {
    use super::{counter, Counter};

    pub fn received(component: &str) -> Counter {
        counter(
            "peng_component_received_events_total",
            &[("component", component)],
        )
    }

    pub fn received_bytes(component: &str) -> Counter {
        counter(
            "peng_component_received_bytes_total",
            &[("component", component)],
        )
    }

    pub fn processed(component: &str) -> Counter {
        counter(
            "peng_component_processed_events_total",
            &[("component", component)],
        )
    }

    pub fn discarded(component: &str, reason: &str) -> Counter {
        counter(
            "peng_component_discarded_events_total",
            &[("component", component), ("reason", reason)],
        )
    }

    pub fn errors(component: &str, stage: &str) -> Counter {
        counter(
            "peng_component_errors_total",
            &[("component", component), ("stage", stage)],
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_are_shared_by_name_and_labels() {
        let a = counter("test_total", &[("x", "1"), ("y", "2")]);
        let b = counter("test_total", &[("y", "2"), ("x", "1")]);
        a.inc();
        b.add(2);
        assert_eq!(a.get(), 3);
        let text = render_prometheus();
        assert!(text.contains("test_total{x=\"1\",y=\"2\"} 3"), "{text}");
    }
}
