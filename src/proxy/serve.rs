//! [`serve`]: an HTTP/1.1 and h2c server for a tower service, with graceful
//! shutdown.

use std::future::Future;
use std::io;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body::Body;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::Notify;
use tokio::task::JoinSet;
use tower::Service;

use tower::BoxError;

use super::forwarded::ClientAddr;
use super::tls::{ArrivedOverTls, ListenerTls};

/// The address the `mcp-resume` command serves on unless told otherwise
/// (`--listen`): `127.0.0.1:8080`, loopback only, so nothing is reachable
/// from other machines until asked for.
pub const DEFAULT_LISTEN_ADDR: SocketAddr =
    SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 8080));

/// How long to wait before accepting again after an error that is not one
/// connection's (out of file descriptors): retrying at once would spin.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(250);

/// The least time between two warnings of the same kind from the accept
/// loop (connection cap reached, out of file descriptors): each lasts as
/// long as the load does, and would otherwise be logged at every turn.
const WARNING_INTERVAL: Duration = Duration::from_secs(60);

/// Lets a repeating warning through at most once per [`WARNING_INTERVAL`].
#[derive(Default)]
struct Throttle {
    last: Option<std::time::Instant>,
}

impl Throttle {
    /// Whether to log now; if so, the next one waits an interval.
    fn ready(&mut self) -> bool {
        let ready = self.last.is_none_or(|at| at.elapsed() >= WARNING_INTERVAL);
        if ready {
            self.last = Some(std::time::Instant::now());
        }
        ready
    }
}

/// How [`serve`] serves: its limits and its shutdown. Each setting starts at
/// its `DEFAULT_*` constant.
///
/// ```
/// use std::time::Duration;
/// use mcp_resume::proxy::ServeOptions;
///
/// let options = ServeOptions::new()
///     .grace_period(Duration::from_secs(30))
///     .max_connections(2_000);
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServeOptions {
    grace_period: Duration,
    max_connections: usize,
    header_read_timeout: Duration,
}

impl ServeOptions {
    /// The default of [`grace_period`](Self::grace_period): 10 seconds.
    pub const DEFAULT_GRACE_PERIOD: Duration = Duration::from_secs(10);
    /// The default of [`max_connections`](Self::max_connections): 10,000.
    pub const DEFAULT_MAX_CONNECTIONS: usize = 10_000;
    /// The default of [`header_read_timeout`](Self::header_read_timeout): 30 seconds.
    pub const DEFAULT_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);

    /// Every setting at its default.
    pub fn new() -> Self {
        Self::default()
    }

    /// Once the shutdown signal came, how long open connections may take to
    /// finish before they are closed. Default:
    /// [`DEFAULT_GRACE_PERIOD`](Self::DEFAULT_GRACE_PERIOD).
    pub fn grace_period(mut self, grace_period: Duration) -> Self {
        self.grace_period = grace_period;
        self
    }

    /// The most connections open at once. At the cap the server stops
    /// accepting until one closes: new clients wait in the listener's
    /// backlog (the operating system's queue of connections not yet
    /// accepted), and what that queue cannot hold is refused by the
    /// operating system. Each connection holds a file descriptor (and a
    /// proxied one a second, to the upstream), so the process's descriptor
    /// limit (`ulimit -n`) should allow for twice this many. Default:
    /// [`DEFAULT_MAX_CONNECTIONS`](Self::DEFAULT_MAX_CONNECTIONS). Values
    /// below 1 are treated as 1.
    pub fn max_connections(mut self, max: usize) -> Self {
        self.max_connections = max.max(1);
        self
    }

    /// How long a client may take to send its first request's head once
    /// connected, and then (HTTP/1.1) each later request's headers. Bounds
    /// what a slow or idle client can hold; bodies and responses have no such
    /// limit. Default:
    /// [`DEFAULT_HEADER_READ_TIMEOUT`](Self::DEFAULT_HEADER_READ_TIMEOUT).
    pub fn header_read_timeout(mut self, timeout: Duration) -> Self {
        self.header_read_timeout = timeout;
        self
    }
}

impl Default for ServeOptions {
    /// Every setting at its `DEFAULT_*` constant.
    fn default() -> Self {
        Self {
            grace_period: Self::DEFAULT_GRACE_PERIOD,
            max_connections: Self::DEFAULT_MAX_CONNECTIONS,
            header_read_timeout: Self::DEFAULT_HEADER_READ_TIMEOUT,
        }
    }
}

