//! What happens once the inner service has answered a request: pass the
//! response through, purge a deleted session, or open a resumable stream.

use std::sync::Arc;

use bytes::Bytes;
use http::{Method, Response, response::Parts};
use http_body::Body;

use super::body::ResponseBody;
use super::config::Config;
use super::feed::Feed;
use super::hot_tail::HotTail;
use super::protocol::{self, MCP_SESSION_ID, ResumableVersion};
use super::pump;
use super::registry::CapReached;
use super::shared::Shared;
use super::snapshot::StreamLabel;
use crate::metrics::{self, Operation, StoreOperation, Unresumable};
use crate::store::{BoxFuture, NewStream, StreamCall, StreamEnd, StreamKind};

/// What the layer knows about a request while its response is on the way.
#[derive(Debug)]
pub(crate) struct Exchange {
    pub(crate) method: Method,
    pub(crate) version: ResumableVersion,
    pub(crate) session: Option<String>,
    pub(crate) identity: Option<String>,
    /// When the layer received the request (for the operation's duration).
    pub(crate) received: std::time::Instant,
}

/// The inner response, handled now or after some store work.
pub(crate) enum Handled<B> {
    Now(Response<ResponseBody<B>>),
    Later(BoxFuture<'static, Response<ResponseBody<B>>>),
}

/// A stream the layer opened for an inner response, or why it did not.
pub(crate) enum Opened<B> {
    /// The rewritten response's head, and the requesting client's feed.
    Stream(Parts, Box<Feed>),
    /// Served as the inner service sent it (the store failed, or a cap).
    Passthrough(Response<B>),
}

impl Exchange {
    /// Decides what becomes of the inner service's `response`.
    pub(crate) fn handle<B>(
        self,
        response: Response<B>,
        config: Arc<Config>,
        shared: Arc<Shared>,
    ) -> Handled<B>
    where
        B: Body<Data = Bytes> + Send + 'static,
        B::Error: Into<tower::BoxError>,
    {
        self.observe_session(&response, &shared);
        if self.method == Method::DELETE
            && response.status().is_success()
            && let Some(session) = self.session
        {
            return Handled::Later(Box::pin(async move {
                purge_session(&session, &shared).await;
                response.map(ResponseBody::inner)
            }));
        }
        if !protocol::is_rewritable(&self.method, response.status(), response.headers()) {
            if let Some(operation) = self.operation(&response) {
                operation.finished();
            }
            return Handled::Now(response.map(ResponseBody::inner));
        }
        Handled::Later(Box::pin(async move {
            match self.open(response, &config, &shared).await {
                Opened::Stream(parts, feed) => {
                    Response::from_parts(parts, ResponseBody::stream(feed))
                }
                Opened::Passthrough(response) => response.map(ResponseBody::inner),
            }
        }))
    }

    /// Times the session for the session-duration metric: it began when the
    /// service assigned its id, and ends when a `DELETE` of it is accepted or
    /// the service no longer knows it (`404`).
    fn observe_session<B>(&self, response: &Response<B>, shared: &Shared) {
        let status = response.status();
        match &self.session {
            None if status.is_success() => {
                if let Some(assigned) = protocol::header_text(response.headers(), &MCP_SESSION_ID) {
                    shared.sessions.began(&assigned);
                }
            }
            Some(session)
                if status == http::StatusCode::NOT_FOUND
                    || (self.method == Method::DELETE && status.is_success()) =>
            {
                shared.sessions.ended(session);
            }
            _ => {}
        }
    }

    /// The MCP request to time, for a `POST` (other requests are not MCP
    /// operations: a `GET` opens or resumes a stream, a `DELETE` ends a session).
    fn operation<B>(&self, response: &Response<B>) -> Option<Operation> {
        (self.method == Method::POST).then(|| Operation::new(method_of(response), self.received))
    }

