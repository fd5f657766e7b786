//! Resuming through real HTTP (docs/contract.md, rules 10, 11, 12, 14): replay, live
//! tail without gap or duplicate, detach and its timeout, DELETE, concurrent
//! resumes, the standalone GET stream, poll mode; memory and SQLite stores.

use crate::common;

use std::sync::Arc;
use std::time::Duration;

use crate::common::server::{Script, StreamHandle, message};
use crate::common::sse::{End, Ev, Req};
use crate::common::{
    CANNOT_RESUME_BODY, V2025_06_18, V2025_11_25, memory_store, post_call, serve, serve_scripted,
    stream_of, wait_state, wait_until,
};
use http::{Method, StatusCode};
use mcp_resume::ResumabilityLayer;
use mcp_resume::store::{EventStore, SqliteEventStore, SqliteOptions, StreamState};
use tower::Layer;

const CALL: &str = r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"long"}}"#;

fn resume(version: &str, session: &str, last_event_id: &str) -> Req {
    Req::get("/mcp")
        .version(version)
        .session(session)
        .last_event_id(last_event_id)
}

/// `(seq, data)` of the events with data.
fn seq_data(events: &[Ev]) -> Vec<(u64, String)> {
    events
        .iter()
        .filter(|ev| !ev.is_empty_data())
        .map(|ev| (ev.seq(), ev.data().to_string()))
        .collect()
}

fn expected(range: std::ops::RangeInclusive<u64>) -> Vec<(u64, String)> {
    range.map(|n| (n, message(n))).collect()
}

/// A resume answers the events after the id, with their original ids, no
/// priming event, `retry` on the first event, then ends with the stream.
#[tokio::test]
async fn resume_replays_after_the_id_with_original_ids() {
    let layer = ResumabilityLayer::new(memory_store()).retry(Duration::from_millis(1200));
    let store = layer.store().clone();
    let (script, served) = serve_scripted(&layer).await;

    let mut resp = Req::post("/mcp", CALL)
        .version(V2025_11_25)
        .session("s1")
        .send(served.addr)
        .await;
    script.next_stream().await.produce(5, None).await.unwrap();
    let original = resp.events_to_end().await;
    assert_eq!(original.len(), 6, "priming + 5: {original:#?}");
    let stream = original[0].stream();
    wait_state(&store, stream_of(original[0].id()), StreamState::Complete).await;

    for version in [V2025_11_25, V2025_06_18] {
        let mut resumed = resume(version, "s1", original[2].id())
            .send(served.addr)
            .await;
        assert_eq!(resumed.status, StatusCode::OK);
        assert!(
            resumed
                .header("content-type")
                .unwrap()
                .starts_with("text/event-stream")
        );
        let mut events = resumed.events_to_end().await;
        assert_eq!(resumed.end(), Some(&End::Clean));
        if version == V2025_11_25 {
            // One priming event, at the resume point, carrying the retry hint.
            let priming = events.remove(0);
            assert!(priming.is_empty_data(), "{priming:?}");
            assert_eq!(priming.id(), original[2].id());
            assert_eq!(priming.retry, Some(1200));
            assert!(events.iter().all(|ev| ev.retry.is_none()));
        } else {
            assert_eq!(
                events[0].retry,
                Some(1200),
                "first resumed event carries retry"
            );
            assert!(events[1..].iter().all(|ev| ev.retry.is_none()));
        }
        assert!(events.iter().all(|ev| !ev.is_empty_data()), "{events:#?}");
        assert_eq!(seq_data(&events), expected(3..=5), "{version}");
        assert!(events.iter().all(|ev| ev.stream() == stream));
        // Same ids as the original delivery.
        let ids: Vec<_> = events.iter().map(|ev| ev.id().to_string()).collect();
        let original_ids: Vec<_> = original[3..].iter().map(|ev| ev.id().to_string()).collect();
        assert_eq!(ids, original_ids);
    }
    // From the priming id: everything.
    let mut all = resume(V2025_11_25, "s1", original[0].id())
        .send(served.addr)
        .await;
    assert_eq!(seq_data(&all.events_to_end().await), expected(1..=5));
    // From the newest id of a finished stream: nothing to replay and nothing
    // will come, so the same 400 (an empty 200 makes clients reconnect forever).
    let mut none = resume(V2025_11_25, "s1", original[5].id())
        .send(served.addr)
        .await;
    assert_eq!(none.status, StatusCode::BAD_REQUEST);
    assert_eq!(none.text().await, CANNOT_RESUME_BODY);

    assert!(
        script.requests().iter().all(|r| r.method == Method::POST),
        "a resume reached the inner service"
    );
    let stats = layer.stats();
    assert!(stats.resumes >= 3 && stats.rejections == 1, "{stats:?}");
    assert!(stats.events_replayed >= 3 + 3 + 5, "{stats:?}");
    assert_eq!(stats.streams_started, 1);
    assert_eq!(stats.streams_completed, 1);
}

