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
mod inflight;
pub mod slots;
pub mod summary;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use admit::Held;
pub use backoff::RetryPolicy;
use governor::Governor;
use handoff::Handoff;
use inflight::{InFlight, Started};
use slots::{Parked, Slot, Slots};

use crate::channels::Channel;
use crate::clock::{Clock, Millis};
use crate::config::Rate;
use crate::outbox::{Delivery, Outbox};

/// The most held-back deliveries one summary covers.
const MAX_SUMMARY_ITEMS: usize = 500;

/// The longest pause a platform asks for (DingTalk's 10-minute lockout): how far back a start
/// looks for an answer that paused a robot.
const LONGEST_PAUSE: Duration = Duration::from_secs(10 * 60);

/// The longest the worker goes without looking in the store: a replay made by
/// `herald deliveries retry` in another process is picked up within this.
const POLL_MS: Millis = 1_000;

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
    /// How long the attempts in flight at shutdown may run on before they are cut off.
    pub drain: Duration,
}

impl Worker {
    fn lease_ms(&self) -> i64 {
        self.lease.as_millis() as i64
    }

    /// Counts the attempts made within the longest rate window before `now` against their
    /// robots, and pauses each robot whose answer asked for a pause that has not ended: a
    /// restart neither resets a robot's budget nor forgets its lockout or Retry-After. Without
    /// a rate-limited robot (chat robots always have limits) there is nothing to count.
    pub async fn seed_governor(&self, now: Millis) {
        let window = self.governor.longest_window();
        if !window.is_zero() {
            match self.outbox.sent_since(now - window.as_millis() as Millis).await {
                Ok(sent) => {
                    for s in sent {
                        if let Some(c) = self.channels.get(&s.channel) {
                            self.governor.seed(c.rate_key(), s.at);
                        }
                    }
                }
                Err(e) => tracing::error!(error = %e, "reading recent attempts for the rate governor failed"),
            }
        }
        match self.outbox.pauses_since(now - LONGEST_PAUSE.as_millis() as Millis).await {
            Ok(pauses) => {
                for p in pauses.into_iter().filter(|p| p.until > now) {
                    if let Some(c) = self.channels.get(&p.channel) {
                        self.governor.pause(c.rate_key(), p.until);
                    }
                }
            }
            Err(e) => tracing::error!(error = %e, "reading the robots' recent pauses failed"),
        }
    }

    /// The rate key of the robot a delivery goes to (none when its channel is gone).
    fn robot_of(&self, d: &Delivery) -> Option<&str> {
        self.channels.get(&d.channel).map(|c| c.rate_key())
    }

