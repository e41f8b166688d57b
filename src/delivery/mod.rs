//! The delivery worker: lease due deliveries, send each through its channel, and record the
//! outcome as delivered, retry later or dead. Channels never retry; this is the one place that
//! decides when to try again.

mod backoff;
pub mod governor;
pub mod hold;
pub mod summary;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{watch, Notify};

pub use backoff::RetryPolicy;
use governor::Governor;

use crate::channels::{Attempt, Channel, Verdict};
use crate::clock::{Clock, Millis};
use crate::config::Rate;
use crate::event::new_event_id;
use crate::outbox::{AttemptRecord, Delivery, NewDelivery, Next, Outbox};

/// The most held-back deliveries one summary covers.
const MAX_SUMMARY_ITEMS: usize = 500;

/// Who shares a robot: the rate key's channels and limits.
#[derive(Debug, Clone, Default)]
pub struct Robot {
    pub channels: Vec<String>,
    pub rates: Vec<Rate>,
}

/// Groups channels by the robot they send to; channels sharing a robot share its limits (every
/// limit any of them names applies).
pub fn robots(
    channels: &HashMap<String, Arc<dyn Channel>>,
    rates: &HashMap<String, Vec<Rate>>,
) -> HashMap<String, Robot> {
    let mut robots: HashMap<String, Robot> = HashMap::new();
    let mut names: Vec<&String> = channels.keys().collect();
    names.sort();
    for name in names {
        let robot = robots.entry(channels[name].rate_key()).or_default();
        robot.channels.push(name.clone());
        for r in rates.get(name).into_iter().flatten() {
            if !robot.rates.contains(r) {
                robot.rates.push(*r);
            }
        }
    }
    robots
}

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
    /// Per-robot sending limits.
    pub governor: Arc<Governor>,
    /// Robots by rate key.
    pub robots: Arc<HashMap<String, Robot>>,
    /// A robot backlog that would wait longer than this is merged into one summary.
    pub max_wait: Duration,
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
        let due = self.release_holds(due, now).await;
        // The governor decides, in lease order, which deliveries go now; the rest wait for
        // their robot's next free slot, without counting an attempt.
        let mut sends = Vec::new();
        let mut held: BTreeMap<String, Millis> = BTreeMap::new();
        for d in due {
            let key = self.channels.get(&d.channel).map(|c| c.rate_key());
            match key.as_deref().map(|k| self.governor.acquire(k, now)) {
                Some(Err(ready)) => {
                    if let Err(e) = self.outbox.defer(&d.id, ready).await {
                        tracing::error!(delivery_id = %d.id, error = %e, "deferring a delivery failed");
                    }
                    held.insert(key.unwrap_or_default(), ready);
                }
                _ => sends.push(d),
            }
        }
        futures_util::future::join_all(sends.into_iter().map(|d| self.attempt(d))).await;
        for (key, ready) in held {
            self.summarize_backlog(&key, now, ready).await;
        }
        n
    }

    /// Held deliveries come due together (quiet hours ended, a group's wait passed): when
    /// several share a hold, they are merged into one summary, due at once; a lone one is sent
    /// as it is. Returns the deliveries to send now.
    async fn release_holds(&self, due: Vec<Delivery>, now: Millis) -> Vec<Delivery> {
        let mut send = Vec::with_capacity(due.len());
        let mut merged_keys: Vec<String> = Vec::new();
        for d in due {
            let Some(key) = d.hold.clone() else {
                send.push(d);
                continue;
            };
            if merged_keys.contains(&key) {
                continue;
            }
            let held = match self.outbox.held(&key).await {
                Ok(h) => h,
                Err(e) => {
                    tracing::error!(error = %e, "reading held deliveries failed");
                    continue;
                }
            };
            let (Some(hold), Some(channel), true) =
                (hold::Hold::parse(&key), self.channels.get(&d.channel), held.len() > 1)
            else {
                send.push(d);
                continue;
            };
            let (title, reason) = hold.describe(held.len());
            let built = summary::build(channel.as_ref(), &held, &title, &reason);
            let new = NewDelivery {
                id: new_event_id(),
                rule: d.rule.clone(),
                channel: d.channel.clone(),
                message: built.message,
                headline: built.headline,
                hold: None,
                due_at: None,
            };
            let ids: Vec<String> = held.iter().map(|h| h.id.clone()).collect();
            match self.outbox.merge(&ids, &new, &held[0].event_id, now).await {
                Ok(()) => {
                    tracing::info!(channel = %d.channel, rule = %d.rule, merged = ids.len(), summary_id = %new.id,
                    "released held messages as one summary")
                }
                Err(e) => tracing::error!(error = %e, "merging held deliveries failed"),
            }
            merged_keys.push(key);
        }
        send
    }

    /// Merges a robot's backlog into one summary when draining it at the robot's limits would
    /// take longer than `max_wait`.
    async fn summarize_backlog(&self, key: &str, now: Millis, ready: Millis) {
        let Some(robot) = self.robots.get(key) else { return };
        let backlog = match self.outbox.backlog(&robot.channels, now, MAX_SUMMARY_ITEMS).await {
            Ok(b) => b,
            Err(e) => {
                tracing::error!(error = %e, "reading a robot's backlog failed");
                return;
            }
        };
        let items: Vec<Delivery> = backlog.into_iter().filter(|d| d.rule != summary::SUMMARY_RULE).collect();
        let wait = self.governor.drain_time(key, items.len(), now);
        if items.len() < 2 || wait <= self.max_wait {
            return;
        }
        let first = &items[0];
        let Some(channel) = self.channels.get(&first.channel) else { return };
        let title = format!("{} notifications in one message", items.len());
        let reason = summary::rate_limit_reason(&robot.rates, self.max_wait);
        let built = summary::build(channel.as_ref(), &items, &title, &reason);
        let new = NewDelivery {
            id: new_event_id(),
            rule: summary::SUMMARY_RULE.to_string(),
            channel: first.channel.clone(),
            message: built.message,
            headline: built.headline,
            hold: None,
            due_at: None,
        };
        let ids: Vec<String> = items.iter().map(|d| d.id.clone()).collect();
        match self.outbox.merge(&ids, &new, &first.event_id, ready).await {
            Ok(()) => tracing::warn!(
                channel = %first.channel, merged = ids.len(), summary_id = %new.id, wait_s = wait.as_secs(),
                "robot backlog would wait longer than max_wait: merged into one summary"
            ),
            Err(e) => tracing::error!(error = %e, "merging a robot's backlog failed"),
        }
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
