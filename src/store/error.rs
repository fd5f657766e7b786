//! The one error type every [`EventStore`](super::EventStore) returns.

use std::path::PathBuf;
use std::sync::Arc;

use super::{StreamId, StreamState};

/// Why a store operation failed.
///
/// The variants fall in two groups. *Cannot resume* errors
/// ([`StreamNotFound`](Self::StreamNotFound), [`Trimmed`](Self::Trimmed),
/// [`PositionAhead`](Self::PositionAhead)) describe the request: the events
/// asked for are not (or no longer) there, and asking again will not help; see
/// [`is_cannot_resume`](Self::is_cannot_resume). The others describe the store
/// itself (a bad file, a full disk, a closed store) and are worth logging and
/// alerting on.
///
/// The error is [`Clone`] because one failed group commit is reported to every
/// caller whose append was in it.
#[derive(Clone, Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The stream was never created here, or was purged or expired by retention.
    #[error(
        "stream {0} does not exist (never created, purged with its session, or expired by retention)"
    )]
    StreamNotFound(StreamId),

    /// Events after the requested position were deleted by retention, so a
    /// complete replay is impossible (a partial one is never given).
    #[error(
        "stream {stream} cannot be replayed after sequence {after}: retention trimmed it up to \
         sequence {first_retained} (raise max_events_per_stream to keep more)"
    )]
    Trimmed {
        /// The stream.
        stream: StreamId,
        /// The position asked for.
        after: u64,
        /// The oldest event still retained.
        first_retained: u64,
    },

    /// The requested position is past the newest event of the stream: the id
    /// was not issued by this store (or the store was restored from an older copy).
    #[error("stream {stream} has no event {after} (its newest is {last_seq})")]
    PositionAhead {
        /// The stream.
        stream: StreamId,
        /// The position asked for.
        after: u64,
        /// The newest event of the stream.
        last_seq: u64,
    },

    /// The store says the stream holds events after the position, yet gave
    /// none back: they were removed behind mcp-resume's back (a Redis key
    /// evicted or expired, rows deleted by hand). The replay stops here
    /// rather than skip them.
    #[error(
        "stream {stream} should hold events {after} < seq <= {last_seq}, but the store returned \
         none: they were deleted outside mcp-resume (for Redis, check maxmemory-policy is noeviction)"
    )]
    EventsMissing {
        /// The stream.
        stream: StreamId,
        /// The position asked for.
        after: u64,
        /// The newest event the store claims to have.
        last_seq: u64,
    },

    /// An append or end to a stream that has already ended.
    #[error("stream {stream} is {state}; it takes no more events")]
    StreamEnded {
        /// The stream.
        stream: StreamId,
        /// Its final state.
        state: StreamState,
    },

    /// The store was closed; create a new one to continue.
    #[error("the event store is closed")]
    Closed,

    /// The file exists but is not a SQLite database.
    #[error("{path} is not an SQLite database; point the store at a new path or remove the file")]
    NotADatabase {
        /// The file.
        path: PathBuf,
    },

    /// The file is an SQLite database that belongs to another application.
    #[error(
        "{path} is an SQLite database of another application (it has no mcp-resume schema); use a separate file"
    )]
    ForeignDatabase {
        /// The file.
        path: PathBuf,
    },

    /// The file was written by a newer mcp-resume whose schema this build
    /// does not know. Nothing was changed in the file.
    #[error(
        "{path} has event store schema version {found}, newer than the {supported} this build \
         supports; upgrade mcp-resume or use another file"
    )]
    SchemaTooNew {
        /// The file.
        path: PathBuf,
        /// Its schema version.
        found: i64,
        /// The newest version this build knows.
        supported: i64,
    },

    /// Another process has the store open.
    #[error(
        "{path} is in use by another process (lock file {lock_path} is held); one process per store file"
    )]
    Locked {
        /// The store file.
        path: PathBuf,
        /// The lock file that is held.
        lock_path: PathBuf,
    },

    /// The file or its directory cannot be written.
    #[error(
        "{path} is read-only or in a directory this process cannot write; check its permissions"
    )]
    ReadOnly {
        /// The file.
        path: PathBuf,
    },

    /// The disk (or the database's size limit,
    /// [`SqliteOptions::max_size_bytes`](crate::store::SqliteOptions::max_size_bytes))
    /// is full. Events committed before this error are still in the store.
    #[error(
        "no space left to write {path} (the disk is full, or the file reached its size cap); events committed before this are kept: free disk space, raise the cap (max_size_bytes, --max-db-bytes) or lower retention"
    )]
    DiskFull {
        /// The file.
        path: PathBuf,
    },

    /// The database file was deleted, or another file was put at its path,
    /// while the store had it open. The store goes on writing to the file it
    /// opened, which nothing can open again once the process stops: what is
    /// committed from now on is lost at the next start.
    #[error(
        "{path} was deleted or replaced while mcp-resume had it open: events committed from now on \
         are lost when the process stops; restart mcp-resume to open a store at that path again, \
         and do not remove the store's files while it runs"
    )]
    FileReplaced {
        /// The database file.
        path: PathBuf,
    },

    /// The file's schema is older than this build reads without migrating
    /// it, and it was opened read-only (as `mcp-resume inspect` does), so
    /// it was not migrated. Nothing was changed in the file.
    #[error(
        "{path} has event store schema version {found}, older than the {required} this build \
         reads; open it once with this build's proxy (or SqliteEventStore::open) to migrate it, \
         or inspect it with the mcp-resume that wrote it"
    )]
    SchemaTooOld {
        /// The file.
        path: PathBuf,
        /// Its schema version.
        found: i64,
        /// The version this build reads.
        required: i64,
    },

    /// The store cannot do this: it was opened read-only, or the backend
    /// does not implement it.
    #[error("this event store cannot {operation}: {reason}")]
    Unsupported {
        /// What was asked.
        operation: &'static str,
        /// Why not.
        reason: &'static str,
    },

    /// An operating-system I/O error.
    #[error("I/O error on {path}: {source}")]
    Io {
        /// The file involved.
        path: PathBuf,
        /// The cause.
        #[source]
        source: Arc<std::io::Error>,
    },

    /// Any other error from the backend (the SQLite library, a network store).
    #[error("event store backend error while {context}: {source}")]
    Backend {
        /// What the store was doing.
        context: &'static str,
        /// The backend's own error.
        #[source]
        source: Arc<dyn std::error::Error + Send + Sync>,
    },
}

impl StoreError {
    /// True for errors that mean "this stream cannot be resumed from that
    /// position" rather than "the store is failing": a missing stream, a
    /// trimmed range, or a position that was never issued.
    pub fn is_cannot_resume(&self) -> bool {
        matches!(
            self,
            Self::StreamNotFound(_) | Self::Trimmed { .. } | Self::PositionAhead { .. }
        )
    }

    /// Wraps a backend error with what the store was doing.
    pub fn backend(
        context: &'static str,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        Self::Backend {
            context,
            source: Arc::new(source),
        }
    }
}
