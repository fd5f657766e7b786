//! The values that flow in and out of an [`EventStore`](super::EventStore).

use std::fmt;
use std::str::FromStr;
use std::time::{Duration, SystemTime};

use bytes::Bytes;

/// Identifies one stream: 128 bits, 122 of them random from the operating
/// system's CSPRNG (a v4 UUID), so stream ids and the event ids built on them
/// cannot be guessed.
///
/// Displayed as 32 lowercase hex digits.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StreamId(uuid::Uuid);

impl StreamId {
    /// A fresh, unguessable stream id.
    pub fn random() -> Self {
        Self(uuid::Uuid::new_v4())
    }

    /// The id's 16 bytes, as stored by the backends.
    pub fn as_bytes(&self) -> &[u8; 16] {
        self.0.as_bytes()
    }

    /// Rebuilds an id from the 16 bytes returned by [`as_bytes`](Self::as_bytes).
    pub fn from_bytes(bytes: [u8; 16]) -> Self {
        Self(uuid::Uuid::from_bytes(bytes))
    }
}

impl fmt::Display for StreamId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0.simple(), f)
    }
}

impl fmt::Debug for StreamId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "StreamId({self})")
    }
}

/// The error returned when a string is not a valid [`StreamId`] or [`EventId`].
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "not an mcp-resume event id (expected 32 lowercase hex digits, '.', and a sequence number)"
)]
pub struct InvalidId;

impl FromStr for StreamId {
    type Err = InvalidId;

    fn from_str(s: &str) -> Result<Self, InvalidId> {
        // Only the canonical form is accepted, so one id has exactly one spelling.
        if s.len() != 32 || !s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
            return Err(InvalidId);
        }
        uuid::Uuid::try_parse(s).map(Self).map_err(|_| InvalidId)
    }
}

/// The id the layer gives an SSE event: the stream it belongs to and its
/// position in that stream.
///
/// Written as `<stream>.<seq>`, for example
/// `9f0c2b6c4f0e4d7e9a3f5b1c2d3e4f50.42`: ASCII only, never NUL, CR or LF.
/// Sequence `0` is the position before the first event: the id of the
/// priming event a 2025-11-25 client receives first.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct EventId {
    /// The stream the event belongs to.
    pub stream: StreamId,
    /// The event's sequence number in that stream (1 for the first event).
    pub seq: u64,
}

impl EventId {
    /// The id of the event at `seq` in `stream`.
    pub fn new(stream: StreamId, seq: u64) -> Self {
        Self { stream, seq }
    }

    /// Parses a `Last-Event-ID` header value, given as bytes because the
    /// header may hold anything a client chose to send.
    pub fn parse(value: &[u8]) -> Result<Self, InvalidId> {
        std::str::from_utf8(value).map_err(|_| InvalidId)?.parse()
    }
}

impl fmt::Display for EventId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.stream, self.seq)
    }
}

impl FromStr for EventId {
    type Err = InvalidId;

    fn from_str(s: &str) -> Result<Self, InvalidId> {
        let (stream, seq) = s.split_once('.').ok_or(InvalidId)?;
        // Canonical decimal only: no sign, no leading zeros, no overflow.
        let canonical = !seq.is_empty()
            && seq.bytes().all(|b| b.is_ascii_digit())
            && (seq == "0" || !seq.starts_with('0'));
        if !canonical {
            return Err(InvalidId);
        }
        Ok(Self {
            stream: stream.parse()?,
            seq: seq.parse().map_err(|_| InvalidId)?,
        })
    }
}

/// Which kind of MCP stream a stored stream records.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum StreamKind {
    /// The SSE response to a client's POST (a request's progress and result).
    PostResponse,
    /// The standalone stream a client opens with GET for server-initiated messages.
    Standalone,
}

impl StreamKind {
    // The codes durable backends store.
    #[cfg_attr(not(any(feature = "sqlite", feature = "redis")), allow(dead_code))]
    pub(crate) fn code(self) -> i64 {
        match self {
            Self::PostResponse => 0,
            Self::Standalone => 1,
        }
    }

