//! The producer side of a rewritten stream: a task that owns the inner
//! service's response body, commits its events, and keeps going when the
//! client leaves ("disconnect is not cancel") until the body ends or the
//! detach timeout passes.

use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http_body::Body;
use tokio::time::Instant;

use super::config::{Config, StoreFailurePolicy, sleep_until};
use super::hot_tail::{HotTail, MAX_READER_LAG, Published};
use super::shared::Shared;
use super::wire;
use crate::metrics::{self, Operation, StoreOperation, Unresumable};
use crate::sse::{Block, SseError, SseParser};
use crate::store::{
    AppendReceipt, BoxFuture, LeaseKind, NewEvent, StoreError, StreamEnd, StreamId,
};

/// The inner body is read on while a commit is in flight (so the store's
/// latency does not hold the service back) until the events waiting for the
/// next commit hold about this much memory.
const MAX_PENDING_BYTES: usize = 256 * 1024;

/// A stream's end that the store failed to record is retried after this,
/// then at twice the previous interval, up to [`END_RETRY_MAX_INTERVAL`].
const END_RETRY_FIRST_INTERVAL: Duration = Duration::from_millis(100);
/// The longest wait between two tries to record a stream's end.
const END_RETRY_MAX_INTERVAL: Duration = Duration::from_secs(5);

use tower::BoxError;

/// What one poll of the inner body brought: data, nothing to store (a
/// trailers frame), or the end of the stream (logged here).
fn data_of<E: Into<BoxError>>(
    polled: Option<Result<http_body::Frame<Bytes>, E>>,
    parser: &SseParser,
) -> Result<Option<Bytes>, Stop> {
    match polled {
        None => {
            if parser.has_partial_block() {
                tracing::debug!(
                    "inner stream ended inside an event; the unfinished event is dropped"
                );
            }
            Err(Stop::Finished)
        }
        Some(Err(error)) => {
            let error = error.into();
            tracing::warn!(%error, "inner body failed; stream abandoned");
            Err(Stop::GaveUp)
        }
        Some(Ok(frame)) => Ok(frame.into_data().ok()),
    }
}

/// Parses `data`, and then whatever else `body` has ready now (without
/// waiting, so a fast producer's events share one commit), into `pending`
/// until it is full. Returns how the stream stopped if it ended.
async fn take_ready<B>(
    data: Bytes,
    mut body: Pin<&mut B>,
    parser: &mut SseParser,
    pending: &mut Pending,
) -> Option<Stop>
where
    B: Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    let mut data = Some(data);
    loop {
        if let Some(data) = data.take() {
            parser.feed(data);
            if let Err(error) = pending.parse(parser) {
                tracing::warn!(%error, "inner stream broke the SSE limits; stream abandoned");
                return Some(Stop::GaveUp);
            }
        }
        if pending.bytes >= MAX_PENDING_BYTES {
            return None;
        }
        // Polled once: `Pending` means nothing more is ready.
        match std::future::poll_fn(|cx| Poll::Ready(body.as_mut().poll_frame(cx))).await {
            Poll::Pending => return None,
            Poll::Ready(polled) => match data_of(polled, parser) {
                Ok(next) => data = next,
                Err(stop) => return Some(stop),
            },
        }
    }
}

/// Starts the task that produces `tail`'s stream from `body`; `event_cap` is
/// the stream's event cap in the store.
pub(crate) fn spawn<B>(
    body: B,
    tail: Arc<HotTail>,
    event_cap: u64,
    operation: Option<Operation>,
    config: Arc<Config>,
    shared: Arc<Shared>,
) where
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    let span = tracing::info_span!("mcp_resume_stream", stream = %tail.stream);
    let _entered = span.enter();
    tracing::info!(
        session = tail.session.as_deref().unwrap_or(""),
        "stream started"
    );
    drop(_entered);
    // Half the stream's cap: a reader within it is never trimmed past by the
    // next commit, which is at most this many events too.
    let max_lag = (event_cap / 2).clamp(1, MAX_READER_LAG);
    let readers = tail.watch_readers();
    tokio::spawn(tracing::Instrument::instrument(
        Pump {
            tail,
            config,
            shared,
            stored: true,
            max_lag,
            readers,
            end_recorded: false,
            operation,
        }
        .run(body),
        span,
    ));
}

