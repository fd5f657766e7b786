//! What the services of one layer share: the store and what is known of its
//! health, the streams produced in this process, and the counters.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use super::registry::LiveStreams;
use super::sessions::SessionClock;
use super::snapshot::RecentResumes;
use super::stats::Counters;
use crate::metrics::{self, StoreOperation};
use crate::store::{EventStore, StoreError};

/// While the store is known to be failing, the fail-closed policy lets one
/// request through this often, to find out whether it has recovered.
pub(crate) const STORE_PROBE_INTERVAL: Duration = Duration::from_secs(1);

/// Shared by a [`ResumabilityLayer`](super::ResumabilityLayer), its clones
/// and every service they make.
pub(crate) struct Shared {
    pub(crate) store: Arc<dyn EventStore>,
    pub(crate) live_streams: LiveStreams,
    pub(crate) counters: Counters,
    /// When the sessions seen began, for the session-duration metric.
    pub(crate) sessions: SessionClock,
    /// The latest resumes, for [`super::ResumabilityLayer::snapshot`].
    pub(crate) recent_resumes: RecentResumes,
    store_health: StoreHealth,
}

impl Shared {
    pub(crate) fn new(store: Arc<dyn EventStore>) -> Self {
        Self {
            store,
            live_streams: LiveStreams::default(),
            counters: Counters::default(),
            sessions: SessionClock::default(),
            recent_resumes: RecentResumes::default(),
            store_health: StoreHealth::default(),
        }
    }

    /// Counts a failed store operation; the store is failing until a write
    /// succeeds again, and the next probe waits a [`STORE_PROBE_INTERVAL`].
    pub(crate) fn store_failed(&self, operation: StoreOperation, error: &StoreError) {
        self.counters.store_failures.increment();
        metrics::record::store_error(operation, error);
        *self.store_health.lock_next_probe() = Some(Instant::now() + STORE_PROBE_INTERVAL);
        self.store_health.failing.store(true, Ordering::Relaxed);
    }

    /// A write to the store succeeded: it is healthy.
    pub(crate) fn store_wrote(&self) {
        // Read first: the hot path then only reads a shared cache line.
        if self.store_health.failing.load(Ordering::Relaxed) {
            self.store_health.failing.store(false, Ordering::Relaxed);
        }
    }

    /// Whether a request that may open a stream should go to the service
    /// under the fail-closed policy: yes while the store is healthy; while
    /// it is failing, one request per [`STORE_PROBE_INTERVAL`], whose stream
    /// tells whether it recovered.
    pub(crate) fn admits_under_fail_closed(&self) -> bool {
        if !self.store_health.failing.load(Ordering::Relaxed) {
            return true;
        }
        let mut next_probe = self.store_health.lock_next_probe();
        let now = Instant::now();
        if next_probe.is_some_and(|next| now < next) {
            return false;
        }
        *next_probe = Some(now + STORE_PROBE_INTERVAL);
        true
    }
}

/// What the layer has seen of the store lately.
#[derive(Default)]
struct StoreHealth {
    /// An operation failed and no write has succeeded since.
    failing: AtomicBool,
    /// While failing: when the next request may go through as a probe.
    next_probe: Mutex<Option<Instant>>,
}

impl StoreHealth {
    fn lock_next_probe(&self) -> std::sync::MutexGuard<'_, Option<Instant>> {
        // Only an `Option<Instant>` is guarded: a poisoned lock still holds one.
        self.next_probe.lock().unwrap_or_else(|e| e.into_inner())
    }
}