    #[cfg_attr(not(any(feature = "sqlite", feature = "redis")), allow(dead_code))]
    pub(crate) fn from_code(code: i64) -> Option<Self> {
        match code {
            0 => Some(Self::PostResponse),
            1 => Some(Self::Standalone),
            _ => None,
        }
    }
}

/// Where a stream's producer is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum StreamState {
    /// The producer is running; more events may come.
    Live,
    /// The producer finished: every event it made is in the store.
    Complete,
    /// The producer was stopped before it finished (detach timeout, shutdown,
    /// or a process that died): no more events will come, and some never came.
    Abandoned,
}

impl StreamState {
    /// True for [`Complete`](Self::Complete) and [`Abandoned`](Self::Abandoned).
    pub fn is_ended(self) -> bool {
        !matches!(self, Self::Live)
    }

    // The codes durable backends store.
    #[cfg_attr(not(any(feature = "sqlite", feature = "redis")), allow(dead_code))]
    pub(crate) fn code(self) -> i64 {
        match self {
            Self::Live => 0,
            Self::Complete => 1,
            Self::Abandoned => 2,
        }
    }

    #[cfg_attr(not(any(feature = "sqlite", feature = "redis")), allow(dead_code))]
    pub(crate) fn from_code(code: i64) -> Option<Self> {
        match code {
            0 => Some(Self::Live),
            1 => Some(Self::Complete),
            2 => Some(Self::Abandoned),
            _ => None,
        }
    }
}

impl fmt::Display for StreamState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Live => "live",
            Self::Complete => "complete",
            Self::Abandoned => "abandoned",
        })
    }
}

/// How a producer ended a stream, for [`EventStore::end_stream`](super::EventStore::end_stream).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum StreamEnd {
    /// The producer finished normally.
    Complete,
    /// The producer was stopped before it finished.
    Abandoned,
}

impl From<StreamEnd> for StreamState {
    fn from(end: StreamEnd) -> Self {
        match end {
            StreamEnd::Complete => Self::Complete,
            StreamEnd::Abandoned => Self::Abandoned,
        }
    }
}

/// What to record about a stream when it is created.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewStream {
    /// POST response or standalone GET stream.
    pub kind: StreamKind,
    /// The MCP session (`Mcp-Session-Id`) the stream belongs to, if any.
    pub session: Option<String>,
    /// The authenticated identity the stream belongs to, if identity binding is on.
    pub identity: Option<String>,
    /// Keep at most this many events of this stream, instead of the store's
    /// [`Retention::max_events_per_stream`]. Values below 1 are treated as 1.
    pub max_events: Option<u64>,
    /// The request the stream answers, kept for its history (see
    /// [`EventStore::list_streams`](super::EventStore::list_streams)).
    pub call: Option<super::StreamCall>,
}

impl NewStream {
    /// A stream of `kind`, bound to no session and no identity.
    pub fn new(kind: StreamKind) -> Self {
        Self {
            kind,
            session: None,
            identity: None,
            max_events: None,
            call: None,
        }
    }

    /// Records the request the stream answers.
    pub fn call(mut self, call: super::StreamCall) -> Self {
        self.call = Some(call);
        self
    }

    /// Binds the stream to an MCP session.
    pub fn session(mut self, session: impl Into<String>) -> Self {
        self.session = Some(session.into());
        self
    }

    /// Binds the stream to an authenticated identity.
    pub fn identity(mut self, identity: impl Into<String>) -> Self {
        self.identity = Some(identity.into());
        self
    }

    /// Caps this stream's retained events (see [`NewStream::max_events`]).
    pub fn max_events(mut self, max: u64) -> Self {
        self.max_events = Some(max.max(1));
        self
    }

    /// The cap that applies to this stream under `retention`.
    pub(crate) fn event_cap(&self, retention: &Retention) -> u64 {
        self.max_events
            .unwrap_or(retention.max_events_per_stream)
            .max(1)
    }
}

/// One SSE event to append: what is needed to send it again, minus its id
/// (the id is derived from the stream and the sequence the store assigns).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewEvent {
    /// The SSE `event` field, if the event had one.
    pub event_type: Option<Bytes>,
    /// The SSE data buffer: the `data` lines joined by LF, without a final LF.
    pub data: Bytes,
}

