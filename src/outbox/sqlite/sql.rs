//! The store's statements, one function per outbox operation, each run inside the writer's
//! current transaction.
//!
//! A delivery is two rows: `deliveries` (its state, about a hundred bytes, rewritten by each
//! lease and attempt) and `delivery_bodies` (the rendered message and headline, written once),
//! joined on `seq`. A message whose body begins with its event's JSON stores only the rest, and
//! is put back together from the event's row when it is read (see `StoredNew`). An event's
//! JSON is stored packed (see `pack.rs`).
//!
//! A leased delivery has `leased_until` set and `next_at` moved to the same time, so the
//! due-order index never offers it again until the lease expires.

use rusqlite::{params, OptionalExtension, Transaction};

use super::{db, StoredEvent, StoredNew};
use crate::channels::{Message, MessageBody};
use crate::clock::Millis;
use crate::outbox::{
    AttemptRecord, Dedup, Delivery, DeliveryState, Enqueued, ListFilter, Next, OutboxError, Pause, Repeat,
    Sent,
};
use crate::state::Track;

/// The columns `row_to_delivery` reads, from `deliveries d JOIN delivery_bodies b`.
const DELIVERY_COLUMNS: &str = "d.id, d.event_id, d.rule, d.channel, b.message, d.state, d.attempts, \
     d.created_at, d.scheduled_at, d.next_at, d.last_error, b.headline, d.hold_key, b.event_prefix, e.body";

/// The tables `DELIVERY_COLUMNS` come from, after `FROM deliveries d`.
const BODIES: &str = "JOIN delivery_bodies b ON b.seq = d.seq LEFT JOIN events e ON e.seq = b.event_seq";

const OPEN: &str = "d.state IN ('pending', 'retrying')";

fn row_to_delivery(r: &rusqlite::Row<'_>) -> rusqlite::Result<Delivery> {
    delivery_at(r, 0)
}

/// A delivery from `DELIVERY_COLUMNS`, starting at column `o`.
fn delivery_at(r: &rusqlite::Row<'_>, o: usize) -> rusqlite::Result<Delivery> {
    let bad =
        |what: String| rusqlite::Error::FromSqlConversionFailure(o, rusqlite::types::Type::Text, what.into());
    let state = r.get_ref(o + 5)?.as_str()?;
    let headline = r.get_ref(o + 11)?.as_str()?;
    let mut message: Message =
        serde_json::from_str(r.get_ref(o + 4)?.as_str()?).map_err(|e| bad(format!("stored message: {e}")))?;
    if let Some(prefix) = r.get::<_, Option<i64>>(o + 13)? {
        let prefix = usize::try_from(prefix).map_err(|_| bad(format!("stored message: prefix {prefix}")))?;
        let event = super::pack::unpack(r.get_ref(o + 14)?).map_err(|e| bad(format!("stored event: {e}")))?;
        let head =
            event.get(..prefix).ok_or_else(|| bad("stored message: its event's body is missing".into()))?;
        match &mut message.body {
            MessageBody::Raw { body, .. } => body.insert_str(0, head),
            _ => return Err(bad("stored message: only a raw body can start with its event".into())),
        }
    }
    Ok(Delivery {
        id: r.get(o)?,
        event_id: r.get(o + 1)?,
        rule: r.get(o + 2)?,
        channel: r.get(o + 3)?,
        message,
        state: DeliveryState::parse(state).ok_or_else(|| bad(format!("unknown state {state}")))?,
        attempts: r.get(o + 6)?,
        created_at: r.get(o + 7)?,
        scheduled_at: r.get(o + 8)?,
        next_at: r.get(o + 9)?,
        last_error: r.get(o + 10)?,
        headline: serde_json::from_str(headline).map_err(|e| bad(format!("stored headline: {e}")))?,
        hold: r.get(o + 12)?,
    })
}

/// Stores an event and, unless it duplicates one stored within the window, its deliveries.
/// With `lease_ms`, the deliveries due at once are stored leased to the caller.
pub fn enqueue(
    tx: &Transaction<'_>,
    event: &StoredEvent,
    deliveries: &[StoredNew],
    now: Millis,
    dedup: Option<&Dedup>,
    lease_ms: Option<i64>,
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
        "INSERT INTO events (id, source, status, received_at, dedup_key, duplicate_of, body) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )
    .and_then(|mut s| {
        s.execute(params![
            event.id,
            event.source,
            event.status,
            now,
            dedup.map(|d| &d.key),
            duplicate_of,
            event.body
        ])
    })
    .map_err(db)?;
    let event_seq = tx.last_insert_rowid();
    let mut suppressed = Vec::new();
    if duplicate_of.is_none() {
        for d in deliveries {
            if let Some(repeat) = &d.repeat {
                if !claim(tx, repeat, now)? {
                    suppressed.push(d.id.clone());
                    continue;
                }
            }
            let leased = lease_ms.filter(|_| d.due_at.is_none()).map(|ms| now + ms);
            insert_delivery(tx, d, &event.id, Some(event_seq), now, leased)?;
        }
    }
    Ok(Enqueued { duplicate_of, suppressed })
}

