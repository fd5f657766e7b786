//! [`ResponseBody`]: what a client receives. Either the inner body untouched,
//! a short answer made by the layer, or a rewritten stream fed from the
//! stream's hot tail and, when the client is behind, from the store.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use bytes::{Bytes, BytesMut};
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;
use tokio::time::Instant;

use super::frame;
use super::tail::{Attachment, TailRead};
use super::{Runtime, sleep_until};
use crate::store::read::check_continues;
use crate::store::{self, BoxFuture, EventBatches, ReadLimit, StoredEvent, StreamId};

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

/// Where a feed reads its stream from.
enum Source {
    /// The stream is produced in this process: read its hot tail, and the
    /// store when the client has fallen behind it.
    Tail(Attachment),
    /// Produced elsewhere or already ended: the store alone.
    Store(EventBatches),
}

/// One client's view of one stream: its position, and what it still owes
/// the client before the first event.
pub(crate) struct Feed {
    stream: StreamId,
    position: u64,
    source: Source,
    runtime: Arc<Runtime>,
    /// Sent before anything else (the priming event).
    preamble: Option<Bytes>,
    /// The `retry` hint still to put on the first event, in milliseconds.
    retry: Option<u64>,
    /// Poll mode: the response ends at this instant.
    deadline: Option<Instant>,
    /// For resumes: events replayed so far, reported once caught up.
    replayed: Option<u64>,
    /// Where to continue when this stream ends (a fresh standalone stream).
    then: Option<Box<Feed>>,
}

impl Feed {
    /// A feed of a stream produced here, from `position` on.
    pub(crate) fn from_tail(attachment: Attachment, runtime: Arc<Runtime>) -> Self {
        let position = attachment.attached_at();
        Self::new(
            attachment.tail.stream,
            position,
            Source::Tail(attachment),
            runtime,
        )
    }

    /// A feed of a stream not produced here, read from the store.
    pub(crate) fn from_store(stream: StreamId, position: u64, runtime: Arc<Runtime>) -> Self {
        let batches = store::follow(runtime.store.clone(), stream, position);
        Self::new(stream, position, Source::Store(batches), runtime)
    }

    fn new(stream: StreamId, position: u64, source: Source, runtime: Arc<Runtime>) -> Self {
        Self {
            stream,
            position,
            source,
            runtime,
            preamble: None,
            retry: None,
            deadline: None,
            replayed: None,
            then: None,
        }
    }

    /// Sends `preamble` first.
    pub(crate) fn preamble(mut self, preamble: Bytes) -> Self {
        self.preamble = Some(preamble);
        self
    }

    /// Puts a `retry` hint on the first event.
    pub(crate) fn retry(mut self, millis: u64) -> Self {
        self.retry = Some(millis);
        self
    }

    /// Ends the response at `deadline` (poll mode).
    pub(crate) fn deadline(mut self, deadline: Option<Instant>) -> Self {
        self.deadline = deadline;
        self
    }

    /// Counts and reports the events replayed before catching up.
    pub(crate) fn resumed(mut self) -> Self {
        self.replayed = Some(0);
        self
    }

    /// Continues with `next` when this stream ends.
    pub(crate) fn then(mut self, next: Feed) -> Self {
        self.then = Some(Box::new(next));
        self
    }

    async fn step(mut self: Box<Self>) -> (Box<Self>, Option<Bytes>) {
        let chunk = self.next_chunk().await;
        (self, chunk)
    }

    async fn next_chunk(&mut self) -> Option<Bytes> {
        if let Some(preamble) = self.preamble.take() {
            return Some(preamble);
        }
        loop {
            if self
                .deadline
                .is_some_and(|deadline| Instant::now() >= deadline)
            {
                tracing::debug!(stream = %self.stream, "poll interval reached; closing the response, the stream goes on");
                return None;
            }
            match self.read().await {
                Read::Chunk(chunk) => {
                    return Some(match self.retry.take() {
                        Some(millis) => frame::with_retry(millis, &chunk),
                        None => chunk,
                    });
                }
                Read::Again => continue,
                Read::End => {
                    self.caught_up();
                    let next = self.then.take()?;
                    let (retry, deadline) = (self.retry, self.deadline);
                    *self = *next;
                    self.retry = retry.or(self.retry);
                    self.deadline = deadline;
                }
            }
        }
    }

