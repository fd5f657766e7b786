//! The `mcp-resume` binary, run for real: its command line, the demo server,
//! the proxy in front of an upstream written here, h2c, and what happens on
//! SIGTERM and SIGKILL.
//!
//! Every server listens on 127.0.0.1:0 and is found through the one line it
//! prints on stdout. Tests never assert on speed; timeouts are hang guards,
//! except where the contract is about time (the grace period).

use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::{HeaderMap, HeaderValue};
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use mcp_resume::store::{EventId, EventStore, SqliteEventStore, StreamState};

use crate::common::post_message;
use serde_json::{Value, json};
use tokio::net::TcpStream;

const BIN: &str = env!("CARGO_BIN_EXE_mcp-resume");

/// Hang guard: nothing in these tests should take this long.
const GUARD: Duration = Duration::from_secs(30);

async fn guard<F: Future>(what: &str, fut: F) -> F::Output {
    match tokio::time::timeout(GUARD, fut).await {
        Ok(out) => out,
        Err(_) => panic!("hang guard: waited {GUARD:?} for {what}"),
    }
}

// ---------------------------------------------------------------------------
// The process
// ---------------------------------------------------------------------------

/// A running `mcp-resume`, killed when dropped. Its stderr (the log) is
/// printed if the test fails. Other areas' tests of the binary use it too.
pub(crate) struct Server {
    child: Child,
    pub(crate) addr: SocketAddr,
    /// Everything printed on stdout, the listening line included.
    stdout: Arc<Mutex<String>>,
    stderr: Arc<Mutex<String>>,
    exited: Option<ExitStatus>,
}

/// A command with none of the caller's `MCP_RESUME_*` settings.
fn command(args: &[&str]) -> Command {
    let mut command = Command::new(BIN);
    command.args(args).env("RUST_LOG", "info,mcp_resume=debug");
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("MCP_RESUME_") {
            command.env_remove(name);
        }
    }
    command
}

impl Server {
    pub(crate) fn start(args: &[&str]) -> Self {
        Self::start_with_env(args, &[])
    }

    /// Starts the binary and waits for its listening line.
    fn start_with_env(args: &[&str], env: &[(&str, &str)]) -> Self {
        let mut command = command(args);
        command.envs(env.iter().copied());
        Self::spawn(command)
    }

