//! Session and identity binding, and the one `400` for every resume that
//! cannot be served (docs/contract.md, rules 9 and 11): foreign sessions, foreign
//! identities, malformed, unknown, ahead and trimmed ids.

use std::collections::BTreeSet;
use std::net::SocketAddr;

use crate::common::server::{Script, message};
use crate::common::sse::{Ev, Req, Resp};
use crate::common::{
    CALL, CANNOT_RESUME_BODY, V2025_06_18, V2025_11_25, memory_store, serve, serve_scripted,
    stream_of, wait_state,
};
use http::StatusCode;
use mcp_resume::ResumabilityLayer;
use mcp_resume::store::{EventStore, StreamId, StreamState};
use tower::Layer;

const INITIALIZE: &str = r#"{"jsonrpc":"2.0","id":0,"method":"initialize","params":{}}"#;

/// Asserts the response is the layer's one "cannot resume" answer and
/// returns its body.
async fn assert_cannot_resume(mut resp: Resp, what: &str) -> String {
    assert_eq!(resp.status, StatusCode::BAD_REQUEST, "{what}: {resp:?}");
    assert_eq!(
        resp.header("content-type"),
        Some("application/json"),
        "{what}"
    );
    let body = resp.text().await;
    assert_eq!(body, CANNOT_RESUME_BODY, "{what}");
    body
}

/// A resume GET.
fn resume(last_event_id: &str, session: Option<&str>) -> Req {
    let req = Req::get("/mcp")
        .version(V2025_06_18)
        .last_event_id(last_event_id);
    match session {
        Some(session) => req.session(session),
        None => req,
    }
}

/// Runs a stream of `n` events to completion; returns the events.
async fn complete_stream(
    script: &Script,
    addr: SocketAddr,
    store: &std::sync::Arc<dyn EventStore>,
    req: Req,
    n: u64,
) -> Vec<Ev> {
    let mut resp = req.send(addr).await;
    assert_eq!(resp.status, StatusCode::OK);
    let inner = script.next_stream().await;
    inner.produce(n, None).await.unwrap();
    let events: Vec<Ev> = resp
        .events_to_end()
        .await
        .into_iter()
        .filter(|ev| !ev.is_empty_data())
        .collect();
    assert_eq!(events.len() as u64, n);
    wait_state(store, stream_of(events[0].id()), StreamState::Complete).await;
    events
}

/// Initialize: the request has no session; the stream is bound to the
/// session the response mints (rule 9).
#[tokio::test]
async fn initialize_stream_is_bound_to_the_session_from_the_response() {
    let layer = ResumabilityLayer::new(memory_store());
    let store = layer.store().clone();
    let script = Script::mcp("minted-session");
    let served = serve(layer.layer(script.clone())).await;

    // No version header: initialize.
    let mut resp = Req::post("/mcp", INITIALIZE).send(served.addr).await;
    assert_eq!(resp.header("mcp-session-id"), Some("minted-session"));
    let inner = script.next_stream().await;
    assert!(inner.event("result").await);
    assert!(inner.event("more").await);
    let first = resp.expect_event().await;
    assert_eq!(first.seq(), 1);
    inner.close();
    resp.events_to_end().await;

    let stream = stream_of(first.id());
    wait_state(&store, stream, StreamState::Complete).await;
    let info = store.stream_info(stream).await.unwrap().unwrap();
    assert_eq!(info.session.as_deref(), Some("minted-session"));

    let mut ok = resume(first.id(), Some("minted-session"))
        .send(served.addr)
        .await;
    assert_eq!(ok.status, StatusCode::OK);
    let replayed = ok.events_to_end().await;
    assert_eq!(replayed.len(), 1);
    assert_eq!(replayed[0].data(), "more");

    assert_cannot_resume(
        resume(first.id(), None).send(served.addr).await,
        "no session",
    )
    .await;
    assert_cannot_resume(
        resume(first.id(), Some("other-session"))
            .send(served.addr)
            .await,
        "foreign session",
    )
    .await;
}