/// Writes events `from..=to` as fast as the channel takes them.
async fn write_range(inner: &StreamHandle, from: u64, to: u64) {
    for n in from..=to {
        assert!(inner.event(&message(n)).await, "inner body dropped at {n}");
    }
}

/// 5,000 events written as fast as possible: the first client leaves at
/// 1,000, the resume replays and then follows live; every event exactly
/// once, in order (rule 11: no gap, no duplicate).
async fn live_tail(store: Arc<dyn EventStore>) {
    const TOTAL: u64 = 5_000;
    let layer = ResumabilityLayer::new(store);
    let (script, served) = serve_scripted(&layer).await;

    let (mut first, inner) = post_call(&script, &served, CALL, V2025_06_18).await;
    let (go_on, wait) = tokio::sync::oneshot::channel::<()>();
    let producer = tokio::spawn(async move {
        write_range(&inner, 1, 2_500).await;
        // Continue once the resumed client is attached and live.
        wait.await.unwrap();
        write_range(&inner, 2_501, TOTAL).await;
    });

    let mut got = Vec::new();
    while got.len() < 1_000 {
        got.push(first.expect_event().await);
    }
    let last = got.last().unwrap().id().to_string();
    drop(first);

    let mut second = resume(V2025_06_18, "s1", &last).send(served.addr).await;
    assert_eq!(second.status, StatusCode::OK);
    let mut go_on = Some(go_on);
    while let Some(ev) = second.next_event().await {
        if ev.seq() == 2_500 {
            go_on.take().unwrap().send(()).unwrap();
        }
        got.push(ev);
    }
    assert_eq!(second.end(), Some(&End::Clean));
    producer.await.unwrap();
    let stream = got[0].stream();
    assert!(got.iter().all(|ev| ev.stream() == stream));
    assert_eq!(seq_data(&got), expected(1..=TOTAL));
}

#[tokio::test]
async fn live_tail_has_no_gap_and_no_duplicate() {
    live_tail(memory_store()).await;
}

#[tokio::test]
async fn live_tail_has_no_gap_and_no_duplicate_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteOptions::new(dir.path().join("events.db"))
        .open()
        .unwrap();
    live_tail(Arc::new(store)).await;
}

/// The same, with no synchronisation at all: the producer races the
/// resume; whatever is replayed and whatever is live, nothing is lost or
/// doubled.
#[tokio::test]
async fn resume_racing_a_fast_producer_has_no_gap_and_no_duplicate() {
    const TOTAL: u64 = 5_000;
    let layer = ResumabilityLayer::new(memory_store());
    let (script, served) = serve_scripted(&layer).await;

    let mut first = Req::post("/mcp", CALL)
        .version(V2025_11_25)
        .session("s1")
        .send(served.addr)
        .await;
    let producer = script.next_stream().await.produce(TOTAL, None);
    let mut got = Vec::new();
    while got.len() < 300 {
        let ev = first.expect_event().await;
        if !ev.is_empty_data() {
            got.push(ev);
        }
    }
    drop(first);
    let mut resumes = 0;
    // Resume several times in a row, each time from the newest event.
    while got.last().map(Ev::seq) != Some(TOTAL) {
        resumes += 1;
        assert!(resumes < 50, "too many resumes");
        let last = got.last().unwrap().id().to_string();
        let mut next = resume(V2025_11_25, "s1", &last).send(served.addr).await;
        assert_eq!(next.status, StatusCode::OK);
        // Take a few hundred events, then leave (or read to the end).
        for _ in 0..700 {
            match next.next_event().await {
                Some(ev) if ev.is_empty_data() => {
                    // The priming event of a resumed response: the resume point.
                    assert_eq!(ev.id(), last, "priming at the resume id");
                }
                Some(ev) => got.push(ev),
                None => break,
            }
        }
    }
    assert_eq!(producer.await.unwrap(), TOTAL);
    assert_eq!(seq_data(&got), expected(1..=TOTAL));
}

