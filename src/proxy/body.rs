//! [`ProxyBody`]: the upstream's body, frame by frame, or a short answer
//! made by the proxy itself.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;

/// The response body of a [`ReverseProxy`](super::ReverseProxy).
///
/// Either the upstream's body, passed on frame by frame as it arrives (never
/// buffered, so an SSE event reaches the client as soon as the upstream sends
/// it), or a short JSON answer made by the proxy (a `400` for a request
/// body the client broke, a `502` when the upstream cannot be reached, a
/// `504` when it does not answer in time).
#[derive(Debug)]
pub struct ProxyBody {
    kind: Kind,
}

#[derive(Debug)]
enum Kind {
    Upstream(Incoming),
    Local(Option<Bytes>),
}

impl ProxyBody {
    pub(crate) fn upstream(body: Incoming) -> Self {
        Self {
            kind: Kind::Upstream(body),
        }
    }

    pub(crate) fn local(data: impl Into<Bytes>) -> Self {
        Self {
            kind: Kind::Local(Some(data.into())),
        }
    }
}

impl Body for ProxyBody {
    type Data = Bytes;
    /// Only the upstream's body fails: its connection broke mid-body.
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        match &mut self.get_mut().kind {
            Kind::Upstream(body) => {
                let polled = Pin::new(body).poll_frame(cx);
                if let Poll::Ready(Some(Err(_))) = &polled {
                    crate::metrics::record::proxy_upstream_error("body");
                }
                polled
            }
            Kind::Local(data) => Poll::Ready(data.take().map(|data| Ok(Frame::data(data)))),
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            Kind::Upstream(body) => body.is_end_stream(),
            Kind::Local(data) => data.is_none(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Upstream(body) => body.size_hint(),
            Kind::Local(data) => {
                SizeHint::with_exact(data.as_ref().map_or(0, |data| data.len() as u64))
            }
        }
    }
}
