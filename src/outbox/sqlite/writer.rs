//! The writer thread: the one owner of the connection. It takes every operation waiting in its
//! queue, runs them in one transaction, commits once, and only then answers each caller (group
//! commit): concurrent webhooks share one fsync, and no caller hears "stored" before it is.

use std::sync::mpsc;

use rusqlite::{Connection, Transaction};
use tokio::sync::oneshot;

use super::{sql, StoredEvent, StoredNew};
use crate::clock::Millis;
use crate::outbox::{AttemptRecord, Dedup, Delivery, Enqueued, ListFilter, Next, OutboxError};
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
    Claim {
        key: String,
        now: Millis,
        window_ms: i64,
        reply: Reply<bool>,
    },
    Lease {
        now: Millis,
        limit: usize,
        lease_ms: i64,
        reply: Reply<Vec<Delivery>>,
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
        id: String,
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
        reply: Reply<Vec<(String, Millis)>>,
    },
}

/// The writer thread's loop: batch, run, commit, answer. Returns when every sender is gone.
pub fn run(mut conn: Connection, rx: mpsc::Receiver<Op>) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while let Ok(first) = rx.recv() {
        batch.push(first);
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(op) => batch.push(op),
                Err(_) => break,
            }
        }
        let tx = match conn.transaction() {
            Ok(tx) => tx,
            Err(e) => {
                let err = OutboxError(format!("cannot begin a transaction: {e}"));
                batch.drain(..).for_each(|op| fail(op, &err));
                continue;
            }
        };
        let ops = batch.len();
        let started = std::time::Instant::now();
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
        Op::Claim { reply, .. } => drop(reply.send(e(err))),
        Op::Lease { reply, .. } => drop(reply.send(e(err))),
        Op::Finish { id, .. } => {
            tracing::error!(delivery_id = %id, error = %err, "recording an attempt failed")
        }
        Op::Flush { reply } => drop(reply.send(e(err))),
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
        Op::Claim { key, now, window_ms, reply } => answer(reply, sql::claim(tx, &key, now, window_ms)),
        Op::Lease { now, limit, lease_ms, reply } => answer(reply, sql::lease(tx, now, limit, lease_ms)),
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
        Op::NextDue { reply } => answer(reply, sql::next_due(tx)),
        Op::List { filter, reply } => answer(reply, sql::list(tx, &filter)),
        Op::Get { id, reply } => answer(reply, sql::get(tx, &id)),
        Op::Replay { ids, filter, now, reply } => answer(reply, sql::replay(tx, &ids, &filter, now)),
        Op::Defer { id, at, reply } => answer(reply, sql::defer(tx, &id, at)),
        Op::Backlog { channels, now, limit, reply } => answer(reply, sql::backlog(tx, &channels, now, limit)),
        Op::Merge { ids, summary, event_id, at, reply } => {
            answer(reply, sql::merge(tx, &ids, &summary, &event_id, at))
        }
        Op::SentSince { since, reply } => answer(reply, sql::sent_since(tx, since)),
    }
}
