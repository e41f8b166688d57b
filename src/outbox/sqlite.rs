//! The durable outbox: SQLite in WAL mode under `server.data_dir`, with group commit.
//!
//! One writer thread owns the connection. Callers send it operations over a channel; it takes
//! every operation waiting in the queue, runs them in one transaction, commits once, and only
//! then answers each caller. Concurrent webhooks therefore share one fsync, and `enqueue`
//! returns only after the event and its deliveries are on disk, so a `kill -9` right after the
//! 202 loses nothing. Schema migrations run when the store opens.

use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::Duration;

use async_trait::async_trait;
use rusqlite::{params, Connection, OptionalExtension, Transaction};
use tokio::sync::oneshot;

use super::{
    AttemptRecord, Dedup, Delivery, DeliveryState, EnqueueWith, Enqueued, ListFilter, NewDelivery, Next,
    Outbox, OutboxError,
};
use crate::clock::Millis;
use crate::event::Event;
use crate::state::Track;

/// The most operations committed in one transaction.
const MAX_BATCH: usize = 512;

/// Schema migrations, in order; `PRAGMA user_version` counts those applied.
const MIGRATIONS: &[&str] = &[
    r#"
CREATE TABLE events (
    id           TEXT PRIMARY KEY,
    source       TEXT NOT NULL,
    status       TEXT NOT NULL,
    received_at  INTEGER NOT NULL,
    dedup_key    TEXT,
    duplicate_of TEXT,
    body         TEXT NOT NULL
);
CREATE INDEX events_dedup ON events (dedup_key, received_at) WHERE dedup_key IS NOT NULL;
CREATE TABLE deliveries (
    id           TEXT PRIMARY KEY,
    event_id     TEXT NOT NULL REFERENCES events (id),
    rule         TEXT NOT NULL,
    channel      TEXT NOT NULL,
    message      TEXT NOT NULL,
    headline     TEXT NOT NULL,
    state        TEXT NOT NULL,
    attempts     INTEGER NOT NULL DEFAULT 0,
    created_at   INTEGER NOT NULL,
    scheduled_at INTEGER NOT NULL,
    next_at      INTEGER NOT NULL,
    leased_until INTEGER,
    last_error   TEXT
);
CREATE INDEX deliveries_due ON deliveries (next_at) WHERE state IN ('pending', 'retrying');
CREATE INDEX deliveries_state ON deliveries (state, created_at);
CREATE TABLE attempts (
    delivery_id TEXT NOT NULL REFERENCES deliveries (id),
    at          INTEGER NOT NULL,
    outcome     TEXT NOT NULL,
    http_status INTEGER,
    code        INTEGER,
    detail      TEXT NOT NULL,
    latency_ms  INTEGER NOT NULL
);
CREATE INDEX attempts_delivery ON attempts (delivery_id, at);
"#,
    r#"
CREATE TABLE tracks (
    key        TEXT PRIMARY KEY,
    state      TEXT NOT NULL,
    updated_at INTEGER NOT NULL
);
"#,
    r#"
CREATE TABLE claims (
    key TEXT PRIMARY KEY,
    at  INTEGER NOT NULL
);
ALTER TABLE deliveries ADD COLUMN hold_key TEXT;
CREATE INDEX deliveries_hold ON deliveries (hold_key) WHERE hold_key IS NOT NULL;
"#,
    // Leasing reads due deliveries in due order and stops at its limit: without this index it
    // sorted every open delivery on each lease, which grew with the backlog.
    r#"
DROP INDEX deliveries_due;
CREATE INDEX deliveries_lease ON deliveries (next_at, created_at) WHERE state IN ('pending', 'retrying');
"#,
];

type Reply<T> = oneshot::Sender<Result<T, OutboxError>>;

/// Answers a caller once the batch's commit has succeeded (`None`) or failed.
type Answer = Box<dyn FnOnce(Option<&OutboxError>)>;

