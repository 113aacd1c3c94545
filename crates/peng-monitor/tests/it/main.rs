//! The monitor against real sockets, a real webhook receiver and a real tsdb in a temp dir.

mod helpers;

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use helpers::*;
use peng_monitor::{AlertRecord, AlertState, Transition};
use peng_sensors::http::{Http, HttpTarget};
use peng_sensors::tcp::Tcp;
use peng_spec::{CmpOp, Condition, SensorKind, SensorSpec, Severity};

const LIMIT: Duration = Duration::from_secs(15);

fn health_failures(monitor: &peng_monitor::Monitor) -> u32 {
    monitor
        .latest(&service_id())
        .iter()
        .filter(|s| s.sensor == "health")
        .map(|s| s.consecutive_failures)
        .max()
        .unwrap_or(0)
}

#[tokio::test]
async fn alert_fires_escalates_and_resolves_with_webhook_payloads() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let hooks = Hooks::start().await;
    let instance = Instance::start().await;
    let mut h = start_monitor(tmp.path(), Vec::new());
    h.directory.set(vec![instance.endpoint(0)]);
    h.monitor.apply(&spec(&hooks, Duration::from_secs(1)));

    eventually(LIMIT, "health ok", || async {
        h.monitor
            .latest(&service_id())
            .iter()
            .any(|s| s.sensor == "health" && s.last.ok)
            .then_some(())
    })
    .await;

    let broken_at = Instant::now();
    instance.set_health(500);
    let firing = eventually(LIMIT, "firing webhook", || async {
        hooks.bodies("oncall", "firing").first().cloned()
    })
    .await;
    let took = broken_at.elapsed();
    assert!(
        took >= Duration::from_secs(1),
        "fired before its for: {took:?}"
    );
    assert!(
        took < Duration::from_millis(1000 + 2 * 200 + 1000),
        "fired too late: {took:?}"
    );
    assert_eq!(firing["version"], 1);
    assert_eq!(firing["alert"], "down");
    assert_eq!(firing["team"], "checkout");
    assert_eq!(firing["service"], "checkout/orders");
    assert_eq!(firing["stage"], "production");
    assert_eq!(firing["severity"], "critical");
    assert_eq!(firing["sensor"], "health");
    assert_eq!(firing["plan"], "page-oncall");
    assert_eq!(firing["runbook"], "https://wiki.example/orders/runbook");
    assert_eq!(firing["resolved_at"], serde_json::Value::Null);
    assert_eq!(
        firing["message"], "instance 0: expected a 2xx status, got 500",
        "{firing}"
    );
    let started_at = firing["started_at"]
        .as_str()
        .expect("started_at")
        .to_string();
    assert!(
        humantime::parse_rfc3339(&started_at).is_ok(),
        "{started_at}"
    );

    let ev = next_event(&mut h.events, LIMIT).await;
    assert_eq!(ev.transition, Transition::Firing);
    assert_eq!(ev.record.state, AlertState::Firing);
    assert_eq!(ev.record.severity, Severity::Critical);

    let escalated = eventually(LIMIT, "escalation webhook", || async {
        hooks.bodies("platform", "escalated").first().cloned()
    })
    .await;
    assert_eq!(escalated["plan"], "platform");
    assert_eq!(escalated["alert"], "down");
    assert_eq!(escalated["started_at"], started_at.as_str());
    let ev = next_event(&mut h.events, LIMIT).await;
    assert_eq!(ev.transition, Transition::Escalated);
    assert!(ev.record.escalated);

    instance.set_health(200);
    let resolved = eventually(LIMIT, "resolved webhook", || async {
        hooks.bodies("oncall", "resolved").first().cloned()
    })
    .await;
    assert_eq!(resolved["started_at"], started_at.as_str());
    let resolved_at = resolved["resolved_at"].as_str().expect("resolved_at");
    assert!(humantime::parse_rfc3339(resolved_at).is_ok());
    let ev = next_event(&mut h.events, LIMIT).await;
    assert_eq!(ev.transition, Transition::Resolved);
    assert_eq!(ev.record.state, AlertState::Resolved);

    assert_eq!(hooks.bodies("oncall", "firing").len(), 1);
    assert_eq!(hooks.bodies("platform", "escalated").len(), 1);
    assert!(hooks.bodies("platform", "firing").is_empty());
    h.monitor.shutdown().await;
}

