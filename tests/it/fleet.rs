//! Two instances of the layer on one store, as in a fleet behind a load
//! balancer without affinity: a stream produced on A and read on B is kept
//! alive by B's attachment lease past A's detach timeout, abandoned once its
//! last reader (on any instance) left, and ended promptly on B when A dies.
//!
//! Each test runs on the memory store (two layers in one process share it)
//! and, with the `redis` feature, on a `redis-server` of its own: the
//! fleet's real shape, two stores on one Redis.

use std::sync::Arc;
use std::time::{Duration, Instant};

use http::StatusCode;
use mcp_resume::ResumabilityLayer;
use mcp_resume::store::{EventStore, MemoryEventStore, StreamState};

use crate::common::server::{Script, message};
use crate::common::{Served, call_then_leave, guard, resume_after, serve_scripted};

/// The detach timeout of both instances: short, so calls outlive it.
const DETACH: Duration = Duration::from_millis(1_000);
/// The lease period of both instances.
const PERIOD: Duration = Duration::from_millis(100);

/// Where the instances keep their streams.
enum Backend {
    /// One store, shared by the instances (they run in one process).
    Memory(Arc<dyn EventStore>),
    /// A store per instance, on one Redis under one prefix.
    #[cfg(feature = "redis")]
    Redis {
        server: crate::common_redis::RedisServer,
        prefix: String,
    },
}

impl Backend {
    fn memory() -> Self {
        Backend::Memory(Arc::new(MemoryEventStore::new()))
    }

    #[cfg(feature = "redis")]
    fn redis() -> Self {
        Backend::Redis {
            server: crate::common_redis::RedisServer::start(),
            prefix: crate::common_redis::unique_prefix(),
        }
    }

    /// An instance's store: opened on the current runtime (a Redis store's
    /// tasks live on it).
    async fn open(&self) -> Arc<dyn EventStore> {
        match self {
            Backend::Memory(store) => store.clone(),
            #[cfg(feature = "redis")]
            Backend::Redis { server, prefix } => {
                Arc::new(crate::common_redis::open(server, prefix, Default::default()).await)
            }
        }
    }
}

fn instance(store: Arc<dyn EventStore>) -> ResumabilityLayer {
    ResumabilityLayer::new(store)
        .detach_timeout(DETACH)
        .lease_period(PERIOD)
}

