//! [`SqliteEventStore`]: the default, embedded, durable backend.

mod checkpointer;
mod commit;
mod file_watch;
mod history;
mod ledger;
mod schema;
mod settle;
mod threads;
mod wal;
mod writer;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rusqlite::{Connection, OptionalExtension};
use tokio::sync::{Semaphore, mpsc, oneshot};

use self::file_watch::FileWatch;
pub use self::history::SqliteReadOnlyStore;
use self::schema::{HEAD_COLUMNS, classify, head_from};
use self::writer::{Command, Writer};
use super::lease::{LeaseKind, LeaseTable};
use super::live::LiveStreams;
use super::memory::check_position;
use super::{
    AppendReceipt, Batch, BoxFuture, EventStore, NewEvent, NewStream, ReadLimit, Retention,
    StoreError, StoredEvent, StreamEnd, StreamId, StreamInfo, StreamKind, StreamQuery,
    StreamRecord, StreamState, Subscription, SweepReport,
};

/// How SQLite syncs commits to disk. Default: [`SqliteOptions::DEFAULT_SYNC`]
/// ([`Normal`](Self::Normal)).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SyncMode {
    /// `synchronous=NORMAL` (the default): a commit survives the process
    /// crashing; the last commits before a power loss or OS crash may be lost.
    Normal,
    /// `synchronous=FULL`: every commit is synced to disk before the append
    /// resolves, so it survives power loss, at the cost of one fsync per
    /// group commit.
    Full,
}

impl SyncMode {
    /// The value of SQLite's `synchronous` setting for this mode
    /// (`"NORMAL"` or `"FULL"`), for a connection of your own to the same
    /// file that should sync as the store does.
    pub fn pragma_value(self) -> &'static str {
        match self {
            SyncMode::Normal => "NORMAL",
            SyncMode::Full => "FULL",
        }
    }
}

impl Default for SyncMode {
    /// [`SqliteOptions::DEFAULT_SYNC`].
    fn default() -> Self {
        SqliteOptions::DEFAULT_SYNC
    }
}

/// Configuration for [`SqliteEventStore::open_with`].
#[derive(Clone, Debug)]
pub struct SqliteOptions {
    path: PathBuf,
    sync: SyncMode,
    busy_timeout: Duration,
    retention: Retention,
    read_connections: usize,
    max_size_bytes: Option<u64>,
    max_wal_bytes: u64,
    thread_nice: u8,
}

impl SqliteOptions {
    /// The sync mode unless [`sync`](Self::sync) says otherwise:
    /// [`SyncMode::Normal`], which loses no commit when the process crashes
    /// and costs no fsync per commit.
    pub const DEFAULT_SYNC: SyncMode = SyncMode::Normal;

    /// How long a connection waits for a lock, unless
    /// [`busy_timeout`](Self::busy_timeout) says otherwise: 5 seconds, far
    /// longer than a checkpoint holds one.
    pub const DEFAULT_BUSY_TIMEOUT: Duration = Duration::from_secs(5);

    /// How many read connections serve replays, unless
    /// [`read_connections`](Self::read_connections) says otherwise: 4, enough
    /// for concurrent resumes without holding many open files.
    pub const DEFAULT_READ_CONNECTIONS: usize = 4;

    /// The write-ahead log's bound, unless
    /// [`max_wal_bytes`](Self::max_wal_bytes) says otherwise: 64 MiB, large
    /// enough that the writer rarely waits for a checkpoint, small next to
    /// the disk.
    pub const DEFAULT_MAX_WAL_BYTES: u64 = 64 << 20;

    /// The smallest write-ahead log bound [`max_wal_bytes`](Self::max_wal_bytes)
    /// accepts (1 MiB); smaller values are raised to it.
    pub const MIN_MAX_WAL_BYTES: u64 = 1 << 20;

    /// How many nice levels below the opening thread the store's threads
    /// run, unless [`thread_nice`](Self::thread_nice) says otherwise: 5.
    pub const DEFAULT_THREAD_NICE: u8 = 5;

