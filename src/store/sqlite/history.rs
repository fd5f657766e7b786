//! Streams' history in the file (schema version 4), and
//! [`SqliteReadOnlyStore`]: a store file opened read-only, for looking at
//! it while a process writes it.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use rusqlite::{Connection, OpenFlags, OptionalExtension, params};

use super::schema::{self, classify};
use super::{
    SqliteOptions, from_millis, info_columns, info_from_row, query_info, read_batch_on,
    session_streams_on,
};
use crate::store::{
    AppendReceipt, Batch, BoxFuture, EventStore, LeaseKind, NewEvent, NewStream, ReadLimit,
    Retention, StoreError, StreamCall, StreamEnd, StreamId, StreamInfo, StreamOutcome, StreamQuery,
    StreamRecord, StreamState, Subscription, SweepReport,
};

/// The streams `query` selects, newest first. With `writer_gone`, streams
/// the file still says are live belong to a process that died: they are
/// listed as [`StreamOutcome::Abandoned`].
pub(super) fn list_streams_on(
    conn: &mut Connection,
    query: &StreamQuery,
    writer_gone: bool,
) -> rusqlite::Result<Vec<StreamRecord>> {
    let millis = |time: Option<SystemTime>| {
        time.map(|time| {
            time.duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as i64)
        })
    };
    // One read transaction: every stream as of the same moment.
    let tx = conn.transaction()?;
    let mut records = Vec::new();
    {
        let mut select = tx.prepare_cached(&format!(
            "SELECT {}, s.rpc_method, s.tool_name, s.request_id, s.ended_at, s.resumes
             FROM streams s
             WHERE (?1 IS NULL OR s.session_id = ?1)
               AND (?2 IS NULL OR s.created_at >= ?2)
               AND (?3 IS NULL OR s.created_at < ?3)
               AND (?4 = 0 OR s.rpc_method = 'tools/call')
               AND (?6 IS NULL OR s.stream_id = ?6)
             ORDER BY s.stream_no DESC
             LIMIT ?5",
            info_columns()
        ))?;
        let mut rows = select.query(params![
            query.session,
            millis(query.since),
            millis(query.until),
            query.tool_calls_only,
            query.limit.min(i64::MAX as usize) as i64,
            query.stream.map(|stream| stream.as_bytes().to_vec()),
        ])?;
        while let Some(row) = rows.next()? {
            let head = info_from_row(row)?;
            let call = row
                .get::<_, Option<String>>(10)?
                .map(|method| StreamCall {
                    method,
                    tool: None,
                    request_id: None,
                })
                .map(|mut call| -> rusqlite::Result<StreamCall> {
                    call.tool = row.get(11)?;
                    call.request_id = row.get(12)?;
                    Ok(call)
                })
                .transpose()?;
            let ended_at: Option<i64> = row.get(13)?;
            let resumes: i64 = row.get(14)?;
            records.push((head, call, ended_at, resumes));
        }
    }
    let mut listed = Vec::with_capacity(records.len());
    for (head, call, ended_at, resumes) in records {
        let info = head.info;
        let (bytes, last) = retained(&tx, head.stream_no, info.last_seq)?;
        let outcome = if writer_gone && info.state == StreamState::Live {
            StreamOutcome::Abandoned
        } else {
            StreamOutcome::derive(info.kind, info.state, last.as_deref())
        };
        listed.push(StreamRecord {
            info,
            call,
            ended_at: ended_at.map(from_millis),
            outcome,
            bytes,
            resumes: resumes.max(0) as u64,
        });
    }
    Ok(query.finish(listed))
}

/// The bytes of a stream's retained events, and its last event's data. A
/// row being settled may be in `events` and in a `recent` table at once:
/// it is counted once, in `events`.
fn retained(
    tx: &Connection,
    stream_no: i64,
    last_seq: u64,
) -> rusqlite::Result<(u64, Option<Vec<u8>>)> {
    const SIZE: &str = "coalesce(SUM(length(data) + coalesce(length(event_type), 0)), 0)";
    let bytes: i64 = tx
        .prepare_cached(&format!(
            "SELECT
               (SELECT {SIZE} FROM events WHERE stream_no = ?1)
             + (SELECT {SIZE} FROM recent WHERE stream_no = ?1 AND seq > ?2)
             + (SELECT {SIZE} FROM recent_alt WHERE stream_no = ?1 AND seq > ?2)"
        ))?
        .query_row(params![stream_no, settled_up_to(tx, stream_no)?], |row| {
            row.get(0)
        })?;
    let last = if last_seq == 0 {
        None
    } else {
        tx.prepare_cached(
            "SELECT data FROM events WHERE stream_no = ?1 AND seq = ?2
             UNION ALL SELECT data FROM recent WHERE stream_no = ?1 AND seq = ?2
             UNION ALL SELECT data FROM recent_alt WHERE stream_no = ?1 AND seq = ?2
             LIMIT 1",
        )?
        .query_row(params![stream_no, last_seq as i64], |row| row.get(0))
        .optional()?
    };
    Ok((bytes.max(0) as u64, last))
}

