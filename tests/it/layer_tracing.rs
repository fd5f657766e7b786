//! `tracing` events (docs/contract.md, rule 15): the layer reports stream start,
//! detach, resume (with the replayed count), completion, rejection and
//! store errors. Messages are not part of the contract; the test checks that
//! each step produces events from the crate, that the resume reports a
//! replayed count, and that store errors are warnings or errors.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::common::sse::Req;
use crate::common::store::{FailingStore, ops};
use crate::common::{V2025_06_18, serve_scripted, stream_of, wait_state, wait_until};
use mcp_resume::ResumabilityLayer;
use mcp_resume::store::{EventStore, StreamState};
use tracing::Level;
use tracing::field::{Field, Visit};
use tracing_subscriber::layer::{Context, SubscriberExt};

#[derive(Clone, Debug)]
struct Captured {
    level: Level,
    target: String,
    fields: Vec<(String, String)>,
}

#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<Captured>>>);

struct Fields(Vec<(String, String)>);

impl Visit for Fields {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0
            .push((field.name().to_string(), format!("{value:?}")));
    }
}

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for Capture {
    fn on_event(&self, event: &tracing::Event<'_>, _ctx: Context<'_, S>) {
        let mut fields = Fields(Vec::new());
        event.record(&mut fields);
        self.0.lock().unwrap().push(Captured {
            level: *event.metadata().level(),
            target: event.metadata().target().to_string(),
            fields: fields.0,
        });
    }
}

impl Capture {
    fn ours(&self) -> Vec<Captured> {
        self.0
            .lock()
            .unwrap()
            .iter()
            .filter(|e| e.target.starts_with("mcp_resume"))
            .cloned()
            .collect()
    }

    /// Waits for at least one new event of the crate after `seen`, lets
    /// stragglers of the same step arrive, and returns the new ones.
    async fn step(&self, what: &str, seen: &mut usize) -> Vec<Captured> {
        wait_until(&format!("a tracing event for {what}"), || async {
            self.ours().len() > *seen
        })
        .await;
        tokio::time::sleep(Duration::from_millis(30)).await;
        let all = self.ours();
        let new = all[*seen..].to_vec();
        *seen = all.len();
        new
    }
}

fn has_field(events: &[Captured], name: &str) -> bool {
    events
        .iter()
        .any(|e| e.fields.iter().any(|(field, _)| field.contains(name)))
}

// current_thread runtime: every task the layer spawns runs on this thread,
// under the thread-local subscriber set below.
#[tokio::test(flavor = "current_thread")]
async fn tracing_reports_every_step() {
    let capture = Capture::default();
    // While one subscriber is registered, tracing-core caches a callsite's
    // interest from the subscriber of whichever thread hits it first: a test
    // running beside this one, without a subscriber, would make it `never`
    // and this test's events would be lost. With a second one registered
    // for the whole process, every callsite asks them all.
    static SECOND_SUBSCRIBER: std::sync::OnceLock<tracing::Dispatch> = std::sync::OnceLock::new();
    SECOND_SUBSCRIBER
        .get_or_init(|| tracing::Dispatch::new(tracing::subscriber::NoSubscriber::default()));
    let _guard =
        tracing::subscriber::set_default(tracing_subscriber::registry().with(capture.clone()));
    let failing = FailingStore::new();
    let store: Arc<dyn EventStore> = failing.clone();
    let layer = ResumabilityLayer::new(store.clone());
    let (script, served) = serve_scripted(&layer).await;
    let mut seen = 0;

    // Start.
    let mut resp = Req::post("/mcp", r#"{"jsonrpc":"2.0","id":1,"method":"x"}"#)
        .version(V2025_06_18)
        .session("s1")
        .send(served.addr)
        .await;
    let inner = script.next_stream().await;
    assert!(inner.event("one").await);
    let first = resp.expect_event().await;
    capture.step("stream start", &mut seen).await;

    // Detach.
    drop(resp);
    assert!(inner.event("two").await);
    assert!(inner.event("three").await);
    capture.step("detach", &mut seen).await;

    // Completion.
    inner.close();
    wait_state(&store, stream_of(first.id()), StreamState::Complete).await;
    capture.step("completion", &mut seen).await;

    // Resume, with the replayed count.
    let mut resumed = Req::get("/mcp")
        .version(V2025_06_18)
        .session("s1")
        .last_event_id(first.id())
        .send(served.addr)
        .await;
    assert_eq!(resumed.events_to_end().await.len(), 2);
    let events = capture.step("resume", &mut seen).await;
    assert!(
        has_field(&events, "replayed"),
        "no replayed count: {events:#?}"
    );

    // Rejection.
    let mut refused = Req::get("/mcp")
        .version(V2025_06_18)
        .session("s1")
        .last_event_id("bogus")
        .send(served.addr)
        .await;
    assert_eq!(refused.status, http::StatusCode::BAD_REQUEST);
    refused.body_to_end().await;
    capture.step("rejection", &mut seen).await;

    // Store error.
    failing.fail(ops::ALL);
    let mut resp = Req::post("/mcp", r#"{"jsonrpc":"2.0","id":2,"method":"x"}"#)
        .version(V2025_06_18)
        .session("s1")
        .send(served.addr)
        .await;
    let inner = script.next_stream().await;
    inner.close();
    resp.body_to_end().await;
    let events = capture.step("a store error", &mut seen).await;
    assert!(
        events.iter().any(|e| e.level <= Level::WARN),
        "store error not logged as a warning or error: {events:#?}"
    );
}