    /// Starts the binary with at most `descriptors` open files (`ulimit -n`),
    /// through a shell that sets the limit and then becomes the binary.
    fn start_with_descriptor_limit(descriptors: u32, args: &[&str]) -> Self {
        let binary = command(args);
        let mut shell = Command::new("sh");
        shell
            .args(["-c", r#"ulimit -n "$0" && exec "$@""#])
            .arg(descriptors.to_string())
            .arg(binary.get_program())
            .args(binary.get_args());
        for (name, value) in binary.get_envs() {
            match value {
                Some(value) => shell.env(name, value),
                None => shell.env_remove(name),
            };
        }
        Self::spawn(shell)
    }

    /// Waits for `command`'s listening line.
    fn spawn(mut command: Command) -> Self {
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("the mcp-resume binary starts");

        let stderr = Arc::new(Mutex::new(String::new()));
        let mut pipe = child.stderr.take().unwrap();
        let sink = stderr.clone();
        std::thread::spawn(move || {
            let mut buf = [0; 4096];
            while let Ok(n @ 1..) = pipe.read(&mut buf) {
                sink.lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });

        let stdout = Arc::new(Mutex::new(String::new()));
        let (first_line, line_rx) = mpsc::channel();
        let pipe = child.stdout.take().unwrap();
        let sink = stdout.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines() {
                let Ok(line) = line else { break };
                sink.lock().unwrap().push_str(&format!("{line}\n"));
                let _ = first_line.send(line);
            }
        });

        let line = match line_rx.recv_timeout(GUARD) {
            Ok(line) => line,
            Err(_) => {
                let _ = child.kill();
                panic!("no listening line; stderr:\n{}", stderr.lock().unwrap());
            }
        };
        let addr = line
            .strip_prefix("mcp-resume listening on http://")
            .unwrap_or_else(|| panic!("unexpected first line: {line:?}"))
            .parse()
            .unwrap_or_else(|_| panic!("no address in {line:?}"));
        Self {
            child,
            addr,
            stdout,
            stderr,
            exited: None,
        }
    }

    pub(crate) fn url(&self) -> String {
        format!("http://{}/mcp", self.addr)
    }

    /// Everything printed on stdout so far.
    pub(crate) fn stdout(&self) -> String {
        self.stdout.lock().unwrap().clone()
    }

    fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args([signal, &self.child.id().to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success(), "kill {signal} failed");
    }

    fn terminate(&self) {
        self.signal("-TERM");
    }

    /// SIGKILL: no shutdown at all.
    pub(crate) fn kill(&mut self) {
        self.child.kill().expect("SIGKILL");
        self.exited = Some(self.child.wait().expect("reaped"));
    }

    /// Waits for the process to exit.
    async fn wait(&mut self, within: Duration) -> ExitStatus {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                self.exited = Some(status);
                return status;
            }
            if Instant::now() > deadline {
                panic!(
                    "still running after {within:?}; stderr:\n{}",
                    self.stderr.lock().unwrap()
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if self.exited.is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        if std::thread::panicking() {
            eprintln!("--- mcp-resume stderr ---\n{}", self.stderr.lock().unwrap());
        }
    }
}

/// Runs the binary to completion (for `--help` and bad options).
pub(crate) fn run(args: &[&str]) -> (Option<i32>, String, String) {
    let output = command(args).output().expect("the binary runs");
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

// ---------------------------------------------------------------------------
// HTTP and SSE
// ---------------------------------------------------------------------------

/// Sends one request on a fresh HTTP/1.1 connection.
pub(crate) async fn send(addr: SocketAddr, request: Request<Full<Bytes>>) -> Response<Incoming> {
    let tcp = guard("connect", TcpStream::connect(addr))
        .await
        .expect("connect");
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .expect("handshake");
    tokio::spawn(connection);
    guard("response headers", sender.send_request(request))
        .await
        .expect("response")
}

/// A resume: GET with `Last-Event-ID`.
pub(crate) fn resume(
    url: &str,
    session: &str,
    version: &str,
    last_event_id: &str,
) -> Request<Full<Bytes>> {
    Request::get(url)
        .header("accept", "text/event-stream")
        .header("mcp-session-id", session)
        .header("mcp-protocol-version", version)
        .header("last-event-id", last_event_id)
        .body(Full::default())
        .unwrap()
}

async fn json_body(response: Response<Incoming>) -> Value {
    let bytes = guard("body", response.into_body().collect())
        .await
        .expect("body")
        .to_bytes();
    serde_json::from_slice(&bytes)
        .unwrap_or_else(|_| panic!("not JSON: {}", String::from_utf8_lossy(&bytes)))
}

/// One SSE event.
#[derive(Debug, Clone)]
struct Event {
    id: Option<String>,
    data: String,
}

impl Event {
    /// The `(stream, seq)` of a layer id, which must be `<32 hex>.<n>`.
    fn layer_id(&self) -> (String, u64) {
        let id = self.id.as_deref().expect("an id");
        let (stream, seq) = id.split_once('.').expect("<stream>.<seq>");
        assert!(
            stream.len() == 32
                && stream
                    .bytes()
                    .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()),
            "stream part of {id:?}"
        );
        (stream.to_owned(), seq.parse().expect("a decimal sequence"))
    }

    fn seq(&self) -> u64 {
        self.layer_id().1
    }

    fn json(&self) -> Value {
        serde_json::from_str(&self.data).unwrap_or_else(|_| panic!("not JSON: {:?}", self.data))
    }
}

/// Reads SSE events from a response body as they arrive. The layer writes
/// LF line ends, which is all this reader needs.
struct Events<B> {
    body: B,
    buf: String,
}

impl<B> Events<B>
where
    B: hyper::body::Body<Data = Bytes> + Unpin,
    B::Error: std::fmt::Debug,
{
    fn new(body: B) -> Self {
        Self {
            body,
            buf: String::new(),
        }
    }

    /// The next event (comment-only blocks skipped), or `None` when the body
    /// ended or broke.
    async fn next(&mut self) -> Option<Event> {
        loop {
            while let Some(end) = self.buf.find("\n\n") {
                let block: String = self.buf.drain(..end + 2).collect();
                let mut event = Event {
                    id: None,
                    data: String::new(),
                };
                let mut fields = 0;
                for line in block.lines() {
                    let (name, value) = line.split_once(':').unwrap_or((line, ""));
                    let value = value.strip_prefix(' ').unwrap_or(value);
                    match name {
                        "id" => event.id = Some(value.to_owned()),
                        "data" => {
                            if fields > 0 && !event.data.is_empty() {
                                event.data.push('\n');
                            }
                            event.data.push_str(value);
                        }
                        "" => continue, // a comment
                        _ => {}
                    }
                    fields += 1;
                }
                if fields > 0 {
                    return Some(event);
                }
            }
            let frame = guard("the next SSE bytes", self.body.frame()).await?;
            match frame {
                Ok(frame) => {
                    if let Ok(data) = frame.into_data() {
                        self.buf
                            .push_str(std::str::from_utf8(&data).expect("UTF-8"));
                    }
                }
                Err(_) => return None,
            }
        }
    }

    /// Every event up to the end of the body.
    async fn rest(&mut self) -> Vec<Event> {
        let mut events = Vec::new();
        while let Some(event) = self.next().await {
            events.push(event);
        }
        events
    }
}

/// The events that carry a message (not priming events).
fn messages(events: &[Event]) -> Vec<&Event> {
    events.iter().filter(|e| !e.data.is_empty()).collect()
}

// ---------------------------------------------------------------------------
// MCP
// ---------------------------------------------------------------------------

const V2025_06_18: &str = "2025-06-18";
const V2025_11_25: &str = "2025-11-25";

/// `initialize` + `notifications/initialized`; returns the session id.
async fn open_session(addr: SocketAddr, url: &str, version: &str) -> String {
    let initialize = json!({
        "jsonrpc": "2.0", "id": 1, "method": "initialize",
        "params": {
            "protocolVersion": version, "capabilities": {},
            "clientInfo": { "name": "cli-test", "version": "1.0" },
        },
    });
    let response = send(addr, post_message(url, None, None, &initialize)).await;
    assert_eq!(response.status(), StatusCode::OK);
    let session = response.headers()["mcp-session-id"]
        .to_str()
        .unwrap()
        .to_owned();
    let answer = json_body(response).await;
    assert_eq!(answer["id"], 1);
    assert_eq!(answer["result"]["protocolVersion"], version);

    let initialized = json!({ "jsonrpc": "2.0", "method": "notifications/initialized" });
    let response = send(
        addr,
        post_message(url, Some(&session), Some(version), &initialized),
    )
    .await;
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    session
}

fn countdown(id: u64, steps: u64, interval_ms: u64) -> Value {
    json!({
        "jsonrpc": "2.0", "id": id, "method": "tools/call",
        "params": {
            "name": "countdown",
            "arguments": { "steps": steps, "interval_ms": interval_ms },
            "_meta": { "progressToken": format!("token-{id}") },
        },
    })
}

/// Checks a countdown's events: progress 1..=steps then the result of
/// request `id`, on one stream with consecutive sequence numbers.
fn assert_countdown(events: &[&Event], id: u64, steps: u64) {
    assert_eq!(events.len() as u64, steps + 1, "{events:#?}");
    let stream = events[0].layer_id().0;
    for (i, event) in events.iter().enumerate() {
        assert_eq!(event.layer_id().0, stream);
        if i > 0 {
            assert_eq!(event.seq(), events[i - 1].seq() + 1);
        }
    }
    for (event, step) in events[..steps as usize].iter().zip(1u64..) {
        let message = event.json();
        assert_eq!(message["method"], "notifications/progress");
        assert_eq!(message["params"]["progress"], step);
        assert_eq!(message["params"]["total"], steps);
        assert_eq!(message["params"]["progressToken"], format!("token-{id}"));
    }
    let result = events[steps as usize].json();
    assert_eq!(result["id"], id);
    assert_eq!(result["result"]["isError"], false);
}

pub(crate) fn sqlite_arg(path: &Path) -> String {
    format!("sqlite:{}", path.display())
}

// ---------------------------------------------------------------------------
// The command line
// ---------------------------------------------------------------------------

/// Every option of the contract: flag, environment variable, default.
const OPTIONS: [(&str, &str, &str); 30] = [
    ("--listen", "MCP_RESUME_LISTEN", "127.0.0.1:8080"),
    ("--admin-listen", "MCP_RESUME_ADMIN_LISTEN", ""),
    ("--store", "MCP_RESUME_STORE", "sqlite:./mcp_events.db"),
    ("--sync", "MCP_RESUME_SYNC", "normal"),
    ("--max-db-bytes", "MCP_RESUME_MAX_DB_BYTES", "off"),
    ("--max-wal-bytes", "MCP_RESUME_MAX_WAL_BYTES", "67108864"),
    ("--retry", "MCP_RESUME_RETRY", "1s"),
    ("--detach-timeout", "MCP_RESUME_DETACH_TIMEOUT", "5m"),
    ("--lease-period", "MCP_RESUME_LEASE_PERIOD", "1s"),
    ("--max-age", "MCP_RESUME_MAX_AGE", "1h"),
    (
        "--max-events-per-stream",
        "MCP_RESUME_MAX_EVENTS_PER_STREAM",
        "10000",
    ),
    ("--max-event-bytes", "MCP_RESUME_MAX_EVENT_BYTES", "8388608"),
    ("--max-live-streams", "MCP_RESUME_MAX_LIVE_STREAMS", "10000"),
    (
        "--max-live-streams-per-session",
        "MCP_RESUME_MAX_LIVE_STREAMS_PER_SESSION",
        "64",
    ),
    ("--on-store-failure", "MCP_RESUME_ON_STORE_FAILURE", "open"),
    ("--poll-after", "MCP_RESUME_POLL_AFTER", "off"),
    ("--grace-period", "MCP_RESUME_GRACE_PERIOD", "10s"),
    ("--max-connections", "MCP_RESUME_MAX_CONNECTIONS", "10000"),
    ("--allowed-hosts", "MCP_RESUME_ALLOWED_HOSTS", ""),
    ("--allowed-origins", "MCP_RESUME_ALLOWED_ORIGINS", ""),
    ("--upstream", "MCP_RESUME_UPSTREAM", ""),
    (
        "--request-buffer-bytes",
        "MCP_RESUME_REQUEST_BUFFER_BYTES",
        "4194304",
    ),
    (
        "--upstream-header-timeout",
        "MCP_RESUME_UPSTREAM_HEADER_TIMEOUT",
        "1m",
    ),
    (
        "--forwarded-headers",
        "MCP_RESUME_FORWARDED_HEADERS",
        "x-forwarded",
    ),
    (
        "--trust-forwarded-headers",
        "MCP_RESUME_TRUST_FORWARDED_HEADERS",
        "false",
    ),
    (
        "--identity-header",
        "MCP_RESUME_IDENTITY_HEADER",
        "authorization",
    ),
    (
        "--authorize-resumes-with-upstream",
        "MCP_RESUME_AUTHORIZE_RESUMES_WITH_UPSTREAM",
        "true",
    ),
    ("--upstream-ca-file", "MCP_RESUME_UPSTREAM_CA_FILE", ""),
    ("--tls-cert", "MCP_RESUME_TLS_CERT", ""),
    ("--tls-key", "MCP_RESUME_TLS_KEY", ""),
];

/// The options of the proxy command only.
const PROXY_OPTIONS: [&str; 8] = [
    "--upstream",
    "--request-buffer-bytes",
    "--upstream-header-timeout",
    "--forwarded-headers",
    "--trust-forwarded-headers",
    "--identity-header",
    "--authorize-resumes-with-upstream",
    "--upstream-ca-file",
];

#[test]
fn help_lists_every_option_with_its_env_var_and_default() {
    for args in [&["--help"][..], &["proxy", "--help"], &["demo", "--help"]] {
        let (code, help, _) = run(args);
        assert_eq!(code, Some(0), "{args:?}");
        for (flag, env, default) in OPTIONS {
            if PROXY_OPTIONS.contains(&flag) && args[0] != "proxy" {
                continue;
            }
            // The option's entry: from its flag to the next option's.
            let start = help
                .find(&format!("{flag} <"))
                .unwrap_or_else(|| panic!("{args:?}: {flag} missing from\n{help}"));
            let entry = &help[start..];
            let entry = &entry[..entry[2..].find("\n  -").map_or(entry.len(), |end| end + 2)];
            assert!(
                entry.contains(&format!("[env: {env}=")),
                "{args:?}: {entry}"
            );
            if !default.is_empty() {
                assert!(
                    entry.contains(&format!("[default: {default}]")),
                    "{args:?}: {entry}"
                );
            }
        }
    }
    let (_, help, _) = run(&["--help"]);
    assert!(help.contains("proxy") && help.contains("demo"));
}

#[test]
fn bad_options_exit_2_and_say_what_is_accepted() {
    let (code, _, stderr) = run(&["demo", "--store", "bogus"]);
    assert_eq!(code, Some(2));
    assert!(
        stderr.contains("sqlite:PATH") && stderr.contains("memory"),
        "{stderr}"
    );

    let (code, _, stderr) = run(&["proxy", "--upstream", "ws://example.com/mcp"]);
    assert_eq!(code, Some(2));
    assert!(stderr.contains("only http:// and https://"), "{stderr}");

    // The listener's TLS needs both files.
    let (code, _, stderr) = run(&["demo", "--tls-cert", "cert.pem"]);
    assert_eq!(code, Some(2));
    assert!(stderr.contains("--tls-key"), "{stderr}");

    let (code, _, stderr) = run(&["proxy"]);
    assert_eq!(code, Some(2));
    assert!(stderr.contains("--upstream"), "{stderr}");

    let (code, _, stderr) = run(&["demo", "--grace-period", "1.5s"]);
    assert_eq!(code, Some(2));
    assert!(stderr.contains("250ms"), "{stderr}");

    let (code, _, stderr) = run(&["demo", "--max-events-per-stream", "0"]);
    assert_eq!(code, Some(2), "{stderr}");

    let (code, _, stderr) = run(&["demo", "--max-db-bytes", "1GiB"]);
    assert_eq!(code, Some(2));
    assert!(stderr.contains("`off` or a number of bytes"), "{stderr}");

    // Below SQLite's 1 MiB floor: refused, not silently raised.
    let (code, _, stderr) = run(&["demo", "--max-wal-bytes", "65536"]);
    assert_eq!(code, Some(2));
    assert!(stderr.contains("1048576"), "{stderr}");

    let (code, _, stderr) = run(&["demo", "--max-connections", "0"]);
    assert_eq!(code, Some(2), "{stderr}");
}

#[test]
fn a_store_that_cannot_be_opened_exits_1_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let store = sqlite_arg(&dir.path().join("missing-dir").join("events.db"));
    let (code, stdout, stderr) = run(&["demo", "--listen", "127.0.0.1:0", "--store", &store]);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stdout.is_empty(), "no listening line: {stdout}");
    assert!(stderr.contains("cannot open the event store"), "{stderr}");
}

