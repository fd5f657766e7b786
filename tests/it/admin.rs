//! The binary's admin listener, run for real: `mcp-resume proxy
//! --admin-listen` in front of the test kit's progress server (rmcp), driven
//! by raw MCP traffic. `/metrics` must move by exactly what the traffic did
//! (streams, events, resumes and refusals by reason), `/status.json` (the
//! status page's data) must show the same numbers and the streams and
//! resumes themselves, `/healthz` answers while the process serves, and
//! `/readyz` turns `503`, naming the reason, once the SQLite file is deleted.

use std::net::SocketAddr;
use std::time::Duration;

use http::{Method, StatusCode};
use serde_json::{Value, json};

use crate::cli::{Server, sqlite_arg};
use crate::common::sse::{Ev, Req};
use crate::common::{V2025_11_25, guard, wait_until};

/// The progress server on a free loopback port; its `/mcp` URL.
async fn progress_upstream() -> String {
    format!("http://{}/mcp", crate::inspect::progress_upstream().await)
}

/// The proxy with an admin listener, and the admin listener's address
/// (the second line it prints).
async fn start_with_admin(upstream: &str, store: &str) -> (Server, SocketAddr) {
    let server = Server::start(&[
        "proxy",
        "--upstream",
        upstream,
        "--listen",
        "127.0.0.1:0",
        "--admin-listen",
        "127.0.0.1:0",
        "--store",
        store,
    ]);
    let prefix = "mcp-resume admin on http://";
    wait_until("the admin line", || async {
        server.stdout().contains(prefix)
    })
    .await;
    let stdout = server.stdout();
    let line = stdout
        .lines()
        .find(|line| line.starts_with(prefix))
        .unwrap();
    let admin = line[prefix.len()..].parse().expect("an address");
    (server, admin)
}

async fn get(addr: SocketAddr, path: &str) -> (StatusCode, String) {
    let mut response = Req::new(Method::GET, path).send(addr).await;
    (response.status, response.text().await)
}

/// One metric from the exposition text, summed over the samples whose
/// labels include `label` (`key="value"`), if given. Parsed here without
/// the binary's code.
fn metric(exposition: &str, name: &str, label: Option<&str>) -> u64 {
    exposition
        .lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| line.rsplit_once(' '))
        .filter(|(series, _)| {
            let labels = series.strip_prefix(name);
            let labelled_or_bare = labels.is_some_and(|l| l.is_empty() || l.starts_with('{'));
            labelled_or_bare && label.is_none_or(|label| series.contains(label))
        })
        .map(|(_, value)| value.parse::<f64>().expect("a number") as u64)
        .sum()
}

/// The numbers the test follows, read from `/metrics`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Counts {
    opened: u64,
    completed: u64,
    events: u64,
    replayed: u64,
    malformed: u64,
    unknown: u64,
    foreign: u64,
    ended: u64,
}

impl Counts {
    fn read(exposition: &str) -> Self {
        use mcp_resume::metrics::{EVENTS_COMMITTED, RESUMES, STREAMS_ENDED, STREAMS_OPENED};
        let outcome =
            |value: &str| metric(exposition, RESUMES, Some(&format!("outcome=\"{value}\"")));
        Self {
            opened: metric(exposition, STREAMS_OPENED, None),
            completed: metric(exposition, STREAMS_ENDED, Some("end=\"completed\"")),
            events: metric(exposition, EVENTS_COMMITTED, None),
            replayed: outcome("replayed"),
            malformed: outcome("malformed"),
            unknown: outcome("unknown"),
            foreign: outcome("foreign"),
            ended: outcome("ended"),
        }
    }

    /// The same numbers as `/status.json` shows them.
    fn from_status(status: &Value) -> Self {
        let totals = &status["totals"];
        let n = |value: &Value| value.as_u64().unwrap_or_else(|| panic!("a count: {value}"));
        Self {
            opened: n(&totals["streams_opened"]),
            completed: n(&totals["streams_completed"]),
            events: n(&totals["events_committed"]),
            replayed: n(&totals["resumes_replayed"]),
            malformed: n(&totals["refusals"]["malformed"]),
            unknown: n(&totals["refusals"]["unknown"]),
            foreign: n(&totals["refusals"]["foreign"]),
            ended: n(&totals["refusals"]["ended"]),
        }
    }
}

