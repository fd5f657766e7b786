//! What the layer leaves alone (docs/contract.md, rules 1 and 2): later protocol
//! versions byte for byte (ids, `Last-Event-ID` and cancellation included),
//! JSON, 202, errors, compressed streams, other methods.

use std::time::Duration;

use crate::common::server::{Reply, Script};
use crate::common::sse::{End, Req};
use crate::common::{
    CALL, V2025_06_18, V2025_11_25, V2026_07_28, guard, memory_store, serve, serve_scripted,
};
use http::{Method, StatusCode};
use mcp_resume::ResumabilityLayer;
use mcp_resume::store::StreamId;
use tower::Layer;

const JSON: &str = r#"{"jsonrpc":"2.0","id":1,"result":{"ok":true}}"#;

const INNER_SSE: [&str; 4] = [
    "id: 5/1\nretry: 3000\ndata:\n\n",
    ": ping\n\nid: 5/2\nevent: message\ndata: {\"jsonrpc\":\"2.0\",",
    "\"id\":1,\"result\":{}}\r\n\r\n",
    "data: no id\n\n",
];

/// 2026-07-28 (and any unknown version): the SSE response is passed on byte
/// for byte; nothing is stored (rule 1).
#[tokio::test]
async fn later_versions_pass_through_byte_for_byte() {
    let layer = ResumabilityLayer::new(memory_store());
    let store = layer.store().clone();
    let (script, served) = serve_scripted(&layer).await;

    for version in [V2026_07_28, "2027-01-01", "not-a-version"] {
        let mut resp = Req::post("/mcp", CALL)
            .version(version)
            .session("s1")
            .send(served.addr)
            .await;
        assert_eq!(resp.status, StatusCode::OK);
        let inner = script.next_stream().await;
        assert_eq!(inner.seen.header("mcp-protocol-version"), Some(version));
        for chunk in INNER_SSE {
            assert!(inner.raw(chunk).await);
        }
        inner.close();
        let body = resp.body_to_end().await;
        assert_eq!(resp.end(), Some(&End::Clean));
        assert_eq!(
            String::from_utf8(body).unwrap(),
            INNER_SSE.concat(),
            "version {version}"
        );
    }
    assert!(
        store.session_streams("s1").await.unwrap().is_empty(),
        "nothing stored"
    );
    assert_eq!(layer.stats().streams_started, 0);
}

/// 2026-07-28: a GET with `Last-Event-ID` goes to the inner service with
/// the header untouched, whatever its value, and the answer is passed on.
#[tokio::test]
async fn later_versions_forward_last_event_id_to_the_inner_service() {
    let layer = ResumabilityLayer::new(memory_store());
    let (script, served) = serve_scripted(&layer).await;

    let layer_like = format!("{}.3", StreamId::random());
    for last_event_id in ["5/2", layer_like.as_str(), "garbage"] {
        let mut resp = Req::get("/mcp")
            .version(V2026_07_28)
            .session("s1")
            .last_event_id(last_event_id)
            .send(served.addr)
            .await;
        let inner = script.next_stream().await;
        assert_eq!(inner.seen.method, Method::GET);
        assert_eq!(inner.seen.header("last-event-id"), Some(last_event_id));
        assert!(inner.raw("id: 5/3\ndata: x\n\n").await);
        inner.close();
        assert_eq!(resp.body_to_end().await, b"id: 5/3\ndata: x\n\n");
    }
}

