//! The Redis store on a real Redis Cluster (three masters, three replicas,
//! started by `mcp_resume_testkit::redis_cluster`), beyond the shared suite
//! (`store_backends::redis_cluster`): streams spread over the masters and
//! followed live on another instance (sharded pub/sub), and a master
//! SIGKILLed under running producers and followers: its replica is promoted,
//! every acknowledged append survives, and the streams go on.
//!
//! Skipped, saying so, when `redis-server` is not installed (`.ci/run`
//! installs it).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use mcp_resume::store::{
    self, EventStore, NewEvent, NewStream, RedisOptions, Retention, StoreError, StoredEvent,
    StreamEnd, StreamId, StreamKind, StreamState,
};
use mcp_resume_testkit::redis_cluster::{self, RedisCluster};
use mcp_resume_testkit::redis_server;

use crate::common_redis::unique_prefix;

type Store = Arc<dyn EventStore>;

fn skip_without_redis(test: &str) -> bool {
    if redis_server::installed() {
        return false;
    }
    eprintln!(
        "SKIPPED {test}: redis-server is not installed (Debian/Ubuntu: `apt-get install redis-server`)"
    );
    true
}

async fn guard<T>(what: &str, future: impl Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(60), future)
        .await
        .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
}

async fn collect(mut batches: store::EventBatches) -> Result<Vec<StoredEvent>, StoreError> {
    let mut events = Vec::new();
    while let Some(batch) = batches.next_batch().await {
        events.extend(batch?);
    }
    Ok(events)
}

async fn open(
    url: &str,
    prefix: &str,
    options: impl FnOnce(RedisOptions) -> RedisOptions,
) -> Store {
    let options = options(
        RedisOptions::new(url)
            .key_prefix(prefix)
            .retention(Retention::default()),
    );
    Arc::new(options.open().await.expect("open the store on the cluster"))
}

/// The master port each stream's slot is served by, by stream.
fn masters_of(cluster: &RedisCluster, prefix: &str, streams: &[StreamId]) -> BTreeSet<usize> {
    streams
        .iter()
        .map(|stream| cluster.master_of(&format!("{prefix}meta:{{{stream}}}")))
        .collect()
}

/// Streams created on instance A land on every master; each is followed
/// live on instance B (sharded pub/sub on the stream's shard) and ends
/// there with every event, in order; B lists and purges A's session.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_spread_over_the_masters_and_are_followed_on_another_instance() {
    if skip_without_redis("streams_spread_over_the_masters_and_are_followed_on_another_instance") {
        return;
    }
    const STREAMS: usize = 12;
    const EVENTS: u64 = 300;
    let cluster = redis_cluster::shared();
    let prefix = unique_prefix();
    let a = open(&cluster.url(), &prefix, |o| o).await;
    let b = open(&cluster.url(), &prefix, |o| o).await;

    let mut streams = Vec::new();
    for _ in 0..STREAMS {
        streams.push(
            a.create_stream(NewStream::new(StreamKind::PostResponse).session("s-cluster"))
                .await
                .unwrap(),
        );
    }
    assert_eq!(
        masters_of(cluster, &prefix, &streams).len(),
        3,
        "{STREAMS} random stream ids should land on all three masters"
    );
    let followers: Vec<_> = streams
        .iter()
        .map(|&stream| tokio::spawn(collect(store::follow(b.clone(), stream, 0))))
        .collect();
    // Let the followers subscribe and wait, so what follows arrives live.
    tokio::time::sleep(Duration::from_millis(200)).await;
    for n in 1..=EVENTS {
        for &stream in &streams {
            a.append(stream, vec![NewEvent::message(format!("{stream}:{n}"))])
                .await
                .unwrap();
        }
    }
    for &stream in &streams {
        a.end_stream(stream, StreamEnd::Complete).await.unwrap();
    }
    for (follower, &stream) in followers.into_iter().zip(&streams) {
        let events = guard("a follower on B", follower).await.unwrap().unwrap();
        let seqs: Vec<u64> = events.iter().map(|e| e.seq).collect();
        assert_eq!(seqs, (1..=EVENTS).collect::<Vec<_>>(), "stream {stream}");
        for event in &events {
            assert_eq!(event.data, format!("{stream}:{}", event.seq).as_bytes());
        }
    }
    let listed = b.session_streams("s-cluster").await.unwrap();
    assert_eq!(listed.len(), STREAMS);
    assert!(
        listed
            .iter()
            .all(|info| info.state == StreamState::Complete)
    );
    assert_eq!(b.purge_session("s-cluster").await.unwrap(), STREAMS as u64);
    assert!(b.session_streams("s-cluster").await.unwrap().is_empty());
    for &stream in &streams {
        assert!(a.stream_info(stream).await.unwrap().is_none());
    }
    a.close().await.unwrap();
    b.close().await.unwrap();
}

