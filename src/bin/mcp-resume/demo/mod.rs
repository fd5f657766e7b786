//! The built-in MCP server of `mcp-resume demo`: a small, hand-written MCP
//! Streamable HTTP server with one slow streaming tool, to try resumability
//! with nothing but curl.
//!
//! [`DemoServer`] speaks protocol versions 2025-03-26, 2025-06-18 and
//! 2025-11-25 on any path:
//!
//! | request | answer |
//! |---|---|
//! | `POST initialize` | JSON result (the protocol version if supported, else the latest; `capabilities: {tools: {}}`; `serverInfo`) and a new `Mcp-Session-Id` header |
//! | `POST` a notification (`notifications/initialized`...) or a response | `202 Accepted` |
//! | `POST ping`, `tools/list` | JSON result |
//! | `POST tools/call` of `countdown` `{"steps": N, "interval_ms": M}` | `text/event-stream`: N `notifications/progress` (for the request's `_meta.progressToken`, else its id), one every M ms, then the result |
//! | `DELETE` | `200`; the session ends |
//! | `GET` | `405`: this server sends nothing unprompted |
//!
//! Requests after initialize need the session's `Mcp-Session-Id` (`400`
//! without one, `404` for an unknown one). Request bodies are limited to
//! 1 MiB and the server keeps at most 1,024 sessions (the oldest is
//! forgotten first), so memory stays bounded whatever clients send.
//!
//! `mcp-resume demo` serves it behind
//! [`ResumabilityLayer`](mcp_resume::ResumabilityLayer), which makes the
//! countdown's stream resumable, and prints [the walkthrough](fn@walkthrough)
//! that shows it with curl.

mod countdown;
mod rpc;
mod walkthrough;

use std::collections::{HashSet, VecDeque};
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use http_body::Body;
use http_body_util::{BodyExt, LengthLimitError, Limited};
use tower::Service;

pub use countdown::DemoBody;
use rpc::{INVALID_REQUEST, Message, Refusal};
pub use walkthrough::walkthrough;

use tower::BoxError;

/// `Mcp-Session-Id`.
const MCP_SESSION_ID: HeaderName = HeaderName::from_static("mcp-session-id");
/// `MCP-Protocol-Version`.
const MCP_PROTOCOL_VERSION: HeaderName = HeaderName::from_static("mcp-protocol-version");
/// The protocol versions this server speaks, newest first.
const SUPPORTED_VERSIONS: [&str; 3] = ["2025-11-25", "2025-06-18", "2025-03-26"];
/// The largest request body read; larger ones are answered `413`.
const MAX_REQUEST_BYTES: usize = 1024 * 1024;
/// The most sessions remembered; past it the oldest is forgotten.
const MAX_SESSIONS: usize = 1024;

const UNSUPPORTED_VERSION: Refusal = Refusal::new(
    StatusCode::BAD_REQUEST,
    INVALID_REQUEST,
    "Bad Request: unsupported MCP-Protocol-Version; this server speaks 2025-11-25, 2025-06-18 and 2025-03-26",
);
const METHOD_NOT_ALLOWED: Refusal = Refusal::new(
    StatusCode::METHOD_NOT_ALLOWED,
    INVALID_REQUEST,
    "Method Not Allowed: use POST for JSON-RPC messages and DELETE to end a session",
);
const TOO_LARGE: Refusal = Refusal::new(
    StatusCode::PAYLOAD_TOO_LARGE,
    INVALID_REQUEST,
    "Payload Too Large: JSON-RPC messages are limited to 1 MiB",
);
const UNREADABLE: Refusal = Refusal::new(
    StatusCode::BAD_REQUEST,
    INVALID_REQUEST,
    "Bad Request: the request body could not be read",
);
const NO_SESSION: Refusal = Refusal::new(
    StatusCode::BAD_REQUEST,
    INVALID_REQUEST,
    "Bad Request: Mcp-Session-Id header is required (send initialize first)",
);
const UNKNOWN_SESSION: Refusal = Refusal::new(
    StatusCode::NOT_FOUND,
    INVALID_REQUEST,
    "Not Found: unknown or ended session; initialize a new one",
);

/// The demo MCP server, as a tower service. See the [module documentation](self).
///
/// Clones share their sessions.
#[derive(Clone, Debug, Default)]
pub struct DemoServer {
    sessions: Arc<Mutex<Sessions>>,
}

impl DemoServer {
    /// A server with no sessions yet.
    pub fn new() -> Self {
        Self::default()
    }
}

impl<B> Service<Request<B>> for DemoServer
where
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    type Response = Response<DemoBody>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response<DemoBody>, Infallible>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let server = self.clone();
        Box::pin(async move { Ok(server.handle(request).await) })
    }
}

