//! The admin routes: one answer per path, `GET` (and `HEAD`) only.

use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use http::header::{ALLOW, CACHE_CONTROL, CONTENT_TYPE, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;

use super::server::{READINESS_TIMEOUT, State};

/// The status page: one static file, no external resources.
const PAGE: &str = include_str!("page.html");
/// Lets the page run its own inline script and style and fetch from this
/// listener only: nothing else loads, even if a value shown were crafted.
const PAGE_POLICY: &str = "default-src 'none'; script-src 'unsafe-inline'; \
     style-src 'unsafe-inline'; connect-src 'self'; img-src data:; base-uri 'none'; \
     form-action 'none'; frame-ancestors 'none'";
/// The Prometheus text format's media type.
const PROMETHEUS_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";
const PLAIN_TEXT: &str = "text/plain; charset=utf-8";
const PATHS: &str = "/, /status.json, /metrics, /healthz, /readyz";

/// Answers one admin request.
pub async fn answer(
    state: Arc<State>,
    request: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    if !matches!(*request.method(), Method::GET | Method::HEAD) {
        let mut response = text(StatusCode::METHOD_NOT_ALLOWED, "only GET and HEAD\n");
        response
            .headers_mut()
            .insert(ALLOW, HeaderValue::from_static("GET, HEAD"));
        return Ok(response);
    }
    let response = match request.uri().path() {
        "/" => page(),
        "/status.json" => json(&state.status()),
        "/metrics" => {
            let mut response = text(StatusCode::OK, state.recorder.render());
            let media_type = HeaderValue::from_static(PROMETHEUS_TEXT);
            response.headers_mut().insert(CONTENT_TYPE, media_type);
            response
        }
        "/healthz" => text(StatusCode::OK, "ok\n"),
        "/readyz" => readiness(&state).await,
        _ => text(
            StatusCode::NOT_FOUND,
            format!("not found; the admin listener serves {PATHS}\n"),
        ),
    };
    Ok(response)
}

/// Ready while the event store answers its health check in time; the body
/// says why not.
async fn readiness(state: &State) -> Response<Full<Bytes>> {
    let not_ready = |reason: String| {
        tracing::warn!(store = %state.store_spec, "/readyz: not ready: {reason}");
        text(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: {reason}\n"),
        )
    };
    match tokio::time::timeout(READINESS_TIMEOUT, state.store.health()).await {
        Ok(Ok(())) => text(StatusCode::OK, "ready\n"),
        Ok(Err(error)) => not_ready(format!("the event store failed: {error}")),
        Err(_) => not_ready(format!(
            "the event store did not answer within {READINESS_TIMEOUT:?}"
        )),
    }
}

fn page() -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from_static(PAGE.as_bytes())));
    let headers = response.headers_mut();
    headers.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    headers.insert(
        "content-security-policy",
        HeaderValue::from_static(PAGE_POLICY),
    );
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

fn json(value: &serde_json::Value) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(value.to_string())));
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

fn text(status: StatusCode, body: impl Into<Bytes>) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(body.into()));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static(PLAIN_TEXT));
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}
