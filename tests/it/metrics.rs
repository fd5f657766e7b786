//! The metrics the layer records (`mcp_resume::metrics`) move by exactly what
//! happened: real HTTP traffic through the layer, read back from a recorder
//! local to each test (`metrics-util`'s debugging recorder, set as the
//! default on the test's thread: a `#[tokio::test]` runs the servers, the
//! clients and the layer's tasks on that one thread).

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::time::Duration;

use http::StatusCode;
use mcp_resume::ResumabilityLayer;
use mcp_resume::metrics::{
    EVENTS_COMMITTED, EVENTS_COMMITTED_BYTES, OPERATION_DURATION, RECONNECT_DELAY,
    RESUME_REPLAYED_EVENTS, RESUMES, SESSION_DURATION, STORE_COMMIT_DURATION, STORE_ERRORS,
    STREAMS_DETACHED, STREAMS_ENDED, STREAMS_LIVE, STREAMS_OPENED, STREAMS_UNRESUMABLE,
};
use mcp_resume::store::{StreamId, StreamState};
use metrics_util::debugging::{DebugValue, DebuggingRecorder, Snapshotter};

use crate::common::server::{Reply, Script, message};
use crate::common::sse::Req;
use crate::common::store::{FailingStore, ops};
use crate::common::{
    V2025_06_18, call_then_leave, memory_store, post_call, resume_after, serve_scripted, stream_of,
    wait_state, wait_until,
};

/// What the recorder holds, by name and labels (`name{k=v,...}`).
#[derive(Default)]
struct Recorded {
    counters: BTreeMap<String, u64>,
    gauges: BTreeMap<String, f64>,
    histograms: BTreeMap<String, Vec<f64>>,
}

/// A test's view of its recorder.
struct Looker {
    snapshotter: Snapshotter,
    /// Counters and histograms taken from the recorder since the last
    /// [`look`]; gauges since the test began. (The debugging recorder
    /// hands out what each moved by since its last snapshot, gauges too:
    /// the layer only moves them up and down.)
    taken: RefCell<Recorded>,
}

impl Looker {
    /// Moves what the recorder holds into `taken`.
    fn take(&self) {
        let mut taken = self.taken.borrow_mut();
        for (key, _, _, value) in self.snapshotter.snapshot().into_vec() {
            let key = key.key();
            let mut labels: Vec<String> = key
                .labels()
                .map(|label| format!("{}={}", label.key(), label.value()))
                .collect();
            labels.sort();
            let name = if labels.is_empty() {
                key.name().to_string()
            } else {
                format!("{}{{{}}}", key.name(), labels.join(","))
            };
            match value {
                DebugValue::Counter(0) => {}
                DebugValue::Counter(n) => *taken.counters.entry(name).or_default() += n,
                DebugValue::Gauge(moved) => {
                    *taken.gauges.entry(name).or_default() += moved.into_inner();
                }
                DebugValue::Histogram(values) if values.is_empty() => {}
                DebugValue::Histogram(values) => taken
                    .histograms
                    .entry(name)
                    .or_default()
                    .extend(values.into_iter().map(|v| v.into_inner())),
            }
        }
    }
}

/// The counters and histograms recorded since the last look, and the gauges now.
fn look(looker: &Looker) -> Recorded {
    looker.take();
    let mut taken = looker.taken.borrow_mut();
    Recorded {
        counters: std::mem::take(&mut taken.counters),
        gauges: taken.gauges.clone(),
        histograms: std::mem::take(&mut taken.histograms),
    }
}

/// A gauge now, leaving the counters and histograms for the next [`look`].
fn look_gauge(looker: &Looker, name: &str) -> f64 {
    looker.take();
    looker.taken.borrow().gauge(name)
}

impl Recorded {
    fn counter(&self, name: &str) -> u64 {
        self.counters.get(name).copied().unwrap_or(0)
    }

    fn gauge(&self, name: &str) -> f64 {
        self.gauges.get(name).copied().unwrap_or(0.0)
    }

