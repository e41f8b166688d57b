//! The in-process outbox. Nothing survives a restart; it is the reference behaviour of the
//! `Outbox` contract and the backend for dry runs and tests.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use async_trait::async_trait;

use super::{
    AttemptRecord, Delivery, DeliveryState, EnqueueWith, Enqueued, ListFilter, NewDelivery, Next, Outbox,
    OutboxError, Pause, Sent,
};
use crate::clock::Millis;
use crate::event::Event;
use crate::state::Track;

struct Entry {
    delivery: Delivery,
    leased_until: Option<Millis>,
    attempts: Vec<AttemptRecord>,
}

/// An outbox held in memory.
#[derive(Default)]
pub struct MemoryOutbox {
    entries: Mutex<HashMap<String, Entry>>,
    /// Dedup keys of stored events: key → (event id, stored at).
    seen: Mutex<HashMap<String, (String, Millis)>>,
    tracks: Mutex<HashMap<String, Track>>,
    claims: Mutex<HashMap<String, Millis>>,
    /// Deliveries handed out by leases so far: what the worker read back from the store.
    leased: AtomicUsize,
}

impl MemoryOutbox {
    pub fn new() -> MemoryOutbox {
        MemoryOutbox::default()
    }

    /// How many deliveries leases have handed out so far (one leased twice counts twice).
    pub fn leased_count(&self) -> usize {
        self.leased.load(Ordering::Relaxed)
    }

    /// A stored delivery and its attempts.
    pub fn get(&self, id: &str) -> Option<(Delivery, Vec<AttemptRecord>)> {
        let entries = self.entries.lock().expect("outbox lock");
        entries.get(id).map(|e| (e.delivery.clone(), e.attempts.clone()))
    }

    /// Every stored delivery, oldest first.
    pub fn all(&self) -> Vec<Delivery> {
        let entries = self.entries.lock().expect("outbox lock");
        let mut all: Vec<Delivery> = entries.values().map(|e| e.delivery.clone()).collect();
        all.sort_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));
        all
    }
}

/// The open deliveries held under `key` that nobody holds a lease on at `now`.
fn unleased_under<'a>(
    entries: &'a HashMap<String, Entry>,
    key: &'a str,
    now: Millis,
) -> impl Iterator<Item = &'a Entry> {
    entries.values().filter(move |e| {
        is_open(e.delivery.state)
            && e.delivery.hold.as_deref() == Some(key)
            && e.leased_until.is_none_or(|until| until <= now)
    })
}

fn is_open(state: DeliveryState) -> bool {
    matches!(state, DeliveryState::Pending | DeliveryState::Retrying)
}

#[async_trait]
impl Outbox for MemoryOutbox {
    async fn enqueue(
        &self,
        event: &Event,
        deliveries: &[NewDelivery],
        now: Millis,
        with: &EnqueueWith<'_>,
    ) -> Result<Enqueued, OutboxError> {
        if let Some(dedup) = with.dedup {
            let mut seen = self.seen.lock().expect("outbox lock");
            if let Some((first, at)) = seen.get(&dedup.key) {
                if now - at < dedup.window_ms {
                    return Ok(Enqueued { duplicate_of: Some(first.clone()), suppressed: Vec::new() });
                }
            }
            seen.insert(dedup.key.clone(), (event.event_id.clone(), now));
        }
        if let Some((key, track)) = with.track {
            let mut tracks = self.tracks.lock().expect("outbox lock");
            if let Some(later) = crate::state::later(tracks.get(key), Some(track)).cloned() {
                tracks.insert(key.to_string(), later);
            }
        }
        let mut entries = self.entries.lock().expect("outbox lock");
        let mut claims = self.claims.lock().expect("outbox lock");
        let mut suppressed = Vec::new();
        for d in deliveries {
            if let Some(repeat) = &d.repeat {
                if claims.get(&repeat.key).is_some_and(|at| now - at < repeat.window_ms) {
                    suppressed.push(d.id.clone());
                    continue;
                }
                claims.insert(repeat.key.clone(), now);
            }
            let delivery = Delivery::stored(d.clone(), &event.event_id, now);
            let leased_until = with.lease_ms.filter(|_| d.due_at.is_none()).map(|ms| now + ms);
            entries.insert(d.id.clone(), Entry { delivery, leased_until, attempts: Vec::new() });
        }
        Ok(Enqueued { duplicate_of: None, suppressed })
    }

