//! Rewriting of SSE responses through real HTTP (docs/contract.md, rules 3-8):
//! ids, data byte for byte, event types, `Content-Length`, priming events,
//! `retry`, keep-alive comments, commit before send.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use crate::common::server::{Reply, Script, message};
use crate::common::sse::{End, Ev, Item, Req};
use crate::common::store::FailingStore;
use crate::common::{
    V2025_03_26, V2025_06_18, V2025_11_25, memory_store, post_call, serve, serve_scripted,
    stream_of, wait_state,
};
use http::StatusCode;
use mcp_resume::ResumabilityLayer;
use mcp_resume::store::{EventStore, StreamState};
use tower::Layer;

const CALL: &str = r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"slow"}}"#;

/// Inner ids and `retry` are replaced; `event` kept; data byte for byte,
/// including multi-line data, leading spaces, a trailing empty line, CRLF
/// input and non-ASCII text (rule 4).
#[tokio::test]
async fn ids_are_rewritten_and_data_kept_byte_for_byte() {
    let layer = ResumabilityLayer::new(memory_store()).retry(Duration::from_millis(2500));
    let (script, served) = serve_scripted(&layer).await;

    let mut resp = Req::post("/mcp", CALL)
        .version(V2025_06_18)
        .session("s1")
        .send(served.addr)
        .await;
    assert_eq!(resp.status, StatusCode::OK);
    assert!(
        resp.header("content-type")
            .unwrap()
            .starts_with("text/event-stream")
    );

    let inner = script.next_stream().await;
    assert!(
        inner
            .raw("id: 7/1\nevent: message\ndata: {\"a\":1}\n\n")
            .await
    );
    // CRLF line ends, a data value with a leading space kept, a trailing empty data line.
    assert!(
        inner
            .raw("id: 7/2\r\ndata: line one\r\ndata:  two\r\ndata:\r\n\r\n")
            .await
    );
    // Split across chunks in the middle of a field name and of the data.
    assert!(inner.raw("event: cust").await);
    assert!(inner.raw("om-type\nda").await);
    assert!(inner.raw("ta: x\n\n").await);
    // Inner retry is dropped.
    assert!(inner.raw("retry: 5000\nid: 7/4\ndata: y\n\n").await);
    assert!(inner.raw("data: ünïcödé ☃ \"q\" \\ tab\there\n\n").await);
    inner.close();

    let events = resp.events_to_end().await;
    assert_eq!(resp.end(), Some(&End::Clean), "{resp:?}");
    assert_eq!(events.len(), 5, "{events:#?}");
    let stream = events[0].stream();
    for (i, ev) in events.iter().enumerate() {
        assert_eq!(ev.stream(), stream, "one stream id per response");
        assert_eq!(ev.seq(), i as u64 + 1, "sequence 1, 2, 3, ...");
    }
    assert_eq!(
        events[0].retry,
        Some(2500),
        "first event carries retry (no priming before 2025-11-25)"
    );
    assert!(
        events[1..].iter().all(|ev| ev.retry.is_none()),
        "inner retry dropped: {events:#?}"
    );
    let types: Vec<_> = events.iter().map(|ev| ev.event.as_deref()).collect();
    assert_eq!(
        types,
        [Some("message"), None, Some("custom-type"), None, None]
    );
    let data: Vec<_> = events.iter().map(Ev::data).collect();
    assert_eq!(
        data,
        [
            "{\"a\":1}",
            "line one\n two\n",
            "x",
            "y",
            "ünïcödé ☃ \"q\" \\ tab\there"
        ]
    );
    // No inner id leaks anywhere on the wire.
    let raw = String::from_utf8(resp.raw().to_vec()).unwrap();
    assert!(!raw.contains("7/"), "inner id leaked: {raw}");
    assert!(!raw.contains("5000"), "inner retry leaked: {raw}");
}

/// `Content-Length` of the inner SSE response is removed; other headers
/// (`Mcp-Session-Id`, custom ones) are kept (rule 3).
#[tokio::test]
async fn content_length_is_dropped_other_headers_kept() {
    let layer = ResumabilityLayer::new(memory_store());
    let body = "id: 1\ndata: first\n\nid: 2\ndata: second\n\n";
    let script = Script::new(move |_| {
        Reply::sse_body(body)
            .with_session("sess-42")
            .with_header("x-custom", "kept")
    });
    let served = serve(layer.layer(script.clone())).await;

    let mut resp = Req::post("/mcp", CALL)
        .version(V2025_06_18)
        .send(served.addr)
        .await;
    assert_eq!(resp.status, StatusCode::OK);
    assert_eq!(resp.header("content-length"), None, "{resp:?}");
    assert_eq!(resp.header("mcp-session-id"), Some("sess-42"));
    assert_eq!(resp.header("x-custom"), Some("kept"));
    let events = resp.events_to_end().await;
    assert_eq!(resp.end(), Some(&End::Clean));
    let got: Vec<_> = events.iter().map(|ev| (ev.seq(), ev.data())).collect();
    assert_eq!(got, [(1, "first"), (2, "second")]);
}