/// Inserts a delivery of the event `event_id`; `event_seq` is that event's row, when the
/// message may have been stored relative to it.
fn insert_delivery(
    tx: &Transaction<'_>,
    d: &StoredNew,
    event_id: &str,
    event_seq: Option<i64>,
    at: Millis,
    leased_until: Option<Millis>,
) -> Result<(), OutboxError> {
    let next_at = leased_until.or(d.due_at).unwrap_or(at);
    tx.prepare_cached(
        "INSERT INTO deliveries (id, event_id, rule, channel, hold_key, state, created_at, scheduled_at, next_at, \
         leased_until) VALUES (?1, ?2, ?3, ?4, ?5, 'pending', ?6, ?6, ?7, ?8)",
    )
    .and_then(|mut s| s.execute(params![d.id, event_id, d.rule, d.channel, d.hold, at, next_at, leased_until]))
    .map_err(db)?;
    let seq = tx.last_insert_rowid();
    let event_seq = event_seq.filter(|_| d.event_prefix.is_some());
    tx.prepare_cached(
        "INSERT INTO delivery_bodies (seq, message, headline, event_seq, event_prefix) VALUES (?1, ?2, ?3, ?4, ?5)",
    )
    .and_then(|mut s| s.execute(params![seq, d.message, d.headline, event_seq, d.event_prefix.map(|n| n as i64)]))
    .map_err(db)?;
    Ok(())
}

/// Stores a unit's state, unless a later one (a higher version) is stored already; of two with
/// one version, the last.
pub fn save_track(
    tx: &Transaction<'_>,
    key: &str,
    state: &str,
    version: u64,
    now: Millis,
) -> Result<(), OutboxError> {
    tx.prepare_cached(
        "INSERT INTO tracks (key, state, updated_at, version) VALUES (?1, ?2, ?3, ?4) \
         ON CONFLICT (key) DO UPDATE SET state = excluded.state, updated_at = excluded.updated_at, \
         version = excluded.version WHERE excluded.version >= tracks.version",
    )
    .and_then(|mut s| s.execute(params![key, state, now, version as i64]))
    .map_err(db)?;
    Ok(())
}

pub fn load_track(tx: &Transaction<'_>, key: &str) -> Result<Option<Track>, OutboxError> {
    let stored: Option<String> = tx
        .prepare_cached("SELECT state FROM tracks WHERE key = ?1")
        .and_then(|mut s| s.query_row([key], |r| r.get(0)).optional())
        .map_err(db)?;
    stored
        .map(|s| serde_json::from_str(&s).map_err(|e| OutboxError(format!("stored state of {key}: {e}"))))
        .transpose()
}

pub fn held(tx: &Transaction<'_>, key: &str, now: Millis) -> Result<Vec<Delivery>, OutboxError> {
    let sql = format!(
        "SELECT {DELIVERY_COLUMNS} FROM deliveries d {BODIES} WHERE d.hold_key = ?1 AND {OPEN} \
         AND (d.leased_until IS NULL OR d.leased_until <= ?2) ORDER BY d.created_at, d.id"
    );
    tx.prepare_cached(&sql)
        .and_then(|mut s| s.query_map(params![key, now], row_to_delivery)?.collect())
        .map_err(db)
}

/// When the hold `key` is released: the earliest due time of its deliveries that are still
/// pending and not leased at `now` (see `Outbox::hold_due`).
pub fn hold_due(tx: &Transaction<'_>, key: &str, now: Millis) -> Result<Option<Millis>, OutboxError> {
    tx.prepare_cached(
        "SELECT MIN(next_at) FROM deliveries WHERE hold_key = ?1 AND state = 'pending' \
         AND (leased_until IS NULL OR leased_until <= ?2)",
    )
    .and_then(|mut s| s.query_row(params![key, now], |r| r.get(0)))
    .map_err(db)
}