    /// Options for the database at `path`, with every other setting at its default.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self {
            path: path.into(),
            ..Self::default()
        }
    }

    /// The sync mode. Default: [`Self::DEFAULT_SYNC`] ([`SyncMode::Normal`]).
    pub fn sync(mut self, sync: SyncMode) -> Self {
        self.sync = sync;
        self
    }

    /// How long a connection waits for a lock held by a checkpoint or
    /// another connection before failing. Default:
    /// [`Self::DEFAULT_BUSY_TIMEOUT`] (5 seconds).
    pub fn busy_timeout(mut self, timeout: Duration) -> Self {
        self.busy_timeout = timeout;
        self
    }

    /// The retention applied to the store. Default: [`Retention::default`].
    pub fn retention(mut self, retention: Retention) -> Self {
        self.retention = retention;
        self
    }

    /// How many read connections serve replays and look-ups concurrently.
    /// Default: [`Self::DEFAULT_READ_CONNECTIONS`] (4). Values below 1 are
    /// treated as 1.
    pub fn read_connections(mut self, connections: usize) -> Self {
        self.read_connections = connections.max(1);
        self
    }

    /// Caps the database file's size; appends past it fail with
    /// [`StoreError::DiskFull`] (and nothing committed is lost). The empty
    /// store takes 40 KiB (10 pages of 4 KiB), and a cap below that makes
    /// [`open`](Self::open) fail with the same error. Default: no cap (the
    /// file grows as retention allows); there is no default size to name.
    pub fn max_size_bytes(mut self, bytes: u64) -> Self {
        self.max_size_bytes = Some(bytes);
        self
    }

    /// Bounds the write-ahead log beside the database file (`-wal`). Commits
    /// are appended to it and copied into the database file by checkpoints;
    /// it is written again from its start only once a checkpoint has copied
    /// all of it, which a writer that never pauses does not allow. So once it
    /// holds this much, the writer waits for a checkpoint of all of it (it
    /// may exceed the bound by the commit that crossed it), and the file is
    /// cut back to this size when it restarts. Default:
    /// [`Self::DEFAULT_MAX_WAL_BYTES`] (64 MiB). Values below
    /// [`Self::MIN_MAX_WAL_BYTES`] (1 MiB) are treated as that.
    pub fn max_wal_bytes(mut self, bytes: u64) -> Self {
        self.max_wal_bytes = bytes.max(Self::MIN_MAX_WAL_BYTES);
        self
    }

    /// How many nice levels below the thread that opens the store its own
    /// two threads run: the writer, which commits appends, and the
    /// checkpointer, which copies the write-ahead log into the database
    /// file. Default: [`Self::DEFAULT_THREAD_NICE`] (5). 0 schedules them
    /// like the opening thread; the lowest priority, nice 19, is as far as
    /// it goes. Linux only (where nice is a per-thread setting); ignored
    /// elsewhere.
    ///
    /// Their work can wait a little for a CPU that the threads serving
    /// requests want. The writer commits every append queued since its
    /// last commit in one transaction, so a writer that takes its turn
    /// after them commits more appends at once, at less CPU per event; one
    /// that preempts them commits smaller groups and interrupts the work
    /// that feeds it. On an idle CPU both run at once, whatever their
    /// priority. The price is latency when the CPUs are briefly all busy: a
    /// commit may wait for its turn. Set 0 where latency at moderate load
    /// matters more than throughput at full load. (The measurements behind
    /// the default are in the repository's
    /// `docs/performance-notes-2026-12.md`, "Store thread priority".)
    pub fn thread_nice(mut self, levels: u8) -> Self {
        self.thread_nice = levels;
        self
    }

    /// Opens the store with these options; see [`SqliteEventStore::open_with`].
    pub fn open(self) -> Result<SqliteEventStore, StoreError> {
        SqliteEventStore::open_with(self)
    }
}

