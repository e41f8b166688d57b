//! The operator's view of deliveries: the JSON the admin API answers and `herald deliveries`
//! prints. Times are RFC 3339; nothing here holds a secret (messages are stored without
//! credentials, and failure details are scrubbed by the channels).

use serde::Serialize;

use super::{AttemptRecord, Delivery, Headline};
use crate::channels::Message;
use crate::clock::Millis;

/// A delivery in a listing.
#[derive(Debug, Serialize)]
pub struct DeliveryView {
    pub id: String,
    pub event_id: String,
    pub rule: String,
    pub channel: String,
    pub state: &'static str,
    pub attempts: u32,
    pub created_at: String,
    /// When it is next due, while it is pending or retrying.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    pub headline: Headline,
}

/// One delivery with its message and every attempt.
#[derive(Debug, Serialize)]
pub struct DeliveryDetail {
    #[serde(flatten)]
    pub delivery: DeliveryView,
    pub message: Message,
    pub history: Vec<AttemptView>,
}

/// One recorded attempt.
#[derive(Debug, Serialize)]
pub struct AttemptView {
    pub at: String,
    pub outcome: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub http_status: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub code: Option<i64>,
    pub detail: String,
    pub latency_ms: u64,
    /// How long the answer paused the robot (a rate-limit code, Retry-After).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pause_ms: Option<u64>,
}

/// Milliseconds since the epoch as RFC 3339.
pub fn rfc3339(ms: Millis) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
        .unwrap_or_else(|| ms.to_string())
}

impl From<&Delivery> for DeliveryView {
    fn from(d: &Delivery) -> Self {
        let open = matches!(d.state, super::DeliveryState::Pending | super::DeliveryState::Retrying);
        DeliveryView {
            id: d.id.clone(),
            event_id: d.event_id.clone(),
            rule: d.rule.clone(),
            channel: d.channel.clone(),
            state: d.state.as_str(),
            attempts: d.attempts,
            created_at: rfc3339(d.created_at),
            next_at: open.then(|| rfc3339(d.next_at)),
            last_error: d.last_error.clone(),
            headline: d.headline.clone(),
        }
    }
}

impl DeliveryDetail {
    pub fn new(d: &Delivery, attempts: &[AttemptRecord]) -> DeliveryDetail {
        DeliveryDetail {
            delivery: DeliveryView::from(d),
            message: d.message.clone(),
            history: attempts
                .iter()
                .map(|a| AttemptView {
                    at: rfc3339(a.at),
                    outcome: a.outcome.clone(),
                    http_status: a.http_status,
                    code: a.code,
                    detail: a.detail.clone(),
                    latency_ms: a.latency_ms,
                    pause_ms: a.pause_ms,
                })
                .collect(),
        }
    }
}