    fn histogram(&self, name: &str) -> Vec<f64> {
        self.histograms.get(name).cloned().unwrap_or_default()
    }
}

fn labelled(name: &str, label: &str, value: &str) -> String {
    format!("{name}{{{label}={value}}}")
}

fn resumes(outcome: &str) -> String {
    labelled(RESUMES, "outcome", outcome)
}

/// A test's own recorder, the default on its thread while the guard lives.
fn local_recorder() -> (&'static DebuggingRecorder, Looker) {
    // Leaked: the guard borrows it for the rest of the test, and each test
    // makes one.
    let recorder: &'static DebuggingRecorder = Box::leak(Box::new(DebuggingRecorder::new()));
    let looker = Looker {
        snapshotter: recorder.snapshotter(),
        taken: RefCell::new(Recorded::default()),
    };
    (recorder, looker)
}

/// The notification a client sends once initialized, in `session`.
fn initialized(session: &str) -> Req {
    Req::post(
        "/mcp",
        r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#,
    )
    .version(V2025_06_18)
    .session(session)
}

/// Bytes the layer commits for event `n` of a scripted stream: its data.
fn message_bytes(range: std::ops::RangeInclusive<u64>) -> u64 {
    range.map(|n| message(n).len() as u64).sum()
}

/// One tool call of five events, then three resumes replaying 4, 2 and 5
/// events, and one refusal of each reason the client can cause: every
/// counter and histogram moves by exactly that, and by nothing else.
#[tokio::test]
async fn resumes_and_refusals_are_counted_by_outcome_with_their_replays() {
    let (recorder, looker) = local_recorder();
    let _local = ::metrics::set_default_local_recorder(recorder);
    let layer = ResumabilityLayer::new(memory_store());
    let store = layer.store().clone();
    let (script, served) = serve_scripted(&layer).await;

    let (stream, inner) = call_then_leave(&script, &served, 5).await;
    inner.close();
    wait_state(&store, stream, StreamState::Complete).await;
    // Counted last once the pump has finished the stream.
    wait_until("the pump to finish", || async {
        layer.stats().streams_completed == 1
    })
    .await;
    let opened = look(&looker);
    assert_eq!(opened.gauge(STREAMS_LIVE), 0.0);
    assert_eq!(opened.counter(STREAMS_OPENED), 1);
    assert_eq!(
        opened.counter(&labelled(STREAMS_ENDED, "end", "completed")),
        1
    );
    assert_eq!(opened.counter(EVENTS_COMMITTED), 5);
    assert_eq!(opened.counter(EVENTS_COMMITTED_BYTES), message_bytes(1..=5));
    let commits = opened.histogram(STORE_COMMIT_DURATION);
    assert!(
        (1..=5).contains(&commits.len()) && commits.iter().all(|s| *s >= 0.0),
        "one duration per commit, five events in at most five: {commits:?}"
    );
    assert!(!opened.histograms.contains_key(RESUME_REPLAYED_EVENTS));

    // Three resumes, each to the end of the finished stream.
    for after in [1, 3, 0] {
        let mut resumed = resume_after(stream, after).send(served.addr).await;
        assert_eq!(resumed.status, StatusCode::OK);
        assert_eq!(resumed.events_to_end().await.len() as u64, 5 - after);
    }
    // Refusals: an id that is not the layer's, a stream that does not exist,
    // another session's stream, and the end of a finished stream.
    let refused = [
        Req::get("/mcp")
            .version(V2025_06_18)
            .session("s1")
            .last_event_id("not-an-id"),
        resume_after(StreamId::random(), 1),
        Req::get("/mcp")
            .version(V2025_06_18)
            .session("someone-else")
            .last_event_id(&format!("{stream}.2")),
        resume_after(stream, 5),
    ];
    for request in refused {
        assert_eq!(
            request.send(served.addr).await.status,
            StatusCode::BAD_REQUEST
        );
    }

    let after = look(&looker);
    assert_eq!(after.counter(&resumes("replayed")), 3);
    assert_eq!(after.counter(&resumes("malformed")), 1);
    assert_eq!(after.counter(&resumes("unknown")), 1);
    assert_eq!(after.counter(&resumes("foreign")), 1);
    assert_eq!(after.counter(&resumes("ended")), 1);
    assert_eq!(after.counter(&resumes("trimmed")), 0);
    let mut replayed = after.histogram(RESUME_REPLAYED_EVENTS);
    replayed.sort_by(f64::total_cmp);
    assert_eq!(replayed, [2.0, 4.0, 5.0]);
    // Resumes commit nothing and open no stream.
    assert_eq!(after.counter(STREAMS_OPENED), 0);
    assert_eq!(after.counter(EVENTS_COMMITTED), 0);
    // The layer's own counters agree.
    let stats = layer.stats();
    assert_eq!((stats.resumes, stats.rejections), (3, 4));
    assert_eq!(stats.events_replayed, 4 + 2 + 5);
}

