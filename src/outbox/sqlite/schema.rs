//! The SQLite store's schema: connection settings and the migrations that run when it opens.

use rusqlite::Connection;

use super::db;
use crate::outbox::OutboxError;

/// Schema migrations, in order; `PRAGMA user_version` counts those applied. Never edit one that
/// has shipped: add another.
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
    // Write less per event. A delivery's rendered message moves to a write-once table, so the
    // row each lease and attempt rewrites is about a hundred bytes instead of kilobytes. A
    // message that repeats its event's JSON (the default webhook body) stores only what follows
    // it (`event_prefix`: how many bytes of the event's body come first). Rows get stable
    // integer keys that bodies and attempts refer to, and events lose their id index, which
    // nothing looked up. A lease also moves `next_at` to the lease's expiry, so the due-order
    // index skips leased rows by itself. Only dead and merged rows are in the state index (open
    // ones are in the lease index), so the common path, pending to delivered, touches neither
    // end of it. The single writer keeps references intact, so foreign keys are not declared.
    r#"
CREATE TABLE events_v5 (
    seq          INTEGER PRIMARY KEY,
    id           TEXT NOT NULL,
    source       TEXT NOT NULL,
    status       TEXT NOT NULL,
    received_at  INTEGER NOT NULL,
    dedup_key    TEXT,
    duplicate_of TEXT,
    body         TEXT NOT NULL
);
INSERT INTO events_v5 (id, source, status, received_at, dedup_key, duplicate_of, body)
    SELECT id, source, status, received_at, dedup_key, duplicate_of, body FROM events ORDER BY received_at, rowid;
CREATE TABLE deliveries_v5 (
    seq          INTEGER PRIMARY KEY,
    id           TEXT NOT NULL UNIQUE,
    event_id     TEXT NOT NULL,
    rule         TEXT NOT NULL,
    channel      TEXT NOT NULL,
    state        TEXT NOT NULL,
    attempts     INTEGER NOT NULL DEFAULT 0,
    created_at   INTEGER NOT NULL,
    scheduled_at INTEGER NOT NULL,
    next_at      INTEGER NOT NULL,
    leased_until INTEGER,
    last_error   TEXT,
    hold_key     TEXT
);
INSERT INTO deliveries_v5 (id, event_id, rule, channel, state, attempts, created_at, scheduled_at, next_at,
                           leased_until, last_error, hold_key)
    SELECT id, event_id, rule, channel, state, attempts, created_at, scheduled_at,
           MAX(next_at, COALESCE(leased_until, next_at)), leased_until, last_error, hold_key
    FROM deliveries ORDER BY created_at, id;
CREATE TABLE delivery_bodies (
    seq          INTEGER PRIMARY KEY,
    message      TEXT NOT NULL,
    headline     TEXT NOT NULL,
    event_seq    INTEGER,
    event_prefix INTEGER
);
INSERT INTO delivery_bodies (seq, message, headline)
    SELECT n.seq, d.message, d.headline FROM deliveries d JOIN deliveries_v5 n ON n.id = d.id;
CREATE TABLE attempts_v5 (
    delivery_seq INTEGER NOT NULL,
    at           INTEGER NOT NULL,
    outcome      TEXT NOT NULL,
    http_status  INTEGER,
    code         INTEGER,
    detail       TEXT NOT NULL,
    latency_ms   INTEGER NOT NULL
);
INSERT INTO attempts_v5 (delivery_seq, at, outcome, http_status, code, detail, latency_ms)
    SELECT n.seq, a.at, a.outcome, a.http_status, a.code, a.detail, a.latency_ms
    FROM attempts a JOIN deliveries_v5 n ON n.id = a.delivery_id ORDER BY a.rowid;
