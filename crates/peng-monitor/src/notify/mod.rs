//! Notifiers: deliver an alert transition to the targets of an action plan.
//!
//! The engine hands a [`Notification`] to [`Notifier::enqueue`], which never waits: the queue
//! is bounded and a full queue drops the notification and counts it. One task drains the
//! queue and each delivery runs in its own task (bounded in number), so a slow receiver delays
//! neither the engine nor the other receivers. Failed deliveries are retried, then counted as
//! `peng_component_errors_total{component="notify_webhook",stage="send"}` and logged.

pub mod webhook;

use std::sync::Arc;
use std::time::Duration;

use peng_spec::NotifyTarget;
use tokio::sync::{mpsc, Semaphore};

use crate::alerting::{AlertRecord, Transition};

/// Notifications waiting for delivery; beyond this they are dropped and counted.
pub const QUEUE_CAPACITY: usize = 1024;
/// Deliveries in flight at once.
pub const MAX_IN_FLIGHT: usize = 16;

/// One transition of one alert, with what the receivers need to know about it.
#[derive(Debug, Clone, PartialEq)]
pub struct Notification {
    pub transition: Transition,
    /// The alert record after the transition.
    pub record: AlertRecord,
    pub sensor: String,
    /// The action plan whose targets are notified: the alert's own plan, or its escalation
    /// plan for `escalated`.
    pub plan: String,
    pub runbook: Option<String>,
    pub targets: Vec<NotifyTarget>,
}

/// How often and how patiently a delivery is tried.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    pub attempts: u32,
    pub timeout: Duration,
    /// Wait before the second attempt; doubled for each further one.
    pub backoff: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            attempts: 3,
            timeout: Duration::from_secs(10),
            backoff: Duration::from_secs(1),
        }
    }
}

/// The sending side of the notification queue. Cloning shares the queue.
#[derive(Clone)]
pub struct Notifier {
    tx: mpsc::Sender<Notification>,
}

impl Notifier {
    /// Starts the delivery task on the current runtime. It ends when every `Notifier` is
    /// dropped and the queue is drained.
    pub fn start(policy: RetryPolicy) -> Self {
        let (tx, rx) = mpsc::channel(QUEUE_CAPACITY);
        let client = webhook::client(policy.timeout);
        tokio::spawn(tracing::Instrument::instrument(
            deliver_all(rx, client, policy),
            tracing::info_span!("notify_webhook"),
        ));
        Self { tx }
    }

    /// Queues a notification without waiting; a full queue drops it and counts it.
    pub fn enqueue(&self, notification: Notification) {
        if let Err(e) = self.tx.try_send(notification) {
            peng_core::metrics::component::discarded("notify_webhook", "queue_full").inc();
            let n = match &e {
                mpsc::error::TrySendError::Full(n) | mpsc::error::TrySendError::Closed(n) => n,
            };
            tracing::warn!(
                alert = %n.record.alert,
                service = %n.record.service,
                "notification dropped: queue full or closed"
            );
        }
    }
}

async fn deliver_all(
    mut rx: mpsc::Receiver<Notification>,
    client: reqwest::Client,
    policy: RetryPolicy,
) {
    let permits = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
    while let Some(n) = rx.recv().await {
        peng_core::metrics::component::received("notify_webhook").inc();
        let body = webhook::payload(&n).to_string();
        for target in &n.targets {
            let NotifyTarget::Webhook { url } = target;
            let Ok(permit) = permits.clone().acquire_owned().await else {
                return;
            };
            let (client, url, body) = (client.clone(), url.clone(), body.clone());
            let alert = n.record.alert.clone();
            let state = n.transition.as_str();
            tokio::spawn(async move {
                let _permit = permit;
                match webhook::send(&client, &url, &body, policy).await {
                    Ok(()) => {
                        peng_core::metrics::component::processed("notify_webhook").inc();
                        tracing::info!(%alert, state, %url, "webhook notified");
                    }
                    Err(error) => {
                        peng_core::metrics::component::errors("notify_webhook", "send").inc();
                        tracing::warn!(%alert, state, %url, %error, "webhook notification failed");
                    }
                }
            });
        }
    }
}
