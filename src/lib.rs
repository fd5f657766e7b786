//! # mcp-resume
//!
//! Makes any MCP (Model Context Protocol) server that speaks Streamable HTTP
//! *resumable*: every Server-Sent-Events event gets an unguessable id and is
//! committed to a durable [`EventStore`](store::EventStore) before the client
//! sees it, so a client that lost its connection can reconnect with
//! `Last-Event-ID` and receive exactly what it missed.
//!
//! The crate is organised the way the data flows:
//!
//! - [`sse`]: an exact, incremental Server-Sent-Events codec. It splits the
//!   inner service's byte stream into events and keep-alives, and re-encodes
//!   events with the layer's own ids.
//! - [`store`]: the [`EventStore`](store::EventStore) trait and its backends:
//!   [`SqliteEventStore`](store::SqliteEventStore) (embedded, the default) and
//!   [`MemoryEventStore`](store::MemoryEventStore) (tests, ephemeral servers).
//!
//! ## Quick look
//!
//! Events go into a store with gap-free sequence numbers; a client holding
//! the id of one event gets exactly the ones after it.
//!
//! ```
//! use std::sync::Arc;
//! use bytes::BytesMut;
//! use mcp_resume::sse::{encode_event, EventFrame};
//! use mcp_resume::store::{self, EventId, EventStore, MemoryEventStore, NewEvent, NewStream, StreamKind};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let store: Arc<dyn EventStore> = Arc::new(MemoryEventStore::new());
//! let stream = store
//!     .create_stream(NewStream::new(StreamKind::PostResponse).session("session-1"))
//!     .await?;
//! let progress = r#"{"jsonrpc":"2.0","method":"notifications/progress"}"#;
//! store.append(stream, vec![NewEvent::message(progress), NewEvent::message(progress)]).await?;
//!
//! // The client saw event 1 and reconnected with its id as `Last-Event-ID`.
//! let last_event_id = EventId::new(stream, 1).to_string();
//! let resume_from = EventId::parse(last_event_id.as_bytes())?;
//! let mut missed = store::replay(store.clone(), resume_from.stream, resume_from.seq);
//! let mut wire = BytesMut::new();
//! while let Some(batch) = missed.next_batch().await {
//!     for event in batch? {
//!         let id = EventId::new(stream, event.seq).to_string();
//!         let frame = EventFrame::new().with_id(id.as_bytes()).with_data(&event.data);
//!         encode_event(&frame, &mut wire)?;
//!     }
//! }
//! assert_eq!(wire, format!("id: {stream}.2\ndata: {progress}\n\n").as_bytes());
//! # Ok(())
//! # }
//! ```
#![deny(unsafe_code)]
#![warn(missing_docs)]
#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod layer;
#[cfg(feature = "proxy")]
pub mod proxy;
pub mod sse;
pub mod store;

pub use layer::{ResumabilityLayer, ResumabilityStats, StoreFailurePolicy};
