//! The request body sent upstream: read whole first when it is small, so a
//! client's broken request never reaches the upstream, or streamed, with a
//! record of whether the client's side of it failed.

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::{Buf, Bytes};
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;
use http_body_util::combinators::UnsyncBoxBody;
use tokio::sync::Notify;
use tower::BoxError;

/// What became of a client's body read up to a limit.
pub(crate) enum Read {
    /// The body ended within the limit: it goes upstream in one piece.
    Whole(UpstreamBody),
    /// The body is longer: what was read goes first, the rest streams.
    Streamed(UpstreamBody),
}

/// Reads `body` until it ends or passes `limit` bytes. A body that fails
/// while it is read is the client's error, returned before anything has
/// gone upstream.
pub(crate) async fn read_up_to<B>(body: B, limit: usize) -> Result<Read, BoxError>
where
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    let mut body = Box::pin(body);
    let mut frames = VecDeque::new();
    let mut read = 0;
    // A body announced as larger is not read first only to be streamed anyway.
    if body.size_hint().lower() > limit as u64 {
        return Ok(Read::Streamed(UpstreamBody::streamed(frames, body)));
    }
    loop {
        if body.is_end_stream() {
            return Ok(Read::Whole(UpstreamBody::whole(frames)));
        }
        match body.frame().await {
            None => return Ok(Read::Whole(UpstreamBody::whole(frames))),
            Some(Err(error)) => return Err(error.into()),
            Some(Ok(frame)) => {
                read += frame.data_ref().map_or(0, Bytes::len);
                frames.push_back(frame);
                if read > limit {
                    return Ok(Read::Streamed(UpstreamBody::streamed(frames, body)));
                }
            }
        }
    }
}

/// How a streamed body is going, shared between the body (sent by the
/// upstream connection) and the request's future.
#[derive(Default)]
pub(crate) struct Progress {
    /// Notified (a stored permit) once the whole body has been handed to
    /// the upstream connection.
    sent: Notify,
    /// Why the client's body failed, if it did.
    failure: Mutex<Option<String>>,
}

impl Progress {
    /// Resolves once the whole body has been handed to the upstream
    /// connection; never, if it fails first.
    pub(crate) async fn sent(&self) {
        self.sent.notified().await;
    }

    /// Why the client's body failed, if it did.
    pub(crate) fn failure(&self) -> Option<String> {
        self.failure
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }
}

/// How much of a buffered request body is read for its method, id and
/// tool: these come first in the requests clients send, and a tool's
/// arguments after them may be large.
const CALL_PEEK_BYTES: usize = 64 * 1024;

/// The body of a request sent upstream: frames already read, then (for a
/// streamed body) the rest of the client's body as it arrives.
pub(crate) struct UpstreamBody {
    read: VecDeque<Frame<Bytes>>,
    /// Bytes of data in `read`, for the size hint.
    read_len: u64,
    rest: Option<UnsyncBoxBody<Bytes, BoxError>>,
    progress: Arc<Progress>,
    /// Whether `progress` has been told the body ended.
    told_sent: bool,
}

impl UpstreamBody {
    /// A body read whole: its end is known now.
    fn whole(read: VecDeque<Frame<Bytes>>) -> Self {
        Self::new(read, None)
    }

    /// `read`, then the rest of `body` as it arrives.
    pub(crate) fn streamed<B>(read: VecDeque<Frame<Bytes>>, body: B) -> Self
    where
        B: Body<Data = Bytes> + Send + 'static,
        B::Error: Into<BoxError>,
    {
        Self::new(read, Some(body.map_err(Into::into).boxed_unsync()))
    }

    fn new(read: VecDeque<Frame<Bytes>>, rest: Option<UnsyncBoxBody<Bytes, BoxError>>) -> Self {
        let read_len = read
            .iter()
            .filter_map(Frame::data_ref)
            .map(|data| data.remaining() as u64)
            .sum();
        let mut body = Self {
            read,
            read_len,
            rest,
            progress: Arc::default(),
            told_sent: false,
        };
        body.note_if_sent();
        body
    }

    /// The JSON-RPC request the buffered part of the body starts with, read
    /// from at most its first [`CALL_PEEK_BYTES`], for the stream's history.
    pub(crate) fn call(&self) -> Option<crate::store::StreamCall> {
        let mut prefix = Vec::new();
        for data in self.read.iter().filter_map(Frame::data_ref) {
            let room = CALL_PEEK_BYTES - prefix.len();
            prefix.extend_from_slice(&data[..data.len().min(room)]);
            if prefix.len() == CALL_PEEK_BYTES {
                break;
            }
        }
        crate::store::StreamCall::from_json_rpc(&prefix)
    }

    /// Shared with the request's future: when the body was sent, or why it failed.
    pub(crate) fn progress(&self) -> Arc<Progress> {
        self.progress.clone()
    }

