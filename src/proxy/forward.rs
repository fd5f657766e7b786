//! [`ReverseProxy`]: the tower service that forwards each request to the
//! upstream and streams the answer back.

use std::convert::Infallible;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Request, Response, StatusCode, Version};
use http_body::Body;
use http_body_util::BodyExt;
use http_body_util::combinators::UnsyncBoxBody;
use hyper::body::Incoming;
use hyper_util::client::legacy::{self, Client, connect::HttpConnector};
use hyper_util::rt::TokioExecutor;
use tower::Service;

use super::body::ProxyBody;
use super::headers::remove_hop_by_hop;
use super::upstream::Upstream;

use tower::BoxError;

/// The request body sent upstream: the client's body, boxed so that one
/// client (and its connection pool) serves every request body type.
type UpstreamBody = UnsyncBoxBody<Bytes, BoxError>;

/// A streaming reverse proxy to one [`Upstream`] MCP server.
///
/// Each request goes to the same path and query on the upstream, over
/// HTTP/1.1 on a pooled connection, whatever HTTP version the client spoke.
/// Bodies stream both ways frame by frame; nothing is buffered, so an SSE
/// event reaches the client (or the [`ResumabilityLayer`](crate::ResumabilityLayer)
/// in front) as soon as the upstream writes it.
///
/// Headers are forwarded end to end (`Mcp-Session-Id`,
/// `MCP-Protocol-Version`, `Authorization`, `Accept`, `Content-Type`,
/// `Origin`, `Last-Event-ID` and the rest); hop-by-hop headers are dropped
/// both ways (`Connection` and the headers it names, `Keep-Alive`,
/// `Proxy-*`, `TE`, `Trailer`, `Transfer-Encoding`, `Upgrade`); `Host` is set
/// to the upstream's, since servers such as rmcp's check it.
///
/// When the upstream cannot be reached (within
/// [`CONNECT_TIMEOUT`](Self::CONNECT_TIMEOUT)) or fails before answering, the
/// client gets `502 Bad Gateway` with a JSON-RPC error naming the upstream.
/// The service itself never fails.
///
/// ```
/// use mcp_resume::ResumabilityLayer;
/// use mcp_resume::proxy::ReverseProxy;
/// use mcp_resume::store::MemoryEventStore;
/// use std::sync::Arc;
/// use tower::Layer;
///
/// # fn main() -> Result<(), mcp_resume::proxy::InvalidUpstream> {
/// let proxy = ReverseProxy::new("http://127.0.0.1:8000/mcp".parse()?);
/// let service = ResumabilityLayer::new(Arc::new(MemoryEventStore::new())).layer(proxy);
/// # let _ = service;
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct ReverseProxy {
    upstream: Arc<Upstream>,
    client: Client<HttpConnector, UpstreamBody>,
}

impl ReverseProxy {
    /// How long connecting to the upstream may take before the request is
    /// answered `502`: 10 seconds. Streams themselves have no time limit: a
    /// tool call may legitimately run for hours.
    pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

    /// A proxy to `upstream`, with its own connection pool.
    pub fn new(upstream: Upstream) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(Self::CONNECT_TIMEOUT));
        // SSE events are small writes that must not wait for Nagle's algorithm.
        connector.set_nodelay(true);
        let client = Client::builder(TokioExecutor::new())
            // We set `Host` ourselves, from the upstream.
            .set_host(false)
            .build(connector);
        Self {
            upstream: Arc::new(upstream),
            client,
        }
    }

    /// The upstream this proxy forwards to.
    pub fn upstream(&self) -> &Upstream {
        &self.upstream
    }

    /// The request to send upstream, or why it cannot be forwarded (the
    /// message of a `400`).
    fn upstream_request<B>(
        &self,
        request: Request<B>,
    ) -> Result<Request<UpstreamBody>, &'static str>
    where
        B: Body<Data = Bytes> + Send + 'static,
        B::Error: Into<BoxError>,
    {
        let (mut parts, body) = request.into_parts();
        // Only origin-form targets (`/path?query`) have an upstream
        // equivalent; `*` (server-wide OPTIONS) and CONNECT's authority do not.
        let Some(path_and_query) = parts
            .uri
            .path_and_query()
            .filter(|target| target.as_str().starts_with('/'))
            .cloned()
        else {
            return Err("Bad Request: only /path?query request targets can be forwarded");
        };
        parts.uri = match self.upstream.uri_for(path_and_query) {
            Ok(uri) => uri,
            Err(error) => {
                // Unreachable for a parsed origin-form target; answered, not unwrapped.
                tracing::debug!(%error, "request target cannot be forwarded");
                return Err("Bad Request: the request target cannot be forwarded");
            }
        };
        // The upstream hop is HTTP/1.1 whatever the client spoke; the client's
        // connection-level extensions mean nothing on it.
        parts.version = Version::HTTP_11;
        parts.extensions = http::Extensions::new();
        remove_hop_by_hop(&mut parts.headers);
        parts
            .headers
            .insert(header::HOST, self.upstream.host_header());
        let body = body.map_err(Into::into).boxed_unsync();
        Ok(Request::from_parts(parts, body))
    }
}