#[tokio::test]
async fn reload_keeps_a_firing_alert_and_does_not_notify_again() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let hooks = Hooks::start().await;
    let instance = Instance::start().await;
    instance.set_health(503);
    let mut h = start_monitor(tmp.path(), Vec::new());
    h.directory.set(vec![instance.endpoint(0)]);
    let mut spec = spec(&hooks, Duration::from_secs(3600));
    h.monitor.apply(&spec);

    let ev = next_event(&mut h.events, LIMIT).await;
    assert_eq!(ev.transition, Transition::Firing);
    let started = ev.record.started_at_ns;

    h.monitor.apply(&spec);
    spec.sensors.push(SensorSpec {
        name: "page".into(),
        kind: SensorKind::Http(Http {
            target: HttpTarget::Path("/page".into()),
            method: "GET".into(),
        }),
        every: peng_core::Duration::from_millis(200),
        timeout: peng_core::Duration::from_millis(1000),
        expect: Vec::new(),
    });
    h.monitor.apply(&spec);

    let failures = health_failures(&h.monitor);
    eventually(LIMIT, "more health results", || async {
        (health_failures(&h.monitor) >= failures + 5).then_some(())
    })
    .await;
    let alerts = h.monitor.alerts(Some(&service_id()));
    assert_eq!(alerts.len(), 1);
    assert_eq!(alerts[0].state, AlertState::Firing);
    assert_eq!(alerts[0].started_at_ns, started);
    assert!(h.events.try_recv().is_err(), "no new transition");
    assert_eq!(hooks.bodies("oncall", "firing").len(), 1);
    assert!(
        h.monitor
            .latest(&service_id())
            .iter()
            .any(|s| s.sensor == "page"),
        "the added sensor runs"
    );
    h.monitor.shutdown().await;
}

#[tokio::test]
async fn restored_firing_alert_stays_firing_without_notifying_and_resolves_later() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let hooks = Hooks::start().await;
    let instance = Instance::start().await;
    instance.set_health(500);
    let started_at_ns = peng_core::now_ns() - 10_000_000_000;
    let restored = AlertRecord {
        service: service_id(),
        stage: stage(),
        alert: "down".into(),
        state: AlertState::Firing,
        since_ns: started_at_ns - 1_000_000_000,
        started_at_ns: Some(started_at_ns),
        value: None,
        severity: Severity::Critical,
        escalated: true,
        last_message: "instance 0: expected a 2xx status, got 500".into(),
    };
    let mut h = start_monitor(tmp.path(), vec![restored.clone()]);
    assert_eq!(h.monitor.alerts(None), vec![restored.clone()]);
    h.directory.set(vec![instance.endpoint(0)]);
    h.monitor.apply(&spec(&hooks, Duration::from_secs(1)));

    eventually(LIMIT, "failing health results", || async {
        (health_failures(&h.monitor) >= 5).then_some(())
    })
    .await;
    let alerts = h.monitor.alerts(Some(&service_id()));
    assert_eq!(alerts.len(), 1);
    assert_eq!(alerts[0].state, AlertState::Firing);
    assert_eq!(alerts[0].started_at_ns, Some(started_at_ns));
    assert!(
        h.events.try_recv().is_err(),
        "no transition while still failing"
    );
    assert!(hooks.bodies("oncall", "firing").is_empty());
    assert!(
        hooks.bodies("platform", "escalated").is_empty(),
        "already escalated"
    );

    instance.set_health(200);
    let resolved = eventually(LIMIT, "resolved webhook", || async {
        hooks.bodies("oncall", "resolved").first().cloned()
    })
    .await;
    assert_eq!(
        resolved["started_at"],
        peng_monitor::notify::webhook::rfc3339(started_at_ns)
    );
    assert_eq!(
        next_event(&mut h.events, LIMIT).await.transition,
        Transition::Resolved
    );
    h.monitor.shutdown().await;
}

