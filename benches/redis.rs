//! Redis event store benchmarks: `cargo bench --bench redis --features redis`.
//!
//! Starts its own `redis-server` on a free loopback port (no persistence:
//! `--save "" --appendonly no`) and its own Redis Cluster (three masters,
//! three replicas, the same settings: `mcp_resume_testkit::redis_cluster`),
//! and measures on each, in one run (`redis_*` on the single server,
//! `cluster_*` on the cluster, `cluster_wait1_*` on the cluster with every
//! write acknowledged by a replica: `RedisOptions::wait_for_replicas(1, ..)`):
//!
//! - `redis_append/*`: events per second committed by [`RedisEventStore`]
//!   with 100 concurrent streams of 256 B events, each caller awaiting its
//!   own commit (the shape of `append/*` in `benches/store.rs`);
//! - `redis_replay/*`: reading 10,000 events after position 0
//!   ([`store::replay`]) from a 10,000-event stream;
//! - the limit: `redis-benchmark -c 100 -n 200000 -P 1 -q XADD benchstream *
//!   d <256 B>` against the same server, once before and once after the
//!   store's appends (the ratio uses their mean);
//! - cross-instance resume latency: instance A (its own store and runtime)
//!   produces a stream, an event every 5 ms; instance B (another store on
//!   the same Redis) resumes it with [`store::follow`] from the head A has
//!   committed, at a random phase of A's appends. A sample is the time from
//!   starting B's follow to B holding the first event A commits after that
//!   head, so it includes waiting for A's next append (2.5 ms on average);
//!   the same less that wait (from the later of the follow's start and A's
//!   append call) is reported beside it. Every sample resumes a fresh
//!   stream, so B subscribes its channel from cold, as an instance does when
//!   a client lands on it; a second, warm follow of the same stream right
//!   after (the channel already subscribed) is reported beside it.
//!
//! At the end it prints a summary computed from criterion's estimates and
//! the measurements of this same run, the cluster beside the single server.
//!
//! `MCP_RESUME_BENCH_QUICK=1` runs a small version (for CI: shorter
//! warm-ups and measurements, 30 resume samples, a smaller `redis-benchmark`).

use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput};
use tokio::sync::watch;

mod common;
use common::{mean_seconds, runtime, timed_appends};
use mcp_resume::store::{
    self, EventStore, NewEvent, NewStream, RedisEventStore, RedisOptions, Retention, StreamEnd,
    StreamId, StreamKind,
};
use mcp_resume_testkit::redis_cluster::RedisCluster;
use mcp_resume_testkit::redis_server::RedisServer;

const EVENT_SIZE: usize = 256;
const STREAMS: usize = 100;
const REPLAY_EVENTS: u64 = 10_000;
const XADD_CLIENTS: usize = 100;
const XADD_REQUESTS: usize = 200_000;
const RESUME_SAMPLES: usize = 500;

/// The run's size: full, or quick (`MCP_RESUME_BENCH_QUICK=1`).
#[derive(Clone, Copy)]
struct Size {
    measurement: Duration,
    warm_up: Duration,
    replay_samples: usize,
    resume_samples: usize,
    xadd_requests: usize,
}

impl Size {
    fn from_env() -> Self {
        if std::env::var("MCP_RESUME_BENCH_QUICK").is_ok_and(|v| v == "1") {
            Self {
                measurement: Duration::from_secs(1),
                warm_up: Duration::from_millis(500),
                replay_samples: 10,
                resume_samples: 30,
                xadd_requests: XADD_REQUESTS / 10,
            }
        } else {
            Self {
                measurement: Duration::from_secs(6),
                warm_up: Duration::from_secs(3),
                replay_samples: 20,
                resume_samples: RESUME_SAMPLES,
                xadd_requests: XADD_REQUESTS,
            }
        }
    }
}

/// Where a series of the run ran: its name in the criterion ids and the
/// summary, and the store URL.
struct Target {
    name: &'static str,
    url: String,
    /// Replicas each write waits for (`RedisOptions::wait_for_replicas`).
    replicas: u32,
}
/// How often instance A appends to the stream B resumes.
const PRODUCER_INTERVAL: Duration = Duration::from_millis(5);
/// B resumes once A has committed this many events: mid-stream.
const RESUME_AFTER: u64 = 3;

