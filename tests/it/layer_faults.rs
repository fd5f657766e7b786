//! Faults through real HTTP: connections cut by a TCP proxy (mid-event
//! included), a failing store under both policies (docs/contract.md, rule 13), an
//! inner stream that breaks, and the layer's limits.

use crate::common;

use std::sync::Arc;
use std::time::Duration;

use crate::common::proxy::{CutPolicy, Proxy};
use crate::common::server::message;
use crate::common::sse::{End, Ev, Req};
use crate::common::store::{FailingStore, ops};
use crate::common::{
    CALL, V2025_06_18, V2025_11_25, call_then_leave, guard, memory_store, post_call, resume_after,
    serve_scripted, stream_of, wait_state, wait_until,
};
use http::StatusCode;
use mcp_resume::store::{EventStore, StreamState};
use mcp_resume::{ResumabilityLayer, StoreFailurePolicy};

/// Event `n`'s data: lengths vary, so cuts land anywhere in events.
fn payload(n: u64) -> String {
    let pad = "x".repeat((n as usize * 37) % 300);
    format!(
        r#"{{"jsonrpc":"2.0","method":"notifications/message","params":{{"n":{n},"pad":"{pad}"}}}}"#
    )
}

/// The proxy cuts the connection several times mid-stream (at byte counts
/// that fall in headers, between events and inside events); the client
/// resumes each time from the newest id it received and gets every event
/// exactly once, in order.
async fn survive_cuts(version: &str, seed: u64) {
    const TOTAL: u64 = 400;
    const CUTS: usize = 10;
    let layer = ResumabilityLayer::new(memory_store());
    let (script, served) = serve_scripted(&layer).await;
    let proxy = Proxy::with_policy(served.addr, CutPolicy::seeded(seed, CUTS, 600, 12_000)).await;

    // Open the stream directly: the first POST must get its id, or there
    // would be nothing to resume.
    let mut resp = Req::post("/mcp", CALL)
        .version(version)
        .session("s1")
        .send(proxy.addr())
        .await;
    // A producer that runs while the client is being cut, a little paced so
    // that both the live tail and replays are exercised.
    let inner = script.next_stream().await;
    let producer = tokio::spawn(async move {
        for n in 1..=TOTAL {
            assert!(inner.event(&payload(n)).await);
            if n % 20 == 0 {
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        }
    });

    let mut got: Vec<Ev> = Vec::new();
    let mut last_id: Option<String> = None;
    let mut mid_event_cuts = 0;
    let mut attempts = 0;
    loop {
        while let Some(ev) = resp.next_event().await {
            let id = ev.id().to_string();
            if !ev.is_empty_data() {
                got.push(ev);
            } else if attempts > 0 {
                // A resumed 2025-11-25 response is primed at the resume point.
                assert_eq!(Some(&id), last_id.as_ref(), "priming at the resume id");
            }
            last_id = Some(id);
        }
        match resp.end() {
            Some(End::Clean) => break,
            Some(End::Error(_)) => {
                if resp.cut_mid_block() {
                    mid_event_cuts += 1;
                }
            }
            None => unreachable!(),
        }
        // Reconnect, from the newest id received (the cut may even hit the
        // response headers: then just try again).
        let last = last_id
            .clone()
            .expect("the first response carried no id before its cut");
        loop {
            attempts += 1;
            assert!(attempts < 100, "too many attempts");
            let req = Req::get("/mcp")
                .version(version)
                .session("s1")
                .last_event_id(&last);
            match guard("a resume", req.try_send(proxy.addr())).await {
                Ok(next) => {
                    assert_eq!(next.status, StatusCode::OK, "{next:?}");
                    resp = next;
                    break;
                }
                Err(_) => continue,
            }
        }
    }
    producer.await.unwrap();
    let got: Vec<(u64, String)> = got
        .iter()
        .map(|ev| (ev.seq(), ev.data().to_string()))
        .collect();
    let want: Vec<(u64, String)> = (1..=TOTAL).map(|n| (n, payload(n))).collect();
    assert_eq!(got.len(), want.len());
    assert!(got == want, "events lost, duplicated or reordered");
    assert!(proxy.cuts() >= CUTS / 2, "only {} cuts", proxy.cuts());
    assert!(mid_event_cuts >= 1, "no cut landed inside an event");
}

#[tokio::test]
async fn proxy_cuts_mid_stream_every_event_once_in_order() {
    survive_cuts(V2025_06_18, 0x5eed).await;
}

#[tokio::test]
async fn proxy_cuts_mid_stream_every_event_once_in_order_with_priming() {
    survive_cuts(V2025_11_25, 0xc0ffee).await;
}

/// On-demand cuts while the client is attached to a live tail: after each
/// cut the client resumes from the newest id and misses nothing.
#[tokio::test]
async fn on_demand_cuts_during_live_tail() {
    let layer = ResumabilityLayer::new(memory_store());
    let (script, served) = serve_scripted(&layer).await;
    let proxy = Proxy::new(served.addr).await;

    let mut resp = Req::post("/mcp", CALL)
        .version(V2025_06_18)
        .session("s1")
        .send(proxy.addr())
        .await;
    let inner = script.next_stream().await;
    let mut got: Vec<(u64, String)> = Vec::new();
    for round in 0..5u64 {
        for n in round * 10 + 1..=round * 10 + 10 {
            assert!(inner.event(&message(n)).await);
        }
        // Read this round's events, then cut.
        let mut last = String::new();
        while got.len() < (round as usize + 1) * 10 {
            let ev = resp.expect_event().await;
            got.push((ev.seq(), ev.data().to_string()));
            last = ev.id().to_string();
        }
        proxy.cut_all();
        assert!(resp.next_event().await.is_none());
        assert!(matches!(resp.end(), Some(End::Error(_))), "{resp:?}");
        resp = Req::get("/mcp")
            .version(V2025_06_18)
            .session("s1")
            .last_event_id(&last)
            .send(proxy.addr())
            .await;
        assert_eq!(resp.status, StatusCode::OK);
    }
    inner.close();
    assert!(resp.events_to_end().await.is_empty());
    assert_eq!(resp.end(), Some(&End::Clean));
    assert_eq!(got, (1..=50).map(|n| (n, message(n))).collect::<Vec<_>>());
    assert_eq!(proxy.cuts(), 5);
}

/// Fail-open, store failing at stream start: the response is served
/// untouched (inner bytes as they are), counted in `store_failures`.
#[tokio::test]
async fn fail_open_at_stream_start_passes_the_inner_bytes_through() {
    let failing = FailingStore::new();
    failing.fail(ops::ALL);
    let layer = ResumabilityLayer::new(failing.clone());
    let (script, served) = serve_scripted(&layer).await;

    for version in [V2025_06_18, V2025_11_25] {
        let mut resp = Req::post("/mcp", CALL)
            .version(version)
            .session("s1")
            .send(served.addr)
            .await;
        assert_eq!(resp.status, StatusCode::OK);
        let inner = script.next_stream().await;
        let body = [
            "id: 0/0\nretry: 3000\ndata:\n\n",
            "id: 1/0\ndata: a\n\n",
            ": ping\n\n",
            "data: b\n\n",
        ];
        for chunk in body {
            assert!(inner.raw(chunk).await);
        }
        inner.close();
        assert_eq!(
            String::from_utf8(resp.body_to_end().await).unwrap(),
            body.concat(),
            "{version}"
        );
        assert_eq!(resp.end(), Some(&End::Clean));
    }
    let stats = layer.stats();
    assert!(stats.store_failures >= 2, "{stats:?}");
    assert!(stats.passthrough_streams >= 2, "{stats:?}");
    assert!(failing.injected() >= 2);
}

/// Fail-closed, store failing: a request that reached the service gets the
/// service's answer (without resumability), never a 503 for a call that may
/// have run; while the store is known to be failing, the next requests get
/// a 503 with a JSON-RPC error *before* the service sees them; one a second
/// goes through as a probe, and once the store works again streams are
/// resumable again (docs/contract.md, rule 13).
#[tokio::test]
async fn fail_closed_refuses_before_the_service_never_after() {
    let failing = FailingStore::new();
    failing.fail(ops::ALL);
    let layer =
        ResumabilityLayer::new(failing.clone()).on_store_failure(StoreFailurePolicy::FailClosed);
    let (script, served) = serve_scripted(&layer).await;

    // Not yet known to be failing: the call reaches the service, and its
    // answer is delivered as the service sent it.
    let (mut resp, inner) = post_call(&script, &served, CALL, V2025_06_18).await;
    assert!(inner.event("the tool ran").await);
    inner.close();
    assert_eq!(resp.status, StatusCode::OK);
    assert_eq!(resp.text().await, "data: the tool ran\n\n");
    assert_eq!(layer.stats().passthrough_streams, 1);

    // Known to be failing now: refused before the service sees the request.
    let seen_before = script.request_count();
    let mut resp = Req::post("/mcp", CALL)
        .version(V2025_06_18)
        .session("s1")
        .send(served.addr)
        .await;
    assert_eq!(resp.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(resp.header("content-type"), Some("application/json"));
    let body: serde_json::Value = serde_json::from_str(&resp.text().await).unwrap();
    assert_eq!(body["jsonrpc"], "2.0");
    assert!(body["error"]["code"].is_i64(), "{body}");
    assert!(body["error"]["message"].is_string(), "{body}");
    assert_eq!(
        script.request_count(),
        seen_before,
        "a refused request reached the service"
    );

    // Healed: within a probe interval a request goes through, its stream is
    // resumable, and the store counts as healthy again.
    failing.heal();
    let (mut resp, inner) = post_once_the_probe_admits(&script, &served).await;
    assert!(inner.event("ok").await);
    inner.close();
    let events = resp.events_to_end().await;
    assert_eq!((events[0].seq(), events[0].data()), (1, "ok"));
    let mut resp = Req::post("/mcp", CALL)
        .version(V2025_06_18)
        .session("s1")
        .send(served.addr)
        .await;
    assert_eq!(resp.status, StatusCode::OK, "the store is healthy again");
    let inner = script.next_stream().await;
    inner.close();
    assert!(resp.events_to_end().await.is_empty());
}

/// Posts a call until the fail-closed policy lets one through to the
/// service (a probe of a store that was failing): 503s until then.
async fn post_once_the_probe_admits(
    script: &crate::common::server::Script,
    served: &crate::common::Served,
) -> (
    crate::common::sse::Resp,
    crate::common::server::StreamHandle,
) {
    for _ in 0..40 {
        let resp = Req::post("/mcp", CALL)
            .version(V2025_06_18)
            .session("s1")
            .send(served.addr)
            .await;
        if resp.status == StatusCode::OK {
            return (resp, script.next_stream().await);
        }
        assert_eq!(resp.status, StatusCode::SERVICE_UNAVAILABLE);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("no request went through to the service in 4 s (the probe interval is 1 s)");
}

/// The store cannot record a stream's end (a full disk): a resume still
/// ends, at once, instead of waiting for a producer that is gone; and the
/// end is recorded once the store recovers.
#[tokio::test]
async fn a_stream_whose_end_the_store_failed_to_record_still_ends_for_resumes() {
    for policy in [StoreFailurePolicy::FailOpen, StoreFailurePolicy::FailClosed] {
        let failing = FailingStore::new();
        let store: Arc<dyn EventStore> = failing.clone();
        let layer = ResumabilityLayer::new(failing.clone()).on_store_failure(policy);
        let (script, served) = serve_scripted(&layer).await;
        let (stream, inner) = call_then_leave(&script, &served, 3).await;
        failing.fail(ops::OTHER);
        inner.close();
        wait_until("the failed end to be counted", || async {
            layer.stats().store_failures >= 1
        })
        .await;
        let info = store.stream_info(stream).await.unwrap().unwrap();
        assert_eq!(info.state, StreamState::Live, "the end is not in the store");
        let resume = |seq: u64| resume_after(stream, seq);

        // From the last event: nothing more will come, so it is refused now.
        let mut at_end = guard("a resume at the end", resume(3).send(served.addr)).await;
        assert_eq!(at_end.status, StatusCode::BAD_REQUEST, "{policy:?}");
        assert_eq!(at_end.text().await, common::CANNOT_RESUME_BODY);
        // From before it: the rest, then the end, not a wait for ever.
        let mut behind = resume(1).send(served.addr).await;
        assert_eq!(behind.status, StatusCode::OK);
        let rest = guard("the replay to end", behind.events_to_end()).await;
        let data: Vec<&str> = rest.iter().map(|ev| ev.data()).collect();
        assert_eq!(data, [message(2), message(3)], "{policy:?}");
        assert_eq!(behind.end(), Some(&End::Clean));

        // The store recovers: the end is recorded without anyone asking.
        failing.heal();
        wait_state(&store, stream, StreamState::Complete).await;
        let mut after = resume(3).send(served.addr).await;
        assert_eq!(after.status, StatusCode::BAD_REQUEST);
        assert_eq!(after.text().await, common::CANNOT_RESUME_BODY);
    }
}

/// Fail-open, store failing mid-stream: the client still gets every
/// message, in order, and the response ends cleanly; no panic.
#[tokio::test]
async fn fail_open_mid_stream_still_delivers_every_message() {
    let failing = FailingStore::new();
    let layer = ResumabilityLayer::new(failing.clone());
    let (script, served) = serve_scripted(&layer).await;
    let (mut resp, inner) = post_call(&script, &served, CALL, V2025_06_18).await;
    for n in 1..=3 {
        assert!(inner.event(&message(n)).await);
    }
    let mut got = Vec::new();
    for _ in 0..3 {
        got.push(resp.expect_event().await);
    }
    assert!(got.iter().all(|ev| common::layer_id(ev.id()).1 >= 1));
    failing.fail(ops::APPEND);
    for n in 4..=6 {
        assert!(inner.event(&message(n)).await);
    }
    inner.close();
    got.extend(resp.events_to_end().await);
    assert_eq!(resp.end(), Some(&End::Clean), "{resp:?}");
    let data: Vec<String> = got.iter().map(|ev| ev.data().to_string()).collect();
    assert_eq!(data, (1..=6).map(message).collect::<Vec<_>>());
    assert!(layer.stats().store_failures >= 1);
}

/// Fail-closed, store failing mid-stream: an event that cannot be stored is
/// never sent (rule 8), the response ends, the server stays healthy.
#[tokio::test]
async fn fail_closed_mid_stream_never_sends_an_unstored_event() {
    let failing = FailingStore::new();
    let layer =
        ResumabilityLayer::new(failing.clone()).on_store_failure(StoreFailurePolicy::FailClosed);
    let (script, served) = serve_scripted(&layer).await;
    let (mut resp, inner) = post_call(&script, &served, CALL, V2025_06_18).await;
    for n in 1..=3 {
        assert!(inner.event(&message(n)).await);
    }
    for n in 1..=3 {
        assert_eq!(resp.expect_event().await.data(), message(n));
    }
    failing.fail(ops::APPEND);
    let _ = inner.event(&message(4)).await;
    let rest = resp.events_to_end().await;
    assert!(
        rest.iter().all(|ev| ev.data() != message(4)),
        "an event that was not stored reached the client: {rest:#?}"
    );
    assert!(resp.end().is_some());
    failing.heal();
    drop(inner);
    // Still serving, once a probe finds the store healed.
    let (mut resp, inner) = post_once_the_probe_admits(&script, &served).await;
    assert!(inner.event("after").await);
    inner.close();
    assert_eq!(resp.events_to_end().await[0].data(), "after");
}

/// The inner body fails mid-stream: the stream is abandoned, the client's
/// response ends, and a resume replays what was stored, then ends.
#[tokio::test]
async fn inner_body_error_abandons_the_stream_and_stored_events_replay() {
    let layer = ResumabilityLayer::new(memory_store());
    let store = layer.store().clone();
    let (script, served) = serve_scripted(&layer).await;
    let (mut resp, inner) = post_call(&script, &served, CALL, V2025_06_18).await;
    for n in 1..=4 {
        assert!(inner.event(&message(n)).await);
    }
    let first = resp.expect_event().await;
    inner.fail("inner broke").await;
    let rest = resp.events_to_end().await;
    assert!(resp.end().is_some());
    assert!(rest.len() <= 3);
    let stream = stream_of(first.id());
    wait_state(&store, stream, StreamState::Abandoned).await;

    let mut resumed = Req::get("/mcp")
        .version(V2025_06_18)
        .session("s1")
        .last_event_id(first.id())
        .send(served.addr)
        .await;
    let data: Vec<String> = resumed
        .events_to_end()
        .await
        .iter()
        .map(|ev| ev.data().to_string())
        .collect();
    assert_eq!(data, (2..=4).map(message).collect::<Vec<_>>());
    assert_eq!(resumed.end(), Some(&End::Clean));
}

/// An inner event over `max_event_bytes` ends the stream (abandoned); what
/// came before it is delivered and stored.
#[tokio::test]
async fn oversized_event_abandons_the_stream() {
    let layer = ResumabilityLayer::new(memory_store()).max_event_bytes(1024);
    let store = layer.store().clone();
    let (script, served) = serve_scripted(&layer).await;
    let (mut resp, inner) = post_call(&script, &served, CALL, V2025_06_18).await;
    assert!(inner.event("small").await);
    let _ = inner.event(&"y".repeat(4096)).await;
    let _ = inner.event("after").await;
    let events = resp.events_to_end().await;
    assert!(resp.end().is_some());
    let data: Vec<&str> = events.iter().map(Ev::data).collect();
    assert_eq!(data, ["small"], "{resp:?}");
    let stream = stream_of(events[0].id());
    wait_state(&store, stream, StreamState::Abandoned).await;
    assert_eq!(
        store.stream_info(stream).await.unwrap().unwrap().last_seq,
        1
    );
    guard("the inner body to be dropped", inner.dropped()).await;
}

/// Beyond `max_live_streams_per_session`, new streams of that session are
/// served without resumability (inner bytes untouched); other sessions and
/// later streams are not affected.
#[tokio::test]
async fn streams_beyond_the_session_limit_pass_through() {
    let layer = ResumabilityLayer::new(memory_store()).max_live_streams_per_session(1);
    let store: Arc<dyn EventStore> = layer.store().clone();
    let (script, served) = serve_scripted(&layer).await;

    let post = |session: &'static str| {
        Req::post("/mcp", CALL)
            .version(V2025_06_18)
            .session(session)
    };
    let (mut first, first_inner, one) = first_event(&post("s1"), &script, &served).await;
    assert_passes_through_untouched(&post("s1"), &script, &served).await;

    // Another session is not limited.
    let (_, other_inner, _) = first_event(&post("s2"), &script, &served).await;
    other_inner.close();

    // The limit is on live streams: once the first ends, the next is resumable.
    first_inner.close();
    assert!(first.events_to_end().await.is_empty());
    wait_state(&store, stream_of(one.id()), StreamState::Complete).await;
    let (_, third_inner, _) = first_event(&post("s1"), &script, &served).await;
    third_inner.close();
    assert!(layer.stats().passthrough_streams >= 1);
}

/// Beyond `max_live_streams`, new streams are served without resumability
/// (inner bytes untouched), whatever their session, and streams without a
/// session count too; once a live stream ends, the next one is resumable.
#[tokio::test]
async fn streams_beyond_the_layer_limit_pass_through() {
    let layer = ResumabilityLayer::new(memory_store()).max_live_streams(1);
    let store: Arc<dyn EventStore> = layer.store().clone();
    let (script, served) = serve_scripted(&layer).await;
    let post = || Req::post("/mcp", CALL).version(V2025_06_18);

    let (mut first, first_inner, one) = first_event(&post(), &script, &served).await;
    assert_passes_through_untouched(&post().session("s2"), &script, &served).await;
    assert_eq!(layer.stats().passthrough_streams, 1);

    // The limit is on live streams: once the first ends, the next is resumable.
    first_inner.close();
    assert!(first.events_to_end().await.is_empty());
    wait_state(&store, stream_of(one.id()), StreamState::Complete).await;
    let (_, third_inner, _) = first_event(&post(), &script, &served).await;
    third_inner.close();
}

/// Sends `request`, which must be made resumable, and has its inner stream
/// send one event: returns the open response, the inner stream, and the
/// event as the client got it (sequence 1).
async fn first_event(
    request: &Req,
    script: &common::server::Script,
    served: &common::Served,
) -> (common::sse::Resp, common::server::StreamHandle, Ev) {
    let mut response = request.send(served.addr).await;
    let inner = script.next_stream().await;
    assert!(inner.event("one").await);
    let event = response.expect_event().await;
    assert_eq!(event.seq(), 1);
    (response, inner, event)
}

/// Sends `request`, which must be served without resumability: the inner
/// stream's bytes, ids included, reach the client untouched.
async fn assert_passes_through_untouched(
    request: &Req,
    script: &common::server::Script,
    served: &common::Served,
) {
    let mut response = request.send(served.addr).await;
    let inner = script.next_stream().await;
    assert!(inner.raw("id: 9/9\ndata: raw\n\n").await);
    inner.close();
    assert_eq!(response.body_to_end().await, b"id: 9/9\ndata: raw\n\n");
}

/// A client too slow for its producer: the stream's event cap (100) must not
/// trim what the attached client has yet to read. The layer holds the pump
/// once the client is half the cap behind, so the client gets every event, in
/// order, however far the producer would have run ahead.
#[tokio::test]
async fn a_slow_attached_client_holds_the_producer_instead_of_losing_events() {
    const EVENTS: usize = 2_000;
    let layer = ResumabilityLayer::new(memory_store()).max_events_per_stream(100);
    let (script, served) = serve_scripted(&layer).await;
    let (mut resp, stream) = post_call(&script, &served, CALL, V2025_06_18).await;
    // 16 KiB events: 32 MB in all, more than loopback socket buffers hold, so
    // a client that does not read really falls behind.
    let payload = "x".repeat(16 * 1024);
    let producer = tokio::spawn(async move {
        for n in 1..=EVENTS {
            assert!(
                stream.event(&format!("{n} {payload}")).await,
                "the layer reads the inner stream"
            );
        }
    });
    // The client reads nothing for a while: without back-pressure the producer
    // runs thousands of events ahead and the cap trims what the client has not read.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut seen = 0;
    while seen < EVENTS {
        let event = guard("the next event", resp.expect_event()).await;
        seen += 1;
        let n: usize = event.data().split(' ').next().unwrap().parse().unwrap();
        assert_eq!(n, seen, "every event once, in order");
    }
    guard("the producer", producer).await.unwrap();
}

/// The store's latency does not hold the inner service back: while a commit
/// is in flight the layer reads on (rmcp's session, for one, sends every
/// stream of a session through one small channel, so one stream waiting on
/// its commit would stall them all). What it read is committed next, and
/// nothing reaches the client before it is stored.
#[tokio::test]
async fn the_inner_body_is_read_while_a_commit_is_in_flight() {
    const EVENTS: u64 = 200;
    let store = FailingStore::new();
    let layer = ResumabilityLayer::new(store.clone());
    let (script, served) = serve_scripted(&layer).await;
    let (mut resp, inner) = post_call(&script, &served, CALL, V2025_06_18).await;
    store.hold_appends();
    // The test server's body channel holds 16 chunks: without reading on,
    // the sends stop there until the first commit returns.
    let sent = tokio::time::timeout(Duration::from_secs(5), async {
        for n in 1..=EVENTS {
            assert!(inner.event(&message(n)).await);
        }
    })
    .await;
    assert!(
        sent.is_ok(),
        "the inner service was held back by a commit in flight"
    );
    assert!(
        tokio::time::timeout(Duration::from_millis(50), resp.expect_event())
            .await
            .is_err(),
        "an event reached the client before it was stored"
    );
    store.release_appends();
    inner.close();
    let events = guard("the stream to end", resp.events_to_end()).await;
    let data: Vec<String> = events.iter().map(|ev| ev.data().to_string()).collect();
    assert_eq!(data, (1..=EVENTS).map(message).collect::<Vec<_>>());
}

/// Sends `chunks` of SSE through the layer while the store holds every
/// append, and returns how many the layer had taken in 200 ms after it took
/// `started` of them (the commit in flight), with the store released and
/// the client's response to read the rest from (while the server, returned
/// too, is kept).
async fn chunks_taken_in_while_a_commit_is_held(
    chunks: Vec<String>,
    started: usize,
) -> (usize, common::sse::Resp, common::Served) {
    let store = FailingStore::new();
    let layer = ResumabilityLayer::new(store.clone());
    let (script, served) = serve_scripted(&layer).await;
    let (resp, inner) = post_call(&script, &served, CALL, V2025_06_18).await;
    store.hold_appends();
    let sent = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let producer = tokio::spawn({
        let sent = sent.clone();
        async move {
            for chunk in chunks {
                assert!(inner.raw(chunk).await);
                sent.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            }
        }
    });
    let count = || sent.load(std::sync::atomic::Ordering::SeqCst);
    common::wait_until("the layer to read past the commit in flight", || {
        std::future::ready(count() > started)
    })
    .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let taken = count();
    store.release_appends();
    guard("the producer", producer).await.unwrap();
    (taken, resp, served)
}

/// Reading on while a commit is in flight is bounded: a store that does not
/// answer holds the inner service back once about 256 KiB wait, as a client
/// that does not read would without the layer. With 64 KiB events, the
/// commit in flight and the next one hold about 10 of them, the test
/// server's channel 16 more.
#[tokio::test]
async fn what_waits_for_a_slow_commit_is_bounded() {
    const EVENTS: usize = 100;
    // 64 KiB events: 6.4 MB in all.
    let payload = "x".repeat(64 * 1024);
    let chunks = (1..=EVENTS)
        .map(|n| common::server::event_block(None, None, Some(&format!("{n} {payload}")), None))
        .collect();
    let (taken, mut resp, _served) = chunks_taken_in_while_a_commit_is_held(chunks, 20).await;
    assert!(
        taken < EVENTS / 2,
        "{taken} of {EVENTS} 64 KiB events were taken in while the store held one commit"
    );
    for n in 1..=EVENTS {
        let event = guard("the next event", resp.expect_event()).await;
        assert!(
            event.data().starts_with(&format!("{n} ")),
            "every event once, in order"
        );
    }
}

/// The same bound holds for tiny events, counted for the memory each takes
/// rather than for their few bytes of data.
#[tokio::test]
async fn tiny_events_waiting_for_a_slow_commit_are_bounded_too() {
    const CHUNKS: usize = 60;
    const PER_CHUNK: usize = 1_000;
    let chunks = vec!["data:x\n\n".repeat(PER_CHUNK); CHUNKS];
    let (taken, mut resp, _served) = chunks_taken_in_while_a_commit_is_held(chunks, 16).await;
    assert!(
        taken < 40,
        "{taken} of {CHUNKS} chunks of {PER_CHUNK} one-byte events were taken in while the store held one commit"
    );
    for _ in 0..CHUNKS * PER_CHUNK {
        assert_eq!(
            guard("the next event", resp.expect_event()).await.data(),
            "x"
        );
    }
}

/// One inner chunk can hold more events than the stream's cap (here the
/// store's retention, 100; the layer sets none). Committed at once, they
/// would trim events the client has yet to read; the layer commits such a
/// chunk in runs the client keeps up with, and every event arrives.
#[tokio::test]
async fn a_chunk_larger_than_the_store_cap_reaches_the_client_whole() {
    const EVENTS: usize = 1_000;
    let store = mcp_resume::store::MemoryEventStore::with_retention(
        mcp_resume::store::Retention::new().max_events_per_stream(100),
    );
    let layer = ResumabilityLayer::new(Arc::new(store));
    let (script, served) = serve_scripted(&layer).await;
    let (mut resp, stream) = post_call(&script, &served, CALL, V2025_06_18).await;
    let chunk: String = (1..=EVENTS).map(|n| format!("data: {n}\n\n")).collect();
    assert!(stream.raw(chunk).await);
    drop(stream);
    let events = guard("the stream to end", resp.events_to_end()).await;
    let data: Vec<usize> = events.iter().map(|e| e.data().parse().unwrap()).collect();
    assert_eq!(
        data,
        (1..=EVENTS).collect::<Vec<_>>(),
        "every event once, in order"
    );
}
