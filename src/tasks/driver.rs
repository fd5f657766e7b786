//! A task's producer: the driver reads the upstream's answer to the call
//! and writes what the task needs of it (progress messages, the final
//! answer) as SSE into the body its pump commits; on `input_required` it
//! waits for the client's answers and re-issues the call with them
//! (SEP-2322), round after round, until the call ends, is cancelled, or its
//! time to live passes.

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::header::{self, HeaderMap};
use http::{Method, Request, Response, StatusCode, Uri, Version};
use http_body::Body;
use serde_json::{Map, Value, json};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tower::Service;

use super::body::RequestBody;
use super::gateway::{is_event_stream, is_json, read_bounded};
use super::layer::TasksConfig;
use super::rpc::{self, Message};
use super::state::{ROUND, Status, TaskState, round_marker};
use crate::sse::{Block, OutgoingEvent, SseParser, encode_event};
use crate::store::{self, BoxFuture, EventBatches, StreamId};

/// Progress messages are kept at most this often: a task's stream holds
/// what a poll can show, not every notification.
const PROGRESS_EVERY: Duration = Duration::from_millis(250);

/// How often a running task's stream is read for a cancellation (see
/// [`until_cancelled`]). A `tasks/cancel` is answered from the stream at
/// once; only the closing of the upstream call waits up to this long.
const CANCEL_CHECK_EVERY: Duration = Duration::from_millis(100);

/// How long the rest of an upstream's stream is read after its final
/// answer (see [`read_to_end`]).
const UPSTREAM_END_GRACE: Duration = Duration::from_secs(1);

/// The upstream's answer to one round, on its way or arrived.
pub(crate) enum Upstream<B, E> {
    /// The call is on its way; its answer has not come.
    Pending(BoxFuture<'static, Result<Response<B>, E>>),
    /// The answer came: its head, what was read of its body, and the rest.
    Answered(http::response::Parts, Bytes, Pin<Box<B>>),
}

/// The client's `tools/call`, to re-issue with answers to input requests.
pub(crate) struct Template {
    method: Method,
    uri: Uri,
    version: Version,
    headers: HeaderMap,
    message: Map<String, Value>,
}

impl Template {
    /// The template of a request whose head is `parts` and body `body`
    /// (one JSON-RPC request, already parsed once).
    pub(crate) fn new(parts: &http::request::Parts, body: &[u8]) -> Self {
        let mut headers = parts.headers.clone();
        headers.remove(header::CONTENT_LENGTH);
        let message = match serde_json::from_slice(body) {
            Ok(Value::Object(message)) => message,
            _ => Map::new(),
        };
        Self {
            method: parts.method.clone(),
            uri: parts.uri.clone(),
            version: parts.version,
            headers,
            message,
        }
    }