/// Disconnect is not cancel: after the client leaves, the layer keeps
/// reading and storing the inner stream until it ends (rule 10).
#[tokio::test]
async fn detached_stream_keeps_running_and_is_stored() {
    let layer = ResumabilityLayer::new(memory_store());
    let store = layer.store().clone();
    let (script, served) = serve_scripted(&layer).await;
    let (mut resp, inner) = post_call(&script, &served, CALL, V2025_06_18).await;
    write_range(&inner, 1, 2).await;
    let first = resp.expect_event().await;
    let second = resp.expect_event().await;
    assert_eq!(second.seq(), 2);
    drop(resp);
    // Let the layer see the client go.
    tokio::time::sleep(Duration::from_millis(50)).await;
    // The producer goes on: more events than the inner channel holds, so
    // the layer must be reading them.
    write_range(&inner, 3, 100).await;
    assert!(
        !inner.is_dropped(),
        "the layer dropped the inner body after a disconnect"
    );
    inner.close();
    let stream = stream_of(first.id());
    wait_state(&store, stream, StreamState::Complete).await;
    assert_eq!(
        store.stream_info(stream).await.unwrap().unwrap().last_seq,
        100
    );

    let mut resumed = resume(V2025_06_18, "s1", second.id())
        .send(served.addr)
        .await;
    assert_eq!(seq_data(&resumed.events_to_end().await), expected(3..=100));
    assert_eq!(resumed.end(), Some(&End::Clean));
}

/// With no client attached for `detach_timeout`, the inner body is dropped
/// and the stream abandoned; a resume replays what was stored, then ends.
#[tokio::test]
async fn detach_timeout_abandons_and_resume_replays_what_was_stored() {
    let layer = ResumabilityLayer::new(memory_store()).detach_timeout(Duration::from_millis(300));
    let store = layer.store().clone();
    let (script, served) = serve_scripted(&layer).await;
    let (mut resp, inner) = post_call(&script, &served, CALL, V2025_06_18).await;
    write_range(&inner, 1, 2).await;
    resp.expect_event().await;
    let second = resp.expect_event().await;
    drop(resp);
    write_range(&inner, 3, 4).await;
    // The producer never ends on its own: the timeout has to stop it.
    inner.dropped().await;
    let stream = stream_of(second.id());
    wait_state(&store, stream, StreamState::Abandoned).await;
    assert_eq!(
        store.stream_info(stream).await.unwrap().unwrap().last_seq,
        4
    );
    wait_until("the abandoned stream to be counted", || async {
        layer.stats().streams_abandoned == 1
    })
    .await;

    let mut resumed = resume(V2025_06_18, "s1", second.id())
        .send(served.addr)
        .await;
    assert_eq!(resumed.status, StatusCode::OK);
    assert_eq!(seq_data(&resumed.events_to_end().await), expected(3..=4));
    assert_eq!(resumed.end(), Some(&End::Clean));
}

/// While a client is attached the detach timeout never fires, however
/// slow the producer.
#[tokio::test]
async fn attached_stream_outlives_the_detach_timeout() {
    let layer = ResumabilityLayer::new(memory_store()).detach_timeout(Duration::from_millis(100));
    let (script, served) = serve_scripted(&layer).await;

    let mut resp = Req::post("/mcp", CALL)
        .version(V2025_06_18)
        .send(served.addr)
        .await;
    let producer = script
        .next_stream()
        .await
        .produce(6, Some(Duration::from_millis(60)));
    let events = resp.events_to_end().await;
    assert_eq!(seq_data(&events), expected(1..=6));
    assert_eq!(
        producer.await.unwrap(),
        6,
        "inner body dropped while a client was attached"
    );
    assert_eq!(layer.stats().streams_abandoned, 0);
}

/// A resume re-attaches: the stream is not abandoned while the resumed
/// client follows it, even past the detach timeout.
#[tokio::test]
async fn resumed_client_keeps_the_stream_alive() {
    let layer = ResumabilityLayer::new(memory_store()).detach_timeout(Duration::from_millis(500));
    let (script, served) = serve_scripted(&layer).await;
    let (mut resp, inner) = post_call(&script, &served, CALL, V2025_06_18).await;
    write_range(&inner, 1, 1).await;
    let first = resp.expect_event().await;
    drop(resp);
    let mut resumed = resume(V2025_06_18, "s1", first.id())
        .send(served.addr)
        .await;
    assert_eq!(resumed.status, StatusCode::OK);
    // Attached for 750 ms, well past the 500 ms timeout.
    for n in 2..=6 {
        tokio::time::sleep(Duration::from_millis(150)).await;
        assert!(
            inner.event(&message(n)).await,
            "stream abandoned under an attached client"
        );
        let ev = resumed.expect_event().await;
        assert_eq!((ev.seq(), ev.data().to_string()), (n, message(n)));
    }
    inner.close();
    assert!(resumed.events_to_end().await.is_empty());
    assert_eq!(resumed.end(), Some(&End::Clean));
}

