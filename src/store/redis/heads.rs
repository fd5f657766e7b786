//! The head relay of [`RedisEventStore`](super::RedisEventStore): a task on
//! a dedicated pub/sub connection that relays the heads the append and end
//! scripts publish, from any instance, to the
//! [`Subscription`](crate::store::Subscription) watch channels of this
//! process, so a stream produced elsewhere can be followed live here.
//!
//! - Only streams somebody here follows are subscribed to (one channel per
//!   stream), so an instance receives the traffic of what it serves, not of
//!   the whole fleet.
//! - On one Redis, plain pub/sub on a dedicated connection, reconnected by
//!   this task. On a Redis Cluster, sharded pub/sub (`SSUBSCRIBE`) on a
//!   RESP3 cluster connection, whose messages arrive as pushes: the client
//!   sends each subscription to the master of the channel's slot and moves
//!   it to the new master after a failover; every subscription it confirms
//!   (a first one or a move) is followed by a read of that stream's head,
//!   and every check re-reads all of them, so nothing is missed while a
//!   shard changes hands.
//! - Pub/sub is at-most-once: messages published while the connection is
//!   down are lost. So every (re)subscription is followed by a read of the
//!   heads from the stream metadata, and a subscriber is only handed its
//!   subscription after the channel is subscribed *and* the head read: any
//!   commit is either in that read or announced afterwards.
//! - Memory is bounded by what is followed: a stream's watcher is dropped
//!   when it ends (after its final head is sent), when it is deleted, and,
//!   at the next check, when its last follower has gone.

use std::collections::{HashMap, HashSet};
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use ::redis::aio::{PubSubSink, PubSubStream};
use ::redis::cluster::ClusterClient;
use ::redis::cluster_async::ClusterConnection;
use ::redis::{Client, Msg, PushInfo, PushKind, RedisResult, Value};
use futures_core::Stream;
use tokio::sync::{mpsc, watch};

use super::conn::{Conn, Target, cluster_client, join_all};
use super::{Keys, RedisOptions, backend};
use crate::store::{StoreError, StreamHead, StreamId, StreamState};

/// How often the relay drops the watchers nobody follows any more, subscribes
/// any it could not subscribe at once, and pings its connection.
const CHECK_INTERVAL: Duration = Duration::from_secs(5);
/// The first and the longest wait between reconnection attempts.
const MIN_BACKOFF: Duration = Duration::from_millis(50);
const MAX_BACKOFF: Duration = Duration::from_secs(2);
/// Heads are refreshed this many streams per round trip.
const REFRESH_CHUNK: usize = 256;

type RelayError = tower::BoxError;

/// How the relay reaches Redis's pub/sub.
pub(super) enum LiveTail {
    /// One Redis: a dedicated pub/sub connection from this client.
    Single(Client),
    /// A cluster: a RESP3 cluster client whose pushes (messages,
    /// subscription confirmations, disconnections) arrive on `pushes`.
    Cluster {
        client: Box<ClusterClient>,
        pushes: mpsc::UnboundedReceiver<PushInfo>,
    },
}

impl LiveTail {
    pub(super) fn new(target: &Target, options: &RedisOptions) -> Result<Self, StoreError> {
        match target {
            Target::Single(url) => Ok(Self::Single(
                Client::open(url.as_str()).map_err(backend("parsing the Redis URL"))?,
            )),
            Target::Cluster(nodes) => {
                let (tx, pushes) = mpsc::unbounded_channel();
                Ok(Self::Cluster {
                    client: Box::new(cluster_client(nodes, options, Some(tx))?),
                    pushes,
                })
            }
        }
    }
}

/// The command side of the live-tail connection.
#[derive(Clone)]
enum Sink {
    Single(PubSubSink),
    Cluster(ClusterConnection),
}

impl Sink {
    async fn subscribe(&mut self, channels: Vec<String>) -> RedisResult<()> {
        match self {
            Self::Single(sink) => sink.subscribe(channels).await,
            // One command per channel: channels of different slots live on
            // different masters.
            Self::Cluster(conn) => join_all(
                channels
                    .into_iter()
                    .map(|channel| {
                        let mut conn = conn.clone();
                        async move { conn.ssubscribe(channel).await }
                    })
                    .collect(),
            )
            .await
            .into_iter()
            .collect(),
        }
    }

    async fn unsubscribe(&mut self, channels: Vec<String>) -> RedisResult<()> {
        match self {
            Self::Single(sink) => sink.unsubscribe(channels).await,
            Self::Cluster(conn) => join_all(
                channels
                    .into_iter()
                    .map(|channel| {
                        let mut conn = conn.clone();
                        async move { conn.sunsubscribe(channel).await }
                    })
                    .collect(),
            )
            .await
            .into_iter()
            .collect(),
        }
    }

