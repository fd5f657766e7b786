//! The layer composed with the usual stacks: axum 0.8 routers (per-route
//! layers with different settings, nested routers and services), tower-http
//! middleware in both orders, and a plain `tower::service_fn` served by bare
//! hyper 1. Everywhere the SSE must still be rewritten and resumable.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use crate::common::server::{Script, message};
use crate::common::sse::{End, Ev, Req};
use crate::common::{
    CALL, CANNOT_RESUME_BODY, V2025_06_18, V2025_11_25, memory_store, serve, serve_plain_hyper,
    stream_of, wait_state,
};
use axum::Router;
use axum::response::sse::{Event, Sse};
use axum::routing::{any_service, get};
use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use mcp_resume::ResumabilityLayer;
use mcp_resume::store::StreamState;
use tower::{Layer, ServiceBuilder};
use tower_http::compression::CompressionLayer;
use tower_http::cors::CorsLayer;
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;

/// A finished stream of axum SSE events (a futures `Stream` without
/// futures-util).
struct Events(VecDeque<Event>);

impl futures_core::Stream for Events {
    type Item = Result<Event, Infallible>;

    fn poll_next(mut self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        Poll::Ready(self.0.pop_front().map(Ok))
    }
}

/// An axum handler answering with axum's own SSE encoder, rmcp-style ids
/// and a priming event included.
async fn axum_sse() -> Sse<Events> {
    let mut events = VecDeque::new();
    events.push_back(
        Event::default()
            .id("0/0")
            .retry(Duration::from_secs(3))
            .data(""),
    );
    for n in 1..=3u64 {
        events.push_back(
            Event::default()
                .id(format!("{n}/1"))
                .event("message")
                .data(message(n)),
        );
    }
    Sse::new(Events(events))
}

fn data_of(events: &[Ev]) -> Vec<String> {
    events
        .iter()
        .filter(|ev| !ev.is_empty_data())
        .map(|ev| ev.data().to_string())
        .collect()
}

fn messages(range: std::ops::RangeInclusive<u64>) -> Vec<String> {
    range.map(message).collect()
}

/// POSTs `path`, expects a rewritten stream with `retry`, resumes after the
/// first event and expects the rest. The inner stream is written by
/// `script` if given (the axum handler writes its own otherwise).
async fn check_route(
    addr: std::net::SocketAddr,
    path: &str,
    script: Option<&Script>,
    retry_ms: u64,
) -> String {
    let mut resp = Req::post(path, CALL)
        .version(V2025_06_18)
        .session("s1")
        .send(addr)
        .await;
    assert_eq!(resp.status, StatusCode::OK, "{path}: {resp:?}");
    if let Some(script) = script {
        script.next_stream().await.produce(3, None).await.unwrap();
    }
    let events = resp.events_to_end().await;
    assert_eq!(resp.end(), Some(&End::Clean));
    assert_eq!(data_of(&events), messages(1..=3), "{path}");
    assert_eq!(
        events.len(),
        3,
        "{path}: inner priming absorbed: {events:#?}"
    );
    assert_eq!(events[0].retry, Some(retry_ms), "{path}: route's own retry");
    let seqs: Vec<u64> = events.iter().map(Ev::seq).collect();
    assert_eq!(seqs, [1, 2, 3], "{path}");

    let mut resumed = Req::get(path)
        .version(V2025_06_18)
        .session("s1")
        .last_event_id(events[0].id())
        .send(addr)
        .await;
    assert_eq!(resumed.status, StatusCode::OK, "{path}");
    assert_eq!(
        data_of(&resumed.events_to_end().await),
        messages(2..=3),
        "{path}"
    );
    events[0].id().to_string()
}