#[tokio::test]
async fn history_is_read_back_from_the_tsdb_after_a_restart() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let hooks = Hooks::start().await;
    let instance = Instance::start().await;
    let h = start_monitor(tmp.path(), Vec::new());
    h.directory.set(vec![instance.endpoint(0)]);
    h.monitor.apply(&spec(&hooks, Duration::from_secs(60)));

    let before = eventually(LIMIT, "three stored results", || async {
        let rows = h
            .monitor
            .history(&service_id(), "health", &stage(), 0)
            .await
            .expect("history");
        (rows.len() >= 3).then_some(rows)
    })
    .await;
    for (ts, ok, latency, value) in &before {
        assert!(*ts > 0 && *ok && *latency > 0.0);
        assert_eq!(*value, Some(*latency));
    }
    assert!(before.windows(2).all(|w| w[0].0 <= w[1].0), "oldest first");

    h.monitor.shutdown().await;
    drop(h);
    let h2 = eventually(LIMIT, "tsdb released", || async {
        peng_tsdb::Tsdb::open(tmp.path()).ok()
    })
    .await;
    drop(h2);
    let h = start_monitor(tmp.path(), Vec::new());
    let after = h
        .monitor
        .history(&service_id(), "health", &stage(), 0)
        .await
        .expect("history");
    assert!(after.len() >= before.len());
    assert_eq!(&after[..before.len()], &before[..]);
    let later = h
        .monitor
        .history(&service_id(), "health", &stage(), before[1].0)
        .await
        .expect("history");
    assert_eq!(later.len(), after.len() - 1, "since is inclusive");
    let keys = h.tsdb.series(Some("sensor")).expect("series");
    assert!(keys
        .iter()
        .all(|k| k.tags.get("instance").map(String::as_str) == Some("0")));
    h.monitor.shutdown().await;
}

#[tokio::test]
async fn sensors_judge_status_latency_body_and_connections() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let hooks = Hooks::start().await;
    let a = Instance::start().await;
    let b = Instance::start().await;
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr").port()
    };
    let h = start_monitor(tmp.path(), Vec::new());
    let mut gone = a.endpoint(2);
    gone.running = false;
    h.directory.set(vec![a.endpoint(0), b.endpoint(1), gone]);

    let sensor = |name: &str, kind: SensorKind, expect: Vec<Condition>| SensorSpec {
        name: name.into(),
        kind,
        every: peng_core::Duration::from_millis(200),
        timeout: peng_core::Duration::from_millis(1000),
        expect,
    };
    let http = |target: HttpTarget| {
        SensorKind::Http(Http {
            target,
            method: "GET".into(),
        })
    };
    let mut spec = spec(&hooks, Duration::from_secs(60));
    spec.sensors = vec![
        sensor(
            "page",
            http(HttpTarget::Path("/page".into())),
            vec![
                Condition::Status {
                    op: CmpOp::Eq,
                    value: 200,
                },
                Condition::Latency {
                    op: CmpOp::Lt,
                    value: peng_core::Duration::from_secs(2),
                },
                Condition::BodyContains {
                    text: "Bestellung".into(),
                    negated: false,
                },
            ],
        ),
        sensor(
            "no-order",
            http(HttpTarget::Url(format!("http://{}/page", a.addr))),
            vec![Condition::BodyContains {
                text: "Bestellung".into(),
                negated: true,
            }],
        ),
        sensor(
            "missing",
            http(HttpTarget::Url(format!("http://{}/nope", a.addr))),
            vec![Condition::Status {
                op: CmpOp::Eq,
                value: 200,
            }],
        ),
        sensor(
            "port",
            SensorKind::Tcp(Tcp {
                host: None,
                port: Some(a.addr.port()),
            }),
            Vec::new(),
        ),
        sensor(
            "closed",
            SensorKind::Tcp(Tcp {
                host: Some("127.0.0.1".into()),
                port: Some(closed),
            }),
            Vec::new(),
        ),
    ];
    h.monitor.apply(&spec);

    let states = eventually(LIMIT, "every sensor ran", || async {
        let states = h.monitor.latest(&service_id());
        let pages = a.hits.load(Ordering::SeqCst) > 0 && b.hits.load(Ordering::SeqCst) > 0;
        (states.len() == 8 && pages).then_some(states)
    })
    .await;
    let find = |sensor: &str, instance: Option<u32>| {
        states
            .iter()
            .find(|s| s.sensor == sensor && s.instance == instance)
            .unwrap_or_else(|| panic!("no state for {sensor}"))
    };
    assert!(find("page", None).last.ok, "{:?}", find("page", None).last);
    assert!(find("page", None)
        .last
        .message
        .starts_with("status 200 in "));
    let no_order = &find("no-order", None).last;
    assert!(!no_order.ok);
    assert_eq!(
        no_order.message,
        "expected body not to contain 'Bestellung'"
    );
    let missing = &find("missing", None).last;
    assert_eq!(missing.message, "expected status == 200, got 404");
    assert!(missing.value.is_some());
    assert!(find("port", None).last.ok);
    let refused = &find("closed", None).last;
    assert!(!refused.ok && refused.value.is_none());
    assert!(
        refused
            .message
            .starts_with(&format!("connect to 127.0.0.1:{closed} failed")),
        "{}",
        refused.message
    );
    assert!(find("health", Some(0)).last.ok);
    assert!(find("health", Some(1)).last.ok);
    assert_eq!(find("health", Some(2)).last.message, "instance not running");

    h.directory.set(vec![a.endpoint(0)]);
    eventually(LIMIT, "vanished instances forgotten", || async {
        let states = h.monitor.latest(&service_id());
        let health: Vec<_> = states.iter().filter(|s| s.sensor == "health").collect();
        (health.len() == 1 && health[0].instance == Some(0)).then_some(())
    })
    .await;

    h.monitor.remove(&service_id());
    assert!(h.monitor.latest(&service_id()).is_empty());
    assert!(h.monitor.alerts(Some(&service_id())).is_empty());
    h.monitor.shutdown().await;
}