impl Default for SqliteOptions {
    /// [`SqliteEventStore::DEFAULT_PATH`], [`Retention::default`], no size
    /// cap, and the `DEFAULT_*` constants above for everything else.
    fn default() -> Self {
        Self {
            path: PathBuf::from(SqliteEventStore::DEFAULT_PATH),
            sync: Self::DEFAULT_SYNC,
            busy_timeout: Self::DEFAULT_BUSY_TIMEOUT,
            retention: Retention::default(),
            read_connections: Self::DEFAULT_READ_CONNECTIONS,
            max_size_bytes: None,
            max_wal_bytes: Self::DEFAULT_MAX_WAL_BYTES,
            thread_nice: Self::DEFAULT_THREAD_NICE,
        }
    }
}

/// An [`EventStore`] in one SQLite file.
///
/// One file (default `./mcp_events.db`) in WAL mode, so readers never wait
/// for the writer. All writes go through one writer thread that commits the
/// appends of every stream that arrive together in one transaction (group
/// commit): a hundred concurrent streams cost about one commit, not a
/// hundred, and each caller still awaits its own commit. Reads run on a
/// small pool of read-only connections on Tokio's blocking threads.
///
/// A lock file beside the database (`mcp_events.db.lock`) keeps a second
/// process out: the store's notion of which streams are live belongs to one
/// process. When a store is opened, streams left live by a process that died
/// are marked [abandoned](crate::store::StreamState::Abandoned), so a resume of
/// one replays what was committed and then ends instead of waiting forever.
///
/// ```
/// use mcp_resume::store::{EventStore, NewEvent, NewStream, SqliteEventStore, StreamKind};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), mcp_resume::store::StoreError> {
/// # let dir = tempfile::tempdir().unwrap();
/// # let path = dir.path().join("mcp_events.db");
/// let store = SqliteEventStore::open(&path)?;
/// let stream = store.create_stream(NewStream::new(StreamKind::PostResponse)).await?;
/// store.append(stream, vec![NewEvent::message("hello")]).await?;
/// store.close().await?;
///
/// // Everything committed is there after a restart.
/// let store = SqliteEventStore::open(&path)?;
/// assert_eq!(store.stream_info(stream).await?.unwrap().event_count, 1);
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
pub struct SqliteEventStore {
    commands: mpsc::Sender<Command>,
    readers: ReadPool,
    live: Arc<LiveStreams>,
    options: SqliteOptions,
    closed: AtomicBool,
    last_sweep_millis: AtomicI64,
    file_watch: Arc<FileWatch>,
    /// In memory: the lock file keeps the database to one process, so no
    /// other process can hold or consult a lease.
    leases: LeaseTable,
}

impl SqliteEventStore {
    /// The file used when no path is given: `./mcp_events.db`.
    pub const DEFAULT_PATH: &'static str = "./mcp_events.db";

    /// The name of the store's writer thread, which commits every change,
    /// as `top -H`, `perf` and `/proc/<pid>/task/*/comm` show it.
    pub const WRITER_THREAD_NAME: &'static str = writer::THREAD_NAME;

    /// The name of the store's checkpointing thread, which copies the
    /// write-ahead log into the database file, as `top -H`, `perf` and
    /// `/proc/<pid>/task/*/comm` show it.
    pub const CHECKPOINT_THREAD_NAME: &'static str = checkpointer::THREAD_NAME;

    /// How often the store checks that its database file is still at its
    /// path: 5 seconds. Once the file is deleted, or another file is put at
    /// its path, the store logs an error naming it (repeated at most once a
    /// minute while it lasts) and [`health`](EventStore::health) fails with
    /// [`StoreError::FileReplaced`], since what is committed from then on is
    /// lost when the process stops. (`health` also checks at every call.)
    pub const FILE_CHECK_INTERVAL: Duration = Duration::from_secs(5);

    /// Opens (or creates) the store at `path` with default options.
    ///
    /// Blocking: it opens files and may migrate the schema. Call it at start-up
    /// or from [`tokio::task::spawn_blocking`].
    pub fn open(path: impl AsRef<Path>) -> Result<Self, StoreError> {
        Self::open_with(SqliteOptions::new(path.as_ref()))
    }