/// One operation for the writer thread.
enum Op {
    Enqueue {
        event: String,
        meta: EventMeta,
        deliveries: Vec<StoredNew>,
        now: Millis,
        dedup: Option<Dedup>,
        track: Option<(String, String)>,
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
    Finish {
        id: String,
        attempt: AttemptRecord,
        next: Next,
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
}

struct EventMeta {
    id: String,
    source: String,
    status: String,
}

struct StoredNew {
    id: String,
    rule: String,
    channel: String,
    message: String,
    headline: String,
    hold: Option<String>,
    due_at: Option<Millis>,
}

impl StoredNew {
    fn from(d: &NewDelivery) -> Result<StoredNew, OutboxError> {
        let json = |v: &dyn erased::Json| v.to_json();
        Ok(StoredNew {
            id: d.id.clone(),
            rule: d.rule.clone(),
            channel: d.channel.clone(),
            message: json(&d.message)?,
            headline: json(&d.headline)?,
            hold: d.hold.clone(),
            due_at: d.due_at,
        })
    }
}

mod erased {
    use super::OutboxError;

    /// Serializes a stored value to JSON text.
    pub trait Json {
        fn to_json(&self) -> Result<String, OutboxError>;
    }

    impl<T: serde::Serialize> Json for T {
        fn to_json(&self) -> Result<String, OutboxError> {
            serde_json::to_string(self).map_err(|e| OutboxError(e.to_string()))
        }
    }
}

/// The SQLite outbox. Cloning shares the writer.
#[derive(Clone)]
pub struct SqliteOutbox {
    ops: mpsc::Sender<Op>,
    path: PathBuf,
    /// Held while the gateway runs: one process owns a data dir.
    _lock: Option<std::sync::Arc<std::fs::File>>,
    /// Tracks read or written by this process. The owner of a data dir is its only writer, so
    /// the cache is exact and spares each accepted event a round trip to the store.
    tracks: std::sync::Arc<std::sync::Mutex<std::collections::HashMap<String, Option<Track>>>>,
}

impl SqliteOutbox {
    /// Opens the store for the gateway: takes `dir/herald.lock` exclusively (a second gateway
    /// on the same data dir is refused, since it would send everything twice), creates
    /// `dir/herald.db` if needed, applies migrations, and releases every lease, because the
    /// process that held them is gone: deliveries in flight at a crash are due again at once.
    pub fn open(dir: &Path) -> Result<SqliteOutbox, OutboxError> {
        std::fs::create_dir_all(dir)
            .map_err(|e| OutboxError(format!("cannot create {}: {e}", dir.display())))?;
        let lock_path = dir.join("herald.lock");
        let lock = std::fs::File::create(&lock_path)
            .map_err(|e| OutboxError(format!("cannot create {}: {e}", lock_path.display())))?;
        lock.try_lock().map_err(|_| {
            OutboxError(format!(
                "{} is in use by another Herald (server.data_dir must not be shared)",
                dir.display()
            ))
        })?;
        let conn = SqliteOutbox::connect(dir)?;
        let n = conn
            .execute("UPDATE deliveries SET leased_until = NULL WHERE leased_until IS NOT NULL", [])
            .map_err(db)?;
        if n > 0 {
            tracing::info!(deliveries = n, "released the leases of a previous run");
        }
        let mut store = SqliteOutbox::start(dir, conn)?;
        store._lock = Some(std::sync::Arc::new(lock));
        Ok(store)
    }

    /// Opens the store beside a running gateway, for `herald deliveries`: no lock is taken and
    /// leases are left alone.
    pub fn open_shared(dir: &Path) -> Result<SqliteOutbox, OutboxError> {
        let conn = SqliteOutbox::connect(dir)?;
        SqliteOutbox::start(dir, conn)
    }

    /// Opens `dir/herald.db` and brings its schema up to date.
    fn connect(dir: &Path) -> Result<Connection, OutboxError> {
        let path = dir.join("herald.db");
        let mut conn = Connection::open(&path)
            .map_err(|e| OutboxError(format!("cannot open {}: {e}", path.display())))?;
        configure(&conn).map_err(db)?;
        migrate(&mut conn)?;
        Ok(conn)
    }

    /// Starts the writer thread on `conn`.
    fn start(dir: &Path, conn: Connection) -> Result<SqliteOutbox, OutboxError> {
        let path = dir.join("herald.db");
        let (ops, rx) = mpsc::channel();
        std::thread::Builder::new()
            .name("herald-store".into())
            .spawn(move || writer(conn, rx))
            .map_err(|e| OutboxError(format!("cannot start the store thread: {e}")))?;
        Ok(SqliteOutbox { ops, path, _lock: None, tracks: Default::default() })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    async fn call<T>(&self, make: impl FnOnce(Reply<T>) -> Op) -> Result<T, OutboxError> {
        let (tx, rx) = oneshot::channel();
        self.ops.send(make(tx)).map_err(|_| OutboxError("the store thread has stopped".into()))?;
        rx.await.map_err(|_| OutboxError("the store thread has stopped".into()))?
    }
}

fn db(e: rusqlite::Error) -> OutboxError {
    OutboxError(e.to_string())
}

fn configure(conn: &Connection) -> rusqlite::Result<()> {
    conn.busy_timeout(Duration::from_secs(5))?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    // FULL: a commit is on disk before `enqueue` returns (group commit pays for it once).
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    Ok(())
}

fn migrate(conn: &mut Connection) -> Result<(), OutboxError> {
    let version: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0)).map_err(db)?;
    if version as usize > MIGRATIONS.len() {
        return Err(OutboxError(format!(
            "the store's schema (version {version}) is newer than this Herald knows ({})",
            MIGRATIONS.len()
        )));
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(version as usize) {
        let tx = conn.transaction().map_err(db)?;
        tx.execute_batch(sql).map_err(db)?;
        tx.pragma_update(None, "user_version", (i + 1) as i64).map_err(db)?;
        tx.commit().map_err(db)?;
        tracing::info!(version = i + 1, "store schema migrated");
    }
    Ok(())
}

/// The writer thread: batch, run, commit, answer.
fn writer(mut conn: Connection, rx: mpsc::Receiver<Op>) {
    while let Ok(first) = rx.recv() {
        let mut batch = vec![first];
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
                batch.into_iter().for_each(|op| fail(op, &err));
                continue;
            }
        };
        let answers: Vec<Answer> = batch.into_iter().map(|op| run(&tx, op)).collect();
        match tx.commit() {
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
        Op::Finish { reply, .. } => drop(reply.send(e(err))),
        Op::NextDue { reply } => drop(reply.send(e(err))),
        Op::List { reply, .. } => drop(reply.send(e(err))),
        Op::Get { reply, .. } => drop(reply.send(e(err))),
        Op::Replay { reply, .. } => drop(reply.send(e(err))),
        Op::Defer { reply, .. } => drop(reply.send(e(err))),
        Op::Backlog { reply, .. } => drop(reply.send(e(err))),
        Op::Merge { reply, .. } => drop(reply.send(e(err))),
    }
}

/// Runs one operation inside the batch's transaction; the returned closure answers the
/// caller once the commit's fate is known (a failed commit fails every answer).
fn run(tx: &Transaction<'_>, op: Op) -> Answer {
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
        Op::Enqueue { event, meta, deliveries, now, dedup, track, reply } => {
            let result =
                enqueue(tx, &event, &meta, &deliveries, now, dedup.as_ref()).and_then(|done| {
                    match (&done.duplicate_of, &track) {
                        (None, Some((key, state))) => save_track(tx, key, state, now).map(|_| done),
                        _ => Ok(done),
                    }
                });
            answer(reply, result)
        }
        Op::Track { key, reply } => answer(reply, load_track(tx, &key)),
        Op::Held { key, reply } => answer(reply, held(tx, &key)),
        Op::Claim { key, now, window_ms, reply } => answer(reply, claim(tx, &key, now, window_ms)),
        Op::Lease { now, limit, lease_ms, reply } => answer(reply, lease(tx, now, limit, lease_ms)),
        Op::Finish { id, attempt, next, reply } => answer(reply, finish(tx, &id, &attempt, &next)),
        Op::NextDue { reply } => answer(reply, next_due(tx)),
        Op::List { filter, reply } => answer(reply, list(tx, &filter)),
        Op::Get { id, reply } => answer(reply, get(tx, &id)),
        Op::Replay { ids, filter, now, reply } => answer(reply, replay(tx, &ids, &filter, now)),
        Op::Defer { id, at, reply } => answer(reply, defer(tx, &id, at)),
        Op::Backlog { channels, now, limit, reply } => answer(reply, backlog(tx, &channels, now, limit)),
        Op::Merge { ids, summary, event_id, at, reply } => {
            answer(reply, merge(tx, &ids, &summary, &event_id, at))
        }
    }
}