struct Pump {
    tail: Arc<HotTail>,
    config: Arc<Config>,
    shared: Arc<Shared>,
    /// False once the store failed under the fail-open policy: events are
    /// then passed to attached clients without ids and not stored.
    stored: bool,
    /// How many events an attached reader may be behind before the pump
    /// waits for it (see [`HotTail::lag`]); also the most one commit holds.
    max_lag: u64,
    /// Changes when an attached reader moves on or detaches.
    readers: tokio::sync::watch::Receiver<u64>,
    /// The store already holds the stream's end (marked abandoned when a
    /// commit failed under the fail-open policy).
    end_recorded: bool,
    /// The MCP request this stream answers, timed until the stream ends.
    operation: Option<Operation>,
}

/// What the inner service sent, in order.
enum Item {
    Event(NewEvent),
    KeepAlive(Bytes),
}

impl Item {
    /// About the memory the item holds: its bytes, and the item itself (so
    /// that a flood of tiny events counts for what it costs).
    fn footprint(&self) -> usize {
        std::mem::size_of::<Self>()
            + match self {
                Self::Event(event) => {
                    event.data.len() + event.event_type.as_ref().map_or(0, Bytes::len)
                }
                Self::KeepAlive(comment) => comment.len(),
            }
    }
}

/// Parsed from the inner body, not yet committed.
#[derive(Default)]
struct Pending {
    items: Vec<Item>,
    /// What the items hold in memory ([`Item::footprint`]), for [`MAX_PENDING_BYTES`].
    bytes: usize,
}

impl Pending {
    /// Moves every complete event (and keep-alive) the parser holds here.
    /// On an error, what came before it was moved.
    fn parse(&mut self, parser: &mut SseParser) -> Result<(), SseError> {
        while let Some(block) = parser.next_block()? {
            match block {
                // Events without data are priming events (or empty ones no
                // client would deliver): the layer primes streams itself.
                Block::Event(event) => {
                    if let Some(data) = event.data.filter(|data| !data.is_empty()) {
                        self.push(Item::Event(NewEvent {
                            event_type: event.event_type,
                            data,
                        }));
                    }
                }
                Block::Comment(comment) => self.push(Item::KeepAlive(comment)),
            }
        }
        Ok(())
    }

    fn push(&mut self, item: Item) {
        self.bytes += item.footprint();
        self.items.push(item);
    }

    /// Takes the oldest items, up to `max_events` events.
    fn take_run(&mut self, max_events: u64) -> Vec<Item> {
        let mut events = 0;
        let run_end = self
            .items
            .iter()
            .position(|item| {
                events += u64::from(matches!(item, Item::Event(_)));
                events > max_events
            })
            .unwrap_or(self.items.len());
        let rest = self.items.split_off(run_end);
        let run = std::mem::replace(&mut self.items, rest);
        self.bytes -= run.iter().map(Item::footprint).sum::<usize>();
        run
    }
}

/// When a pump gives up on a stream nobody is attached to, here or on
/// another instance.
struct DetachTimer {
    timeout: Duration,
    /// When the last client left, while none is attached.
    detached_since: Option<Instant>,
    /// Whether a client was ever attached: a task's stream never has one,
    /// and no client left it.
    had_client: bool,
    /// Until when the stream's attachment lease was last seen held: a reader
    /// on another instance keeps the stream running that long.
    held_elsewhere_until: Option<Instant>,
}

impl DetachTimer {
    fn new(timeout: Duration) -> Self {
        Self {
            timeout,
            detached_since: None,
            had_client: false,
            held_elsewhere_until: None,
        }
    }

    /// The detach deadline with `clients` attached now: none while one is,
    /// else the detach timeout after the last one left (logged then), or
    /// the end of the attachment lease last seen, whichever is later.
    fn deadline(&mut self, clients: usize) -> Option<Instant> {
        if clients > 0 {
            self.detached_since = None;
            self.had_client = true;
            self.held_elsewhere_until = None;
            return None;
        }
        let (timeout, had_client) = (self.timeout, self.had_client);
        let since = *self.detached_since.get_or_insert_with(|| {
            if had_client {
                tracing::info!(?timeout, "client detached; stream keeps running");
            }
            Instant::now()
        });
        Some((since + timeout).max(self.held_elsewhere_until.unwrap_or(since)))
    }

    /// A reader elsewhere holds the attachment lease for `left` more.
    fn held_elsewhere_for(&mut self, left: Duration) {
        if self.held_elsewhere_until.is_none() {
            tracing::info!("a client reads the stream on another instance; stream keeps running");
        }
        self.held_elsewhere_until = Some(Instant::now() + left);
    }
}

/// A commit in flight: the store's answer to come, and what to publish then.
struct Commit {
    receipt: BoxFuture<'static, Result<AppendReceipt, StoreError>>,
    items: Vec<Item>,
    /// It also records the stream's end (complete).
    ends: bool,
    /// What it commits, and since when, for the metrics.
    events: u64,
    bytes: u64,
    started: std::time::Instant,
}

