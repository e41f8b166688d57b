//! The outbox: accepted events and their pending deliveries, behind one trait.
//!
//! An event is accepted only once `enqueue` has returned; the delivery worker then `lease`s due
//! deliveries (a lease hides a delivery from other workers until it expires, so a crashed
//! worker's deliveries come back) and `finish`es each attempt with what happens next.
//! `memory` is the in-process backend; `sqlite` the durable default.

pub mod memory;
pub mod sqlite;
pub mod view;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::channels::Message;
use crate::clock::Millis;
use crate::config::Mention;
use crate::event::Event;
use crate::state::Track;

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
    /// Held back by the robot's rate limit and sent as part of a summary message.
    Merged,
}

impl DeliveryState {
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryState::Pending => "pending",
            DeliveryState::Retrying => "retrying",
            DeliveryState::Delivered => "delivered",
            DeliveryState::Dead => "dead",
            DeliveryState::Merged => "merged",
        }
    }

    pub const ALL: [DeliveryState; 5] = [
        DeliveryState::Pending,
        DeliveryState::Retrying,
        DeliveryState::Delivered,
        DeliveryState::Dead,
        DeliveryState::Merged,
    ];

    pub fn parse(s: &str) -> Option<DeliveryState> {
        DeliveryState::ALL.into_iter().find(|st| st.as_str() == s)
    }
}

/// The one line that stands for a delivery in a backlog summary.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Headline {
    pub text: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    pub status: String,
    /// On a summary: how many messages it covers. A summary is never merged into another, so
    /// every message stays listed in the one that covers it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub covers: Option<usize>,
    /// Whom the message mentions, as resolved for its channel: a summary that covers it
    /// mentions them too.
    #[serde(default, skip_serializing_if = "Mentioned::is_empty")]
    pub mentions: Mentioned,
}

/// The people a message @mentions, as stored with it: a [`Mention`] once resolved for its
/// channel (phone numbers, platform user ids, everyone, email recipients).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Mentioned {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mobiles: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub user_ids: Vec<String>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub all: bool,
    /// People an email channel adds as recipients.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub emails: Vec<String>,
}

impl Mentioned {
    pub fn is_empty(&self) -> bool {
        self.mobiles.is_empty() && self.user_ids.is_empty() && !self.all && self.emails.is_empty()
    }
}

impl From<&Mention> for Mentioned {
    fn from(m: &Mention) -> Mentioned {
        Mentioned {
            mobiles: m.mobiles.clone(),
            user_ids: m.user_ids.clone(),
            all: m.all,
            emails: m.emails.clone(),
        }
    }
}

impl From<&Mentioned> for Mention {
    fn from(m: &Mentioned) -> Mention {
        Mention {
            mobiles: m.mobiles.clone(),
            user_ids: m.user_ids.clone(),
            all: m.all,
            emails: m.emails.clone(),
            ..Mention::default()
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
    pub headline: Headline,
    /// Held back under this key (quiet hours, a group) until `due_at`; when released, the
    /// open deliveries sharing the key go out as one message.
    pub hold: Option<String>,
    /// When it is first due; `None` means at once.
    pub due_at: Option<Millis>,
    /// Sent only if no message under the same key was stored within the window: the rule's
    /// `repeat_interval`. The check and the claim are part of the event's commit, so a message
    /// is suppressed only by one that was stored.
    pub repeat: Option<Repeat>,
}

/// A repeat-suppression key and its window (see [`NewDelivery::repeat`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Repeat {
    pub key: String,
    pub window_ms: i64,
}

/// A stored delivery.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub id: String,
    pub event_id: String,
    pub rule: String,
    pub channel: String,
    pub message: Message,
    pub headline: Headline,
    pub hold: Option<String>,
    pub state: DeliveryState,
    /// Attempts made so far.
    pub attempts: u32,
    pub created_at: Millis,
    /// When the current round of attempts began: `created_at`, or the time of a replay.
    /// `max_age` counts from here.
    pub scheduled_at: Millis,
    pub next_at: Millis,
    pub last_error: Option<String>,
}

#[cfg(test)]
impl NewDelivery {
    /// A plain text message to `channel`, for unit tests.
    pub(crate) fn sample(id: &str, channel: &str) -> NewDelivery {
        NewDelivery {
            id: id.into(),
            rule: "r".into(),
            channel: channel.into(),
            message: Message {
                body: crate::channels::MessageBody::Text { text: "hi".into() },
                template_errors: vec![],
            },
            headline: Headline::default(),
            hold: None,
            due_at: None,
            repeat: None,
        }
    }
}

impl Delivery {
    /// A delivery as `enqueue` stores it at `now` for the event `event_id`: pending, no
    /// attempts yet.
    pub fn stored(new: NewDelivery, event_id: &str, now: Millis) -> Delivery {
        Delivery {
            id: new.id,
            event_id: event_id.to_string(),
            rule: new.rule,
            channel: new.channel,
            message: new.message,
            headline: new.headline,
            hold: new.hold,
            state: DeliveryState::Pending,
            attempts: 0,
            created_at: now,
            scheduled_at: now,
            next_at: new.due_at.unwrap_or(now),
            last_error: None,
        }
    }
}

