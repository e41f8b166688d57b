//! The delivery worker: take due deliveries, send each through its channel, and record the
//! outcome as delivered, retry later or dead. Channels never retry; this is the one place that
//! decides when to try again.
//!
//! Deliveries reach the worker two ways: handed over in memory as the gateway stores them
//! (`handoff`), or leased from the store (retries, held messages, a backlog that did not fit
//! the hand-off, whatever a previous run left). Either way a delivery is leased before it is
//! attempted, so a crash at any point leaves it in the store to be sent by the next start.
//!
//! | file | owns |
//! |---|---|
//! | `mod.rs` | the worker: the run loop and the one-step driver tests use |
//! | `handoff.rs` | the in-memory queue from the gateway |
//! | `admit.rs` | what goes now: released holds, the rate governor, backlog summaries |
//! | `attempt.rs` | one attempt: send, classify, record |
//! | `governor.rs` | per-robot sliding-window limits |
//! | `slots.rs` | per-robot shares of the attempts in flight |
//! | `backoff.rs` | retry timing as pure functions |
//! | `hold.rs`, `summary.rs` | held-message keys, and summary messages |

mod admit;
mod attempt;
mod backoff;
pub mod governor;
pub mod handoff;
pub mod hold;
pub mod slots;
pub mod summary;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinSet;

pub use backoff::RetryPolicy;
use governor::Governor;
use handoff::Handoff;
use slots::Slots;

use crate::channels::Channel;
use crate::clock::{Clock, Millis};
use crate::config::Rate;
use crate::outbox::{Delivery, Outbox};

/// The most held-back deliveries one summary covers.
const MAX_SUMMARY_ITEMS: usize = 500;

/// The longest the worker goes without looking in the store: a replay made by
/// `herald deliveries retry` in another process is picked up within this.
const POLL_MS: Millis = 1_000;

/// How long a delivery leased from the store waits when its robot has no attempt slot free:
/// it goes back to the store, due again after this, without counting an attempt. While the
/// robot stays full, the store is leased without its channels, so this is seldom needed.
const BUSY_WAIT_MS: Millis = 250;

/// How long a lease lasts when the longest channel timeout is `timeouts.max()` (in ms): an
/// attempt starts only while its lease has half of this left, and must end before it expires.
pub fn lease_for(timeouts: impl IntoIterator<Item = u64>) -> Duration {
    let longest = timeouts.into_iter().max().unwrap_or(0);
    Duration::from_millis((2 * longest + 20_000).max(60_000))
}

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
        let robot = robots.entry(channels[name].rate_key().to_string()).or_default();
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
    /// Deliveries handed over by the gateway, and its signal that more were stored.
    pub handoff: Arc<Handoff>,
    /// Deliveries taken (and attempted concurrently) per `step`.
    pub batch: usize,
    /// Attempts in flight at once in `run`.
    pub concurrency: usize,
    /// Attempts in flight at once per robot in `run`: a robot that hangs until its timeout
    /// holds at most this many of the `concurrency`, and the other robots' deliveries go past
    /// its own.
    pub robot_slots: usize,
    /// How long a lease hides a delivery from other workers. An attempt starts only while its
    /// lease has at least half of this to run, so it must exceed twice the longest send.
    pub lease: Duration,
    /// Per-robot sending limits.
    pub governor: Arc<Governor>,
    /// Robots by rate key.
    pub robots: Arc<HashMap<String, Robot>>,
    /// A robot backlog that would wait longer than this is merged into one summary.
    pub max_wait: Duration,
}

impl Worker {
    fn lease_ms(&self) -> i64 {
        self.lease.as_millis() as i64
    }

    /// Counts the attempts made within the longest rate window before `now` against their
    /// robots, so a restart does not reset a robot's budget.
    pub async fn seed_governor(&self, now: Millis) {
        let window = self.governor.longest_window().as_millis() as Millis;
        if window == 0 {
            return;
        }
        match self.outbox.sent_since(now - window).await {
            Ok(sent) => {
                for (channel, at) in sent {
                    if let Some(c) = self.channels.get(&channel) {
                        self.governor.seed(c.rate_key(), at);
                    }
                }
            }
            Err(e) => tracing::error!(error = %e, "reading recent attempts for the rate governor failed"),
        }
    }

    /// The rate key of the robot a delivery goes to (none when its channel is gone).
    fn robot_of(&self, d: &Delivery) -> Option<&str> {
        self.channels.get(&d.channel).map(|c| c.rate_key())
    }

