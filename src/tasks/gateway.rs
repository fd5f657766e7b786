//! What the gateway does with one 2026-07-28 POST: read and classify its
//! JSON-RPC body, then answer it itself, hand it to the task machinery, or
//! forward it unchanged.

use std::pin::Pin;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use http::header::{self, HeaderMap, HeaderValue};
use http::{Request, Response, StatusCode};
use http_body::Body;
use serde_json::{Value, json};
use tower::Service;

use super::body::{RequestBody, ResponseBody};
use super::layer::TasksConfig;
use super::rpc::{self, Call, Message};
use super::{call, handlers, listen};
use crate::sse::{Block, OutgoingEvent, SseLimits, SseParser, encode_event};

/// The largest `server/discover` answer the gateway rewrites; a larger one
/// is passed on as it is.
const MAX_DISCOVER_BYTES: usize = 4 << 20;

/// Handles one 2026-07-28 POST; `inner` has been polled ready.
pub(crate) async fn handle<S, ReqB, ResB>(
    mut inner: S,
    request: Request<ReqB>,
    config: Arc<TasksConfig>,
) -> Result<Response<ResponseBody<ResB>>, S::Error>
where
    S: Service<Request<RequestBody<ReqB>>, Response = Response<ResB>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    ReqB: Body<Data = Bytes> + Send + 'static,
    ResB: Body<Data = Bytes> + Send + 'static,
    ResB::Error: Into<tower::BoxError>,
{
    let (parts, body) = request.into_parts();
    let (bytes, rest) = read_bounded(Box::pin(body), config.max_request_bytes).await;
    if let Some(rest) = rest {
        // Too large to classify: the service gets it as it came.
        let request = Request::from_parts(parts, RequestBody::prefixed(bytes, rest));
        return forward(inner, request).await;
    }
    let Some(call) = Call::parse(&bytes) else {
        return forward(inner, Request::from_parts(parts, RequestBody::full(bytes))).await;
    };
    if let Some(header) = call.header_mismatch(&parts.headers) {
        let message =
            format!("Header mismatch: the {header} header does not match the request body");
        return Ok(own(rpc::error(
            &call.id,
            rpc::HEADER_MISMATCH,
            &message,
            None,
        )));
    }
    match call.method.as_str() {
        "tasks/get" | "tasks/update" | "tasks/cancel" => {
            if !call.declares_tasks() {
                return Ok(own(rpc::missing_capability(&call.id)));
            }
            let identity = config.layer.identity_of(&parts);
            Ok(own(handlers::task_request(&call, identity, &config).await))
        }
        "tools/call" if call.declares_tasks() => {
            call::tools_call(inner, parts, bytes, call, config).await
        }
        "tools/call"
            if call
                .str_param("name")
                .is_some_and(|tool| config.required_tools.contains(tool)) =>
        {
            Ok(own(rpc::missing_capability(&call.id)))
        }
        "subscriptions/listen" if call.declares_tasks() => {
            let identity = config.layer.identity_of(&parts);
            match listen::listen(&call, identity, config.clone()) {
                Some(events) => {
                    let mut response = Response::new(ResponseBody::events(events));
                    response.headers_mut().insert(
                        header::CONTENT_TYPE,
                        HeaderValue::from_static("text/event-stream"),
                    );
                    response
                        .headers_mut()
                        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
                    Ok(response)
                }
                None => forward(inner, Request::from_parts(parts, RequestBody::full(bytes))).await,
            }
        }
        "server/discover" => {
            let request = Request::from_parts(parts, RequestBody::full(bytes));
            let response = inner.call(request).await?;
            Ok(advertise(response, &call.id).await)
        }
        _ => forward(inner, Request::from_parts(parts, RequestBody::full(bytes))).await,
    }
}

/// Sends `request` to the service and its answer back unchanged.
pub(crate) async fn forward<S, ReqB, ResB>(
    mut inner: S,
    request: Request<RequestBody<ReqB>>,
) -> Result<Response<ResponseBody<ResB>>, S::Error>
where
    S: Service<Request<RequestBody<ReqB>>, Response = Response<ResB>>,
{
    Ok(inner.call(request).await?.map(ResponseBody::inner))
}

/// An answer of the gateway's own.
pub(crate) fn own<B>(response: Response<Bytes>) -> Response<ResponseBody<B>> {
    response.map(ResponseBody::full)
}

/// Reads a body up to `limit` bytes: all of it and `None`, or what was
/// read and the rest, when it is larger or broke (the reader of the rest
/// then sees how).
pub(crate) async fn read_bounded<B>(
    mut body: Pin<Box<B>>,
    limit: usize,
) -> (Bytes, Option<Pin<Box<B>>>)
where
    B: Body<Data = Bytes>,
{
    let mut buffer = BytesMut::new();
    loop {
        if buffer.len() > limit {
            return (buffer.freeze(), Some(body));
        }
        match std::future::poll_fn(|cx| body.as_mut().poll_frame(cx)).await {
            None => return (buffer.freeze(), None),
            Some(Err(_)) => return (buffer.freeze(), Some(body)),
            Some(Ok(frame)) => {
                if let Ok(data) = frame.into_data() {
                    buffer.extend_from_slice(&data);
                }
            }
        }
    }
}