    /// The call again, under `id`, with `answers` and the upstream's
    /// `request_state`.
    fn reissue<B>(
        &self,
        id: &Value,
        answers: Map<String, Value>,
        request_state: Option<Value>,
    ) -> Request<RequestBody<B>> {
        let mut message = self.message.clone();
        message.insert("id".to_owned(), id.clone());
        let params = message.entry("params").or_insert_with(|| json!({}));
        if let Some(params) = params.as_object_mut() {
            params.insert("inputResponses".to_owned(), Value::Object(answers));
            match request_state {
                Some(state) => params.insert("requestState".to_owned(), state),
                None => params.remove("requestState"),
            };
        }
        let body = Bytes::from(Value::Object(message).to_string());
        let length = body.len();
        let mut request = Request::new(RequestBody::full(body));
        *request.method_mut() = self.method.clone();
        *request.uri_mut() = self.uri.clone();
        *request.version_mut() = self.version;
        *request.headers_mut() = self.headers.clone();
        request
            .headers_mut()
            .insert(header::CONTENT_LENGTH, length.into());
        request
    }
}

/// Drives one task; see the [module documentation](self).
pub(crate) struct Driver<S> {
    pub(crate) inner: S,
    pub(crate) task: StreamId,
    pub(crate) template: Template,
    /// The body the task's pump reads.
    pub(crate) events: mpsc::Sender<Bytes>,
    pub(crate) config: Arc<TasksConfig>,
    /// When the task's time to live passes.
    pub(crate) deadline: Instant,
}

impl<S> Driver<S> {
    /// Runs the task from its first round, the call sent under `id`.
    pub(crate) async fn run<ReqB, ResB>(mut self, first: Upstream<ResB, S::Error>, id: Value)
    where
        S: Service<Request<RequestBody<ReqB>>, Response = Response<ResB>> + Clone + Send + 'static,
        S::Future: Send + 'static,
        S::Error: Send + 'static,
        ReqB: Send + 'static,
        ResB: Body<Data = Bytes> + Send + 'static,
    {
        let store = self.config.shared.store.clone();
        let mut follow = store::follow(store, self.task, 0);
        let mut state = TaskState::default();
        let mut upstream = first;
        let mut round_id = id;
        let mut round = 1u32;
        let deadline = self.deadline;
        loop {
            // The first round's marker was committed with the task.
            if round > 1 && !self.send(Some(ROUND), round_marker(&round_id)).await {
                return;
            }
            let input_required = tokio::select! {
                input_required = self.forward(upstream, &round_id) => input_required,
                () = until_cancelled(&mut follow, &mut state) => {
                    // Dropping the upstream's answer closes its stream:
                    // in 2026-07-28, that cancels the call.
                    tracing::info!(task = %self.task, "task cancelled; upstream call closed");
                    return;
                }
                () = tokio::time::sleep_until(deadline) => {
                    tracing::info!(task = %self.task, "task's time to live passed; upstream call closed");
                    return;
                }
            };
            if !input_required {
                return;
            }
            // Wait until every input request of this round is answered.
            loop {
                if state.status.is_terminal() {
                    return;
                }
                if state.ready_to_reissue && state.round == round {
                    break;
                }
                tokio::select! {
                    batch = follow.next_batch() => match batch {
                        Some(Ok(events)) => events.iter().for_each(|event| state.apply(event)),
                        Some(Err(error)) => {
                            tracing::warn!(task = %self.task, %error, "cannot follow the task's stream; task stopped");
                            return;
                        }
                        None => return,
                    },
                    () = tokio::time::sleep_until(deadline) => return,
                }
            }
            round += 1;
            let (answers, request_state) = state.answers();
            round_id = json!(format!("mcp-resume-task-{}-{round}", self.task));
            let request = self.template.reissue(&round_id, answers, request_state);
            let mut inner = self.inner.clone();
            upstream = Upstream::Pending(Box::pin(async move {
                std::future::poll_fn(|cx| inner.poll_ready(cx)).await?;
                inner.call(request).await
            }));
        }
    }

