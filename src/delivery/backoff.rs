//! Retry timing as pure functions: exponential backoff with jitter, the platform's hint, and
//! when to give up.

use std::time::Duration;

use crate::channels::{Outcome, Verdict};
use crate::clock::Millis;
use crate::outbox::Next;

/// When to retry and when to give up.
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    /// Attempts in all, the first included.
    pub max_attempts: u32,
    /// A delivery older than this is not retried again.
    pub max_age: Duration,
    /// The first retry's delay.
    pub base: Duration,
    /// The longest delay between attempts.
    pub cap: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 12,
            max_age: Duration::from_secs(24 * 3600),
            base: Duration::from_secs(1),
            cap: Duration::from_secs(600),
        }
    }
}

impl RetryPolicy {
    /// The policy `[delivery]` configures, with the default backoff curve.
    pub fn from_config(cfg: &crate::config::DeliveryConfig) -> RetryPolicy {
        RetryPolicy { max_attempts: cfg.max_attempts, max_age: cfg.max_age.0, ..RetryPolicy::default() }
    }

    /// The delay before retry number `attempt` (1 after the first failure): `base · 2^(n-1)`,
    /// capped, times `jitter` (expected in 0.8..=1.2).
    pub fn backoff(&self, attempt: u32, jitter: f64) -> Duration {
        let exp = self.base.saturating_mul(1u32 << attempt.saturating_sub(1).min(20));
        exp.min(self.cap).mul_f64(jitter.clamp(0.5, 1.5))
    }

    /// What follows an attempt. `attempts` counts the attempt just made; `created_at` is when
    /// the delivery was accepted.
    pub fn next(
        &self,
        outcome: &Outcome,
        attempts: u32,
        created_at: Millis,
        now: Millis,
        jitter: f64,
    ) -> Next {
        match &outcome.verdict {
            Verdict::Delivered => Next::Delivered,
            Verdict::Permanent => Next::Dead(outcome.detail.clone()),
            Verdict::Transient { retry_after } => {
                let delay = self.backoff(attempts, jitter).max(retry_after.unwrap_or_default());
                let at = now + delay.as_millis() as Millis;
                let age_then = Duration::from_millis((at - created_at).max(0) as u64);
                if attempts >= self.max_attempts {
                    Next::Dead(format!("gave up after {attempts} attempts; last: {}", outcome.detail))
                } else if age_then > self.max_age {
                    Next::Dead(format!(
                        "gave up after {attempts} attempts: older than max_age ({}s); last: {}",
                        self.max_age.as_secs(),
                        outcome.detail
                    ))
                } else {
                    Next::RetryAt(at)
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_is_capped() {
        let p = RetryPolicy::default();
        let secs: Vec<u64> = (1..=12).map(|n| p.backoff(n, 1.0).as_secs()).collect();
        assert_eq!(secs, [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 600, 600]);
        assert_eq!(p.backoff(3, 1.2), Duration::from_millis(4800));
        assert_eq!(p.backoff(40, 1.0), Duration::from_secs(600));
    }

    #[test]
    fn next_table() {
        let p = RetryPolicy::default();
        let transient = |ra: Option<u64>| Outcome {
            verdict: Verdict::Transient { retry_after: ra.map(Duration::from_secs) },
            ..Outcome::transient("busy")
        };
        assert_eq!(p.next(&Outcome::delivered(Some(200), Some(0), "ok"), 1, 0, 0, 1.0), Next::Delivered);
        assert_eq!(
            p.next(&Outcome::permanent("310000 sign not match"), 1, 0, 0, 1.0),
            Next::Dead("310000 sign not match".into())
        );
        assert_eq!(p.next(&transient(None), 1, 0, 1000, 1.0), Next::RetryAt(2000));
        // A platform hint longer than the backoff wins (DingTalk's 10-minute lockout).
        assert_eq!(p.next(&transient(Some(600)), 1, 0, 0, 1.0), Next::RetryAt(600_000));
        assert!(
            matches!(p.next(&transient(None), 12, 0, 0, 1.0), Next::Dead(r) if r.starts_with("gave up after 12 attempts"))
        );
        let day = 24 * 3600 * 1000;
        assert!(matches!(p.next(&transient(None), 2, 0, day, 1.0), Next::Dead(r) if r.contains("max_age")));
    }
}