#[tokio::test]
async fn failing_webhooks_are_retried_then_counted_without_blocking_alerts() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let hooks = Hooks::start().await;
    let instance = Instance::start().await;
    instance.set_health(500);
    let errors = peng_core::metrics::component::errors("notify_webhook", "send");
    let before = errors.get();
    let retry = peng_monitor::RetryPolicy {
        attempts: 3,
        timeout: Duration::from_secs(2),
        backoff: Duration::from_millis(20),
    };
    let mut h = start_monitor_with(tmp.path(), Vec::new(), retry);
    h.directory.set(vec![instance.endpoint(0)]);
    let mut spec = spec(&hooks, Duration::from_secs(3600));
    if let Some(plan) = spec.action_plans.get_mut("page-oncall") {
        plan.notify = vec![
            peng_spec::NotifyTarget::Webhook {
                url: hooks.url("fail-oncall"),
            },
            peng_spec::NotifyTarget::Webhook {
                url: hooks.url("oncall"),
            },
        ];
    }
    h.monitor.apply(&spec);

    assert_eq!(
        next_event(&mut h.events, LIMIT).await.transition,
        Transition::Firing
    );
    eventually(LIMIT, "healthy receiver notified", || async {
        (hooks.bodies("oncall", "firing").len() == 1).then_some(())
    })
    .await;
    eventually(LIMIT, "failed delivery counted", || async {
        (errors.get() > before).then_some(())
    })
    .await;
    assert_eq!(hooks.bodies("fail-oncall", "firing").len(), 3, "3 attempts");

    let client = reqwest::Client::new();
    let sent =
        peng_monitor::notify::webhook::send(&client, &hooks.url("fail-x"), "{}", retry).await;
    assert_eq!(
        sent,
        Err("after 3 attempts: receiver answered 500 Internal Server Error".to_string())
    );
    h.monitor.shutdown().await;
}