/// How [`serve`] ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Shutdown {
    /// Every connection finished within the grace period.
    Drained,
    /// The grace period ran out; this many connections were still open and
    /// were closed.
    GracePeriodElapsed {
        /// The connections closed at the end of the grace period.
        connections: usize,
    },
}

/// Serves `service` on `listener` until `signal` resolves, then shuts down
/// gracefully; `options` sets the limits ([`ServeOptions`]).
///
/// Clients may speak HTTP/1.1 or HTTP/2 over cleartext with prior knowledge
/// (h2c); the protocol is detected per connection. Each request carries its
/// client's address in its extensions ([`ClientAddr`]). A connection whose first
/// request has not arrived within the header timeout
/// ([`ServeOptions::header_read_timeout`]) of being accepted (it sent nothing, part of a request, part of the HTTP/2
/// preface) is closed, and so is an HTTP/1.1 connection taking longer for a
/// later request's headers. With [`ServeOptions::max_connections`] open, no
/// more are accepted until one closes; a process out of file descriptors
/// before that retries every 250 ms, and says which limit to raise (at most
/// once a minute, as for the cap). When `signal` resolves
/// the server stops accepting (the listener is dropped), asks every
/// connection to finish (HTTP/1.1 connections close after their current
/// response, HTTP/2 ones get a `GOAWAY` and finish their open streams), and
/// waits up to the grace period for them. Connections still open after that
/// are closed. Then it returns: flush and close what the service writes to
/// (the event store) after this.
///
/// ```no_run
/// use std::sync::Arc;
/// use std::time::Duration;
/// use mcp_resume::ResumabilityLayer;
/// use mcp_resume::proxy::{ReverseProxy, ServeOptions, serve};
/// use mcp_resume::store::{EventStore, MemoryEventStore};
/// use tokio::net::TcpListener;
/// use tower::Layer;
///
/// # #[tokio::main]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let store: Arc<dyn EventStore> = Arc::new(MemoryEventStore::new());
/// let service = ResumabilityLayer::new(store.clone())
///     .layer(ReverseProxy::new("http://127.0.0.1:8000/mcp".parse()?));
/// let listener = TcpListener::bind("127.0.0.1:8080").await?;
/// let ctrl_c = async {
///     let _ = tokio::signal::ctrl_c().await;
/// };
/// let options = ServeOptions::new().grace_period(Duration::from_secs(30));
/// serve(listener, service, ctrl_c, options).await;
/// store.flush().await?;
/// store.close().await?;
/// # Ok(())
/// # }
/// ```
pub async fn serve<S, B>(
    listener: TcpListener,
    service: S,
    signal: impl Future<Output = ()>,
    options: ServeOptions,
) -> Shutdown
where
    S: Service<Request<Incoming>, Response = Response<B>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    serve_connections(listener, None, service, signal, options).await
}

/// [`serve`] over TLS: each connection starts with a TLS handshake using
/// `tls`'s current certificate, and the client chooses HTTP/2 or HTTP/1.1
/// by ALPN. The handshake counts against the first request's deadline
/// ([`ServeOptions::header_read_timeout`]); a failed one closes the
/// connection (logged at debug level: it is the client's doing). Requests
/// are told they arrived over TLS, so [`ReverseProxy`](super::ReverseProxy)
/// forwards `X-Forwarded-Proto: https`. Everything else is as for [`serve`].
///
/// ```no_run
/// use std::time::Duration;
/// use mcp_resume::proxy::{ListenerTls, ReverseProxy, ServeOptions, serve_tls};
/// use tokio::net::TcpListener;
///
/// # #[tokio::main]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let service = ReverseProxy::new("http://127.0.0.1:8000/mcp".parse()?);
/// let tls = ListenerTls::from_pem_files("cert.pem", "key.pem")?;
/// // New connections get the new certificate once the files change.
/// let _reloads = tls.reload_when_changed(ListenerTls::DEFAULT_RELOAD_INTERVAL);
/// let listener = TcpListener::bind("127.0.0.1:8443").await?;
/// serve_tls(listener, tls, service, std::future::pending(), ServeOptions::new()).await;
/// # Ok(())
/// # }
/// ```
pub async fn serve_tls<S, B>(
    listener: TcpListener,
    tls: ListenerTls,
    service: S,
    signal: impl Future<Output = ()>,
    options: ServeOptions,
) -> Shutdown
where
    S: Service<Request<Incoming>, Response = Response<B>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    serve_connections(listener, Some(tls), service, signal, options).await
}