/// Two routes with their own layer (different retry, different stores):
/// each rewrites with its own settings; ids of one route are unknown to
/// the other.
#[tokio::test]
async fn axum_per_route_layers_with_different_settings() {
    let layer_a = ResumabilityLayer::new(memory_store()).retry(Duration::from_millis(1500));
    let layer_b = ResumabilityLayer::new(memory_store()).retry(Duration::from_millis(2500));
    let script = Script::streams();
    let app = Router::new()
        .route("/a", get(axum_sse).post(axum_sse).layer(layer_a.clone()))
        .route("/b", any_service(script.clone()).layer(layer_b.clone()));
    let served = serve(app).await;

    let id_a = check_route(served.addr, "/a", None, 1500).await;
    let id_b = check_route(served.addr, "/b", Some(&script), 2500).await;
    assert_eq!(layer_a.stats().streams_started, 1);
    assert_eq!(layer_b.stats().streams_started, 1);

    // An id from route a means nothing to route b's layer, and vice versa.
    for (path, id) in [("/b", &id_a), ("/a", &id_b)] {
        let mut resp = Req::get(path)
            .version(V2025_06_18)
            .session("s1")
            .last_event_id(id)
            .send(served.addr)
            .await;
        assert_eq!(resp.status, StatusCode::BAD_REQUEST);
        assert_eq!(resp.text().await, CANNOT_RESUME_BODY);
    }
}

/// The layer on a nested router (`Router::nest` + `Router::layer`) and on a
/// nested service (`nest_service`), sharing one store, under a router-wide
/// `CorsLayer`.
#[tokio::test]
async fn axum_nested_router_and_nested_service() {
    let layer = ResumabilityLayer::new(memory_store()).retry(Duration::from_millis(900));
    let script = Script::streams();
    let api = Router::new()
        .route("/mcp", any_service(script.clone()))
        .route("/axum", get(axum_sse).post(axum_sse))
        .layer(layer.clone());
    let app = Router::new()
        .nest("/api", api)
        .nest_service("/svc", layer.clone().layer(script.clone()))
        .layer(CorsLayer::permissive());
    let served = serve(app).await;

    // CORS on the whole router also covers the resumes the layer answers.
    let id = check_route(served.addr, "/api/mcp", Some(&script), 900).await;
    let mut resp = Req::get("/api/mcp")
        .version(V2025_06_18)
        .session("s1")
        .header("origin", "https://example.com")
        .last_event_id(&id)
        .send(served.addr)
        .await;
    assert_eq!(resp.status, StatusCode::OK);
    assert_eq!(resp.header("access-control-allow-origin"), Some("*"));
    assert_eq!(data_of(&resp.events_to_end().await), messages(2..=3));

    check_route(served.addr, "/api/axum", None, 900).await;
    check_route(served.addr, "/svc/mcp", Some(&script), 900).await;
    assert_eq!(layer.stats().streams_started, 3);
}

