//! `mcp-resume inspect` on stores written by the real proxy binary: rmcp's
//! client calls the test kit's progress server through `mcp-resume proxy`,
//! and `inspect` (another process) reads what the proxy recorded, while it
//! runs and after it was SIGKILLed; and refuses what is not a store.

use std::net::SocketAddr;
use std::path::Path;

use http::StatusCode;
use http_body_util::BodyExt;
use rmcp::model::{
    CallToolRequestParams, ClientConfig, ClientRequest, ProtocolVersion, Request, ServerResult,
};
use rmcp::service::{PeerRequestOptions, RunningService};
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::{ClientHandler, RoleClient, ServiceExt};
use serde_json::{Value, json};
use tokio::net::TcpListener;

use crate::cli::{Server, resume, run, send, sqlite_arg};
use crate::common::{guard, wait_until};
use mcp_resume_testkit::progress_server::mcp_service;

/// A client of the newest version with resumable streams.
#[derive(Clone)]
struct Client;

impl ClientHandler for Client {
    fn get_info(&self) -> ClientConfig {
        ClientConfig::default().with_protocol_version(ProtocolVersion::V_2025_11_25)
    }
}

/// The progress server on a port of its own; its address. The admin
/// listener's tests use it too.
pub(crate) async fn progress_upstream() -> SocketAddr {
    let (mcp, _shutdown) = mcp_service();
    let app = axum::Router::new().route_service("/mcp", mcp);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    addr
}

fn proxy(upstream: SocketAddr, store: &str) -> Server {
    Server::start(&[
        "proxy",
        "--upstream",
        &format!("http://{upstream}/mcp"),
        "--listen",
        "127.0.0.1:0",
        "--store",
        store,
    ])
}

async fn connect(server: &Server) -> RunningService<RoleClient, Client> {
    let transport = StreamableHttpClientTransport::from_uri(server.url());
    guard("the client to connect", Client.serve(transport))
        .await
        .expect("the client connects")
}

/// Calls `tool` with `arguments` (rmcp adds a progress token); the
/// request's id and what it answered.
async fn call(
    client: &RunningService<RoleClient, Client>,
    tool: &'static str,
    arguments: Value,
) -> (String, Result<ServerResult, rmcp::ServiceError>) {
    let request = ClientRequest::CallToolRequest(Request::new(
        CallToolRequestParams::new(tool).with_arguments(arguments.as_object().unwrap().clone()),
    ));
    let handle = client
        .send_request_with_option(request, PeerRequestOptions::no_options())
        .await
        .expect("the request is sent");
    let id = serde_json::to_value(&handle.id).unwrap().to_string();
    (
        id,
        guard("the tool's answer", handle.await_response()).await,
    )
}

/// `mcp-resume inspect --store <store> <args>`: its exit code, stdout, stderr.
fn inspect(store: &str, args: &[&str]) -> (Option<i32>, String, String) {
    let mut all = vec!["inspect", "--store", store];
    all.extend_from_slice(args);
    run(&all)
}

/// `inspect ... --json`, which must succeed.
fn inspect_json(store: &str, args: &[&str]) -> Value {
    let mut all = args.to_vec();
    all.push("--json");
    let (code, stdout, stderr) = inspect(store, &all);
    assert_eq!(code, Some(0), "inspect {args:?} failed: {stderr}");
    serde_json::from_str(&stdout).unwrap_or_else(|_| panic!("not JSON: {stdout}"))
}

fn calls(store: &str) -> Vec<Value> {
    inspect_json(store, &["calls"])["calls"]
        .as_array()
        .unwrap()
        .clone()
}

