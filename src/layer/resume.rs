//! Answering a GET with `Last-Event-ID`: check the id belongs to the
//! caller, replay what was missed, then continue live.

use std::sync::Arc;

use bytes::Bytes;
use http::request::Parts;
use http::{Method, Request, Response, StatusCode};
use http_body::Body;
use tower::Service;

use super::body::ResponseBody;
use super::config::Config;
use super::feed::Feed;
use super::hot_tail::HotTail;
use super::open::{Exchange, Opened};
use super::protocol::{self, LAST_EVENT_ID, MCP_SESSION_ID, ResumableVersion};
use super::shared::Shared;
use super::snapshot::{RefusalReason, ResumeOutcome};
use crate::metrics::{self, ResumeResult, StoreOperation};
use crate::store::{EventId, StreamInfo, StreamKind};

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

impl Refusal {
    /// The reason operators see (the status snapshot).
    fn reason(&self) -> RefusalReason {
        match self {
            Self::Malformed => RefusalReason::Malformed,
            Self::Unknown | Self::Ahead => RefusalReason::Unknown,
            Self::Foreign => RefusalReason::Foreign,
            Self::Trimmed => RefusalReason::Trimmed,
            Self::Finished => RefusalReason::Ended,
        }
    }
}

/// Why a resume is not served.
enum NotServed {
    /// Answered `400`, the same whatever the reason.
    Refused(Refusal),
    /// The store failed while looking the stream up: `503`.
    StoreFailed,
}

/// A resume the caller may have: where it resumes, and what the store says
/// of the stream.
struct Authorized {
    id: EventId,
    info: StreamInfo,
    /// The stream's hot tail, when it is produced in this process.
    local: Option<Arc<HotTail>>,
    /// Nothing more will be produced: the hot tail here says so, or, for a
    /// stream not produced here, the store.
    producer_done: bool,
    session: Option<String>,
    identity: Option<String>,
}

/// Serves a resume: authorizes it (with the service too, when configured),
/// replays from the store or the stream's hot tail, and, for a standalone
/// stream whose producer is gone, continues with a fresh one from the
/// service.
pub(crate) async fn resume<S, ReqB, B>(
    mut inner: S,
    request: Request<ReqB>,
    version: ResumableVersion,
    config: Arc<Config>,
    shared: Arc<Shared>,
) -> Result<Response<ResponseBody<B>>, S::Error>
where
    S: Service<Request<ReqB>, Response = Response<B>>,
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<tower::BoxError>,
{
    let (mut parts, body) = request.into_parts();
    let resume = match authorize(&parts, &config, &shared).await {
        Ok(resume) => resume,
        Err(NotServed::Refused(reason)) => {
            shared.counters.rejections.increment();
            let stream = parts.headers.get(&LAST_EVENT_ID);
            let stream = stream.and_then(|id| EventId::parse(id.as_bytes()).ok());
            let outcome = ResumeOutcome::Refused(reason.reason());
            shared
                .recent_resumes
                .record(stream.map(|id| id.stream), outcome);
            metrics::record::resume_refused(reason.reason());
            tracing::info!(?reason, "resume refused");
            return Ok(protocol::cannot_resume().map(ResponseBody::full));
        }
        Err(NotServed::StoreFailed) => {
            metrics::record::resume(ResumeResult::StoreFailed);
            return Ok(protocol::unavailable().map(ResponseBody::full));
        }
    };
    // A standalone stream carries the session's server-initiated messages:
    // once the replay of one whose producer is gone is done, the response
    // continues on a fresh one from the service.
    let continues_standalone = resume.info.kind == StreamKind::Standalone && resume.producer_done;
    let service_answer = if config.authorize_resumes_with_service || continues_standalone {
        parts.headers.remove(&LAST_EVENT_ID);
        let answer = inner.call(Request::from_parts(parts, body)).await?;
        if config.authorize_resumes_with_service && refuses_the_caller(answer.status()) {
            tracing::info!(status = %answer.status(), "the service refused the caller of a resume; passing its answer on");
            metrics::record::resume(ResumeResult::RefusedByService);
            return Ok(answer.map(ResponseBody::inner));
        }
        Some(answer)
    } else {
        None
    };

    let id = resume.id;
    shared.counters.resumes.increment();
    record_resume(&shared, id.stream);
    metrics::record::resume(ResumeResult::Replayed);
    let newest = resume.local.as_ref().map_or(0, |tail| tail.last_seq());
    let behind = newest.max(resume.info.last_seq).saturating_sub(id.seq);
    let outcome = ResumeOutcome::Replayed { behind };
    shared.recent_resumes.record(Some(id.stream), outcome);
    tracing::info!(stream = %id.stream, after = id.seq, state = %resume.info.state, "resuming stream");
    let mut feed = match resume.local {
        Some(tail) => Feed::from_tail(tail.attach(id.seq), shared.clone()),
        None => Feed::from_store(id.stream, id.seq, shared.clone()),
    }
    .resumed()
    .start_response(version, &config);

    if let Some(answer) = service_answer.filter(|_| continues_standalone) {
        let exchange = Exchange {
            method: Method::GET,
            version,
            session: resume.session,
            identity: resume.identity,
            received: std::time::Instant::now(),
        };
        if let Some(fresh) = fresh_standalone(answer, exchange, &config, &shared).await {
            feed = feed.then(fresh);
        }
    }

    let mut response = Response::new(ResponseBody::stream(feed));
    protocol::event_stream_headers(response.headers_mut());
    Ok(response)
}