fn settled_up_to(tx: &Connection, stream_no: i64) -> rusqlite::Result<i64> {
    tx.prepare_cached("SELECT coalesce(MAX(seq), 0) FROM events WHERE stream_no = ?1")?
        .query_row([stream_no], |row| row.get(0))
}

/// An SQLite store file opened read-only: for looking at a store while
/// the process that owns it writes it (`mcp-resume inspect`).
///
/// It reads through one read-only connection, so it never writes,
/// migrates or checkpoints the file, and takes no lock: the writing
/// process is not disturbed (the file is in WAL mode, where readers do not
/// block the writer). Everything that writes fails with
/// [`StoreError::Unsupported`]. Streams the file says are live while no
/// process holds the store's lock file are listed as
/// [abandoned](StreamOutcome::Abandoned): their process died.
///
/// ```
/// use mcp_resume::store::{EventStore, NewStream, SqliteEventStore, SqliteReadOnlyStore, StreamKind, StreamQuery};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), mcp_resume::store::StoreError> {
/// # let dir = tempfile::tempdir().unwrap();
/// # let path = dir.path().join("mcp_events.db");
/// let store = SqliteEventStore::open(&path)?;
/// store.create_stream(NewStream::new(StreamKind::PostResponse)).await?;
///
/// // While the store is open for writing:
/// let view = SqliteReadOnlyStore::open(&path)?;
/// assert_eq!(view.list_streams(&StreamQuery::new()).await?.len(), 1);
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
pub struct SqliteReadOnlyStore {
    path: PathBuf,
    conn: Arc<Mutex<Option<Connection>>>,
}

