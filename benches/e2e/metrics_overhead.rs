//! Row 2's metrics overhead: the raw SSE flood of row 2 through the layer
//! with a Prometheus recorder receiving its metrics, against the same
//! without any recorder, in the same rounds.
//!
//! A recorder is process-wide once installed, so each server runs on a
//! runtime of its own (two worker threads, like the bench's): the "on"
//! servers' threads have the recorder as their default (`metrics`' local
//! recorder, which the layer's tasks on them record into), the "off" ones
//! have none. The recorder is `metrics-exporter-prometheus`' with the
//! binary's histogram buckets, rendered once a second as a scraper (or the
//! status page) would.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

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

/// Serves `setup` on a runtime of its own, whose threads record into
/// `recorder` when there is one. Returns the server's address; the runtime
/// lives until the process ends.
fn serve_on_own_runtime(
    setup: Setup,
    dir: &Path,
    recorder: Option<&'static PrometheusRecorder>,
) -> SocketAddr {
    let store = setup.store(dir);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut builder = tokio::runtime::Builder::new_multi_thread();
        builder.worker_threads(2).enable_all();
        if let Some(recorder) = recorder {
            builder.on_thread_start(move || {
                // For the thread's whole life: the guard is never dropped.
                std::mem::forget(::metrics::set_default_local_recorder(recorder));
            });
        }
        let runtime = builder.build().expect("a Tokio runtime");
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
    let recorder = prometheus();
    let setups = [Setup::Memory, Setup::SqliteNormal];
    // Per setup: (off, on).
    let servers: Vec<(Setup, SocketAddr, SocketAddr)> = setups
        .iter()
        .map(|&setup| {
            (
                setup,
                serve_on_own_runtime(setup, dir, None),
                serve_on_own_runtime(setup, dir, Some(recorder)),
            )
        })
        .collect();
    let addrs: Vec<SocketAddr> = servers
        .iter()
        .flat_map(|(_, off, on)| [*off, *on])
        .collect();
    let client = net::client(STREAMS);
    for addr in &addrs {
        flood_rate(&client, *addr, STREAMS, Duration::from_millis(200)).await;
    }
    // More rounds than row 2: the target is a few percent, about what one
    // round moves by on a shared machine.
    let rounds = plan.rounds * 3;
    let mut rates = vec![Vec::new(); addrs.len()];
    for round in 0..rounds {
        for n in net::round_order(round, addrs.len()) {
            rates[n].push(flood_rate(&client, addrs[n], STREAMS, plan.window).await);
        }
    }
    let rates: Vec<f64> = rates.iter_mut().map(|r| median(r)).collect();
    let rendered = recorder.handle().render();
    // The "on" servers did record: the flood's events are in the recorder.
    let committed = rendered
        .lines()
        .find_map(|line| line.strip_prefix(mcp_resume::metrics::EVENTS_COMMITTED))
        .and_then(|rest| rest.trim().parse::<f64>().ok())
        .unwrap_or(0.0);
    assert!(committed > 0.0, "the recorder saw no event:\n{rendered}");
    for (n, (setup, _, _)) in servers.iter().enumerate() {
        let (off, on) = (rates[2 * n], rates[2 * n + 1]);
        report.push(
            Row::new(
                "2. Raw SSE",
                format!(
                    "events/s, {STREAMS} streams, {}, metrics recorded (Prometheus recorder, rendered every second)",
                    setup.label()
                ),
                format!("{on:.0}/s"),
            )
            .against(format!("no recorder {off:.0}/s"), on / off)
            .ratio_target(Target::AtLeast(0.97)),
        );
    }
}
