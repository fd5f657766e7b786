//! [`ResumabilityLayer`]: the builder, and the [`tower::Layer`] that wraps
//! services in [`Resumability`].

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use super::config::{Config, StoreFailurePolicy};
use super::registry::Caps;
use super::service::Resumability;
use super::shared::Shared;
use super::snapshot::StatusSnapshot;
use super::stats::ResumabilityStats;
use crate::sse::SseLimits;
use crate::store::EventStore;
#[cfg(feature = "sqlite")]
use crate::store::{SqliteEventStore, SqliteOptions, StoreError};

/// A [`tower::Layer`] that makes MCP Streamable HTTP services resumable.
///
/// See the [module documentation](super). Clones share the store, the
/// counters and the streams produced in this process; build one layer per
/// store and clone it onto routes, or build one per route to configure each
/// differently over the same store.
#[derive(Clone)]
pub struct ResumabilityLayer {
    config: Config,
    shared: Arc<Shared>,
}

impl ResumabilityLayer {
    /// The default of [`retry`](Self::retry): 1 second.
    pub const DEFAULT_RETRY: Duration = Duration::from_secs(1);
    /// The default of [`detach_timeout`](Self::detach_timeout): 5 minutes.
    pub const DEFAULT_DETACH_TIMEOUT: Duration = Duration::from_secs(5 * 60);
    /// The default of [`max_event_bytes`](Self::max_event_bytes): 8 MiB.
    pub const DEFAULT_MAX_EVENT_BYTES: usize = SseLimits::DEFAULT_MAX_EVENT_BYTES;
    /// The default of [`max_live_streams`](Self::max_live_streams): 10,000.
    pub const DEFAULT_MAX_LIVE_STREAMS: usize = 10_000;
    /// The default of
    /// [`max_live_streams_per_session`](Self::max_live_streams_per_session): 64.
    pub const DEFAULT_MAX_LIVE_STREAMS_PER_SESSION: usize = 64;
    /// The default of [`lease_period`](Self::lease_period): 1 second.
    pub const DEFAULT_LEASE_PERIOD: Duration = Duration::from_secs(1);

    /// A layer storing streams in `store`, with every setting at its default.
    pub fn new(store: Arc<dyn EventStore>) -> Self {
        Self {
            config: Config {
                retry: Self::DEFAULT_RETRY,
                detach_timeout: Self::DEFAULT_DETACH_TIMEOUT,
                identity: None,
                limits: SseLimits::default()
                    .max_event_bytes(Self::DEFAULT_MAX_EVENT_BYTES)
                    .max_line_bytes(Self::DEFAULT_MAX_EVENT_BYTES),
                max_events_per_stream: None,
                live_streams: Caps {
                    all: Self::DEFAULT_MAX_LIVE_STREAMS,
                    per_session: Self::DEFAULT_MAX_LIVE_STREAMS_PER_SESSION,
                },
                on_store_failure: StoreFailurePolicy::default(),
                poll_after: None,
                authorize_resumes_with_service: false,
                lease_period: Self::DEFAULT_LEASE_PERIOD,
            },
            shared: Arc::new(Shared::new(store)),
        }
    }

    /// A layer on an SQLite store at `path` with default options: the one-line
    /// setup. Blocking (it opens the file); call it at start-up.
    #[cfg(feature = "sqlite")]
    #[cfg_attr(docsrs, doc(cfg(feature = "sqlite")))]
    pub fn sqlite(path: impl AsRef<std::path::Path>) -> Result<Self, StoreError> {
        Ok(Self::new(Arc::new(SqliteEventStore::open(path)?)))
    }

    /// A layer on an SQLite store opened with `options` (sync mode, retention,
    /// size cap...). Blocking (it opens the file); call it at start-up.
    #[cfg(feature = "sqlite")]
    #[cfg_attr(docsrs, doc(cfg(feature = "sqlite")))]
    pub fn sqlite_with(options: SqliteOptions) -> Result<Self, StoreError> {
        Ok(Self::new(Arc::new(options.open()?)))
    }

    /// The `retry` hint sent to clients: how long they wait before
    /// reconnecting. Sent in the priming event of 2025-11-25 responses (new
    /// streams and resumes alike) and on the first event of every other
    /// response. Default: 1 second.
    pub fn retry(mut self, retry: Duration) -> Self {
        self.config.retry = retry;
        self
    }

