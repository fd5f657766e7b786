//! Durable event storage: the [`EventStore`] trait and its backends.
//!
//! The layer gives every outgoing SSE event a position in a *stream* (one POST
//! response, or one standalone GET stream) and commits it here before the
//! client sees it. A client that reconnects with `Last-Event-ID` names a
//! stream and a position; the layer replays what the store holds after it and
//! then follows the stream live until its producer ends it.
//!
//! # Backends
//!
//! | backend | for | durability |
//! |---|---|---|
//! | [`SqliteEventStore`] (feature `sqlite`, default) | one server process | survives restarts; `NORMAL` or `FULL` sync |
//! | [`MemoryEventStore`] | tests, ephemeral servers | none |
//! | `RedisEventStore` (feature `redis`) | a fleet behind a load balancer: resume on any instance | Redis's persistence (AOF `everysec` or `always`) |
//!
//! They all keep the same [`Retention`] (idle streams expire, each stream keeps a
//! bounded number of events) and pass the same backend test suite
//! (`tests/it/store_backends.rs`).
//!
//! # The model
//!
//! - A stream is created bound to an optional MCP session and identity
//!   ([`NewStream`]) and gets an unguessable [`StreamId`].
//! - [`append`](EventStore::append) assigns per-stream, gap-free sequence
//!   numbers starting at 1. When its future resolves the events are
//!   committed: readable by every reader, and durable as far as the backend's
//!   sync setting promises. Position 0 is "before the first event".
//! - [`read_batch`](EventStore::read_batch) reads a page of events after a
//!   position in `O(log n + k)`, and refuses, with
//!   [`StoreError::Trimmed`], a position whose successors were deleted by
//!   retention: a replay is all or nothing.
//! - [`subscribe`](EventStore::subscribe) announces each new committed head,
//!   so readers can follow a live stream without polling.
//! - [`end_stream`](EventStore::end_stream) marks it complete or abandoned.
//!
//! Backends implement these primitives; the reading logic built on them lives
//! once, in [`replay`] (events after a position, up to the head at the time of
//! the call) and [`follow`] (replay, then live events until the stream ends,
//! with no gap and no duplicate).
//!
//! # Why `Arc<dyn EventStore>`
//!
//! The trait is object safe and the layer holds an `Arc<dyn EventStore>`:
//! the store is usually picked at run time (a command-line flag, a config
//! file), and a generic parameter would leak into every service type that
//! wraps it. The cost is one boxed future per store call, which is noise next
//! to a commit. The methods return [`BoxFuture`] rather than using `async fn`
//! so the trait stays usable as a trait object.
//!
//! # Mapping a distributed backend
//!
//! The trait is shaped so a shared log (Redis Streams) can serve a fleet of
//! servers behind a load balancer, where the resume can reach a different
//! instance than the one producing the stream:
//!
//! - a stream is one log key, metadata (session, identity, kind, state,
//!   first and last retained sequence) one hash key, and a per-session set
//!   indexes streams for [`purge_session`](EventStore::purge_session);
//! - [`append`](EventStore::append) is one atomic script that bumps the
//!   sequence and adds the entries, so two instances never produce a gap or a
//!   duplicate, and trims to the cap while recording the first retained
//!   sequence;
//! - [`read_batch`](EventStore::read_batch) is a range read from
//!   `after + 1` with a count, plus the metadata in the same round trip;
//! - [`subscribe`](EventStore::subscribe) is a task that blocks on the log
//!   (or a pub/sub channel) and feeds the [`Subscription`]'s watch channel,
//!   so [`follow`] works unchanged across instances;
//! - retention maps onto per-key expiry and a length cap.
//!
//! # Example
//!
//! ```
//! use std::sync::Arc;
//! use mcp_resume::store::{self, EventStore, MemoryEventStore, NewEvent, NewStream, StreamEnd, StreamKind};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), store::StoreError> {
//! let store: Arc<dyn EventStore> = Arc::new(MemoryEventStore::new());
//! let stream = store.create_stream(NewStream::new(StreamKind::PostResponse)).await?;
//! store.append(stream, vec![NewEvent::message("one"), NewEvent::message("two")]).await?;
//! store.end_stream(stream, StreamEnd::Complete).await?;
//!
//! // Everything after position 1, in batches; the stream is complete, so it ends.
//! let mut events = store::follow(store.clone(), stream, 1);
//! let batch = events.next_batch().await.expect("one batch")?;
//! assert_eq!(batch[0].data, "two");
//! assert!(events.next_batch().await.is_none());
//! # Ok(())
//! # }
//! ```

