//! A client that implements the 2026-07-28 Tasks extension (`io.modelcontextprotocol/tasks`,
//! SEP-2663) without any code of ours on its side of the wire: rmcp's own client (3.11),
//! which declares the extension in every request's `_meta` clientCapabilities after
//! `server/discover`, reads a `CreateTaskResult` (`resultType: "task"`) from `tools/call`,
//! and polls `tasks/get`. The proof runs in tests/tasks/run.sh.
//!
//! ```text
//! # one call; through `mcp-resume proxy --tasks` a slow tool answers with a task, which is
//! # polled to its end; --task-id-file gets the id as soon as the task exists (the caller may
//! # SIGKILL this process then, and poll the id with a new one)
//! cargo run --example tasks_client -- --url http://127.0.0.1:8080/mcp --mode call \
//!     --tool slow_compute --args '{"seconds":3}' --expect task --task-id-file /tmp/task-id
//!
//! # a new client polls a task another one created
//! cargo run --example tasks_client -- --url http://127.0.0.1:8080/mcp --mode poll --task-id ID
//!
//! # one tasks/get, a tasks/update with the responses, or a tasks/cancel (tests/tasks/faults.sh)
//! cargo run --example tasks_client -- --url URL --mode get --task-id ID
//! cargo run --example tasks_client -- --url URL --mode update --task-id ID \
//!     --responses '{"confirm":{"action":"accept","content":{"confirm":true}}}'
//! cargo run --example tasks_client -- --url URL --mode cancel --task-id ID
//! ```
//!
//! `--mode call --no-poll` returns once the task exists (its id in the line, and in
//! `--task-id-file`).
//!
//! It prints one JSON line: `{"task": <id or null>, "status": ..., "statuses": [...],
//! "polls": n, "result": <the CallToolResult, as rmcp reads it> or "error": {...}}`, and exits
//! non-zero when the call or a poll fails, `--expect` is not met, or `--deadline-secs` passes
//! (every wait has that deadline: nothing hangs).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use mcp_resume_testkit::cli;
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, CancelTaskParams, ClientCapabilities,
    ClientConfig, GetTaskParams, Implementation, JsonObject, ProtocolVersion, TaskPayload,
    UpdateTaskParams,
};
use rmcp::service::{ClientLifecycleMode, ClientServiceExt, RunningService};
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::{ClientHandler, RoleClient};
use serde_json::{Value, json};

const USAGE: &str = "usage: tasks_client --url URL [--mode call|poll|get|update|cancel] [--tool NAME] \
[--args JSON] [--expect task|complete|any] [--no-poll true] [--task-id ID] [--task-id-file PATH] \
[--responses JSON] [--deadline-secs 60]";

/// What this client declares: the tasks extension, and nothing else.
#[derive(Clone)]
struct TasksClient;

impl ClientHandler for TasksClient {
    fn get_info(&self) -> ClientConfig {
        ClientConfig::new(
            ClientCapabilities::builder().enable_tasks().build(),
            Implementation::new("mcp-resume-tasks-client", env!("CARGO_PKG_VERSION")),
        )
        .with_protocol_version(ProtocolVersion::V_2026_07_28)
    }
}

#[derive(Debug, PartialEq)]
enum Mode {
    Call,
    Poll,
    Get,
    Update,
    Cancel,
}

#[derive(Debug, PartialEq)]
enum Expect {
    Task,
    Complete,
    Any,
}

struct Options {
    url: String,
    mode: Mode,
    tool: String,
    arguments: JsonObject,
    expect: Expect,
    task_id: Option<String>,
    task_id_file: Option<PathBuf>,
    no_poll: bool,
    responses: JsonObject,
    deadline: Duration,
}

