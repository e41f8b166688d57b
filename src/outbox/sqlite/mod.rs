//! The durable outbox: SQLite in WAL mode under `server.data_dir`, with group commit.
//!
//! One writer thread owns the connection (`writer`); callers send it operations and wait for
//! the commit, so `enqueue` returns only after the event and its deliveries are on disk and a
//! `kill -9` right after the 202 loses nothing. Schema migrations run when the store opens.
//!
//! | file | owns |
//! |---|---|
//! | `mod.rs` | opening the store, the data-dir lock, the `Outbox` implementation |
//! | `schema.rs` | connection settings and migrations |
//! | `writer.rs` | the writer thread: batching, one commit per batch, answering callers |
//! | `sql.rs` | one function per operation: the statements |
//! | `pack.rs` | how an event's JSON is stored: packed with LZ4 |

mod pack;
mod schema;
mod sql;
mod writer;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{mpsc, Arc, Mutex};

use async_trait::async_trait;
use rusqlite::{Connection, Transaction};
use tokio::sync::oneshot;

use super::{
    AttemptRecord, Delivery, EnqueueWith, Enqueued, ListFilter, NewDelivery, Next, Outbox, OutboxError,
    Pause, Repeat, Sent,
};
use crate::channels::{Message, MessageBody};
use crate::clock::{Clock, Millis, SystemClock};
use crate::event::Event;
use crate::state::Track;
use writer::{Op, Statements};

fn db(e: rusqlite::Error) -> OutboxError {
    OutboxError(e.to_string())
}

fn json_text(v: &impl serde::Serialize) -> Result<String, OutboxError> {
    serde_json::to_string(v).map_err(|e| OutboxError(e.to_string()))
}

/// An event as stored: its JSON, packed, and the columns it is found by.
pub(crate) struct StoredEvent {
    id: String,
    source: String,
    status: &'static str,
    /// The event's JSON, packed (see [`pack`]).
    body: Vec<u8>,
}

/// A delivery as stored: its message and headline already JSON text.
///
/// A raw message body that begins with its event's JSON up to the closing brace (the default
/// webhook body is the event's JSON itself; a template may add members after it) is stored
/// without that part, which the
/// event's row already holds: `event_prefix` says how many bytes of the event's body to put
/// back in front. For such a webhook this halves what each event writes to disk.
pub(crate) struct StoredNew {
    id: String,
    rule: String,
    channel: String,
    message: String,
    headline: String,
    event_prefix: Option<usize>,
    hold: Option<String>,
    due_at: Option<Millis>,
    repeat: Option<Repeat>,
}

impl StoredNew {
    /// `event_body` is the JSON of the delivery's event, when the event is stored with it.
    fn from(d: &NewDelivery, event_body: Option<&str>) -> Result<StoredNew, OutboxError> {
        let (message, event_prefix) = match (&d.message.body, event_body) {
            (MessageBody::Raw { body, content_type }, Some(event))
                if event.len() > 1 && body.starts_with(&event[..event.len() - 1]) =>
            {
                let prefix = event.len() - 1;
                let tail = Message {
                    body: MessageBody::Raw {
                        body: body[prefix..].to_string(),
                        content_type: content_type.clone(),
                    },
                    template_errors: d.message.template_errors.clone(),
                };
                (json_text(&tail)?, Some(prefix))
            }
            _ => (json_text(&d.message)?, None),
        };
        Ok(StoredNew {
            id: d.id.clone(),
            rule: d.rule.clone(),
            channel: d.channel.clone(),
            message,
            headline: json_text(&d.headline)?,
            event_prefix,
            hold: d.hold.clone(),
            due_at: d.due_at,
            repeat: d.repeat.clone(),
        })
    }
}

/// The SQLite outbox. Cloning shares the writer.
#[derive(Clone)]
pub struct SqliteOutbox {
    writer: Arc<Writer>,
    /// Tracks read or written by this process. The owner of a data dir is its only writer, so
    /// the cache is exact and spares each accepted event a round trip to the store.
    tracks: Arc<Mutex<HashMap<String, Option<Track>>>>,
}

/// The writer thread, and what lives as long as it does.
struct Writer {
    ops: Option<mpsc::Sender<Op>>,
    thread: Option<std::thread::JoinHandle<()>>,
    path: PathBuf,
    /// Held while the gateway runs: one process owns a data dir.
    lock: Option<std::fs::File>,
}