/// Appends in the benchmarks are never trimmed, as XADD never trims.
fn unbounded() -> Retention {
    Retention::new().max_events_per_stream(u64::MAX)
}

async fn open(target: &Target, prefix: &str) -> RedisEventStore {
    RedisOptions::new(&target.url)
        .wait_for_replicas(target.replicas, RedisOptions::DEFAULT_REPLICA_TIMEOUT)
        .key_prefix(prefix)
        .retention(unbounded())
        .open()
        .await
        .expect("open the Redis store")
}

/// `redis-benchmark`'s XADD rate against the server (requests per second).
fn xadd_limit(port: u16, requests: usize) -> f64 {
    let value = "x".repeat(EVENT_SIZE);
    let output = Command::new("redis-benchmark")
        .args(["-h", "127.0.0.1", "-p", &port.to_string()])
        .args(["-c", &XADD_CLIENTS.to_string()])
        .args(["-n", &requests.to_string()])
        .args(["-P", "1", "-q"])
        .args(["XADD", "benchstream", "*", "d", &value])
        .stdin(Stdio::null())
        .output()
        .expect("cannot run redis-benchmark; install it with redis-server (or `redis-tools`)");
    let text = String::from_utf8_lossy(&output.stdout);
    // Progress lines end in `\r`; the result is the last one:
    // `XADD benchstream * d xxx…: 51020.41 requests per second, p50=1.263 msec`.
    text.split(['\r', '\n'])
        .filter_map(|line| {
            line.split_once(" requests per second")?
                .0
                .rsplit(' ')
                .next()
        })
        .filter_map(|rate| rate.parse::<f64>().ok())
        .next_back()
        .unwrap_or_else(|| {
            panic!(
                "no rate in redis-benchmark's output (status {}): {text}{}",
                output.status,
                String::from_utf8_lossy(&output.stderr)
            )
        })
}

fn append_benches(c: &mut Criterion, rt: &tokio::runtime::Runtime, target: &Target, size: Size) {
    let store: Arc<dyn EventStore> = Arc::new(rt.block_on(open(target, "bench-append:")));
    let mut group = c.benchmark_group("redis_append");
    group.measurement_time(size.measurement);
    group.warm_up_time(size.warm_up);
    group.throughput(Throughput::Elements(STREAMS as u64));
    group.bench_function(
        BenchmarkId::new(
            format!("{}_store", target.name),
            format!("{EVENT_SIZE}B/{STREAMS}streams"),
        ),
        |b| {
            b.to_async(rt)
                .iter_custom(|iters| timed_appends(store.clone(), STREAMS, EVENT_SIZE, iters));
        },
    );
    group.finish();
    rt.block_on(store.close()).unwrap();
}

fn replay_benches(c: &mut Criterion, rt: &tokio::runtime::Runtime, target: &Target, size: Size) {
    let store: Arc<dyn EventStore> = Arc::new(rt.block_on(open(target, "bench-replay:")));
    let stream = rt.block_on(async {
        let id = store
            .create_stream(NewStream::new(StreamKind::PostResponse))
            .await
            .unwrap();
        let data = bytes::Bytes::from(vec![b'x'; EVENT_SIZE]);
        for _ in 0..REPLAY_EVENTS / 1_000 {
            store
                .append(id, vec![NewEvent::message(data.clone()); 1_000])
                .await
                .unwrap();
        }
        store.end_stream(id, StreamEnd::Complete).await.unwrap();
        id
    });
    let mut group = c.benchmark_group("redis_replay");
    group.throughput(Throughput::Elements(REPLAY_EVENTS));
    group.sample_size(size.replay_samples);
    group.measurement_time(size.measurement);
    group.warm_up_time(size.warm_up);
    group.bench_function(
        BenchmarkId::new(
            format!("{}_10k_events", target.name),
            format!("store_{REPLAY_EVENTS}"),
        ),
        |b| {
            b.to_async(rt).iter(|| async {
                let mut batches = store::replay(store.clone(), stream, 0);
                let mut count = 0;
                while let Some(batch) = batches.next_batch().await {
                    count += batch.unwrap().len();
                }
                assert_eq!(count as u64, REPLAY_EVENTS);
            });
        },
    );
    group.finish();
    rt.block_on(store.close()).unwrap();
}

