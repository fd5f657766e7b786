//! [`ReverseProxy`]: the tower service that forwards each request to the
//! upstream and streams the answer back.

use std::convert::Infallible;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::header;
use http::{Request, Response, StatusCode, Version};
use http_body::Body;
use hyper::body::Incoming;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::{self, Client, connect::HttpConnector};
use hyper_util::rt::TokioExecutor;
use tower::{BoxError, Service};

use super::answer::{ErrorChain, INTERNAL_ERROR, INVALID_REQUEST, json_error};
use super::body::ProxyBody;
use super::forwarded::{self, ClientAddr, ForwardedHeaders};
use super::headers::remove_hop_by_hop;
use super::request_body::{self, Read, UpstreamBody};
use super::tls::{self, ArrivedOverTls, UpstreamTls};
use super::upstream::Upstream;

/// A streaming reverse proxy to one [`Upstream`] MCP server.
///
/// Each request goes to the same path and query on the upstream, over
/// HTTP/1.1 on a pooled connection, whatever HTTP version the client spoke.
/// Responses stream back frame by frame, never buffered, so an SSE event
/// reaches the client (or the [`ResumabilityLayer`](crate::ResumabilityLayer)
/// in front) as soon as the upstream writes it.
///
/// A request body of up to [`request_buffer_bytes`](Self::request_buffer_bytes)
/// (MCP's are single JSON-RPC messages) is read whole before anything is
/// sent upstream, so a client's broken request (a bad chunk, a connection
/// cut before the `Content-Length` was sent) is answered
/// `400 Bad Request` and never reaches the upstream. A longer body streams;
/// if it breaks midway the upstream has seen part of it, and the client
/// still gets the `400`.
///
/// Headers are forwarded end to end (`Mcp-Session-Id`,
/// `MCP-Protocol-Version`, `Authorization`, `Accept`, `Content-Type`,
/// `Origin`, `Last-Event-ID` and the rest); hop-by-hop headers are dropped
/// both ways (`Connection` and the headers it names, `Keep-Alive`,
/// `Proxy-*`, `TE`, `Trailer`, `Transfer-Encoding`, `Upgrade`). `Host` is set
/// to the upstream's, since servers such as rmcp's check it; the `Host` the
/// client used goes in `X-Forwarded-Host` (see
/// [`forwarded_headers`](Self::forwarded_headers)).
///
/// When the upstream cannot be reached (within
/// [`CONNECT_TIMEOUT`](Self::CONNECT_TIMEOUT)) or fails before answering, the
/// client gets `502 Bad Gateway`; when it sends no response headers within
/// [`upstream_header_timeout`](Self::upstream_header_timeout), `504 Gateway
/// Timeout`. Both carry a JSON-RPC error naming the upstream. Once the
/// headers have come, the response has no time limit: a tool call may
/// stream for hours. The service itself never fails.
///
/// ```
/// use std::time::Duration;
/// use mcp_resume::ResumabilityLayer;
/// use mcp_resume::proxy::ReverseProxy;
/// use mcp_resume::store::MemoryEventStore;
/// use std::sync::Arc;
/// use tower::Layer;
///
/// # fn main() -> Result<(), mcp_resume::proxy::InvalidUpstream> {
/// let proxy = ReverseProxy::new("http://127.0.0.1:8000/mcp".parse()?)
///     .upstream_header_timeout(Some(Duration::from_secs(20)));
/// let service = ResumabilityLayer::new(Arc::new(MemoryEventStore::new())).layer(proxy);
/// # let _ = service;
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct ReverseProxy {
    upstream: Arc<Upstream>,
    client: Client<HttpsConnector<HttpConnector>, UpstreamBody>,
    request_buffer_bytes: Option<usize>,
    upstream_header_timeout: Option<Duration>,
    forwarded_headers: ForwardedHeaders,
    trust_forwarded_headers: bool,
}

impl ReverseProxy {
    /// How long connecting to the upstream may take before the request is
    /// answered `502`: 10 seconds.
    pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

    /// The default of [`request_buffer_bytes`](Self::request_buffer_bytes):
    /// 4 MiB, far above any JSON-RPC request an MCP client sends.
    pub const DEFAULT_REQUEST_BUFFER_BYTES: usize = 4 << 20;