/// Claims a repeat key for `now`, unless it was claimed within its window: whether the
/// delivery that carries it is news.
fn claim(tx: &Transaction<'_>, repeat: &Repeat, now: Millis) -> Result<bool, OutboxError> {
    let last: Option<Millis> = tx
        .prepare_cached("SELECT at FROM claims WHERE key = ?1")
        .and_then(|mut s| s.query_row([&repeat.key], |r| r.get(0)).optional())
        .map_err(db)?;
    if last.is_some_and(|at| now - at < repeat.window_ms) {
        return Ok(false);
    }
    tx.prepare_cached(
        "INSERT INTO claims (key, at) VALUES (?1, ?2) ON CONFLICT (key) DO UPDATE SET at = excluded.at",
    )
    .and_then(|mut s| s.execute(params![repeat.key, now]))
    .map_err(db)?;
    Ok(true)
}

/// Leases the due deliveries, passing over those to the channels in `skip`. The skipped
/// channels are given as one JSON array, so the statement's text, and its cached plan, stay
/// the same whatever the list.
pub fn lease(
    tx: &Transaction<'_>,
    now: Millis,
    limit: usize,
    lease_ms: i64,
    skip: &[String],
) -> Result<Vec<Delivery>, OutboxError> {
    let skipping =
        if skip.is_empty() { "" } else { "AND d.channel NOT IN (SELECT value FROM json_each(?3))" };
    let sql = format!(
        "SELECT d.seq, {DELIVERY_COLUMNS} FROM deliveries d INDEXED BY deliveries_lease \
         {BODIES} WHERE {OPEN} AND d.next_at <= ?1 {skipping} \
         ORDER BY d.next_at, d.created_at LIMIT ?2"
    );
    let row = |r: &rusqlite::Row<'_>| Ok((r.get(0)?, delivery_at(r, 1)?));
    let due: Vec<(i64, Delivery)> = tx
        .prepare_cached(&sql)
        .and_then(|mut s| {
            if skip.is_empty() {
                s.query_map(params![now, limit as i64], row)?.collect()
            } else {
                let skip = serde_json::to_string(skip).expect("a list of strings serializes");
                s.query_map(params![now, limit as i64, skip], row)?.collect()
            }
        })
        .map_err(db)?;
    let until = now + lease_ms;
    let mut mark = tx
        .prepare_cached("UPDATE deliveries SET next_at = ?2, leased_until = ?2 WHERE seq = ?1")
        .map_err(db)?;
    for (seq, _) in &due {
        mark.execute(params![seq, until]).map_err(db)?;
    }
    Ok(due.into_iter().map(|(_, d)| d).collect())
}

/// Each channel is looked up through `deliveries_backlog` (its open deliveries, oldest first),
/// which stops at the first one due: a long backlog costs one step, not a scan.
pub fn due_channels(
    tx: &Transaction<'_>,
    channels: &[String],
    now: Millis,
) -> Result<Vec<String>, OutboxError> {
    let mut stmt = tx
        .prepare_cached(&format!(
            "SELECT EXISTS (SELECT 1 FROM deliveries d INDEXED BY deliveries_backlog \
             WHERE d.channel = ?1 AND {OPEN} AND d.next_at <= ?2)"
        ))
        .map_err(db)?;
    let mut out = Vec::new();
    for c in channels {
        if stmt.query_row(params![c, now], |r| r.get::<_, bool>(0)).map_err(db)? {
            out.push(c.clone());
        }
    }
    Ok(out)
}

pub fn finish(tx: &Transaction<'_>, id: &str, a: &AttemptRecord, next: &Next) -> Result<(), OutboxError> {
    let (state, next_at, error): (&str, Option<Millis>, Option<&str>) = match next {
        Next::Delivered => ("delivered", None, None),
        Next::RetryAt(at) => ("retrying", Some(*at), Some(a.detail.as_str())),
        Next::Dead(reason) => ("dead", None, Some(reason.as_str())),
    };
    // A plain UPDATE, then the attempt by a subquery: RETURNING would build a temporary table
    // for each call.
    let changed = tx
        .prepare_cached(
            "UPDATE deliveries SET state = ?2, attempts = attempts + ?5, next_at = COALESCE(?3, next_at), \
             last_error = COALESCE(?4, last_error), leased_until = NULL WHERE id = ?1",
        )
        .and_then(|mut s| s.execute(params![id, state, next_at, error, i64::from(a.counts())]))
        .map_err(db)?;
    if changed == 0 {
        return Err(OutboxError(format!("no delivery {id}")));
    }
    tx.prepare_cached(
        "INSERT INTO attempts (delivery_seq, at, outcome, http_status, code, detail, latency_ms, pause_ms) \
         SELECT seq, ?2, ?3, ?4, ?5, ?6, ?7, ?8 FROM deliveries WHERE id = ?1",
    )
    .and_then(|mut s| {
        let pause_ms = a.pause_ms.map(|ms| ms as i64);
        s.execute(params![
            id,
            a.at,
            a.outcome,
            a.http_status,
            a.code,
            a.detail,
            a.latency_ms as i64,
            pause_ms
        ])
    })
    .map_err(db)?;
    Ok(())
}

