//! The store on a full disk: an enqueue whose message the disk refuses (larger than the page
//! cache, so written out mid-transaction) makes SQLite end the batch's transaction; every
//! operation of the batch is refused with the reason, nothing of it is stored, and the store
//! works again once there is room. The disk is "full" through the process's file size limit
//! (RLIMIT_FSIZE), so this test has a process of its own.

use std::sync::Arc;

use herald::channels::{Message, MessageBody};
use herald::event::{Event, Status};
use herald::outbox::sqlite::SqliteOutbox;
use herald::outbox::{EnqueueWith, Headline, ListFilter, NewDelivery, Outbox};

fn delivery(id: &str, text: String) -> NewDelivery {
    NewDelivery {
        id: id.into(),
        rule: "r".into(),
        channel: "c".into(),
        message: Message { body: MessageBody::Text { text }, template_errors: vec![] },
        headline: Headline::default(),
        hold: None,
        due_at: None,
        repeat: None,
    }
}

fn event(id: &str) -> Event {
    let mut e = Event::new("flow", Status::Failure, "FAIL", true);
    e.event_id = id.into();
    e
}

/// Sets the soft limit on the size of any file this process writes.
fn limit_file_size(bytes: libc::rlim_t) {
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: plain libc calls on a local struct; SIGXFSZ ignored so a write past the limit
    // fails with EFBIG instead of killing the process.
    unsafe {
        assert_eq!(libc::getrlimit(libc::RLIMIT_FSIZE, &mut limit), 0);
        limit.rlim_cur = bytes.min(limit.rlim_max);
        assert_eq!(libc::setrlimit(libc::RLIMIT_FSIZE, &limit), 0);
        libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_the_disk_refuses_is_refused_whole_and_the_store_recovers() {
    let dir = tempfile::tempdir().unwrap();
    let o = Arc::new(SqliteOutbox::open(dir.path()).unwrap());
    o.enqueue(&event("e0"), &[delivery("d0", "before".into())], 1, &EnqueueWith::default()).await.unwrap();
    o.flush().await.unwrap();

    // Room for small writes, not for a message larger than the store's page cache (8 MiB),
    // which SQLite must write out in the middle of the transaction.
    limit_file_size(4 << 20);
    let other = rusqlite::Connection::open(o.path()).unwrap();
    other.execute_batch("BEGIN IMMEDIATE").unwrap();
    let waiting = tokio::spawn({
        let o = o.clone();
        async move { o.flush().await }
    });
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let enqueue = |id: &'static str, text: String| {
        let o = o.clone();
        tokio::spawn(async move {
            o.enqueue(&event(id), &[delivery(&format!("d-{id}"), text)], 2, &EnqueueWith::default()).await
        })
    };
    let small = enqueue("e1", "small".into());
    let huge = enqueue("e2", "x".repeat(12 << 20));
    // Time to serialize the 12 MB message on the caller's thread (a debug build is slow), so
    // that both enqueues are queued when the lock goes and share the writer's next batch.
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    other.execute_batch("COMMIT").unwrap();
    waiting.await.unwrap().unwrap();
    let (small, huge) = (small.await.unwrap(), huge.await.unwrap());
    limit_file_size(libc::RLIM_INFINITY);

    // SQLite ended the transaction itself: the failure is the store's, and the whole batch
    // is refused, the small enqueue with the reason.
    let huge = huge.expect_err("the disk has no room for it");
    assert!(huge.to_string().contains("disk I/O error"), "{huge}");
    let small = small.expect_err("its batch was refused with it");
    assert!(small.to_string().contains("rolled back the batch: disk I/O error"), "{small}");
    let ids: Vec<String> = o
        .list(&ListFilter { limit: 10, ..Default::default() })
        .await
        .unwrap()
        .into_iter()
        .map(|d| d.id)
        .collect();
    assert_eq!(ids, ["d0"], "nothing of the refused batch is stored");
    let events: Vec<String> = other
        .prepare("SELECT id FROM events ORDER BY seq")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(events, ["e0"]);

    // With room again, the store writes as before.
    o.enqueue(&event("e3"), &[delivery("d3", "after".into())], 3, &EnqueueWith::default()).await.unwrap();
    assert!(o.get("d3").await.unwrap().is_some());
    o.check().await.expect("the store can commit");
}
