//! Checkpoints off the commit path.
//!
//! SQLite's automatic checkpoint runs inside the commit that crosses its
//! threshold: that commit copies the WAL into the database file and syncs
//! it, and every append waiting on it waits too (50 ms and more were seen
//! at 10,000 events/s). Here the writer's automatic checkpoint is off and a
//! thread of its own, with its own connection, runs passive checkpoints: a
//! passive checkpoint never takes the write lock, so commits go on
//! appending to the WAL while it copies, and the writer restarts the WAL
//! from its beginning after a checkpoint that copied everything.
//!
//! Checkpoints are small and frequent rather than large and rare: the
//! database file's sync at the end of a checkpoint holds up the writer's
//! next WAL write on the same disk for about as long as it takes, and a
//! checkpoint of a few milliseconds' worth of commits keeps that short.

use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::thread::JoinHandle;
use std::time::Duration;

use rusqlite::Connection;

use super::SqliteOptions;
use super::schema;
use crate::store::StoreError;

/// The least time between the starts of two checkpoints: commits made
/// within it share one checkpoint, so a busy writer costs at most this many
/// database syncs per second, and a quiet one none.
const CHECKPOINT_INTERVAL: Duration = Duration::from_millis(10);

/// The writer's handle on the checkpointing thread. Dropping it stops the
/// thread, after the checkpoint under way if any.
pub(crate) struct Checkpointer {
    wake: Option<SyncSender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Checkpointer {
    /// Opens the thread's connection and starts it.
    pub(crate) fn start(options: &SqliteOptions) -> Result<Self, StoreError> {
        let conn = schema::open_checkpointer(options)?;
        let path = options.path.clone();
        // One pending request is enough: it covers every commit made before it runs.
        let (wake, wakes) = sync_channel::<()>(1);
        let thread = std::thread::Builder::new()
            .name("mcp-resume-sqlite-checkpoint".into())
            .spawn(move || run(&conn, &wakes, &path))
            .map_err(|source| StoreError::Io {
                path: options.path.clone(),
                source: std::sync::Arc::new(source),
            })?;
        Ok(Self {
            wake: Some(wake),
            thread: Some(thread),
        })
    }

    /// Asks for a checkpoint of what has been committed so far. Never blocks.
    pub(crate) fn request(&self) {
        if let Some(wake) = &self.wake {
            let _ = wake.try_send(());
        }
    }
}

fn run(conn: &Connection, wakes: &Receiver<()>, path: &std::path::Path) {
    while wakes.recv().is_ok() {
        let started = std::time::Instant::now();
        if let Err(error) = checkpoint(conn, path) {
            tracing::warn!(%error, "mcp-resume SQLite checkpoint failed; the next one will retry");
        }
        std::thread::sleep(CHECKPOINT_INTERVAL.saturating_sub(started.elapsed()));
    }
}

/// Copies what the WAL holds into the main file, as far as readers allow,
/// without waiting for them or for the writer.
pub(crate) fn checkpoint(conn: &Connection, path: &std::path::Path) -> Result<(), StoreError> {
    conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()))
        .map_err(|e| schema::classify(path, "checkpointing", e))
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        // Closing the channel ends the thread's loop; joined so its connection
        // is closed when the store's `close` returns.
        self.wake = None;
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
