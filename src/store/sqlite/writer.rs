//! The single writer thread: every change to the database goes through it,
//! and it commits the appends of all streams that arrive together in one
//! transaction (group commit), while each caller awaits its own result.

use std::collections::HashMap;
use std::fs::File;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use rusqlite::{Connection, OptionalExtension, Transaction, TransactionBehavior, params};
use tokio::sync::{mpsc, oneshot};

use super::checkpointer::{Checkpointed, Checkpointer, Mode, checkpoint, checkpoint_now};
use super::schema::classify;
use super::unix_millis;
use super::{SqliteOptions, SyncMode};
use crate::store::live::LiveStreams;
use crate::store::{
    AppendReceipt, NewEvent, NewStream, Retention, StoreError, StreamEnd, StreamId, StreamState,
    SweepReport,
};

/// The writer thread's name; at most 15 bytes, like the checkpointer's
/// ([`super::checkpointer::THREAD_NAME`]).
pub(crate) const THREAD_NAME: &str = "mcpr-writer";
const _: () = assert!(THREAD_NAME.len() <= 15);

/// At most this many commands share one transaction, so one commit never
/// holds callers for long and a batch's memory stays bounded.
const MAX_GROUP: usize = 1024;

type Reply<T> = oneshot::Sender<Result<T, StoreError>>;

pub(crate) enum Command {
    Create {
        id: StreamId,
        new: NewStream,
        reply: Reply<()>,
    },
    Append {
        stream: StreamId,
        events: Vec<NewEvent>,
        reply: Reply<AppendReceipt>,
    },
    End {
        stream: StreamId,
        end: StreamEnd,
        reply: Reply<()>,
    },
    PurgeSession {
        session: String,
        reply: Reply<u64>,
    },
    Sweep {
        reply: Option<Reply<SweepReport>>,
    },
    Flush {
        reply: Reply<()>,
    },
    Close {
        reply: Reply<()>,
    },
}

/// What the writer remembers of a live stream, so an append needs no read.
#[derive(Clone, Copy)]
struct Cached {
    stream_no: i64,
    first_seq: u64,
    last_seq: u64,
    /// The most events the stream keeps.
    cap: u64,
    /// The `last_activity` last written for it, in Unix milliseconds.
    activity_written: i64,
}

/// When the `recent` table taking appends holds this many rows, appends
/// switch to the other one and the writer starts settling this one into
/// `events` (see the schema). Larger amortises the settling better; smaller
/// keeps the index of `recent`, rewritten by every commit, smaller.
const SETTLE_ROWS: u64 = 4_096;

/// Rows a settle moves in one slice while the writer is idle: an append
/// that arrives during a slice waits for it, so slices are kept short.
/// Measured on a 2-core VM at 10,000 events/s (benchmark row 2, `NORMAL`):
/// 256-row slices took 0.55-0.75 ms each (p50), and the added p99 latency
/// was 1.6 ms (median of 6 runs); with 64-row slices it was 1.1 ms (12
/// runs). 32 or 16 rows did not do better: each slice's own commit then
/// costs more than its rows.
const IDLE_SLICE_ROWS: u64 = 64;

/// A writer that is never idle (appends arrive faster than it commits them)
/// still settles once the table taking appends is full again before the
/// other is settled: after a commit, until the settle is done, in slices of
/// this many rows, which move rows at the lowest cost per row: what matters
/// when throughput is.
const BUSY_SLICE_ROWS: u64 = SETTLE_ROWS;

/// The wait before retrying a settle slice that failed, the first time...
const SETTLE_RETRY_MIN: std::time::Duration = std::time::Duration::from_millis(100);
/// ...and at most, after failures in a row.
const SETTLE_RETRY_MAX: std::time::Duration = std::time::Duration::from_secs(30);

/// `last_activity` of a live stream is refreshed at most this often: it only
/// has to be precise enough for a retention age measured in minutes.
const ACTIVITY_RESOLUTION_MILLIS: i64 = 1_000;

pub(crate) struct Writer {
    conn: Connection,
    ledger: Ledger,
    /// Told after every commit; dropped (and joined) before the lock below.
    checkpointer: Checkpointer,
    /// [`SqliteOptions::max_wal_bytes`] in pages (WAL frames).
    max_wal_frames: u64,
    /// The WAL frames past which the writer next tries to restart the WAL:
    /// `max_wal_frames`, or one more bound's worth after a try that readers
    /// held up, so that a reader holding on does not stall every commit.
    restart_at_frames: u64,
    /// Frames in the WAL after the writer's latest commit (SQLite's WAL hook).
    wal_frames: Arc<AtomicU64>,
    /// How long a restart of the WAL waits for a checkpoint under way on
    /// the checkpointing thread ([`SqliteOptions::busy_timeout`]; SQLite
    /// itself waits as long for readers).
    busy_timeout: std::time::Duration,
    /// After a settle slice failed: how long the writer waited, and when it
    /// tries again (meanwhile it only commits).
    settle_retry: Option<(std::time::Duration, std::time::Instant)>,
    /// Held for the thread's lifetime: releasing it lets another process in.
    _lock: File,
}