/// Rewrites the one row of `health`: the commit after it says whether the store can write.
pub fn check(tx: &Transaction<'_>, now: Millis) -> Result<(), OutboxError> {
    tx.prepare_cached("INSERT OR REPLACE INTO health (id, checked_at) VALUES (1, ?1)")
        .and_then(|mut s| s.execute([now]))
        .map_err(db)?;
    Ok(())
}

pub fn next_due(tx: &Transaction<'_>) -> Result<Option<Millis>, OutboxError> {
    tx.prepare_cached(&format!("SELECT MIN(d.next_at) FROM deliveries d WHERE {OPEN}"))
        .and_then(|mut s| s.query_row([], |r| r.get(0)))
        .map_err(db)
}

/// The filter as SQL conditions (placeholders numbered from `first`) and their values.
fn filter_sql(filter: &ListFilter, first: usize) -> (Vec<String>, Vec<rusqlite::types::Value>) {
    let mut conds = Vec::new();
    let mut args: Vec<rusqlite::types::Value> = Vec::new();
    if let Some(state) = filter.state {
        conds.push(format!("d.state = ?{}", first + args.len()));
        // Lets SQLite use the partial index that holds this state, if one does.
        match state {
            DeliveryState::Dead | DeliveryState::Merged => conds.push("d.state IN ('dead', 'merged')".into()),
            DeliveryState::Pending | DeliveryState::Retrying => conds.push(OPEN.into()),
            DeliveryState::Delivered => {}
        }
        args.push(state.as_str().to_string().into());
    }
    if let Some(channel) = &filter.channel {
        conds.push(format!("d.channel = ?{}", first + args.len()));
        args.push(channel.clone().into());
    }
    (conds, args)
}

/// Newest first: in the order stored, which a scan of delivered rows can follow from the end.
pub fn list(tx: &Transaction<'_>, filter: &ListFilter) -> Result<Vec<Delivery>, OutboxError> {
    let (conds, args) = filter_sql(filter, 1);
    let clause = if conds.is_empty() { String::new() } else { format!("WHERE {}", conds.join(" AND ")) };
    // Open and dead/merged deliveries are few beside delivered ones: read them through their
    // partial index rather than scanning every row newest first.
    let index = match filter.state {
        Some(DeliveryState::Pending | DeliveryState::Retrying) => "INDEXED BY deliveries_lease",
        Some(DeliveryState::Dead | DeliveryState::Merged) => "INDEXED BY deliveries_state",
        _ => "",
    };
    let sql = format!(
        "SELECT {DELIVERY_COLUMNS} FROM deliveries d {index} {BODIES} {clause} ORDER BY d.seq DESC LIMIT {}",
        filter.limit
    );
    tx.prepare(&sql)
        .and_then(|mut s| s.query_map(rusqlite::params_from_iter(args), row_to_delivery)?.collect())
        .map_err(db)
}

pub fn get(tx: &Transaction<'_>, id: &str) -> Result<Option<(Delivery, Vec<AttemptRecord>)>, OutboxError> {
    let sql = format!("SELECT d.seq, {DELIVERY_COLUMNS} FROM deliveries d {BODIES} WHERE d.id = ?1");
    let Some((seq, d)) = tx
        .prepare_cached(&sql)
        .and_then(|mut s| s.query_row([id], |r| Ok((r.get::<_, i64>(0)?, delivery_at(r, 1)?))).optional())
        .map_err(db)?
    else {
        return Ok(None);
    };
    let attempts = tx
        .prepare_cached(
            "SELECT at, outcome, http_status, code, detail, latency_ms, pause_ms FROM attempts \
             WHERE delivery_seq = ?1 ORDER BY at, rowid",
        )
        .and_then(|mut s| {
            s.query_map([seq], |r| {
                Ok(AttemptRecord {
                    at: r.get(0)?,
                    outcome: r.get(1)?,
                    http_status: r.get(2)?,
                    code: r.get(3)?,
                    detail: r.get(4)?,
                    latency_ms: r.get::<_, i64>(5)? as u64,
                    pause_ms: r.get::<_, Option<i64>>(6)?.map(|ms| ms as u64),
                })
            })?
            .collect()
        })
        .map_err(db)?;
    Ok(Some((d, attempts)))
}