    /// How long a stream keeps running after its last client left, so the
    /// client can come back for it. After that the service's response body is
    /// dropped (which cancels the work behind it in most servers) and the
    /// stream is marked abandoned: a resume replays what was stored, then
    /// ends. Default: 5 minutes.
    ///
    /// A client reading the stream on another instance of a fleet counts as
    /// attached (see [`lease_period`](Self::lease_period)): the stream is
    /// abandoned between `detach_timeout` and `detach_timeout` plus one lease
    /// period after its last reader, on any instance, left. Give every
    /// instance of a fleet the same detach timeout and lease period.
    pub fn detach_timeout(mut self, timeout: Duration) -> Self {
        self.config.detach_timeout = timeout;
        self
    }

    /// How often the leases that keep a fleet's instances in step are
    /// renewed ([`EventStore::renew_lease`]). Default: 1 second.
    ///
    /// - An instance serving a reader of a stream produced elsewhere renews
    ///   the stream's [attachment lease](crate::store::LeaseKind::Attachment)
    ///   for `detach_timeout` plus one period, every period; the producer
    ///   consults it when its own clients have been gone for the detach
    ///   timeout, and keeps the stream running while it is held.
    /// - The producing instance renews the stream's
    ///   [producer lease](crate::store::LeaseKind::Producer) for three
    ///   periods, every period. A reader elsewhere checks it every period
    ///   from one period after it started; once it has lapsed (the producer
    ///   died, or lost the store for three periods) the reader ends the
    ///   stream in the store as abandoned, so it and every other reader get
    ///   what was stored and then the end, within about four periods of the
    ///   producer's last renewal. A resume of it is then refused like that
    ///   of any finished stream.
    ///
    /// Each renewal is one small store write per stream per period; with a
    /// single-process store (memory, SQLite) every reader is local and only
    /// producer leases are written.
    pub fn lease_period(mut self, period: Duration) -> Self {
        self.config.lease_period = period.max(Config::MIN_LEASE_PERIOD);
        self
    }

    /// Binds streams to an identity as well as to the MCP session: `identity`
    /// maps a request (its headers, extensions such as an authenticated user
    /// set by an auth layer) to a key, and a resume is accepted only from a
    /// request with the same key. Return a stable, opaque key (a user id or a
    /// hash), not a secret: it is stored. Default: no identity binding.
    ///
    /// ```
    /// # use std::sync::Arc;
    /// # use mcp_resume::{ResumabilityLayer, store::MemoryEventStore};
    /// let layer = ResumabilityLayer::new(Arc::new(MemoryEventStore::new()))
    ///     .identity(|request| {
    ///         request.headers.get("x-user-id").and_then(|v| v.to_str().ok()).map(str::to_owned)
    ///     });
    /// ```
    pub fn identity<F>(mut self, identity: F) -> Self
    where
        F: Fn(&http::request::Parts) -> Option<String> + Send + Sync + 'static,
    {
        self.config.identity = Some(Arc::new(identity));
        self
    }

    /// Binds streams to the request header `name`, the way a bearer token in
    /// `Authorization` identifies a caller: the identity is the SHA-256 of
    /// the header's value (so the store never holds the secret), and a
    /// request without the header has none. A resume under another identity
    /// (or none) gets the same `400` as an unknown id. See
    /// [`identity`](Self::identity) for identities of your own.
    ///
    /// ```
    /// # use std::sync::Arc;
    /// # use mcp_resume::{ResumabilityLayer, store::MemoryEventStore};
    /// let layer = ResumabilityLayer::new(Arc::new(MemoryEventStore::new()))
    ///     .identity_header(http::header::AUTHORIZATION);
    /// ```
    pub fn identity_header(self, name: http::HeaderName) -> Self {
        self.identity(move |request| {
            request
                .headers
                .get(&name)
                .map(|value| super::identity::hashed(name.as_str(), value.as_bytes()))
        })
    }

