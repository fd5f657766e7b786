//! The writer thread and its channel: every change to the database goes
//! through one thread, since SQLite lets one connection write at a time.
//! Callers send it [`Command`]s and await their answers; it takes what has
//! queued as a group and commits it in one transaction (see `commit`),
//! and between groups it settles recent rows (`settle`) and bounds the
//! write-ahead log (`wal`).

use std::fs::File;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rusqlite::{Connection, params};
use tokio::sync::{mpsc, oneshot};

use super::SqliteOptions;
use super::checkpointer::{Checkpointer, checkpoint_now};
use super::ledger::Ledger;
use super::schema::classify;
use super::settle::RecentTables;
use super::unix_millis;
use super::wal::WalBound;
use crate::store::live::LiveStreams;
use crate::store::{
    AppendReceipt, NewEvent, NewStream, StoreError, StreamEnd, StreamId, StreamInfo, StreamState,
    SweepReport,
};

/// The writer thread's name; at most 15 bytes, like the checkpointer's
/// ([`super::checkpointer::THREAD_NAME`]).
pub(crate) const THREAD_NAME: &str = "mcpr-writer";
const _: () = assert!(THREAD_NAME.len() <= 15);

/// At most this many commands share one transaction, so one commit never
/// holds callers for long and a group's memory stays bounded.
const MAX_GROUP: usize = 1024;

/// Where the writer sends a command's result.
pub(super) type Reply<T> = oneshot::Sender<Result<T, StoreError>>;

/// What the store asks of the writer, one variant per write of
/// [`EventStore`](crate::store::EventStore), each with where to answer.
pub(crate) enum Command {
    /// Creates a stream holding `first` as its first events.
    Create {
        id: StreamId,
        new: NewStream,
        first: Vec<NewEvent>,
        reply: Reply<StreamInfo>,
    },
    /// Appends events, then ends the stream when `end` is given.
    Append {
        stream: StreamId,
        events: Vec<NewEvent>,
        end: Option<StreamEnd>,
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
    /// A sweep the store started on its own has no one to answer.
    Sweep {
        reply: Option<Reply<SweepReport>>,
    },
    Flush {
        reply: Reply<()>,
    },
    Close {
        reply: Reply<()>,
    },
    /// Counts a resume in the stream's history.
    RecordResume {
        stream: StreamId,
        reply: Reply<()>,
    },
}

/// The writer: its connection and everything it keeps between groups.
pub(crate) struct Writer {
    pub(super) conn: Connection,
    pub(super) ledger: Ledger,
    /// Told after every commit; dropped (and joined) before the lock below.
    pub(super) checkpointer: Checkpointer,
    pub(super) wal: WalBound,
    /// After a settle slice failed: how long the writer waited, and when it
    /// tries again (meanwhile it only commits).
    pub(super) settle_retry: Option<(Duration, Instant)>,
    /// Held for the thread's lifetime: releasing it lets another process in.
    _lock: File,
}

impl Writer {
    /// Prepares the writer on the connection [`schema::open_writer`](super::schema::open_writer)
    /// opened, picking up the `recent` rows a previous run left.
    pub(crate) fn new(
        mut conn: Connection,
        options: &SqliteOptions,
        live: Arc<LiveStreams>,
        lock: File,
        checkpointer: Checkpointer,
    ) -> Result<Self, StoreError> {
        let wal = WalBound::watch(&mut conn, options)?;
        let recent = RecentTables::load(&conn, &options.path)?;
        Ok(Self {
            conn,
            ledger: Ledger::new(options, live, recent),
            checkpointer,
            wal,
            settle_retry: None,
            _lock: lock,
        })
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
                        self.settle_while_idle();
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
            self.wal.after_commit(&self.conn, &self.ledger.path);
            self.settle_if_behind();
        }
        // Every sender is gone: the store was dropped without `close`.
        if let Err(error) = self.shut_down() {
            tracing::warn!(%error, "mcp-resume SQLite store did not shut down cleanly");
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