    /// Opens (or creates) a store with the given options.
    ///
    /// Fails with a typed error, and changes nothing in the file, when the
    /// file is not an SQLite database, belongs to another application, has a
    /// newer schema than this build, is read-only, or is held by another
    /// process. Must be called within a Tokio runtime, which serves reads.
    pub fn open_with(options: SqliteOptions) -> Result<Self, StoreError> {
        // Checked first, so the error names the directory, not the lock file.
        if let Some(dir) = options
            .path
            .parent()
            .filter(|dir| !dir.as_os_str().is_empty())
            && !dir.is_dir()
        {
            return Err(StoreError::Io {
                path: options.path.clone(),
                source: Arc::new(std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    format!(
                        "directory {} does not exist; create it first",
                        dir.display()
                    ),
                )),
            });
        }
        let lock = lock_file(&options.path)?;
        let conn = schema::open_writer(&options)?;
        // Opening created the file if it was missing: this is the one the store writes.
        let file_watch = Arc::new(FileWatch::new(&options.path));
        let live = Arc::new(LiveStreams::default());
        let writer = Writer::new(
            conn,
            &options,
            live.clone(),
            lock,
            checkpointer::Checkpointer::start(&options, file_watch.clone())?,
        )?;
        let orphans = writer.abandon_orphans()?;
        if orphans > 0 {
            tracing::info!(
                orphans,
                path = %options.path.display(),
                "mcp-resume marked streams left live by a previous process as abandoned"
            );
        }
        let readers = ReadPool::open(&options)?;
        let (commands, receiver) = mpsc::channel(4 * 1024);
        threads::spawn(
            writer::THREAD_NAME,
            options.thread_nice,
            &options.path,
            move || writer.run(receiver),
        )?;
        Ok(Self {
            commands,
            readers,
            live,
            options,
            closed: AtomicBool::new(false),
            last_sweep_millis: AtomicI64::new(unix_millis()),
            file_watch,
            leases: LeaseTable::default(),
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.options.path
    }

    /// Sends a command to the writer and awaits its answer.
    async fn write<T>(
        &self,
        command: impl FnOnce(oneshot::Sender<Result<T, StoreError>>) -> Command,
    ) -> Result<T, StoreError> {
        if self.closed.load(Ordering::Acquire) {
            return Err(StoreError::Closed);
        }
        let (reply, answer) = oneshot::channel();
        self.commands
            .send(command(reply))
            .await
            .map_err(|_| StoreError::Closed)?;
        answer.await.map_err(|_| StoreError::Closed)?
    }

    /// Starts a sweep in the background when the last one is older than the
    /// sweep interval; nobody waits for it.
    fn sweep_if_due(&self) {
        let now = unix_millis();
        let last = self.last_sweep_millis.load(Ordering::Relaxed);
        let interval = self.options.retention.sweep_interval.as_millis() as i64;
        if now - last >= interval
            && self
                .last_sweep_millis
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            let _ = self.commands.try_send(Command::Sweep { reply: None });
        }
    }

    /// Runs a query on a read connection, on a blocking thread.
    async fn read<T: Send + 'static>(
        &self,
        context: &'static str,
        query: impl FnOnce(&mut Connection) -> Result<T, rusqlite::Error> + Send + 'static,
    ) -> Result<T, StoreError> {
        if self.closed.load(Ordering::Acquire) {
            return Err(StoreError::Closed);
        }
        let path = self.options.path.clone();
        self.readers
            .run(move |conn| query(conn).map_err(|e| classify(&path, context, e)))
            .await
    }
}

