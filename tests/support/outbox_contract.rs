//! The `Outbox` contract, written once and run against every backend: lease exclusivity,
//! lease expiry, reschedule, and dead is final.

use std::sync::Arc;

use herald::channels::{Message, MessageBody};
use herald::event::{Event, Status};
use herald::outbox::{
    AttemptRecord, Dedup, DeliveryState, EnqueueWith, Headline, ListFilter, NewDelivery, Next, Outbox, Repeat,
};

fn delivery(id: &str, channel: &str) -> NewDelivery {
    NewDelivery {
        id: id.into(),
        rule: "r".into(),
        channel: channel.into(),
        message: Message {
            body: MessageBody::Text { text: format!("message {id}") },
            template_errors: vec![],
        },
        headline: Headline {
            text: format!("headline {id}"),
            url: None,
            status: "failure".into(),
            covers: None,
            ..Default::default()
        },
        hold: None,
        due_at: None,
        repeat: None,
    }
}

fn record(at: i64, outcome: &str) -> AttemptRecord {
    AttemptRecord {
        at,
        outcome: outcome.into(),
        http_status: Some(200),
        code: Some(0),
        detail: "ok".into(),
        latency_ms: 3,
        pause_ms: None,
    }
}

fn event() -> Event {
    Event::new("flow", Status::Failure, "FAIL", true)
}

/// Runs every contract check against fresh outboxes made by `make`.
pub async fn run_contract<F>(make: F)
where
    F: Fn() -> Arc<dyn Outbox>,
{
    stored_deliveries_are_due_at_once(make()).await;
    a_lease_is_exclusive_until_it_expires(make()).await;
    finish_reschedules_and_releases(make()).await;
    dead_and_delivered_are_final(make()).await;
    leases_respect_the_limit_and_due_order(make()).await;
    a_lease_can_pass_over_channels(make()).await;
    duplicates_within_the_window_are_stored_without_deliveries(make()).await;
    list_filters_and_replay_dead_letters(make()).await;
    defer_backlog_and_merge(make()).await;
    a_hold_keeps_a_delivery_out_of_the_backlog_until_released(make()).await;
    a_summary_is_stored_now_and_due_later(make()).await;
    tracks_are_stored_with_their_event_unless_duplicate(make()).await;
    enqueue_can_lease_to_the_caller(make()).await;
    attempts_since_a_time_name_their_channel(make()).await;
    a_repeat_key_is_claimed_by_the_delivery_stored_with_it(make()).await;
    a_hold_is_open_until_its_deliveries_are_released(make()).await;
}

async fn a_repeat_key_is_claimed_by_the_delivery_stored_with_it(o: Arc<dyn Outbox>) {
    let nag = |id: &str| NewDelivery {
        repeat: Some(Repeat { key: "nag".into(), window_ms: 60_000 }),
        ..delivery(id, "c")
    };
    let first =
        o.enqueue(&event(), &[nag("a"), delivery("plain", "c")], 0, &Default::default()).await.unwrap();
    assert!(first.suppressed.is_empty());
    let again =
        o.enqueue(&event(), &[nag("b"), delivery("other", "c")], 59_999, &Default::default()).await.unwrap();
    assert_eq!(again.suppressed, ["b"], "claimed within the window; the rest of the event is stored");
    assert!(o.get("b").await.unwrap().is_none(), "a suppressed delivery is not stored");
    assert!(o.get("other").await.unwrap().is_some());

    // A duplicate event claims nothing: its deliveries are not stored.
    let dedup = Dedup { key: "same".into(), window_ms: 600_000 };
    let with = EnqueueWith { dedup: Some(&dedup), ..Default::default() };
    o.enqueue(&event(), &[delivery("d1", "c")], 60_000, &with).await.unwrap();
    let twin = o.enqueue(&event(), &[nag("d2")], 60_000, &with).await.unwrap();
    assert!(twin.duplicate_of.is_some() && twin.suppressed.is_empty());
    let after = o.enqueue(&event(), &[nag("c")], 60_000, &Default::default()).await.unwrap();
    assert!(after.suppressed.is_empty(), "the window is over, and the duplicate did not claim the key");
    assert!(o.get("c").await.unwrap().is_some());
}

