//! Shared infrastructure for the HTTP-level tests (`tests/it/common`).
//!
//! - [`proxy`]: the fault-injecting TCP proxy of the test kit (`support/`),
//!   which cuts connections on demand or after a number of bytes (mid-event
//!   cuts included).
//! - [`sse`]: a raw HTTP/1.1 client that reports status, headers, raw body
//!   bytes and SSE events incrementally, plus an independent SSE parser.
//! - [`server`]: a scripted MCP-ish inner service, served on loopback,
//!   whose SSE streams the test writes frame by frame.
//! - [`store`]: an [`EventStore`](mcp_resume::store::EventStore) that fails
//!   on demand.
//!
//! Nothing here depends on the layer: `tests/it/infra.rs` checks the
//! infrastructure on its own.
#![allow(dead_code)]

pub use mcp_resume_testkit::proxy;
pub mod server;
pub mod sse;
pub mod store;

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;
use tokio::task::JoinSet;

/// The body type every served service receives.
pub type ReqBody = axum::body::Body;

/// Boxed error, what hyper wants from services and bodies.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The body `Cannot resume` answers carry, byte for byte (docs/contract.md, rule 11).
pub const CANNOT_RESUME_BODY: &str = r#"{"jsonrpc":"2.0","id":null,"error":{"code":-32000,"message":"Bad Request: this stream cannot be resumed (unknown, expired or foreign Last-Event-ID)"}}"#;

/// A `tools/call` request body, the message most tests POST.
pub const CALL: &str = r#"{"jsonrpc":"2.0","id":1,"method":"tools/call"}"#;

/// The protocol versions the tests speak.
pub const V2025_03_26: &str = "2025-03-26";
/// Resumable, no priming.
pub const V2025_06_18: &str = "2025-06-18";
/// Resumable, priming events and poll mode.
pub const V2025_11_25: &str = "2025-11-25";
/// Resumability removed: the layer passes these through.
pub const V2026_07_28: &str = "2026-07-28";

/// A fresh in-memory store.
pub fn memory_store() -> std::sync::Arc<dyn mcp_resume::store::EventStore> {
    std::sync::Arc::new(mcp_resume::store::MemoryEventStore::new())
}

/// Waits until `stream` is in `state` in `store` (hang guard).
pub async fn wait_state(
    store: &std::sync::Arc<dyn mcp_resume::store::EventStore>,
    stream: mcp_resume::store::StreamId,
    state: mcp_resume::store::StreamState,
) {
    wait_until(&format!("stream {stream} to be {state}"), || async {
        matches!(store.stream_info(stream).await, Ok(Some(info)) if info.state == state)
    })
    .await;
}

/// Hang guard for anything a test waits for. Tests never assert on timing;
/// this only turns a hang into a readable failure.
pub const GUARD: Duration = Duration::from_secs(10);

/// Awaits `fut`, panicking with `what` if it takes longer than [`GUARD`].
pub async fn guard<F: Future>(what: &str, fut: F) -> F::Output {
    match tokio::time::timeout(GUARD, fut).await {
        Ok(out) => out,
        Err(_) => panic!("hang guard: timed out after {GUARD:?} waiting for {what}"),
    }
}

