//! Serving until SIGINT or SIGTERM, then shutting down gracefully.

use bytes::Bytes;
use http::{Request, Response};
use http_body::Body;
use hyper::body::Incoming;
use mcp_resume::proxy::{ListenerTls, Shutdown};
use tokio::net::TcpListener;
use tower::{BoxError, Service};

use crate::cli::Options;

/// Serves (over TLS when `tls` is given) until the first SIGINT/SIGTERM,
/// then shuts down gracefully; a second signal stops waiting for streams
/// at once.
pub async fn serve_until_signalled<S, B>(
    listener: TcpListener,
    tls: Option<ListenerTls>,
    service: S,
    mut signals: Signals,
    options: &Options,
) where
    S: Service<Request<Incoming>, Response = Response<B>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    let grace = options.grace_period();
    let (first_tx, first_rx) = tokio::sync::oneshot::channel::<()>();
    let watch_signals = async move {
        let signal = signals.recv().await;
        tracing::info!(
            "{signal}: shutting down; streams have {grace:?} to finish (send it again to stop now)"
        );
        let _ = first_tx.send(());
        let signal = signals.recv().await;
        tracing::warn!("{signal} again: not waiting for open streams");
    };
    let shutdown = async {
        // An error means the watcher is gone, which only happens with us.
        let _ = first_rx.await;
    };
    let serve_options = options.serve_options();
    let served = async move {
        match tls {
            Some(tls) => {
                mcp_resume::proxy::serve_tls(listener, tls, service, shutdown, serve_options).await
            }
            None => mcp_resume::proxy::serve(listener, service, shutdown, serve_options).await,
        }
    };
    tokio::select! {
        outcome = served => match outcome {
            Shutdown::Drained => tracing::info!("every connection finished"),
            Shutdown::GracePeriodElapsed { connections } => tracing::warn!(
                connections,
                "grace period over: closed the connections still open; their streams can be resumed after a restart"
            ),
            _ => {}
        },
        () = watch_signals => {}
    }
}

/// SIGINT and SIGTERM (Ctrl-C only, off Unix).
pub struct Signals {
    #[cfg(unix)]
    interrupt: tokio::signal::unix::Signal,
    #[cfg(unix)]
    terminate: tokio::signal::unix::Signal,
}

impl Signals {
    /// Starts catching the signals: from here on they no longer kill the process.
    pub fn install() -> std::io::Result<Self> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            Ok(Self {
                interrupt: signal(SignalKind::interrupt())?,
                terminate: signal(SignalKind::terminate())?,
            })
        }
        #[cfg(not(unix))]
        {
            Ok(Self {})
        }
    }

    /// The next signal's name.
    async fn recv(&mut self) -> &'static str {
        #[cfg(unix)]
        {
            tokio::select! {
                _ = self.interrupt.recv() => "SIGINT",
                _ = self.terminate.recv() => "SIGTERM",
            }
        }
        #[cfg(not(unix))]
        {
            match tokio::signal::ctrl_c().await {
                Ok(()) => "Ctrl-C",
                Err(_) => std::future::pending().await,
            }
        }
    }
}
