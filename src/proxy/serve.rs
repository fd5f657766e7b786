//! [`serve`]: an HTTP/1.1 and h2c server for a tower service, with graceful
//! shutdown.

use std::future::Future;
use std::io;
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
use tokio::task::JoinSet;
use tower::Service;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// How long a client may take to send a request's headers. Bounds what a
/// slow or idle client can hold; bodies and responses have no such limit.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// How long to wait before accepting again after an error that is not one
/// connection's (out of file descriptors): retrying at once would spin.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(250);

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
/// gracefully.
///
/// Clients may speak HTTP/1.1 or HTTP/2 over cleartext with prior knowledge
/// (h2c); the protocol is detected per connection. When `signal` resolves
/// the server stops accepting (the listener is dropped), asks every
/// connection to finish (HTTP/1.1 connections close after their current
/// response, HTTP/2 ones get a `GOAWAY` and finish their open streams), and
/// waits up to `grace_period` for them. Connections still open after that are
/// closed. Then it returns: flush and close what the service writes to (the
/// event store) after this.
///
/// ```no_run
/// use std::sync::Arc;
/// use std::time::Duration;
/// use mcp_resume::ResumabilityLayer;
/// use mcp_resume::proxy::{ReverseProxy, serve};
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
/// serve(listener, service, ctrl_c, Duration::from_secs(10)).await;
/// store.flush().await?;
/// store.close().await?;
/// # Ok(())
/// # }
/// ```
pub async fn serve<S, B>(
    listener: TcpListener,
    service: S,
    signal: impl Future<Output = ()>,
    grace_period: Duration,
) -> Shutdown
where
    S: Service<Request<Incoming>, Response = Response<B>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT);
    builder.http2().timer(TokioTimer::new());

    let graceful = GracefulShutdown::new();
    // Every connection's task, so that those still open after the grace
    // period can be closed. Finished ones are reaped as the loop goes.
    let mut connections = JoinSet::new();
    let mut signal = std::pin::pin!(signal);
    loop {
        tokio::select! {
            () = &mut signal => break,
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    // SSE events are small writes that must not wait for Nagle's algorithm.
                    if let Err(error) = stream.set_nodelay(true) {
                        tracing::debug!(%peer, %error, "cannot set TCP_NODELAY");
                    }
                    let service = TowerToHyperService::new(service.clone());
                    let connection = builder
                        .serve_connection(TokioIo::new(stream), service)
                        .into_owned();
                    let connection = graceful.watch(connection);
                    connections.spawn(async move {
                        if let Err(error) = connection.await {
                            tracing::debug!(%peer, error, "connection ended with an error");
                        }
                    });
                }
                Err(error) if is_connection_error(&error) => {
                    tracing::debug!(%error, "connection failed before it was accepted");
                }
                Err(error) => {
                    tracing::error!(%error, "cannot accept connections; retrying");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                }
            },
        }
    }

    drop(listener);
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