impl EventStore for SqliteEventStore {
    fn create_stream(&self, new: NewStream) -> BoxFuture<'_, Result<StreamId, StoreError>> {
        Box::pin(async move {
            let info = self.create_stream_with_events(new, Vec::new()).await?;
            Ok(info.id)
        })
    }

    fn create_stream_with_events(
        &self,
        new: NewStream,
        first: Vec<NewEvent>,
    ) -> BoxFuture<'_, Result<StreamInfo, StoreError>> {
        Box::pin(async move {
            self.sweep_if_due();
            let id = StreamId::random();
            self.write(|reply| Command::Create {
                id,
                new,
                first,
                reply,
            })
            .await
        })
    }

    fn append(
        &self,
        stream: StreamId,
        events: Vec<NewEvent>,
    ) -> BoxFuture<'_, Result<AppendReceipt, StoreError>> {
        Box::pin(self.write(move |reply| Command::Append {
            stream,
            events,
            end: None,
            reply,
        }))
    }

    fn append_and_end(
        &self,
        stream: StreamId,
        events: Vec<NewEvent>,
        end: StreamEnd,
    ) -> BoxFuture<'_, Result<AppendReceipt, StoreError>> {
        Box::pin(self.write(move |reply| Command::Append {
            stream,
            events,
            end: Some(end),
            reply,
        }))
    }

    fn end_stream(
        &self,
        stream: StreamId,
        end: StreamEnd,
    ) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(self.write(move |reply| Command::End { stream, end, reply }))
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

    fn read_stream(
        &self,
        stream: StreamId,
        limit: ReadLimit,
    ) -> BoxFuture<'_, Result<Option<(StreamInfo, Batch)>, StoreError>> {
        Box::pin(async move {
            let read = self
                .read("reading a stream", move |conn| {
                    read_batch_on(conn, stream, None, limit)
                })
                .await?;
            match read {
                Ok(read) => Ok(Some(read)),
                Err(StoreError::StreamNotFound(_)) => Ok(None),
                Err(error) => Err(error),
            }
        })
    }

    fn subscribe(&self, stream: StreamId) -> BoxFuture<'_, Result<Subscription, StoreError>> {
        Box::pin(async move {
            if let Some(subscription) = self.live.subscribe(stream) {
                return Ok(subscription);
            }
            // Not live in this process: its head cannot move any more. (Only
            // this process writes the file, and streams of dead processes were
            // abandoned at open.)
            let info = self
                .stream_info(stream)
                .await?
                .ok_or(StoreError::StreamNotFound(stream))?;
            // The stream may have been created and ended between the two look-ups;
            // a fixed head is right either way, as nothing more will come.
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

    fn purge_session<'a>(&'a self, session: &'a str) -> BoxFuture<'a, Result<u64, StoreError>> {
        let session = session.to_owned();
        Box::pin(self.write(move |reply| Command::PurgeSession { session, reply }))
    }

    fn sweep(&self) -> BoxFuture<'_, Result<SweepReport, StoreError>> {
        Box::pin(self.write(|reply| Command::Sweep { reply: Some(reply) }))
    }

    fn retention(&self) -> Retention {
        self.options.retention
    }

    fn flush(&self) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(self.write(|reply| Command::Flush { reply }))
    }

    /// Fails with [`StoreError::FileReplaced`] if the database file was
    /// deleted or replaced, with [`StoreError::Closed`] if the writer thread
    /// is gone, and with the read's error if a read connection cannot read.
    fn health(&self) -> BoxFuture<'_, Result<(), StoreError>> {
        let file_watch = self.file_watch.clone();
        Box::pin(async move {
            if self.commands.is_closed() {
                return Err(StoreError::Closed);
            }
            self.read("checking the store's health", move |conn| {
                if let Err(error) = file_watch.check() {
                    return Ok(Err(error));
                }
                conn.prepare_cached("SELECT stream_no FROM streams LIMIT 1")?
                    .query_row([], |_| Ok(()))
                    .optional()?;
                Ok(Ok(()))
            })
            .await?
        })
    }

    fn record_resume(&self, stream: StreamId) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(self.write(move |reply| Command::RecordResume { stream, reply }))
    }

    fn list_streams<'a>(
        &'a self,
        query: &'a StreamQuery,
    ) -> BoxFuture<'a, Result<Vec<StreamRecord>, StoreError>> {
        let query = query.clone();
        // This process is the writer: its live streams are running.
        Box::pin(self.read("listing streams", move |conn| {
            history::list_streams_on(conn, &query, false)
        }))
    }

    fn close(&self) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(async move {
            if self.closed.swap(true, Ordering::AcqRel) {
                return Ok(());
            }
            let (reply, answer) = oneshot::channel();
            if self.commands.send(Command::Close { reply }).await.is_err() {
                return Ok(());
            }
            let result = answer.await.unwrap_or(Ok(()));
            self.readers.close();
            self.leases.clear();
            result
        })
    }

    fn renew_lease(
        &self,
        stream: StreamId,
        kind: LeaseKind,
        ttl: Duration,
    ) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(async move {
            if self.closed.load(Ordering::Acquire) {
                return Err(StoreError::Closed);
            }
            self.leases.renew(stream, kind, ttl);
            Ok(())
        })
    }

    fn lease(
        &self,
        stream: StreamId,
        kind: LeaseKind,
    ) -> BoxFuture<'_, Result<Option<Duration>, StoreError>> {
        Box::pin(async move {
            if self.closed.load(Ordering::Acquire) {
                return Err(StoreError::Closed);
            }
            Ok(self.leases.remaining(stream, kind))
        })
    }
}

