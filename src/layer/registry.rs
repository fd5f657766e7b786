//! The streams produced in this process, and the caps on how many may be
//! live at once: of the whole layer, and of one session.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use super::hot_tail::HotTail;
use crate::store::StreamId;

/// The streams produced in this process, by id, and how many each session has.
#[derive(Debug, Default)]
pub(crate) struct LiveStreams {
    inner: Mutex<LiveStreamsState>,
}

#[derive(Debug, Default)]
struct LiveStreamsState {
    streams: HashMap<StreamId, Arc<HotTail>>,
    per_session: HashMap<String, usize>,
    /// Streams whose producer has ended but whose end the store has not
    /// recorded yet (it failed, and recording is being retried). Their
    /// ended hot tails answer resumes here, so no reader waits on a producer
    /// that no longer exists. They do not count against the caps.
    ending: HashMap<StreamId, Arc<HotTail>>,
}

/// The caps on a layer's live streams.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Caps {
    /// Live streams in all, of every session and of none.
    pub(crate) all: usize,
    /// Live streams of one session.
    pub(crate) per_session: usize,
}

/// The cap a new stream would exceed, with its value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum CapReached {
    /// [`Caps::all`].
    Layer(usize),
    /// [`Caps::per_session`].
    Session(usize),
}

impl LiveStreamsState {
    /// Takes a stream out of the live ones and its session's count.
    fn release(&mut self, stream: StreamId) -> Option<Arc<HotTail>> {
        let tail = self.streams.remove(&stream)?;
        crate::metrics::record::live_streams(-1.0);
        if let Some(session) = &tail.session
            && let Some(count) = self.per_session.get_mut(session)
        {
            *count -= 1;
            if *count == 0 {
                self.per_session.remove(session);
            }
        }
        Some(tail)
    }

    fn refusal(&self, session: Option<&str>, caps: Caps) -> Option<CapReached> {
        if self.streams.len() >= caps.all {
            return Some(CapReached::Layer(caps.all));
        }
        let in_session = session.map(|s| self.per_session.get(s).copied().unwrap_or(0));
        in_session
            .is_some_and(|count| count >= caps.per_session)
            .then_some(CapReached::Session(caps.per_session))
    }
}

impl LiveStreams {
    fn lock(&self) -> MutexGuard<'_, LiveStreamsState> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Why a new stream of `session` would be refused now, if it would.
    pub(crate) fn refusal(&self, session: Option<&str>, caps: Caps) -> Option<CapReached> {
        self.lock().refusal(session, caps)
    }

    /// Registers a new stream, unless `caps` refuse it.
    pub(crate) fn insert(&self, tail: &Arc<HotTail>, caps: Caps) -> Result<(), CapReached> {
        let mut state = self.lock();
        if let Some(full) = state.refusal(tail.session.as_deref(), caps) {
            return Err(full);
        }
        if let Some(session) = &tail.session {
            *state.per_session.entry(session.clone()).or_default() += 1;
        }
        state.streams.insert(tail.stream, tail.clone());
        crate::metrics::record::live_streams(1.0);
        Ok(())
    }

    /// Forgets a stream whose producer ended and whose end is in the store.
    pub(crate) fn remove(&self, stream: StreamId) {
        let mut state = self.lock();
        state.ending.remove(&stream);
        state.release(stream);
    }

    /// Keeps a stream whose producer ended, but whose end the store failed
    /// to record, out of the caps and still findable, until
    /// [`remove`](Self::remove).
    pub(crate) fn keep_until_recorded(&self, stream: StreamId) {
        let mut state = self.lock();
        if let Some(tail) = state.release(stream) {
            state.ending.insert(stream, tail);
        }
    }

    /// The stream's hot tail, if it is produced (or was, and its end is not
    /// recorded yet) in this process.
    pub(crate) fn get(&self, stream: StreamId) -> Option<Arc<HotTail>> {
        let state = self.lock();
        state
            .streams
            .get(&stream)
            .or_else(|| state.ending.get(&stream))
            .cloned()
    }

    /// The live streams (not those only kept until their end is
    /// recorded), for a status snapshot.
    pub(crate) fn live(&self) -> Vec<Arc<HotTail>> {
        self.lock().streams.values().cloned().collect()
    }

    /// The streams of a session here, to stop when the session is deleted.
    pub(crate) fn of_session(&self, session: &str) -> Vec<Arc<HotTail>> {
        let state = self.lock();
        state
            .streams
            .values()
            .chain(state.ending.values())
            .filter(|tail| tail.session.as_deref() == Some(session))
            .cloned()
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn live_streams_caps_streams_per_session() {
        let registry = LiveStreams::default();
        let a = HotTail::new(StreamId::random(), Some("s".into()));
        let b = HotTail::new(StreamId::random(), Some("s".into()));
        let caps = Caps {
            all: 10,
            per_session: 1,
        };
        assert_eq!(registry.insert(&a, caps), Ok(()));
        assert_eq!(registry.insert(&b, caps), Err(CapReached::Session(1)));
        assert_eq!(registry.refusal(None, caps), None);
        registry.remove(a.stream);
        assert_eq!(registry.insert(&b, caps), Ok(()));
        assert_eq!(registry.of_session("s").len(), 1);
    }

    /// The cap on all live streams counts streams without a session too, and
    /// a stream it refuses does not count against its session.
    #[test]
    fn live_streams_caps_all_live_streams() {
        let registry = LiveStreams::default();
        let without = HotTail::new(StreamId::random(), None);
        let with = HotTail::new(StreamId::random(), Some("s".into()));
        let caps = Caps {
            all: 1,
            per_session: 5,
        };
        assert_eq!(registry.insert(&without, caps), Ok(()));
        assert_eq!(registry.insert(&with, caps), Err(CapReached::Layer(1)));
        assert!(registry.of_session("s").is_empty());
        registry.remove(without.stream);
        assert_eq!(registry.insert(&with, caps), Ok(()));
        assert_eq!(registry.of_session("s").len(), 1);
    }

    /// A stream whose end is not recorded stays findable, and leaves room
    /// under the caps for new ones.
    #[test]
    fn an_ended_stream_kept_until_recorded_is_found_and_not_counted() {
        let live_streams = LiveStreams::default();
        let ended = HotTail::new(StreamId::random(), Some("s".into()));
        let next = HotTail::new(StreamId::random(), Some("s".into()));
        let caps = Caps {
            all: 1,
            per_session: 1,
        };
        assert_eq!(live_streams.insert(&ended, caps), Ok(()));
        live_streams.keep_until_recorded(ended.stream);
        assert!(live_streams.get(ended.stream).is_some());
        assert_eq!(live_streams.of_session("s").len(), 1);
        assert_eq!(live_streams.insert(&next, caps), Ok(()));
        live_streams.remove(ended.stream);
        assert!(live_streams.get(ended.stream).is_none());
        assert!(live_streams.get(next.stream).is_some());
    }
}
