//! A `tools/call` of a client that declared the extension: answered as it
//! is when its result comes within the threshold, else made a task.

use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use http::{Request, Response, StatusCode};
use http_body::Body;
use serde_json::Value;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tower::Service;

use super::body::{DriverBody, RequestBody, ResponseBody};
use super::driver::{Driver, Template, Upstream};
use super::gateway::{is_event_stream, is_json, own};
use super::layer::TasksConfig;
use super::rpc::{self, Call, Message};
use super::state::{HEADER, ROUND, TaskInfo, TaskState, round_marker};
use crate::layer::hot_tail::HotTail;
use crate::layer::pump;
use crate::metrics::StoreOperation;
use crate::sse::{Block, SseParser};
use crate::store::{NewEvent, NewStream, StreamCall, StreamEnd, StreamId, StreamKind};

/// How many events the driver may write ahead of its pump's commits.
const DRIVER_BUFFER: usize = 16;

/// Handles the call; `inner` has been polled ready.
pub(crate) async fn tools_call<S, ReqB, ResB>(
    mut inner: S,
    parts: http::request::Parts,
    body: Bytes,
    call: Call,
    config: Arc<TasksConfig>,
) -> Result<Response<ResponseBody<ResB>>, S::Error>
where
    S: Service<Request<RequestBody<ReqB>>, Response = Response<ResB>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    ReqB: Send + 'static,
    ResB: Body<Data = Bytes> + Send + 'static,
    ResB::Error: Into<tower::BoxError>,
{
    let mut parts = parts;
    let body = match rpc::without_tasks_declaration(&body) {
        Some(stripped) => {
            // The body changed length; its header follows.
            parts
                .headers
                .insert(http::header::CONTENT_LENGTH, stripped.len().into());
            stripped
        }
        None => body,
    };
    let threshold = config.task_after(call.str_param("name"));
    let identity = config.layer.identity_of(&parts);
    let template = Template::new(&parts, &body);
    let mut pending: crate::store::BoxFuture<'static, Result<Response<ResB>, S::Error>> =
        Box::pin(inner.call(Request::from_parts(parts, RequestBody::full(body))));
    let upstream = if threshold.is_zero() {
        Upstream::Pending(pending)
    } else {
        let deadline = Instant::now() + threshold;
        tokio::select! {
            answered = &mut pending => {
                match within(answered?, &call.id, deadline, &config).await {
                    Ok(response) => return Ok(response),
                    Err((parts, read, rest)) => Upstream::Answered(parts, read, rest),
                }
            }
            () = tokio::time::sleep_until(deadline) => Upstream::Pending(pending),
        }
    };
    // The task's history names the call, as the layer's streams do.
    let mut history = StreamCall::new(call.method.as_str()).request_id(call.id.to_string());
    if let Some(tool) = call.str_param("name") {
        history = history.tool(tool);
    }
    let Some((task, events, answer)) = create(&config, identity, Some(history), &call.id).await
    else {
        // No task could be made: the call is answered as without the gateway.
        return match upstream {
            Upstream::Pending(future) => Ok(future.await?.map(ResponseBody::inner)),
            Upstream::Answered(parts, read, rest) => Ok(Response::from_parts(
                parts,
                ResponseBody::prefixed(read, rest),
            )),
        };
    };
    let driver = Driver {
        inner,
        task,
        template,
        events,
        deadline: Instant::now() + config.ttl(),
        config,
    };
    tokio::spawn(driver.run(upstream, call.id.clone()));
    Ok(own(rpc::result(&call.id, answer)))
}

/// An answer that arrived without its final message in time: its head,
/// what was read of its body, and the rest.
type Arrived<B> = (http::response::Parts, Bytes, std::pin::Pin<Box<B>>);

