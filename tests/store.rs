//! The durable SQLite outbox: the shared contract, reopening keeps everything, inbound
//! de-duplication, listing and replay, and group commit under concurrency.

mod support;

use std::sync::Arc;

use herald::channels::{Message, MessageBody};
use herald::event::{Event, Status};
use herald::outbox::sqlite::SqliteOutbox;
use herald::outbox::{
    AttemptRecord, DeliveryState, EnqueueWith, Headline, ListFilter, NewDelivery, Next, Outbox, Repeat,
};

fn delivery(id: &str, channel: &str) -> NewDelivery {
    NewDelivery {
        id: id.into(),
        rule: "r".into(),
        channel: channel.into(),
        message: Message {
            body: MessageBody::Text { text: format!("msg {id}") },
            template_errors: vec!["e".into()],
        },
        headline: Headline {
            text: format!("headline {id}"),
            url: Some("https://ci/1".into()),
            status: "failure".into(),
            covers: None,
            ..Default::default()
        },
        hold: None,
        due_at: None,
        repeat: None,
    }
}

fn attempt(outcome: &str) -> AttemptRecord {
    AttemptRecord {
        at: 5,
        outcome: outcome.into(),
        http_status: Some(200),
        code: Some(310000),
        detail: "keywords not in content".into(),
        latency_ms: 12,
        pause_ms: None,
    }
}

#[tokio::test]
async fn the_sqlite_outbox_meets_the_contract() {
    let dirs = std::sync::Mutex::new(Vec::new());
    support::outbox_contract::run_contract(|| {
        let dir = tempfile::tempdir().unwrap();
        let o = SqliteOutbox::open(dir.path()).unwrap();
        dirs.lock().unwrap().push(dir);
        Arc::new(o) as Arc<dyn Outbox>
    })
    .await;
}

#[tokio::test]
async fn everything_survives_reopening() {
    let dir = tempfile::tempdir().unwrap();
    {
        let o = SqliteOutbox::open(dir.path()).unwrap();
        let e = Event::sample();
        o.enqueue(&e, &[delivery("a", "ding"), delivery("b", "mail")], 100, &EnqueueWith::default())
            .await
            .unwrap();
        o.lease(100, 10, 60_000).await.unwrap();
        o.finish("a", attempt("permanent"), Next::Dead("keywords not in content".into())).await.unwrap();
        o.flush().await.unwrap();
    }
    let o = SqliteOutbox::open(dir.path()).unwrap();
    let (a, attempts) = o.get("a").await.unwrap().unwrap();
    assert_eq!(a.state, DeliveryState::Dead);
    assert_eq!(a.last_error.as_deref(), Some("keywords not in content"));
    assert_eq!(attempts, vec![attempt("permanent")]);
    assert_eq!(a.message.template_errors, vec!["e"]);
    // b was leased by the process that went away: reopening releases its lease at once.
    let back = o.lease(100, 10, 60_000).await.unwrap();
    assert_eq!(back.len(), 1);
    assert_eq!(back[0].id, "b");
    assert_eq!(back[0].message.body, MessageBody::Text { text: "msg b".into() });
}

