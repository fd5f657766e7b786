//! Row 6: resident memory per stream. The server runs in a child process
//! (this same bench binary, started with [`CHILD_ENV`]) so that its resident
//! set is its own; this process is the 10,000 clients. Each setup is
//! measured with the clients attached (producers idle after one event), then
//! again after every client has gone (the layer keeps detached streams
//! running; without it they end with their connection). The layer's share is
//! the difference to the same run without the layer.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use http_body_util::BodyExt;
use tokio::sync::{Semaphore, watch};

use crate::Plan;
use crate::net::{self, Answer, Setup};
use crate::report::{Report, Row, Target};

/// Set (to a setup's name) in the child's environment: serve, print the address, wait for stdin to close.
pub const CHILD_ENV: &str = "MCP_RESUME_E2E_MEMORY_CHILD";
const DIR_ENV: &str = "MCP_RESUME_E2E_MEMORY_DIR";

fn setup_name(setup: Setup) -> &'static str {
    match setup {
        Setup::NoLayer => "no-layer",
        Setup::Memory => "memory",
        Setup::SqliteNormal => "sqlite-normal",
        Setup::SqliteFull => "sqlite-full",
    }
}

/// The child: serves `setup` until its stdin closes.
pub fn child(name: &str) {
    let setup = [
        Setup::NoLayer,
        Setup::Memory,
        Setup::SqliteNormal,
        Setup::SqliteFull,
    ]
    .into_iter()
    .find(|s| setup_name(*s) == name)
    .expect("a known setup");
    let dir = std::env::var_os(DIR_ENV).expect("the scratch directory");
    let rt = crate::common::runtime();
    let addr = rt.block_on(async { net::serve_setup(setup.store(Path::new(&dir))).await });
    println!("listening {addr}");
    // The parent closes our stdin when it is done with us.
    let _ = std::io::stdin().lines().count();
}

/// A child server, killed when dropped.
struct ChildServer {
    child: Child,
    addr: SocketAddr,
}

impl ChildServer {
    fn start(setup: Setup, dir: &Path) -> ChildServer {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .env(CHILD_ENV, setup_name(setup))
            .env(DIR_ENV, dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("the bench binary as a child server");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let addr = line
            .trim()
            .strip_prefix("listening ")
            .expect("the child's address")
            .parse()
            .unwrap();
        ChildServer { child, addr }
    }

    /// Resident set size, in bytes.
    fn rss(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        let kib: u64 = status
            .lines()
            .find_map(|line| line.strip_prefix("VmRSS:"))
            .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmRSS in /proc/<pid>/status");
        kib * 1024
    }

    /// Open file descriptors (sockets included).
    fn fds(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.child.id())).map_or(0, |d| d.count())
    }
}

impl Drop for ChildServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Waits until `rss` has not moved by more than 1% over half a second.
async fn settled_rss(server: &ChildServer) -> u64 {
    let mut last = server.rss();
    for _ in 0..20 {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let now = server.rss();
        if now.abs_diff(last) * 100 <= last {
            return now;
        }
        last = now;
    }
    last
}

struct Measured {
    attached: u64,
    detached: u64,
}

async fn measure(setup: Setup, streams: usize, dir: &Path) -> Measured {
    let scratch = dir.join(setup_name(setup));
    std::fs::create_dir_all(&scratch).unwrap();
    let server = ChildServer::start(setup, &scratch);
    let addr = server.addr;
    let client = net::client(0);
    let (release, released) = watch::channel(false);
    let (ready_tx, mut ready_rx) = tokio::sync::mpsc::channel::<()>(streams);
    // Opened a few hundred at a time: the listen backlog is finite.
    let opening = Arc::new(Semaphore::new(256));
    let started = Instant::now();
    let clients: Vec<_> = (0..streams)
        .map(|_| {
            let client = client.clone();
            let opening = opening.clone();
            let ready = ready_tx.clone();
            let mut released = released.clone();
            tokio::spawn(async move {
                let permit = opening.acquire_owned().await.unwrap();
                let response = net::call(&client, addr, Answer::Idle).await;
                let mut body = response.into_body();
                // The first (and only) event: the stream is up at both ends.
                loop {
                    let frame = body.frame().await.expect("the first event").unwrap();
                    if frame
                        .data_ref()
                        .is_some_and(|d| d.windows(6).any(|w| w == b"data: "))
                    {
                        break;
                    }
                }
                drop(permit);
                ready.send(()).await.unwrap();
                let _ = released.wait_for(|released| *released).await;
                drop(body);
            })
        })
        .collect();
    // Only the clients hold senders: one that failed ends the wait below.
    drop(ready_tx);
    for _ in 0..streams {
        ready_rx
            .recv()
            .await
            .expect("every client opened its stream (a client task failed: see its panic above)");
    }
    let opened_in = started.elapsed();
    let attached = settled_rss(&server).await;
    release.send(true).unwrap();
    for task in clients {
        task.await.unwrap();
    }
    drop(client);
    // Until the server has closed its ends of the connections.
    let waiting = Instant::now();
    while server.fds() > 200 && waiting.elapsed() < Duration::from_secs(20) {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let detached = settled_rss(&server).await;
    println!(
        "[e2e] memory, {}: {streams} streams opened in {opened_in:.1?}; rss attached {} KiB, detached {} KiB",
        setup.label(),
        attached / 1024,
        detached / 1024
    );
    Measured { attached, detached }
}

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
}

/// Row 6.
pub async fn memory(report: &mut Report, plan: &Plan, dir: &Path) {
    let streams = plan.memory_streams;
    let base = measure(Setup::NoLayer, streams, dir).await;
    for setup in [Setup::SqliteNormal, Setup::Memory] {
        let layer = measure(setup, streams, dir).await;
        for (state, with, without, headline) in [
            (
                "clients attached, producers idle",
                layer.attached,
                base.attached,
                true,
            ),
            (
                "clients gone (detached streams)",
                layer.detached,
                base.detached,
                false,
            ),
        ] {
            // Negative when the run with the layer happened to take less
            // memory: reported as measured, not clamped to zero.
            let per_stream = (with as f64 - without as f64) / streams as f64;
            let row = Row::new(
                "6. Memory",
                format!(
                    "layer's share per stream, {streams} streams, {state}, {}",
                    setup.label()
                ),
                format!("{:.1} KiB/stream (RSS {})", per_stream / 1024.0, mib(with)),
            )
            .against(
                format!("no layer: RSS {}", mib(without)),
                with as f64 / without as f64,
            )
            .value_target(
                "<= 16 KiB/stream",
                Target::AtMost(16.0 * 1024.0),
                per_stream,
            );
            report.push(if headline {
                row.headline(format!(
                    "Memory per stream, {streams} streams attached, {}",
                    setup.label()
                ))
            } else {
                row
            });
        }
    }
}
