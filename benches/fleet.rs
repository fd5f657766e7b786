//! A fleet on one Redis, through the layer over HTTP:
//! `cargo bench --bench fleet --all-features`.
//!
//! Starts its own `redis-server` (no persistence) and two instances of the
//! layer (each its own `RedisEventStore` on it, the same key prefix, in this
//! process), in front of the e2e benches' inner service (`benches/e2e/net.rs`).
//!
//! - **Cross-instance resume latency.** A call on instance A streams a 256 B
//!   event every 5 ms for the whole run; its client reads 20 events and
//!   leaves. Then, alternately on A and on B (order swapped every round),
//!   a resume from the 10th event: a sample is the time from sending the
//!   `GET` with `Last-Event-ID` to holding the first replayed event. On A the
//!   stream is produced here (hot tail, then store); on B it is read from
//!   Redis alone. p50 and p99 of each, and their ratios.
//! - **The fleet's end-to-end rate.** 32 clients, each calling in a loop
//!   (`POST`, 256 B events as fast as they go for 20 ms, read to the end),
//!   for a fixed time, against: one instance directly; one instance behind
//!   HAProxy; two instances behind HAProxy (round-robin). Calls and events
//!   per second, and ratios to one instance alone, in one run (order swapped
//!   every round). HAProxy comes from the distribution (`apt-get install
//!   haproxy`); without it these rows are skipped, and say so.
//!
//! `MCP_RESUME_BENCH_QUICK=1`: 50 resume samples per instance and 2 s per
//! rate measurement instead of 500 and 10 s. docs/fleet-2026-12.md has a
//! full run and what a 2-core machine can and cannot show.

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use http::Request;
use http_body_util::{BodyExt, Full};
use mcp_resume::ResumabilityLayer;
use mcp_resume::store::{EventStore, RedisOptions};
use mcp_resume_testkit::redis_server::RedisServer;
use tower::Layer;

mod common;
#[allow(dead_code, unused_imports)]
#[path = "e2e/net.rs"]
mod net;

use common::percentile;
use net::{Answer, HttpClient};

const EVENT_PERIOD: Duration = Duration::from_millis(5);
const RESUME_FROM: u64 = 10;
const RATE_CLIENTS: usize = 32;
const RATE_CALL: Duration = Duration::from_millis(20);

struct Size {
    resume_samples: usize,
    rate_seconds: u64,
    rounds: usize,
}

fn size() -> Size {
    if std::env::var_os("MCP_RESUME_BENCH_QUICK").is_some() {
        Size {
            resume_samples: 50,
            rate_seconds: 2,
            rounds: 2,
        }
    } else {
        Size {
            resume_samples: 500,
            rate_seconds: 10,
            rounds: 3,
        }
    }
}

async fn instance(server: &RedisServer, prefix: &str) -> SocketAddr {
    let store: Arc<dyn EventStore> = Arc::new(
        RedisOptions::new(server.url())
            .key_prefix(prefix)
            .open()
            .await
            .expect("a Redis store"),
    );
    net::serve(ResumabilityLayer::new(store).layer(net::inner_service())).await
}

/// The id of the event after which resumes start: a call on `addr` that
/// streams for `lasting`, whose client reads 20 events and leaves.
async fn producing_call(client: &HttpClient, addr: SocketAddr, lasting: Duration) -> String {
    let answer = Answer::Paced {
        period: EVENT_PERIOD,
        duration: lasting,
    };
    let response = net::call(client, addr, answer).await;
    let mut body = response.into_body();
    let mut text = String::new();
    while text.matches("\n\n").count() < 20 {
        let frame = body.frame().await.expect("an event").expect("a frame");
        if let Ok(data) = frame.into_data() {
            text.push_str(&String::from_utf8_lossy(&data));
        }
    }
    let id = text
        .lines()
        .filter_map(|line| line.strip_prefix("id: "))
        .nth(RESUME_FROM as usize - 1)
        .expect("the layer's event ids");
    id.to_owned()
}

/// Seconds from sending a resume from `last_event_id` to holding its first event.
async fn resume_latency(client: &HttpClient, addr: SocketAddr, last_event_id: &str) -> f64 {
    let request = Request::get(format!("http://{addr}/mcp"))
        .header("accept", "text/event-stream")
        .header("mcp-protocol-version", "2025-06-18")
        .header("last-event-id", last_event_id)
        .body(Full::default())
        .unwrap();
    let started = Instant::now();
    let response = client.request(request).await.expect("a resume");
    assert!(
        response.status().is_success(),
        "resume answered {}",
        response.status()
    );
    let mut body = response.into_body();
    loop {
        let frame = body.frame().await.expect("an event").expect("a frame");
        if frame
            .data_ref()
            .is_some_and(|data| data.windows(6).any(|w| w == b"data: "))
        {
            return started.elapsed().as_secs_f64();
        }
    }
}

