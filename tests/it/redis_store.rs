//! The Redis store beyond the shared suite (`tests/it/store_backends.rs`):
//! several instances on one Redis, an instance that crashes, Redis killed
//! and restarted under running streams and followers, and the layer on top
//! (fail-open while Redis is down, resumable again once it is back, a
//! resume answered by another instance than the producing one, and the end
//! of a stream that ended while Redis was down recorded once it is back).
//!
//! Each test starts its own `redis-server` on a free loopback port.

use crate::common_redis;

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use crate::common_redis::{RedisServer, open, unique_prefix};
use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::routing::post;
use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::BodyExt;
use mcp_resume::ResumabilityLayer;
use mcp_resume::sse::{Block, SseEvent, SseParser};
use mcp_resume::store::{
    self, EventId, EventStore, NewEvent, NewStream, ReadLimit, RedisOptions, Retention, StoreError,
    StoredEvent, StreamEnd, StreamId, StreamKind, StreamState,
};
use tokio::sync::mpsc;
use tower::ServiceExt;

type Store = Arc<dyn EventStore>;

fn event(n: u64) -> NewEvent {
    NewEvent::message(format!(r#"{{"n":{n}}}"#))
}

async fn collect(mut batches: store::EventBatches) -> Result<Vec<StoredEvent>, StoreError> {
    let mut events = Vec::new();
    while let Some(batch) = batches.next_batch().await {
        events.extend(batch?);
    }
    Ok(events)
}

/// Asserts `events` are exactly `from..=to`, in order, each with its payload.
fn assert_exactly(events: &[StoredEvent], from: u64, to: u64) {
    let seqs: Vec<u64> = events.iter().map(|e| e.seq).collect();
    assert_eq!(
        seqs,
        (from..=to).collect::<Vec<_>>(),
        "exactly {from}..={to}"
    );
    for e in events {
        assert_eq!(e.data, event(e.seq).data, "payload of {}", e.seq);
    }
}

async fn guard<T>(what: &str, future: impl Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(30), future)
        .await
        .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
}

async fn open_arc(server: &RedisServer, prefix: &str) -> Store {
    Arc::new(open(server, prefix, Retention::default()).await)
}

/// Waits until `store` answers again after Redis came back.
async fn wait_reconnected(store: &Store) {
    guard("the store to reconnect", async {
        while store.stream_info(StreamId::random()).await.is_err() {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
}

/// A stream produced on instance A is followed on instance B from a
/// mid-stream position while A appends as fast as it can: B's followers get
/// every event exactly once, live, then the end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_produced_on_one_instance_is_followed_live_on_another() {
    const TOTAL: u64 = 5_000;
    let server = RedisServer::start();
    let prefix = unique_prefix();
    let a = open_arc(&server, &prefix).await;
    let b = open_arc(&server, &prefix).await;

    let stream = a
        .create_stream(NewStream::new(StreamKind::PostResponse).session("s1"))
        .await
        .unwrap();
    a.append(stream, (1..=100).map(event).collect())
        .await
        .unwrap();
    let info = b
        .stream_info(stream)
        .await
        .unwrap()
        .expect("B sees A's stream");
    assert_eq!((info.last_seq, info.state), (100, StreamState::Live));
    assert_eq!(info.session.as_deref(), Some("s1"));

    // Caught up, B's follower waits; an event appended on A reaches it live.
    let mut follower = store::follow(b.clone(), stream, 50);
    let mut got = guard("the replay", follower.next_batch())
        .await
        .unwrap()
        .unwrap();
    assert_exactly(&got, 51, 100);
    a.append(stream, vec![event(101)]).await.unwrap();
    let live = guard("a live event across instances", follower.next_batch())
        .await
        .unwrap()
        .unwrap();
    assert_exactly(&live, 101, 101);
    got.extend(live);

    let follower = tokio::spawn(async move {
        let rest = collect(follower).await.unwrap();
        got.extend(rest);
        got
    });
    let producer = {
        let a = a.clone();
        tokio::spawn(async move {
            let mut n = 102;
            while n <= TOTAL {
                let size = 1 + n % 7;
                let events: Vec<_> = (n..(n + size).min(TOTAL + 1)).map(event).collect();
                n += events.len() as u64;
                a.append(stream, events).await.unwrap();
            }
            a.end_stream(stream, StreamEnd::Complete).await.unwrap();
        })
    };
    // Another follower joins on B while A is writing, from the start.
    tokio::time::sleep(Duration::from_millis(20)).await;
    let late = tokio::spawn(collect(store::follow(b.clone(), stream, 0)));

    producer.await.unwrap();
    assert_exactly(
        &guard("B's follower to end", follower).await.unwrap(),
        51,
        TOTAL,
    );
    assert_exactly(
        &guard("B's late follower to end", late)
            .await
            .unwrap()
            .unwrap(),
        1,
        TOTAL,
    );
    let info = b.stream_info(stream).await.unwrap().unwrap();
    assert_eq!((info.last_seq, info.state), (TOTAL, StreamState::Complete));
}

/// Two instances appending to one stream at once get distinct, gap-free
/// sequences, and each event is stored under the sequence its receipt named.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_appending_to_one_stream_never_collide() {
    let server = RedisServer::start();
    let prefix = unique_prefix();
    let a = open_arc(&server, &prefix).await;
    let b = open_arc(&server, &prefix).await;
    let stream = a
        .create_stream(NewStream::new(StreamKind::Standalone))
        .await
        .unwrap();
    let appender = |store: Store, name: &'static str| {
        tokio::spawn(async move {
            let mut written = Vec::new();
            for n in 0..150 {
                let data = [format!("{name}-{n}-x"), format!("{name}-{n}-y")];
                let events = data.iter().map(|d| NewEvent::message(d.clone())).collect();
                let receipt = store.append(stream, events).await.unwrap();
                assert_eq!(receipt.last_seq, receipt.first_seq + 1);
                written.push((receipt.first_seq, data[0].clone()));
                written.push((receipt.last_seq, data[1].clone()));
            }
            written
        })
    };
    let (from_a, from_b) = (appender(a.clone(), "a"), appender(b.clone(), "b"));
    let mut expected: BTreeMap<u64, String> = BTreeMap::new();
    for (seq, data) in from_a
        .await
        .unwrap()
        .into_iter()
        .chain(from_b.await.unwrap())
    {
        assert!(
            expected.insert(seq, data).is_none(),
            "sequence {seq} given twice"
        );
    }
    assert_eq!(
        expected.keys().copied().collect::<Vec<_>>(),
        (1..=600).collect::<Vec<_>>()
    );
    let stored = collect(store::replay(b.clone(), stream, 0)).await.unwrap();
    let stored: BTreeMap<u64, String> = stored
        .into_iter()
        .map(|e| (e.seq, String::from_utf8(e.data.to_vec()).unwrap()))
        .collect();
    assert_eq!(stored, expected);
}

/// An instance that dies without closing its store: once its lease has run
/// out, another instance's sweep ends its live streams as abandoned, so
/// their followers stop. The survivor's own live streams are untouched.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crashed_instances_streams_are_abandoned_by_the_fleet() {
    let server = RedisServer::start();
    let prefix = unique_prefix();
    let lease = Duration::from_secs(1);
    let options = || {
        RedisOptions::new(server.url())
            .key_prefix(&prefix)
            .instance_lease(lease)
    };
    let a: Store = Arc::new(options().open().await.unwrap());
    let b: Store = Arc::new(options().open().await.unwrap());
    let orphan = a
        .create_stream(NewStream::new(StreamKind::PostResponse))
        .await
        .unwrap();
    a.append(orphan, (1..=3).map(event).collect())
        .await
        .unwrap();
    let own = b
        .create_stream(NewStream::new(StreamKind::Standalone))
        .await
        .unwrap();
    let follower = tokio::spawn(collect(store::follow(b.clone(), orphan, 1)));

    drop(a); // A crashes: no close, its tasks stop, its heartbeats stop.
    tokio::time::sleep(lease + Duration::from_millis(300)).await;
    assert!(!follower.is_finished(), "nobody ended the stream yet");
    b.sweep().await.unwrap();
    assert_exactly(
        &guard("the follower to stop", follower)
            .await
            .unwrap()
            .unwrap(),
        2,
        3,
    );
    let info = b.stream_info(orphan).await.unwrap().unwrap();
    assert_eq!((info.state, info.last_seq), (StreamState::Abandoned, 3));
    assert_eq!(
        b.stream_info(own).await.unwrap().unwrap().state,
        StreamState::Live,
        "a live instance's streams stay live"
    );
    assert!(matches!(
        b.append(orphan, vec![event(4)]).await,
        Err(StoreError::StreamEnded {
            state: StreamState::Abandoned,
            ..
        })
    ));
}