/// One of the two tables appends go to (see the schema).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Recent {
    /// `recent`.
    First,
    /// `recent_alt`.
    Second,
}

impl Recent {
    const BOTH: [Recent; 2] = [Recent::First, Recent::Second];

    fn table(self) -> &'static str {
        match self {
            Recent::First => "recent",
            Recent::Second => "recent_alt",
        }
    }

    fn index(self) -> &'static str {
        match self {
            Recent::First => "recent_by_stream",
            Recent::Second => "recent_alt_by_stream",
        }
    }

    fn other(self) -> Recent {
        match self {
            Recent::First => Recent::Second,
            Recent::Second => Recent::First,
        }
    }

    /// Deletes a stream's rows, returning the sequence of each (so that
    /// rows also in `events` are counted once).
    fn delete_stream(self) -> &'static str {
        match self {
            Recent::First => "DELETE FROM recent WHERE stream_no = ?1 RETURNING seq",
            Recent::Second => "DELETE FROM recent_alt WHERE stream_no = ?1 RETURNING seq",
        }
    }

    /// The append statement, spelled out: it runs once per event.
    fn insert(self) -> &'static str {
        match self {
            Recent::First => {
                "INSERT INTO recent (stream_no, seq, event_type, data) VALUES (?1, ?2, ?3, ?4)"
            }
            Recent::Second => {
                "INSERT INTO recent_alt (stream_no, seq, event_type, data) VALUES (?1, ?2, ?3, ?4)"
            }
        }
    }
}

/// A settle under way, of the `recent` table appends do not go to: its
/// rows are copied into `events` in key order, a slice per transaction so
/// that appends committed between slices never wait for the whole move,
/// and the slice that copies the last rows empties the table in one
/// statement.
///
/// Until then a copied row is in both tables. Readers take a stream's
/// events from `events` first and then only the later ones from the
/// `recent` tables, so a row in both is read once; the copy keeps each
/// stream's rows in `events` a contiguous run of sequences, which that read
/// needs.
#[derive(Clone, Copy, Debug)]
struct Settle {
    /// The key (stream, sequence) of the last row copied so far.
    after: (i64, i64),
}

impl Settle {
    const START: Settle = Settle {
        after: (i64::MIN, i64::MIN),
    };
}

/// Everything the writer knows besides its connection, kept apart so a
/// transaction (which borrows the connection) and the cache can be used together.
struct Ledger {
    path: PathBuf,
    retention: Retention,
    live: Arc<LiveStreams>,
    /// Live streams of this process. A miss is looked up in the database.
    cache: HashMap<StreamId, Cached>,
    /// The `recent` table appends go to; the other one is empty unless it
    /// is being settled.
    active: Recent,
    /// Rows appended to `active`, as of the last commit (trims and purges
    /// are not subtracted, so it may be a little high).
    active_rows: u64,
    /// The settle of the other `recent` table under way, if any.
    settle: Option<Settle>,
    sync: SyncMode,
}

/// A reply to send, or a notification to publish, once the batch is committed.
enum Outcome {
    Created(Reply<()>, StreamId),
    Appended(
        Reply<AppendReceipt>,
        Result<(StreamId, AppendReceipt), StoreError>,
    ),
    Ended(
        Reply<()>,
        Result<Option<(StreamId, u64, StreamState)>, StoreError>,
    ),
    Purged(Reply<u64>, Result<Vec<(StreamId, u64)>, StoreError>),
    Swept(Option<Reply<SweepReport>>, Result<SweepReport, StoreError>),
    Failed(Reply<()>, StoreError),
}

impl Writer {
    pub(crate) fn new(
        mut conn: Connection,
        options: &SqliteOptions,
        live: Arc<LiveStreams>,
        lock: File,
        checkpointer: Checkpointer,
    ) -> Result<Self, StoreError> {
        let max_wal_frames = (options.max_wal_bytes / super::schema::page_size(&conn)).max(1);
        let wal_frames = Arc::new(AtomicU64::new(0));
        let frames = wal_frames.clone();
        // Set after `wal_autocheckpoint`, which would replace it.
        conn.wal_hook(Some(move |_: &mut rusqlite::hooks::Wal, pages: i32| {
            frames.store(u64::try_from(pages).unwrap_or(0), Ordering::Relaxed);
            Ok(())
        }))
        .map_err(|e| classify(&options.path, "watching the WAL", e))?;
        Ok(Self {
            conn,
            max_wal_frames,
            restart_at_frames: max_wal_frames,
            wal_frames,
            busy_timeout: options.busy_timeout,
            ledger: Ledger {
                path: options.path.clone(),
                retention: options.retention,
                live,
                cache: HashMap::new(),
                active: Recent::First,
                active_rows: 0,
                settle: None,
                sync: options.sync,
            },
            checkpointer,
            settle_retry: None,
            _lock: lock,
        })
    }

