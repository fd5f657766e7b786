//! What the gateway reads from 2026-07-28 requests (the JSON-RPC body, the
//! routing headers, the declared extensions) and the answers it makes itself.

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Response, StatusCode};
use serde_json::{Map, Value, json};

/// The extension's identifier, in capabilities and `_meta`.
pub(crate) const TASKS_EXTENSION: &str = "io.modelcontextprotocol/tasks";
/// The protocol revision the gateway serves.
pub(crate) const PROTOCOL_VERSION: &str = "2026-07-28";
/// `_meta` key of the per-request client capabilities (SEP-2575).
const CLIENT_CAPABILITIES: &str = "io.modelcontextprotocol/clientCapabilities";

/// `MCP-Protocol-Version`.
pub(crate) const MCP_PROTOCOL_VERSION: HeaderName = HeaderName::from_static("mcp-protocol-version");
/// `Mcp-Method` (SEP-2243): the JSON-RPC method of a POST.
pub(crate) const MCP_METHOD: HeaderName = HeaderName::from_static("mcp-method");
/// `Mcp-Name` (SEP-2243): the tool's name, or for `tasks/*` the task id.
pub(crate) const MCP_NAME: HeaderName = HeaderName::from_static("mcp-name");

/// JSON-RPC "invalid params": an unknown, expired or foreign task id.
pub(crate) const INVALID_PARAMS: i64 = -32602;
/// JSON-RPC "internal error": the gateway's own failures.
pub(crate) const INTERNAL_ERROR: i64 = -32603;
/// SEP-2243: a routing header disagrees with the body.
pub(crate) const HEADER_MISMATCH: i64 = -32020;
/// SEP-2575: the request lacks a client capability the method requires.
pub(crate) const MISSING_REQUIRED_CLIENT_CAPABILITY: i64 = -32021;

/// The one message for every task id that does not resolve, whatever the
/// reason (never issued, expired, another caller's), so that it tells
/// nobody which ids exist.
pub(crate) const TASK_NOT_FOUND: &str = "Failed to retrieve task: Task not found";

/// Whether a request speaks 2026-07-28: its `MCP-Protocol-Version` says so,
/// or it has none and carries the `Mcp-Method` header that only 2026-07-28
/// clients send.
pub(crate) fn speaks_2026(method: &Method, headers: &HeaderMap) -> bool {
    if method != Method::POST {
        return false;
    }
    match headers.get(&MCP_PROTOCOL_VERSION) {
        Some(version) => version.as_bytes().trim_ascii() == PROTOCOL_VERSION.as_bytes(),
        None => headers.contains_key(&MCP_METHOD),
    }
}

/// A JSON-RPC request, as the gateway needs it.
#[derive(Clone, Debug)]
pub(crate) struct Call {
    /// The request id, echoed in the answer.
    pub(crate) id: Value,
    /// The JSON-RPC method.
    pub(crate) method: String,
    /// The params object (empty when absent).
    pub(crate) params: Map<String, Value>,
}

impl Call {
    /// Parses a body holding one JSON-RPC request; `None` for anything else
    /// (a notification, a response, a batch, not JSON), which the gateway
    /// leaves to the server.
    pub(crate) fn parse(body: &[u8]) -> Option<Self> {
        let Value::Object(mut object) = serde_json::from_slice(body).ok()? else {
            return None;
        };
        let id = object.remove("id").filter(|id| !id.is_null())?;
        let Some(Value::String(method)) = object.remove("method") else {
            return None;
        };
        let params = match object.remove("params") {
            Some(Value::Object(params)) => params,
            None | Some(Value::Null) => Map::new(),
            Some(_) => return None,
        };
        Some(Self { id, method, params })
    }

    /// Whether the request declares the tasks extension in its per-request
    /// client capabilities.
    pub(crate) fn declares_tasks(&self) -> bool {
        self.params
            .get("_meta")
            .and_then(|meta| meta.get(CLIENT_CAPABILITIES))
            .and_then(|capabilities| capabilities.get("extensions"))
            .and_then(|extensions| extensions.get(TASKS_EXTENSION))
            .is_some_and(|extension| !extension.is_null())
    }

    /// A string parameter.
    pub(crate) fn str_param(&self, name: &str) -> Option<&str> {
        self.params.get(name).and_then(Value::as_str)
    }