    async fn read(&mut self) -> Read {
        let deadline = self.deadline;
        match &mut self.source {
            Source::Tail(attachment) => {
                attachment.mark_seen();
                match attachment.read(self.position) {
                    TailRead::Superseded => {
                        tracing::info!(stream = %self.stream, "a newer resume took this stream over; closing this response");
                        self.then = None;
                        Read::End
                    }
                    TailRead::Frames { bytes, last_seq } => {
                        self.count_replayed(last_seq);
                        self.position = last_seq;
                        Read::Chunk(bytes)
                    }
                    TailRead::Behind => self.read_store_batch().await,
                    TailRead::Lost => {
                        tracing::warn!(stream = %self.stream, "events that could not be stored are past; closing the response");
                        Read::End
                    }
                    TailRead::CaughtUp { ended: Some(_) } => Read::End,
                    TailRead::CaughtUp { ended: None } => {
                        report_caught_up(&mut self.replayed, &self.runtime, self.stream);
                        tokio::select! {
                            () = attachment.changed() => {}
                            () = sleep_until(deadline) => {}
                        }
                        Read::Again
                    }
                }
            }
            Source::Store(batches) => {
                let next = tokio::select! {
                    next = batches.next_batch() => next,
                    () = sleep_until(deadline) => return Read::Again,
                };
                match next {
                    Some(Ok(events)) => Read::Chunk(self.encode(&events)),
                    Some(Err(error)) => {
                        tracing::warn!(stream = %self.stream, %error, "cannot continue the replay; closing the response");
                        Read::End
                    }
                    None => Read::End,
                }
            }
        }
    }

    /// The client is behind the hot tail: one page from the store.
    async fn read_store_batch(&mut self) -> Read {
        let (stream, after) = (self.stream, self.position);
        let events = self
            .runtime
            .store
            .read_batch(stream, after, ReadLimit::default())
            .await
            .and_then(|batch| {
                // The tail holds newer events, so the store has the next one.
                let last_seq = batch.head.last_seq.max(after + 1);
                check_continues(stream, after, &batch.events, last_seq)?;
                Ok(batch.events)
            });
        match events {
            Ok(events) => Read::Chunk(self.encode(&events)),
            Err(error) => {
                tracing::warn!(%stream, %error, "cannot read the stream back; closing the response");
                Read::End
            }
        }
    }

    fn encode(&mut self, events: &[StoredEvent]) -> Bytes {
        let mut out = BytesMut::with_capacity(events.iter().map(|e| e.data.len() + 64).sum());
        for event in events {
            frame::encode(
                self.stream,
                event.seq,
                event.event_type.as_deref(),
                &event.data,
                &mut out,
            );
        }
        if let Some(last) = events.last() {
            self.count_replayed(last.seq);
            self.position = last.seq;
        }
        out.freeze()
    }

    fn count_replayed(&mut self, up_to: u64) {
        if let Some(replayed) = &mut self.replayed {
            *replayed += up_to.saturating_sub(self.position);
        }
    }

    /// Reports a resume's replay once it has caught up with the stream.
    fn caught_up(&mut self) {
        report_caught_up(&mut self.replayed, &self.runtime, self.stream);
    }
}

/// Counts and logs a resume's replay, once.
fn report_caught_up(replayed: &mut Option<u64>, runtime: &Runtime, stream: StreamId) {
    if let Some(replayed) = replayed.take() {
        runtime.counters.events_replayed.add(replayed);
        tracing::info!(%stream, replayed, "resume caught up with the stream");
    }
}

enum Read {
    Chunk(Bytes),
    Again,
    End,
}
