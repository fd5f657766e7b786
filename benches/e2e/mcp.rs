//! Rows 3 and 4: real MCP servers driven by a real MCP client (rmcp's), 20
//! tool calls at once, each sending 1,000 progress notifications before its
//! result. Row 3 is rmcp's `StreamableHttpService` alone against it behind
//! the layer on SQLite; row 4 the Python SDK (`mcp` 2.3.0) with its example
//! in-memory event store against the same Python server with no store behind
//! `mcp-resume proxy` on SQLite.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use mcp_resume::ResumabilityLayer;
use mcp_resume::store::{SqliteEventStore, SqliteOptions};
use rmcp::model::{
    CallToolRequestParams, ClientConfig, ClientRequest, ProgressNotificationParam, ProtocolVersion,
    Request, ServerResult,
};
use rmcp::service::{NotificationContext, PeerRequestOptions};
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::{ClientHandler, RoleClient, ServiceExt};
use serde_json::json;

use crate::Plan;
use crate::net::{median, round_order};
use crate::progress_server::mcp_service;
use crate::report::{Report, Row, Target};

/// Tool calls in flight at once.
const CALLS: usize = 20;
/// Progress notifications per call.
const NOTIFICATIONS: u64 = 1_000;

/// The client's handler: counts progress notifications.
#[derive(Clone, Default)]
struct ProgressCounter {
    seen: Arc<AtomicU64>,
}

impl ClientHandler for ProgressCounter {
    async fn on_progress(&self, _: ProgressNotificationParam, _: NotificationContext<RoleClient>) {
        self.seen.fetch_add(1, Ordering::Relaxed);
    }

    fn get_info(&self) -> ClientConfig {
        ClientConfig::default().with_protocol_version(ProtocolVersion::V_2025_11_25)
    }
}

/// A tool of the server under test: its name and arguments for one call.
struct Tool {
    name: &'static str,
    arguments: serde_json::Map<String, serde_json::Value>,
}

/// CPU time this process's threads have used, in nanoseconds: all of them,
/// and the SQLite store's writer and checkpointing threads, found by name.
#[derive(Clone, Copy, Default)]
struct CpuNanos {
    all: u64,
    writer: u64,
    checkpointer: u64,
}

impl CpuNanos {
    /// Read from `/proc/self/task/*/schedstat` (nanosecond counters);
    /// `None` where there is no such file (off Linux).
    fn now() -> Option<CpuNanos> {
        let mut cpu = CpuNanos::default();
        for task in std::fs::read_dir("/proc/self/task").ok()? {
            // A thread that ended since the listing is simply left out.
            let Ok(path) = task.map(|task| task.path()) else {
                continue;
            };
            let (Ok(name), Ok(stat)) = (
                std::fs::read_to_string(path.join("comm")),
                std::fs::read_to_string(path.join("schedstat")),
            ) else {
                continue;
            };
            let nanos: u64 = stat.split(' ').next()?.parse().ok()?;
            cpu.all += nanos;
            match name.trim_end() {
                SqliteEventStore::WRITER_THREAD_NAME => cpu.writer += nanos,
                SqliteEventStore::CHECKPOINT_THREAD_NAME => cpu.checkpointer += nanos,
                _ => {}
            }
        }
        Some(cpu)
    }

    /// Microseconds per notification from `self` to `later`.
    fn per_notification(self, later: CpuNanos, notifications: u64) -> CpuPerNotification {
        let micros =
            |from: u64, to: u64| to.saturating_sub(from) as f64 / 1e3 / notifications as f64;
        CpuPerNotification {
            all: micros(self.all, later.all),
            writer: micros(self.writer, later.writer),
            checkpointer: micros(self.checkpointer, later.checkpointer),
        }
    }
}

/// CPU microseconds per notification over a round, of the whole process
/// (server, layer and client) and of the SQLite store's two threads.
#[derive(Clone, Copy)]
struct CpuPerNotification {
    all: f64,
    writer: f64,
    checkpointer: f64,
}

/// What one round measured.
struct Measured {
    /// Progress notifications per second.
    rate: f64,
    cpu: Option<CpuPerNotification>,
}

