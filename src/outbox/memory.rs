//! The in-process outbox. Nothing survives a restart; it is the reference behaviour of the
//! `Outbox` contract and the backend for dry runs and tests.

use std::collections::HashMap;
use std::sync::Mutex;

use async_trait::async_trait;

use super::{AttemptRecord, Delivery, DeliveryState, NewDelivery, Next, Outbox, OutboxError};
use crate::clock::Millis;
use crate::event::Event;

struct Entry {
    delivery: Delivery,
    leased_until: Option<Millis>,
    attempts: Vec<AttemptRecord>,
}

/// An outbox held in memory.
#[derive(Default)]
pub struct MemoryOutbox {
    entries: Mutex<HashMap<String, Entry>>,
}

impl MemoryOutbox {
    pub fn new() -> MemoryOutbox {
        MemoryOutbox::default()
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

fn is_open(state: DeliveryState) -> bool {
    matches!(state, DeliveryState::Pending | DeliveryState::Retrying)
}

#[async_trait]
impl Outbox for MemoryOutbox {
    async fn enqueue(&self, event: &Event, deliveries: &[NewDelivery], now: Millis) -> Result<(), OutboxError> {
        let mut entries = self.entries.lock().expect("outbox lock");
        for d in deliveries {
            let delivery = Delivery {
                id: d.id.clone(),
                event_id: event.event_id.clone(),
                rule: d.rule.clone(),
                channel: d.channel.clone(),
                message: d.message.clone(),
                state: DeliveryState::Pending,
                attempts: 0,
                created_at: now,
                next_at: now,
                last_error: None,
            };
            entries.insert(d.id.clone(), Entry { delivery, leased_until: None, attempts: Vec::new() });
        }
        Ok(())
    }

    async fn lease(&self, now: Millis, limit: usize, lease_ms: i64) -> Result<Vec<Delivery>, OutboxError> {
        let mut entries = self.entries.lock().expect("outbox lock");
        let mut due: Vec<&mut Entry> = entries
            .values_mut()
            .filter(|e| {
                is_open(e.delivery.state)
                    && e.delivery.next_at <= now
                    && e.leased_until.is_none_or(|until| until <= now)
            })
            .collect();
        due.sort_by_key(|e| (e.delivery.next_at, e.delivery.created_at));
        Ok(due
            .into_iter()
            .take(limit)
            .map(|e| {
                e.leased_until = Some(now + lease_ms);
                e.delivery.clone()
            })
            .collect())
    }

    async fn finish(&self, id: &str, attempt: AttemptRecord, next: Next) -> Result<(), OutboxError> {
        let mut entries = self.entries.lock().expect("outbox lock");
        let entry = entries.get_mut(id).ok_or_else(|| OutboxError(format!("no delivery {id}")))?;
        let d = &mut entry.delivery;
        d.attempts += 1;
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

    async fn next_due(&self) -> Result<Option<Millis>, OutboxError> {
        let entries = self.entries.lock().expect("outbox lock");
        Ok(entries
            .values()
            .filter(|e| is_open(e.delivery.state))
            .map(|e| e.leased_until.map_or(e.delivery.next_at, |l| l.max(e.delivery.next_at)))
            .min())
    }
}