fn file_bytes(path: &Path) -> Vec<u8> {
    std::fs::read(path).unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inspect_shows_what_the_proxy_recorded_while_it_runs_and_after_a_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("events.db");
    let store = sqlite_arg(&db);
    let upstream = progress_upstream().await;
    let mut server = proxy(upstream, &store);
    let client = connect(&server).await;

    // Three calls that answer, and one the server refuses with a JSON-RPC
    // error (no such tool).
    let mut answered = Vec::new();
    for count in [2, 3, 4] {
        let (id, answer) = call(&client, "stream_progress", json!({ "count": count })).await;
        assert!(
            matches!(answer, Ok(ServerResult::CallToolResult(_))),
            "{answer:?}"
        );
        answered.push((id, count));
    }
    let (refused_id, answer) = call(&client, "no_such_tool", json!({})).await;
    assert!(answer.is_err(), "{answer:?}");

    // While the proxy runs: the four tool calls, newest first.
    let listed = calls(&store);
    assert_eq!(listed.len(), 4, "{listed:#?}");
    assert_eq!(listed[0]["request_id"], refused_id.as_str());
    assert_eq!(listed[0]["outcome"], "error");
    assert_eq!(listed[0]["tool"], "no_such_tool");
    let session = listed[0]["session"].as_str().expect("a session").to_owned();
    for (record, (id, count)) in listed[1..].iter().zip(answered.iter().rev()) {
        assert_eq!(record["method"], "tools/call");
        assert_eq!(record["tool"], "stream_progress");
        assert_eq!(record["request_id"], id.as_str());
        assert_eq!(record["outcome"], "result", "{record:#}");
        assert_eq!(record["session"], session.as_str());
        // `count` progress notifications, then the result.
        assert_eq!(record["events"], count + 1);
        assert_eq!(record["resumes"], 0);
        assert!(record["duration_ms"].is_u64() && record["bytes"].as_u64().unwrap() > 0);
    }

    // Windows and sessions select streams.
    for window in [
        ["--since", "2099-01-01"],
        ["--until", "2000-01-01T00:00:00Z"],
        ["--session", "nobody"],
    ] {
        let (code, stdout, stderr) = inspect(&store, &["calls", window[0], window[1]]);
        assert_eq!(
            (code, stdout.as_str()),
            (Some(0), "no calls\n"),
            "{window:?}: {stderr}"
        );
    }
    let recent = inspect_json(&store, &["calls", "--since", "10m", "--session", &session]);
    assert_eq!(recent["calls"].as_array().unwrap().len(), 4);

    // The session: its four tool calls, among its streams (initialize's
    // answer, the client's GET stream).
    let sessions = inspect_json(&store, &["sessions"]);
    let sessions = sessions["sessions"].as_array().unwrap();
    assert_eq!(sessions.len(), 1, "{sessions:#?}");
    assert_eq!(sessions[0]["session"], session.as_str());
    assert_eq!(sessions[0]["tool_calls"], 4);
    assert!(sessions[0]["streams"].as_u64().unwrap() >= 4);

    // A resume of the four-event call is counted in its history.
    let stream = listed[1]["stream"].as_str().unwrap().to_owned();
    let response = send(
        server.addr,
        resume(
            &server.url(),
            &session,
            "2025-11-25",
            &format!("{stream}.2"),
        ),
    )
    .await;
    assert_eq!(response.status(), StatusCode::OK);
    guard("the replay", response.into_body().collect())
        .await
        .unwrap();
    wait_until("the resume to be counted", || {
        let store = store.clone();
        let stream = stream.clone();
        async move {
            calls(&store)
                .iter()
                .any(|c| c["stream"] == stream.as_str() && c["resumes"] == 1)
        }
    })
    .await;

    // One stream's events, decoded: all of them, or those after an event id.
    let events = inspect_json(&store, &["events", &stream]);
    assert_eq!(events["stream"]["outcome"], "result");
    let events = events["events"].as_array().unwrap();
    let seqs: Vec<u64> = events.iter().map(|e| e["seq"].as_u64().unwrap()).collect();
    assert_eq!(seqs, [1, 2, 3, 4, 5]);
    assert_eq!(events[0]["data"]["method"], "notifications/progress");
    assert_eq!(events[4]["data"]["result"]["isError"], false);
    let after = inspect_json(&store, &["events", &format!("{stream}.3")]);
    let seqs: Vec<u64> = after["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["seq"].as_u64().unwrap())
        .collect();
    assert_eq!(seqs, [4, 5]);

    // The tables, for people.
    let (code, table, stderr) = inspect(&store, &["calls"]);
    assert_eq!(code, Some(0), "{stderr}");
    let mut lines = table.lines();
    assert!(lines.next().unwrap().starts_with("STARTED"), "{table}");
    assert_eq!(
        lines.filter(|l| l.contains("stream_progress")).count(),
        3,
        "{table}"
    );
    assert_eq!(table.matches(" result ").count(), 3, "{table}");
    let (code, table, stderr) = inspect(&store, &["events", &stream, "--width", "40"]);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        table.starts_with(&format!("stream {stream}: tools/call stream_progress")),
        "{table}"
    );
    assert!(table.contains("resumed 1 times"), "{table}");
    assert_eq!(
        table.matches("more chars)").count(),
        5,
        "every event is cut at 40: {table}"
    );

    // The summary agrees with the listing it is made of.
    let summary = inspect_json(&store, &["summary"]);
    let tool = summary["calls"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["tool"] == "stream_progress")
        .unwrap()
        .clone();
    assert_eq!(
        (&tool["calls"], &tool["errors"], &tool["resumed"]),
        (&json!(3), &json!(0), &json!(1))
    );
    assert!(tool["p50_ms"].as_u64().unwrap() <= tool["p99_ms"].as_u64().unwrap());
    let all = inspect_json(&store, &["calls", "--all"])["calls"]
        .as_array()
        .unwrap()
        .clone();
    let ended = all.iter().filter(|c| c["outcome"] != "running").count() as f64;
    let resumed = all
        .iter()
        .filter(|c| c["outcome"] != "running" && c["resumes"] != 0)
        .count() as f64;
    assert_eq!(summary["share_resumed"], json!(resumed / ended));
    assert_eq!(summary["share_cut_off"], json!(0.0));

    // A long call, cut by a SIGKILL of the proxy while it streams.
    let long = tokio::spawn({
        let client = client.peer().clone();
        async move {
            let request = ClientRequest::CallToolRequest(Request::new(
                CallToolRequestParams::new("stream_progress").with_arguments(
                    json!({ "count": 10_000, "interval_ms": 10 })
                        .as_object()
                        .unwrap()
                        .clone(),
                ),
            ));
            let handle = client
                .send_request_with_option(request, PeerRequestOptions::no_options())
                .await;
            if let Ok(handle) = handle {
                let _ = handle.await_response().await;
            }
        }
    });
    wait_until("the long call to stream", || {
        let store = store.clone();
        async move {
            calls(&store)
                .first()
                .is_some_and(|c| c["outcome"] == "running" && c["events"].as_u64() >= Some(3))
        }
    })
    .await;
    server.kill();
    long.abort();
    drop(client);

    let wal = dir.path().join("events.db-wal");
    let (db_before, wal_before) = (file_bytes(&db), file_bytes(&wal));
    let listed = calls(&store);
    assert_eq!(listed.len(), 5, "{listed:#?}");
    let cut = &listed[0];
    assert_eq!(cut["outcome"], "abandoned", "its process is gone: {cut:#}");
    assert_eq!(cut["state"], "live", "as the file says");
    assert_eq!(cut["ended"], Value::Null);
    assert!(cut["events"].as_u64().unwrap() >= 3);
    let results = listed.iter().filter(|c| c["outcome"] == "result").count();
    assert_eq!(results, 3, "the calls before the kill are all there");
    let summary = inspect_json(&store, &["summary"]);
    assert!(
        summary["share_cut_off"].as_f64().unwrap() > 0.0,
        "{summary:#}"
    );
    let (code, table, stderr) = inspect(&store, &["sessions"]);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(table.contains(&session), "{table}");
    // Inspecting wrote nothing: not the database, not its write-ahead log.
    assert!(file_bytes(&db) == db_before && file_bytes(&wal) == wal_before);
}