/// One round: a fresh client session (initialized outside the clock),
/// `CALLS` calls at once, until every result and every notification has
/// arrived.
async fn round(url: &str, tool: &Tool) -> Measured {
    let counter = ProgressCounter::default();
    let client = counter
        .clone()
        .serve(StreamableHttpClientTransport::from_uri(url.to_string()))
        .await
        .unwrap_or_else(|error| panic!("an MCP session with {url}: {error}"));
    // Read outside the clock: it lists and reads a file per thread.
    let cpu_at_start = CpuNanos::now();
    let start = Instant::now();
    let mut handles = Vec::with_capacity(CALLS);
    for _ in 0..CALLS {
        let request = ClientRequest::CallToolRequest(Request::new(
            CallToolRequestParams::new(tool.name).with_arguments(tool.arguments.clone()),
        ));
        handles.push(
            client
                .send_request_with_option(request, PeerRequestOptions::no_options())
                .await
                .unwrap(),
        );
    }
    for handle in handles {
        let response = tokio::time::timeout(Duration::from_secs(120), handle.await_response())
            .await
            .expect("a tool call finishes within 120 s")
            .expect("a tool result");
        let ServerResult::CallToolResult(result) = response else {
            panic!("expected a tool result, got {response:?}");
        };
        assert_ne!(result.is_error, Some(true), "the tool failed: {result:?}");
    }
    // rmcp hands notifications to the handler on tasks of their own: the
    // last ones may land just after the results.
    let expected = CALLS as u64 * NOTIFICATIONS;
    let waiting = Instant::now();
    while counter.seen.load(Ordering::Relaxed) < expected {
        assert!(
            waiting.elapsed() < Duration::from_secs(10),
            "notifications lost: {} of {expected}",
            counter.seen.load(Ordering::Relaxed)
        );
        tokio::time::sleep(Duration::from_micros(200)).await;
    }
    let elapsed = start.elapsed();
    let cpu = cpu_at_start
        .zip(CpuNanos::now())
        .map(|(start, end)| start.per_notification(end, expected));
    let _ = client.cancel().await;
    Measured {
        rate: expected as f64 / elapsed.as_secs_f64(),
        cpu,
    }
}

/// The medians of `rounds` interleaved rounds against each server.
async fn interleaved(servers: &[(&str, &Tool)], rounds: usize) -> Vec<Measured> {
    for (url, tool) in servers {
        round(url, tool).await;
    }
    let mut measured: Vec<Vec<Measured>> = servers.iter().map(|_| Vec::new()).collect();
    for round_no in 0..rounds {
        for n in round_order(round_no, servers.len()) {
            let (url, tool) = servers[n];
            measured[n].push(round(url, tool).await);
        }
    }
    measured.iter().map(|rounds| medians_of(rounds)).collect()
}

/// Each figure's median over `rounds`; CPU only if every round has it.
fn medians_of(rounds: &[Measured]) -> Measured {
    let median_of = |figure: &dyn Fn(&Measured) -> f64| {
        median(&mut rounds.iter().map(figure).collect::<Vec<_>>())
    };
    let cpu = rounds.iter().all(|m| m.cpu.is_some()).then(|| {
        let cpu_of = |figure: fn(&CpuPerNotification) -> f64| {
            median_of(&|m: &Measured| m.cpu.as_ref().map_or(0.0, figure))
        };
        CpuPerNotification {
            all: cpu_of(|c| c.all),
            writer: cpu_of(|c| c.writer),
            checkpointer: cpu_of(|c| c.checkpointer),
        }
    });
    Measured {
        rate: median_of(&|m| m.rate),
        cpu,
    }
}

fn rate(per_second: f64) -> String {
    format!("{per_second:.0} notifications/s")
}

/// Serves an axum app on a loopback port.
async fn serve_axum(app: axum::Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}/mcp")
}

/// Row 3; returns rmcp-behind-the-layer's rate for row 4's comparison.
pub async fn rmcp(report: &mut Report, plan: &Plan, dir: &Path) -> f64 {
    let (alone, _shutdown_alone) = mcp_service();
    let alone = serve_axum(axum::Router::new().route_service("/mcp", alone)).await;
    let layer = ResumabilityLayer::sqlite_with(SqliteOptions::new(dir.join("rmcp.db"))).unwrap();
    let (behind, _shutdown_behind) = mcp_service();
    let behind =
        serve_axum(axum::Router::new().route_service("/mcp", tower::Layer::layer(&layer, behind)))
            .await;
    let tool = Tool {
        name: "stream_progress",
        arguments: json!({ "count": NOTIFICATIONS })
            .as_object()
            .unwrap()
            .clone(),
    };
    let medians = interleaved(&[(&alone, &tool), (&behind, &tool)], plan.rmcp_rounds).await;
    let stats = layer.stats();
    assert!(
        stats.streams_started >= CALLS as u64 && stats.passthrough_streams == 0,
        "the layer made the tool calls' streams resumable"
    );
    report.push(
        Row::new(
            "3. rmcp",
            format!("rmcp StreamableHttpService behind the layer on SQLite, {CALLS} calls x {NOTIFICATIONS} notifications, rmcp client"),
            rate(medians[1].rate),
        )
        .against(format!("rmcp alone (its in-memory resumption) {}", rate(medians[0].rate)), medians[1].rate / medians[0].rate)
        .ratio_target(Target::AtLeast(0.8))
        .headline("rmcp behind the layer on SQLite, progress notifications/s"),
    );
    // Where the difference goes: with both cores busy, the ratio follows
    // the CPU each notification costs, client and server together.
    if let (Some(alone), Some(behind)) = (medians[0].cpu, medians[1].cpu) {
        assert!(
            behind.writer > 0.0 && behind.checkpointer > 0.0,
            "the SQLite store's threads are found by their names"
        );
        // The store's threads finish a layer round's work (settling,
        // checkpointing) during a round of rmcp alone that follows it:
        // counted here as the layer's, not rmcp's.
        let spill = alone.writer + alone.checkpointer;
        let (alone, behind) = (
            CpuPerNotification {
                all: alone.all - spill,
                writer: 0.0,
                checkpointer: 0.0,
            },
            CpuPerNotification {
                all: behind.all + spill,
                writer: behind.writer + alone.writer,
                checkpointer: behind.checkpointer + alone.checkpointer,
            },
        );
        report.push(
            Row::new(
                "3. rmcp",
                "CPU per notification (client, server, layer, store), rmcp behind the layer on SQLite",
                format!(
                    "{:.1} us, of which SQLite writer thread {:.1} us, checkpointing thread {:.1} us",
                    behind.all, behind.writer, behind.checkpointer
                ),
            )
            .against(format!("rmcp alone {:.1} us", alone.all), behind.all / alone.all),
        );
    }
    medians[1].rate
}

