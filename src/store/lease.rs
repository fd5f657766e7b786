//! Leases on a stream, for fleets of instances sharing one store: the
//! [`LeaseKind`]s, and the in-process table the single-process backends
//! keep them in.

use std::collections::HashMap;
use std::fmt;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::StreamId;

/// The leases an instance holds on a stream, each renewed while it lasts
/// and lapsing on its own when its holder stops renewing it (or dies).
///
/// See [`EventStore::renew_lease`](super::EventStore::renew_lease) for how
/// the layer uses them and for the timing that follows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum LeaseKind {
    /// A client is reading the stream on some instance. Renewed by every
    /// instance serving a reader of a stream it does not produce; the
    /// producing instance consults it before abandoning the stream.
    Attachment,
    /// The stream's producer is alive. Renewed by the producing instance;
    /// readers on other instances consult it, and end a stream whose
    /// producer's lease lapsed as abandoned instead of waiting forever.
    Producer,
}

impl LeaseKind {
    /// A short name, for key names and logs: `attachment` or `producer`.
    pub fn as_str(self) -> &'static str {
        match self {
            LeaseKind::Attachment => "attachment",
            LeaseKind::Producer => "producer",
        }
    }
}

impl fmt::Display for LeaseKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Above this many entries, a renewal first drops the lapsed ones, so the
/// table holds about as many entries as there are leases held now.
const PRUNE_ABOVE: usize = 1024;

/// The leases of a backend whose streams live in one process (memory,
/// SQLite, whose lock file keeps the database to one process): they are
/// only ever renewed and consulted by that process, so a monotonic clock
/// and a map are all they need.
#[derive(Debug, Default)]
pub(crate) struct LeaseTable {
    expiries: Mutex<HashMap<(StreamId, LeaseKind), Instant>>,
    /// Where the table was last pruned to; it is pruned again at twice that.
    pruned_to: Mutex<usize>,
}

impl LeaseTable {
    /// Holds the lease for `ttl` from now.
    pub(crate) fn renew(&self, stream: StreamId, kind: LeaseKind, ttl: Duration) {
        let now = Instant::now();
        let expiry = now
            .checked_add(ttl)
            .unwrap_or(now + Duration::from_secs(86_400 * 365));
        let mut expiries = self.expiries.lock().unwrap_or_else(|e| e.into_inner());
        let mut pruned_to = self.pruned_to.lock().unwrap_or_else(|e| e.into_inner());
        if expiries.len() > PRUNE_ABOVE.max(*pruned_to * 2) {
            expiries.retain(|_, expiry| *expiry > now);
            *pruned_to = expiries.len();
        }
        expiries.insert((stream, kind), expiry);
    }

    /// How long the lease is still held, `None` once it lapsed (or was
    /// never taken).
    pub(crate) fn remaining(&self, stream: StreamId, kind: LeaseKind) -> Option<Duration> {
        let expiries = self.expiries.lock().unwrap_or_else(|e| e.into_inner());
        let expiry = *expiries.get(&(stream, kind))?;
        let remaining = expiry.saturating_duration_since(Instant::now());
        (!remaining.is_zero()).then_some(remaining)
    }

    /// Forgets every lease (the store closed).
    pub(crate) fn clear(&self) {
        self.expiries
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lease_is_held_for_its_ttl_and_kinds_are_separate() {
        let table = LeaseTable::default();
        let stream = StreamId::random();
        assert_eq!(table.remaining(stream, LeaseKind::Attachment), None);
        table.renew(stream, LeaseKind::Attachment, Duration::from_secs(60));
        let left = table.remaining(stream, LeaseKind::Attachment).unwrap();
        assert!(left <= Duration::from_secs(60) && left > Duration::from_secs(59));
        assert_eq!(table.remaining(stream, LeaseKind::Producer), None);
        table.renew(stream, LeaseKind::Attachment, Duration::ZERO);
        assert_eq!(table.remaining(stream, LeaseKind::Attachment), None);
    }

    #[test]
    fn lapsed_leases_are_pruned_so_the_table_stays_bounded() {
        let table = LeaseTable::default();
        for _ in 0..10 * PRUNE_ABOVE {
            table.renew(StreamId::random(), LeaseKind::Producer, Duration::ZERO);
        }
        let len = table.expiries.lock().unwrap().len();
        assert!(len <= PRUNE_ABOVE + 1, "{len} entries kept");
    }
}