    /// Picks the `recent` table appends go to, from the rows a previous run
    /// left: the one that has rows, if one is empty. If both have rows, the
    /// previous run stopped during a settle: the older table is settled
    /// again (its copy is idempotent) and appends go to the newer one.
    pub(crate) fn load_recent(&mut self) -> Result<(), StoreError> {
        let ledger = &mut self.ledger;
        let loaded = (|| {
            let [first, second] = Recent::BOTH.map(|recent| count_rows(&self.conn, recent));
            let (first, second) = (first?, second?);
            Ok(match (first, second) {
                (_, 0) => (Recent::First, first, None),
                (0, _) => (Recent::Second, second, None),
                _ => {
                    let older = older_recent(&self.conn)?;
                    let rows = if older == Recent::First {
                        second
                    } else {
                        first
                    };
                    (older.other(), rows, Some(Settle::START))
                }
            })
        })();
        let (active, rows, settle) =
            loaded.map_err(|e| classify(&ledger.path, "reading recent events at open", e))?;
        ledger.active = active;
        ledger.active_rows = rows;
        ledger.settle = settle;
        Ok(())
    }

    /// Marks streams that were live when a previous process stopped as
    /// abandoned: their producer is gone, and a resume must say so.
    pub(crate) fn abandon_orphans(&self) -> Result<u64, StoreError> {
        self.conn
            .execute(
                // Now, not the crash, starts their retention clock: clients get
                // the full max_age to resume after a restart.
                "UPDATE streams SET state = ?1, last_activity = ?2 WHERE state = ?3",
                params![
                    StreamState::Abandoned.code(),
                    unix_millis(),
                    StreamState::Live.code()
                ],
            )
            .map(|n| n as u64)
            .map_err(|e| {
                classify(
                    &self.ledger.path,
                    "abandoning streams of a previous process",
                    e,
                )
            })
    }

    /// Runs until the store is closed or dropped.
    pub(crate) fn run(mut self, mut commands: mpsc::Receiver<Command>) {
        let mut group = Vec::with_capacity(MAX_GROUP);
        loop {
            let first = if self.settle_due() {
                // Settling is what the writer does when it has nothing else to do.
                match commands.try_recv() {
                    Ok(command) => command,
                    Err(mpsc::error::TryRecvError::Empty) => {
                        self.settle_slice(IDLE_SLICE_ROWS);
                        continue;
                    }
                    Err(mpsc::error::TryRecvError::Disconnected) => break,
                }
            } else {
                match commands.blocking_recv() {
                    Some(command) => command,
                    None => break,
                }
            };
            group.push(first);
            while group.len() < MAX_GROUP {
                match commands.try_recv() {
                    Ok(command) => group.push(command),
                    Err(_) => break,
                }
            }
            if let Some(close) = self.commit_group(&mut group) {
                let result = self.shut_down();
                // Release the connection and the lock file before answering,
                // so the file can be reopened as soon as `close` returns.
                drop(self);
                let _ = close.send(result);
                return;
            }
            self.bound_wal();
            // A writer too busy to be idle settles anyway once the table
            // taking appends is full again, slice after slice until the
            // settle is done: otherwise `recent` would grow as long as the
            // load lasts.
            while self.settle_due()
                && self.ledger.active_rows >= SETTLE_ROWS
                && self.settle_slice(BUSY_SLICE_ROWS)
            {}
        }
        // Every sender is gone: the store was dropped without `close`.
        if let Err(error) = self.shut_down() {
            tracing::warn!(%error, "mcp-resume SQLite store did not shut down cleanly");
        }
    }