/// What a producer saw: the sequence and payload of each acknowledged
/// append, how many appends failed, and how many were acknowledged after
/// the change under test (a failover, a slot moved).
#[derive(Default)]
struct Produced {
    acknowledged: BTreeMap<u64, String>,
    failed: u64,
    after_change: u64,
}

/// Issue 25, part 2: a master is SIGKILLed while producers append to
/// streams on every shard (each write acknowledged only once a replica has
/// it: `wait_for_replicas(1, ..)`) and followers on another instance follow
/// them. Its replica is promoted; every acknowledged append is then read
/// back with its payload, from the new master; a follower subscribed before
/// the kill (on a stream of the killed shard) still gets the events
/// appended after the failover, live; and once the killed node is back (as
/// a replica), appends are acknowledged on every shard again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_appends_survive_a_master_killed_mid_run() {
    if skip_without_redis("acknowledged_appends_survive_a_master_killed_mid_run") {
        return;
    }
    const STREAMS: usize = 9;
    let mut cluster = tokio::task::spawn_blocking(RedisCluster::start)
        .await
        .unwrap();
    let url = cluster.url();
    let prefix = unique_prefix();
    let acknowledged = |o: RedisOptions| {
        o.wait_for_replicas(1, Duration::from_millis(500))
            .failover_timeout(Duration::from_secs(15))
    };
    let a = open(&url, &prefix, acknowledged).await;
    let b = open(&url, &prefix, acknowledged).await;
    let mut streams = Vec::new();
    while streams.len() < STREAMS || masters_of(&cluster, &prefix, &streams).len() < 3 {
        streams.push(
            a.create_stream(NewStream::new(StreamKind::PostResponse))
                .await
                .unwrap(),
        );
    }
    let victim = cluster.master_of(&format!("{prefix}meta:{{{}}}", streams[0]));
    let on_victim: Vec<StreamId> = streams
        .iter()
        .copied()
        .filter(|s| cluster.master_of(&format!("{prefix}meta:{{{s}}}")) == victim)
        .collect();

    // Followers on B, from the start, of every stream.
    let followers: Vec<_> = streams
        .iter()
        .map(|&stream| tokio::spawn(collect(store::follow(b.clone(), stream, 0))))
        .collect();
    let failed_over = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));
    let producers: Vec<_> = streams
        .iter()
        .map(|&stream| {
            let (a, stop, failed_over) = (a.clone(), stop.clone(), failed_over.clone());
            tokio::spawn(async move {
                let mut produced = Produced::default();
                let mut attempt = 0u64;
                while !stop.load(Ordering::Acquire) {
                    attempt += 1;
                    let data = format!("{stream}:{attempt}");
                    match a
                        .append(stream, vec![NewEvent::message(data.clone())])
                        .await
                    {
                        Ok(receipt) => {
                            produced.acknowledged.insert(receipt.last_seq, data);
                            if failed_over.load(Ordering::Acquire) {
                                produced.after_change += 1;
                            }
                        }
                        Err(_) => {
                            produced.failed += 1;
                            tokio::time::sleep(Duration::from_millis(20)).await;
                        }
                    }
                }
                produced
            })
        })
        .collect();

    tokio::time::sleep(Duration::from_secs(1)).await;
    let killed_at = Instant::now();
    cluster.kill(victim);
    let mut cluster = tokio::task::spawn_blocking(move || {
        cluster.wait_for_failover(victim, Duration::from_secs(30));
        cluster
    })
    .await
    .unwrap();
    let promoted_after = killed_at.elapsed();
    failed_over.store(true, Ordering::Release);
    // The promoted master has no replica until the killed node is back:
    // appends on its shard cannot be acknowledged meanwhile (they fail).
    tokio::time::sleep(Duration::from_secs(1)).await;
    let _cluster = tokio::task::spawn_blocking(move || {
        cluster.restart(victim);
        cluster.wait_until_ok(Duration::from_secs(30));
        cluster.wait_until_replicated(Duration::from_secs(30));
        cluster
    })
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop.store(true, Ordering::Release);
    let mut produced = Vec::new();
    for producer in producers {
        produced.push(guard("a producer", producer).await.unwrap());
    }
    for &stream in &streams {
        guard("ending a stream", a.end_stream(stream, StreamEnd::Complete))
            .await
            .unwrap();
    }

    let mut total = (0, 0);
    for ((&stream, produced), follower) in streams.iter().zip(&produced).zip(followers) {
        let read = guard("a replay", collect(store::replay(b.clone(), stream, 0)))
            .await
            .unwrap();
        let by_seq: BTreeMap<u64, &StoredEvent> = read.iter().map(|e| (e.seq, e)).collect();
        let last = read.last().map_or(0, |e| e.seq);
        assert_eq!(
            read.iter().map(|e| e.seq).collect::<Vec<_>>(),
            (1..=last).collect::<Vec<_>>(),
            "stream {stream} is gap-free"
        );
        for (seq, data) in &produced.acknowledged {
            let event = by_seq
                .get(seq)
                .unwrap_or_else(|| panic!("acknowledged append {seq} of {stream} lost"));
            assert_eq!(event.data, data.as_bytes(), "payload of {seq} of {stream}");
        }
        assert!(
            produced.after_change > 0,
            "stream {stream} took no append after the failover ({} failed)",
            produced.failed
        );
        // The follower on B saw the same events, live through the failover.
        let followed = guard("a follower on B", follower).await.unwrap().unwrap();
        assert_eq!(followed, read, "B's follower of {stream}");
        total.0 += produced.acknowledged.len();
        total.1 += produced.failed;
    }
    eprintln!(
        "failover: {} streams ({} on the killed master), replica promoted after {:?}, {} appends acknowledged (all read back), {} failed (not acknowledged)",
        streams.len(),
        on_victim.len(),
        promoted_after,
        total.0,
        total.1
    );
    a.close().await.unwrap();
    b.close().await.unwrap();
}

