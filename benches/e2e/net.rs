//! Loopback HTTP for the sections: the inner service every raw run uses, the
//! setups it is served in (no layer, or the layer on one store), a client,
//! and an SSE reader with its own parser.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::Path;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Full, combinators::UnsyncBoxBody};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use mcp_resume::ResumabilityLayer;
use mcp_resume::sse::{Block, SseLimits, SseParser};
use mcp_resume::store::{EventStore, MemoryEventStore, SqliteOptions, SyncMode};
use tower::{Layer, Service, service_fn};

/// Bytes of one raw SSE event on the wire: `data: ` + payload + `\n\n`.
pub const EVENT_BYTES: usize = 256;
/// Bytes of one raw SSE event's data as a store holds it: [`EVENT_BYTES`]
/// less the `data: ` prefix and the blank line that ends it.
pub const STORED_DATA_BYTES: usize = EVENT_BYTES - "data: \n\n".len();
/// The request header that tells the inner service what to answer (see [`Answer`]).
pub const ANSWER: &str = "x-bench-answer";

/// What is measured: the inner service alone, or behind the layer on a store.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Setup {
    NoLayer,
    Memory,
    SqliteNormal,
    SqliteFull,
}

impl Setup {
    pub fn label(self) -> &'static str {
        match self {
            Setup::NoLayer => "no layer",
            Setup::Memory => "layer, memory store",
            Setup::SqliteNormal => "layer, SQLite NORMAL",
            Setup::SqliteFull => "layer, SQLite FULL",
        }
    }

    /// The store this setup serves with, opened in `dir`; `None` without the layer.
    pub fn store(self, dir: &Path) -> Option<Arc<dyn EventStore>> {
        let sqlite = |sync| -> Arc<dyn EventStore> {
            let name = format!("{self:?}-{}.db", uuid::Uuid::new_v4().simple());
            Arc::new(
                SqliteOptions::new(dir.join(name))
                    .sync(sync)
                    .open()
                    .expect("a SQLite event store in the scratch directory"),
            )
        };
        match self {
            Setup::NoLayer => None,
            Setup::Memory => Some(Arc::new(MemoryEventStore::new())),
            Setup::SqliteNormal | Setup::SqliteFull => self.sync().map(sqlite),
        }
    }

    /// The sync mode of a setup on SQLite.
    pub fn sync(self) -> Option<SyncMode> {
        match self {
            Setup::SqliteNormal => Some(SyncMode::Normal),
            Setup::SqliteFull => Some(SyncMode::Full),
            Setup::NoLayer | Setup::Memory => None,
        }
    }
}

/// The instant event timestamps count from (one process: server and client share it).
pub fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

/// What the inner service answers, from the [`ANSWER`] request header.
#[derive(Clone, Copy, Debug)]
pub enum Answer {
    /// A small JSON-RPC result as `application/json`.
    Json,
    /// 256 B events as fast as they are polled, for this long.
    Flood(Duration),
    /// One 256 B event every `period` (the first at a random offset within it),
    /// stamped with the time it was produced, for `duration`.
    Paced {
        period: Duration,
        duration: Duration,
    },
    /// One event, then nothing, forever: a producer that is idle.
    Idle,
}

impl Answer {
    pub fn header(self) -> String {
        match self {
            Answer::Json => "json".into(),
            Answer::Flood(d) => format!("flood {}", d.as_micros()),
            Answer::Paced { period, duration } => {
                format!("paced {} {}", period.as_micros(), duration.as_micros())
            }
            Answer::Idle => "idle".into(),
        }
    }

    fn parse(value: &str) -> Option<Self> {
        let mut words = value.split(' ');
        let keyword = words.next()?;
        let mut micros =
            || -> Option<Duration> { Some(Duration::from_micros(words.next()?.parse().ok()?)) };
        Some(match keyword {
            "json" => Answer::Json,
            "idle" => Answer::Idle,
            "flood" => Answer::Flood(micros()?),
            "paced" => Answer::Paced {
                period: micros()?,
                duration: micros()?,
            },
            _ => return None,
        })
    }
}

