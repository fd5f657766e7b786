//! Row 2's metrics overhead: the raw SSE flood of row 2 through the layer
//! with a Prometheus recorder receiving its metrics, against the same
//! without, on the same server in alternating runs.
//!
//! Each setup is served once, on a runtime of its own (two worker threads,
//! like the bench's) whose threads have a [`Switch`] as their default
//! recorder (`metrics`' local recorder, which the layer's tasks on them
//! record into). Between runs the switch turns the Prometheus recorder on
//! or off: the runs compared differ in the recorder alone, not in which
//! server, runtime or allocation they ran on. Off, the switch hands out
//! no-op handles, as `metrics` does with no recorder installed, at the cost
//! of one atomic load per metric. The recorder is
//! `metrics-exporter-prometheus`' with the binary's histogram buckets,
//! rendered once a second as a scraper (or the status page) would.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use metrics::{Counter, Gauge, Histogram, Key, KeyName, Metadata, Recorder, SharedString, Unit};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusRecorder};

use crate::Plan;
use crate::net::{self, Setup, median};
use crate::raw::flood_rate;
use crate::report::{Report, Row, Target};

const STREAMS: usize = 100;

/// The binary's buckets for `_seconds` histograms.
const SECONDS_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    60.0, 300.0, 3600.0,
];

/// A recorder that passes metrics to Prometheus while on, and drops them
/// while off. The layer registers a metric at each use (it keeps no
/// handles), so the switch takes effect from the next use.
struct Switch {
    prometheus: &'static PrometheusRecorder,
    on: AtomicBool,
}

impl Switch {
    fn set(&self, on: bool) {
        self.on.store(on, Ordering::SeqCst);
    }

    fn is_on(&self) -> bool {
        self.on.load(Ordering::Relaxed)
    }
}

impl Recorder for Switch {
    fn describe_counter(&self, key: KeyName, unit: Option<Unit>, description: SharedString) {
        self.prometheus.describe_counter(key, unit, description);
    }

    fn describe_gauge(&self, key: KeyName, unit: Option<Unit>, description: SharedString) {
        self.prometheus.describe_gauge(key, unit, description);
    }

    fn describe_histogram(&self, key: KeyName, unit: Option<Unit>, description: SharedString) {
        self.prometheus.describe_histogram(key, unit, description);
    }

    fn register_counter(&self, key: &Key, metadata: &Metadata<'_>) -> Counter {
        if self.is_on() {
            self.prometheus.register_counter(key, metadata)
        } else {
            Counter::noop()
        }
    }

    fn register_gauge(&self, key: &Key, metadata: &Metadata<'_>) -> Gauge {
        if self.is_on() {
            self.prometheus.register_gauge(key, metadata)
        } else {
            Gauge::noop()
        }
    }

    fn register_histogram(&self, key: &Key, metadata: &Metadata<'_>) -> Histogram {
        if self.is_on() {
            self.prometheus.register_histogram(key, metadata)
        } else {
            Histogram::noop()
        }
    }
}

/// Serves `setup` on a runtime of its own, whose threads record into
/// `recorder`. Returns the server's address; the runtime lives until the
/// process ends.
fn serve_on_own_runtime(setup: Setup, dir: &Path, recorder: &'static Switch) -> SocketAddr {
    let store = setup.store(dir);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .on_thread_start(move || {
                // For the thread's whole life: the guard is never dropped.
                std::mem::forget(::metrics::set_default_local_recorder(recorder));
            })
            .build()
            .expect("a Tokio runtime");
        runtime.block_on(async move {
            tx.send(net::serve_setup(store).await).unwrap();
            std::future::pending::<()>().await
        });
    });
    rx.recv().expect("the server's address")
}

/// The Prometheus recorder, and a thread rendering it once a second.
fn prometheus() -> &'static PrometheusRecorder {
    let recorder = PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), SECONDS_BUCKETS)
        .expect("buckets")
        .build_recorder();
    let recorder: &'static PrometheusRecorder = Box::leak(Box::new(recorder));
    let handle = recorder.handle();
    std::thread::spawn(move || {
        loop {
            std::thread::sleep(Duration::from_secs(1));
            handle.run_upkeep();
            std::hint::black_box(handle.render());
        }
    });
    recorder
}

/// Events/s through the layer with the Prometheus recorder against without
/// a recorder, on the memory store and on SQLite `NORMAL`.
pub async fn overhead(report: &mut Report, plan: &Plan, dir: &Path) {
    let prometheus = prometheus();
    let switch: &'static Switch = Box::leak(Box::new(Switch {
        prometheus,
        on: AtomicBool::new(false),
    }));
    let setups = [Setup::Memory, Setup::SqliteNormal];
    let servers: Vec<(Setup, SocketAddr)> = setups
        .iter()
        .map(|&setup| (setup, serve_on_own_runtime(setup, dir, switch)))
        .collect();
    let client = net::client(STREAMS);
    for (_, addr) in &servers {
        flood_rate(&client, *addr, STREAMS, Duration::from_millis(200)).await;
    }
    // More rounds than row 2: the target is a few percent, less than one
    // run moves by on a shared machine. Each round measures every server
    // off and on, in an order that alternates.
    let rounds = plan.rounds * 3;
    // Per server: the rates off and on, a pair per round.
    let mut rates = vec![Vec::with_capacity(rounds); servers.len()];
    for round in 0..rounds {
        let mut this_round = vec![(0.0, 0.0); servers.len()];
        for n in net::round_order(round, 2 * servers.len()) {
            let (server, on) = (n / 2, n % 2 == 1);
            switch.set(on);
            let rate = flood_rate(&client, servers[server].1, STREAMS, plan.window).await;
            let (off_rate, on_rate) = &mut this_round[server];
            *if on { on_rate } else { off_rate } = rate;
        }
        for (server, pair) in this_round.into_iter().enumerate() {
            rates[server].push(pair);
        }
    }
    switch.set(false);
    let rendered = prometheus.handle().render();
    // The runs with the switch on did record: the flood's events are in the recorder.
    let committed = rendered
        .lines()
        .find_map(|line| line.strip_prefix(mcp_resume::metrics::EVENTS_COMMITTED))
        .and_then(|rest| rest.trim().parse::<f64>().ok())
        .unwrap_or(0.0);
    assert!(committed > 0.0, "the recorder saw no event:\n{rendered}");
    for ((setup, _), pairs) in servers.iter().zip(&rates) {
        // The ratio of each round's two runs, then the median of those:
        // drift over the run (the machine, the store's file) cancels.
        let mut ratios: Vec<f64> = pairs.iter().map(|(off, on)| on / off).collect();
        let ratio = median(&mut ratios);
        let off = median(&mut pairs.iter().map(|(off, _)| *off).collect::<Vec<_>>());
        let on = median(&mut pairs.iter().map(|(_, on)| *on).collect::<Vec<_>>());
        report.push(
            Row::new(
                "2. Raw SSE",
                format!(
                    "events/s, {STREAMS} streams, {}, metrics recorded (Prometheus recorder, rendered every second)",
                    setup.label()
                ),
                format!("{on:.0}/s"),
            )
            .against(format!("recorder switched off {off:.0}/s"), ratio)
            .ratio_target(Target::AtLeast(0.97)),
        );
    }
}