    fn note_if_sent(&mut self) {
        if !self.told_sent && self.is_end_stream() {
            self.told_sent = true;
            self.progress.sent.notify_one();
        }
    }
}

impl Body for UpstreamBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = &mut *self;
        let polled = if let Some(frame) = this.read.pop_front() {
            if let Some(data) = frame.data_ref() {
                this.read_len -= data.len() as u64;
            }
            Poll::Ready(Some(Ok(frame)))
        } else if let Some(rest) = &mut this.rest {
            match Pin::new(rest).poll_frame(cx) {
                Poll::Ready(Some(Err(error))) => {
                    *this
                        .progress
                        .failure
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner) =
                        Some(crate::proxy::answer::ErrorChain(&*error).to_string());
                    Poll::Ready(Some(Err(error)))
                }
                polled => polled,
            }
        } else {
            Poll::Ready(None)
        };
        match &polled {
            // Some bodies only say they ended by ending.
            Poll::Ready(None) => {
                this.rest = None;
                this.note_if_sent();
            }
            Poll::Ready(Some(Ok(_))) => this.note_if_sent(),
            Poll::Ready(Some(Err(_))) | Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.read.is_empty() && self.rest.as_ref().is_none_or(Body::is_end_stream)
    }

    fn size_hint(&self) -> SizeHint {
        // Exact for a body read whole, so the upstream gets a Content-Length.
        let rest = self
            .rest
            .as_ref()
            .map_or_else(|| SizeHint::with_exact(0), Body::size_hint);
        let mut hint = SizeHint::new();
        if let Some(upper) = rest.upper() {
            hint.set_upper(upper + self.read_len);
        }
        hint.set_lower(rest.lower() + self.read_len);
        hint
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::{Full, StreamBody};

    fn chunks(
        parts: &[&'static str],
    ) -> impl Body<Data = Bytes, Error = BoxError> + Send + 'static {
        let frames: Vec<Result<Frame<Bytes>, BoxError>> = parts
            .iter()
            .map(|part| Ok(Frame::data(Bytes::from_static(part.as_bytes()))))
            .collect();
        StreamBody::new(stream_of(frames))
    }

    /// A stream of `items`, without a dependency for it.
    fn stream_of<T: Unpin>(items: Vec<T>) -> impl futures_core::Stream<Item = T> + Unpin {
        struct Iter<T>(std::vec::IntoIter<T>);
        impl<T: Unpin> futures_core::Stream for Iter<T> {
            type Item = T;
            fn poll_next(mut self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Option<T>> {
                Poll::Ready(self.0.next())
            }
        }
        Iter(items.into_iter())
    }

    async fn collected(body: UpstreamBody) -> Bytes {
        body.collect().await.unwrap().to_bytes()
    }

    #[tokio::test]
    async fn a_body_within_the_limit_is_read_whole_with_an_exact_size() {
        let Read::Whole(body) = read_up_to(chunks(&["ab", "cd"]), 4).await.unwrap() else {
            panic!("streamed");
        };
        assert_eq!(body.size_hint().exact(), Some(4));
        let progress = body.progress();
        assert_eq!(collected(body).await, "abcd");
        tokio::time::timeout(std::time::Duration::from_secs(1), progress.sent())
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn a_longer_body_streams_with_what_was_read_first() {
        let Read::Streamed(body) = read_up_to(chunks(&["ab", "cd", "ef"]), 3).await.unwrap() else {
            panic!("read whole");
        };
        let progress = body.progress();
        assert_eq!(collected(body).await, "abcdef");
        tokio::time::timeout(std::time::Duration::from_secs(1), progress.sent())
            .await
            .unwrap();
        assert_eq!(progress.failure(), None);
    }

    #[tokio::test]
    async fn a_body_announced_as_longer_is_not_read_first() {
        let body = Full::new(Bytes::from_static(b"abcdef"));
        assert!(matches!(
            read_up_to(body, 5).await.unwrap(),
            Read::Streamed(_)
        ));
    }

    #[tokio::test]
    async fn a_failure_while_reading_is_returned_and_one_while_streaming_recorded() {
        let failing = |after: &'static str| {
            StreamBody::new(stream_of(vec![
                Ok(Frame::data(Bytes::from_static(after.as_bytes()))),
                Err::<Frame<Bytes>, BoxError>("cut".into()),
            ]))
        };
        assert!(read_up_to(failing("ab"), 4).await.is_err());

        let Read::Streamed(body) = read_up_to(failing("abcdef"), 4).await.unwrap() else {
            panic!("read whole");
        };
        let progress = body.progress();
        assert!(body.collect().await.is_err());
        assert_eq!(progress.failure().as_deref(), Some("cut"));
    }
}
