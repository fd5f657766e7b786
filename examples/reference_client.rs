//! The project's reference resuming MCP client, for the interop tests (`tests/interop/run.sh`)
//! and the fault run (`tests/chaos/run.sh`).
//!
//! Raw HTTP/1.1 through hyper: it does `initialize`, `notifications/initialized` and
//! `tools/call` itself, reads the SSE responses with the crate's own parser, and when a
//! stream breaks or ends without the call's result it resumes with `GET` + `Last-Event-ID`
//! holding the **newest** id it has seen (never an older one), after the server's `retry`.
//! So against a correct server it must see every event exactly once, in order.
//!
//! ```text
//! # exactly-once proof: 50 calls, 10 at a time, each expecting 200 progress notifications
//! cargo run --example reference_client -- --url http://127.0.0.1:8080/mcp --calls 50 \
//!     --tool burst --args '{"count":200,"interval_ms":10}' --expect 200
//!
//! # restart: one long call; after 30 notifications the client drops its connection (the tool
//! # runs on, the server keeps committing its events), waits --detach-ms, then creates the
//! # signal file; the caller SIGKILLs the server, starts it again on the same store and creates
//! # <signal file>.restarted; the client resumes with its last id and must get every event
//! # committed after it, then a prompt refusal (400) instead of a hang
//! cargo run --example reference_client -- --mode restart --url http://127.0.0.1:8080/mcp \
//!     --tool long_task --args '{"seconds":20,"count":200}' --signal-file /tmp/kill-now --signal-after 30
//!
//! # chaos: 40 sessions, 10 at a time, one call each, while the caller injects faults (cuts,
//! # an upstream restart, a proxy restart, a full disk); every call must end within the
//! # deadline, complete and exact or failed with a clear error (tests/chaos/run.sh)
//! cargo run --example reference_client -- --mode chaos --url http://127.0.0.1:8080/mcp \
//!     --calls 40 --tool long_task --args '{"seconds":6,"count":120}' --expect 120 --deadline-secs 60
//! ```
//!
//! It prints one summary line with counts (and `--report FILE` writes them as JSON), and exits
//! non-zero on any violation: a call that failed, or a progress notification lost, duplicated
//! or out of order (or, in restart mode, a committed event missing, a hang, or no refusal; in
//! chaos mode, where calls may fail, a call that hung or was inexact, or failed without a clear
//! error).

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Method, Request, StatusCode};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use mcp_resume::sse::{Block, SseEvent, SseLimits, SseParser};
use mcp_resume::store::EventId;
use mcp_resume_testkit::cli;
use serde_json::{Value, json};
use tokio::sync::Semaphore;

const USAGE: &str = "usage: reference_client --url URL [--mode calls|restart|chaos] [--calls 50] \
[--concurrency 10] [--tool burst] [--args JSON] [--expect 200] [--max-resumes 100] \
[--idle-timeout-secs 20] [--reconnect-window-secs 30] [--signal-file PATH] [--signal-after 30] \
[--detach-ms 2000] [--deadline-secs 60] [--report FILE]";

const PROTOCOL_VERSION: &str = "2025-11-25";

#[derive(Clone, Debug)]
struct Config {
    url: String,
    mode: String,
    calls: usize,
    concurrency: usize,
    tool: String,
    args: Value,
    expect: u64,
    max_resumes: u32,
    idle_timeout: Duration,
    reconnect_window: Duration,
    signal_file: Option<PathBuf>,
    signal_after: u64,
    detach: Duration,
    /// Chaos mode: the time each session (initialize, then its call) has to end.
    deadline: Duration,
    report: Option<PathBuf>,
}

