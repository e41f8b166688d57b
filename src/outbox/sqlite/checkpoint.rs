//! Checkpoints on a thread of their own.
//!
//! In WAL mode every commit appends pages to the log, and a checkpoint copies them back into
//! the database file. SQLite's automatic checkpoint runs inside the commit that crosses its
//! threshold, so one webhook in a thousand would wait for it. Here a second connection copies
//! what it can every few milliseconds without blocking the writer (a passive checkpoint); the
//! writer's own automatic checkpoint stays as a backstop at a much larger log size.

use std::path::Path;
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::Duration;

use rusqlite::Connection;

use super::{db, schema};
use crate::outbox::OutboxError;

/// How often the log is copied back.
const INTERVAL: Duration = Duration::from_millis(50);

/// The log size (in pages) past which the writer checkpoints itself: only if this thread falls
/// far behind.
pub const WRITER_BACKSTOP_PAGES: i64 = 16_384;

/// The checkpoint thread; it stops when dropped.
pub struct Checkpointer {
    stop: Option<mpsc::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Checkpointer {
    /// Opens a connection to `db_path` and starts copying its log back every [`INTERVAL`].
    pub fn start(db_path: &Path) -> Result<Checkpointer, OutboxError> {
        let conn = Connection::open(db_path)
            .map_err(|e| OutboxError(format!("cannot open {}: {e}", db_path.display())))?;
        schema::configure(&conn).map_err(db)?;
        let (stop, stopped) = mpsc::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("herald-checkpoint".into())
            .spawn(move || {
                crate::threads::lower_priority(crate::threads::CHECKPOINT_NICE);
                while let Err(mpsc::RecvTimeoutError::Timeout) = stopped.recv_timeout(INTERVAL) {
                    if let Err(e) = checkpoint(&conn) {
                        tracing::warn!(error = %e, "checkpoint failed; the writer checkpoints itself later");
                    }
                }
                // A last full copy, so the next start finds a short log.
                let _ = checkpoint(&conn);
            })
            .map_err(|e| OutboxError(format!("cannot start the checkpoint thread: {e}")))?;
        Ok(Checkpointer { stop: Some(stop), thread: Some(thread) })
    }
}

/// One passive checkpoint: copies every log page no reader still needs.
fn checkpoint(conn: &Connection) -> rusqlite::Result<()> {
    conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()))
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