async fn a_hold_is_open_until_its_deliveries_are_released(o: Arc<dyn Outbox>) {
    let held = |id: &str, due: i64| NewDelivery {
        hold: Some("group".into()),
        due_at: Some(due),
        ..delivery(id, "c")
    };
    assert_eq!(o.hold_due("group", 0).await.unwrap(), None);
    o.enqueue(&event(), &[held("a", 30_000)], 0, &Default::default()).await.unwrap();
    o.enqueue(&event(), &[held("b", 40_000)], 10_000, &Default::default()).await.unwrap();
    assert_eq!(o.hold_due("group", 10_000).await.unwrap(), Some(30_000), "the earliest release");
    // Released: the worker holds both, sending them.
    assert_eq!(o.lease(40_000, 10, 60_000).await.unwrap().len(), 2);
    assert_eq!(o.hold_due("group", 40_000).await.unwrap(), None, "in flight, the hold is closed");
    assert!(o.held("group", 40_000).await.unwrap().is_empty(), "in flight, nothing is left to merge");
    // One went, one is to be retried: neither keeps the hold open.
    o.finish("a", record(41_000, "delivered"), Next::Delivered).await.unwrap();
    o.finish("b", record(41_000, "transient"), Next::RetryAt(300_000)).await.unwrap();
    assert_eq!(o.hold_due("group", 41_000).await.unwrap(), None, "a retry does not hold a new message");
    // A lease that outlived its worker puts its delivery back in the hold, due at once.
    o.enqueue(&event(), &[held("c", 50_000)], 42_000, &Default::default()).await.unwrap();
    assert_eq!(o.lease(50_000, 10, 5_000).await.unwrap().len(), 1);
    assert_eq!(o.hold_due("group", 54_999).await.unwrap(), None);
    assert_eq!(o.hold_due("group", 55_000).await.unwrap().map(|at| at <= 55_000), Some(true));
    let ids = |held: Vec<herald::outbox::Delivery>| held.into_iter().map(|d| d.id).collect::<Vec<_>>();
    assert_eq!(
        ids(o.held("group", 55_000).await.unwrap()),
        ["b", "c"],
        "the retry and the one whose lease expired"
    );
}

async fn enqueue_can_lease_to_the_caller(o: Arc<dyn Outbox>) {
    let held = NewDelivery { due_at: Some(5_000), ..delivery("held", "c") };
    let with = EnqueueWith { lease_ms: Some(10_000), ..Default::default() };
    o.enqueue(&event(), &[delivery("now", "c"), held], 1_000, &with).await.unwrap();
    assert!(o.lease(1_000, 10, 60_000).await.unwrap().is_empty(), "the caller holds the one due now");
    let later = o.lease(5_000, 10, 60_000).await.unwrap();
    let ids: Vec<&str> = later.iter().map(|d| d.id.as_str()).collect();
    assert_eq!(ids, ["held"], "a delivery due later is not leased by enqueue");
    assert_eq!(o.next_due().await.unwrap(), Some(11_000), "due when the caller's lease expires");
    // The caller died with it: it comes back when the lease expires, with nothing counted.
    let back = o.lease(11_000, 10, 60_000).await.unwrap();
    assert_eq!(back.iter().map(|d| (d.id.as_str(), d.attempts)).collect::<Vec<_>>(), [("now", 0)]);
    // A duplicate leases nothing, since nothing is stored.
    let dedup = Dedup { key: "k".into(), window_ms: 1_000_000 };
    let with = EnqueueWith { lease_ms: Some(10_000), dedup: Some(&dedup), ..Default::default() };
    o.enqueue(&event(), &[delivery("x", "c")], 20_000, &with).await.unwrap();
    let r = o.enqueue(&event(), &[delivery("y", "c")], 20_001, &with).await.unwrap();
    assert!(r.duplicate_of.is_some());
    assert!(o.get("y").await.unwrap().is_none());
}