fn parse_args() -> Result<Config, String> {
    let mut config = Config {
        url: String::new(),
        mode: "calls".into(),
        calls: 50,
        concurrency: 10,
        tool: "burst".into(),
        args: json!({"count": 200, "interval_ms": 10}),
        expect: 200,
        max_resumes: 100,
        idle_timeout: Duration::from_secs(20),
        reconnect_window: Duration::from_secs(30),
        signal_file: None,
        signal_after: 30,
        detach: Duration::from_millis(2000),
        deadline: Duration::from_secs(60),
        report: None,
    };
    for (flag, value) in cli::flag_values(USAGE)? {
        match flag.as_str() {
            "--url" => config.url = value,
            "--mode" => config.mode = value,
            "--calls" => config.calls = cli::parse(&flag, &value)?,
            "--concurrency" => config.concurrency = cli::parse(&flag, &value)?,
            "--tool" => config.tool = value,
            "--args" => {
                config.args =
                    serde_json::from_str(&value).map_err(|e| cli::invalid(&flag, &value, e))?
            }
            "--expect" => config.expect = cli::parse(&flag, &value)?,
            "--max-resumes" => config.max_resumes = cli::parse(&flag, &value)?,
            "--idle-timeout-secs" => {
                config.idle_timeout = Duration::from_secs(cli::parse(&flag, &value)?)
            }
            "--reconnect-window-secs" => {
                config.reconnect_window = Duration::from_secs(cli::parse(&flag, &value)?)
            }
            "--signal-file" => config.signal_file = Some(value.into()),
            "--signal-after" => config.signal_after = cli::parse(&flag, &value)?,
            "--detach-ms" => config.detach = Duration::from_millis(cli::parse(&flag, &value)?),
            "--deadline-secs" => config.deadline = Duration::from_secs(cli::parse(&flag, &value)?),
            "--report" => config.report = Some(value.into()),
            _ => return Err(format!("unknown option {flag}")),
        }
    }
    if config.url.is_empty() {
        return Err("--url is required".into());
    }
    if !matches!(config.mode.as_str(), "calls" | "restart" | "chaos") {
        return Err(format!("unknown mode {}", config.mode));
    }
    if config.mode == "restart" && config.signal_file.is_none() {
        return Err("--mode restart needs --signal-file".into());
    }
    if !config.args.is_object() {
        return Err("--args must be a JSON object".into());
    }
    config.concurrency = config.concurrency.max(1);
    Ok(config)
}

type HttpClient = Client<HttpConnector, Full<Bytes>>;

struct Session {
    http: HttpClient,
    config: Config,
    id: Option<String>,
}

impl Session {
    fn request(
        &self,
        method: Method,
        last_event_id: Option<&str>,
        body: Option<&Value>,
    ) -> Request<Full<Bytes>> {
        let mut builder = Request::builder()
            .method(method)
            .uri(&self.config.url)
            .header("accept", "application/json, text/event-stream");
        if let Some(id) = &self.id {
            builder = builder
                .header("mcp-session-id", id)
                .header("mcp-protocol-version", PROTOCOL_VERSION);
        }
        if let Some(last) = last_event_id {
            builder = builder.header("last-event-id", last);
        }
        let payload = match body {
            Some(body) => {
                builder = builder.header("content-type", "application/json");
                Bytes::from(body.to_string())
            }
            None => Bytes::new(),
        };
        builder.body(Full::new(payload)).expect("a valid request")
    }

    async fn send(
        &self,
        request: Request<Full<Bytes>>,
    ) -> Result<hyper::Response<Incoming>, String> {
        tokio::time::timeout(self.config.idle_timeout, self.http.request(request))
            .await
            .map_err(|_| "no response head within the idle timeout".to_owned())?
            .map_err(|e| format!("request failed: {e}"))
    }

    /// `initialize` then `notifications/initialized`.
    async fn open(&mut self) -> Result<(), String> {
        let init = json!({
            "jsonrpc": "2.0", "id": 0, "method": "initialize",
            "params": {
                "protocolVersion": PROTOCOL_VERSION,
                "capabilities": {},
                "clientInfo": {"name": "mcp-resume-reference-client", "version": "1.0"}
            }
        });
        let response = self
            .send(self.request(Method::POST, None, Some(&init)))
            .await?;
        if response.status() != StatusCode::OK {
            return Err(format!("initialize answered {}", response.status()));
        }
        self.id = response
            .headers()
            .get("mcp-session-id")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let is_sse = is_event_stream(&response);
        let body = response.into_body();
        let result = if is_sse {
            let mut parser = SseParser::new(SseLimits::default());
            let mut body = body;
            let mut found = None;
            'read: while let Some(frame) = body.frame().await {
                let frame = frame.map_err(|e| format!("initialize body: {e}"))?;
                let Ok(data) = frame.into_data() else {
                    continue;
                };
                parser.feed(data);
                while let Ok(Some(block)) = parser.next_block() {
                    if let Block::Event(SseEvent {
                        data: Some(data), ..
                    }) = block
                        && let Ok(message) = serde_json::from_slice::<Value>(&data)
                        && message.get("id") == Some(&json!(0))
                    {
                        found = Some(message);
                        break 'read;
                    }
                }
            }
            found.ok_or("initialize stream ended without its result")?
        } else {
            let bytes = body
                .collect()
                .await
                .map_err(|e| format!("initialize body: {e}"))?
                .to_bytes();
            serde_json::from_slice(&bytes).map_err(|e| format!("initialize body: {e}"))?
        };
        if result.get("result").is_none() {
            return Err(format!("initialize failed: {result}"));
        }
        let initialized = json!({"jsonrpc": "2.0", "method": "notifications/initialized"});
        let response = self
            .send(self.request(Method::POST, None, Some(&initialized)))
            .await?;
        if !response.status().is_success() {
            return Err(format!(
                "notifications/initialized answered {}",
                response.status()
            ));
        }
        Ok(())
    }
}

