//! Reading a stream from a position: [`replay`] and [`follow`], built once on
//! the backends' primitives.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures_core::Stream;

use super::{BoxFuture, EventStore, StoreError, StoredEvent, StreamHead, StreamId, Subscription};

/// How much one [`read_batch`](EventStore::read_batch) returns at most.
///
/// A batch stops at whichever limit is reached first, but always holds at
/// least one event when one is available, so an event larger than
/// `max_bytes` is still delivered (alone).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReadLimit {
    /// At most this many events. Default: 256.
    pub max_events: usize,
    /// At most about this many bytes of event data. Default: 1 MiB.
    pub max_bytes: usize,
}

impl Default for ReadLimit {
    fn default() -> Self {
        Self {
            max_events: 256,
            max_bytes: 1 << 20,
        }
    }
}

impl ReadLimit {
    /// Whether a batch holding `events` events of `bytes` bytes is full.
    pub fn is_full(&self, events: usize, bytes: usize) -> bool {
        events >= self.max_events.max(1) || (events > 0 && bytes >= self.max_bytes)
    }
}

/// The events of a stream after a position, in order, in batches.
///
/// Returned by [`replay`] and [`follow`]. Use [`next_batch`](Self::next_batch),
/// or poll it as a [`Stream`]. Only one batch is in memory at a time.
pub struct EventBatches {
    state: Option<Cursor>,
    pending: Option<BoxFuture<'static, Step>>,
}

impl std::fmt::Debug for EventBatches {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventBatches")
            .field("stream", &self.state.as_ref().map(|c| c.stream))
            .field("position", &self.state.as_ref().map(|c| c.position))
            .finish_non_exhaustive()
    }
}

/// What one read step yields: the cursor to continue with (`None` when the
/// sequence is over) and the item (`None` at the end).
type Step = (Option<Cursor>, Option<Result<Vec<StoredEvent>, StoreError>>);

struct Cursor {
    store: Arc<dyn EventStore>,
    stream: StreamId,
    /// The newest sequence already handed out (or the starting position).
    position: u64,
    limit: ReadLimit,
    mode: Mode,
}

enum Mode {
    /// Stop at this sequence (the head when [`replay`] was called); `None`
    /// until the first read has told us the head.
    Until(Option<u64>),
    /// Follow live commits until the stream ends. The subscription is taken
    /// before the first read, so no commit can fall between the two.
    Follow(Option<Subscription>),
}

/// Replays the events of `stream` after `after`, up to the stream's head at
/// the time of the first read, then ends.
///
/// The first item is an error if the position cannot be resumed (see
/// [`EventStore::read_batch`]); an error ends the sequence.
pub fn replay(store: Arc<dyn EventStore>, stream: StreamId, after: u64) -> EventBatches {
    EventBatches::new(Cursor {
        store,
        stream,
        position: after,
        limit: ReadLimit::default(),
        mode: Mode::Until(None),
    })
}

/// Replays the events of `stream` after `after`, then delivers new events as
/// they are committed, until the stream is complete or abandoned.
///
/// The subscription is taken before the first read and the position only
/// moves forward, so the result has no gap and no duplicate however fast
/// the producer is writing. A stream that is deleted while followed (its
/// session purged) ends the sequence with [`StoreError::StreamNotFound`].
pub fn follow(store: Arc<dyn EventStore>, stream: StreamId, after: u64) -> EventBatches {
    EventBatches::new(Cursor {
        store,
        stream,
        position: after,
        limit: ReadLimit::default(),
        mode: Mode::Follow(None),
    })
}

impl EventBatches {
    fn new(cursor: Cursor) -> Self {
        Self {
            state: Some(cursor),
            pending: None,
        }
    }

    /// Sets how much each batch holds at most. Default: [`ReadLimit::default`].
    pub fn limit(mut self, limit: ReadLimit) -> Self {
        if let Some(cursor) = &mut self.state {
            cursor.limit = limit;
        }
        self
    }

    /// The next batch (never empty), an error, or `None` at the end.
    pub async fn next_batch(&mut self) -> Option<Result<Vec<StoredEvent>, StoreError>> {
        std::future::poll_fn(|cx| Pin::new(&mut *self).poll_next(cx)).await
    }
}

impl Stream for EventBatches {
    type Item = Result<Vec<StoredEvent>, StoreError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.pending.is_none() {
            let Some(cursor) = self.state.take() else {
                return Poll::Ready(None);
            };
            self.pending = Some(Box::pin(cursor.step()));
        }
        let pending = self.pending.as_mut().expect("set above");
        let (cursor, item) = std::task::ready!(pending.as_mut().poll(cx));
        self.pending = None;
        self.state = cursor;
        Poll::Ready(item)
    }
}