impl fmt::Debug for ReverseProxy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReverseProxy")
            .field("upstream", &self.upstream.to_string())
            .finish_non_exhaustive()
    }
}

impl<B> Service<Request<B>> for ReverseProxy
where
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    type Response = Response<ProxyBody>;
    type Error = Infallible;
    type Future = ResponseFuture;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        // The client queues requests per connection itself; it is always ready.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let state = match self.upstream_request(request) {
            Ok(request) => State::Forwarding {
                response: self.client.request(request),
                upstream: self.upstream.clone(),
            },
            Err(message) => {
                State::Answered(Some(json_error(StatusCode::BAD_REQUEST, -32600, message)))
            }
        };
        ResponseFuture { state }
    }
}

/// The future of [`ReverseProxy`]: the upstream's response headers, or the
/// proxy's own answer.
pub struct ResponseFuture {
    state: State,
}

enum State {
    Forwarding {
        response: legacy::ResponseFuture,
        upstream: Arc<Upstream>,
    },
    Answered(Option<Response<ProxyBody>>),
}

impl fmt::Debug for ResponseFuture {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match &self.state {
            State::Forwarding { .. } => "forwarding",
            State::Answered(_) => "answered",
        };
        f.debug_struct("ResponseFuture")
            .field("state", &state)
            .finish()
    }
}

impl Future for ResponseFuture {
    type Output = Result<Response<ProxyBody>, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        // Every field is `Unpin`: the legacy client's future is boxed.
        let answer = match &mut self.get_mut().state {
            State::Forwarding { response, upstream } => match ready!(Pin::new(response).poll(cx)) {
                Ok(response) => downstream_response(response),
                Err(error) => bad_gateway(upstream, &error),
            },
            State::Answered(answer) => answer
                .take()
                .expect("ResponseFuture polled after completion"),
        };
        Poll::Ready(Ok(answer))
    }
}

/// The upstream's response as the client gets it: the same status, the
/// end-to-end headers, and the body streamed as it arrives.
fn downstream_response(response: Response<Incoming>) -> Response<ProxyBody> {
    let (mut parts, body) = response.into_parts();
    remove_hop_by_hop(&mut parts.headers);
    Response::from_parts(parts, ProxyBody::upstream(body))
}

/// `502 Bad Gateway` for an upstream that could not be reached or failed
/// before answering. The client learns which upstream; the log gets why.
fn bad_gateway(upstream: &Upstream, error: &legacy::Error) -> Response<ProxyBody> {
    let what = if error.is_connect() {
        "cannot be reached"
    } else {
        "failed before answering"
    };
    tracing::warn!(
        upstream = %upstream,
        error = %ErrorChain(error),
        "upstream MCP server {what}; answered 502"
    );
    let message = format!("Bad Gateway: the upstream MCP server {upstream} {what}");
    json_error(StatusCode::BAD_GATEWAY, -32603, &message)
}

/// A JSON-RPC error response (`id` null: the request was not read) with `status`.
fn json_error(status: StatusCode, code: i64, message: &str) -> Response<ProxyBody> {
    let body = serde_json::json!({
        "jsonrpc": "2.0",
        "id": null,
        "error": { "code": code, "message": message },
    });
    let mut response = Response::new(ProxyBody::local(body.to_string()));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

/// Displays an error with its sources: `a: b: c`. The legacy client's own
/// message ("client error (Connect)") says little without them.
struct ErrorChain<'a>(&'a (dyn std::error::Error + 'static));

impl fmt::Display for ErrorChain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)?;
        let mut source = self.0.source();
        while let Some(error) = source {
            write!(f, ": {error}")?;
            source = error.source();
        }
        Ok(())
    }
}