fn enqueue(
    tx: &Transaction<'_>,
    event: &str,
    meta: &EventMeta,
    deliveries: &[StoredNew],
    now: Millis,
    dedup: Option<&Dedup>,
) -> Result<Enqueued, OutboxError> {
    let duplicate_of: Option<String> = match dedup {
        Some(d) => tx
            .prepare_cached(
                "SELECT id FROM events WHERE dedup_key = ?1 AND received_at > ?2 AND duplicate_of IS NULL \
                 ORDER BY received_at LIMIT 1",
            )
            .and_then(|mut s| s.query_row(params![d.key, now - d.window_ms], |r| r.get(0)).optional())
            .map_err(db)?,
        None => None,
    };
    tx.prepare_cached(
        "INSERT INTO events (id, source, status, received_at, dedup_key, duplicate_of, body) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )
    .and_then(|mut s| {
        s.execute(params![meta.id, meta.source, meta.status, now, dedup.map(|d| &d.key), duplicate_of, event])
    })
    .map_err(db)?;
    if duplicate_of.is_none() {
        for d in deliveries {
            insert_delivery(tx, d, &meta.id, now)?;
        }
    }
    Ok(Enqueued { duplicate_of })
}

fn save_track(tx: &Transaction<'_>, key: &str, state: &str, now: Millis) -> Result<(), OutboxError> {
    tx.prepare_cached(
        "INSERT INTO tracks (key, state, updated_at) VALUES (?1, ?2, ?3) \
         ON CONFLICT (key) DO UPDATE SET state = excluded.state, updated_at = excluded.updated_at",
    )
    .and_then(|mut s| s.execute(params![key, state, now]))
    .map_err(db)?;
    Ok(())
}

fn load_track(tx: &Transaction<'_>, key: &str) -> Result<Option<Track>, OutboxError> {
    let stored: Option<String> = tx
        .prepare_cached("SELECT state FROM tracks WHERE key = ?1")
        .and_then(|mut s| s.query_row([key], |r| r.get(0)).optional())
        .map_err(db)?;
    stored
        .map(|s| serde_json::from_str(&s).map_err(|e| OutboxError(format!("stored state of {key}: {e}"))))
        .transpose()
}

fn held(tx: &Transaction<'_>, key: &str) -> Result<Vec<Delivery>, OutboxError> {
    let sql = format!(
        "SELECT {DELIVERY_COLUMNS} FROM deliveries WHERE hold_key = ?1 AND state IN ('pending', 'retrying') \
         ORDER BY created_at, id"
    );
    tx.prepare_cached(&sql).and_then(|mut s| s.query_map([key], row_to_delivery)?.collect()).map_err(db)
}

fn claim(tx: &Transaction<'_>, key: &str, now: Millis, window_ms: i64) -> Result<bool, OutboxError> {
    let last: Option<Millis> = tx
        .prepare_cached("SELECT at FROM claims WHERE key = ?1")
        .and_then(|mut s| s.query_row([key], |r| r.get(0)).optional())
        .map_err(db)?;
    if last.is_some_and(|at| now - at < window_ms) {
        return Ok(false);
    }
    tx.prepare_cached(
        "INSERT INTO claims (key, at) VALUES (?1, ?2) ON CONFLICT (key) DO UPDATE SET at = excluded.at",
    )
    .and_then(|mut s| s.execute(params![key, now]))
    .map_err(db)?;
    Ok(true)
}

fn insert_delivery(
    tx: &Transaction<'_>,
    d: &StoredNew,
    event_id: &str,
    at: Millis,
) -> Result<(), OutboxError> {
    tx.prepare_cached(
        "INSERT INTO deliveries (id, event_id, rule, channel, message, headline, hold_key, state, created_at, scheduled_at, next_at) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, 'pending', ?8, ?8, ?9)",
    )
    .and_then(|mut s| {
        s.execute(params![d.id, event_id, d.rule, d.channel, d.message, d.headline, d.hold, at, d.due_at.unwrap_or(at)])
    })
    .map_err(db)?;
    Ok(())
}

const DELIVERY_COLUMNS: &str =
    "id, event_id, rule, channel, message, state, attempts, created_at, scheduled_at, next_at, last_error, headline, hold_key";

fn row_to_delivery(r: &rusqlite::Row<'_>) -> rusqlite::Result<Delivery> {
    let message: String = r.get(4)?;
    let state: String = r.get(5)?;
    let bad =
        |what: String| rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Text, what.into());
    Ok(Delivery {
        id: r.get(0)?,
        event_id: r.get(1)?,
        rule: r.get(2)?,
        channel: r.get(3)?,
        message: serde_json::from_str(&message).map_err(|e| bad(format!("stored message: {e}")))?,
        state: parse_state(&state).ok_or_else(|| bad(format!("unknown state {state}")))?,
        attempts: r.get(6)?,
        created_at: r.get(7)?,
        scheduled_at: r.get(8)?,
        next_at: r.get(9)?,
        last_error: r.get(10)?,
        headline: serde_json::from_str(&r.get::<_, String>(11)?)
            .map_err(|e| bad(format!("stored headline: {e}")))?,
        hold: r.get(12)?,
    })
}

