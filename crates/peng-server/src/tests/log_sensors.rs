//! Log sensors on the whole server: a sensor counts its team's GELF messages that match its
//! query in the real log store, its value is that count, an alert on it fires and reaches a
//! webhook; another team's messages are never counted, not even by a query that names that
//! team; a query that does not parse refuses the file, naming the file and the sensor.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use peng_core::{ErrorKind, ServiceId, ServiceName, TeamName};
use peng_monitor::{AlertState, SensorState};
use serde_json::Value;
use tokio::sync::mpsc;

use super::{eventually, Fixture, WAIT};
use crate::ops::teams::TeamCreated;
use crate::ops::Caller;

fn checkout(team: &str) -> ServiceId {
    ServiceId::new(
        TeamName::parse(team).expect("team"),
        ServiceName::parse("checkout").expect("service"),
    )
}

/// The service `checkout` of `team` on stage `dev`, with `sensors`, `alerts` and
/// `action_plans` as written.
fn file(team: &str, rest: &str) -> String {
    format!(
        "apiVersion: peng/v1\nservice: checkout\nteam: {team}\nstages:\n  dev: {{ instances: 0 }}\nrun:\n  command: [\"true\"]\n{rest}"
    )
}

/// `checkout-errors` counts errors of the service `checkout`; `peek` names the other team in
/// its query; an alert fires on three errors or more and tells `hook`.
fn shop_file(hook: &str, query: &str, window: &str) -> String {
    file(
        "shop",
        &format!(
            r#"sensors:
  - name: checkout-errors
    every: 2s
    timeout: 1s
    log: {{ query: "{query}", window: {window} }}
    expect: ["value < 3"]
  - name: peek
    every: 2s
    timeout: 1s
    log: {{ query: "team:rival OR service:checkout", window: 5m }}
alerts:
  - {{ name: many-errors, sensor: checkout-errors, when: "value >= 3", severity: warning, plan: tell }}
action_plans:
  tell:
    notify: [{{ webhook: "{hook}" }}]
"#
        ),
    )
}

const ERRORS: &str = "level:<=3 AND service:checkout";

/// Sends GELF messages over HTTP with the team's ingest token: `count` messages of `level`
/// for the service `service`.
async fn send(f: &Fixture, team: &TeamCreated, service: &str, level: u8, count: usize) {
    let peer: SocketAddr = "127.0.0.1:40000".parse().expect("addr");
    let body: Vec<String> = (0..count)
        .map(|i| {
            format!(
                r#"{{"version":"1.1","host":"web-1","short_message":"message {i} of {service}","level":{level},"_service":"{service}","_stage":"dev"}}"#
            )
        })
        .collect();
    f.ops
        .ingest_gelf(
            bytes::Bytes::from(body.join("\n")),
            None,
            Some(team.ingest_token.clone()),
            peer,
        )
        .await
        .expect("GELF accepted");
}