    async fn track(&self, key: &str) -> Result<Option<Track>, OutboxError> {
        Ok(self.tracks.lock().expect("outbox lock").get(key).cloned())
    }

    async fn lease_skipping(
        &self,
        now: Millis,
        limit: usize,
        lease_ms: i64,
        skip: &[String],
    ) -> Result<Vec<Delivery>, OutboxError> {
        let mut entries = self.entries.lock().expect("outbox lock");
        let mut due: Vec<&mut Entry> = entries
            .values_mut()
            .filter(|e| {
                is_open(e.delivery.state)
                    && e.delivery.next_at <= now
                    && e.leased_until.is_none_or(|until| until <= now)
                    && !skip.contains(&e.delivery.channel)
            })
            .collect();
        due.sort_by_key(|e| (e.delivery.next_at, e.delivery.created_at));
        let leased: Vec<Delivery> = due
            .into_iter()
            .take(limit)
            .map(|e| {
                e.leased_until = Some(now + lease_ms);
                e.delivery.clone()
            })
            .collect();
        self.leased.fetch_add(leased.len(), Ordering::Relaxed);
        Ok(leased)
    }

    async fn due_channels(&self, channels: &[String], now: Millis) -> Result<Vec<String>, OutboxError> {
        let entries = self.entries.lock().expect("outbox lock");
        let due = |c: &String| {
            entries.values().any(|e| {
                &e.delivery.channel == c
                    && is_open(e.delivery.state)
                    && e.delivery.next_at <= now
                    && e.leased_until.is_none_or(|until| until <= now)
            })
        };
        Ok(channels.iter().filter(|c| due(c)).cloned().collect())
    }

    async fn check(&self) -> Result<(), OutboxError> {
        Ok(())
    }

    async fn finish(&self, id: &str, attempt: AttemptRecord, next: Next) -> Result<(), OutboxError> {
        let mut entries = self.entries.lock().expect("outbox lock");
        let entry = entries.get_mut(id).ok_or_else(|| OutboxError(format!("no delivery {id}")))?;
        let d = &mut entry.delivery;
        d.attempts += u32::from(attempt.counts());
        if attempt.outcome != "delivered" {
            d.last_error = Some(attempt.detail.clone());
        }
        match next {
            Next::Delivered => d.state = DeliveryState::Delivered,
            Next::RetryAt(at) => {
                d.state = DeliveryState::Retrying;
                d.next_at = at;
            }
            Next::Dead(reason) => {
                d.state = DeliveryState::Dead;
                d.last_error = Some(reason);
            }
        }
        entry.leased_until = None;
        entry.attempts.push(attempt);
        Ok(())
    }

    async fn flush(&self) -> Result<(), OutboxError> {
        Ok(())
    }

    async fn next_due(&self) -> Result<Option<Millis>, OutboxError> {
        let entries = self.entries.lock().expect("outbox lock");
        Ok(entries
            .values()
            .filter(|e| is_open(e.delivery.state))
            .map(|e| e.leased_until.map_or(e.delivery.next_at, |l| l.max(e.delivery.next_at)))
            .min())
    }

    async fn defer(&self, ids: &[String], at: Millis) -> Result<(), OutboxError> {
        let mut entries = self.entries.lock().expect("outbox lock");
        for id in ids {
            if let Some(entry) = entries.get_mut(id) {
                entry.delivery.next_at = at;
                entry.leased_until = None;
            }
        }
        Ok(())
    }

