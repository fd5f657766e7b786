//! The metrics mcp-resume records, through the [`metrics`](https://docs.rs/metrics)
//! facade: their names, what each counts, and their labels, in one place.
//!
//! The library only records. Nothing is kept or exported until a recorder
//! is installed: the `mcp-resume` binary installs the Prometheus one and
//! serves it on its admin listener (`--admin-listen`); an embedder installs
//! its own (`metrics-exporter-prometheus`, an OpenTelemetry bridge, ...)
//! once at start-up, and may call [`describe`] to give each metric its help
//! text and unit. Without a recorder a recording costs a check and nothing
//! else. [`ResumabilityLayer::stats`](crate::ResumabilityLayer::stats) reads
//! the main counters without any recorder.
//!
//! Recording needs the `metrics` feature (on by default); without it the
//! names below still exist and nothing is recorded.
//!
//! Names follow the Prometheus conventions (`_total` for counters, base
//! units `_seconds` and `_bytes`). The two MCP ones are the OpenTelemetry
//! MCP semantic conventions' `mcp.server.operation.duration` and
//! `mcp.server.session.duration`, with their attribute `mcp.method.name`,
//! converted to Prometheus names. A label never carries a session id, an
//! event id, a tool name or anything else without a fixed bound: each takes
//! one of the values listed.
//!
//! | Name | Type | Labels | What |
//! |---|---|---|---|
//! | `mcp_resume_streams_opened_total` | counter | | Streams made resumable. |
//! | `mcp_resume_streams_live` | gauge | | Streams produced in this process now. |
//! | `mcp_resume_streams_detached` | gauge | | Of those, the ones no client is reading: they run on until their producer ends or the detach timeout passes. |
//! | `mcp_resume_streams_ended_total` | counter | `end`: `completed`, `abandoned` | Streams whose producer finished, or that were given up (detach timeout, inner error, SSE limit, session deleted, store failure). |
//! | `mcp_resume_streams_unresumable_total` | counter | `reason`: `live_stream_cap`, `session_stream_cap`, `store_failure` | SSE responses served (or continued) without resumability. |
//! | `mcp_resume_events_committed_total` | counter | | Events committed to the store. |
//! | `mcp_resume_events_committed_bytes_total` | counter | | Bytes of event data (and event types) committed. |
//! | `mcp_resume_store_commit_duration_seconds` | histogram | | How long each commit (one append of one or more events) took, as the stream waited for it. |
//! | `mcp_resume_store_errors_total` | counter | `operation`: `create`, `append`, `end`, `lookup`, `purge`; `kind`: see [`store_error_kind`] | Store operations that failed. |
//! | `mcp_resume_resumes_total` | counter | `outcome`: `replayed`, `malformed`, `unknown`, `foreign`, `trimmed`, `ended`, `refused_by_service`, `store_failed` | Resumes (`GET` with `Last-Event-ID`), by how they went: replayed, refused with `400` for one of five reasons, refused by the service ([`authorize_resumes_with_service`](crate::ResumabilityLayer::authorize_resumes_with_service)), or answered `503` because the store failed. |
//! | `mcp_resume_resume_replayed_events` | histogram | | Events each replayed resume sent before it caught up with its stream. |
//! | `mcp_resume_reconnect_delay_seconds` | histogram | | Time from a client's disconnect to its resume, for streams produced in this process. |
//! | `mcp_server_operation_duration_seconds` | histogram | `mcp_method_name`: see [`method_label`] | MCP requests, from the request until the response's end: a stream's last event, a JSON answer, or the `202` of a notification. |
//! | `mcp_server_session_duration_seconds` | histogram | | MCP sessions, from the answer that assigned the session id to the answer that ended it (a `DELETE` accepted, or `404`: the server no longer knows it). |
//! | `mcp_resume_proxy_connections_open` | gauge | | Client connections the proxy's server holds now. |
//! | `mcp_resume_proxy_connections_total` | counter | | Client connections the proxy's server accepted. |
//! | `mcp_resume_proxy_upstream_errors_total` | counter | `kind`: `connect`, `tls`, `failed`, `timeout`, `body` | Upstream failures the proxy saw: cannot connect (`502`), TLS handshake failed (`502`), failed before answering (`502`), no response headers in time (`504`), or its response body broke midway. |
//!
//! # Example
//!
//! A local recorder (here `metrics-util`'s, as tests use it) sees what a
//! layer records; a process installs one recorder globally instead.
//!
//! ```
//! # #[cfg(feature = "metrics")] {
//! use std::sync::Arc;
//! use metrics_util::debugging::{DebugValue, DebuggingRecorder};
//! use mcp_resume::{ResumabilityLayer, store::MemoryEventStore};
//! use tower::{Layer, ServiceExt, service_fn};
//!
//! let recorder = DebuggingRecorder::new();
//! let snapshotter = recorder.snapshotter();
//! let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
//! ::metrics::with_local_recorder(&recorder, || {
//!     runtime.block_on(async {
//!         let service = ResumabilityLayer::new(Arc::new(MemoryEventStore::new())).layer(
//!             service_fn(|_: http::Request<String>| async {
//!                 Ok::<_, std::convert::Infallible>(
//!                     http::Response::builder()
//!                         .header("content-type", "text/event-stream")
//!                         .body("data: result\n\n".to_string())
//!                         .unwrap(),
//!                 )
//!             }),
//!         );
//!         // An unknown id: refused.
//!         let resume = http::Request::get("/mcp")
//!             .header("last-event-id", "no-such-id")
//!             .body(String::new())
//!             .unwrap();
//!         service.oneshot(resume).await.unwrap();
//!     })
//! });
//! let refused = snapshotter.snapshot().into_vec().into_iter().find(|(key, ..)| {
//!     key.key().name() == mcp_resume::metrics::RESUMES
//!         && key.key().labels().any(|l| l.key() == "outcome" && l.value() == "malformed")
//! });
//! assert!(matches!(refused, Some((_, _, _, DebugValue::Counter(1)))));
//! # }
//! ```

