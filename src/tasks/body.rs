//! The bodies the gateway hands on: [`RequestBody`] to the inner service,
//! [`ResponseBody`] to the client, and the body a task's pump reads.

use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use tokio::sync::mpsc;

/// Bytes already read, then the rest of a body: what both directions hand
/// on after the gateway looked at the start of a body.
struct Prefixed<B> {
    prefix: Option<Bytes>,
    rest: Option<Pin<Box<B>>>,
}

impl<B> Prefixed<B>
where
    B: Body<Data = Bytes>,
{
    fn poll_frame(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        if let Some(prefix) = self.prefix.take()
            && !prefix.is_empty()
        {
            return Poll::Ready(Some(Ok(Frame::data(prefix))));
        }
        match self.rest.as_mut() {
            Some(rest) => rest.as_mut().poll_frame(cx),
            None => Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.prefix.as_ref().is_none_or(Bytes::is_empty)
            && self.rest.as_ref().is_none_or(|rest| rest.is_end_stream())
    }

    fn size_hint(&self) -> SizeHint {
        let prefix = self.prefix.as_ref().map_or(0, |p| p.len() as u64);
        let Some(rest) = &self.rest else {
            return SizeHint::with_exact(prefix);
        };
        let hint = rest.size_hint();
        let mut sum = SizeHint::new();
        sum.set_lower(hint.lower().saturating_add(prefix));
        if let Some(upper) = hint.upper() {
            sum.set_upper(upper.saturating_add(prefix));
        }
        sum
    }
}

/// The request body the inner service receives: the bytes the gateway
/// read to classify the request, then the rest of the client's body, if
/// any is left.
pub struct RequestBody<B> {
    body: Prefixed<B>,
}

impl<B> RequestBody<B> {
    /// A body of `bytes` alone.
    pub(crate) fn full(bytes: Bytes) -> Self {
        Self {
            body: Prefixed {
                prefix: Some(bytes),
                rest: None,
            },
        }
    }

    /// `prefix`, then `rest`.
    pub(crate) fn prefixed(prefix: Bytes, rest: Pin<Box<B>>) -> Self {
        Self {
            body: Prefixed {
                prefix: Some(prefix),
                rest: Some(rest),
            },
        }
    }

    /// The client's body, untouched.
    pub(crate) fn untouched(body: B) -> Self {
        Self {
            body: Prefixed {
                prefix: None,
                rest: Some(Box::pin(body)),
            },
        }
    }
}

impl<B> std::fmt::Debug for RequestBody<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RequestBody").finish_non_exhaustive()
    }
}

impl<B> Body for RequestBody<B>
where
    B: Body<Data = Bytes>,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        self.get_mut().body.poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// The response body the client receives: the inner service's,
/// unchanged (the bytes the gateway read while it waited for the
/// threshold, then the rest), or an answer of the gateway's own.
pub struct ResponseBody<B> {
    body: Prefixed<B>,
    /// A stream of the gateway's own (a `subscriptions/listen`).
    own: Option<mpsc::Receiver<Bytes>>,
}

impl<B> ResponseBody<B> {
    fn of(prefix: Option<Bytes>, rest: Option<Pin<Box<B>>>) -> Self {
        Self {
            body: Prefixed { prefix, rest },
            own: None,
        }
    }

    /// An answer of the gateway's own.
    pub(crate) fn full(bytes: Bytes) -> Self {
        Self::of(Some(bytes), None)
    }

    /// What the gateway already read of the inner body, then the rest of it.
    pub(crate) fn prefixed(prefix: Bytes, rest: Pin<Box<B>>) -> Self {
        Self::of(Some(prefix), Some(rest))
    }

    /// The inner service's body, untouched.
    pub(crate) fn inner(body: B) -> Self {
        Self::of(None, Some(Box::pin(body)))
    }

    /// A stream of the gateway's own: the SSE bytes `events` receives,
    /// until its sender is dropped.
    pub(crate) fn events(events: mpsc::Receiver<Bytes>) -> Self {
        Self {
            own: Some(events),
            ..Self::of(None, None)
        }
    }
}

impl<B> std::fmt::Debug for ResponseBody<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseBody").finish_non_exhaustive()
    }
}

impl<B> Body for ResponseBody<B>
where
    B: Body<Data = Bytes>,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let this = self.get_mut();
        match this.own.as_mut() {
            Some(events) => events
                .poll_recv(cx)
                .map(|bytes| bytes.map(|bytes| Ok(Frame::data(bytes)))),
            None => this.body.poll_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.own.is_none() && self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        match self.own {
            Some(_) => SizeHint::new(),
            None => self.body.size_hint(),
        }
    }
}

/// The body a task's pump reads: the SSE the task's driver writes, so the
/// pump commits a task's events like any stream's. It ends when the driver
/// drops its sender.
pub(crate) struct DriverBody {
    pub(crate) events: mpsc::Receiver<Bytes>,
}

impl Body for DriverBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        self.events
            .poll_recv(cx)
            .map(|bytes| bytes.map(|bytes| Ok(Frame::data(bytes))))
    }
}
