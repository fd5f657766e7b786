//! The layer's counters, and [`ResumabilityStats`], a snapshot of them.

use std::sync::atomic::{AtomicU64, Ordering};

/// A monotonic counter.
#[derive(Default)]
pub(crate) struct Counter(AtomicU64);

impl Counter {
    pub(crate) fn increment(&self) {
        self.add(1);
    }

    pub(crate) fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }

    fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// What a layer counts; see [`ResumabilityStats`] for what each means.
#[derive(Default)]
pub(crate) struct Counters {
    pub(crate) streams_started: Counter,
    pub(crate) streams_completed: Counter,
    pub(crate) streams_abandoned: Counter,
    pub(crate) resumes: Counter,
    pub(crate) events_replayed: Counter,
    pub(crate) rejections: Counter,
    pub(crate) store_failures: Counter,
    pub(crate) passthrough_streams: Counter,
}

impl Counters {
    pub(crate) fn snapshot(&self) -> ResumabilityStats {
        ResumabilityStats {
            streams_started: self.streams_started.get(),
            streams_completed: self.streams_completed.get(),
            streams_abandoned: self.streams_abandoned.get(),
            resumes: self.resumes.get(),
            events_replayed: self.events_replayed.get(),
            rejections: self.rejections.get(),
            store_failures: self.store_failures.get(),
            passthrough_streams: self.passthrough_streams.get(),
        }
    }
}

/// A snapshot of what a [`ResumabilityLayer`](super::ResumabilityLayer) has
/// done since it was created.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ResumabilityStats {
    /// Streams made resumable.
    pub streams_started: u64,
    /// Streams whose producer finished.
    pub streams_completed: u64,
    /// Streams given up: detach timeout, inner error, limit, session deleted.
    pub streams_abandoned: u64,
    /// Resumes answered with a replay.
    pub resumes: u64,
    /// Events replayed by resumes before they caught up with their stream.
    pub events_replayed: u64,
    /// Resumes refused with `400`.
    pub rejections: u64,
    /// Store operations that failed.
    pub store_failures: u64,
    /// SSE responses served without resumability (store failure under
    /// fail-open, or the per-session stream limit).
    pub passthrough_streams: u64,
}
