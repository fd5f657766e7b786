//! [`RedisEventStore`]: the shared backend, for a fleet of servers behind a
//! load balancer.

mod conn;
mod heads;
mod history;
mod lease;
mod scripts;

use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, UNIX_EPOCH};

use ::redis::{RedisError, Value};
use tokio::task::AbortHandle;

use self::conn::{Conn, Target, join_all};
use self::heads::{HeadRelay, LiveTail};
use self::scripts::SCRIPTS;
use super::memory::check_position;
use super::{
    AppendReceipt, Batch, BoxFuture, EventStore, NewEvent, NewStream, ReadLimit, Retention,
    StoreError, StoredEvent, StreamEnd, StreamHead, StreamId, StreamInfo, StreamKind, StreamState,
    Subscription, SweepReport,
};

/// The metadata fields a read returns, in this order.
const META_FIELDS: [&str; 8] = [
    "kind", "state", "first", "last", "created", "active", "session", "identity",
];
/// At most this many events are asked of Redis per read, whatever the
/// [`ReadLimit`]: a batch may be smaller than the limit, and readers loop.
const MAX_READ_COUNT: usize = 4096;
/// Sweeps handle at most this many streams (or dead instances) per script
/// call, so no call blocks Redis for long.
const SWEEP_BATCH: usize = 500;
/// Expiries are capped here (about ten years): Redis refuses expiry times
/// that overflow, and nothing needs longer.
const MAX_EXPIRY_MS: u128 = 10 * 365 * 24 * 3600 * 1000;

/// Configuration for [`RedisEventStore`]; [`open`](Self::open) connects.
///
/// ```
/// use std::time::Duration;
/// use mcp_resume::store::{RedisOptions, Retention};
///
/// let options = RedisOptions::new("redis://127.0.0.1:6379/0")
///     .key_prefix("my-app:mcp:")
///     .retention(Retention::new().max_age(Duration::from_secs(15 * 60)))
///     .instance_lease(Duration::from_secs(20));
/// ```
#[derive(Clone, Debug)]
pub struct RedisOptions {
    url: String,
    prefix: String,
    retention: Retention,
    instance_lease: Duration,
    response_timeout: Duration,
    connection_timeout: Duration,
    failover_timeout: Duration,
    replicas: u32,
    replica_timeout: Duration,
}

impl RedisOptions {
    /// The prefix every key and channel of the store starts with, unless
    /// [`key_prefix`](Self::key_prefix) says otherwise.
    pub const DEFAULT_PREFIX: &'static str = "mcp-resume:";

    /// How long an instance's live streams outlive its last heartbeat, unless
    /// [`instance_lease`](Self::instance_lease) says otherwise: 30 seconds,
    /// long enough to ride out a brief network cut, short enough that
    /// followers of a crashed instance's streams stop soon.
    pub const DEFAULT_INSTANCE_LEASE: Duration = Duration::from_secs(30);

    /// The shortest lease [`instance_lease`](Self::instance_lease) accepts
    /// (1 second); shorter ones are raised to it.
    pub const MIN_INSTANCE_LEASE: Duration = Duration::from_secs(1);

    /// How long a command waits for Redis's answer, unless
    /// [`response_timeout`](Self::response_timeout) says otherwise: 2
    /// seconds, so no call hangs while Redis is unreachable.
    pub const DEFAULT_RESPONSE_TIMEOUT: Duration = Duration::from_secs(2);

    /// How long one connection attempt may take, unless
    /// [`connection_timeout`](Self::connection_timeout) says otherwise: 1
    /// second.
    pub const DEFAULT_CONNECTION_TIMEOUT: Duration = Duration::from_secs(1);

    /// How long a call keeps retrying on a Redis Cluster while a master
    /// fails over or slots move, unless
    /// [`failover_timeout`](Self::failover_timeout) says otherwise: 5
    /// seconds.
    pub const DEFAULT_FAILOVER_TIMEOUT: Duration = Duration::from_secs(5);

    /// How long a write waits for its replicas when
    /// [`wait_for_replicas`](Self::wait_for_replicas) asks for some, unless
    /// it says otherwise: 1 second.
    pub const DEFAULT_REPLICA_TIMEOUT: Duration = Duration::from_secs(1);

