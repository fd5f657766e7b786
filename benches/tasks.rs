//! The Tasks gateway (`mcp-resume proxy --tasks`, on SQLite) against tasks a server keeps itself
//! (rmcp 3.11's `TaskManager`, in memory), measured in one run with the same client (rmcp's own,
//! declaring `io.modelcontextprotocol/tasks` at 2026-07-28); setups interleaved round by round,
//! in an order that alternates, so drift on a shared machine hits both sides alike. Every server
//! runs in a process of its own (this binary, re-run, serves rmcp's), the clients in this one.
//!
//! 1. Task creations/s: 16 clients at once, each calling a tool that answers at once, as fast as
//!    it can, for a window; every answer must be a `CreateTaskResult`. The gateway (`--task-tool
//!    work=0s`: every call of the tool is a task) in front of rmcp without task support, against
//!    rmcp creating the tasks itself. Target: the gateway's rate at least 1/1.5 of rmcp's. Shown
//!    for the first round (both servers fresh, with how many tasks each created in it) and as
//!    the median of all rounds, since rmcp's `TaskManager` slows as its tasks pile up: the
//!    shorter the window, the fewer tasks rmcp holds, and the better it fares. For reference, in the same rounds: the tool's
//!    ordinary calls/s through `mcp-resume proxy` without `--tasks` and directly, the cost of the
//!    extra process and hop that a gateway outside the server has and rmcp's tasks do not.
//! 2. `tasks/get` latency, p50 and p99: one client polling a completed task, one request at a
//!    time; measured first with one task in each server, and again after row 1 with every task
//!    row 1 created still held (rmcp's `TaskManager` sweeps all its tasks on every call, so it
//!    slows as they pile up; the gateway's store looks a task up by its key). Target: the
//!    gateway's p50 and p99 within 1.5x of rmcp's.
//! 3. A call that completes before the task threshold (the default, about a second), one at a
//!    time: through `mcp-resume proxy --tasks` against the same call through `mcp-resume proxy`
//!    without the gateway (what the gateway adds), and directly to the server (what the proxy
//!    adds, for reference). Target: p50 and p99 with the gateway at most 1.1x without it.
//!
//! Rows 2 and 3 first send each server [`WARM_UP`] requests they do not time: the gateway of
//! row 3 serves nothing before it, and a fresh process answers its first requests slower.
//!
//! Ratios, never timed asserts: it prints a table and writes it to `target/tasks-bench.md`;
//! the figures go into docs/tasks-proof-2026-12.md with the command. A run fails only when
//! something is wrong (a call that does not become a task, an error), not when a target is
//! missed.
//!
//! ```text
//! cargo bench --bench tasks                            # about a minute
//! MCP_RESUME_BENCH_QUICK=1 cargo bench --bench tasks   # about ten seconds: 3 rounds of 0.5 s
//! ```

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ClientCapabilities, ClientConfig,
    ContentBlock, CreateTaskResult, GetTaskParams, GetTaskResult, Implementation, JsonObject,
    ListToolsResult, PaginatedRequestParams, ProtocolVersion, ServerCapabilities, ServerConfig,
    Tool,
};
use rmcp::service::{ClientLifecycleMode, ClientServiceExt, RequestContext, RunningService};
use rmcp::task_manager::{TaskManager, TaskOptions};
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use rmcp::{ClientHandler, ErrorData, RoleClient, RoleServer, ServerHandler};
use serde_json::json;

/// Requests sent to each server before rows 2 and 3 measure, unmeasured.
const WARM_UP: usize = 50;

/// Set (to `plain` or `native`) in the environment of this binary run as a server.
const SERVE_ENV: &str = "MCP_RESUME_TASKS_BENCH_SERVE";
/// What a server process prints once it listens, before its URL.
const SERVING: &str = "tasks bench server listening on ";
/// The one tool both servers have: answers at once with a short text.
const TOOL: &str = "work";
/// Clients at once for row 1.
const CREATORS: usize = 16;

