//! Disconnect is not cancel, and resume brings every event once (docs/contract.md, rules 10
//! and 11), end to end with rmcp on both sides.
//!
//! - `rmcp_client_survives_repeated_cuts`: rmcp's `StreamableHttpService` (stateful sessions,
//!   rmcp's own `LocalSessionManager`) in an axum 0.8 app behind [`ResumabilityLayer`] on
//!   SQLite. rmcp's own reqwest client calls a tool that sends 500 progress notifications,
//!   through a TCP proxy (in this file) that cuts the connection again and again at byte
//!   offsets that fall mid-event. The client resumes with `GET` + `Last-Event-ID`, and must
//!   see every notification exactly once, in order, then the result.
//! - `layer_wraps_rmcp_service_on_plain_hyper`: the layer around `StreamableHttpService`
//!   itself (no axum), served with hyper-util, spoken to in raw HTTP at protocol
//!   2025-11-25: the ids on the wire are the layer's (`<32 hex>.<n>`), never rmcp's.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use mcp_resume::ResumabilityLayer;
use rmcp::model::{
    CallToolRequestParams, ClientConfig, ClientRequest, ProgressNotificationParam, ProgressToken,
    ProtocolVersion, Request, ServerJsonRpcMessage, ServerNotification, ServerResult,
};
use rmcp::service::{NotificationContext, PeerRequestOptions, RxJsonRpcMessage, TxJsonRpcMessage};
use rmcp::transport::common::client_side_sse::FixedInterval;
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use rmcp::transport::{StreamableHttpClientTransport, Transport};
use rmcp::{ClientHandler, RoleClient, ServiceExt};
use serde_json::{Value, json};
use tokio::net::TcpListener;

use crate::common::{init_tracing, layer_id, post_message};
use mcp_resume_testkit::progress_server::mcp_service;
use mcp_resume_testkit::proxy::{Connection, Faults, Proxy, Relay};

// ---------------------------------------------------------------------------------------------
// Cuts after a scheduled number of server->client bytes, made by the test kit's proxy.
// ---------------------------------------------------------------------------------------------

/// One scheduled cut.
#[derive(Debug, Clone, Copy)]
struct CutPlan {
    /// Server->client bytes the connection may relay (counted from arming) before it is cut.
    after_bytes: usize,
    /// After this cut, new connections are held this long before reaching the server: the
    /// client is "offline" while the tool keeps producing, so its resume has a backlog to replay.
    outage: Duration,
}

/// One connection the proxy cut.
#[derive(Debug, Clone)]
struct Cut {
    connection: usize,
    /// Server->client bytes relayed on that connection since the proxy was armed.
    armed_bytes: usize,
    /// The connection carried a `text/event-stream` response.
    event_stream: bool,
    /// The last relayed bytes did not end an SSE event (the cut fell inside one).
    mid_event: bool,
    /// The last bytes the client got before the cut (for the report).
    tail: String,
}

#[derive(Default)]
struct PlanState {
    /// Cuts happen only while armed (so the handshake is never cut).
    armed: AtomicBool,
    /// The cuts still to make, in order; empty = relay untouched.
    plan: Mutex<VecDeque<CutPlan>>,
    /// New connections wait until then before reaching the server.
    offline_until: Mutex<Option<tokio::time::Instant>>,
    cuts: Mutex<Vec<Cut>>,
}

/// The test kit's proxy's [`Faults`] for this test: the cuts of a plan, in order, on whichever
/// connection carries the bytes, each followed by its outage.
#[derive(Clone, Default)]
struct PlannedCuts(Arc<PlanState>);

impl PlannedCuts {
    fn new(plan: &[CutPlan]) -> Self {
        let cuts = Self::default();
        cuts.0.plan.lock().unwrap().extend(plan.iter().copied());
        cuts
    }

    fn arm(&self) {
        self.0.armed.store(true, Ordering::SeqCst);
    }

    fn cuts(&self) -> Vec<Cut> {
        self.0.cuts.lock().unwrap().clone()
    }
}

impl Faults for PlannedCuts {
    type Connection = PlannedConnection;