/// Redis is killed (SIGKILL) while instance A is appending to a live stream
/// that instance B follows, then restarted on the same port. While it is
/// down every call fails with a typed error, quickly, and nothing panics;
/// the follower just waits. Once it is back (append-only file,
/// `appendfsync always`), the connections come back by themselves, every
/// acknowledged append is there under the sequence its receipt named,
/// appends work again, and the follower receives every stored event exactly
/// once, then the end. Streams created after the restart work and are
/// followable across instances.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_killed_and_restarted_under_a_live_stream() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = RedisServer::start_persistent(dir.path());
    let prefix = unique_prefix();
    let a = open_arc(&server, &prefix).await;
    let b = open_arc(&server, &prefix).await;
    let stream = a
        .create_stream(NewStream::new(StreamKind::PostResponse).session("s1"))
        .await
        .unwrap();
    // A follower on B that, like a client, resumes from the last event it
    // got when its follow fails (it fails if Redis dies under a read).
    let follower = {
        let b = b.clone();
        tokio::spawn(async move {
            let (mut events, mut errors) = (Vec::<StoredEvent>::new(), 0);
            loop {
                let after = events.last().map_or(0, |e| e.seq);
                let mut batches = store::follow(b.clone(), stream, after);
                loop {
                    match batches.next_batch().await {
                        Some(Ok(batch)) => events.extend(batch),
                        Some(Err(error)) => {
                            assert!(!error.is_cannot_resume(), "{error}");
                            errors += 1;
                            tokio::time::sleep(Duration::from_millis(50)).await;
                            break;
                        }
                        None => return (events, errors),
                    }
                }
            }
        })
    };
    // And one on another stream, idle through the outage: its subscription
    // survives, and it continues once the live tail has reconnected.
    let quiet = a
        .create_stream(NewStream::new(StreamKind::Standalone))
        .await
        .unwrap();
    a.append(quiet, vec![event(1)]).await.unwrap();
    let idle = tokio::spawn(collect(store::follow(b.clone(), quiet, 1)));

    // The producer appends one event at a time, with a fresh payload per
    // attempt, and keeps going through the outage.
    let acked = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let producer = {
        let (a, acked, stop) = (a.clone(), acked.clone(), stop.clone());
        tokio::spawn(async move {
            let mut receipts: BTreeMap<u64, String> = BTreeMap::new();
            let mut failures = 0;
            for attempt in 0u64.. {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                let data = format!("attempt-{attempt}");
                match a
                    .append(stream, vec![NewEvent::message(data.clone())])
                    .await
                {
                    Ok(receipt) => {
                        assert_eq!(receipt.first_seq, receipt.last_seq);
                        assert!(receipts.insert(receipt.first_seq, data).is_none());
                        acked.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(error) => {
                        assert!(
                            matches!(error, StoreError::Backend { .. }),
                            "append while down: {error}"
                        );
                        failures += 1;
                    }
                }
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            (receipts, failures)
        })
    };
    let wait_acked = |n: u64| {
        let acked = acked.clone();
        guard("acknowledged appends", async move {
            while acked.load(Ordering::Relaxed) < n {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
    };
    wait_acked(50).await;

    server.kill();
    let backend = |result: Result<(), StoreError>, what: &str| {
        let error = result.expect_err(what);
        assert!(
            matches!(error, StoreError::Backend { .. }) && !error.is_cannot_resume(),
            "{what}: {error}"
        );
    };
    let started = tokio::time::Instant::now();
    backend(
        a.create_stream(NewStream::new(StreamKind::Standalone))
            .await
            .map(drop),
        "create",
    );
    backend(a.stream_info(stream).await.map(drop), "stream_info");
    backend(
        b.read_batch(stream, 0, ReadLimit::default())
            .await
            .map(drop),
        "read_batch",
    );
    backend(b.subscribe(stream).await.map(drop), "subscribe");
    backend(
        collect(store::follow(b.clone(), stream, 0)).await.map(drop),
        "follow",
    );
    backend(b.session_streams("s1").await.map(drop), "session_streams");
    backend(b.purge_session("s2").await.map(drop), "purge_session");
    backend(
        a.end_stream(stream, StreamEnd::Complete).await,
        "end_stream",
    );
    backend(b.flush().await, "flush");
    backend(b.sweep().await.map(drop), "sweep");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "calls fail fast while Redis is down ({:?} for 10)",
        started.elapsed()
    );
    assert!(
        !follower.is_finished(),
        "the follower waits through the outage"
    );
    assert!(
        !idle.is_finished(),
        "the idle follower waits through the outage"
    );

    server.restart();
    wait_reconnected(&a).await;
    let after_restart = acked.load(Ordering::Relaxed);
    wait_acked(after_restart + 50).await;
    stop.store(true, Ordering::Relaxed);
    let (receipts, failures) = producer.await.unwrap();
    assert!(failures > 0, "the producer saw the outage");
    a.end_stream(stream, StreamEnd::Complete).await.unwrap();

    let (followed, _errors) = guard("the follower to end after the restart", follower)
        .await
        .unwrap();
    let last = a.stream_info(stream).await.unwrap().unwrap().last_seq;
    let seqs: Vec<u64> = followed.iter().map(|e| e.seq).collect();
    assert_eq!(
        seqs,
        (1..=last).collect::<Vec<_>>(),
        "every event once, in order"
    );
    // An append that failed may have been committed (its reply lost), so
    // the stream may hold more than the receipts; never less.
    assert!(last >= receipts.len() as u64);
    for (seq, data) in &receipts {
        assert_eq!(
            followed[*seq as usize - 1].data,
            data.as_bytes(),
            "acknowledged event {seq} kept"
        );
    }

    for n in 2..=5 {
        a.append(quiet, vec![event(n)]).await.unwrap();
    }
    a.end_stream(quiet, StreamEnd::Abandoned).await.unwrap();
    assert_exactly(
        &guard("the idle follower", idle).await.unwrap().unwrap(),
        2,
        5,
    );

    // New streams after the restart, produced on A and followed live on B.
    let fresh = a
        .create_stream(NewStream::new(StreamKind::PostResponse))
        .await
        .unwrap();
    let follower = tokio::spawn(collect(store::follow(b.clone(), fresh, 0)));
    for n in 1..=10 {
        a.append(fresh, vec![event(n)]).await.unwrap();
    }
    a.end_stream(fresh, StreamEnd::Complete).await.unwrap();
    assert_exactly(
        &guard("a fresh follower", follower).await.unwrap().unwrap(),
        1,
        10,
    );
    a.close().await.unwrap();
    b.close().await.unwrap();
}

// ---- The layer on top ------------------------------------------------------

const VERSION: &str = "2025-06-18";

/// The inner MCP endpoint: answers every POST (and GET) with an SSE stream
/// whose chunks the test sends through the channel it hands out.
#[derive(Clone)]
struct Producers(mpsc::UnboundedSender<mpsc::UnboundedSender<Bytes>>);

struct Chunks(mpsc::UnboundedReceiver<Bytes>);

impl futures_core::Stream for Chunks {
    type Item = Result<Bytes, Infallible>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.0.poll_recv(cx).map(|chunk| chunk.map(Ok))
    }
}

async fn sse(State(producers): State<Producers>) -> Response<Body> {
    let (tx, rx) = mpsc::unbounded_channel();
    let _ = producers.0.send(tx);
    Response::builder()
        .header("content-type", "text/event-stream")
        .body(Body::from_stream(Chunks(rx)))
        .unwrap()
}

fn app(layer: ResumabilityLayer, producers: Producers) -> Router {
    Router::new()
        .route("/mcp", post(sse).get(sse))
        .with_state(producers)
        .layer(layer)
}

fn post_call(session: &str) -> Request<Body> {
    Request::post("/mcp")
        .header("mcp-protocol-version", VERSION)
        .header("mcp-session-id", session)
        .header("accept", "application/json, text/event-stream")
        .body(Body::from(
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call"}"#,
        ))
        .unwrap()
}

fn resume(session: &str, last_event_id: &str) -> Request<Body> {
    Request::get("/mcp")
        .header("mcp-protocol-version", VERSION)
        .header("mcp-session-id", session)
        .header("accept", "text/event-stream")
        .header("last-event-id", last_event_id)
        .body(Body::empty())
        .unwrap()
}

/// Reads SSE events off a response body as they come.
struct Events {
    body: Body,
    parser: SseParser,
}

impl Events {
    fn new(response: Response<Body>) -> Self {
        Self {
            body: response.into_body(),
            parser: SseParser::new(Default::default()),
        }
    }

    async fn next(&mut self) -> Option<SseEvent> {
        loop {
            if let Some(block) = self.parser.next_block().unwrap() {
                match block {
                    Block::Event(event) if event.data.is_some() => return Some(event),
                    _ => continue,
                }
            }
            let frame = guard("an SSE event", self.body.frame()).await?.unwrap();
            if let Ok(data) = frame.into_data() {
                self.parser.feed(data);
            }
        }
    }

    async fn rest(mut self) -> Vec<SseEvent> {
        let mut events = Vec::new();
        while let Some(event) = self.next().await {
            events.push(event);
        }
        events
    }
}

fn text(bytes: &Option<Bytes>) -> &str {
    std::str::from_utf8(bytes.as_deref().unwrap_or_default()).unwrap()
}

/// The layer on two instances sharing one Redis. While Redis is down the
/// layer fails open: the inner stream is served untouched. Once Redis is
/// back, a new stream is resumable, and a resume that lands on the other
/// instance replays what the client missed and then follows the producer
/// live to its end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn layer_fails_open_while_redis_is_down_and_resumes_across_instances_after() {
    let mut server = RedisServer::start();
    let prefix = unique_prefix();
    let layer_a = ResumabilityLayer::new(open_arc(&server, &prefix).await);
    let layer_b = ResumabilityLayer::new(open_arc(&server, &prefix).await);
    let (producers, mut inner_streams) = mpsc::unbounded_channel();
    let producers = Producers(producers);
    let app_a = app(layer_a.clone(), producers.clone());
    let app_b = app(layer_b.clone(), producers);

    // Redis down: the call still succeeds, unresumable, bytes untouched.
    server.kill();
    let response = guard("a response", app_a.clone().oneshot(post_call("s1")))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let inner = guard("the inner stream", inner_streams.recv())
        .await
        .unwrap();
    let raw = "id: inner-1\ndata: one\n\ndata: two\n\n";
    inner.send(Bytes::from_static(raw.as_bytes())).unwrap();
    drop(inner);
    let body = guard("the body", response.into_body().collect())
        .await
        .unwrap();
    assert_eq!(body.to_bytes(), raw.as_bytes());
    let stats = layer_a.stats();
    assert!(stats.store_failures >= 1, "{stats:?}");
    assert!(stats.passthrough_streams >= 1, "{stats:?}");

    // Redis back: streams started now are resumable.
    server.restart();
    wait_reconnected(layer_a.store()).await;
    wait_reconnected(layer_b.store()).await;
    let response = guard("a response", app_a.clone().oneshot(post_call("s1")))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let inner = guard("the inner stream", inner_streams.recv())
        .await
        .unwrap();
    let mut events = Events::new(response);
    inner.send(Bytes::from_static(b"data: e1\n\n")).unwrap();
    let first = events.next().await.expect("the first event");
    assert_eq!(text(&first.data), "e1");
    let first_id = EventId::parse(first.id.as_deref().unwrap()).expect("a layer id");
    assert_eq!(first_id.seq, 1);
    // The client's connection drops; the producer goes on.
    drop(events);
    inner.send(Bytes::from_static(b"data: e2\n\n")).unwrap();
    inner.send(Bytes::from_static(b"data: e3\n\n")).unwrap();

    // The client reconnects, and the load balancer sends it to B.
    let response = guard(
        "the resume",
        app_b.clone().oneshot(resume("s1", &first_id.to_string())),
    )
    .await
    .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let mut events = Events::new(response);
    let mut got = Vec::new();
    for _ in 0..2 {
        got.push(events.next().await.expect("a replayed event"));
    }
    // Live on B while A produces.
    inner.send(Bytes::from_static(b"data: e4\n\n")).unwrap();
    got.push(events.next().await.expect("a live event"));
    drop(inner);
    got.extend(events.rest().await);
    let got: Vec<(String, String)> = got
        .iter()
        .map(|e| (text(&e.id).to_string(), text(&e.data).to_string()))
        .collect();
    let want: Vec<(String, String)> = (2..=4)
        .map(|n| {
            (
                EventId::new(first_id.stream, n).to_string(),
                format!("e{n}"),
            )
        })
        .collect();
    assert_eq!(got, want, "every missed event once, in order, then the end");
    assert!(layer_b.stats().resumes >= 1);
    let info = layer_b
        .store()
        .stream_info(first_id.stream)
        .await
        .unwrap()
        .unwrap();
    assert_eq!((info.last_seq, info.state), (4, StreamState::Complete));
}

/// "Unbounded" caps (the CLI's and the benches' `u64::MAX`) must not break
/// appends: Redis integers are signed 64-bit, and Lua turns large numbers
/// into floats that `XTRIM` refuses.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unbounded_event_cap_is_accepted() {
    let server = common_redis::shared();
    let retention = Retention::new().max_events_per_stream(u64::MAX);
    let store = common_redis::open(server, &common_redis::unique_prefix(), retention).await;
    for cap in [None, Some(u64::MAX), Some(1 << 62)] {
        let mut new = NewStream::new(StreamKind::PostResponse);
        new.max_events = cap;
        let stream = store.create_stream(new).await.unwrap();
        let receipt = store
            .append(stream, vec![NewEvent::message("a"), NewEvent::message("b")])
            .await
            .unwrap();
        assert_eq!((receipt.first_seq, receipt.last_seq), (1, 2), "{cap:?}");
        let info = store.stream_info(stream).await.unwrap().unwrap();
        assert_eq!((info.first_seq, info.event_count), (1, 2), "{cap:?}");
    }
}