fn is_event_stream(response: &hyper::Response<Incoming>) -> bool {
    response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.to_ascii_lowercase().starts_with("text/event-stream"))
}

/// Everything one call saw, and what was wrong with it.
#[derive(Debug, Default)]
struct Call {
    tag: String,
    rpc_id: u64,
    /// The id of the last event received: the resume point.
    newest_id: Option<String>,
    stream: Option<String>,
    /// Highest message sequence number received.
    last_seq: u64,
    /// Sequence numbers of the messages received, in order.
    seqs: Vec<u64>,
    progress_seen: BTreeSet<u64>,
    progress_count: u64,
    last_progress: u64,
    retry: Option<u64>,
    result: Option<Value>,
    resumes: u32,
    breaks: u32,
    duplicated: u64,
    out_of_order: u64,
    /// Sequence numbers skipped over (each is a lost event).
    gaps: u64,
    foreign: u64,
    failure: Option<String>,
    /// How the failure reads to a client, and its kind (`resume 400`, ...), for chaos mode's
    /// counts.
    verdict: Option<(Verdict, String)>,
    /// Chaos mode: `initialize` attempts that failed before the session opened.
    open_retries: u32,
    /// Restart mode: when the final resume was refused, and with what.
    refused_at: Option<Instant>,
    refusal_status: Option<u16>,
    /// Restart mode: messages held when the client dropped its connection, and when the
    /// server was back.
    detached_with: Option<usize>,
    restarted_at: Option<Instant>,
}

/// How a failed call ended, as its client sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Verdict {
    /// Promptly, with an answer a client can act on: an HTTP error with a JSON-RPC error body,
    /// a JSON-RPC error for the call, or no connection to the server at all.
    Clear,
    /// Not at all: the stream went quiet, the call was resumed without end, or it outlived
    /// its deadline.
    Hung,
    /// With something a client cannot read as an error: an HTTP error whose body is not a
    /// JSON-RPC error, or an event stream that does not parse.
    Unclear,
}

impl Call {
    /// Records the call's failure: `detail` for people, `kind` for the counts.
    fn fail(&mut self, verdict: Verdict, kind: impl Into<String>, detail: impl Into<String>) {
        self.failure = Some(detail.into());
        self.verdict = Some((verdict, kind.into()));
    }

    /// Takes one SSE event; true once the call's result has arrived.
    fn handle(&mut self, event: SseEvent) -> bool {
        if let Some(retry) = event.retry {
            self.retry = Some(retry);
        }
        let data = event.data.filter(|d| !d.is_empty());
        let parsed = match &event.id {
            Some(id) => {
                let text = String::from_utf8_lossy(id).into_owned();
                self.newest_id = Some(text.clone());
                EventId::parse(text.as_bytes()).ok()
            }
            None => None,
        };
        let Some(data) = data else { return false };
        if let Some(id) = parsed {
            let stream = id.stream.to_string();
            match &self.stream {
                None => self.stream = Some(stream),
                Some(s) if *s != stream => self.foreign += 1,
                Some(_) => {}
            }
            if id.seq <= self.last_seq {
                if self.seqs.contains(&id.seq) {
                    self.duplicated += 1;
                } else {
                    self.out_of_order += 1;
                }
            } else {
                self.gaps += id.seq - self.last_seq - 1;
                self.last_seq = id.seq;
            }
            self.seqs.push(id.seq);
        }
        let Ok(message) = serde_json::from_slice::<Value>(&data) else {
            self.fail(
                Verdict::Unclear,
                "an event that is not JSON",
                "an event that is not JSON",
            );
            return true;
        };
        if message.get("method").and_then(Value::as_str) == Some("notifications/progress") {
            let params = &message["params"];
            if params["progressToken"] != json!(self.tag) {
                self.foreign += 1;
                return false;
            }
            let progress = params["progress"].as_f64().unwrap_or(-1.0) as u64;
            self.progress_count += 1;
            if !self.progress_seen.insert(progress) {
                // Already counted above when the event's id repeated; count it here only if
                // the id did not give it away (a server that re-sent it under a new id).
                if parsed.is_none() {
                    self.duplicated += 1;
                }
            } else if progress < self.last_progress {
                self.out_of_order += 1;
            }
            self.last_progress = self.last_progress.max(progress);
            return false;
        }
        if message.get("id") == Some(&json!(self.rpc_id)) {
            if message.get("result").is_none() {
                self.fail(
                    Verdict::Clear,
                    format!("JSON-RPC error {}", message["error"]["code"]),
                    format!("the call answered an error: {}", message["error"]),
                );
            }
            self.result = Some(message);
            return true;
        }
        false
    }
}

