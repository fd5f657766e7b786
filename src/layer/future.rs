//! [`ResponseFuture`]: the inner service's response, then whatever the layer
//! does with it.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use http::Response;
use http_body::Body;
use pin_project_lite::pin_project;

use super::body::ResponseBody;
use super::config::Config;
use super::open::{Exchange, Handled};
use super::shared::Shared;
use crate::store::BoxFuture;

pin_project! {
    /// The response future of [`Resumability`](super::Resumability).
    pub struct ResponseFuture<F, B, E> {
        #[pin]
        state: State<F, B, E>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<F, B, E> {
        /// Traffic the layer leaves alone.
        Passthrough { #[pin] inner: F },
        /// Waiting for the inner response to decide what to do with it.
        Intercept {
            #[pin]
            inner: F,
            exchange: Option<Exchange>,
            config: Arc<Config>,
            shared: Arc<Shared>,
        },
        /// An answer the layer made without asking the service.
        Answered { response: Option<Response<ResponseBody<B>>> },
        /// Store work after the response, or a resume the layer answers itself.
        Working { future: BoxFuture<'static, Result<Response<ResponseBody<B>>, E>> },
    }
}

impl<F, B, E> ResponseFuture<F, B, E> {
    pub(crate) fn passthrough(inner: F) -> Self {
        Self {
            state: State::Passthrough { inner },
        }
    }

    pub(crate) fn intercept(
        inner: F,
        exchange: Exchange,
        config: Arc<Config>,
        shared: Arc<Shared>,
    ) -> Self {
        Self {
            state: State::Intercept {
                inner,
                exchange: Some(exchange),
                config,
                shared,
            },
        }
    }

    pub(crate) fn answered(response: Response<ResponseBody<B>>) -> Self {
        Self {
            state: State::Answered {
                response: Some(response),
            },
        }
    }

    pub(crate) fn working(
        future: BoxFuture<'static, Result<Response<ResponseBody<B>>, E>>,
    ) -> Self {
        Self {
            state: State::Working { future },
        }
    }
}

impl<F, B, E> Future for ResponseFuture<F, B, E>
where
    F: Future<Output = Result<Response<B>, E>>,
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<tower::BoxError>,
    E: 'static,
{
    type Output = Result<Response<ResponseBody<B>>, E>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        loop {
            let next = match self.as_mut().project().state.project() {
                StateProj::Passthrough { inner } => {
                    return Poll::Ready(
                        ready!(inner.poll(cx)).map(|response| response.map(ResponseBody::inner)),
                    );
                }
                StateProj::Intercept {
                    inner,
                    exchange,
                    config,
                    shared,
                } => {
                    let response = ready!(inner.poll(cx))?;
                    let exchange = exchange.take().expect("polled after completion");
                    match exchange.handle(response, config.clone(), shared.clone()) {
                        Handled::Now(response) => return Poll::Ready(Ok(response)),
                        Handled::Later(future) => State::Working {
                            future: Box::pin(async move { Ok(future.await) }),
                        },
                    }
                }
                StateProj::Answered { response } => {
                    return Poll::Ready(Ok(response.take().expect("polled after completion")));
                }
                StateProj::Working { future } => return future.as_mut().poll(cx),
            };
            self.as_mut().project().state.set(next);
        }
    }
}

impl<F, B, E> std::fmt::Debug for ResponseFuture<F, B, E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}