mod error;
pub mod history;
mod lease;
mod live;
mod memory;
mod read;
#[cfg(feature = "redis")]
mod redis;
#[cfg(feature = "sqlite")]
mod sqlite;
mod types;

#[cfg(feature = "redis")]
#[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
pub use self::redis::{RedisEventStore, RedisOptions};
pub use error::StoreError;
pub use history::{StreamCall, StreamOutcome, StreamQuery, StreamRecord};
pub use lease::LeaseKind;
pub use live::Subscription;
pub use memory::MemoryEventStore;
pub(crate) use read::read_page_known_to_follow;
pub use read::{EventBatches, ReadLimit, follow, replay};
#[cfg(feature = "sqlite")]
#[cfg_attr(docsrs, doc(cfg(feature = "sqlite")))]
pub use sqlite::{SqliteEventStore, SqliteOptions, SqliteReadOnlyStore, SyncMode};
pub use types::{
    AppendReceipt, Batch, EventId, InvalidId, NewEvent, NewStream, Retention, StoredEvent,
    StreamEnd, StreamHead, StreamId, StreamInfo, StreamKind, StreamState, SweepReport,
};

/// A boxed, sendable future: what [`EventStore`] methods return (the
/// `futures` ecosystem's own alias, re-exported so implementors need not
/// depend on `futures-core`).
pub use futures_core::future::BoxFuture;