/// Reads the answer until its final message or `deadline`: `Ok` with the
/// response to send on, unchanged, or `Err` with what arrived so far when
/// the deadline came first.
async fn within<B>(
    response: Response<B>,
    id: &Value,
    deadline: Instant,
    config: &TasksConfig,
) -> Result<Response<ResponseBody<B>>, Arrived<B>>
where
    B: Body<Data = Bytes> + Send + 'static,
{
    let json = is_json(response.headers());
    if response.status() != StatusCode::OK || !(json || is_event_stream(response.headers())) {
        return Ok(response.map(ResponseBody::inner));
    }
    let (parts, body) = response.into_parts();
    let mut body = Box::pin(body);
    let mut read = BytesMut::new();
    let mut parser = (!json).then(|| SseParser::new(config.layer.limits));
    loop {
        let frame = tokio::select! {
            frame = std::future::poll_fn(|cx| body.as_mut().poll_frame(cx)) => frame,
            () = tokio::time::sleep_until(deadline) => {
                return Err((parts, read.freeze(), body));
            }
        };
        let data = match frame {
            Some(Ok(frame)) => match frame.into_data() {
                Ok(data) => data,
                Err(_) => continue,
            },
            // The body ended (a JSON answer is whole) or broke: the client
            // gets it as it is.
            Some(Err(_)) | None => {
                return Ok(Response::from_parts(
                    parts,
                    ResponseBody::prefixed(read.freeze(), body),
                ));
            }
        };
        read.extend_from_slice(&data);
        let Some(parser) = parser.as_mut() else {
            continue;
        };
        parser.feed(data);
        loop {
            match parser.next_block() {
                Ok(Some(Block::Event(event))) => {
                    if event
                        .data
                        .is_some_and(|data| Message::of(&data, id).is_final())
                    {
                        return Ok(Response::from_parts(
                            parts,
                            ResponseBody::prefixed(read.freeze(), body),
                        ));
                    }
                }
                Ok(Some(Block::Comment(_))) => {}
                Ok(None) => break,
                // Not an answer the gateway can follow: sent on as it is.
                Err(_) => {
                    return Ok(Response::from_parts(
                        parts,
                        ResponseBody::prefixed(read.freeze(), body),
                    ));
                }
            }
        }
    }
}

/// Creates the task's stream, commits its header and the marker of its
/// first round (the call sent under `first_round`), and starts its pump:
/// the task's id, the sender of the pump's body, and the
/// `CreateTaskResult`. `None` when the store or the caps refuse (logged).
async fn create(
    config: &TasksConfig,
    identity: Option<String>,
    call: Option<StreamCall>,
    first_round: &Value,
) -> Option<(StreamId, mpsc::Sender<Bytes>, Value)> {
    let shared = &config.shared;
    let caps = config.layer.live_streams;
    if let Some(cap) = shared.live_streams.refusal(None, caps) {
        tracing::warn!(?cap, "too many live streams; this call is not made a task");
        return None;
    }
    let new = NewStream {
        kind: StreamKind::PostResponse,
        session: None,
        identity,
        max_events: config.layer.max_events_per_stream,
        call,
    };
    let event_cap = new.event_cap(&shared.store.retention());
    let info = match shared
        .store
        .create_stream_with_events(
            new,
            vec![
                NewEvent::typed(HEADER, "{}"),
                NewEvent::typed(ROUND, round_marker(first_round)),
            ],
        )
        .await
    {
        Ok(info) => info,
        Err(error) => {
            shared.store_failed(StoreOperation::Create, &error);
            tracing::error!(%error, "event store failed to create a task; answering the call without one");
            return None;
        }
    };
    let task = info.id;
    shared.store_wrote();
    let tail = HotTail::new(task, None);
    if let Err(cap) = shared.live_streams.insert(&tail, caps) {
        tracing::warn!(?cap, "too many live streams; this call is not made a task");
        let _ = shared.store.end_stream(task, StreamEnd::Abandoned).await;
        return None;
    }
    let (events, body) = mpsc::channel(DRIVER_BUFFER);
    pump::spawn(
        DriverBody { events: body },
        tail,
        event_cap,
        None,
        config.pump.clone(),
        shared.clone(),
    );
    shared.counters.streams_started.increment();
    let info = TaskInfo::of(&info, config.ttl_ms(), config.poll_interval_ms());
    let answer = TaskState::default().encode(&info, true);
    tracing::info!(%task, "tool call made a task");
    Some((task, events, answer))
}