/// 2026-07-28: closing the response is cancellation; the layer does not
/// detach, so the inner body is dropped when the client goes away.
#[tokio::test]
async fn later_versions_are_not_detached() {
    let layer = ResumabilityLayer::new(memory_store());
    let (script, served) = serve_scripted(&layer).await;

    let mut resp = Req::post("/mcp", CALL)
        .version(V2026_07_28)
        .send(served.addr)
        .await;
    let inner = script.next_stream().await;
    assert!(inner.event("one").await);
    assert_eq!(resp.expect_event().await.data(), "one");
    drop(resp);
    guard(
        "the inner body to be dropped after the client left",
        async {
            while inner.event("tick").await {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        },
    )
    .await;
}

/// JSON, 202, 4xx/5xx (even with an SSE content type), compressed SSE, and
/// SSE answers to other methods are passed on untouched (rule 2).
#[tokio::test]
async fn non_rewritable_responses_are_untouched() {
    let layer = ResumabilityLayer::new(memory_store());
    let script = Script::new(|seen| match seen.header("x-case").unwrap() {
        "json" => Reply::json(JSON)
            .with_header("content-length", &JSON.len().to_string())
            .with_session("s-json"),
        "accepted" => Reply::status(StatusCode::ACCEPTED),
        "sse-500" => Reply::full(StatusCode::INTERNAL_SERVER_ERROR, "id: x\ndata: broken\n\n")
            .with_header("content-type", "text/event-stream"),
        "sse-404" => Reply::full(StatusCode::NOT_FOUND, "id: x\ndata: gone\n\n")
            .with_header("content-type", "text/event-stream"),
        "json-400" => Reply::full(StatusCode::BAD_REQUEST, r#"{"error":"bad"}"#)
            .with_header("content-type", "application/json"),
        "sse-gzip" => Reply::full(StatusCode::OK, &b"\x1f\x8b\x08\x00fake-gzip"[..])
            .with_header("content-type", "text/event-stream")
            .with_header("content-encoding", "gzip"),
        "sse-201" => Reply::full(StatusCode::CREATED, "id: x\ndata: created\n\n")
            .with_header("content-type", "text/event-stream"),
        "plain" => Reply::full(StatusCode::OK, "id: x\ndata: plain\n\n")
            .with_header("content-type", "text/plain"),
        "sse-put" => Reply::full(StatusCode::OK, "id: x\ndata: put\n\n")
            .with_header("content-type", "text/event-stream"),
        other => panic!("unknown case {other}"),
    });
    let served = serve(layer.layer(script.clone())).await;

    let cases: [(&str, Method, StatusCode, &[u8]); 9] = [
        ("json", Method::POST, StatusCode::OK, JSON.as_bytes()),
        ("accepted", Method::POST, StatusCode::ACCEPTED, b""),
        (
            "sse-500",
            Method::POST,
            StatusCode::INTERNAL_SERVER_ERROR,
            b"id: x\ndata: broken\n\n",
        ),
        (
            "sse-404",
            Method::GET,
            StatusCode::NOT_FOUND,
            b"id: x\ndata: gone\n\n",
        ),
        (
            "json-400",
            Method::POST,
            StatusCode::BAD_REQUEST,
            br#"{"error":"bad"}"#,
        ),
        (
            "sse-gzip",
            Method::POST,
            StatusCode::OK,
            b"\x1f\x8b\x08\x00fake-gzip",
        ),
        (
            "sse-201",
            Method::POST,
            StatusCode::CREATED,
            b"id: x\ndata: created\n\n",
        ),
        (
            "plain",
            Method::GET,
            StatusCode::OK,
            b"id: x\ndata: plain\n\n",
        ),
        (
            "sse-put",
            Method::PUT,
            StatusCode::OK,
            b"id: x\ndata: put\n\n",
        ),
    ];
    for version in [V2025_06_18, V2025_11_25] {
        for (case, method, status, body) in cases.iter().cloned() {
            let mut req = if method == Method::POST {
                Req::post("/mcp", CALL)
            } else {
                Req::new(method, "/mcp")
            };
            req = req.version(version).header("x-case", case);
            let mut resp = req.send(served.addr).await;
            assert_eq!(resp.status, status, "{case}");
            assert_eq!(resp.body_to_end().await, body, "{case} {version}: {resp:?}");
            assert_eq!(resp.end(), Some(&End::Clean), "{case}");
            if case == "json" {
                assert_eq!(
                    resp.header("content-length"),
                    Some(&*JSON.len().to_string())
                );
                assert_eq!(resp.header("content-type"), Some("application/json"));
                assert_eq!(resp.header("mcp-session-id"), Some("s-json"));
            }
            if case == "sse-gzip" {
                assert_eq!(resp.header("content-encoding"), Some("gzip"));
            }
        }
    }
    assert_eq!(layer.stats().streams_started, 0);
}
