//! The JSON-RPC side of the demo server: reading a message, and the
//! answers to `initialize`, `ping`, `tools/list` and `tools/call`.

use std::time::Duration;

use http::header::{self, HeaderValue};
use http::{Response, StatusCode};
use serde_json::{Value, json};

use super::SUPPORTED_VERSIONS;
use super::countdown::{
    Countdown, DEFAULT_INTERVAL_MS, DEFAULT_STEPS, DemoBody, MAX_INTERVAL_MS, MAX_STEPS,
};

/// JSON-RPC error codes.
pub(super) const PARSE_ERROR: i64 = -32700;
pub(super) const INVALID_REQUEST: i64 = -32600;
const METHOD_NOT_FOUND: i64 = -32601;
const INVALID_PARAMS: i64 = -32602;

/// One JSON-RPC message from the client, as far as the server cares.
#[derive(Debug)]
pub(super) enum Message {
    /// A request: it gets an answer with the same `id`.
    Request {
        id: Value,
        method: String,
        params: Value,
    },
    /// A notification: no answer.
    Notification,
    /// A response to something the server asked (it asks nothing, but a
    /// client may still send one): no answer.
    Response,
}

impl Message {
    /// Reads one JSON-RPC message, or refuses what is not one.
    pub(super) fn parse(body: &[u8]) -> Result<Self, Refusal> {
        let invalid = |message| Refusal::new(StatusCode::BAD_REQUEST, INVALID_REQUEST, message);
        let Ok(value) = serde_json::from_slice::<Value>(body) else {
            return Err(Refusal::new(
                StatusCode::BAD_REQUEST,
                PARSE_ERROR,
                "Parse error: the body is not JSON",
            ));
        };
        let Value::Object(mut object) = value else {
            // Batches were removed in 2025-06-18; this server takes one message per POST.
            return Err(invalid(
                "Invalid Request: expected one JSON-RPC message object (batches are not supported)",
            ));
        };
        let id = object
            .remove("id")
            .filter(|id| id.is_string() || id.is_number());
        match (object.remove("method"), id) {
            (Some(Value::String(method)), Some(id)) => Ok(Self::Request {
                id,
                method,
                params: object.remove("params").unwrap_or(Value::Null),
            }),
            (Some(Value::String(_)), None) => Ok(Self::Notification),
            (None, Some(_)) if object.contains_key("result") || object.contains_key("error") => {
                Ok(Self::Response)
            }
            _ => Err(invalid(
                "Invalid Request: expected a JSON-RPC request, notification or response",
            )),
        }
    }
}

/// The answer to `initialize`: the client's protocol version when this
/// server speaks it, else the newest it speaks (the client then decides).
pub(super) fn initialize(id: Value, params: &Value) -> Response<DemoBody> {
    let requested = params["protocolVersion"].as_str().unwrap_or_default();
    let version = SUPPORTED_VERSIONS
        .iter()
        .find(|&&supported| supported == requested)
        .unwrap_or(&SUPPORTED_VERSIONS[0]);
    result(
        id,
        json!({
            "protocolVersion": version,
            "capabilities": { "tools": {} },
            "serverInfo": { "name": "mcp-resume-demo", "version": env!("CARGO_PKG_VERSION") },
            "instructions": "Call the `countdown` tool; drop the connection mid-stream and resume with Last-Event-ID.",
        }),
    )
}

/// The answer to a request other than `initialize`.
pub(super) fn call(id: Value, method: &str, params: Value) -> Response<DemoBody> {
    match method {
        "ping" => result(id, json!({})),
        "tools/list" => result(id, json!({ "tools": [countdown_tool()] })),
        "tools/call" => match countdown_call(id.clone(), &params) {
            Ok(call) => {
                let mut response = Response::new(DemoBody::countdown(call));
                response.headers_mut().insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("text/event-stream"),
                );
                response
                    .headers_mut()
                    .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
                response
            }
            Err(message) => error(id, INVALID_PARAMS, &message),
        },
        _ => error(id, METHOD_NOT_FOUND, &format!("Method not found: {method}")),
    }
}

/// The `countdown` tool's description.
fn countdown_tool() -> Value {
    json!({
        "name": "countdown",
        "description": "Counts down slowly: one progress notification every interval_ms, then the result. Interrupt it and resume.",
        "inputSchema": {
            "type": "object",
            "properties": {
                "steps": {
                    "type": "integer", "minimum": 0, "maximum": MAX_STEPS, "default": DEFAULT_STEPS,
                    "description": "how many progress notifications to send",
                },
                "interval_ms": {
                    "type": "integer", "minimum": 0, "maximum": MAX_INTERVAL_MS, "default": DEFAULT_INTERVAL_MS,
                    "description": "milliseconds between two notifications",
                },
            },
        },
    })
}