/// 2025-11-25: exactly one priming event (`<stream>.0`, `retry`, empty
/// data) first; the inner priming event and other data-less events are
/// absorbed, not stored (rules 5 and 6).
#[tokio::test]
async fn one_priming_event_for_2025_11_25_and_inner_priming_absorbed() {
    let layer = ResumabilityLayer::new(memory_store()).retry(Duration::from_millis(1500));
    let store = layer.store().clone();
    let (script, served) = serve_scripted(&layer).await;

    let mut resp = Req::post("/mcp", CALL)
        .version(V2025_11_25)
        .session("s1")
        .send(served.addr)
        .await;
    assert_eq!(resp.status, StatusCode::OK);
    let inner = script.next_stream().await;
    assert!(inner.priming().await); // rmcp style: id 0/0, retry 3000, empty data
    assert!(inner.event_with_id("1/1", "a").await);
    assert!(inner.raw("id: 2/1\ndata:\n\n").await); // empty data
    assert!(inner.raw("event: nothing\n\n").await); // no data at all
    assert!(inner.raw("retry: 10\n\n").await); // retry only
    assert!(inner.event_with_id("3/1", "b").await);
    inner.close();

    let events = resp.events_to_end().await;
    assert_eq!(resp.end(), Some(&End::Clean));
    assert_eq!(events.len(), 3, "{events:#?}");
    let priming = &events[0];
    assert_eq!(priming.seq(), 0, "priming id is <stream>.0");
    assert_eq!(priming.retry, Some(1500));
    assert_eq!(priming.data.as_deref(), Some(""), "priming has empty data");
    assert_eq!(
        events.iter().filter(|ev| ev.is_empty_data()).count(),
        1,
        "{events:#?}"
    );
    let stream = priming.stream();
    let rest: Vec<_> = events[1..]
        .iter()
        .map(|ev| (ev.stream() == stream, ev.seq(), ev.data(), ev.retry))
        .collect();
    assert_eq!(rest, [(true, 1, "a", None), (true, 2, "b", None)]);

    // Only the two real events were stored.
    let id = stream_of(priming.id());
    wait_state(&store, id, StreamState::Complete).await;
    let info = store.stream_info(id).await.unwrap().unwrap();
    assert_eq!(info.last_seq, 2);
    assert_eq!(info.event_count, 2);
}

/// The priming event is sent as soon as the response starts, before the
/// inner service writes anything (SEP-1699: "immediately").
#[tokio::test]
async fn priming_event_comes_before_any_inner_event() {
    let layer = ResumabilityLayer::new(memory_store());
    let (script, served) = serve_scripted(&layer).await;

    let mut resp = Req::post("/mcp", CALL)
        .version(V2025_11_25)
        .send(served.addr)
        .await;
    let inner = script.next_stream().await;
    let priming = resp.expect_event().await;
    assert_eq!(priming.seq(), 0);
    assert_eq!(priming.retry, Some(1000), "default retry is 1 s");
    assert!(!inner.is_dropped());
    assert!(inner.event("after").await);
    let ev = resp.expect_event().await;
    assert_eq!((ev.seq(), ev.data()), (1, "after"));
}

/// Versions before 2025-11-25 (and no version header): no priming event;
/// the first event sent carries `retry` (rule 6).
#[tokio::test]
async fn no_priming_before_2025_11_25_first_event_has_retry() {
    let layer = ResumabilityLayer::new(memory_store()).retry(Duration::from_millis(700));
    let (script, served) = serve_scripted(&layer).await;

    for version in [Some(V2025_06_18), Some(V2025_03_26), None] {
        let mut req = Req::post("/mcp", CALL);
        if let Some(version) = version {
            req = req.version(version);
        }
        let mut resp = req.send(served.addr).await;
        let inner = script.next_stream().await;
        assert!(inner.priming().await);
        assert!(inner.event_with_id("0/1", "one").await);
        assert!(inner.event("two").await);
        inner.close();
        let events = resp.events_to_end().await;
        let got: Vec<_> = events
            .iter()
            .map(|ev| (ev.seq(), ev.data(), ev.retry))
            .collect();
        assert_eq!(
            got,
            [(1, "one", Some(700)), (2, "two", None)],
            "version {version:?}"
        );
    }
}

