//! The admin listener's server: its accept loop, its limits, the sampler,
//! and the Prometheus recorder it renders.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use mcp_resume::ResumabilityLayer;
use mcp_resume::store::EventStore;
use metrics_exporter_prometheus::{BuildError, Matcher, PrometheusBuilder, PrometheusHandle};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;

use super::history::History;
use super::routes;
use super::status;

/// The status page lists at most this many live streams, the newest; its
/// counts cover all of them.
pub const STATUS_STREAMS: usize = 100;
/// The chart's ring: this many samples, one a second (five minutes).
pub const HISTORY_SAMPLES: usize = 300;
/// How often the sampler runs: the chart's resolution, and how often the
/// recorder's histograms are brought up to date.
const SAMPLE_INTERVAL: Duration = Duration::from_secs(1);
/// At most this many admin connections at once; more wait to be accepted.
const MAX_CONNECTIONS: usize = 32;
/// A connection that does not send a request's head within this is closed.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// A connection is closed after this long whatever it does, so a client
/// that stops reading an answer cannot hold a place forever (the page's
/// browser reconnects on its next poll).
const CONNECTION_LIFETIME: Duration = Duration::from_secs(120);
/// How long to wait after an accept error that is not one connection's.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(250);
/// `/readyz` reports a store that does not answer its health check within
/// this as not ready.
pub(super) const READINESS_TIMEOUT: Duration = Duration::from_secs(2);

/// Histogram buckets of the metrics in seconds: from half a millisecond (a
/// commit) to an hour (a session).
const SECONDS_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    60.0, 300.0, 900.0, 3600.0,
];
/// Histogram buckets of events replayed per resume.
const EVENT_BUCKETS: &[f64] = &[
    0.0, 1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0, 1000.0, 2000.0, 5000.0, 10000.0,
];

/// Installs the Prometheus recorder for the whole process, with buckets
/// for the histograms (rendered as Prometheus histograms, not summaries),
/// and describes mcp-resume's metrics to it. Call it once, before the
/// layer records anything.
pub fn install_recorder() -> Result<PrometheusHandle, BuildError> {
    let seconds = Matcher::Suffix("_seconds".into());
    let replayed = Matcher::Full(mcp_resume::metrics::RESUME_REPLAYED_EVENTS.into());
    let recorder = PrometheusBuilder::new()
        .set_buckets_for_metric(seconds, SECONDS_BUCKETS)?
        .set_buckets_for_metric(replayed, EVENT_BUCKETS)?
        .install_recorder()?;
    mcp_resume::metrics::describe();
    Ok(recorder)
}

/// What the admin routes read.
pub(super) struct State {
    pub(super) layer: ResumabilityLayer,
    pub(super) store: Arc<dyn EventStore>,
    /// The store's spec, as the page shows it.
    pub(super) store_spec: String,
    pub(super) recorder: PrometheusHandle,
    history: Mutex<History>,
    started: Instant,
}

impl State {
    fn history(&self) -> MutexGuard<'_, History> {
        // Each update is one push: a poisoned lock still holds a valid ring.
        self.history.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Brings the histograms up to date and adds a point to the chart.
    fn sample(&self) {
        self.recorder.run_upkeep();
        let point = status::point(&self.recorder.render(), SystemTime::now());
        self.history().push(point);
    }

    /// `/status.json`: the counters from the same rendering `/metrics`
    /// serves, the layer's snapshot, and the chart's rates.
    pub(super) fn status(&self) -> serde_json::Value {
        let totals = status::totals(&self.recorder.render());
        let snapshot = self.layer.snapshot(STATUS_STREAMS);
        let rates = self.history().rates();
        let context = status::Context {
            store: &self.store_spec,
            uptime: self.started.elapsed(),
            stream_limit: STATUS_STREAMS,
            sample_interval: SAMPLE_INTERVAL,
            history_window: SAMPLE_INTERVAL * HISTORY_SAMPLES as u32,
        };
        status::document(&context, totals, &snapshot, &rates)
    }
}

/// The running admin listener; stopped when dropped.
pub struct Admin {
    addr: SocketAddr,
    tasks: Vec<JoinHandle<()>>,
}

impl Admin {
    /// Serves the admin routes on `listener` and starts the sampler.
    pub fn start(
        listener: TcpListener,
        layer: ResumabilityLayer,
        store_spec: String,
        recorder: PrometheusHandle,
    ) -> std::io::Result<Self> {
        let addr = listener.local_addr()?;
        let state = Arc::new(State {
            store: layer.store().clone(),
            layer,
            store_spec,
            recorder,
            history: Mutex::new(History::new(HISTORY_SAMPLES)),
            started: Instant::now(),
        });
        let sampler = tokio::spawn(sample_every_second(state.clone()));
        let server = tokio::spawn(accept(listener, state));
        Ok(Self {
            addr,
            tasks: vec![sampler, server],
        })
    }

    /// The address it serves on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for Admin {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

async fn sample_every_second(state: Arc<State>) {
    let mut ticks = tokio::time::interval(SAMPLE_INTERVAL);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        state.sample();
    }
}

/// Accepts connections, at most [`MAX_CONNECTIONS`] at once, each served
/// over HTTP/1.1 for at most [`CONNECTION_LIFETIME`].
async fn accept(listener: TcpListener, state: Arc<State>) {
    let places = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let Ok(place) = places.clone().acquire_owned().await else {
            return; // Never closed.
        };
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(error) => {
                tracing::debug!(%error, "admin listener: accept failed");
                tokio::time::sleep(ACCEPT_BACKOFF).await;
                continue;
            }
        };
        let state = state.clone();
        tokio::spawn(async move {
            let _place = place;
            let service = service_fn(move |request| routes::answer(state.clone(), request));
            let mut http = http1::Builder::new();
            http.timer(TokioTimer::new())
                .header_read_timeout(HEADER_READ_TIMEOUT);
            let connection = http.serve_connection(TokioIo::new(stream), service);
            match tokio::time::timeout(CONNECTION_LIFETIME, connection).await {
                Ok(Ok(())) => {}
                Ok(Err(error)) => tracing::debug!(%error, "admin connection failed"),
                Err(_) => tracing::debug!("admin connection closed after {CONNECTION_LIFETIME:?}"),
            }
        });
    }
}