    /// Up to `max` deliveries to try now: the store's first when it may hold due ones (or
    /// `always`), then handed-over ones. The store's are older (retries, held messages, an
    /// overflow), so a steady stream of new events never keeps them waiting. The store's
    /// deliveries to the channels in `skip` stay there, and handed-over ones that `pick`
    /// refuses stay queued.
    async fn take(
        &self,
        max: usize,
        now: Millis,
        always: bool,
        skip: &[String],
        pick: impl FnMut(&Delivery) -> bool,
    ) -> Vec<Delivery> {
        let mut due = Vec::new();
        if always || self.handoff.store_due() <= now {
            self.handoff.claim_store();
            let next = match self.outbox.lease_skipping(now, max, self.lease_ms(), skip).await {
                // More may be due: look again at once.
                Ok(leased) if leased.len() == max => {
                    due = leased;
                    now
                }
                // Drained: look again when the next one is due, or at the next poll. What was
                // skipped may be due already: it waits for a slot, not in a loop of leases.
                Ok(leased) => {
                    due = leased;
                    let soonest = if skip.is_empty() { 1 } else { BUSY_WAIT_MS };
                    match self.outbox.next_due().await {
                        Ok(Some(at)) => at.clamp(now + soonest, now + POLL_MS),
                        _ => now + POLL_MS,
                    }
                }
                Err(e) => {
                    tracing::error!(error = %e, "leasing deliveries failed");
                    now + POLL_MS
                }
            };
            self.handoff.stored(next);
        }
        if due.len() < max {
            due.extend(self.handoff.take(max - due.len(), now, self.lease_ms() / 2, pick));
        }
        due
    }

    /// Deliveries whose robot had no attempt slot free go back to the store, due again
    /// shortly, without counting an attempt.
    async fn wait_for_slots(&self, ids: &[String], now: Millis) {
        let at = now + BUSY_WAIT_MS;
        match self.outbox.defer(ids, at).await {
            Ok(()) => self.handoff.stored(at),
            Err(e) => {
                tracing::error!(waiting = ids.len(), error = %e, "putting back deliveries of a busy robot failed")
            }
        }
    }

    /// Takes the due deliveries (at most `batch`) and attempts them all, concurrently;
    /// returns how many were taken. Tests drive the worker with this, one step at a time.
    pub async fn step(&self) -> usize {
        let now = self.clock.now_ms();
        let due = self.take(self.batch, now, true, &[], |_| true).await;
        let n = due.len();
        let sends = self.admit(due, now).await;
        futures_util::future::join_all(sends.into_iter().map(|d| self.attempt(d))).await;
        n
    }

    /// Runs until `shutdown` turns true, keeping up to `concurrency` attempts in flight (at
    /// most `robot_slots` per robot) and taking more as they finish; in between it sleeps until
    /// work is handed over, the store has some due, or a full robot frees a slot. In-flight
    /// attempts finish before it returns.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        let me = Arc::new(self);
        me.seed_governor(me.clock.now_ms()).await;
        let slots = Slots::new(me.robot_slots);
        let mut inflight: JoinSet<()> = JoinSet::new();
        loop {
            if *shutdown.borrow() {
                break;
            }
            while inflight.try_join_next().is_some() {}
            let free = me.concurrency.saturating_sub(inflight.len());
            if free > 0 {
                let now = me.clock.now_ms();
                let skip = me.full_robots_channels(&slots);
                // Handed-over deliveries are taken only while their robot has a slot left.
                let mut picked: HashMap<&str, usize> = HashMap::new();
                let pick = |d: &Delivery| match me.robot_of(d) {
                    None => true,
                    Some(key) => {
                        let n = picked.entry(key).or_insert(0);
                        *n += 1;
                        *n <= slots.room(key)
                    }
                };
                let due = me.take(free, now, false, &skip, pick).await;
                let taken = due.len();
                let mut waiting = Vec::new();
                for d in me.admit(due, now).await {
                    // A delivery to a channel that is gone needs no slot: it is dead at once.
                    let slot = match me.robot_of(&d) {
                        Some(key) => match slots.take(key) {
                            Some(slot) => Some(slot),
                            None => {
                                waiting.push(d.id);
                                continue;
                            }
                        },
                        None => None,
                    };
                    let me = me.clone();
                    inflight.spawn(async move {
                        let _slot = slot;
                        me.attempt(d).await
                    });
                }
                if !waiting.is_empty() {
                    me.wait_for_slots(&waiting, now).await;
                } else if taken == free {
                    continue;
                }
            }
            let now = me.clock.now_ms();
            let wait = me.handoff.store_due().saturating_sub(now).clamp(1, POLL_MS);
            tokio::select! {
                _ = inflight.join_next(), if inflight.len() >= me.concurrency || slots.any_full() => {}
                _ = me.handoff.notified() => {}
                _ = tokio::time::sleep(Duration::from_millis(wait as u64)) => {}
                _ = shutdown.changed() => {}
            }
        }
        while inflight.join_next().await.is_some() {}
        if let Err(e) = me.outbox.flush().await {
            tracing::error!(error = %e, "recording the last attempts failed");
        }
    }

    /// The channels of the robots with no attempt slot free.
    fn full_robots_channels(&self, slots: &Slots) -> Vec<String> {
        self.robots
            .iter()
            .filter(|(key, _)| slots.room(key) == 0)
            .flat_map(|(_, robot)| robot.channels.iter().cloned())
            .collect()
    }
}