/// Polls `check` every few milliseconds until it returns true (hang guard).
pub async fn wait_until<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    guard(what, async {
        loop {
            if check().await {
                return;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
}

/// Installs a `tracing` subscriber writing to the test output (once), when
/// `RUST_LOG` asks for one. Without it no global subscriber is installed:
/// the tests share one process, and a global filtering subscriber installed
/// by one test made another's thread-local capture (`layer_tracing`) miss
/// events now and then.
pub fn init_tracing() {
    let Ok(filter) = tracing_subscriber::EnvFilter::try_from_default_env() else {
        return;
    };
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_test_writer()
        .try_init();
}

/// A service served over HTTP on `127.0.0.1:0` (HTTP/1.1 and HTTP/2 with
/// hyper-util's auto builder). Stops accepting and drops every connection
/// when dropped.
pub struct Served {
    /// Where it listens.
    pub addr: SocketAddr,
    /// How many connections it accepted.
    pub accepted: Arc<AtomicUsize>,
    tasks: JoinSet<()>,
}

impl Served {
    /// `http://127.0.0.1:<port>`.
    pub fn base(&self) -> String {
        format!("http://{}", self.addr)
    }
}

/// `layer` in front of a scripted inner service ([`Script::streams`]),
/// served on loopback: the setup of most layer tests.
pub async fn serve_scripted(layer: &mcp_resume::ResumabilityLayer) -> (server::Script, Served) {
    use tower::Layer as _;
    let script = server::Script::streams();
    let served = serve(layer.layer(script.clone())).await;
    (script, served)
}

/// A tool call (session `s1`, 2025-06-18) whose stream delivers `events`
/// messages ([`server::message`]) to the client, which then leaves: how the
/// tests of a stream's end start. Returns the stream and its inner stream,
/// still open.
pub async fn call_then_leave(
    script: &server::Script,
    served: &Served,
    events: u64,
) -> (mcp_resume::store::StreamId, server::StreamHandle) {
    let (mut resp, inner) = post_call(script, served, CALL, V2025_06_18).await;
    for n in 1..=events {
        assert!(inner.event(&server::message(n)).await);
    }
    let first = resp.expect_event().await;
    for _ in 2..=events {
        resp.expect_event().await;
    }
    (stream_of(first.id()), inner)
}

/// A resume of `stream` after event `seq`, as [`call_then_leave`]'s client
/// would send it.
pub fn resume_after(stream: mcp_resume::store::StreamId, seq: u64) -> sse::Req {
    sse::Req::get("/mcp")
        .version(V2025_06_18)
        .session("s1")
        .last_event_id(&format!("{stream}.{seq}"))
}

/// POSTs the tool call `body` as session `s1` at `version`, and returns the
/// client's response and the inner stream the call opened.
pub async fn post_call(
    script: &server::Script,
    served: &Served,
    body: &'static str,
    version: &'static str,
) -> (sse::Resp, server::StreamHandle) {
    let resp = sse::Req::post("/mcp", body)
        .version(version)
        .session("s1")
        .send(served.addr)
        .await;
    (resp, script.next_stream().await)
}

/// Serves a tower service taking `Request<ReqBody>`.
pub async fn serve<S, B>(service: S) -> Served
where
    S: tower::Service<Request<ReqBody>, Response = Response<B>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError> + Send,
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("local addr");
    let accepted = Arc::new(AtomicUsize::new(0));
    let counter = accepted.clone();
    let mut tasks = JoinSet::new();
    tasks.spawn(async move {
        let mut conns = JoinSet::new();
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                continue;
            };
            counter.fetch_add(1, Ordering::SeqCst);
            let _ = tcp.set_nodelay(true);
            let service = service.clone();
            let hyper_service = hyper::service::service_fn(move |req: Request<Incoming>| {
                let mut service = service.clone();
                async move {
                    let req = req.map(ReqBody::new);
                    let ready = std::future::poll_fn(|cx| service.poll_ready(cx)).await;
                    let result = match ready {
                        Ok(()) => service.call(req).await,
                        Err(err) => Err(err),
                    };
                    match result {
                        Ok(response) => Ok::<_, Infallible>(response.map(box_body)),
                        Err(err) => {
                            let err: BoxError = err.into();
                            let mut response = Response::new(box_body(http_body_util::Full::new(
                                Bytes::from(format!("service error: {err}")),
                            )));
                            *response.status_mut() = http::StatusCode::INTERNAL_SERVER_ERROR;
                            Ok(response)
                        }
                    }
                }
            });
            conns.spawn(async move {
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(tcp), hyper_service)
                    .await;
            });
            // Reap finished connections so the set stays bounded.
            while conns.try_join_next().is_some() {}
        }
    });
    Served {
        addr,
        accepted,
        tasks,
    }
}