    /// The default of
    /// [`upstream_header_timeout`](Self::upstream_header_timeout): 60
    /// seconds, the read timeout nginx applies by default, so an upstream
    /// that works behind nginx works here. Streaming answers (SSE) send
    /// their headers at once however long the call runs; an upstream
    /// answering `application/json` sends them when the call is done, so
    /// one with longer calls needs a longer timeout, or none.
    pub const DEFAULT_UPSTREAM_HEADER_TIMEOUT: Duration = Duration::from_secs(60);

    /// A proxy to `upstream`, with its own connection pool, every setting
    /// at its default. An `https://` upstream's certificate must chain to
    /// the system's root certificates ([`UpstreamTls::system_roots`]; if
    /// none can be loaded, that is logged and every request is answered
    /// `502`) unless [`upstream_tls`](Self::upstream_tls) says otherwise.
    pub fn new(upstream: Upstream) -> Self {
        let tls = if upstream.is_https() {
            UpstreamTls::system_roots().unwrap_or_else(|error| {
                tracing::error!(
                    upstream = %upstream,
                    %error,
                    "no certificate authority to verify the upstream with; every request will be answered 502"
                );
                UpstreamTls::trusting_nothing()
            })
        } else {
            UpstreamTls::trusting_nothing()
        };
        Self {
            upstream: Arc::new(upstream),
            client: upstream_client(&tls),
            request_buffer_bytes: Some(Self::DEFAULT_REQUEST_BUFFER_BYTES),
            upstream_header_timeout: Some(Self::DEFAULT_UPSTREAM_HEADER_TIMEOUT),
            forwarded_headers: ForwardedHeaders::default(),
            trust_forwarded_headers: false,
        }
    }

    /// Request bodies of up to this many bytes are read whole before the
    /// request is sent upstream; a client's body that breaks before its
    /// end is answered `400` and the upstream never sees the request.
    /// Longer bodies stream as they arrive (one that breaks midway is
    /// answered `400` too, but the upstream has seen part of it). `None`
    /// streams every body. Default:
    /// [`DEFAULT_REQUEST_BUFFER_BYTES`](Self::DEFAULT_REQUEST_BUFFER_BYTES).
    pub fn request_buffer_bytes(mut self, bytes: Option<usize>) -> Self {
        self.request_buffer_bytes = bytes;
        self
    }