    /// Creates the stream in the store, starts its pump, and attaches the
    /// requesting client to it.
    pub(crate) async fn open<B>(
        self,
        mut response: Response<B>,
        config: &Arc<Config>,
        shared: &Arc<Shared>,
    ) -> Opened<B>
    where
        B: Body<Data = Bytes> + Send + 'static,
        B::Error: Into<tower::BoxError>,
    {
        let operation = self.operation(&response);
        // Initialize carries no session id: the server mints it in this response.
        let session = self
            .session
            .or_else(|| protocol::header_text(response.headers(), &MCP_SESSION_ID));
        // Checked before the store is asked for a stream, and again (under
        // the registry's lock) when it is registered.
        if let Some(cap) = shared
            .live_streams
            .refusal(session.as_deref(), config.live_streams)
        {
            return over_cap(shared, cap, session.as_deref(), response, operation);
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
            // An inner service that read the request body says what it was
            // (the proxy does): kept in the stream's history.
            call: response.extensions_mut().remove::<StreamCall>(),
        };
        let event_cap = new.event_cap(&shared.store.retention());
        let label = new.call.as_ref().map(StreamLabel::of);
        let stream = match shared.store.create_stream(new).await {
            Ok(stream) => {
                shared.store_wrote();
                stream
            }
            Err(error) => {
                shared.store_failed(StoreOperation::Create, &error);
                shared.counters.passthrough_streams.increment();
                metrics::record::unresumable(Unresumable::StoreFailure);
                // The request has reached the service, which may have acted
                // on it: its answer is delivered, whatever the policy, rather
                // than replaced by an error the client would retry.
                tracing::error!(
                    %error,
                    "event store failed to create a stream; serving this one without resumability"
                );
                if let Some(operation) = operation {
                    operation.finished();
                }
                return Opened::Passthrough(response);
            }
        };
        let tail = HotTail::new(stream, session);
        if let Some(label) = label {
            tail.opened.set_label(label);
        }
        if let Err(cap) = shared.live_streams.insert(&tail, config.live_streams) {
            // Another stream got the last place meanwhile.
            let _ = shared.store.end_stream(stream, StreamEnd::Abandoned).await;
            return over_cap(shared, cap, tail.session.as_deref(), response, operation);
        }
        // Attach before the pump starts, so it never sees zero clients at first.
        let attachment = tail.attach(0);
        let (mut parts, body) = response.into_parts();
        protocol::rewrite_headers(&mut parts.headers);
        pump::spawn(
            body,
            tail,
            event_cap,
            operation,
            config.clone(),
            shared.clone(),
        );
        shared.counters.streams_started.increment();
        metrics::record::stream_opened();
        let feed = Feed::from_tail(attachment, shared.clone()).start_response(self.version, config);
        Opened::Stream(parts, Box::new(feed))
    }
}

/// Serves a stream the caps refused without resumability, and says why.
/// Its operation is timed to its response's head: the layer does not follow
/// a response it passes through.
fn over_cap<B>(
    shared: &Shared,
    cap: CapReached,
    session: Option<&str>,
    response: Response<B>,
    operation: Option<Operation>,
) -> Opened<B> {
    if let Some(operation) = operation {
        operation.finished();
    }
    shared.counters.passthrough_streams.increment();
    metrics::record::unresumable(match cap {
        CapReached::Layer(_) => Unresumable::LiveStreamCap,
        CapReached::Session(_) => Unresumable::SessionStreamCap,
    });
    match cap {
        CapReached::Layer(limit) => tracing::warn!(
            limit,
            "too many live streams; serving this one without resumability"
        ),
        CapReached::Session(limit) => tracing::warn!(
            session,
            limit,
            "session has too many live streams; serving this one without resumability"
        ),
    }
    Opened::Passthrough(response)
}

/// The JSON-RPC method of the request `response` answers, when the service
/// said which: the proxy does, with a [`StreamCall`] in the response's
/// extensions.
fn method_of<B>(response: &Response<B>) -> Option<&str> {
    response
        .extensions()
        .get::<StreamCall>()
        .map(|call| call.method.as_str())
}

/// Stops this process's streams of a deleted session and deletes its streams.
async fn purge_session(session: &str, shared: &Shared) {
    for tail in shared.live_streams.of_session(session) {
        tail.stop();
    }
    match shared.store.purge_session(session).await {
        Ok(streams) => tracing::info!(session, streams, "session deleted; its streams were purged"),
        Err(error) => {
            shared.store_failed(StoreOperation::Purge, &error);
            tracing::error!(session, %error, "event store failed to purge a deleted session");
        }
    }
}
