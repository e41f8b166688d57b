//! The writer thread: the one owner of the connection. It takes every operation waiting in its
//! queue, runs them in one transaction, commits once, and only then answers each caller (group
//! commit): concurrent webhooks share one fsync, and no caller hears "stored" before it is.

use std::sync::mpsc;
use std::time::{Duration, Instant};

use rusqlite::{Connection, Transaction, TransactionBehavior};
use tokio::sync::oneshot;

use super::{sql, StoredEvent, StoredNew};
use crate::clock::Millis;
use crate::outbox::{AttemptRecord, Dedup, Delivery, Enqueued, ListFilter, Next, OutboxError, Sent};
use crate::state::Track;

/// The most operations committed in one transaction.
const MAX_BATCH: usize = 512;

pub type Reply<T> = oneshot::Sender<Result<T, OutboxError>>;

/// Answers a caller once the batch's commit has succeeded (`None`) or failed.
type Answer = Box<dyn FnOnce(Option<&OutboxError>)>;

/// One operation for the writer thread.
pub enum Op {
    Enqueue {
        event: StoredEvent,
        deliveries: Vec<StoredNew>,
        now: Millis,
        dedup: Option<Dedup>,
        track: Option<(String, String)>,
        lease_ms: Option<i64>,
        reply: Reply<Enqueued>,
    },
    Track {
        key: String,
        reply: Reply<Option<Track>>,
    },
    Held {
        key: String,
        reply: Reply<Vec<Delivery>>,
    },
    HoldDue {
        key: String,
        now: Millis,
        reply: Reply<Option<Millis>>,
    },
    Lease {
        now: Millis,
        limit: usize,
        lease_ms: i64,
        skip: Vec<String>,
        reply: Reply<Vec<Delivery>>,
    },
    DueChannels {
        channels: Vec<String>,
        now: Millis,
        reply: Reply<Vec<String>>,
    },
    /// Recorded without an answer: the worker does not wait for the commit (see
    /// `Outbox::finish`); a failure is logged here.
    Finish {
        id: String,
        attempt: AttemptRecord,
        next: Next,
    },
    /// Answered once every operation before it is committed.
    Flush {
        reply: Reply<()>,
    },
    /// Writes one row, so the answer says whether a write can be committed now.
    Check {
        now: Millis,
        reply: Reply<()>,
    },
    NextDue {
        reply: Reply<Option<Millis>>,
    },
    List {
        filter: ListFilter,
        reply: Reply<Vec<Delivery>>,
    },
    Get {
        id: String,
        reply: Reply<Option<(Delivery, Vec<AttemptRecord>)>>,
    },
    Replay {
        ids: Vec<String>,
        filter: ListFilter,
        now: Millis,
        reply: Reply<usize>,
    },
    Defer {
        ids: Vec<String>,
        at: Millis,
        reply: Reply<()>,
    },
    Backlog {
        channels: Vec<String>,
        now: Millis,
        limit: usize,
        reply: Reply<Vec<Delivery>>,
    },
    Merge {
        ids: Vec<String>,
        summary: StoredNew,
        event_id: String,
        at: Millis,
        reply: Reply<()>,
    },
    SentSince {
        since: Millis,
        reply: Reply<Vec<Sent>>,
    },
}

/// How long the write-ahead log may collect commits before the writer copies them back into
/// the database (a passive checkpoint). SQLite's own automatic checkpoint runs inside a COMMIT,
/// so the callers of that batch waited for it; this one runs after they have their answers,
/// and often enough that each copy is small (at 15,000 events a second, about 1 MB). A
/// checkpoint thread of its own was tried and measured worse: under steady writes it never
/// caught up at the moment the log could restart, the log grew, and SQLite's backstop then
/// copied tens of megabytes inside a commit.
const CHECKPOINT_EVERY: Duration = Duration::from_millis(25);

/// The log size (pages) at which SQLite checkpoints inside a commit anyway: a backstop.
const BACKSTOP_PAGES: i64 = 2000;