    /// Options for the Redis at `url`, with every other setting at its
    /// default:
    ///
    /// - one Redis: `redis://[user:password@]host:port/db` or
    ///   `redis+unix:///path/to/socket`;
    /// - a Redis Cluster: `redis+cluster://[user:password@]host:port,host:port,...`,
    ///   any reachable nodes of the cluster (the client discovers the rest).
    ///
    /// (`rediss://`, TLS, needs a TLS feature of the `redis` crate, which
    /// this crate does not turn on.)
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            prefix: Self::DEFAULT_PREFIX.to_string(),
            retention: Retention::default(),
            instance_lease: Self::DEFAULT_INSTANCE_LEASE,
            response_timeout: Self::DEFAULT_RESPONSE_TIMEOUT,
            connection_timeout: Self::DEFAULT_CONNECTION_TIMEOUT,
            failover_timeout: Self::DEFAULT_FAILOVER_TIMEOUT,
            replicas: 0,
            replica_timeout: Self::DEFAULT_REPLICA_TIMEOUT,
        }
    }

    /// The prefix of every key and pub/sub channel the store uses. Instances
    /// that serve the same MCP endpoint must use the same prefix; different
    /// applications sharing a Redis, different ones. Default:
    /// [`Self::DEFAULT_PREFIX`] (`mcp-resume:`).
    pub fn key_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// The retention applied to the store. Default: [`Retention::default`].
    /// Every instance sharing a prefix should use the same.
    pub fn retention(mut self, retention: Retention) -> Self {
        self.retention = retention;
        self
    }

    /// How long an instance's live streams outlive its last heartbeat (sent
    /// every third of this). When an instance dies without closing its store,
    /// another instance's sweep ends its live streams as
    /// [abandoned](StreamState::Abandoned) once the lease has run out, so
    /// their followers stop. An instance cut off from Redis for longer than
    /// this has its streams abandoned too: appends to them then fail with
    /// [`StoreError::StreamEnded`]. Default: [`Self::DEFAULT_INSTANCE_LEASE`]
    /// (30 seconds); at least [`Self::MIN_INSTANCE_LEASE`] (1 second).
    pub fn instance_lease(mut self, lease: Duration) -> Self {
        self.instance_lease = lease.max(Self::MIN_INSTANCE_LEASE);
        self
    }

    /// How long a command waits for Redis's answer before failing with
    /// [`StoreError::Backend`]. Default: [`Self::DEFAULT_RESPONSE_TIMEOUT`]
    /// (2 seconds).
    pub fn response_timeout(mut self, timeout: Duration) -> Self {
        self.response_timeout = timeout;
        self
    }

    /// How long one connection attempt may take. Default:
    /// [`Self::DEFAULT_CONNECTION_TIMEOUT`] (1 second).
    pub fn connection_timeout(mut self, timeout: Duration) -> Self {
        self.connection_timeout = timeout;
        self
    }

    /// On a Redis Cluster, how long a call keeps retrying (with a backoff of
    /// at most half a second) while a master fails over or slots move,
    /// before it fails with [`StoreError::Backend`]. Set it above the time
    /// your cluster takes to fail over (about `cluster-node-timeout` plus a
    /// second or two) for calls to ride through a failover. No effect on a
    /// single Redis. Default: [`Self::DEFAULT_FAILOVER_TIMEOUT`] (5 seconds).
    pub fn failover_timeout(mut self, timeout: Duration) -> Self {
        self.failover_timeout = timeout;
        self
    }

    /// Acknowledges a write (creating, appending to and ending a stream)
    /// only once `replicas` replicas of its master have it (`WAIT`), within
    /// `timeout`; when fewer confirm in time, the call fails with
    /// [`StoreError::Backend`] (the write may still have been applied). A
    /// failover then keeps every acknowledged append: Redis promotes a
    /// replica that has it. Each acknowledged write costs a replication
    /// round trip, and writes on one connection wait behind it. Default: 0
    /// (acknowledged once the master applied it; a failover can lose the
    /// last acknowledged writes). The timeout defaults to
    /// [`Self::DEFAULT_REPLICA_TIMEOUT`] (1 second).
    pub fn wait_for_replicas(mut self, replicas: u32, timeout: Duration) -> Self {
        self.replicas = replicas;
        self.replica_timeout = timeout;
        self
    }

    /// Connects and opens the store; see [`RedisEventStore`].
    pub async fn open(self) -> Result<RedisEventStore, StoreError> {
        RedisEventStore::open_with(self).await
    }

    /// Connects to look at the store only (what `mcp-resume inspect` does):
    /// no instance is registered and no head relay or maintenance task
    /// starts, so reading ([`list_streams`](EventStore::list_streams),
    /// [`read_batch`](EventStore::read_batch), [`stream_info`](EventStore::stream_info))
    /// changes nothing in Redis. Not for serving: nothing would sweep, and
    /// followers would not be woken.
    pub async fn open_read_only(self) -> Result<RedisEventStore, StoreError> {
        RedisEventStore::connect_with(self, false).await
    }
}

