//! What the writer knows besides its connection, and the statements each
//! command runs inside a group's transaction.
//!
//! The writer keeps the head of every live stream of this process in a
//! cache, so an append writes its rows and reads nothing; a stream missing
//! from it (created before a restart, or ended) is looked up in the file.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use rusqlite::{OptionalExtension, Transaction, params};

use super::schema::{HEAD_COLUMNS, classify, head_from};
use super::settle::{Recent, RecentTables};
use super::{SqliteOptions, SyncMode};
use super::{from_millis, unix_millis};
use crate::store::live::LiveStreams;
use crate::store::{
    AppendReceipt, NewEvent, NewStream, Retention, StoreError, StreamEnd, StreamId, StreamInfo,
    StreamState, SweepReport,
};

/// `last_activity` of a live stream is refreshed at most this often: it only
/// has to be precise enough for a retention age measured in minutes.
const ACTIVITY_RESOLUTION_MILLIS: i64 = 1_000;

/// What the writer remembers of a live stream, so an append needs no read.
#[derive(Clone, Copy)]
pub(super) struct Cached {
    pub(super) stream_no: i64,
    first_seq: u64,
    pub(super) last_seq: u64,
    /// The most events the stream keeps.
    cap: u64,
    /// The `last_activity` last written for it, in Unix milliseconds.
    activity_written: i64,
}

impl Cached {
    /// The oldest sequence the stream keeps once trimmed to its cap.
    fn first_retained(&self) -> u64 {
        self.first_seq
            .max((self.last_seq + 1).saturating_sub(self.cap))
    }
}

/// The new heads of the streams a group appends to, applied to the cache
/// only once the group is committed.
pub(super) type Heads = HashMap<StreamId, Cached>;

/// Everything the writer knows besides its connection, kept apart so a
/// transaction (which borrows the connection) and the cache can be used together.
pub(super) struct Ledger {
    pub(super) path: PathBuf,
    retention: Retention,
    pub(super) live: Arc<LiveStreams>,
    /// Live streams of this process. A miss is looked up in the database.
    pub(super) cache: HashMap<StreamId, Cached>,
    /// The two `recent` tables: which one takes appends, and the settle of
    /// the other.
    pub(super) recent: RecentTables,
    pub(super) sync: SyncMode,
}

impl Ledger {
    pub(super) fn new(
        options: &SqliteOptions,
        live: Arc<LiveStreams>,
        recent: RecentTables,
    ) -> Self {
        Self {
            path: options.path.clone(),
            retention: options.retention,
            live,
            cache: HashMap::new(),
            recent,
            sync: options.sync,
        }
    }

    /// Creates a live stream holding `first`, and says what it is once
    /// the transaction commits.
    pub(super) fn create(
        &mut self,
        tx: &Transaction<'_>,
        dirty: &mut Heads,
        id: StreamId,
        new: NewStream,
        first: Vec<NewEvent>,
    ) -> Result<StreamInfo, StoreError> {
        let (stream_no, now) = insert_stream(tx, id, &new)
            .map_err(|e| classify(&self.path, "creating a stream", e))?;
        let created = Cached {
            stream_no,
            first_seq: 1,
            last_seq: 0,
            cap: new.event_cap(&self.retention),
            activity_written: now,
        };
        self.cache.insert(id, created);
        self.append(tx, dirty, id, first)?;
        // As `finish_heads` leaves it before the commit.
        let head = dirty.get(&id).copied().unwrap_or(created);
        let first_seq = head.first_retained();
        Ok(StreamInfo {
            id,
            kind: new.kind,
            state: StreamState::Live,
            session: new.session,
            identity: new.identity,
            event_count: head.last_seq + 1 - first_seq,
            first_seq,
            last_seq: head.last_seq,
            created_at: from_millis(now),
            last_activity: from_millis(now),
        })
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

    pub(super) fn append(
        &mut self,
        tx: &Transaction<'_>,
        dirty: &mut Heads,
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
                .prepare_cached(self.recent.active.insert())
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
            self.recent.active_rows += events.len() as u64;
        }
        Ok(AppendReceipt {
            first_seq,
            last_seq: head.last_seq,
        })
    }

    pub(super) fn end(
        &mut self,
        tx: &Transaction<'_>,
        dirty: &mut Heads,
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
        tx.prepare_cached(
            "UPDATE streams SET state = ?1, last_activity = ?2, ended_at = ?2 WHERE stream_no = ?3",
        )
        .and_then(|mut stmt| stmt.execute(params![state.code(), unix_millis(), head.stream_no]))
        .map_err(|e| classify(&self.path, "ending a stream", e))?;
        self.cache.remove(&stream);
        Ok(Some((stream, head.last_seq, state)))
    }

    pub(super) fn purge(
        &mut self,
        tx: &Transaction<'_>,
        dirty: &mut Heads,
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

    pub(super) fn sweep(&mut self, tx: &Transaction<'_>) -> Result<SweepReport, StoreError> {
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

/// Trims the streams appended to in this group to their caps, and refreshes
/// their activity time when it is older than [`ACTIVITY_RESOLUTION_MILLIS`].
/// Below the cap and within the resolution, an append costs its inserts only.
pub(super) fn finish_heads(tx: &Transaction<'_>, dirty: &mut Heads) -> rusqlite::Result<()> {
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
        let first_retained = head.first_retained();
        if first_retained > head.first_seq {
            head.first_seq = first_retained;
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

/// Inserts a new live stream's row; returns its number and creation time.
fn insert_stream(
    tx: &Transaction<'_>,
    id: StreamId,
    new: &NewStream,
) -> rusqlite::Result<(i64, i64)> {
    let now = unix_millis();
    tx.prepare_cached(
        "INSERT INTO streams (stream_id, kind, state, session_id, identity, max_events, created_at, last_activity,
                              rpc_method, tool_name, request_id)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?7, ?8, ?9, ?10)",
    )?
    .execute(params![
        &id.as_bytes()[..],
        new.kind.code(),
        StreamState::Live.code(),
        new.session,
        new.identity,
        new.max_events.map(|cap| cap.min(i64::MAX as u64) as i64),
        now,
        new.call.as_ref().map(|call| &call.method),
        new.call.as_ref().and_then(|call| call.tool.as_ref()),
        new.call.as_ref().and_then(|call| call.request_id.as_ref()),
    ])?;
    Ok((tx.last_insert_rowid(), now))
}

/// Deletes a stream and its events; returns how many events it had.
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
