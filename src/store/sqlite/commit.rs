//! Group commit: the commands the writer takes from its channel together
//! are applied in one transaction, so a hundred streams appending at once
//! cost about one commit (one write of the WAL, one sync in `FULL` mode),
//! not a hundred. Each caller is answered with its own result once the
//! transaction is committed; when the commit fails, every command of the
//! group fails with its error, as none of them took effect.

use rusqlite::{Transaction, TransactionBehavior};

use super::checkpointer::checkpoint_now;
use super::ledger::{Heads, Ledger, finish_heads};
use super::schema::classify;
use super::writer::{Command, Reply, Writer};
use crate::store::live::LiveStreams;
use crate::store::{AppendReceipt, StoreError, StreamId, StreamInfo, StreamState, SweepReport};

/// A reply to send, or a notification to publish, once the group is committed.
enum Outcome {
    /// Boxed: a stream's info is large next to the other outcomes.
    Created(Reply<StreamInfo>, Result<Box<StreamInfo>, StoreError>),
    /// An append, and the end it was followed by, if any.
    Appended(
        Reply<AppendReceipt>,
        Result<(StreamId, AppendReceipt, Option<Ended>), StoreError>,
    ),
    Ended(Reply<()>, Result<Option<Ended>, StoreError>),
    Purged(Reply<u64>, Result<Vec<(StreamId, u64)>, StoreError>),
    Swept(Option<Reply<SweepReport>>, Result<SweepReport, StoreError>),
    Failed(Reply<()>, StoreError),
    /// A history record, answered once committed.
    Recorded(Reply<()>),
}

/// A stream ended by a command: its id, last sequence and new state.
type Ended = (StreamId, u64, StreamState);

/// What applying a group's commands produced, to act on once its
/// transaction has ended.
struct Group {
    /// The answers of the commands applied, in order.
    outcomes: Vec<Outcome>,
    /// The new heads of the streams appended to.
    dirty: Heads,
    /// Flushes, answered once the transaction has ended, whatever became of it.
    flushes: Vec<Reply<()>>,
    /// A close, which ends the writer thread after this group.
    close: Option<Reply<()>>,
}

/// Why a group's transaction did not commit: the error every command of the
/// group is answered with, and the answer of the command that failed, if
/// one did.
struct Failure {
    error: StoreError,
    command: Option<Outcome>,
}

impl Failure {
    /// The transaction itself failed to begin or to commit.
    fn of_transaction(error: StoreError) -> Self {
        Self {
            error,
            command: None,
        }
    }
}

impl Writer {
    /// Applies a group of commands in one transaction and answers them.
    /// Returns the reply of a `Close` command, which ends the thread.
    pub(super) fn commit_group(&mut self, commands: &mut Vec<Command>) -> Option<Reply<()>> {
        let mut group = Group::with_capacity(commands.len());
        let mut commands = commands.drain(..);
        match self.apply_in_one_transaction(&mut commands, &mut group) {
            Ok(()) => self.publish(&mut group),
            Err(failure) => self.roll_back(failure, commands, &mut group),
        }
        self.answer_flushes(std::mem::take(&mut group.flushes));
        group.close
    }

