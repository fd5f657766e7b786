//! [`StatusSnapshot`]: what a layer is doing right now, for a status page:
//! its live streams, its recent resumes and refusals, and its counters.

use std::collections::VecDeque;
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant, SystemTime};

use super::shared::Shared;
use super::stats::ResumabilityStats;
use crate::store::{StreamCall, StreamId};

/// When a stream was opened, and what it answers once that is known.
#[derive(Debug)]
pub(crate) struct Opened {
    at: Instant,
    label: OnceLock<StreamLabel>,
}

/// What a stream answers: the request's JSON-RPC method and, for
/// `tools/call`, the tool.
#[derive(Clone, Debug, Default)]
pub(crate) struct StreamLabel {
    pub(crate) method: Option<String>,
    pub(crate) tool: Option<String>,
}

impl StreamLabel {
    /// What a stream's history records of its request.
    pub(crate) fn of(call: &StreamCall) -> Self {
        Self {
            method: Some(call.method.clone()),
            tool: call.tool.clone(),
        }
    }
}

impl Opened {
    pub(crate) fn now() -> Self {
        Self {
            at: Instant::now(),
            label: OnceLock::new(),
        }
    }

    /// Records what the stream answers; the first label set stays.
    pub(crate) fn set_label(&self, label: StreamLabel) {
        let _ = self.label.set(label);
    }
}

/// Why a resume was refused. The client gets the same `400` whatever the
/// reason; the reason is for operators.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum RefusalReason {
    /// `Last-Event-ID` is not an id of the layer's.
    Malformed,
    /// No such stream in the store (never existed, expired, or purged), or
    /// an id past its newest event.
    Unknown,
    /// The stream belongs to another session or identity.
    Foreign,
    /// The id is older than what retention keeps of the stream.
    Trimmed,
    /// The stream has ended and the client already has all of it.
    Ended,
}

impl RefusalReason {
    /// The reason as one lowercase word: `malformed`, `unknown`, `foreign`,
    /// `trimmed`, `ended`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Malformed => "malformed",
            Self::Unknown => "unknown",
            Self::Foreign => "foreign",
            Self::Trimmed => "trimmed",
            Self::Ended => "ended",
        }
    }
}

/// How a resume went.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ResumeOutcome {
    /// Served: the client was this many events behind the stream when it
    /// came back (events stored after its `Last-Event-ID`).
    Replayed {
        /// Events after the client's `Last-Event-ID` when it resumed.
        behind: u64,
    },
    /// Refused with `400`.
    Refused(RefusalReason),
}

/// One resume, as the layer saw it.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct RecentResume {
    /// When the resume arrived.
    pub at: SystemTime,
    /// The stream it asked for, if its `Last-Event-ID` named one.
    pub stream: Option<StreamId>,
    /// Served or refused.
    pub outcome: ResumeOutcome,
}

/// A stream produced in this process, now.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct LiveStream {
    /// The stream's id (the part of its event ids before the dot).
    pub stream: StreamId,
    /// Its MCP session, if it has one.
    pub session: Option<String>,
    /// The JSON-RPC method of the request it answers, when known.
    pub method: Option<String>,
    /// For a `tools/call`, the tool, when known.
    pub tool: Option<String>,
    /// How long ago it was opened.
    pub age: Duration,
    /// Whether a client is reading it now; a detached stream runs on until
    /// its producer ends or the detach timeout passes.
    pub attached: bool,
    /// Events committed so far.
    pub events: u64,
}