/// A log evicted (or expired) behind the store's back while its metadata
/// survives: the store claims events it cannot give. A replay must fail
/// with an error that says so, not end quietly as if it were complete.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_evicted_behind_the_store_fail_the_replay_instead_of_cutting_it_short() {
    let server = common_redis::shared();
    let prefix = common_redis::unique_prefix();
    let store: Store = Arc::new(common_redis::open(server, &prefix, Retention::default()).await);
    let stream = store
        .create_stream(NewStream::new(StreamKind::PostResponse))
        .await
        .unwrap();
    store
        .append(stream, (1..=10).map(event).collect())
        .await
        .unwrap();
    let client = redis::Client::open(server.url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let deleted: i64 = redis::cmd("DEL")
        .arg(format!("{prefix}log:{{{stream}}}"))
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(deleted, 1);
    let error = collect(store::replay(store.clone(), stream, 3))
        .await
        .unwrap_err();
    assert!(
        matches!(
            error,
            StoreError::EventsMissing {
                after: 3,
                last_seq: 10,
                ..
            }
        ),
        "{error}"
    );
}

/// Ended streams whose keys ran out on their backstop expiry (no instance
/// swept in time, say the whole fleet was down) must not leave their ids in
/// their session's set for ever: the next sweep takes them out, and the
/// set with them once it is empty; nor may the sweep's own record of their
/// sessions outlive them, whether they were swept or purged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_expired_while_no_instance_swept_leave_no_session_set_behind() {
    let server = common_redis::shared();
    let prefix = common_redis::unique_prefix();
    // The backstop expiry is max_age + sweep_interval: 300 ms.
    let retention = Retention::new()
        .max_age(Duration::from_millis(100))
        .sweep_interval(Duration::from_millis(200));
    let session_key = format!("{prefix}session:{{s-1}}");
    let client = redis::Client::open(server.url()).unwrap();
    let conn = client.get_multiplexed_async_connection().await.unwrap();
    let exists = |key: String| {
        let mut conn = conn.clone();
        async move {
            redis::cmd("EXISTS")
                .arg(key)
                .query_async::<i64>(&mut conn)
                .await
                .unwrap()
        }
    };

    let first = common_redis::open(server, &prefix, retention).await;
    let mut streams = Vec::new();
    for _ in 0..3 {
        let stream = first
            .create_stream(NewStream::new(StreamKind::PostResponse).session("s-1"))
            .await
            .unwrap();
        first.append(stream, vec![event(1)]).await.unwrap();
        first.end_stream(stream, StreamEnd::Complete).await.unwrap();
        streams.push(stream);
    }
    // A session purged by hand leaves no bookkeeping for the sweep either.
    let purged = first
        .create_stream(NewStream::new(StreamKind::PostResponse).session("s-2"))
        .await
        .unwrap();
    first.end_stream(purged, StreamEnd::Complete).await.unwrap();
    assert_eq!(first.purge_session("s-2").await.unwrap(), 1);
    assert_eq!(exists(session_key.clone()).await, 1);
    // The fleet goes away before its sweep deleted them.
    first.close().await.unwrap();
    guard("the backstop expiry", async {
        while exists(format!("{prefix}meta:{{{}}}", streams[2])).await == 1 {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;

    let second = common_redis::open(server, &prefix, retention).await;
    second.sweep().await.unwrap();
    assert_eq!(
        exists(session_key).await,
        0,
        "the session set outlived all its streams"
    );
    assert!(
        second.session_streams("s-1").await.unwrap().is_empty(),
        "expired streams listed"
    );
    assert_eq!(
        exists(format!("{prefix}{{index}}:ended-sessions")).await,
        0,
        "the sweep left its own bookkeeping behind"
    );
}

/// Issue 26, part 1, on Redis: the producer ends while Redis is down, so the
/// layer cannot record the end. A resume served meanwhile by the same layer
/// ends rather than wait for a producer that is gone; once Redis is back the
/// layer records the end without anyone asking, and a resume replays the
/// rest and ends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_that_ends_while_redis_is_down_is_recorded_as_ended_once_it_is_back() {
    use crate::common::server::message;
    use crate::common::sse::End;
    use crate::common::{call_then_leave, resume_after, serve_scripted, wait_state};

    // Persistent, so that the stream outlives the restart.
    let dir = tempfile::tempdir().unwrap();
    let mut server = RedisServer::start_persistent(dir.path());
    let store = open_arc(&server, &unique_prefix()).await;
    let layer = ResumabilityLayer::new(store.clone());
    let (script, served) = serve_scripted(&layer).await;
    let (stream, inner) = call_then_leave(&script, &served, 3).await;
    let resume = |seq: u64| resume_after(stream, seq);

    server.kill();
    inner.close();
    guard("the failed end to be counted", async {
        while layer.stats().store_failures == 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
    // The store cannot replay now: the resume is answered at once, "retry
    // later", from before the last event as from the last event.
    for seq in [1, 3] {
        let mut while_down = guard(
            "a resume while Redis is down",
            resume(seq).send(served.addr),
        )
        .await;
        assert_eq!(while_down.status, StatusCode::SERVICE_UNAVAILABLE);
        guard("its body to end", while_down.body_to_end()).await;
        assert_eq!(while_down.end(), Some(&End::Clean));
    }

    server.restart();
    wait_state(&store, stream, StreamState::Complete).await;
    let mut after = resume(1).send(served.addr).await;
    assert_eq!(after.status, StatusCode::OK);
    let rest = guard("the replay to end", after.events_to_end()).await;
    let data: Vec<&str> = rest.iter().map(|ev| ev.data()).collect();
    assert_eq!(data, [message(2), message(3)]);
    assert_eq!(after.end(), Some(&End::Clean));
}