#[tokio::test]
async fn concurrent_enqueues_are_all_committed() {
    let dir = tempfile::tempdir().unwrap();
    let o = Arc::new(SqliteOutbox::open(dir.path()).unwrap());
    let tasks: Vec<_> = (0..200)
        .map(|i| {
            let o = o.clone();
            tokio::spawn(async move {
                let mut e = Event::new("flow", Status::Success, "SUCCESS", true);
                e.event_id = format!("e{i}");
                o.enqueue(&e, &[delivery(&format!("d{i}"), "c")], i, &EnqueueWith::default()).await.unwrap();
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    drop(o);
    let o = SqliteOutbox::open(dir.path()).unwrap();
    assert_eq!(o.list(&ListFilter { limit: 1000, ..Default::default() }).await.unwrap().len(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_lock_held_by_another_process_is_waited_for_not_failed() {
    let dir = tempfile::tempdir().unwrap();
    let o = Arc::new(SqliteOutbox::open(dir.path()).unwrap());
    // `herald deliveries retry`, or a backup, holds the write lock for a moment.
    let other = rusqlite::Connection::open(dir.path().join("herald.db")).unwrap();
    other.execute_batch("BEGIN IMMEDIATE; UPDATE deliveries SET attempts = attempts;").unwrap();
    // An enqueue that reads before it writes (the duplicate check) and a lease, meanwhile.
    let writes = {
        let o = o.clone();
        tokio::spawn(async move {
            let e = Event::new("flow", Status::Success, "SUCCESS", true);
            let dedup = herald::outbox::Dedup { key: "k".into(), window_ms: 60_000 };
            let with = EnqueueWith { dedup: Some(&dedup), ..Default::default() };
            o.enqueue(&e, &[delivery("d1", "c")], 1, &with).await?;
            o.lease(1, 10, 60_000).await
        })
    };
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    other.execute_batch("COMMIT").unwrap();
    let leased = writes.await.unwrap().expect("the writes waited for the lock");
    assert_eq!(leased.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operation_that_fails_part_way_leaves_nothing_and_its_batch_is_committed() {
    let dir = tempfile::tempdir().unwrap();
    let o = Arc::new(SqliteOutbox::open(dir.path()).unwrap());
    let event = |id: &str| {
        let mut e = Event::new("flow", Status::Success, "SUCCESS", true);
        e.event_id = id.into();
        e
    };
    o.enqueue(&event("e1"), &[delivery("x", "c")], 1, &EnqueueWith::default()).await.unwrap();
    // The writer waits for another process's lock while both enqueues queue up: they share
    // the next batch.
    let other = rusqlite::Connection::open(dir.path().join("herald.db")).unwrap();
    other.execute_batch("BEGIN IMMEDIATE; UPDATE deliveries SET attempts = attempts;").unwrap();
    let waiting = tokio::spawn({
        let o = o.clone();
        async move { o.flush().await }
    });
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let enqueue = |id: &'static str, deliveries: Vec<NewDelivery>| {
        let o = o.clone();
        tokio::spawn(async move { o.enqueue(&event(id), &deliveries, 2, &EnqueueWith::default()).await })
    };
    // e2's event row, its repeat claim and its first delivery are written before its second
    // delivery is refused (that id is taken).
    let nag = NewDelivery { repeat: Some(repeat()), ..delivery("y", "c") };
    let failing = enqueue("e2", vec![nag, delivery("x", "c")]);
    let fine = enqueue("e3", vec![delivery("z", "c")]);
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    other.execute_batch("COMMIT").unwrap();
    waiting.await.unwrap().unwrap();

    let err = failing.await.unwrap().expect_err("a taken delivery id is refused");
    assert!(err.to_string().contains("UNIQUE"), "{err}");
    fine.await.unwrap().expect("the rest of the batch is stored");
    assert!(o.get("z").await.unwrap().is_some());
    assert!(o.get("y").await.unwrap().is_none(), "nothing of the failed enqueue is stored");
    let events: i64 =
        other.query_row("SELECT count(*) FROM events WHERE id = 'e2'", [], |r| r.get(0)).unwrap();
    assert_eq!(events, 0, "the failed enqueue's event row was not committed");
    let retry = NewDelivery { repeat: Some(repeat()), ..delivery("y2", "c") };
    let again = o.enqueue(&event("e2"), &[retry], 3, &EnqueueWith::default()).await.unwrap();
    assert!(again.suppressed.is_empty(), "the failed enqueue did not claim its repeat key");
}

#[tokio::test]
async fn one_gateway_owns_a_data_dir() {
    let dir = tempfile::tempdir().unwrap();
    let first = SqliteOutbox::open(dir.path()).unwrap();
    let second = SqliteOutbox::open(dir.path());
    assert!(second.is_err_and(|e| e.to_string().contains("in use by another Herald")));
    // The operator's CLI may still read and replay beside it.
    let shared = SqliteOutbox::open_shared(dir.path()).unwrap();
    assert!(shared.list(&ListFilter { limit: 10, ..Default::default() }).await.unwrap().is_empty());
    drop(first);
    assert!(SqliteOutbox::open(dir.path()).is_ok(), "the lock goes with the process that held it");
}

fn repeat() -> Repeat {
    Repeat { key: "repeat-key".into(), window_ms: 60_000 }
}

#[tokio::test]
async fn holds_and_claims_are_stored() {
    let dir = tempfile::tempdir().unwrap();
    {
        let o = SqliteOutbox::open(dir.path()).unwrap();
        let held =
            NewDelivery { hold: Some("group-1".into()), due_at: Some(30_000), ..delivery("a", "ding") };
        let also =
            NewDelivery { hold: Some("group-1".into()), due_at: Some(30_000), ..delivery("b", "ding") };
        let nag = NewDelivery { repeat: Some(repeat()), ..delivery("c", "ding") };
        o.enqueue(&Event::sample(), &[held, also, nag], 0, &EnqueueWith::default()).await.unwrap();
    }
    let o = SqliteOutbox::open(dir.path()).unwrap();
    let held = o.held("group-1", 0).await.unwrap();
    assert_eq!(held.iter().map(|d| d.id.as_str()).collect::<Vec<_>>(), ["a", "b"]);
    assert_eq!(o.hold_due("group-1", 0).await.unwrap(), Some(30_000));
    assert_eq!(o.lease(0, 10, 60_000).await.unwrap().len(), 1, "held deliveries wait for their due time");
    let again = |id: &str| NewDelivery { repeat: Some(repeat()), ..delivery(id, "ding") };
    let enqueued = o.enqueue(&Event::sample(), &[again("d")], 59_999, &EnqueueWith::default()).await.unwrap();
    assert_eq!(enqueued.suppressed, ["d"], "claims survive a restart");
    let enqueued = o.enqueue(&Event::sample(), &[again("e")], 60_000, &EnqueueWith::default()).await.unwrap();
    assert!(enqueued.suppressed.is_empty());
}

#[tokio::test]
async fn a_body_that_repeats_its_event_is_stored_once_and_read_back_whole() {
    let dir = tempfile::tempdir().unwrap();
    let o = SqliteOutbox::open(dir.path()).unwrap();
    let event = Event::sample();
    // A body that begins with the event's JSON and adds members of its own (a user template
    // may write one); the built-in webhook body is the event's JSON alone.
    let json = serde_json::to_string(&event).unwrap();
    let body = format!("{},\"rule\":\"r\",\"channel\":\"audit\"}}", json.strip_suffix('}').unwrap());
    let raw = |body: &str| Message {
        body: MessageBody::Raw { body: body.to_string(), content_type: "application/json".into() },
        template_errors: vec![],
    };
    let webhook = NewDelivery { message: raw(&body), ..delivery("w", "audit") };
    let other = NewDelivery { message: raw("{\"text\": \"not the event\"}"), ..delivery("o", "audit") };
    o.enqueue(&event, &[webhook, other], 100, &EnqueueWith::default()).await.unwrap();

    let (w, _) = o.get("w").await.unwrap().unwrap();
    assert_eq!(w.message, raw(&body), "read back byte for byte");
    let leased = o.lease(100, 10, 60_000).await.unwrap();
    assert_eq!(leased.iter().find(|d| d.id == "w").unwrap().message, raw(&body));
    assert_eq!(leased.iter().find(|d| d.id == "o").unwrap().message, raw("{\"text\": \"not the event\"}"));
    o.flush().await.unwrap();

    let db = rusqlite::Connection::open(o.path()).unwrap();
    let stored: Vec<(i64, Option<i64>)> = db
        .prepare("SELECT length(message), event_prefix FROM delivery_bodies ORDER BY seq")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let event_len = serde_json::to_string(&event).unwrap().len() as i64;
    assert_eq!(
        stored[0].1,
        Some(event_len - 1),
        "the event's JSON, less its closing brace, is not stored again"
    );
    assert!(stored[0].0 < 200, "only the rule's fields are: {} bytes", stored[0].0);
    assert_eq!(stored[1].1, None, "any other body is stored whole");

    let (kind, size): (String, i64) = db
        .query_row("SELECT typeof(body), length(body) FROM events", [], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap();
    assert_eq!(kind, "blob", "the event's JSON is stored packed");
    assert!(size < event_len, "packed: {size} bytes for {event_len} of JSON");
}

#[tokio::test]
async fn an_event_stored_as_text_before_packing_is_still_read() {
    let dir = tempfile::tempdir().unwrap();
    let event = Event::sample();
    let json = serde_json::to_string(&event).unwrap();
    let message = Message {
        body: MessageBody::Raw { body: json.clone(), content_type: "application/json".into() },
        template_errors: vec![],
    };
    {
        let o = SqliteOutbox::open(dir.path()).unwrap();
        let webhook = NewDelivery { message: message.clone(), ..delivery("w", "audit") };
        o.enqueue(&event, &[webhook], 100, &EnqueueWith::default()).await.unwrap();
        // As a store of schema version 6 or earlier held it: the JSON as text.
        let db = rusqlite::Connection::open(o.path()).unwrap();
        db.execute("UPDATE events SET body = ?1", [&json]).unwrap();
    }
    let o = SqliteOutbox::open(dir.path()).unwrap();
    assert_eq!(o.get("w").await.unwrap().unwrap().0.message, message);

    // A packed body that does not unpack is an error that says so, not a wrong message.
    let db = rusqlite::Connection::open(o.path()).unwrap();
    db.execute("UPDATE events SET body = x'ffffffff00'", []).unwrap();
    let err = o.get("w").await.unwrap_err().to_string();
    assert!(err.contains("stored event"), "{err}");
}

/// The probe behind `/healthz`: a write the store can commit is `Ok`; while another connection
/// holds the write lock, the store's own reason (after its 5 s busy wait); `Ok` again after.
#[tokio::test]
async fn check_says_whether_a_write_can_be_committed() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteOutbox::open(dir.path()).unwrap();
    store.check().await.expect("a fresh store can write");
    let other = rusqlite::Connection::open(store.path()).unwrap();
    other.execute_batch("BEGIN EXCLUSIVE").unwrap();
    let err = store.check().await.expect_err("the write lock is held elsewhere");
    assert!(err.to_string().contains("locked"), "{err}");
    other.execute_batch("ROLLBACK").unwrap();
    store.check().await.expect("the lock is gone");
}