/// A resume from before what the stream's event cap keeps is refused as
/// `trimmed`.
#[tokio::test]
async fn a_resume_before_the_retained_events_is_refused_as_trimmed() {
    let (recorder, looker) = local_recorder();
    let _local = ::metrics::set_default_local_recorder(recorder);
    let layer = ResumabilityLayer::new(memory_store()).max_events_per_stream(2);
    let store = layer.store().clone();
    let (script, served) = serve_scripted(&layer).await;
    let (stream, inner) = call_then_leave(&script, &served, 6).await;
    inner.close();
    wait_state(&store, stream, StreamState::Complete).await;
    look(&looker);

    let resumed = resume_after(stream, 1).send(served.addr).await;
    assert_eq!(resumed.status, StatusCode::BAD_REQUEST);
    let after = look(&looker);
    assert_eq!(after.counter(&resumes("trimmed")), 1);
    assert_eq!(after.counters.len(), 1, "{:?}", after.counters);
}

/// A client that leaves makes its stream detached until it comes back; the
/// resume records how long it was away; a stream nobody comes back for is
/// abandoned at the detach timeout.
#[tokio::test]
async fn detached_streams_are_gauged_and_the_time_away_is_measured() {
    let (recorder, looker) = local_recorder();
    let _local = ::metrics::set_default_local_recorder(recorder);
    let layer = ResumabilityLayer::new(memory_store()).detach_timeout(Duration::from_millis(400));
    let (script, served) = serve_scripted(&layer).await;

    let (mut resp, inner) = post_call(&script, &served, crate::common::CALL, V2025_06_18).await;
    assert!(inner.event(&message(1)).await);
    let first = resp.expect_event().await;
    let stream = stream_of(first.id());
    let attached = look(&looker);
    assert_eq!(
        (
            attached.gauge(STREAMS_LIVE),
            attached.gauge(STREAMS_DETACHED)
        ),
        (1.0, 0.0)
    );

    drop(resp);
    wait_until("the stream to be detached", || async {
        look_gauge(&looker, STREAMS_DETACHED) == 1.0
    })
    .await;
    let away = Duration::from_millis(150);
    tokio::time::sleep(away).await;
    let mut resumed = resume_after(stream, 1).send(served.addr).await;
    assert!(inner.event(&message(2)).await);
    assert_eq!(resumed.expect_event().await.seq(), 2);
    let back = look(&looker);
    assert_eq!(back.gauge(STREAMS_DETACHED), 0.0);
    assert_eq!(back.gauge(STREAMS_LIVE), 1.0);
    let delays = back.histogram(RECONNECT_DELAY);
    assert_eq!(delays.len(), 1, "{delays:?}");
    assert!(
        delays[0] >= away.as_secs_f64() && delays[0] < 10.0,
        "{delays:?}"
    );

    // Gone for good: abandoned at the detach timeout, and no longer live.
    drop(resumed);
    wait_until("the stream to be abandoned", || async {
        inner.is_dropped()
    })
    .await;
    wait_until("the stream to leave the live ones", || async {
        look(&looker).gauge(STREAMS_LIVE) == 0.0
    })
    .await;
    // Read after the wait: `look` drains counters, so check the gauges and
    // the counter of the end in one last look.
    let end = layer.stats();
    assert_eq!(end.streams_abandoned, 1);
    assert_eq!(look(&looker).gauge(STREAMS_DETACHED), 0.0);
}