/// A request's `Mcp-Session-Id` binds the stream; another session's resume
/// is refused; a stream with no session is resumed only without one.
#[tokio::test]
async fn foreign_session_resume_is_refused() {
    let layer = ResumabilityLayer::new(memory_store());
    let store = layer.store().clone();
    let (script, served) = serve_scripted(&layer).await;

    let events = complete_stream(
        &script,
        served.addr,
        &store,
        Req::post("/mcp", CALL)
            .version(V2025_06_18)
            .session("alice-session"),
        3,
    )
    .await;
    let id = events[0].id();
    let info = store.stream_info(stream_of(id)).await.unwrap().unwrap();
    assert_eq!(info.session.as_deref(), Some("alice-session"));
    assert_eq!(
        resume(id, Some("alice-session"))
            .send(served.addr)
            .await
            .status,
        StatusCode::OK
    );
    assert_cannot_resume(
        resume(id, Some("mallory-session")).send(served.addr).await,
        "foreign",
    )
    .await;
    assert_cannot_resume(
        resume(id, Some("ALICE-SESSION")).send(served.addr).await,
        "case",
    )
    .await;
    assert_cannot_resume(resume(id, None).send(served.addr).await, "missing").await;

    // No session on either side: matches. A session on the resume: does not.
    let events = complete_stream(
        &script,
        served.addr,
        &store,
        Req::post("/mcp", CALL).version(V2025_06_18),
        2,
    )
    .await;
    let id = events[0].id();
    let mut ok = resume(id, None).send(served.addr).await;
    assert_eq!(ok.status, StatusCode::OK);
    assert_eq!(ok.events_to_end().await.len(), 1);
    assert_cannot_resume(
        resume(id, Some("any")).send(served.addr).await,
        "session added",
    )
    .await;
}

/// Identity binding through the identity closure: only the same identity
/// (and session) may resume (rule 9).
#[tokio::test]
async fn foreign_identity_resume_is_refused() {
    let layer = ResumabilityLayer::new(memory_store()).identity(|parts| {
        parts
            .headers
            .get("x-user")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    });
    let store = layer.store().clone();
    let (script, served) = serve_scripted(&layer).await;

    let events = complete_stream(
        &script,
        served.addr,
        &store,
        Req::post("/mcp", CALL)
            .version(V2025_06_18)
            .session("shared")
            .header("x-user", "alice"),
        3,
    )
    .await;
    let id = events[0].id();
    let info = store.stream_info(stream_of(id)).await.unwrap().unwrap();
    assert_eq!(info.identity.as_deref(), Some("alice"));

    let mut ok = resume(id, Some("shared"))
        .header("x-user", "alice")
        .send(served.addr)
        .await;
    assert_eq!(ok.status, StatusCode::OK);
    assert_eq!(ok.events_to_end().await.len(), 2);
    assert_cannot_resume(
        resume(id, Some("shared"))
            .header("x-user", "bob")
            .send(served.addr)
            .await,
        "other identity",
    )
    .await;
    assert_cannot_resume(
        resume(id, Some("shared")).send(served.addr).await,
        "no identity",
    )
    .await;
    assert_cannot_resume(
        resume(id, Some("other"))
            .header("x-user", "alice")
            .send(served.addr)
            .await,
        "right identity, other session",
    )
    .await;
}

/// Two bearer tokens on one session id: with `identity_header`, the stream
/// is bound to the hash of the caller's `Authorization` (never the token),
/// and a resume under the other token, or none, is refused like an unknown
/// id.
#[tokio::test]
async fn two_bearer_tokens_on_one_session_are_two_identities() {
    let layer = ResumabilityLayer::new(memory_store()).identity_header(http::header::AUTHORIZATION);
    let store = layer.store().clone();
    let (script, served) = serve_scripted(&layer).await;
    let events = complete_stream(
        &script,
        served.addr,
        &store,
        Req::post("/mcp", CALL)
            .version(V2025_06_18)
            .session("shared")
            .header("authorization", "Bearer token-alice"),
        3,
    )
    .await;
    let id = events[0].id();
    let info = store.stream_info(stream_of(id)).await.unwrap().unwrap();
    let identity = info.identity.expect("bound to the token's hash");
    assert!(identity.starts_with("authorization:sha256:"), "{identity}");
    assert!(!identity.contains("token-alice"), "the secret is stored");

    assert_cannot_resume(
        resume(id, Some("shared"))
            .header("authorization", "Bearer token-bob")
            .send(served.addr)
            .await,
        "another token on the same session",
    )
    .await;
    assert_cannot_resume(
        resume(id, Some("shared")).send(served.addr).await,
        "no token",
    )
    .await;
    let mut ok = resume(id, Some("shared"))
        .header("authorization", "Bearer token-alice")
        .send(served.addr)
        .await;
    assert_eq!(ok.status, StatusCode::OK);
    assert_eq!(ok.events_to_end().await.len(), 2);
}