/// The read connections, handed out one query at a time.
#[derive(Debug)]
struct ReadPool {
    idle: Arc<Mutex<Vec<Connection>>>,
    permits: Arc<Semaphore>,
    options: SqliteOptions,
}

impl ReadPool {
    fn open(options: &SqliteOptions) -> Result<Self, StoreError> {
        // One connection now proves the file is readable; the rest open on demand.
        let first = schema::open_reader(options)?;
        Ok(Self {
            idle: Arc::new(Mutex::new(vec![first])),
            permits: Arc::new(Semaphore::new(options.read_connections)),
            options: options.clone(),
        })
    }

    async fn run<T: Send + 'static>(
        &self,
        query: impl FnOnce(&mut Connection) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let permit = self
            .permits
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| StoreError::Closed)?;
        let idle = self.idle.clone();
        let options = self.options.clone();
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            let taken = idle.lock().unwrap_or_else(|e| e.into_inner()).pop();
            let mut conn = match taken {
                Some(conn) => conn,
                None => schema::open_reader(&options)?,
            };
            let result = query(&mut conn);
            idle.lock().unwrap_or_else(|e| e.into_inner()).push(conn);
            result
        })
        .await
        .map_err(|join| StoreError::backend("running a read query", join))?
    }

    fn close(&self) {
        self.permits.close();
        self.idle.lock().unwrap_or_else(|e| e.into_inner()).clear();
    }
}

/// Takes the lock file beside the database, so one process owns the store.
fn lock_file(path: &Path) -> Result<std::fs::File, StoreError> {
    let mut lock_path = path.as_os_str().to_owned();
    lock_path.push(".lock");
    let lock_path = PathBuf::from(lock_path);
    let io_error = |source: std::io::Error| match source.kind() {
        std::io::ErrorKind::PermissionDenied | std::io::ErrorKind::ReadOnlyFilesystem => {
            StoreError::ReadOnly {
                path: path.to_owned(),
            }
        }
        _ => StoreError::Io {
            path: lock_path.clone(),
            source: Arc::new(source),
        },
    };
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(io_error)?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(StoreError::Locked {
            path: path.to_owned(),
            lock_path,
        }),
        Err(std::fs::TryLockError::Error(source)) => Err(io_error(source)),
    }
}

