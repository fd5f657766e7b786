//! What each stream was, for operators: the request it answered, how it
//! ended, how much it carried, how often it was resumed; and the listings
//! built on [`EventStore::list_streams`] (sessions, tool calls, a summary).
//!
//! Every backend records the same fields: the call is given at creation
//! ([`NewStream::call`](super::NewStream::call)), resumes are counted with
//! [`EventStore::record_resume`], and the outcome is derived when a stream
//! is listed, from its state and its last event (a JSON-RPC response with
//! a `result` or an `error`), so nothing is written on the event path.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::time::{Duration, SystemTime};

use serde::de::{self, IgnoredAny, MapAccess, Visitor};

use super::{EventStore, StoreError, StreamInfo, StreamKind, StreamState};

/// The JSON-RPC request a stream answers: its method and, for
/// `tools/call`, the tool; its id as the client sent it.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct StreamCall {
    /// The JSON-RPC method, e.g. `tools/call`.
    pub method: String,
    /// For `tools/call`, the tool's name (`params.name`).
    pub tool: Option<String>,
    /// The request's `id`, as JSON text (`7`, `"abc"`).
    pub request_id: Option<String>,
}

impl StreamCall {
    /// The longest method, tool name or request id kept; longer ones are
    /// cut (on a character boundary), so a client cannot grow the store
    /// through them.
    pub const MAX_FIELD_BYTES: usize = 256;

    /// A call of `method`, without tool or id.
    pub fn new(method: impl Into<String>) -> Self {
        Self {
            method: bounded(method.into()),
            tool: None,
            request_id: None,
        }
    }

    /// Sets the tool name.
    pub fn tool(mut self, tool: impl Into<String>) -> Self {
        self.tool = Some(bounded(tool.into()));
        self
    }

    /// Sets the request id (JSON text).
    pub fn request_id(mut self, id: impl Into<String>) -> Self {
        self.request_id = Some(bounded(id.into()));
        self
    }

    /// Reads the call from a JSON-RPC request body: `method`, `id`, and
    /// `params.name` for `tools/call`. Works on a body cut short (a prefix
    /// of a large request): what was read before the cut is kept. `None`
    /// when no method was found (a batch, a response, not JSON).
    pub fn from_json_rpc(body: &[u8]) -> Option<Self> {
        let mut found = Found::default();
        let mut deserializer = serde_json::Deserializer::from_slice(body);
        // A truncated body fails somewhere after the fields it has.
        let _ = de::Deserializer::deserialize_map(&mut deserializer, RequestVisitor(&mut found));
        let method = found.method?;
        let mut call = Self::new(method);
        if call.method == "tools/call" {
            call.tool = found.tool.map(bounded);
        }
        call.request_id = found.id.map(bounded);
        Some(call)
    }
}

impl StreamCall {
    /// Reads the call from the `Mcp-Method` and `Mcp-Name` headers that
    /// 2026-07-28 requests carry (the name is the tool's for `tools/call`);
    /// `None` without a method. The request id is only in the body.
    pub fn from_headers(headers: &http::HeaderMap) -> Option<Self> {
        let text = |name: &str| {
            headers
                .get(name)
                .and_then(|value| value.to_str().ok())
                .map(str::trim)
                .filter(|value| !value.is_empty())
        };
        let mut call = Self::new(text("mcp-method")?);
        if call.method == "tools/call" {
            call.tool = text("mcp-name").map(|name| bounded(name.to_owned()));
        }
        Some(call)
    }
}

/// Cuts `text` to [`StreamCall::MAX_FIELD_BYTES`].
fn bounded(mut text: String) -> String {
    if text.len() > StreamCall::MAX_FIELD_BYTES {
        let mut end = StreamCall::MAX_FIELD_BYTES;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
    }
    text
}

#[derive(Default)]
struct Found {
    method: Option<String>,
    id: Option<String>,
    tool: Option<String>,
}

struct RequestVisitor<'a>(&'a mut Found);

impl<'de> Visitor<'de> for RequestVisitor<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON-RPC request object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
            match key.as_ref() {
                "method" => self.0.method = map.next_value::<Option<String>>()?,
                "id" => {
                    let id: serde_json::Value = map.next_value()?;
                    if matches!(
                        id,
                        serde_json::Value::String(_) | serde_json::Value::Number(_)
                    ) {
                        self.0.id = Some(id.to_string());
                    }
                }
                "params" => map.next_value_seed(ParamsSeed(self.0))?,
                _ => drop(map.next_value::<IgnoredAny>()?),
            }
        }
        Ok(())
    }
}