/// Serves a tower service with nothing but hyper 1's HTTP/1.1 server
/// (`hyper::server::conn::http1` and `hyper::service::service_fn`): the
/// request body is collected and handed over as `Full<Bytes>`.
pub async fn serve_plain_hyper<S, B>(service: S) -> Served
where
    S: tower::Service<
            Request<http_body_util::Full<Bytes>>,
            Response = Response<B>,
            Error = Infallible,
        > + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    use http_body_util::BodyExt;
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("local addr");
    let accepted = Arc::new(AtomicUsize::new(0));
    let counter = accepted.clone();
    let mut tasks = JoinSet::new();
    tasks.spawn(async move {
        let mut conns = JoinSet::new();
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                continue;
            };
            counter.fetch_add(1, Ordering::SeqCst);
            let service = service.clone();
            let hyper_service = hyper::service::service_fn(move |req: Request<Incoming>| {
                let mut service = service.clone();
                async move {
                    let (parts, body) = req.into_parts();
                    let body = body.collect().await?.to_bytes();
                    let req = Request::from_parts(parts, http_body_util::Full::new(body));
                    let Ok(()) = std::future::poll_fn(|cx| service.poll_ready(cx)).await;
                    let Ok(response) = service.call(req).await;
                    Ok::<_, hyper::Error>(response)
                }
            });
            conns.spawn(async move {
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tcp), hyper_service)
                    .await;
            });
            while conns.try_join_next().is_some() {}
        }
    });
    Served {
        addr,
        accepted,
        tasks,
    }
}

/// A response body with its error boxed (hyper-util's auto builder is then
/// happy with it inside spawned tasks).
pub type BoxedBody = http_body_util::combinators::UnsyncBoxBody<Bytes, BoxError>;

fn box_body<B>(body: B) -> BoxedBody
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    use http_body_util::BodyExt;
    body.map_err(|err| -> BoxError { err.into() })
        .boxed_unsync()
}

/// Splits an id the layer wrote (`<32 lowercase hex>.<seq>`) into its stream
/// and sequence, panicking with the id if it has any other shape. Checked
/// independently of the crate's parser, then against it.
pub fn layer_id(id: &str) -> (String, u64) {
    let (stream, seq) = id
        .split_once('.')
        .unwrap_or_else(|| panic!("id {id:?} is not <32 hex>.<seq>"));
    assert!(
        stream.len() == 32
            && stream
                .bytes()
                .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')),
        "id {id:?}: stream part is not 32 lowercase hex digits"
    );
    assert!(
        !seq.is_empty()
            && seq.bytes().all(|b| b.is_ascii_digit())
            && (seq == "0" || !seq.starts_with('0')),
        "id {id:?}: sequence part is not a canonical decimal"
    );
    let parsed = mcp_resume::store::EventId::parse(id.as_bytes())
        .unwrap_or_else(|_| panic!("EventId::parse rejects the layer's id {id:?}"));
    let seq: u64 = seq.parse().expect("seq fits u64");
    assert_eq!(parsed.seq, seq);
    assert_eq!(parsed.stream.to_string(), stream);
    (stream.to_string(), seq)
}

/// A POST of a JSON-RPC message to `url`, as MCP clients send it.
pub fn post_message(
    url: &str,
    session: Option<&str>,
    version: Option<&str>,
    body: &serde_json::Value,
) -> Request<http_body_util::Full<Bytes>> {
    let mut request = Request::post(url)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream");
    if let Some(session) = session {
        request = request.header("mcp-session-id", session);
    }
    if let Some(version) = version {
        request = request.header("mcp-protocol-version", version);
    }
    request
        .body(http_body_util::Full::new(Bytes::from(body.to_string())))
        .unwrap()
}

/// The [`StreamId`](mcp_resume::store::StreamId) of a layer id.
pub fn stream_of(id: &str) -> mcp_resume::store::StreamId {
    mcp_resume::store::EventId::parse(id.as_bytes())
        .expect("layer id")
        .stream
}
