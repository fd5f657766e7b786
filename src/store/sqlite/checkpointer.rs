//! Checkpoints off the commit path.
//!
//! SQLite's automatic checkpoint runs inside the commit that crosses its
//! threshold: that commit copies the WAL into the database file and syncs
//! it, and every append waiting on it waits as long as the copy and the
//! sync take. Here the writer's automatic checkpoint is off and a
//! thread of its own, with its own connection, runs passive checkpoints: a
//! passive checkpoint never takes the write lock, so commits go on
//! appending to the WAL while it copies, and the writer restarts the WAL
//! from its beginning after a checkpoint that copied everything. A writer
//! that never pauses leaves no such moment: once the WAL holds
//! `max_wal_bytes`, the writer itself runs a [`Mode::Restart`] checkpoint
//! between two commits.
//!
//! Checkpoints are small and frequent rather than large and rare: the
//! database file's sync at the end of a checkpoint holds up the writer's
//! next WAL write on the same disk for about as long as it takes, and a
//! checkpoint of a few milliseconds' worth of commits keeps that short.
//! How few is set by what they cost (see [`next_interval`]): as often as
//! every 2 ms while checkpoints are quick (moderate load), down to every
//! 10 ms when they are not (a busy writer, whose commits then share them).
//!
//! The thread also checks, every
//! [`FILE_CHECK_INTERVAL`](super::SqliteEventStore::FILE_CHECK_INTERVAL),
//! that the database file is still the one the store opened (see
//! `file_watch`): it is the store's one thread that wakes when nothing else
//! happens.

use std::sync::Arc;
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, sync_channel};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rusqlite::Connection;

use super::file_watch::FileWatch;
use super::schema;
use super::{SqliteEventStore, SqliteOptions};
use crate::store::StoreError;

/// The least time between the starts of two checkpoints: commits made
/// within it share one checkpoint, so there are at most 500 checkpoints
/// (each ending with a file sync) a second, and none while no commits are made.
const MIN_INTERVAL: Duration = Duration::from_millis(2);

/// The most time between the starts of two checkpoints while commits are
/// made, however long the last one took.
const MAX_INTERVAL: Duration = Duration::from_millis(10);

/// The next checkpoint starts this many times the last one's duration after
/// the last one started (within the two bounds above): the checkpointing
/// thread is busy at most a quarter of the time, unless checkpoints take
/// longer than a quarter of [`MAX_INTERVAL`].
const INTERVAL_PER_CHECKPOINT_TIME: u32 = 4;

/// The checkpointing thread's name. At most 15 bytes, which is all Linux
/// keeps (in `top -H`, `perf`, `/proc`), so it stays apart from the writer's.
pub(crate) const THREAD_NAME: &str = "mcpr-checkpoint";
const _: () = assert!(THREAD_NAME.len() <= 15);

/// How long [`checkpoint_now`] waits for a checkpoint under way elsewhere.
const CHECKPOINT_WAIT: Duration = Duration::from_secs(10);

