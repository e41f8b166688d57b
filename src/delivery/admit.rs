//! Which of the deliveries taken go out now: held messages released together become one
//! summary, the rate governor holds back what a robot cannot take yet (without counting an
//! attempt), and a robot backlog that cannot drain within `max_wait` is merged into one summary.
//!
//! The governor is asked for each delivery at the moment its attempt starts ([`Worker::gate`]),
//! never before a wait for the store: a send is counted at the time it goes out, so a slow
//! commit cannot squeeze two windows' sends into one.

use std::collections::BTreeMap;

use super::{hold, summary, Worker, MAX_SUMMARY_ITEMS};
use crate::clock::Millis;
use crate::event::new_event_id;
use crate::outbox::{Delivery, NewDelivery};

/// What the governor held back, per robot: when its next slot frees, and the deliveries.
#[derive(Debug, Default)]
pub(super) struct Held(BTreeMap<String, (Millis, Vec<String>)>);

impl Worker {
    /// The deliveries taken, ready for [`gate`](Self::gate): held messages released together
    /// merged into summaries, and backlog summaries first.
    pub(super) async fn prepare(&self, due: Vec<Delivery>, now: Millis) -> Vec<Delivery> {
        let mut due = self.release_holds(due, now).await;
        // A summary goes before the robot's other messages due with it: it is the oldest news,
        // and what is held back after it joins the next one.
        due.sort_by_key(|d| d.headline.covers.is_none());
        due
    }

    /// Takes a sending slot of `d`'s robot now, just before its attempt starts, and returns
    /// `d`; or holds it back until the robot's next free slot, without counting an attempt.
    pub(super) fn gate(&self, d: Delivery, held: &mut Held) -> Option<Delivery> {
        let Some(key) = self.robot_of(&d) else { return Some(d) };
        match self.governor.acquire(key, self.clock.now_ms()) {
            Ok(()) => Some(d),
            Err(ready) => {
                match held.0.get_mut(key) {
                    Some((_, ids)) => ids.push(d.id),
                    None => {
                        held.0.insert(key.to_string(), (ready, vec![d.id]));
                    }
                }
                None
            }
        }
    }

    /// Puts what the governor held back into the store until its robot's next free slot, and
    /// merges a robot's backlog into a summary when it cannot drain within `max_wait`.
    pub(super) async fn hold_back(&self, held: Held) {
        let now = self.clock.now_ms();
        for (key, (ready, mut ids)) in held.0 {
            // Held back until just after the robot's next slot, so that a summary made for that
            // slot (due at `ready` itself) is leased before them and takes it.
            let after = ready + 1;
            // The robot's deliveries still queued in memory wait too: deferred into the store
            // with the rest, they count toward its backlog and can join its summary.
            if let Some(robot) = self.robots.get(&key) {
                ids.extend(
                    self.handoff
                        .take_matching(|d| robot.channels.contains(&d.channel))
                        .into_iter()
                        .map(|d| d.id),
                );
            }
            match self.outbox.defer(&ids, after).await {
                Ok(()) => self.handoff.stored(ready),
                Err(e) => {
                    tracing::error!(held = ids.len(), error = %e, "deferring held-back deliveries failed")
                }
            }
            self.summarize_backlog(&key, now, ready).await;
        }
    }