async fn counts(admin: SocketAddr) -> Counts {
    let (status, text) = get(admin, "/metrics").await;
    assert_eq!(status, StatusCode::OK);
    Counts::read(&text)
}

async fn status_json(admin: SocketAddr) -> Value {
    let (status, text) = get(admin, "/status.json").await;
    assert_eq!(status, StatusCode::OK);
    serde_json::from_str(&text).expect("JSON")
}

/// `initialize` and `notifications/initialized`: the session id.
async fn open_session(addr: SocketAddr) -> String {
    let initialize = json!({
        "jsonrpc": "2.0", "id": 0, "method": "initialize",
        "params": {
            "protocolVersion": V2025_11_25, "capabilities": {},
            "clientInfo": { "name": "admin-test", "version": "1.0" },
        },
    });
    let mut response = Req::post("/mcp", &initialize.to_string())
        .version(V2025_11_25)
        .send(addr)
        .await;
    assert_eq!(response.status, StatusCode::OK);
    let session = response.header("mcp-session-id").unwrap().to_owned();
    response.body_to_end().await;
    let initialized = json!({ "jsonrpc": "2.0", "method": "notifications/initialized" });
    let response = Req::post("/mcp", &initialized.to_string())
        .version(V2025_11_25)
        .session(&session)
        .send(addr)
        .await;
    assert_eq!(response.status, StatusCode::ACCEPTED);
    session
}

/// A `stream_progress` call: `count` notifications, `interval_ms` apart.
fn progress_call(id: u64, count: u32, interval_ms: u64) -> String {
    json!({
        "jsonrpc": "2.0", "id": id, "method": "tools/call",
        "params": {
            "name": "stream_progress",
            "arguments": { "count": count, "interval_ms": interval_ms },
            "_meta": { "progressToken": format!("token-{id}") },
        },
    })
    .to_string()
}

