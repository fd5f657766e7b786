//! The hot tail of a stream produced in this process: its newest committed
//! events, already encoded, so attached clients are served without reading
//! the store back; and the bookkeeping of who is attached and where.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::{Bytes, BytesMut};
use tokio::sync::watch;

use crate::metrics;
use crate::store::{StreamId, StreamState};

/// At most this many entries stay in a tail, however far behind a reader is;
/// older events are read from the store.
const RING_ENTRIES: usize = 256;
/// At most about this many bytes stay in a tail.
const RING_BYTES: usize = 256 * 1024;
/// One read from the tail returns at most about this many bytes.
const READ_BYTES: usize = 64 * 1024;
/// An attached reader this many events behind the newest event holds the
/// pump back (see [`HotTail::lag`]), or half the stream's event cap if smaller.
pub(crate) const MAX_READER_LAG: u64 = 4096;

/// A stream being produced in this process.
#[derive(Debug)]
pub(crate) struct HotTail {
    pub(crate) stream: StreamId,
    pub(crate) session: Option<String>,
    /// When the stream was opened, and what it answers: for the status
    /// snapshot (see [`super::snapshot`]).
    pub(crate) opened: super::snapshot::Opened,
    state: Mutex<HotTailState>,
    /// Bumped on every change a reader may care about: new events, a
    /// keep-alive, the end, a takeover.
    version: watch::Sender<u64>,
    /// How many client bodies are attached (0 or 1); the pump watches it to detach.
    attached: watch::Sender<usize>,
    /// Bumped when an attached reader moves on; the pump watches it while
    /// it waits for a reader that fell behind.
    readers_moved: watch::Sender<u64>,
    /// Tells the pump to stop (the session was deleted).
    stop: tokio::sync::Notify,
}

#[derive(Debug, Default)]
struct HotTailState {
    /// Committed events and the keep-alives between them, in the order the
    /// inner service sent them, oldest first: only what an attached reader
    /// has yet to read (see [`HotTailState::release`]).
    ring: VecDeque<Entry>,
    ring_bytes: usize,
    last_seq: u64,
    ended: Option<StreamState>,
    /// From this sequence on, events were not stored (the store failed and
    /// the policy is to fail open): they exist only in the ring.
    unstored_from: Option<u64>,
    /// Keep-alives published so far; each has its number in the ring.
    keep_alives: u64,
    /// Increases with every attachment; an attachment older than the newest
    /// is told to end (the newer resume wins).
    generation: u64,
    /// The attached reader, with its generation. A newer attachment replaces
    /// it at once: a superseded body whose connection is no longer polled
    /// must not hold the ring, or the pump (see [`HotTail::lag`]), for it.
    reader: Option<(u64, Reader)>,
    /// When the last client left, while none is attached: a resume then
    /// measures how long its client was away.
    left_at: Option<std::time::Instant>,
    /// Counted in the detached-streams gauge: no client, and not ended.
    counted_detached: bool,
}

/// Where an attached reader is.
#[derive(Clone, Copy, Debug)]
struct Reader {
    /// The newest event it has read.
    position: u64,
    /// The newest keep-alive it has read (or that predates it).
    keep_alives_seen: u64,
}

/// One item of the ring.
#[derive(Debug)]
enum Entry {
    Event {
        seq: u64,
        encoded: Bytes,
    },
    /// A keep-alive, sent after the event `after`; passed to readers that
    /// were attached when it arrived, never replayed.
    KeepAlive {
        number: u64,
        after: u64,
        encoded: Bytes,
    },
}

impl Entry {
    fn encoded(&self) -> &Bytes {
        match self {
            Self::Event { encoded, .. } | Self::KeepAlive { encoded, .. } => encoded,
        }
    }
}

/// What the pump publishes, in the inner service's order.
#[derive(Debug)]
pub(crate) enum Published {
    Event(u64, Bytes),
    KeepAlive(Bytes),
}