impl Drop for Writer {
    /// The last handle is gone: the thread commits what is queued and stops, and only then is
    /// the data dir's lock released, so a store opened next sees everything.
    fn drop(&mut self) {
        drop(self.ops.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
        drop(self.lock.take());
    }
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
        // A lease only takes due deliveries, so each was due by the time its round of attempts
        // began (`scheduled_at`): that makes it due now, whatever the clock.
        let n = conn
            .execute(
                "UPDATE deliveries SET next_at = scheduled_at, leased_until = NULL WHERE leased_until IS NOT NULL",
                [],
            )
            .map_err(db)?;
        if n > 0 {
            tracing::info!(deliveries = n, "released the leases of a previous run");
        }
        SqliteOutbox::start(dir, conn, Some(lock))
    }

    /// Opens the store beside a running gateway, for `herald deliveries`: no lock is taken,
    /// leases are left alone, and the schema is not migrated. A gateway of another version may
    /// be running on it: a store whose schema is not this build's is refused, not changed.
    pub fn open_shared(dir: &Path) -> Result<SqliteOutbox, OutboxError> {
        let path = dir.join("herald.db");
        let conn = SqliteOutbox::open_file(&path)?;
        let version: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0)).map_err(db)?;
        let known = schema::version() as i64;
        if version < known {
            return Err(OutboxError(format!(
                "{} has schema version {version} and this herald needs {known}: start `herald serve` \
                 of this version once, and it migrates the store",
                path.display()
            )));
        }
        if version > known {
            return Err(OutboxError(format!(
                "{} was written by a newer Herald (schema version {version}; this one knows {known})",
                path.display()
            )));
        }
        SqliteOutbox::start(dir, conn, None)
    }

    /// Opens `dir/herald.db` and brings its schema up to date.
    fn connect(dir: &Path) -> Result<Connection, OutboxError> {
        let mut conn = SqliteOutbox::open_file(&dir.join("herald.db"))?;
        schema::migrate(&mut conn)?;
        Ok(conn)
    }

    /// Opens the database file with Herald's connection settings.
    fn open_file(path: &Path) -> Result<Connection, OutboxError> {
        let conn = Connection::open(path)
            .map_err(|e| OutboxError(format!("cannot open {}: {e}", path.display())))?;
        schema::configure(&conn).map_err(db)?;
        Ok(conn)
    }

    /// Starts the writer thread on `conn`.
    fn start(dir: &Path, conn: Connection, lock: Option<std::fs::File>) -> Result<SqliteOutbox, OutboxError> {
        let (ops, rx) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("herald-store".into())
            .spawn(move || writer::run(conn, rx))
            .map_err(|e| OutboxError(format!("cannot start the store thread: {e}")))?;
        let writer = Writer { ops: Some(ops), thread: Some(thread), path: dir.join("herald.db"), lock };
        Ok(SqliteOutbox { writer: Arc::new(writer), tracks: Default::default() })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.writer.path
    }

    fn send(&self, op: Op) -> Result<(), OutboxError> {
        let stopped = || OutboxError("the store thread has stopped".into());
        self.writer.ops.as_ref().ok_or_else(stopped)?.send(op).map_err(|_| stopped())
    }

    /// Caches `state` for `key` unless a later state is cached (a read answered before a
    /// commit may arrive after it); the state cached.
    fn remember(&self, key: &str, state: Option<&Track>) -> Option<Track> {
        let mut cache = self.tracks.lock().expect("track cache");
        let cached = cache.get(key).and_then(Option::as_ref);
        let keep = crate::state::later(cached, state).cloned();
        cache.insert(key.to_string(), keep.clone());
        keep
    }

    /// The schema version this build migrates to.
    pub fn schema_version() -> usize {
        schema::version()
    }

    /// Runs `statements` in the writer's next batch; the result once it is committed.
    async fn call<T: Send + 'static>(
        &self,
        statements: impl FnMut(&Transaction<'_>) -> Result<T, OutboxError> + Send + 'static,
    ) -> Result<T, OutboxError> {
        let (tx, rx) = oneshot::channel();
        self.send(Statements::call(statements, tx))?;
        rx.await.map_err(|_| OutboxError("the store thread has stopped".into()))?
    }
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
        // Serialize and pack here, on the caller's thread, so the writer only writes.
        let json = match with.event_json {
            Some(json) => std::borrow::Cow::Borrowed(json),
            None => std::borrow::Cow::Owned(json_text(event)?),
        };
        let deliveries = deliveries
            .iter()
            .map(|d| StoredNew::from(d, Some(&json)))
            .collect::<Result<Vec<_>, OutboxError>>()?;
        let stored = StoredEvent {
            id: event.event_id.clone(),
            source: event.source.clone(),
            status: event.status.as_str(),
            body: pack::pack(&json),
        };
        let dedup = with.dedup.cloned();
        let track = match with.track {
            Some((key, state)) => Some((key.to_string(), json_text(state)?, state.version)),
            None => None,
        };
        let lease_ms = with.lease_ms;
        let done = self
            .call(move |tx| {
                let done = sql::enqueue(tx, &stored, &deliveries, now, dedup.as_ref(), lease_ms)?;
                if let (None, Some((key, state, version))) = (&done.duplicate_of, &track) {
                    sql::save_track(tx, key, state, *version, now)?;
                }
                Ok(done)
            })
            .await?;
        if let (None, Some((key, state))) = (&done.duplicate_of, with.track) {
            self.remember(key, Some(state));
        }
        Ok(done)
    }

    async fn track(&self, key: &str) -> Result<Option<Track>, OutboxError> {
        if let Some(cached) = self.tracks.lock().expect("track cache").get(key) {
            return Ok(cached.clone());
        }
        let owned = key.to_string();
        let stored = self.call(move |tx| sql::load_track(tx, &owned)).await?;
        Ok(self.remember(key, stored.as_ref()))
    }

    async fn lease_skipping(
        &self,
        now: Millis,
        limit: usize,
        lease_ms: i64,
        skip: &[String],
    ) -> Result<Vec<Delivery>, OutboxError> {
        let skip = skip.to_vec();
        self.call(move |tx| sql::lease(tx, now, limit, lease_ms, &skip)).await
    }

    async fn finish(&self, id: &str, attempt: AttemptRecord, next: Next) -> Result<(), OutboxError> {
        // Not waited for: see `Outbox::finish`.
        let owned = id.to_string();
        self.send(Statements::record(id.to_string(), move |tx| sql::finish(tx, &owned, &attempt, &next)))
    }

    async fn flush(&self) -> Result<(), OutboxError> {
        self.call(|_| Ok(())).await
    }

    async fn due_channels(&self, channels: &[String], now: Millis) -> Result<Vec<String>, OutboxError> {
        let channels = channels.to_vec();
        self.call(move |tx| sql::due_channels(tx, &channels, now)).await
    }

    async fn check(&self) -> Result<(), OutboxError> {
        let now = SystemClock.now_ms();
        self.call(move |tx| sql::check(tx, now)).await
    }

    async fn next_due(&self) -> Result<Option<Millis>, OutboxError> {
        self.call(sql::next_due).await
    }

    async fn list(&self, filter: &ListFilter) -> Result<Vec<Delivery>, OutboxError> {
        let filter = filter.clone();
        self.call(move |tx| sql::list(tx, &filter)).await
    }

    async fn get(&self, id: &str) -> Result<Option<(Delivery, Vec<AttemptRecord>)>, OutboxError> {
        let id = id.to_string();
        self.call(move |tx| sql::get(tx, &id)).await
    }

    async fn replay(&self, ids: &[String], filter: &ListFilter, now: Millis) -> Result<usize, OutboxError> {
        let (ids, filter) = (ids.to_vec(), filter.clone());
        self.call(move |tx| sql::replay(tx, &ids, &filter, now)).await
    }

    async fn defer(&self, ids: &[String], at: Millis) -> Result<(), OutboxError> {
        let ids = ids.to_vec();
        self.call(move |tx| sql::defer(tx, &ids, at)).await
    }

    async fn backlog(
        &self,
        channels: &[String],
        now: Millis,
        limit: usize,
    ) -> Result<Vec<Delivery>, OutboxError> {
        let channels = channels.to_vec();
        self.call(move |tx| sql::backlog(tx, &channels, now, limit)).await
    }

    async fn merge(
        &self,
        ids: &[String],
        summary: &NewDelivery,
        event_id: &str,
        at: Millis,
    ) -> Result<(), OutboxError> {
        let (ids, summary, event_id) = (ids.to_vec(), StoredNew::from(summary, None)?, event_id.to_string());
        self.call(move |tx| sql::merge(tx, &ids, &summary, &event_id, at)).await
    }

    async fn held(&self, key: &str, now: Millis) -> Result<Vec<Delivery>, OutboxError> {
        let key = key.to_string();
        self.call(move |tx| sql::held(tx, &key, now)).await
    }

    async fn hold_due(&self, key: &str, now: Millis) -> Result<Option<Millis>, OutboxError> {
        let key = key.to_string();
        self.call(move |tx| sql::hold_due(tx, &key, now)).await
    }

    async fn sent_since(&self, since: Millis) -> Result<Vec<Sent>, OutboxError> {
        self.call(move |tx| sql::sent_since(tx, since)).await
    }

    async fn pauses_since(&self, since: Millis) -> Result<Vec<Pause>, OutboxError> {
        self.call(move |tx| sql::pauses_since(tx, since)).await
    }
}

#[cfg(test)]
mod tests;