#[test]
fn inspect_refuses_what_is_not_an_mcp_resume_store() {
    let dir = tempfile::tempdir().unwrap();
    let store = |name: &str| sqlite_arg(&dir.path().join(name));
    let refused = |store: &str, args: &[&str], says: &str| {
        let (code, stdout, stderr) = inspect(store, args);
        assert_eq!(code, Some(1), "{store} {args:?}: {stdout}");
        assert!(stderr.contains(says), "{store} {args:?}: {stderr}");
    };

    refused(
        &store("missing.db"),
        &["calls"],
        "no mcp-resume store at this path",
    );
    assert!(
        !dir.path().join("missing.db").exists(),
        "nothing was created"
    );

    // Another application's database is left exactly as it was.
    let foreign = dir.path().join("foreign.db");
    rusqlite::Connection::open(&foreign)
        .unwrap()
        .execute_batch("CREATE TABLE notes (body TEXT); INSERT INTO notes VALUES ('mine');")
        .unwrap();
    let before = file_bytes(&foreign);
    refused(
        &store("foreign.db"),
        &["sessions"],
        "database of another application",
    );
    assert_eq!(file_bytes(&foreign), before);

    std::fs::write(
        dir.path().join("text.db"),
        "not a database at all, just text\n",
    )
    .unwrap();
    refused(&store("text.db"), &["summary"], "is not an SQLite database");

    // A store of an earlier schema is not migrated by a read-only look.
    let old = dir.path().join("old.db");
    rusqlite::Connection::open(&old)
        .unwrap()
        .execute_batch("PRAGMA application_id = 1835233394; PRAGMA user_version = 3;")
        .unwrap();
    let before = file_bytes(&old);
    refused(&store("old.db"), &["calls"], "older than the");
    assert_eq!(file_bytes(&old), before);

    refused(
        "memory",
        &["calls"],
        "memory store lives inside the process",
    );

    // A real store, asked for what it does not hold.
    let path = dir.path().join("events.db");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        use mcp_resume::store::EventStore;
        let store = mcp_resume::store::SqliteEventStore::open(&path).unwrap();
        store.close().await.unwrap();
    });
    refused(
        &store("events.db"),
        &["events", "nope"],
        "is not a stream id",
    );
    let unknown = mcp_resume::store::StreamId::random().to_string();
    refused(
        &store("events.db"),
        &["events", &unknown],
        "is not in the store",
    );
    let (code, stdout, _) = inspect(&store("events.db"), &["calls"]);
    assert_eq!((code, stdout.as_str()), (Some(0), "no calls\n"));
}