/// A durable, ordered log of SSE events, grouped in streams.
///
/// See the [module documentation](self) for the model and for how a
/// distributed backend maps onto it. Every method is cancel safe in the
/// sense that dropping its future never corrupts the store; an append whose
/// future is dropped may or may not have been committed.
pub trait EventStore: Send + Sync + 'static {
    /// Creates a live stream and returns its new, unguessable id.
    fn create_stream(&self, stream: NewStream) -> BoxFuture<'_, Result<StreamId, StoreError>>;

    /// Creates a live stream that holds `first` as its first events, and
    /// returns what is known of it once they are committed: what a caller
    /// that must answer with the stream's times (a task's creation) would
    /// otherwise get from [`create_stream`](Self::create_stream),
    /// [`append`](Self::append) and [`stream_info`](Self::stream_info) in
    /// turn.
    ///
    /// The default does exactly that, and ends the stream as abandoned when the
    /// append fails. [`SqliteEventStore`] overrides it with
    /// one command to its writer and one transaction, so no reader ever sees
    /// the stream without its first events and the caller waits for one
    /// commit instead of two and a read.
    fn create_stream_with_events(
        &self,
        stream: NewStream,
        first: Vec<NewEvent>,
    ) -> BoxFuture<'_, Result<StreamInfo, StoreError>> {
        Box::pin(async move {
            let id = self.create_stream(stream).await?;
            if let Err(error) = self.append(id, first).await {
                // A stream without its first events must not look live.
                let _ = self.end_stream(id, StreamEnd::Abandoned).await;
                return Err(error);
            }
            self.stream_info(id)
                .await?
                .ok_or(StoreError::StreamNotFound(id))
        })
    }

    /// Appends `events` to a live stream, in order, and resolves once they
    /// are committed. Sequence numbers are per stream, start at 1 and have no
    /// gaps. Appending an empty `Vec` commits nothing and returns the current
    /// head as an empty range (`first_seq == last_seq + 1`).
    ///
    /// Fails with [`StoreError::StreamEnded`] if the stream was ended and
    /// [`StoreError::StreamNotFound`] if it does not exist.
    fn append(
        &self,
        stream: StreamId,
        events: Vec<NewEvent>,
    ) -> BoxFuture<'_, Result<AppendReceipt, StoreError>>;

    /// Appends `events` to a live stream, then ends it with `end`, and
    /// resolves once both are committed: what a producer whose last events
    /// and end arrive together would otherwise do with
    /// [`append`](Self::append) and [`end_stream`](Self::end_stream) in
    /// turn. Fails as `append` does, and then does not end the stream.
    ///
    /// The default does exactly that. [`SqliteEventStore`] overrides it with
    /// one command to its writer and one transaction.
    fn append_and_end(
        &self,
        stream: StreamId,
        events: Vec<NewEvent>,
        end: StreamEnd,
    ) -> BoxFuture<'_, Result<AppendReceipt, StoreError>> {
        Box::pin(async move {
            let receipt = self.append(stream, events).await?;
            self.end_stream(stream, end).await?;
            Ok(receipt)
        })
    }

    /// Marks a live stream complete or abandoned and wakes its subscribers.
    /// Ending an already ended stream keeps its first end state and succeeds.
    fn end_stream(&self, stream: StreamId, end: StreamEnd)
    -> BoxFuture<'_, Result<(), StoreError>>;

    /// Reads the events after sequence `after` (at most `limit`), in order,
    /// with the stream's head as of the same read. `O(log n + k)` whatever
    /// the size of the store.
    ///
    /// Fails with [`StoreError::Trimmed`] if any event after `after` was
    /// deleted by retention, [`StoreError::PositionAhead`] if `after` is past
    /// the newest event, and [`StoreError::StreamNotFound`] if the stream does
    /// not exist.
    fn read_batch(
        &self,
        stream: StreamId,
        after: u64,
        limit: ReadLimit,
    ) -> BoxFuture<'_, Result<Batch, StoreError>>;

    /// Everything known about a stream and the first page (at most
    /// `limit`) of the events it retains, those from
    /// [`StreamInfo::first_seq`] on; `None` if it does not exist. What a
    /// caller that needs both (a task's state) would otherwise get from
    /// [`stream_info`](Self::stream_info) and
    /// [`read_batch`](Self::read_batch) in turn.
    ///
    /// The default does exactly that; like a [`replay`], it fails with
    /// [`StoreError::Trimmed`] when retention trims the stream between the
    /// two. [`SqliteEventStore`] overrides it with one read transaction.
    fn read_stream(
        &self,
        stream: StreamId,
        limit: ReadLimit,
    ) -> BoxFuture<'_, Result<Option<(StreamInfo, Batch)>, StoreError>> {
        Box::pin(async move {
            let Some(info) = self.stream_info(stream).await? else {
                return Ok(None);
            };
            match self
                .read_batch(stream, info.first_seq.saturating_sub(1), limit)
                .await
            {
                Ok(batch) => Ok(Some((info, batch))),
                // Deleted between the two reads.
                Err(StoreError::StreamNotFound(_)) => Ok(None),
                Err(error) => Err(error),
            }
        })
    }

    /// Subscribes to a stream's head. Subscribe *before* reading, then read
    /// until caught up: no commit can fall between the two ([`follow`] does
    /// this).
    fn subscribe(&self, stream: StreamId) -> BoxFuture<'_, Result<Subscription, StoreError>>;

    /// Everything known about a stream, or `None` if it does not exist.
    fn stream_info(
        &self,
        stream: StreamId,
    ) -> BoxFuture<'_, Result<Option<StreamInfo>, StoreError>>;

    /// The streams bound to an MCP session, oldest first.
    fn session_streams<'a>(
        &'a self,
        session: &'a str,
    ) -> BoxFuture<'a, Result<Vec<StreamInfo>, StoreError>>;

    /// Deletes every stream of an MCP session (when the session ends) and
    /// returns how many were deleted. Live streams among them are ended as
    /// abandoned first, so their followers stop.
    fn purge_session<'a>(&'a self, session: &'a str) -> BoxFuture<'a, Result<u64, StoreError>>;

    /// Applies retention now: deletes ended streams whose last activity is
    /// older than [`Retention::max_age`]. Backends also sweep on their own,
    /// every [`Retention::sweep_interval`].
    fn sweep(&self) -> BoxFuture<'_, Result<SweepReport, StoreError>>;

    /// The retention this store applies.
    fn retention(&self) -> Retention;

    /// Resolves once everything appended before the call is committed and,
    /// where the backend has a stronger sync available, made durable.
    fn flush(&self) -> BoxFuture<'_, Result<(), StoreError>>;

    /// Resolves `Ok` if the store can serve now, or with the error that says
    /// why not: what a readiness check asks. Cheap enough to call every few
    /// seconds.
    ///
    /// The default reads the info of a stream that does not exist. Backends
    /// check more where they can: [`SqliteEventStore`] also fails with
    /// [`StoreError::FileReplaced`] once its file was deleted or replaced,
    /// and `RedisEventStore` sends `PING` within its response timeout.
    fn health(&self) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(async move { self.stream_info(StreamId::random()).await.map(drop) })
    }

    /// Flushes, ends every stream that is live in this process as abandoned,
    /// and releases the store's resources. Later calls fail with
    /// [`StoreError::Closed`]. Closing twice is fine.
    fn close(&self) -> BoxFuture<'_, Result<(), StoreError>>;

    // ---- Leases across the instances of a fleet (issue 25) ----

    /// Holds the `kind` lease on `stream` for `ttl` from now, whichever
    /// instance held it before: a renewal replaces the expiry. Renewing a
    /// lease on a stream that does not exist is allowed and harmless (the
    /// lease lapses on its own).
    ///
    /// The layer renews a [`LeaseKind::Producer`] lease on each stream it
    /// produces, and a [`LeaseKind::Attachment`] lease on each stream it
    /// serves a reader of without producing it, every
    /// [lease period](crate::ResumabilityLayer::lease_period). The producer
    /// consults the attachment lease before abandoning a stream whose
    /// clients have all left it locally; readers elsewhere consult the
    /// producer lease, and end the stream as abandoned once it lapsed.
    /// Backends shared by several processes keep leases where all of them
    /// see them (Redis: a key with an expiry in the stream's hash slot);
    /// single-process ones in memory.
    fn renew_lease(
        &self,
        stream: StreamId,
        kind: LeaseKind,
        ttl: std::time::Duration,
    ) -> BoxFuture<'_, Result<(), StoreError>>;

    /// How long the `kind` lease on `stream` is still held, or `None` if it
    /// lapsed or was never taken.
    fn lease(
        &self,
        stream: StreamId,
        kind: LeaseKind,
    ) -> BoxFuture<'_, Result<Option<std::time::Duration>, StoreError>>;

    // History: what each stream was, for operators (see [`history`]).

    /// Counts one resume of `stream` in its history
    /// ([`StreamRecord::resumes`]). A stream that no longer exists is not
    /// an error. The default records nothing.
    fn record_resume(&self, stream: StreamId) -> BoxFuture<'_, Result<(), StoreError>> {
        let _ = stream;
        Box::pin(async { Ok(()) })
    }

    /// The streams `query` selects, with their history, newest first.
    /// [`history::sessions`] and [`history::summary`] are built on it. The
    /// default fails with [`StoreError::Unsupported`].
    fn list_streams<'a>(
        &'a self,
        query: &'a StreamQuery,
    ) -> BoxFuture<'a, Result<Vec<StreamRecord>, StoreError>> {
        let _ = query;
        Box::pin(async {
            Err(StoreError::Unsupported {
                operation: "list streams",
                reason: "the backend keeps no history",
            })
        })
    }
}