/// A child process killed when dropped, found through the URL in its first matching stdout line.
struct Server {
    child: Child,
    url: String,
}

impl Server {
    fn start(mut command: Command, prefix: &str) -> Server {
        let mut child = command
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|error| panic!("starting {command:?}: {error}"));
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let url = loop {
            let line = lines
                .next()
                .unwrap_or_else(|| panic!("{command:?} exited before listening"))
                .unwrap();
            if let Some(at) = line.find(prefix) {
                break line[at + prefix.len()..].trim().to_string();
            }
        };
        // Keep draining stdout so the child never blocks on a full pipe.
        std::thread::spawn(move || lines.for_each(drop));
        Server {
            child,
            url: format!("http://{url}"),
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Where the Python SDK comes from: `benches/run.sh` sets these.
pub struct Python {
    pub interpreter: PathBuf,
    /// The SDK's example `event_store.py` (from the `mcp` 2.3.0 sdist).
    pub example_store: PathBuf,
}

/// Row 4.
pub async fn python(
    report: &mut Report,
    plan: &Plan,
    dir: &Path,
    python: &Python,
    rmcp_layer: Option<f64>,
) {
    let server_py = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/interop/server.py");
    let with_store = {
        let mut command = Command::new(&python.interpreter);
        command
            .arg(&server_py)
            .args(["--port", "0", "--event-store-example"])
            .arg(&python.example_store);
        Server::start(command, "listening on http://")
    };
    let bare = {
        let mut command = Command::new(&python.interpreter);
        command.arg(&server_py).args(["--port", "0"]);
        Server::start(command, "listening on http://")
    };
    let proxy = {
        let mut command = Command::new(env!("CARGO_BIN_EXE_mcp-resume"));
        command
            .args([
                "proxy",
                "--listen",
                "127.0.0.1:0",
                "--upstream",
                &bare.url,
                "--store",
            ])
            .arg(format!("sqlite:{}", dir.join("proxy.db").display()))
            .env("RUST_LOG", "warn");
        Server::start(command, "mcp-resume listening on http://")
    };
    let proxied = format!("{}/mcp", proxy.url);
    let tool = Tool {
        name: "burst",
        arguments: json!({ "count": NOTIFICATIONS, "interval_ms": 0 })
            .as_object()
            .unwrap()
            .clone(),
    };
    let rates: Vec<f64> = interleaved(
        &[(&with_store.url, &tool), (&proxied, &tool)],
        plan.mcp_rounds,
    )
    .await
    .iter()
    .map(|medians| medians.rate)
    .collect();
    report.push(
        Row::new(
            "4. Python SDK",
            format!("Python SDK server, no event store, behind mcp-resume proxy on SQLite, {CALLS} calls x {NOTIFICATIONS} notifications"),
            rate(rates[1]),
        )
        .against(format!("Python SDK with its example in-memory event store {}", rate(rates[0])), rates[1] / rates[0])
        .ratio_target(Target::AtLeast(0.9))
        .headline("Python SDK behind `mcp-resume proxy` on SQLite, notifications/s"),
    );
    if let Some(rmcp_layer) = rmcp_layer {
        report.push(
            Row::new(
                "4. Python SDK",
                "rmcp behind the layer on SQLite (row 3)",
                rate(rmcp_layer),
            )
            .against(
                format!(
                    "Python SDK with its example in-memory event store {}",
                    rate(rates[0])
                ),
                rmcp_layer / rates[0],
            ),
        );
    }
    drop((proxy, bare, with_store));
}