/// An [`EventStore`] on Redis Streams, shared by every instance of a fleet:
/// a stream produced on one instance can be resumed and followed live on any
/// other (feature `redis`).
///
/// # Layout
///
/// With the default prefix `mcp-resume:`, for a stream `<id>` (32 hex
/// digits). The part in braces is the key's *hash tag*: on a Redis Cluster,
/// keys with the same tag are in the same hash slot, so a stream's keys stay
/// together, and the streams spread over the cluster's masters.
///
/// | key | type | holds |
/// |---|---|---|
/// | `mcp-resume:log:{<id>}` | stream | the events; entry id `<seq>-0`, fields `d` (data) and `t` (SSE event type, when there is one) |
/// | `mcp-resume:meta:{<id>}` | hash | `kind`, `state`, `session`, `identity`, `cap` (max events), `first` and `last` (retained range), `created`, `active` (last activity), `owner` (instance) |
/// | `mcp-resume:head:{<id>}` | pub/sub channel | `<last_seq> <state>` after each append and at the end |
/// | `mcp-resume:session:{<session>}` | set | the ids of the session's streams, for [`purge_session`](EventStore::purge_session) |
/// | `mcp-resume:{index}:ended` | sorted set | ended streams by end time, for the sweep |
/// | `mcp-resume:{index}:ended-sessions` | hash | the session of each ended stream that has one, so the sweep takes it out of its session's set even after the backstop expiry (below) deleted its metadata |
/// | `mcp-resume:{index}:owner:<instance>` | set | the live streams an instance produces |
/// | `mcp-resume:{index}:instances` | sorted set | instances by lease expiry |
///
/// Every write to a stream is one Lua script on the stream's keys, so it is
/// atomic: an append reads the last sequence from the metadata, adds each
/// event with the explicit id `<seq>-0` (so a read by sequence is an exact
/// `XRANGE`), trims to the stream's cap with `XTRIM MAXLEN`, records the
/// first retained sequence and the activity time, and publishes the new
/// head. Two instances appending to one stream can never produce a gap or a
/// duplicate. A read is one script too: the metadata and an `XRANGE` from
/// `after + 1`, in one round trip. Timestamps are taken from the Redis
/// server's clock, so instances with skewed clocks agree.
///
/// Every script touches the keys of one slot only, all passed in `KEYS`.
/// What spans a stream and the indexes is done in steps, each idempotent,
/// ordered so that a sequence cut short is harmless and completed later:
/// a stream is indexed (owner, session) before it is created; an ended
/// stream is indexed after it ended, by [`end_stream`](EventStore::end_stream)
/// and again by any retry of it; a purge deletes each stream, then its index
/// entries, then the session's set; the sweep ends a dead instance's streams
/// one by one before it drops the instance. A step that never runs leaves
/// at most an index entry for a stream that is gone, which every reader
/// skips, or an ended stream outside the sweep's index, which the backstop
/// expiry deletes.
///
/// # Topology
///
/// The same code runs on a single Redis (with replicas or Sentinel) and on
/// a Redis Cluster (URL `redis+cluster://host:port,host:port,...`; see
/// [`RedisOptions::new`]). On a cluster, the client routes each command to
/// the master of its slot, follows `MOVED` and `ASK` redirections, and rides
/// through a failover by retrying for up to
/// [`failover_timeout`](RedisOptions::failover_timeout). The per-event work
/// (appends, reads, heads) spreads over the masters by stream id; the
/// fleet-wide indexes (`{index}`) live on one slot, written once per stream
/// created and ended and by the sweep.
///
/// # Live tail
///
/// Each store runs a task with a dedicated pub/sub connection, subscribed
/// to the channels of the streams followed on this instance, which feeds the
/// [`Subscription`]s' watch channels; [`follow`](super::follow) therefore
/// works unchanged across instances. After a reconnection it re-reads the
/// heads it follows, so nothing announced while it was disconnected is
/// missed, and an ended stream reports its final head. On a single Redis
/// this is plain pub/sub (`PUBLISH`, `SUBSCRIBE`: Redis 5 and later); on a
/// cluster, sharded pub/sub (`SPUBLISH`, `SSUBSCRIBE`: Redis 7 and later),
/// so a head travels only within its stream's shard, and the subscription
/// follows the slot to the new master after a failover (the heads are then
/// re-read).
///
/// # Retention
///
/// Each stream keeps its newest `max_events_per_stream` events (`XTRIM
/// MAXLEN`); a position before them is refused with [`StoreError::Trimmed`].
/// Live streams never expire. An ended stream is deleted by the sweep once
/// idle for [`Retention::max_age`] (every instance sweeps every
/// [`Retention::sweep_interval`]; the scripts make concurrent sweeps safe),
/// and its keys carry a `PEXPIRE` of `max_age + sweep_interval` as a
/// backstop for when no instance is running.
///
/// A store that is dropped without [`close`](EventStore::close) (a crash)
/// leaves its live streams live; the other instances end them as abandoned
/// once its [lease](RedisOptions::instance_lease) has run out (a later
/// instance with the same prefix does it too).
///
/// # Failures
///
/// While Redis is unreachable, every call fails with
/// [`StoreError::Backend`] within about the configured timeouts (no call
/// hangs, nothing panics), followers keep waiting, and the connections come
/// back on their own when Redis does. An append whose call failed may or may
/// not have been committed; one that returned was committed by Redis.
///
/// # Redis settings that matter
///
/// - **Persistence.** Redis answers an append once it is in memory. What a
///   crash of Redis itself loses depends on its configuration:
///   `appendonly yes` with `appendfsync everysec` (the usual choice) can
///   lose the last second of appends; `appendfsync always` loses nothing that
///   was acknowledged, at the cost of an fsync per write; RDB snapshots alone
///   (`save`) lose everything since the last snapshot; no persistence loses
///   every stream on a restart (resumes are then refused as unknown, which
///   is safe, but not resumable).
/// - **`maxmemory-policy noeviction`.** With an evicting policy Redis may
///   drop a stream's log or metadata under memory pressure, and a resume
///   then fails or, worse, a live stream vanishes under its producer. With
///   `noeviction`, a full Redis refuses writes, appends fail with
///   [`StoreError::Backend`], and the layer's
///   [failure policy](crate::layer::StoreFailurePolicy) applies. Size
///   `maxmemory` for `max_events_per_stream` times the event size times the
///   streams alive within `max_age`.
/// - **Replication.** Replicas are updated asynchronously: by default a
///   failover can lose the last acknowledged appends, like `everysec`. With
///   [`wait_for_replicas`](RedisOptions::wait_for_replicas) a write is
///   acknowledged only once replicas have it (`WAIT`), and a failover that
///   promotes one of them keeps it.
/// - **Topology.** A single Redis (5.0 or newer), with replicas or
///   Sentinel, or a Redis Cluster (7.0 or newer, for sharded pub/sub).
/// - `client-output-buffer-limit pubsub` may cut a slow live-tail
///   connection; the store reconnects and catches up by itself.
///
/// # Example
///
/// ```no_run
/// use std::sync::Arc;
/// use mcp_resume::ResumabilityLayer;
/// use mcp_resume::store::{EventStore, RedisOptions, Retention};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), mcp_resume::store::StoreError> {
/// let store = RedisOptions::new("redis://127.0.0.1:6379/")
///     .retention(Retention::new().max_events_per_stream(5_000))
///     .open()
///     .await?;
/// // Every instance of the fleet builds its layer on the same Redis.
/// let layer = ResumabilityLayer::new(Arc::new(store));
/// // ... `.layer(layer)` on the MCP endpoint; at shutdown:
/// layer.store().close().await?;
/// # Ok(())
/// # }
/// ```
pub struct RedisEventStore {
    shared: Arc<Shared>,
    tasks: Mutex<Vec<AbortHandle>>,
}

/// What the store and its tasks share.
struct Shared {
    conn: Conn,
    keys: Keys,
    retention: Retention,
    /// This store's id in the `instances` index and the `owner` field.
    instance: String,
    lease: Duration,
    closed: AtomicBool,
    heads: Arc<HeadRelay>,
    /// Since when every heartbeat has succeeded; `None` after a failure.
    /// Dead instances are only abandoned after a full lease of good health,
    /// so an outage of Redis itself (which stops every heartbeat) does not
    /// make live instances look dead.
    healthy_since: Mutex<Option<Instant>>,
    /// Replicas that must have a write before it is acknowledged, and how
    /// long to wait for them (0: acknowledge at once).
    replicas: u32,
    replica_timeout: Duration,
    /// The failover timeout, on a cluster: a call that timed out waited
    /// this long for the cluster.
    cluster_timeout: Option<Duration>,
}

/// Key and channel names: the one place that spells them (see the layout
/// in [`RedisEventStore`]). A stream's names share the hash tag
/// `{<stream id>}`, the indexes' the tag `{index}`, so each script's keys
/// are in one slot of a Redis Cluster.
#[derive(Clone, Debug)]
struct Keys {
    prefix: String,
}

impl Keys {
    /// The stream's metadata hash; more fields of a stream go in it (or in
    /// keys named after it, which share its slot).
    fn meta(&self, stream: StreamId) -> String {
        format!("{}meta:{{{stream}}}", self.prefix)
    }

    fn log(&self, stream: StreamId) -> String {
        format!("{}log:{{{stream}}}", self.prefix)
    }

    fn channel(&self, stream: StreamId) -> String {
        format!("{}head:{{{stream}}}", self.prefix)
    }

    fn session(&self, session: &str) -> String {
        format!("{}session:{{{session}}}", self.prefix)
    }

    fn ended(&self) -> String {
        format!("{}{{index}}:ended", self.prefix)
    }

    fn ended_sessions(&self) -> String {
        format!("{}{{index}}:ended-sessions", self.prefix)
    }

    fn instances(&self) -> String {
        format!("{}{{index}}:instances", self.prefix)
    }

    fn owner(&self, instance: &str) -> String {
        format!("{}{{index}}:owner:{instance}", self.prefix)
    }

    fn stream_of_channel(&self, channel: &str) -> Option<StreamId> {
        channel
            .strip_prefix(self.prefix.as_str())?
            .strip_prefix("head:{")?
            .strip_suffix('}')?
            .parse()
            .ok()
    }
}