fn parse_state(s: &str) -> Option<DeliveryState> {
    DeliveryState::parse(s)
}

fn lease(
    tx: &Transaction<'_>,
    now: Millis,
    limit: usize,
    lease_ms: i64,
) -> Result<Vec<Delivery>, OutboxError> {
    let sql = format!(
        "SELECT {DELIVERY_COLUMNS} FROM deliveries INDEXED BY deliveries_lease \
         WHERE state IN ('pending', 'retrying') AND next_at <= ?1 \
         AND (leased_until IS NULL OR leased_until <= ?1) ORDER BY next_at, created_at LIMIT ?2"
    );
    let due: Vec<Delivery> = tx
        .prepare_cached(&sql)
        .and_then(|mut s| s.query_map(params![now, limit as i64], row_to_delivery)?.collect())
        .map_err(db)?;
    let mut mark = tx.prepare_cached("UPDATE deliveries SET leased_until = ?2 WHERE id = ?1").map_err(db)?;
    for d in &due {
        mark.execute(params![d.id, now + lease_ms]).map_err(db)?;
    }
    Ok(due)
}

fn finish(tx: &Transaction<'_>, id: &str, a: &AttemptRecord, next: &Next) -> Result<(), OutboxError> {
    let (state, next_at, error): (&str, Option<Millis>, Option<&str>) = match next {
        Next::Delivered => ("delivered", None, None),
        Next::RetryAt(at) => ("retrying", Some(*at), Some(a.detail.as_str())),
        Next::Dead(reason) => ("dead", None, Some(reason.as_str())),
    };
    let changed = tx
        .prepare_cached(
            "UPDATE deliveries SET state = ?2, attempts = attempts + 1, next_at = COALESCE(?3, next_at), \
             last_error = COALESCE(?4, last_error), leased_until = NULL WHERE id = ?1",
        )
        .and_then(|mut s| s.execute(params![id, state, next_at, error]))
        .map_err(db)?;
    if changed == 0 {
        return Err(OutboxError(format!("no delivery {id}")));
    }
    tx.prepare_cached(
        "INSERT INTO attempts (delivery_id, at, outcome, http_status, code, detail, latency_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )
    .and_then(|mut s| s.execute(params![id, a.at, a.outcome, a.http_status, a.code, a.detail, a.latency_ms as i64]))
    .map_err(db)?;
    Ok(())
}

fn next_due(tx: &Transaction<'_>) -> Result<Option<Millis>, OutboxError> {
    tx.prepare_cached(
        "SELECT MIN(MAX(next_at, COALESCE(leased_until, 0))) FROM deliveries WHERE state IN ('pending', 'retrying')",
    )
    .and_then(|mut s| s.query_row([], |r| r.get(0)))
    .map_err(db)
}

/// The filter as SQL conditions (placeholders numbered from `first`) and their values.
fn filter_sql(filter: &ListFilter, first: usize) -> (Vec<String>, Vec<rusqlite::types::Value>) {
    let mut conds = Vec::new();
    let mut args: Vec<rusqlite::types::Value> = Vec::new();
    if let Some(state) = filter.state {
        conds.push(format!("state = ?{}", first + args.len()));
        args.push(state.as_str().to_string().into());
    }
    if let Some(channel) = &filter.channel {
        conds.push(format!("channel = ?{}", first + args.len()));
        args.push(channel.clone().into());
    }
    (conds, args)
}

fn list(tx: &Transaction<'_>, filter: &ListFilter) -> Result<Vec<Delivery>, OutboxError> {
    let (conds, args) = filter_sql(filter, 1);
    let clause = if conds.is_empty() { String::new() } else { format!("WHERE {}", conds.join(" AND ")) };
    let sql = format!(
        "SELECT {DELIVERY_COLUMNS} FROM deliveries {clause} ORDER BY created_at DESC, id DESC LIMIT {}",
        filter.limit
    );
    tx.prepare(&sql)
        .and_then(|mut s| s.query_map(rusqlite::params_from_iter(args), row_to_delivery)?.collect())
        .map_err(db)
}

fn get(tx: &Transaction<'_>, id: &str) -> Result<Option<(Delivery, Vec<AttemptRecord>)>, OutboxError> {
    let sql = format!("SELECT {DELIVERY_COLUMNS} FROM deliveries WHERE id = ?1");
    let Some(d) = tx
        .prepare_cached(&sql)
        .and_then(|mut s| s.query_row([id], row_to_delivery).optional())
        .map_err(db)?
    else {
        return Ok(None);
    };
    let attempts = tx
        .prepare_cached(
            "SELECT at, outcome, http_status, code, detail, latency_ms FROM attempts WHERE delivery_id = ?1 ORDER BY at, rowid",
        )
        .and_then(|mut s| {
            s.query_map([id], |r| {
                Ok(AttemptRecord {
                    at: r.get(0)?,
                    outcome: r.get(1)?,
                    http_status: r.get(2)?,
                    code: r.get(3)?,
                    detail: r.get(4)?,
                    latency_ms: r.get::<_, i64>(5)? as u64,
                })
            })?
            .collect()
        })
        .map_err(db)?;
    Ok(Some((d, attempts)))
}

fn replay(
    tx: &Transaction<'_>,
    ids: &[String],
    filter: &ListFilter,
    now: Millis,
) -> Result<usize, OutboxError> {
    let reset = "UPDATE deliveries SET state = 'pending', attempts = 0, scheduled_at = ?1, next_at = ?1, \
                 leased_until = NULL WHERE state IN ('dead', 'retrying')";
    if ids.is_empty() {
        let (conds, args) = filter_sql(filter, 2);
        let sql = conds.iter().fold(reset.to_string(), |sql, c| format!("{sql} AND {c}"));
        let values = std::iter::once(rusqlite::types::Value::from(now)).chain(args);
        tx.prepare(&sql).and_then(|mut s| s.execute(rusqlite::params_from_iter(values))).map_err(db)
    } else {
        let mut stmt = tx.prepare_cached(&format!("{reset} AND id = ?2")).map_err(db)?;
        let mut n = 0;
        for id in ids {
            n += stmt.execute(params![now, id]).map_err(db)?;
        }
        Ok(n)
    }
}

fn defer(tx: &Transaction<'_>, id: &str, at: Millis) -> Result<(), OutboxError> {
    tx.prepare_cached("UPDATE deliveries SET next_at = ?2, leased_until = NULL WHERE id = ?1")
        .and_then(|mut s| s.execute(params![id, at]))
        .map_err(db)?;
    Ok(())
}

fn backlog(
    tx: &Transaction<'_>,
    channels: &[String],
    now: Millis,
    limit: usize,
) -> Result<Vec<Delivery>, OutboxError> {
    let marks: Vec<String> = (0..channels.len()).map(|i| format!("?{}", i + 2)).collect();
    let sql = format!(
        "SELECT {DELIVERY_COLUMNS} FROM deliveries WHERE state IN ('pending', 'retrying') AND channel IN ({}) \
         AND (leased_until IS NULL OR leased_until <= ?1) ORDER BY created_at, id LIMIT {limit}",
        marks.join(", ")
    );
    let values = std::iter::once(rusqlite::types::Value::from(now))
        .chain(channels.iter().map(|c| rusqlite::types::Value::from(c.clone())));
    tx.prepare(&sql)
        .and_then(|mut s| s.query_map(rusqlite::params_from_iter(values), row_to_delivery)?.collect())
        .map_err(db)
}

fn merge(
    tx: &Transaction<'_>,
    ids: &[String],
    summary: &StoredNew,
    event_id: &str,
    at: Millis,
) -> Result<(), OutboxError> {
    let note = format!("merged into summary {}", summary.id);
    let mut mark = tx
        .prepare_cached(
            "UPDATE deliveries SET state = 'merged', last_error = ?2, leased_until = NULL WHERE id = ?1",
        )
        .map_err(db)?;
    for id in ids {
        mark.execute(params![id, note]).map_err(db)?;
    }
    insert_delivery(tx, summary, event_id, at)
}

#[async_trait]
impl Outbox for SqliteOutbox {
    async fn enqueue(
        &self,
        event: &Event,
        deliveries: &[NewDelivery],
        now: Millis,
        with: &EnqueueWith<'_>,
    ) -> Result<Enqueued, OutboxError> {
        // Serialize here, on the caller's thread, so the writer only writes.
        let body = serde_json::to_string(event).map_err(|e| OutboxError(e.to_string()))?;
        let meta = EventMeta {
            id: event.event_id.clone(),
            source: event.source.clone(),
            status: event.status.to_string(),
        };
        let deliveries = deliveries.iter().map(StoredNew::from).collect::<Result<Vec<_>, OutboxError>>()?;
        let dedup = with.dedup.cloned();
        let track = match with.track {
            Some((key, state)) => {
                Some((key.to_string(), serde_json::to_string(state).map_err(|e| OutboxError(e.to_string()))?))
            }
            None => None,
        };
        let done = self
            .call(|reply| Op::Enqueue { event: body, meta, deliveries, now, dedup, track, reply })
            .await?;
        if let (None, Some((key, state))) = (&done.duplicate_of, with.track) {
            self.tracks.lock().expect("track cache").insert(key.to_string(), Some(state.clone()));
        }
        Ok(done)
    }

    async fn track(&self, key: &str) -> Result<Option<Track>, OutboxError> {
        if let Some(cached) = self.tracks.lock().expect("track cache").get(key) {
            return Ok(cached.clone());
        }
        let stored = self.call(|reply| Op::Track { key: key.to_string(), reply }).await?;
        self.tracks.lock().expect("track cache").insert(key.to_string(), stored.clone());
        Ok(stored)
    }

    async fn lease(&self, now: Millis, limit: usize, lease_ms: i64) -> Result<Vec<Delivery>, OutboxError> {
        self.call(|reply| Op::Lease { now, limit, lease_ms, reply }).await
    }

    async fn finish(&self, id: &str, attempt: AttemptRecord, next: Next) -> Result<(), OutboxError> {
        self.call(|reply| Op::Finish { id: id.to_string(), attempt, next, reply }).await
    }

    async fn next_due(&self) -> Result<Option<Millis>, OutboxError> {
        self.call(|reply| Op::NextDue { reply }).await
    }

    async fn list(&self, filter: &ListFilter) -> Result<Vec<Delivery>, OutboxError> {
        let filter = filter.clone();
        self.call(|reply| Op::List { filter, reply }).await
    }

    async fn get(&self, id: &str) -> Result<Option<(Delivery, Vec<AttemptRecord>)>, OutboxError> {
        self.call(|reply| Op::Get { id: id.to_string(), reply }).await
    }

    async fn replay(&self, ids: &[String], filter: &ListFilter, now: Millis) -> Result<usize, OutboxError> {
        let (ids, filter) = (ids.to_vec(), filter.clone());
        self.call(|reply| Op::Replay { ids, filter, now, reply }).await
    }

    async fn defer(&self, id: &str, at: Millis) -> Result<(), OutboxError> {
        self.call(|reply| Op::Defer { id: id.to_string(), at, reply }).await
    }

    async fn backlog(
        &self,
        channels: &[String],
        now: Millis,
        limit: usize,
    ) -> Result<Vec<Delivery>, OutboxError> {
        let channels = channels.to_vec();
        self.call(|reply| Op::Backlog { channels, now, limit, reply }).await
    }

    async fn merge(
        &self,
        ids: &[String],
        summary: &NewDelivery,
        event_id: &str,
        at: Millis,
    ) -> Result<(), OutboxError> {
        let (ids, summary, event_id) = (ids.to_vec(), StoredNew::from(summary)?, event_id.to_string());
        self.call(|reply| Op::Merge { ids, summary, event_id, at, reply }).await
    }

    async fn held(&self, key: &str) -> Result<Vec<Delivery>, OutboxError> {
        self.call(|reply| Op::Held { key: key.to_string(), reply }).await
    }

    async fn hold_due(&self, key: &str) -> Result<Option<Millis>, OutboxError> {
        Ok(self.held(key).await?.iter().map(|d| d.next_at).min())
    }

    async fn claim(&self, key: &str, now: Millis, window_ms: i64) -> Result<bool, OutboxError> {
        self.call(|reply| Op::Claim { key: key.to_string(), now, window_ms, reply }).await
    }
}