impl NewEvent {
    /// A plain `message` event (no `event` field) carrying `data`.
    pub fn message(data: impl Into<Bytes>) -> Self {
        Self {
            event_type: None,
            data: data.into(),
        }
    }

    /// An event with an explicit SSE event type.
    pub fn typed(event_type: impl Into<Bytes>, data: impl Into<Bytes>) -> Self {
        Self {
            event_type: Some(event_type.into()),
            data: data.into(),
        }
    }

    /// Bytes this event occupies in a store, for limits and accounting.
    pub fn size(&self) -> usize {
        self.data.len() + self.event_type.as_ref().map_or(0, Bytes::len)
    }
}

/// A committed event, as read back from a store.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredEvent {
    /// Its sequence number in its stream (1 for the first event).
    pub seq: u64,
    /// The SSE `event` field, if the event had one.
    pub event_type: Option<Bytes>,
    /// The SSE data buffer.
    pub data: Bytes,
}

/// What [`EventStore::append`](super::EventStore::append) committed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AppendReceipt {
    /// The sequence number given to the first appended event.
    pub first_seq: u64,
    /// The sequence number given to the last appended event.
    pub last_seq: u64,
}

/// The newest committed position of a stream and its state: what a
/// [`Subscription`](super::Subscription) reports and what a reader needs to
/// know whether to wait for more.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StreamHead {
    /// Sequence number of the newest committed event (0 before the first).
    pub last_seq: u64,
    /// Whether more events may come.
    pub state: StreamState,
}

/// One page of a stream read by [`EventStore::read_batch`](super::EventStore::read_batch).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Batch {
    /// The events, in sequence order, with no gap.
    pub events: Vec<StoredEvent>,
    /// The stream's head as of the same read.
    pub head: StreamHead,
}

/// Everything a store knows about one stream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StreamInfo {
    /// The stream's id.
    pub id: StreamId,
    /// POST response or standalone GET stream.
    pub kind: StreamKind,
    /// Live, complete or abandoned.
    pub state: StreamState,
    /// The MCP session the stream is bound to.
    pub session: Option<String>,
    /// The identity the stream is bound to.
    pub identity: Option<String>,
    /// Events currently retained.
    pub event_count: u64,
    /// Sequence number of the oldest retained event. Events before it were
    /// trimmed by retention; when no event is retained this is `last_seq + 1`.
    pub first_seq: u64,
    /// Sequence number of the newest event ever appended (0 before the first).
    pub last_seq: u64,
    /// When the stream was created.
    pub created_at: SystemTime,
    /// When the stream was last created, appended to or ended.
    pub last_activity: SystemTime,
}

impl StreamInfo {
    /// The stream's head: its newest sequence and its state.
    pub fn head(&self) -> StreamHead {
        StreamHead {
            last_seq: self.last_seq,
            state: self.state,
        }
    }
}

/// What a retention sweep removed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SweepReport {
    /// Streams deleted because they were idle longer than the maximum age.
    pub streams_removed: u64,
    /// Events deleted with them.
    pub events_removed: u64,
}

/// How long and how much a store keeps, shared by every backend.
///
/// Retention is on by default, so a store's size is bounded without
/// configuration: the most common complaint about SSE hubs that keep history
/// is that it grows until the disk is full.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Retention {
    pub(crate) max_age: Duration,
    pub(crate) max_events_per_stream: u64,
    pub(crate) sweep_interval: Duration,
}

impl Retention {
    /// How long an ended stream is kept after its last activity, unless
    /// [`max_age`](Self::max_age) says otherwise: 1 hour, long enough for a
    /// client to come back from a dropped connection or a laptop lid.
    pub const DEFAULT_MAX_AGE: Duration = Duration::from_secs(60 * 60);

    /// How many events each stream keeps, unless
    /// [`max_events_per_stream`](Self::max_events_per_stream) says
    /// otherwise: 10,000, far more than a client falls behind by in practice,
    /// while bounding what one runaway stream can hold.
    pub const DEFAULT_MAX_EVENTS_PER_STREAM: u64 = 10_000;