    /// Reads one round's answer into the task; returns whether it asks
    /// for input.
    async fn forward<B, E>(&mut self, upstream: Upstream<B, E>, id: &Value) -> bool
    where
        B: Body<Data = Bytes> + Send + 'static,
    {
        let (parts, prefix, mut body) = match upstream {
            Upstream::Pending(future) => match future.await {
                Ok(response) => {
                    let (parts, body) = response.into_parts();
                    (parts, Bytes::new(), Box::pin(body))
                }
                Err(_) => {
                    self.fail(id, "the upstream call failed before it answered".to_owned())
                        .await;
                    return false;
                }
            },
            Upstream::Answered(parts, prefix, body) => (parts, prefix, body),
        };
        let limit = self.config.layer.limits.event_limit();
        if parts.status != StatusCode::OK || is_json(&parts.headers) {
            let (rest, _) = read_bounded(body, limit).await;
            let mut message = BytesMut::from(&prefix[..]);
            message.extend_from_slice(&rest);
            let message = message.freeze();
            let classified = Message::of(&message, id);
            if !classified.is_final() {
                let reason = if parts.status == StatusCode::OK {
                    "the upstream answered without a result for the call".to_owned()
                } else {
                    format!("the upstream answered HTTP {}", parts.status)
                };
                self.fail(id, reason).await;
                return false;
            }
            self.send(None, message).await;
            return matches!(&classified, Message::Result(result) if rpc::is_input_required(result));
        }
        if !is_event_stream(&parts.headers) {
            self.fail(
                id,
                "the upstream answered with neither JSON nor SSE".to_owned(),
            )
            .await;
            return false;
        }
        let mut parser = SseParser::new(self.config.layer.limits);
        parser.feed(prefix);
        let mut last_progress: Option<Instant> = None;
        loop {
            loop {
                let block = match parser.next_block() {
                    Ok(Some(block)) => block,
                    Ok(None) => break,
                    Err(error) => {
                        self.fail(id, format!("the upstream's stream broke: {error}"))
                            .await;
                        return false;
                    }
                };
                let Block::Event(event) = block else { continue };
                let Some(data) = event.data else { continue };
                match Message::of(&data, id) {
                    Message::Progress(Some(_)) => {
                        if last_progress.is_none_or(|at| at.elapsed() >= PROGRESS_EVERY) {
                            last_progress = Some(Instant::now());
                            if !self.send(None, data).await {
                                return false;
                            }
                        }
                    }
                    Message::Result(result) => {
                        self.send(None, data).await;
                        read_to_end(body);
                        return rpc::is_input_required(&result);
                    }
                    final_error @ Message::Error(_) => {
                        debug_assert!(final_error.is_final());
                        self.send(None, data).await;
                        read_to_end(body);
                        return false;
                    }
                    Message::Progress(None) | Message::Other => {}
                }
            }
            match std::future::poll_fn(|cx| body.as_mut().poll_frame(cx)).await {
                Some(Ok(frame)) => {
                    if let Ok(data) = frame.into_data() {
                        parser.feed(data);
                    }
                }
                // Ended or broke without a final answer: the task's stream
                // ends without one, and the task reads as failed.
                Some(Err(_)) | None => return false,
            }
        }
    }

    /// Ends the round with an error of the gateway's own.
    async fn fail(&mut self, id: &Value, message: String) {
        tracing::warn!(task = %self.task, %message, "task failed");
        let error = json!({
            "jsonrpc": "2.0",
            "id": id,
            "error": {"code": rpc::INTERNAL_ERROR, "message": message},
        });
        self.send(None, error.to_string()).await;
    }

    /// Writes one event for the pump; false once the pump is gone.
    async fn send(&mut self, event_type: Option<&str>, data: impl AsRef<[u8]>) -> bool {
        let mut out = BytesMut::new();
        let event = OutgoingEvent {
            event_type: event_type.map(str::as_bytes),
            data: Some(data.as_ref()),
            ..OutgoingEvent::new()
        };
        if encode_event(&event, &mut out).is_err() {
            return false;
        }
        self.events.send(out.freeze()).await.is_ok()
    }
}

/// Reads, in the background and for at most [`UPSTREAM_END_GRACE`], what
/// follows the final answer on an upstream's stream. The upstream closes
/// the stream right after it; a stream read to its end leaves its
/// connection to the pool for the next call, where dropping it unread
/// would close the connection.
fn read_to_end<B>(mut body: Pin<Box<B>>)
where
    B: Body<Data = Bytes> + Send + 'static,
{
    tokio::spawn(async move {
        let rest = async {
            while let Some(Ok(_)) = std::future::poll_fn(|cx| body.as_mut().poll_frame(cx)).await {}
        };
        let _ = tokio::time::timeout(UPSTREAM_END_GRACE, rest).await;
    });
}

/// Resolves once the task's stream shows it cancelled, folding what it
/// reads into `state`; never, if the stream cannot be followed.
///
/// It reads what was committed at most every [`CANCEL_CHECK_EVERY`], and
/// only after the first: most events on the stream are the task's own,
/// and a task that ends sooner is never read back at all.
async fn until_cancelled(follow: &mut EventBatches, state: &mut TaskState) {
    loop {
        tokio::time::sleep(CANCEL_CHECK_EVERY).await;
        match follow.next_batch().await {
            Some(Ok(events)) => {
                events.iter().for_each(|event| state.apply(event));
                if state.status == Status::Cancelled {
                    return;
                }
            }
            Some(Err(_)) | None => std::future::pending::<()>().await,
        }
    }
}