/// A token the service starts refusing between the call and the resume:
/// with `authorize_resumes_with_service`, the resume's request goes to the
/// service first and its 401 reaches the client instead of the replay;
/// without it, the layer (which answers resumes itself) would replay.
#[tokio::test]
async fn a_token_the_service_revoked_does_not_replay() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    let revoked = Arc::new(AtomicBool::new(false));
    let script = {
        let revoked = revoked.clone();
        Script::new(move |seen| {
            use crate::common::server::Reply;
            if revoked.load(Ordering::SeqCst) && seen.header("authorization").is_some() {
                return Reply::full(StatusCode::UNAUTHORIZED, "token revoked")
                    .with_header("www-authenticate", "Bearer error=\"invalid_token\"");
            }
            match seen.method {
                http::Method::GET => Reply::status(StatusCode::METHOD_NOT_ALLOWED),
                _ => Reply::stream(),
            }
        })
    };
    for check in [true, false] {
        revoked.store(false, Ordering::SeqCst);
        let layer = ResumabilityLayer::new(memory_store())
            .identity_header(http::header::AUTHORIZATION)
            .authorize_resumes_with_service(check);
        let store = layer.store().clone();
        let served = serve(layer.layer(script.clone())).await;
        let call = || {
            Req::post("/mcp", CALL)
                .version(V2025_06_18)
                .session("s1")
                .header("authorization", "Bearer token-alice")
        };
        let events = complete_stream(&script, served.addr, &store, call(), 3).await;
        let id = events[0].id();
        // Still accepted: the service's 405 to the resume's GET lets it go on.
        let mut ok = resume(id, Some("s1"))
            .header("authorization", "Bearer token-alice")
            .send(served.addr)
            .await;
        assert_eq!(ok.status, StatusCode::OK, "check={check}");
        assert_eq!(ok.events_to_end().await.len(), 2);

        revoked.store(true, Ordering::SeqCst);
        let mut refused = resume(id, Some("s1"))
            .header("authorization", "Bearer token-alice")
            .send(served.addr)
            .await;
        if check {
            assert_eq!(refused.status, StatusCode::UNAUTHORIZED);
            assert_eq!(
                refused.header("www-authenticate"),
                Some("Bearer error=\"invalid_token\"")
            );
            assert_eq!(refused.text().await, "token revoked");
            let gets = script
                .requests()
                .iter()
                .filter(|r| r.method == http::Method::GET)
                .count();
            assert!(gets >= 2, "each resume asked the service");
            assert!(
                script
                    .requests()
                    .iter()
                    .all(|r| r.header("last-event-id").is_none()),
                "the service saw a Last-Event-ID"
            );
        } else {
            assert_eq!(refused.status, StatusCode::OK, "the layer alone replays");
            assert_eq!(refused.events_to_end().await.len(), 2);
        }
    }
}