use std::time::{Duration, Instant};

use crate::store::StoreError;

/// Counter: streams made resumable.
pub const STREAMS_OPENED: &str = "mcp_resume_streams_opened_total";
/// Gauge: streams produced in this process now.
pub const STREAMS_LIVE: &str = "mcp_resume_streams_live";
/// Gauge: live streams that no client is reading.
pub const STREAMS_DETACHED: &str = "mcp_resume_streams_detached";
/// Counter, label `end`: streams that ended, `completed` or `abandoned`.
pub const STREAMS_ENDED: &str = "mcp_resume_streams_ended_total";
/// Counter, label `reason`: SSE responses served without resumability.
pub const STREAMS_UNRESUMABLE: &str = "mcp_resume_streams_unresumable_total";
/// Counter: events committed to the store.
pub const EVENTS_COMMITTED: &str = "mcp_resume_events_committed_total";
/// Counter: bytes of event data committed to the store.
pub const EVENTS_COMMITTED_BYTES: &str = "mcp_resume_events_committed_bytes_total";
/// Histogram, seconds: how long each commit to the store took.
pub const STORE_COMMIT_DURATION: &str = "mcp_resume_store_commit_duration_seconds";
/// Counter, labels `operation` and `kind`: failed store operations.
pub const STORE_ERRORS: &str = "mcp_resume_store_errors_total";
/// Counter, label `outcome`: resumes, by how they went.
pub const RESUMES: &str = "mcp_resume_resumes_total";
/// Histogram: events each replayed resume sent before catching up.
pub const RESUME_REPLAYED_EVENTS: &str = "mcp_resume_resume_replayed_events";
/// Histogram, seconds: time from a client's disconnect to its resume.
pub const RECONNECT_DELAY: &str = "mcp_resume_reconnect_delay_seconds";
/// Histogram, seconds, label `mcp_method_name`: OpenTelemetry's
/// `mcp.server.operation.duration`.
pub const OPERATION_DURATION: &str = "mcp_server_operation_duration_seconds";
/// Histogram, seconds: OpenTelemetry's `mcp.server.session.duration`.
pub const SESSION_DURATION: &str = "mcp_server_session_duration_seconds";
/// Gauge: client connections the proxy's server holds.
pub const PROXY_CONNECTIONS_OPEN: &str = "mcp_resume_proxy_connections_open";
/// Counter: client connections the proxy's server accepted.
pub const PROXY_CONNECTIONS: &str = "mcp_resume_proxy_connections_total";
/// Counter, label `kind`: upstream failures the proxy saw.
pub const PROXY_UPSTREAM_ERRORS: &str = "mcp_resume_proxy_upstream_errors_total";

/// The label of [`OPERATION_DURATION`]: OpenTelemetry's `mcp.method.name`.
pub const LABEL_MCP_METHOD_NAME: &str = "mcp_method_name";

