//! Announcing new commits to readers: [`Subscription`], and the registry the
//! in-process backends keep for their live streams.

use std::collections::HashMap;
use std::sync::Mutex;

use tokio::sync::watch;

use super::{StreamHead, StreamId, StreamState};

/// A reader's view of a stream's head, updated as the producer commits.
///
/// Built on a [`tokio::sync::watch`] channel: a subscriber that falls behind
/// sees only the newest head, never a queue, so a slow reader costs no
/// memory. Readers catch up by reading the store from their own position.
#[derive(Debug)]
pub struct Subscription {
    rx: watch::Receiver<StreamHead>,
}

impl Subscription {
    /// Wraps the receiving side of a channel whose sender the backend updates
    /// after each commit. Backend implementers use this; the sender must be
    /// dropped once the stream has ended.
    pub fn from_receiver(rx: watch::Receiver<StreamHead>) -> Self {
        Self { rx }
    }

    /// A subscription to a stream no producer will touch again: it reports
    /// `head` and no further change.
    pub fn fixed(head: StreamHead) -> Self {
        let (_tx, rx) = watch::channel(head);
        Self { rx }
    }

    /// The newest head, marking it seen.
    pub fn head(&mut self) -> StreamHead {
        *self.rx.borrow_and_update()
    }

    /// Waits until the head moves past the last one seen and returns it, or
    /// returns `None` once no further change can come (the stream ended, or
    /// was deleted, and its last head was already seen).
    pub async fn changed(&mut self) -> Option<StreamHead> {
        match self.rx.changed().await {
            Ok(()) => Some(self.head()),
            Err(_) => None,
        }
    }
}

/// The watch channels of the streams that are live in this process. Only live
/// streams have an entry, so the map is bounded by the number of running
/// producers, not by the size of the store.
#[derive(Debug, Default)]
pub(crate) struct LiveStreams {
    senders: Mutex<HashMap<StreamId, watch::Sender<StreamHead>>>,
}

impl LiveStreams {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<StreamId, watch::Sender<StreamHead>>> {
        // A panic while holding this lock cannot leave the map inconsistent
        // (every operation is a single insert, update or remove), so poisoning
        // is safe to ignore.
        self.senders.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Registers a new live stream.
    pub(crate) fn started(&self, stream: StreamId, last_seq: u64) {
        let (tx, _rx) = watch::channel(StreamHead {
            last_seq,
            state: StreamState::Live,
        });
        self.lock().insert(stream, tx);
    }

    /// Announces a commit.
    pub(crate) fn advanced(&self, stream: StreamId, last_seq: u64) {
        if let Some(tx) = self.lock().get(&stream) {
            tx.send_if_modified(|head| {
                let moved = last_seq > head.last_seq;
                head.last_seq = head.last_seq.max(last_seq);
                moved
            });
        }
    }

    /// Announces the end of a stream and forgets it; followers wake, read the
    /// rest, and stop.
    pub(crate) fn ended(&self, stream: StreamId, last_seq: u64, state: StreamState) {
        if let Some(tx) = self.lock().remove(&stream) {
            tx.send_replace(StreamHead { last_seq, state });
        }
    }

    /// The ids of every live stream, for [`close`](super::EventStore::close).
    pub(crate) fn ids(&self) -> Vec<StreamId> {
        self.lock().keys().copied().collect()
    }

    /// A subscription if the stream is live here, `None` otherwise.
    pub(crate) fn subscribe(&self, stream: StreamId) -> Option<Subscription> {
        self.lock()
            .get(&stream)
            .map(|tx| Subscription::from_receiver(tx.subscribe()))
    }
}