/// Calls and events per second of `RATE_CLIENTS` clients calling `addr` in a loop.
async fn rate(client: &HttpClient, addr: SocketAddr, seconds: u64) -> (f64, f64) {
    let calls = Arc::new(AtomicU64::new(0));
    let events = Arc::new(AtomicU64::new(0));
    let until = Instant::now() + Duration::from_secs(seconds);
    let started = Instant::now();
    net::concurrently(client, RATE_CLIENTS, |client| {
        let (calls, events) = (calls.clone(), events.clone());
        async move {
            while Instant::now() < until {
                let response = net::call(&client, addr, Answer::Flood(RATE_CALL)).await;
                let n = net::read_events(response, |_| {}).await;
                events.fetch_add(n as u64, Ordering::Relaxed);
                calls.fetch_add(1, Ordering::Relaxed);
            }
        }
    })
    .await;
    let elapsed = started.elapsed().as_secs_f64();
    (
        calls.load(Ordering::Relaxed) as f64 / elapsed,
        events.load(Ordering::Relaxed) as f64 / elapsed,
    )
}

/// HAProxy in front of `servers`, round-robin, as in tests/fleet/run.sh.
struct Haproxy {
    child: Child,
    addr: SocketAddr,
    _dir: tempfile::TempDir,
}

impl Haproxy {
    fn start(servers: &[SocketAddr]) -> Option<Self> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .ok()?
            .local_addr()
            .ok()?
            .port();
        let dir = tempfile::tempdir().ok()?;
        let mut config = format!(
            "global\n    maxconn 4096\ndefaults\n    mode http\n    timeout connect 1s\n    \
             timeout client 60s\n    timeout server 60s\n    retries 3\n    option redispatch\n\
             frontend fleet\n    bind 127.0.0.1:{port}\n    default_backend instances\n\
             backend instances\n    balance roundrobin\n"
        );
        for (n, server) in servers.iter().enumerate() {
            config.push_str(&format!("    server i{n} {server}\n"));
        }
        let path = dir.path().join("haproxy.cfg");
        std::fs::write(&path, config).ok()?;
        let child = Command::new("haproxy")
            .arg("-db")
            .arg("-f")
            .arg(&path)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .ok()?;
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().ok()?;
        for _ in 0..100 {
            if std::net::TcpStream::connect(addr).is_ok() {
                return Some(Self {
                    child,
                    addr,
                    _dir: dir,
                });
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }
}

impl Drop for Haproxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn ms(seconds: f64) -> String {
    format!("{:.2} ms", seconds * 1e3)
}

fn main() {
    let size = size();
    let runtime = common::runtime();
    let server = RedisServer::start();
    runtime.block_on(async {
        let prefix = format!("bench-fleet-{}:", std::process::id());
        let a = instance(&server, &prefix).await;
        let b = instance(&server, &prefix).await;
        let client = net::client(RATE_CLIENTS * 2);

        // Cross-instance resume latency.
        let lasting = Duration::from_secs(600);
        let id = producing_call(&client, a, lasting).await;
        let (mut on_a, mut on_b) = (Vec::new(), Vec::new());
        for round in 0..size.resume_samples {
            for n in net::round_order(round, 2) {
                if n == 0 {
                    on_a.push(resume_latency(&client, a, &id).await);
                } else {
                    on_b.push(resume_latency(&client, b, &id).await);
                }
            }
        }
        on_a.sort_by(f64::total_cmp);
        on_b.sort_by(f64::total_cmp);
        let (a50, a99) = (percentile(&on_a, 0.5), percentile(&on_a, 0.99));
        let (b50, b99) = (percentile(&on_b, 0.5), percentile(&on_b, 0.99));
        println!(
            "[fleet] resume to first event, {} samples each: on the producing instance p50 {} p99 {}; \
             on another instance p50 {} p99 {}; ratio (other / producing) p50 {:.2}x p99 {:.2}x",
            size.resume_samples,
            ms(a50),
            ms(a99),
            ms(b50),
            ms(b99),
            b50 / a50,
            b99 / a99
        );

        // The fleet's end-to-end rate.
        let one_behind = Haproxy::start(&[a]);
        let two_behind = Haproxy::start(&[a, b]);
        let setups: Vec<(&str, Option<SocketAddr>)> = vec![
            ("one instance alone", Some(a)),
            ("one instance behind HAProxy", one_behind.as_ref().map(|h| h.addr)),
            ("two instances behind HAProxy", two_behind.as_ref().map(|h| h.addr)),
        ];
        let mut results = vec![(0.0, 0.0); setups.len()];
        for round in 0..size.rounds {
            for n in net::round_order(round, setups.len()) {
                if let Some(addr) = setups[n].1 {
                    let (calls, events) = rate(&client, addr, size.rate_seconds).await;
                    results[n].0 += calls / size.rounds as f64;
                    results[n].1 += events / size.rounds as f64;
                }
            }
        }
        let alone = results[0];
        for ((label, addr), (calls, events)) in setups.iter().zip(&results) {
            if addr.is_none() {
                println!("[fleet] rate, {label}: skipped (haproxy not installed: apt-get install haproxy)");
                continue;
            }
            println!(
                "[fleet] rate, {label}: {calls:.0} calls/s, {events:.0} events/s ({:.2}x calls, {:.2}x events of one instance alone; {} clients, {} rounds of {} s)",
                calls / alone.0,
                events / alone.1,
                RATE_CLIENTS,
                size.rounds,
                size.rate_seconds
            );
        }
    });
    // The producing call and the instances stop with the runtime.
    drop(runtime);
    drop(server);
}
