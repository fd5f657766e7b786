//! A scripted MCP-ish inner service to put behind the layer.
//!
//! [`Script`] is a cloneable tower `Service` (any request body, response body
//! [`axum::body::Body`], error `Infallible`). For every request it records
//! what it saw ([`Seen`]) and asks its handler for a [`Reply`]:
//!
//! - [`Reply::stream`]: 200 `text/event-stream` whose body the test writes
//!   frame by frame through a [`StreamHandle`], handed over by
//!   [`Script::next_stream`] (raw bytes, events with or without `id:`,
//!   `event:`, `retry:`, priming events, comments; a failed body; a producer
//!   task writing K events at a given pace). Extra headers (e.g.
//!   `Mcp-Session-Id`) can be set on the response.
//! - [`Reply::full`]: any complete response (JSON, 202, errors, a whole SSE
//!   body with an explicit `Content-Length`).

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::header::{HeaderMap, HeaderName, HeaderValue};
use http::{Method, Request, Response, StatusCode, Uri};
use http_body::Frame;
use http_body_util::BodyExt;
use tokio::sync::mpsc;

use super::{BoxError, guard};

/// A request as the inner service saw it.
#[derive(Clone, Debug)]
pub struct Seen {
    /// Method.
    pub method: Method,
    /// URI (path and query as received).
    pub uri: Uri,
    /// Headers.
    pub headers: HeaderMap,
    /// The whole body.
    pub body: Bytes,
}

impl Seen {
    /// A header's value as text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .get(name)
            .map(|v| v.to_str().expect("ASCII header"))
    }

    /// The body as text.
    pub fn body_text(&self) -> &str {
        std::str::from_utf8(&self.body).expect("UTF-8 body")
    }
}

/// What the handler answers.
#[derive(Clone, Debug)]
pub enum Reply {
    /// A 200 `text/event-stream` the test writes through a [`StreamHandle`].
    Stream {
        /// Headers added to the response (after the content type).
        headers: Vec<(String, String)>,
    },
    /// A complete response.
    Full {
        /// Status.
        status: StatusCode,
        /// Headers.
        headers: Vec<(String, String)>,
        /// Body.
        body: Bytes,
    },
}

impl Reply {
    /// A scripted SSE stream.
    pub fn stream() -> Self {
        Reply::Stream {
            headers: Vec::new(),
        }
    }

    /// A complete response with `status` and `body` (no headers yet).
    pub fn full(status: StatusCode, body: impl Into<Bytes>) -> Self {
        Reply::Full {
            status,
            headers: Vec::new(),
            body: body.into(),
        }
    }

    /// 200 `application/json` with `body`.
    pub fn json(body: &str) -> Self {
        Self::full(StatusCode::OK, body.to_string()).with_header("content-type", "application/json")
    }

    /// An empty response with `status` (e.g. 202 Accepted).
    pub fn status(status: StatusCode) -> Self {
        Self::full(status, Bytes::new())
    }

    /// A complete 200 SSE body, with an explicit `Content-Length`.
    pub fn sse_body(body: impl Into<Bytes>) -> Self {
        let body = body.into();
        let len = body.len().to_string();
        Self::full(StatusCode::OK, body)
            .with_header("content-type", "text/event-stream")
            .with_header("content-length", &len)
    }

    /// Adds a response header.
    pub fn with_header(mut self, name: &str, value: &str) -> Self {
        match &mut self {
            Reply::Stream { headers } | Reply::Full { headers, .. } => {
                headers.push((name.to_string(), value.to_string()));
            }
        }
        self
    }

    /// Adds `Mcp-Session-Id`.
    pub fn with_session(self, session: &str) -> Self {
        self.with_header("mcp-session-id", session)
    }
}

type Handler = dyn Fn(&Seen) -> Reply + Send + Sync;

struct Inner {
    handler: Box<Handler>,
    log: Mutex<Vec<Seen>>,
    streams_tx: mpsc::UnboundedSender<StreamHandle>,
    streams_rx: tokio::sync::Mutex<mpsc::UnboundedReceiver<StreamHandle>>,
}

/// The scripted inner service. Clones share the log and the stream inbox.
#[derive(Clone)]
pub struct Script {
    inner: Arc<Inner>,
}