fn options() -> Result<Options, String> {
    let mut options = Options {
        url: String::new(),
        mode: Mode::Call,
        tool: "slow_compute".into(),
        arguments: JsonObject::new(),
        expect: Expect::Any,
        task_id: None,
        task_id_file: None,
        no_poll: false,
        responses: JsonObject::new(),
        deadline: Duration::from_secs(60),
    };
    for (flag, value) in cli::flag_values(USAGE)? {
        match flag.as_str() {
            "--url" => options.url = value,
            "--mode" => {
                options.mode = match value.as_str() {
                    "call" => Mode::Call,
                    "poll" => Mode::Poll,
                    "get" => Mode::Get,
                    "update" => Mode::Update,
                    "cancel" => Mode::Cancel,
                    _ => {
                        return Err(cli::invalid(
                            &flag,
                            &value,
                            "call, poll, get, update or cancel",
                        ));
                    }
                }
            }
            "--tool" => options.tool = value,
            "--args" => match serde_json::from_str(&value) {
                Ok(Value::Object(arguments)) => options.arguments = arguments,
                _ => return Err(cli::invalid(&flag, &value, "not a JSON object")),
            },
            "--expect" => {
                options.expect = match value.as_str() {
                    "task" => Expect::Task,
                    "complete" => Expect::Complete,
                    "any" => Expect::Any,
                    _ => return Err(cli::invalid(&flag, &value, "task, complete or any")),
                }
            }
            "--task-id" => options.task_id = Some(value),
            "--task-id-file" => options.task_id_file = Some(value.into()),
            "--no-poll" => options.no_poll = cli::parse(&flag, &value)?,
            "--responses" => match serde_json::from_str(&value) {
                Ok(Value::Object(responses)) => options.responses = responses,
                _ => return Err(cli::invalid(&flag, &value, "not a JSON object")),
            },
            "--deadline-secs" => options.deadline = Duration::from_secs(cli::parse(&flag, &value)?),
            _ => return Err(format!("unknown flag {flag}\n{USAGE}")),
        }
    }
    if options.url.is_empty() {
        return Err(format!("--url is required\n{USAGE}"));
    }
    if options.mode != Mode::Call && options.task_id.is_none() {
        return Err("--mode poll, get, update and cancel need --task-id".into());
    }
    Ok(options)
}

/// What one run saw, printed as its JSON line.
#[derive(Default)]
struct Report {
    task: Option<String>,
    statuses: Vec<String>,
    polls: usize,
    status: String,
    status_message: Option<String>,
    input_requests: Vec<String>,
    result: Option<Value>,
    error: Option<Value>,
}

impl Report {
    fn json(&self) -> Value {
        let mut line = json!({
            "task": self.task,
            "status": self.status,
            "statuses": self.statuses,
            "polls": self.polls,
        });
        if let Some(message) = &self.status_message {
            line["statusMessage"] = json!(message);
        }
        if !self.input_requests.is_empty() {
            line["inputRequests"] = json!(self.input_requests);
        }
        if let Some(result) = &self.result {
            line["result"] = result.clone();
        }
        if let Some(error) = &self.error {
            line["error"] = error.clone();
        }
        line
    }
}

/// The tool result as rmcp reads it, so a direct answer and a task's inlined one compare equal
/// when they carry the same content (protocol `_meta` and `resultType` left out).
fn normalized(result: &CallToolResult) -> Result<Value, String> {
    let mut value = serde_json::to_value(result).map_err(|error| error.to_string())?;
    if let Some(object) = value.as_object_mut() {
        object.remove("_meta");
        object.remove("resultType");
    }
    Ok(value)
}

async fn connect(url: &str) -> Result<RunningService<RoleClient, TasksClient>, String> {
    let transport = StreamableHttpClientTransport::from_uri(url.to_owned());
    TasksClient
        .serve_with_lifecycle(
            transport,
            ClientLifecycleMode::Discover {
                preferred_versions: vec![ProtocolVersion::V_2026_07_28],
            },
        )
        .await
        .map_err(|error| format!("server/discover with {url}: {error}"))
}

/// One `tasks/get`, recorded; whether the task is terminal.
async fn get(
    client: &RunningService<RoleClient, TasksClient>,
    task_id: &str,
    report: &mut Report,
) -> Result<(bool, Option<u64>), String> {
    let got = client
        .get_task(GetTaskParams::new(task_id))
        .await
        .map_err(|error| format!("tasks/get {task_id}: {error}"))?;
    report.polls += 1;
    let status = serde_json::to_value(got.task.status())
        .ok()
        .and_then(|status| status.as_str().map(str::to_owned))
        .unwrap_or_default();
    if report.statuses.last() != Some(&status) {
        report.statuses.push(status.clone());
    }
    report.status = status;
    report.status_message = got.task.task.status_message.clone();
    report.input_requests.clear();
    match &got.task.payload {
        TaskPayload::Completed { result } => {
            let result: CallToolResult = serde_json::from_value(Value::Object(result.clone()))
                .map_err(|error| {
                    format!("the completed task's result is no CallToolResult: {error}")
                })?;
            report.result = Some(normalized(&result)?);
        }
        TaskPayload::Failed { error } => report.error = Some(Value::Object(error.clone())),
        TaskPayload::InputRequired { input_requests } => {
            report.input_requests = input_requests.keys().cloned().collect();
        }
        _ => {}
    }
    Ok((
        got.task.status().is_terminal(),
        got.task.task.poll_interval_ms,
    ))
}

