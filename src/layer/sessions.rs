//! When each MCP session began, for the session-duration metric
//! ([`metrics::SESSION_DURATION`](crate::metrics::SESSION_DURATION)).

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};
use std::time::Instant;

use crate::metrics;

/// The most sessions whose start is remembered. Past it the older half is
/// forgotten (sessions that clients dropped without a `DELETE` would
/// otherwise pile up): about 100 bytes each, so at most about 10 MB.
const MAX_SESSIONS: usize = 100_000;

/// When the sessions this layer saw begin began, until they end.
#[derive(Debug, Default)]
pub(crate) struct SessionClock {
    began: Mutex<HashMap<String, Instant>>,
}

impl SessionClock {
    fn lock(&self) -> MutexGuard<'_, HashMap<String, Instant>> {
        // Each update is one insert or removal: a poisoned lock holds a valid map.
        self.began.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The service assigned `session` (its answer to an `initialize`).
    pub(crate) fn began(&self, session: &str) {
        let mut began = self.lock();
        if began.len() >= MAX_SESSIONS {
            forget_older_half(&mut began);
        }
        began.insert(session.to_owned(), Instant::now());
    }

    /// `session` ended (deleted, or unknown to the service now): records
    /// how long it lasted, if its start was seen here.
    pub(crate) fn ended(&self, session: &str) {
        let began = self.lock().remove(session);
        if let Some(began) = began {
            metrics::record::session(began.elapsed());
        }
    }
}

fn forget_older_half(began: &mut HashMap<String, Instant>) {
    let mut starts: Vec<Instant> = began.values().copied().collect();
    let middle = starts.len() / 2;
    let (_, cutoff, _) = starts.select_nth_unstable(middle);
    let cutoff = *cutoff;
    began.retain(|_, start| *start >= cutoff);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_older_half_is_forgotten_when_full() {
        let mut began = HashMap::new();
        let start = Instant::now();
        for n in 0..10u32 {
            began.insert(
                n.to_string(),
                start + std::time::Duration::from_secs(n.into()),
            );
        }
        forget_older_half(&mut began);
        assert_eq!(began.len(), 5);
        assert!(began.contains_key("9") && !began.contains_key("4"));
    }

    #[test]
    fn a_session_is_timed_once() {
        let clock = SessionClock::default();
        clock.began("s");
        clock.ended("s");
        clock.ended("s");
        assert!(clock.lock().is_empty());
    }
}