struct ParamsSeed<'a>(&'a mut Found);

impl<'de> de::DeserializeSeed<'de> for ParamsSeed<'_> {
    type Value = ();

    fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for ParamsSeed<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("JSON-RPC params")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
            if key == "name" {
                self.0.tool = map.next_value::<Option<String>>()?;
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(())
    }

    fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(())
    }

    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }
}

/// How a stream ended, as far as the store can tell.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum StreamOutcome {
    /// Its producer is still running.
    Running,
    /// Its last event is the JSON-RPC response, with a `result`.
    Result,
    /// Its last event is the JSON-RPC response, with an `error`.
    Error,
    /// The upstream ended the response without answering the request.
    UpstreamFailure,
    /// Stopped before its answer: the producer gave up (no client came back
    /// within the detach timeout, the upstream's connection broke, the
    /// store failed) or its process died.
    Abandoned,
    /// A standalone (GET) stream that its server closed.
    Closed,
}

impl StreamOutcome {
    /// The outcome of a stream of `kind` in `state` whose last retained
    /// event carries `last_data`.
    pub fn derive(kind: StreamKind, state: StreamState, last_data: Option<&[u8]>) -> Self {
        if state == StreamState::Live {
            return Self::Running;
        }
        if let Some(outcome) = last_data.and_then(response_outcome) {
            return outcome;
        }
        match (kind, state) {
            (StreamKind::Standalone, StreamState::Complete) => Self::Closed,
            (StreamKind::PostResponse, StreamState::Complete) => Self::UpstreamFailure,
            _ => Self::Abandoned,
        }
    }

    /// True when the stream stopped before its answer: [`Abandoned`](Self::Abandoned)
    /// or [`UpstreamFailure`](Self::UpstreamFailure).
    pub fn is_cut_off(self) -> bool {
        matches!(self, Self::Abandoned | Self::UpstreamFailure)
    }

    /// The outcome's name, as `inspect` shows it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Running => "running",
            Self::Result => "result",
            Self::Error => "error",
            Self::UpstreamFailure => "upstream-failure",
            Self::Abandoned => "abandoned",
            Self::Closed => "closed",
        }
    }
}

impl fmt::Display for StreamOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `Result` or `Error` if `data` is a JSON-RPC response.
fn response_outcome(data: &[u8]) -> Option<StreamOutcome> {
    let serde_json::Value::Object(response) = serde_json::from_slice(data).ok()? else {
        return None;
    };
    if !response.contains_key("id") || response.contains_key("method") {
        return None;
    }
    match (
        response.contains_key("result"),
        response.contains_key("error"),
    ) {
        (_, true) => Some(StreamOutcome::Error),
        (true, false) => Some(StreamOutcome::Result),
        (false, false) => None,
    }
}

/// One stream as [`EventStore::list_streams`] lists it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StreamRecord {
    /// What [`EventStore::stream_info`] says about it.
    pub info: StreamInfo,
    /// The request it answers, if the layer knew it.
    pub call: Option<StreamCall>,
    /// When it ended; `None` while it runs, and for a stream whose process
    /// died (it was marked abandoned later).
    pub ended_at: Option<SystemTime>,
    /// How it ended.
    pub outcome: StreamOutcome,
    /// The bytes of its retained events (`data` and `event` fields): all
    /// of them, unless retention trimmed it (then `info.first_seq > 1`).
    pub bytes: u64,
    /// How many times a client resumed it.
    pub resumes: u64,
}

impl StreamRecord {
    /// From creation to end, for an ended stream whose end time is known.
    pub fn duration(&self) -> Option<Duration> {
        self.ended_at?.duration_since(self.info.created_at).ok()
    }

    /// The events it produced (retained or not).
    pub fn events(&self) -> u64 {
        self.info.last_seq
    }

    /// True for a `tools/call` stream.
    pub fn is_tool_call(&self) -> bool {
        self.call
            .as_ref()
            .is_some_and(|call| call.method == "tools/call")
    }
}

/// Which streams [`EventStore::list_streams`] returns: those created in a
/// time window, of one session, or tool calls only; the newest first, at
/// most [`limit`](Self::limit).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StreamQuery {
    pub(crate) stream: Option<super::StreamId>,
    pub(crate) session: Option<String>,
    pub(crate) since: Option<SystemTime>,
    pub(crate) until: Option<SystemTime>,
    pub(crate) tool_calls_only: bool,
    pub(crate) limit: usize,
}

