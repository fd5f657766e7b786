//! Cuts after a number of server->client bytes, chosen per connection.

use std::sync::Arc;

use super::{Connection, Faults, Relay};

/// Decides, for the `n`-th accepted connection (0-based), after how many server->client bytes
/// to cut it (`None`: never). The bytes count from the connection's start, headers included,
/// so a cut falls wherever that count does: in the headers, inside an event's line, between
/// events.
#[derive(Clone)]
pub struct CutPolicy(Arc<dyn Fn(usize) -> Option<u64> + Send + Sync>);

impl CutPolicy {
    /// Never cut on a byte count.
    pub fn never() -> Self {
        Self::from_fn(|_| None)
    }

    /// Any closure of the connection index.
    pub fn from_fn(f: impl Fn(usize) -> Option<u64> + Send + Sync + 'static) -> Self {
        Self(Arc::new(f))
    }

    /// Connection `n` is cut after `limits[n]` bytes; later connections are not cut.
    pub fn schedule(limits: Vec<u64>) -> Self {
        Self::from_fn(move |n| limits.get(n).copied())
    }

    /// The first `cuts` connections are cut after a pseudo-random number of
    /// bytes in `min..=max` (deterministic for a seed); later ones are not.
    pub fn seeded(seed: u64, cuts: usize, min: u64, max: u64) -> Self {
        assert!(min <= max);
        let mut state = seed | 1;
        let limits = (0..cuts)
            .map(|_| {
                // xorshift64*
                state ^= state >> 12;
                state ^= state << 25;
                state ^= state >> 27;
                let r = state.wrapping_mul(0x2545_f491_4f6c_dd1d);
                min + r % (max - min + 1)
            })
            .collect();
        Self::schedule(limits)
    }
}

impl Faults for CutPolicy {
    type Connection = ByteLimit;

    async fn connection(&self, index: usize) -> ByteLimit {
        ByteLimit {
            left: (self.0)(index),
        }
    }
}

/// One connection under a [`CutPolicy`]: the server->client bytes it may still carry.
#[derive(Debug)]
pub struct ByteLimit {
    left: Option<u64>,
}

impl Connection for ByteLimit {
    fn response(&mut self, bytes: &[u8]) -> Relay {
        let Some(left) = &mut self.left else {
            return Relay::All;
        };
        let n = bytes.len() as u64;
        if *left <= n {
            // A limit reached exactly at the end of a read cuts now, not after the next one.
            Relay::CutAfter(*left as usize)
        } else {
            *left -= n;
            Relay::All
        }
    }
}