impl SqliteReadOnlyStore {
    /// Opens the store file at `path` read-only. Fails, changing nothing,
    /// when there is no file, when it is not an SQLite database or not an
    /// mcp-resume store, or when its schema is older
    /// ([`StoreError::SchemaTooOld`]) or newer than this build's.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, StoreError> {
        let path = path.as_ref().to_owned();
        if !path.is_file() {
            return Err(StoreError::Io {
                source: Arc::new(std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    "no mcp-resume store at this path (no such file)",
                )),
                path,
            });
        }
        let conn = Connection::open_with_flags(
            &path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(|e| classify(&path, "opening the database read-only", e))?;
        conn.busy_timeout(SqliteOptions::DEFAULT_BUSY_TIMEOUT)
            .map_err(|e| classify(&path, "opening the database read-only", e))?;
        let read = |pragma: &str| {
            conn.pragma_query_value(None, pragma, |row| row.get::<_, i64>(0))
                .map_err(|e| classify(&path, "reading the schema version", e))
        };
        let (application_id, version) = (read("application_id")?, read("user_version")?);
        if application_id != schema::APPLICATION_ID {
            return Err(StoreError::ForeignDatabase { path });
        }
        if version > schema::SCHEMA_VERSION {
            return Err(StoreError::SchemaTooNew {
                path,
                found: version,
                supported: schema::SCHEMA_VERSION,
            });
        }
        if version < schema::SCHEMA_VERSION {
            return Err(StoreError::SchemaTooOld {
                path,
                found: version,
                required: schema::SCHEMA_VERSION,
            });
        }
        Ok(Self {
            path,
            conn: Arc::new(Mutex::new(Some(conn))),
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether a process holds the store's lock file, that is has the
    /// store open for writing now.
    pub fn writer_alive(&self) -> bool {
        let mut lock_path = self.path.as_os_str().to_owned();
        lock_path.push(".lock");
        let Ok(file) = std::fs::File::open(&lock_path) else {
            return false;
        };
        // The writer holds an exclusive lock; a shared one is refused meanwhile.
        match file.try_lock_shared() {
            Ok(()) => {
                let _ = file.unlock();
                false
            }
            Err(_) => true,
        }
    }

    async fn read<T: Send + 'static>(
        &self,
        context: &'static str,
        query: impl FnOnce(&mut Connection) -> rusqlite::Result<T> + Send + 'static,
    ) -> Result<T, StoreError> {
        let conn = self.conn.clone();
        let path = self.path.clone();
        tokio::task::spawn_blocking(move || {
            let mut conn = conn.lock().unwrap_or_else(|e| e.into_inner());
            let conn = conn.as_mut().ok_or(StoreError::Closed)?;
            query(conn).map_err(|e| classify(&path, context, e))
        })
        .await
        .map_err(|join| StoreError::backend(context, join))?
    }
}

fn read_only<T>(operation: &'static str) -> BoxFuture<'static, Result<T, StoreError>>
where
    T: Send + 'static,
{
    Box::pin(async move {
        Err(StoreError::Unsupported {
            operation,
            reason: "the store was opened read-only",
        })
    })
}

impl EventStore for SqliteReadOnlyStore {
    fn create_stream(&self, _: NewStream) -> BoxFuture<'_, Result<StreamId, StoreError>> {
        read_only("create a stream")
    }

    fn append(
        &self,
        _: StreamId,
        _: Vec<NewEvent>,
    ) -> BoxFuture<'_, Result<AppendReceipt, StoreError>> {
        read_only("append events")
    }

    fn end_stream(&self, _: StreamId, _: StreamEnd) -> BoxFuture<'_, Result<(), StoreError>> {
        read_only("end a stream")
    }

    fn read_batch(
        &self,
        stream: StreamId,
        after: u64,
        limit: ReadLimit,
    ) -> BoxFuture<'_, Result<Batch, StoreError>> {
        Box::pin(async move {
            self.read("reading events", move |conn| {
                read_batch_on(conn, stream, Some(after), limit)
            })
            .await?
            .map(|(_, batch)| batch)
        })
    }

    fn subscribe(&self, stream: StreamId) -> BoxFuture<'_, Result<Subscription, StoreError>> {
        // Nothing here follows the writer: the head as of now.
        Box::pin(async move {
            let info = self
                .stream_info(stream)
                .await?
                .ok_or(StoreError::StreamNotFound(stream))?;
            Ok(Subscription::fixed(info.head()))
        })
    }

    fn stream_info(
        &self,
        stream: StreamId,
    ) -> BoxFuture<'_, Result<Option<StreamInfo>, StoreError>> {
        Box::pin(self.read("reading stream info", move |conn| {
            Ok(query_info(conn, stream)?.map(|row| row.info))
        }))
    }

    fn session_streams<'a>(
        &'a self,
        session: &'a str,
    ) -> BoxFuture<'a, Result<Vec<StreamInfo>, StoreError>> {
        let session = session.to_owned();
        Box::pin(self.read("listing a session's streams", move |conn| {
            session_streams_on(conn, &session)
        }))
    }

    fn purge_session<'a>(&'a self, _: &'a str) -> BoxFuture<'a, Result<u64, StoreError>> {
        read_only("purge a session")
    }

    fn sweep(&self) -> BoxFuture<'_, Result<SweepReport, StoreError>> {
        read_only("sweep")
    }

    /// The default retention: the file does not record the one its
    /// writer applies.
    fn retention(&self) -> Retention {
        Retention::default()
    }

    fn flush(&self) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(async { Ok(()) })
    }

    fn close(&self) -> BoxFuture<'_, Result<(), StoreError>> {
        let conn = self.conn.clone();
        Box::pin(async move {
            drop(conn.lock().unwrap_or_else(|e| e.into_inner()).take());
            Ok(())
        })
    }

    fn record_resume(&self, _: StreamId) -> BoxFuture<'_, Result<(), StoreError>> {
        read_only("record a resume")
    }

    fn list_streams<'a>(
        &'a self,
        query: &'a StreamQuery,
    ) -> BoxFuture<'a, Result<Vec<StreamRecord>, StoreError>> {
        let query = query.clone();
        let writer_gone = !self.writer_alive();
        Box::pin(self.read("listing streams", move |conn| {
            list_streams_on(conn, &query, writer_gone)
        }))
    }

    fn renew_lease(
        &self,
        _: StreamId,
        _: LeaseKind,
        _: std::time::Duration,
    ) -> BoxFuture<'_, Result<(), StoreError>> {
        read_only("renew a lease")
    }

    /// None: an SQLite store's leases live in the process that writes it,
    /// which a read-only view does not see.
    fn lease(
        &self,
        _: StreamId,
        _: LeaseKind,
    ) -> BoxFuture<'_, Result<Option<std::time::Duration>, StoreError>> {
        Box::pin(async { Ok(None) })
    }
}