    /// Applies a group of commands in one transaction and answers them.
    /// Returns the reply of a `Close` command, which ends the thread.
    fn commit_group(&mut self, group: &mut Vec<Command>) -> Option<Reply<()>> {
        let Self {
            conn,
            ledger,
            checkpointer,
            ..
        } = self;
        let mut close = None;
        let mut flushes = Vec::new();
        let mut outcomes = Vec::with_capacity(group.len());
        let mut commands = group.drain(..);
        // The new heads of the streams this batch appends to, applied to the
        // cache only once the batch is committed.
        let mut dirty: HashMap<StreamId, Cached> = HashMap::new();
        let result = (|| {
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(|e| {
                    (
                        classify(&ledger.path, "starting a write transaction", e),
                        None,
                    )
                })?;
            for command in commands.by_ref() {
                let outcome = match command {
                    Command::Create { id, new, reply } => match ledger.create(&tx, id, &new) {
                        Ok(()) => Outcome::Created(reply, id),
                        Err(error) => {
                            return Err((error.clone(), Some(Outcome::Failed(reply, error))));
                        }
                    },
                    Command::Append {
                        stream,
                        events,
                        reply,
                    } => match ledger.append(&tx, &mut dirty, stream, events) {
                        Err(error) if !is_logical(&error) => {
                            return Err((
                                error.clone(),
                                Some(Outcome::Appended(reply, Err(error))),
                            ));
                        }
                        result => Outcome::Appended(reply, result.map(|receipt| (stream, receipt))),
                    },
                    Command::End { stream, end, reply } => {
                        Outcome::Ended(reply, ledger.end(&tx, &mut dirty, stream, end))
                    }
                    Command::PurgeSession { session, reply } => {
                        Outcome::Purged(reply, ledger.purge(&tx, &mut dirty, &session))
                    }
                    Command::Sweep { reply } => Outcome::Swept(reply, ledger.sweep(&tx)),
                    Command::Flush { reply } => {
                        flushes.push(reply);
                        continue;
                    }
                    Command::Close { reply } => {
                        close = Some(reply);
                        continue;
                    }
                };
                outcomes.push(outcome);
            }
            finish_heads(&tx, &mut dirty)
                .and_then(|()| tx.commit())
                .map_err(|e| (classify(&ledger.path, "committing", e), None))
        })();

        match result {
            Ok(()) => {
                ledger.start_settle_if_due();
                checkpointer.request();
                for (stream, head) in dirty {
                    // Streams ended or purged in this batch have left the cache.
                    if let Some(cached) = ledger.cache.get_mut(&stream) {
                        *cached = head;
                    }
                }
                outcomes
                    .into_iter()
                    .for_each(|outcome| ledger.publish(outcome));
            }
            Err((error, failed)) => {
                tracing::error!(%error, "mcp-resume SQLite store failed to commit a batch");
                // The transaction rolled back: the cache may be ahead of the
                // database, so forget it; the next use reloads from the file.
                ledger.cache.clear();
                if let Ok(rows) = count_rows(conn, ledger.active) {
                    ledger.active_rows = rows;
                }
                // Everything in the group fails with the batch's error: what
                // was applied (rolled back), the command that failed, and the
                // commands not reached yet. Close and flush still happen.
                for outcome in outcomes.into_iter().chain(failed) {
                    outcome.fail(&error);
                }
                for command in commands {
                    match command {
                        Command::Close { reply } => close = Some(reply),
                        Command::Flush { reply } => flushes.push(reply),
                        command => command.fail(&error),
                    }
                }
            }
        }
        if !flushes.is_empty() {
            // A flush leaves every event in its final place, then in the main file.
            let mut flushed = Ok(());
            while ledger.settle.is_some() && flushed.is_ok() {
                flushed = settle_step(conn, ledger, BUSY_SLICE_ROWS);
            }
            let flushed = flushed.and_then(|()| checkpoint_now(conn, &ledger.path));
            for reply in flushes {
                let _ = reply.send(flushed.clone());
            }
        }
        close
    }

    /// Restarts the WAL once it holds [`SqliteOptions::max_wal_bytes`]: after
    /// every commit, of appends or of a settle slice.
    fn bound_wal(&mut self) {
        let frames = self.wal_frames.load(Ordering::Relaxed);
        if frames >= self.restart_at_frames {
            self.restart_at_frames = if self.restart_wal() {
                self.max_wal_frames
            } else {
                frames + self.max_wal_frames
            };
        }
    }

    /// Checkpoints all of the WAL, waiting for readers of older snapshots,
    /// so that the next commit writes it from its start: under a load that
    /// never pauses, the checkpointing thread's passive checkpoints never
    /// find it all copied, and it would grow without end. Appends wait
    /// meanwhile (a few milliseconds: most of the WAL is copied already).
    /// The checkpointing thread's checkpoint and readers are waited for up
    /// to the busy timeout in all. Returns whether the WAL was all copied.
    fn restart_wal(&mut self) -> bool {
        let deadline = std::time::Instant::now() + self.busy_timeout;
        let restarted = loop {
            // SQLite waits for readers up to the connection's busy timeout,
            // but not for another connection's checkpoint: that is retried
            // here. Both within what is left of the one deadline.
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            let _ = self.conn.busy_timeout(left);
            match checkpoint(&self.conn, &self.ledger.path, Mode::Restart) {
                Ok(Checkpointed::Partly) if !left.is_zero() => {
                    std::thread::sleep(std::time::Duration::from_millis(1));
                }
                other => break other,
            }
        };
        let _ = self.conn.busy_timeout(self.busy_timeout);
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

    /// Whether a settle is under way and not waiting to retry after a failure.
    fn settle_due(&self) -> bool {
        self.ledger.settle.is_some()
            && self
                .settle_retry
                .is_none_or(|(_, at)| std::time::Instant::now() >= at)
    }

    /// Moves one slice of the settle under way. A failure leaves the settle
    /// where it was, retried later (appends do not depend on it): the next
    /// try waits twice as long as the last, up to [`SETTLE_RETRY_MAX`], and
    /// only the first failure of a run is a warning. Returns whether the
    /// slice was moved.
    fn settle_slice(&mut self, rows: u64) -> bool {
        match settle_step(&mut self.conn, &mut self.ledger, rows) {
            Ok(()) => {
                if self.settle_retry.take().is_some() {
                    tracing::info!("mcp-resume SQLite store settles events again");
                }
                self.checkpointer.request();
                self.bound_wal();
                true
            }
            Err(error) => {
                let wait = match self.settle_retry {
                    None => {
                        tracing::warn!(%error, "mcp-resume SQLite store could not settle events; will retry");
                        SETTLE_RETRY_MIN
                    }
                    Some((wait, _)) => {
                        tracing::debug!(%error, "mcp-resume SQLite store still cannot settle events");
                        (wait * 2).min(SETTLE_RETRY_MAX)
                    }
                };
                self.settle_retry = Some((wait, std::time::Instant::now() + wait));
                false
            }
        }
    }

    /// Ends the live streams of this process as abandoned and checkpoints.
    fn shut_down(&mut self) -> Result<(), StoreError> {
        let ledger = &mut self.ledger;
        let mut result = Ok(());
        for (stream, head) in ledger.cache.drain() {
            let abandoned = self
                .conn
                .execute(
                    "UPDATE streams SET state = ?1, last_activity = ?2 WHERE stream_no = ?3 AND state = ?4",
                    params![StreamState::Abandoned.code(), unix_millis(), head.stream_no, StreamState::Live.code()],
                )
                .map_err(|e| classify(&ledger.path, "abandoning live streams at close", e));
            ledger
                .live
                .ended(stream, head.last_seq, StreamState::Abandoned);
            result = result.and(abandoned.map(drop));
        }
        // Followers of streams that never reached the cache must stop too.
        for stream in ledger.live.ids() {
            ledger.live.ended(stream, 0, StreamState::Abandoned);
        }
        result.and(checkpoint_now(&self.conn, &ledger.path))
    }
}

impl Ledger {
    /// Once the table taking appends holds [`SETTLE_ROWS`] and the other
    /// one is empty (no settle under way), appends switch to the other one
    /// and a settle of this one starts.
    fn start_settle_if_due(&mut self) {
        if self.settle.is_none() && self.active_rows >= SETTLE_ROWS {
            self.active = self.active.other();
            self.active_rows = 0;
            self.settle = Some(Settle::START);
        }
    }