/// The MCP methods a server receives, by name: [`method_label`] maps any
/// other to `other`, so the label stays bounded whatever clients send.
pub const KNOWN_METHODS: &[&str] = &[
    "initialize",
    "ping",
    "tools/list",
    "tools/call",
    "resources/list",
    "resources/templates/list",
    "resources/read",
    "resources/subscribe",
    "resources/unsubscribe",
    "prompts/list",
    "prompts/get",
    "completion/complete",
    "logging/setLevel",
    "tasks/get",
    "tasks/result",
    "tasks/list",
    "tasks/cancel",
    "notifications/initialized",
    "notifications/cancelled",
    "notifications/progress",
    "notifications/roots/list_changed",
];

/// The value of the `mcp_method_name` label for a request's JSON-RPC
/// `method`: the method itself if it is one of [`KNOWN_METHODS`], `other`
/// otherwise (and `unknown` when the layer could not read it).
pub fn method_label(method: Option<&str>) -> &'static str {
    match method {
        None => "unknown",
        Some(method) => KNOWN_METHODS
            .iter()
            .find(|known| **known == method)
            .copied()
            .unwrap_or("other"),
    }
}

/// The value of the `kind` label of [`STORE_ERRORS`] for `error`: one word
/// per [`StoreError`] variant (`not_found`, `trimmed`, `position_ahead`,
/// `events_missing`, `stream_ended`, `closed`, `not_a_database`,
/// `foreign_database`, `schema_too_new`, `locked`, `read_only`, `disk_full`,
/// `file_replaced`, `io`, `backend`; `other` for any variant not named yet).
pub fn store_error_kind(error: &StoreError) -> &'static str {
    match error {
        StoreError::StreamNotFound(_) => "not_found",
        StoreError::Trimmed { .. } => "trimmed",
        StoreError::PositionAhead { .. } => "position_ahead",
        StoreError::EventsMissing { .. } => "events_missing",
        StoreError::StreamEnded { .. } => "stream_ended",
        StoreError::Closed => "closed",
        StoreError::NotADatabase { .. } => "not_a_database",
        StoreError::ForeignDatabase { .. } => "foreign_database",
        StoreError::SchemaTooNew { .. } => "schema_too_new",
        StoreError::Locked { .. } => "locked",
        StoreError::ReadOnly { .. } => "read_only",
        StoreError::DiskFull { .. } => "disk_full",
        StoreError::FileReplaced { .. } => "file_replaced",
        StoreError::Io { .. } => "io",
        StoreError::Backend { .. } => "backend",
        // A variant added to the store without a word of its own here yet.
        #[allow(unreachable_patterns)]
        _ => "other",
    }
}

/// Gives every metric above its help text and unit in the installed
/// recorder (the Prometheus exporter prints them as `# HELP` lines). Call
/// it once, after installing the recorder; recording works without it.
#[cfg(feature = "metrics")]
#[cfg_attr(docsrs, doc(cfg(feature = "metrics")))]
pub fn describe() {
    use ::metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
    describe_counter!(STREAMS_OPENED, "Streams made resumable.");
    describe_gauge!(STREAMS_LIVE, "Streams produced in this process now.");
    describe_gauge!(
        STREAMS_DETACHED,
        "Live streams that no client is reading (they run on until their producer ends or the detach timeout passes)."
    );
    describe_counter!(
        STREAMS_ENDED,
        "Streams that ended, by how: completed (the producer finished) or abandoned."
    );
    describe_counter!(
        STREAMS_UNRESUMABLE,
        "SSE responses served without resumability, by reason: a live-stream cap or a store failure."
    );
    describe_counter!(EVENTS_COMMITTED, "Events committed to the event store.");
    describe_counter!(
        EVENTS_COMMITTED_BYTES,
        Unit::Bytes,
        "Bytes of event data committed to the event store."
    );
    describe_histogram!(
        STORE_COMMIT_DURATION,
        Unit::Seconds,
        "How long each commit to the event store took, as the stream waited for it."
    );
    describe_counter!(
        STORE_ERRORS,
        "Event store operations that failed, by operation and kind of error."
    );
    describe_counter!(
        RESUMES,
        "Resumes (GET with Last-Event-ID), by outcome: replayed, or why they were refused."
    );
    describe_histogram!(
        RESUME_REPLAYED_EVENTS,
        Unit::Count,
        "Events each replayed resume sent before it caught up with its stream."
    );
    describe_histogram!(
        RECONNECT_DELAY,
        Unit::Seconds,
        "Time from a client's disconnect to its resume (streams produced in this process)."
    );
    describe_histogram!(
        OPERATION_DURATION,
        Unit::Seconds,
        "MCP request duration, from the request until the response's end (mcp.server.operation.duration)."
    );
    describe_histogram!(
        SESSION_DURATION,
        Unit::Seconds,
        "MCP session duration, from the answer that assigned it to the one that ended it (mcp.server.session.duration)."
    );
    describe_gauge!(
        PROXY_CONNECTIONS_OPEN,
        "Client connections the proxy's server holds now."
    );
    describe_counter!(
        PROXY_CONNECTIONS,
        "Client connections the proxy's server accepted."
    );
    describe_counter!(
        PROXY_UPSTREAM_ERRORS,
        "Upstream failures the proxy saw, by kind: connect, tls, failed (before answering), timeout (no headers in time), body (broke midway)."
    );
}