/// What a reader at some position gets from the tail.
#[derive(Debug)]
pub(crate) enum TailRead {
    /// The encoded events (and keep-alives) after the position, concatenated, up to `last_seq` (which
    /// may equal the position when only keep-alives were new).
    Ready { bytes: Bytes, last_seq: u64 },
    /// The next event is not in the ring: read it from the store.
    Behind,
    /// Nothing after the position yet. `ended` says whether anything will come.
    CaughtUp { ended: Option<StreamState> },
    /// The next event was never stored and has left the ring: it is lost to
    /// this reader (only after a store failure under the fail-open policy).
    Lost,
    /// A newer attachment (a resume) has taken the stream over.
    Superseded,
}

impl HotTailState {
    /// Drops what the attached reader does not need any more: entries it has
    /// read, everything when nobody is attached (a later resume reads the
    /// store), and the oldest entries past the ring's bounds (a reader that
    /// far behind reads the store). So a caught-up stream holds nothing, and
    /// a slow reader cannot hold more than the bounds.
    fn release(&mut self) {
        let reader = self.reader.map(|(_, reader)| reader);
        while let Some(front) = self.ring.front() {
            let unneeded = match (front, reader) {
                (_, None) => true,
                (Entry::Event { seq, .. }, Some(reader)) => *seq <= reader.position,
                (Entry::KeepAlive { number, after, .. }, Some(reader)) => {
                    *number <= reader.keep_alives_seen || *after < reader.position
                }
            };
            let over_bounds = self.ring.len() > RING_ENTRIES
                || (self.ring_bytes > RING_BYTES && self.ring.len() > 1);
            if !(unneeded || over_bounds) {
                break;
            }
            if let Some(entry) = self.ring.pop_front() {
                self.ring_bytes -= entry.encoded().len();
            }
        }
    }
}

impl HotTail {
    pub(crate) fn new(stream: StreamId, session: Option<String>) -> Arc<Self> {
        Arc::new(Self {
            stream,
            session,
            opened: super::snapshot::Opened::now(),
            state: Mutex::new(HotTailState::default()),
            version: watch::Sender::new(0),
            attached: watch::Sender::new(0),
            readers_moved: watch::Sender::new(0),
            stop: tokio::sync::Notify::new(),
        })
    }