/// The SSE body of the raw runs.
pub struct Events {
    kind: EventsKind,
}

enum EventsKind {
    Flood {
        until: Instant,
        event: Bytes,
    },
    Paced {
        next: Pin<Box<tokio::time::Sleep>>,
        period: Duration,
        until: Instant,
    },
    Idle {
        first: Option<Bytes>,
    },
    Done,
}

fn padded_event(prefix: &str) -> Bytes {
    let mut line = format!("data: {prefix}");
    line.extend(std::iter::repeat_n('x', EVENT_BYTES - 2 - line.len()));
    line.push_str("\n\n");
    Bytes::from(line)
}

impl http_body::Body for Events {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, Infallible>>> {
        let frame = match &mut self.kind {
            EventsKind::Flood { until, event } => {
                if Instant::now() >= *until {
                    None
                } else {
                    Some(event.clone())
                }
            }
            EventsKind::Paced {
                next,
                period,
                until,
            } => {
                if next.as_mut().poll(cx).is_pending() {
                    return Poll::Pending;
                }
                let now = Instant::now();
                if now >= *until {
                    None
                } else {
                    let deadline = next.deadline() + *period;
                    next.as_mut().reset(deadline);
                    let stamp = now.duration_since(epoch()).as_nanos();
                    Some(padded_event(&format!("t={stamp} ")))
                }
            }
            EventsKind::Idle { first } => match first.take() {
                Some(event) => Some(event),
                // Never woken: an idle producer costs nothing but its state.
                None => return Poll::Pending,
            },
            EventsKind::Done => None,
        };
        match frame {
            Some(data) => Poll::Ready(Some(Ok(http_body::Frame::data(data)))),
            None => {
                self.kind = EventsKind::Done;
                Poll::Ready(None)
            }
        }
    }
}

type InnerBody = UnsyncBoxBody<Bytes, Infallible>;

/// The inner service: answers every request as its [`ANSWER`] header says.
pub fn inner_service() -> impl Service<
    Request<hyper::body::Incoming>,
    Response = Response<InnerBody>,
    Error = Infallible,
    Future: Send,
> + Clone
+ Send
+ 'static {
    let flood_event = padded_event("");
    service_fn(move |request: Request<hyper::body::Incoming>| {
        let flood_event = flood_event.clone();
        async move {
            let answer = request
                .headers()
                .get(ANSWER)
                .and_then(|v| v.to_str().ok())
                .and_then(Answer::parse)
                .unwrap_or(Answer::Json);
            // Read the request as a real server would.
            let _ = request.into_body().collect().await;
            let now = Instant::now();
            let kind = match answer {
                Answer::Json => {
                    let body = Full::new(Bytes::from_static(
                        br#"{"jsonrpc":"2.0","id":1,"result":{"content":[{"type":"text","text":"the answer is 42"}],"isError":false}}"#,
                    ));
                    return Ok(Response::builder()
                        .header("content-type", "application/json")
                        .body(body.boxed_unsync())
                        .unwrap());
                }
                Answer::Flood(duration) => EventsKind::Flood {
                    until: now + duration,
                    event: flood_event,
                },
                Answer::Paced { period, duration } => {
                    let offset = (uuid::Uuid::new_v4().as_u128() % period.as_nanos().max(1)) as u64;
                    EventsKind::Paced {
                        next: Box::pin(tokio::time::sleep(Duration::from_nanos(offset))),
                        period,
                        until: now + duration,
                    }
                }
                Answer::Idle => EventsKind::Idle {
                    first: Some(padded_event("")),
                },
            };
            Ok(Response::builder()
                .header("content-type", "text/event-stream")
                .body(Events { kind }.boxed_unsync())
                .unwrap())
        }
    })
}