/// An attempt as the rate governor counts it: its channel, and when it was made.
#[derive(Debug, Clone, PartialEq)]
pub struct Sent {
    pub channel: String,
    pub at: Millis,
}

/// A pause of a robot that an answer asked for (a rate-limit code, Retry-After): the channel
/// of the attempt, and when the pause ends.
#[derive(Debug, Clone, PartialEq)]
pub struct Pause {
    pub channel: String,
    pub until: Millis,
}

/// How one attempt went, for the record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AttemptRecord {
    pub at: Millis,
    /// `delivered`, `transient`, `permanent`, or `interrupted` (cut off by shutdown).
    pub outcome: String,
    pub http_status: Option<u16>,
    pub code: Option<i64>,
    pub detail: String,
    pub latency_ms: u64,
    /// How long the answer paused the robot, as the worker applied it: a platform's
    /// rate-limit code or Retry-After, up to the longest pause Herald honours. A restart
    /// keeps the pause.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pause_ms: Option<u64>,
}

impl AttemptRecord {
    /// The outcome of an attempt that shutdown cut off before its answer.
    pub const INTERRUPTED: &'static str = "interrupted";

    /// Whether the attempt counts toward `max_attempts`: one cut off by shutdown is recorded
    /// but not counted, since it says nothing about the robot and a restart should not use up
    /// a delivery's retries.
    pub fn counts(&self) -> bool {
        self.outcome != Self::INTERRUPTED
    }
}

/// What happens to a delivery after an attempt.
#[derive(Debug, Clone, PartialEq)]
pub enum Next {
    Delivered,
    RetryAt(Millis),
    Dead(String),
}

/// Inbound de-duplication: an event whose key matches one stored within the window is stored
/// too, but with no deliveries.
#[derive(Debug, Clone)]
pub struct Dedup {
    pub key: String,
    pub window_ms: i64,
}

/// What `enqueue` stores besides the event and its deliveries.
#[derive(Debug, Clone, Copy, Default)]
pub struct EnqueueWith<'a> {
    /// De-duplicate against events stored within the window.
    pub dedup: Option<&'a Dedup>,
    /// The unit of work's new state (see `state`), written only if the event is not a duplicate.
    pub track: Option<(&'a str, &'a Track)>,
    /// Leases the deliveries that are due at once (those without `due_at`) to the caller for
    /// this many milliseconds as they are stored, so the gateway can hand them straight to the
    /// delivery worker instead of the worker reading them back.
    pub lease_ms: Option<i64>,
    /// The event as `serde_json::to_string(event)` writes it, when the caller has it already.
    pub event_json: Option<&'a str>,
}

/// What `enqueue` did.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Enqueued {
    /// The earlier event this one duplicates; its deliveries were not stored.
    pub duplicate_of: Option<String>,
    /// The deliveries not stored because their repeat key was claimed within its window.
    pub suppressed: Vec<String>,
}

/// Which deliveries to list.
#[derive(Debug, Clone, Default)]
pub struct ListFilter {
    pub state: Option<DeliveryState>,
    pub channel: Option<String>,
    pub limit: usize,
}

/// A storage failure.
#[derive(Debug, thiserror::Error)]
#[error("outbox: {0}")]
pub struct OutboxError(pub String);