impl StreamQuery {
    /// How many streams a query returns unless [`limit`](Self::limit) says
    /// otherwise: 10,000, enough for a day of a busy server's calls while
    /// bounding what one listing holds in memory.
    pub const DEFAULT_LIMIT: usize = 10_000;

    /// Every stream, newest first, up to [`Self::DEFAULT_LIMIT`].
    pub fn new() -> Self {
        Self {
            stream: None,
            session: None,
            since: None,
            until: None,
            tool_calls_only: false,
            limit: Self::DEFAULT_LIMIT,
        }
    }

    /// Only this stream: its record, if it exists (and passes the other
    /// filters).
    pub fn stream(mut self, stream: super::StreamId) -> Self {
        self.stream = Some(stream);
        self
    }

    /// Only the streams of this MCP session.
    pub fn session(mut self, session: impl Into<String>) -> Self {
        self.session = Some(session.into());
        self
    }

    /// Only streams created at or after `since`.
    pub fn since(mut self, since: SystemTime) -> Self {
        self.since = Some(since);
        self
    }

    /// Only streams created before `until`.
    pub fn until(mut self, until: SystemTime) -> Self {
        self.until = Some(until);
        self
    }

    /// Only `tools/call` streams.
    pub fn tool_calls_only(mut self) -> Self {
        self.tool_calls_only = true;
        self
    }

    /// At most this many streams (the newest). Default:
    /// [`Self::DEFAULT_LIMIT`]. Values below 1 are treated as 1.
    pub fn limit(mut self, limit: usize) -> Self {
        self.limit = limit.max(1);
        self
    }

    /// Whether a stream passes the filters (the limit aside).
    pub(crate) fn admits(&self, info: &StreamInfo, call: Option<&StreamCall>) -> bool {
        self.stream.is_none_or(|stream| info.id == stream)
            && self
                .session
                .as_deref()
                .is_none_or(|session| info.session.as_deref() == Some(session))
            && self.since.is_none_or(|since| info.created_at >= since)
            && self.until.is_none_or(|until| info.created_at < until)
            && (!self.tool_calls_only || call.is_some_and(|call| call.method == "tools/call"))
    }

    /// Sorts `records` newest first and keeps the first [`limit`](Self::limit).
    pub(crate) fn finish(&self, mut records: Vec<StreamRecord>) -> Vec<StreamRecord> {
        records.sort_by(|a, b| {
            b.info
                .created_at
                .cmp(&a.info.created_at)
                .then(b.info.id.cmp(&a.info.id))
        });
        records.truncate(self.limit);
        records
    }
}

impl Default for StreamQuery {
    fn default() -> Self {
        Self::new()
    }
}

/// One MCP session, from the streams a listing found of it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionSummary {
    /// The session id (`Mcp-Session-Id`).
    pub session: String,
    /// The identity its streams are bound to, if any (the first one seen).
    pub identity: Option<String>,
    /// Its streams.
    pub streams: u64,
    /// Its `tools/call` streams.
    pub tool_calls: u64,
    /// Its streams still running.
    pub running: u64,
    /// When its first stream was created.
    pub first_activity: SystemTime,
    /// The latest activity of its streams.
    pub last_activity: SystemTime,
}

/// The sessions of the streams `query` selects, the most recently active
/// first. Streams bound to no session are left out.
pub async fn sessions(
    store: &dyn EventStore,
    query: &StreamQuery,
) -> Result<Vec<SessionSummary>, StoreError> {
    let records = store.list_streams(query).await?;
    Ok(sessions_of(&records))
}

/// [`sessions`], from streams already listed.
pub fn sessions_of(records: &[StreamRecord]) -> Vec<SessionSummary> {
    let mut by_session: HashMap<&str, SessionSummary> = HashMap::new();
    for record in records {
        let Some(session) = record.info.session.as_deref() else {
            continue;
        };
        let summary = by_session.entry(session).or_insert_with(|| SessionSummary {
            session: session.to_owned(),
            identity: None,
            streams: 0,
            tool_calls: 0,
            running: 0,
            first_activity: record.info.created_at,
            last_activity: record.info.last_activity,
        });
        summary.streams += 1;
        summary.tool_calls += u64::from(record.is_tool_call());
        summary.running += u64::from(record.outcome == StreamOutcome::Running);
        summary.first_activity = summary.first_activity.min(record.info.created_at);
        summary.last_activity = summary.last_activity.max(record.info.last_activity);
        if summary.identity.is_none() {
            summary.identity = record.info.identity.clone();
        }
    }
    let mut sessions: Vec<SessionSummary> = by_session.into_values().collect();
    sessions.sort_by(|a, b| {
        b.last_activity
            .cmp(&a.last_activity)
            .then_with(|| a.session.cmp(&b.session))
    });
    sessions
}