async fn attempts_since_a_time_name_their_channel(o: Arc<dyn Outbox>) {
    o.enqueue(&event(), &[delivery("a", "ding"), delivery("b", "mail")], 0, &EnqueueWith::default())
        .await
        .unwrap();
    o.lease(0, 10, 60_000).await.unwrap();
    o.finish("a", record(100, "transient"), Next::RetryAt(150)).await.unwrap();
    o.finish("b", record(120, "delivered"), Next::Delivered).await.unwrap();
    o.lease(150, 10, 60_000).await.unwrap();
    o.finish("a", record(200, "delivered"), Next::Delivered).await.unwrap();
    let sent: Vec<(String, i64)> =
        o.sent_since(110).await.unwrap().into_iter().map(|s| (s.channel, s.at)).collect();
    assert_eq!(
        sent,
        [("mail".to_string(), 120), ("ding".to_string(), 200)],
        "every attempt at or after the time, oldest first"
    );
    assert_eq!(o.sent_since(0).await.unwrap().len(), 3);
    assert!(o.sent_since(201).await.unwrap().is_empty());
    assert!(o.pauses_since(0).await.unwrap().is_empty(), "no answer asked for a pause");
    // An answer that paused its robot (a rate-limit code, Retry-After) is found by its end.
    let throttled = AttemptRecord { code: Some(130101), pause_ms: Some(600_000), ..record(300, "transient") };
    let slowed =
        AttemptRecord { http_status: Some(429), pause_ms: Some(120_000), ..record(400, "transient") };
    o.enqueue(&event(), &[delivery("c", "ding"), delivery("w", "hook")], 250, &EnqueueWith::default())
        .await
        .unwrap();
    o.lease(250, 10, 60_000).await.unwrap();
    o.finish("c", throttled, Next::RetryAt(900_000)).await.unwrap();
    o.finish("w", slowed, Next::RetryAt(120_400)).await.unwrap();
    let last = o.sent_since(300).await.unwrap();
    assert_eq!(last.len(), 2);
    assert_eq!((last[0].channel.as_str(), last[0].at), ("ding", 300));
    let pauses: Vec<(String, i64)> =
        o.pauses_since(300).await.unwrap().into_iter().map(|p| (p.channel, p.until)).collect();
    assert_eq!(pauses, [("hook".to_string(), 120_400), ("ding".to_string(), 600_300)]);
    assert_eq!(o.pauses_since(301).await.unwrap().len(), 1, "counted from the attempt");
    let (_, attempts) = o.get("w").await.unwrap().unwrap();
    assert_eq!(attempts[0].pause_ms, Some(120_000), "kept with the attempt");
}

async fn tracks_are_stored_with_their_event_unless_duplicate(o: Arc<dyn Outbox>) {
    use herald::state::Track;
    let failing = Track {
        last_status: Status::Failure,
        last_build: Some(7),
        failures: 1,
        failing_since: None,
        version: 1,
    };
    assert_eq!(o.track("unit").await.unwrap(), None);
    let dedup = Dedup { key: "k".into(), window_ms: 1_000 };
    let with = EnqueueWith { dedup: Some(&dedup), track: Some(("unit", &failing)), ..Default::default() };
    o.enqueue(&event(), &[], 0, &with).await.unwrap();
    assert_eq!(o.track("unit").await.unwrap(), Some(failing.clone()));
    let passing = Track { last_status: Status::Success, failures: 0, version: 2, ..failing.clone() };
    let dup = EnqueueWith { dedup: Some(&dedup), track: Some(("unit", &passing)), ..Default::default() };
    let r = o.enqueue(&event(), &[], 10, &dup).await.unwrap();
    assert!(r.duplicate_of.is_some());
    assert_eq!(o.track("unit").await.unwrap(), Some(failing.clone()), "a duplicate does not move the state");
    o.enqueue(&event(), &[], 20, &EnqueueWith { track: Some(("unit", &passing)), ..Default::default() })
        .await
        .unwrap();
    assert_eq!(o.track("unit").await.unwrap(), Some(passing.clone()));
    // Two results accepted together may commit in either order: the later state stays.
    let with = EnqueueWith { track: Some(("unit", &failing)), ..Default::default() };
    o.enqueue(&event(), &[], 30, &with).await.unwrap();
    assert_eq!(
        o.track("unit").await.unwrap(),
        Some(passing),
        "an earlier state does not replace a later one"
    );
}

