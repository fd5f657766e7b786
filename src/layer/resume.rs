//! Answering a GET with `Last-Event-ID`: check the id belongs to the
//! caller, replay what was missed, then continue live.

use std::sync::Arc;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body::Body;
use tower::Service;

use super::body::{Feed, ResponseBody};
use super::open::{Exchange, Opened, unavailable};
use super::protocol::{self, LAST_EVENT_ID, MCP_SESSION_ID, Version};
use super::{Config, Runtime, frame};
use crate::store::{EventId, StreamKind};

/// Why a resume was refused: for the log only, never for the client.
#[derive(Debug)]
enum Refusal {
    Malformed,
    Unknown,
    Foreign,
    /// Before the oldest retained event: trimmed by retention.
    Trimmed,
    /// After the newest event: never issued by this store.
    Ahead,
    /// At the end of a stream whose producer is gone: nothing to resume.
    Finished,
}

pub(crate) async fn resume<S, ReqB, B>(
    mut inner: S,
    request: Request<ReqB>,
    version: Version,
    config: Arc<Config>,
    runtime: Arc<Runtime>,
) -> Result<Response<ResponseBody<B>>, S::Error>
where
    S: Service<Request<ReqB>, Response = Response<B>>,
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<tower::BoxError>,
{
    let (mut parts, body) = request.into_parts();
    let refuse = |reason: Refusal| {
        runtime.counters.rejections.increment();
        tracing::info!(?reason, "resume refused");
        Ok(
            protocol::json_error(StatusCode::BAD_REQUEST, protocol::CANNOT_RESUME_BODY)
                .map(ResponseBody::full),
        )
    };
    let last_event_id = parts
        .headers
        .get(&LAST_EVENT_ID)
        .map(|v| v.as_bytes())
        .unwrap_or_default();
    let Ok(id) = EventId::parse(last_event_id) else {
        return refuse(Refusal::Malformed);
    };
    let info = match runtime.store.stream_info(id.stream).await {
        Ok(Some(info)) => info,
        Ok(None) => return refuse(Refusal::Unknown),
        Err(error) if error.is_cannot_resume() => return refuse(Refusal::Unknown),
        Err(error) => {
            runtime.counters.store_failures.increment();
            tracing::error!(%error, "event store failed while looking up a resume");
            return Ok(unavailable());
        }
    };
    let session = protocol::header_text(&parts.headers, &MCP_SESSION_ID);
    let identity = config.identity_of(&parts);
    if info.session != session || (config.binds_identity() && info.identity != identity) {
        return refuse(Refusal::Foreign);
    }
    if id.seq > info.last_seq {
        return refuse(Refusal::Ahead);
    }
    if id.seq + 1 < info.first_seq {
        return refuse(Refusal::Trimmed);
    }
    let local = runtime.registry.get(id.stream);
    if info.kind == StreamKind::PostResponse
        && info.state.is_ended()
        && local.is_none()
        && id.seq == info.last_seq
    {
        // Nothing left to replay and nothing more will come (the producer
        // finished, or died with a restart): refuse, so the client fails the
        // request now instead of reconnecting to an empty stream forever.
        return refuse(Refusal::Finished);
    }
    runtime.counters.resumes.increment();
    tracing::info!(stream = %id.stream, after = id.seq, state = %info.state, "resuming stream");

    let producer_gone = local.is_none() && info.state.is_ended();
    let mut feed = match local {
        Some(tail) => Feed::from_tail(tail.attach(id.seq), runtime.clone()),
        None => Feed::from_store(id.stream, id.seq, runtime.clone()),
    }
    .resumed();
    feed = if version.primes() {
        // A resumed response is a new SSE stream too: primed at the resume
        // point, so a poll that closes before any event leaves the client its id.
        feed.preamble(frame::priming(id.stream, id.seq, config.retry_millis()))
            .deadline(config.poll_deadline())
    } else {
        feed.retry(config.retry_millis())
    };

    if info.kind == StreamKind::Standalone && producer_gone {
        // The standalone stream carries server-initiated messages for the
        // whole session: after the replay, open a fresh one from the inner
        // service and continue on this response.
        parts.headers.remove(&LAST_EVENT_ID);
        let exchange = Exchange {
            method: Method::GET,
            version,
            session: session.clone(),
            identity,
        };
        let response = inner.call(Request::from_parts(parts, body)).await?;
        if protocol::is_rewritable(&Method::GET, response.status(), response.headers()) {
            match exchange.open(response, &config, &runtime).await {
                Opened::Stream(_, fresh) => feed = feed.then(*fresh),
                Opened::Passthrough(_) | Opened::Unavailable => {
                    tracing::warn!("could not continue the standalone stream after its replay")
                }
            }
        }
    }

    let mut response = Response::new(ResponseBody::stream(feed));
    protocol::event_stream_headers(response.headers_mut());
    Ok(response)
}