    /// The routing header that disagrees with the body, if one does:
    /// `Mcp-Method` against the method, and for `tasks/*`, `Mcp-Name`
    /// against `params.taskId`. A missing header is tolerated.
    pub(crate) fn header_mismatch(&self, headers: &HeaderMap) -> Option<&'static str> {
        if let Some(method) = headers.get(&MCP_METHOD)
            && method.as_bytes() != self.method.as_bytes()
        {
            return Some("Mcp-Method");
        }
        if self.method.starts_with("tasks/")
            && let Some(name) = headers.get(&MCP_NAME)
            && Some(name.as_bytes()) != self.str_param("taskId").map(str::as_bytes)
        {
            return Some("Mcp-Name");
        }
        None
    }
}

/// `body`, a JSON-RPC request declaring the tasks extension, without the
/// declaration: the call the upstream gets is an ordinary one, so an
/// upstream that implements tasks itself never answers with a task of its
/// own that the gateway could not follow. `None` if `body` is not one.
pub(crate) fn without_tasks_declaration(body: &[u8]) -> Option<Bytes> {
    let mut message: Value = serde_json::from_slice(body).ok()?;
    let extensions = message
        .get_mut("params")?
        .get_mut("_meta")?
        .get_mut(CLIENT_CAPABILITIES)?
        .get_mut("extensions")?
        .as_object_mut()?;
    extensions.remove(TASKS_EXTENSION)?;
    Some(Bytes::from(message.to_string()))
}

/// A JSON-RPC success answer, `application/json`.
pub(crate) fn result(id: &Value, result: Value) -> Response<Bytes> {
    json_response(&json!({"jsonrpc": "2.0", "id": id, "result": result}))
}

/// A JSON-RPC error answer, `application/json` (HTTP 200, as MCP servers
/// answer JSON-RPC errors).
pub(crate) fn error(id: &Value, code: i64, message: &str, data: Option<Value>) -> Response<Bytes> {
    let mut error = json!({"code": code, "message": message});
    if let Some(data) = data {
        error["data"] = data;
    }
    json_response(&json!({"jsonrpc": "2.0", "id": id, "error": error}))
}

/// The empty acknowledgement of `tasks/update` and `tasks/cancel`.
pub(crate) fn ack(id: &Value) -> Response<Bytes> {
    result(id, json!({"resultType": "complete"}))
}

/// The answer to a tasks request that did not declare the extension.
pub(crate) fn missing_capability(id: &Value) -> Response<Bytes> {
    error(
        id,
        MISSING_REQUIRED_CLIENT_CAPABILITY,
        "Missing required client capability: declare io.modelcontextprotocol/tasks in \
         _meta[\"io.modelcontextprotocol/clientCapabilities\"].extensions",
        Some(json!({"requiredCapabilities": {"extensions": {TASKS_EXTENSION: {}}}})),
    )
}

fn json_response(body: &Value) -> Response<Bytes> {
    let mut response = Response::new(Bytes::from(body.to_string()));
    *response.status_mut() = StatusCode::OK;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

/// What a JSON-RPC message on an upstream answer is, for the request `id`.
#[derive(Debug, PartialEq)]
pub(crate) enum Message {
    /// The final answer: a result.
    Result(Map<String, Value>),
    /// The final answer: an error object.
    Error(Value),
    /// A progress notification's message.
    Progress(Option<String>),
    /// Anything else (other notifications, another id).
    Other,
}

impl Message {
    /// Classifies one JSON-RPC message (an SSE event's data, or a JSON body).
    pub(crate) fn of(data: &[u8], id: &Value) -> Self {
        let Ok(Value::Object(mut object)) = serde_json::from_slice::<Value>(data) else {
            return Self::Other;
        };
        if object.get("method").and_then(Value::as_str) == Some("notifications/progress") {
            let message = object
                .get("params")
                .and_then(|params| params.get("message"))
                .and_then(Value::as_str)
                .map(str::to_owned);
            return Self::Progress(message);
        }
        if object.get("id") != Some(id) || object.contains_key("method") {
            return Self::Other;
        }
        if let Some(Value::Object(result)) = object.remove("result") {
            return Self::Result(result);
        }
        match object.remove("error") {
            Some(error) => Self::Error(error),
            None => Self::Other,
        }
    }

    /// Whether this is the final answer to the request.
    pub(crate) fn is_final(&self) -> bool {
        matches!(self, Self::Result(_) | Self::Error(_))
    }
}

/// Whether a tool result asks for input (SEP-2322).
pub(crate) fn is_input_required(result: &Map<String, Value>) -> bool {
    result.get("resultType").and_then(Value::as_str) == Some("input_required")
}

/// An ISO 8601 UTC timestamp (`2026-07-28T10:30:00.123Z`) of `millis`
/// since the Unix epoch.
pub(crate) fn iso8601(millis: u64) -> String {
    let seconds = millis / 1000;
    let days = (seconds / 86_400) as i64;
    let of_day = seconds % 86_400;
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        of_day / 3600,
        of_day % 3600 / 60,
        of_day % 60,
        millis % 1000
    )
}

