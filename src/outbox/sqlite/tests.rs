//! Schema migrations against stores written by earlier versions.

use rusqlite::{params, Connection};

use super::{schema, SqliteOutbox};
use crate::channels::{Message, MessageBody};
use crate::clock::Clock;
use crate::outbox::{DeliveryState, Headline, ListFilter, Outbox};

fn message(text: &str) -> Message {
    Message { body: MessageBody::Text { text: text.into() }, template_errors: vec![] }
}

/// A store as version 4 left it: a delivered, a dead (with its attempt) and a leased delivery.
fn version_4_store(dir: &std::path::Path) {
    let mut conn = Connection::open(dir.join("herald.db")).unwrap();
    schema::configure(&conn).unwrap();
    schema::migrate_to(&mut conn, 4).unwrap();
    conn.execute(
        "INSERT INTO events (id, source, status, received_at, body) VALUES ('e1', 'flow', 'failure', 10, '{}')",
        [],
    )
    .unwrap();
    let headline = serde_json::to_string(&Headline {
        text: "h".into(),
        url: None,
        status: "failure".into(),
        covers: None,
        ..Default::default()
    });
    for (id, state, leased_until) in
        [("d-sent", "delivered", None), ("d-dead", "dead", None), ("d-leased", "pending", Some(500))]
    {
        conn.execute(
            "INSERT INTO deliveries (id, event_id, rule, channel, message, headline, state, attempts, created_at, \
             scheduled_at, next_at, leased_until) VALUES (?1, 'e1', 'r', 'ding', ?2, ?3, ?4, 0, 10, 10, 20, ?5)",
            params![id, serde_json::to_string(&message(id)).unwrap(), headline.as_ref().unwrap(), state, leased_until],
        )
        .unwrap();
    }
    conn.execute(
        "INSERT INTO attempts (delivery_id, at, outcome, http_status, code, detail, latency_ms) \
         VALUES ('d-dead', 30, 'permanent', 200, 310000, 'keywords not in content', 12)",
        [],
    )
    .unwrap();
}

#[tokio::test]
async fn a_version_4_store_migrates_with_everything_readable() {
    let dir = tempfile::tempdir().unwrap();
    version_4_store(dir.path());
    let o = SqliteOutbox::open(dir.path()).unwrap();

    let (dead, attempts) = o.get("d-dead").await.unwrap().unwrap();
    assert_eq!(
        (dead.state, dead.event_id.as_str(), dead.message),
        (DeliveryState::Dead, "e1", message("d-dead"))
    );
    assert_eq!(dead.headline.text, "h");
    assert_eq!(attempts.len(), 1);
    assert_eq!((attempts[0].code, attempts[0].detail.as_str()), (Some(310000), "keywords not in content"));

    // The run that held the lease is gone: the delivery is due at once.
    let back = o.lease(10, 10, 60_000).await.unwrap();
    assert_eq!(back.iter().map(|d| d.id.as_str()).collect::<Vec<_>>(), ["d-leased"]);
    let all = o.list(&ListFilter { limit: 10, ..Default::default() }).await.unwrap();
    assert_eq!(all.len(), 3);
    let filter = ListFilter { state: Some(DeliveryState::Delivered), limit: 10, ..Default::default() };
    assert_eq!(o.list(&filter).await.unwrap()[0].id, "d-sent");
    drop(o);

    let conn = Connection::open(dir.path().join("herald.db")).unwrap();
    let version: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0)).unwrap();
    assert_eq!(version as usize, schema::version());
}

#[tokio::test]
async fn a_lockout_recorded_before_pauses_were_survives_the_upgrade() {
    let dir = tempfile::tempdir().unwrap();
    version_4_store(dir.path());
    let now = crate::clock::SystemClock.now_ms();
    {
        let mut conn = Connection::open(dir.path().join("herald.db")).unwrap();
        schema::migrate_to(&mut conn, 8).unwrap();
        // A DingTalk lockout a minute ago, a WeCom one an hour ago, and a plain failure.
        for (at, code) in [(now - 60_000, 130101), (now - 3_600_000, 45009), (now - 30_000, 310000)] {
            conn.execute(
                "INSERT INTO attempts (delivery_seq, at, outcome, http_status, code, detail, latency_ms) \
                 SELECT seq, ?1, 'transient', 200, ?2, 'x', 1 FROM deliveries WHERE id = 'd-leased'",
                params![at, code],
            )
            .unwrap();
        }
    }
    let o = SqliteOutbox::open(dir.path()).unwrap();
    let pauses = o.pauses_since(now - 600_000).await.unwrap();
    assert_eq!(pauses.len(), 1, "{pauses:?}");
    assert_eq!((pauses[0].channel.as_str(), pauses[0].until), ("ding", now - 60_000 + 600_000));
}

#[tokio::test]
async fn a_shared_open_refuses_a_store_of_another_schema_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    version_4_store(dir.path());
    let version = |dir: &std::path::Path| -> i64 {
        let conn = Connection::open(dir.join("herald.db")).unwrap();
        conn.pragma_query_value(None, "user_version", |r| r.get(0)).unwrap()
    };
    // `herald deliveries` beside a gateway of the version that wrote it: not migrated under it.
    let err = SqliteOutbox::open_shared(dir.path()).err().expect("refused");
    assert!(err.0.contains("has schema version 4 and this herald needs"), "{err}");
    assert_eq!(version(dir.path()), 4, "left as it was");
    // Once a gateway of this version has migrated it, it opens.
    drop(SqliteOutbox::open(dir.path()).unwrap());
    assert_eq!(version(dir.path()), schema::version() as i64);
    let shared = SqliteOutbox::open_shared(dir.path()).unwrap();
    assert_eq!(shared.list(&ListFilter { limit: 10, ..Default::default() }).await.unwrap().len(), 3);
    drop(shared);
    // A store a newer Herald wrote is refused too.
    Connection::open(dir.path().join("herald.db")).unwrap().pragma_update(None, "user_version", 99).unwrap();
    let err = SqliteOutbox::open_shared(dir.path()).err().expect("refused");
    assert!(err.0.contains("written by a newer Herald (schema version 99"), "{err}");
}