/// Polls `tasks/get` until the task is terminal, at the interval the server suggests
/// (bounded to 50 ms..1 s so a run stays short either way).
async fn poll(
    client: &RunningService<RoleClient, TasksClient>,
    task_id: &str,
    report: &mut Report,
) -> Result<(), String> {
    loop {
        let (terminal, interval) = get(client, task_id, report).await?;
        if terminal {
            return Ok(());
        }
        if !report.input_requests.is_empty() {
            return Err(format!(
                "task {task_id} asks for input; this client answers none"
            ));
        }
        let interval = interval.unwrap_or(200).clamp(50, 1000);
        tokio::time::sleep(Duration::from_millis(interval)).await;
    }
}

async fn run(options: &Options, report: &mut Report) -> Result<(), String> {
    let client = connect(&options.url).await?;
    if !client
        .peer_info()
        .is_some_and(|info| info.capabilities.supports_tasks())
        && options.expect == Expect::Task
    {
        return Err("server/discover does not advertise io.modelcontextprotocol/tasks".into());
    }
    let task_id = options.task_id.clone().unwrap_or_default();
    match options.mode {
        Mode::Poll => {
            report.task = Some(task_id.clone());
            poll(&client, &task_id, report).await?;
        }
        Mode::Get => {
            report.task = Some(task_id.clone());
            get(&client, &task_id, report).await?;
        }
        Mode::Update => {
            report.task = Some(task_id.clone());
            let responses = serde_json::from_value(Value::Object(options.responses.clone()))
                .map_err(|error| format!("--responses: not input responses: {error}"))?;
            client
                .update_task(UpdateTaskParams::new(task_id.clone(), responses))
                .await
                .map_err(|error| format!("tasks/update {task_id}: {error}"))?;
            report.status = "updated".into();
        }
        Mode::Cancel => {
            report.task = Some(task_id.clone());
            client
                .cancel_task(CancelTaskParams::new(task_id.clone()))
                .await
                .map_err(|error| format!("tasks/cancel {task_id}: {error}"))?;
            report.status = "cancel acknowledged".into();
        }
        Mode::Call => {
            let params = CallToolRequestParams::new(options.tool.clone())
                .with_arguments(options.arguments.clone());
            let response = client
                .call_tool_once(params)
                .await
                .map_err(|error| format!("tools/call {}: {error}", options.tool))?;
            match response {
                CallToolResponse::Complete(result) => {
                    if options.expect == Expect::Task {
                        return Err(format!(
                            "tools/call {} answered at once, not with a task",
                            options.tool
                        ));
                    }
                    report.status = "complete".into();
                    report.result = Some(normalized(&result)?);
                }
                CallToolResponse::Task(created) => {
                    if options.expect == Expect::Complete {
                        return Err(format!("tools/call {} answered with a task", options.tool));
                    }
                    let task_id = created.task.task_id.clone();
                    report.task = Some(task_id.clone());
                    report.status = "task created".into();
                    if let Some(path) = &options.task_id_file {
                        // Written whole, then renamed: the caller never reads half an id.
                        let partial = path.with_extension("partial");
                        std::fs::write(&partial, &task_id)
                            .and_then(|()| std::fs::rename(&partial, path))
                            .map_err(|error| format!("{}: {error}", path.display()))?;
                    }
                    if !options.no_poll {
                        poll(&client, &task_id, report).await?;
                    }
                }
                CallToolResponse::InputRequired(_) => {
                    return Err(format!(
                        "tools/call {} asks for input; this client answers none",
                        options.tool
                    ));
                }
                _ => {
                    return Err(format!(
                        "tools/call {}: an answer of an unknown kind",
                        options.tool
                    ));
                }
            }
        }
    }
    let _ = client.cancel().await;
    Ok(())
}

#[tokio::main]
async fn main() {
    let options = match options() {
        Ok(options) => options,
        Err(message) => {
            eprintln!("tasks_client: {message}");
            std::process::exit(2);
        }
    };
    let started = Instant::now();
    let mut report = Report::default();
    let outcome = match tokio::time::timeout(options.deadline, run(&options, &mut report)).await {
        Ok(outcome) => outcome,
        Err(_) => Err(format!(
            "no end within the deadline of {} s (last status: {:?})",
            options.deadline.as_secs(),
            report.status
        )),
    };
    let mut line = report.json();
    line["elapsed_ms"] = json!(started.elapsed().as_millis() as u64);
    println!("{line}");
    if let Err(message) = outcome {
        eprintln!("tasks_client: {message}");
        std::process::exit(1);
    }
}