    /// Up to `max` deliveries to try now: the store's first when it may hold due ones (or
    /// `always`), then handed-over ones. The store's are older (retries, held messages, an
    /// overflow), so a steady stream of new events never keeps them waiting.
    ///
    /// The store's deliveries to the channels in `skip` stay there. `reserve` claims a free
    /// slot of a delivery's robot: it is told of each one leased from the store, and a
    /// handed-over one is taken only when it answers true (the others keep their place in the
    /// queue). Also returns, when the store was leased, the channels of `skip` whose due
    /// deliveries it left there.
    async fn take(
        &self,
        max: usize,
        now: Millis,
        always: bool,
        skip: &[String],
        mut reserve: impl FnMut(&Delivery) -> bool,
    ) -> (Vec<Delivery>, Option<Vec<String>>) {
        let mut due = Vec::new();
        let mut passed_over = None;
        if always || self.handoff.store_due() <= now {
            let mut left = Vec::new();
            self.handoff.claim_store();
            let next = match self.outbox.lease_skipping(now, max, self.lease_ms(), skip).await {
                // More may be due: look again at once.
                Ok(leased) if leased.len() == max => {
                    due = leased;
                    left = skip.to_vec();
                    now
                }
                // Drained: look again when the next one is due, or at the next poll. What was
                // skipped waits for its robot's slot (the caller looks again when one frees),
                // not for a loop of leases.
                Ok(leased) => {
                    due = leased;
                    if !skip.is_empty() {
                        left = self.outbox.due_channels(skip, now).await.unwrap_or_else(|e| {
                            tracing::error!(error = %e, "reading which channels have deliveries due failed");
                            skip.to_vec()
                        });
                    }
                    let soonest = if left.is_empty() { 1 } else { POLL_MS };
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
            passed_over = Some(left);
        }
        for d in &due {
            reserve(d);
        }
        if due.len() < max {
            due.extend(self.handoff.take(max - due.len(), now, self.lease_ms() / 2, reserve));
        }
        (due, passed_over)
    }

    /// Starts an attempt, holding `slot` (if any) until it ends.
    fn spawn_attempt(self: &Arc<Self>, inflight: &mut InFlight, d: Delivery, slot: Option<Slot>) {
        let me = self.clone();
        inflight.spawn(Started::next_of(&d), async move {
            let _slot = slot;
            me.attempt(d).await
        });
    }

    /// Takes the due deliveries (at most `batch`) and attempts them all, concurrently;
    /// returns how many were taken. Tests drive the worker with this, one step at a time.
    pub async fn step(&self) -> usize {
        let now = self.clock.now_ms();
        let (due, _) = self.take(self.batch, now, true, &[], |_| true).await;
        let n = due.len();
        let mut held = Held::default();
        let sends: Vec<Delivery> =
            self.prepare(due, now).await.into_iter().filter_map(|d| self.gate(d, &mut held)).collect();
        // As in `run`: the attempts start as soon as the governor has let them through, and
        // what it held back is put back meanwhile.
        let attempts = futures_util::future::join_all(sends.into_iter().map(|d| self.attempt(d)));
        futures_util::future::join(attempts, self.hold_back(held)).await;
        n
    }

    /// Runs until `shutdown` turns true, keeping up to `concurrency` attempts in flight (at
    /// most `robot_slots` per robot) and taking more as they finish; in between it sleeps until
    /// work is handed over, the store has some due, or a full robot frees a slot. In-flight
    /// attempts finish before it returns, or are cut off after `drain` and recorded so.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        let me = Arc::new(self);
        me.seed_governor(me.clock.now_ms()).await;
        let slots = Slots::new(me.robot_slots);
        // Leased from the store beyond their robot's free slots: they wait here, in memory.
        let mut parked = Parked::default();
        // Robots whose due deliveries the last lease left in the store: when one has a slot
        // free again, the store is looked at at once.
        let mut skipped: Vec<String> = Vec::new();
        // Whether the last take left handed-over deliveries queued for want of a slot.
        let mut refused = false;
        let mut inflight = InFlight::default();
        loop {
            if *shutdown.borrow() {
                break;
            }
            inflight.reap();
            let now = me.clock.now_ms();
            let mut held = Held::default();
            for (d, slot) in parked.ready(&slots, now) {
                if let Some(d) = me.gate(d, &mut held) {
                    me.spawn_attempt(&mut inflight, d, Some(slot));
                }
            }
            if skipped.iter().any(|key| slots.room(key) > 0 && !parked.holds(key)) {
                skipped.clear();
                me.handoff.stored(now);
            }
            let free = me.concurrency.saturating_sub(inflight.len());
            if free > 0 {
                // A robot with no slot free, or with deliveries parked, takes nothing new.
                let busy = |key: &str| slots.room(key) == 0 || parked.holds(key);
                let full: Vec<&str> = me.robots.keys().map(String::as_str).filter(|k| busy(k)).collect();
                let skip: Vec<String> =
                    full.iter().flat_map(|k| me.robots[*k].channels.iter().cloned()).collect();
                let mut reserved: HashMap<&str, usize> = HashMap::new();
                refused = false;
                let reserve = |d: &Delivery| match me.robot_of(d) {
                    None => true,
                    Some(key) => {
                        let n = reserved.entry(key).or_insert(0);
                        *n += 1;
                        let fits = !busy(key) && *n <= slots.room(key);
                        refused |= !fits;
                        fits
                    }
                };
                let (due, passed_over) = me.take(free, now, false, &skip, reserve).await;
                // Only the robots whose deliveries the lease left in the store: a robot that is
                // merely busy has nothing there to look for when it frees a slot.
                if let Some(left) = passed_over {
                    skipped = full
                        .iter()
                        .filter(|k| me.robots[**k].channels.iter().any(|c| left.contains(c)))
                        .map(|k| k.to_string())
                        .collect();
                }
                let taken = due.len();
                for d in me.prepare(due, now).await {
                    // A delivery to a channel that is gone needs no slot: it is dead at once.
                    match me.robot_of(&d) {
                        None => me.spawn_attempt(&mut inflight, d, None),
                        // Parked before the governor is asked: it counts a send when it starts.
                        Some(key) if slots.room(key) == 0 => parked.park(key, d, now + me.lease_ms() / 2),
                        Some(key) => {
                            if let Some(d) = me.gate(d, &mut held) {
                                let slot = slots.take(key);
                                me.spawn_attempt(&mut inflight, d, slot);
                            }
                        }
                    }
                }
                me.hold_back(held).await;
                if taken == free {
                    continue;
                }
            } else {
                me.hold_back(held).await;
            }
            let now = me.clock.now_ms();
            let wait = me.handoff.store_due().saturating_sub(now).clamp(1, POLL_MS);
            // A finished attempt wakes the loop when the worker is full, or when a robot's
            // slots are what holds work back.
            let for_slots = slots.any_full() || !parked.is_empty() || !skipped.is_empty() || refused;
            tokio::select! {
                _ = inflight.join_one(), if inflight.len() >= me.concurrency || for_slots => {}
                _ = me.handoff.notified() => {}
                _ = tokio::time::sleep(Duration::from_millis(wait as u64)) => {}
                _ = shutdown.changed() => {}
            }
        }
        for cut in inflight.finish(me.drain).await {
            me.record_cut_off(cut).await;
        }
        if let Err(e) = me.outbox.flush().await {
            tracing::error!(error = %e, "recording the last attempts failed");
        }
    }
}