/// The writer thread's loop: batch, run, commit, answer, and checkpoint when due. Returns when
/// every sender is gone.
pub fn run(mut conn: Connection, rx: mpsc::Receiver<Op>) {
    if let Err(e) = conn.pragma_update(None, "wal_autocheckpoint", BACKSTOP_PAGES) {
        tracing::warn!(error = %e, "cannot set the automatic checkpoint");
    }
    let mut batch = Vec::with_capacity(MAX_BATCH);
    // When the first commit not yet copied back was made.
    let mut uncopied: Option<Instant> = None;
    loop {
        let first = match uncopied {
            None => rx.recv().map_err(|_| mpsc::RecvTimeoutError::Disconnected),
            Some(since) => rx.recv_timeout(CHECKPOINT_EVERY.saturating_sub(since.elapsed())),
        };
        match first {
            Ok(op) => batch.push(op),
            Err(mpsc::RecvTimeoutError::Timeout) => {
                checkpoint(&conn);
                uncopied = None;
                continue;
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        }
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(op) => batch.push(op),
                Err(_) => break,
            }
        }
        commit(&mut conn, &mut batch);
        let since = *uncopied.get_or_insert_with(Instant::now);
        if since.elapsed() >= CHECKPOINT_EVERY {
            checkpoint(&conn);
            uncopied = None;
        }
    }
    if uncopied.is_some() {
        checkpoint(&conn);
    }
}

/// Runs `batch` in one transaction, commits once, and answers every caller.
///
/// The transaction takes the write lock as it begins, waiting for another process that holds
/// it (`herald deliveries retry`, a backup) up to the busy timeout. A transaction that began
/// by reading would be refused at its first write without waiting, whenever another process
/// held the lock at that moment, and with it every operation of the batch.
fn commit(conn: &mut Connection, batch: &mut Vec<Op>) {
    let tx = match conn.transaction_with_behavior(TransactionBehavior::Immediate) {
        Ok(tx) => tx,
        Err(e) => {
            let err = OutboxError(format!("cannot begin a transaction: {e}"));
            batch.drain(..).for_each(|op| fail(op, &err));
            return;
        }
    };
    let ops = batch.len();
    let started = Instant::now();
    let answers: Vec<Answer> = batch.drain(..).map(|op| apply(&tx, op)).collect();
    let applied = started.elapsed();
    let committed = tx.commit();
    tracing::trace!(
        ops,
        apply_us = applied.as_micros() as u64,
        commit_us = (started.elapsed() - applied).as_micros() as u64,
        "store batch"
    );
    match committed {
        Ok(()) => answers.into_iter().for_each(|a| a(None)),
        Err(e) => {
            let err = OutboxError(format!("commit failed: {e}"));
            tracing::error!("{err}");
            answers.into_iter().for_each(|a| a(Some(&err)));
        }
    }
}

/// Copies what the log holds back into the database, without waiting for anyone.
fn checkpoint(conn: &Connection) {
    let started = Instant::now();
    // The answer's row: whether it was blocked, the log's frames, and how many were copied.
    let copied = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| r.get::<_, i64>(2));
    match copied {
        Ok(pages) => tracing::trace!(pages, us = started.elapsed().as_micros() as u64, "store checkpoint"),
        Err(e) => tracing::warn!(error = %e, "checkpoint failed; the next one retries"),
    }
}

