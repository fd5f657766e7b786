//! The connection of [`RedisEventStore`](super::RedisEventStore): a single
//! Redis or a Redis Cluster behind one type, so every command and script of
//! the store is written once and runs on both.
//!
//! - **Single Redis** (`redis://`, `redis+unix://`): a
//!   [`ConnectionManager`], which reconnects by itself.
//! - **Redis Cluster** (`redis+cluster://host:port,host:port,...`): the
//!   redis crate's cluster client, which routes each command to the master
//!   of its key's hash slot, follows `MOVED` and `ASK` redirections, and
//!   after a failover refreshes the slot map and retries, with a backoff
//!   bounded by [`RedisOptions::failover_timeout`](super::RedisOptions::failover_timeout).

use std::future::Future;
use std::pin::Pin;
use std::task::Poll;
use std::time::Duration;

use ::redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use ::redis::cluster::{ClusterClient, ClusterClientBuilder};
use ::redis::cluster_async::ClusterConnection;
use ::redis::cluster_routing::{Route, RoutingInfo, SingleNodeRoutingInfo, Slot, SlotAddr};
use ::redis::{Client, Cmd, Pipeline, ProtocolVersion, PushInfo, RedisFuture, RedisResult, Value};

use super::{RedisOptions, backend};
use crate::store::StoreError;

/// The scheme of a Redis Cluster store URL.
pub(super) const CLUSTER_SCHEME: &str = "redis+cluster://";

/// Retries per command on a cluster while slots move or a master fails
/// over (40 waits of up to 500 ms: the failover timeout is what bounds a
/// call). The redis crate computes `10 * 2^retry` ms before capping it,
/// which overflows past 59 retries.
const CLUSTER_RETRIES: u32 = 40;
/// Waits between cluster retries: random, from 10 ms, doubling, at most
/// 500 ms, so a failover is noticed within half a second of its end.
const CLUSTER_MIN_RETRY_WAIT_MS: u64 = 10;
const CLUSTER_MAX_RETRY_WAIT_MS: u64 = 500;

/// Where the store's Redis is, from its URL.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Target {
    /// One Redis (with replicas or Sentinel in front of it, or not).
    Single(String),
    /// The seed nodes of a Redis Cluster, each as a `redis://` URL.
    Cluster(Vec<String>),
}

impl Target {
    /// `redis+cluster://[user:password@]host:port,host:port[/][?query]` is a
    /// cluster, anything else one Redis.
    pub(super) fn parse(url: &str) -> Result<Self, StoreError> {
        let Some(rest) = url.strip_prefix(CLUSTER_SCHEME) else {
            return Ok(Self::Single(url.to_owned()));
        };
        let (address, query) = match rest.split_once('?') {
            Some((address, query)) => (address, Some(query)),
            None => (rest, None),
        };
        let address = address.strip_suffix('/').unwrap_or(address);
        let (userinfo, hosts) = match address.rsplit_once('@') {
            Some((userinfo, hosts)) => (Some(userinfo), hosts),
            None => (None, address),
        };
        let nodes: Vec<String> = hosts
            .split(',')
            .map(str::trim)
            .filter(|host| !host.is_empty())
            .map(|host| {
                let userinfo = userinfo.map(|u| format!("{u}@")).unwrap_or_default();
                let query = query.map(|q| format!("?{q}")).unwrap_or_default();
                format!("redis://{userinfo}{host}/{query}")
            })
            .collect();
        if nodes.is_empty() || hosts.contains('/') {
            return Err(StoreError::backend(
                "parsing the Redis Cluster URL",
                BadClusterUrl,
            ));
        }
        Ok(Self::Cluster(nodes))
    }
}

/// A `redis+cluster://` URL without nodes, or with a path.
#[derive(Debug, thiserror::Error)]
#[error(
    "expected `redis+cluster://[user:password@]host:port,host:port,...` (one or more seed nodes of the cluster, no database path)"
)]
struct BadClusterUrl;

/// The store's connection: cheap to clone, shared by every call.
#[derive(Clone)]
pub(super) enum Conn {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
}

impl Conn {
    /// Connects to `target` with the timeouts of `options`.
    pub(super) async fn open(target: &Target, options: &RedisOptions) -> Result<Self, StoreError> {
        match target {
            Target::Single(url) => {
                let client =
                    Client::open(url.as_str()).map_err(backend("parsing the Redis URL"))?;
                let config = ConnectionManagerConfig::new()
                    .set_response_timeout(Some(options.response_timeout))
                    .set_connection_timeout(Some(options.connection_timeout))
                    // One quick reconnection attempt per command: while Redis
                    // is down, calls fail within about 100 ms (the layer then
                    // serves without resumability) instead of queueing behind
                    // a long backoff; the next command tries again.
                    .set_number_of_retries(1)
                    .set_min_delay(Duration::from_millis(50))
                    .set_max_delay(Duration::from_secs(1));
                let conn = ConnectionManager::new_with_config(client, config)
                    .await
                    .map_err(backend("connecting to Redis"))?;
                Ok(Self::Single(conn))
            }
            Target::Cluster(nodes) => {
                let client = cluster_client(nodes, options, None)?;
                let conn = client
                    .get_async_connection()
                    .await
                    .map_err(backend("connecting to the Redis Cluster"))?;
                Ok(Self::Cluster(conn))
            }
        }
    }

