//! Real components for the monitor's tests: an instance server whose `/health` can be switched
//! to 500, a webhook receiver that keeps every body it is sent, an instance directory, a tsdb in
//! a temp dir, and a spec builder.

use std::collections::BTreeMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU16, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::Router;
use peng_core::{ServiceId, ServiceName, StageName, TeamName};
use peng_monitor::{
    AlertEvent, AlertRecord, Endpoint, InstanceDirectory, Monitor, MonitorConfig, RetryPolicy,
    SqlRunner,
};
use peng_spec::{
    ActionPlan, AlertCondition, AlertSpec, Escalation, HealthCheck, HealthProbe, LoggingSpec,
    NotifyTarget, Resources, RunSpec, ServiceSpec, Severity, StageSpec,
};
use peng_tsdb::Tsdb;
use tokio::sync::mpsc;

/// An instance of a service: `/health` answers the switchable status, `/page` a fixed page.
pub struct Instance {
    pub addr: SocketAddr,
    status: Arc<AtomicU16>,
    pub hits: Arc<AtomicU64>,
}

impl Instance {
    pub async fn start() -> Instance {
        let status = Arc::new(AtomicU16::new(200));
        let hits = Arc::new(AtomicU64::new(0));
        let app = Router::new()
            .route(
                "/health",
                get(
                    |State((s, _)): State<(Arc<AtomicU16>, Arc<AtomicU64>)>| async move {
                        StatusCode::from_u16(s.load(Ordering::SeqCst))
                            .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
                    },
                ),
            )
            .route(
                "/page",
                get(
                    |State((_, h)): State<(Arc<AtomicU16>, Arc<AtomicU64>)>| async move {
                        h.fetch_add(1, Ordering::SeqCst);
                        "<h1>Ihre Bestellung</h1>"
                    },
                ),
            )
            .with_state((status.clone(), hits.clone()));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind instance");
        let addr = listener.local_addr().expect("local addr");
        tokio::spawn(async move { axum::serve(listener, app).await });
        Instance { addr, status, hits }
    }

    pub fn set_health(&self, status: u16) {
        self.status.store(status, Ordering::SeqCst);
    }

    pub fn endpoint(&self, instance: u32) -> Endpoint {
        Endpoint {
            instance,
            host: "127.0.0.1".into(),
            port: self.addr.port(),
            running: true,
        }
    }
}

type Received = Arc<Mutex<Vec<(String, serde_json::Value)>>>;

/// A webhook receiver: every POST to `/hook/{name}` is kept as (name, JSON body) and answered
/// 200, or 500 when `name` starts with `fail`.
#[derive(Clone)]
pub struct Hooks {
    pub addr: SocketAddr,
    received: Received,
}