/// Answers an operation that never ran.
fn fail(op: Op, err: &OutboxError) {
    fn e<T>(err: &OutboxError) -> Result<T, OutboxError> {
        Err(OutboxError(err.0.clone()))
    }
    match op {
        Op::Enqueue { reply, .. } => drop(reply.send(e(err))),
        Op::Track { reply, .. } => drop(reply.send(e(err))),
        Op::Held { reply, .. } => drop(reply.send(e(err))),
        Op::HoldDue { reply, .. } => drop(reply.send(e(err))),
        Op::Lease { reply, .. } => drop(reply.send(e(err))),
        Op::DueChannels { reply, .. } => drop(reply.send(e(err))),
        Op::Finish { id, .. } => {
            tracing::error!(delivery_id = %id, error = %err, "recording an attempt failed")
        }
        Op::Flush { reply } => drop(reply.send(e(err))),
        Op::Check { reply, .. } => drop(reply.send(e(err))),
        Op::NextDue { reply } => drop(reply.send(e(err))),
        Op::List { reply, .. } => drop(reply.send(e(err))),
        Op::Get { reply, .. } => drop(reply.send(e(err))),
        Op::Replay { reply, .. } => drop(reply.send(e(err))),
        Op::Defer { reply, .. } => drop(reply.send(e(err))),
        Op::Backlog { reply, .. } => drop(reply.send(e(err))),
        Op::Merge { reply, .. } => drop(reply.send(e(err))),
        Op::SentSince { reply, .. } => drop(reply.send(e(err))),
    }
}

/// Runs one operation inside the batch's transaction; the returned closure answers the
/// caller once the commit's fate is known (a failed commit fails every answer).
fn apply(tx: &Transaction<'_>, op: Op) -> Answer {
    fn answer<T: Send + 'static>(reply: Reply<T>, result: Result<T, OutboxError>) -> Answer {
        Box::new(move |commit_err: Option<&OutboxError>| {
            let result = match commit_err {
                Some(e) => Err(OutboxError(e.0.clone())),
                None => result,
            };
            let _ = reply.send(result);
        })
    }
    match op {
        Op::Enqueue { event, deliveries, now, dedup, track, lease_ms, reply } => {
            let result = sql::enqueue(tx, &event, &deliveries, now, dedup.as_ref(), lease_ms).and_then(
                |done| match (&done.duplicate_of, &track) {
                    (None, Some((key, state))) => sql::save_track(tx, key, state, now).map(|_| done),
                    _ => Ok(done),
                },
            );
            answer(reply, result)
        }
        Op::Track { key, reply } => answer(reply, sql::load_track(tx, &key)),
        Op::Held { key, reply } => answer(reply, sql::held(tx, &key)),
        Op::HoldDue { key, now, reply } => answer(reply, sql::hold_due(tx, &key, now)),
        Op::Lease { now, limit, lease_ms, skip, reply } => {
            answer(reply, sql::lease(tx, now, limit, lease_ms, &skip))
        }
        Op::DueChannels { channels, now, reply } => answer(reply, sql::due_channels(tx, &channels, now)),
        Op::Finish { id, attempt, next } => {
            let result = sql::finish(tx, &id, &attempt, &next);
            Box::new(move |commit_err: Option<&OutboxError>| {
                if let Some(e) = result.err().as_ref().or(commit_err) {
                    // The lease expires and the delivery comes back: at-least-once, never lost.
                    tracing::error!(delivery_id = %id, error = %e, "recording an attempt failed");
                }
            })
        }
        Op::Flush { reply } => answer(reply, Ok(())),
        Op::Check { now, reply } => answer(reply, sql::check(tx, now)),
        Op::NextDue { reply } => answer(reply, sql::next_due(tx)),
        Op::List { filter, reply } => answer(reply, sql::list(tx, &filter)),
        Op::Get { id, reply } => answer(reply, sql::get(tx, &id)),
        Op::Replay { ids, filter, now, reply } => answer(reply, sql::replay(tx, &ids, &filter, now)),
        Op::Defer { ids, at, reply } => answer(reply, sql::defer(tx, &ids, at)),
        Op::Backlog { channels, now, limit, reply } => answer(reply, sql::backlog(tx, &channels, now, limit)),
        Op::Merge { ids, summary, event_id, at, reply } => {
            answer(reply, sql::merge(tx, &ids, &summary, &event_id, at))
        }
        Op::SentSince { since, reply } => answer(reply, sql::sent_since(tx, since)),
    }
}