/// Statistics over a set of streams: what [`summary`] returns.
#[derive(Clone, Debug, PartialEq)]
pub struct HistorySummary {
    /// Streams looked at.
    pub streams: u64,
    /// Among them, `tools/call` streams.
    pub tool_calls: u64,
    /// Streams resumed at least once, as a share of the ended ones (0 to 1).
    pub share_resumed: f64,
    /// Streams cut off ([`StreamOutcome::is_cut_off`]), as a share of the
    /// ended ones (0 to 1).
    pub share_cut_off: f64,
    /// Per method and tool (`tools/call` counts per tool), most calls first.
    pub calls: Vec<CallStats>,
}

/// Statistics of the streams of one method (and tool).
#[derive(Clone, Debug, PartialEq)]
pub struct CallStats {
    /// The method (`tools/call`, `prompts/get`, ...; `GET` for standalone
    /// streams, `unknown` when the layer did not know the request).
    pub method: String,
    /// The tool, for `tools/call`.
    pub tool: Option<String>,
    /// How many streams.
    pub calls: u64,
    /// Of them, still running.
    pub running: u64,
    /// Of the ended ones, with a JSON-RPC error.
    pub errors: u64,
    /// Resumed at least once.
    pub resumed: u64,
    /// Cut off ([`StreamOutcome::is_cut_off`]).
    pub cut_off: u64,
    /// Median duration of those with a known duration.
    pub p50: Option<Duration>,
    /// 99th percentile duration (nearest rank).
    pub p99: Option<Duration>,
}

/// Summary statistics of the streams `query` selects.
pub async fn summary(
    store: &dyn EventStore,
    query: &StreamQuery,
) -> Result<HistorySummary, StoreError> {
    let records = store.list_streams(query).await?;
    Ok(summary_of(&records))
}

/// [`summary`], from streams already listed.
pub fn summary_of(records: &[StreamRecord]) -> HistorySummary {
    let mut groups: BTreeMap<(String, Option<String>), (CallStats, Vec<Duration>)> =
        BTreeMap::new();
    let (mut ended, mut resumed, mut cut_off) = (0u64, 0u64, 0u64);
    for record in records {
        let (method, tool) = match (&record.call, record.info.kind) {
            (Some(call), _) => (call.method.clone(), call.tool.clone()),
            (None, StreamKind::Standalone) => ("GET".to_owned(), None),
            (None, StreamKind::PostResponse) => ("unknown".to_owned(), None),
        };
        let (stats, durations) =
            groups
                .entry((method.clone(), tool.clone()))
                .or_insert_with(|| {
                    (
                        CallStats {
                            method,
                            tool,
                            calls: 0,
                            running: 0,
                            errors: 0,
                            resumed: 0,
                            cut_off: 0,
                            p50: None,
                            p99: None,
                        },
                        Vec::new(),
                    )
                });
        stats.calls += 1;
        stats.running += u64::from(record.outcome == StreamOutcome::Running);
        stats.errors += u64::from(record.outcome == StreamOutcome::Error);
        stats.resumed += u64::from(record.resumes > 0);
        stats.cut_off += u64::from(record.outcome.is_cut_off());
        durations.extend(record.duration());
        if record.outcome != StreamOutcome::Running {
            ended += 1;
            resumed += u64::from(record.resumes > 0);
            cut_off += u64::from(record.outcome.is_cut_off());
        }
    }
    let mut calls: Vec<CallStats> = groups
        .into_values()
        .map(|(mut stats, mut durations)| {
            durations.sort();
            stats.p50 = percentile(&durations, 50);
            stats.p99 = percentile(&durations, 99);
            stats
        })
        .collect();
    calls.sort_by_key(|stats| std::cmp::Reverse(stats.calls));
    let share = |part: u64| {
        if ended == 0 {
            0.0
        } else {
            part as f64 / ended as f64
        }
    };
    HistorySummary {
        streams: records.len() as u64,
        tool_calls: records.iter().filter(|r| r.is_tool_call()).count() as u64,
        share_resumed: share(resumed),
        share_cut_off: share(cut_off),
        calls,
    }
}