/// What a [`ResumabilityLayer`](super::ResumabilityLayer) is doing now:
/// taken by [`ResumabilityLayer::snapshot`](super::ResumabilityLayer::snapshot).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct StatusSnapshot {
    /// The counters, as [`ResumabilityLayer::stats`](super::ResumabilityLayer::stats) reads them.
    pub stats: ResumabilityStats,
    /// Live streams in this process, all of them.
    pub live_streams: usize,
    /// Of those, the ones a client is reading now.
    pub attached_streams: usize,
    /// The newest live streams, newest first, at most as many as asked for.
    pub streams: Vec<LiveStream>,
    /// The latest resumes, served and refused, newest first: at most
    /// [`StatusSnapshot::RECENT_RESUMES`].
    pub recent_resumes: Vec<RecentResume>,
}

impl StatusSnapshot {
    /// How many of the latest resumes a layer remembers: 64.
    pub const RECENT_RESUMES: usize = 64;
}

/// The latest resumes of a layer, at most [`StatusSnapshot::RECENT_RESUMES`].
#[derive(Debug, Default)]
pub(crate) struct RecentResumes {
    ring: Mutex<VecDeque<RecentResume>>,
}

impl RecentResumes {
    fn lock(&self) -> MutexGuard<'_, VecDeque<RecentResume>> {
        // Each update is one push or pop: a poisoned lock still holds a valid ring.
        self.ring.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Remembers a resume, forgetting the oldest past the bound.
    pub(crate) fn record(&self, stream: Option<StreamId>, outcome: ResumeOutcome) {
        let resume = RecentResume {
            at: SystemTime::now(),
            stream,
            outcome,
        };
        let mut ring = self.lock();
        if ring.len() == StatusSnapshot::RECENT_RESUMES {
            ring.pop_front();
        }
        ring.push_back(resume);
    }

    fn newest_first(&self) -> Vec<RecentResume> {
        self.lock().iter().rev().cloned().collect()
    }
}

/// Takes the snapshot: the counters, then the live streams (each read under
/// its own lock, not the registry's), then the recent resumes.
pub(crate) fn take(shared: &Shared, max_streams: usize) -> StatusSnapshot {
    let stats = shared.counters.snapshot();
    let now = Instant::now();
    let mut streams: Vec<LiveStream> = shared
        .live_streams
        .live()
        .iter()
        .map(|tail| {
            let label = tail.opened.label.get();
            LiveStream {
                stream: tail.stream,
                session: tail.session.clone(),
                method: label.and_then(|label| label.method.clone()),
                tool: label.and_then(|label| label.tool.clone()),
                age: now.saturating_duration_since(tail.opened.at),
                attached: tail.is_attached(),
                events: tail.last_seq(),
            }
        })
        .collect();
    let live_streams = streams.len();
    let attached_streams = streams.iter().filter(|stream| stream.attached).count();
    streams.sort_unstable_by_key(|stream| stream.age);
    streams.truncate(max_streams);
    StatusSnapshot {
        stats,
        live_streams,
        attached_streams,
        streams,
        recent_resumes: shared.recent_resumes.newest_first(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recent_resumes_keep_the_newest_within_the_bound() {
        let recent = RecentResumes::default();
        let total = StatusSnapshot::RECENT_RESUMES as u64 + 10;
        for behind in 0..total {
            recent.record(None, ResumeOutcome::Replayed { behind });
        }
        let newest = recent.newest_first();
        assert_eq!(newest.len(), StatusSnapshot::RECENT_RESUMES);
        assert_eq!(
            newest[0].outcome,
            ResumeOutcome::Replayed { behind: total - 1 }
        );
        assert_eq!(
            newest.last().map(|resume| resume.outcome),
            Some(ResumeOutcome::Replayed { behind: 10 })
        );
    }

    #[test]
    fn refusal_reasons_read_as_one_word() {
        let words: Vec<_> = [
            RefusalReason::Malformed,
            RefusalReason::Unknown,
            RefusalReason::Foreign,
            RefusalReason::Trimmed,
            RefusalReason::Ended,
        ]
        .into_iter()
        .map(RefusalReason::as_str)
        .collect();
        assert_eq!(
            words,
            ["malformed", "unknown", "foreign", "trimmed", "ended"]
        );
    }
}
