//! What happens once the inner service has answered: pass the response
//! through, purge a deleted session, or open a resumable stream.

use std::sync::Arc;

use bytes::Bytes;
use http::{Method, Response, StatusCode, response::Parts};
use http_body::Body;

use super::body::{Feed, ResponseBody};
use super::protocol::{self, MCP_SESSION_ID, Version};
use super::tail::{Full, Tail};
use super::{Config, Runtime, StoreFailurePolicy, frame, pump};
use crate::store::{BoxFuture, NewStream, StreamEnd, StreamKind};

/// What the layer knows about a request while its response is on the way.
#[derive(Debug)]
pub(crate) struct Exchange {
    pub(crate) method: Method,
    pub(crate) version: Version,
    pub(crate) session: Option<String>,
    pub(crate) identity: Option<String>,
}

/// The inner response, handled now or after some store work.
pub(crate) enum Handled<B> {
    Now(Response<ResponseBody<B>>),
    Later(BoxFuture<'static, Response<ResponseBody<B>>>),
}

/// A stream the layer opened for an inner response, or why it did not.
pub(crate) enum Opened<B> {
    Stream(Parts, Box<Feed>),
    /// Served as the inner service sent it (store failure under fail-open, or a limit).
    Passthrough(Response<B>),
    /// The store failed and the policy is to fail closed.
    Unavailable,
}

impl Exchange {
    pub(crate) fn handle<B>(
        self,
        response: Response<B>,
        config: Arc<Config>,
        runtime: Arc<Runtime>,
    ) -> Handled<B>
    where
        B: Body<Data = Bytes> + Send + 'static,
        B::Error: Into<tower::BoxError>,
    {
        if self.method == Method::DELETE
            && response.status().is_success()
            && let Some(session) = self.session
        {
            return Handled::Later(Box::pin(async move {
                purge_session(&session, &runtime).await;
                response.map(ResponseBody::inner)
            }));
        }
        if !protocol::is_rewritable(&self.method, response.status(), response.headers()) {
            return Handled::Now(response.map(ResponseBody::inner));
        }
        Handled::Later(Box::pin(async move {
            match self.open(response, &config, &runtime).await {
                Opened::Stream(parts, feed) => {
                    Response::from_parts(parts, ResponseBody::stream(feed))
                }
                Opened::Passthrough(response) => response.map(ResponseBody::inner),
                Opened::Unavailable => unavailable(),
            }
        }))
    }

    /// Creates the stream in the store, starts its pump, and attaches the
    /// requesting client to it.
    pub(crate) async fn open<B>(
        self,
        response: Response<B>,
        config: &Arc<Config>,
        runtime: &Arc<Runtime>,
    ) -> Opened<B>
    where
        B: Body<Data = Bytes> + Send + 'static,
        B::Error: Into<tower::BoxError>,
    {
        // Initialize carries no session id: the server mints it in this response.
        let session = self
            .session
            .or_else(|| protocol::header_text(response.headers(), &MCP_SESSION_ID));
        // Checked before the store is asked for a stream, and again (under
        // the registry's lock) when it is registered.
        if let Some(full) = runtime
            .registry
            .refusal(session.as_deref(), config.live_streams)
        {
            return refused(runtime, full, session.as_deref(), response);
        }
        let kind = if self.method == Method::GET {
            StreamKind::Standalone
        } else {
            StreamKind::PostResponse
        };
        let new = NewStream {
            kind,
            session: session.clone(),
            identity: self.identity,
            max_events: config.max_events_per_stream,
        };
        let cap = new.event_cap(&runtime.store.retention());
        let stream = match runtime.store.create_stream(new).await {
            Ok(stream) => stream,
            Err(error) => {
                runtime.counters.store_failures.increment();
                tracing::error!(%error, "event store failed to create a stream");
                return match config.on_store_failure {
                    StoreFailurePolicy::FailOpen => {
                        runtime.counters.passthrough_streams.increment();
                        tracing::warn!("serving this stream without resumability (fail open)");
                        Opened::Passthrough(response)
                    }
                    StoreFailurePolicy::FailClosed => Opened::Unavailable,
                };
            }
        };
        let tail = Tail::new(stream, session);
        if let Err(full) = runtime.registry.insert(&tail, config.live_streams) {
            // Another stream got the last place meanwhile.
            let _ = runtime.store.end_stream(stream, StreamEnd::Abandoned).await;
            return refused(runtime, full, tail.session.as_deref(), response);
        }
        // Attach before the pump starts, so it never sees zero clients at first.
        let attachment = tail.attach(0);
        let (mut parts, body) = response.into_parts();
        protocol::rewrite_headers(&mut parts.headers);
        pump::spawn(body, tail, cap, config.clone(), runtime.clone());
        runtime.counters.streams_started.increment();
        let feed = Feed::from_tail(attachment, runtime.clone());
        Opened::Stream(
            parts,
            Box::new(first_response_of(feed, self.version, config, stream)),
        )
    }
}

/// Serves a stream the caps refused without resumability, and says why.
fn refused<B>(
    runtime: &Runtime,
    full: Full,
    session: Option<&str>,
    response: Response<B>,
) -> Opened<B> {
    runtime.counters.passthrough_streams.increment();
    match full {
        Full::Layer(limit) => tracing::warn!(
            limit,
            "too many live streams; serving this one without resumability"
        ),
        Full::Session(limit) => tracing::warn!(
            session,
            limit,
            "session has too many live streams; serving this one without resumability"
        ),
    }
    Opened::Passthrough(response)
}

/// The start of a stream's first response: the priming event for clients
/// that expect one (which carries the `retry` hint), else the hint on the
/// first event; and the poll deadline.
fn first_response_of(
    feed: Feed,
    version: Version,
    config: &Config,
    stream: crate::store::StreamId,
) -> Feed {
    let retry = config.retry_millis();
    if version.primes() {
        feed.preamble(frame::priming(stream, 0, retry))
            .deadline(config.poll_deadline())
    } else {
        feed.retry(retry)
    }
}

/// Stops this process's streams of a deleted session and deletes its streams.
async fn purge_session(session: &str, runtime: &Runtime) {
    for tail in runtime.registry.of_session(session) {
        tail.stop();
    }
    match runtime.store.purge_session(session).await {
        Ok(streams) => tracing::info!(session, streams, "session deleted; its streams were purged"),
        Err(error) => {
            runtime.counters.store_failures.increment();
            tracing::error!(session, %error, "event store failed to purge a deleted session");
        }
    }
}

pub(crate) fn unavailable<B>() -> Response<ResponseBody<B>> {
    protocol::json_error(StatusCode::SERVICE_UNAVAILABLE, protocol::UNAVAILABLE_BODY)
        .map(ResponseBody::full)
}