    /// Notices a dead connection on one Redis (a cluster connection
    /// reconnects by itself).
    async fn ping(&mut self) -> RedisResult<()> {
        match self {
            Self::Single(sink) => sink.ping::<Value>().await.map(drop),
            Self::Cluster(_) => Ok(()),
        }
    }
}

/// The watch channels of the streams followed in this process, and the
/// pub/sub subscriptions that feed them.
pub(super) struct HeadRelay {
    keys: Keys,
    timeout: Duration,
    watchers: Mutex<HashMap<StreamId, watch::Sender<StreamHead>>>,
    /// Serialises every change of the connection's subscriptions, so a
    /// subscribe and an unsubscribe of one channel cannot cross.
    sub: tokio::sync::Mutex<SubState>,
}

#[derive(Default)]
struct SubState {
    /// The connection's command side; `None` while reconnecting.
    sink: Option<Sink>,
    /// The streams whose channel the connection is subscribed to.
    subscribed: HashSet<StreamId>,
}

impl HeadRelay {
    pub(super) fn new(keys: Keys, timeout: Duration) -> Self {
        Self {
            keys,
            timeout,
            watchers: Mutex::default(),
            sub: tokio::sync::Mutex::default(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<StreamId, watch::Sender<StreamHead>>> {
        // Every operation on the map is a single insert, update or removal,
        // so a poisoned lock still guards a consistent map.
        self.watchers.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A receiver of the stream's head, creating its watcher if needed. The
    /// value is a placeholder until [`merge`](Self::merge) gives a real head.
    pub(super) fn watch(&self, stream: StreamId) -> watch::Receiver<StreamHead> {
        self.lock()
            .entry(stream)
            .or_insert_with(|| {
                watch::channel(StreamHead {
                    last_seq: 0,
                    state: StreamState::Live,
                })
                .0
            })
            .subscribe()
    }

    /// Subscribes the stream's channel if the connection is up. Best effort:
    /// if it is not, the reconnection subscribes every watcher, and if the
    /// command fails the next check retries it (both then refresh the head).
    pub(super) async fn ensure_subscribed(&self, stream: StreamId) {
        let Ok(mut sub) = tokio::time::timeout(self.timeout, self.sub.lock()).await else {
            return;
        };
        if sub.subscribed.contains(&stream) {
            return;
        }
        let Some(mut sink) = sub.sink.clone() else {
            return;
        };
        let channel = self.keys.channel(stream);
        match tokio::time::timeout(self.timeout, sink.subscribe(vec![channel])).await {
            Ok(Ok(())) => {
                sub.subscribed.insert(stream);
            }
            Ok(Err(error)) => tracing::debug!(%error, %stream, "live tail: subscribe failed"),
            Err(_) => tracing::debug!(%stream, "live tail: subscribe timed out"),
        }
    }

    /// Records a head read or announced for a stream: a live head moves the
    /// watcher forward (never back); an ended head is sent as the final value
    /// and the watcher dropped, so its followers read the rest and stop.
    pub(super) fn merge(&self, stream: StreamId, head: StreamHead) {
        let mut watchers = self.lock();
        let Some(tx) = watchers.get(&stream) else {
            return;
        };
        if head.state.is_ended() {
            tx.send_modify(|current| {
                current.last_seq = current.last_seq.max(head.last_seq);
                current.state = head.state;
            });
            watchers.remove(&stream);
        } else {
            tx.send_if_modified(|current| {
                let moved = !current.state.is_ended() && head.last_seq > current.last_seq;
                if moved {
                    current.last_seq = head.last_seq;
                }
                moved
            });
        }
    }

    /// The stream does not exist (any more): drop its watcher, so its
    /// followers make a last read, which reports it.
    pub(super) fn forget(&self, stream: StreamId) {
        self.lock().remove(&stream);
    }

    /// Drops every watcher (the store is closing).
    pub(super) fn clear(&self) {
        self.lock().clear();
    }

    /// The task: connect, subscribe what is followed, deliver messages, and
    /// start over whenever the connection is lost. Runs until aborted.
    pub(super) async fn run(self: Arc<Self>, tail: LiveTail, conn: Conn) {
        match tail {
            LiveTail::Single(client) => self.run_single(client, conn).await,
            LiveTail::Cluster { client, pushes } => self.run_cluster(*client, pushes, conn).await,
        }
    }

    async fn run_single(&self, client: Client, conn: Conn) {
        let mut backoff = MIN_BACKOFF;
        loop {
            match tokio::time::timeout(self.timeout, client.get_async_pubsub()).await {
                Ok(Ok(pubsub)) => {
                    let (sink, mut messages) = pubsub.split();
                    match self.resubscribe_all(Sink::Single(sink), &conn).await {
                        Ok(()) => {
                            backoff = MIN_BACKOFF;
                            let error = self.listen(&mut messages, &conn).await;
                            tracing::warn!(
                                error = error.as_deref().map(tracing::field::display),
                                "event store: lost the Redis live-tail connection; reconnecting"
                            );
                        }
                        Err(error) => {
                            tracing::warn!(%error, "event store: could not resubscribe the live tail")
                        }
                    }
                    self.disconnected().await;
                }
                Ok(Err(error)) => {
                    tracing::debug!(%error, "event store: live-tail connection to Redis failed")
                }
                Err(_) => tracing::debug!("event store: live-tail connection to Redis timed out"),
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }

    /// The cluster connection reconnects and resubscribes by itself, so
    /// after the first connection this only relays pushes and checks.
    async fn run_cluster(
        &self,
        client: ClusterClient,
        mut pushes: mpsc::UnboundedReceiver<PushInfo>,
        conn: Conn,
    ) {
        let mut backoff = MIN_BACKOFF;
        let sink = loop {
            match tokio::time::timeout(self.timeout, client.get_async_connection()).await {
                Ok(Ok(connection)) => break Sink::Cluster(connection),
                Ok(Err(error)) => {
                    tracing::debug!(%error, "event store: live-tail connection to the Redis Cluster failed")
                }
                Err(_) => {
                    tracing::debug!(
                        "event store: live-tail connection to the Redis Cluster timed out"
                    )
                }
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(MAX_BACKOFF);
        };
        while let Err(error) = self.resubscribe_all(sink.clone(), &conn).await {
            tracing::warn!(%error, "event store: could not subscribe the live tail; retrying");
            tokio::time::sleep(MAX_BACKOFF).await;
        }
        let mut check = tokio::time::interval(CHECK_INTERVAL);
        check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        check.tick().await;
        loop {
            tokio::select! {
                push = pushes.recv() => match push {
                    Some(push) => self.on_push(push, &conn).await,
                    None => return,
                },
                _ = check.tick() => {
                    if let Err(error) = self.check(&conn).await {
                        tracing::warn!(%error, "event store: live-tail check failed");
                    }
                }
            }
        }
    }

    /// A push from the cluster connection: a head, or a subscription
    /// confirmed (first or after a move), after which the head is re-read.
    async fn on_push(&self, push: PushInfo, conn: &Conn) {
        let channel = |value: Option<&Value>| -> Option<StreamId> {
            match value? {
                Value::BulkString(bytes) => self
                    .keys
                    .stream_of_channel(std::str::from_utf8(bytes).ok()?),
                _ => None,
            }
        };
        match push.kind {
            PushKind::SMessage | PushKind::Message => {
                let (Some(stream), Some(Value::BulkString(payload))) =
                    (channel(push.data.first()), push.data.get(1))
                else {
                    return;
                };
                self.on_head(stream, payload);
            }
            PushKind::SSubscribe | PushKind::Subscribe => {
                if let Some(stream) = channel(push.data.first())
                    && let Err(error) = self.refresh(conn, &[stream]).await
                {
                    tracing::debug!(%error, %stream, "live tail: head refresh failed");
                }
            }
            _ => {}
        }
    }

    /// On a fresh connection: subscribes every watched stream, then reads
    /// their heads, which catches up with whatever was published while the
    /// connection was down (and ends the watchers of streams that ended).
    async fn resubscribe_all(&self, sink: Sink, conn: &Conn) -> Result<(), RelayError> {
        let streams: Vec<StreamId> = {
            let mut sub = self.sub.lock().await;
            let streams: Vec<StreamId> = self.lock().keys().copied().collect();
            if !streams.is_empty() {
                let channels = self.channels(&streams);
                tokio::time::timeout(self.timeout, sink.clone().subscribe(channels)).await??;
            }
            sub.sink = Some(sink);
            sub.subscribed = streams.iter().copied().collect();
            streams
        };
        self.refresh(conn, &streams).await
    }

    async fn disconnected(&self) {
        let mut sub = self.sub.lock().await;
        sub.sink = None;
        sub.subscribed.clear();
    }

    /// Delivers messages until the connection is lost (returns why, if known).
    async fn listen(&self, messages: &mut PubSubStream, conn: &Conn) -> Option<RelayError> {
        let mut check = tokio::time::interval(CHECK_INTERVAL);
        check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        check.tick().await;
        loop {
            tokio::select! {
                message = next_message(messages) => match message {
                    Some(message) => self.on_message(&message),
                    None => return None,
                },
                _ = check.tick() => {
                    if let Err(error) = self.check(conn).await {
                        return Some(error);
                    }
                }
            }
        }
    }

    fn on_message(&self, message: &Msg) {
        let Some(stream) = self.keys.stream_of_channel(message.get_channel_name()) else {
            return;
        };
        self.on_head(stream, message.get_payload_bytes());
    }

    fn on_head(&self, stream: StreamId, payload: &[u8]) {
        match parse_head(payload) {
            Some(head) => self.merge(stream, head),
            None => tracing::warn!(%stream, "event store: malformed head announcement ignored"),
        }
    }

    /// Drops the watchers nobody follows and unsubscribes them, subscribes
    /// (and refreshes) watchers that are not subscribed yet, and pings the
    /// connection so a dead one is noticed. On a cluster, whose connection
    /// is never declared dead here, it re-reads every head instead.
    async fn check(&self, conn: &Conn) -> Result<(), RelayError> {
        let (mut sink, added) = {
            let mut sub = self.sub.lock().await;
            let Some(mut sink) = sub.sink.clone() else {
                return Err("not connected".into());
            };
            let (stale, missing) = {
                let mut watchers = self.lock();
                watchers.retain(|_, tx| tx.receiver_count() > 0);
                let stale: Vec<StreamId> = sub
                    .subscribed
                    .iter()
                    .filter(|stream| !watchers.contains_key(stream))
                    .copied()
                    .collect();
                let missing: Vec<StreamId> = watchers
                    .keys()
                    .filter(|stream| !sub.subscribed.contains(stream))
                    .copied()
                    .collect();
                (stale, missing)
            };
            if !stale.is_empty() {
                let channels = self.channels(&stale);
                tokio::time::timeout(self.timeout, sink.unsubscribe(channels)).await??;
                for stream in &stale {
                    sub.subscribed.remove(stream);
                }
            }
            if !missing.is_empty() {
                let channels = self.channels(&missing);
                tokio::time::timeout(self.timeout, sink.subscribe(channels)).await??;
                sub.subscribed.extend(missing.iter().copied());
            }
            (sink, missing)
        };
        if matches!(sink, Sink::Cluster(_)) {
            let watched: Vec<StreamId> = self.lock().keys().copied().collect();
            self.refresh(conn, &watched).await?;
        } else {
            self.refresh(conn, &added).await?;
        }
        tokio::time::timeout(self.timeout, sink.ping()).await??;
        Ok(())
    }

    /// Reads the heads of `streams` from their metadata and merges them.
    async fn refresh(&self, conn: &Conn, streams: &[StreamId]) -> Result<(), RelayError> {
        for chunk in streams.chunks(REFRESH_CHUNK) {
            // One command per stream, all at once: on a cluster the streams
            // are in different slots, which one pipeline cannot span.
            let heads = join_all(
                chunk
                    .iter()
                    .map(|&stream| {
                        let mut conn = conn.clone();
                        let mut command = ::redis::cmd("HMGET");
                        command.arg(self.keys.meta(stream)).arg("state").arg("last");
                        async move {
                            command
                                .query_async::<(Option<i64>, Option<u64>)>(&mut conn)
                                .await
                        }
                    })
                    .collect(),
            )
            .await;
            for (&stream, head) in chunk.iter().zip(heads) {
                match head? {
                    (Some(state), Some(last_seq)) => match StreamState::from_code(state) {
                        Some(state) => self.merge(stream, StreamHead { last_seq, state }),
                        None => tracing::warn!(%stream, "event store: malformed stream state"),
                    },
                    _ => self.forget(stream),
                }
            }
        }
        Ok(())
    }

    fn channels(&self, streams: &[StreamId]) -> Vec<String> {
        streams
            .iter()
            .map(|&stream| self.keys.channel(stream))
            .collect()
    }
}

async fn next_message(messages: &mut PubSubStream) -> Option<Msg> {
    std::future::poll_fn(|cx| Pin::new(&mut *messages).poll_next(cx)).await
}

/// Parses an announced head: `<last_seq> <state code>`.
fn parse_head(payload: &[u8]) -> Option<StreamHead> {
    let text = std::str::from_utf8(payload).ok()?;
    let (last_seq, state) = text.split_once(' ')?;
    Some(StreamHead {
        last_seq: last_seq.parse().ok()?,
        state: StreamState::from_code(state.parse().ok()?)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heads_parse_from_announcements() {
        assert_eq!(
            parse_head(b"42 0"),
            Some(StreamHead {
                last_seq: 42,
                state: StreamState::Live
            })
        );
        assert_eq!(
            parse_head(b"7 2"),
            Some(StreamHead {
                last_seq: 7,
                state: StreamState::Abandoned
            })
        );
        for bad in [&b""[..], b"7", b"x 0", b"7 9", b"-1 0", b"\xff 0"] {
            assert_eq!(parse_head(bad), None, "{bad:?}");
        }
    }
}