/// Data in Redis that this store did not write (or a newer version did).
#[derive(Debug, thiserror::Error)]
#[error("unexpected data in Redis ({what}); is another application using the key prefix?")]
struct Unexpected {
    what: String,
}

fn unexpected(context: &'static str, what: impl Into<String>) -> StoreError {
    StoreError::backend(context, Unexpected { what: what.into() })
}

fn backend(context: &'static str) -> impl FnOnce(RedisError) -> StoreError {
    move |error| StoreError::backend(context, error)
}

fn millis(duration: Duration) -> u64 {
    duration.as_millis().min(MAX_EXPIRY_MS) as u64
}

impl RedisEventStore {
    /// Connects to the Redis at `url` with the default options.
    pub async fn connect(url: impl Into<String>) -> Result<Self, StoreError> {
        RedisOptions::new(url).open().await
    }

    /// Connects with `options`, registers this instance, and starts the
    /// head relay (which feeds followers on this instance) and maintenance
    /// tasks (on the current Tokio runtime).
    ///
    /// Fails with [`StoreError::Backend`] if the URL is invalid or Redis
    /// cannot be reached now; once open, the store rides out Redis restarts.
    pub async fn open_with(options: RedisOptions) -> Result<Self, StoreError> {
        Self::connect_with(options, true).await
    }

    /// Connects; with `serve`, registers this instance and starts the tasks.
    async fn connect_with(options: RedisOptions, serve: bool) -> Result<Self, StoreError> {
        let target = Target::parse(&options.url)?;
        let conn = Conn::open(&target, &options).await?;
        let keys = Keys {
            prefix: options.prefix.clone(),
        };
        let heads = Arc::new(HeadRelay::new(keys.clone(), options.response_timeout));
        let tail = LiveTail::new(&target, &options)?;
        let shared = Arc::new(Shared {
            conn: conn.clone(),
            keys,
            retention: options.retention,
            instance: StreamId::random().to_string(),
            lease: options.instance_lease,
            closed: AtomicBool::new(false),
            heads: heads.clone(),
            healthy_since: Mutex::new(None),
            replicas: options.replicas,
            replica_timeout: options.replica_timeout,
            cluster_timeout: matches!(target, Target::Cluster(_))
                .then_some(options.failover_timeout),
        });
        let tasks = if serve {
            shared.heartbeat().await?;
            vec![
                tokio::spawn(heads.run(tail, conn)).abort_handle(),
                tokio::spawn(maintain(shared.clone())).abort_handle(),
            ]
        } else {
            shared.ping("connecting to Redis").await?;
            Vec::new()
        };
        Ok(Self {
            shared,
            tasks: Mutex::new(tasks),
        })
    }

    fn stop_tasks(&self) {
        let tasks = std::mem::take(&mut *self.tasks.lock().unwrap_or_else(|e| e.into_inner()));
        for task in tasks {
            task.abort();
        }
    }
}

impl Drop for RedisEventStore {
    fn drop(&mut self) {
        self.stop_tasks();
    }
}