    /// How long the upstream may take to send its response headers, counted
    /// from when the whole request has been handed to it: past it, the
    /// request is abandoned and the client gets `504 Gateway Timeout`. The
    /// upstream may still be working on it. A response whose headers came
    /// in time streams for as long as it lasts. `None`: no limit. Default:
    /// [`DEFAULT_UPSTREAM_HEADER_TIMEOUT`](Self::DEFAULT_UPSTREAM_HEADER_TIMEOUT).
    pub fn upstream_header_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.upstream_header_timeout = timeout;
        self
    }

    /// Which headers tell the upstream the client's address, the `Host` it
    /// used and its scheme. Default: [`ForwardedHeaders::XForwarded`].
    pub fn forwarded_headers(mut self, which: ForwardedHeaders) -> Self {
        self.forwarded_headers = which;
        self
    }

    /// Whether the `X-Forwarded-*` and `Forwarded` headers a request arrives
    /// with are believed: set it when the proxy is reached only through
    /// another proxy that sets them. Believed, they are kept and extended
    /// (this client's address is appended to `X-Forwarded-For` and
    /// `Forwarded`; `X-Forwarded-Host` and `X-Forwarded-Proto` are set only
    /// when absent). Not believed, they are removed, whatever
    /// [`forwarded_headers`](Self::forwarded_headers) says, and replaced by
    /// what the proxy saw: a client could otherwise claim any address or
    /// name. Default: `false`.
    pub fn trust_forwarded_headers(mut self, trust: bool) -> Self {
        self.trust_forwarded_headers = trust;
        self
    }

    /// Which certificate authorities an `https://` upstream's certificate
    /// must chain to. Default: [`UpstreamTls::system_roots`]. Unused for an
    /// `http://` upstream.
    pub fn upstream_tls(mut self, tls: UpstreamTls) -> Self {
        self.client = upstream_client(&tls);
        self
    }

    /// The upstream this proxy forwards to.
    pub fn upstream(&self) -> &Upstream {
        &self.upstream
    }

    /// The head of the request to send upstream, or why it cannot be
    /// forwarded (the message of a `400`).
    fn upstream_parts(
        &self,
        mut parts: http::request::Parts,
    ) -> Result<http::request::Parts, &'static str> {
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
        let client = forwarded::Client {
            ip: parts
                .extensions
                .get::<ClientAddr>()
                .map(|ClientAddr(addr)| addr.ip()),
            // HTTP/2 clients name the host in `:authority`, not `Host`.
            host: parts.headers.get(header::HOST).cloned().or_else(|| {
                let authority = parts.uri.authority()?;
                header::HeaderValue::from_str(authority.as_str()).ok()
            }),
            proto: if parts.extensions.get::<ArrivedOverTls>().is_some() {
                "https"
            } else {
                "http"
            },
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
        forwarded::set_forwarded(
            &mut parts.headers,
            self.forwarded_headers,
            self.trust_forwarded_headers,
            &client,
        );
        parts
            .headers
            .insert(header::HOST, self.upstream.host_header());
        Ok(parts)
    }

    /// Sends the request upstream and waits for the response's headers.
    async fn forward<B>(self, parts: http::request::Parts, body: B) -> Response<ProxyBody>
    where
        B: Body<Data = Bytes> + Send + 'static,
        B::Error: Into<BoxError>,
    {
        let body = match self.request_buffer_bytes {
            Some(limit) => match request_body::read_up_to(body, limit).await {
                Ok(Read::Whole(body)) => body,
                Ok(Read::Streamed(body)) => {
                    tracing::debug!(
                        limit,
                        "request body longer than the request buffer: streamed"
                    );
                    body
                }
                Err(error) => return unreadable_request(&ErrorChain(&*error), false),
            },
            None => UpstreamBody::streamed(Default::default(), body),
        };
        let progress = body.progress();
        // For the stream's history (the layer takes it from the response).
        let call = body
            .call()
            .or_else(|| crate::store::StreamCall::from_headers(&parts.headers));
        let mut response = self.client.request(Request::from_parts(parts, body));
        let answered = match self.upstream_header_timeout {
            None => Ok(response.await),
            Some(timeout) => {
                // The clock starts once the request is all sent: a slow
                // client's long upload is not the upstream's delay.
                let answered_while_sending = tokio::select! {
                    answered = &mut response => Some(answered),
                    () = progress.sent() => None,
                };
                match answered_while_sending {
                    Some(answered) => Ok(answered),
                    None => tokio::time::timeout(timeout, response)
                        .await
                        .map_err(|_elapsed| timeout),
                }
            }
        };
        match answered {
            Ok(Ok(response)) => {
                let mut response = downstream_response(response);
                if let Some(call) = call {
                    response.extensions_mut().insert(call);
                }
                response
            }
            Ok(Err(error)) => match progress.failure() {
                // The client's body broke while it streamed upstream.
                Some(failure) => unreadable_request(&failure, true),
                None => bad_gateway(&self.upstream, &error),
            },
            Err(timeout) => gateway_timeout(&self.upstream, timeout),
        }
    }
}

impl fmt::Debug for ReverseProxy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReverseProxy")
            .field("upstream", &self.upstream.to_string())
            .field("request_buffer_bytes", &self.request_buffer_bytes)
            .field("upstream_header_timeout", &self.upstream_header_timeout)
            .field("forwarded_headers", &self.forwarded_headers)
            .field("trust_forwarded_headers", &self.trust_forwarded_headers)
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
        let (parts, body) = request.into_parts();
        let answer: Pin<Box<dyn Future<Output = _> + Send>> = match self.upstream_parts(parts) {
            Ok(parts) => Box::pin(self.clone().forward(parts, body)),
            Err(message) => {
                let answer = json_error(StatusCode::BAD_REQUEST, INVALID_REQUEST, message);
                Box::pin(std::future::ready(answer.map(ProxyBody::local)))
            }
        };
        ResponseFuture { answer }
    }
}

