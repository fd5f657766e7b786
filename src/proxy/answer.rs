//! The proxy's own answers: a JSON-RPC error with an HTTP status, for
//! requests the upstream does not answer (it cannot be reached, it is too
//! slow, the client's request is refused or unreadable).

use std::fmt;

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Response, StatusCode};

/// JSON-RPC's "Invalid Request": the client's request is refused.
pub(crate) const INVALID_REQUEST: i64 = -32600;

/// JSON-RPC's "Internal error": the upstream failed to answer.
pub(crate) const INTERNAL_ERROR: i64 = -32603;

/// A JSON-RPC error response (`id` null: the request's message was not
/// read) with `status`; the caller maps the body into its own type.
pub(crate) fn json_error(status: StatusCode, code: i64, message: &str) -> Response<Bytes> {
    let body = serde_json::json!({
        "jsonrpc": "2.0",
        "id": null,
        "error": { "code": code, "message": message },
    });
    let mut response = Response::new(Bytes::from(body.to_string()));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

/// Displays an error with its sources: `a: b: c`. hyper's own messages
/// ("client error (Connect)", "error reading a body from connection") say
/// little without them.
pub(crate) struct ErrorChain<'a>(pub(crate) &'a (dyn std::error::Error + 'static));

impl fmt::Display for ErrorChain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)?;
        let mut source = self.0.source();
        while let Some(error) = source {
            write!(f, ": {error}")?;
            source = error.source();
        }
        Ok(())
    }
}