/// The store of pending deliveries.
#[async_trait]
pub trait Outbox: Send + Sync {
    /// Stores an event and its deliveries, due at `now`, atomically. Herald answers 202 only
    /// after this returns. With `with.dedup`, an event matching one stored within the window is
    /// stored without its deliveries; otherwise `with.track` is stored too, and each delivery
    /// with a `repeat` key claims it, or is left out when it was claimed within its window.
    async fn enqueue(
        &self,
        event: &Event,
        deliveries: &[NewDelivery],
        now: Millis,
        with: &EnqueueWith<'_>,
    ) -> Result<Enqueued, OutboxError>;
    /// The remembered state of a unit of work (see `state::key`).
    async fn track(&self, key: &str) -> Result<Option<Track>, OutboxError>;
    /// Leases up to `limit` due deliveries (pending or retrying, `next_at <= now`, not leased
    /// by someone else) for `lease_ms`, in due order.
    async fn lease(&self, now: Millis, limit: usize, lease_ms: i64) -> Result<Vec<Delivery>, OutboxError> {
        self.lease_skipping(now, limit, lease_ms, &[]).await
    }
    /// [`lease`](Outbox::lease), passing over the deliveries to the channels in `skip`: the
    /// worker skips the channels of a robot that has no attempt slot free.
    async fn lease_skipping(
        &self,
        now: Millis,
        limit: usize,
        lease_ms: i64,
        skip: &[String],
    ) -> Result<Vec<Delivery>, OutboxError>;
    /// Those of `channels` with a delivery due at `now` that nobody holds a lease on: what a
    /// lease that skipped them left in the store.
    async fn due_channels(&self, channels: &[String], now: Millis) -> Result<Vec<String>, OutboxError>;
    /// Records an attempt and releases the lease. The record may still be on its way to disk
    /// when this returns, but every later operation sees it; [`flush`](Outbox::flush) waits
    /// until it is on disk. (Losing it in a crash only means the attempt is made again.)
    async fn finish(&self, id: &str, attempt: AttemptRecord, next: Next) -> Result<(), OutboxError>;
    /// Returns once everything recorded before it is on disk.
    async fn flush(&self) -> Result<(), OutboxError>;
    /// Whether the store can commit a write now (`/healthz`): a full disk, or a store another
    /// process keeps locked, is an error that says so.
    async fn check(&self) -> Result<(), OutboxError>;
    /// The earliest time a delivery is due (leased ones count from their lease's expiry).
    async fn next_due(&self) -> Result<Option<Millis>, OutboxError>;
    /// Puts leased deliveries back, due at `at`, without counting an attempt: the rate
    /// governor held them. One transaction; ids the outbox does not hold are skipped.
    async fn defer(&self, ids: &[String], at: Millis) -> Result<(), OutboxError>;
    /// The open (pending or retrying) deliveries to these channels that nobody holds a lease
    /// on at `now`, and that no hold (quiet hours, a group) keeps back past `now`; oldest
    /// first, at most `limit`.
    async fn backlog(
        &self,
        channels: &[String],
        now: Millis,
        limit: usize,
    ) -> Result<Vec<Delivery>, OutboxError>;
    /// Marks `ids` merged into `summary` and stores `summary` (for the event `event_id`) as
    /// made at `at`, due at its `due_at` or else at `at`, in one transaction.
    async fn merge(
        &self,
        ids: &[String],
        summary: &NewDelivery,
        event_id: &str,
        at: Millis,
    ) -> Result<(), OutboxError>;
    /// The open deliveries held under `key` that nobody holds a lease on at `now`, oldest
    /// first: what a release may merge. One in flight is left to its attempt.
    async fn held(&self, key: &str, now: Millis) -> Result<Vec<Delivery>, OutboxError>;
    /// When the deliveries held under `key` are released: the earliest due time of those not
    /// yet released, that is still pending and not leased at `now`. Once a hold's deliveries
    /// are in flight or retrying, a new one under its key starts a wait of its own.
    async fn hold_due(&self, key: &str, now: Millis) -> Result<Option<Millis>, OutboxError>;
    /// Every attempt made since `since`, oldest first: the rate governor starts from them, so
    /// a restart does not reset a robot's window.
    async fn sent_since(&self, since: Millis) -> Result<Vec<Sent>, OutboxError>;
    /// The pauses asked for by the answers to attempts made since `since`, by when they end:
    /// a restart does not forget a lockout or a Retry-After.
    async fn pauses_since(&self, since: Millis) -> Result<Vec<Pause>, OutboxError>;
    /// Deliveries, newest first.
    async fn list(&self, filter: &ListFilter) -> Result<Vec<Delivery>, OutboxError>;
    /// One delivery and its attempts, oldest first.
    async fn get(&self, id: &str) -> Result<Option<(Delivery, Vec<AttemptRecord>)>, OutboxError>;
    /// Makes dead (or retrying) deliveries due again at `now` with a fresh attempt budget;
    /// their history is kept. Returns how many were rescheduled. `ids` empty means every
    /// delivery matching `filter`. A retrying delivery leased at `now` (an attempt in flight)
    /// is left alone: replaying it would send it a second time.
    async fn replay(&self, ids: &[String], filter: &ListFilter, now: Millis) -> Result<usize, OutboxError>;
}

#[cfg(test)]
mod mentioned_tests {
    use super::{Mention, Mentioned};

    #[test]
    fn merging_keeps_everyone_once_and_stores_only_what_is_there() {
        let first =
            Mentioned { mobiles: vec!["138".into()], emails: vec!["a@x".into()], ..Default::default() };
        let mut merged = Mention::from(&first);
        merged.merge(&Mention::from(&Mentioned {
            mobiles: vec!["138".into(), "139".into()],
            user_ids: vec!["zhangsan".into()],
            all: true,
            emails: vec!["a@x".into(), "b@x".into()],
        }));
        let all = Mentioned::from(&merged);
        assert_eq!(all.mobiles, ["138", "139"]);
        assert_eq!((all.user_ids.as_slice(), all.all), (&["zhangsan".to_string()][..], true));
        assert_eq!(all.emails, ["a@x", "b@x"]);
        let back: Mentioned = serde_json::from_str(&serde_json::to_string(&all).unwrap()).unwrap();
        assert_eq!(back, all);
        assert_eq!(serde_json::to_string(&Mentioned::default()).unwrap(), "{}");
    }
}