impl Cursor {
    /// Produces the next batch. Returns the cursor to continue with (`None`
    /// when the sequence is over) and the item (`None` at the end).
    async fn step(mut self) -> Step {
        match self.next().await {
            Ok(Some(batch)) => (Some(self), Some(Ok(batch))),
            Ok(None) => (None, None),
            Err(error) => (None, Some(Err(error))),
        }
    }

    async fn next(&mut self) -> Result<Option<Vec<StoredEvent>>, StoreError> {
        if let Mode::Follow(subscription @ None) = &mut self.mode {
            *subscription = Some(self.store.subscribe(self.stream).await?);
        }
        loop {
            if let Mode::Until(Some(until)) = self.mode
                && self.position >= until
            {
                return Ok(None);
            }
            if let Mode::Follow(Some(subscription)) = &mut self.mode {
                // Mark the current head seen before reading: a commit after this
                // point either shows up in the read or wakes `changed` below.
                subscription.head();
            }
            let batch = self
                .store
                .read_batch(self.stream, self.position, self.limit)
                .await?;
            if let Mode::Until(until @ None) = &mut self.mode {
                *until = Some(batch.head.last_seq);
            }
            if let Some(events) = self.accept(batch.events, batch.head.last_seq)? {
                return Ok(Some(events));
            }
            match &mut self.mode {
                Mode::Until(_) => return Ok(None),
                Mode::Follow(subscription) => {
                    if batch.head.state.is_ended() {
                        return Ok(None);
                    }
                    let subscription = subscription.as_mut().expect("subscribed above");
                    if !wait_past(subscription, self.position, batch.head).await {
                        // No producer will announce anything more; one last read
                        // above picks up whatever it committed before leaving.
                        let last = self
                            .store
                            .read_batch(self.stream, self.position, self.limit)
                            .await?;
                        return self.accept(last.events, last.head.last_seq);
                    }
                }
            }
        }
    }

    /// Checks a batch continues exactly at the position and advances it;
    /// `last_seq` is the head of the same read.
    fn accept(
        &mut self,
        mut events: Vec<StoredEvent>,
        mut last_seq: u64,
    ) -> Result<Option<Vec<StoredEvent>>, StoreError> {
        if let Mode::Until(Some(until)) = self.mode {
            events.retain(|event| event.seq <= until);
            last_seq = last_seq.min(until);
        }
        check_continues(self.stream, self.position, &events, last_seq)?;
        self.position = events.last().map_or(self.position, |event| event.seq);
        Ok((!events.is_empty()).then_some(events))
    }
}

/// One page of `stream` after `after`, from a reader that knows an event
/// follows `after` (the layer's client body, whose stream's hot tail already
/// holds newer events): checked to continue exactly at `after`, so an empty
/// or gapped read is an error, never a silently short page.
pub(crate) async fn read_page_known_to_follow(
    store: &dyn EventStore,
    stream: StreamId,
    after: u64,
) -> Result<Vec<StoredEvent>, StoreError> {
    let batch = store
        .read_batch(stream, after, ReadLimit::default())
        .await?;
    let last_seq = batch.head.last_seq.max(after + 1);
    check_continues(stream, after, &batch.events, last_seq)?;
    Ok(batch.events)
}

/// Checks that `events`, read after `after` from a store whose head was
/// `last_seq` in the same read, continue exactly at `after`, with no gap,
/// and that they are there at all if the head says so. Backends promise
/// this; it is verified rather than trusted, because a silent partial
/// replay is the one outcome we never allow.
fn check_continues(
    stream: StreamId,
    after: u64,
    events: &[StoredEvent],
    last_seq: u64,
) -> Result<(), StoreError> {
    let Some(first) = events.first() else {
        if last_seq > after {
            return Err(StoreError::EventsMissing {
                stream,
                after,
                last_seq,
            });
        }
        return Ok(());
    };
    let contiguous =
        first.seq == after + 1 && events.windows(2).all(|pair| pair[1].seq == pair[0].seq + 1);
    if !contiguous {
        return Err(StoreError::Trimmed {
            stream,
            after,
            first_retained: first.seq,
        });
    }
    Ok(())
}

/// Waits for the head to move past `position` (or the state to change from
/// the `seen` one). False when no change can come any more.
async fn wait_past(subscription: &mut Subscription, position: u64, seen: StreamHead) -> bool {
    loop {
        match subscription.changed().await {
            Some(head) if head.last_seq > position || head.state != seen.state => return true,
            Some(_) => continue,
            None => return false,
        }
    }
}