    /// Answers a committed command and tells followers about the new head.
    fn publish(&self, outcome: Outcome) {
        match outcome {
            Outcome::Created(reply, id) => {
                self.live.started(id, 0);
                let _ = reply.send(Ok(()));
            }
            Outcome::Appended(reply, result) => {
                let _ = reply.send(result.map(|(stream, receipt)| {
                    self.live.advanced(stream, receipt.last_seq);
                    receipt
                }));
            }
            Outcome::Ended(reply, result) => {
                let _ = reply.send(result.map(|ended| {
                    if let Some((stream, last_seq, state)) = ended {
                        self.live.ended(stream, last_seq, state);
                    }
                }));
            }
            Outcome::Purged(reply, result) => {
                let _ = reply.send(result.map(|purged| {
                    for &(stream, last_seq) in &purged {
                        self.live.ended(stream, last_seq, StreamState::Abandoned);
                    }
                    purged.len() as u64
                }));
            }
            Outcome::Swept(reply, result) => match reply {
                Some(reply) => {
                    let _ = reply.send(result);
                }
                None => match result {
                    Ok(report) if report.streams_removed > 0 => {
                        tracing::debug!(?report, "mcp-resume retention sweep");
                    }
                    Ok(_) => {}
                    Err(error) => tracing::warn!(%error, "mcp-resume retention sweep failed"),
                },
            },
            Outcome::Failed(reply, error) => {
                let _ = reply.send(Err(error));
            }
        }
    }

    fn create(
        &mut self,
        tx: &Transaction<'_>,
        id: StreamId,
        new: &NewStream,
    ) -> Result<(), StoreError> {
        let cap = new.event_cap(&self.retention);
        let (stream_no, now) =
            create(tx, id, new).map_err(|e| classify(&self.path, "creating a stream", e))?;
        self.cache.insert(
            id,
            Cached {
                stream_no,
                first_seq: 1,
                last_seq: 0,
                cap,
                activity_written: now,
            },
        );
        Ok(())
    }

    fn lookup(&mut self, tx: &Transaction<'_>, stream: StreamId) -> Result<Cached, StoreError> {
        if let Some(cached) = self.cache.get(&stream) {
            return Ok(*cached);
        }
        let row = tx
            .prepare_cached(&format!(
                "SELECT stream_no, state, max_events, last_activity, {HEAD_COLUMNS}
                 FROM streams s WHERE stream_id = ?1"
            ))
            .and_then(|mut stmt| {
                stmt.query_row([&stream.as_bytes()[..]], |row| {
                    Ok((
                        row.get::<_, i64>(0)?,
                        row.get::<_, i64>(1)?,
                        row.get::<_, Option<i64>>(2)?,
                        row.get::<_, i64>(3)?,
                        row.get::<_, Option<i64>>(4)?,
                        row.get::<_, Option<i64>>(5)?,
                    ))
                })
                .optional()
            })
            .map_err(|e| classify(&self.path, "looking up a stream", e))?;
        let (stream_no, state, max_events, activity_written, first, last) =
            row.ok_or(StoreError::StreamNotFound(stream))?;
        let state = StreamState::from_code(state).unwrap_or(StreamState::Abandoned);
        if state.is_ended() {
            return Err(StoreError::StreamEnded { stream, state });
        }
        let (first_seq, last_seq) = head_from(first, last);
        let cached = Cached {
            stream_no,
            first_seq,
            last_seq,
            cap: max_events.map_or(self.retention.max_events_per_stream, |cap| {
                cap.max(1) as u64
            }),
            activity_written,
        };
        self.cache.insert(stream, cached);
        Ok(cached)
    }

