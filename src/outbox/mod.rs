//! The outbox: accepted events and their pending deliveries, behind one trait.
//!
//! An event is accepted only once `enqueue` has returned; the delivery worker then `lease`s due
//! deliveries (a lease hides a delivery from other workers until it expires, so a crashed
//! worker's deliveries come back) and `finish`es each attempt with what happens next.
//! `memory` is the in-process backend.

pub mod memory;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::channels::Message;
use crate::clock::Millis;
use crate::event::Event;

/// A delivery's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DeliveryState {
    /// Not tried yet.
    Pending,
    /// Tried, and due again at `next_at`.
    Retrying,
    Delivered,
    /// Given up: a permanent failure, or too many attempts. Final until replayed.
    Dead,
}

impl DeliveryState {
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryState::Pending => "pending",
            DeliveryState::Retrying => "retrying",
            DeliveryState::Delivered => "delivered",
            DeliveryState::Dead => "dead",
        }
    }
}

/// A delivery to store with its event.
#[derive(Debug, Clone)]
pub struct NewDelivery {
    pub id: String,
    pub rule: String,
    pub channel: String,
    pub message: Message,
}

/// A stored delivery.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub id: String,
    pub event_id: String,
    pub rule: String,
    pub channel: String,
    pub message: Message,
    pub state: DeliveryState,
    /// Attempts made so far.
    pub attempts: u32,
    pub created_at: Millis,
    pub next_at: Millis,
    pub last_error: Option<String>,
}

/// How one attempt went, for the record.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AttemptRecord {
    pub at: Millis,
    /// `delivered`, `transient` or `permanent`.
    pub outcome: &'static str,
    pub http_status: Option<u16>,
    pub code: Option<i64>,
    pub detail: String,
    pub latency_ms: u64,
}

/// What happens to a delivery after an attempt.
#[derive(Debug, Clone, PartialEq)]
pub enum Next {
    Delivered,
    RetryAt(Millis),
    Dead(String),
}

/// A storage failure.
#[derive(Debug, thiserror::Error)]
#[error("outbox: {0}")]
pub struct OutboxError(pub String);

/// The store of pending deliveries.
#[async_trait]
pub trait Outbox: Send + Sync {
    /// Stores an event and its deliveries, due at `now`, atomically. Herald answers 202 only
    /// after this returns.
    async fn enqueue(&self, event: &Event, deliveries: &[NewDelivery], now: Millis) -> Result<(), OutboxError>;
    /// Leases up to `limit` due deliveries (pending or retrying, `next_at <= now`, not leased
    /// by someone else) for `lease_ms`.
    async fn lease(&self, now: Millis, limit: usize, lease_ms: i64) -> Result<Vec<Delivery>, OutboxError>;
    /// Records an attempt and releases the lease.
    async fn finish(&self, id: &str, attempt: AttemptRecord, next: Next) -> Result<(), OutboxError>;
    /// The earliest time a delivery is due (leased ones count from their lease's expiry).
    async fn next_due(&self) -> Result<Option<Millis>, OutboxError>;
}