/// Reads a `tools/call` of `countdown`, or says what is wrong with it.
fn countdown_call(id: Value, params: &Value) -> Result<Countdown, String> {
    let name = params["name"].as_str().unwrap_or_default();
    if name != "countdown" {
        return Err(format!(
            "Unknown tool `{name}`: this server has `countdown`"
        ));
    }
    let arguments = &params["arguments"];
    if !(arguments.is_object() || arguments.is_null()) {
        return Err("Invalid params: `arguments` must be an object".to_owned());
    }
    let steps = bounded(arguments, "steps", DEFAULT_STEPS, MAX_STEPS)?;
    let interval_ms = bounded(
        arguments,
        "interval_ms",
        DEFAULT_INTERVAL_MS,
        MAX_INTERVAL_MS,
    )?;
    // Progress goes to the token the client asked for; a client that gave
    // none still sees the steps, under its request id.
    let progress_token = match &params["_meta"]["progressToken"] {
        token @ (Value::String(_) | Value::Number(_)) => token.clone(),
        _ => id.clone(),
    };
    Ok(Countdown {
        id,
        progress_token,
        steps,
        interval: Duration::from_millis(interval_ms),
    })
}

/// An optional whole-number argument from 0 to `max`.
fn bounded(arguments: &Value, name: &str, default: u64, max: u64) -> Result<u64, String> {
    match &arguments[name] {
        Value::Null => Ok(default),
        value => value.as_u64().filter(|&n| n <= max).ok_or_else(|| {
            format!("Invalid params: `{name}` must be a whole number from 0 to {max}")
        }),
    }
}

/// A JSON-RPC result, `200 application/json`.
fn result(id: Value, result: Value) -> Response<DemoBody> {
    json_response(
        StatusCode::OK,
        &json!({ "jsonrpc": "2.0", "id": id, "result": result }),
    )
}

/// A JSON-RPC error answering request `id`, `200 application/json`.
fn error(id: Value, code: i64, message: &str) -> Response<DemoBody> {
    json_response(
        StatusCode::OK,
        &json!({ "jsonrpc": "2.0", "id": id, "error": { "code": code, "message": message } }),
    )
}

/// A request refused before it was read as a JSON-RPC request: an HTTP
/// status with a JSON-RPC error whose `id` is null.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Refusal {
    status: StatusCode,
    code: i64,
    message: &'static str,
}

impl Refusal {
    pub(super) const fn new(status: StatusCode, code: i64, message: &'static str) -> Self {
        Self {
            status,
            code,
            message,
        }
    }

    pub(super) fn into_response(self) -> Response<DemoBody> {
        json_response(
            self.status,
            &json!({
                "jsonrpc": "2.0",
                "id": null,
                "error": { "code": self.code, "message": self.message },
            }),
        )
    }
}

fn json_response(status: StatusCode, value: &Value) -> Response<DemoBody> {
    let mut response = Response::new(DemoBody::full(value.to_string()));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    async fn body_json(response: Response<DemoBody>) -> Value {
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        super::super::json_of(&bytes)
    }

    #[tokio::test]
    async fn initialize_echoes_a_supported_version_and_offers_the_latest_otherwise() {
        for (asked, answered) in [
            ("2025-03-26", "2025-03-26"),
            ("2025-11-25", "2025-11-25"),
            ("2099-01-01", "2025-11-25"),
        ] {
            let answer =
                body_json(initialize(json!(1), &json!({ "protocolVersion": asked }))).await;
            assert_eq!(answer["result"]["protocolVersion"], answered);
            assert_eq!(answer["result"]["serverInfo"]["name"], "mcp-resume-demo");
        }
    }

    #[test]
    fn countdown_arguments_are_checked() {
        let call = countdown_call(json!(3), &json!({ "name": "countdown" })).unwrap();
        assert_eq!(
            (call.steps, call.interval),
            (20, Duration::from_millis(500))
        );
        assert_eq!(call.progress_token, json!(3));

        let params = json!({
            "name": "countdown",
            "arguments": { "steps": 2, "interval_ms": 10 },
            "_meta": { "progressToken": "p" },
        });
        let call = countdown_call(json!(3), &params).unwrap();
        assert_eq!((call.steps, call.interval), (2, Duration::from_millis(10)));
        assert_eq!(call.progress_token, json!("p"));

        for params in [
            json!({ "name": "other" }),
            json!({ "name": "countdown", "arguments": [] }),
            json!({ "name": "countdown", "arguments": { "steps": -1 } }),
            json!({ "name": "countdown", "arguments": { "steps": 1.5 } }),
            json!({ "name": "countdown", "arguments": { "steps": "3" } }),
            json!({ "name": "countdown", "arguments": { "steps": MAX_STEPS + 1 } }),
            json!({ "name": "countdown", "arguments": { "interval_ms": MAX_INTERVAL_MS + 1 } }),
        ] {
            assert!(countdown_call(json!(1), &params).is_err(), "{params}");
        }
    }

    #[tokio::test]
    async fn unknown_methods_and_bad_params_are_json_rpc_errors() {
        let answer = body_json(call(json!(9), "resources/list", Value::Null)).await;
        assert_eq!(answer["error"]["code"], METHOD_NOT_FOUND);
        assert_eq!(answer["id"], 9);
        let answer = body_json(call(json!(9), "tools/call", json!({ "name": "x" }))).await;
        assert_eq!(answer["error"]["code"], INVALID_PARAMS);
    }
}