    async fn connection(&self, index: usize) -> PlannedConnection {
        let offline_until = *self.0.offline_until.lock().unwrap();
        if let Some(until) = offline_until {
            tokio::time::sleep_until(until).await;
        }
        PlannedConnection {
            index,
            state: self.0.clone(),
            armed_bytes: 0,
            head: Vec::new(),
            tail: Vec::new(),
        }
    }
}

struct PlannedConnection {
    index: usize,
    state: Arc<PlanState>,
    armed_bytes: usize,
    /// The first bytes of the connection, to spot an SSE response.
    head: Vec<u8>,
    /// The last bytes relayed.
    tail: Vec<u8>,
}

impl Connection for PlannedConnection {
    fn response(&mut self, bytes: &[u8]) -> Relay {
        let state = &self.state;
        let mut chunk = bytes;
        let mut cut_now = false;
        if state.armed.load(Ordering::SeqCst) {
            let mut plan = state.plan.lock().unwrap();
            if let Some(&next) = plan.front()
                && self.armed_bytes + chunk.len() >= next.after_bytes
            {
                chunk = &chunk[..next.after_bytes.saturating_sub(self.armed_bytes)];
                plan.pop_front();
                cut_now = true;
                if !next.outage.is_zero() {
                    *state.offline_until.lock().unwrap() =
                        Some(tokio::time::Instant::now() + next.outage);
                }
            }
            self.armed_bytes += chunk.len();
        }
        if self.head.len() < 4096 {
            self.head
                .extend_from_slice(&chunk[..chunk.len().min(4096 - self.head.len())]);
        }
        self.tail.extend_from_slice(chunk);
        if self.tail.len() > 96 {
            self.tail.drain(..self.tail.len() - 96);
        }
        if !cut_now {
            return Relay::All;
        }
        let ends_event = self.tail.ends_with(b"\n\n") || self.tail.ends_with(b"\n\n\r\n");
        let event_stream = String::from_utf8_lossy(&self.head)
            .to_ascii_lowercase()
            .contains("content-type: text/event-stream");
        state.cuts.lock().unwrap().push(Cut {
            connection: self.index,
            armed_bytes: self.armed_bytes,
            event_stream,
            mid_event: event_stream && !ends_event,
            tail: String::from_utf8_lossy(&self.tail).into_owned(),
        });
        Relay::CutAfter(chunk.len())
    }
}

// ---------------------------------------------------------------------------------------------
// The rmcp client side: a handler that collects progress, and a transport wrapper that records
// the order in which messages come off the wire (rmcp dispatches notifications to the handler
// on spawned tasks, so the handler's call order is not the wire order).
// ---------------------------------------------------------------------------------------------

#[derive(Clone, Default)]
struct ProgressCollector {
    seen: Arc<Mutex<Vec<ProgressNotificationParam>>>,
}

impl ClientHandler for ProgressCollector {
    async fn on_progress(
        &self,
        params: ProgressNotificationParam,
        _context: NotificationContext<RoleClient>,
    ) {
        self.seen.lock().unwrap().push(params);
    }

    fn get_info(&self) -> ClientConfig {
        // The newest version with resumable SSE (and the layer's priming events).
        ClientConfig::default().with_protocol_version(ProtocolVersion::V_2025_11_25)
    }
}

struct WireOrder<T> {
    inner: T,
    progress: Arc<Mutex<Vec<(ProgressToken, f64)>>>,
}

impl<T: Transport<RoleClient>> Transport<RoleClient> for WireOrder<T> {
    type Error = T::Error;

    fn send(
        &mut self,
        item: TxJsonRpcMessage<RoleClient>,
    ) -> impl Future<Output = Result<(), Self::Error>> + Send + 'static {
        self.inner.send(item)
    }

    async fn receive(&mut self) -> Option<RxJsonRpcMessage<RoleClient>> {
        let message = self.inner.receive().await;
        if let Some(ServerJsonRpcMessage::Notification(notification)) = &message
            && let ServerNotification::ProgressNotification(progress) = &notification.notification
        {
            self.progress.lock().unwrap().push((
                progress.params.progress_token.clone(),
                progress.params.progress,
            ));
        }
        message
    }

    fn close(&mut self) -> impl Future<Output = Result<(), Self::Error>> + Send {
        self.inner.close()
    }
}