    /// How often a store sweeps on its own, unless
    /// [`sweep_interval`](Self::sweep_interval) says otherwise: 60 seconds,
    /// small next to [`DEFAULT_MAX_AGE`](Self::DEFAULT_MAX_AGE).
    pub const DEFAULT_SWEEP_INTERVAL: Duration = Duration::from_secs(60);

    /// The defaults: streams idle for [`DEFAULT_MAX_AGE`](Self::DEFAULT_MAX_AGE)
    /// are deleted, each stream keeps its newest
    /// [`DEFAULT_MAX_EVENTS_PER_STREAM`](Self::DEFAULT_MAX_EVENTS_PER_STREAM)
    /// events, and sweeps run at most every
    /// [`DEFAULT_SWEEP_INTERVAL`](Self::DEFAULT_SWEEP_INTERVAL).
    pub fn new() -> Self {
        Self {
            max_age: Self::DEFAULT_MAX_AGE,
            max_events_per_stream: Self::DEFAULT_MAX_EVENTS_PER_STREAM,
            sweep_interval: Self::DEFAULT_SWEEP_INTERVAL,
        }
    }

    /// Ended streams (complete or abandoned) whose last activity is older than
    /// this are deleted by a sweep. Live streams are never swept: their
    /// producer is still running. Default: [`Self::DEFAULT_MAX_AGE`] (1 hour).
    pub fn max_age(mut self, max_age: Duration) -> Self {
        self.max_age = max_age;
        self
    }

    /// Each stream keeps at most this many events; older ones are trimmed as
    /// new ones arrive, and a resume from a trimmed position is refused
    /// (never answered with a partial replay). Default:
    /// [`Self::DEFAULT_MAX_EVENTS_PER_STREAM`] (10,000). Values below 1 are
    /// treated as 1.
    pub fn max_events_per_stream(mut self, max: u64) -> Self {
        self.max_events_per_stream = max.max(1);
        self
    }

    /// How often a store runs a sweep on its own. Default:
    /// [`Self::DEFAULT_SWEEP_INTERVAL`] (60 seconds).
    pub fn sweep_interval(mut self, interval: Duration) -> Self {
        self.sweep_interval = interval;
        self
    }

    /// The configured maximum age.
    pub fn max_age_value(&self) -> Duration {
        self.max_age
    }

    /// The configured per-stream event cap.
    pub fn max_events_per_stream_value(&self) -> u64 {
        self.max_events_per_stream
    }

    /// The configured sweep interval.
    pub fn sweep_interval_value(&self) -> Duration {
        self.sweep_interval
    }
}

impl Default for Retention {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_id_round_trips_through_text() {
        let id = EventId::new(StreamId::random(), 42);
        let text = id.to_string();
        assert_eq!(text.len(), 32 + 1 + 2);
        assert!(text.bytes().all(|b| b.is_ascii_graphic()));
        assert_eq!(EventId::parse(text.as_bytes()), Ok(id));
    }

    #[test]
    fn stream_ids_differ() {
        assert_ne!(StreamId::random(), StreamId::random());
    }

    #[test]
    fn event_id_rejects_non_canonical_forms() {
        let stream = StreamId::random().to_string();
        for bad in [
            String::new(),
            "garbage".to_string(),
            stream.clone(),
            format!("{stream}."),
            format!("{stream}.01"),
            format!("{stream}.+1"),
            format!("{stream}.-1"),
            format!("{stream}.1.2"),
            format!("{stream}.18446744073709551616"),
            format!("{}.1", stream.to_uppercase()),
            format!("{}.1", &stream[1..]),
            format!("{stream}0.1"),
            format!("{}.1", uuid::Uuid::new_v4().hyphenated()),
        ] {
            assert_eq!(bad.parse::<EventId>(), Err(InvalidId), "{bad:?}");
        }
        assert_eq!(EventId::parse(b"\xff\xfe"), Err(InvalidId));
        assert!(format!("{stream}.0").parse::<EventId>().is_ok());
    }
}
