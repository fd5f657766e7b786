//! What the layer reads from MCP requests and responses: header names,
//! protocol versions, content types, and the answers it makes itself.

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Response, StatusCode};

/// `Mcp-Session-Id`: minted by the server at initialize, sent on every request after.
pub(crate) const MCP_SESSION_ID: HeaderName = HeaderName::from_static("mcp-session-id");
/// `MCP-Protocol-ResumableVersion`: the negotiated version, on every request after initialize.
pub(crate) const MCP_PROTOCOL_VERSION: HeaderName = HeaderName::from_static("mcp-protocol-version");
/// `Last-Event-ID`: the resume point of a reconnecting client.
pub(crate) const LAST_EVENT_ID: HeaderName = HeaderName::from_static("last-event-id");

/// A protocol version whose Streamable HTTP transport can resume.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ResumableVersion {
    /// No header: initialize, or a client that predates the header (the spec
    /// says to assume 2025-03-26).
    Unspecified,
    V2025_03_26,
    V2025_06_18,
    /// Adds priming events and server-side close with `retry` (SEP-1699).
    V2025_11_25,
}

impl ResumableVersion {
    /// The version a request speaks, or `None` when the layer must leave it
    /// alone: a later version (2026-07-28 removed resumability and made a
    /// closed stream mean cancellation) or a value it does not know.
    pub(crate) fn of(headers: &HeaderMap) -> Option<Self> {
        let Some(value) = headers.get(&MCP_PROTOCOL_VERSION) else {
            return Some(Self::Unspecified);
        };
        match value.as_bytes().trim_ascii() {
            b"2025-03-26" => Some(Self::V2025_03_26),
            b"2025-06-18" => Some(Self::V2025_06_18),
            b"2025-11-25" => Some(Self::V2025_11_25),
            _ => None,
        }
    }

    /// Whether the client expects a priming event and may be polled.
    pub(crate) fn primes(self) -> bool {
        self == Self::V2025_11_25
    }
}

/// Whether a response is an SSE stream the layer can rewrite: 200, `text/event-stream`,
/// not compressed, answering a POST or a GET.
pub(crate) fn is_rewritable(method: &Method, status: StatusCode, headers: &HeaderMap) -> bool {
    let event_stream = headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.split(';').next())
        .is_some_and(|essence| essence.trim().eq_ignore_ascii_case("text/event-stream"));
    let plain = headers
        .get(header::CONTENT_ENCODING)
        .is_none_or(|value| value.as_bytes().eq_ignore_ascii_case(b"identity"));
    (method == Method::POST || method == Method::GET)
        && status == StatusCode::OK
        && event_stream
        && plain
}

/// A header's value as text, for session ids and the like. Non-UTF-8 bytes
/// are kept distinguishable (lossy replacement), never dropped.
pub(crate) fn header_text(headers: &HeaderMap, name: &HeaderName) -> Option<String> {
    headers
        .get(name)
        .map(|value| String::from_utf8_lossy(value.as_bytes()).into_owned())
}

/// The one answer to every `Last-Event-ID` that cannot be resumed, whatever
/// the reason (malformed, unknown, expired, trimmed, another session's or
/// identity's), so it tells nothing about which ids exist. 400, not 404: a
/// 404 tells MCP clients their session is gone.
pub(crate) const CANNOT_RESUME_BODY: &str = r#"{"jsonrpc":"2.0","id":null,"error":{"code":-32000,"message":"Bad Request: this stream cannot be resumed (unknown, expired or foreign Last-Event-ID)"}}"#;

/// The answer when the store is failing and the policy is to fail closed.
pub(crate) const UNAVAILABLE_BODY: &str = r#"{"jsonrpc":"2.0","id":null,"error":{"code":-32603,"message":"Service Unavailable: the event store is failing, so this stream cannot be made resumable; retry later"}}"#;

/// The `400` answer to a resume that cannot be served ([`CANNOT_RESUME_BODY`]).
pub(crate) fn cannot_resume() -> Response<Bytes> {
    json_error(StatusCode::BAD_REQUEST, CANNOT_RESUME_BODY)
}

/// The `503` answer when the store fails under the fail-closed policy
/// ([`UNAVAILABLE_BODY`]).
pub(crate) fn unavailable() -> Response<Bytes> {
    json_error(StatusCode::SERVICE_UNAVAILABLE, UNAVAILABLE_BODY)
}

/// A JSON-RPC error response made by the layer.
fn json_error(status: StatusCode, body: &'static str) -> Response<Bytes> {
    let mut response = Response::new(Bytes::from_static(body.as_bytes()));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

/// Turns an inner response's headers into those of the rewritten stream.
pub(crate) fn rewrite_headers(headers: &mut HeaderMap) {
    // The body changes length; it streams, so no length is known.
    headers.remove(header::CONTENT_LENGTH);
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
}

/// The headers of a stream the layer answers itself (a resume).
pub(crate) fn event_stream_headers(headers: &mut HeaderMap) {
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_that_resume_are_handled_and_others_are_not() {
        let mut headers = HeaderMap::new();
        assert_eq!(
            ResumableVersion::of(&headers),
            Some(ResumableVersion::Unspecified)
        );
        for (value, expected) in [
            ("2025-03-26", Some(ResumableVersion::V2025_03_26)),
            ("2025-06-18", Some(ResumableVersion::V2025_06_18)),
            ("2025-11-25", Some(ResumableVersion::V2025_11_25)),
            ("2026-07-28", None),
            ("garbage", None),
        ] {
            headers.insert(&MCP_PROTOCOL_VERSION, HeaderValue::from_static(value));
            assert_eq!(ResumableVersion::of(&headers), expected, "{value}");
        }
    }

    #[test]
    fn only_plain_event_streams_to_post_and_get_are_rewritable() {
        let sse = |content_type: &'static str| {
            let mut headers = HeaderMap::new();
            headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
            headers
        };
        assert!(is_rewritable(
            &Method::POST,
            StatusCode::OK,
            &sse("text/event-stream")
        ));
        assert!(is_rewritable(
            &Method::GET,
            StatusCode::OK,
            &sse("Text/Event-Stream; charset=utf-8")
        ));
        assert!(!is_rewritable(
            &Method::POST,
            StatusCode::OK,
            &sse("application/json")
        ));
        assert!(!is_rewritable(
            &Method::DELETE,
            StatusCode::OK,
            &sse("text/event-stream")
        ));
        assert!(!is_rewritable(
            &Method::POST,
            StatusCode::ACCEPTED,
            &sse("text/event-stream")
        ));
        let mut gzip = sse("text/event-stream");
        gzip.insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
        assert!(!is_rewritable(&Method::POST, StatusCode::OK, &gzip));
    }
}
