//! The tasks gateway (issue 22) through real HTTP: `TasksLayer` and the
//! resumability layer in front of the reverse proxy, in front of an axum
//! server that speaks 2026-07-28 and has no tasks of its own. The client
//! sends raw 2026-07-28 POSTs with the routing headers.

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use bytes::Bytes;
use mcp_resume::ResumabilityLayer;
use mcp_resume::proxy::ReverseProxy;
use mcp_resume::store::{EventStore, MemoryEventStore};
use mcp_resume::tasks::TasksLayer;
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tower::Layer;

use crate::common::{Served, V2026_07_28, serve, sse, wait_until};

/// The threshold of the gateways here: calls slower than this become tasks.
const TASK_AFTER: Duration = Duration::from_millis(300);
/// How long the `slow` tool takes.
const SLOW: Duration = Duration::from_millis(900);

// ---------------------------------------------------------------------------
// The upstream: a 2026-07-28 server without tasks.

/// What the upstream saw and did.
#[derive(Clone, Default)]
struct Upstream {
    calls: Arc<Mutex<Vec<Value>>>,
    /// Streams of `endless` whose client (the gateway) closed them.
    closed: Arc<AtomicUsize>,
}

impl Upstream {
    fn calls_of(&self, tool: &str) -> Vec<Value> {
        self.calls
            .lock()
            .unwrap()
            .iter()
            .filter(|call| call["params"]["name"] == tool)
            .cloned()
            .collect()
    }
}

/// An SSE body fed by a channel; counts itself closed when dropped before
/// its end.
struct Events {
    rx: mpsc::Receiver<Bytes>,
    closed: Option<Arc<AtomicUsize>>,
}

impl Drop for Events {
    fn drop(&mut self) {
        if let Some(closed) = &self.closed {
            closed.fetch_add(1, Ordering::SeqCst);
        }
    }
}

impl http_body::Body for Events {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, Infallible>>> {
        self.rx
            .poll_recv(cx)
            .map(|data| data.map(|data| Ok(http_body::Frame::data(data))))
    }
}

fn event(message: &Value) -> Bytes {
    Bytes::from(format!("event: message\ndata: {message}\n\n"))
}

fn json_answer(message: Value) -> Response {
    (
        [(http::header::CONTENT_TYPE, "application/json")],
        message.to_string(),
    )
        .into_response()
}

fn sse_answer(rx: mpsc::Receiver<Bytes>, closed: Option<Arc<AtomicUsize>>) -> Response {
    let body = axum::body::Body::new(Events { rx, closed });
    ([(http::header::CONTENT_TYPE, "text/event-stream")], body).into_response()
}

fn tool_result(text: &str, is_error: bool) -> Value {
    json!({"resultType": "complete", "content": [{"type": "text", "text": text}], "isError": is_error})
}