    async fn backlog(
        &self,
        channels: &[String],
        now: Millis,
        limit: usize,
    ) -> Result<Vec<Delivery>, OutboxError> {
        let entries = self.entries.lock().expect("outbox lock");
        let mut open: Vec<Delivery> = entries
            .values()
            .filter(|e| {
                is_open(e.delivery.state)
                    && channels.contains(&e.delivery.channel)
                    && e.leased_until.is_none_or(|until| until <= now)
                    && (e.delivery.hold.is_none() || e.delivery.next_at <= now)
            })
            .map(|e| e.delivery.clone())
            .collect();
        open.sort_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));
        open.truncate(limit);
        Ok(open)
    }

    async fn merge(
        &self,
        ids: &[String],
        summary: &NewDelivery,
        event_id: &str,
        at: Millis,
    ) -> Result<(), OutboxError> {
        let mut entries = self.entries.lock().expect("outbox lock");
        for id in ids {
            if let Some(e) = entries.get_mut(id) {
                e.delivery.state = DeliveryState::Merged;
                e.delivery.last_error = Some(format!("merged into summary {}", summary.id));
                e.leased_until = None;
            }
        }
        let delivery = Delivery::stored(summary.clone(), event_id, at);
        entries.insert(summary.id.clone(), Entry { delivery, leased_until: None, attempts: Vec::new() });
        Ok(())
    }

    async fn held(&self, key: &str, now: Millis) -> Result<Vec<Delivery>, OutboxError> {
        let entries = self.entries.lock().expect("outbox lock");
        let mut held: Vec<Delivery> =
            unleased_under(&entries, key, now).map(|e| e.delivery.clone()).collect();
        held.sort_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));
        Ok(held)
    }

    async fn hold_due(&self, key: &str, now: Millis) -> Result<Option<Millis>, OutboxError> {
        let entries = self.entries.lock().expect("outbox lock");
        Ok(unleased_under(&entries, key, now)
            .filter(|e| e.delivery.state == DeliveryState::Pending)
            .map(|e| e.delivery.next_at)
            .min())
    }

    async fn sent_since(&self, since: Millis) -> Result<Vec<Sent>, OutboxError> {
        let entries = self.entries.lock().expect("outbox lock");
        let mut sent: Vec<Sent> = entries
            .values()
            .flat_map(|e| e.attempts.iter().map(|a| Sent { channel: e.delivery.channel.clone(), at: a.at }))
            .filter(|s| s.at >= since)
            .collect();
        sent.sort_by_key(|s| s.at);
        Ok(sent)
    }

    async fn pauses_since(&self, since: Millis) -> Result<Vec<Pause>, OutboxError> {
        let entries = self.entries.lock().expect("outbox lock");
        let mut pauses: Vec<Pause> = entries
            .values()
            .flat_map(|e| {
                e.attempts.iter().filter(|a| a.at >= since).filter_map(|a| {
                    let until = a.at + a.pause_ms? as Millis;
                    Some(Pause { channel: e.delivery.channel.clone(), until })
                })
            })
            .collect();
        pauses.sort_by_key(|p| p.until);
        Ok(pauses)
    }

    async fn list(&self, filter: &ListFilter) -> Result<Vec<Delivery>, OutboxError> {
        let mut all: Vec<Delivery> = self.all().into_iter().filter(|d| matches(d, filter)).collect();
        all.reverse();
        all.truncate(filter.limit);
        Ok(all)
    }

    async fn get(&self, id: &str) -> Result<Option<(Delivery, Vec<AttemptRecord>)>, OutboxError> {
        Ok(MemoryOutbox::get(self, id))
    }

    async fn replay(&self, ids: &[String], filter: &ListFilter, now: Millis) -> Result<usize, OutboxError> {
        let mut entries = self.entries.lock().expect("outbox lock");
        let mut n = 0;
        for e in entries.values_mut() {
            let d = &mut e.delivery;
            let chosen = if ids.is_empty() { matches(d, filter) } else { ids.contains(&d.id) };
            let in_flight = e.leased_until.is_some_and(|until| until > now);
            if chosen && !in_flight && matches!(d.state, DeliveryState::Dead | DeliveryState::Retrying) {
                d.state = DeliveryState::Pending;
                d.attempts = 0;
                d.scheduled_at = now;
                d.next_at = now;
                e.leased_until = None;
                n += 1;
            }
        }
        Ok(n)
    }
}

fn matches(d: &Delivery, filter: &ListFilter) -> bool {
    filter.state.is_none_or(|s| s == d.state) && filter.channel.as_ref().is_none_or(|c| c == &d.channel)
}