enum Outcome {
    /// The result arrived.
    Done,
    /// The response ended without the result.
    Ended,
    /// The connection broke.
    Broken,
    /// Nothing arrived for the idle timeout.
    Hung,
    /// Restart mode: the client dropped the connection on purpose.
    Detached,
}

async fn read_events(
    body: Incoming,
    call: &mut Call,
    idle: Duration,
    detach_after: Option<u64>,
) -> Outcome {
    let mut parser = SseParser::new(SseLimits::default());
    let mut body = body;
    loop {
        let frame = match tokio::time::timeout(idle, body.frame()).await {
            Err(_) => return Outcome::Hung,
            Ok(None) => return Outcome::Ended,
            Ok(Some(Err(_))) => return Outcome::Broken,
            Ok(Some(Ok(frame))) => frame,
        };
        let Ok(data) = frame.into_data() else {
            continue;
        };
        parser.feed(data);
        loop {
            match parser.next_block() {
                Ok(Some(Block::Event(event))) => {
                    if call.handle(event) {
                        return Outcome::Done;
                    }
                    if call.detached_with.is_none()
                        && detach_after.is_some_and(|n| call.progress_count >= n)
                    {
                        call.detached_with = Some(call.seqs.len());
                        return Outcome::Detached;
                    }
                }
                Ok(Some(Block::Comment(_))) => {}
                Ok(None) => break,
                Err(e) => {
                    call.fail(
                        Verdict::Unclear,
                        "unparsable event stream",
                        format!("unparsable event stream: {e}"),
                    );
                    return Outcome::Done;
                }
            }
        }
    }
}

