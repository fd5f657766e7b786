//! [`Tasks`]: the middleware service.

use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{Request, Response};
use http_body::Body;
use tower::Service;

use super::body::{RequestBody, ResponseBody};
use super::future::ResponseFuture;
use super::gateway;
use super::layer::TasksConfig;
use super::rpc;

/// Answers MCP 2026-07-28 tool calls with durable tasks on behalf of the
/// wrapped service. Created by [`TasksLayer`](super::TasksLayer); see the
/// [module documentation](super) for what it does.
#[derive(Clone)]
pub struct Tasks<S> {
    inner: S,
    config: Arc<TasksConfig>,
}

impl<S> Tasks<S> {
    pub(crate) fn new(inner: S, config: Arc<TasksConfig>) -> Self {
        Self { inner, config }
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

impl<S: std::fmt::Debug> std::fmt::Debug for Tasks<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tasks")
            .field("inner", &self.inner)
            .field("config", &self.config)
            .finish()
    }
}

impl<S, ReqB, ResB> Service<Request<ReqB>> for Tasks<S>
where
    S: Service<Request<RequestBody<ReqB>>, Response = Response<ResB>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    ReqB: Body<Data = Bytes> + Send + 'static,
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
        if !rpc::speaks_2026(request.method(), request.headers()) {
            // Not one byte changes for earlier revisions.
            return ResponseFuture::passthrough(
                self.inner.call(request.map(RequestBody::untouched)),
            );
        }
        // The service polled ready goes with the request; the clone stays.
        let clone = self.inner.clone();
        let inner = std::mem::replace(&mut self.inner, clone);
        ResponseFuture::gateway(Box::pin(gateway::handle(
            inner,
            request,
            self.config.clone(),
        )))
    }
}
