//! One attempt: send through the channel, classify the outcome with the retry policy, log it
//! once, and record it; and the record of an attempt cut off at shutdown.

use std::time::Instant;

use super::inflight::Started;
use super::Worker;
use crate::channels::{Attempt, Verdict};
use crate::outbox::{AttemptRecord, Delivery, Next};

impl Worker {
    pub(super) async fn attempt(&self, d: Delivery) {
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
                pause_ms: None,
            };
            self.record(&d.id, record, Next::Dead(reason)).await;
            return;
        };
        let attempt = Attempt { delivery_id: d.id.clone(), number, now: self.clock.now() };
        let started = Instant::now();
        let outcome = channel.send(&d.message, &attempt).await;
        let latency_ms = started.elapsed().as_millis() as u64;
        let now = self.clock.now_ms();
        // The platform asked for a pause (a rate-limit code, Retry-After): it holds for the
        // robot, not only for this delivery, up to the longest a platform asks for; a longer
        // Retry-After keeps only this delivery waiting. The record keeps it over a restart.
        let pause_ms = match outcome.verdict {
            Verdict::Transient { retry_after: Some(wait) } => {
                let pause = wait.min(super::LONGEST_PAUSE).as_millis() as u64;
                self.governor.pause(channel.rate_key(), now + pause as i64);
                Some(pause)
            }
            _ => None,
        };
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
            pause_ms,
        };
        match &next {
            // Success is debug, like the gateway's "event accepted"; failures are what an
            // operator reads the log for.
            Next::Delivered => tracing::debug!(
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
        self.record(&d.id, record, next).await;
    }

    /// Records an attempt that shutdown cut off before its answer came. The platform may or
    /// may not have the message, so it is sent again at the next start, at once, whatever the
    /// retry policy would say: an attempt cut off says nothing about the robot, so it does not
    /// count toward `max_attempts` either.
    pub(super) async fn record_cut_off(&self, cut: Started) {
        let latency_ms = cut.at.elapsed().as_millis() as u64;
        let detail = format!(
            "cut off by shutdown after {latency_ms} ms, before an answer: sent again at the next start"
        );
        tracing::warn!(
            delivery_id = %cut.delivery_id, event_id = %cut.event_id, channel = %cut.channel,
            attempt = cut.number, "{detail}"
        );
        let now = self.clock.now_ms();
        let record = AttemptRecord {
            at: now,
            outcome: AttemptRecord::INTERRUPTED.into(),
            http_status: None,
            code: None,
            detail,
            latency_ms,
            pause_ms: None,
        };
        self.record(&cut.delivery_id, record, Next::RetryAt(now)).await;
    }

    async fn record(&self, id: &str, record: AttemptRecord, next: Next) {
        let retry_at = match &next {
            Next::RetryAt(at) => Some(*at),
            _ => None,
        };
        match self.outbox.finish(id, record, next).await {
            Ok(()) => {
                if let Some(at) = retry_at {
                    self.handoff.stored(at);
                }
            }
            // The lease expires and the delivery comes back: at-least-once, never lost.
            Err(e) => tracing::error!(delivery_id = %id, error = %e, "recording the attempt failed"),
        }
    }
}