impl fmt::Debug for RedisEventStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisEventStore")
            .field("prefix", &self.shared.keys.prefix)
            .field("instance", &self.shared.instance)
            .field("retention", &self.shared.retention)
            .field("closed", &self.shared.closed.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl Shared {
    fn check_open(&self) -> Result<(), StoreError> {
        if self.closed.load(Ordering::Acquire) {
            return Err(StoreError::Closed);
        }
        Ok(())
    }

    fn conn(&self) -> Conn {
        self.conn.clone()
    }

    /// Wraps a Redis error with what the store was doing; on a cluster, a
    /// call that timed out says it waited the whole failover timeout.
    fn backend(&self, context: &'static str) -> impl FnOnce(RedisError) -> StoreError + use<> {
        let cluster_timeout = self.cluster_timeout;
        move |error| match cluster_timeout {
            Some(timeout) if error.is_timeout() => {
                StoreError::backend(context, ClusterTimedOut { timeout, error })
            }
            _ => StoreError::backend(context, error),
        }
    }

    /// One round trip to Redis (every master of a cluster), within the
    /// response timeout.
    async fn ping(&self, context: &'static str) -> Result<(), StoreError> {
        ::redis::cmd("PING")
            .query_async::<Value>(&mut self.conn())
            .await
            .map(drop)
            .map_err(self.backend(context))
    }

    /// The expiry of an ended stream's keys: a backstop for the sweep.
    fn ended_ttl_ms(&self) -> u64 {
        millis(
            self.retention
                .max_age
                .saturating_add(self.retention.sweep_interval),
        )
        .max(1)
    }

    /// Waits until the configured number of replicas have every write made
    /// so far on the master that holds `key` (nothing to do when none are
    /// asked for).
    async fn replicated(&self, key: &str, context: &'static str) -> Result<(), StoreError> {
        if self.replicas == 0 {
            return Ok(());
        }
        let acknowledged = self
            .conn
            .wait_replicas(key, self.replicas, self.replica_timeout)
            .await
            .map_err(self.backend(context))?;
        if acknowledged < u64::from(self.replicas) {
            return Err(StoreError::backend(
                context,
                NotReplicated {
                    wanted: self.replicas,
                    acknowledged,
                    timeout: self.replica_timeout,
                },
            ));
        }
        Ok(())
    }

    async fn heartbeat(&self) -> Result<(), StoreError> {
        let result = SCRIPTS
            .heartbeat
            .key(self.keys.instances())
            .arg(&self.instance)
            .arg(millis(self.lease))
            .invoke_async::<i64>(&mut self.conn())
            .await
            .map(drop)
            .map_err(self.backend("renewing this instance's lease in Redis"));
        let mut healthy = self.healthy_since.lock().unwrap_or_else(|e| e.into_inner());
        match &result {
            Ok(()) => {
                healthy.get_or_insert_with(Instant::now);
            }
            Err(_) => *healthy = None,
        }
        result
    }

    fn may_abandon_dead_instances(&self) -> bool {
        self.healthy_since
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_some_and(|since| since.elapsed() >= self.lease)
    }

    /// Ends a stream in `state`, then indexes it as ended (also when it had
    /// ended already: a retry completes an index step cut short). Returns
    /// the last sequence if this call ended it, `None` if it had ended.
    async fn end_one(&self, stream: StreamId, state: StreamState) -> Result<Ended, StoreError> {
        let context = "ending a stream in Redis";
        let meta = self.keys.meta(stream);
        let reply: Vec<Value> = SCRIPTS
            .end
            .key(&meta)
            .key(self.keys.log(stream))
            .arg(state.code())
            .arg(self.ended_ttl_ms())
            .arg(self.conn.publish_command())
            .arg(self.keys.channel(stream))
            .invoke_async(&mut self.conn())
            .await
            .map_err(self.backend(context))?;
        let decode = |value: Value| -> Result<Option<String>, StoreError> {
            ::redis::from_redis_value(value).map_err(|e| StoreError::backend(context, e))
        };
        let mut parts = reply.into_iter();
        let code: i64 = match parts.next() {
            Some(code) => {
                ::redis::from_redis_value(code).map_err(|e| StoreError::backend(context, e))?
            }
            None => return Err(unexpected(context, "script reply")),
        };
        if code == -1 {
            return Ok(Ended::NotFound);
        }
        let (Some(value), Some(ended_at), Some(session), Some(owner)) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(unexpected(context, "script reply"));
        };
        let value: i64 =
            ::redis::from_redis_value(value).map_err(|e| StoreError::backend(context, e))?;
        let ended_at = decode(ended_at)?.ok_or_else(|| unexpected(context, "end time"))?;
        let session = decode(session)?;
        let owner = decode(owner)?;
        self.replicated(&meta, context).await?;
        let mut index = SCRIPTS.index_ended.prepare_invoke();
        index.key(self.keys.ended()).key(self.keys.ended_sessions());
        if let Some(owner) = &owner {
            index.key(self.keys.owner(owner));
        }
        index
            .arg(stream.to_string())
            .arg(ended_at)
            .arg(u8::from(session.is_some()).to_string())
            .arg(session.unwrap_or_default())
            .invoke_async::<i64>(&mut self.conn())
            .await
            .map_err(self.backend("indexing an ended stream in Redis"))?;
        match code {
            0 => {
                let last_seq = value as u64;
                self.heads.merge(stream, StreamHead { last_seq, state });
                Ok(Ended::Now)
            }
            1 => Ok(Ended::Already),
            _ => Err(unexpected(context, "script reply")),
        }
    }

    /// Ends the live streams of `instance` as abandoned, then drops it from
    /// the instances index (`force`: whatever its lease says). Returns how
    /// many streams this call ended.
    async fn retire_instance(&self, instance: &str, force: bool) -> Result<u64, StoreError> {
        let context = "ending an instance's streams in Redis";
        let owner = self.keys.owner(instance);
        let ids: Vec<String> = ::redis::cmd("SMEMBERS")
            .arg(&owner)
            .query_async(&mut self.conn())
            .await
            .map_err(self.backend(context))?;
        let mut ended = 0;
        let mut done = Vec::with_capacity(ids.len());
        let results = join_all(
            ids.iter()
                .map(|id| async move {
                    match id.parse::<StreamId>() {
                        Ok(stream) => self
                            .end_one(stream, StreamState::Abandoned)
                            .await
                            .map(|outcome| (id, outcome)),
                        Err(_) => Ok((id, Ended::NotFound)),
                    }
                })
                .collect(),
        )
        .await;
        for result in results {
            let (id, outcome) = result?;
            if matches!(outcome, Ended::Now) {
                ended += 1;
            }
            done.push(id);
        }
        let mut drop_instance = SCRIPTS.drop_instance.prepare_invoke();
        drop_instance
            .key(self.keys.instances())
            .key(&owner)
            .arg(instance)
            .arg(if force { "1" } else { "0" });
        for id in done {
            drop_instance.arg(id);
        }
        drop_instance
            .invoke_async::<i64>(&mut self.conn())
            .await
            .map_err(self.backend(context))?;
        Ok(ended)
    }

    async fn sweep_now(&self) -> Result<SweepReport, StoreError> {
        let context = "sweeping expired streams in Redis";
        let mut report = SweepReport::default();
        if self.may_abandon_dead_instances() {
            loop {
                let dead: Vec<String> = SCRIPTS
                    .dead_instances
                    .key(self.keys.instances())
                    .arg(SWEEP_BATCH)
                    .invoke_async(&mut self.conn())
                    .await
                    .map_err(self.backend(context))?;
                let mut abandoned = 0;
                for instance in &dead {
                    abandoned += self.retire_instance(instance, false).await?;
                }
                if abandoned > 0 {
                    tracing::info!(
                        abandoned,
                        "event store: ended the live streams of instances whose lease ran out"
                    );
                }
                if dead.len() < SWEEP_BATCH {
                    break;
                }
            }
        }
        let max_age_us = self.retention.max_age.as_micros().min(i64::MAX as u128) as u64;
        loop {
            let idle: Vec<Option<String>> = SCRIPTS
                .idle_ended
                .key(self.keys.ended())
                .key(self.keys.ended_sessions())
                .arg(max_age_us)
                .arg(SWEEP_BATCH)
                .invoke_async(&mut self.conn())
                .await
                .map_err(self.backend(context))?;
            let pairs: Vec<(String, Option<String>)> = idle
                .chunks_exact(2)
                .filter_map(|pair| Some((pair[0].clone()?, pair[1].clone())))
                .collect();
            let results = join_all(
                pairs
                    .iter()
                    .map(|(id, indexed_session)| self.delete_ended(id, indexed_session.as_deref()))
                    .collect(),
            )
            .await;
            for result in results {
                let (streams, events) = result?;
                report.streams_removed += streams;
                report.events_removed += events;
            }
            if pairs.len() < SWEEP_BATCH {
                return Ok(report);
            }
        }
    }

    /// Sweep steps for one idle ended stream: deletes it, takes it out of
    /// its session's set, then out of the ended index. Returns the streams
    /// and events deleted.
    async fn delete_ended(
        &self,
        id: &str,
        indexed_session: Option<&str>,
    ) -> Result<(u64, u64), StoreError> {
        let context = "deleting an expired stream in Redis";
        let mut deleted = (0, 0);
        if let Ok(stream) = id.parse::<StreamId>() {
            let reply: Vec<Value> = SCRIPTS
                .delete_ended
                .key(self.keys.meta(stream))
                .key(self.keys.log(stream))
                .invoke_async(&mut self.conn())
                .await
                .map_err(self.backend(context))?;
            let mut parts = reply.into_iter();
            let code: i64 = match parts.next() {
                Some(code) => {
                    ::redis::from_redis_value(code).map_err(|e| StoreError::backend(context, e))?
                }
                None => return Err(unexpected(context, "script reply")),
            };
            if code == -1 {
                // Live: not for the sweep; only its stale index entry goes.
                return self.forget_ended(id, None).await.map(|()| (0, 0));
            }
            let (Some(events), Some(session)) = (parts.next(), parts.next()) else {
                return Err(unexpected(context, "script reply"));
            };
            let events: u64 =
                ::redis::from_redis_value(events).map_err(|e| StoreError::backend(context, e))?;
            let session: Option<String> =
                ::redis::from_redis_value(session).map_err(|e| StoreError::backend(context, e))?;
            if code == 1 {
                deleted = (1, events);
            }
            if let Some(session) = session.as_deref().or(indexed_session) {
                ::redis::cmd("SREM")
                    .arg(self.keys.session(session))
                    .arg(id)
                    .query_async::<Value>(&mut self.conn())
                    .await
                    .map_err(self.backend(context))?;
            }
        }
        self.forget_ended(id, None).await?;
        Ok(deleted)
    }

    /// Takes a stream out of the ended index (and off `owner`'s set).
    async fn forget_ended(&self, id: &str, owner: Option<&str>) -> Result<(), StoreError> {
        let mut index = SCRIPTS.index_deleted.prepare_invoke();
        index.key(self.keys.ended()).key(self.keys.ended_sessions());
        if let Some(owner) = owner {
            index.key(self.keys.owner(owner));
        }
        index
            .arg(id)
            .invoke_async::<i64>(&mut self.conn())
            .await
            .map(drop)
            .map_err(self.backend("updating the ended-streams index in Redis"))
    }

    /// Deletes every stream of a session, in steps that a retry completes:
    /// each stream (a live one announced as abandoned first, so its
    /// followers stop), then its index entries, then the session's set.
    /// Returns how many streams were deleted.
    async fn purge(&self, session: &str) -> Result<u64, StoreError> {
        let context = "purging a session's streams in Redis";
        let set = self.keys.session(session);
        let ids: Vec<String> = ::redis::cmd("SMEMBERS")
            .arg(&set)
            .query_async(&mut self.conn())
            .await
            .map_err(self.backend(context))?;
        let results = join_all(
            ids.iter()
                .filter_map(|id| Some((id, id.parse::<StreamId>().ok()?)))
                .map(|(id, stream)| async move {
                    let deleted: Option<(u64, Option<String>)> = SCRIPTS
                        .delete
                        .key(self.keys.meta(stream))
                        .key(self.keys.log(stream))
                        .arg(self.conn.publish_command())
                        .arg(self.keys.channel(stream))
                        .invoke_async(&mut self.conn())
                        .await
                        .map_err(self.backend(context))?;
                    let Some((last_seq, owner)) = deleted else {
                        return Ok(false);
                    };
                    self.heads.merge(
                        stream,
                        StreamHead {
                            last_seq,
                            state: StreamState::Abandoned,
                        },
                    );
                    self.forget_ended(id, owner.as_deref()).await?;
                    Ok::<_, StoreError>(true)
                })
                .collect(),
        )
        .await;
        let mut purged = 0;
        for result in results {
            purged += u64::from(result?);
        }
        ::redis::cmd("DEL")
            .arg(&set)
            .query_async::<i64>(&mut self.conn())
            .await
            .map_err(self.backend(context))?;
        Ok(purged)
    }

    /// The head of a stream, `None` if it does not exist.
    async fn head(&self, stream: StreamId) -> Result<Option<StreamHead>, StoreError> {
        let (state, last): (Option<i64>, Option<u64>) = ::redis::cmd("HMGET")
            .arg(self.keys.meta(stream))
            .arg("state")
            .arg("last")
            .query_async(&mut self.conn())
            .await
            .map_err(self.backend("reading a stream's head from Redis"))?;
        let (Some(state), Some(last_seq)) = (state, last) else {
            return Ok(None);
        };
        let state = StreamState::from_code(state)
            .ok_or_else(|| unexpected("reading a stream's head from Redis", "stream state"))?;
        Ok(Some(StreamHead { last_seq, state }))
    }
}