    fn append(
        &mut self,
        tx: &Transaction<'_>,
        dirty: &mut HashMap<StreamId, Cached>,
        stream: StreamId,
        events: Vec<NewEvent>,
    ) -> Result<AppendReceipt, StoreError> {
        let mut head = match dirty.get(&stream) {
            Some(head) => *head,
            None => self.lookup(tx, stream)?,
        };
        let first_seq = head.last_seq + 1;
        if !events.is_empty() {
            let mut insert = tx
                .prepare_cached(self.active.insert())
                .map_err(|e| classify(&self.path, "preparing an append", e))?;
            for event in &events {
                head.last_seq += 1;
                insert
                    .execute(params![
                        head.stream_no,
                        head.last_seq as i64,
                        event.event_type.as_deref(),
                        &event.data[..]
                    ])
                    .map_err(|e| classify(&self.path, "appending an event", e))?;
            }
            dirty.insert(stream, head);
            self.active_rows += events.len() as u64;
        }
        Ok(AppendReceipt {
            first_seq,
            last_seq: head.last_seq,
        })
    }

    fn end(
        &mut self,
        tx: &Transaction<'_>,
        dirty: &mut HashMap<StreamId, Cached>,
        stream: StreamId,
        end: StreamEnd,
    ) -> Result<Option<(StreamId, u64, StreamState)>, StoreError> {
        let head = match dirty.get(&stream) {
            Some(head) => *head,
            None => match self.lookup(tx, stream) {
                Ok(head) => head,
                // Ending an ended stream keeps its first end.
                Err(StoreError::StreamEnded { .. }) => return Ok(None),
                Err(error) => return Err(error),
            },
        };
        let state = StreamState::from(end);
        tx.prepare_cached("UPDATE streams SET state = ?1, last_activity = ?2 WHERE stream_no = ?3")
            .and_then(|mut stmt| stmt.execute(params![state.code(), unix_millis(), head.stream_no]))
            .map_err(|e| classify(&self.path, "ending a stream", e))?;
        self.cache.remove(&stream);
        Ok(Some((stream, head.last_seq, state)))
    }

    fn purge(
        &mut self,
        tx: &Transaction<'_>,
        dirty: &mut HashMap<StreamId, Cached>,
        session: &str,
    ) -> Result<Vec<(StreamId, u64)>, StoreError> {
        let streams = (|| {
            let mut select = tx
                .prepare_cached("SELECT stream_no, stream_id FROM streams WHERE session_id = ?1")?;
            let rows = select
                .query_map([session], |row| {
                    Ok((row.get::<_, i64>(0)?, row.get::<_, Vec<u8>>(1)?))
                })?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            let mut purged = Vec::with_capacity(rows.len());
            for (stream_no, id) in rows {
                delete_stream(tx, stream_no)?;
                let Ok(id) = <[u8; 16]>::try_from(id.as_slice()) else {
                    continue;
                };
                let id = StreamId::from_bytes(id);
                let last_seq = dirty
                    .remove(&id)
                    .or_else(|| self.cache.remove(&id))
                    .map_or(0, |c| c.last_seq);
                purged.push((id, last_seq));
            }
            Ok(purged)
        })();
        streams.map_err(|e: rusqlite::Error| classify(&self.path, "purging a session", e))
    }

    fn sweep(&mut self, tx: &Transaction<'_>) -> Result<SweepReport, StoreError> {
        let cutoff = unix_millis().saturating_sub(self.retention.max_age.as_millis() as i64);
        let report = (|| {
            let mut select = tx.prepare_cached(
                "SELECT stream_no FROM streams WHERE state IN (?1, ?2) AND last_activity < ?3",
            )?;
            let expired = select
                .query_map(
                    params![
                        StreamState::Complete.code(),
                        StreamState::Abandoned.code(),
                        cutoff
                    ],
                    |row| row.get::<_, i64>(0),
                )?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            let mut report = SweepReport::default();
            for stream_no in expired {
                report.events_removed += delete_stream(tx, stream_no)?;
                report.streams_removed += 1;
            }
            Ok(report)
        })();
        report.map_err(|e: rusqlite::Error| classify(&self.path, "sweeping expired streams", e))
    }
}

/// The head columns of a stream row aliased `s`: the first and the last
/// retained sequence, both NULL when the stream has no events. Each
/// subquery is one index probe. Readers cannot tell which `recent` table is
/// being settled, so both are probed, and the aggregate over the two probes
/// skips the one that found nothing.
pub(crate) const HEAD_COLUMNS: &str = "coalesce(
        (SELECT MIN(seq) FROM events WHERE stream_no = s.stream_no),
        (SELECT MIN(m) FROM (
            SELECT (SELECT MIN(seq) FROM recent WHERE stream_no = s.stream_no) AS m
            UNION ALL
            SELECT (SELECT MIN(seq) FROM recent_alt WHERE stream_no = s.stream_no)))),
     coalesce(
        (SELECT MAX(m) FROM (
            SELECT (SELECT MAX(seq) FROM recent WHERE stream_no = s.stream_no) AS m
            UNION ALL
            SELECT (SELECT MAX(seq) FROM recent_alt WHERE stream_no = s.stream_no))),
        (SELECT MAX(seq) FROM events WHERE stream_no = s.stream_no))";

