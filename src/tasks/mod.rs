//! [`TasksLayer`]: durable, pollable tool calls for MCP 2026-07-28 clients,
//! in front of any server, on the [`ResumabilityLayer`](crate::ResumabilityLayer)'s store.
//!
//! The 2026-07-28 revision removed `Last-Event-ID` resumption: a broken
//! response stream loses its request. Durable work uses the Tasks extension
//! (`io.modelcontextprotocol/tasks`, SEP-2663) instead, which most servers
//! do not implement. This gateway implements it for them, from the outside:
//!
//! - **Server-directed tasks.** A `tools/call` whose request declares the
//!   extension (in `_meta["io.modelcontextprotocol/clientCapabilities"]`)
//!   goes to the service as an ordinary call. A result within
//!   [`task_after`](TasksLayer::task_after) is answered as it came; after
//!   that, the client gets a `CreateTaskResult` instead, once the task is
//!   committed to the store, and the gateway reads the rest of the answer
//!   into the task. A client that did not declare the extension never gets
//!   a task.
//! - **A task is a stream.** Its events (progress messages, the final
//!   answer, the clients' input and cancellation) are committed by the
//!   layer's pump to the same store, with the same retention and recovery;
//!   its state is derived from them: `working`, `input_required`,
//!   `completed` (also for a tool result with `isError: true`), `failed`
//!   (a JSON-RPC error, or a producer that died: a restart never leaves a
//!   task `working`), `cancelled`.
//! - **`tasks/get`, `tasks/update`, `tasks/cancel`** are answered from the
//!   store, on any instance that shares it. An unknown, expired or foreign
//!   id gets the same `-32602`. Cancelling closes the upstream's stream,
//!   which in 2026-07-28 cancels the call.
//! - **Input required (SEP-2322).** When the service answers
//!   `resultType: "input_required"`, the task shows its `inputRequests`;
//!   once `tasks/update` has answered them all, the gateway sends the call
//!   again with the `inputResponses` and the service's `requestState`.
//!   Keys stay unique over a task's life.
//! - **`server/discover`** answers gain the extension.
//! - **`notifications/tasks`**: a `subscriptions/listen` that asks for task
//!   ids (and nothing else) is answered by the gateway: each of the
//!   caller's tasks is pushed whenever it changes, until it ends.
//!
//! Requests of earlier revisions pass through untouched.
//!
//! # Example
//!
//! ```
//! use std::sync::Arc;
//! use std::time::Duration;
//! use axum::{Router, routing::post};
//! use http_body_util::BodyExt;
//! use mcp_resume::{ResumabilityLayer, store::MemoryEventStore, tasks::TasksLayer};
//! use serde_json::{Value, json};
//! use tower::{Layer, ServiceExt};
//!
//! // A 2026-07-28 server without tasks: its tool answers after 50 ms.
//! async fn server(body: String) -> ([(&'static str, &'static str); 1], String) {
//!     let request: Value = serde_json::from_str(&body).unwrap();
//!     tokio::time::sleep(Duration::from_millis(50)).await;
//!     let result = json!({"resultType": "complete", "content": [{"type": "text", "text": "done"}]});
//!     let answer = json!({"jsonrpc": "2.0", "id": request["id"], "result": result});
//!     ([("content-type", "application/json")], answer.to_string())
//! }
//!
//! async fn send(app: &impl Fn(http::Request<axum::body::Body>) -> std::pin::Pin<Box<dyn std::future::Future<Output = Value>>>, message: Value) -> Value {
//!     let request = http::Request::post("/mcp")
//!         .header("mcp-protocol-version", "2026-07-28")
//!         .header("content-type", "application/json")
//!         .body(axum::body::Body::from(message.to_string()))
//!         .unwrap();
//!     app(request).await
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let resumability = ResumabilityLayer::new(Arc::new(MemoryEventStore::new()));
//! // Every call of a declaring client becomes a task.
//! let tasks = TasksLayer::new(&resumability).task_after(Duration::ZERO);
//! let app = tasks.layer(resumability.layer(Router::new().route("/mcp", post(server))));
//! let app = move |request| {
//!     let app = app.clone();
//!     Box::pin(async move {
//!         let body = app.oneshot(request).await.unwrap().into_body().collect().await.unwrap();
//!         serde_json::from_slice::<Value>(&body.to_bytes()).unwrap()
//!     }) as std::pin::Pin<Box<dyn std::future::Future<Output = Value>>>
//! };
//! let declares = json!({"io.modelcontextprotocol/clientCapabilities":
//!     {"extensions": {"io.modelcontextprotocol/tasks": {}}}});
//!
//! let created = send(&app, json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
//!     "params": {"name": "work", "arguments": {}, "_meta": declares}})).await;
//! assert_eq!(created["result"]["resultType"], "task");
//! let task_id = created["result"]["taskId"].as_str().unwrap().to_owned();
//!
//! let completed = loop {
//!     let task = send(&app, json!({"jsonrpc": "2.0", "id": 2, "method": "tasks/get",
//!         "params": {"taskId": task_id, "_meta": declares}})).await;
//!     if task["result"]["status"] != "working" {
//!         break task;
//!     }
//!     tokio::time::sleep(Duration::from_millis(20)).await;
//! };
//! assert_eq!(completed["result"]["status"], "completed");
//! assert_eq!(completed["result"]["result"]["content"][0]["text"], "done");
//! # }
//! ```
//!
//! `mcp-resume proxy --tasks` puts it in front of any server; see
//! `docs/tasks.md` for how the extension maps and the limits.

mod body;
mod call;
mod driver;
mod future;
mod gateway;
mod handlers;
// The tower-http layout: the layer in `layer.rs` beside its service.
#[allow(clippy::module_inception)]
mod layer;
mod listen;
mod rpc;
mod service;
mod state;

pub use body::{RequestBody, ResponseBody};
pub use future::ResponseFuture;
pub use layer::TasksLayer;
pub use service::Tasks;