/// [`serve`] and [`serve_tls`]: cleartext when `tls` is `None`.
async fn serve_connections<S, B>(
    listener: TcpListener,
    tls: Option<ListenerTls>,
    service: S,
    signal: impl Future<Output = ()>,
    options: ServeOptions,
) -> Shutdown
where
    S: Service<Request<Incoming>, Response = Response<B>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    let ServeOptions {
        grace_period,
        max_connections,
        header_read_timeout,
    } = options;
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(header_read_timeout);
    builder.http2().timer(TokioTimer::new());

    let graceful = GracefulShutdown::new();
    // Dropped when the shutdown starts: TLS handshakes still under way are
    // abandoned rather than holding the shutdown up.
    let (stop_handshakes, handshakes_stopped) = tokio::sync::watch::channel(());
    // Every connection's task, so that those still open after the grace
    // period can be closed. Finished ones are reaped as the loop goes.
    let mut connections = JoinSet::new();
    let mut signal = std::pin::pin!(signal);
    // Both states last as long as the load does: said once a minute.
    let mut cap_warning = Throttle::default();
    let mut descriptors_warning = Throttle::default();
    loop {
        // Finished connections are reaped (below) as they end, so this is
        // the number open, give or take one that ended since the last reap.
        let full = connections.len() >= max_connections;
        if full && cap_warning.ready() {
            tracing::warn!(
                max_connections,
                "connection cap reached: not accepting until a connection closes"
            );
        }
        tokio::select! {
            () = &mut signal => break,
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            accepted = listener.accept(), if !full => match accepted {
                Ok((stream, peer)) => {
                    // SSE events are small writes that must not wait for Nagle's algorithm.
                    if let Err(error) = stream.set_nodelay(true) {
                        tracing::debug!(%peer, %error, "cannot set TCP_NODELAY");
                    }
                    let open = crate::metrics::record::ProxyConnection::opened();
                    let first_request = Arc::new(Notify::new());
                    let service = NoteRequests {
                        inner: TowerToHyperService::new(service.clone()),
                        arrived: first_request.clone(),
                        client: ClientAddr(peer),
                        over_tls: tls.is_some(),
                    };
                    // One deadline from the accept to the first request:
                    // hyper's own header timeout only starts once it has
                    // told HTTP/1.1 from HTTP/2, so a client that sent
                    // nothing, or part of the HTTP/2 preface, would be
                    // held for good, and HTTP/2 has no such timeout.
                    let deadline = tokio::time::sleep(header_read_timeout);
                    let Some(tls) = tls.clone() else {
                        let connection = builder
                            .serve_connection(TokioIo::new(stream), service)
                            .into_owned();
                        let connection = graceful.watch(connection);
                        connections.spawn(async move {
                            let _open = open;
                            until_first_request(connection, first_request, deadline, peer).await;
                        });
                        continue;
                    };
                    let builder = builder.clone();
                    let watcher = graceful.watcher();
                    let mut handshakes_stopped = handshakes_stopped.clone();
                    connections.spawn(async move {
                        let _open = open;
                        let mut deadline = std::pin::pin!(deadline);
                        let stream = tokio::select! {
                            accepted = tls.accept(stream) => match accepted {
                                Ok(stream) => stream,
                                Err(error) => {
                                    tracing::debug!(%peer, %error, "TLS handshake failed; closing the connection");
                                    return;
                                }
                            },
                            () = &mut deadline => {
                                tracing::debug!(%peer, "no TLS handshake within the header timeout; closing the connection");
                                return;
                            }
                            _ = handshakes_stopped.changed() => return,
                        };
                        let connection = builder
                            .serve_connection(TokioIo::new(stream), service)
                            .into_owned();
                        let connection = watcher.watch(connection);
                        until_first_request(connection, first_request, deadline, peer).await;
                    });
                }
                Err(error) if is_connection_error(&error) => {
                    tracing::debug!(%error, "connection failed before it was accepted");
                }
                Err(error) => {
                    if !is_out_of_descriptors(&error) {
                        tracing::error!(%error, "cannot accept connections; retrying");
                    } else if descriptors_warning.ready() {
                        tracing::error!(
                            %error,
                            open = connections.len(),
                            max_connections,
                            "out of file descriptors: not accepting until a connection closes; \
                             raise the limit (ulimit -n) to twice max_connections, or lower max_connections"
                        );
                    }
                    // Retrying at once would spin; a shutdown meanwhile
                    // is not kept waiting for the retry.
                    tokio::select! {
                        () = &mut signal => break,
                        () = tokio::time::sleep(ACCEPT_BACKOFF) => {}
                    }
                }
            },
        }
    }

    drop(listener);
    drop(stop_handshakes);
    // `len` counts finished tasks not yet joined: reap them first.
    while connections.try_join_next().is_some() {}
    let open = connections.len();
    tracing::info!(
        connections = open,
        grace_period = ?grace_period,
        "shutting down: no longer accepting; letting open connections finish"
    );
    match tokio::time::timeout(grace_period, graceful.shutdown()).await {
        Ok(()) => Shutdown::Drained,
        Err(_) => {
            while connections.try_join_next().is_some() {}
            let connections_left = connections.len();
            connections.shutdown().await;
            Shutdown::GracePeriodElapsed {
                connections: connections_left,
            }
        }
    }
}