/// First and last retained sequence from [`HEAD_COLUMNS`]. A stream without
/// events has never had any: trimming always keeps the newest.
pub(crate) fn head_from(first: Option<i64>, last: Option<i64>) -> (u64, u64) {
    match (first, last) {
        (Some(first), Some(last)) => (first as u64, last as u64),
        _ => (1, 0),
    }
}

fn create(tx: &Transaction<'_>, id: StreamId, new: &NewStream) -> rusqlite::Result<(i64, i64)> {
    let now = unix_millis();
    tx.prepare_cached(
        "INSERT INTO streams (stream_id, kind, state, session_id, identity, max_events, created_at, last_activity)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?7)",
    )?
    .execute(params![
        &id.as_bytes()[..],
        new.kind.code(),
        StreamState::Live.code(),
        new.session,
        new.identity,
        new.max_events.map(|cap| cap.min(i64::MAX as u64) as i64),
        now
    ])?;
    Ok((tx.last_insert_rowid(), now))
}

/// Trims the streams appended to in this batch to their caps, and refreshes
/// their activity time when it is older than [`ACTIVITY_RESOLUTION_MILLIS`].
/// Below the cap and within the resolution, an append costs its inserts only.
fn finish_heads(
    tx: &Transaction<'_>,
    dirty: &mut HashMap<StreamId, Cached>,
) -> rusqlite::Result<()> {
    if dirty.is_empty() {
        return Ok(());
    }
    let now = unix_millis();
    // Rows trimmed from `recent` are not subtracted from the ledger's count:
    // it only decides when to settle.
    let mut trims = [
        tx.prepare_cached("DELETE FROM events WHERE stream_no = ?1 AND seq < ?2")?,
        tx.prepare_cached("DELETE FROM recent WHERE stream_no = ?1 AND seq < ?2")?,
        tx.prepare_cached("DELETE FROM recent_alt WHERE stream_no = ?1 AND seq < ?2")?,
    ];
    let mut touch =
        tx.prepare_cached("UPDATE streams SET last_activity = ?1 WHERE stream_no = ?2")?;
    for head in dirty.values_mut() {
        if head.last_seq - head.first_seq + 1 > head.cap {
            head.first_seq = head.last_seq - head.cap + 1;
            for trim in &mut trims {
                trim.execute(params![head.stream_no, head.first_seq as i64])?;
            }
        }
        if now - head.activity_written >= ACTIVITY_RESOLUTION_MILLIS {
            touch.execute(params![now, head.stream_no])?;
            head.activity_written = now;
        }
    }
    Ok(())
}

/// Of two `recent` tables that both have rows, the one being settled when
/// the writer stopped: for a stream with rows in both, its rows there
/// precede its rows in the other. If no stream has rows in both, settling
/// either one first keeps every stream's rows in `events` contiguous, and
/// `recent` is picked.
fn older_recent(conn: &Connection) -> rusqlite::Result<Recent> {
    let first_is_older: Option<bool> = conn
        .query_row(
            "SELECT r.seq < a.seq FROM recent r JOIN recent_alt a ON a.stream_no = r.stream_no
             LIMIT 1",
            [],
            |row| row.get(0),
        )
        .optional()?;
    Ok(match first_is_older {
        Some(false) => Recent::Second,
        Some(true) | None => Recent::First,
    })
}

fn count_rows(conn: &Connection, recent: Recent) -> rusqlite::Result<u64> {
    conn.query_row(
        &format!("SELECT COUNT(*) FROM {}", recent.table()),
        [],
        |row| row.get::<_, i64>(0),
    )
    .map(|rows| rows as u64)
}

