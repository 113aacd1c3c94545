//! The `http` sensor kind: one request, at most one redirect followed, at most
//! [`MAX_BODY_BYTES`](super::MAX_BODY_BYTES) of the body read, and the automatic http health
//! probe (2xx is healthy).

use std::time::Instant;

use peng_spec::{HttpTarget, SensorKind, SensorSpec};

use super::{error_chain, needs_body, Endpoint, Observation, Outcome, MAX_BODY_BYTES};

/// The client every http probe shares: rustls, no proxy taken from the environment (sensors
/// probe local instances), one redirect at most.
pub(super) fn client() -> Result<reqwest::Client, reqwest::Error> {
    reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::limited(1))
        .user_agent(concat!("peng-monitor/", env!("CARGO_PKG_VERSION")))
        .build()
}

pub(super) fn needs_instance(kind: &SensorKind) -> bool {
    matches!(
        kind,
        SensorKind::Http {
            target: HttpTarget::Path(_),
            ..
        }
    )
}

pub(super) async fn run(
    client: &reqwest::Client,
    sensor: &SensorSpec,
    instance: Option<&Endpoint>,
) -> Outcome {
    let SensorKind::Http { target, method } = &sensor.kind else {
        return Outcome::failed(Default::default(), "not an http sensor");
    };
    let url = match (target, instance) {
        (HttpTarget::Url(url), _) => url.clone(),
        (HttpTarget::Path(path), Some(at)) => instance_url(at, path),
        (HttpTarget::Path(_), None) => {
            return Outcome::failed(Default::default(), "no running instance to probe")
        }
    };
    let method = match reqwest::Method::from_bytes(method.to_ascii_uppercase().as_bytes()) {
        Ok(m) => m,
        Err(_) => {
            return Outcome::failed(
                Default::default(),
                format!("'{method}' is not an http method"),
            )
        }
    };
    let started = Instant::now();
    match request(client, method, &url, needs_body(&sensor.expect)).await {
        Ok((status, body)) => Outcome::judge(
            &sensor.expect,
            &Observation {
                status: Some(status),
                latency: started.elapsed(),
                body,
                value: None,
            },
        ),
        Err(why) => Outcome::failed(started.elapsed(), why),
    }
}

pub(super) async fn health(client: &reqwest::Client, at: &Endpoint, path: &str) -> Outcome {
    let started = Instant::now();
    match request(client, reqwest::Method::GET, &instance_url(at, path), false).await {
        Ok((status, _)) => Outcome::judge(
            &[],
            &Observation {
                status: Some(status),
                latency: started.elapsed(),
                body: None,
                value: None,
            },
        ),
        Err(why) => Outcome::failed(started.elapsed(), why),
    }
}

fn instance_url(at: &Endpoint, path: &str) -> String {
    let sep = if path.starts_with('/') { "" } else { "/" };
    if at.host.contains(':') {
        format!("http://[{}]:{}{sep}{path}", at.host, at.port)
    } else {
        format!("http://{}:{}{sep}{path}", at.host, at.port)
    }
}

/// Sends the request; returns the status and, when asked, the first bytes of the body.
async fn request(
    client: &reqwest::Client,
    method: reqwest::Method,
    url: &str,
    want_body: bool,
) -> Result<(u16, Option<String>), String> {
    let mut response = client
        .request(method, url)
        .send()
        .await
        .map_err(|e| format!("request failed: {}", error_chain(&e)))?;
    let status = response.status().as_u16();
    if !want_body {
        return Ok((status, None));
    }
    let mut body = Vec::new();
    while body.len() < MAX_BODY_BYTES {
        match response.chunk().await {
            Ok(Some(chunk)) => {
                let room = MAX_BODY_BYTES - body.len();
                body.extend_from_slice(&chunk[..chunk.len().min(room)]);
            }
            Ok(None) => break,
            Err(e) => return Err(format!("reading body failed: {}", error_chain(&e))),
        }
    }
    Ok((status, Some(String::from_utf8_lossy(&body).into_owned())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instance_urls() {
        let at = Endpoint {
            instance: 0,
            host: "127.0.0.1".into(),
            port: 8080,
            running: true,
        };
        assert_eq!(instance_url(&at, "/health"), "http://127.0.0.1:8080/health");
        assert_eq!(instance_url(&at, "health"), "http://127.0.0.1:8080/health");
        let v6 = Endpoint {
            host: "::1".into(),
            ..at
        };
        assert_eq!(instance_url(&v6, "/x"), "http://[::1]:8080/x");
    }
}
