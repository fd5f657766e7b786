//! The producer side of a rewritten stream: a task that owns the inner
//! service's response body, commits its events, and keeps going when the
//! client leaves ("disconnect is not cancel") until the body ends or the
//! detach timeout passes.

use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;

use bytes::{Bytes, BytesMut};
use http_body::Body;
use tokio::time::Instant;

use super::frame;
use super::tail::{MAX_READER_LAG, Published, Tail};
use super::{Config, Runtime, StoreFailurePolicy, sleep_until};
use crate::sse::{Frame, SseParser};
use crate::store::{NewEvent, StoreError, StreamEnd};

/// At most this many bytes are gathered from the inner body into one commit.
const MAX_GATHER_BYTES: usize = 256 * 1024;

/// Feeds the parser the frames `body` has ready now, up to
/// [`MAX_GATHER_BYTES`]. Returns how the stream stopped if it ended.
async fn gather_ready<B>(mut body: Pin<&mut B>, parser: &mut SseParser) -> Option<Stop>
where
    B: Body<Data = Bytes>,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let mut gathered = 0;
    while gathered < MAX_GATHER_BYTES {
        // Polled once: `Pending` means nothing more is ready, and ends the gathering.
        let polled = std::future::poll_fn(|cx| Poll::Ready(body.as_mut().poll_frame(cx))).await;
        match polled {
            Poll::Pending => return None,
            Poll::Ready(None) => return Some(Stop::Finished),
            Poll::Ready(Some(Err(error))) => {
                let error = error.into();
                tracing::warn!(%error, "inner body failed; stream abandoned");
                return Some(Stop::GaveUp);
            }
            Poll::Ready(Some(Ok(frame))) => {
                if let Ok(data) = frame.into_data() {
                    gathered += data.len();
                    parser.feed(data);
                }
            }
        }
    }
    None
}

/// Starts the task that produces `tail`'s stream from `body`.
pub(crate) fn spawn<B>(body: B, tail: Arc<Tail>, config: Arc<Config>, runtime: Arc<Runtime>)
where
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let span = tracing::info_span!("mcp_resume_stream", stream = %tail.stream);
    let _entered = span.enter();
    tracing::info!(
        session = tail.session.as_deref().unwrap_or(""),
        "stream started"
    );
    drop(_entered);
    // Half the stream's cap (the layer's, or else the store's): a reader
    // within it is never trimmed past by the next commit, which is at most
    // this many events too.
    let cap = config
        .max_events_per_stream
        .unwrap_or_else(|| runtime.store.retention().max_events_per_stream_value());
    let max_lag = (cap / 2).clamp(1, MAX_READER_LAG);
    let readers = tail.watch_readers();
    tokio::spawn(tracing::Instrument::instrument(
        Pump {
            tail,
            config,
            runtime,
            stored: true,
            max_lag,
            readers,
        }
        .run(body),
        span,
    ));
}

struct Pump {
    tail: Arc<Tail>,
    config: Arc<Config>,
    runtime: Arc<Runtime>,
    /// False once the store failed under the fail-open policy: events are
    /// then passed to attached clients without ids and not stored.
    stored: bool,
    /// How many events an attached reader may be behind before the pump
    /// waits for it (see [`Tail::lag`]); also the most one commit holds.
    max_lag: u64,
    /// Changes when an attached reader moves on or detaches.
    readers: tokio::sync::watch::Receiver<u64>,
}

/// What the inner service sent, in order.
enum Item {
    Event(NewEvent),
    KeepAlive(Bytes),
}

/// Why a pump stopped.
enum Stop {
    /// The inner body ended: every event is in the store.
    Finished,
    /// The pump gave up on the inner body; the reason was logged.
    GaveUp,
    /// The stream is gone from the store (its session was deleted).
    Gone,
}

