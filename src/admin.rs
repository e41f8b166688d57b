//! The operations on stored deliveries that the admin API (`/api/deliveries`, in `http`) and
//! `herald deliveries` (in `cli`) share: reading their parameters, listing, showing and
//! replaying. Both go through here, so the same input gets the same answer and the same
//! message. How an answer is shown (an HTTP status, an exit code) and who may ask (the admin
//! token) belong to the callers; the store itself is `outbox`.

use crate::clock::Millis;
use crate::outbox::{AttemptRecord, Delivery, DeliveryState, ListFilter, Outbox, OutboxError};

/// How many deliveries a listing returns when no limit is given.
pub const DEFAULT_LIMIT: usize = 50;

/// The most deliveries one listing returns.
pub const MAX_LIMIT: usize = 1000;

/// The parameters a listing or a bulk retry takes.
const PARAMS: [&str; 3] = ["state", "channel", "limit"];

/// Why an operation was refused.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// A parameter is malformed, out of range, repeated or unknown. The message names it and
    /// what it accepts.
    #[error("{0}")]
    BadParam(String),
    #[error("no delivery \"{0}\"")]
    NotFound(String),
    #[error("delivery \"{id}\" is {}: only dead or retrying deliveries can be retried", state.as_str())]
    NotRetryable { id: String, state: DeliveryState },
    /// A delivery named was leased for an attempt at that moment, so it was left to it.
    #[error("{}", in_flight_message(.leased, *.replayed))]
    InFlight { leased: Vec<String>, replayed: usize },
    #[error(transparent)]
    Store(#[from] OutboxError),
}

impl AdminError {
    /// The HTTP status that answers it.
    pub fn status(&self) -> u16 {
        match self {
            AdminError::BadParam(_) => 400,
            AdminError::NotFound(_) => 404,
            AdminError::NotRetryable { .. } | AdminError::InFlight { .. } => 409,
            AdminError::Store(_) => 503,
        }
    }
}

/// The parameters of a listing or a bulk retry as given (`?state=&channel=&limit=`, or
/// `--state`, `--channel`, `--limit`), before they are checked. `None` means not given, and so
/// does an empty value: `?state=dead&channel=&limit=` lists every channel's dead deliveries.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Params {
    pub state: Option<String>,
    pub channel: Option<String>,
    pub limit: Option<String>,
}

impl Params {
    /// Reads a query string. Each parameter may be given once, and an unknown one is refused:
    /// a misspelt `chanel=` would otherwise widen a bulk retry to every channel.
    pub fn from_query(query: &str) -> Result<Params, AdminError> {
        let mut params = Params::default();
        for (key, value) in url::form_urlencoded::parse(query.as_bytes()) {
            let slot = match key.as_ref() {
                "state" => &mut params.state,
                "channel" => &mut params.channel,
                "limit" => &mut params.limit,
                // The key only: a value might be a secret sent to the wrong place.
                other => {
                    return Err(AdminError::BadParam(format!(
                        "unknown parameter \"{other}\" (the parameters are {})",
                        PARAMS.join(", ")
                    )))
                }
            };
            if slot.replace(value.into_owned()).is_some() {
                return Err(AdminError::BadParam(format!("{key} is given more than once: give it once")));
            }
        }
        Ok(params)
    }

    /// The filter of a listing: any state and channel unless given, [`DEFAULT_LIMIT`] rows
    /// unless given.
    pub fn list_filter(&self) -> Result<ListFilter, AdminError> {
        let limit = match given(&self.limit) {
            None => DEFAULT_LIMIT,
            Some(s) => parse_limit(s)?,
        };
        Ok(ListFilter {
            state: given(&self.state).map(parse_state).transpose()?,
            channel: given(&self.channel).map(str::to_string),
            limit,
        })
    }

