//! An [`EventStore`] that fails on demand: it delegates every call to a
//! [`MemoryEventStore`] unless the call's group is switched to failing, in
//! which case it returns a backend error (as a broken disk or network would).

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use mcp_resume::store::{
    AppendReceipt, Batch, BoxFuture, EventStore, MemoryEventStore, NewEvent, NewStream, ReadLimit,
    Retention, StoreError, StreamEnd, StreamId, StreamInfo, Subscription, SweepReport,
};

/// Groups of store calls that can be made to fail.
pub mod ops {
    /// `create_stream`.
    pub const CREATE: u8 = 1;
    /// `append`.
    pub const APPEND: u8 = 2;
    /// `read_batch`, `subscribe`, `stream_info`, `session_streams`.
    pub const READ: u8 = 4;
    /// `end_stream`, `purge_session`, `sweep`, `flush`, `close`.
    pub const OTHER: u8 = 8;
    /// Everything.
    pub const ALL: u8 = CREATE | APPEND | READ | OTHER;
}

/// The failing store.
pub struct FailingStore {
    inner: MemoryEventStore,
    failing: AtomicU8,
    injected: AtomicUsize,
    append_delay_ms: AtomicU64,
    /// While true, appends wait (a commit in flight, held for as long as a test needs).
    appends_held: tokio::sync::watch::Sender<bool>,
}

impl FailingStore {
    /// A healthy store (nothing fails until [`fail`](Self::fail)).
    pub fn new() -> Arc<Self> {
        Arc::new(Self {
            inner: MemoryEventStore::new(),
            failing: AtomicU8::new(0),
            injected: AtomicUsize::new(0),
            append_delay_ms: AtomicU64::new(0),
            appends_held: tokio::sync::watch::Sender::new(false),
        })
    }

    /// From now on, calls in `groups` (see [`ops`]) fail.
    pub fn fail(&self, groups: u8) {
        self.failing.store(groups, Ordering::SeqCst);
    }

    /// From now on, nothing fails.
    pub fn heal(&self) {
        self.failing.store(0, Ordering::SeqCst);
    }

    /// Every later append waits this long before it is committed (a slow
    /// disk), so a layer that sends before committing would be caught.
    pub fn delay_appends(&self, delay: Duration) {
        self.append_delay_ms
            .store(delay.as_millis() as u64, Ordering::SeqCst);
    }

    /// Appends from now on wait, uncommitted, until [`release_appends`](Self::release_appends).
    pub fn hold_appends(&self) {
        self.appends_held.send_replace(true);
    }

    /// Lets held appends, and later ones, through.
    pub fn release_appends(&self) {
        self.appends_held.send_replace(false);
    }

    /// How many calls were made to fail so far.
    pub fn injected(&self) -> usize {
        self.injected.load(Ordering::SeqCst)
    }

    fn check(&self, group: u8, context: &'static str) -> Result<(), StoreError> {
        if self.failing.load(Ordering::SeqCst) & group != 0 {
            self.injected.fetch_add(1, Ordering::SeqCst);
            Err(StoreError::backend(
                context,
                std::io::Error::other("injected store failure"),
            ))
        } else {
            Ok(())
        }
    }
}

impl EventStore for FailingStore {
    fn create_stream(&self, stream: NewStream) -> BoxFuture<'_, Result<StreamId, StoreError>> {
        Box::pin(async move {
            self.check(ops::CREATE, "creating a stream")?;
            self.inner.create_stream(stream).await
        })
    }

    fn append(
        &self,
        stream: StreamId,
        events: Vec<NewEvent>,
    ) -> BoxFuture<'_, Result<AppendReceipt, StoreError>> {
        Box::pin(async move {
            self.check(ops::APPEND, "appending")?;
            let delay = self.append_delay_ms.load(Ordering::SeqCst);
            if delay > 0 {
                tokio::time::sleep(Duration::from_millis(delay)).await;
            }
            // The sender lives as long as the store.
            let _ = self.appends_held.subscribe().wait_for(|held| !held).await;
            self.inner.append(stream, events).await
        })
    }

    fn end_stream(
        &self,
        stream: StreamId,
        end: StreamEnd,
    ) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(async move {
            self.check(ops::OTHER, "ending a stream")?;
            self.inner.end_stream(stream, end).await
        })
    }

    fn read_batch(
        &self,
        stream: StreamId,
        after: u64,
        limit: ReadLimit,
    ) -> BoxFuture<'_, Result<Batch, StoreError>> {
        Box::pin(async move {
            self.check(ops::READ, "reading")?;
            self.inner.read_batch(stream, after, limit).await
        })
    }

    fn subscribe(&self, stream: StreamId) -> BoxFuture<'_, Result<Subscription, StoreError>> {
        Box::pin(async move {
            self.check(ops::READ, "subscribing")?;
            self.inner.subscribe(stream).await
        })
    }

    fn stream_info(
        &self,
        stream: StreamId,
    ) -> BoxFuture<'_, Result<Option<StreamInfo>, StoreError>> {
        Box::pin(async move {
            self.check(ops::READ, "reading stream info")?;
            self.inner.stream_info(stream).await
        })
    }

    fn session_streams<'a>(
        &'a self,
        session: &'a str,
    ) -> BoxFuture<'a, Result<Vec<StreamInfo>, StoreError>> {
        Box::pin(async move {
            self.check(ops::READ, "listing a session's streams")?;
            self.inner.session_streams(session).await
        })
    }

    fn purge_session<'a>(&'a self, session: &'a str) -> BoxFuture<'a, Result<u64, StoreError>> {
        Box::pin(async move {
            self.check(ops::OTHER, "purging a session")?;
            self.inner.purge_session(session).await
        })
    }

    fn sweep(&self) -> BoxFuture<'_, Result<SweepReport, StoreError>> {
        Box::pin(async move {
            self.check(ops::OTHER, "sweeping")?;
            self.inner.sweep().await
        })
    }

    fn retention(&self) -> Retention {
        self.inner.retention()
    }

    fn flush(&self) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(async move {
            self.check(ops::OTHER, "flushing")?;
            self.inner.flush().await
        })
    }

    fn close(&self) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(async move {
            self.check(ops::OTHER, "closing")?;
            self.inner.close().await
        })
    }

    fn renew_lease(
        &self,
        stream: StreamId,
        kind: mcp_resume::store::LeaseKind,
        ttl: Duration,
    ) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(async move {
            self.check(ops::OTHER, "renewing a lease")?;
            self.inner.renew_lease(stream, kind, ttl).await
        })
    }

    fn lease(
        &self,
        stream: StreamId,
        kind: mcp_resume::store::LeaseKind,
    ) -> BoxFuture<'_, Result<Option<Duration>, StoreError>> {
        Box::pin(async move {
            self.check(ops::OTHER, "reading a lease")?;
            self.inner.lease(stream, kind).await
        })
    }
}