/// Sends a resume for `call`, retrying connection failures within the reconnect window.
async fn resume(session: &Session, call: &mut Call) -> Result<hyper::Response<Incoming>, String> {
    let last = call
        .newest_id
        .clone()
        .ok_or("the stream broke before any event id")?;
    let started = Instant::now();
    loop {
        match session
            .send(session.request(Method::GET, Some(&last), None))
            .await
        {
            Ok(response) => return Ok(response),
            Err(error) if started.elapsed() < session.config.reconnect_window => {
                let _ = error;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(error) => {
                return Err(format!(
                    "resume failed for {:?}: {error}",
                    session.config.reconnect_window
                ));
            }
        }
    }
}

/// One `tools/call`, resumed until its result arrives or something is wrong.
async fn run_call(session: &Session, index: usize) -> Call {
    let config = &session.config;
    let tag = format!("ref-{index}");
    let mut call = Call {
        tag: tag.clone(),
        rpc_id: 1000 + index as u64,
        ..Call::default()
    };
    let mut args = config.args.clone();
    args["tag"] = json!(tag);
    let body = json!({
        "jsonrpc": "2.0", "id": call.rpc_id, "method": "tools/call",
        "params": {"name": config.tool, "arguments": args, "_meta": {"progressToken": tag}}
    });
    let mut response = match session
        .send(session.request(Method::POST, None, Some(&body)))
        .await
    {
        Ok(response) => response,
        Err(error) => {
            call.fail(Verdict::Clear, "tools/call: no answer", error);
            return call;
        }
    };
    loop {
        let status = response.status();
        if status != StatusCode::OK || !is_event_stream(&response) {
            let request = if call.resumes > 0 {
                call.refusal_status = Some(status.as_u16());
                call.refused_at = Some(Instant::now());
                "resume"
            } else {
                "tools/call"
            };
            let (json_rpc_error, body) = read_error_body(response, config.idle_timeout).await;
            let kind = format!("{request} {}", status.as_u16());
            let detail = format!("{request} answered {status}: {body}");
            if json_rpc_error {
                call.fail(Verdict::Clear, kind, detail);
            } else {
                call.fail(Verdict::Unclear, kind + " without a JSON-RPC error", detail);
            }
            return call;
        }
        let detach_after = (config.mode == "restart").then_some(config.signal_after);
        match read_events(
            response.into_body(),
            &mut call,
            config.idle_timeout,
            detach_after,
        )
        .await
        {
            Outcome::Done => return call,
            Outcome::Detached => {
                // The response body was dropped with the connection. Stay away while the tool
                // runs on, then have the caller kill and restart the server before resuming.
                tokio::time::sleep(config.detach).await;
                if let Err(error) = signal_and_wait_for_restart(config, &call).await {
                    call.fail(Verdict::Unclear, "no restart", error);
                    return call;
                }
                call.restarted_at = Some(Instant::now());
            }
            Outcome::Hung => {
                call.fail(
                    Verdict::Hung,
                    "a silent stream",
                    format!("no event for {:?}: the stream hangs", config.idle_timeout),
                );
                return call;
            }
            Outcome::Ended | Outcome::Broken => {
                call.breaks += 1;
            }
        }
        if call.resumes >= config.max_resumes {
            call.fail(
                Verdict::Hung,
                "resumed without end",
                format!("gave up after {} resumes", call.resumes),
            );
            return call;
        }
        if call.newest_id.is_none() {
            // Served without resumability (its stream could not be stored): nothing to resume.
            call.fail(
                Verdict::Clear,
                "broken, not resumable (no event id)",
                "the stream broke before any event id",
            );
            return call;
        }
        tokio::time::sleep(Duration::from_millis(call.retry.unwrap_or(1000))).await;
        call.resumes += 1;
        response = match resume(session, &mut call).await {
            Ok(response) => response,
            Err(error) => {
                call.fail(Verdict::Clear, "resume: no answer", error);
                return call;
            }
        };
    }
}

/// Reads the body of a response that is not the event stream asked for: whether it is a
/// JSON-RPC error, and its first 200 characters.
async fn read_error_body(response: hyper::Response<Incoming>, idle: Duration) -> (bool, String) {
    let body = match tokio::time::timeout(idle, response.into_body().collect()).await {
        Ok(Ok(collected)) => collected.to_bytes(),
        Ok(Err(e)) => return (false, format!("(body broke: {e})")),
        Err(_) => return (false, format!("(no complete body within {idle:?})")),
    };
    let json_rpc_error = serde_json::from_slice::<Value>(&body)
        .is_ok_and(|v| v["jsonrpc"] == json!("2.0") && v["error"]["message"].is_string());
    (
        json_rpc_error,
        String::from_utf8_lossy(&body).chars().take(200).collect(),
    )
}

/// Restart mode: creates the signal file (holding the id to resume from) and waits for the
/// caller to create `<signal file>.restarted`.
async fn signal_and_wait_for_restart(config: &Config, call: &Call) -> Result<(), String> {
    let signal = config.signal_file.as_ref().ok_or("no --signal-file")?;
    std::fs::write(signal, call.newest_id.clone().unwrap_or_default())
        .map_err(|e| format!("cannot write {}: {e}", signal.display()))?;
    let mut restarted = signal.clone().into_os_string();
    restarted.push(".restarted");
    let restarted = PathBuf::from(restarted);
    let started = Instant::now();
    while !restarted.exists() {
        if started.elapsed() > config.reconnect_window {
            return Err(format!("{} did not appear", restarted.display()));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(())
}

/// Checks a finished call against the expected progress count; returns the lost count.
fn lost_progress(call: &Call, expect: u64) -> u64 {
    (1..=expect)
        .filter(|p| !call.progress_seen.contains(p))
        .count() as u64
}

fn write_report(config: &Config, report: &Value) {
    if let Some(path) = &config.report
        && let Err(e) = std::fs::write(path, format!("{report:#}\n"))
    {
        eprintln!("reference_client: cannot write {}: {e}", path.display());
    }
}

async fn calls_mode(session: Arc<Session>) -> bool {
    let config = session.config.clone();
    let permits = Arc::new(Semaphore::new(config.concurrency));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for index in 0..config.calls {
        let session = session.clone();
        let permits = permits.clone();
        tasks.push(tokio::spawn(async move {
            let _permit = permits.acquire_owned().await.expect("semaphore open");
            run_call(&session, index).await
        }));
    }
    let mut calls = Vec::new();
    for task in tasks {
        calls.push(task.await.expect("call task"));
    }
    let sum = |f: &dyn Fn(&Call) -> u64| calls.iter().map(f).sum::<u64>();
    let completed = calls
        .iter()
        .filter(|c| c.result.is_some() && c.failure.is_none())
        .count();
    let failed = calls.len() - completed;
    let lost = sum(&|c| lost_progress(c, config.expect) + c.gaps);
    let duplicated = sum(&|c| c.duplicated);
    let out_of_order = sum(&|c| c.out_of_order);
    let foreign = sum(&|c| c.foreign);
    let progress = sum(&|c| c.progress_count);
    let resumes = sum(&|c| u64::from(c.resumes));
    let breaks = sum(&|c| u64::from(c.breaks));
    for call in calls.iter().filter(|c| c.failure.is_some()) {
        eprintln!(
            "reference_client: call {} failed: {}",
            call.tag,
            call.failure.as_deref().unwrap_or("")
        );
    }
    let ok = failed == 0 && lost == 0 && duplicated == 0 && out_of_order == 0 && foreign == 0;
    println!(
        "reference_client: calls={} completed={completed} failed={failed} notifications={progress} \
         expected={} lost={lost} duplicated={duplicated} out_of_order={out_of_order} foreign={foreign} \
         streams_broken={breaks} resumes={resumes} seconds={:.1} => {}",
        calls.len(),
        config.expect * calls.len() as u64,
        started.elapsed().as_secs_f64(),
        if ok { "OK" } else { "FAIL" }
    );
    write_report(
        &config,
        &json!({
            "mode": "calls", "calls": calls.len(), "completed": completed, "failed": failed,
            "notifications": progress, "expected": config.expect * calls.len() as u64,
            "lost": lost, "duplicated": duplicated, "out_of_order": out_of_order, "foreign": foreign,
            "streams_broken": breaks, "resumes": resumes, "ok": ok,
        }),
    );
    ok
}

/// Reads a whole stream from `<stream>.0`: every event the store committed for it.
async fn committed_seqs(session: &Session, stream: &str) -> Result<(Vec<u64>, bool), String> {
    let first = format!("{stream}.0");
    let response = session
        .send(session.request(Method::GET, Some(&first), None))
        .await?;
    if response.status() != StatusCode::OK {
        return Err(format!(
            "replay from {first} answered {}",
            response.status()
        ));
    }
    let mut parser = SseParser::new(SseLimits::default());
    let mut body = response.into_body();
    let mut seqs = Vec::new();
    let mut ended = false;
    loop {
        let frame = match tokio::time::timeout(session.config.idle_timeout, body.frame()).await {
            Err(_) => break,
            Ok(None) => {
                ended = true;
                break;
            }
            Ok(Some(Err(e))) => return Err(format!("replay broke: {e}")),
            Ok(Some(Ok(frame))) => frame,
        };
        let Ok(data) = frame.into_data() else {
            continue;
        };
        parser.feed(data);
        while let Ok(Some(block)) = parser.next_block() {
            if let Block::Event(SseEvent {
                id: Some(id),
                data: Some(data),
                ..
            }) = block
                && !data.is_empty()
                && let Ok(id) = EventId::parse(&id)
            {
                seqs.push(id.seq);
            }
        }
    }
    Ok((seqs, ended))
}

async fn restart_mode(session: Arc<Session>) -> bool {
    let config = session.config.clone();
    let started = Instant::now();
    let call = run_call(&session, 0).await;
    let mut problems = Vec::new();
    let held_at_detach = call.detached_with.unwrap_or(0);
    if call.detached_with.is_none() {
        problems.push("never reached the signal point".to_owned());
    }
    if call.result.is_some() {
        problems.push("the call completed: the server was not killed in time".to_owned());
    }
    match call.refusal_status {
        Some(400) => {}
        Some(other) => problems.push(format!("the final resume answered {other}, not 400")),
        None => problems.push(format!(
            "no refusal at the end of the abandoned stream ({})",
            call.failure.as_deref().unwrap_or("no failure")
        )),
    }
    let Some(stream) = call.stream.clone() else {
        problems.push("no stream id seen".into());
        println!("reference_client restart: FAIL: {}", problems.join("; "));
        return false;
    };
    let (committed, replay_ended) = match committed_seqs(&session, &stream).await {
        Ok(found) => found,
        Err(error) => {
            problems.push(error);
            (Vec::new(), false)
        }
    };
    if !replay_ended {
        problems.push("a replay of the abandoned stream from its start did not end (hang)".into());
    }
    let committed_set: BTreeSet<u64> = committed.iter().copied().collect();
    let received: BTreeSet<u64> = call.seqs.iter().copied().collect();
    if !committed.iter().copied().eq(1..=committed.len() as u64) {
        problems.push("the committed events are not numbered 1..N".into());
    }
    let lost = committed_set.difference(&received).count();
    let unknown = received.difference(&committed_set).count();
    if lost > 0 {
        problems.push(format!("{lost} committed events never reached the client"));
    }
    if unknown > 0 {
        problems.push(format!(
            "{unknown} events the client saw are not in the store"
        ));
    }
    if call.duplicated > 0 || call.out_of_order > 0 || call.gaps > 0 || call.foreign > 0 {
        problems.push(format!(
            "duplicated={} out_of_order={} gaps={} foreign={}",
            call.duplicated, call.out_of_order, call.gaps, call.foreign
        ));
    }
    let replayed_after_restart = call.seqs.len().saturating_sub(held_at_detach);
    if replayed_after_restart == 0 {
        problems.push(
            "nothing was committed while the client was away: the replay proves nothing".into(),
        );
    }
    let refused_ms = match (call.refused_at, call.restarted_at) {
        (Some(refused), Some(restarted)) => refused.duration_since(restarted).as_millis() as u64,
        _ => 0,
    };
    if refused_ms > 10_000 {
        problems.push(format!(
            "the refusal came {refused_ms} ms after the restart"
        ));
    }
    let ok = problems.is_empty();
    println!(
        "reference_client restart: held_at_disconnect={held_at_detach} replayed_after_restart={replayed_after_restart} \
         received={} committed={} lost={lost} duplicated={} out_of_order={} resumes={} refused_with={} \
         refused_ms_after_restart={refused_ms} replay_from_start_ended={replay_ended} seconds={:.1} => {}",
        received.len(),
        committed.len(),
        call.duplicated,
        call.out_of_order,
        call.resumes,
        call.refusal_status
            .map(|s| s.to_string())
            .unwrap_or_else(|| "none".into()),
        started.elapsed().as_secs_f64(),
        if ok {
            "OK".to_owned()
        } else {
            format!("FAIL: {}", problems.join("; "))
        }
    );
    write_report(
        &config,
        &json!({
            "mode": "restart", "held_at_disconnect": held_at_detach,
            "replayed_after_restart": replayed_after_restart, "received": received.len(),
            "committed": committed.len(), "lost": lost, "duplicated": call.duplicated,
            "out_of_order": call.out_of_order, "resumes": call.resumes,
            "refusal_status": call.refusal_status, "refused_ms_after_restart": refused_ms,
            "replay_from_start_ended": replay_ended, "problems": problems, "ok": ok,
        }),
    );
    ok
}

/// What is wrong with a call's events, if anything: a notification duplicated, out of order,
/// from another call, or missing before a later one (or, once the result is in, missing at
/// all). A failed call may miss the notifications after its failure, never one in between.
fn inexact(call: &Call, expect: u64) -> Option<String> {
    let completed = call.result.is_some() && call.failure.is_none();
    let newest = call.progress_seen.last().copied().unwrap_or(0);
    let missing = if completed {
        lost_progress(call, expect)
    } else {
        lost_progress(call, newest)
    };
    let problems = [
        ("duplicated", call.duplicated),
        ("out_of_order", call.out_of_order),
        ("foreign", call.foreign),
        ("skipped_ids", call.gaps),
        ("missing", missing),
    ];
    let found: Vec<String> = problems
        .iter()
        .filter(|(_, n)| *n > 0)
        .map(|(what, n)| format!("{what}={n}"))
        .collect();
    (!found.is_empty()).then(|| found.join(" "))
}

/// Chaos mode: one session per call (`initialize`, retried within the reconnect window while
/// the server is away, then the call).
async fn chaos_session(http: HttpClient, config: Config, index: usize) -> Call {
    let window = config.reconnect_window;
    let mut session = Session {
        http,
        config,
        id: None,
    };
    let opening = Instant::now();
    let mut open_retries = 0;
    loop {
        match session.open().await {
            Ok(()) => {
                let mut call = run_call(&session, index).await;
                call.open_retries = open_retries;
                return call;
            }
            Err(_) if opening.elapsed() < window => {
                open_retries += 1;
                session.id = None;
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            Err(error) => {
                let mut call = Call {
                    tag: format!("ref-{index}"),
                    open_retries,
                    ..Call::default()
                };
                call.fail(
                    Verdict::Clear,
                    "initialize: no session",
                    format!("no session within {window:?}: {error}"),
                );
                return call;
            }
        }
    }
}

/// Chaos mode: `--calls` sessions, `--concurrency` at a time, each with one call that must
/// end within `--deadline-secs`, complete and exact or failed with a clear error.
async fn chaos_mode(http: HttpClient, config: Config) -> bool {
    let permits = Arc::new(Semaphore::new(config.concurrency));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for index in 0..config.calls {
        let (http, config, permits) = (http.clone(), config.clone(), permits.clone());
        tasks.push(tokio::spawn(async move {
            let _permit = permits.acquire_owned().await.expect("semaphore open");
            let began = Instant::now();
            let began_at = began.duration_since(started);
            let session = chaos_session(http, config.clone(), index);
            let call = match tokio::time::timeout(config.deadline, session).await {
                Ok(call) => call,
                Err(_) => {
                    let mut call = Call {
                        tag: format!("ref-{index}"),
                        ..Call::default()
                    };
                    let deadline = config.deadline;
                    call.fail(
                        Verdict::Hung,
                        "past the deadline",
                        format!("not ended {deadline:?} after it began"),
                    );
                    call
                }
            };
            (call, began_at, began.elapsed())
        }));
    }
    let mut completed_exact = 0;
    let mut failed_clearly = BTreeMap::<String, u64>::new();
    let mut hung = BTreeMap::<String, u64>::new();
    let mut unclear = BTreeMap::<String, u64>::new();
    let mut inexact_calls = 0;
    let mut slowest_failure = Duration::ZERO;
    let mut open_retries = 0;
    let mut per_call = Vec::new();
    for task in tasks {
        let (call, began_at, took) = task.await.expect("call task");
        let wrong = inexact(&call, config.expect);
        open_retries += u64::from(call.open_retries);
        let verdict = call.verdict.clone();
        let outcome = match (&wrong, &verdict) {
            (Some(_), _) => {
                inexact_calls += 1;
                "inexact"
            }
            (None, None) if call.result.is_some() => {
                completed_exact += 1;
                "completed exact"
            }
            (None, None) => {
                *unclear.entry("no result, no failure".into()).or_default() += 1;
                "unclear"
            }
            (None, Some((verdict, kind))) => {
                slowest_failure = slowest_failure.max(took);
                let (counts, outcome) = match verdict {
                    Verdict::Clear => (&mut failed_clearly, "failed clearly"),
                    Verdict::Hung => (&mut hung, "hung"),
                    Verdict::Unclear => (&mut unclear, "unclear"),
                };
                *counts.entry(kind.clone()).or_default() += 1;
                outcome
            }
        };
        if outcome != "completed exact" {
            eprintln!(
                "reference_client: {} (began at {:.1}s) {outcome} after {:.1}s: {} (notifications={} resumes={}{})",
                call.tag,
                began_at.as_secs_f64(),
                took.as_secs_f64(),
                call.failure.as_deref().unwrap_or("-"),
                call.progress_count,
                call.resumes,
                wrong
                    .as_deref()
                    .map(|w| format!(" {w}"))
                    .unwrap_or_default(),
            );
        }
        per_call.push(json!({
            "tag": call.tag, "outcome": outcome, "began_at_seconds": began_at.as_secs_f64(),
            "seconds": took.as_secs_f64(),
            "reason": verdict.map(|(_, kind)| kind), "detail": call.failure,
            "inexact": wrong, "notifications": call.progress_count, "resumes": call.resumes,
            "streams_broken": call.breaks, "initialize_retries": call.open_retries,
        }));
    }
    let count = |counts: &BTreeMap<String, u64>| counts.values().sum::<u64>();
    let listed = |counts: &BTreeMap<String, u64>| {
        counts
            .iter()
            .map(|(kind, n)| format!("{kind}: {n}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let (hung_calls, unclear_calls) = (count(&hung), count(&unclear));
    let ok = hung_calls == 0 && inexact_calls == 0 && unclear_calls == 0 && completed_exact > 0;
    println!(
        "reference_client chaos: sessions={} completed_exact={completed_exact} failed_clearly={} [{}] \
         hung={hung_calls} [{}] inexact={inexact_calls} unclear={unclear_calls} [{}] \
         initialize_retries={open_retries} slowest_failure_seconds={:.1} seconds={:.1} => {}",
        config.calls,
        count(&failed_clearly),
        listed(&failed_clearly),
        listed(&hung),
        listed(&unclear),
        slowest_failure.as_secs_f64(),
        started.elapsed().as_secs_f64(),
        if ok { "OK" } else { "FAIL" }
    );
    write_report(
        &config,
        &json!({
            "mode": "chaos", "sessions": config.calls, "completed_exact": completed_exact,
            "failed_clearly": failed_clearly, "hung": hung, "inexact": inexact_calls,
            "unclear": unclear, "initialize_retries": open_retries,
            "slowest_failure_seconds": slowest_failure.as_secs_f64(),
            "calls": per_call, "ok": ok,
        }),
    );
    ok
}

#[tokio::main]
async fn main() {
    let config = match parse_args() {
        Ok(config) => config,
        Err(message) => {
            eprintln!("reference_client: {message}\n{USAGE}");
            std::process::exit(2);
        }
    };
    let http: HttpClient = Client::builder(TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(5))
        .build_http();
    if config.mode == "chaos" {
        let ok = chaos_mode(http, config).await;
        std::process::exit(if ok { 0 } else { 1 });
    }
    let mut session = Session {
        http,
        config: config.clone(),
        id: None,
    };
    if let Err(error) = session.open().await {
        eprintln!("reference_client: {error}");
        println!("reference_client: FAIL: could not open a session: {error}");
        std::process::exit(1);
    }
    let session = Arc::new(session);
    let ok = match config.mode.as_str() {
        "restart" => restart_mode(session).await,
        _ => calls_mode(session).await,
    };
    std::process::exit(if ok { 0 } else { 1 });
}
