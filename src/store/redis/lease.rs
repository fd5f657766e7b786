//! Leases in Redis ([`LeaseKind`]): one key per stream and kind, holding
//! nothing but an expiry, so every instance of the fleet sees the same
//! leases and a dead instance's leases lapse on their own.

use std::time::Duration;

use ::redis::Value;

use super::{Keys, Shared, backend, millis};
use crate::store::{LeaseKind, StoreError, StreamId};

impl Keys {
    /// The key of a stream's `kind` lease: the stream's metadata key with a
    /// suffix, so it lies in the same hash slot as the stream's other keys
    /// wherever their names put them.
    pub(super) fn lease(&self, stream: StreamId, kind: LeaseKind) -> String {
        format!("{}:lease:{kind}", self.meta(stream))
    }
}

impl Shared {
    /// `SET <lease> 1 PX <ttl>`: holds the lease for `ttl` from now.
    pub(super) async fn renew_lease(
        &self,
        stream: StreamId,
        kind: LeaseKind,
        ttl: Duration,
    ) -> Result<(), StoreError> {
        self.check_open()?;
        // `PX 0` is an error in Redis; a lease of zero is a lease released.
        let ttl_ms = millis(ttl);
        let command = if ttl_ms == 0 {
            let mut command = ::redis::cmd("DEL");
            command.arg(self.keys.lease(stream, kind));
            command
        } else {
            let mut command = ::redis::cmd("SET");
            command
                .arg(self.keys.lease(stream, kind))
                .arg(1)
                .arg("PX")
                .arg(ttl_ms);
            command
        };
        command
            .query_async::<Value>(&mut self.conn())
            .await
            .map(drop)
            .map_err(backend("renewing a stream's lease in Redis"))
    }

    /// `PTTL <lease>`: how long the lease is still held.
    pub(super) async fn lease_left(
        &self,
        stream: StreamId,
        kind: LeaseKind,
    ) -> Result<Option<Duration>, StoreError> {
        self.check_open()?;
        let pttl: i64 = ::redis::cmd("PTTL")
            .arg(self.keys.lease(stream, kind))
            .query_async(&mut self.conn())
            .await
            .map_err(backend("reading a stream's lease from Redis"))?;
        // -2: no such key (lapsed); -1 cannot happen (every lease expires).
        Ok(u64::try_from(pttl)
            .ok()
            .filter(|&ms| ms > 0)
            .map(Duration::from_millis))
    }
}
