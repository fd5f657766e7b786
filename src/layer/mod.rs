//! [`ResumabilityLayer`]: makes any MCP Streamable HTTP service resumable.
//!
//! Put it in front of an MCP endpoint (an rmcp `StreamableHttpService`, an
//! axum router, a hyper service, a reverse proxy) and every Server-Sent-Events
//! stream the service answers with becomes resumable:
//!
//! - **Ids.** Every event gets an id of the layer's, `<stream>.<seq>`, that
//!   replaces any id the service wrote. The stream part has 122 random bits,
//!   so ids cannot be guessed.
//! - **Commit before send.** Each event is committed to the
//!   [`EventStore`] before its first byte reaches the client, so every id a
//!   client holds can be resumed.
//! - **Disconnect is not cancel.** When the client goes away the layer keeps
//!   reading the service's stream and storing its events until it ends, or
//!   until [`detach_timeout`](ResumabilityLayer::detach_timeout) passes with
//!   nobody attached.
//! - **Resume.** A `GET` with `Last-Event-ID` is answered by the layer: the
//!   events after that id, then live ones, on the same response, with no gap
//!   and no duplicate. The stream must belong to the request's
//!   `Mcp-Session-Id` (and identity, when [bound](ResumabilityLayer::identity)).
//!   An id that cannot be resumed (malformed, unknown, expired, foreign) gets
//!   one `400` answer, the same whatever the reason.
//! - **Versions.** Requests of protocol versions 2025-03-26, 2025-06-18,
//!   2025-11-25 (or without the header) are handled; 2025-11-25 clients get a
//!   priming event first and can be [polled](ResumabilityLayer::poll_after).
//!   Later versions, which removed resumability, pass through untouched, as do
//!   JSON responses and everything that is not an SSE stream.
//!
//! A `DELETE` of a session that the service accepts purges its streams.
//!
//! # How it works
//!
//! Each rewritten stream has a *pump*, a task that owns the service's
//! response body: it parses the SSE, commits what arrived in one append, and
//! publishes the encoded events to the stream's hot tail, a small bounded
//! buffer in memory. While a commit is in flight the pump reads on (up to
//! 256 KiB), and those events make the next commit: the store's latency
//! neither holds the service back nor costs a commit per event. Clients read from the tail, and from the
//! store when they are behind it, so an absent client never holds up the
//! pump, other streams, or memory; and a resume is the same code reading
//! from an older position. An attached client that falls 4,096 events
//! behind (or half the stream's event cap, if smaller) holds its pump until
//! it catches up, so that the event cap
//! never trims what it has yet to read: the back-pressure TCP would give the
//! service without the layer.
//!
//! # Example
//!
//! ```
//! use std::sync::Arc;
//! use std::time::Duration;
//! use axum::{Router, routing::post};
//! use http_body_util::BodyExt;
//! use mcp_resume::{ResumabilityLayer, store::MemoryEventStore};
//! use tower::ServiceExt;
//!
//! // Any MCP endpoint; this one answers with an SSE stream whose ids are its own.
//! async fn tool_call() -> ([(&'static str, &'static str); 1], &'static str) {
//!     (
//!         [("content-type", "text/event-stream")],
//!         "id: inner-1\ndata: progress 1\n\nid: inner-2\ndata: progress 2\n\nid: inner-3\ndata: result\n\n",
//!     )
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let layer = ResumabilityLayer::new(Arc::new(MemoryEventStore::new()))
//!     .retry(Duration::from_secs(2))
//!     .detach_timeout(Duration::from_secs(120));
//! let app = Router::new().route("/mcp", post(tool_call)).layer(layer);
//!
//! let request = http::Request::post("/mcp")
//!     .header("mcp-protocol-version", "2025-06-18")
//!     .body(axum::body::Body::empty())
//!     .unwrap();
//! let response = app.oneshot(request).await.unwrap();
//! let body = response.into_body().collect().await.unwrap().to_bytes();
//! let text = String::from_utf8(body.to_vec()).unwrap();
//!
//! // Every event now carries the layer's id, `<stream>.<seq>`; the first also the retry hint.
//! assert!(text.starts_with("retry: 2000\nid: "));
//! assert!(text.contains(".3\ndata: result\n\n"));
//! assert!(!text.contains("inner-"));
//! # }
//! ```
//!
//! For a complete server, see `examples/axum_rmcp.rs`.

mod body;
mod frame;
mod future;
mod open;
mod protocol;
mod pump;
mod resume;
mod service;
mod tail;

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

pub use body::ResponseBody;
pub use future::ResponseFuture;
pub use service::Resumability;

use crate::sse::SseLimits;
use crate::store::EventStore;
#[cfg(feature = "sqlite")]
use crate::store::{SqliteEventStore, SqliteOptions, StoreError};

/// What the layer does when the event store fails.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum StoreFailurePolicy {
    /// Serve the stream without resumability: at stream start the response
    /// passes through untouched; mid-stream the rest is sent without ids. The
    /// failure is logged and counted in [`ResumabilityStats::store_failures`].
    /// The default: an MCP call still succeeds while the store is down.
    #[default]
    FailOpen,
    /// Answer `503 Service Unavailable` when a stream cannot be stored, and
    /// end a stream whose events stop being stored. For deployments where an
    /// unresumable stream is worse than a failed call.
    FailClosed,
}

type IdentityFn = Arc<dyn Fn(&http::request::Parts) -> Option<String> + Send + Sync>;