/// Malformed `Last-Event-ID` values all get the same 400, and never reach
/// the inner service (rule 11).
#[tokio::test]
async fn malformed_ids_get_the_same_400() {
    let layer = ResumabilityLayer::new(memory_store());
    let (script, served) = serve_scripted(&layer).await;

    let stream = StreamId::random().to_string();
    let text_ids = [
        "garbage".to_string(),
        "0/1".to_string(),
        "42".to_string(),
        stream.clone(),
        format!("{stream}."),
        format!("{stream}.01"),
        format!("{stream}.-1"),
        format!("{stream}.+1"),
        format!("{stream}.1.2"),
        format!("{stream}.18446744073709551616"),
        format!("{}.1", stream.to_uppercase()),
        format!("{}.1", &stream[1..]),
        format!("{stream}0.1"),
        format!("{}.1", uuid_hyphenated(&stream)),
    ];
    let mut bodies = BTreeSet::new();
    for (i, id) in text_ids.iter().enumerate() {
        let version = if i % 2 == 0 { V2025_06_18 } else { V2025_11_25 };
        let resp = Req::get("/mcp")
            .version(version)
            .session("s1")
            .last_event_id(id)
            .send(served.addr)
            .await;
        bodies.insert(assert_cannot_resume(resp, id).await);
    }
    // Not UTF-8, and no version header at all.
    let resp = Req::get("/mcp")
        .session("s1")
        .header_bytes("last-event-id", b"\xff\xfe.1")
        .send(served.addr)
        .await;
    bodies.insert(assert_cannot_resume(resp, "non-UTF-8").await);
    assert_eq!(bodies.len(), 1);
    assert_eq!(
        script.request_count(),
        0,
        "a resume reached the inner service"
    );
    assert_eq!(layer.stats().rejections, text_ids.len() as u64 + 1);
}

/// An empty `Last-Event-ID` header is a malformed id too (a GET carrying
/// the header is answered by the layer, rule 11).
#[tokio::test]
async fn empty_last_event_id_gets_the_400() {
    let layer = ResumabilityLayer::new(memory_store());
    let (script, served) = serve_scripted(&layer).await;
    let resp = Req::get("/mcp")
        .version(V2025_06_18)
        .header("last-event-id", "")
        .send(served.addr)
        .await;
    assert_cannot_resume(resp, "empty id").await;
    assert_eq!(script.request_count(), 0);
}

/// Unknown streams, positions past the head, and positions trimmed by
/// `max_events_per_stream`: the same 400; a retained position still works.
#[tokio::test]
async fn unknown_ahead_and_trimmed_ids_get_the_same_400() {
    let layer = ResumabilityLayer::new(memory_store()).max_events_per_stream(3);
    let store = layer.store().clone();
    let (script, served) = serve_scripted(&layer).await;

    let events = complete_stream(
        &script,
        served.addr,
        &store,
        Req::post("/mcp", CALL).version(V2025_06_18).session("s1"),
        10,
    )
    .await;
    let stream = events[0].stream();
    let info = store
        .stream_info(stream_of(events[0].id()))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(info.event_count, 3, "max_events_per_stream applies");

    let cases = [
        (format!("{}.1", StreamId::random()), "unknown stream"),
        (format!("{}.0", StreamId::random()), "unknown stream at 0"),
        (format!("{stream}.11"), "ahead of the head"),
        (format!("{stream}.1"), "trimmed"),
        (format!("{stream}.0"), "trimmed from the start"),
        (
            format!("{stream}.6"),
            "trimmed just before the first retained",
        ),
    ];
    let mut bodies = BTreeSet::new();
    for (id, what) in &cases {
        let resp = resume(id, Some("s1")).send(served.addr).await;
        bodies.insert(assert_cannot_resume(resp, what).await);
    }
    assert_eq!(bodies.len(), 1);

    // After 7: 8, 9, 10 are retained.
    let mut ok = resume(&format!("{stream}.7"), Some("s1"))
        .send(served.addr)
        .await;
    assert_eq!(ok.status, StatusCode::OK);
    let got: Vec<_> = ok
        .events_to_end()
        .await
        .iter()
        .map(|ev| (ev.seq(), ev.data().to_string()))
        .collect();
    assert_eq!(got, (8..=10).map(|n| (n, message(n))).collect::<Vec<_>>());
    // The newest id of this finished stream: nothing left and nothing to
    // come, so the same 400 (an empty 200 makes clients reconnect forever).
    let resp = resume(&format!("{stream}.10"), Some("s1"))
        .send(served.addr)
        .await;
    bodies.insert(assert_cannot_resume(resp, "the end of a finished stream").await);
    assert_eq!(bodies.len(), 1);
    assert_eq!(
        script
            .requests()
            .iter()
            .filter(|r| r.header("last-event-id").is_some())
            .count(),
        0
    );
}

fn uuid_hyphenated(simple: &str) -> String {
    format!(
        "{}-{}-{}-{}-{}",
        &simple[..8],
        &simple[8..12],
        &simple[12..16],
        &simple[16..20],
        &simple[20..]
    )
}