DROP TABLE attempts;
DROP TABLE deliveries;
DROP TABLE events;
ALTER TABLE events_v5 RENAME TO events;
ALTER TABLE deliveries_v5 RENAME TO deliveries;
ALTER TABLE attempts_v5 RENAME TO attempts;
CREATE INDEX events_dedup ON events (dedup_key, received_at) WHERE dedup_key IS NOT NULL;
CREATE INDEX deliveries_lease ON deliveries (next_at, created_at) WHERE state IN ('pending', 'retrying');
CREATE INDEX deliveries_state ON deliveries (state, created_at) WHERE state IN ('dead', 'merged');
CREATE INDEX deliveries_hold ON deliveries (hold_key) WHERE hold_key IS NOT NULL;
CREATE INDEX attempts_delivery ON attempts (delivery_seq, at);
"#,
    // A robot's backlog (the open deliveries of its channels, oldest first) is read each time
    // its rate limit holds a delivery back. Without this index that read sorted every open
    // delivery with its message, and a burst to a slow robot made the writer, and so every
    // webhook, wait for it.
    r#"
CREATE INDEX deliveries_backlog ON deliveries (channel, created_at) WHERE state IN ('pending', 'retrying');
"#,
    // From here on `events.body` holds the event's JSON packed with LZ4, as a BLOB; rows
    // written before stay TEXT and are read as they are. Nothing to change in the tables: the
    // version tells an older Herald that it cannot read this store.
    "SELECT 1;",
    r#"
CREATE TABLE health (
    id         INTEGER PRIMARY KEY CHECK (id = 1),
    checked_at INTEGER NOT NULL
);
"#,
    // How long an answer paused its robot (a rate-limit code, Retry-After), so that a restart
    // keeps the pause. Few attempts have one: the index holds only those. Until now a restart
    // read a lockout from the platform's code, so the codes of the last ten minutes (the
    // longest pause) get the pause their platform asks for: an upgrade in a lockout keeps it.
    r#"
ALTER TABLE attempts ADD COLUMN pause_ms INTEGER;
CREATE INDEX attempts_pause ON attempts (at) WHERE pause_ms IS NOT NULL;
UPDATE attempts SET pause_ms = CASE code
        WHEN 130101 THEN 600000 WHEN 410100 THEN 600000
        WHEN 45009 THEN 60000
        WHEN 11232 THEN 5000
    END
    WHERE code IN (130101, 410100, 45009, 11232)
      AND at >= CAST(strftime('%s', 'now') AS INTEGER) * 1000 - 600000;
"#,
    // A unit's state carries its version (how many results made it): results of one unit
    // accepted together may commit in either order, and the later state must stay.
    r#"
ALTER TABLE tracks ADD COLUMN version INTEGER NOT NULL DEFAULT 0;
"#,
];

/// The number of migrations this build knows.
pub fn version() -> usize {
    MIGRATIONS.len()
}

/// Connection settings, applied on every open.
pub fn configure(conn: &Connection) -> rusqlite::Result<()> {
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    // FULL: a commit is on disk before `enqueue` returns (group commit pays for it once).
    conn.pragma_update(None, "synchronous", "FULL")?;
    // Migrations before the fifth declared foreign keys; the single writer keeps references
    // intact, and checking them cost every insert an index lookup.
    conn.pragma_update(None, "foreign_keys", "OFF")?;
    // 8 MiB of page cache (negative: KiB), so the hot pages of the tables and indexes stay in
    // memory; a checkpoint's WAL file is cut back to 64 MiB.
    conn.pragma_update(None, "cache_size", -8192)?;
    conn.pragma_update(None, "journal_size_limit", 64 * 1024 * 1024)?;
    conn.pragma_update(None, "temp_store", "MEMORY")?;
    Ok(())
}

/// Brings the schema up to date, one transaction per migration.
pub fn migrate(conn: &mut Connection) -> Result<(), OutboxError> {
    migrate_to(conn, MIGRATIONS.len())
}

/// Applies the migrations up to version `target`.
pub fn migrate_to(conn: &mut Connection, target: usize) -> Result<(), OutboxError> {
    let version: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0)).map_err(db)?;
    if version as usize > MIGRATIONS.len() {
        return Err(OutboxError(format!(
            "the store's schema (version {version}) is newer than this Herald knows ({})",
            MIGRATIONS.len()
        )));
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().take(target).skip(version as usize) {
        let tx = conn.transaction().map_err(db)?;
        tx.execute_batch(sql).map_err(db)?;
        tx.pragma_update(None, "user_version", (i + 1) as i64).map_err(db)?;
        tx.commit().map_err(db)?;
        tracing::info!(version = i + 1, "store schema migrated");
    }
    Ok(())
}