/// Serves `setup` (the inner service, bare or behind the layer on `store`) on a loopback port.
pub async fn serve_setup(store: Option<Arc<dyn EventStore>>) -> SocketAddr {
    match store {
        None => serve(inner_service()).await,
        Some(store) => serve(ResumabilityLayer::new(store).layer(inner_service())).await,
    }
}

/// Serves `service` on a loopback port with the binary's own server loop
/// ([`mcp_resume::proxy::serve`]), until the runtime stops. Its connection
/// cap is raised above the 10,000 streams of row 6.
pub async fn serve<S, B>(service: S) -> SocketAddr
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
    let options = mcp_resume::proxy::ServeOptions::new().max_connections(1 << 20);
    tokio::spawn(mcp_resume::proxy::serve(
        listener,
        service,
        std::future::pending(),
        options,
    ));
    addr
}

pub type HttpClient = Client<HttpConnector, Full<Bytes>>;

/// A pooling HTTP/1.1 client keeping up to `connections` idle connections.
pub fn client(connections: usize) -> HttpClient {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(connections)
        .build(connector)
}

/// A POST to the MCP endpoint at `addr`, answered as `answer` says.
fn mcp_post(addr: SocketAddr, answer: Answer) -> Request<Full<Bytes>> {
    Request::post(format!("http://{addr}/mcp"))
        .header("accept", "application/json, text/event-stream")
        .header("content-type", "application/json")
        .header("mcp-protocol-version", "2025-06-18")
        .header(ANSWER, answer.header())
        .body(Full::new(Bytes::from_static(
            br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"answer","arguments":{}}}"#,
        )))
        .unwrap()
}

/// POSTs to the MCP endpoint at `addr`, answered as `answer` says, and
/// returns the (successful) response.
pub async fn call(
    client: &HttpClient,
    addr: SocketAddr,
    answer: Answer,
) -> Response<hyper::body::Incoming> {
    let response = client
        .request(mcp_post(addr, answer))
        .await
        .expect("a response");
    assert!(
        response.status().is_success(),
        "answered {}",
        response.status()
    );
    response
}

/// Runs `clients` copies of `task` at once, each on a task of its own with
/// its own handle on `client`, and returns what they returned.
pub async fn concurrently<T, F, Fut>(client: &HttpClient, clients: usize, task: F) -> Vec<T>
where
    F: Fn(HttpClient) -> Fut,
    Fut: Future<Output = T> + Send + 'static,
    T: Send + 'static,
{
    let tasks: Vec<_> = (0..clients)
        .map(|_| tokio::spawn(task(client.clone())))
        .collect();
    let mut results = Vec::with_capacity(clients);
    for task in tasks {
        results.push(task.await.expect("a client task"));
    }
    results
}

/// Reads an SSE response to its end, calling `on_event` with the data of
/// every event that has some; returns how many there were.
pub async fn read_events(
    response: Response<hyper::body::Incoming>,
    mut on_event: impl FnMut(&[u8]),
) -> usize {
    let mut body = response.into_body();
    let mut parser = SseParser::new(SseLimits::default());
    let mut events = 0;
    while let Some(frame) = body.frame().await {
        let frame = frame.expect("the SSE body reads to its end");
        if let Ok(data) = frame.into_data() {
            parser.feed(data);
            while let Some(block) = parser.next_block().expect("well-formed SSE") {
                if let Block::Event(event) = block
                    && let Some(data) = event.data.filter(|d| !d.is_empty())
                {
                    on_event(&data);
                    events += 1;
                }
            }
        }
    }
    events
}

/// The order in which interleaved round `round` measures `setups` setups:
/// forward in even rounds, backward in odd ones (A B, B A, A B, ...), so
/// that what one setup leaves behind (store work, a drift of the machine)
/// lands on every setup alike.
pub fn round_order(round: usize, setups: usize) -> impl Iterator<Item = usize> {
    (0..setups).map(move |n| {
        if round.is_multiple_of(2) {
            n
        } else {
            setups - 1 - n
        }
    })
}

/// The median of `values` (sorted in place).
pub fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    crate::common::percentile(values, 0.5)
}