/// Whether a response's content type is `text/event-stream`.
pub(crate) fn is_event_stream(headers: &HeaderMap) -> bool {
    content_type_is(headers, "text/event-stream")
}

/// Whether a response's content type is `application/json`.
pub(crate) fn is_json(headers: &HeaderMap) -> bool {
    content_type_is(headers, "application/json")
}

fn content_type_is(headers: &HeaderMap, essence: &str) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.split(';').next())
        .is_some_and(|value| value.trim().eq_ignore_ascii_case(essence))
}

/// The service's `server/discover` answer with the tasks extension added to
/// its capabilities; any other answer unchanged.
async fn advertise<B>(response: Response<B>, id: &Value) -> Response<ResponseBody<B>>
where
    B: Body<Data = Bytes> + Send + 'static,
{
    let json = is_json(response.headers());
    if response.status() != StatusCode::OK || !(json || is_event_stream(response.headers())) {
        return response.map(ResponseBody::inner);
    }
    let (mut parts, body) = response.into_parts();
    let bytes = match read_bounded(Box::pin(body), MAX_DISCOVER_BYTES).await {
        (bytes, None) => bytes,
        (read, Some(rest)) => {
            return Response::from_parts(parts, ResponseBody::prefixed(read, rest));
        }
    };
    let rewritten = if json {
        add_extension(&bytes, id)
    } else {
        add_extension_to_stream(&bytes, id)
    };
    parts.headers.remove(header::CONTENT_LENGTH);
    match rewritten {
        Some(bytes) => {
            if let Ok(length) = HeaderValue::from_str(&bytes.len().to_string()) {
                parts.headers.insert(header::CONTENT_LENGTH, length);
            }
            Response::from_parts(parts, ResponseBody::full(bytes))
        }
        None => Response::from_parts(parts, ResponseBody::full(bytes)),
    }
}

/// A JSON-RPC `server/discover` result message with the extension added.
fn add_extension(message: &[u8], id: &Value) -> Option<Bytes> {
    if !matches!(Message::of(message, id), Message::Result(_)) {
        return None;
    }
    let mut value: Value = serde_json::from_slice(message).ok()?;
    let result = value.get_mut("result")?.as_object_mut()?;
    let capabilities = result
        .entry("capabilities")
        .or_insert_with(|| json!({}))
        .as_object_mut()?;
    let extensions = capabilities
        .entry("extensions")
        .or_insert_with(|| json!({}))
        .as_object_mut()?;
    extensions.insert(rpc::TASKS_EXTENSION.to_owned(), json!({}));
    Some(Bytes::from(value.to_string()))
}

/// An SSE `server/discover` answer with the extension added to its result.
fn add_extension_to_stream(stream: &[u8], id: &Value) -> Option<Bytes> {
    let mut parser = SseParser::new(SseLimits::default());
    parser.feed(Bytes::copy_from_slice(stream));
    let mut out = BytesMut::with_capacity(stream.len() + 64);
    let mut rewrote = false;
    while let Ok(Some(block)) = parser.next_block() {
        let Block::Event(event) = block else { continue };
        let data = event
            .data
            .as_deref()
            .map(|data| match add_extension(data, id) {
                Some(rewritten) => {
                    rewrote = true;
                    rewritten
                }
                None => Bytes::copy_from_slice(data),
            });
        let outgoing = OutgoingEvent {
            id: event.id.as_deref(),
            event_type: event.event_type.as_deref(),
            data: data.as_deref(),
            retry: event.retry,
        };
        encode_event(&outgoing, &mut out).ok()?;
    }
    rewrote.then(|| out.freeze())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn discover_answers_gain_the_extension_in_json_and_in_sse() {
        let id = json!(1);
        let answer = br#"{"jsonrpc":"2.0","id":1,"result":{"supportedVersions":["2026-07-28"],"capabilities":{"tools":{}}}}"#;
        let rewritten: Value =
            serde_json::from_slice(&add_extension(answer, &id).unwrap()).unwrap();
        assert_eq!(
            rewritten["result"]["capabilities"]["extensions"][rpc::TASKS_EXTENSION],
            json!({})
        );
        assert_eq!(rewritten["result"]["capabilities"]["tools"], json!({}));
        let sse = format!(
            "event: message\ndata: {}\n\n",
            std::str::from_utf8(answer).unwrap()
        );
        let rewritten = add_extension_to_stream(sse.as_bytes(), &id).unwrap();
        assert!(
            std::str::from_utf8(&rewritten)
                .unwrap()
                .contains(rpc::TASKS_EXTENSION)
        );
        // An error, or another id's answer, is left alone.
        assert!(
            add_extension(
                br#"{"jsonrpc":"2.0","id":1,"error":{"code":1,"message":"x"}}"#,
                &id
            )
            .is_none()
        );
        assert!(add_extension(answer, &json!(2)).is_none());
    }
}
