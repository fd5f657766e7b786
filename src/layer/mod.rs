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
//!   [`EventStore`](crate::store::EventStore) before its first byte reaches the client, so every id a
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
pub(crate) mod config;
mod feed;
mod future;
pub(crate) mod hot_tail;
mod identity;
// The tower-http layout: the layer in `layer.rs` beside its service.
#[allow(clippy::module_inception)]
mod layer;
mod open;
mod protocol;
pub(crate) mod pump;
pub(crate) mod registry;
mod resume;
mod service;
mod sessions;
pub(crate) mod shared;
mod snapshot;
mod stats;
mod wire;

pub use body::ResponseBody;
pub use config::StoreFailurePolicy;
pub use future::ResponseFuture;
pub use layer::ResumabilityLayer;
pub use service::Resumability;
pub use snapshot::{LiveStream, RecentResume, RefusalReason, ResumeOutcome, StatusSnapshot};
pub use stats::ResumabilityStats;