struct Plan {
    rounds: usize,
    window: Duration,
    gets_per_round: usize,
    calls_per_round: usize,
}

impl Plan {
    fn full() -> Plan {
        Plan {
            rounds: 6,
            window: Duration::from_secs(2),
            gets_per_round: 2_000,
            calls_per_round: 500,
        }
    }

    fn quick() -> Plan {
        Plan {
            rounds: 3,
            window: Duration::from_millis(500),
            gets_per_round: 300,
            calls_per_round: 100,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The servers: rmcp, with and without task support of its own.
// ---------------------------------------------------------------------------------------------

fn tool_list() -> ListToolsResult {
    let schema: JsonObject = json!({"type": "object", "properties": {}})
        .as_object()
        .cloned()
        .unwrap_or_default();
    ListToolsResult::with_all_items(vec![Tool::new(TOOL, "Answers at once", Arc::new(schema))])
}

fn work_result() -> CallToolResult {
    CallToolResult::success(vec![ContentBlock::text("done")])
}

/// The server: rmcp without task support (what the gateway stands in front of) when `tasks` is
/// `None`; else rmcp keeping tasks itself (its `TaskManager`, in memory), where every call of a
/// client that declares the extension is a task.
#[derive(Clone)]
struct Server {
    tasks: Option<TaskManager>,
}

impl ServerHandler for Server {
    fn get_info(&self) -> ServerConfig {
        let capabilities = ServerCapabilities::builder().enable_tools();
        ServerConfig::new(match self.tasks {
            Some(_) => capabilities.enable_tasks().build(),
            None => capabilities.build(),
        })
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        Ok(tool_list())
    }

    async fn call_tool(
        &self,
        _request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let declared = context
            .client_capabilities()
            .is_some_and(|capabilities| capabilities.supports_tasks());
        match &self.tasks {
            Some(tasks) if declared => {
                let task = tasks.spawn(TaskOptions::new(), |_| {
                    Box::pin(async { Ok(work_result()) })
                });
                Ok(CallToolResponse::Task(CreateTaskResult::new(task)))
            }
            _ => Ok(CallToolResponse::Complete(work_result())),
        }
    }

    async fn get_task(
        &self,
        request: GetTaskParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<GetTaskResult, ErrorData> {
        match &self.tasks {
            Some(tasks) => Ok(GetTaskResult::new(tasks.get_task(&request.task_id)?)),
            None => Err(ErrorData::method_not_found::<rmcp::model::GetTaskMethod>()),
        }
    }
}

/// Serves `handler` with rmcp's Streamable HTTP service on a free loopback port; its URL.
async fn serve<H: ServerHandler + Clone>(handler: H) -> String {
    let config = StreamableHttpServerConfig::default().with_sse_keep_alive(None);
    let service = StreamableHttpService::new(
        move || Ok(handler.clone()),
        Arc::new(LocalSessionManager::default()),
        config,
    );
    let app = axum::Router::new().nest_service("/mcp", service);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a loopback port");
    let address = listener.local_addr().expect("its address");
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{address}/mcp")
}

// ---------------------------------------------------------------------------------------------
// mcp-resume proxy, the binary, as users run it.
// ---------------------------------------------------------------------------------------------

/// A process of this run: `mcp-resume proxy`, or this bench binary serving one of the rmcp
/// servers (so each server has its own process and cores, as the gateway has, and none shares
/// the clients' runtime); killed when dropped.
struct Process {
    child: Child,
    url: String,
}

impl Process {
    /// Starts `command` and reads its stdout up to the line `prefix ADDRESS`.
    fn start(mut command: Command, prefix: &str) -> Process {
        command.stdout(Stdio::piped()).stderr(Stdio::inherit());
        let mut child = command
            .spawn()
            .unwrap_or_else(|error| panic!("starting {command:?}: {error}"));
        let mut lines = BufReader::new(child.stdout.take().expect("its stdout")).lines();
        let url = loop {
            let line = lines
                .next()
                .unwrap_or_else(|| panic!("{command:?} exited before listening"))
                .expect("a line");
            if let Some(rest) = line.strip_prefix(prefix) {
                break format!("{}/mcp", rest.trim().trim_end_matches("/mcp"));
            }
        };
        // Keep draining stdout so the child never blocks on a full pipe.
        std::thread::spawn(move || lines.for_each(drop));
        Process { child, url }
    }

    /// `mcp-resume proxy` in front of `upstream`, on a SQLite file, with `args`.
    fn proxy(upstream: &str, store: &Path, args: &[&str]) -> Process {
        let mut command = Command::new(env!("CARGO_BIN_EXE_mcp-resume"));
        command
            .args([
                "proxy",
                "--listen",
                "127.0.0.1:0",
                "--upstream",
                upstream,
                "--store",
            ])
            .arg(format!("sqlite:{}", store.display()))
            .args(args)
            .env("RUST_LOG", "warn");
        Process::start(command, "mcp-resume listening on ")
    }

    /// This binary serving the rmcp server, with its own task support if `native_tasks`.
    fn server(native_tasks: bool) -> Process {
        let mut command = Command::new(std::env::current_exe().expect("this bench's binary"));
        command.env(SERVE_ENV, if native_tasks { "native" } else { "plain" });
        Process::start(command, SERVING)
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// ---------------------------------------------------------------------------------------------
// The client: rmcp's, declaring the extension.
// ---------------------------------------------------------------------------------------------

#[derive(Clone)]
struct TasksClient;

impl ClientHandler for TasksClient {
    fn get_info(&self) -> ClientConfig {
        ClientConfig::new(
            ClientCapabilities::builder().enable_tasks().build(),
            Implementation::new("mcp-resume-tasks-bench", env!("CARGO_PKG_VERSION")),
        )
        .with_protocol_version(ProtocolVersion::V_2026_07_28)
    }
}

type Client = RunningService<RoleClient, TasksClient>;

async fn connect(url: &str) -> Client {
    TasksClient
        .serve_with_lifecycle(
            StreamableHttpClientTransport::from_uri(url.to_owned()),
            ClientLifecycleMode::Discover {
                preferred_versions: vec![ProtocolVersion::V_2026_07_28],
            },
        )
        .await
        .unwrap_or_else(|error| panic!("server/discover with {url}: {error}"))
}

async fn call(client: &Client) -> CallToolResponse {
    client
        .call_tool_once(CallToolRequestParams::new(TOOL))
        .await
        .unwrap_or_else(|error| panic!("tools/call {TOOL}: {error}"))
}

/// A task, completed.
async fn completed_task(client: &Client) -> String {
    let CallToolResponse::Task(created) = call(client).await else {
        panic!("tools/call {TOOL} did not answer with a task");
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let got = client
            .get_task(GetTaskParams::new(created.task.task_id.clone()))
            .await
            .expect("tasks/get");
        if got.task.status().is_terminal() {
            return created.task.task_id;
        }
        assert!(
            Instant::now() < deadline,
            "the task did not end within 10 s"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

// ---------------------------------------------------------------------------------------------
// Figures.
// ---------------------------------------------------------------------------------------------

fn percentile(sorted: &[Duration], fraction: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * fraction).round() as usize]
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn ms(duration: Duration) -> String {
    format!("{:.3} ms", duration.as_secs_f64() * 1e3)
}

/// The setups of one row, in the order of this round (alternating: A B, B A, ...).
fn order(round: usize, count: usize) -> Vec<usize> {
    let mut order: Vec<usize> = (0..count).collect();
    if round % 2 == 1 {
        order.reverse();
    }
    order
}

/// What one window of row 1 did: the calls answered, and the time they took.
#[derive(Clone, Copy)]
struct Window {
    answered: usize,
    seconds: f64,
}

impl Window {
    fn rate(self) -> f64 {
        self.answered as f64 / self.seconds
    }
}

/// Row 1: `CREATORS` clients calling at once for one window; each answer must be a task when
/// `tasks`, an ordinary result when not.
async fn call_for(clients: &[Client], window: Duration, tasks: bool) -> Window {
    let answered = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let mut runs = Vec::new();
    for client in clients {
        let peer = client.peer().clone();
        let (answered, stop) = (answered.clone(), stop.clone());
        runs.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                match peer.call_tool_once(CallToolRequestParams::new(TOOL)).await {
                    Ok(CallToolResponse::Task(_)) if tasks => {}
                    Ok(CallToolResponse::Complete(_)) if !tasks => {}
                    Ok(_) if tasks => panic!("tools/call {TOOL} did not answer with a task"),
                    Ok(_) => panic!("tools/call {TOOL} did not answer with its result"),
                    Err(error) => panic!("tools/call {TOOL}: {error}"),
                }
                answered.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    tokio::time::sleep(window).await;
    stop.store(true, Ordering::Relaxed);
    for run in runs {
        run.await.expect("a calling client");
    }
    Window {
        answered: answered.load(Ordering::Relaxed),
        seconds: started.elapsed().as_secs_f64(),
    }
}

/// Row 2: `tasks/get` latency p50 and p99 on a completed task, one request at a time, the two
/// setups (rmcp's own tasks at `native`, the gateway at `gateway`) interleaved; `held` says how
/// many tasks each server holds then.
async fn task_gets(table: &mut Table, plan: &Plan, native: &str, gateway: &str, held: &str) {
    let pollers = [connect(native).await, connect(gateway).await];
    let tasks = [
        completed_task(&pollers[0]).await,
        completed_task(&pollers[1]).await,
    ];
    // Unmeasured first: a fresh process answers its first requests slower.
    for (poller, task) in pollers.iter().zip(&tasks) {
        for _ in 0..WARM_UP {
            poller
                .get_task(GetTaskParams::new(task.clone()))
                .await
                .expect("tasks/get");
        }
    }
    let mut latencies = [Vec::new(), Vec::new()];
    for round in 0..plan.rounds {
        for setup in order(round, 2) {
            for _ in 0..plan.gets_per_round {
                let started = Instant::now();
                pollers[setup]
                    .get_task(GetTaskParams::new(tasks[setup].clone()))
                    .await
                    .expect("tasks/get");
                latencies[setup].push(started.elapsed());
            }
        }
    }
    for latencies in &mut latencies {
        latencies.sort();
    }
    for (label, fraction) in [("p50", 0.5), ("p99", 0.99)] {
        let (native, gateway) = (
            percentile(&latencies[0], fraction),
            percentile(&latencies[1], fraction),
        );
        table.row(
            &format!("2. tasks/get latency {label}, {held}"),
            &format!("gateway on SQLite {}", ms(gateway)),
            &format!("rmcp's TaskManager {}", ms(native)),
            gateway.as_secs_f64() / native.as_secs_f64(),
            "<= 1.5x",
        );
    }
    for client in pollers {
        let _ = client.cancel().await;
    }
}

struct Table {
    lines: Vec<String>,
}

impl Table {
    fn row(&mut self, row: &str, measured: &str, against: &str, ratio: f64, target: &str) {
        let met = if target.is_empty() {
            String::new()
        } else {
            let (bound, at_most) = match target.split_once(' ') {
                Some(("<=", bound)) => (bound, true),
                Some((">=", bound)) => (bound, false),
                _ => ("", true),
            };
            let bound: f64 = bound.trim_end_matches('x').parse().unwrap_or(f64::NAN);
            let ok = if at_most {
                ratio <= bound
            } else {
                ratio >= bound
            };
            format!("{target}: {}", if ok { "met" } else { "NOT met" })
        };
        self.lines.push(format!(
            "| {row} | {measured} | {against} | {ratio:.2}x | {met} |"
        ));
    }
}

fn main() {
    if let Ok(kind) = std::env::var(SERVE_ENV) {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .expect("a Tokio runtime");
        runtime.block_on(async {
            let tasks = (kind == "native").then(TaskManager::new);
            println!("{SERVING}{}", serve(Server { tasks }).await);
            std::future::pending::<()>().await
        });
        return;
    }
    let quick = std::env::var_os("MCP_RESUME_BENCH_QUICK").is_some_and(|value| value != "0");
    // `cargo bench` passes `--bench`; a filter argument that names nothing of this bench skips it.
    if std::env::args()
        .skip(1)
        .any(|argument| !argument.starts_with("--") && !"tasks".contains(argument.as_str()))
    {
        return;
    }
    let plan = if quick { Plan::quick() } else { Plan::full() };
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("tasks-bench");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("a scratch directory");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a Tokio runtime");
    let table = runtime.block_on(run(&plan, &dir));
    let header = format!(
        "Tasks gateway bench ({} mode, {} rounds, interleaved)\n\n\
         | row | measured | against | ratio | target |\n|---|---|---|---|---|",
        if quick { "quick" } else { "full" },
        plan.rounds
    );
    let text = format!("{header}\n{}\n", table.lines.join("\n"));
    println!("\n{text}");
    // The target directory, wherever CARGO_TARGET_DIR put it.
    let out = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .map_or_else(|| PathBuf::from("target"), Path::to_path_buf)
        .join("tasks-bench.md");
    if let Err(error) = std::fs::write(&out, &text) {
        eprintln!("tasks bench: {}: {error}", out.display());
    }
}

async fn run(plan: &Plan, dir: &Path) -> Table {
    let plain_server = Process::server(false);
    let native_server = Process::server(true);
    let (plain, native) = (plain_server.url.clone(), native_server.url.clone());
    // Row 1 and 2: every call of the tool is a task.
    let gateway = Process::proxy(
        &plain,
        &dir.join("gateway.db"),
        &["--tasks", "true", "--task-tool", &format!("{TOOL}=0s")],
    );
    // Row 3: the default threshold, so the call (answered at once) stays an ordinary result.
    let gateway_default = Process::proxy(
        &plain,
        &dir.join("gateway-default.db"),
        &["--tasks", "true"],
    );
    let proxy_only = Process::proxy(&plain, &dir.join("proxy.db"), &[]);

    let mut table = Table { lines: Vec::new() };

    // Row 2 first, each server holding one task.
    task_gets(&mut table, plan, &native, &gateway.url, "one task held").await;

    // Row 1: the two servers with tasks, and for reference the same tool's ordinary calls
    // through the proxy without the gateway and directly (what the extra hop costs). Indexed by
    // the constants below.
    const NATIVE: usize = 0;
    const GATEWAY: usize = 1;
    const PROXY: usize = 2;
    const DIRECT: usize = 3;
    let setups = [
        (native.as_str(), true),
        (gateway.url.as_str(), true),
        (proxy_only.url.as_str(), false),
        (plain.as_str(), false),
    ];
    let mut callers: Vec<Vec<Client>> = Vec::new();
    for (url, _) in setups {
        let mut clients = Vec::new();
        for _ in 0..CREATORS {
            clients.push(connect(url).await);
        }
        callers.push(clients);
    }
    let mut windows = vec![Vec::new(); setups.len()];
    for round in 0..plan.rounds {
        for setup in order(round, setups.len()) {
            let tasks = setups[setup].1;
            windows[setup].push(call_for(&callers[setup], plan.window, tasks).await);
        }
    }
    // Each server now holds every task row 1 created (rmcp keeps them for its default time to
    // live, 5 minutes; the gateway for --max-age): row 2 again, with them.
    let held = |setup: usize| windows[setup].iter().map(|w| w.answered).sum::<usize>();
    let (native_held, gateway_held) = (held(NATIVE), held(GATEWAY));
    // rmcp's TaskManager slows as its tasks pile up: the first round (each server fresh) and
    // the median of all rounds are both shown.
    let first = |setup: usize| windows[setup][0].rate();
    table.row(
        &format!(
            "1. task creations/s, 16 clients, first round (servers fresh; {} / {} tasks created in it)",
            windows[GATEWAY][0].answered, windows[NATIVE][0].answered
        ),
        &format!("gateway on SQLite {:.0}/s", first(GATEWAY)),
        &format!("rmcp's TaskManager in memory {:.0}/s", first(NATIVE)),
        first(GATEWAY) / first(NATIVE),
        ">= 0.67x",
    );
    let medians: Vec<f64> = windows
        .iter()
        .map(|windows| median(&mut windows.iter().map(|w| w.rate()).collect::<Vec<_>>()))
        .collect();
    table.row(
        &format!(
            "1. task creations/s, 16 clients, median of {} rounds (in the end {gateway_held} / {native_held} tasks held)",
            plan.rounds
        ),
        &format!("gateway on SQLite {:.0}/s", medians[GATEWAY]),
        &format!("rmcp's TaskManager in memory {:.0}/s", medians[NATIVE]),
        medians[GATEWAY] / medians[NATIVE],
        ">= 0.67x",
    );
    table.row(
        "1. for reference: ordinary calls/s of the tool, 16 clients, median",
        &format!("through mcp-resume proxy {:.0}/s", medians[PROXY]),
        &format!("the server directly {:.0}/s", medians[DIRECT]),
        medians[PROXY] / medians[DIRECT],
        "",
    );
    table.row(
        "1. for reference: task creations/s through the gateway against ordinary calls through the proxy, median",
        &format!("gateway on SQLite {:.0}/s", medians[GATEWAY]),
        &format!("proxy without --tasks {:.0}/s", medians[PROXY]),
        medians[GATEWAY] / medians[PROXY],
        "",
    );
    for clients in callers {
        for client in clients {
            let _ = client.cancel().await;
        }
    }
    task_gets(
        &mut table,
        plan,
        &native,
        &gateway.url,
        &format!("after row 1 (gateway {gateway_held}, rmcp {native_held} tasks held)"),
    )
    .await;

    // Row 3.
    let callers = [
        connect(&gateway_default.url).await,
        connect(&proxy_only.url).await,
        connect(&plain).await,
    ];
    // Unmeasured first: the gateway with the default threshold serves no
    // other row, and a fresh process answers its first requests slower.
    for caller in &callers {
        for _ in 0..WARM_UP {
            call(caller).await;
        }
    }
    let mut latencies = [Vec::new(), Vec::new(), Vec::new()];
    for round in 0..plan.rounds {
        for setup in order(round, 3) {
            for _ in 0..plan.calls_per_round {
                let started = Instant::now();
                let response = call(&callers[setup]).await;
                latencies[setup].push(started.elapsed());
                assert!(
                    matches!(response, CallToolResponse::Complete(_)),
                    "a call answered at once became a task"
                );
            }
        }
    }
    for latencies in &mut latencies {
        latencies.sort();
    }
    for (label, fraction) in [("p50", 0.5), ("p99", 0.99)] {
        let [with_gateway, without, direct] =
            [0, 1, 2].map(|setup| percentile(&latencies[setup], fraction));
        table.row(
            &format!("3. call below the threshold {label}"),
            &format!("proxy --tasks {}", ms(with_gateway)),
            &format!("proxy without --tasks {}", ms(without)),
            with_gateway.as_secs_f64() / without.as_secs_f64(),
            "<= 1.1x",
        );
        table.row(
            &format!("3. call below the threshold {label}, for reference"),
            &format!("proxy --tasks {}", ms(with_gateway)),
            &format!("the server directly {}", ms(direct)),
            with_gateway.as_secs_f64() / direct.as_secs_f64(),
            "",
        );
    }
    for client in callers {
        let _ = client.cancel().await;
    }
    drop((
        gateway,
        gateway_default,
        proxy_only,
        plain_server,
        native_server,
    ));
    table
}