async fn defer_backlog_and_merge(o: Arc<dyn Outbox>) {
    let e = event();
    for (i, (id, ch)) in [("a", "ding"), ("b", "ding"), ("c", "ding"), ("m", "mail")].into_iter().enumerate()
    {
        let this = if i == 0 { e.clone() } else { event() };
        o.enqueue(&this, &[delivery(id, ch)], i as i64, &EnqueueWith::default()).await.unwrap();
    }
    let leased = o.lease(0, 1, 60_000).await.unwrap();
    assert_eq!(leased.len(), 1);
    let held = leased[0].id.clone();
    assert_eq!(held, "a");
    // The governor holds it back: due later, no attempt counted, lease released.
    o.defer(&[held.clone(), "no-such-delivery".to_string()], 63_000).await.unwrap();
    let after = o.get(&held).await.unwrap().unwrap();
    assert_eq!((after.0.attempts, after.0.next_at, after.1.len()), (0, 63_000, 0));
    // Another is in flight (leased): the backlog leaves it out.
    let in_flight = o.lease(3, 1, 60_000).await.unwrap()[0].id.clone();
    assert_eq!(in_flight, "b");
    let backlog = o.backlog(&["ding".to_string()], 3, 100).await.unwrap();
    let ids: Vec<&str> = backlog.iter().map(|d| d.id.as_str()).collect();
    assert_eq!(ids, ["a", "c"], "open, unleased, this robot's channels only, oldest first");
    assert!(backlog[0].headline.text.starts_with("headline "));
    let both = o.backlog(&["mail".to_string(), "ding".to_string()], 3, 100).await.unwrap();
    let both: Vec<&str> = both.iter().map(|d| d.id.as_str()).collect();
    assert_eq!(both, ["a", "c", "m"], "several channels: one list, oldest first");
    let first = o.backlog(&["mail".to_string(), "ding".to_string()], 3, 2).await.unwrap();
    assert_eq!(
        first.iter().map(|d| d.id.as_str()).collect::<Vec<_>>(),
        ["a", "c"],
        "the limit keeps the oldest"
    );

    let merged: Vec<String> = ids.iter().map(|s| s.to_string()).collect();
    let summary = NewDelivery { id: "summary".into(), ..delivery("summary", "ding") };
    o.merge(&merged, &summary, &e.event_id, 63_000).await.unwrap();
    for id in &merged {
        let (d, _) = o.get(id).await.unwrap().unwrap();
        assert_eq!(d.state, DeliveryState::Merged);
        assert_eq!(d.last_error.as_deref(), Some("merged into summary summary"));
    }
    let (s, _) = o.get("summary").await.unwrap().unwrap();
    assert_eq!(
        (s.state, s.next_at, s.event_id.as_str()),
        (DeliveryState::Pending, 63_000, e.event_id.as_str())
    );
    let filter = ListFilter { state: Some(DeliveryState::Merged), limit: 10, ..Default::default() };
    assert_eq!(o.list(&filter).await.unwrap().len(), 2);
}