impl Script {
    /// A service answering every request with `handler`'s reply.
    pub fn new(handler: impl Fn(&Seen) -> Reply + Send + Sync + 'static) -> Self {
        let (streams_tx, streams_rx) = mpsc::unbounded_channel();
        Self {
            inner: Arc::new(Inner {
                handler: Box::new(handler),
                log: Mutex::new(Vec::new()),
                streams_tx,
                streams_rx: tokio::sync::Mutex::new(streams_rx),
            }),
        }
    }

    /// Every request gets a scripted SSE stream.
    pub fn streams() -> Self {
        Self::new(|_| Reply::stream())
    }

    /// A small MCP server whose session is `session`:
    /// - POST `initialize` (no `Mcp-Session-Id`): SSE stream, `Mcp-Session-Id: <session>`;
    /// - POST of a notification (no `"id"`): 202;
    /// - other POSTs and GETs: SSE stream;
    /// - DELETE: 200; anything else: 405.
    pub fn mcp(session: &'static str) -> Self {
        Self::new(move |seen| match seen.method {
            Method::POST if seen.body_text().contains("\"initialize\"") => {
                Reply::stream().with_session(session)
            }
            Method::POST if !seen.body_text().contains("\"id\"") => {
                Reply::status(StatusCode::ACCEPTED)
            }
            Method::POST | Method::GET => Reply::stream(),
            Method::DELETE => Reply::status(StatusCode::OK),
            _ => Reply::status(StatusCode::METHOD_NOT_ALLOWED),
        })
    }

    /// The next scripted stream opened by a request (hang guard).
    pub async fn next_stream(&self) -> StreamHandle {
        let mut rx = self.inner.streams_rx.lock().await;
        guard("the inner service to open a stream", rx.recv())
            .await
            .expect("inbox open")
    }

    /// A stream opened since the last `next_stream`, if any (no waiting).
    pub async fn try_next_stream(&self) -> Option<StreamHandle> {
        self.inner.streams_rx.lock().await.try_recv().ok()
    }

    /// Every request seen so far, in order.
    pub fn requests(&self) -> Vec<Seen> {
        self.inner.log.lock().unwrap().clone()
    }

    /// How many requests were seen.
    pub fn request_count(&self) -> usize {
        self.inner.log.lock().unwrap().len()
    }

    fn respond(&self, seen: Seen) -> Response<axum::body::Body> {
        self.inner.log.lock().unwrap().push(seen.clone());
        match (self.inner.handler)(&seen) {
            Reply::Full {
                status,
                headers,
                body,
            } => {
                let mut response = Response::new(axum::body::Body::from(body));
                *response.status_mut() = status;
                add_headers(response.headers_mut(), &headers);
                response
            }
            Reply::Stream { headers } => {
                let (tx, rx) = mpsc::channel(16);
                let mut response = Response::new(axum::body::Body::new(ChannelBody { rx }));
                response.headers_mut().insert(
                    http::header::CONTENT_TYPE,
                    HeaderValue::from_static("text/event-stream"),
                );
                add_headers(response.headers_mut(), &headers);
                let _ = self.inner.streams_tx.send(StreamHandle { seen, tx });
                response
            }
        }
    }
}

fn add_headers(map: &mut HeaderMap, headers: &[(String, String)]) {
    for (name, value) in headers {
        map.append(
            HeaderName::from_bytes(name.as_bytes()).expect("header name"),
            HeaderValue::from_str(value).expect("header value"),
        );
    }
}

impl<B> tower::Service<Request<B>> for Script
where
    B: http_body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    type Response = Response<axum::body::Body>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let this = self.clone();
        Box::pin(async move {
            let (parts, body) = request.into_parts();
            let body = body
                .collect()
                .await
                .map(|c| c.to_bytes())
                .unwrap_or_default();
            Ok(this.respond(Seen {
                method: parts.method,
                uri: parts.uri,
                headers: parts.headers,
                body,
            }))
        })
    }
}

/// A response body fed by a channel: `Ok` chunks are data, an `Err` fails
/// the body, closing the channel ends it cleanly.
struct ChannelBody {
    rx: mpsc::Receiver<Result<Bytes, String>>,
}