    /// The filter of a bulk retry: every dead delivery unless `state` says retrying, in
    /// `channel` if given. A retry replays every match, so it takes no limit.
    pub fn retry_filter(&self) -> Result<ListFilter, AdminError> {
        if given(&self.limit).is_some() {
            return Err(AdminError::BadParam(
                "limit does not apply to a retry: every matching delivery is retried".into(),
            ));
        }
        let state = match given(&self.state) {
            None => DeliveryState::Dead,
            Some(s) => match parse_state(s)? {
                st @ (DeliveryState::Dead | DeliveryState::Retrying) => st,
                _ => {
                    return Err(AdminError::BadParam(format!("state must be dead or retrying, not \"{s}\"")))
                }
            },
        };
        Ok(ListFilter {
            state: Some(state),
            channel: given(&self.channel).map(str::to_string),
            limit: usize::MAX,
        })
    }
}

/// A parameter's value, when one was given: an empty value counts as none.
fn given(value: &Option<String>) -> Option<&str> {
    value.as_deref().filter(|v| !v.is_empty())
}

fn parse_state(s: &str) -> Result<DeliveryState, AdminError> {
    DeliveryState::parse(s).ok_or_else(|| {
        let known: Vec<&str> = DeliveryState::ALL.iter().map(|s| s.as_str()).collect();
        AdminError::BadParam(format!("state must be one of {}, not \"{s}\"", known.join(", ")))
    })
}

/// Digits only: no sign, no fraction, no blank; and within range.
fn parse_limit(s: &str) -> Result<usize, AdminError> {
    Some(s)
        .filter(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|s| s.parse::<usize>().ok())
        .filter(|n| (1..=MAX_LIMIT).contains(n))
        .ok_or_else(|| {
            AdminError::BadParam(format!("limit must be a whole number from 1 to {MAX_LIMIT}, not \"{s}\""))
        })
}

/// The deliveries matching `filter`, newest first.
pub async fn list(outbox: &dyn Outbox, filter: &ListFilter) -> Result<Vec<Delivery>, AdminError> {
    Ok(outbox.list(filter).await?)
}

/// One delivery and its attempts.
pub async fn show(outbox: &dyn Outbox, id: &str) -> Result<(Delivery, Vec<AttemptRecord>), AdminError> {
    outbox.get(id).await?.ok_or_else(|| AdminError::NotFound(id.to_string()))
}

/// Replays the deliveries named, due at `now`. Each must exist and be dead or retrying; all
/// are checked before any is replayed. Returns how many were replayed. A retrying one leased
/// for an attempt at that moment is left to that attempt, and then the answer is
/// [`AdminError::InFlight`], naming it and saying how many of the others were replayed.
pub async fn retry_named(outbox: &dyn Outbox, ids: &[String], now: Millis) -> Result<usize, AdminError> {
    let mut unique: Vec<String> = Vec::with_capacity(ids.len());
    for id in ids {
        if !unique.contains(id) {
            unique.push(id.clone());
        }
    }
    let ids = unique.as_slice();
    for id in ids {
        let (d, _) = show(outbox, id).await?;
        if !matches!(d.state, DeliveryState::Dead | DeliveryState::Retrying) {
            return Err(AdminError::NotRetryable { id: id.clone(), state: d.state });
        }
    }
    let replayed = outbox.replay(ids, &ListFilter::default(), now).await?;
    if replayed == ids.len() {
        return Ok(replayed);
    }
    // A replayed delivery is pending with no attempts; the others were left to their lease.
    let mut leased = Vec::new();
    for id in ids {
        let (d, _) = show(outbox, id).await?;
        if d.state != DeliveryState::Pending || d.attempts > 0 {
            leased.push(id.clone());
        }
    }
    Err(AdminError::InFlight { leased, replayed })
}

fn in_flight_message(leased: &[String], replayed: usize) -> String {
    const WHEN: &str = "retry once the attempt ends (a lease left by a gateway that stopped without \
                        ending it ends when the gateway starts again)";
    match (leased, replayed) {
        ([id], 0) => format!("delivery \"{id}\" is leased for an attempt now: {WHEN}"),
        _ => format!(
            "retried {replayed} of the deliveries named; leased for an attempt now, so left to it: {}; {WHEN}",
            leased.join(", ")
        ),
    }
}