/// DELETE answered 2xx purges the session's streams; a later resume gets
/// the 400. Other sessions, and DELETEs the inner service refuses, purge
/// nothing (rule 12).
#[tokio::test]
async fn delete_purges_the_session_streams() {
    let layer = ResumabilityLayer::new(memory_store());
    let store = layer.store().clone();
    let script = Script::new(|seen| {
        if seen.method == Method::DELETE && seen.header("mcp-session-id") == Some("keep") {
            common::server::Reply::status(StatusCode::METHOD_NOT_ALLOWED)
        } else if seen.method == Method::DELETE {
            common::server::Reply::status(StatusCode::OK)
        } else {
            common::server::Reply::stream()
        }
    });
    let served = serve(layer.layer(script.clone())).await;

    let mut first_ids = Vec::new();
    for session in ["doomed", "doomed", "other", "keep"] {
        let mut resp = Req::post("/mcp", CALL)
            .version(V2025_06_18)
            .session(session)
            .send(served.addr)
            .await;
        script.next_stream().await.produce(3, None).await.unwrap();
        let events = resp.events_to_end().await;
        wait_state(&store, stream_of(events[0].id()), StreamState::Complete).await;
        first_ids.push((session, events[0].id().to_string()));
    }

    let mut deleted = Req::delete("/mcp")
        .session("doomed")
        .send(served.addr)
        .await;
    assert_eq!(deleted.status, StatusCode::OK);
    deleted.body_to_end().await;
    let mut refused = Req::delete("/mcp").session("keep").send(served.addr).await;
    assert_eq!(refused.status, StatusCode::METHOD_NOT_ALLOWED);
    refused.body_to_end().await;

    for (session, id) in &first_ids {
        let mut resp = resume(V2025_06_18, session, id).send(served.addr).await;
        if *session == "doomed" {
            assert_eq!(resp.status, StatusCode::BAD_REQUEST, "{session}");
            assert_eq!(resp.text().await, common::CANNOT_RESUME_BODY);
        } else {
            assert_eq!(resp.status, StatusCode::OK, "{session}");
            assert_eq!(seq_data(&resp.events_to_end().await), expected(2..=3));
        }
    }
    assert!(store.session_streams("doomed").await.unwrap().is_empty());
}

/// Two resumes of one stream (the first while the original connection is
/// still open): the newer wins, the older response ends cleanly, the newest
/// gets everything.
#[tokio::test]
async fn newer_resume_wins_and_older_response_ends_cleanly() {
    let layer = ResumabilityLayer::new(memory_store());
    let (script, served) = serve_scripted(&layer).await;

    let (mut original, inner) = post_call(&script, &served, CALL, V2025_06_18).await;
    write_range(&inner, 1, 1).await;
    let first = original.expect_event().await;

    let mut b = resume(V2025_06_18, "s1", first.id())
        .send(served.addr)
        .await;
    assert_eq!(b.status, StatusCode::OK);
    write_range(&inner, 2, 2).await;
    assert_eq!(seq_data(&[b.expect_event().await]), expected(2..=2));
    let rest = original.events_to_end().await;
    assert_eq!(
        original.end(),
        Some(&End::Clean),
        "older response did not end cleanly: {original:?}"
    );
    assert!(
        seq_data(&rest).iter().all(|(seq, _)| *seq == 2),
        "{rest:#?}"
    );

    let mut c = resume(V2025_06_18, "s1", first.id())
        .send(served.addr)
        .await;
    assert_eq!(c.status, StatusCode::OK);
    assert_eq!(seq_data(&[c.expect_event().await]), expected(2..=2));
    let b_rest = b.events_to_end().await;
    assert_eq!(
        b.end(),
        Some(&End::Clean),
        "older resume did not end cleanly: {b:?}"
    );
    assert!(
        b_rest.is_empty() || seq_data(&b_rest) == expected(3..=3),
        "{b_rest:#?}"
    );

    write_range(&inner, 3, 5).await;
    inner.close();
    let c_rest = c.events_to_end().await;
    assert_eq!(seq_data(&c_rest), expected(3..=5));
    assert_eq!(c.end(), Some(&End::Clean));
}