/// A stream's slot moves to another master (keys migrated a few at a time,
/// as `redis-cli --cluster reshard` does) while instance A appends to it
/// and instance B follows it: A's appends meet `ASK`, `TRYAGAIN` and then
/// `MOVED`, and go on; B's follower, subscribed on the old master, gets
/// every event, the ones after the move included, and the end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_goes_on_while_its_slot_moves_to_another_master() {
    if skip_without_redis("a_stream_goes_on_while_its_slot_moves_to_another_master") {
        return;
    }
    let cluster = Arc::new(
        tokio::task::spawn_blocking(RedisCluster::start)
            .await
            .unwrap(),
    );
    let prefix = unique_prefix();
    let a = open(&cluster.url(), &prefix, |o| o).await;
    let b = open(&cluster.url(), &prefix, |o| o).await;
    let meta = |s: StreamId| format!("{prefix}meta:{{{s}}}");
    let stream = a
        .create_stream(NewStream::new(StreamKind::PostResponse))
        .await
        .unwrap();
    let from = cluster.master_of(&meta(stream));
    let to = loop {
        let other = StreamId::random();
        let master = cluster.master_of(&meta(other));
        if master != from {
            break master;
        }
    };
    let follower = tokio::spawn(collect(store::follow(b.clone(), stream, 0)));
    tokio::time::sleep(Duration::from_millis(200)).await;
    let moved = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));
    let producer = {
        let (a, moved, stop) = (a.clone(), moved.clone(), stop.clone());
        tokio::spawn(async move {
            let mut produced = Produced::default();
            let mut attempt = 0u64;
            while !stop.load(Ordering::Acquire) {
                attempt += 1;
                let data = format!("{stream}:{attempt}");
                match a
                    .append(stream, vec![NewEvent::message(data.clone())])
                    .await
                {
                    Ok(receipt) => {
                        produced.acknowledged.insert(receipt.last_seq, data);
                        if moved.load(Ordering::Acquire) {
                            produced.after_change += 1;
                        }
                    }
                    Err(error) => {
                        eprintln!("append failed while the slot moved: {error}");
                        produced.failed += 1;
                    }
                }
            }
            produced
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let slot = cluster.slot_of(&meta(stream));
    {
        let cluster = cluster.clone();
        tokio::task::spawn_blocking(move || {
            cluster.migrate_slot(slot, from, to, Duration::from_millis(300))
        })
        .await
        .unwrap();
    }
    assert_eq!(cluster.master_of(&meta(stream)), to, "the slot moved");
    moved.store(true, Ordering::Release);
    tokio::time::sleep(Duration::from_secs(1)).await;
    stop.store(true, Ordering::Release);
    let produced = guard("the producer", producer).await.unwrap();
    a.end_stream(stream, StreamEnd::Complete).await.unwrap();

    let read = collect(store::replay(b.clone(), stream, 0)).await.unwrap();
    let last = read.last().map_or(0, |e| e.seq);
    assert_eq!(
        read.iter().map(|e| e.seq).collect::<Vec<_>>(),
        (1..=last).collect::<Vec<_>>(),
        "gap-free"
    );
    for (seq, data) in &produced.acknowledged {
        assert_eq!(read[*seq as usize - 1].data, data.as_bytes(), "event {seq}");
    }
    assert_eq!(produced.failed, 0, "no append failed while the slot moved");
    assert!(produced.after_change > 0, "no append after the move");
    let followed = guard("B's follower", follower).await.unwrap().unwrap();
    assert_eq!(followed, read, "B's follower");
    eprintln!(
        "slot {slot} moved from node {from} to node {to} under {} appends ({} after the move)",
        produced.acknowledged.len(),
        produced.after_change
    );
    a.close().await.unwrap();
    b.close().await.unwrap();
}

/// A shard with no node left (its master and its replica SIGKILLed):
/// calls on its streams fail with a store error once the failover timeout
/// has run out, not sooner and not much later. (With Redis's default
/// `cluster-require-full-coverage yes` the other shards refuse writes too,
/// until the shard is back.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_shard_fails_its_calls_after_the_failover_timeout() {
    if skip_without_redis("a_lost_shard_fails_its_calls_after_the_failover_timeout") {
        return;
    }
    const FAILOVER_TIMEOUT: Duration = Duration::from_secs(3);
    let mut cluster = tokio::task::spawn_blocking(RedisCluster::start)
        .await
        .unwrap();
    let prefix = unique_prefix();
    let store = open(&cluster.url(), &prefix, |o| {
        o.failover_timeout(FAILOVER_TIMEOUT)
    })
    .await;
    let lost = store
        .create_stream(NewStream::new(StreamKind::PostResponse))
        .await
        .unwrap();
    let victim = cluster.master_of(&format!("{prefix}meta:{{{lost}}}"));
    for replica in cluster.replicas_of(victim) {
        cluster.kill(replica);
    }
    cluster.kill(victim);

    let started = Instant::now();
    let error = store
        .append(lost, vec![NewEvent::message("lost")])
        .await
        .unwrap_err();
    let failed_after = started.elapsed();
    assert!(matches!(error, StoreError::Backend { .. }), "{error:?}");
    assert!(
        error.to_string().contains("failover timeout"),
        "the error says what ran out: {error}"
    );
    assert!(
        failed_after >= FAILOVER_TIMEOUT.mul_f64(0.9)
            && failed_after <= FAILOVER_TIMEOUT + Duration::from_secs(2),
        "failed after {failed_after:?}, the failover timeout being {FAILOVER_TIMEOUT:?}: {error}"
    );
    eprintln!("a lost shard's append failed after {failed_after:?}: {error}");
}

/// A store URL naming no reachable node fails at open with an error that
/// says it was connecting to the cluster.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_cluster_fails_at_open_with_a_clear_error() {
    let port = redis_server::free_port();
    let error = RedisOptions::new(format!("redis+cluster://127.0.0.1:{port}"))
        .connection_timeout(Duration::from_millis(200))
        .open()
        .await
        .unwrap_err();
    assert!(error.to_string().contains("Redis Cluster"), "{error}");
}