/// Runs a connection, closing it if its first request has not arrived when
/// `deadline` does.
async fn until_first_request<C>(
    connection: C,
    first_request: Arc<Notify>,
    deadline: impl Future<Output = ()>,
    peer: SocketAddr,
) where
    C: Future<Output = Result<(), BoxError>>,
{
    let mut connection = std::pin::pin!(connection);
    let ended = tokio::select! {
        ended = &mut connection => ended,
        () = first_request.notified() => connection.await,
        () = deadline => {
            tracing::debug!(%peer, "no request within the header timeout; closing the connection");
            return;
        }
    };
    if let Err(error) = ended {
        tracing::debug!(%peer, error, "connection ended with an error");
    }
}

/// The connection's service, noting that a request has arrived (its head
/// has been read), which ends the connection's first-request deadline, and
/// telling the service where the request came from ([`ClientAddr`]).
struct NoteRequests<S> {
    inner: S,
    arrived: Arc<Notify>,
    client: ClientAddr,
    /// The connection is TLS: requests carry [`ArrivedOverTls`].
    over_tls: bool,
}

impl<S, B> hyper::service::Service<Request<B>> for NoteRequests<S>
where
    S: hyper::service::Service<Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn call(&self, mut request: Request<B>) -> Self::Future {
        // A stored permit: seen even if the connection's task is not waiting yet.
        self.arrived.notify_one();
        request.extensions_mut().insert(self.client);
        if self.over_tls {
            request.extensions_mut().insert(ArrivedOverTls);
        }
        self.inner.call(request)
    }
}

/// Whether an `accept` error concerns one connection only (the peer gave up
/// before it was accepted), as opposed to the listener (out of descriptors).
fn is_connection_error(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    )
}