/// Whether the caller may resume from its `Last-Event-ID`: the id parses,
/// names a stream of the caller's session (and identity, when bound), and a
/// position the store can still replay from.
async fn authorize(
    parts: &Parts,
    config: &Config,
    shared: &Shared,
) -> Result<Authorized, NotServed> {
    use NotServed::Refused;
    let last_event_id = parts
        .headers
        .get(&LAST_EVENT_ID)
        .map(|v| v.as_bytes())
        .unwrap_or_default();
    let id = EventId::parse(last_event_id).map_err(|_| Refused(Refusal::Malformed))?;
    let info = match shared.store.stream_info(id.stream).await {
        Ok(Some(info)) => info,
        Ok(None) => {
            warn_once_of_a_foreign_stream();
            return Err(Refused(Refusal::Unknown));
        }
        Err(error) if error.is_cannot_resume() => return Err(Refused(Refusal::Unknown)),
        Err(error) => {
            shared.store_failed(StoreOperation::Lookup, &error);
            tracing::error!(%error, "event store failed while looking up a resume");
            return Err(NotServed::StoreFailed);
        }
    };
    let session = protocol::header_text(&parts.headers, &MCP_SESSION_ID);
    let identity = config.identity_of(parts);
    if info.session != session || (config.binds_identity() && info.identity != identity) {
        return Err(Refused(Refusal::Foreign));
    }
    if id.seq > info.last_seq {
        return Err(Refused(Refusal::Ahead));
    }
    if id.seq + 1 < info.first_seq {
        return Err(Refused(Refusal::Trimmed));
    }
    let local = shared.live_streams.get(id.stream);
    // The hot tail knows first: the store may not have recorded the end yet.
    let producer_done = local
        .as_ref()
        .map_or(info.state.is_ended(), |tail| tail.has_ended());
    if info.kind == StreamKind::PostResponse && producer_done && id.seq == info.last_seq {
        // Nothing left to replay and nothing more will come (the producer
        // finished, or died with a restart): refuse, so the client fails the
        // request now instead of reconnecting to an empty stream forever.
        return Err(Refused(Refusal::Finished));
    }
    Ok(Authorized {
        id,
        info,
        local,
        producer_done,
        session,
        identity,
    })
}

/// Says once per process what a well-formed id of a stream the store does
/// not have usually means when it is not an expired stream: a fleet whose
/// instances do not share their store. Nothing else can tell: an instance
/// sees neither the other instances nor their stores.
fn warn_once_of_a_foreign_stream() {
    static WARNED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
    if !WARNED.swap(true, std::sync::atomic::Ordering::Relaxed) {
        tracing::warn!(
            "a resume named a stream this event store does not have (expired, or produced by another \
             instance): if several instances serve this endpoint behind a load balancer, they must \
             share one store (Redis), or resumes that land on another instance are refused"
        );
    }
}

/// Whether the service's answer to a resume's request says the caller may
/// not use the session now: unauthenticated, forbidden, or a session the
/// service no longer knows.
fn refuses_the_caller(status: StatusCode) -> bool {
    matches!(
        status,
        StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN | StatusCode::NOT_FOUND
    )
}

/// Opens the service's `answer` to a standalone GET as a fresh stream, to
/// continue a resumed response on.
async fn fresh_standalone<B>(
    answer: Response<B>,
    exchange: Exchange,
    config: &Arc<Config>,
    shared: &Arc<Shared>,
) -> Option<Feed>
where
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<tower::BoxError>,
{
    let opened = if protocol::is_rewritable(&Method::GET, answer.status(), answer.headers()) {
        Some(exchange.open(answer, config, shared).await)
    } else {
        None
    };
    match opened {
        Some(Opened::Stream(_, fresh)) => Some(*fresh),
        Some(Opened::Passthrough(_)) | None => {
            tracing::warn!("could not continue the standalone stream after its replay");
            None
        }
    }
}

/// Counts the resume in the stream's history, off the resume's path: a
/// store that fails to count it loses the count, not the resume.
fn record_resume(shared: &Shared, stream: crate::store::StreamId) {
    let store = shared.store.clone();
    tokio::spawn(async move {
        if let Err(error) = store.record_resume(stream).await {
            tracing::debug!(%stream, %error, "event store did not count a resume in the stream's history");
        }
    });
}