/// What [`Shared::end_one`] found.
enum Ended {
    /// This call ended the stream.
    Now,
    /// It had ended already.
    Already,
    /// It does not exist.
    NotFound,
}

/// A call to a Redis Cluster that kept failing for the whole failover
/// timeout.
#[derive(Debug, thiserror::Error)]
#[error(
    "the Redis Cluster did not answer within the failover timeout ({timeout:?}; RedisOptions::failover_timeout): a shard may have no reachable master (its master and replicas down), or a failover takes longer ({error})"
)]
struct ClusterTimedOut {
    timeout: Duration,
    #[source]
    error: RedisError,
}

/// Fewer replicas than asked for acknowledged a write in time.
#[derive(Debug, thiserror::Error)]
#[error(
    "only {acknowledged} of {wanted} replicas acknowledged the write within {timeout:?}; it may be lost if its master fails (are the replicas up and connected?)"
)]
struct NotReplicated {
    wanted: u32,
    acknowledged: u64,
    timeout: Duration,
}

/// Renews the lease every third of it and sweeps every sweep interval, until
/// the store is closed or dropped.
async fn maintain(shared: Arc<Shared>) {
    let mut heartbeat = tokio::time::interval(shared.lease / 3);
    heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let sweep_every = shared
        .retention
        .sweep_interval
        .max(Duration::from_millis(10));
    let mut sweep =
        tokio::time::interval_at(tokio::time::Instant::now() + sweep_every, sweep_every);
    sweep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = heartbeat.tick() => {
                if let Err(error) = shared.heartbeat().await {
                    tracing::warn!(%error, "event store: heartbeat failed");
                }
            }
            _ = sweep.tick() => {
                if let Err(error) = shared.sweep_now().await {
                    tracing::warn!(%error, "event store: sweep failed");
                }
            }
        }
    }
}

/// Decodes the metadata fields of [`META_FIELDS`].
fn decode_info(
    stream: StreamId,
    fields: Vec<Option<String>>,
) -> Result<Option<StreamInfo>, StoreError> {
    let context = "decoding stream metadata from Redis";
    let Ok([kind, state, first, last, created, active, session, identity]) =
        <[Option<String>; 8]>::try_from(fields)
    else {
        return Err(unexpected(context, "metadata field count"));
    };
    let Some(state) = state else {
        return Ok(None);
    };
    fn number<T: std::str::FromStr>(
        value: Option<String>,
        name: &'static str,
    ) -> Result<T, StoreError> {
        value
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| unexpected("decoding stream metadata from Redis", name))
    }
    let time = |micros: u64| UNIX_EPOCH + Duration::from_micros(micros);
    let first_seq: u64 = number(first, "first")?;
    let last_seq: u64 = number(last, "last")?;
    Ok(Some(StreamInfo {
        id: stream,
        kind: StreamKind::from_code(number(kind, "kind")?)
            .ok_or_else(|| unexpected(context, "kind"))?,
        state: StreamState::from_code(number(Some(state), "state")?)
            .ok_or_else(|| unexpected(context, "state"))?,
        session,
        identity,
        event_count: (last_seq + 1).saturating_sub(first_seq),
        first_seq,
        last_seq,
        created_at: time(number(created, "created")?),
        last_activity: time(number(active, "active")?),
    }))
}