/// The events that carry a message (not the priming event).
fn messages(events: Vec<Ev>) -> Vec<Ev> {
    events.into_iter().filter(|e| !e.is_empty_data()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_and_the_status_data_move_by_exactly_what_the_traffic_did() {
    let dir = tempfile::tempdir().unwrap();
    let upstream = progress_upstream().await;
    let (server, admin) = start_with_admin(&upstream, &sqlite_arg(&dir.path().join("e.db"))).await;
    let addr = server.addr;
    let session = open_session(addr).await;
    let before = counts(admin).await;

    // One call read to its end: one stream, its events, completed.
    let mut response = Req::post("/mcp", &progress_call(1, 5, 0))
        .version(V2025_11_25)
        .session(&session)
        .send(addr)
        .await;
    let whole = messages(response.events_to_end().await);
    assert_eq!(whole.len(), 6, "5 notifications and the result: {whole:?}");
    let whole_last = whole.last().unwrap().clone();

    // One call left after its first notification, then resumed from there.
    let mut response = Req::post("/mcp", &progress_call(2, 4, 200))
        .version(V2025_11_25)
        .session(&session)
        .send(addr)
        .await;
    let first = loop {
        let event = response.expect_event().await;
        if !event.is_empty_data() {
            break event;
        }
    };
    drop(response);
    wait_until("the left stream to be detached", || async {
        let status = status_json(admin).await;
        let streams = status["streams"].as_array().unwrap().clone();
        streams
            .iter()
            .any(|s| s["attached"] == false && s["events"].as_u64() >= Some(1))
    })
    .await;
    let mut resumed = Req::get("/mcp")
        .version(V2025_11_25)
        .session(&session)
        .last_event_id(first.id())
        .send(addr)
        .await;
    assert_eq!(resumed.status, StatusCode::OK);
    let rest = messages(resumed.events_to_end().await);
    assert_eq!(rest.first().map(Ev::seq), Some(first.seq() + 1));
    assert_eq!(
        rest.last().map(Ev::seq),
        Some(5),
        "4 notifications and the result"
    );

    // Refusals: two malformed ids, one unknown, one foreign, one at the end
    // of a finished stream.
    let refuse = |last_event_id: String, session: String| async move {
        let response = Req::get("/mcp")
            .version(V2025_11_25)
            .session(&session)
            .last_event_id(&last_event_id)
            .send(addr)
            .await;
        assert_eq!(response.status, StatusCode::BAD_REQUEST, "{last_event_id}");
    };
    refuse("not-an-id".into(), session.clone()).await;
    refuse("zzz.1".into(), session.clone()).await;
    refuse(format!("{}.1", "0".repeat(32)), session.clone()).await;
    refuse(first.id().to_owned(), "another-session".into()).await;
    refuse(whole_last.id().to_owned(), session.clone()).await;

    // The second stream's end is recorded a moment after its last event.
    let expected = Counts {
        opened: before.opened + 2,
        completed: before.completed + 2,
        events: before.events + whole_last.seq() + 5,
        replayed: before.replayed + 1,
        malformed: before.malformed + 2,
        unknown: before.unknown + 1,
        foreign: before.foreign + 1,
        ended: before.ended + 1,
    };
    wait_until("the counts to settle", || async {
        counts(admin).await == expected
    })
    .await;

    // The status data reads the same counters, and lists the resumes,
    // newest first; the second call's stream is listed while it ran.
    let status = status_json(admin).await;
    assert_eq!(Counts::from_status(&status), counts(admin).await);
    let outcomes: Vec<String> = status["recent_resumes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            format!(
                "{}:{}",
                r["outcome"].as_str().unwrap(),
                r["reason"].as_str().unwrap_or("")
            )
        })
        .collect();
    assert_eq!(
        outcomes,
        [
            "refused:ended",
            "refused:foreign",
            "refused:unknown",
            "refused:malformed",
            "refused:malformed",
            "replayed:"
        ]
    );
    let replayed = &status["recent_resumes"][5];
    assert_eq!(replayed["stream"], first.stream()[..8]);
    assert!(replayed["behind"].as_u64().unwrap() <= 4);
    assert_eq!(status["store"], sqlite_arg(&dir.path().join("e.db")));

    // The chart's ring has samples, one a second.
    wait_until("two samples", || async {
        status_json(admin).await["history"]["rates"]
            .as_array()
            .unwrap()
            .len()
            >= 2
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_says_why_once_the_sqlite_file_is_deleted_and_healthz_stays_ok() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("events.db");
    let upstream = progress_upstream().await;
    let (_server, admin) = start_with_admin(&upstream, &sqlite_arg(&path)).await;

    assert_eq!(
        get(admin, "/healthz").await,
        (StatusCode::OK, "ok\n".into())
    );
    assert_eq!(
        get(admin, "/readyz").await,
        (StatusCode::OK, "ready\n".into())
    );

    std::fs::remove_file(&path).unwrap();
    let (status, body) = get(admin, "/readyz").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert!(
        body.starts_with("not ready: the event store failed: "),
        "{body}"
    );
    assert!(body.contains("was deleted or replaced"), "{body}");
    assert!(body.contains(&path.display().to_string()), "{body}");
    assert_eq!(
        get(admin, "/healthz").await,
        (StatusCode::OK, "ok\n".into())
    );
}

#[tokio::test]
async fn the_admin_listener_serves_its_paths_and_nothing_else() {
    let upstream = progress_upstream().await;
    let (_server, admin) = start_with_admin(&upstream, "memory").await;

    let mut page = Req::new(Method::GET, "/").send(admin).await;
    assert_eq!(page.status, StatusCode::OK);
    assert_eq!(
        page.header("content-type"),
        Some("text/html; charset=utf-8")
    );
    let policy = page.header("content-security-policy").unwrap().to_owned();
    assert!(policy.starts_with("default-src 'none'"), "{policy}");
    let html = page.text().await;
    assert!(html.contains("status.json"));
    // One file: nothing for the browser to load besides `status.json`.
    for reference in ["src=", "href=", "url(", "@import"] {
        assert!(
            !html.contains(reference),
            "the page loads something: {reference}"
        );
    }

    let metrics = Req::new(Method::GET, "/metrics").send(admin).await;
    let media_type = metrics.header("content-type").unwrap();
    assert!(
        media_type.starts_with("text/plain; version=0.0.4"),
        "{media_type}"
    );

    let (status, body) = get(admin, "/nope").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(body.contains("/metrics"), "{body}");
    let post = Req::new(Method::POST, "/metrics").send(admin).await;
    assert_eq!(post.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(post.header("allow"), Some("GET, HEAD"));

    // Off unless asked for: no second line.
    let plain = Server::start(&[
        "proxy",
        "--upstream",
        &upstream,
        "--listen",
        "127.0.0.1:0",
        "--store",
        "memory",
    ]);
    guard("a moment", tokio::time::sleep(Duration::from_millis(300))).await;
    assert!(!plain.stdout().contains("admin"), "{}", plain.stdout());
}