/// The writer's handle on the checkpointing thread. Dropping it stops the
/// thread, after the checkpoint under way if any.
pub(crate) struct Checkpointer {
    wake: Option<SyncSender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Checkpointer {
    /// Opens the thread's connection and starts it; it also checks the
    /// file with `watch`.
    pub(crate) fn start(
        options: &SqliteOptions,
        watch: Arc<FileWatch>,
    ) -> Result<Self, StoreError> {
        let conn = schema::open_checkpointer(options)?;
        let path = options.path.clone();
        // One pending request is enough: it covers every commit made before it runs.
        let (wake, wakes) = sync_channel::<()>(1);
        let thread =
            super::threads::spawn(THREAD_NAME, options.thread_nice, &options.path, move || {
                run(&conn, &wakes, &path, &watch)
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

fn run(conn: &Connection, wakes: &Receiver<()>, path: &std::path::Path, watch: &FileWatch) {
    // A failure that lasts (a full disk, say) is a warning once, not at
    // every try.
    let mut failing = false;
    let mut next_file_check = Instant::now() + SqliteEventStore::FILE_CHECK_INTERVAL;
    loop {
        let woken =
            match wakes.recv_timeout(next_file_check.saturating_duration_since(Instant::now())) {
                Ok(()) => true,
                Err(RecvTimeoutError::Timeout) => false,
                Err(RecvTimeoutError::Disconnected) => break,
            };
        if Instant::now() >= next_file_check {
            // `check` logs what it finds; the store's health check reports it.
            let _ = watch.check();
            next_file_check = Instant::now() + SqliteEventStore::FILE_CHECK_INTERVAL;
        }
        if !woken {
            continue;
        }
        let started = std::time::Instant::now();
        // `Skipped`: the writer is checkpointing (for a flush, or to restart
        // the WAL); nothing to do.
        let failed = match checkpoint(conn, path, Mode::Passive) {
            Ok(_) if failing => {
                tracing::info!("mcp-resume SQLite checkpoints succeed again");
                false
            }
            Ok(_) => false,
            Err(error) if failing => {
                tracing::debug!(%error, "mcp-resume SQLite checkpoint still failing");
                true
            }
            Err(error) => {
                tracing::warn!(%error, "mcp-resume SQLite checkpoint failed; the next one will retry");
                true
            }
        };
        failing = failed;
        let took = started.elapsed();
        std::thread::sleep(next_interval(took, failed).saturating_sub(took));
    }
}

/// The time from the start of a checkpoint that took `took` to the start of
/// the next one: the longest after a failure, which a quick retry would
/// only repeat.
///
/// Why this rule: checkpoints every 10 ms whatever the load add latency
/// at moderate load, and every 2 ms whatever the load cost CPU and
/// throughput under full load; this rule checkpoints often while
/// checkpoints are quick and backs off towards 10 ms when they are not.
/// Longer than 10 ms makes tail latency worse: a checkpoint of more pages
/// ends with a longer sync. The measurements are in
/// `docs/performance-notes-2026-12.md`, "Checkpoint interval".
fn next_interval(took: Duration, failed: bool) -> Duration {
    if failed {
        return MAX_INTERVAL;
    }
    (took * INTERVAL_PER_CHECKPOINT_TIME).clamp(MIN_INTERVAL, MAX_INTERVAL)
}

/// How a checkpoint deals with the writer and readers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Mode {
    /// Copies what the WAL holds into the main file, as far as readers
    /// allow, without waiting for them or for the writer.
    Passive,
    /// Also waits (up to the connection's busy timeout) for readers of older
    /// snapshots, so that all of the WAL is copied and the next commit
    /// writes it from its start. Run by the writer, between commits.
    Restart,
}

/// How far a checkpoint got.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Checkpointed {
    /// Another connection's checkpoint was under way: SQLite runs one at a
    /// time, and this one did nothing.
    Skipped,
    /// Some of the WAL is still to be copied (readers of older snapshots,
    /// or commits made meanwhile), or it could not wait for them.
    Partly,
    /// All of the WAL is in the main file.
    Fully,
}

/// Runs a checkpoint.
pub(crate) fn checkpoint(
    conn: &Connection,
    path: &std::path::Path,
    mode: Mode,
) -> Result<Checkpointed, StoreError> {
    let sql = match mode {
        Mode::Passive => "PRAGMA wal_checkpoint(PASSIVE)",
        Mode::Restart => "PRAGMA wal_checkpoint(RESTART)",
    };
    // Columns: busy (the checkpoint could not run, or not to the end), frames
    // in the WAL, frames copied into the main file.
    let (busy, frames, copied) = conn
        .query_row(sql, [], |row| {
            Ok((
                row.get::<_, i64>(0)?,
                row.get::<_, i64>(1)?,
                row.get::<_, i64>(2)?,
            ))
        })
        .map_err(|e| schema::classify(path, "checkpointing", e))?;
    // A busy passive checkpoint did nothing; a busy restart may have copied
    // some, but leaves the WAL to grow on.
    Ok(match (busy != 0, mode) {
        (true, Mode::Passive) => Checkpointed::Skipped,
        (false, _) if copied == frames => Checkpointed::Fully,
        _ => Checkpointed::Partly,
    })
}

/// A checkpoint that has run (for a flush, or at close): one under way on
/// the checkpointing thread, which may have begun before the latest commits,
/// is waited out (it takes milliseconds), then this one runs.
pub(crate) fn checkpoint_now(conn: &Connection, path: &std::path::Path) -> Result<(), StoreError> {
    let deadline = Instant::now() + CHECKPOINT_WAIT;
    while checkpoint(conn, path, Mode::Passive)? == Checkpointed::Skipped {
        if Instant::now() >= deadline {
            return Err(StoreError::backend(
                "checkpointing",
                std::io::Error::other(format!(
                    "another checkpoint of {} was still running after {CHECKPOINT_WAIT:?}",
                    path.display()
                )),
            ));
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    Ok(())
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Quick checkpoints come as often as every 2 ms; slower ones four
    /// times their length apart; none more than 10 ms apart; and a failed
    /// one, however quick, is not retried sooner than 10 ms.
    #[test]
    fn checkpoints_come_less_often_the_longer_they_take() {
        let ms = Duration::from_millis;
        assert_eq!(next_interval(Duration::ZERO, false), ms(2));
        assert_eq!(next_interval(Duration::from_micros(300), false), ms(2));
        assert_eq!(next_interval(ms(1), false), ms(4));
        assert_eq!(next_interval(ms(2), false), ms(8));
        assert_eq!(next_interval(ms(3), false), ms(10));
        assert_eq!(next_interval(ms(500), false), ms(10));
        assert_eq!(next_interval(Duration::ZERO, true), ms(10));
    }

    fn connect(path: &std::path::Path) -> Connection {
        let conn = Connection::open(path).unwrap();
        conn.busy_timeout(Duration::from_secs(10)).unwrap();
        conn.pragma_update(None, "journal_mode", "WAL").unwrap();
        conn
    }

    /// SQLite runs one checkpoint at a time: while another connection's
    /// (here a thread checkpointing over and over while rows are written) is
    /// under way, a passive checkpoint does nothing and says so, and
    /// `checkpoint_now` waits until it has run one itself.
    #[test]
    fn a_checkpoint_under_way_elsewhere_is_reported_and_waited_out() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("store.db");
        connect(&path)
            .execute_batch("CREATE TABLE t (x BLOB)")
            .unwrap();
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let busy = |work: fn(&Connection)| {
            let (path, stop) = (path.clone(), stop.clone());
            std::thread::spawn(move || {
                let conn = connect(&path);
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    work(&conn);
                }
            })
        };
        let writer = busy(|conn| {
            conn.execute("INSERT INTO t VALUES (zeroblob(4096))", [])
                .unwrap();
        });
        let checkpointer = busy(|conn| {
            conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()))
                .unwrap();
        });
        let conn = connect(&path);
        let deadline = Instant::now() + Duration::from_secs(10);
        while checkpoint(&conn, &path, Mode::Passive).unwrap() != Checkpointed::Skipped {
            assert!(
                Instant::now() < deadline,
                "never found the other checkpoint under way"
            );
        }
        checkpoint_now(&conn, &path).unwrap();
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        writer.join().unwrap();
        checkpointer.join().unwrap();
    }
}