/// The future of [`ReverseProxy`]: the upstream's response headers, or the
/// proxy's own answer.
pub struct ResponseFuture {
    answer: Pin<Box<dyn Future<Output = Response<ProxyBody>> + Send>>,
}

impl fmt::Debug for ResponseFuture {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}

impl Future for ResponseFuture {
    type Output = Result<Response<ProxyBody>, Infallible>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.answer.as_mut().poll(cx).map(Ok)
    }
}

/// The upstream's response as the client gets it: the same status, the
/// end-to-end headers, and the body streamed as it arrives.
fn downstream_response(response: Response<Incoming>) -> Response<ProxyBody> {
    let (mut parts, body) = response.into_parts();
    remove_hop_by_hop(&mut parts.headers);
    Response::from_parts(parts, ProxyBody::upstream(body))
}

/// `400 Bad Request` for a request body the client broke (bad framing, cut
/// short): the client's fault, logged as such. `partly_sent`: part of it
/// had already gone upstream.
fn unreadable_request(error: &dyn fmt::Display, partly_sent: bool) -> Response<ProxyBody> {
    let forwarded = if partly_sent {
        "after part of it was forwarded upstream"
    } else {
        "before anything was forwarded upstream"
    };
    tracing::info!(
        %error,
        "the client's request body broke {forwarded}; answered 400"
    );
    let message = format!("Bad Request: the request body could not be read: {error}");
    json_error(StatusCode::BAD_REQUEST, INVALID_REQUEST, &message).map(ProxyBody::local)
}

/// `502 Bad Gateway` for an upstream that could not be reached or failed
/// before answering. The client learns which upstream; the log gets why.
fn bad_gateway(upstream: &Upstream, error: &legacy::Error) -> Response<ProxyBody> {
    let (what, kind) = match tls::handshake_failure(error) {
        Some(why) => (format!("cannot be reached securely: {why}"), "tls"),
        None if error.is_connect() => ("cannot be reached".to_owned(), "connect"),
        None => ("failed before answering".to_owned(), "failed"),
    };
    crate::metrics::record::proxy_upstream_error(kind);
    tracing::warn!(
        upstream = %upstream,
        error = %ErrorChain(error),
        "upstream MCP server {what}; answered 502"
    );
    let message = format!("Bad Gateway: the upstream MCP server {upstream} {what}");
    json_error(StatusCode::BAD_GATEWAY, INTERNAL_ERROR, &message).map(ProxyBody::local)
}

/// `504 Gateway Timeout` for an upstream that sent no response headers
/// within `timeout`.
fn gateway_timeout(upstream: &Upstream, timeout: Duration) -> Response<ProxyBody> {
    crate::metrics::record::proxy_upstream_error("timeout");
    tracing::warn!(
        upstream = %upstream,
        ?timeout,
        "upstream MCP server sent no response headers in time; abandoned the request and answered 504"
    );
    let message = format!(
        "Gateway Timeout: the upstream MCP server {upstream} did not answer within {timeout:?}"
    );
    json_error(StatusCode::GATEWAY_TIMEOUT, INTERNAL_ERROR, &message).map(ProxyBody::local)
}

/// The pooled HTTP/1.1 client to the upstream: plain for `http://`, TLS
/// verified by `tls` for `https://`.
fn upstream_client(tls: &UpstreamTls) -> Client<HttpsConnector<HttpConnector>, UpstreamBody> {
    let mut connector = HttpConnector::new();
    connector.set_connect_timeout(Some(ReverseProxy::CONNECT_TIMEOUT));
    // SSE events are small writes that must not wait for Nagle's algorithm.
    connector.set_nodelay(true);
    // The TLS connector below takes `https://` URLs through this one.
    connector.enforce_http(false);
    // The scheme comes from the upstream's URL, never from a request: an
    // `https://` upstream is never reached without TLS.
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls.client_config())
        .https_or_http()
        .enable_http1()
        .wrap_connector(connector);
    Client::builder(TokioExecutor::new())
        // We set `Host` ourselves, from the upstream.
        .set_host(false)
        .build(connector)
}