/// One stream produced on instance A: when each append started (index
/// `seq - 1`), and the newest committed sequence.
struct Production {
    started: Mutex<Vec<Instant>>,
    committed: watch::Sender<u64>,
}

/// Instance A's producer: creates a stream, appends an event every
/// [`PRODUCER_INTERVAL`] until `stop` fires, then completes the stream.
async fn produce(
    store: Arc<dyn EventStore>,
    production: Arc<Production>,
    id_tx: tokio::sync::oneshot::Sender<StreamId>,
    mut stop: tokio::sync::oneshot::Receiver<()>,
) {
    let id = store
        .create_stream(NewStream::new(StreamKind::PostResponse))
        .await
        .unwrap();
    let _ = id_tx.send(id);
    let data = bytes::Bytes::from(vec![b'x'; EVENT_SIZE]);
    let mut tick = tokio::time::interval(PRODUCER_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = &mut stop => break,
            _ = tick.tick() => {
                production.started.lock().unwrap().push(Instant::now());
                let receipt = store
                    .append(id, vec![NewEvent::message(data.clone())])
                    .await
                    .unwrap();
                production.committed.send_replace(receipt.last_seq);
            }
        }
    }
    store.end_stream(id, StreamEnd::Complete).await.unwrap();
}

/// One resume on B from A's committed head: (time from starting the follow
/// to holding the first new event, the same less the wait for A to start
/// appending that event).
async fn resume_once(
    b: &Arc<dyn EventStore>,
    id: StreamId,
    production: &Production,
) -> (Duration, Duration) {
    let head = *production.committed.borrow();
    let start = Instant::now();
    let mut follow = store::follow(b.clone(), id, head);
    let batch = follow
        .next_batch()
        .await
        .expect("the stream is live")
        .unwrap();
    let received = Instant::now();
    let seq = batch[0].seq;
    assert_eq!(seq, head + 1, "follow resumes right after the head");
    let appended = production.started.lock().unwrap()[seq as usize - 1];
    (received - start, received - start.max(appended))
}

/// A wait within one producer interval, spread evenly over the samples (a
/// golden-ratio sequence), so resumes land at every phase of A's appends
/// rather than always just after one (tokio's timer rounds it to the ms).
fn phase(sample: usize) -> Duration {
    PRODUCER_INTERVAL.mul_f64((sample as f64 * 0.618_033_988_749_895).fract())
}

/// Latency samples of the resume runs, in seconds, each series sorted
/// ascending once all are taken.
#[derive(Default)]
struct ResumeFigures {
    cold: Vec<f64>,
    cold_delivery: Vec<f64>,
    warm: Vec<f64>,
    warm_delivery: Vec<f64>,
}

fn resume_latency(rt: &tokio::runtime::Runtime, target: &Target, samples: usize) -> ResumeFigures {
    // Instance A: its own store, on its own runtime (its own worker thread).
    let a_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("a Tokio runtime");
    let a: Arc<dyn EventStore> = Arc::new(a_rt.block_on(open(target, "bench-resume:")));
    let b: Arc<dyn EventStore> = Arc::new(rt.block_on(open(target, "bench-resume:")));
    let mut figures = ResumeFigures::default();
    rt.block_on(async {
        for sample in 0..samples {
            let production = Arc::new(Production {
                started: Mutex::new(Vec::new()),
                committed: watch::Sender::new(0),
            });
            let mut committed = production.committed.subscribe();
            let (id_tx, id_rx) = tokio::sync::oneshot::channel();
            let (stop_tx, stop_rx) = tokio::sync::oneshot::channel();
            let producer = a_rt.spawn(produce(a.clone(), production.clone(), id_tx, stop_rx));
            let id = id_rx.await.unwrap();
            committed.wait_for(|&n| n >= RESUME_AFTER).await.unwrap();
            tokio::time::sleep(phase(2 * sample)).await;
            let (total, delivery) = resume_once(&b, id, &production).await;
            figures.cold.push(total.as_secs_f64());
            figures.cold_delivery.push(delivery.as_secs_f64());
            tokio::time::sleep(phase(2 * sample + 1)).await;
            let (total, delivery) = resume_once(&b, id, &production).await;
            figures.warm.push(total.as_secs_f64());
            figures.warm_delivery.push(delivery.as_secs_f64());
            let _ = stop_tx.send(());
            producer.await.unwrap();
        }
    });
    rt.block_on(b.close()).unwrap();
    a_rt.block_on(a.close()).unwrap();
    for samples in [
        &mut figures.cold,
        &mut figures.cold_delivery,
        &mut figures.warm,
        &mut figures.warm_delivery,
    ] {
        samples.sort_by(f64::total_cmp);
    }
    figures
}