/// What woke the pump up.
enum Woke {
    Data(Bytes),
    /// The inner body ended, or broke.
    Ended(Stop),
    Committed(Result<AppendReceipt, StoreError>),
    /// Something to look at again: readers, clients, a trailers frame.
    Again,
    /// The detach deadline passed: time to consult the attachment lease.
    DetachDue,
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
        B::Error: Into<BoxError>,
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
        B::Error: Into<BoxError>,
    {
        let mut parser = SseParser::new(self.config.limits);
        let mut pending = Pending::default();
        // At most one commit at a time, so events are stored and published in
        // order; the body is read on while it is in flight.
        let mut in_flight: Option<Commit> = None;
        // Set when the inner body ended or broke: what it sent before is
        // still committed, then the pump stops this way.
        let mut ended: Option<Stop> = None;
        let mut attached = self.tail.watch_attached();
        let mut detach = DetachTimer::new(self.config.detach_timeout);
        let mut producer_lease = ProducerLease::new(&self.config);
        loop {
            if in_flight.is_none() {
                let finished = matches!(ended, Some(Stop::Finished));
                in_flight = self.next_commit(&mut pending, finished);
                if in_flight.is_none()
                    && pending.items.is_empty()
                    && let Some(stop) = ended.take()
                {
                    return stop;
                }
            }
            let clients = *attached.borrow_and_update();
            if clients == 0 && !self.stored {
                // Without a store nobody can come back for these events.
                tracing::info!("client left a stream that could not be stored; stopping it");
                return Stop::GaveUp;
            }
            let deadline = detach.deadline(clients);
            // Bounded: past this the inner service waits, as it would for a
            // slow client without the layer.
            let reading = ended.is_none() && pending.bytes < MAX_PENDING_BYTES;
            let waiting_for_readers = in_flight.is_none() && !pending.items.is_empty();
            // In a block of its own: the inner body's error type need not be
            // `Send`, so nothing holding it may live across an await.
            let woke = {
                let next = std::future::poll_fn(|cx| body.as_mut().poll_frame(cx));
                let committed = async {
                    match in_flight.as_mut() {
                        Some(commit) => commit.receipt.as_mut().await,
                        None => std::future::pending().await,
                    }
                };
                tokio::select! {
                    polled = next, if reading => match data_of(polled, &parser) {
                        Ok(Some(data)) => Woke::Data(data),
                        Ok(None) => Woke::Again,
                        Err(stop) => Woke::Ended(stop),
                    },
                    receipt = committed => Woke::Committed(receipt),
                    _ = self.readers.changed(), if waiting_for_readers => Woke::Again,
                    _ = attached.changed() => Woke::Again,
                    () = self.tail.stopped() => return Stop::Gone,
                    () = sleep_until(deadline) => Woke::DetachDue,
                    () = producer_lease.due(), if self.stored => {
                        producer_lease.renew(&self.shared, self.tail.stream);
                        Woke::Again
                    }
                }
            };
            let data = match woke {
                Woke::Data(data) => data,
                Woke::Again => continue,
                Woke::DetachDue => {
                    match self.attachment_elsewhere().await {
                        Some(left) => detach.held_elsewhere_for(left),
                        None => return Stop::GaveUp,
                    }
                    continue;
                }
                Woke::Ended(stop) => {
                    ended = Some(stop);
                    continue;
                }
                Woke::Committed(receipt) => {
                    let commit = in_flight.take().expect("a commit was in flight");
                    if let Some(stop) = self.committed(commit, receipt).await {
                        return stop;
                    }
                    continue;
                }
            };
            ended = take_ready(data, body.as_mut(), &mut parser, &mut pending).await;
        }
    }

    /// How long a reader on another instance still holds the stream's
    /// attachment lease, once the detach timeout passed with no client
    /// here; `None` (logged) when the stream is to be abandoned.
    async fn attachment_elsewhere(&self) -> Option<Duration> {
        let lease = self
            .shared
            .store
            .lease(self.tail.stream, LeaseKind::Attachment)
            .await;
        match lease {
            Ok(Some(left)) => Some(left),
            Ok(None) => {
                tracing::info!(
                    "detach timeout passed with no client on any instance; stream abandoned"
                );
                None
            }
            Err(error) => {
                tracing::warn!(%error, "detach timeout passed with no client here, and the store cannot say whether one reads elsewhere; stream abandoned");
                None
            }
        }
    }