impl Hooks {
    pub async fn start() -> Hooks {
        let received: Received = Arc::default();
        let app = Router::new()
            .route(
                "/hook/{name}",
                post(
                    |State(r): State<Received>, Path(name): Path<String>, body: String| async move {
                        let json = serde_json::from_str(&body).unwrap_or(serde_json::Value::Null);
                        let status = if name.starts_with("fail") {
                            StatusCode::INTERNAL_SERVER_ERROR
                        } else {
                            StatusCode::OK
                        };
                        r.lock().expect("hooks lock").push((name, json));
                        status
                    },
                ),
            )
            .with_state(received.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind hooks");
        let addr = listener.local_addr().expect("local addr");
        tokio::spawn(async move { axum::serve(listener, app).await });
        Hooks { addr, received }
    }

    pub fn url(&self, name: &str) -> String {
        format!("http://{}/hook/{name}", self.addr)
    }

    /// Bodies received on `name` with the given `state`.
    pub fn bodies(&self, name: &str, state: &str) -> Vec<serde_json::Value> {
        self.received
            .lock()
            .expect("hooks lock")
            .iter()
            .filter(|(n, b)| n == name && b["state"] == state)
            .map(|(_, b)| b.clone())
            .collect()
    }
}

/// Endpoints set by the test.
#[derive(Default)]
pub struct Directory {
    endpoints: Mutex<Vec<Endpoint>>,
}

impl Directory {
    pub fn set(&self, endpoints: Vec<Endpoint>) {
        *self.endpoints.lock().expect("directory lock") = endpoints;
    }
}

impl InstanceDirectory for Directory {
    fn endpoints(&self, _service: &ServiceId, _stage: &StageName) -> Vec<Endpoint> {
        self.endpoints.lock().expect("directory lock").clone()
    }
}

pub fn stage() -> StageName {
    StageName::parse("production").expect("valid stage")
}

pub fn service_id() -> ServiceId {
    ServiceId::parse("checkout/orders").expect("valid id")
}

/// `checkout/orders` on `production`: http health every 200ms, alert `down` on `health`
/// failing for 1s to plan `page-oncall` (escalating after `escalate_after` to `platform`).
pub fn spec(hooks: &Hooks, escalate_after: Duration) -> ServiceSpec {
    ServiceSpec {
        service: ServiceName::parse("orders").expect("valid name"),
        team: TeamName::parse("checkout").expect("valid team"),
        stages: BTreeMap::from([(stage(), StageSpec { instances: 1 })]),
        run: RunSpec {
            command: vec!["./orders".into()],
            env: BTreeMap::new(),
            workdir: None,
            writable: Vec::new(),
            health: HealthCheck {
                probe: HealthProbe::Http {
                    path: "/health".into(),
                },
                every: peng_core::Duration::from_millis(200),
                timeout: peng_core::Duration::from_millis(1000),
            },
            resources: Resources {
                cpu: 0.25,
                memory: peng_core::ByteSize(256 << 20),
                pids: None,
            },
        },
        logging: LoggingSpec {
            retention: peng_core::Duration::from_secs(86400),
        },
        database: None,
        sensors: Vec::new(),
        alerts: vec![AlertSpec {
            name: "down".into(),
            sensor: "health".into(),
            when: AlertCondition::Failing {
                for_: peng_core::Duration::from_secs(1),
            },
            severity: Severity::Critical,
            plan: "page-oncall".into(),
        }],
        action_plans: BTreeMap::from([
            (
                "page-oncall".into(),
                ActionPlan {
                    runbook: Some("https://wiki.example/orders/runbook".into()),
                    notify: vec![NotifyTarget::Webhook {
                        url: hooks.url("oncall"),
                    }],
                    escalate: Some(Escalation {
                        after: escalate_after.into(),
                        to: "platform".into(),
                    }),
                },
            ),
            (
                "platform".into(),
                ActionPlan {
                    runbook: None,
                    notify: vec![NotifyTarget::Webhook {
                        url: hooks.url("platform"),
                    }],
                    escalate: None,
                },
            ),
        ]),
    }
}

pub struct Harness {
    pub monitor: Monitor,
    pub directory: Arc<Directory>,
    pub events: mpsc::Receiver<AlertEvent>,
    pub tsdb: Arc<Tsdb>,
}

pub fn start_monitor(dir: &std::path::Path, initial_alerts: Vec<AlertRecord>) -> Harness {
    start_monitor_with(dir, initial_alerts, RetryPolicy::default())
}

pub fn start_monitor_with(
    dir: &std::path::Path,
    initial_alerts: Vec<AlertRecord>,
    retry: RetryPolicy,
) -> Harness {
    start_monitor_full(dir, initial_alerts, retry, None)
}

pub fn start_monitor_full(
    dir: &std::path::Path,
    initial_alerts: Vec<AlertRecord>,
    retry: RetryPolicy,
    sql: Option<Arc<dyn SqlRunner>>,
) -> Harness {
    let tsdb = Arc::new(Tsdb::open(dir).expect("open tsdb"));
    let directory = Arc::new(Directory::default());
    let (tx, events) = mpsc::channel(64);
    let monitor = Monitor::start_with(
        MonitorConfig {
            tsdb: tsdb.clone(),
            directory: directory.clone(),
            sql,
            logs: None,
            initial_alerts,
            events: tx,
        },
        retry,
    );
    Harness {
        monitor,
        directory,
        events,
        tsdb,
    }
}

/// A stand-in for the server's runner at the trait boundary: answers every query with the
/// number set by the test (or the error), and remembers what it was asked.
pub struct Numbers {
    answer: Mutex<Result<f64, String>>,
    pub asked: Mutex<Vec<(String, String)>>,
}

impl Numbers {
    pub fn new(answer: f64) -> Numbers {
        Numbers {
            answer: Mutex::new(Ok(answer)),
            asked: Mutex::default(),
        }
    }

    pub fn set(&self, answer: Result<f64, String>) {
        *self.answer.lock().expect("numbers lock") = answer;
    }
}

impl SqlRunner for Numbers {
    fn query_value(
        &self,
        _service: &ServiceId,
        stage: &StageName,
        query: &str,
        _timeout: Duration,
    ) -> std::pin::Pin<Box<dyn Future<Output = Result<f64, String>> + Send + '_>> {
        self.asked
            .lock()
            .expect("numbers lock")
            .push((stage.to_string(), query.to_string()));
        let answer = self.answer.lock().expect("numbers lock").clone();
        Box::pin(async move { answer })
    }
}

/// Polls `check` until it returns `Some`, or panics with `what` after `limit`.
pub async fn eventually<T, F, Fut>(limit: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// Receives the next alert event, or panics after `limit`.
pub async fn next_event(events: &mut mpsc::Receiver<AlertEvent>, limit: Duration) -> AlertEvent {
    tokio::time::timeout(limit, events.recv())
        .await
        .expect("timed out waiting for an alert event")
        .expect("event channel open")
}