impl Pump {
    async fn run<B>(mut self, body: B)
    where
        B: Body<Data = Bytes> + Send + 'static,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        // Boxed so it can be dropped before the end is recorded.
        let mut body = Box::pin(body);
        let stop = self.produce(body.as_mut()).await;
        // Drop the inner body before recording the end: when it was abandoned,
        // this is what stops the work behind it.
        drop(body);
        self.finish(stop).await;
    }

    async fn produce<B>(&mut self, mut body: Pin<&mut B>) -> Stop
    where
        B: Body<Data = Bytes>,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let mut parser = SseParser::new(self.config.limits);
        let mut attached = self.tail.watch_attached();
        let mut detached_since: Option<Instant> = None;
        loop {
            let clients = *attached.borrow_and_update();
            if clients == 0 && !self.stored {
                // Without a store nobody can come back for these events.
                tracing::info!("client left a stream that could not be stored; stopping it");
                return Stop::GaveUp;
            }
            let deadline = match (clients, detached_since) {
                (0, None) => {
                    tracing::info!(timeout = ?self.config.detach_timeout, "client detached; stream keeps running");
                    let now = Instant::now();
                    detached_since = Some(now);
                    Some(now + self.config.detach_timeout)
                }
                (0, Some(since)) => Some(since + self.config.detach_timeout),
                _ => {
                    detached_since = None;
                    None
                }
            };
            // In a block of its own: the inner body's error type need not be
            // `Send`, so nothing holding it may live across an await.
            let data = {
                let next = std::future::poll_fn(|cx| body.as_mut().poll_frame(cx));
                let frame = tokio::select! {
                    frame = next => frame,
                    _ = attached.changed() => continue,
                    () = self.tail.stopped() => return Stop::Gone,
                    () = sleep_until(deadline) => {
                        tracing::info!("detach timeout passed with no client; stream abandoned");
                        return Stop::GaveUp;
                    }
                };
                match frame {
                    None => {
                        if parser.has_partial_block() {
                            tracing::debug!(
                                "inner stream ended inside an event; the unfinished event is dropped"
                            );
                        }
                        return Stop::Finished;
                    }
                    Some(Err(error)) => {
                        let error = error.into();
                        tracing::warn!(%error, "inner body failed; stream abandoned");
                        return Stop::GaveUp;
                    }
                    Some(Ok(frame)) => match frame.into_data() {
                        Ok(data) => data,
                        Err(_trailers) => continue,
                    },
                }
            };
            parser.feed(data);
            // Take whatever else the body already has, without waiting, so a
            // fast producer's events share one commit.
            let ended = gather_ready(body.as_mut(), &mut parser).await;
            if let Some(stop) = self.drain(&mut parser).await {
                return stop;
            }
            if let Some(stop) = ended {
                return stop;
            }
        }
    }

    /// Commits and publishes every complete event the parser holds.
    async fn drain(&mut self, parser: &mut SseParser) -> Option<Stop> {
        // Events and keep-alives in the order the inner service sent them.
        let mut items = Vec::new();
        let failure = loop {
            match parser.next_frame() {
                // Events without data are priming events (or empty ones no
                // client would deliver): the layer primes streams itself.
                Ok(Some(Frame::Event(event))) => {
                    if let Some(data) = event.data.filter(|data| !data.is_empty()) {
                        items.push(Item::Event(NewEvent {
                            event_type: event.event_type,
                            data,
                        }));
                    }
                }
                Ok(Some(Frame::Comment(comment))) => items.push(Item::KeepAlive(comment)),
                Ok(None) => break None,
                Err(error) => break Some(error),
            }
        };
        let stop = self.commit_in_runs(items).await;
        if let Some(error) = failure {
            tracing::warn!(%error, "inner stream broke the SSE limits; stream abandoned");
            return Some(Stop::GaveUp);
        }
        stop
    }

    /// Commits `items` in runs of at most `max_lag` events, each once the
    /// slowest attached reader is within `max_lag` of the newest event: so
    /// no commit makes the cap trim an event an attached client has yet to
    /// read. A fast producer is held back while its client catches up.
    async fn commit_in_runs(&mut self, mut items: Vec<Item>) -> Option<Stop> {
        while !items.is_empty() {
            let mut events = 0;
            let run_end = items
                .iter()
                .position(|item| {
                    events += u64::from(matches!(item, Item::Event(_)));
                    events > self.max_lag
                })
                .unwrap_or(items.len());
            let rest = items.split_off(run_end);
            if let Some(stop) = self.wait_for_readers().await {
                return Some(stop);
            }
            if let Some(stop) = self.commit(items).await {
                return Some(stop);
            }
            items = rest;
        }
        None
    }

    /// Waits until no attached reader is more than `max_lag` events behind.
    async fn wait_for_readers(&mut self) -> Option<Stop> {
        loop {
            self.readers.borrow_and_update();
            if self.tail.lag() <= self.max_lag {
                return None;
            }
            tokio::select! {
                _ = self.readers.changed() => {}
                () = self.tail.stopped() => return Some(Stop::Gone),
            }
        }
    }

    /// Commits the events among `items` in one append, then publishes them
    /// with the keep-alives, in order.
    async fn commit(&mut self, items: Vec<Item>) -> Option<Stop> {
        let stream = self.tail.stream;
        // Cheap clones (reference counts): the items are encoded once committed.
        let events: Vec<NewEvent> = items
            .iter()
            .filter_map(|item| match item {
                Item::Event(event) => Some(event.clone()),
                Item::KeepAlive(_) => None,
            })
            .collect();
        let mut seq = if events.is_empty() || !self.stored {
            self.tail.last_seq() + 1
        } else {
            match self.runtime.store.append(stream, events).await {
                Ok(receipt) => receipt.first_seq,
                Err(StoreError::StreamNotFound(_) | StoreError::StreamEnded { .. }) => {
                    tracing::info!(
                        "stream was removed from the store (session deleted); stopping it"
                    );
                    return Some(Stop::Gone);
                }
                Err(error) => {
                    self.runtime.counters.store_failures.increment();
                    tracing::error!(%error, "event store failed to commit");
                    if self.config.on_store_failure == StoreFailurePolicy::FailClosed {
                        return Some(Stop::GaveUp);
                    }
                    tracing::warn!(
                        "serving the rest of this stream without resumability (fail open)"
                    );
                    self.stored = false;
                    self.runtime.counters.passthrough_streams.increment();
                    if let Err(error) = self
                        .runtime
                        .store
                        .end_stream(stream, StreamEnd::Abandoned)
                        .await
                    {
                        tracing::debug!(%error, "could not mark the stream abandoned either");
                    }
                    self.tail.last_seq() + 1
                }
            }
        };
        let published = items
            .into_iter()
            .map(|item| match item {
                Item::KeepAlive(comment) => Published::KeepAlive(comment),
                Item::Event(event) => {
                    let mut out = BytesMut::with_capacity(event.data.len() + 64);
                    let event_type = event.event_type.as_deref();
                    if self.stored {
                        frame::encode(stream, seq, event_type, &event.data, &mut out);
                    } else {
                        frame::encode_unstored(event_type, &event.data, &mut out);
                    }
                    seq += 1;
                    Published::Event(seq - 1, out.freeze())
                }
            })
            .collect();
        self.tail.publish(published, self.stored);
        None
    }

    /// Records how the stream ended, in the store first: a reader that sees
    /// the tail end must find the store final.
    async fn finish(self, stop: Stop) {
        let stream = self.tail.stream;
        let end = match stop {
            Stop::Finished => StreamEnd::Complete,
            Stop::GaveUp | Stop::Gone => StreamEnd::Abandoned,
        };
        if self.stored
            && !matches!(stop, Stop::Gone)
            && let Err(error) = self.runtime.store.end_stream(stream, end).await
        {
            self.runtime.counters.store_failures.increment();
            tracing::error!(%error, "event store failed to record the end of the stream");
        }
        self.tail.end(end.into());
        self.runtime.registry.remove(stream);
        match end {
            StreamEnd::Complete => self.runtime.counters.streams_completed.increment(),
            StreamEnd::Abandoned => self.runtime.counters.streams_abandoned.increment(),
        }
        tracing::info!(events = self.tail.last_seq(), state = ?end, "stream ended");
    }
}