#[test]
fn tls_files_that_cannot_be_read_exit_1_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.pem");
    let missing = missing.to_str().unwrap();
    for args in [
        &["demo", "--tls-cert", missing, "--tls-key", missing][..],
        &[
            "proxy",
            "--upstream",
            "https://127.0.0.1:8443/mcp",
            "--upstream-ca-file",
            missing,
        ][..],
    ] {
        let mut all = vec!["--listen", "127.0.0.1:0", "--store", "memory"];
        all.extend_from_slice(args);
        let (code, stdout, stderr) = run(&all);
        assert_eq!(code, Some(1), "{args:?}: {stderr}");
        assert!(stdout.is_empty(), "no listening line: {stdout}");
        assert!(stderr.contains("cannot set up TLS"), "{stderr}");
        assert!(stderr.contains("missing.pem"), "{stderr}");
    }
}

#[test]
fn a_store_over_its_size_cap_exits_1_naming_the_cap() {
    // The cap is one page: the new file's tables do not fit.
    let dir = tempfile::tempdir().unwrap();
    let store = sqlite_arg(&dir.path().join("events.db"));
    let (code, stdout, stderr) = run(&[
        "demo",
        "--listen",
        "127.0.0.1:0",
        "--store",
        &store,
        "--max-db-bytes",
        "4096",
    ]);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stdout.is_empty(), "no listening line: {stdout}");
    assert!(stderr.contains("--max-db-bytes"), "{stderr}");
}

