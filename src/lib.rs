//! # mcp-resume
//!
//! Makes any MCP (Model Context Protocol) server that speaks Streamable HTTP
//! *resumable*: every Server-Sent-Events event gets an unguessable id and is
//! committed to a durable [`EventStore`](store::EventStore) before the client
//! sees it, the server's stream keeps running when the client's connection
//! drops, and a client that reconnects with `Last-Event-ID` receives exactly
//! what it missed, then the rest live.
//!
//! There are two ways in:
//!
//! - [`ResumabilityLayer`], a tower middleware: put it in front of any HTTP
//!   MCP service (an rmcp `StreamableHttpService`, an axum router, a hyper
//!   service). The [`layer`] module says what it rewrites and what a resume
//!   gets; every setting is a builder call with its default.
//! - The [`proxy`] (feature `proxy`): the layer in front of a streaming
//!   reverse proxy, so an MCP server written in any language becomes
//!   resumable with no change. The `mcp-resume` binary (feature `cli`) runs
//!   it: `mcp-resume proxy --upstream http://127.0.0.1:8000/mcp`.
//!
//! ## Example
//!
//! A tool call through the layer, then the resume of a client that lost its
//! connection after the first event:
//!
//! ```
//! use std::convert::Infallible;
//! use std::sync::Arc;
//! use bytes::Bytes;
//! use http::{Request, Response};
//! use http_body_util::{BodyExt, Full};
//! use mcp_resume::{ResumabilityLayer, store::MemoryEventStore};
//! use tower::{Layer, ServiceExt, service_fn};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! // Any MCP endpoint; this one answers a tool call with three SSE events.
//! let mcp = service_fn(|_call: Request<Full<Bytes>>| async {
//!     let events = "data: step 1\n\ndata: step 2\n\ndata: result\n\n";
//!     Ok::<_, Infallible>(
//!         Response::builder()
//!             .header("content-type", "text/event-stream")
//!             .body(Full::new(Bytes::from_static(events.as_bytes())))
//!             .unwrap(),
//!     )
//! });
//! let service = ResumabilityLayer::new(Arc::new(MemoryEventStore::new())).layer(mcp);
//!
//! // The call: every event now carries the layer's id, `<stream>.<seq>`.
//! let call = Request::post("/mcp")
//!     .header("mcp-session-id", "session-1")
//!     .header("mcp-protocol-version", "2025-06-18")
//!     .body(Full::default())?;
//! let answer = service.clone().oneshot(call).await?.into_body().collect().await?;
//! let answer = String::from_utf8(answer.to_bytes().to_vec())?;
//! let first_id = answer.lines().find_map(|line| line.strip_prefix("id: ")).unwrap();
//!
//! // The client saw the first event only, and resumes from its id.
//! let resume = Request::get("/mcp")
//!     .header("mcp-session-id", "session-1")
//!     .header("mcp-protocol-version", "2025-06-18")
//!     .header("last-event-id", first_id)
//!     .body(Full::default())?;
//! let missed = service.oneshot(resume).await?.into_body().collect().await?;
//! let missed = String::from_utf8(missed.to_bytes().to_vec())?;
//! assert!(!missed.contains("step 1"));
//! assert!(missed.contains("data: step 2\n\n") && missed.contains("data: result\n\n"));
//! # Ok(())
//! # }
//! ```
//!
//! ## Modules
//!
//! - [`layer`]: [`ResumabilityLayer`], its service and response types, its
//!   [`ResumabilityStats`] and [`StoreFailurePolicy`].
//! - [`proxy`] (feature `proxy`): the streaming reverse proxy and the server
//!   loop the binary runs.
//! - [`store`]: the [`EventStore`](store::EventStore) trait and its backends:
//!   [`SqliteEventStore`](store::SqliteEventStore) (feature `sqlite`, on by
//!   default: embedded, one file),
//!   [`MemoryEventStore`](store::MemoryEventStore) (tests, ephemeral
//!   servers) and `RedisEventStore` (feature `redis`: a fleet behind a load
//!   balancer), with the replay and follow that every backend shares.
//! - [`metrics`]: the names, labels and meaning of the metrics recorded.
//! - [`sse`]: the exact, incremental Server-Sent-Events codec the layer
//!   parses the service's streams and writes its own with.
//!
//! ## Feature flags
//!
//! - `sqlite` (default): the embedded SQLite store, bundled.
//! - `cli` (default): the `mcp-resume` binary; implies `proxy` and `sqlite`.
//! - `proxy`: the [`proxy`] module.
//! - `redis`: the Redis Streams store.
//! - `metrics` (default): the layer and the proxy record [`metrics`] through
//!   the `metrics` facade, for the recorder the embedder (or the binary) installs.
#![deny(unsafe_code)]
#![warn(missing_docs)]
#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod layer;
pub mod metrics;
#[cfg(feature = "proxy")]
#[cfg_attr(docsrs, doc(cfg(feature = "proxy")))]
pub mod proxy;
pub mod sse;
pub mod store;
pub mod tasks;

pub use layer::{ResumabilityLayer, ResumabilityStats, StoreFailurePolicy};