/// The end of an abandoned stream is counted under `end=abandoned`.
#[tokio::test]
async fn an_abandoned_stream_is_counted_as_abandoned() {
    let (recorder, looker) = local_recorder();
    let _local = ::metrics::set_default_local_recorder(recorder);
    let layer = ResumabilityLayer::new(memory_store()).detach_timeout(Duration::from_millis(50));
    let store = layer.store().clone();
    let (script, served) = serve_scripted(&layer).await;
    let (stream, _inner) = call_then_leave(&script, &served, 2).await;
    wait_state(&store, stream, StreamState::Abandoned).await;
    wait_until("the stream to leave the live ones", || async {
        layer.stats().streams_abandoned == 1
    })
    .await;
    let recorded = look(&looker);
    assert_eq!(
        recorded.counter(&labelled(STREAMS_ENDED, "end", "abandoned")),
        1
    );
    assert_eq!(
        recorded.counter(&labelled(STREAMS_ENDED, "end", "completed")),
        0
    );
    assert_eq!(recorded.counter(EVENTS_COMMITTED), 2);
    assert_eq!(recorded.gauge(STREAMS_DETACHED), 0.0);
}

/// Streams over the per-session cap are served without resumability, and
/// counted with their reason.
#[tokio::test]
async fn streams_over_a_cap_are_counted_as_unresumable() {
    let (recorder, looker) = local_recorder();
    let _local = ::metrics::set_default_local_recorder(recorder);
    let layer = ResumabilityLayer::new(memory_store()).max_live_streams_per_session(1);
    let (script, served) = serve_scripted(&layer).await;
    let (_first, _first_inner) =
        post_call(&script, &served, crate::common::CALL, V2025_06_18).await;
    let (_second, _second_inner) =
        post_call(&script, &served, crate::common::CALL, V2025_06_18).await;
    let (_third, _third_inner) =
        post_call(&script, &served, crate::common::CALL, V2025_06_18).await;
    let recorded = look(&looker);
    assert_eq!(recorded.counter(STREAMS_OPENED), 1);
    assert_eq!(
        recorded.counter(&labelled(
            STREAMS_UNRESUMABLE,
            "reason",
            "session_stream_cap"
        )),
        2
    );
    assert_eq!(recorded.gauge(STREAMS_LIVE), 1.0);
}

/// A store that fails: each failure is counted by operation and kind, the
/// stream it cost is counted as unresumable, and a resume the store cannot
/// look up is counted as `store_failed`.
#[tokio::test]
async fn store_failures_are_counted_by_operation_and_kind() {
    let (recorder, looker) = local_recorder();
    let _local = ::metrics::set_default_local_recorder(recorder);
    let store = FailingStore::new();
    let layer = ResumabilityLayer::new(store.clone());
    let (script, served) = serve_scripted(&layer).await;

    store.fail(ops::CREATE);
    let (mut resp, inner) = post_call(&script, &served, crate::common::CALL, V2025_06_18).await;
    assert!(inner.event(&message(1)).await);
    inner.close();
    resp.events_to_end().await;
    store.fail(ops::READ);
    let refused = resume_after(StreamId::random(), 1).send(served.addr).await;
    assert_eq!(refused.status, StatusCode::SERVICE_UNAVAILABLE);

    let recorded = look(&looker);
    let failed = |operation: &str| {
        recorded.counter(&format!(
            "{STORE_ERRORS}{{kind=backend,operation={operation}}}"
        ))
    };
    assert_eq!((failed("create"), failed("lookup")), (1, 1));
    assert_eq!(
        recorded.counter(&labelled(STREAMS_UNRESUMABLE, "reason", "store_failure")),
        1
    );
    assert_eq!(recorded.counter(&resumes("store_failed")), 1);
    assert_eq!(recorded.counter(STREAMS_OPENED), 0);
    assert_eq!(layer.stats().store_failures, 2);
}

