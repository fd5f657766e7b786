//! The layer's settings, as its builder leaves them, and the policy for a
//! failing store.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::registry::Caps;
use crate::sse::SseLimits;

/// What the layer does when the event store fails.
///
/// Under either policy, a request that has reached the service gets the
/// service's answer: when the stream it opens cannot be created in the
/// store, the response passes through untouched, without resumability (and
/// the failure is logged and counted in
/// [`ResumabilityStats::store_failures`](super::ResumabilityStats::store_failures)),
/// rather than being replaced by an error that a client would retry, running
/// a tool with side effects twice. The policies differ in what happens
/// before a request reaches the service and once a stream's events stop
/// being stored.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum StoreFailurePolicy {
    /// Keep serving: every request goes to the service, and a stream whose
    /// events stop being stored mid-way is sent on without ids (an id would
    /// promise a resume the store cannot keep). The default: an MCP call
    /// still succeeds while the store is down.
    #[default]
    FailOpen,
    /// Refuse what cannot be made resumable. While the store is known to be
    /// failing (an operation failed and no write has succeeded since), `POST`
    /// and `GET` requests are answered `503 Service Unavailable` with a
    /// JSON-RPC error *before* they reach the service, except one a second,
    /// which goes through to find out whether the store has recovered. A
    /// stream whose events stop being stored mid-way is ended, so no event is
    /// ever sent that a resume could not replay. For deployments where an
    /// unresumable stream is worse than a failed call.
    FailClosed,
}

/// Maps a request to the identity its streams are bound to.
pub(crate) type IdentityFn = Arc<dyn Fn(&http::request::Parts) -> Option<String> + Send + Sync>;

/// The layer's settings, shared by its services.
#[derive(Clone)]
pub(crate) struct Config {
    pub(crate) retry: Duration,
    pub(crate) detach_timeout: Duration,
    pub(crate) identity: Option<IdentityFn>,
    pub(crate) limits: SseLimits,
    pub(crate) max_events_per_stream: Option<u64>,
    pub(crate) live_streams: Caps,
    pub(crate) on_store_failure: StoreFailurePolicy,
    pub(crate) poll_after: Option<Duration>,
    pub(crate) authorize_resumes_with_service: bool,
    pub(crate) lease_period: Duration,
}

impl Config {
    /// The `retry` hint in milliseconds, as SSE writes it.
    pub(crate) fn retry_millis(&self) -> u64 {
        self.retry.as_millis().min(u128::from(u64::MAX)) as u64
    }

    /// When a response starting now ends in poll mode, if it is on.
    pub(crate) fn poll_deadline(&self) -> Option<Instant> {
        self.poll_after.map(|after| Instant::now() + after)
    }

    /// The shortest lease period: below it, renewals would load the store
    /// more than they protect anything.
    pub(crate) const MIN_LEASE_PERIOD: Duration = Duration::from_millis(10);

    /// How long one renewal of an attachment lease holds: the detach
    /// timeout, counted from the reader's last renewal, plus the period it
    /// may have left since.
    pub(crate) fn attachment_ttl(&self) -> Duration {
        self.detach_timeout.saturating_add(self.lease_period)
    }

    /// How long one renewal of a producer lease holds: three periods, so
    /// two renewals can be late or lost before readers call the producer
    /// dead.
    pub(crate) fn producer_ttl(&self) -> Duration {
        self.lease_period.saturating_mul(3)
    }

    pub(crate) fn binds_identity(&self) -> bool {
        self.identity.is_some()
    }

    pub(crate) fn identity_of(&self, parts: &http::request::Parts) -> Option<String> {
        self.identity.as_ref().and_then(|identity| identity(parts))
    }
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field("retry", &self.retry)
            .field("detach_timeout", &self.detach_timeout)
            .field("identity", &self.identity.as_ref().map(|_| "bound"))
            .field("limits", &self.limits)
            .field("max_events_per_stream", &self.max_events_per_stream)
            .field("live_streams", &self.live_streams)
            .field("on_store_failure", &self.on_store_failure)
            .field("poll_after", &self.poll_after)
            .field(
                "authorize_resumes_with_service",
                &self.authorize_resumes_with_service,
            )
            .field("lease_period", &self.lease_period)
            .finish()
    }
}

/// Sleeps until `deadline`, or forever without one: the optional timers of
/// a pump (detach) and of a client body (poll mode) in a `select!`.
pub(crate) async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}
