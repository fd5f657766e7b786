//! Bounding the write-ahead log from the writer.
//!
//! SQLite writes the WAL from its start again only once a checkpoint has
//! copied all of it, and the checkpointing thread's passive checkpoints
//! never find it all copied while commits keep coming: under a load that
//! never pauses it would grow without end. So after each commit the writer
//! looks at the WAL's size, and once it holds
//! [`SqliteOptions::max_wal_bytes`] the writer itself runs a checkpoint that
//! waits for readers and copies all of it ([`Mode::Restart`]), between two
//! commits.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use rusqlite::Connection;

use super::SqliteOptions;
use super::checkpointer::{Checkpointed, Mode, checkpoint};
use super::schema::{classify, page_size};
use crate::store::StoreError;

/// The writer's watch on the WAL's size, and when it next restarts it.
pub(super) struct WalBound {
    /// [`SqliteOptions::max_wal_bytes`] in pages (WAL frames).
    max_frames: u64,
    /// The WAL frames past which the writer next tries to restart the WAL:
    /// `max_frames`, or one more bound's worth after a try that readers
    /// held up, so that a reader holding on does not stall every commit.
    restart_at_frames: u64,
    /// Frames in the WAL after the writer's latest commit (SQLite's WAL hook).
    frames: Arc<AtomicU64>,
    /// How long a restart waits for a checkpoint under way on the
    /// checkpointing thread ([`SqliteOptions::busy_timeout`]; SQLite itself
    /// waits as long for readers).
    busy_timeout: Duration,
}

impl WalBound {
    /// Starts watching the WAL of the writer's connection `conn`. Called
    /// after `wal_autocheckpoint` is set, which would replace the hook.
    pub(super) fn watch(
        conn: &mut Connection,
        options: &SqliteOptions,
    ) -> Result<Self, StoreError> {
        let max_frames = (options.max_wal_bytes / page_size(conn)).max(1);
        let frames = Arc::new(AtomicU64::new(0));
        let hooked = frames.clone();
        conn.wal_hook(Some(move |_: &mut rusqlite::hooks::Wal, pages: i32| {
            hooked.store(u64::try_from(pages).unwrap_or(0), Ordering::Relaxed);
            Ok(())
        }))
        .map_err(|e| classify(&options.path, "watching the WAL", e))?;
        Ok(Self {
            max_frames,
            restart_at_frames: max_frames,
            frames,
            busy_timeout: options.busy_timeout,
        })
    }

    /// Restarts the WAL once it holds [`SqliteOptions::max_wal_bytes`]:
    /// called after every commit, of appends or of a settle slice.
    pub(super) fn after_commit(&mut self, conn: &Connection, path: &Path) {
        let frames = self.frames.load(Ordering::Relaxed);
        if frames >= self.restart_at_frames {
            self.restart_at_frames = if self.restart(conn, path) {
                self.max_frames
            } else {
                frames + self.max_frames
            };
        }
    }

    /// Checkpoints all of the WAL, waiting for readers of older snapshots,
    /// so that the next commit writes it from its start. Appends wait
    /// meanwhile (a few milliseconds: most of the WAL is copied already).
    /// The checkpointing thread's checkpoint and readers are waited for up
    /// to the busy timeout in all. Returns whether the WAL was all copied.
    fn restart(&self, conn: &Connection, path: &Path) -> bool {
        let deadline = Instant::now() + self.busy_timeout;
        let restarted = loop {
            // SQLite waits for readers up to the connection's busy timeout,
            // but not for another connection's checkpoint: that is retried
            // here. Both within what is left of the one deadline.
            let left = deadline.saturating_duration_since(Instant::now());
            let _ = conn.busy_timeout(left);
            match checkpoint(conn, path, Mode::Restart) {
                Ok(Checkpointed::Partly) if !left.is_zero() => {
                    std::thread::sleep(Duration::from_millis(1));
                }
                other => break other,
            }
        };
        let _ = conn.busy_timeout(self.busy_timeout);
        match restarted {
            Ok(Checkpointed::Fully) => return true,
            Ok(_) => tracing::warn!(
                timeout = ?self.busy_timeout,
                "mcp-resume SQLite WAL past max_wal_bytes: readers or a checkpoint held it \
                 past the busy timeout; trying again once it has grown by as much again"
            ),
            Err(error) => tracing::warn!(
                %error,
                "mcp-resume SQLite store could not restart its WAL; will retry"
            ),
        }
        false
    }
}