impl DemoServer {
    async fn handle<B>(&self, request: Request<B>) -> Response<DemoBody>
    where
        B: Body<Data = Bytes>,
        B::Error: Into<BoxError>,
    {
        if let Some(version) = request.headers().get(&MCP_PROTOCOL_VERSION)
            && !SUPPORTED_VERSIONS.contains(&version.to_str().unwrap_or_default())
        {
            return UNSUPPORTED_VERSION.into_response();
        }
        match *request.method() {
            Method::POST => self.post(request).await,
            Method::DELETE => match self.session(request.headers()) {
                Ok(session) => {
                    self.lock().remove(&session);
                    Response::new(DemoBody::empty())
                }
                Err(refusal) => refusal.into_response(),
            },
            _ => {
                // GET included: this server never sends anything unprompted,
                // so it has no standalone stream to offer.
                let mut response = METHOD_NOT_ALLOWED.into_response();
                response
                    .headers_mut()
                    .insert(header::ALLOW, HeaderValue::from_static("POST, DELETE"));
                response
            }
        }
    }

    async fn post<B>(&self, request: Request<B>) -> Response<DemoBody>
    where
        B: Body<Data = Bytes>,
        B::Error: Into<BoxError>,
    {
        let (parts, body) = request.into_parts();
        let body = match Limited::new(body, MAX_REQUEST_BYTES).collect().await {
            Ok(collected) => collected.to_bytes(),
            Err(error) if error.downcast_ref::<LengthLimitError>().is_some() => {
                return TOO_LARGE.into_response();
            }
            Err(error) => {
                tracing::debug!(error, "could not read a request body");
                return UNREADABLE.into_response();
            }
        };
        let message = match Message::parse(&body) {
            Ok(message) => message,
            Err(refusal) => return refusal.into_response(),
        };
        match message {
            Message::Request { id, method, params } if method == "initialize" => {
                let session = self.lock().create();
                let mut response = rpc::initialize(id, &params);
                if let Ok(value) = HeaderValue::from_str(&session) {
                    response.headers_mut().insert(MCP_SESSION_ID, value);
                }
                response
            }
            message => {
                if let Err(refusal) = self.session(&parts.headers) {
                    return refusal.into_response();
                }
                match message {
                    Message::Request { id, method, params } => {
                        let mut response = rpc::call(id, &method, params);
                        // Tells the layer what the stream answers, for its history.
                        if let Some(call) = mcp_resume::store::StreamCall::from_json_rpc(&body) {
                            response.extensions_mut().insert(call);
                        }
                        response
                    }
                    // Notifications and responses need no answer.
                    Message::Notification | Message::Response => {
                        let mut response = Response::new(DemoBody::empty());
                        *response.status_mut() = StatusCode::ACCEPTED;
                        response
                    }
                }
            }
        }
    }