pub fn replay(
    tx: &Transaction<'_>,
    ids: &[String],
    filter: &ListFilter,
    now: Millis,
) -> Result<usize, OutboxError> {
    let reset =
        "UPDATE deliveries AS d SET state = 'pending', attempts = 0, scheduled_at = ?1, next_at = ?1, \
                 leased_until = NULL WHERE d.state IN ('dead', 'retrying') \
                 AND (d.leased_until IS NULL OR d.leased_until <= ?1)";
    if ids.is_empty() {
        let (conds, args) = filter_sql(filter, 2);
        let sql = conds.iter().fold(reset.to_string(), |sql, c| format!("{sql} AND {c}"));
        let values = std::iter::once(rusqlite::types::Value::from(now)).chain(args);
        tx.prepare(&sql).and_then(|mut s| s.execute(rusqlite::params_from_iter(values))).map_err(db)
    } else {
        let mut stmt = tx.prepare_cached(&format!("{reset} AND d.id = ?2")).map_err(db)?;
        let mut n = 0;
        for id in ids {
            n += stmt.execute(params![now, id]).map_err(db)?;
        }
        Ok(n)
    }
}

pub fn defer(tx: &Transaction<'_>, ids: &[String], at: Millis) -> Result<(), OutboxError> {
    let mut put_back = tx
        .prepare_cached("UPDATE deliveries SET next_at = ?2, leased_until = NULL WHERE id = ?1")
        .map_err(db)?;
    for id in ids {
        put_back.execute(params![id, at]).map_err(db)?;
    }
    Ok(())
}

/// Each channel's oldest open deliveries through `deliveries_backlog`, which stops at `limit`
/// however long the backlog is; the channels' lists are then merged, oldest first.
pub fn backlog(
    tx: &Transaction<'_>,
    channels: &[String],
    now: Millis,
    limit: usize,
) -> Result<Vec<Delivery>, OutboxError> {
    let sql = format!(
        "SELECT {DELIVERY_COLUMNS} FROM deliveries d INDEXED BY deliveries_backlog {BODIES} \
         WHERE {OPEN} AND d.channel = ?1 AND (d.leased_until IS NULL OR d.leased_until <= ?2) \
         AND (d.hold_key IS NULL OR d.next_at <= ?2) ORDER BY d.created_at, d.seq LIMIT ?3"
    );
    let mut stmt = tx.prepare_cached(&sql).map_err(db)?;
    let mut out: Vec<Delivery> = Vec::new();
    for channel in channels {
        let rows = stmt.query_map(params![channel, now, limit as i64], row_to_delivery).map_err(db)?;
        for row in rows {
            out.push(row.map_err(db)?);
        }
    }
    if channels.len() > 1 {
        out.sort_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));
        out.truncate(limit);
    }
    Ok(out)
}

pub fn merge(
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
    insert_delivery(tx, summary, event_id, None, at, None)
}

/// Attempts since `since`, oldest first. Attempts are appended in time order, so this reads
/// the table backwards from its newest row and stops at the first attempt older than `since`
/// by more than a minute (concurrent attempts finish a little out of order); no index needed.
pub fn sent_since(tx: &Transaction<'_>, since: Millis) -> Result<Vec<Sent>, OutboxError> {
    const SLACK_MS: Millis = 60_000;
    let mut stmt = tx
        .prepare_cached(
            "SELECT d.channel, a.at FROM attempts a JOIN deliveries d ON d.seq = a.delivery_seq \
             ORDER BY a.rowid DESC",
        )
        .map_err(db)?;
    let mut rows = stmt.query([]).map_err(db)?;
    let mut out = Vec::new();
    while let Some(r) = rows.next().map_err(db)? {
        let at: Millis = r.get(1).map_err(db)?;
        if at < since - SLACK_MS {
            break;
        }
        if at >= since {
            out.push(Sent { channel: r.get(0).map_err(db)?, at });
        }
    }
    out.sort_by_key(|s| s.at);
    Ok(out)
}

/// The pauses answers asked for since `since`, by their end; few attempts have one, and an
/// index holds only those.
pub fn pauses_since(tx: &Transaction<'_>, since: Millis) -> Result<Vec<Pause>, OutboxError> {
    tx.prepare_cached(
        "SELECT d.channel, a.at + a.pause_ms AS until FROM attempts a INDEXED BY attempts_pause \
         JOIN deliveries d ON d.seq = a.delivery_seq WHERE a.pause_ms IS NOT NULL AND a.at >= ?1 ORDER BY until",
    )
    .and_then(|mut s| s.query_map([since], |r| Ok(Pause { channel: r.get(0)?, until: r.get(1)? }))?.collect())
    .map_err(db)
}
