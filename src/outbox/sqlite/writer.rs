//! The writer thread: the one owner of the connection. It takes every operation waiting in its
//! queue, runs them in one transaction, commits once, and only then answers each caller (group
//! commit): concurrent webhooks share one fsync, and no caller hears "stored" before it is.
//!
//! An operation that fails part way (a statement refused after others of it ran) must leave
//! nothing of itself in the commit: the batch is rolled back and run again without it. That
//! costs nothing until such a failure; a savepoint around each operation cost every batch
//! (see BENCHMARKS.md).

use std::sync::mpsc;
use std::time::{Duration, Instant};

use rusqlite::{Connection, Transaction, TransactionBehavior};
use tokio::sync::oneshot;

use crate::outbox::OutboxError;

/// The most operations committed in one transaction.
const MAX_BATCH: usize = 512;

pub type Reply<T> = oneshot::Sender<Result<T, OutboxError>>;

/// One operation for the writer thread.
pub type Op = Box<dyn Job>;

/// An operation: its statements, run inside the batch's transaction (again, when the batch is
/// rolled back and run anew), and its answer, given once the commit's fate is known.
pub trait Job: Send {
    /// Runs the statements, keeping their result for the answer; whether they succeeded.
    fn run(&mut self, tx: &Transaction<'_>) -> bool;
    /// The error of the last `run`, if it failed.
    fn error(&self) -> Option<&OutboxError>;
    /// Answers with the result of the last `run`, unless `failed`: the batch's commit failed,
    /// or the store could not run the operation at all.
    fn answer(self: Box<Self>, failed: Option<&OutboxError>);
}

/// An operation's statements, the result of their last run, and where the answer goes.
pub struct Statements<T, F> {
    statements: F,
    result: Option<Result<T, OutboxError>>,
    to: To<T>,
}

/// Where an operation's answer goes.
enum To<T> {
    /// A caller waiting for the result.
    Caller(Reply<T>),
    /// Nobody: an attempt's record, which the worker does not wait for (see `Outbox::finish`).
    /// A failure is logged; the lease then expires and the delivery comes back: at least once,
    /// never lost.
    Log { delivery_id: String },
}

impl<T, F> Statements<T, F>
where
    T: Send + 'static,
    F: FnMut(&Transaction<'_>) -> Result<T, OutboxError> + Send + 'static,
{
    /// An operation whose caller waits for its result on `reply`.
    pub fn call(statements: F, reply: Reply<T>) -> Op {
        Box::new(Statements { statements, result: None, to: To::Caller(reply) })
    }

    /// An attempt's record for `delivery_id`, answered to nobody.
    pub fn record(delivery_id: String, statements: F) -> Op {
        Box::new(Statements { statements, result: None, to: To::Log { delivery_id } })
    }
}

impl<T, F> Job for Statements<T, F>
where
    T: Send + 'static,
    F: FnMut(&Transaction<'_>) -> Result<T, OutboxError> + Send + 'static,
{
    fn run(&mut self, tx: &Transaction<'_>) -> bool {
        let result = (self.statements)(tx);
        let ok = result.is_ok();
        self.result = Some(result);
        ok
    }

    fn error(&self) -> Option<&OutboxError> {
        self.result.as_ref().and_then(|r| r.as_ref().err())
    }

    fn answer(self: Box<Self>, failed: Option<&OutboxError>) {
        let result = match (failed, self.result) {
            (None, Some(result)) => result,
            (Some(e), _) => Err(OutboxError(e.0.clone())),
            (None, None) => Err(OutboxError("the store did not run the operation".into())),
        };
        match self.to {
            To::Caller(reply) => drop(reply.send(result)),
            To::Log { delivery_id } => {
                if let Err(e) = result {
                    tracing::error!(delivery_id = %delivery_id, error = %e, "recording an attempt failed");
                }
            }
        }
    }
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
///
/// An operation that fails is answered with its error. When it had written something before
/// failing, the batch is rolled back and run again without it, so that none of that is
/// committed; one that wrote nothing costs nothing more. When SQLite itself ended the
/// transaction (a full disk, an I/O error), the failure is the store's, not the operation's:
/// every operation of the batch is answered with it.
fn commit(conn: &mut Connection, batch: &mut Vec<Op>) {
    let mut refused: Vec<Op> = Vec::new();
    'batch: loop {
        let tx = match conn.transaction_with_behavior(TransactionBehavior::Immediate) {
            Ok(tx) => tx,
            Err(e) => {
                let err = OutboxError(format!("cannot begin a transaction: {e}"));
                batch.drain(..).for_each(|op| op.answer(Some(&err)));
                refused.into_iter().for_each(|op| op.answer(None));
                return;
            }
        };
        let ops = batch.len();
        let started = Instant::now();
        let mut i = 0;
        while i < batch.len() {
            let before = tx.total_changes();
            if batch[i].run(&tx) {
                i += 1;
                continue;
            }
            let culprit = batch.remove(i);
            if tx.is_autocommit() {
                drop(tx);
                let cause = culprit.error().map_or("unknown", |e| e.0.as_str());
                let err = OutboxError(format!("the store rolled back the batch: {cause}"));
                tracing::error!("{err}");
                culprit.answer(None);
                batch.drain(..).for_each(|op| op.answer(Some(&err)));
                refused.into_iter().for_each(|op| op.answer(None));
                return;
            }
            let wrote = tx.total_changes() != before;
            refused.push(culprit);
            if wrote {
                drop(tx);
                tracing::warn!(ops, "a store operation failed part way; its batch runs again without it");
                continue 'batch;
            }
        }
        let applied = started.elapsed();
        let committed = tx.commit();
        tracing::trace!(
            ops,
            apply_us = applied.as_micros() as u64,
            commit_us = (started.elapsed() - applied).as_micros() as u64,
            "store batch"
        );
        let err = committed.err().map(|e| OutboxError(format!("commit failed: {e}")));
        if let Some(e) = &err {
            tracing::error!("{e}");
        }
        batch.drain(..).for_each(|op| op.answer(err.as_ref()));
        refused.into_iter().for_each(|op| op.answer(None));
        return;
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