async fn a_hold_keeps_a_delivery_out_of_the_backlog_until_released(o: Arc<dyn Outbox>) {
    let held =
        NewDelivery { hold: Some("quiet:night".into()), due_at: Some(50_000), ..delivery("held", "ding") };
    o.enqueue(&event(), &[held, delivery("free", "ding")], 0, &EnqueueWith::default()).await.unwrap();
    let ids = |b: Vec<herald::outbox::Delivery>| b.into_iter().map(|d| d.id).collect::<Vec<_>>();
    let ding = ["ding".to_string()];
    assert_eq!(ids(o.backlog(&ding, 10, 10).await.unwrap()), ["free"], "held until 50 000");
    let mut released = ids(o.backlog(&ding, 50_000, 10).await.unwrap());
    released.sort();
    assert_eq!(released, ["free", "held"], "released");
}

async fn a_summary_is_stored_now_and_due_later(o: Arc<dyn Outbox>) {
    let e = event();
    o.enqueue(&e, &[delivery("a", "ding")], 0, &EnqueueWith::default()).await.unwrap();
    let summary = NewDelivery { due_at: Some(63_000), ..delivery("summary", "ding") };
    o.merge(&["a".to_string()], &summary, &e.event_id, 1_000).await.unwrap();
    let (s, _) = o.get("summary").await.unwrap().unwrap();
    assert_eq!((s.created_at, s.next_at), (1_000, 63_000));
    assert!(o.lease(62_999, 10, 60_000).await.unwrap().is_empty(), "not due before 63 000");
    assert_eq!(o.lease(63_000, 10, 60_000).await.unwrap().len(), 1);
}

async fn stored_deliveries_are_due_at_once(o: Arc<dyn Outbox>) {
    assert_eq!(o.next_due().await.unwrap(), None, "empty outbox has nothing due");
    o.enqueue(&event(), &[delivery("a", "c1"), delivery("b", "c2")], 1_000, &EnqueueWith::default())
        .await
        .unwrap();
    assert_eq!(o.next_due().await.unwrap(), Some(1_000));
    assert!(o.lease(999, 10, 60_000).await.unwrap().is_empty(), "not due before it was stored");
    let leased = o.lease(1_000, 10, 60_000).await.unwrap();
    let mut ids: Vec<&str> = leased.iter().map(|d| d.id.as_str()).collect();
    ids.sort();
    assert_eq!(ids, ["a", "b"]);
    let a = leased.iter().find(|d| d.id == "a").unwrap();
    assert_eq!(a.state, DeliveryState::Pending);
    assert_eq!(a.attempts, 0);
    assert_eq!(a.channel, "c1");
    assert_eq!(a.message.body, MessageBody::Text { text: "message a".into() });
}

async fn a_lease_is_exclusive_until_it_expires(o: Arc<dyn Outbox>) {
    o.enqueue(&event(), &[delivery("a", "c")], 0, &EnqueueWith::default()).await.unwrap();
    assert_eq!(o.lease(0, 10, 5_000).await.unwrap().len(), 1);
    assert!(
        o.lease(10, 10, 5_000).await.unwrap().is_empty(),
        "a second worker must not get a leased delivery"
    );
    assert_eq!(o.next_due().await.unwrap(), Some(5_000), "a leased delivery is due when its lease expires");
    // The first worker died: after expiry the delivery comes back.
    let again = o.lease(5_000, 10, 5_000).await.unwrap();
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].id, "a");
}

