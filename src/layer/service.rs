//! [`Resumability`]: the middleware service.

use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{Method, Request, Response};
use http_body::Body;
use tower::Service;

use super::body::ResponseBody;
use super::config::{Config, StoreFailurePolicy};
use super::future::ResponseFuture;
use super::open::Exchange;
use super::protocol::{self, LAST_EVENT_ID, MCP_SESSION_ID, ResumableVersion};
use super::resume::resume;
use super::shared::Shared;

/// Makes the wrapped MCP service resumable. Created by
/// [`ResumabilityLayer`](super::ResumabilityLayer); see the
/// [module documentation](super) for what it does.
#[derive(Clone)]
pub struct Resumability<S> {
    inner: S,
    config: Arc<Config>,
    shared: Arc<Shared>,
}

impl<S> Resumability<S> {
    pub(crate) fn new(inner: S, config: Arc<Config>, shared: Arc<Shared>) -> Self {
        Self {
            inner,
            config,
            shared,
        }
    }

    /// The wrapped service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The wrapped service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Unwraps the service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S> std::fmt::Debug for Resumability<S>
where
    S: std::fmt::Debug,
{
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Resumability")
            .field("inner", &self.inner)
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl<S, ReqB, ResB> Service<Request<ReqB>> for Resumability<S>
where
    S: Service<Request<ReqB>, Response = Response<ResB>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    ReqB: Send + 'static,
    ResB: Body<Data = Bytes> + Send + 'static,
    ResB::Error: Into<tower::BoxError>,
{
    type Response = Response<ResponseBody<ResB>>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future, ResB, S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ReqB>) -> Self::Future {
        let Some(version) = ResumableVersion::of(request.headers()) else {
            // A version without resumability: not one byte changes.
            return ResponseFuture::passthrough(self.inner.call(request));
        };
        if request.method() == Method::GET && request.headers().contains_key(&LAST_EVENT_ID) {
            // The layer answers resumes itself. It takes the service that was
            // polled ready, in case the replay continues into a fresh stream.
            let clone = self.inner.clone();
            let inner = std::mem::replace(&mut self.inner, clone);
            return ResponseFuture::working(Box::pin(resume(
                inner,
                request,
                version,
                self.config.clone(),
                self.shared.clone(),
            )));
        }
        if self.config.on_store_failure == StoreFailurePolicy::FailClosed
            && (request.method() == Method::POST || request.method() == Method::GET)
            && !self.shared.admits_under_fail_closed()
        {
            // Refused before the service sees it: a 503 is only ever
            // answered for a request that has not been acted on.
            tracing::warn!(
                "event store is failing; refusing a request that may open a stream (fail closed)"
            );
            return ResponseFuture::answered(protocol::unavailable().map(ResponseBody::full));
        }
        let (parts, body) = request.into_parts();
        let exchange = Exchange {
            method: parts.method.clone(),
            version,
            session: protocol::header_text(&parts.headers, &MCP_SESSION_ID),
            identity: self.config.identity_of(&parts),
            received: std::time::Instant::now(),
        };
        let inner = self.inner.call(Request::from_parts(parts, body));
        ResponseFuture::intercept(inner, exchange, self.config.clone(), self.shared.clone())
    }
}