async fn upstream(State(upstream): State<Upstream>, body: String) -> Response {
    let request: Value = serde_json::from_str(&body).expect("a JSON-RPC request");
    upstream.calls.lock().unwrap().push(request.clone());
    let id = request["id"].clone();
    let params = &request["params"];
    let reply = |result: Value| json!({"jsonrpc": "2.0", "id": id, "result": result});
    match request["method"].as_str() {
        Some("server/discover") => json_answer(reply(json!({
            "resultType": "complete",
            "supportedVersions": [V2026_07_28],
            "capabilities": {"tools": {}},
            "serverInfo": {"name": "no-tasks", "version": "1"},
        }))),
        Some("tools/call") => match params["name"].as_str() {
            Some("greet") => {
                let name = params["arguments"]["name"].as_str().unwrap_or("you");
                json_answer(reply(tool_result(&format!("Hello, {name}!"), false)))
            }
            Some("slow") => {
                let (tx, rx) = mpsc::channel(4);
                let progress = json!({"jsonrpc": "2.0", "method": "notifications/progress",
                    "params": {"progressToken": 1, "progress": 1, "message": "half way"}});
                let done = reply(tool_result("slow done", false));
                tokio::spawn(async move {
                    let _ = tx.send(event(&progress)).await;
                    tokio::time::sleep(SLOW).await;
                    let _ = tx.send(event(&done)).await;
                });
                sse_answer(rx, None)
            }
            // Answers on an event stream that ends shortly after the
            // result, as rmcp's do.
            Some("streamed") => {
                let (tx, rx) = mpsc::channel(1);
                let done = reply(tool_result("streamed done", false));
                tokio::spawn(async move {
                    let _ = tx.send(event(&done)).await;
                    tokio::time::sleep(Duration::from_millis(20)).await;
                });
                sse_answer(rx, None)
            }
            Some("failing") => {
                tokio::time::sleep(SLOW).await;
                json_answer(reply(tool_result("the job failed", true)))
            }
            Some("protocol_error") => {
                tokio::time::sleep(SLOW).await;
                json_answer(json!({"jsonrpc": "2.0", "id": id,
                    "error": {"code": -32603, "message": "boom"}}))
            }
            Some("endless") => {
                let (tx, rx) = mpsc::channel(4);
                tokio::spawn(async move {
                    for n in 1.. {
                        let progress = json!({"jsonrpc": "2.0", "method": "notifications/progress",
                            "params": {"progressToken": 1, "progress": n, "message": format!("step {n}")}});
                        if tx.send(event(&progress)).await.is_err() {
                            return;
                        }
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                });
                sse_answer(rx, Some(upstream.closed.clone()))
            }
            // Multi round-trip (SEP-2322): asks for a confirmation, then
            // answers with it when the call comes back with it.
            Some("confirm") => {
                let answer = &params["inputResponses"]["confirm"];
                if params["requestState"] == "state-1" && !answer.is_null() {
                    let text = format!("confirmed: {}", answer["content"]["ok"]);
                    json_answer(reply(tool_result(&text, false)))
                } else {
                    json_answer(reply(json!({
                        "resultType": "input_required",
                        "inputRequests": {"confirm": {"method": "elicitation/create",
                            "params": {"message": "Sure?", "requestedSchema": {"type": "object",
                                "properties": {"ok": {"type": "boolean"}}}}}},
                        "requestState": "state-1",
                    })))
                }
            }
            _ => json_answer(json!({"jsonrpc": "2.0", "id": id,
                "error": {"code": -32602, "message": "unknown tool"}})),
        },
        _ => json_answer(json!({"jsonrpc": "2.0", "id": id,
            "error": {"code": -32601, "message": "method not found"}})),
    }
}

// ---------------------------------------------------------------------------
// The rig: upstream, then the proxy with the layers, on loopback.

struct Rig {
    upstream: Upstream,
    upstream_served: Served,
    gateway: Served,
}

async fn serve_upstream() -> (Upstream, Served) {
    let state = Upstream::default();
    let router = Router::new()
        .route("/mcp", post(upstream))
        .with_state(state.clone());
    (state, serve(router).await)
}

/// A gateway on `store` in front of `upstream_served`, with `configure`d tasks.
async fn gateway(
    store: Arc<dyn EventStore>,
    upstream_served: &Served,
    configure: impl FnOnce(TasksLayer) -> TasksLayer,
) -> Served {
    let layer = ResumabilityLayer::new(store).identity_header(http::header::AUTHORIZATION);
    let tasks = configure(TasksLayer::new(&layer).task_after(TASK_AFTER));
    let url = format!("{}/mcp", upstream_served.base());
    let proxy = ReverseProxy::new(url.parse().expect("upstream URL"));
    serve(tasks.layer(layer.layer(proxy))).await
}

async fn rig_on(store: Arc<dyn EventStore>) -> Rig {
    rig_with(store, |tasks| tasks).await
}

async fn rig_with(
    store: Arc<dyn EventStore>,
    configure: impl FnOnce(TasksLayer) -> TasksLayer,
) -> Rig {
    let (upstream, upstream_served) = serve_upstream().await;
    let gateway = gateway(store, &upstream_served, configure).await;
    Rig {
        upstream,
        upstream_served,
        gateway,
    }
}

// ---------------------------------------------------------------------------
// The client.

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// A 2026-07-28 client.
#[derive(Clone, Copy)]
struct Client<'a> {
    declares: bool,
    authorization: Option<&'a str>,
}

const DECLARING: Client<'static> = Client {
    declares: true,
    authorization: Some("Bearer alice"),
};