/// The nearest-rank percentile of sorted `values`.
fn percentile(sorted: &[Duration], percent: usize) -> Option<Duration> {
    if sorted.is_empty() {
        return None;
    }
    let rank = (percent * sorted.len()).div_ceil(100).max(1);
    sorted.get(rank - 1).copied()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_call_is_read_from_a_request_even_cut_short() {
        let body = br#"{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"countdown","arguments":{"n":3}}}"#;
        let call = StreamCall::from_json_rpc(body).unwrap();
        assert_eq!(
            call,
            StreamCall::new("tools/call")
                .tool("countdown")
                .request_id("7")
        );
        // Cut inside the arguments: what came before is kept.
        let call = StreamCall::from_json_rpc(&body[..80]).unwrap();
        assert_eq!(call.tool.as_deref(), Some("countdown"));
        let call = StreamCall::from_json_rpc(
            br#"{"method":"prompts/get","id":"a","params":{"name":"p"}}"#,
        )
        .unwrap();
        assert_eq!(call, StreamCall::new("prompts/get").request_id("\"a\""));
        for bad in [
            &b"[]"[..],
            b"{}",
            b"not json",
            b"{\"id\":1,\"result\":{}}",
            b"",
        ] {
            assert_eq!(StreamCall::from_json_rpc(bad), None);
        }
        let long = format!(r#"{{"method":"{}"}}"#, "é".repeat(300));
        let call = StreamCall::from_json_rpc(long.as_bytes()).unwrap();
        assert!(call.method.len() <= StreamCall::MAX_FIELD_BYTES);
    }

    #[test]
    fn the_call_is_read_from_2026_headers() {
        let mut headers = http::HeaderMap::new();
        assert_eq!(StreamCall::from_headers(&headers), None);
        headers.insert("mcp-method", "tools/call".parse().unwrap());
        headers.insert("mcp-name", "countdown".parse().unwrap());
        assert_eq!(
            StreamCall::from_headers(&headers),
            Some(StreamCall::new("tools/call").tool("countdown"))
        );
        headers.insert("mcp-method", "prompts/get".parse().unwrap());
        assert_eq!(
            StreamCall::from_headers(&headers),
            Some(StreamCall::new("prompts/get"))
        );
    }

    #[test]
    fn outcomes_come_from_the_state_and_the_last_event() {
        use StreamKind::*;
        use StreamState::*;
        let result = br#"{"jsonrpc":"2.0","id":1,"result":{}}"#;
        let error = br#"{"jsonrpc":"2.0","id":1,"error":{"code":-1,"message":"x"}}"#;
        let progress = br#"{"jsonrpc":"2.0","method":"notifications/progress","params":{}}"#;
        for (kind, state, last, outcome) in [
            (
                PostResponse,
                Live,
                Some(&result[..]),
                StreamOutcome::Running,
            ),
            (
                PostResponse,
                Complete,
                Some(&result[..]),
                StreamOutcome::Result,
            ),
            (
                PostResponse,
                Complete,
                Some(&error[..]),
                StreamOutcome::Error,
            ),
            (
                PostResponse,
                Complete,
                Some(&progress[..]),
                StreamOutcome::UpstreamFailure,
            ),
            (PostResponse, Complete, None, StreamOutcome::UpstreamFailure),
            (
                PostResponse,
                Abandoned,
                Some(&progress[..]),
                StreamOutcome::Abandoned,
            ),
            (
                PostResponse,
                Abandoned,
                Some(&result[..]),
                StreamOutcome::Result,
            ),
            (
                Standalone,
                Complete,
                Some(&progress[..]),
                StreamOutcome::Closed,
            ),
            (Standalone, Abandoned, None, StreamOutcome::Abandoned),
        ] {
            assert_eq!(
                StreamOutcome::derive(kind, state, last),
                outcome,
                "{kind:?} {state:?}"
            );
        }
    }

    #[test]
    fn percentiles_are_nearest_rank() {
        let values: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        assert_eq!(percentile(&values, 50), Some(Duration::from_millis(50)));
        assert_eq!(percentile(&values, 99), Some(Duration::from_millis(99)));
        assert_eq!(percentile(&values[..1], 99), Some(Duration::from_millis(1)));
        assert_eq!(percentile(&[], 50), None);
    }
}