// ---------------------------------------------------------------------------------------------
// Test 1: rmcp server + rmcp client, cut again and again.
// ---------------------------------------------------------------------------------------------

const COUNT: u32 = 500;
/// The cuts. A progress event is ~160 bytes on the wire, so these byte offsets land mid-event,
/// on the tool call's POST response first, then on the resumed GET responses. Two of them are
/// followed by an outage, so those resumes replay a backlog before going live.
const CUTS: [CutPlan; 7] = [
    cut(1_537, 0),
    cut(4_321, 0),
    cut(777, 300),
    cut(9_001, 0),
    cut(2_055, 200),
    cut(613, 0),
    cut(12_345, 0),
];

const fn cut(after_bytes: usize, outage_ms: u64) -> CutPlan {
    CutPlan {
        after_bytes,
        outage: Duration::from_millis(outage_ms),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rmcp_client_survives_repeated_cuts() -> Result<(), Box<dyn std::error::Error>> {
    init_tracing();
    let dir = tempfile::tempdir()?;
    let layer =
        ResumabilityLayer::sqlite(dir.path().join("events.db"))?.retry(Duration::from_millis(100));

    let (mcp, shutdown_mcp) = mcp_service();
    let app = axum::Router::new().route_service("/mcp", tower::Layer::layer(&layer, mcp));
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let server_addr = listener.local_addr()?;
    let server = tokio::spawn(async move { axum::serve(listener, app).await });

    let planned = PlannedCuts::new(&CUTS);
    let proxy = Proxy::start("127.0.0.1:0".parse()?, server_addr, planned.clone()).await?;

    // rmcp's reqwest client, reconnecting: a cut mid-body is a stream error, which rmcp answers
    // at once with GET + Last-Event-ID; failed reconnects are retried every 50 ms (at least the
    // server's `retry` hint), up to 40 times in a row.
    let mut retry = FixedInterval::default();
    retry.max_times = Some(40);
    retry.duration = Duration::from_millis(50);
    let mut config =
        StreamableHttpClientTransportConfig::with_uri(format!("http://{}/mcp", proxy.addr()));
    config.retry_config = Arc::new(retry);
    let wire_progress = Arc::new(Mutex::new(Vec::new()));
    let transport = WireOrder {
        inner: StreamableHttpClientTransport::from_config(config),
        progress: wire_progress.clone(),
    };
    let collector = ProgressCollector::default();
    let client = collector.clone().serve(transport).await?;
    assert_eq!(
        client.peer_info().map(|info| info.protocol_version.clone()),
        Some(ProtocolVersion::V_2025_11_25),
        "the session must run a protocol version the layer makes resumable"
    );

    planned.arm();
    let mut arguments = serde_json::Map::new();
    arguments.insert("count".into(), json!(COUNT));
    arguments.insert("interval_ms".into(), json!(2));
    let request = ClientRequest::CallToolRequest(Request::new(
        CallToolRequestParams::new("stream_progress").with_arguments(arguments),
    ));
    // rmcp puts a fresh progress token in every request's `_meta`; the handle says which.
    let handle = client
        .send_request_with_option(request, PeerRequestOptions::no_options())
        .await?;
    let token = handle.progress_token.clone();
    let response = tokio::time::timeout(Duration::from_secs(60), handle.await_response())
        .await
        .map_err(|_| "the tool call did not finish within 60 s")??;

    // 1. The call returns its result.
    let ServerResult::CallToolResult(result) = response else {
        panic!("expected a tool result, got {response:?}");
    };
    assert_ne!(result.is_error, Some(true), "tool failed: {result:?}");
    let text = result
        .content
        .first()
        .and_then(|content| content.as_text())
        .map(|text| text.text.clone());
    assert_eq!(
        text.as_deref(),
        Some(format!("sent {COUNT} progress notifications").as_str())
    );

    // 2. Exactly COUNT notifications came off the wire, each progress value once, in order.
    let wire: Vec<(ProgressToken, f64)> = wire_progress.lock().unwrap().clone();
    assert!(
        wire.iter().all(|(t, _)| *t == token),
        "a notification carried a foreign progress token"
    );
    let values: Vec<f64> = wire.iter().map(|(_, progress)| *progress).collect();
    let expected: Vec<f64> = (1..=COUNT).map(f64::from).collect();
    if values != expected {
        let missing: Vec<f64> = expected
            .iter()
            .copied()
            .filter(|v| !values.contains(v))
            .collect();
        panic!(
            "progress on the wire: {} notifications, missing {missing:?}, first out-of-order \
             index {:?}; cuts: {:#?}",
            values.len(),
            values.windows(2).position(|w| w[1] <= w[0]),
            planned.cuts()
        );
    }

    // ...and all of them reached the client handler (dispatched on spawned tasks, so wait a
    // little for the last ones).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while collector.seen.lock().unwrap().len() < COUNT as usize
        && tokio::time::Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let mut handled: Vec<f64> = collector
        .seen
        .lock()
        .unwrap()
        .iter()
        .filter(|p| p.progress_token == token)
        .map(|p| p.progress)
        .collect();
    handled.sort_by(f64::total_cmp);
    assert_eq!(handled, expected, "on_progress saw a different set");

    // 3. The proxy cut the stream at least 3 times, mid-event.
    let cuts = planned.cuts();
    let mid_event = cuts.iter().filter(|cut| cut.mid_event).count();
    let stats = layer.stats();
    eprintln!(
        "cuts: {} ({} mid-event, {} on SSE responses), proxy connections: {}, progress \
         notifications: {}, layer stats: {stats:?}",
        cuts.len(),
        mid_event,
        cuts.iter().filter(|cut| cut.event_stream).count(),
        proxy.connections(),
        values.len(),
    );
    for cut in &cuts {
        eprintln!(
            "  cut connection #{} after {} bytes, mid-event {}, tail {:?}",
            cut.connection, cut.armed_bytes, cut.mid_event, cut.tail
        );
    }
    assert_eq!(cuts.len(), CUTS.len(), "every scheduled cut happened");
    assert!(
        mid_event >= 3,
        "only {mid_event} cuts fell mid-event: {cuts:#?}"
    );
    assert!(
        stats.resumes >= mid_event as u64,
        "each cut SSE response is resumed through the layer"
    );
    assert!(
        stats.events_replayed > 0,
        "the outages left a backlog that the resumes replayed"
    );

    client.cancel().await?;
    shutdown_mcp();
    server.abort();
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Test 2: the layer around `StreamableHttpService` itself, on plain hyper, raw HTTP.
// ---------------------------------------------------------------------------------------------

/// One parsed SSE block (event or comment-only block).
#[derive(Debug, Default, Clone)]
struct SseBlock {
    id: Option<String>,
    retry: Option<String>,
    event: Option<String>,
    data: Option<String>,
    comment_only: bool,
}

fn parse_sse(body: &[u8]) -> Vec<SseBlock> {
    let text = std::str::from_utf8(body).expect("SSE is UTF-8");
    let text = text.replace("\r\n", "\n").replace('\r', "\n");
    let mut blocks = Vec::new();
    for raw in text.split("\n\n") {
        if raw.is_empty() {
            continue;
        }
        let mut block = SseBlock {
            comment_only: true,
            ..SseBlock::default()
        };
        for line in raw.split('\n') {
            if line.starts_with(':') {
                continue;
            }
            block.comment_only = false;
            let (field, value) = match line.split_once(':') {
                Some((field, value)) => (field, value.strip_prefix(' ').unwrap_or(value)),
                None => (line, ""),
            };
            match field {
                "id" => block.id = Some(value.to_owned()),
                "retry" => block.retry = Some(value.to_owned()),
                "event" => block.event = Some(value.to_owned()),
                "data" => {
                    let data = block.data.get_or_insert_with(String::new);
                    if !data.is_empty() {
                        data.push('\n');
                    }
                    data.push_str(value);
                }
                _ => {}
            }
        }
        blocks.push(block);
    }
    assert!(
        text.is_empty() || text.ends_with("\n\n"),
        "the body ends inside an event: {text:?}"
    );
    blocks
}

type RawClient = hyper_util::client::legacy::Client<
    hyper_util::client::legacy::connect::HttpConnector,
    Full<Bytes>,
>;

async fn exchange(
    client: &RawClient,
    request: http::Request<Full<Bytes>>,
) -> (http::response::Parts, Bytes) {
    let response = tokio::time::timeout(Duration::from_secs(10), client.request(request))
        .await
        .expect("no response within 10 s")
        .expect("request failed");
    let (parts, body) = response.into_parts();
    let body = tokio::time::timeout(Duration::from_secs(10), body.collect())
        .await
        .expect("body did not end within 10 s")
        .expect("body failed")
        .to_bytes();
    (parts, body)
}

fn content_type(parts: &http::response::Parts) -> String {
    parts
        .headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default()
        .to_owned()
}

/// Every id is the layer's; no trace of rmcp's own `<n>/<request>` ids or its `retry: 3000`.
fn assert_layer_ids(blocks: &[SseBlock], body: &[u8]) {
    for block in blocks.iter().filter(|b| !b.comment_only) {
        let id = block
            .id
            .as_deref()
            .unwrap_or_else(|| panic!("event without id: {block:?}"));
        layer_id(id);
    }
    let text = String::from_utf8_lossy(body);
    assert!(!text.contains("retry: 3000"), "rmcp's retry leaked: {text}");
    assert!(!text.contains("id: 0/"), "rmcp's priming id leaked: {text}");
}

#[tokio::test]
async fn layer_wraps_rmcp_service_on_plain_hyper() -> Result<(), Box<dyn std::error::Error>> {
    init_tracing();
    let dir = tempfile::tempdir()?;
    let layer =
        ResumabilityLayer::sqlite(dir.path().join("events.db"))?.retry(Duration::from_millis(1500));
    let (mcp, shutdown_mcp) = mcp_service();
    let service = tower::Layer::layer(&layer, mcp);

    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let url = format!("http://{addr}/mcp");
    let server = tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            let service = service.clone();
            tokio::spawn(async move {
                let service =
                    hyper::service::service_fn(move |request: http::Request<Incoming>| {
                        // `Incoming` has no `Default` (the layer needs one for the standalone GET it
                        // may open), so box the body.
                        tower::ServiceExt::oneshot(service.clone(), request.map(BodyExt::boxed))
                    });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(socket), service)
                    .await;
            });
        }
    });

    let client: RawClient =
        hyper_util::client::legacy::Client::builder(TokioExecutor::new()).build_http();

    // initialize: no MCP-Protocol-Version header (the version is negotiated in the body).
    let (parts, body) = exchange(
        &client,
        post_message(
            &url,
            None,
            None,
            &json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
                "protocolVersion": "2025-11-25", "capabilities": {},
                "clientInfo": {"name": "raw-hyper", "version": "0"}}}),
        ),
    )
    .await;
    assert_eq!(parts.status, 200, "{body:?}");
    assert!(
        content_type(&parts).starts_with("text/event-stream"),
        "{parts:?}"
    );
    assert!(parts.headers.get(http::header::CONTENT_LENGTH).is_none());
    let session = parts
        .headers
        .get("mcp-session-id")
        .expect("the layer keeps rmcp's Mcp-Session-Id")
        .to_str()?
        .to_owned();
    let blocks = parse_sse(&body);
    assert_layer_ids(&blocks, &body);
    let events: Vec<&SseBlock> = blocks.iter().filter(|b| !b.comment_only).collect();
    // No version header = not 2025-11-25: no priming event; the first event carries retry.
    assert_eq!(events.len(), 1, "initialize: {blocks:?}");
    let (init_stream, init_seq) = layer_id(events[0].id.as_deref().unwrap());
    assert_eq!(init_seq, 1);
    assert_eq!(events[0].retry.as_deref(), Some("1500"));
    let init: Value = serde_json::from_str(events[0].data.as_deref().unwrap())?;
    assert_eq!(init["id"], 1);
    assert_eq!(init["result"]["protocolVersion"], "2025-11-25", "{init}");

    // notifications/initialized: 202, untouched.
    let (parts, _) = exchange(
        &client,
        post_message(
            &url,
            Some(&session),
            Some("2025-11-25"),
            &json!({"jsonrpc": "2.0", "method": "notifications/initialized"}),
        ),
    )
    .await;
    assert_eq!(parts.status, 202);

    // tools/call at 2025-11-25: priming event, then 5 progress notifications, then the result.
    let (parts, body) = exchange(
        &client,
        post_message(
            &url,
            Some(&session),
            Some("2025-11-25"),
            &json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {
                "name": "stream_progress", "arguments": {"count": 5},
                "_meta": {"progressToken": "raw-1"}}}),
        ),
    )
    .await;
    assert_eq!(parts.status, 200, "{body:?}");
    assert!(content_type(&parts).starts_with("text/event-stream"));
    let blocks = parse_sse(&body);
    assert_layer_ids(&blocks, &body);
    let events: Vec<&SseBlock> = blocks.iter().filter(|b| !b.comment_only).collect();
    assert_eq!(
        events.len(),
        7,
        "priming + 5 progress + result: {blocks:#?}"
    );
    let (call_stream, priming_seq) = layer_id(events[0].id.as_deref().unwrap());
    assert_eq!(
        priming_seq, 0,
        "the first block is the layer's priming event"
    );
    assert_eq!(events[0].retry.as_deref(), Some("1500"));
    assert_eq!(events[0].data.as_deref().unwrap_or(""), "");
    assert_ne!(call_stream, init_stream, "each response is its own stream");
    for (n, event) in events.iter().enumerate().skip(1) {
        let (stream, seq) = layer_id(event.id.as_deref().unwrap());
        assert_eq!(stream, call_stream);
        assert_eq!(seq, n as u64);
        assert!(
            event.retry.is_none(),
            "only the priming event carries retry"
        );
    }
    for (step, event) in events[1..6].iter().enumerate() {
        let message: Value = serde_json::from_str(event.data.as_deref().unwrap())?;
        assert_eq!(message["method"], "notifications/progress");
        assert_eq!(message["params"]["progressToken"], "raw-1");
        assert_eq!(message["params"]["progress"], (step + 1) as f64);
    }
    let result: Value = serde_json::from_str(events[6].data.as_deref().unwrap())?;
    assert_eq!(result["id"], 2);
    assert_eq!(
        result["result"]["content"][0]["text"],
        "sent 5 progress notifications"
    );

    // And the ids work: resuming after event 3 replays 4, 5 and the result, byte for byte,
    // then ends (the stream is complete).
    let resume = http::Request::get(format!("http://{addr}/mcp"))
        .header("accept", "text/event-stream")
        .header("mcp-session-id", &session)
        .header("mcp-protocol-version", "2025-11-25")
        .header("last-event-id", format!("{call_stream}.3"))
        .body(Full::new(Bytes::new()))?;
    let (parts, replay_body) = exchange(&client, resume).await;
    assert_eq!(parts.status, 200, "{replay_body:?}");
    let mut replayed: Vec<SseBlock> = parse_sse(&replay_body)
        .into_iter()
        .filter(|b| !b.comment_only)
        .collect();
    // A 2025-11-25 resume starts with one priming event at the resume point,
    // carrying the retry hint.
    let priming = replayed.remove(0);
    assert_eq!(priming.id, Some(format!("{call_stream}.3")), "{priming:?}");
    assert_eq!(priming.retry.as_deref(), Some("1500"));
    assert_eq!(priming.data.as_deref().unwrap_or(""), "");
    assert_layer_ids(&replayed, &replay_body);
    let ids: Vec<&str> = replayed.iter().filter_map(|b| b.id.as_deref()).collect();
    assert_eq!(
        ids,
        [4, 5, 6].map(|n| format!("{call_stream}.{n}")),
        "replay: {replayed:#?}"
    );
    for (replay, original) in replayed.iter().zip(&events[4..]) {
        assert_eq!(replay.data, original.data);
    }
    assert!(replayed.iter().all(|b| b.retry.is_none()));

    shutdown_mcp();
    server.abort();
    Ok(())
}