    /// Begins the transaction, applies the commands in it, trims the
    /// streams appended to and records their activity, and commits. On a
    /// failure the commands not reached yet are left in `commands`.
    fn apply_in_one_transaction(
        &mut self,
        commands: &mut impl Iterator<Item = Command>,
        group: &mut Group,
    ) -> Result<(), Failure> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(|e| {
                Failure::of_transaction(classify(
                    &self.ledger.path,
                    "starting a write transaction",
                    e,
                ))
            })?;
        for command in commands {
            group.apply(&mut self.ledger, &tx, command)?;
        }
        finish_heads(&tx, &mut group.dirty)
            .and_then(|()| tx.commit())
            .map_err(|e| Failure::of_transaction(classify(&self.ledger.path, "committing", e)))
    }

    /// After a commit: starts a settle if the table taking appends is full,
    /// asks for a checkpoint, moves the cache to the new heads, and answers
    /// the commands and tells their streams' followers.
    fn publish(&mut self, group: &mut Group) {
        self.ledger.recent.start_settle_if_due();
        self.checkpointer.request();
        for (stream, head) in group.dirty.drain() {
            // Streams ended or purged in this group have left the cache.
            if let Some(cached) = self.ledger.cache.get_mut(&stream) {
                *cached = head;
            }
        }
        for outcome in group.outcomes.drain(..) {
            outcome.publish(&self.ledger.live);
        }
    }

    /// After a failed commit the transaction has rolled back: the cache and
    /// the row count may be ahead of the file, so the cache is forgotten
    /// (the next use reloads from the file) and the rows recounted, and the
    /// group's commands fail.
    fn roll_back(
        &mut self,
        failure: Failure,
        unapplied: impl Iterator<Item = Command>,
        group: &mut Group,
    ) {
        tracing::error!(error = %failure.error, "mcp-resume SQLite store failed to commit a batch");
        self.ledger.cache.clear();
        self.ledger.recent.recount(&self.conn);
        group.fail(failure, unapplied);
    }

    /// A flush leaves every event in its final place, then in the main file.
    fn answer_flushes(&mut self, flushes: Vec<Reply<()>>) {
        if flushes.is_empty() {
            return;
        }
        let flushed = self
            .settle_to_end()
            .and_then(|()| checkpoint_now(&self.conn, &self.ledger.path));
        for reply in flushes {
            let _ = reply.send(flushed.clone());
        }
    }
}

impl Group {
    fn with_capacity(commands: usize) -> Self {
        Self {
            outcomes: Vec::with_capacity(commands),
            dirty: Heads::new(),
            flushes: Vec::new(),
            close: None,
        }
    }

    /// Applies one command in the group's transaction. A failure that
    /// concerns the command alone (an unknown or ended stream) is its
    /// answer; any other fails the whole group.
    fn apply(
        &mut self,
        ledger: &mut Ledger,
        tx: &Transaction<'_>,
        command: Command,
    ) -> Result<(), Failure> {
        let outcome = match command {
            Command::Create {
                id,
                new,
                first,
                reply,
            } => match ledger.create(tx, &mut self.dirty, id, new, first) {
                Ok(info) => Outcome::Created(reply, Ok(Box::new(info))),
                Err(error) => {
                    return Err(Failure {
                        command: Some(Outcome::Created(reply, Err(error.clone()))),
                        error,
                    });
                }
            },
            Command::Append {
                stream,
                events,
                end,
                reply,
            } => {
                let result =
                    ledger
                        .append(tx, &mut self.dirty, stream, events)
                        .and_then(|receipt| {
                            let ended = match end {
                                Some(end) => ledger.end(tx, &mut self.dirty, stream, end)?,
                                None => None,
                            };
                            Ok((stream, receipt, ended))
                        });
                match result {
                    Err(error) if !is_logical(&error) => {
                        return Err(Failure {
                            command: Some(Outcome::Appended(reply, Err(error.clone()))),
                            error,
                        });
                    }
                    result => Outcome::Appended(reply, result),
                }
            }
            Command::End { stream, end, reply } => {
                Outcome::Ended(reply, ledger.end(tx, &mut self.dirty, stream, end))
            }
            Command::PurgeSession { session, reply } => {
                Outcome::Purged(reply, ledger.purge(tx, &mut self.dirty, &session))
            }
            Command::Sweep { reply } => Outcome::Swept(reply, ledger.sweep(tx)),
            Command::Flush { reply } => {
                self.flushes.push(reply);
                return Ok(());
            }
            Command::Close { reply } => {
                self.close = Some(reply);
                return Ok(());
            }
            Command::RecordResume { stream, reply } => {
                match tx
                    .prepare_cached("UPDATE streams SET resumes = resumes + 1 WHERE stream_id = ?1")
                    .and_then(|mut stmt| stmt.execute([&stream.as_bytes()[..]]))
                {
                    Ok(_) => Outcome::Recorded(reply),
                    Err(error) => {
                        let error = classify(&ledger.path, "recording a resume", error);
                        return Err(Failure {
                            command: Some(Outcome::Failed(reply, error.clone())),
                            error,
                        });
                    }
                }
            }
        };
        self.outcomes.push(outcome);
        Ok(())
    }