/// `checkout/orders` with a database, an sql sensor every 200ms expecting `value > 0`, and an
/// alert `value < 5 for 1s` on it to `page-oncall`.
fn sql_spec(hooks: &Hooks) -> peng_spec::ServiceSpec {
    let text = format!(
        r#"apiVersion: peng/v1
service: orders
team: checkout
stages: {{ production: {{ instances: 1 }} }}
run: {{ command: ./orders, health: {{ tcp: true, every: 1h }} }}
database: {{ version: "10.11" }}
sensors:
  - {{ name: orders-per-minute, sql: "SELECT COUNT(*) FROM orders", expect: ["value > 0"] }}
alerts:
  - {{ name: orders-low, sensor: orders-per-minute, when: "value < 5 for 1s", severity: warning, plan: page-oncall }}
action_plans:
  page-oncall: {{ notify: [{{ webhook: "{}" }}] }}
"#,
        hooks.url("oncall")
    );
    let mut spec = peng_spec::parse_service("peng.yaml", &text).expect("valid spec");
    // Faster than a file may ask, to keep the test short.
    spec.sensors[0].every = peng_core::Duration::from_millis(200);
    spec.sensors[0].timeout = peng_core::Duration::from_millis(100);
    spec
}

#[tokio::test]
async fn sql_sensors_store_their_value_judge_expect_and_fire_value_alerts() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let hooks = Hooks::start().await;
    let numbers = std::sync::Arc::new(Numbers::new(12.0));
    let mut h = start_monitor_full(
        tmp.path(),
        Vec::new(),
        peng_monitor::RetryPolicy::default(),
        Some(numbers.clone()),
    );
    h.monitor.apply(&sql_spec(&hooks));

    let latest = |h: &Harness| {
        h.monitor
            .latest(&service_id())
            .into_iter()
            .find(|s| s.sensor == "orders-per-minute")
    };
    let first = eventually(LIMIT, "a run of the sql sensor", || async { latest(&h) }).await;
    assert!(first.last.ok, "{:?}", first.last);
    assert_eq!(first.last.value, Some(12.0));
    assert_eq!(first.stage, stage());
    let asked = numbers.asked.lock().expect("numbers lock")[0].clone();
    assert_eq!(
        asked,
        (
            "production".to_string(),
            "SELECT COUNT(*) FROM orders".to_string()
        )
    );

    // `expect` fails on 0, and the alert's value < 5 holds for 1s before it fires.
    let dropped_at = Instant::now();
    numbers.set(Ok(0.0));
    let failing = eventually(LIMIT, "a failing run", || async {
        latest(&h).filter(|s| !s.last.ok)
    })
    .await;
    assert_eq!(failing.last.message, "expected value > 0, got 0");
    assert_eq!(failing.last.value, Some(0.0));
    let ev = next_event(&mut h.events, LIMIT).await;
    assert_eq!(ev.transition, Transition::Firing);
    assert_eq!(ev.record.alert, "orders-low");
    assert_eq!(ev.record.value, Some(0.0));
    assert!(dropped_at.elapsed() >= Duration::from_secs(1));
    let firing = eventually(LIMIT, "firing webhook", || async {
        hooks.bodies("oncall", "firing").first().cloned()
    })
    .await;
    assert_eq!(firing["sensor"], "orders-per-minute");

    // The values are in the tsdb, under the field `value`.
    let history = h
        .monitor
        .history(&service_id(), "orders-per-minute", &stage(), 0)
        .await
        .expect("history");
    assert!(history.iter().any(|(_, ok, _, v)| *ok && *v == Some(12.0)));
    assert!(history.iter().any(|(_, ok, _, v)| !*ok && *v == Some(0.0)));

    // A failing query is a failing run without a value.
    numbers.set(Err("Table 'orders' doesn't exist".into()));
    let broken = eventually(LIMIT, "a failed query", || async {
        latest(&h).filter(|s| s.last.value.is_none())
    })
    .await;
    assert_eq!(broken.last.message, "Table 'orders' doesn't exist");
    assert!(!broken.last.ok);

    numbers.set(Ok(7.0));
    let ev = next_event(&mut h.events, LIMIT).await;
    assert_eq!(ev.transition, Transition::Resolved);
    h.monitor.shutdown().await;
}