/// Standalone GET stream whose producer is gone: the resume replays it,
/// then the layer opens a fresh standalone GET to the inner service (same
/// headers, no `Last-Event-ID`) and continues with its new stream id.
#[tokio::test]
async fn standalone_get_resume_replays_then_continues_with_a_fresh_stream() {
    let layer = ResumabilityLayer::new(memory_store());
    let store = layer.store().clone();
    let (script, served) = serve_scripted(&layer).await;

    let mut get = Req::get("/mcp")
        .version(V2025_06_18)
        .session("s1")
        .header("authorization", "Bearer t")
        .send(served.addr)
        .await;
    assert_eq!(get.status, StatusCode::OK);
    let first_inner = script.next_stream().await;
    assert_eq!(first_inner.seen.method, Method::GET);
    write_range(&first_inner, 1, 3).await;
    let first = get.expect_event().await;
    drop(get);
    first_inner.close();
    let old_stream = stream_of(first.id());
    wait_state(&store, old_stream, StreamState::Complete).await;

    let mut resumed = resume(V2025_06_18, "s1", first.id())
        .header("authorization", "Bearer t")
        .send(served.addr)
        .await;
    assert_eq!(resumed.status, StatusCode::OK);
    let replayed = [resumed.expect_event().await, resumed.expect_event().await];
    assert_eq!(seq_data(&replayed), expected(2..=3));
    assert!(replayed.iter().all(|ev| ev.stream() == first.stream()));

    let fresh = script.next_stream().await;
    assert_eq!(fresh.seen.method, Method::GET);
    assert_eq!(
        fresh.seen.header("last-event-id"),
        None,
        "Last-Event-ID forwarded"
    );
    assert_eq!(fresh.seen.header("mcp-session-id"), Some("s1"));
    assert_eq!(fresh.seen.header("mcp-protocol-version"), Some(V2025_06_18));
    assert_eq!(fresh.seen.header("authorization"), Some("Bearer t"));
    assert!(fresh.event("fresh one").await);
    let ev = resumed.expect_event().await;
    assert_ne!(
        ev.stream(),
        first.stream(),
        "the fresh stream has a new stream id"
    );
    assert_eq!((ev.seq(), ev.data()), (1, "fresh one"));
    let info = store
        .stream_info(stream_of(ev.id()))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(info.session.as_deref(), Some("s1"));
    assert!(fresh.event("fresh two").await);
    let ev2 = resumed.expect_event().await;
    assert_eq!(
        (ev2.stream(), ev2.seq(), ev2.data()),
        (ev.stream(), 2, "fresh two")
    );
    drop(resumed);

    // The fresh stream is resumable like any other.
    let mut again = resume(V2025_06_18, "s1", ev.id())
        .header("authorization", "Bearer t")
        .send(served.addr)
        .await;
    assert_eq!(again.status, StatusCode::OK);
    let ev = again.expect_event().await;
    assert_eq!((ev.seq(), ev.data()), (2, "fresh two"));
}

/// Poll mode: 2025-11-25 responses end after `poll_after` (after their
/// priming event); the client reconnects with `Last-Event-ID` and, over
/// several responses, receives every event exactly once (rule 14).
#[tokio::test]
async fn poll_mode_client_reconnects_and_receives_everything() {
    const TOTAL: u64 = 20;
    let layer = ResumabilityLayer::new(memory_store())
        .poll_after(Duration::from_millis(300))
        .retry(Duration::from_millis(50));
    let (script, served) = serve_scripted(&layer).await;

    let mut resp = Req::post("/mcp", CALL)
        .version(V2025_11_25)
        .session("s1")
        .send(served.addr)
        .await;
    let producer = script
        .next_stream()
        .await
        .produce(TOTAL, Some(Duration::from_millis(50)));
    let mut got: Vec<Ev> = Vec::new();
    let mut responses = 0;
    let mut last_id = String::new();
    loop {
        responses += 1;
        assert!(responses < 100, "too many responses");
        assert_eq!(resp.status, StatusCode::OK);
        let events = resp.events_to_end().await;
        assert_eq!(
            resp.end(),
            Some(&End::Clean),
            "poll end must be clean: {resp:?}"
        );
        if responses == 1 {
            let priming = &events[0];
            assert_eq!((priming.seq(), priming.retry), (0, Some(50)), "{events:#?}");
            assert!(priming.is_empty_data());
        } else {
            // Every resumed response is primed at its resume point, with the
            // retry hint, even one the poll deadline closes before any event.
            let priming = &events[0];
            assert!(priming.is_empty_data(), "{events:#?}");
            assert_eq!(priming.retry, Some(50), "{events:#?}");
            assert!(
                events[1..].iter().all(|ev| !ev.is_empty_data()),
                "{events:#?}"
            );
        }
        if let Some(last) = events.last() {
            last_id = last.id().to_string();
        }
        got.extend(events.into_iter().filter(|ev| !ev.is_empty_data()));
        if got.last().map(Ev::seq) == Some(TOTAL) {
            break;
        }
        resp = resume(V2025_11_25, "s1", &last_id).send(served.addr).await;
    }
    assert_eq!(producer.await.unwrap(), TOTAL);
    assert_eq!(seq_data(&got), expected(1..=TOTAL));
    // The producer took about a second, each response at most a fraction:
    // there was at least one reconnect.
    assert!(responses >= 2, "poll mode never ended a response");
}