#[tokio::test]
async fn past_max_connections_a_client_waits_until_a_connection_closes() {
    let dir = tempfile::tempdir().unwrap();
    let store = sqlite_arg(&dir.path().join("events.db"));
    let server = Server::start(&[
        "demo",
        "--listen",
        "127.0.0.1:0",
        "--store",
        &store,
        "--max-connections",
        "1",
    ]);
    let mut first = request_raw(server.addr).await;
    assert!(
        answered_within(&mut first, GUARD).await,
        "the first is served"
    );
    let mut second = request_raw(server.addr).await;
    assert!(
        !answered_within(&mut second, Duration::from_millis(300)).await,
        "a second connection is not accepted while the first is open"
    );
    drop(first);
    assert!(
        answered_within(&mut second, GUARD).await,
        "accepted once the first closed"
    );
}

#[tokio::test]
async fn out_of_file_descriptors_says_which_limit_to_raise_once_and_recovers() {
    let server = Server::start_with_descriptor_limit(
        32,
        &["demo", "--listen", "127.0.0.1:0", "--store", "memory"],
    );
    // More connections than the process has descriptors for.
    let mut clients = Vec::new();
    for _ in 0..40 {
        clients.push(request_raw(server.addr).await);
    }
    // Answers to accepted ones come at once; give them that moment together.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (mut served, mut waiting) = (Vec::new(), Vec::new());
    for mut client in clients {
        if answered_within(&mut client, Duration::from_millis(10)).await {
            served.push(client);
        } else {
            waiting.push(client);
        }
    }
    assert!(
        !served.is_empty() && !waiting.is_empty(),
        "served {} of 40",
        served.len()
    );
    // Several accept attempts have failed by now (one every 250 ms).
    tokio::time::sleep(Duration::from_millis(500)).await;
    let log = server.stderr.lock().unwrap().clone();
    assert_eq!(
        log.matches("out of file descriptors").count(),
        1,
        "said once, naming the limit:\n{log}"
    );
    assert!(log.contains("ulimit -n"), "{log}");
    // The served ones close: the waiting ones are accepted and served.
    drop(served);
    for mut client in waiting {
        assert!(
            answered_within(&mut client, GUARD).await,
            "accepted once descriptors were free"
        );
    }
}