/// Whether an `accept` error is the process (`EMFILE`) or the system
/// (`ENFILE`) out of file descriptors: a limit to raise, not a fault.
fn is_out_of_descriptors(error: &io::Error) -> bool {
    // Linux and the BSDs, macOS included, agree on both numbers.
    matches!(error.raw_os_error(), Some(23 | 24)) && cfg!(unix)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    async fn start(header_read_timeout: Duration) -> std::net::SocketAddr {
        let options = ServeOptions::new().header_read_timeout(header_read_timeout);
        start_stoppable(options, std::future::pending()).await.0
    }

    async fn start_stoppable(
        options: ServeOptions,
        signal: impl Future<Output = ()> + Send + 'static,
    ) -> (std::net::SocketAddr, tokio::task::JoinHandle<Shutdown>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let service = tower::service_fn(|_: Request<Incoming>| async {
            Ok::<_, std::convert::Infallible>(Response::new(http_body_util::Full::new(
                Bytes::from_static(b"ok"),
            )))
        });
        let served = tokio::spawn(serve(
            listener,
            service,
            signal,
            options.grace_period(Duration::from_secs(30)),
        ));
        (addr, served)
    }

    /// Reads until the server closes the connection (a reset counts); what it sent.
    async fn read_to_close(stream: &mut tokio::net::TcpStream) -> Vec<u8> {
        let mut got = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut got))
            .await
            .expect("the server closes the connection");
        if let Err(error) = read {
            assert_eq!(error.kind(), io::ErrorKind::ConnectionReset, "{error}");
        }
        got
    }

    /// A client sends `sent` and stops: the server closes the connection,
    /// and not before the timeout. What the server sent.
    async fn closed_after_timeout(sent: &[u8]) -> Vec<u8> {
        let timeout = Duration::from_millis(200);
        let addr = start(timeout).await;
        let connected = std::time::Instant::now();
        let mut client = tokio::net::TcpStream::connect(addr).await.unwrap();
        client.write_all(sent).await.unwrap();
        let answer = read_to_close(&mut client).await;
        assert!(
            connected.elapsed() >= timeout,
            "closed after {:?}",
            connected.elapsed()
        );
        answer
    }

    #[tokio::test]
    async fn a_connection_that_sends_nothing_is_closed_after_the_header_timeout() {
        assert!(closed_after_timeout(b"").await.is_empty());
    }

    #[tokio::test]
    async fn a_connection_stalled_inside_the_http2_preface_is_closed() {
        // hyper-util reads the preface to choose the protocol, with no timeout of its own.
        assert!(closed_after_timeout(b"PRI * HTTP/2.0\r\n").await.is_empty());
    }

    #[tokio::test]
    async fn an_http2_connection_that_sends_no_request_is_closed() {
        // The server's SETTINGS come first; then the connection is closed.
        closed_after_timeout(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n").await;
    }

    #[tokio::test]
    async fn a_connection_yet_to_send_a_request_does_not_hold_the_shutdown() {
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let options = ServeOptions::new().header_read_timeout(Duration::from_secs(60));
        let (addr, served) = start_stoppable(options, async {
            let _ = stopped.await;
        })
        .await;
        let mut idle = tokio::net::TcpStream::connect(addr).await.unwrap();
        idle.write_all(b"PRI * HTTP").await.unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
        stop.send(()).unwrap();
        let shutdown = tokio::time::timeout(Duration::from_secs(5), served)
            .await
            .expect("the shutdown does not wait for the idle connection")
            .unwrap();
        assert_eq!(shutdown, Shutdown::Drained);
        assert!(read_to_close(&mut idle).await.is_empty());
    }

    #[tokio::test]
    async fn a_request_within_the_timeout_is_served() {
        let addr = start(Duration::from_millis(500)).await;
        let mut client = tokio::net::TcpStream::connect(addr).await.unwrap();
        client
            .write_all(b"GET / HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
            .await
            .unwrap();
        let response = String::from_utf8(read_to_close(&mut client).await).unwrap();
        assert!(response.starts_with("HTTP/1.1 200"), "{response}");
        assert!(response.ends_with("ok"), "{response}");
    }

    #[tokio::test]
    async fn a_keep_alive_connection_outlives_the_first_request_deadline() {
        // Each wait is under the timeout (hyper's, between requests); together
        // they pass it (the first-request deadline).
        let timeout = Duration::from_millis(500);
        let addr = start(timeout).await;
        let mut client = tokio::net::TcpStream::connect(addr).await.unwrap();
        let mut buf = [0u8; 1024];
        for _ in 0..2 {
            tokio::time::sleep(timeout * 3 / 5).await;
            client
                .write_all(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n")
                .await
                .unwrap();
            let n = client.read(&mut buf).await.unwrap();
            assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
        }
    }

    /// The start of an answer read on `client`, or `None` if none came
    /// within `within`.
    async fn answer_within(client: &mut tokio::net::TcpStream, within: Duration) -> Option<String> {
        let mut buf = [0u8; 1024];
        tokio::time::timeout(within, client.read(&mut buf))
            .await
            .ok()
            .map(|read| String::from_utf8_lossy(&buf[..read.unwrap()]).into_owned())
    }

    #[tokio::test]
    async fn past_the_connection_cap_a_client_waits_until_a_connection_closes() {
        let options = ServeOptions::new().max_connections(2);
        let (addr, _served) = start_stoppable(options, std::future::pending()).await;
        let request = b"GET / HTTP/1.1\r\nhost: x\r\n\r\n";
        let mut open = Vec::new();
        for _ in 0..2 {
            let mut client = tokio::net::TcpStream::connect(addr).await.unwrap();
            client.write_all(request).await.unwrap();
            let answer = answer_within(&mut client, Duration::from_secs(5)).await;
            assert!(answer.is_some_and(|a| a.starts_with("HTTP/1.1 200")));
            open.push(client);
        }
        // Connected (the backlog holds it) but not accepted: no answer.
        let mut third = tokio::net::TcpStream::connect(addr).await.unwrap();
        third.write_all(request).await.unwrap();
        let early = answer_within(&mut third, Duration::from_millis(300)).await;
        assert!(early.is_none(), "answered past the cap: {early:?}");
        // One closes: the waiting client is accepted and served.
        drop(open.pop());
        let answer = answer_within(&mut third, Duration::from_secs(5)).await;
        assert!(
            answer
                .as_deref()
                .is_some_and(|a| a.starts_with("HTTP/1.1 200")),
            "{answer:?}"
        );
    }
}