/// Poll mode applies to 2025-11-25 requests only: a 2025-06-18 stream is
/// served in one response however long it runs.
#[tokio::test]
async fn poll_mode_leaves_older_versions_alone() {
    let layer = ResumabilityLayer::new(memory_store()).poll_after(Duration::from_millis(100));
    let (script, served) = serve_scripted(&layer).await;

    let mut resp = Req::post("/mcp", CALL)
        .version(V2025_06_18)
        .send(served.addr)
        .await;
    let producer = script
        .next_stream()
        .await
        .produce(6, Some(Duration::from_millis(50)));
    let events = resp.events_to_end().await;
    assert_eq!(seq_data(&events), expected(1..=6));
    assert_eq!(resp.end(), Some(&End::Clean));
    assert_eq!(producer.await.unwrap(), 6);
}

/// The one-line SQLite constructor: detach, store, resume.
#[tokio::test]
async fn sqlite_layer_detach_and_resume() {
    let dir = tempfile::tempdir().unwrap();
    let layer = ResumabilityLayer::sqlite(dir.path().join("events.db")).unwrap();
    let store = layer.store().clone();
    let (script, served) = serve_scripted(&layer).await;
    let (mut resp, inner) = post_call(&script, &served, CALL, V2025_11_25).await;
    write_range(&inner, 1, 3).await;
    let mut seen = Vec::new();
    while seen.len() < 3 {
        let ev = resp.expect_event().await;
        if !ev.is_empty_data() {
            seen.push(ev);
        }
    }
    drop(resp);
    write_range(&inner, 4, 50).await;
    inner.close();
    let stream = stream_of(seen[0].id());
    wait_state(&store, stream, StreamState::Complete).await;

    let mut resumed = resume(V2025_11_25, "s1", seen[2].id())
        .send(served.addr)
        .await;
    assert_eq!(seq_data(&resumed.events_to_end().await), expected(4..=50));
    store.close().await.unwrap();
}

/// `sqlite_with` and a reopened file: streams written before a restart
/// resume from a new layer on the same file.
#[tokio::test]
async fn sqlite_streams_resume_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("events.db");
    let id = {
        let layer = ResumabilityLayer::sqlite_with(SqliteOptions::new(&path)).unwrap();
        let store = layer.store().clone();
        let script = Script::streams();
        let served = serve(layer.layer(script.clone())).await;
        let mut resp = Req::post("/mcp", CALL)
            .version(V2025_06_18)
            .session("s1")
            .send(served.addr)
            .await;
        script.next_stream().await.produce(10, None).await.unwrap();
        let events = resp.events_to_end().await;
        wait_state(&store, stream_of(events[0].id()), StreamState::Complete).await;
        store.close().await.unwrap();
        events[4].id().to_string()
    };
    let store: Arc<dyn EventStore> = Arc::new(SqliteEventStore::open(&path).unwrap());
    let layer = ResumabilityLayer::new(store);
    let (script, served) = serve_scripted(&layer).await;
    let mut resumed = resume(V2025_06_18, "s1", &id).send(served.addr).await;
    assert_eq!(resumed.status, StatusCode::OK);
    assert_eq!(seq_data(&resumed.events_to_end().await), expected(6..=10));
    assert_eq!(script.request_count(), 0);
}