async fn finish_reschedules_and_releases(o: Arc<dyn Outbox>) {
    o.enqueue(&event(), &[delivery("a", "c")], 0, &EnqueueWith::default()).await.unwrap();
    o.lease(0, 10, 60_000).await.unwrap();
    o.finish("a", record(10, "transient"), Next::RetryAt(2_000)).await.unwrap();
    assert!(o.lease(1_999, 10, 60_000).await.unwrap().is_empty(), "not due before its retry time");
    assert_eq!(o.next_due().await.unwrap(), Some(2_000));
    let d = o.lease(2_000, 10, 60_000).await.unwrap();
    assert_eq!(d.len(), 1);
    assert_eq!(d[0].state, DeliveryState::Retrying);
    assert_eq!(d[0].attempts, 1);
    assert_eq!(d[0].last_error.as_deref(), Some("ok"));

    // An attempt cut off by shutdown is recorded, and made again, without counting.
    o.finish("a", record(2_001, "interrupted"), Next::RetryAt(2_001)).await.unwrap();
    let d = o.lease(2_001, 10, 60_000).await.unwrap();
    assert_eq!(d.len(), 1, "an interrupted attempt is due again");
    assert_eq!(d[0].attempts, 1, "an interrupted attempt does not count");
    let (_, history) = o.get("a").await.unwrap().expect("stored");
    let outcomes: Vec<&str> = history.iter().map(|a| a.outcome.as_str()).collect();
    assert_eq!(outcomes, ["transient", "interrupted"]);
}

async fn dead_and_delivered_are_final(o: Arc<dyn Outbox>) {
    o.enqueue(&event(), &[delivery("dead", "c"), delivery("done", "c")], 0, &EnqueueWith::default())
        .await
        .unwrap();
    o.lease(0, 10, 60_000).await.unwrap();
    o.finish("dead", record(1, "permanent"), Next::Dead("310000 keywords not in content".into()))
        .await
        .unwrap();
    o.finish("done", record(1, "delivered"), Next::Delivered).await.unwrap();
    assert!(o.lease(i64::MAX / 2, 10, 60_000).await.unwrap().is_empty(), "final deliveries never come back");
    assert_eq!(o.next_due().await.unwrap(), None);
}

async fn leases_respect_the_limit_and_due_order(o: Arc<dyn Outbox>) {
    o.enqueue(&event(), &[delivery("late", "c")], 500, &EnqueueWith::default()).await.unwrap();
    o.enqueue(&event(), &[delivery("early", "c")], 100, &EnqueueWith::default()).await.unwrap();
    o.enqueue(&event(), &[delivery("mid", "c")], 300, &EnqueueWith::default()).await.unwrap();
    let first = o.lease(1_000, 2, 60_000).await.unwrap();
    let ids: Vec<&str> = first.iter().map(|d| d.id.as_str()).collect();
    assert_eq!(ids, ["early", "mid"], "the oldest due deliveries first, at most `limit`");
    let rest = o.lease(1_000, 2, 60_000).await.unwrap();
    assert_eq!(rest.len(), 1);
    assert_eq!(rest[0].id, "late");
}

async fn a_lease_can_pass_over_channels(o: Arc<dyn Outbox>) {
    let with = EnqueueWith::default();
    o.enqueue(&event(), &[delivery("slow-1", "slow"), delivery("fast-1", "fast")], 100, &with).await.unwrap();
    o.enqueue(&event(), &[delivery("other-1", "other"), delivery("slow-2", "slow")], 200, &with)
        .await
        .unwrap();
    let skip = ["slow".to_string()];
    let all = ["slow".to_string(), "fast".to_string(), "none".to_string()];
    let mut due = o.due_channels(&all, 1_000).await.unwrap();
    due.sort();
    assert_eq!(due, ["fast", "slow"], "the channels with a delivery due");
    assert!(o.due_channels(&all, 50).await.unwrap().is_empty(), "nothing due yet");
    let got = o.lease_skipping(1_000, 10, 60_000, &skip).await.unwrap();
    let mut ids: Vec<&str> = got.iter().map(|d| d.id.as_str()).collect();
    ids.sort();
    assert_eq!(ids, ["fast-1", "other-1"], "the skipped channel's deliveries stay where they are");
    assert_eq!(o.due_channels(&all, 1_000).await.unwrap(), ["slow"], "leased ones are not due");
    let rest = o.lease(1_000, 10, 60_000).await.unwrap();
    let mut ids: Vec<&str> = rest.iter().map(|d| d.id.as_str()).collect();
    ids.sort();
    assert_eq!(ids, ["slow-1", "slow-2"], "and are leased once nothing skips them");
}