fn print_summary(xadd: &[f64], runs: &[(&Target, ResumeFigures)]) {
    println!("\n== redis benchmark summary (this run) ==");
    let label = format!("{EVENT_SIZE}B/{STREAMS}streams");
    let xadd_mean = xadd.iter().sum::<f64>() / xadd.len() as f64;
    let rates: Vec<String> = xadd.iter().map(|rate| format!("{rate:.0}")).collect();
    println!(
        "redis-benchmark XADD on the single server (-c {XADD_CLIENTS} -P 1, {EVENT_SIZE} B): {xadd_mean:.0} req/s (runs: {})",
        rates.join(", ")
    );
    let ms = |sorted: &[f64], fraction| common::percentile(sorted, fraction) * 1e3;
    println!(
        "| target | appends ({label}, each awaited) | ratio to XADD | replay 10k events | resume cold p50 / p99 | resume warm p50 / p99 | cold less the producer's wait p50 / p99 |"
    );
    println!("|---|---|---|---|---|---|---|");
    for (target, resume) in runs {
        let store_rate = mean_seconds("redis_append", &format!("{}_store", target.name), &label)
            .map(|s| STREAMS as f64 / s);
        let replay = mean_seconds(
            "redis_replay",
            &format!("{}_10k_events", target.name),
            &format!("store_{REPLAY_EVENTS}"),
        );
        println!(
            "| {} | {} | {} | {} | {:.2} / {:.2} ms | {:.2} / {:.2} ms | {:.2} / {:.2} ms |",
            target.name,
            store_rate.map_or("-".into(), |r| format!("{r:.0} events/s")),
            store_rate.map_or("-".into(), |r| format!("{:.2}", r / xadd_mean)),
            replay.map_or("-".into(), |s| format!("{:.2} ms", s * 1e3)),
            ms(&resume.cold, 0.5),
            ms(&resume.cold, 0.99),
            ms(&resume.warm, 0.5),
            ms(&resume.warm, 0.99),
            ms(&resume.cold_delivery, 0.5),
            ms(&resume.cold_delivery, 0.99),
        );
    }
    println!(
        "cross-instance resume: {} samples per target, producer every {} ms; target: p99 < 50 ms on loopback",
        runs.first().map_or(0, |(_, r)| r.cold.len()),
        PRODUCER_INTERVAL.as_millis()
    );
}

fn main() {
    let mut criterion = Criterion::default().configure_from_args();
    let size = Size::from_env();
    let rt = runtime();
    let server = RedisServer::start();
    let cluster = RedisCluster::start();
    let targets = [
        Target {
            name: "redis",
            url: server.url(),
            replicas: 0,
        },
        Target {
            name: "cluster",
            url: cluster.url(),
            replicas: 0,
        },
        Target {
            name: "cluster_wait1",
            url: cluster.url(),
            replicas: 1,
        },
    ];
    let mut xadd = vec![xadd_limit(server.port(), size.xadd_requests)];
    for target in &targets {
        append_benches(&mut criterion, &rt, target, size);
    }
    xadd.push(xadd_limit(server.port(), size.xadd_requests));
    for target in &targets {
        replay_benches(&mut criterion, &rt, target, size);
    }
    let runs: Vec<(&Target, ResumeFigures)> = targets
        .iter()
        .map(|target| (target, resume_latency(&rt, target, size.resume_samples)))
        .collect();
    criterion.final_summary();
    print_summary(&xadd, &runs);
    drop(cluster);
    drop(server);
}