/// The latest run of `sensor` of the service, once one that started after `after_ns` has the
/// value `want`; on a timeout, says what the latest run had.
async fn value_after(
    f: &Fixture,
    id: &ServiceId,
    sensor: &str,
    after_ns: i64,
    want: f64,
) -> SensorState {
    let caller = Caller::Team(id.team.clone());
    let deadline = Instant::now() + WAIT;
    loop {
        let status = f.ops.status(&caller, id).await.expect("status");
        let latest = status.sensors.into_iter().find(|s| s.sensor == sensor);
        match latest {
            Some(s) if s.last.at_ns > after_ns && s.last.value == Some(want) => return s,
            latest => assert!(
                Instant::now() < deadline,
                "waited {WAIT:?} for {id} {sensor} = {want}; the latest run: {:?}",
                latest.map(|s| s.last)
            ),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A webhook receiver on 127.0.0.1: the payloads it receives, in order, and its URL.
async fn receiver() -> (mpsc::UnboundedReceiver<Value>, String) {
    let (tx, rx) = mpsc::unbounded_channel();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |axum::Json(payload): axum::Json<Value>| {
            let tx = tx.clone();
            async move {
                let _ = tx.send(payload);
                StatusCode::NO_CONTENT
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind the receiver");
    let url = format!("http://{}/hook", listener.local_addr().expect("addr"));
    tokio::spawn(async move { axum::serve(listener, app).await });
    (rx, url)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_log_sensor_counts_its_own_teams_messages_and_alerts() {
    let f = Fixture::start().await;
    let (mut received, hook) = receiver().await;
    let shop = f.team("shop").await;
    let rival = f.team("rival").await;
    let (shop_id, rival_id) = (checkout("shop"), checkout("rival"));

    let started = peng_core::now_ns();
    f.apply(&shop, &shop_file(&hook, ERRORS, "5m"))
        .await
        .expect("apply shop");
    // The rival's service has the same name and counts with the same query.
    let rival_file = file(
        "rival",
        &format!(
            "sensors:\n  - {{ name: checkout-errors, every: 2s, timeout: 1s, log: {{ query: \"{ERRORS}\", window: 5m }} }}\n"
        ),
    );
    f.apply(&rival, &rival_file).await.expect("apply rival");

    // Before any message: zero, and the sensor passes.
    let zero = value_after(&f, &shop_id, "checkout-errors", started, 0.0).await;
    assert!(zero.last.ok, "{:?}", zero.last);
    assert_eq!(zero.last.message.split(" in ").next(), Some("value 0"));

    // The rival's errors first, until its own sensor counts them.
    send(&f, &rival, "checkout", 3, 7).await;
    let rival_counted = value_after(&f, &rival_id, "checkout-errors", started, 7.0).await;

    // Then the shop's: four errors of checkout, one info line of checkout, one error of cart.
    send(&f, &shop, "checkout", 3, 4).await;
    send(&f, &shop, "checkout", 6, 1).await;
    send(&f, &shop, "cart", 2, 1).await;
    let errors = value_after(
        &f,
        &shop_id,
        "checkout-errors",
        rival_counted.last.at_ns,
        4.0,
    )
    .await;
    assert!(!errors.last.ok, "{:?}", errors.last);
    assert_eq!(errors.last.message, "expected value < 3, got 4");
    // `team:rival OR service:checkout` within the shop is the shop's five checkout messages:
    // the rival's seven, already counted by the rival, are not among them.
    value_after(&f, &shop_id, "peek", rival_counted.last.at_ns, 5.0).await;
    // Nor does the rival count the shop's: its next runs still say seven.
    value_after(&f, &rival_id, "checkout-errors", errors.last.at_ns, 7.0).await;

    // The alert on the count fires, and its webhook is told the value.
    let caller = Caller::Team(shop.team.clone());
    let alert = eventually("many-errors firing", || async {
        let status = f.ops.status(&caller, &shop_id).await.expect("status");
        status
            .alerts
            .into_iter()
            .find(|a| a.alert == "many-errors" && a.state == AlertState::Firing)
    })
    .await;
    assert_eq!(alert.value, Some(4.0));
    let payload = tokio::time::timeout(WAIT, received.recv())
        .await
        .expect("a webhook within the wait")
        .expect("the receiver runs");
    assert_eq!(payload["state"], "firing");
    assert_eq!(payload["alert"], "many-errors");
    assert_eq!(payload["team"], "shop");
    assert_eq!(payload["service"], "shop/checkout");
    assert_eq!(payload["stage"], "dev");
    assert_eq!(payload["sensor"], "checkout-errors");
    assert_eq!(payload["value"], 4.0);
    assert_eq!(payload["message"], "expected value < 3, got 4");
    f.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_log_query_that_does_not_parse_refuses_the_file() {
    let f = Fixture::start().await;
    let shop = f.team("shop").await;
    let hook = "http://127.0.0.1:9/hook";
    f.apply(&shop, &shop_file(hook, ERRORS, "5m"))
        .await
        .expect("apply");

    let refused = |query: &str, why: &str| {
        (
            shop_file(hook, query, "5m"),
            format!("sensor 'checkout-errors': query error at position {why}"),
        )
    };
    for (text, detail) in [
        // The syntax of searches, which the service file's reader leaves to the server.
        refused("level:<=3 AND", "13: 'AND' needs a term on its right"),
        refused("(level:3", "0: '(' is never closed"),
        refused("level:[1 5]", "9: expected 'TO' in range"),
        refused("*out", "0: leading wildcard in '*out' is not allowed"),
    ] {
        let e = f.apply(&shop, &text).await.expect_err(&detail);
        assert_eq!(e.kind, ErrorKind::Invalid, "{e:?}");
        assert_eq!(
            e.message,
            "peng.yaml: 1 log sensor query has an error; nothing was changed"
        );
        assert_eq!(e.details, [detail]);
    }
    // A window out of range is the file's own error, with its place.
    let e = f
        .apply(&shop, &shop_file(hook, ERRORS, "30s"))
        .await
        .expect_err("a window of 30s");
    assert_eq!(e.kind, ErrorKind::Invalid);
    assert_eq!(
        e.details,
        ["peng.yaml:12:61: 'window' in 'log' of sensor 'checkout-errors': 30s is out of range; count over at least 1m and at most 24h"]
    );
    // Nothing of it was applied.
    let status = f
        .ops
        .status(&Caller::Team(shop.team.clone()), &checkout("shop"))
        .await
        .expect("status");
    assert_eq!(status.generation, 1);
    f.stop().await;
}

/// A query a sensor may hold is one a search takes.
#[test]
fn a_sensor_query_fits_a_search() {
    const { assert!(peng_spec::limits::MAX_LOG_QUERY_BYTES <= peng_logs::query::MAX_QUERY_LEN) };
}
