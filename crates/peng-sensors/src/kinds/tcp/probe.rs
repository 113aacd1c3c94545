//! One tcp run: the port accepts a connection.

use std::time::{Duration, Instant};

use super::{Tcp, DEFAULT_HOST};
use crate::{error_chain, Failed, Observation, Run};

pub(super) async fn probe(tcp: &Tcp, run: &Run<'_>) -> Result<Observation, Failed> {
    let (host, port) = match (&tcp.host, tcp.port, run.instance) {
        (h, Some(p), _) => (h.clone().unwrap_or_else(|| DEFAULT_HOST.into()), p),
        (Some(h), None, Some(at)) => (h.clone(), at.port),
        (None, None, Some(at)) => (at.host.clone(), at.port),
        (_, None, None) => return Err(Failed::new(Duration::ZERO, "no running instance to probe")),
    };
    let started = Instant::now();
    match tokio::net::TcpStream::connect((host.as_str(), port)).await {
        Ok(_) => Ok(Observation::answered(started.elapsed())),
        Err(e) => Err(Failed::new(
            started.elapsed(),
            format!("connect to {host}:{port} failed: {}", error_chain(&e)),
        )),
    }
}

#[cfg(test)]
mod tests {
    use peng_core::{ServiceId, ServiceName, StageName, TeamName};

    use super::*;

    #[tokio::test]
    async fn a_listening_port_answers_and_a_closed_one_fails() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let service = ServiceId::new(
            TeamName::parse("books").unwrap(),
            ServiceName::parse("shelf").unwrap(),
        );
        let stage = StageName::parse("production").unwrap();
        let run = Run {
            service: &service,
            stage: &stage,
            instance: None,
            timeout: Duration::from_secs(5),
            want_body: false,
        };
        let open = Tcp {
            host: None,
            port: Some(port),
        };
        assert!(probe(&open, &run).await.is_ok());
        drop(listener);
        let failed = probe(&open, &run).await.unwrap_err();
        assert!(
            failed.message.starts_with(&format!("connect to 127.0.0.1:{port} failed: ")),
            "{failed:?}"
        );
        let own = Tcp {
            host: None,
            port: None,
        };
        assert_eq!(
            probe(&own, &run).await.unwrap_err().message,
            "no running instance to probe"
        );
    }
}