    /// Starts the next commit of what is pending, once the slowest attached
    /// reader is within `max_lag` of the newest event: no commit (of at most
    /// `max_lag` events) then makes the cap trim an event an attached client
    /// has yet to read, and a fast producer is held back while its client
    /// catches up. What needs no commit is published at once on the way.
    /// Once the inner body has `finished`, the commit of its last events
    /// also records the stream's end.
    fn next_commit(&mut self, pending: &mut Pending, finished: bool) -> Option<Commit> {
        loop {
            self.readers.borrow_and_update();
            if pending.items.is_empty() || self.tail.lag() > self.max_lag {
                return None;
            }
            let run = pending.take_run(self.max_lag);
            let last = finished && pending.items.is_empty();
            if let Some(commit) = self.start_commit(run, last) {
                return Some(commit);
            }
        }
    }

    /// Starts committing the events among `items`, to publish them with the
    /// keep-alives once stored. Publishes at once, and returns `None`, when
    /// there is nothing to store (keep-alives only, or the store failed under
    /// the fail-open policy). The `last` commit of a finished stream records
    /// its end too.
    fn start_commit(&mut self, items: Vec<Item>, last: bool) -> Option<Commit> {
        // Cheap clones (reference counts): the items are encoded once committed.
        let events: Vec<NewEvent> = items
            .iter()
            .filter_map(|item| match item {
                Item::Event(event) => Some(event.clone()),
                Item::KeepAlive(_) => None,
            })
            .collect();
        if events.is_empty() || !self.stored {
            self.publish(items, self.tail.last_seq() + 1);
            return None;
        }
        let shared = Arc::clone(&self.shared);
        let stream = self.tail.stream;
        let bytes = events
            .iter()
            .map(|event| event.data.len() + event.event_type.as_ref().map_or(0, Bytes::len))
            .sum::<usize>() as u64;
        let count = events.len() as u64;
        let receipt: BoxFuture<'static, _> = if last {
            Box::pin(async move {
                shared
                    .store
                    .append_and_end(stream, events, StreamEnd::Complete)
                    .await
            })
        } else {
            Box::pin(async move { shared.store.append(stream, events).await })
        };
        Some(Commit {
            events: count,
            bytes,
            started: std::time::Instant::now(),
            ends: last,
            receipt,
            items,
        })
    }

    /// Publishes what `commit` stored, or handles the store's failure.
    async fn committed(
        &mut self,
        commit: Commit,
        receipt: Result<AppendReceipt, StoreError>,
    ) -> Option<Stop> {
        let first_seq = match receipt {
            Ok(receipt) => {
                self.shared.store_wrote();
                self.end_recorded |= commit.ends;
                metrics::record::committed(commit.events, commit.bytes, commit.started.elapsed());
                receipt.first_seq
            }
            Err(StoreError::StreamNotFound(_) | StoreError::StreamEnded { .. }) => {
                tracing::info!("stream was removed from the store (session deleted); stopping it");
                return Some(Stop::Gone);
            }
            Err(error) => {
                self.shared.store_failed(StoreOperation::Append, &error);
                tracing::error!(%error, "event store failed to commit");
                if self.config.on_store_failure == StoreFailurePolicy::FailClosed {
                    return Some(Stop::GaveUp);
                }
                tracing::warn!("serving the rest of this stream without resumability (fail open)");
                self.stored = false;
                self.shared.counters.passthrough_streams.increment();
                metrics::record::unresumable(Unresumable::StoreFailure);
                // What the store holds ends here; if it cannot say so now,
                // `finish` records it (and retries until it can).
                self.end_recorded = self
                    .shared
                    .store
                    .end_stream(self.tail.stream, StreamEnd::Abandoned)
                    .await
                    .inspect_err(|error| {
                        tracing::debug!(%error, "could not mark the stream abandoned either");
                    })
                    .is_ok();
                self.tail.last_seq() + 1
            }
        };
        self.publish(commit.items, first_seq);
        None
    }

    /// Encodes `items`, events numbered from `seq`, and publishes them in order.
    fn publish(&self, items: Vec<Item>, mut seq: u64) {
        let stream = self.tail.stream;
        let published = items
            .into_iter()
            .map(|item| match item {
                Item::KeepAlive(comment) => Published::KeepAlive(comment),
                Item::Event(event) => {
                    let mut out = BytesMut::with_capacity(event.data.len() + 64);
                    let event_type = event.event_type.as_deref();
                    if self.stored {
                        wire::encode(stream, seq, event_type, &event.data, &mut out);
                    } else {
                        wire::encode_unstored(event_type, &event.data, &mut out);
                    }
                    seq += 1;
                    Published::Event(seq - 1, out.freeze())
                }
            })
            .collect();
        self.tail.publish(published, self.stored);
    }

    /// Records how the stream ended, in the store first: a reader that sees
    /// the tail end must find the store final. When the store cannot record
    /// it, the stream stays findable here as ended (so resumes end instead
    /// of waiting on a producer that is gone) while recording is retried.
    async fn finish(self, stop: Stop) {
        let stream = self.tail.stream;
        let end = match stop {
            Stop::Finished => StreamEnd::Complete,
            Stop::GaveUp | Stop::Gone => StreamEnd::Abandoned,
        };
        // Past a store failure the store holds a prefix of the stream: abandoned.
        let recorded_end = if self.stored {
            end
        } else {
            StreamEnd::Abandoned
        };
        let recorded = matches!(stop, Stop::Gone)
            || self.end_recorded
            || match self.shared.store.end_stream(stream, recorded_end).await {
                Ok(()) => true,
                // Purged with its session meanwhile: nothing left to record.
                Err(StoreError::StreamNotFound(_) | StoreError::StreamEnded { .. }) => true,
                Err(error) => {
                    self.shared.store_failed(StoreOperation::End, &error);
                    tracing::error!(
                        %error,
                        "event store failed to record the end of the stream; retrying until it does"
                    );
                    false
                }
            };
        self.tail.end(end.into());
        if recorded {
            self.shared.live_streams.remove(stream);
        } else {
            self.shared.live_streams.keep_until_recorded(stream);
            tokio::spawn(record_end_when_store_recovers(
                self.shared.clone(),
                stream,
                recorded_end,
            ));
        }
        match end {
            StreamEnd::Complete => self.shared.counters.streams_completed.increment(),
            StreamEnd::Abandoned => self.shared.counters.streams_abandoned.increment(),
        }
        metrics::record::stream_ended(end == StreamEnd::Complete);
        if let Some(operation) = self.operation {
            operation.finished();
        }
        tracing::info!(events = self.tail.last_seq(), state = ?end, "stream ended");
    }
}