/// [`EventStore::read_batch`] and [`EventStore::read_stream`] on one
/// connection: the stream's info and its events after `after` (from the
/// oldest it retains when `None`), at most `limit`, with its head, in one
/// read transaction. The outer error is SQLite's; the inner one is the
/// answer (not found, trimmed, ahead).
fn read_batch_on(
    conn: &mut Connection,
    stream: StreamId,
    after: Option<u64>,
    limit: ReadLimit,
) -> rusqlite::Result<Result<(StreamInfo, Batch), StoreError>> {
    // One read transaction: the info, the head and the events are one snapshot.
    let tx = conn.transaction()?;
    let Some(info) = query_info(&tx, stream)? else {
        return Ok(Err(StoreError::StreamNotFound(stream)));
    };
    let after = after.unwrap_or(info.info.first_seq.saturating_sub(1));
    if let Err(error) = check_position(&info.info, after) {
        return Ok(Err(error));
    }
    // Settled events first, then recent ones: for a stream, all
    // of the first precede all of the second. The two `recent`
    // tables are merged in sequence order (each through its index).
    let mut events = Vec::new();
    let mut bytes = 0;
    let mut position = after;
    for table in [
        "SELECT seq, event_type, data FROM events
             WHERE stream_no = ?1 AND seq > ?2 ORDER BY seq LIMIT ?3",
        "SELECT seq, event_type, data FROM recent WHERE stream_no = ?1 AND seq > ?2
             UNION ALL
             SELECT seq, event_type, data FROM recent_alt WHERE stream_no = ?1 AND seq > ?2
             ORDER BY seq LIMIT ?3",
    ] {
        if limit.is_full(events.len(), bytes) {
            break;
        }
        let mut select = tx.prepare_cached(table)?;
        let mut rows = select.query(rusqlite::params![
            info.stream_no,
            position as i64,
            limit.max_events.max(1).saturating_sub(events.len()) as i64
        ])?;
        while let Some(row) = rows.next()? {
            if limit.is_full(events.len(), bytes) {
                break;
            }
            let data: Vec<u8> = row.get(2)?;
            bytes += data.len();
            position = row.get::<_, i64>(0)? as u64;
            events.push(StoredEvent {
                seq: position,
                event_type: row.get::<_, Option<Vec<u8>>>(1)?.map(Into::into),
                data: data.into(),
            });
        }
    }
    let head = info.info.head();
    Ok(Ok((info.info, Batch { events, head })))
}

/// The streams of `session`, oldest first.
fn session_streams_on(conn: &Connection, session: &str) -> rusqlite::Result<Vec<StreamInfo>> {
    let mut select = conn.prepare_cached(&format!(
        "SELECT {} FROM streams s WHERE s.session_id = ?1 ORDER BY s.created_at, s.stream_no",
        info_columns()
    ))?;
    let rows = select.query_map([session], info_from_row)?;
    rows.map(|row| row.map(|row| row.info)).collect()
}

/// The columns [`info_from_row`] reads, from `streams` aliased `s`.
fn info_columns() -> String {
    format!(
        "s.stream_no, s.stream_id, s.kind, s.state, s.session_id, s.identity, {HEAD_COLUMNS}, s.created_at, s.last_activity"
    )
}

struct InfoRow {
    stream_no: i64,
    info: StreamInfo,
}

fn query_info(conn: &Connection, stream: StreamId) -> rusqlite::Result<Option<InfoRow>> {
    conn.prepare_cached(&format!(
        "SELECT {} FROM streams s WHERE s.stream_id = ?1",
        info_columns()
    ))?
    .query_row([&stream.as_bytes()[..]], info_from_row)
    .optional()
}

fn info_from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<InfoRow> {
    let corrupt = |column: usize, what: &str| {
        rusqlite::Error::FromSqlConversionFailure(
            column,
            rusqlite::types::Type::Integer,
            format!("invalid {what} in the streams table").into(),
        )
    };
    let id: [u8; 16] = row.get(1)?;
    let (first_seq, last_seq) = head_from(row.get(6)?, row.get(7)?);
    Ok(InfoRow {
        stream_no: row.get(0)?,
        info: StreamInfo {
            id: StreamId::from_bytes(id),
            kind: StreamKind::from_code(row.get(2)?).ok_or_else(|| corrupt(2, "stream kind"))?,
            state: StreamState::from_code(row.get(3)?).ok_or_else(|| corrupt(3, "stream state"))?,
            session: row.get(4)?,
            identity: row.get(5)?,
            event_count: (last_seq + 1).saturating_sub(first_seq),
            first_seq,
            last_seq,
            created_at: from_millis(row.get(8)?),
            last_activity: from_millis(row.get(9)?),
        },
    })
}

/// Milliseconds since the Unix epoch: how the file records time.
pub(crate) fn unix_millis() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_millis() as i64)
}

pub(super) fn from_millis(millis: i64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(millis.max(0) as u64)
}