/// A proxy on a Redis of its own (the default key prefix): `inspect` reads
/// the calls it recorded, and registers no instance of its own.
#[cfg(feature = "redis")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inspect_reads_a_redis_store_the_proxy_wrote() {
    use mcp_resume_testkit::redis_server::RedisServer;

    let redis = RedisServer::start();
    let store = redis.url();
    let upstream = progress_upstream().await;
    let _server = proxy(upstream, &store);
    let client = connect(&_server).await;
    let (id, answer) = call(&client, "stream_progress", json!({ "count": 3 })).await;
    assert!(
        matches!(answer, Ok(ServerResult::CallToolResult(_))),
        "{answer:?}"
    );

    let listed = calls(&store);
    assert_eq!(listed.len(), 1, "{listed:#?}");
    assert_eq!(listed[0]["tool"], "stream_progress");
    assert_eq!(listed[0]["request_id"], id.as_str());
    assert_eq!(listed[0]["outcome"], "result");
    assert_eq!(listed[0]["events"], 4);
    assert!(listed[0]["bytes"].as_u64().unwrap() > 0);
    let stream = listed[0]["stream"].as_str().unwrap().to_owned();
    let events = inspect_json(&store, &["events", &stream]);
    let events = events["events"].as_array().unwrap();
    assert_eq!(events.len(), 4);
    assert_eq!(events[3]["data"]["result"]["isError"], false);
    let session = listed[0]["session"].as_str().unwrap().to_owned();
    let sessions = inspect_json(&store, &["sessions"]);
    assert_eq!(sessions["sessions"][0]["session"], session.as_str());
    assert_eq!(sessions["sessions"][0]["tool_calls"], 1);
    let (code, table, stderr) = inspect(&store, &["summary"]);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(table.contains("stream_progress"), "{table}");

    // Inspecting registered no instance: the proxy's lease is the only one.
    let mut redis_client = redis::Client::open(store.as_str())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let instances: u64 = redis::cmd("ZCARD")
        .arg("mcp-resume:{index}:instances")
        .query_async(&mut redis_client)
        .await
        .unwrap();
    assert_eq!(instances, 1);
}