    /// Held deliveries come due together (quiet hours ended, a group's wait passed): when
    /// several share a hold, they are merged into one summary, due at once; a lone one is sent
    /// as it is. Returns the deliveries to send now.
    async fn release_holds(&self, due: Vec<Delivery>, now: Millis) -> Vec<Delivery> {
        let (mut taken, mut send): (Vec<Delivery>, Vec<Delivery>) =
            due.into_iter().partition(|d| d.hold.is_some());
        while let Some(first) = taken.first() {
            let key = first.hold.clone().unwrap_or_default();
            // This step's deliveries under the key (leased to this worker just now), and those
            // not leased at all: one still in flight from an earlier release is left to its
            // attempt, or it would be merged and sent again.
            let (mut held, rest): (Vec<Delivery>, Vec<Delivery>) =
                taken.into_iter().partition(|d| d.hold.as_deref() == Some(key.as_str()));
            taken = rest;
            match self.outbox.held(&key, now).await {
                Ok(waiting) => held.extend(waiting),
                Err(e) => {
                    // Sent each as it is rather than left leased until the lease expires.
                    tracing::error!(error = %e, "reading held deliveries failed; sending them unmerged");
                    send.extend(held);
                    continue;
                }
            }
            held.sort_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));
            let d = &held[0];
            let (Some(hold), Some(channel), true) =
                (hold::Hold::parse(&key), self.channels.get(&d.channel), held.len() > 1)
            else {
                send.extend(held);
                continue;
            };
            let (built, covered) = summary::build_fitting(channel.as_ref(), &held, |n| hold.describe(n));
            let new = NewDelivery {
                id: new_event_id(),
                rule: d.rule.clone(),
                channel: d.channel.clone(),
                message: built.message,
                headline: built.headline,
                hold: None,
                due_at: None,
                repeat: None,
            };
            let (ids, rest): (Vec<String>, Vec<String>) = {
                let mut ids = held.iter().map(|h| h.id.clone());
                (ids.by_ref().take(covered).collect(), ids.collect())
            };
            match self.outbox.merge(&ids, &new, &held[0].event_id, now).await {
                Ok(()) => {
                    self.handoff.stored(now);
                    tracing::info!(channel = %d.channel, rule = %d.rule, merged = ids.len(), summary_id = %new.id,
                        "released held messages as one summary")
                }
                Err(e) => tracing::error!(error = %e, "merging held deliveries failed"),
            }
            // What did not fit makes the next summary, due now (and released from any lease).
            if !rest.is_empty() {
                if let Err(e) = self.outbox.defer(&rest, now).await {
                    tracing::error!(held = rest.len(), error = %e, "releasing held deliveries failed");
                }
            }
        }
        send
    }

    /// Merges a robot's backlog into one summary when draining it at the robot's limits would
    /// take longer than `max_wait`; at most one summary per free slot of the robot.
    async fn summarize_backlog(&self, key: &str, now: Millis, ready: Millis) {
        // A robot without limits of its own is held back only while its platform asked for a
        // pause (a webhook's 429 and Retry-After): its messages wait, each as it is, since a
        // webhook's receiver reads them one event at a time.
        let Some(robot) = self.robots.get(key).filter(|r| !r.rates.is_empty()) else { return };
        if !self.governor.may_summarize(key, ready) {
            return;
        }
        let backlog = match self.outbox.backlog(&robot.channels, now, MAX_SUMMARY_ITEMS).await {
            Ok(b) => b,
            Err(e) => {
                tracing::error!(error = %e, "reading a robot's backlog failed");
                return;
            }
        };
        // Summaries (this robot's earlier ones, or a quiet-hours release) go as they are.
        let items: Vec<Delivery> = backlog.into_iter().filter(|d| d.headline.covers.is_none()).collect();
        let wait = self.governor.drain_time(key, items.len(), now);
        if items.len() < 2 || wait <= self.max_wait {
            return;
        }
        let first = &items[0];
        let Some(channel) = self.channels.get(&first.channel) else { return };
        let reason = summary::rate_limit_reason(&robot.rates, self.max_wait);
        let (built, covered) = summary::build_fitting(channel.as_ref(), &items, |n| {
            (format!("{n} notifications in one message"), reason.clone())
        });
        let new = NewDelivery {
            id: new_event_id(),
            rule: summary::SUMMARY_RULE.to_string(),
            channel: first.channel.clone(),
            message: built.message,
            headline: built.headline,
            hold: None,
            due_at: Some(ready),
            repeat: None,
        };
        // What did not fit stays in the backlog for the robot's next slot.
        let ids: Vec<String> = items[..covered].iter().map(|d| d.id.clone()).collect();
        match self.outbox.merge(&ids, &new, &first.event_id, now).await {
            Ok(()) => {
                self.governor.summarized(key, ready);
                self.handoff.stored(ready);
                tracing::warn!(
                    channel = %first.channel, merged = ids.len(), summary_id = %new.id, wait_s = wait.as_secs(),
                    "robot backlog would wait longer than max_wait: merged into one summary"
                )
            }
            Err(e) => tracing::error!(error = %e, "merging a robot's backlog failed"),
        }
    }
}