    fn lock(&self) -> MutexGuard<'_, HotTailState> {
        // Every update below completes before anything can panic, so a
        // poisoned lock still guards consistent data.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn bump(&self) {
        self.version.send_modify(|v| *v += 1);
    }

    /// Asks the pump to stop producing (its session was deleted).
    pub(crate) fn stop(&self) {
        // A stored permit: the pump sees it even if it is not waiting yet.
        self.stop.notify_one();
    }

    /// Resolves once [`stop`](Self::stop) was called.
    pub(crate) async fn stopped(&self) {
        self.stop.notified().await;
    }

    /// Adds committed (or, after a store failure, unstored) events and the
    /// keep-alives between them.
    pub(crate) fn publish(&self, items: Vec<Published>, stored: bool) {
        if items.is_empty() {
            return;
        }
        {
            let mut state = self.lock();
            for item in items {
                let entry = match item {
                    Published::Event(seq, encoded) => {
                        if !stored && state.unstored_from.is_none() {
                            state.unstored_from = Some(seq);
                        }
                        state.last_seq = seq;
                        Entry::Event { seq, encoded }
                    }
                    Published::KeepAlive(encoded) => {
                        state.keep_alives += 1;
                        Entry::KeepAlive {
                            number: state.keep_alives,
                            after: state.last_seq,
                            encoded,
                        }
                    }
                };
                state.ring_bytes += entry.encoded().len();
                state.ring.push_back(entry);
            }
            state.release();
        }
        self.bump();
    }

    /// Marks the end of the stream; readers finish what is left and stop.
    pub(crate) fn end(&self, state: StreamState) {
        let was_detached = {
            let mut locked = self.lock();
            locked.ended.get_or_insert(state);
            std::mem::take(&mut locked.counted_detached)
        };
        if was_detached {
            metrics::record::detached_streams(-1.0);
        }
        self.bump();
    }

    /// Whether the producer has ended (recorded in the store or not).
    pub(crate) fn has_ended(&self) -> bool {
        self.lock().ended.is_some()
    }

    pub(crate) fn last_seq(&self) -> u64 {
        self.lock().last_seq
    }

    /// Whether a client body is attached now.
    pub(crate) fn is_attached(&self) -> bool {
        *self.attached.borrow() > 0
    }

    /// Attaches a client body that has read up to `position`. The previous
    /// attachment, if any, is detached and told to end.
    pub(crate) fn attach(self: &Arc<Self>, position: u64) -> Attachment {
        let (generation, was_detached, left_at) = {
            let mut state = self.lock();
            state.generation += 1;
            let generation = state.generation;
            let keep_alives_seen = state.keep_alives;
            let reader = Reader {
                position,
                keep_alives_seen,
            };
            state.reader = Some((generation, reader));
            state.release();
            let was_detached = std::mem::take(&mut state.counted_detached);
            (generation, was_detached, state.left_at.take())
        };
        // Recorded outside the lock: a recorder may take locks of its own.
        if was_detached {
            metrics::record::detached_streams(-1.0);
        }
        if let Some(left_at) = left_at {
            metrics::record::reconnect_delay(left_at.elapsed());
        }
        self.attached.send_replace(1);
        self.readers_moved.send_modify(|n| *n += 1);
        self.bump();
        Attachment {
            tail: self.clone(),
            generation,
            attached_at: position,
            version: self.version.subscribe(),
        }
    }

    /// Watches the number of attached clients (for the pump's detach timer).
    pub(crate) fn watch_attached(&self) -> watch::Receiver<usize> {
        self.attached.subscribe()
    }

    /// Watches the attached readers' progress (for the pump's back-pressure).
    pub(crate) fn watch_readers(&self) -> watch::Receiver<u64> {
        self.readers_moved.subscribe()
    }

    /// How many events the attached reader has yet to read; 0 with nobody
    /// attached. Detached streams run free: their events wait in the
    /// store. An attached reader, though, must not fall so far behind that
    /// the stream's event cap trims what it has yet to read, so the pump
    /// waits for it past a limit: back-pressure, as TCP gives a producer
    /// without the layer.
    pub(crate) fn lag(&self) -> u64 {
        let state = self.lock();
        state.reader.map_or(0, |(_, reader)| {
            state.last_seq.saturating_sub(reader.position)
        })
    }
}

/// A client body attached to a tail. Dropping it detaches.
#[derive(Debug)]
pub(crate) struct Attachment {
    pub(crate) tail: Arc<HotTail>,
    generation: u64,
    /// The position it attached at: where its reader starts.
    attached_at: u64,
    version: watch::Receiver<u64>,
}

impl Attachment {
    /// The position this attachment was made at.
    pub(crate) fn attached_at(&self) -> u64 {
        self.attached_at
    }

    /// Marks the current state seen; call before reading.
    pub(crate) fn mark_seen(&mut self) {
        self.version.borrow_and_update();
    }

    /// Waits for a change after the last [`mark_seen`](Self::mark_seen).
    pub(crate) async fn changed(&mut self) {
        // The sender lives in the tail, which this attachment keeps alive.
        let _ = self.version.changed().await;
    }