    /// The command that announces a head on a stream's channel from a
    /// script: sharded pub/sub on a cluster, so the message stays on the
    /// stream's shard instead of being broadcast to every node; plain
    /// pub/sub on one Redis (Redis 5 and 6 have no sharded pub/sub).
    pub(super) fn publish_command(&self) -> &'static str {
        match self {
            Self::Single(_) => "PUBLISH",
            Self::Cluster(_) => "SPUBLISH",
        }
    }

    /// `WAIT <replicas> <timeout>` on the master that holds `key` (on a
    /// cluster, routed by the key's slot; `WAIT` names no key): how many
    /// replicas have acknowledged every write this connection made so far.
    pub(super) async fn wait_replicas(
        &self,
        key: &str,
        replicas: u32,
        timeout: Duration,
    ) -> RedisResult<u64> {
        let mut command = ::redis::cmd("WAIT");
        command.arg(replicas).arg(timeout.as_millis().max(1) as u64);
        match self {
            Self::Single(conn) => command.query_async(&mut conn.clone()).await,
            Self::Cluster(conn) => {
                let route = Route::with_slot(Slot::for_key(key), SlotAddr::Master);
                let reply = conn
                    .clone()
                    .route_command(
                        command,
                        RoutingInfo::SingleNode(SingleNodeRoutingInfo::SpecificNode(route)),
                    )
                    .await?;
                Ok(::redis::from_redis_value(reply)?)
            }
        }
    }
}

/// A cluster client for `nodes`: RESP3 with `pushes` for the live tail's
/// sharded pub/sub connection, RESP2 without.
pub(super) fn cluster_client(
    nodes: &[String],
    options: &RedisOptions,
    pushes: Option<tokio::sync::mpsc::UnboundedSender<PushInfo>>,
) -> Result<ClusterClient, StoreError> {
    let mut builder = ClusterClientBuilder::new(nodes.to_vec())
        .connection_timeout(options.connection_timeout)
        .response_timeout(options.response_timeout)
        .overall_response_timeout(Some(options.failover_timeout))
        .retries(CLUSTER_RETRIES)
        .min_retry_wait(CLUSTER_MIN_RETRY_WAIT_MS)
        .max_retry_wait(CLUSTER_MAX_RETRY_WAIT_MS)
        .retry_wait_formula(CLUSTER_MIN_RETRY_WAIT_MS, 2);
    if let Some(pushes) = pushes {
        builder = builder
            .use_protocol(ProtocolVersion::RESP3)
            .push_sender(pushes);
    }
    builder
        .build()
        .map_err(backend("configuring the Redis Cluster client"))
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Self::Single(conn) => conn.req_packed_command(cmd),
            Self::Cluster(conn) => conn.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Self::Single(conn) => conn.req_packed_commands(pipeline, offset, count),
            Self::Cluster(conn) => conn.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Self::Single(conn) => conn.get_db(),
            Self::Cluster(conn) => conn.get_db(),
        }
    }
}

/// Runs `futures` concurrently, and gives their outputs in order: the way
/// to send commands for keys in different hash slots at once (a pipeline
/// must stay in one slot on a cluster); on the multiplexed connections they
/// still share round trips.
pub(super) async fn join_all<F: Future>(futures: Vec<F>) -> Vec<F::Output> {
    let mut pending: Vec<Option<Pin<Box<F>>>> =
        futures.into_iter().map(|f| Some(Box::pin(f))).collect();
    let mut outputs: Vec<Option<F::Output>> = pending.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut done = true;
        for (slot, output) in pending.iter_mut().zip(outputs.iter_mut()) {
            if let Some(future) = slot {
                match future.as_mut().poll(cx) {
                    Poll::Ready(value) => {
                        *output = Some(value);
                        *slot = None;
                    }
                    Poll::Pending => done = false,
                }
            }
        }
        if done { Poll::Ready(()) } else { Poll::Pending }
    })
    .await;
    outputs.into_iter().flatten().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cluster_urls_name_their_seed_nodes() {
        assert_eq!(
            Target::parse("redis://db:6379/0").unwrap(),
            Target::Single("redis://db:6379/0".into())
        );
        assert_eq!(
            Target::parse("redis+cluster://a:7000,b:7001").unwrap(),
            Target::Cluster(vec!["redis://a:7000/".into(), "redis://b:7001/".into()])
        );
        assert_eq!(
            Target::parse("redis+cluster://app:s3cret@a:7000,b:7001/?protocol=resp3").unwrap(),
            Target::Cluster(vec![
                "redis://app:s3cret@a:7000/?protocol=resp3".into(),
                "redis://app:s3cret@b:7001/?protocol=resp3".into()
            ])
        );
        for bad in [
            "redis+cluster://",
            "redis+cluster://,",
            "redis+cluster://a:1/0",
        ] {
            let error = Target::parse(bad).unwrap_err().to_string();
            assert!(error.contains("redis+cluster://"), "{bad}: {error}");
        }
    }

    #[tokio::test]
    async fn join_all_keeps_the_order() {
        let futures: Vec<_> = (0..5u64)
            .map(|i| async move {
                tokio::time::sleep(Duration::from_millis(10 * (5 - i))).await;
                i
            })
            .collect();
        assert_eq!(join_all(futures).await, vec![0, 1, 2, 3, 4]);
    }
}