/// Why an SSE response was served without resumability (the `reason` label
/// of [`STREAMS_UNRESUMABLE`]).
#[derive(Clone, Copy, Debug)]
pub(crate) enum Unresumable {
    LiveStreamCap,
    SessionStreamCap,
    StoreFailure,
}

impl Unresumable {
    #[cfg_attr(not(feature = "metrics"), allow(dead_code))]
    fn as_str(self) -> &'static str {
        match self {
            Self::LiveStreamCap => "live_stream_cap",
            Self::SessionStreamCap => "session_stream_cap",
            Self::StoreFailure => "store_failure",
        }
    }
}

/// A store operation the layer performs (the `operation` label of [`STORE_ERRORS`]).
#[derive(Clone, Copy, Debug)]
pub(crate) enum StoreOperation {
    Create,
    Append,
    End,
    Lookup,
    Purge,
}

impl StoreOperation {
    #[cfg_attr(not(feature = "metrics"), allow(dead_code))]
    fn as_str(self) -> &'static str {
        match self {
            Self::Create => "create",
            Self::Append => "append",
            Self::End => "end",
            Self::Lookup => "lookup",
            Self::Purge => "purge",
        }
    }
}

/// How a resume went that was not refused for a reason of its own (those
/// are [`RefusalReason`](crate::layer::RefusalReason)s).
#[derive(Clone, Copy, Debug)]
pub(crate) enum ResumeResult {
    Replayed,
    RefusedByService,
    StoreFailed,
}

impl ResumeResult {
    #[cfg_attr(not(feature = "metrics"), allow(dead_code))]
    fn as_str(self) -> &'static str {
        match self {
            Self::Replayed => "replayed",
            Self::RefusedByService => "refused_by_service",
            Self::StoreFailed => "store_failed",
        }
    }
}

/// An MCP request timed for [`OPERATION_DURATION`]: from when the layer
/// received it until its response ends.
#[derive(Debug)]
pub(crate) struct Operation {
    method: &'static str,
    received: Instant,
}

impl Operation {
    /// A request of JSON-RPC `method` (when the service said which) that
    /// arrived at `received`.
    pub(crate) fn new(method: Option<&str>, received: Instant) -> Self {
        Self {
            method: method_label(method),
            received,
        }
    }

    /// Its response has ended: records how long it took.
    pub(crate) fn finished(self) {
        record::operation(self.method, self.received.elapsed());
    }
}

/// The recording points, called by the layer and the proxy. Each is one
/// facade call (a check when no recorder is installed), and nothing at all
/// without the `metrics` feature.
#[cfg(feature = "metrics")]
pub(crate) mod record {
    use super::*;
    use ::metrics::{counter, gauge, histogram};

    pub(crate) fn stream_opened() {
        counter!(STREAMS_OPENED).increment(1);
    }

    pub(crate) fn stream_ended(completed: bool) {
        let end = if completed { "completed" } else { "abandoned" };
        counter!(STREAMS_ENDED, "end" => end).increment(1);
    }

    pub(crate) fn live_streams(delta: f64) {
        gauge!(STREAMS_LIVE).increment(delta);
    }

    pub(crate) fn detached_streams(delta: f64) {
        gauge!(STREAMS_DETACHED).increment(delta);
    }

    pub(crate) fn unresumable(reason: Unresumable) {
        counter!(STREAMS_UNRESUMABLE, "reason" => reason.as_str()).increment(1);
    }

    pub(crate) fn committed(events: u64, bytes: u64, took: Duration) {
        counter!(EVENTS_COMMITTED).increment(events);
        counter!(EVENTS_COMMITTED_BYTES).increment(bytes);
        histogram!(STORE_COMMIT_DURATION).record(took);
    }

    pub(crate) fn store_error(operation: StoreOperation, error: &StoreError) {
        counter!(
            STORE_ERRORS,
            "operation" => operation.as_str(),
            "kind" => store_error_kind(error),
        )
        .increment(1);
    }