/// The layer's settings, shared by its services.
#[derive(Clone)]
pub(crate) struct Config {
    retry: Duration,
    detach_timeout: Duration,
    identity: Option<IdentityFn>,
    limits: SseLimits,
    max_events_per_stream: Option<u64>,
    live_streams: tail::Caps,
    on_store_failure: StoreFailurePolicy,
    poll_after: Option<Duration>,
}

impl Config {
    fn retry_millis(&self) -> u64 {
        self.retry.as_millis().min(u128::from(u64::MAX)) as u64
    }

    fn poll_deadline(&self) -> Option<tokio::time::Instant> {
        self.poll_after
            .map(|after| tokio::time::Instant::now() + after)
    }

    fn binds_identity(&self) -> bool {
        self.identity.is_some()
    }

    fn identity_of(&self, parts: &http::request::Parts) -> Option<String> {
        self.identity.as_ref().and_then(|identity| identity(parts))
    }
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field("retry", &self.retry)
            .field("detach_timeout", &self.detach_timeout)
            .field("identity", &self.identity.as_ref().map(|_| "bound"))
            .field("limits", &self.limits)
            .field("max_events_per_stream", &self.max_events_per_stream)
            .field("live_streams", &self.live_streams)
            .field("on_store_failure", &self.on_store_failure)
            .field("poll_after", &self.poll_after)
            .finish()
    }
}

/// What the services of one layer share: the store, the streams produced in
/// this process, and the counters.
pub(crate) struct Runtime {
    store: Arc<dyn EventStore>,
    registry: tail::Registry,
    counters: Counters,
}

/// A monotonic counter.
#[derive(Default)]
struct Counter(AtomicU64);

impl Counter {
    fn increment(&self) {
        self.add(1);
    }

    fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }

    fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

#[derive(Default)]
struct Counters {
    streams_started: Counter,
    streams_completed: Counter,
    streams_abandoned: Counter,
    resumes: Counter,
    events_replayed: Counter,
    rejections: Counter,
    store_failures: Counter,
    passthrough_streams: Counter,
}

/// A snapshot of what a [`ResumabilityLayer`] has done since it was created.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ResumabilityStats {
    /// Streams made resumable.
    pub streams_started: u64,
    /// Streams whose producer finished.
    pub streams_completed: u64,
    /// Streams given up: detach timeout, inner error, limit, session deleted.
    pub streams_abandoned: u64,
    /// Resumes answered with a replay.
    pub resumes: u64,
    /// Events replayed by resumes before they caught up with their stream.
    pub events_replayed: u64,
    /// Resumes refused with `400`.
    pub rejections: u64,
    /// Store operations that failed.
    pub store_failures: u64,
    /// SSE responses served without resumability (store failure under
    /// fail-open, or the per-session stream limit).
    pub passthrough_streams: u64,
}

/// A [`tower::Layer`] that makes MCP Streamable HTTP services resumable.
///
/// See the [module documentation](self). Clones share the store, the
/// counters and the streams produced in this process; build one layer per
/// store and clone it onto routes, or build one per route to configure each
/// differently over the same store.
#[derive(Clone)]
pub struct ResumabilityLayer {
    config: Config,
    runtime: Arc<Runtime>,
}

impl ResumabilityLayer {
    /// A layer storing streams in `store`, with every setting at its default.
    pub fn new(store: Arc<dyn EventStore>) -> Self {
        Self {
            config: Config {
                retry: Duration::from_secs(1),
                detach_timeout: Duration::from_secs(5 * 60),
                identity: None,
                limits: SseLimits::default(),
                max_events_per_stream: None,
                live_streams: tail::Caps {
                    all: 10_000,
                    per_session: 64,
                },
                on_store_failure: StoreFailurePolicy::default(),
                poll_after: None,
            },
            runtime: Arc::new(Runtime {
                store,
                registry: tail::Registry::default(),
                counters: Counters::default(),
            }),
        }
    }

    /// A layer on an SQLite store at `path` with default options: the one-line
    /// setup. Blocking (it opens the file); call it at start-up.
    #[cfg(feature = "sqlite")]
    pub fn sqlite(path: impl AsRef<std::path::Path>) -> Result<Self, StoreError> {
        Ok(Self::new(Arc::new(SqliteEventStore::open(path)?)))
    }

    /// A layer on an SQLite store opened with `options` (sync mode, retention,
    /// size cap...). Blocking (it opens the file); call it at start-up.
    #[cfg(feature = "sqlite")]
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
    pub fn detach_timeout(mut self, timeout: Duration) -> Self {
        self.config.detach_timeout = timeout;
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
        &self.runtime.store
    }

    /// What this layer (and its clones) has done so far.
    pub fn stats(&self) -> ResumabilityStats {
        let c = &self.runtime.counters;
        ResumabilityStats {
            streams_started: c.streams_started.get(),
            streams_completed: c.streams_completed.get(),
            streams_abandoned: c.streams_abandoned.get(),
            resumes: c.resumes.get(),
            events_replayed: c.events_replayed.get(),
            rejections: c.rejections.get(),
            store_failures: c.store_failures.get(),
            passthrough_streams: c.passthrough_streams.get(),
        }
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
        Resumability::new(inner, Arc::new(self.config.clone()), self.runtime.clone())
    }
}

/// Sleeps until `deadline`, or forever without one.
async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}
