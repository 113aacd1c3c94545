//! One http run: one request, at most one redirect followed, at most [`MAX_BODY_BYTES`] of the
//! body read.

use std::time::{Duration, Instant};

use super::{Http, HttpTarget};
use crate::{error_chain, Endpoint, Failed, Observation, Run};

/// At most this much of a response body is read to judge `body contains` conditions.
pub const MAX_BODY_BYTES: usize = 1 << 20;

/// The client every http probe shares: rustls, no proxy taken from the environment (sensors
/// probe local instances), one redirect at most.
pub(crate) fn client() -> Result<reqwest::Client, reqwest::Error> {
    reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::limited(1))
        .user_agent(concat!("peng-monitor/", env!("CARGO_PKG_VERSION")))
        .build()
}

pub(super) async fn probe(
    http: &Http,
    client: &reqwest::Client,
    run: &Run<'_>,
) -> Result<Observation, Failed> {
    let url = match (&http.target, run.instance) {
        (HttpTarget::Url(url), _) => url.clone(),
        (HttpTarget::Path(path), Some(at)) => instance_url(at, path),
        (HttpTarget::Path(_), None) => {
            return Err(Failed::new(Duration::ZERO, "no running instance to probe"))
        }
    };
    let method = &http.method;
    let Ok(method) = reqwest::Method::from_bytes(method.to_ascii_uppercase().as_bytes()) else {
        return Err(Failed::new(
            Duration::ZERO,
            format!("'{method}' is not an http method"),
        ));
    };
    let started = Instant::now();
    match request(client, method, &url, run.want_body).await {
        Ok((status, body)) => Ok(Observation {
            status: Some(status),
            body,
            ..Observation::answered(started.elapsed())
        }),
        Err(why) => Err(Failed::new(started.elapsed(), why)),
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
