//! What the services of one layer share: the store, the streams produced in
//! this process, and the counters.

use std::sync::Arc;

use super::registry::LiveStreams;
use super::stats::Counters;
use crate::store::EventStore;

/// Shared by a [`ResumabilityLayer`](super::ResumabilityLayer), its clones
/// and every service they make.
pub(crate) struct Shared {
    pub(crate) store: Arc<dyn EventStore>,
    pub(crate) live_streams: LiveStreams,
    pub(crate) counters: Counters,
}

impl Shared {
    pub(crate) fn new(store: Arc<dyn EventStore>) -> Self {
        Self {
            store,
            live_streams: LiveStreams::default(),
            counters: Counters::default(),
        }
    }
}