/// The tower-http stack around the layer, and the layer around the stack:
/// SSE rewritten, resumable; CORS headers, compression and trace all in
/// place; the timeout does not cut a stream that outlives it.
#[tokio::test]
async fn tower_http_stack_in_both_orders() {
    for outside in [true, false] {
        let layer = ResumabilityLayer::new(memory_store()).retry(Duration::from_millis(1100));
        let store = layer.store().clone();
        let script = Script::streams();
        let timeout =
            TimeoutLayer::with_status_code(StatusCode::REQUEST_TIMEOUT, Duration::from_millis(300));
        let served = if outside {
            serve(
                ServiceBuilder::new()
                    .layer(TraceLayer::new_for_http())
                    .layer(timeout)
                    .layer(CompressionLayer::new())
                    .layer(CorsLayer::permissive())
                    .layer(layer.clone())
                    .service(script.clone()),
            )
            .await
        } else {
            serve(
                ServiceBuilder::new()
                    .layer(layer.clone())
                    .layer(TraceLayer::new_for_http())
                    .layer(timeout)
                    .layer(CompressionLayer::new())
                    .layer(CorsLayer::permissive())
                    .service(script.clone()),
            )
            .await
        };
        let order = if outside {
            "tower-http outside"
        } else {
            "tower-http inside"
        };

        let mut resp = Req::post("/mcp", CALL)
            .version(V2025_11_25)
            .session("s1")
            .header("origin", "https://example.com")
            .header("accept-encoding", "gzip")
            .send(served.addr)
            .await;
        assert_eq!(resp.status, StatusCode::OK, "{order}");
        assert_eq!(
            resp.header("access-control-allow-origin"),
            Some("*"),
            "{order}"
        );
        assert_eq!(
            resp.header("content-encoding"),
            None,
            "{order}: SSE is not compressed"
        );
        // The stream outlives the 300 ms timeout.
        let producer = script
            .next_stream()
            .await
            .produce(5, Some(Duration::from_millis(100)));
        let priming = resp.expect_event().await;
        assert_eq!((priming.seq(), priming.retry), (0, Some(1100)), "{order}");
        let first = resp.expect_event().await;
        assert_eq!(
            (first.seq(), first.data().to_string()),
            (1, message(1)),
            "{order}"
        );
        drop(resp);
        assert_eq!(producer.await.unwrap(), 5, "{order}");
        wait_state(&store, stream_of(first.id()), StreamState::Complete).await;

        let mut resumed = Req::get("/mcp")
            .version(V2025_11_25)
            .session("s1")
            .header("origin", "https://example.com")
            .header("accept-encoding", "gzip")
            .last_event_id(first.id())
            .send(served.addr)
            .await;
        assert_eq!(resumed.status, StatusCode::OK, "{order}");
        if outside {
            // Inside, the resume is answered by the layer itself and never
            // reaches the CORS layer: CORS belongs outside.
            assert_eq!(
                resumed.header("access-control-allow-origin"),
                Some("*"),
                "{order}"
            );
        }
        let events = resumed.events_to_end().await;
        assert_eq!(data_of(&events), messages(2..=5), "{order}");
        assert!(
            events.iter().all(|ev| ev.stream() == first.stream()),
            "{order}"
        );
        assert_eq!(resumed.end(), Some(&End::Clean), "{order}");

        // A refused resume still gets the exact 400 body through the stack
        // (uncompressed: it is small).
        let mut refused = Req::get("/mcp")
            .version(V2025_11_25)
            .session("s1")
            .header("accept-encoding", "gzip")
            .last_event_id("nonsense")
            .send(served.addr)
            .await;
        assert_eq!(refused.status, StatusCode::BAD_REQUEST, "{order}");
        if refused.header("content-encoding").is_none() {
            assert_eq!(refused.text().await, CANNOT_RESUME_BODY, "{order}");
        }
    }
}

/// A plain `tower::service_fn` (request body `Full<Bytes>`, response body
/// `Full<Bytes>` with rmcp-style ids and priming) served by bare hyper 1.
#[tokio::test]
async fn around_a_plain_service_fn_on_bare_hyper() {
    let layer = ResumabilityLayer::new(memory_store());
    let store = layer.store().clone();
    let inner = tower::service_fn(|req: Request<Full<Bytes>>| async move {
        assert_eq!(
            req.method(),
            http::Method::POST,
            "resumes must not reach the inner service"
        );
        let mut body = String::from("id: 0/1\nretry: 3000\ndata:\n\n");
        for n in 1..=3 {
            body.push_str(&format!(
                "id: {n}/1\nevent: message\ndata: {}\n\n",
                message(n)
            ));
        }
        let response = Response::builder()
            .header("content-type", "text/event-stream")
            .header("mcp-session-id", "plain-session")
            .body(Full::new(Bytes::from(body)))
            .unwrap();
        Ok::<_, Infallible>(response)
    });
    let served = serve_plain_hyper(layer.layer(inner)).await;

    let mut resp = Req::post("/", CALL)
        .version(V2025_11_25)
        .send(served.addr)
        .await;
    assert_eq!(resp.status, StatusCode::OK);
    assert_eq!(resp.header("mcp-session-id"), Some("plain-session"));
    assert_eq!(resp.header("content-length"), None);
    let events = resp.events_to_end().await;
    assert_eq!(events.len(), 4, "{events:#?}");
    assert_eq!(events[0].seq(), 0);
    assert_eq!(data_of(&events), messages(1..=3));
    assert!(
        events[1..]
            .iter()
            .all(|ev| ev.event.as_deref() == Some("message"))
    );
    wait_state(&store, stream_of(events[1].id()), StreamState::Complete).await;

    let mut resumed = Req::get("/")
        .version(V2025_11_25)
        .session("plain-session")
        .last_event_id(events[1].id())
        .send(served.addr)
        .await;
    assert_eq!(resumed.status, StatusCode::OK);
    assert_eq!(data_of(&resumed.events_to_end().await), messages(2..=3));
}