impl http_body::Body for ChannelBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match self.rx.poll_recv(cx) {
            Poll::Ready(Some(Ok(bytes))) => Poll::Ready(Some(Ok(Frame::data(bytes)))),
            Poll::Ready(Some(Err(msg))) => Poll::Ready(Some(Err(msg.into()))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    }
}

/// Writes one scripted SSE response body. Dropping it (or [`close`](Self::close))
/// ends the body cleanly.
pub struct StreamHandle {
    /// The request that opened the stream.
    pub seen: Seen,
    tx: mpsc::Sender<Result<Bytes, String>>,
}

impl std::fmt::Debug for StreamHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamHandle")
            .field("seen", &self.seen)
            .field("dropped", &self.is_dropped())
            .finish()
    }
}

/// One SSE event block as the inner service writes it (LF line ends;
/// multi-line data becomes several `data:` lines).
pub fn event_block(
    id: Option<&str>,
    event: Option<&str>,
    data: Option<&str>,
    retry: Option<u64>,
) -> String {
    let mut out = String::new();
    if let Some(event) = event {
        out.push_str(&format!("event: {event}\n"));
    }
    if let Some(id) = id {
        out.push_str(&format!("id: {id}\n"));
    }
    if let Some(retry) = retry {
        out.push_str(&format!("retry: {retry}\n"));
    }
    if let Some(data) = data {
        for line in data.split('\n') {
            out.push_str(&format!("data: {line}\n"));
        }
    }
    out.push('\n');
    out
}

/// The JSON-RPC message used as data by [`StreamHandle::produce`] for event `n`.
pub fn message(n: u64) -> String {
    format!(r#"{{"jsonrpc":"2.0","method":"notifications/progress","params":{{"progress":{n}}}}}"#)
}

impl StreamHandle {
    /// Writes raw bytes. Returns false if the body was dropped (by the layer
    /// or the server).
    pub async fn raw(&self, bytes: impl Into<Bytes>) -> bool {
        self.tx.send(Ok(bytes.into())).await.is_ok()
    }

    /// Writes a plain event with `data` (no id).
    pub async fn event(&self, data: &str) -> bool {
        self.raw(event_block(None, None, Some(data), None)).await
    }

    /// Writes an event with an inner id, as rmcp does (`<n>/<request>`).
    pub async fn event_with_id(&self, id: &str, data: &str) -> bool {
        self.raw(event_block(Some(id), None, Some(data), None))
            .await
    }

    /// Writes an rmcp-style priming event: inner id, `retry: 3000`, empty data.
    pub async fn priming(&self) -> bool {
        self.raw("id: 0/0\nretry: 3000\ndata:\n\n").await
    }

    /// Writes a comment-only block (`: <text>`), a keep-alive.
    pub async fn comment(&self, text: &str) -> bool {
        self.raw(format!(": {text}\n\n")).await
    }

    /// Fails the body with an error (the inner service broke mid-stream).
    pub async fn fail(self, msg: &str) {
        let _ = self.tx.send(Err(msg.to_string())).await;
    }

    /// Ends the body cleanly.
    pub fn close(self) {}

    /// Whether the body was dropped: the layer (or server) stopped reading.
    pub fn is_dropped(&self) -> bool {
        self.tx.is_closed()
    }

    /// Waits until the body is dropped (hang guard).
    pub async fn dropped(&self) {
        guard("the inner body to be dropped", self.tx.closed()).await;
    }

    /// Spawns a producer writing events `1..=count` with data [`message`]`(n)`
    /// (pausing `every` between events, if set), then ending the body. The
    /// task returns how many events were accepted before the body was dropped.
    pub fn produce(self, count: u64, every: Option<Duration>) -> tokio::task::JoinHandle<u64> {
        self.produce_with(count, every, message)
    }

    /// Like [`produce`](Self::produce) with data `data(n)` for event `n`.
    pub fn produce_with(
        self,
        count: u64,
        every: Option<Duration>,
        data: impl Fn(u64) -> String + Send + 'static,
    ) -> tokio::task::JoinHandle<u64> {
        tokio::spawn(async move {
            for n in 1..=count {
                if !self.event(&data(n)).await {
                    return n - 1;
                }
                if let Some(every) = every {
                    tokio::time::sleep(every).await;
                }
            }
            count
        })
    }
}