impl Client<'_> {
    /// Sends `method` with `params` to `served`: the JSON-RPC answer, and
    /// the raw body text.
    async fn send_raw(&self, served: &Served, method: &str, mut params: Value) -> (Value, String) {
        if self.declares {
            params["_meta"] = json!({"io.modelcontextprotocol/clientCapabilities":
                {"extensions": {"io.modelcontextprotocol/tasks": {}}}});
        }
        let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
        let body = json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params});
        let mut request = sse::Req::post("/mcp", &body.to_string())
            .version(V2026_07_28)
            .header("mcp-method", method);
        if let Some(task) = params["taskId"].as_str() {
            request = request.header("mcp-name", task);
        } else if let Some(tool) = params["name"].as_str() {
            request = request.header("mcp-name", tool);
        }
        if let Some(authorization) = self.authorization {
            request = request.header("authorization", authorization);
        }
        let mut response = request.send(served.addr).await;
        let is_sse = response
            .header("content-type")
            .is_some_and(|t| t.starts_with("text/event-stream"));
        let text = response.text().await;
        let message = if is_sse {
            sse::parse_events(text.as_bytes())
                .iter()
                .filter_map(|event| serde_json::from_str::<Value>(event.data()).ok())
                .find(|message| message["id"] == json!(id))
                .expect("an answer on the stream")
        } else {
            serde_json::from_str(&text).expect("a JSON answer")
        };
        assert_eq!(message["id"], json!(id), "{text}");
        (message, text)
    }

    async fn send(&self, served: &Served, method: &str, params: Value) -> Value {
        self.send_raw(served, method, params).await.0
    }

    async fn call(&self, served: &Served, tool: &str, arguments: Value) -> Value {
        let answer = self
            .send(
                served,
                "tools/call",
                json!({"name": tool, "arguments": arguments}),
            )
            .await;
        answer["result"].clone()
    }

    async fn get(&self, served: &Served, task: &str) -> Value {
        self.send(served, "tasks/get", json!({"taskId": task}))
            .await
    }

    /// Polls until the task's status satisfies `done`; returns the task.
    async fn poll_until(
        &self,
        served: &Served,
        task: &str,
        done: impl Fn(&Value) -> bool,
    ) -> Value {
        crate::common::guard("the task's status", async {
            loop {
                let answer = self.get(served, task).await["result"].clone();
                if done(&answer) {
                    return answer;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await
    }

    /// Polls until the task leaves `working`.
    async fn settled(&self, served: &Served, task: &str) -> Value {
        self.poll_until(served, task, |task| task["status"] != "working")
            .await
    }
}

fn is_iso8601(value: &Value) -> bool {
    value
        .as_str()
        .is_some_and(|text| text.len() == 24 && text.ends_with('Z') && text.as_bytes()[10] == b'T')
}

// ---------------------------------------------------------------------------
// The tests.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_within_the_threshold_is_answered_as_the_server_sent_it() {
    let rig = rig_on(Arc::new(MemoryEventStore::new())).await;
    let (through, text) = DECLARING
        .send_raw(
            &rig.gateway,
            "tools/call",
            json!({"name": "greet", "arguments": {"name": "World"}}),
        )
        .await;
    assert_eq!(through["result"]["content"][0]["text"], "Hello, World!");
    assert!(through["result"].get("taskId").is_none());
    // Byte for byte what the server answers without the gateway (ids aside).
    let id = through["id"].clone();
    let direct = json!({"jsonrpc": "2.0", "id": id, "result": tool_result("Hello, World!", false)});
    assert_eq!(text, direct.to_string());
}

async fn a_slow_call_becomes_a_task_polled_to_its_result(store: Arc<dyn EventStore>) {
    let rig = rig_on(store).await;
    let created = DECLARING.call(&rig.gateway, "slow", json!({})).await;
    assert_eq!(created["resultType"], "task", "{created}");
    assert_eq!(created["status"], "working");
    let task = created["taskId"].as_str().expect("taskId").to_owned();
    // A stream id: 128 bits, 122 of them random.
    assert_eq!(task.len(), 32);
    assert!(is_iso8601(&created["createdAt"]) && is_iso8601(&created["lastUpdatedAt"]));
    assert!(created["ttlMs"].as_u64().is_some_and(|ttl| ttl > 0));
    assert!(created["pollIntervalMs"].as_u64().is_some_and(|ms| ms > 0));
    for absent in [
        "result",
        "error",
        "inputRequests",
        "ttl",
        "pollInterval",
        "requestState",
    ] {
        assert!(created.get(absent).is_none(), "{absent} in {created}");
    }
    // Committed before it was answered: it resolves at once, still working,
    // with the server's progress message.
    let working = DECLARING.get(&rig.gateway, &task).await["result"].clone();
    assert_eq!(working["status"], "working", "{working}");
    assert_eq!(working["resultType"], "complete");
    DECLARING
        .poll_until(&rig.gateway, &task, |task| {
            task["statusMessage"] == "half way"
        })
        .await;
    let done = DECLARING.settled(&rig.gateway, &task).await;
    assert_eq!(done["status"], "completed", "{done}");
    assert_eq!(done["result"]["content"][0]["text"], "slow done");
    assert!(done.get("error").is_none());
    // The server ran the tool once, as an ordinary call: the gateway owns the task.
    let calls = rig.upstream.calls_of("slow");
    assert_eq!(calls.len(), 1);
    let declared = &calls[0]["params"]["_meta"]["io.modelcontextprotocol/clientCapabilities"];
    assert!(
        declared["extensions"]
            .get("io.modelcontextprotocol/tasks")
            .is_none()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_call_becomes_a_task_on_the_memory_store() {
    a_slow_call_becomes_a_task_polled_to_its_result(Arc::new(MemoryEventStore::new())).await;
}

#[cfg(feature = "sqlite")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_call_becomes_a_task_on_the_sqlite_store() {
    let dir = tempfile::tempdir().unwrap();
    let store = mcp_resume::store::SqliteEventStore::open(dir.path().join("tasks.db")).unwrap();
    a_slow_call_becomes_a_task_polled_to_its_result(Arc::new(store)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_did_not_declare_the_extension_never_gets_a_task() {
    let rig = rig_with(Arc::new(MemoryEventStore::new()), |tasks| {
        tasks.task_after(Duration::ZERO).require_task("failing")
    })
    .await;
    let plain = Client {
        declares: false,
        authorization: Some("Bearer alice"),
    };
    let result = plain.call(&rig.gateway, "slow", json!({})).await;
    assert_eq!(result["content"][0]["text"], "slow done", "{result}");
    assert!(result.get("taskId").is_none());
    // Nor the tasks methods, and a tool that only runs as a task is refused.
    let refused = plain
        .get(&rig.gateway, "0123456789abcdef0123456789abcdef")
        .await;
    assert_eq!(refused["error"]["code"], -32021, "{refused}");
    let refused = plain
        .send(
            &rig.gateway,
            "tools/call",
            json!({"name": "failing", "arguments": {}}),
        )
        .await;
    assert_eq!(refused["error"]["code"], -32021, "{refused}");
    assert!(rig.upstream.calls_of("failing").is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tool_error_completes_the_task_and_a_json_rpc_error_fails_it() {
    let rig = rig_on(Arc::new(MemoryEventStore::new())).await;
    let failing = DECLARING.call(&rig.gateway, "failing", json!({})).await;
    let done = DECLARING
        .settled(&rig.gateway, failing["taskId"].as_str().unwrap())
        .await;
    assert_eq!(done["status"], "completed", "{done}");
    assert_eq!(done["result"]["isError"], true);

    let broken = DECLARING
        .call(&rig.gateway, "protocol_error", json!({}))
        .await;
    let failed = DECLARING
        .settled(&rig.gateway, broken["taskId"].as_str().unwrap())
        .await;
    assert_eq!(failed["status"], "failed", "{failed}");
    assert_eq!(failed["error"]["code"], -32603);
    assert_eq!(failed["error"]["message"], "boom");
    assert!(failed.get("result").is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelling_closes_the_upstream_call_and_is_idempotent() {
    let rig = rig_on(Arc::new(MemoryEventStore::new())).await;
    let created = DECLARING.call(&rig.gateway, "endless", json!({})).await;
    let task = created["taskId"].as_str().unwrap().to_owned();
    let ack = DECLARING
        .send(&rig.gateway, "tasks/cancel", json!({"taskId": task}))
        .await;
    assert_eq!(ack["result"], json!({"resultType": "complete"}));
    let cancelled = DECLARING.settled(&rig.gateway, &task).await;
    assert_eq!(cancelled["status"], "cancelled", "{cancelled}");
    wait_until("the upstream stream to be closed", || async {
        rig.upstream.closed.load(Ordering::SeqCst) == 1
    })
    .await;
    // Again, on a terminal task: the same empty ack, and nothing changes.
    let again = DECLARING
        .send(&rig.gateway, "tasks/cancel", json!({"taskId": task}))
        .await;
    assert_eq!(again["result"], json!({"resultType": "complete"}));
    assert_eq!(
        DECLARING.get(&rig.gateway, &task).await["result"]["status"],
        "cancelled"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tasks_made_one_after_another_reuse_the_upstream_connection() {
    let rig = rig_with(Arc::new(MemoryEventStore::new()), |tasks| {
        tasks.tool_task_after("streamed", Duration::ZERO)
    })
    .await;
    for _ in 0..5 {
        let created = DECLARING.call(&rig.gateway, "streamed", json!({})).await;
        assert_eq!(created["resultType"], "task", "{created}");
        let task = created["taskId"].as_str().unwrap().to_owned();
        let done = DECLARING.settled(&rig.gateway, &task).await;
        assert_eq!(done["result"]["content"][0]["text"], "streamed done");
        // Past the end of the upstream's stream (20 ms after the result).
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The gateway reads each answer's stream to its end after the result,
    // which leaves the connection to its pool; dropped unread, each call
    // would need a connection of its own. (Two allow for one slow end.)
    let accepted = rig.upstream_served.accepted.load(Ordering::SeqCst);
    assert!(accepted <= 2, "{accepted} upstream connections for 5 tasks");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn input_required_is_answered_by_update_and_the_call_is_reissued() {
    let rig = rig_with(Arc::new(MemoryEventStore::new()), |tasks| {
        tasks.tool_task_after("confirm", Duration::ZERO)
    })
    .await;
    let created = DECLARING.call(&rig.gateway, "confirm", json!({})).await;
    assert_eq!(created["resultType"], "task", "{created}");
    let task = created["taskId"].as_str().unwrap().to_owned();
    let asking = DECLARING.settled(&rig.gateway, &task).await;
    assert_eq!(asking["status"], "input_required", "{asking}");
    assert_eq!(
        asking["inputRequests"]["confirm"]["method"],
        "elicitation/create"
    );
    assert!(asking.get("requestState").is_none());
    // An answer to a key that is not outstanding is ignored.
    let ack = DECLARING
        .send(
            &rig.gateway,
            "tasks/update",
            json!({"taskId": task, "inputResponses": {"other": {"action": "accept"}}}),
        )
        .await;
    assert_eq!(ack["result"], json!({"resultType": "complete"}));
    assert_eq!(
        DECLARING.get(&rig.gateway, &task).await["result"]["status"],
        "input_required"
    );
    DECLARING
        .send(
            &rig.gateway,
            "tasks/update",
            json!({"taskId": task,
            "inputResponses": {"confirm": {"action": "accept", "content": {"ok": true}}}}),
        )
        .await;
    let done = DECLARING
        .poll_until(&rig.gateway, &task, |task| task["status"] == "completed")
        .await;
    assert_eq!(
        done["result"]["content"][0]["text"], "confirmed: true",
        "{done}"
    );
    let calls = rig.upstream.calls_of("confirm");
    assert_eq!(calls.len(), 2);
    assert_eq!(calls[1]["params"]["requestState"], "state-1");
    assert_eq!(
        calls[1]["params"]["inputResponses"]["confirm"]["content"]["ok"],
        true
    );
    assert_ne!(calls[0]["id"], calls[1]["id"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_callers_task_is_as_unknown_as_one_that_never_existed() {
    let rig = rig_on(Arc::new(MemoryEventStore::new())).await;
    let created = DECLARING.call(&rig.gateway, "endless", json!({})).await;
    let task = created["taskId"].as_str().unwrap().to_owned();
    let mallory = Client {
        declares: true,
        authorization: Some("Bearer mallory"),
    };
    let foreign = mallory.get(&rig.gateway, &task).await;
    let unknown = mallory
        .get(
            &rig.gateway,
            &mcp_resume::store::StreamId::random().to_string(),
        )
        .await;
    let malformed = mallory.get(&rig.gateway, "not-a-task-id").await;
    assert_eq!(foreign["error"]["code"], -32602, "{foreign}");
    assert_eq!(foreign["error"], unknown["error"]);
    assert_eq!(foreign["error"], malformed["error"]);
    // A foreign cancel is acknowledged and does nothing.
    let ack = mallory
        .send(&rig.gateway, "tasks/cancel", json!({"taskId": task}))
        .await;
    assert_eq!(ack["result"], json!({"resultType": "complete"}));
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        DECLARING.get(&rig.gateway, &task).await["result"]["status"],
        "working"
    );
    assert_eq!(rig.upstream.closed.load(Ordering::SeqCst), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discover_advertises_the_extension_and_routing_headers_must_match() {
    let rig = rig_on(Arc::new(MemoryEventStore::new())).await;
    let through = DECLARING
        .send(&rig.gateway, "server/discover", json!({}))
        .await;
    let direct = DECLARING
        .send(&rig.upstream_served, "server/discover", json!({}))
        .await;
    let extension = "io.modelcontextprotocol/tasks";
    assert_eq!(
        through["result"]["capabilities"]["extensions"][extension],
        json!({})
    );
    assert!(direct["result"]["capabilities"].get("extensions").is_none());
    assert_eq!(through["result"]["capabilities"]["tools"], json!({}));

    let body = json!({"jsonrpc": "2.0", "id": 1, "method": "tasks/get", "params": {"taskId": "abc",
        "_meta": {"io.modelcontextprotocol/clientCapabilities": {"extensions": {extension: {}}}}}});
    let mut response = sse::Req::post("/mcp", &body.to_string())
        .version(V2026_07_28)
        .header("mcp-method", "tasks/get")
        .header("mcp-name", "another-task")
        .send(rig.gateway.addr)
        .await;
    let answer: Value = serde_json::from_str(&response.text().await).unwrap();
    assert_eq!(answer["error"]["code"], -32020, "{answer}");
}

#[cfg(feature = "sqlite")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_restart_on_the_same_file_working_tasks_failed_and_finished_ones_answer() {
    use mcp_resume::store::SqliteEventStore;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tasks.db");
    let (upstream, upstream_served) = serve_upstream().await;
    let store: Arc<dyn EventStore> = Arc::new(SqliteEventStore::open(&path).unwrap());
    let first = gateway(store.clone(), &upstream_served, |tasks| tasks).await;
    let finished = DECLARING.call(&first, "slow", json!({})).await;
    let finished = finished["taskId"].as_str().unwrap().to_owned();
    assert_eq!(
        DECLARING.settled(&first, &finished).await["status"],
        "completed"
    );
    let working = DECLARING.call(&first, "endless", json!({})).await;
    let working = working["taskId"].as_str().unwrap().to_owned();
    // The process stops: its listener and its streams go, the store closes.
    drop(first);
    store.close().await.unwrap();
    drop(store);

    let store: Arc<dyn EventStore> = Arc::new(SqliteEventStore::open(&path).unwrap());
    let second = gateway(store, &upstream_served, |tasks| tasks).await;
    let failed = DECLARING.get(&second, &working).await["result"].clone();
    assert_eq!(failed["status"], "failed", "{failed}");
    assert!(
        failed["error"]["message"]
            .as_str()
            .unwrap()
            .contains("restarted"),
        "{failed}"
    );
    let completed = DECLARING.get(&second, &finished).await["result"].clone();
    assert_eq!(completed["status"], "completed");
    assert_eq!(completed["result"]["content"][0]["text"], "slow done");
    drop(upstream);
}

#[cfg(feature = "redis")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_redis_a_task_made_on_one_instance_is_polled_updated_and_cancelled_on_another() {
    use mcp_resume::store::Retention;

    use crate::common_redis;
    let server = common_redis::shared();
    let prefix = common_redis::unique_prefix();
    let one: Arc<dyn EventStore> =
        Arc::new(common_redis::open(server, &prefix, Retention::default()).await);
    let other: Arc<dyn EventStore> =
        Arc::new(common_redis::open(server, &prefix, Retention::default()).await);
    let (upstream, upstream_served) = serve_upstream().await;
    let configure = |tasks: TasksLayer| tasks.tool_task_after("confirm", Duration::ZERO);
    let a = gateway(one, &upstream_served, configure).await;
    let b = gateway(other, &upstream_served, configure).await;

    let created = DECLARING.call(&a, "confirm", json!({})).await;
    let task = created["taskId"].as_str().unwrap().to_owned();
    assert_eq!(
        DECLARING.settled(&b, &task).await["status"],
        "input_required"
    );
    DECLARING
        .send(
            &b,
            "tasks/update",
            json!({"taskId": task,
            "inputResponses": {"confirm": {"action": "accept", "content": {"ok": false}}}}),
        )
        .await;
    let done = DECLARING
        .poll_until(&b, &task, |task| task["status"] == "completed")
        .await;
    assert_eq!(done["result"]["content"][0]["text"], "confirmed: false");

    let endless = DECLARING.call(&a, "endless", json!({})).await;
    let endless = endless["taskId"].as_str().unwrap().to_owned();
    DECLARING
        .send(&b, "tasks/cancel", json!({"taskId": endless}))
        .await;
    assert_eq!(DECLARING.settled(&a, &endless).await["status"], "cancelled");
    wait_until("the upstream stream to be closed", || async {
        upstream.closed.load(Ordering::SeqCst) == 1
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listen_for_task_ids_pushes_the_callers_tasks_until_they_end() {
    let rig = rig_on(Arc::new(MemoryEventStore::new())).await;
    let created = DECLARING.call(&rig.gateway, "slow", json!({})).await;
    let task = created["taskId"].as_str().unwrap().to_owned();
    let stranger = mcp_resume::store::StreamId::random().to_string();
    let body = json!({"jsonrpc": "2.0", "id": "listen-1", "method": "subscriptions/listen",
        "params": {"notifications": {"taskIds": [task, stranger]},
            "_meta": {"io.modelcontextprotocol/clientCapabilities":
                {"extensions": {"io.modelcontextprotocol/tasks": {}}}}}});
    let mut response = sse::Req::post("/mcp", &body.to_string())
        .version(V2026_07_28)
        .header("mcp-method", "subscriptions/listen")
        .header("authorization", "Bearer alice")
        .send(rig.gateway.addr)
        .await;
    assert_eq!(response.header("content-type"), Some("text/event-stream"));
    let messages: Vec<Value> =
        crate::common::guard("the listen stream to end", response.events_to_end())
            .await
            .iter()
            .map(|event| serde_json::from_str(event.data()).unwrap())
            .collect();
    let ack = &messages[0];
    assert_eq!(
        ack["method"], "notifications/subscriptions/acknowledged",
        "{messages:?}"
    );
    assert_eq!(
        ack["params"]["_meta"]["io.modelcontextprotocol/subscriptionId"],
        "listen-1"
    );
    let pushed: Vec<&Value> = messages
        .iter()
        .filter(|message| message["method"] == "notifications/tasks")
        .collect();
    // Only the caller's task, first working, last completed with its result.
    assert!(
        pushed
            .iter()
            .all(|message| message["params"]["taskId"] == task.as_str())
    );
    assert_eq!(pushed[0]["params"]["status"], "working", "{messages:?}");
    let last = &pushed.last().unwrap()["params"];
    assert_eq!(last["status"], "completed");
    assert_eq!(last["result"]["content"][0]["text"], "slow done");
    // Then the subscription is torn down gracefully.
    let end = messages.last().unwrap();
    assert_eq!(end["id"], "listen-1");
    assert_eq!(
        end["result"]["_meta"]["io.modelcontextprotocol/subscriptionId"],
        "listen-1"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_of_an_earlier_revision_is_never_a_task_and_stays_resumable() {
    let rig = rig_with(Arc::new(MemoryEventStore::new()), |tasks| {
        tasks.task_after(Duration::ZERO)
    })
    .await;
    let body = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
        "params": {"name": "slow", "arguments": {},
            "_meta": {"io.modelcontextprotocol/clientCapabilities":
                {"extensions": {"io.modelcontextprotocol/tasks": {}}}}}});
    let mut response = sse::Req::post("/mcp", &body.to_string())
        .version(crate::common::V2025_06_18)
        .header("authorization", "Bearer alice")
        .send(rig.gateway.addr)
        .await;
    let events = crate::common::guard("the call's stream", response.events_to_end()).await;
    // The resumability layer's ids, as without the gateway, and the result.
    assert!(
        events.iter().all(|event| event.id().contains('.')),
        "{events:?}"
    );
    let last: Value = serde_json::from_str(events.last().unwrap().data()).unwrap();
    assert_eq!(last["result"]["content"][0]["text"], "slow done");
    assert!(last["result"].get("taskId").is_none());
}