    /// Answers every command of a group that did not commit with the
    /// group's error: those applied (rolled back), the one that failed, and
    /// those not reached yet. Close and flush still happen.
    fn fail(&mut self, failure: Failure, unapplied: impl Iterator<Item = Command>) {
        let Failure { error, command } = failure;
        for outcome in self.outcomes.drain(..).chain(command) {
            outcome.fail(&error);
        }
        for command in unapplied {
            match command {
                Command::Close { reply } => self.close = Some(reply),
                Command::Flush { reply } => self.flushes.push(reply),
                command => command.fail(&error),
            }
        }
    }
}

/// Errors that concern one command only; anything else fails the group.
fn is_logical(error: &StoreError) -> bool {
    matches!(
        error,
        StoreError::StreamNotFound(_) | StoreError::StreamEnded { .. }
    )
}

impl Outcome {
    /// Answers a committed command and tells followers about the new head.
    fn publish(self, live: &LiveStreams) {
        match self {
            Outcome::Created(reply, result) => {
                let _ = reply.send(result.map(|info| {
                    live.started(info.id, info.last_seq);
                    *info
                }));
            }
            Outcome::Appended(reply, result) => {
                let _ = reply.send(result.map(|(stream, receipt, ended)| {
                    live.advanced(stream, receipt.last_seq);
                    if let Some((stream, last_seq, state)) = ended {
                        live.ended(stream, last_seq, state);
                    }
                    receipt
                }));
            }
            Outcome::Ended(reply, result) => {
                let _ = reply.send(result.map(|ended| {
                    if let Some((stream, last_seq, state)) = ended {
                        live.ended(stream, last_seq, state);
                    }
                }));
            }
            Outcome::Purged(reply, result) => {
                let _ = reply.send(result.map(|purged| {
                    for &(stream, last_seq) in &purged {
                        live.ended(stream, last_seq, StreamState::Abandoned);
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
            Outcome::Recorded(reply) => {
                let _ = reply.send(Ok(()));
            }
        }
    }

    /// Answers with the group's error instead of the command's own result.
    fn fail(self, error: &StoreError) {
        let error = error.clone();
        match self {
            Self::Failed(reply, _) | Self::Recorded(reply) => drop(reply.send(Err(error))),
            Self::Created(reply, _) => drop(reply.send(Err(error))),
            Self::Appended(reply, _) => drop(reply.send(Err(error))),
            Self::Ended(reply, _) => drop(reply.send(Err(error))),
            Self::Purged(reply, _) => drop(reply.send(Err(error))),
            Self::Swept(Some(reply), _) => drop(reply.send(Err(error))),
            Self::Swept(None, _) => {}
        }
    }
}

impl Command {
    /// Answers a command that was never applied with the group's error.
    fn fail(self, error: &StoreError) {
        let error = error.clone();
        match self {
            Self::End { reply, .. }
            | Self::Flush { reply }
            | Self::Close { reply }
            | Self::RecordResume { reply, .. } => drop(reply.send(Err(error))),
            Self::Create { reply, .. } => drop(reply.send(Err(error))),
            Self::Append { reply, .. } => drop(reply.send(Err(error))),
            Self::PurgeSession { reply, .. } => drop(reply.send(Err(error))),
            Self::Sweep { reply: Some(reply) } => drop(reply.send(Err(error))),
            Self::Sweep { reply: None } => {}
        }
    }
}
