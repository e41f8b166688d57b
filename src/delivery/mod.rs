//! The delivery worker: lease due deliveries, send each through its channel, and record the
//! outcome as delivered, retry later or dead. Channels never retry; this is the one place that
//! decides when to try again.

mod backoff;
pub mod governor;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{watch, Notify};

pub use backoff::RetryPolicy;

use crate::channels::{Attempt, Channel, Verdict};
use crate::clock::Clock;
use crate::outbox::{AttemptRecord, Delivery, Next, Outbox};

/// The worker's dependencies and knobs.
pub struct Worker {
    pub outbox: Arc<dyn Outbox>,
    pub channels: Arc<HashMap<String, Arc<dyn Channel>>>,
    pub clock: Arc<dyn Clock>,
    pub policy: RetryPolicy,
    /// Signalled when new deliveries are stored.
    pub wake: Arc<Notify>,
    /// Deliveries leased (and attempted concurrently) per step.
    pub batch: usize,
    /// How long a lease hides a delivery from other workers.
    pub lease: Duration,
}

impl Worker {
    /// Leases the due deliveries and attempts them all, concurrently; returns how many were
    /// attempted. Tests drive the worker with this, one step at a time.
    pub async fn step(&self) -> usize {
        let now = self.clock.now_ms();
        let due = match self.outbox.lease(now, self.batch, self.lease.as_millis() as i64).await {
            Ok(d) => d,
            Err(e) => {
                tracing::error!(error = %e, "leasing deliveries failed");
                return 0;
            }
        };
        let n = due.len();
        let attempts = due.into_iter().map(|d| self.attempt(d));
        futures_util::future::join_all(attempts).await;
        n
    }

    /// Runs until `shutdown` turns true: steps while work is due, otherwise sleeps until the
    /// next delivery is due or new work arrives. In-flight attempts finish before it returns.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        loop {
            if *shutdown.borrow() {
                return;
            }
            if self.step().await > 0 {
                continue;
            }
            let wait = match self.outbox.next_due().await {
                Ok(Some(at)) => Duration::from_millis((at - self.clock.now_ms()).clamp(1, 1000) as u64),
                _ => Duration::from_secs(1),
            };
            tokio::select! {
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep(wait) => {}
                _ = shutdown.changed() => {}
            }
        }
    }

    async fn attempt(&self, d: Delivery) {
        let number = d.attempts + 1;
        let Some(channel) = self.channels.get(&d.channel) else {
            let reason = format!("channel \"{}\" is no longer configured", d.channel);
            tracing::error!(delivery_id = %d.id, event_id = %d.event_id, channel = %d.channel, "{reason}");
            let record = AttemptRecord {
                at: self.clock.now_ms(),
                outcome: "permanent".into(),
                http_status: None,
                code: None,
                detail: reason.clone(),
                latency_ms: 0,
            };
            self.finish(&d, record, Next::Dead(reason)).await;
            return;
        };
        let attempt = Attempt { delivery_id: d.id.clone(), number, now: self.clock.now() };
        let started = Instant::now();
        let outcome = channel.send(&d.message, &attempt).await;
        let latency_ms = started.elapsed().as_millis() as u64;
        let now = self.clock.now_ms();
        let jitter = 0.8 + rand::random::<f64>() * 0.4;
        let next = self.policy.next(&outcome, number, d.scheduled_at, now, jitter);
        let record = AttemptRecord {
            at: now,
            outcome: match outcome.verdict {
                Verdict::Delivered => "delivered",
                Verdict::Transient { .. } => "transient",
                Verdict::Permanent => "permanent",
            }
            .into(),
            http_status: outcome.http_status,
            code: outcome.code,
            detail: outcome.detail.clone(),
            latency_ms,
        };
        match &next {
            Next::Delivered => tracing::info!(
                delivery_id = %d.id, event_id = %d.event_id, channel = %d.channel, attempt = number, latency_ms,
                "delivered"
            ),
            Next::RetryAt(at) => tracing::warn!(
                delivery_id = %d.id, event_id = %d.event_id, channel = %d.channel, attempt = number,
                http_status = ?outcome.http_status, code = ?outcome.code, retry_in_ms = at - now,
                "attempt failed, will retry: {}", outcome.detail
            ),
            Next::Dead(reason) => tracing::error!(
                delivery_id = %d.id, event_id = %d.event_id, channel = %d.channel, attempt = number,
                http_status = ?outcome.http_status, code = ?outcome.code,
                "delivery is dead: {reason}"
            ),
        }
        self.finish(&d, record, next).await;
    }

    async fn finish(&self, d: &Delivery, record: AttemptRecord, next: Next) {
        if let Err(e) = self.outbox.finish(&d.id, record, next).await {
            // The lease expires and the delivery comes back: at-least-once, never lost.
            tracing::error!(delivery_id = %d.id, error = %e, "recording the attempt failed");
        }
    }
}