    /// Reads what follows `after`, the newest event this reader has sent
    /// (from the tail or from the store), and lets the tail release what it
    /// no longer needs.
    pub(crate) fn read(&self, after: u64) -> TailRead {
        let mut guard = self.tail.lock();
        let state = &mut *guard;
        let Some((_, reader)) = state
            .reader
            .as_mut()
            .filter(|(generation, _)| *generation == self.generation)
        else {
            return TailRead::Superseded;
        };
        if reader.position != after {
            reader.position = after;
            self.tail.readers_moved.send_modify(|n| *n += 1);
        }
        let mut seen = reader.keep_alives_seen;
        state.release();
        let oldest_event = state.ring.iter().find_map(|entry| match entry {
            Entry::Event { seq, .. } => Some(*seq),
            Entry::KeepAlive { .. } => None,
        });
        if after < state.last_seq && oldest_event.is_none_or(|oldest| oldest > after + 1) {
            // The next event is not in the ring.
            return match state.unstored_from {
                Some(unstored) if unstored <= after + 1 => TailRead::Lost,
                _ => TailRead::Behind,
            };
        }
        // One entry is handed out as it is (a reference count); more are
        // copied into one buffer.
        let mut first: Option<Bytes> = None;
        let mut out = BytesMut::new();
        let mut len = 0;
        let mut last_seq = after;
        for entry in &state.ring {
            let wanted = match entry {
                Entry::Event { seq, .. } => *seq > after,
                Entry::KeepAlive {
                    number,
                    after: follows,
                    ..
                } => *number > seen && *follows >= after,
            };
            if !wanted {
                continue;
            }
            let encoded = entry.encoded();
            if len > 0 && len + encoded.len() > READ_BYTES {
                break;
            }
            len += encoded.len();
            match first.take() {
                None if out.is_empty() => first = Some(encoded.clone()),
                earlier => {
                    if let Some(earlier) = earlier {
                        out.extend_from_slice(&earlier);
                    }
                    out.extend_from_slice(encoded);
                }
            }
            match entry {
                Entry::Event { seq, .. } => last_seq = *seq,
                Entry::KeepAlive { number, .. } => seen = *number,
            }
        }
        if let Some((_, reader)) = state.reader.as_mut() {
            reader.keep_alives_seen = seen;
        }
        let bytes = match first {
            Some(encoded) => encoded,
            None if out.is_empty() => return TailRead::CaughtUp { ended: state.ended },
            None => out.freeze(),
        };
        TailRead::Ready { bytes, last_seq }
    }
}

