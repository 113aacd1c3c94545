//! The webhook notifier: a POST of the alert payload as JSON, retried with backoff.
//!
//! The payload is a contract with receivers, documented in `docs/alerts.md`: fields are only
//! ever added, and `version` changes if one ever changes meaning.

use std::time::{Duration, UNIX_EPOCH};

use serde::Serialize;

use super::{Notification, RetryPolicy};
use crate::alerting::Transition;

/// Version of the payload format.
pub const PAYLOAD_VERSION: u32 = 1;

#[derive(Serialize)]
struct Payload<'a> {
    version: u32,
    state: &'static str,
    alert: &'a str,
    team: &'a str,
    service: String,
    stage: &'a str,
    severity: &'static str,
    sensor: &'a str,
    runbook: Option<&'a str>,
    value: Option<f64>,
    message: &'a str,
    started_at: Option<String>,
    resolved_at: Option<String>,
    plan: &'a str,
}

/// The JSON body sent for a notification.
pub fn payload(n: &Notification) -> serde_json::Value {
    let r = &n.record;
    let resolved_at = match n.transition {
        Transition::Resolved => Some(rfc3339(r.since_ns)),
        Transition::Firing | Transition::Escalated => None,
    };
    let p = Payload {
        version: PAYLOAD_VERSION,
        state: n.transition.as_str(),
        alert: &r.alert,
        team: r.service.team.as_str(),
        service: r.service.to_string(),
        stage: r.stage.as_str(),
        severity: r.severity.as_str(),
        sensor: &n.sensor,
        runbook: n.runbook.as_deref(),
        value: r.value.filter(|v| v.is_finite()),
        message: &r.last_message,
        started_at: r.started_at_ns.map(rfc3339),
        resolved_at,
        plan: &n.plan,
    };
    serde_json::to_value(p).unwrap_or(serde_json::Value::Null)
}

/// Nanoseconds since the Unix epoch as RFC 3339 UTC with milliseconds.
pub fn rfc3339(ns: i64) -> String {
    let t = UNIX_EPOCH + Duration::from_nanos(u64::try_from(ns).unwrap_or(0));
    humantime::format_rfc3339_millis(t).to_string()
}

pub(super) fn client(timeout: Duration) -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(timeout)
        .redirect(reqwest::redirect::Policy::limited(1))
        .user_agent(concat!("peng-monitor/", env!("CARGO_PKG_VERSION")))
        .build()
        .unwrap_or_else(|error| {
            tracing::error!(%error, "webhook client setup failed, using defaults");
            reqwest::Client::default()
        })
}

/// POSTs `body` to `url` until a 2xx answer; a 4xx other than 408 and 429 is not retried.
pub async fn send(
    client: &reqwest::Client,
    url: &str,
    body: &str,
    policy: RetryPolicy,
) -> Result<(), String> {
    let mut last = String::new();
    for attempt in 0..policy.attempts.max(1) {
        if attempt > 0 {
            tokio::time::sleep(policy.backoff * 2u32.saturating_pow(attempt - 1)).await;
        }
        let sent = client
            .post(url)
            .timeout(policy.timeout)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body.to_string())
            .send()
            .await;
        match sent {
            Ok(resp) if resp.status().is_success() => return Ok(()),
            Ok(resp) => {
                let status = resp.status();
                last = format!("receiver answered {status}");
                let retryable = status.is_server_error()
                    || status == reqwest::StatusCode::REQUEST_TIMEOUT
                    || status == reqwest::StatusCode::TOO_MANY_REQUESTS;
                if !retryable {
                    break;
                }
            }
            Err(e) => last = crate::sensors::error_chain(&e),
        }
        tracing::debug!(%url, attempt, error = %last, "webhook attempt failed");
    }
    Err(format!("after {} attempts: {last}", policy.attempts.max(1)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alerting::{AlertRecord, AlertState};
    use peng_core::{ServiceId, StageName};
    use peng_spec::{NotifyTarget, Severity};

    #[test]
    fn payload_fields() {
        let mut record = AlertRecord::new(
            ServiceId::parse("checkout/orders").expect("valid id"),
            StageName::parse("production").expect("valid stage"),
            "checkout-down".into(),
            Severity::Critical,
            0,
        );
        record.state = AlertState::Firing;
        record.started_at_ns = Some(1_700_000_000_123_000_000);
        record.value = Some(12.5);
        record.last_message = "expected status == 200, got 503".into();
        let n = Notification {
            transition: Transition::Firing,
            record,
            sensor: "checkout-page".into(),
            plan: "page-oncall".into(),
            runbook: Some("https://wiki.example/rb".into()),
            targets: vec![NotifyTarget::Webhook {
                url: "http://127.0.0.1:9/".into(),
            }],
        };
        let p = payload(&n);
        assert_eq!(
            p,
            serde_json::json!({
                "version": 1,
                "state": "firing",
                "alert": "checkout-down",
                "team": "checkout",
                "service": "checkout/orders",
                "stage": "production",
                "severity": "critical",
                "sensor": "checkout-page",
                "runbook": "https://wiki.example/rb",
                "value": 12.5,
                "message": "expected status == 200, got 503",
                "started_at": "2023-11-14T22:13:20.123Z",
                "resolved_at": null,
                "plan": "page-oncall"
            })
        );
    }
}
