//! [`ResponseBody`]: what a client receives. Either the inner body untouched,
//! a short answer made by the layer, or a rewritten stream (a [`Feed`]).

use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;

use super::feed::Feed;
use crate::store::BoxFuture;

pin_project! {
    /// The response body of [`Resumability`](super::Resumability).
    ///
    /// Its error type is the inner body's: the layer's own failures end the
    /// stream (the client resumes) rather than surfacing as errors.
    pub struct ResponseBody<B> {
        #[pin]
        kind: Kind<B>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<B> {
        Inner { #[pin] body: B },
        Full { data: Option<Bytes> },
        Stream { feed: Option<Box<Feed>>, step: Option<BoxFuture<'static, (Box<Feed>, Option<Bytes>)>> },
    }
}

impl<B> ResponseBody<B> {
    pub(crate) fn inner(body: B) -> Self {
        Self {
            kind: Kind::Inner { body },
        }
    }

    pub(crate) fn full(data: Bytes) -> Self {
        Self {
            kind: Kind::Full { data: Some(data) },
        }
    }

    pub(crate) fn stream(feed: impl Into<Box<Feed>>) -> Self {
        Self {
            kind: Kind::Stream {
                feed: Some(feed.into()),
                step: None,
            },
        }
    }
}

impl<B> Default for ResponseBody<B> {
    /// An empty body (tower-http's `Cors` needs one for preflight answers).
    fn default() -> Self {
        Self {
            kind: Kind::Full { data: None },
        }
    }
}

impl<B> std::fmt::Debug for ResponseBody<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = match &self.kind {
            Kind::Inner { .. } => "inner",
            Kind::Full { .. } => "full",
            Kind::Stream { .. } => "stream",
        };
        f.debug_struct("ResponseBody").field("kind", &kind).finish()
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
        match self.project().kind.project() {
            KindProj::Inner { body } => body.poll_frame(cx),
            KindProj::Full { data } => Poll::Ready(data.take().map(|data| Ok(Frame::data(data)))),
            KindProj::Stream { feed, step } => {
                if step.is_none() {
                    let Some(feed) = feed.take() else {
                        return Poll::Ready(None);
                    };
                    *step = Some(Box::pin(feed.step()));
                }
                let (next_feed, chunk) =
                    ready!(step.as_mut().expect("set above").as_mut().poll(cx));
                *step = None;
                match chunk {
                    Some(chunk) => {
                        *feed = Some(next_feed);
                        Poll::Ready(Some(Ok(Frame::data(chunk))))
                    }
                    // Dropping the feed detaches it from its stream now.
                    None => Poll::Ready(None),
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            Kind::Inner { body } => body.is_end_stream(),
            Kind::Full { data } => data.is_none(),
            Kind::Stream { feed, step } => feed.is_none() && step.is_none(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Inner { body } => body.size_hint(),
            Kind::Full { data } => {
                SizeHint::with_exact(data.as_ref().map_or(0, |d| d.len() as u64))
            }
            Kind::Stream { .. } => SizeHint::default(),
        }
    }
}