/// Milliseconds since the Unix epoch of `time` (0 before it).
pub(crate) fn unix_millis(time: std::time::SystemTime) -> u64 {
    time.duration_since(std::time::UNIX_EPOCH)
        .map(|elapsed| elapsed.as_millis().min(u128::from(u64::MAX)) as u64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_iso_8601_utc() {
        assert_eq!(iso8601(0), "1970-01-01T00:00:00.000Z");
        // 2026-07-28T10:30:00.250Z
        assert_eq!(iso8601(1_785_234_600_250), "2026-07-28T10:30:00.250Z");
        assert_eq!(iso8601(951_782_400_000), "2000-02-29T00:00:00.000Z");
    }

    #[test]
    fn a_request_declares_the_extension_only_in_its_client_capabilities() {
        let declared = Call::parse(
            br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"x",
            "_meta":{"io.modelcontextprotocol/clientCapabilities":{"extensions":{"io.modelcontextprotocol/tasks":{}}}}}}"#,
        )
        .unwrap();
        assert!(declared.declares_tasks());
        let elsewhere = Call::parse(
            br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"x",
            "_meta":{"extensions":{"io.modelcontextprotocol/tasks":{}}}}}"#,
        )
        .unwrap();
        assert!(!elsewhere.declares_tasks());
        assert!(Call::parse(br#"{"jsonrpc":"2.0","method":"notifications/x"}"#).is_none());
        assert!(Call::parse(b"[1,2]").is_none());
        assert!(Call::parse(b"not json").is_none());
    }

    #[test]
    fn the_upstream_gets_the_call_without_the_declaration() {
        let body = br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"x",
            "_meta":{"io.modelcontextprotocol/clientCapabilities":{"extensions":{"io.modelcontextprotocol/tasks":{},"other/ext":{}}},"progressToken":3}}}"#;
        let stripped = without_tasks_declaration(body).unwrap();
        let call = Call::parse(&stripped).unwrap();
        assert!(!call.declares_tasks());
        let meta = &call.params["_meta"];
        assert_eq!(meta["progressToken"], 3);
        assert!(
            meta[CLIENT_CAPABILITIES]["extensions"]
                .get("other/ext")
                .is_some()
        );
        assert!(without_tasks_declaration(&stripped).is_none());
    }

    #[test]
    fn routing_headers_must_agree_with_the_body() {
        let call = Call::parse(
            br#"{"jsonrpc":"2.0","id":1,"method":"tasks/get","params":{"taskId":"abc"}}"#,
        )
        .unwrap();
        let mut headers = HeaderMap::new();
        assert_eq!(call.header_mismatch(&headers), None);
        headers.insert(&MCP_METHOD, HeaderValue::from_static("tasks/get"));
        headers.insert(&MCP_NAME, HeaderValue::from_static("abc"));
        assert_eq!(call.header_mismatch(&headers), None);
        headers.insert(&MCP_NAME, HeaderValue::from_static("other"));
        assert_eq!(call.header_mismatch(&headers), Some("Mcp-Name"));
        headers.insert(&MCP_METHOD, HeaderValue::from_static("tools/call"));
        assert_eq!(call.header_mismatch(&headers), Some("Mcp-Method"));
    }

    #[test]
    fn messages_are_told_apart_by_id_and_shape() {
        let id = json!(7);
        assert!(matches!(
            Message::of(br#"{"jsonrpc":"2.0","id":7,"result":{"content":[]}}"#, &id),
            Message::Result(_)
        ));
        assert!(matches!(
            Message::of(
                br#"{"jsonrpc":"2.0","id":7,"error":{"code":-1,"message":"x"}}"#,
                &id
            ),
            Message::Error(_)
        ));
        assert_eq!(
            Message::of(br#"{"jsonrpc":"2.0","id":8,"result":{}}"#, &id),
            Message::Other
        );
        assert_eq!(
            Message::of(
                br#"{"jsonrpc":"2.0","method":"notifications/progress","params":{"progress":1,"message":"half"}}"#,
                &id
            ),
            Message::Progress(Some("half".into()))
        );
    }
}