/// Moves one slice of the ledger's settle, in a transaction of its own.
fn settle_step(conn: &mut Connection, ledger: &mut Ledger, rows: u64) -> Result<(), StoreError> {
    let Some(settle) = ledger.settle else {
        return Ok(());
    };
    // A slice only moves rows that are already durable: losing its commit
    // to a power cut leaves them where they were. So it is not synced even
    // in `FULL` mode; the next synced commit makes it durable, as the WAL is
    // written in order.
    let full = ledger.sync == SyncMode::Full;
    let moved = (|| {
        if full {
            conn.pragma_update(None, "synchronous", SyncMode::Normal.pragma_value())?;
        }
        let moved = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .and_then(|tx| {
                let moved = move_slice(&tx, ledger.active.other(), settle, rows)?;
                tx.commit()?;
                Ok(moved)
            });
        if full {
            conn.pragma_update(None, "synchronous", SyncMode::Full.pragma_value())?;
        }
        moved
    })();
    ledger.settle = moved.map_err(|e| classify(&ledger.path, "settling recent events", e))?;
    Ok(())
}

/// One slice of `settle` of the table `settling`, over at most `rows` rows:
/// returns where the settle goes on from, `None` once it is done.
fn move_slice(
    tx: &Transaction<'_>,
    settling: Recent,
    Settle { after }: Settle,
    rows: u64,
) -> rusqlite::Result<Option<Settle>> {
    let (table, index) = (settling.table(), settling.index());
    // The key `rows` rows on, if there are that many left. The index is
    // named so that the copy below reads the rows in key order rather than
    // sorting them.
    let end: Option<(i64, i64)> = tx
        .prepare_cached(&format!(
            "SELECT stream_no, seq FROM {table} INDEXED BY {index}
             WHERE (stream_no, seq) > (?1, ?2)
             ORDER BY stream_no, seq LIMIT 1 OFFSET ?3"
        ))?
        .query_row(params![after.0, after.1, rows.max(1) as i64 - 1], |row| {
            Ok((row.get(0)?, row.get(1)?))
        })
        .optional()?;
    let end_key = end.unwrap_or((i64::MAX, i64::MAX));
    // OR IGNORE: a settle cut short by a crash is done again from the start,
    // over rows it had already copied.
    tx.prepare_cached(&format!(
        "INSERT OR IGNORE INTO events (stream_no, seq, event_type, data)
         SELECT stream_no, seq, event_type, data FROM {table} INDEXED BY {index}
         WHERE (stream_no, seq) > (?1, ?2) AND (stream_no, seq) <= (?3, ?4)
         ORDER BY stream_no, seq"
    ))?
    .execute(params![after.0, after.1, end_key.0, end_key.1])?;
    match end {
        Some(after) => Ok(Some(Settle { after })),
        None => {
            // Every row is in `events` now. Without a WHERE clause SQLite
            // frees the table's pages whole, without visiting its rows and
            // their index entries one by one.
            tx.execute(&format!("DELETE FROM {table}"), [])?;
            Ok(None)
        }
    }
}

fn delete_stream(tx: &Transaction<'_>, stream_no: i64) -> rusqlite::Result<u64> {
    // During a settle a row may be in `events` and in a `recent` table:
    // counted once, in `events`. Each table is gone over once.
    let settled_up_to: i64 = tx
        .prepare_cached("SELECT coalesce(MAX(seq), 0) FROM events WHERE stream_no = ?1")?
        .query_row([stream_no], |row| row.get(0))?;
    let mut events = tx
        .prepare_cached("DELETE FROM events WHERE stream_no = ?1")?
        .execute([stream_no])? as u64;
    for recent in Recent::BOTH {
        let mut delete = tx.prepare_cached(recent.delete_stream())?;
        let mut deleted = delete.query([stream_no])?;
        while let Some(row) = deleted.next()? {
            events += u64::from(row.get::<_, i64>(0)? > settled_up_to);
        }
    }
    tx.prepare_cached("DELETE FROM streams WHERE stream_no = ?1")?
        .execute([stream_no])?;
    Ok(events)
}

/// Errors that concern one command only; anything else fails the batch.
fn is_logical(error: &StoreError) -> bool {
    matches!(
        error,
        StoreError::StreamNotFound(_) | StoreError::StreamEnded { .. }
    )
}

impl Outcome {
    /// Answers with the batch's error instead of the command's own result.
    fn fail(self, error: &StoreError) {
        let error = error.clone();
        match self {
            Self::Created(reply, _) | Self::Failed(reply, _) => drop(reply.send(Err(error))),
            Self::Appended(reply, _) => drop(reply.send(Err(error))),
            Self::Ended(reply, _) => drop(reply.send(Err(error))),
            Self::Purged(reply, _) => drop(reply.send(Err(error))),
            Self::Swept(Some(reply), _) => drop(reply.send(Err(error))),
            Self::Swept(None, _) => {}
        }
    }
}

impl Command {
    /// Answers a command that was never applied with the batch's error.
    fn fail(self, error: &StoreError) {
        let error = error.clone();
        match self {
            Self::Create { reply, .. }
            | Self::End { reply, .. }
            | Self::Flush { reply }
            | Self::Close { reply } => drop(reply.send(Err(error))),
            Self::Append { reply, .. } => drop(reply.send(Err(error))),
            Self::PurgeSession { reply, .. } => drop(reply.send(Err(error))),
            Self::Sweep { reply: Some(reply) } => drop(reply.send(Err(error))),
            Self::Sweep { reply: None } => {}
        }
    }
}