/// Replays every delivery matching `filter` (from [`Params::retry_filter`]), due at `now`.
/// Returns how many were replayed.
pub async fn retry_matching(
    outbox: &dyn Outbox,
    filter: &ListFilter,
    now: Millis,
) -> Result<usize, AdminError> {
    Ok(outbox.replay(&[], filter, now).await?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Event;
    use crate::outbox::memory::MemoryOutbox;
    use crate::outbox::{EnqueueWith, NewDelivery, Next};

    fn query(q: &str) -> Result<Params, String> {
        Params::from_query(q).map_err(|e| e.to_string())
    }

    fn list(q: &str) -> Result<ListFilter, String> {
        query(q)?.list_filter().map_err(|e| e.to_string())
    }

    fn retry(q: &str) -> Result<ListFilter, String> {
        query(q)?.retry_filter().map_err(|e| e.to_string())
    }

    #[test]
    fn listing_parameters() {
        let f = list("").unwrap();
        assert_eq!((f.state, f.channel, f.limit), (None, None, DEFAULT_LIMIT));
        let f = list("state=dead&channel=team%20ding&limit=7").unwrap();
        assert_eq!(
            (f.state, f.channel.as_deref(), f.limit),
            (Some(DeliveryState::Dead), Some("team ding"), 7)
        );
        assert_eq!(list("limit=1").unwrap().limit, 1);
        assert_eq!(list("limit=1000").unwrap().limit, MAX_LIMIT);
        assert_eq!(list("limit=007").unwrap().limit, 7);
        let f = list("state=&channel=&limit=").unwrap();
        assert_eq!((f.state, f.channel, f.limit), (None, None, DEFAULT_LIMIT), "empty is not given");
    }

    #[test]
    fn every_bad_limit_names_the_range() {
        for bad in ["abc", "-1", "+1", "1.5", " 5", "0", "1001", "99999999999999999999999"] {
            let q =
                format!("limit={}", url::form_urlencoded::byte_serialize(bad.as_bytes()).collect::<String>());
            let err = list(&q).unwrap_err();
            assert_eq!(err, format!("limit must be a whole number from 1 to 1000, not \"{bad}\""), "{q}");
        }
    }

    #[test]
    fn bad_states_channels_and_keys() {
        let one_of = "state must be one of pending, retrying, delivered, dead, merged";
        // (query, the error's start)
        let cases = [
            ("state=DEAD", one_of),
            ("state=gone", one_of),
            ("state=dead&state=retrying", "state is given more than once"),
            ("limit=5&limit=5", "limit is given more than once"),
            ("stat=dead", "unknown parameter \"stat\" (the parameters are state, channel, limit)"),
            ("token=s3cret", "unknown parameter \"token\""),
        ];
        for (q, want) in cases {
            let err = list(q).unwrap_err();
            assert!(err.starts_with(want), "{q}: {err}");
            assert!(!err.contains("s3cret"), "{q}: a value echoed: {err}");
        }
    }

    #[test]
    fn retry_parameters() {
        let f = retry("").unwrap();
        assert_eq!((f.state, f.channel, f.limit), (Some(DeliveryState::Dead), None, usize::MAX));
        let f = retry("state=retrying&channel=ding").unwrap();
        assert_eq!((f.state, f.channel.as_deref()), (Some(DeliveryState::Retrying), Some("ding")));
        assert_eq!(
            retry("state=delivered").unwrap_err(),
            "state must be dead or retrying, not \"delivered\""
        );
        let f = retry("state=&channel=&limit=").unwrap();
        assert_eq!((f.state, f.channel), (Some(DeliveryState::Dead), None), "empty is not given");
        assert!(retry("limit=5").unwrap_err().starts_with("limit does not apply to a retry"));
    }

    fn delivery(id: &str) -> NewDelivery {
        NewDelivery::sample(id, "c")
    }

    fn attempt() -> AttemptRecord {
        AttemptRecord {
            at: 1,
            outcome: "permanent".into(),
            http_status: Some(400),
            code: None,
            detail: "refused".into(),
            latency_ms: 1,
            pause_ms: None,
        }
    }

    #[tokio::test]
    async fn retrying_by_name_checks_every_id_before_replaying_any() {
        let o = MemoryOutbox::new();
        let all = [delivery("dead"), delivery("delivered"), delivery("pending")];
        o.enqueue(&Event::sample(), &all, 0, &EnqueueWith::default()).await.unwrap();
        o.finish("dead", attempt(), Next::Dead("refused".into())).await.unwrap();
        o.finish("delivered", attempt(), Next::Delivered).await.unwrap();
        let ids = |ids: &[&str]| ids.iter().map(|s| s.to_string()).collect::<Vec<_>>();

        let err = retry_named(&o, &ids(&["dead", "nope"]), 5).await.unwrap_err();
        assert_eq!((err.status(), err.to_string()), (404, "no delivery \"nope\"".to_string()));
        for (id, state) in [("delivered", "delivered"), ("pending", "pending")] {
            let err = retry_named(&o, &ids(&["dead", id]), 5).await.unwrap_err();
            assert_eq!(err.status(), 409);
            assert_eq!(
                err.to_string(),
                format!("delivery \"{id}\" is {state}: only dead or retrying deliveries can be retried")
            );
        }
        assert_eq!(o.get("dead").unwrap().0.state, DeliveryState::Dead, "nothing replayed after a refusal");
        assert_eq!(
            retry_named(&o, &ids(&["dead", "dead"]), 5).await.unwrap(),
            1,
            "an ID named twice counts once"
        );
        assert_eq!(o.get("dead").unwrap().0.state, DeliveryState::Pending);
    }

    #[tokio::test]
    async fn a_delivery_whose_attempt_is_in_flight_is_left_to_it_and_the_answer_says_so() {
        let o = MemoryOutbox::new();
        let all = [delivery("busy"), delivery("idle")];
        o.enqueue(&Event::sample(), &all, 0, &EnqueueWith::default()).await.unwrap();
        // The worker takes "busy" for its second attempt; "idle" waits for its time.
        o.finish("busy", attempt(), Next::RetryAt(1_000)).await.unwrap();
        o.finish("idle", attempt(), Next::RetryAt(10_000)).await.unwrap();
        let leased = o.lease(1_000, 10, 60_000).await.unwrap();
        assert_eq!(leased.iter().map(|d| d.id.as_str()).collect::<Vec<_>>(), ["busy"]);
        let ids = |ids: &[&str]| ids.iter().map(|s| s.to_string()).collect::<Vec<_>>();

        let err = retry_named(&o, &ids(&["busy"]), 2_000).await.unwrap_err();
        assert_eq!(err.status(), 409);
        assert_eq!(
            err.to_string(),
            "delivery \"busy\" is leased for an attempt now: retry once the attempt ends (a lease left \
             by a gateway that stopped without ending it ends when the gateway starts again)"
        );
        assert_eq!(o.get("busy").unwrap().0.attempts, 1, "the attempt in flight keeps its delivery");

        let err = retry_named(&o, &ids(&["idle", "busy"]), 2_000).await.unwrap_err();
        assert_eq!(err.status(), 409);
        assert!(
            err.to_string().starts_with("retried 1 of the deliveries named; leased for an attempt now, so left to it: busy; retry once"),
            "{err}"
        );
        assert_eq!(o.get("idle").unwrap().0.state, DeliveryState::Pending, "the other one was retried");

        // Once the lease has run out, the delivery is no longer in anyone's hands.
        assert_eq!(retry_named(&o, &ids(&["busy"]), 61_000).await.unwrap(), 1);
    }
}