/// Sessions are timed from the answer that assigned their id to a `DELETE`
/// the service accepts, or to a `404` (the service no longer knows them).
#[tokio::test]
async fn sessions_are_timed_from_their_assignment_to_their_end() {
    let (recorder, looker) = local_recorder();
    let _local = ::metrics::set_default_local_recorder(recorder);
    let layer = ResumabilityLayer::new(memory_store());
    // Sessions "kept" and "forgotten": initialize assigns them in turn; the
    // service answers 404 to anything of "forgotten", and accepts DELETEs.
    let assigned = std::sync::atomic::AtomicUsize::new(0);
    let script = Script::new(move |seen| {
        if seen.header("mcp-session-id") == Some("forgotten") {
            return Reply::status(StatusCode::NOT_FOUND);
        }
        match seen.method {
            http::Method::DELETE => Reply::status(StatusCode::OK),
            _ if seen.body_text().contains("\"initialize\"") => {
                let n = assigned.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let session = if n == 0 { "kept" } else { "forgotten" };
                Reply::json(r#"{"jsonrpc":"2.0","id":0,"result":{}}"#).with_session(session)
            }
            _ => Reply::status(StatusCode::ACCEPTED),
        }
    });
    let served = crate::common::serve(tower::Layer::layer(&layer, script.clone())).await;
    const INITIALIZE: &str = r#"{"jsonrpc":"2.0","id":0,"method":"initialize"}"#;

    let kept = Req::post("/mcp", INITIALIZE)
        .version(V2025_06_18)
        .send(served.addr)
        .await;
    assert_eq!(kept.header("mcp-session-id"), Some("kept"));
    let forgotten = Req::post("/mcp", INITIALIZE)
        .version(V2025_06_18)
        .send(served.addr)
        .await;
    assert_eq!(forgotten.header("mcp-session-id"), Some("forgotten"));
    let lasted = Duration::from_millis(120);
    tokio::time::sleep(lasted).await;
    assert!(look(&looker).histogram(SESSION_DURATION).is_empty());

    let deleted = Req::delete("/mcp")
        .version(V2025_06_18)
        .session("kept")
        .send(served.addr)
        .await;
    assert_eq!(deleted.status, StatusCode::OK);
    let gone = initialized("forgotten").send(served.addr).await;
    assert_eq!(gone.status, StatusCode::NOT_FOUND);
    // Once each: a second DELETE of an ended session is not timed again.
    Req::delete("/mcp")
        .version(V2025_06_18)
        .session("kept")
        .send(served.addr)
        .await;

    let sessions = look(&looker).histogram(SESSION_DURATION);
    assert_eq!(sessions.len(), 2, "{sessions:?}");
    assert!(
        sessions
            .iter()
            .all(|s| *s >= lasted.as_secs_f64() && *s < 10.0),
        "{sessions:?}"
    );
}

/// Every MCP request (a `POST`) is timed until its response ends: a tool
/// call until its stream's last event, a notification until its `202`.
/// Without the service naming the method, the label says `unknown`.
#[tokio::test]
async fn operations_are_timed_until_their_response_ends() {
    let (recorder, looker) = local_recorder();
    let _local = ::metrics::set_default_local_recorder(recorder);
    let layer = ResumabilityLayer::new(memory_store());
    let script = Script::new(|seen| {
        if seen.body_text().contains("\"id\"") {
            Reply::stream()
        } else {
            Reply::status(StatusCode::ACCEPTED)
        }
    });
    let served = crate::common::serve(tower::Layer::layer(&layer, script.clone())).await;

    let (mut resp, inner) = post_call(&script, &served, crate::common::CALL, V2025_06_18).await;
    assert!(inner.event(&message(1)).await);
    let ran = Duration::from_millis(150);
    tokio::time::sleep(ran).await;
    let early = look(&looker);
    assert!(
        early
            .histograms
            .keys()
            .all(|name| !name.starts_with(OPERATION_DURATION)),
        "timed before its stream ended: {:?}",
        early.histograms
    );
    assert!(inner.event(&message(2)).await);
    inner.close();
    assert_eq!(resp.events_to_end().await.len(), 2);
    wait_until("the stream to end", || async {
        layer.stats().streams_completed == 1
    })
    .await;
    let notified = initialized("s1").send(served.addr).await;
    assert_eq!(notified.status, StatusCode::ACCEPTED);

    let mut timed =
        look(&looker).histogram(&labelled(OPERATION_DURATION, "mcp_method_name", "unknown"));
    timed.sort_by(f64::total_cmp);
    assert_eq!(timed.len(), 2, "{timed:?}");
    assert!(timed[0] < ran.as_secs_f64(), "the notification: {timed:?}");
    assert!(timed[1] >= ran.as_secs_f64(), "the call: {timed:?}");
}

/// Through the reverse proxy, which reads each request's JSON-RPC method:
/// the operation is labelled with it, the proxy's connections are counted
/// and gauged, and an upstream it cannot reach is counted as `connect`.
#[tokio::test]
async fn the_proxy_names_the_method_and_counts_connections_and_upstream_errors() {
    use mcp_resume::metrics::{PROXY_CONNECTIONS, PROXY_CONNECTIONS_OPEN, PROXY_UPSTREAM_ERRORS};
    use mcp_resume::proxy::{ReverseProxy, ServeOptions, serve};
    let (recorder, looker) = local_recorder();
    let _local = ::metrics::set_default_local_recorder(recorder);
    let script = Script::streams();
    let upstream = crate::common::serve(script.clone()).await;
    let proxied = |upstream: String| async move {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let layer = ResumabilityLayer::new(memory_store());
        let proxy = ReverseProxy::new(upstream.parse().unwrap());
        tokio::spawn(serve(
            listener,
            tower::Layer::layer(&layer, proxy),
            std::future::pending(),
            ServeOptions::new(),
        ));
        (addr, layer)
    };
    let (addr, layer) = proxied(format!("{}/mcp", upstream.base())).await;

    const TOOL_CALL: &str =
        r#"{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"slow"}}"#;
    const VENDOR_CALL: &str = r#"{"jsonrpc":"2.0","id":8,"method":"vendor/anything"}"#;
    for body in [TOOL_CALL, VENDOR_CALL] {
        let mut resp = Req::post("/mcp", body)
            .version(V2025_06_18)
            .session("s1")
            .send(addr)
            .await;
        let inner = script.next_stream().await;
        assert!(inner.event(&message(1)).await);
        inner.close();
        assert_eq!(resp.events_to_end().await.len(), 1);
    }
    wait_until("both streams to end", || async {
        layer.stats().streams_completed == 2
    })
    .await;
    wait_until("the proxy to close both connections", || async {
        look_gauge(&looker, PROXY_CONNECTIONS_OPEN) == 0.0
    })
    .await;
    let recorded = look(&looker);
    assert_eq!(recorded.counter(PROXY_CONNECTIONS), 2);
    let by_method = |method: &str| {
        recorded
            .histogram(&labelled(OPERATION_DURATION, "mcp_method_name", method))
            .len()
    };
    assert_eq!(
        (
            by_method("tools/call"),
            by_method("other"),
            by_method("unknown")
        ),
        (1, 1, 0)
    );

    // An upstream nobody listens on.
    let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let nowhere = format!("http://{}/mcp", closed.local_addr().unwrap());
    drop(closed);
    let (unreachable, _) = proxied(nowhere).await;
    let answer = Req::post("/mcp", VENDOR_CALL)
        .version(V2025_06_18)
        .send(unreachable)
        .await;
    assert_eq!(answer.status, StatusCode::BAD_GATEWAY);
    let failed = look(&looker);
    assert_eq!(
        failed.counter(&labelled(PROXY_UPSTREAM_ERRORS, "kind", "connect")),
        1
    );
    assert_eq!(failed.counter(PROXY_CONNECTIONS), 1);
}