/// A new connection to `addr` that has sent one request (its answer unread).
async fn request_raw(addr: SocketAddr) -> TcpStream {
    use tokio::io::AsyncWriteExt;
    let mut client = TcpStream::connect(addr).await.expect("connect");
    client
        .write_all(b"GET /mcp HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .expect("send a request");
    client
}

/// Whether an answer starts arriving on `client` within `within`.
async fn answered_within(client: &mut TcpStream, within: Duration) -> bool {
    use tokio::io::AsyncReadExt;
    let mut buf = [0u8; 256];
    match tokio::time::timeout(within, client.read(&mut buf)).await {
        Ok(read) => read.expect("read an answer") > 0,
        Err(_) => false,
    }
}

// ---------------------------------------------------------------------------
// The demo
// ---------------------------------------------------------------------------

#[tokio::test]
async fn demo_streams_a_tool_call_with_resumable_ids() {
    let dir = tempfile::tempdir().unwrap();
    let store = sqlite_arg(&dir.path().join("events.db"));
    // Configured from the environment this time.
    let server = Server::start_with_env(
        &["demo"],
        &[
            ("MCP_RESUME_LISTEN", "127.0.0.1:0"),
            ("MCP_RESUME_STORE", &store),
        ],
    );
    let url = server.url();
    // The walkthrough to paste is pointed at the real address.
    let stdout = guard("the walkthrough", async {
        loop {
            let stdout = server.stdout.lock().unwrap().clone();
            if stdout.ends_with("\nWALKTHROUGH\n") {
                return stdout;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    assert!(
        stdout.contains(&format!("sh -s -- '{url}' <<'WALKTHROUGH'")),
        "{stdout}"
    );

    let session = open_session(server.addr, &url, V2025_11_25).await;
    let list = json!({ "jsonrpc": "2.0", "id": 2, "method": "tools/list" });
    let tools = json_body(
        send(
            server.addr,
            post_message(&url, Some(&session), Some(V2025_11_25), &list),
        )
        .await,
    )
    .await;
    assert_eq!(tools["result"]["tools"][0]["name"], "countdown");

    let response = send(
        server.addr,
        post_message(
            &url,
            Some(&session),
            Some(V2025_11_25),
            &countdown(3, 5, 20),
        ),
    )
    .await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    let events = Events::new(response.into_body()).rest().await;
    // 2025-11-25: the layer's priming event (position 0, empty data) first.
    assert_eq!(events[0].seq(), 0);
    assert!(events[0].data.is_empty());
    assert_eq!(events[1].seq(), 1);
    assert_countdown(&messages(&events), 3, 5);

    // A resume at the end of the finished stream is refused with the 400.
    let last = events.last().unwrap().id.clone().unwrap();
    let response = send(server.addr, resume(&url, &session, V2025_11_25, &last)).await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
}

// ---------------------------------------------------------------------------
// The proxy
// ---------------------------------------------------------------------------

/// An upstream MCP endpoint written for the test: it records what it
/// received and answers with an SSE stream whose second event waits for
/// `release`.
mod upstream {
    use super::*;
    use axum::extract::State;
    use axum::routing::post;
    use std::pin::Pin;
    use std::task::{Context, Poll};
    use tokio::sync::{Notify, mpsc};

    #[derive(Clone, Default)]
    pub struct Upstream {
        pub seen: Arc<Mutex<Option<(http::request::Parts, Bytes)>>>,
        pub release: Arc<Notify>,
        pub finished: Arc<Notify>,
    }

    /// A body fed by a channel: what the handler sends is what goes out.
    struct ChannelBody(mpsc::Receiver<Bytes>);

    impl http_body::Body for ChannelBody {
        type Data = Bytes;
        type Error = std::convert::Infallible;

        fn poll_frame(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
        ) -> Poll<Option<Result<http_body::Frame<Bytes>, Self::Error>>> {
            self.0
                .poll_recv(cx)
                .map(|data| data.map(|data| Ok(http_body::Frame::data(data))))
        }
    }

    async fn handle(
        State(upstream): State<Upstream>,
        request: axum::extract::Request,
    ) -> axum::response::Response {
        let (parts, body) = request.into_parts();
        let body = body.collect().await.unwrap().to_bytes();
        *upstream.seen.lock().unwrap() = Some((parts, body));

        let (tx, rx) = mpsc::channel(4);
        tokio::spawn(async move {
            let progress = r#"{"jsonrpc":"2.0","method":"notifications/progress","params":{"progressToken":"t","progress":1}}"#;
            let _ = tx
                .send(Bytes::from(format!("id: upstream-1\ndata: {progress}\n\n")))
                .await;
            upstream.release.notified().await;
            let result = r#"{"jsonrpc":"2.0","id":7,"result":{"content":[],"isError":false}}"#;
            let _ = tx
                .send(Bytes::from(format!("id: upstream-2\ndata: {result}\n\n")))
                .await;
            upstream.finished.notify_one();
        });
        let mut response = axum::response::Response::new(axum::body::Body::new(ChannelBody(rx)));
        let headers = response.headers_mut();
        headers.insert(
            "content-type",
            HeaderValue::from_static("text/event-stream"),
        );
        headers.insert(
            "mcp-session-id",
            HeaderValue::from_static("upstream-session"),
        );
        headers.insert("x-upstream", HeaderValue::from_static("yes"));
        // Hop-by-hop: the proxy must not pass these on.
        headers.insert("connection", HeaderValue::from_static("x-hop"));
        headers.insert("x-hop", HeaderValue::from_static("1"));
        headers.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        headers.insert("proxy-authenticate", HeaderValue::from_static("Basic"));
        response
    }

    /// Serves the upstream on a free loopback port.
    pub async fn start() -> (SocketAddr, Upstream) {
        let upstream = Upstream::default();
        let app = axum::Router::new()
            .route("/mcp", post(handle))
            .with_state(upstream.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        (addr, upstream)
    }
}

#[tokio::test]
async fn proxy_forwards_end_to_end_headers_drops_hop_by_hop_and_streams_as_it_goes() {
    let (upstream_addr, upstream) = upstream::start().await;
    let server = Server::start(&[
        "proxy",
        "--upstream",
        &format!("http://{upstream_addr}/mcp"),
        "--listen",
        "127.0.0.1:0",
        "--store",
        "memory",
    ]);

    let call =
        json!({ "jsonrpc": "2.0", "id": 7, "method": "tools/call", "params": { "name": "x" } });
    let mut request = post_message(
        &format!("{}?tenant=a%20b", server.url()),
        Some("upstream-session"),
        Some(V2025_06_18),
        &call,
    );
    let headers = request.headers_mut();
    for (name, value) in [
        ("authorization", "Bearer secret-token"),
        ("origin", "http://localhost:3000"),
        ("x-custom", "kept"),
        // Hop-by-hop: consumed by the proxy.
        ("connection", "x-drop-me"),
        ("x-drop-me", "1"),
        ("keep-alive", "timeout=5"),
        ("proxy-authorization", "Basic cHJveHk="),
        ("te", "trailers"),
    ] {
        headers.insert(name, HeaderValue::from_static(value));
    }
    let response = send(server.addr, request).await;
    assert_eq!(response.status(), StatusCode::OK);

    // What the upstream received.
    let (parts, body) = upstream
        .seen
        .lock()
        .unwrap()
        .take()
        .expect("upstream was called");
    assert_eq!(parts.uri.path(), "/mcp");
    assert_eq!(parts.uri.query(), Some("tenant=a%20b"));
    assert_eq!(parts.headers["host"], upstream_addr.to_string().as_str());
    for (name, value) in [
        ("mcp-session-id", "upstream-session"),
        ("mcp-protocol-version", V2025_06_18),
        ("authorization", "Bearer secret-token"),
        ("accept", "application/json, text/event-stream"),
        ("content-type", "application/json"),
        ("origin", "http://localhost:3000"),
        ("x-custom", "kept"),
    ] {
        assert_eq!(
            parts.headers.get(name).map(|v| v.as_bytes()),
            Some(value.as_bytes()),
            "{name}"
        );
    }
    for name in ["x-drop-me", "keep-alive", "proxy-authorization", "te"] {
        assert!(!parts.headers.contains_key(name), "{name} was forwarded");
    }
    assert!(
        parts
            .headers
            .get("connection")
            .is_none_or(|v| !v.as_bytes().eq_ignore_ascii_case(b"x-drop-me")),
        "the client's Connection header was forwarded"
    );
    assert_eq!(serde_json::from_slice::<Value>(&body).unwrap(), call);

    // What the client received.
    let headers: &HeaderMap = response.headers();
    assert_eq!(headers["x-upstream"], "yes");
    assert_eq!(headers["mcp-session-id"], "upstream-session");
    assert_eq!(headers["content-type"], "text/event-stream");
    for name in ["x-hop", "keep-alive", "proxy-authenticate"] {
        assert!(!headers.contains_key(name), "{name} came back");
    }

    // The first event arrives while the upstream is still working: nothing
    // is buffered. (If it were, this would wait for `release` forever.)
    let mut events = Events::new(response.into_body());
    let first = events.next().await.expect("the first event");
    assert_eq!(first.seq(), 1, "the layer's id replaced the upstream's");
    assert_eq!(first.json()["params"]["progress"], 1);
    upstream.release.notify_one();
    let rest = events.rest().await;
    assert_eq!(rest.len(), 1);
    assert_eq!(rest[0].seq(), 2);
    assert_eq!(rest[0].layer_id().0, first.layer_id().0);
    assert_eq!(rest[0].json()["id"], 7);
}

#[tokio::test]
async fn a_proxy_client_that_dropped_its_connection_resumes_where_it_was() {
    let (upstream_addr, upstream) = upstream::start().await;
    let server = Server::start(&[
        "proxy",
        "--upstream",
        &format!("http://{upstream_addr}/mcp"),
        "--listen",
        "127.0.0.1:0",
        "--store",
        "memory",
    ]);
    let url = server.url();
    let call =
        json!({ "jsonrpc": "2.0", "id": 7, "method": "tools/call", "params": { "name": "x" } });
    let response = send(
        server.addr,
        post_message(&url, Some("upstream-session"), Some(V2025_11_25), &call),
    )
    .await;
    let mut events = Events::new(response.into_body());
    let priming = events.next().await.expect("the priming event");
    assert_eq!(priming.seq(), 0);
    let first = events.next().await.expect("the first event");
    // The client goes away; the upstream finishes while nobody listens.
    drop(events);
    upstream.release.notify_one();
    guard("the upstream to finish", upstream.finished.notified()).await;

    let first_id = first.id.clone().unwrap();
    let response = send(
        server.addr,
        resume(&url, "upstream-session", V2025_11_25, &first_id),
    )
    .await;
    assert_eq!(response.status(), StatusCode::OK);
    let rest = Events::new(response.into_body()).rest().await;
    let rest = messages(&rest);
    assert_eq!(rest.len(), 1, "{rest:?}");
    assert_eq!(rest[0].layer_id(), (first.layer_id().0, 2));
    assert_eq!(rest[0].json()["id"], 7);
}

#[tokio::test]
async fn proxy_answers_502_naming_the_upstream_when_it_is_unreachable() {
    // A port nothing listens on.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let upstream = format!("http://{closed}/mcp");
    let server = Server::start(&[
        "proxy",
        "--upstream",
        &upstream,
        "--listen",
        "127.0.0.1:0",
        "--store",
        "memory",
    ]);

    for id in 1..=2 {
        let ping = json!({ "jsonrpc": "2.0", "id": id, "method": "ping" });
        let response = send(server.addr, post_message(&server.url(), None, None, &ping)).await;
        assert_eq!(response.status(), StatusCode::BAD_GATEWAY);
        assert_eq!(response.headers()["content-type"], "application/json");
        let answer = json_body(response).await;
        assert_eq!(answer["jsonrpc"], "2.0");
        let message = answer["error"]["message"].as_str().unwrap();
        assert!(message.contains(&upstream), "{message}");
    }
}

/// The proxy command in front of `upstream` on 127.0.0.1, with `more` options.
fn start_proxy(upstream: &str, more: &[&str]) -> Server {
    let mut args = vec![
        "proxy",
        "--upstream",
        upstream,
        "--listen",
        "127.0.0.1:0",
        "--store",
        "memory",
    ];
    args.extend_from_slice(more);
    Server::start(&args)
}

#[tokio::test]
async fn on_loopback_the_proxy_refuses_a_rebound_host_and_forwards_the_host_it_accepts() {
    let (upstream_addr, upstream) = upstream::start().await;
    let server = start_proxy(&format!("http://{upstream_addr}/mcp"), &[]);
    let ping = json!({ "jsonrpc": "2.0", "id": 1, "method": "ping" });
    let with_host = |host: &str, origin: &str| {
        let mut request = post_message("/mcp", None, None, &ping);
        let headers = request.headers_mut();
        headers.insert("host", HeaderValue::from_str(host).unwrap());
        headers.insert("origin", HeaderValue::from_str(origin).unwrap());
        request
    };

    let refused = send(
        server.addr,
        with_host("evil.example.com", "http://evil.example.com"),
    )
    .await;
    assert_eq!(refused.status(), StatusCode::FORBIDDEN);
    let answer = json_body(refused).await;
    let message = answer["error"]["message"].as_str().unwrap();
    assert!(message.contains("evil.example.com"), "{message}");
    assert!(
        upstream.seen.lock().unwrap().is_none(),
        "reached the upstream"
    );

    let host = format!("localhost:{}", server.addr.port());
    let response = send(server.addr, with_host(&host, &format!("http://{host}"))).await;
    assert_eq!(response.status(), StatusCode::OK);
    let (parts, _) = upstream
        .seen
        .lock()
        .unwrap()
        .take()
        .expect("upstream was called");
    assert_eq!(parts.headers["x-forwarded-host"], host.as_str());
    assert_eq!(parts.headers["x-forwarded-for"], "127.0.0.1");
}

#[tokio::test]
async fn the_proxy_answers_504_when_the_upstream_sends_no_headers_in_time() {
    // Accepts connections and never answers.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let upstream = format!("http://{}/mcp", silent.local_addr().unwrap());
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((tcp, _)) = silent.accept().await {
            held.push(tcp);
        }
    });
    let server = start_proxy(&upstream, &["--upstream-header-timeout", "300ms"]);
    let ping = json!({ "jsonrpc": "2.0", "id": 1, "method": "ping" });
    let started = Instant::now();
    let response = send(server.addr, post_message(&server.url(), None, None, &ping)).await;
    assert_eq!(response.status(), StatusCode::GATEWAY_TIMEOUT);
    assert!(started.elapsed() >= Duration::from_millis(300));
    let answer = json_body(response).await;
    let message = answer["error"]["message"].as_str().unwrap();
    assert!(message.contains(&upstream), "{message}");
}

#[tokio::test]
async fn the_proxy_answers_a_broken_request_body_400_as_the_clients_error() {
    let (upstream_addr, upstream) = upstream::start().await;
    let server = start_proxy(&format!("http://{upstream_addr}/mcp"), &[]);
    let mut client = TcpStream::connect(server.addr).await.unwrap();
    let request = format!(
        "POST /mcp HTTP/1.1\r\nhost: {}\r\ncontent-type: application/json\r\n\
         transfer-encoding: chunked\r\nconnection: close\r\n\r\nZZZ\r\n{{}}\r\n0\r\n\r\n",
        server.addr
    );
    tokio::io::AsyncWriteExt::write_all(&mut client, request.as_bytes())
        .await
        .unwrap();
    let mut answer = Vec::new();
    let _ = guard(
        "the answer",
        tokio::io::AsyncReadExt::read_to_end(&mut client, &mut answer),
    )
    .await;
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    assert!(!answer.contains("upstream MCP server"), "{answer}");
    assert!(
        upstream.seen.lock().unwrap().is_none(),
        "reached the upstream"
    );
    // Logged as the connection ends, which may be just after the answer.
    crate::common::wait_until("the client's error in the log", || async {
        server
            .stderr
            .lock()
            .unwrap()
            .contains("the client's request body broke")
    })
    .await;
}

// ---------------------------------------------------------------------------
// Who the caller is
// ---------------------------------------------------------------------------

/// An upstream whose authentication sits behind the proxy: it answers a
/// POST with a finished two-event SSE stream and a GET with 405, until
/// `revoked` is set; from then on it answers every request 401.
mod revocable {
    use super::*;
    use axum::extract::State;
    use axum::response::IntoResponse;
    use std::sync::atomic::{AtomicBool, Ordering};

    #[derive(Clone, Default)]
    pub struct Upstream {
        pub revoked: Arc<AtomicBool>,
        /// The method and headers of every request, in order.
        pub seen: Arc<Mutex<Vec<(http::Method, HeaderMap)>>>,
    }

    impl Upstream {
        pub fn revoke(&self) {
            self.revoked.store(true, Ordering::SeqCst);
        }

        /// The headers of the GETs it received.
        pub fn gets(&self) -> Vec<HeaderMap> {
            let seen = self.seen.lock().unwrap();
            seen.iter()
                .filter(|(method, _)| method == http::Method::GET)
                .map(|(_, headers)| headers.clone())
                .collect()
        }
    }

    async fn handle(
        State(upstream): State<Upstream>,
        method: http::Method,
        headers: HeaderMap,
    ) -> axum::response::Response {
        upstream
            .seen
            .lock()
            .unwrap()
            .push((method.clone(), headers));
        if upstream.revoked.load(Ordering::SeqCst) {
            let challenge = ("www-authenticate", r#"Bearer error="invalid_token""#);
            return (StatusCode::UNAUTHORIZED, [challenge], "token revoked").into_response();
        }
        if method != http::Method::POST {
            return StatusCode::METHOD_NOT_ALLOWED.into_response();
        }
        let progress = r#"{"jsonrpc":"2.0","method":"notifications/progress","params":{"progressToken":"t","progress":1}}"#;
        let result = r#"{"jsonrpc":"2.0","id":7,"result":{"content":[],"isError":false}}"#;
        let events =
            format!("id: upstream-1\ndata: {progress}\n\nid: upstream-2\ndata: {result}\n\n");
        ([("content-type", "text/event-stream")], events).into_response()
    }

    /// Serves the upstream on a free loopback port.
    pub async fn start() -> (String, Upstream) {
        let upstream = Upstream::default();
        let app = axum::Router::new()
            .route("/mcp", axum::routing::any(handle))
            .with_state(upstream.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        (format!("http://{addr}/mcp"), upstream)
    }
}

/// Calls the revocable upstream's tool through `server` with the
/// `Authorization` value `token`; returns the id of its first event.
async fn call_as(server: &Server, token: &str) -> String {
    let call =
        json!({ "jsonrpc": "2.0", "id": 7, "method": "tools/call", "params": { "name": "x" } });
    let mut request = post_message(
        &server.url(),
        Some("upstream-session"),
        Some(V2025_06_18),
        &call,
    );
    request
        .headers_mut()
        .insert("authorization", HeaderValue::from_str(token).unwrap());
    let response = send(server.addr, request).await;
    assert_eq!(response.status(), StatusCode::OK);
    let events = Events::new(response.into_body()).rest().await;
    let events = messages(&events);
    assert_eq!(events.len(), 2, "{events:?}");
    events[0].id.clone().unwrap()
}

/// Resumes after `last_event_id` through `server`, with the
/// `Authorization` value `token` or none.
async fn resume_as(
    server: &Server,
    last_event_id: &str,
    token: Option<&str>,
) -> Response<Incoming> {
    let mut request = resume(
        &server.url(),
        "upstream-session",
        V2025_06_18,
        last_event_id,
    );
    if let Some(token) = token {
        request
            .headers_mut()
            .insert("authorization", HeaderValue::from_str(token).unwrap());
    }
    send(server.addr, request).await
}

/// A resume that replays the call's result.
async fn assert_replays_the_result(response: Response<Incoming>, what: &str) {
    assert_eq!(response.status(), StatusCode::OK, "{what}");
    let rest = Events::new(response.into_body()).rest().await;
    let rest = messages(&rest);
    assert_eq!(rest.len(), 1, "{what}: {rest:?}");
    assert_eq!(rest[0].json()["id"], 7, "{what}");
}

async fn text_body(response: Response<Incoming>) -> String {
    let bytes = guard("body", response.into_body().collect())
        .await
        .expect("body")
        .to_bytes();
    String::from_utf8_lossy(&bytes).into_owned()
}

#[tokio::test]
async fn through_the_proxy_two_bearer_tokens_on_one_session_are_two_callers() {
    let (upstream_url, _upstream) = revocable::start().await;
    let server = start_proxy(&upstream_url, &[]);
    let first = call_as(&server, "Bearer token-alice").await;

    // Another token on the same session id, or none: the one 400 of an
    // unknown id, which says nothing about the stream.
    for token in [Some("Bearer token-bob"), None] {
        let refused = resume_as(&server, &first, token).await;
        assert_eq!(refused.status(), StatusCode::BAD_REQUEST, "{token:?}");
        assert_eq!(refused.headers()["content-type"], "application/json");
        assert_eq!(text_body(refused).await, crate::common::CANNOT_RESUME_BODY);
    }
    let alice = resume_as(&server, &first, Some("Bearer token-alice")).await;
    assert_replays_the_result(alice, "the caller's own token").await;

    // With the binding off, any caller who knows the id replays the stream.
    let unbound = start_proxy(&upstream_url, &["--identity-header", "none"]);
    let first = call_as(&unbound, "Bearer token-alice").await;
    let bob = resume_as(&unbound, &first, Some("Bearer token-bob")).await;
    assert_replays_the_result(bob, "--identity-header none").await;
}

#[tokio::test]
async fn through_the_proxy_a_token_the_upstream_revoked_gets_its_401_not_the_replay() {
    // Asking the upstream is the default; without it, the proxy answers the
    // resume itself and replays to the revoked token: the trade-off of
    // `--authorize-resumes-with-upstream false`, one upstream request less
    // per resume.
    for (more, asks) in [
        (&[][..], true),
        (&["--authorize-resumes-with-upstream", "false"][..], false),
    ] {
        let (upstream_url, upstream) = revocable::start().await;
        let server = start_proxy(&upstream_url, more);
        let first = call_as(&server, "Bearer token-alice").await;
        // The upstream's 405 to the resume's GET lets the resume go on.
        let accepted = resume_as(&server, &first, Some("Bearer token-alice")).await;
        assert_replays_the_result(accepted, "before the token is revoked").await;

        upstream.revoke();
        let after = resume_as(&server, &first, Some("Bearer token-alice")).await;
        if asks {
            assert_eq!(after.status(), StatusCode::UNAUTHORIZED);
            assert_eq!(
                after.headers()["www-authenticate"],
                r#"Bearer error="invalid_token""#
            );
            assert_eq!(text_body(after).await, "token revoked");
            let gets = upstream.gets();
            assert_eq!(gets.len(), 2, "one upstream request per resume");
            for headers in gets {
                assert_eq!(headers["authorization"], "Bearer token-alice");
                assert_eq!(headers["mcp-session-id"], "upstream-session");
                assert_eq!(headers["mcp-protocol-version"], V2025_06_18);
                assert!(!headers.contains_key("last-event-id"));
            }
        } else {
            assert_replays_the_result(after, "not asking the upstream").await;
            assert!(upstream.gets().is_empty(), "the upstream was asked");
        }
    }
}

// ---------------------------------------------------------------------------
// h2c
// ---------------------------------------------------------------------------

#[tokio::test]
async fn an_h2c_client_can_initialize_and_stream_a_tool_call() {
    let server = Server::start(&["demo", "--listen", "127.0.0.1:0", "--store", "memory"]);
    let tcp = TcpStream::connect(server.addr).await.unwrap();
    let (mut sender, connection) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tcp))
            .await
            .expect("h2c handshake (prior knowledge)");
    tokio::spawn(connection);
    let url = server.url();

    let initialize = json!({
        "jsonrpc": "2.0", "id": 1, "method": "initialize",
        "params": { "protocolVersion": V2025_06_18, "capabilities": {}, "clientInfo": { "name": "h2", "version": "1" } },
    });
    let response = guard(
        "initialize over h2",
        sender.send_request(post_message(&url, None, None, &initialize)),
    )
    .await
    .unwrap();
    assert_eq!(response.version(), http::Version::HTTP_2);
    let session = response.headers()["mcp-session-id"]
        .to_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        json_body(response).await["result"]["protocolVersion"],
        V2025_06_18
    );

    // Two tool calls multiplexed on the one connection.
    let mut streams = Vec::new();
    for id in [2, 3] {
        let request = post_message(
            &url,
            Some(&session),
            Some(V2025_06_18),
            &countdown(id, 4, 10),
        );
        let response = guard("tools/call over h2", sender.send_request(request))
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        streams.push((id, Events::new(response.into_body())));
    }
    for (id, mut events) in streams {
        let events = events.rest().await;
        assert_countdown(&messages(&events), id, 4);
    }
}

// ---------------------------------------------------------------------------
// Signals
// ---------------------------------------------------------------------------

/// The layer's stream id and last sequence of an event.
fn stream_of(event: &Event) -> EventId {
    EventId::parse(event.id.as_deref().unwrap().as_bytes()).expect("a layer id")
}

/// Checks the SQLite file: intact, and what the store says of `stream`.
async fn stored_state(path: &Path, stream: &EventId) -> (StreamState, u64) {
    let conn = rusqlite::Connection::open(path).unwrap();
    let check: String = conn
        .query_row("PRAGMA integrity_check", [], |row| row.get(0))
        .unwrap();
    assert_eq!(check, "ok");
    drop(conn);
    let store = SqliteEventStore::open(path).expect("the store reopens");
    let info = store
        .stream_info(stream.stream)
        .await
        .unwrap()
        .expect("the stream is stored");
    store.close().await.unwrap();
    (info.state, info.last_seq)
}

#[tokio::test]
async fn sigterm_lets_open_streams_finish_then_exits_0() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("events.db");
    let mut server = Server::start(&[
        "demo",
        "--listen",
        "127.0.0.1:0",
        "--store",
        &sqlite_arg(&db),
        "--grace-period",
        "20s",
    ]);
    let url = server.url();
    let session = open_session(server.addr, &url, V2025_06_18).await;
    let response = send(
        server.addr,
        post_message(
            &url,
            Some(&session),
            Some(V2025_06_18),
            &countdown(2, 10, 100),
        ),
    )
    .await;
    let mut events = Events::new(response.into_body());
    let first = events.next().await.expect("first event");

    let signalled = Instant::now();
    server.terminate();
    // It stops accepting at once...
    guard("the listener to close", async {
        while TcpStream::connect(server.addr).await.is_ok() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    // ...while the stream runs to its end on the open connection.
    let mut all = vec![first];
    all.extend(events.rest().await);
    assert_countdown(&messages(&all), 2, 10);
    let status = server.wait(Duration::from_secs(20)).await;
    assert_eq!(status.code(), Some(0));
    assert!(
        signalled.elapsed() < Duration::from_secs(20),
        "exited within the grace period"
    );

    let (state, last_seq) = stored_state(&db, &stream_of(&all[0])).await;
    assert_eq!(state, StreamState::Complete);
    assert_eq!(last_seq, all.last().unwrap().seq());
}

#[tokio::test]
async fn sigterm_closes_what_outlasts_the_grace_period_then_exits_0() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("events.db");
    let grace = Duration::from_secs(1);
    let mut server = Server::start(&[
        "demo",
        "--listen",
        "127.0.0.1:0",
        "--store",
        &sqlite_arg(&db),
        "--grace-period",
        "1s",
    ]);
    let url = server.url();
    let session = open_session(server.addr, &url, V2025_06_18).await;
    // 1,000 steps of 50 ms: far longer than the grace period.
    let response = send(
        server.addr,
        post_message(
            &url,
            Some(&session),
            Some(V2025_06_18),
            &countdown(2, 1000, 50),
        ),
    )
    .await;
    let mut events = Events::new(response.into_body());
    let mut seen = Vec::new();
    for _ in 0..3 {
        seen.push(events.next().await.expect("an event"));
    }

    let signalled = Instant::now();
    server.terminate();
    let status = server.wait(grace + Duration::from_secs(10)).await;
    let took = signalled.elapsed();
    assert_eq!(status.code(), Some(0));
    assert!(
        took >= grace - Duration::from_millis(100),
        "waited for the grace period: {took:?}"
    );
    // The client's stream was cut, not finished.
    let rest = events.rest().await;
    assert!(
        rest.iter()
            .all(|e| e.json()["method"] == "notifications/progress")
    );
    seen.extend(rest);

    // Everything sent was committed first; the stream was closed as abandoned.
    let (state, last_seq) = stored_state(&db, &stream_of(&seen[0])).await;
    assert_eq!(state, StreamState::Abandoned);
    assert!(last_seq >= seen.last().unwrap().seq());
}

#[tokio::test]
async fn after_sigkill_a_restart_replays_every_committed_event_then_ends() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("events.db");
    let store = sqlite_arg(&db);
    let mut server = Server::start(&["demo", "--listen", "127.0.0.1:0", "--store", &store]);
    let url = server.url();
    let session = open_session(server.addr, &url, V2025_06_18).await;
    let response = send(
        server.addr,
        post_message(
            &url,
            Some(&session),
            Some(V2025_06_18),
            &countdown(2, 500, 20),
        ),
    )
    .await;
    let mut events = Events::new(response.into_body());
    let mut last = None;
    for _ in 0..5 {
        last = events.next().await;
    }
    let last = last.expect("five events");
    // Let more events be committed than the client saw, then kill.
    tokio::time::sleep(Duration::from_millis(300)).await;
    server.kill();
    drop(events);

    // Same file, new process: the stream is abandoned, its events are there.
    let mut server = Server::start(&["demo", "--listen", "127.0.0.1:0", "--store", &store]);
    let url = server.url();
    let last_id = last.id.clone().unwrap();
    let response = send(server.addr, resume(&url, &session, V2025_06_18, &last_id)).await;
    assert_eq!(response.status(), StatusCode::OK);
    let replayed = messages(&Events::new(response.into_body()).rest().await)
        .into_iter()
        .cloned()
        .collect::<Vec<_>>();
    assert!(
        !replayed.is_empty(),
        "events committed after {last_id} were replayed"
    );
    for (event, seq) in replayed.iter().zip(last.seq() + 1..) {
        assert_eq!(event.layer_id().0, last.layer_id().0);
        assert_eq!(event.seq(), seq, "in order, no gap");
        assert_eq!(event.json()["params"]["progress"], seq);
    }

    // The stream ended with the replay: resuming at its end is refused.
    let end = replayed.last().unwrap().id.clone().unwrap();
    let response = send(server.addr, resume(&url, &session, V2025_06_18, &end)).await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert_eq!(json_body(response).await["error"]["code"], -32000);

    server.terminate();
    assert_eq!(server.wait(Duration::from_secs(20)).await.code(), Some(0));
    // And the replay held every committed event.
    let (state, last_seq) = stored_state(&db, &stream_of(&last)).await;
    assert_eq!(state, StreamState::Abandoned);
    assert_eq!(last_seq, replayed.last().unwrap().seq());
}