/// The producer lease a pump renews (see
/// [`ResumabilityLayer::lease_period`](crate::ResumabilityLayer::lease_period)):
/// one renewal in flight at a time, in a task of its own so a slow store
/// never holds the stream back.
struct ProducerLease {
    period: Duration,
    ttl: Duration,
    next: Instant,
    renewing: Option<tokio::task::JoinHandle<()>>,
}

impl ProducerLease {
    /// Due at once: the lease is taken before the first client can resume
    /// the stream anywhere else.
    fn new(config: &Config) -> Self {
        Self {
            period: config.lease_period,
            ttl: config.producer_ttl(),
            next: Instant::now(),
            renewing: None,
        }
    }

    async fn due(&self) {
        tokio::time::sleep_until(self.next).await;
    }

    fn renew(&mut self, shared: &Arc<Shared>, stream: StreamId) {
        self.next = Instant::now() + self.period;
        if self
            .renewing
            .as_ref()
            .is_some_and(|task| !task.is_finished())
        {
            tracing::debug!("the previous renewal of the producer lease is still in flight");
            return;
        }
        let (shared, ttl) = (Arc::clone(shared), self.ttl);
        self.renewing = Some(tokio::spawn(async move {
            let renewed = shared
                .store
                .renew_lease(stream, LeaseKind::Producer, ttl)
                .await;
            if let Err(error) = renewed {
                tracing::warn!(%error, "could not renew the producer lease of the stream");
            }
        }));
    }
}

/// Retries recording a stream's end, backing off up to
/// [`END_RETRY_MAX_INTERVAL`], until the store records it or the stream is
/// gone from it; then forgets the stream here.
async fn record_end_when_store_recovers(shared: Arc<Shared>, stream: StreamId, end: StreamEnd) {
    let mut interval = END_RETRY_FIRST_INTERVAL;
    loop {
        tokio::time::sleep(interval).await;
        match shared.store.end_stream(stream, end).await {
            Ok(()) => {
                shared.store_wrote();
                tracing::info!(%stream, "the end of the stream is recorded now that the store recovered");
                break;
            }
            Err(StoreError::StreamNotFound(_) | StoreError::StreamEnded { .. }) => break,
            Err(error) => {
                tracing::debug!(%stream, %error, "the store still cannot record the end of the stream");
            }
        }
        interval = (interval * 2).min(END_RETRY_MAX_INTERVAL);
    }
    shared.live_streams.remove(stream);
}