    /// The request's session, if this server knows it; otherwise the refusal:
    /// `400` without a session id, `404` (start a new session) for an unknown one.
    fn session(&self, headers: &HeaderMap) -> Result<String, Refusal> {
        let Some(session) = headers.get(&MCP_SESSION_ID) else {
            return Err(NO_SESSION);
        };
        let session = String::from_utf8_lossy(session.as_bytes());
        if !self.lock().contains(&session) {
            return Err(UNKNOWN_SESSION);
        }
        Ok(session.into_owned())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Sessions> {
        // Nothing can panic while the lock is held, so a poisoned lock still
        // guards a consistent set.
        self.sessions.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The live sessions, oldest first, at most [`MAX_SESSIONS`].
#[derive(Debug, Default)]
struct Sessions {
    order: VecDeque<String>,
    live: HashSet<String>,
}

impl Sessions {
    /// Mints a session id (122 random bits, 32 hex digits).
    fn create(&mut self) -> String {
        let session = uuid::Uuid::new_v4().simple().to_string();
        if self.order.len() >= MAX_SESSIONS
            && let Some(oldest) = self.order.pop_front()
        {
            self.live.remove(&oldest);
        }
        self.order.push_back(session.clone());
        self.live.insert(session.clone());
        session
    }

    fn contains(&self, session: &str) -> bool {
        self.live.contains(session)
    }

    fn remove(&mut self, session: &str) {
        if self.live.remove(session) {
            self.order.retain(|s| s != session);
        }
    }
}

/// Helpers shared by the tests of the submodules.
#[cfg(test)]
fn json_of(bytes: &[u8]) -> serde_json::Value {
    serde_json::from_slice(bytes).expect("a JSON body")
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::Full;
    use tower::ServiceExt;

    async fn send(
        server: &DemoServer,
        method: Method,
        session: Option<&str>,
        body: &str,
    ) -> (StatusCode, HeaderMap, Bytes) {
        let mut request = Request::builder().method(method).uri("/mcp");
        if let Some(session) = session {
            request = request.header("mcp-session-id", session);
        }
        let request = request
            .body(Full::new(Bytes::copy_from_slice(body.as_bytes())))
            .unwrap();
        let response = server.clone().oneshot(request).await.unwrap();
        let (parts, body) = response.into_parts();
        let bytes = body.collect().await.unwrap().to_bytes();
        (parts.status, parts.headers, bytes)
    }

    const INITIALIZE: &str = r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}"#;

    #[tokio::test]
    async fn a_session_is_minted_used_and_ended() {
        let server = DemoServer::new();
        let (status, headers, body) = send(&server, Method::POST, None, INITIALIZE).await;
        assert_eq!(status, StatusCode::OK);
        let session = headers["mcp-session-id"].to_str().unwrap().to_owned();
        assert_eq!(session.len(), 32);
        let result = &json_of(&body)["result"];
        assert_eq!(result["protocolVersion"], "2025-06-18");
        assert_eq!(result["capabilities"], serde_json::json!({ "tools": {} }));

        let initialized = r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#;
        let (status, _, body) = send(&server, Method::POST, Some(&session), initialized).await;
        assert_eq!((status, body.len()), (StatusCode::ACCEPTED, 0));

        let list = r#"{"jsonrpc":"2.0","id":2,"method":"tools/list"}"#;
        let (status, _, body) = send(&server, Method::POST, Some(&session), list).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(json_of(&body)["result"]["tools"][0]["name"], "countdown");

        let (status, _, _) = send(&server, Method::DELETE, Some(&session), "").await;
        assert_eq!(status, StatusCode::OK);
        let (status, _, _) = send(&server, Method::POST, Some(&session), list).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
    }

    #[tokio::test]
    async fn bad_requests_get_json_rpc_errors_not_panics() {
        let server = DemoServer::new();
        let list = r#"{"jsonrpc":"2.0","id":2,"method":"tools/list"}"#;
        for (method, session, body, status) in [
            (Method::POST, None, list, StatusCode::BAD_REQUEST),
            (Method::POST, Some("nope"), list, StatusCode::NOT_FOUND),
            (Method::POST, None, "{not json", StatusCode::BAD_REQUEST),
            (Method::POST, None, "[]", StatusCode::BAD_REQUEST),
            (Method::POST, None, "42", StatusCode::BAD_REQUEST),
            (
                Method::POST,
                None,
                r#"{"jsonrpc":"2.0"}"#,
                StatusCode::BAD_REQUEST,
            ),
            (Method::GET, None, "", StatusCode::METHOD_NOT_ALLOWED),
            (Method::DELETE, None, "", StatusCode::BAD_REQUEST),
        ] {
            let (got, headers, body) = send(&server, method.clone(), session, body).await;
            assert_eq!(got, status, "{method} {body:?}");
            assert_eq!(headers["content-type"], "application/json");
            assert!(json_of(&body)["error"]["message"].is_string());
        }
        let huge = format!(
            r#"{{"jsonrpc":"2.0","id":1,"method":"{}"}}"#,
            "x".repeat(MAX_REQUEST_BYTES)
        );
        let (status, _, _) = send(&server, Method::POST, None, &huge).await;
        assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    }

    #[tokio::test]
    async fn unsupported_protocol_versions_are_refused() {
        let request = Request::post("/mcp")
            .header("mcp-protocol-version", "1999-01-01")
            .body(Full::new(Bytes::from_static(INITIALIZE.as_bytes())))
            .unwrap();
        let response = DemoServer::new().oneshot(request).await.unwrap();
        assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    }

    #[tokio::test]
    async fn behind_the_layer_initialize_is_answered_with_a_session() {
        use mcp_resume::ResumabilityLayer;
        use mcp_resume::store::MemoryEventStore;
        use tower::Layer;

        let service =
            ResumabilityLayer::new(Arc::new(MemoryEventStore::new())).layer(DemoServer::new());
        let initialize = Request::post("/mcp")
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from_static(INITIALIZE.as_bytes())))
            .unwrap();
        let response = service.oneshot(initialize).await.unwrap();
        assert!(response.headers().contains_key("mcp-session-id"));
        let body = response.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(
            json_of(&body)["result"]["capabilities"],
            serde_json::json!({ "tools": {} })
        );
    }

    #[test]
    fn sessions_are_bounded_oldest_first() {
        let mut sessions = Sessions::default();
        let first = sessions.create();
        for _ in 0..MAX_SESSIONS {
            sessions.create();
        }
        assert!(!sessions.contains(&first));
        assert_eq!(sessions.live.len(), MAX_SESSIONS);
        assert_eq!(sessions.order.len(), MAX_SESSIONS);
    }
}
