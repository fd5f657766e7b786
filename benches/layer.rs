//! SSE through the layer against the same service without it:
//! `cargo bench --bench layer`.
//!
//! An inner service emits 256 B events as fast as it can; 100 clients
//! stream from it at once over real loopback HTTP/1.1 and parse every event.
//! Measured in one run: no layer, the layer on the memory store, and the
//! layer on SQLite (`NORMAL`). At the end it prints events per second and
//! the ratios.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{BenchmarkId, Criterion, Throughput};
use http::{Request, Response};
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use mcp_resume::ResumabilityLayer;
use mcp_resume::sse::{Frame, SseLimits, SseParser};
use mcp_resume::store::{EventStore, MemoryEventStore, Retention, SqliteOptions};
use tower::{Layer, Service, service_fn};

mod common;
use common::{mean_seconds, runtime, scratch_dir};

const STREAMS: usize = 100;
const EVENTS_PER_STREAM: usize = 100;
const EVENT_BYTES: usize = 256;

/// An SSE body of `remaining` events of 256 B, one event per frame, each
/// ready as soon as it is polled: the fastest producer there can be.
struct Events {
    remaining: usize,
    event: Bytes,
}

impl http_body::Body for Events {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, Infallible>>> {
        if self.remaining == 0 {
            return Poll::Ready(None);
        }
        self.remaining -= 1;
        Poll::Ready(Some(Ok(http_body::Frame::data(self.event.clone()))))
    }
}

fn event() -> Bytes {
    // `data: ` + payload + `\n\n` = 256 bytes on the wire.
    let payload = "x".repeat(EVENT_BYTES - 8);
    Bytes::from(format!("data: {payload}\n\n"))
}

/// Serves `service` on a loopback port until the runtime stops.
async fn serve<S, B>(service: S) -> SocketAddr
where
    S: Service<Request<hyper::body::Incoming>, Response = Response<B>, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let service = hyper_util::service::TowerToHyperService::new(service.clone());
            tokio::spawn(async move {
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    addr
}

fn inner_service() -> impl Service<
    Request<hyper::body::Incoming>,
    Response = Response<Events>,
    Error = Infallible,
    Future: Send,
> + Clone {
    let event = event();
    service_fn(move |_request: Request<hyper::body::Incoming>| {
        let event = event.clone();
        async move {
            Ok(Response::builder()
                .header("content-type", "text/event-stream")
                .body(Events {
                    remaining: EVENTS_PER_STREAM,
                    event,
                })
                .unwrap())
        }
    })
}

type HttpClient = Client<hyper_util::client::legacy::connect::HttpConnector, Empty<Bytes>>;

/// Streams once from `addr` and returns how many events with data arrived.
async fn stream_once(client: &HttpClient, addr: SocketAddr) -> usize {
    let request = Request::post(format!("http://{addr}/mcp"))
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", "2025-06-18")
        .body(Empty::new())
        .unwrap();
    let mut body = client.request(request).await.unwrap().into_body();
    let mut parser = SseParser::new(SseLimits::default());
    let mut events = 0;
    while let Some(frame) = body.frame().await {
        if let Ok(data) = frame.unwrap().into_data() {
            parser.feed(data);
            while let Some(frame) = parser.next_frame().unwrap() {
                if let Frame::Event(event) = frame
                    && event.data.is_some_and(|d| !d.is_empty())
                {
                    events += 1;
                }
            }
        }
    }
    events
}

/// `iters` rounds of 100 concurrent streams; returns the time they took.
async fn rounds(client: HttpClient, addr: SocketAddr, iters: u64) -> Duration {
    let start = Instant::now();
    for _ in 0..iters {
        let tasks: Vec<_> = (0..STREAMS)
            .map(|_| {
                let client = client.clone();
                tokio::spawn(async move { stream_once(&client, addr).await })
            })
            .collect();
        for task in tasks {
            assert_eq!(
                task.await.unwrap(),
                EVENTS_PER_STREAM,
                "every event arrives"
            );
        }
    }
    start.elapsed()
}

fn main() {
    let mut criterion = Criterion::default().configure_from_args();
    let rt = runtime();
    let dir = scratch_dir("layer-bench");
    let client: HttpClient = Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(STREAMS)
        .build_http();
    // Streams are never trimmed or swept during the run.
    let retention = Retention::new().max_events_per_stream(u64::MAX);
    let sqlite: Arc<dyn EventStore> = {
        let _guard = rt.enter();
        Arc::new(
            SqliteOptions::new(dir.join("layer.db"))
                .retention(retention)
                .open()
                .unwrap(),
        )
    };
    let memory: Arc<dyn EventStore> = Arc::new(MemoryEventStore::with_retention(retention));
    let setups: [(&str, Option<Arc<dyn EventStore>>); 3] = [
        ("no_layer", None),
        ("layer_memory", Some(memory)),
        ("layer_sqlite_normal", Some(sqlite)),
    ];

    let label = format!("{STREAMS}streams_{EVENT_BYTES}B");
    let mut group = criterion.benchmark_group("sse");
    group.throughput(Throughput::Elements((STREAMS * EVENTS_PER_STREAM) as u64));
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(10));
    for (name, store) in setups {
        let addr = rt.block_on(async {
            match store {
                None => serve(inner_service()).await,
                Some(store) => serve(ResumabilityLayer::new(store).layer(inner_service())).await,
            }
        });
        group.bench_function(BenchmarkId::new(name, &label), |b| {
            b.to_async(&rt)
                .iter_custom(|iters| rounds(client.clone(), addr, iters));
        });
    }
    group.finish();
    criterion.final_summary();

    println!("\n== layer benchmark summary (this run) ==");
    let rate =
        |name| mean_seconds("sse", name, &label).map(|s| (STREAMS * EVENTS_PER_STREAM) as f64 / s);
    if let Some(baseline) = rate("no_layer") {
        println!("{:<22} {:>12.0} events/s", "no_layer", baseline);
        for name in ["layer_memory", "layer_sqlite_normal"] {
            if let Some(rate) = rate(name) {
                println!(
                    "{name:<22} {rate:>12.0} events/s  ratio {:.2}",
                    rate / baseline
                );
            }
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}