impl Drop for Attachment {
    fn drop(&mut self) {
        let now_detached = {
            let mut state = self.tail.lock();
            // A superseded attachment was detached when it was superseded.
            if state
                .reader
                .is_none_or(|(generation, _)| generation != self.generation)
            {
                return;
            }
            state.reader = None;
            state.release();
            state.left_at = Some(std::time::Instant::now());
            state.counted_detached = state.ended.is_none();
            state.counted_detached
        };
        if now_detached {
            metrics::record::detached_streams(1.0);
        }
        self.tail.attached.send_replace(0);
        self.tail.readers_moved.send_modify(|n| *n += 1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn events(range: std::ops::RangeInclusive<u64>) -> Vec<Published> {
        range
            .map(|seq| Published::Event(seq, Bytes::from(format!("f{seq};"))))
            .collect()
    }

    fn ready(read: TailRead) -> (Bytes, u64) {
        match read {
            TailRead::Ready { bytes, last_seq } => (bytes, last_seq),
            other => panic!("expected encoded events, got {other:?}"),
        }
    }

    #[test]
    fn readers_get_events_after_their_position() {
        let tail = HotTail::new(StreamId::random(), None);
        let reader = tail.attach(0);
        assert!(matches!(reader.read(0), TailRead::CaughtUp { ended: None }));
        tail.publish(events(1..=3), true);
        assert_eq!(ready(reader.read(1)), (Bytes::from("f2;f3;"), 3));
        tail.end(StreamState::Complete);
        assert!(matches!(
            reader.read(3),
            TailRead::CaughtUp {
                ended: Some(StreamState::Complete)
            }
        ));
    }

    #[test]
    fn what_the_reader_has_read_is_released() {
        let tail = HotTail::new(StreamId::random(), None);
        let reader = tail.attach(0);
        tail.publish(events(1..=10), true);
        assert_eq!(ready(reader.read(0)).1, 10);
        assert_eq!(tail.lock().ring.len(), 10, "sent, not yet confirmed");
        ready(reader.read(4));
        assert_eq!(tail.lock().ring.len(), 6);
        let _ = reader.read(10);
        assert!(tail.lock().ring.is_empty());
        assert_eq!(tail.lock().ring_bytes, 0);
        // Nobody attached: nothing is kept; a resume reads the store.
        drop(reader);
        tail.publish(events(11..=12), true);
        assert!(tail.lock().ring.is_empty());
        let resume = tail.attach(5);
        assert!(matches!(resume.read(5), TailRead::Behind));
    }

    #[test]
    fn a_superseded_reader_that_is_never_polled_again_holds_nothing_back() {
        let tail = HotTail::new(StreamId::random(), None);
        let stuck = tail.attach(0);
        tail.publish(events(1..=100), true);
        // A resume takes over and reads everything; the old body, behind a
        // connection nobody writes to any more, is still alive.
        let resume = tail.attach(0);
        assert_eq!(ready(resume.read(0)).1, 100);
        let _ = resume.read(100);
        assert_eq!(tail.lag(), 0, "the pump is not held for the old reader");
        assert!(tail.lock().ring.is_empty());
        assert!(matches!(stuck.read(0), TailRead::Superseded));
        // Dropping it later detaches nothing: the resume is still attached.
        drop(stuck);
        assert_eq!(*tail.watch_attached().borrow(), 1);
    }

    #[test]
    fn a_single_entry_is_handed_out_without_a_copy() {
        let tail = HotTail::new(StreamId::random(), None);
        let reader = tail.attach(0);
        let encoded = Bytes::from("only;");
        tail.publish(vec![Published::Event(1, encoded.clone())], true);
        let (bytes, _) = ready(reader.read(0));
        assert_eq!(bytes.as_ptr(), encoded.as_ptr());
    }

    #[test]
    fn the_ring_is_bounded_and_far_readers_go_to_the_store() {
        let tail = HotTail::new(StreamId::random(), None);
        let reader = tail.attach(0);
        tail.publish(events(1..=1000), true);
        assert_eq!(tail.lock().ring.len(), RING_ENTRIES);
        assert!(matches!(reader.read(0), TailRead::Behind));
        ready(reader.read(1000 - RING_ENTRIES as u64));
    }

    #[test]
    fn keep_alives_keep_their_order_and_reach_only_readers_attached_before_them() {
        let tail = HotTail::new(StreamId::random(), None);
        let live = tail.attach(0);
        tail.publish(
            vec![
                Published::Event(1, Bytes::from("a;")),
                Published::KeepAlive(Bytes::from(":p1;")),
                Published::Event(2, Bytes::from("b;")),
                Published::KeepAlive(Bytes::from(":p2;")),
            ],
            true,
        );
        assert_eq!(ready(live.read(0)), (Bytes::from("a;:p1;b;:p2;"), 2));
        assert!(matches!(live.read(2), TailRead::CaughtUp { ended: None }));
        // An idle keep-alive reaches a caught-up reader, even as the stream ends.
        tail.publish(vec![Published::KeepAlive(Bytes::from(":p3;"))], true);
        assert_eq!(ready(live.read(2)), (Bytes::from(":p3;"), 2));
        // A reader that attaches now (a resume) gets the events only.
        tail.publish(events(3..=3), true);
        let resume = tail.attach(0);
        assert!(matches!(resume.read(0), TailRead::Behind));
        let resume = tail.attach(2);
        assert_eq!(ready(resume.read(2)).0, "f3;");
        tail.publish(vec![Published::KeepAlive(Bytes::from(":p4;"))], true);
        tail.end(StreamState::Complete);
        assert_eq!(ready(resume.read(3)), (Bytes::from(":p4;"), 3));
        assert!(matches!(
            resume.read(3),
            TailRead::CaughtUp { ended: Some(_) }
        ));
    }

    #[test]
    fn unstored_events_that_left_the_ring_are_lost_not_behind() {
        let tail = HotTail::new(StreamId::random(), None);
        let reader = tail.attach(0);
        tail.publish(events(1..=10), true);
        tail.publish(events(11..=600), false);
        assert!(matches!(reader.read(5), TailRead::Behind));
        assert!(matches!(reader.read(100), TailRead::Lost));
    }

    #[test]
    fn a_newer_attachment_supersedes_older_ones_and_detaching_is_counted() {
        let tail = HotTail::new(StreamId::random(), None);
        let attached = tail.watch_attached();
        let first = tail.attach(0);
        let second = tail.attach(0);
        assert!(matches!(first.read(0), TailRead::Superseded));
        assert!(matches!(second.read(0), TailRead::CaughtUp { .. }));
        assert_eq!(*attached.borrow(), 1);
        drop(first);
        assert_eq!(*attached.borrow(), 1);
        drop(second);
        assert_eq!(*attached.borrow(), 0);
    }
}
