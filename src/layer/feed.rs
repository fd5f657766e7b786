//! [`Feed`]: one client's view of one stream, read from the stream's hot
//! tail and, when the client is behind it, from the store; and how a
//! response to a client starts (priming event, `retry` hint, poll deadline).

use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::time::Instant;

use super::config::{Config, sleep_until};
use super::hot_tail::{Attachment, TailRead};
use super::protocol::ResumableVersion;
use super::shared::Shared;
use super::wire;
use crate::store::{self, EventBatches, LeaseKind, StoredEvent, StreamEnd, StreamId};

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
    shared: Arc<Shared>,
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
    /// For a stream read from the store: the leases its reader keeps.
    leases: Option<ReaderLeases>,
}

/// What a reader of a stream produced elsewhere does every lease period
/// (see [`ResumabilityLayer::lease_period`](crate::ResumabilityLayer::lease_period)):
/// renew the stream's attachment lease, so its producer keeps it running,
/// and check the producer's lease, so a dead producer's stream ends.
struct ReaderLeases {
    period: Duration,
    attachment_ttl: Duration,
    next: Instant,
    /// The producer lease is checked from the second round on: by then a
    /// live producer has renewed it at least once.
    checks_producer: bool,
}

impl Feed {
    /// A feed of a stream produced here, from `position` on.
    pub(crate) fn from_tail(attachment: Attachment, shared: Arc<Shared>) -> Self {
        let position = attachment.attached_at();
        Self::new(
            attachment.tail.stream,
            position,
            Source::Tail(attachment),
            shared,
        )
    }

    /// A feed of a stream not produced here, read from the store.
    pub(crate) fn from_store(stream: StreamId, position: u64, shared: Arc<Shared>) -> Self {
        let batches = store::follow(shared.store.clone(), stream, position);
        Self::new(stream, position, Source::Store(batches), shared)
    }

    fn new(stream: StreamId, position: u64, source: Source, shared: Arc<Shared>) -> Self {
        Self {
            stream,
            position,
            source,
            shared,
            preamble: None,
            retry: None,
            deadline: None,
            replayed: None,
            then: None,
            leases: None,
        }
    }

    /// How every response to a client starts, new stream or resume alike.
    /// Clients that expect one get the priming event first: the client's
    /// position (0 for a new stream, the resume point for a resume) and the
    /// `retry` hint, so even a response that ends before any event (poll
    /// mode) leaves them able to reconnect where they were; and the poll
    /// deadline. Other clients get the hint on the first event.
    pub(crate) fn start_response(mut self, version: ResumableVersion, config: &Config) -> Self {
        if matches!(self.source, Source::Store(_)) {
            self.leases = Some(ReaderLeases {
                period: config.lease_period,
                attachment_ttl: config.attachment_ttl(),
                next: Instant::now(),
                checks_producer: false,
            });
        }
        let retry = config.retry_millis();
        if version.primes() {
            self.preamble = Some(wire::priming(self.stream, self.position, retry));
            self.deadline = config.poll_deadline();
        } else {
            self.retry = Some(retry);
        }
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

    pub(super) async fn step(mut self: Box<Self>) -> (Box<Self>, Option<Bytes>) {
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
                        Some(millis) => wire::with_retry(millis, &chunk),
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
                    TailRead::Ready { bytes, last_seq } => {
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
                        report_caught_up(&mut self.replayed, &self.shared, self.stream);
                        tokio::select! {
                            () = attachment.changed() => {}
                            () = sleep_until(deadline) => {}
                        }
                        Read::Again
                    }
                }
            }
            Source::Store(batches) => {
                let leases_due = self.leases.as_ref().map(|leases| leases.next);
                let next = tokio::select! {
                    next = batches.next_batch() => next,
                    () = sleep_until(deadline) => return Read::Again,
                    () = sleep_until(leases_due) => {
                        self.keep_leases().await;
                        return Read::Again;
                    }
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

    /// Renews the stream's attachment lease and, from the second round on,
    /// ends the stream as abandoned in the store if its producer's lease
    /// lapsed: the follow then delivers what was stored and ends, here and
    /// on every other instance.
    async fn keep_leases(&mut self) {
        let stream = self.stream;
        let Some(leases) = self.leases.as_mut() else {
            return;
        };
        leases.next = Instant::now() + leases.period;
        let store = &self.shared.store;
        let renewed = store
            .renew_lease(stream, LeaseKind::Attachment, leases.attachment_ttl)
            .await;
        if let Err(error) = renewed {
            tracing::warn!(%stream, %error, "could not renew the attachment lease of the stream");
        }
        if !std::mem::replace(&mut leases.checks_producer, true) {
            return;
        }
        match store.lease(stream, LeaseKind::Producer).await {
            Ok(Some(_)) => return,
            Ok(None) => {}
            Err(error) => {
                tracing::debug!(%stream, %error, "could not read the producer lease of the stream");
                return;
            }
        }
        // Only a live stream has a producer to lose.
        match store.stream_info(stream).await {
            Ok(Some(info)) if !info.state.is_ended() => {}
            Ok(_) => return,
            Err(error) => {
                tracing::debug!(%stream, %error, "could not read the state of the stream");
                return;
            }
        }
        tracing::warn!(%stream, "the producer of the stream stopped renewing its lease (its instance died or lost the store); ending the stream as abandoned");
        match store.end_stream(stream, StreamEnd::Abandoned).await {
            Ok(()) => self.leases = None,
            Err(error) => {
                tracing::warn!(%stream, %error, "could not end the stream whose producer is gone; trying again next period");
            }
        }
    }

    /// The client is behind the hot tail: one page from the store.
    async fn read_store_batch(&mut self) -> Read {
        let (stream, after) = (self.stream, self.position);
        // The tail holds newer events, so the store has the next one.
        match store::read_page_known_to_follow(&*self.shared.store, stream, after).await {
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
            wire::encode(
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
        report_caught_up(&mut self.replayed, &self.shared, self.stream);
    }
}

/// Counts and logs a resume's replay, once.
fn report_caught_up(replayed: &mut Option<u64>, shared: &Shared, stream: StreamId) {
    if let Some(replayed) = replayed.take() {
        shared.counters.events_replayed.add(replayed);
        crate::metrics::record::replayed(replayed);
        tracing::info!(%stream, replayed, "resume caught up with the stream");
    }
}

enum Read {
    Chunk(Bytes),
    Again,
    End,
}
