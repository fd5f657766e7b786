//! The streaming reverse proxy: [`ResumabilityLayer`](crate::ResumabilityLayer)
//! in front of any MCP server, in any language, with no change to it.
//!
//! - [`ReverseProxy`]: a tower service that forwards requests to an
//!   [`Upstream`] MCP server and streams its answers back frame by frame,
//!   telling the upstream who the client is ([`ForwardedHeaders`]).
//! - [`RebindingGuardLayer`]: DNS-rebinding protection, refusing requests
//!   whose `Host` or `Origin` is not a loopback or allowed name.
//! - [`serve`]: serves a tower service over HTTP/1.1 and h2c, with a
//!   connection cap and graceful shutdown ([`ServeOptions`]);
//!   [`serve_tls`] does the same over TLS, HTTP/2 chosen by ALPN, with a
//!   certificate reloaded when its files change ([`ListenerTls`]).
//! - [`UpstreamTls`]: which certificate authorities an `https://`
//!   upstream's certificate must chain to.
//! - [`DEFAULT_IDENTITY_HEADER`] and
//!   [`DEFAULT_AUTHORIZE_RESUMES_WITH_UPSTREAM`]: who the caller is, by
//!   default, and whether the upstream is asked before a resume is served.
//!
//! This is what the `mcp-resume proxy` command runs:
//!
//! ```no_run
//! use std::sync::Arc;
//! use std::time::Duration;
//! use mcp_resume::ResumabilityLayer;
//! use mcp_resume::proxy::{
//!     DEFAULT_AUTHORIZE_RESUMES_WITH_UPSTREAM, DEFAULT_IDENTITY_HEADER, DEFAULT_LISTEN_ADDR,
//!     RebindingGuardLayer, ReverseProxy, ServeOptions, Upstream, serve,
//! };
//! use mcp_resume::store::{EventStore, MemoryEventStore};
//! use tokio::net::TcpListener;
//! use tower::Layer;
//!
//! # #[tokio::main]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let upstream: Upstream = "http://127.0.0.1:8000/mcp".parse()?;
//! // The command opens `SqliteEventStore` here (`--store sqlite:PATH`).
//! let store: Arc<dyn EventStore> = Arc::new(MemoryEventStore::new());
//! // Streams are bound to the caller's token, and the upstream, whose
//! // authentication sits behind the layer, is asked before a resume is served.
//! let layer = ResumabilityLayer::new(store.clone())
//!     .identity_header(DEFAULT_IDENTITY_HEADER)
//!     .authorize_resumes_with_service(DEFAULT_AUTHORIZE_RESUMES_WITH_UPSTREAM);
//! let service = layer.layer(ReverseProxy::new(upstream));
//! // Outermost: a refused request reaches neither the store nor the upstream.
//! let service = RebindingGuardLayer::for_listener(DEFAULT_LISTEN_ADDR.ip()).layer(service);
//!
//! // Clients now use http://127.0.0.1:8080/mcp.
//! let listener = TcpListener::bind(DEFAULT_LISTEN_ADDR).await?;
//! let ctrl_c = async {
//!     let _ = tokio::signal::ctrl_c().await;
//! };
//! let options = ServeOptions::new().grace_period(Duration::from_secs(30));
//! serve(listener, service, ctrl_c, options).await;
//! store.flush().await?;
//! store.close().await?;
//! # Ok(())
//! # }
//! ```
//!
//! The layer goes in front of the proxy, so it sees the upstream's SSE
//! streams as they are produced and answers resumes itself; the upstream
//! never sees a `Last-Event-ID` it could not serve.

mod answer;
mod body;
mod forward;
mod forwarded;
mod headers;
mod identity;
mod rebinding;
mod request_body;
mod serve;
mod tls;
mod upstream;

pub use body::ProxyBody;
pub use forward::{ResponseFuture, ReverseProxy};
pub use forwarded::{ClientAddr, ForwardedHeaders};
pub use identity::{DEFAULT_AUTHORIZE_RESUMES_WITH_UPSTREAM, DEFAULT_IDENTITY_HEADER};
pub use rebinding::{
    AllowedHost, AllowedOrigin, InvalidAllowList, RebindingGuard, RebindingGuardFuture,
    RebindingGuardLayer,
};
pub use serve::{DEFAULT_LISTEN_ADDR, ServeOptions, Shutdown, serve, serve_tls};
pub use tls::{ListenerTls, TlsConfigError, UpstreamTls};
pub use upstream::{InvalidUpstream, Upstream};