#[tokio::test]
async fn sql_sensors_without_a_runner_fail_with_a_reason() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let hooks = Hooks::start().await;
    let h = start_monitor(tmp.path(), Vec::new());
    h.monitor.apply(&sql_spec(&hooks));
    let state = eventually(LIMIT, "a run of the sql sensor", || async {
        h.monitor
            .latest(&service_id())
            .into_iter()
            .find(|s| s.sensor == "orders-per-minute")
    })
    .await;
    assert!(!state.last.ok);
    assert_eq!(state.last.message, peng_monitor::NO_RUNNER);
    h.monitor.shutdown().await;
}

#[tokio::test]
async fn external_runs_are_stored_and_fire_builtin_and_file_alerts() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let hooks = Hooks::start().await;
    let mut h = start_monitor(tmp.path(), Vec::new());
    let mut spec = sql_spec(&hooks);
    spec.sensors.clear();
    spec.alerts = vec![peng_spec::AlertSpec {
        name: "db-down".into(),
        sensor: "db.up".into(),
        when: peng_spec::AlertCondition::Failing {
            for_: peng_core::Duration::default(),
        },
        severity: Severity::Critical,
        plan: "page-oncall".into(),
    }];
    let builtin = vec![peng_spec::AlertSpec {
        name: "db-connections".into(),
        sensor: "db.connections".into(),
        when: peng_spec::AlertCondition::Value {
            op: CmpOp::Gt,
            threshold: 90.0,
            for_: peng_core::Duration::default(),
        },
        severity: Severity::Warning,
        plan: String::new(),
    }];
    h.monitor.apply_with_builtin(&spec, builtin.clone());
    let id = service_id();

    h.monitor.record_external(
        &id,
        &stage(),
        "db.connections",
        true,
        &[("used_percent", 95.0), ("used", 95.0), ("max", 100.0)],
        Some("95 of 100 connections".into()),
    );
    let ev = next_event(&mut h.events, LIMIT).await;
    assert_eq!(
        (ev.transition, ev.record.alert.as_str()),
        (Transition::Firing, "db-connections")
    );
    assert_eq!(ev.record.value, Some(95.0));
    assert_eq!(ev.record.last_message, "95 of 100 connections");
    // Without a plan of its own, a built-in alert notifies the file's first action plan.
    let firing = eventually(LIMIT, "built-in alert webhook", || async {
        hooks.bodies("oncall", "firing").first().cloned()
    })
    .await;
    assert_eq!(firing["alert"], "db-connections");
    assert_eq!(firing["sensor"], "db.connections");

    // A reload keeps the external state and the built-in alert.
    h.monitor.apply_with_builtin(&spec, builtin.clone());
    assert!(h
        .monitor
        .latest(&id)
        .iter()
        .any(|s| s.sensor == "db.connections"));
    h.monitor
        .record_external(&id, &stage(), "db.up", false, &[], None);
    let ev = next_event(&mut h.events, LIMIT).await;
    assert_eq!(
        (ev.transition, ev.record.alert.as_str()),
        (Transition::Firing, "db-down")
    );

    // Every named value is a field in the tsdb, the first also as `value`.
    let stored = eventually(LIMIT, "stored database statistics", || async {
        let history = h
            .monitor
            .history(&id, "db.connections", &stage(), 0)
            .await
            .expect("history");
        history.first().copied()
    })
    .await;
    assert_eq!((stored.1, stored.3), (true, Some(95.0)));
    let series = h
        .tsdb
        .query(&peng_tsdb::Query {
            measurement: peng_monitor::MEASUREMENT.to_string(),
            tag_filter: std::collections::BTreeMap::from([(
                "sensor".to_string(),
                "db.connections".to_string(),
            )]),
            fields: None,
            start_ns: 0,
            end_ns: i64::MAX,
        })
        .expect("query");
    let mut fields: Vec<&str> = series.iter().map(|s| s.field.as_str()).collect();
    fields.sort_unstable();
    assert_eq!(
        fields,
        ["latency_ms", "max", "ok", "used", "used_percent", "value"]
    );

    // Without the built-in alerts, a firing one is resolved.
    h.monitor.apply(&spec);
    let ev = next_event(&mut h.events, LIMIT).await;
    assert_eq!(
        (ev.transition, ev.record.alert.as_str()),
        (Transition::Resolved, "db-connections")
    );
    h.monitor.shutdown().await;
}