async fn duplicates_within_the_window_are_stored_without_deliveries(o: Arc<dyn Outbox>) {
    let dedup = Dedup { key: "flow|payments|42|test|unit|failure|true".into(), window_ms: 600_000 };
    let first = Event::sample();
    let r = o
        .enqueue(
            &first,
            &[delivery("a", "ding")],
            1_000,
            &EnqueueWith { dedup: Some(&dedup), ..Default::default() },
        )
        .await
        .unwrap();
    assert_eq!(r.duplicate_of, None);
    let mut second = Event::sample();
    second.event_id = "second".into();
    let r = o
        .enqueue(
            &second,
            &[delivery("b", "ding")],
            2_000,
            &EnqueueWith { dedup: Some(&dedup), ..Default::default() },
        )
        .await
        .unwrap();
    assert_eq!(r.duplicate_of.as_deref(), Some(first.event_id.as_str()));
    assert!(o.get("b").await.unwrap().is_none(), "a duplicate's deliveries are not stored");
    let mut third = Event::sample();
    third.event_id = "third".into();
    let r = o
        .enqueue(
            &third,
            &[delivery("c", "ding")],
            1_000 + 600_001,
            &EnqueueWith { dedup: Some(&dedup), ..Default::default() },
        )
        .await
        .unwrap();
    assert_eq!(r.duplicate_of, None, "outside the window it is sent again");
}

async fn list_filters_and_replay_dead_letters(o: Arc<dyn Outbox>) {
    let e = Event::sample();
    o.enqueue(
        &e,
        &[delivery("a", "ding"), delivery("b", "ding"), delivery("c", "mail")],
        0,
        &EnqueueWith::default(),
    )
    .await
    .unwrap();
    o.lease(0, 10, 60_000).await.unwrap();
    for id in ["a", "b", "c"] {
        o.finish(id, record(5, "permanent"), Next::Dead("no".into())).await.unwrap();
    }
    let dead_ding = ListFilter { state: Some(DeliveryState::Dead), channel: Some("ding".into()), limit: 10 };
    assert_eq!(o.list(&dead_ding).await.unwrap().len(), 2);
    assert_eq!(o.list(&ListFilter { limit: 1, ..Default::default() }).await.unwrap().len(), 1);

    assert_eq!(o.replay(&["c".to_string()], &ListFilter::default(), 50).await.unwrap(), 1);
    assert_eq!(o.replay(&[], &dead_ding, 60).await.unwrap(), 2);
    assert_eq!(o.replay(&[], &dead_ding, 70).await.unwrap(), 0, "nothing dead is left");
    let due = o.lease(100, 10, 60_000).await.unwrap();
    assert_eq!(due.len(), 3);
    assert!(due.iter().all(|d| d.attempts == 0 && d.state == DeliveryState::Pending));
    let (a, attempts) = o.get("a").await.unwrap().unwrap();
    assert_eq!(a.scheduled_at, 60);
    assert_eq!(attempts.len(), 1, "history is kept");

    // A retrying delivery with an attempt in flight (leased) is not replayed under it.
    o.finish("a", record(110, "transient"), Next::RetryAt(200)).await.unwrap();
    assert_eq!(o.lease(200, 1, 60_000).await.unwrap()[0].id, "a");
    assert_eq!(o.replay(&["a".to_string()], &ListFilter::default(), 210).await.unwrap(), 0);
    let retrying = ListFilter { state: Some(DeliveryState::Retrying), ..Default::default() };
    assert_eq!(o.replay(&[], &retrying, 210).await.unwrap(), 0);
    assert!(o.lease(210, 10, 60_000).await.unwrap().is_empty(), "still leased to its attempt");
    o.finish("a", record(220, "transient"), Next::RetryAt(900)).await.unwrap();
    assert_eq!(o.replay(&["a".to_string()], &ListFilter::default(), 230).await.unwrap(), 1);
}