/// Keep-alive comments sent while the client is caught up (the usual case:
/// an idle stream) reach the connected client, and are neither stored nor
/// replayed (rule 7).
#[tokio::test]
async fn keepalive_comments_pass_through_and_are_not_replayed() {
    let layer = ResumabilityLayer::new(memory_store());
    let store = layer.store().clone();
    let (script, served) = serve_scripted(&layer).await;
    let (mut resp, inner) = post_call(&script, &served, CALL, V2025_06_18).await;
    assert!(inner.event("a").await);
    let a = resp.next_item().await.unwrap();
    assert_eq!(a.event().unwrap().data(), "a");
    assert!(inner.comment("ping").await);
    assert_eq!(resp.next_item().await, Some(Item::Comment(": ping".into())));
    assert!(inner.event("b").await);
    assert_eq!(resp.next_item().await.unwrap().event().unwrap().data(), "b");
    assert!(inner.raw(":keep-alive\n\n").await);
    assert_eq!(
        resp.next_item().await,
        Some(Item::Comment(":keep-alive".into()))
    );
    inner.close();
    assert_eq!(resp.items_to_end().await, []);
    assert_eq!(resp.end(), Some(&End::Clean));

    let first = a.event().unwrap().id().to_string();
    wait_state(&store, stream_of(&first), StreamState::Complete).await;
    assert_eq!(
        store
            .stream_info(stream_of(&first))
            .await
            .unwrap()
            .unwrap()
            .last_seq,
        2
    );

    let mut resumed = Req::get("/mcp")
        .version(V2025_06_18)
        .session("s1")
        .last_event_id(&first)
        .send(served.addr)
        .await;
    assert_eq!(resumed.status, StatusCode::OK);
    let items = resumed.items_to_end().await;
    assert_eq!(items.len(), 1, "comments replayed: {items:#?}");
    assert_eq!(items[0].event().unwrap().data(), "b");
    assert_eq!(items[0].event().unwrap().seq(), 2);
}

/// Comment blocks written back to back with events (and the end of the
/// stream) still all reach the connected client, in order (rule 7:
/// "passed to connected clients").
#[tokio::test]
async fn keepalive_comments_in_a_burst_all_reach_the_client() {
    let layer = ResumabilityLayer::new(memory_store());
    let (script, served) = serve_scripted(&layer).await;
    let (mut resp, inner) = post_call(&script, &served, CALL, V2025_06_18).await;
    assert!(
        inner
            .raw("data: a\n\n: ping\n\ndata: b\n\n:keep-alive\n\n")
            .await
    );
    inner.close();
    let items = resp.items_to_end().await;
    let summary: Vec<String> = items
        .iter()
        .map(|item| match item {
            Item::Event(ev) => format!("event {}", ev.data()),
            Item::Comment(c) => format!("comment {c}"),
        })
        .collect();
    assert_eq!(
        summary,
        [
            "event a",
            "comment : ping",
            "event b",
            "comment :keep-alive"
        ],
        "raw body: {:?}",
        String::from_utf8_lossy(resp.raw())
    );
}

/// An event is committed to the store before any byte of it reaches the
/// client (rule 8): with a slow store, every event the client holds is
/// already readable from the store.
#[tokio::test]
async fn events_are_committed_before_they_are_sent() {
    let failing = FailingStore::new();
    failing.delay_appends(Duration::from_millis(30));
    let store: Arc<dyn EventStore> = failing.clone();
    let layer = ResumabilityLayer::new(store.clone());
    let (script, served) = serve_scripted(&layer).await;

    let mut resp = Req::post("/mcp", CALL)
        .version(V2025_11_25)
        .send(served.addr)
        .await;
    let inner = script.next_stream().await;
    let producer = inner.produce(12, None);
    let mut seen = HashSet::new();
    while let Some(ev) = resp.next_event().await {
        if ev.seq() == 0 {
            continue;
        }
        let info = store
            .stream_info(stream_of(ev.id()))
            .await
            .unwrap()
            .unwrap();
        assert!(
            info.last_seq >= ev.seq(),
            "client got {} before the store committed it (store head {})",
            ev.id(),
            info.last_seq
        );
        assert_eq!(ev.data(), message(ev.seq()));
        seen.insert(ev.seq());
    }
    assert_eq!(producer.await.unwrap(), 12);
    assert_eq!(seen.len(), 12);
}

/// `text/event-stream` with parameters and in any case, and
/// `Content-Encoding: identity`, are still rewritten (rule 2).
#[tokio::test]
async fn content_type_params_and_identity_encoding_are_rewritten() {
    let layer = ResumabilityLayer::new(memory_store());
    let script = Script::new(|seen| match seen.header("x-variant") {
        Some("params") => Reply::full(StatusCode::OK, "id: 9\ndata: p\n\n")
            .with_header("content-type", "Text/Event-Stream; charset=utf-8"),
        _ => Reply::full(StatusCode::OK, "id: 9\ndata: i\n\n")
            .with_header("content-type", "text/event-stream")
            .with_header("content-encoding", "identity"),
    });
    let served = serve(layer.layer(script.clone())).await;
    for (variant, data) in [("params", "p"), ("identity", "i")] {
        let mut resp = Req::post("/mcp", CALL)
            .version(V2025_06_18)
            .header("x-variant", variant)
            .send(served.addr)
            .await;
        let events = resp.events_to_end().await;
        assert_eq!(events.len(), 1, "{variant}: {resp:?}");
        assert_eq!((events[0].seq(), events[0].data()), (1, data), "{variant}");
    }
}