/// Decodes `XRANGE` entries into events.
fn decode_events(entries: Value) -> Result<Vec<StoredEvent>, StoreError> {
    let context = "decoding events from Redis";
    let Value::Array(entries) = entries else {
        return Err(unexpected(context, "entry list"));
    };
    entries
        .into_iter()
        .map(|entry| {
            let (id, fields): (String, Vec<Vec<u8>>) =
                ::redis::from_redis_value(entry).map_err(|e| StoreError::backend(context, e))?;
            let seq = id
                .strip_suffix("-0")
                .and_then(|seq| seq.parse().ok())
                .ok_or_else(|| unexpected(context, "entry id"))?;
            let mut event = StoredEvent {
                seq,
                event_type: None,
                data: Default::default(),
            };
            let mut fields = fields.into_iter();
            while let (Some(name), Some(value)) = (fields.next(), fields.next()) {
                match name.as_slice() {
                    b"d" => event.data = value.into(),
                    b"t" => event.event_type = Some(value.into()),
                    _ => {}
                }
            }
            Ok(event)
        })
        .collect()
}

impl EventStore for RedisEventStore {
    fn create_stream(&self, new: NewStream) -> BoxFuture<'_, Result<StreamId, StoreError>> {
        Box::pin(async move {
            let shared = &self.shared;
            shared.check_open()?;
            let stream = StreamId::random();
            let context = "creating a stream in Redis";
            // Indexed first (its owner's set, its session's set), then
            // created: a stream never exists unindexed, and an index entry
            // whose stream was never created is skipped by every reader.
            let owner = async {
                SCRIPTS
                    .index_created
                    .key(shared.keys.instances())
                    .key(shared.keys.owner(&shared.instance))
                    .arg(stream.to_string())
                    .arg(&shared.instance)
                    .arg(millis(shared.lease))
                    .invoke_async::<i64>(&mut shared.conn())
                    .await
                    .map(drop)
            };
            let session = async {
                match &new.session {
                    Some(session) => ::redis::cmd("SADD")
                        .arg(shared.keys.session(session))
                        .arg(stream.to_string())
                        .query_async::<i64>(&mut shared.conn())
                        .await
                        .map(drop),
                    None => Ok(()),
                }
            };
            let (owner, session) = tokio::join!(owner, session);
            owner.and(session).map_err(shared.backend(context))?;
            // Redis integers are signed 64-bit; a larger cap means "unbounded" anyway.
            let cap = new.event_cap(&shared.retention).min(i64::MAX as u64);
            let meta = shared.keys.meta(stream);
            SCRIPTS
                .create
                .key(&meta)
                .arg(new.kind.code())
                .arg(cap)
                .arg(&shared.instance)
                .arg(u8::from(new.session.is_some()).to_string())
                .arg(new.session.as_deref().unwrap_or_default())
                .arg(u8::from(new.identity.is_some()).to_string())
                .arg(new.identity.as_deref().unwrap_or_default())
                .invoke_async::<i64>(&mut shared.conn())
                .await
                .map_err(shared.backend(context))?;
            shared.replicated(&meta, context).await?;
            // The stream exists now: a history that cannot be written is
            // lost, not the stream (which nobody would end if created in vain).
            if let Some(call) = &new.call
                && let Err(error) = shared.record_call(stream, call).await
            {
                tracing::warn!(%stream, %error, "Redis did not record the call a stream answers");
            }
            Ok(stream)
        })
    }

    fn append(
        &self,
        stream: StreamId,
        events: Vec<NewEvent>,
    ) -> BoxFuture<'_, Result<AppendReceipt, StoreError>> {
        Box::pin(async move {
            let shared = &self.shared;
            shared.check_open()?;
            let context = "appending to a stream in Redis";
            let meta = shared.keys.meta(stream);
            let mut invocation = SCRIPTS.append.prepare_invoke();
            invocation
                .key(&meta)
                .key(shared.keys.log(stream))
                .arg(shared.conn.publish_command())
                .arg(shared.keys.channel(stream))
                .arg(events.len());
            for event in &events {
                match &event.event_type {
                    Some(event_type) => invocation.arg("1").arg(event_type.as_ref()),
                    None => invocation.arg("0").arg(""),
                };
                invocation.arg(event.data.as_ref());
            }
            let reply: Vec<i64> = invocation
                .invoke_async(&mut shared.conn())
                .await
                .map_err(shared.backend(context))?;
            match *reply.as_slice() {
                [0, first_seq, last_seq] => {
                    let (first_seq, last_seq) = (first_seq as u64, last_seq as u64);
                    if last_seq >= first_seq {
                        shared.replicated(&meta, context).await?;
                    }
                    if last_seq >= first_seq {
                        shared.heads.merge(
                            stream,
                            StreamHead {
                                last_seq,
                                state: StreamState::Live,
                            },
                        );
                    }
                    Ok(AppendReceipt {
                        first_seq,
                        last_seq,
                    })
                }
                [-1] => Err(StoreError::StreamNotFound(stream)),
                [-2, state] => Err(StoreError::StreamEnded {
                    stream,
                    state: StreamState::from_code(state)
                        .ok_or_else(|| unexpected(context, "state"))?,
                }),
                _ => Err(unexpected(context, "script reply")),
            }
        })
    }

    fn end_stream(
        &self,
        stream: StreamId,
        end: StreamEnd,
    ) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(async move {
            let shared = &self.shared;
            shared.check_open()?;
            match shared.end_one(stream, StreamState::from(end)).await? {
                Ended::Now | Ended::Already => Ok(()),
                Ended::NotFound => Err(StoreError::StreamNotFound(stream)),
            }
        })
    }

    fn read_batch(
        &self,
        stream: StreamId,
        after: u64,
        limit: ReadLimit,
    ) -> BoxFuture<'_, Result<Batch, StoreError>> {
        Box::pin(async move {
            let shared = &self.shared;
            shared.check_open()?;
            let context = "reading a stream from Redis";
            let reply: Value = SCRIPTS
                .read
                .key(shared.keys.meta(stream))
                .key(shared.keys.log(stream))
                .arg(after)
                .arg(limit.max_events.clamp(1, MAX_READ_COUNT))
                .arg(limit.max_bytes)
                .invoke_async(&mut shared.conn())
                .await
                .map_err(shared.backend(context))?;
            let (meta, entries) = match reply {
                Value::Nil => return Err(StoreError::StreamNotFound(stream)),
                Value::Array(parts) => match <[Value; 2]>::try_from(parts) {
                    Ok([meta, entries]) => (meta, entries),
                    Err(_) => return Err(unexpected(context, "script reply")),
                },
                _ => return Err(unexpected(context, "script reply")),
            };
            let fields: Vec<Option<String>> =
                ::redis::from_redis_value(meta).map_err(|e| StoreError::backend(context, e))?;
            let info = decode_info(stream, fields)?.ok_or(StoreError::StreamNotFound(stream))?;
            check_position(&info, after)?;
            Ok(Batch {
                events: decode_events(entries)?,
                head: info.head(),
            })
        })
    }

    fn subscribe(&self, stream: StreamId) -> BoxFuture<'_, Result<Subscription, StoreError>> {
        Box::pin(async move {
            let shared = &self.shared;
            shared.check_open()?;
            // Watch, subscribe the channel, then read the head: a commit is
            // either in that read or announced after the subscription.
            let rx = shared.heads.watch(stream);
            shared.heads.ensure_subscribed(stream).await;
            match shared.head(stream).await? {
                Some(head) => {
                    shared.heads.merge(stream, head);
                    Ok(Subscription::from_receiver(rx))
                }
                None => {
                    shared.heads.forget(stream);
                    Err(StoreError::StreamNotFound(stream))
                }
            }
        })
    }

    fn stream_info(
        &self,
        stream: StreamId,
    ) -> BoxFuture<'_, Result<Option<StreamInfo>, StoreError>> {
        Box::pin(async move {
            let shared = &self.shared;
            shared.check_open()?;
            let fields: Vec<Option<String>> = ::redis::cmd("HMGET")
                .arg(shared.keys.meta(stream))
                .arg(&META_FIELDS[..])
                .query_async(&mut shared.conn())
                .await
                .map_err(shared.backend("reading stream metadata from Redis"))?;
            decode_info(stream, fields)
        })
    }

    fn session_streams<'a>(
        &'a self,
        session: &'a str,
    ) -> BoxFuture<'a, Result<Vec<StreamInfo>, StoreError>> {
        Box::pin(async move {
            let shared = &self.shared;
            shared.check_open()?;
            let context = "listing a session's streams in Redis";
            let ids: Vec<String> = ::redis::cmd("SMEMBERS")
                .arg(shared.keys.session(session))
                .query_async(&mut shared.conn())
                .await
                .map_err(shared.backend(context))?;
            let streams: Vec<StreamId> = ids.iter().filter_map(|id| id.parse().ok()).collect();
            if streams.is_empty() {
                return Ok(Vec::new());
            }
            // One command per stream, all at once: the streams are in
            // different slots of a cluster, which one pipeline cannot span.
            let metas = join_all(
                streams
                    .iter()
                    .map(|&stream| {
                        let mut conn = shared.conn();
                        let mut command = ::redis::cmd("HMGET");
                        command.arg(shared.keys.meta(stream)).arg(&META_FIELDS[..]);
                        async move { command.query_async::<Vec<Option<String>>>(&mut conn).await }
                    })
                    .collect(),
            )
            .await;
            let mut infos = Vec::with_capacity(streams.len());
            for (stream, fields) in streams.into_iter().zip(metas) {
                let fields = fields.map_err(shared.backend(context))?;
                // Streams expired by the backstop expiry are skipped.
                infos.extend(decode_info(stream, fields)?);
            }
            infos.sort_by_key(|info| (info.created_at, info.id));
            Ok(infos)
        })
    }

    fn purge_session<'a>(&'a self, session: &'a str) -> BoxFuture<'a, Result<u64, StoreError>> {
        Box::pin(async move {
            let shared = &self.shared;
            shared.check_open()?;
            shared.purge(session).await
        })
    }

    fn record_resume(&self, stream: StreamId) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(async move {
            self.shared.check_open()?;
            self.shared.record_resume(stream).await
        })
    }

    fn list_streams<'a>(
        &'a self,
        query: &'a crate::store::StreamQuery,
    ) -> BoxFuture<'a, Result<Vec<crate::store::StreamRecord>, StoreError>> {
        Box::pin(self.list_history(query))
    }

    fn sweep(&self) -> BoxFuture<'_, Result<SweepReport, StoreError>> {
        Box::pin(async move {
            self.shared.check_open()?;
            self.shared.sweep_now().await
        })
    }

    fn retention(&self) -> Retention {
        self.shared.retention
    }

    fn flush(&self) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(async move {
            let shared = &self.shared;
            shared.check_open()?;
            // Appends resolve once Redis has applied them, so there is nothing
            // to wait for beyond a round trip; durability is Redis's
            // persistence setting.
            shared.ping("flushing (PING) to Redis").await
        })
    }

    /// `PING`, answered within the
    /// [response timeout](RedisOptions::response_timeout).
    fn health(&self) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(async move {
            let shared = &self.shared;
            shared.check_open()?;
            shared.ping("checking that Redis answers (PING)").await
        })
    }

    fn close(&self) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(async move {
            let shared = &self.shared;
            if shared.closed.swap(true, Ordering::AcqRel) {
                return Ok(());
            }
            // End this instance's live streams and give up its lease, in one
            // step. If Redis is unreachable now, the other instances will end
            // them once the lease runs out.
            let retired = shared.retire_instance(&shared.instance, true).await;
            self.stop_tasks();
            // Followers of streams produced elsewhere stop too: their last
            // read reports the store closed.
            shared.heads.clear();
            retired.map(drop)
        })
    }

    /// `SET` with `PX` on the lease's key, in the stream's hash slot.
    fn renew_lease(
        &self,
        stream: StreamId,
        kind: super::LeaseKind,
        ttl: Duration,
    ) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(self.shared.renew_lease(stream, kind, ttl))
    }

    /// `PTTL` of the lease's key.
    fn lease(
        &self,
        stream: StreamId,
        kind: super::LeaseKind,
    ) -> BoxFuture<'_, Result<Option<Duration>, StoreError>> {
        Box::pin(self.shared.lease_left(stream, kind))
    }
}