/// A call served by A whose client leaves after the first event and
/// resumes on B, while A's producer writes an event every period for four
/// detach timeouts: B delivers every event, in order, and the stream
/// completes, because B's attachment lease kept A from abandoning it. Then
/// a second call, whose reader on B leaves: A abandons it between the detach
/// timeout and the detach timeout plus a period (and a margin) later.
async fn read_elsewhere_outlives_detach_timeout(backend: Backend) {
    let layer_a = instance(backend.open().await);
    let layer_b = instance(backend.open().await);
    let (script_a, served_a) = serve_scripted(&layer_a).await;
    let (_script_b, served_b) = serve_scripted(&layer_b).await;

    let (stream, inner) = call_then_leave(&script_a, &served_a, 1).await;
    let mut on_b = resume_after(stream, 1).send(served_b.addr).await;
    assert_eq!(on_b.status, StatusCode::OK);
    let last = 4 * DETACH.as_millis() as u64 / PERIOD.as_millis() as u64;
    let producer = tokio::spawn(async move {
        for n in 2..=last {
            if !inner.event(&message(n)).await {
                return Err(n);
            }
            tokio::time::sleep(PERIOD).await;
        }
        Ok(())
    });
    let events = guard("the stream to end on B", on_b.events_to_end()).await;
    assert_eq!(
        producer.await.unwrap(),
        Ok(()),
        "A dropped the inner body (abandoned the stream) at that event"
    );
    let seqs: Vec<u64> = events.iter().map(|e| e.seq()).collect();
    assert_eq!(
        seqs,
        (2..=last).collect::<Vec<_>>(),
        "every event, once, in order"
    );
    for event in &events {
        assert_eq!(event.data(), message(event.seq()));
    }
    let info = layer_b.store().stream_info(stream).await.unwrap().unwrap();
    assert_eq!(info.state, StreamState::Complete);
    assert_eq!(layer_a.stats().streams_abandoned, 0);

    // The reader on B leaves too: now nobody reads, anywhere.
    let (stream, inner) = call_then_leave(&script_a, &served_a, 1).await;
    let mut on_b = resume_after(stream, 1).send(served_b.addr).await;
    assert!(inner.event(&message(2)).await);
    assert_eq!(on_b.expect_event().await.seq(), 2);
    // Past A's own detach timeout, so only the lease keeps it.
    tokio::time::sleep(DETACH + 2 * PERIOD).await;
    assert!(!inner.is_dropped(), "abandoned while read on B");
    drop(on_b);
    let left = Instant::now();
    guard("A to abandon the stream", inner.dropped()).await;
    let after = left.elapsed();
    assert!(
        after >= DETACH - PERIOD && after <= DETACH + PERIOD + Duration::from_millis(700),
        "abandoned {after:?} after its last reader left (detach timeout {DETACH:?}, lease period {PERIOD:?})"
    );
    let state = guard("the end to be recorded", async {
        loop {
            let info = layer_a.store().stream_info(stream).await.unwrap().unwrap();
            if info.state.is_ended() {
                return info.state;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert_eq!(state, StreamState::Abandoned);
}

/// A is its own runtime on its own thread, so it can die the way a killed
/// process does: every task stops at once and nothing is closed.
struct Doomed {
    script: Script,
    served: Served,
    kill: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Doomed {
    async fn start(backend: Arc<Backend>) -> Self {
        let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
        let (kill, killed) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                let layer = instance(backend.open().await);
                let (script, served) = serve_scripted(&layer).await;
                let _ = ready_tx.send((script, served));
                let _ = killed.await;
                // Never closed: it goes down with the runtime.
                std::mem::forget(layer);
            });
            // Dropping the runtime cancels every task A ran.
            drop(runtime);
        });
        let (script, served) = guard("A to start", ready_rx).await.unwrap();
        Self {
            script,
            served,
            kill: Some(kill),
            thread: Some(thread),
        }
    }

    fn kill(&mut self) {
        let _ = self.kill.take().unwrap().send(());
        self.thread.take().unwrap().join().unwrap();
    }
}

/// A call produced on A and read on B; A dies: B's response ends within a
/// few lease periods, with everything A stored; the stream is abandoned in
/// the store, and a resume of its end is refused (`400`), so the client
/// fails the call instead of waiting.
async fn a_dead_producers_readers_elsewhere_end_promptly(backend: Backend) {
    let backend = Arc::new(backend);
    let mut a = Doomed::start(backend.clone()).await;
    let layer_b = instance(backend.open().await);
    let (_script_b, served_b) = serve_scripted(&layer_b).await;
    let (stream, inner) = call_then_leave(&a.script, &a.served, 1).await;
    let mut on_b = resume_after(stream, 1).send(served_b.addr).await;
    assert!(inner.event(&message(2)).await);
    assert_eq!(on_b.expect_event().await.seq(), 2);
    // Several lease periods of a healthy producer: B keeps reading.
    tokio::time::sleep(5 * PERIOD).await;
    assert!(inner.event(&message(3)).await);
    assert_eq!(on_b.expect_event().await.seq(), 3);

    a.kill();
    let killed = Instant::now();
    let rest = guard("B's response to end", on_b.events_to_end()).await;
    let ended_after = killed.elapsed();
    assert!(rest.is_empty(), "nothing after A died: {rest:?}");
    // The producer lease lasts three periods; B checks every period.
    assert!(
        ended_after <= 6 * PERIOD + Duration::from_millis(500),
        "B's reader learnt of A's death after {ended_after:?} (lease period {PERIOD:?})"
    );
    let info = layer_b.store().stream_info(stream).await.unwrap().unwrap();
    assert_eq!(info.state, StreamState::Abandoned);
    assert_eq!(info.last_seq, 3);
    let again = resume_after(stream, 3).send(served_b.addr).await;
    assert_eq!(again.status, StatusCode::BAD_REQUEST);
    drop(inner);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_a_stream_read_on_another_instance_outlives_the_detach_timeout() {
    read_elsewhere_outlives_detach_timeout(Backend::memory()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_readers_elsewhere_end_promptly_when_the_producer_dies() {
    a_dead_producers_readers_elsewhere_end_promptly(Backend::memory()).await;
}

#[cfg(feature = "redis")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_a_stream_read_on_another_instance_outlives_the_detach_timeout() {
    read_elsewhere_outlives_detach_timeout(Backend::redis()).await;
}

#[cfg(feature = "redis")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_readers_elsewhere_end_promptly_when_the_producer_dies() {
    a_dead_producers_readers_elsewhere_end_promptly(Backend::redis()).await;
}