    pub(crate) fn resume(outcome: ResumeResult) {
        counter!(RESUMES, "outcome" => outcome.as_str()).increment(1);
    }

    pub(crate) fn resume_refused(reason: crate::layer::RefusalReason) {
        counter!(RESUMES, "outcome" => reason.as_str()).increment(1);
    }

    pub(crate) fn replayed(events: u64) {
        histogram!(RESUME_REPLAYED_EVENTS).record(events as f64);
    }

    pub(crate) fn reconnect_delay(delay: Duration) {
        histogram!(RECONNECT_DELAY).record(delay);
    }

    pub(crate) fn operation(method: &'static str, took: Duration) {
        histogram!(OPERATION_DURATION, LABEL_MCP_METHOD_NAME => method).record(took);
    }

    pub(crate) fn session(lasted: Duration) {
        histogram!(SESSION_DURATION).record(lasted);
    }

    /// A client connection of the proxy's server, counted open until dropped.
    #[cfg(feature = "proxy")]
    pub(crate) struct ProxyConnection(());

    #[cfg(feature = "proxy")]
    impl ProxyConnection {
        pub(crate) fn opened() -> Self {
            counter!(PROXY_CONNECTIONS).increment(1);
            gauge!(PROXY_CONNECTIONS_OPEN).increment(1.0);
            Self(())
        }
    }

    #[cfg(feature = "proxy")]
    impl Drop for ProxyConnection {
        fn drop(&mut self) {
            gauge!(PROXY_CONNECTIONS_OPEN).decrement(1.0);
        }
    }

    #[cfg(feature = "proxy")]
    pub(crate) fn proxy_upstream_error(kind: &'static str) {
        counter!(PROXY_UPSTREAM_ERRORS, "kind" => kind).increment(1);
    }
}

/// Without the `metrics` feature every recording point is empty.
#[cfg(not(feature = "metrics"))]
#[allow(clippy::missing_const_for_fn)]
pub(crate) mod record {
    use super::*;

    pub(crate) fn stream_opened() {}
    pub(crate) fn stream_ended(_completed: bool) {}
    pub(crate) fn live_streams(_delta: f64) {}
    pub(crate) fn detached_streams(_delta: f64) {}
    pub(crate) fn unresumable(_reason: Unresumable) {}
    pub(crate) fn committed(_events: u64, _bytes: u64, _took: Duration) {}
    pub(crate) fn store_error(_operation: StoreOperation, _error: &StoreError) {}
    pub(crate) fn resume(_outcome: ResumeResult) {}
    pub(crate) fn resume_refused(_reason: crate::layer::RefusalReason) {}
    pub(crate) fn replayed(_events: u64) {}
    pub(crate) fn reconnect_delay(_delay: Duration) {}
    pub(crate) fn operation(_method: &'static str, _took: Duration) {}
    pub(crate) fn session(_lasted: Duration) {}
    #[cfg(feature = "proxy")]
    pub(crate) struct ProxyConnection(());
    #[cfg(feature = "proxy")]
    impl ProxyConnection {
        pub(crate) fn opened() -> Self {
            Self(())
        }
    }
    #[cfg(feature = "proxy")]
    pub(crate) fn proxy_upstream_error(_kind: &'static str) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn methods_outside_the_known_set_share_one_label() {
        assert_eq!(method_label(Some("tools/call")), "tools/call");
        assert_eq!(method_label(Some("tools/call-some-session-id")), "other");
        assert_eq!(method_label(Some("")), "other");
        assert_eq!(method_label(None), "unknown");
    }

    #[test]
    fn every_metric_name_follows_the_prometheus_rules() {
        let counters = [
            STREAMS_OPENED,
            STREAMS_ENDED,
            STREAMS_UNRESUMABLE,
            EVENTS_COMMITTED,
            EVENTS_COMMITTED_BYTES,
            STORE_ERRORS,
            RESUMES,
            PROXY_CONNECTIONS,
            PROXY_UPSTREAM_ERRORS,
        ];
        for name in counters {
            assert!(name.ends_with("_total"), "{name}");
        }
        for name in [
            STORE_COMMIT_DURATION,
            RECONNECT_DELAY,
            OPERATION_DURATION,
            SESSION_DURATION,
        ] {
            assert!(name.ends_with("_seconds"), "{name}");
        }
        for name in counters.iter().chain(&[STREAMS_LIVE, STREAMS_DETACHED]) {
            assert!(
                name.bytes()
                    .all(|b| b.is_ascii_lowercase() || b == b'_' || b.is_ascii_digit()),
                "{name}"
            );
        }
    }
}