    /// Asks the service, before each resume is served, whether the caller
    /// may still use the session: the resume's request, without its
    /// `Last-Event-ID` (so with its own `Authorization`, session and
    /// protocol headers), goes to the service, and an answer of `401`, `403`
    /// or `404` is passed to the client instead of the replay. Any other
    /// answer (a fresh standalone stream, `405` from a service without one,
    /// `409` while one is open) lets the resume go on; its body is dropped,
    /// unless it continues a standalone stream whose producer is gone.
    ///
    /// For a service whose authentication sits behind the layer (an
    /// upstream behind the proxy): without it, a token the service has
    /// revoked still replays, since the layer answers resumes itself. It
    /// costs one request to the service per resume. With authentication in
    /// front of the layer, resumes pass it like any request and this is not
    /// needed. Default: off.
    pub fn authorize_resumes_with_service(mut self, enabled: bool) -> Self {
        self.config.authorize_resumes_with_service = enabled;
        self
    }

    /// The largest SSE event (and line) accepted from the service. A larger
    /// one ends its stream (marked abandoned), so memory stays bounded
    /// whatever the service sends. Default: 8 MiB.
    pub fn max_event_bytes(mut self, bytes: usize) -> Self {
        self.config.limits = SseLimits::new()
            .max_event_bytes(bytes)
            .max_line_bytes(bytes);
        self
    }

    /// Keep at most this many events of each stream; a resume from before
    /// them is refused. Default: the store's
    /// [`Retention::max_events_per_stream`](crate::store::Retention::max_events_per_stream)
    /// (10,000 unless configured).
    pub fn max_events_per_stream(mut self, max: u64) -> Self {
        self.config.max_events_per_stream = Some(max.max(1));
        self
    }

    /// The most live streams this layer keeps at once, of all sessions and
    /// of none (stateless servers); streams beyond it are served without
    /// resumability (and logged). A stream is live from its first byte until
    /// its producer ends or, once its clients have left, the detach timeout
    /// passes. Bounds the layer's memory: about 6 KiB per idle stream, and up
    /// to 256 KiB more for a stream whose producer runs ahead of its commits.
    /// Default: 10,000.
    pub fn max_live_streams(mut self, max: usize) -> Self {
        self.config.live_streams.all = max.max(1);
        self
    }

    /// The most live streams one session may have in this process; streams
    /// beyond it are served without resumability (and logged). Bounds the
    /// work one client can leave running. Default: 64.
    pub fn max_live_streams_per_session(mut self, max: usize) -> Self {
        self.config.live_streams.per_session = max.max(1);
        self
    }

    /// What to do when the store fails. Default: [`StoreFailurePolicy::FailOpen`].
    pub fn on_store_failure(mut self, policy: StoreFailurePolicy) -> Self {
        self.config.on_store_failure = policy;
        self
    }

    /// Poll mode (SEP-1699): end each 2025-11-25 client's response after this
    /// long, while its stream keeps running; the client reconnects after the
    /// `retry` hint and continues where it was. For proxies that kill long
    /// connections. Default: off.
    pub fn poll_after(mut self, after: Duration) -> Self {
        self.config.poll_after = Some(after);
        self
    }

    /// The store streams are kept in.
    pub fn store(&self) -> &Arc<dyn EventStore> {
        &self.shared.store
    }

    /// What this layer (and its clones) has done so far. The same, and
    /// more (gauges, latencies, reasons), is recorded as
    /// [metrics](crate::metrics) for the recorder a process installs.
    pub fn stats(&self) -> ResumabilityStats {
        self.shared.counters.snapshot()
    }

    /// What this layer (and its clones) is doing now, for a status page:
    /// the counters, how many streams are live and attached, the newest
    /// `max_streams` live streams, and the latest resumes (at most
    /// [`StatusSnapshot::RECENT_RESUMES`]). Costs a walk over the live
    /// streams (at most [`max_live_streams`](Self::max_live_streams)); take
    /// it about once a second, not per request.
    pub fn snapshot(&self, max_streams: usize) -> StatusSnapshot {
        super::snapshot::take(&self.shared, max_streams)
    }

    /// The settings and the shared state, for the tasks gateway built on
    /// this layer ([`TasksLayer::new`](crate::tasks::TasksLayer::new)).
    pub(crate) fn parts(&self) -> (Config, Arc<Shared>) {
        (self.config.clone(), self.shared.clone())
    }
}

impl fmt::Debug for ResumabilityLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResumabilityLayer")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl<S> tower::Layer<S> for ResumabilityLayer {
    type Service = Resumability<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Resumability::new(inner, Arc::new(self.config.clone()), self.shared.clone())
    }
}
