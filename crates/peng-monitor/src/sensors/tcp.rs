//! The `tcp` sensor kind: the port accepts a connection; and the automatic tcp health probe.

use std::time::Instant;

use peng_spec::{SensorKind, SensorSpec};

use super::{error_chain, Endpoint, Observation, Outcome};

const DEFAULT_HOST: &str = "127.0.0.1";

pub(super) fn needs_instance(kind: &SensorKind) -> bool {
    matches!(kind, SensorKind::Tcp { port: None, .. })
}

pub(super) async fn run(sensor: &SensorSpec, instance: Option<&Endpoint>) -> Outcome {
    let SensorKind::Tcp { host, port } = &sensor.kind else {
        return Outcome::failed(Default::default(), "not a tcp sensor");
    };
    let (host, port) = match (host, port, instance) {
        (h, Some(p), _) => (h.clone().unwrap_or_else(|| DEFAULT_HOST.into()), *p),
        (Some(h), None, Some(at)) => (h.clone(), at.port),
        (None, None, Some(at)) => (at.host.clone(), at.port),
        (_, None, None) => {
            return Outcome::failed(Default::default(), "no running instance to probe")
        }
    };
    let started = Instant::now();
    match connect(&host, port).await {
        Ok(()) => Outcome::judge(
            &sensor.expect,
            &Observation {
                status: None,
                latency: started.elapsed(),
                body: None,
                value: None,
            },
        ),
        Err(why) => Outcome::failed(started.elapsed(), why),
    }
}

pub(super) async fn health(at: &Endpoint) -> Outcome {
    let started = Instant::now();
    match connect(&at.host, at.port).await {
        Ok(()) => Outcome::judge(
            &[],
            &Observation {
                status: None,
                latency: started.elapsed(),
                body: None,
                value: None,
            },
        ),
        Err(why) => Outcome::failed(started.elapsed(), why),
    }
}

async fn connect(host: &str, port: u16) -> Result<(), String> {
    tokio::net::TcpStream::connect((host, port))
        .await
        .map(drop)
        .map_err(|e| format!("connect to {host}:{port} failed: {}", error_chain(&e)))
}
