//! Rows 1, 2 and the throughput half of 7: the inner service of `net` over
//! loopback HTTP/1.1, bare and behind the layer, measured in interleaved
//! rounds so that drift on a shared machine hits every setup alike.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use http_body_util::BodyExt;

use crate::Plan;
use crate::common::percentile;
use crate::net::{self, Answer, EVENT_BYTES, HttpClient, Setup, epoch, median};
use crate::report::{Report, Row, Series, Target};
use mcp_resume::store::SyncMode;

/// JSON requests per second: `concurrency` clients, each sending the next
/// request when the previous answer has been read, for `window`.
async fn json_rate(
    client: &HttpClient,
    addr: SocketAddr,
    concurrency: usize,
    window: Duration,
) -> f64 {
    let start = Instant::now();
    let until = start + window;
    let answered = net::concurrently(client, concurrency, |client| async move {
        let mut answered = 0u64;
        while Instant::now() < until {
            let response = net::call(&client, addr, Answer::Json).await;
            response.into_body().collect().await.unwrap();
            answered += 1;
        }
        answered
    })
    .await;
    answered.iter().sum::<u64>() as f64 / start.elapsed().as_secs_f64()
}

/// Events per second delivered to `streams` concurrent clients whose
/// producers emit as fast as they can for `window`: every event produced is
/// read, and the clock stops when the last client has read its last one.
async fn flood_rate(
    client: &HttpClient,
    addr: SocketAddr,
    streams: usize,
    window: Duration,
) -> f64 {
    let start = Instant::now();
    let events = net::concurrently(client, streams, |client| async move {
        let response = net::call(&client, addr, Answer::Flood(window)).await;
        net::read_events(response, |_| {}).await
    })
    .await;
    events.iter().sum::<usize>() as f64 / start.elapsed().as_secs_f64()
}

/// Latency of every event, produced to read, in nanoseconds: `streams`
/// producers each emit one event per `period` for `duration`.
async fn paced_latencies(
    client: &HttpClient,
    addr: SocketAddr,
    streams: usize,
    period: Duration,
    duration: Duration,
) -> Vec<u64> {
    let per_stream = net::concurrently(client, streams, |client| async move {
        let response = net::call(&client, addr, Answer::Paced { period, duration }).await;
        let mut latencies = Vec::new();
        net::read_events(response, |data| {
            let now = epoch().elapsed().as_nanos() as u64;
            let stamp = data
                .strip_prefix(b"t=")
                .and_then(|rest| rest.split(|&b| b == b' ').next())
                .and_then(|digits| std::str::from_utf8(digits).ok()?.parse::<u64>().ok())
                .expect("a stamped event");
            latencies.push(now.saturating_sub(stamp));
        })
        .await;
        latencies
    })
    .await;
    per_stream.concat()
}

fn rate(per_second: f64) -> String {
    format!("{per_second:.0}/s")
}

/// One server per setup, each on its own store in `dir`.
async fn servers(
    setups: &[Setup],
    dir: &Path,
) -> Vec<(
    Setup,
    SocketAddr,
    Option<Arc<dyn mcp_resume::store::EventStore>>,
)> {
    let mut servers = Vec::new();
    for &setup in setups {
        let store = setup.store(dir);
        servers.push((setup, net::serve_setup(store.clone()).await, store));
    }
    servers
}

/// Row 1: JSON request/response through the layer against the same service without it.
pub async fn json(report: &mut Report, plan: &Plan, dir: &Path) {
    let servers = servers(&[Setup::NoLayer, Setup::SqliteNormal], dir).await;
    let client = net::client(64);
    let concurrency = 32;
    let mut rates = vec![Vec::new(); servers.len()];
    // Warm-up: connections, caches.
    for (_, addr, _) in &servers {
        json_rate(&client, *addr, concurrency, Duration::from_millis(300)).await;
    }
    // Short rounds, many of them: one round's rate moves by several percent
    // on a shared machine, against a target 3 % below parity.
    for round in 0..plan.rounds * 4 {
        for n in net::round_order(round, servers.len()) {
            let addr = servers[n].1;
            rates[n].push(json_rate(&client, addr, concurrency, plan.window / 2).await);
        }
    }
    let base = median(&mut rates[0]);
    let layer = median(&mut rates[1]);
    report.push(
        Row::new(
            "1. JSON",
            format!("requests/s, {concurrency} clients, layer on SQLite"),
            rate(layer),
        )
        .against(format!("no layer {}", rate(base)), layer / base)
        .ratio_target(Target::AtLeast(0.97)),
    );
}

/// Row 2: raw SSE, 100 streams of 256 B events; the raw rusqlite insert rate;
/// added latency at an offered 10,000 events/s. Returns nothing: rows go to `report`.
pub async fn sse(report: &mut Report, plan: &Plan, dir: &Path) {
    const STREAMS: usize = 100;
    let setups = [
        Setup::NoLayer,
        Setup::Memory,
        Setup::SqliteNormal,
        Setup::SqliteFull,
    ];
    let servers = servers(&setups, dir).await;
    let client = net::client(STREAMS);
    for (_, addr, _) in &servers {
        flood_rate(&client, *addr, STREAMS, Duration::from_millis(200)).await;
    }
    let mut rates = vec![Vec::new(); servers.len()];
    for round in 0..plan.rounds {
        for n in net::round_order(round, servers.len()) {
            let addr = servers[n].1;
            rates[n].push(flood_rate(&client, addr, STREAMS, plan.window).await);
        }
    }
    let rates: Vec<f64> = rates.iter_mut().map(|r| median(r)).collect();

    // The limit for a durable store on this disk: rusqlite inserting the same
    // rows in transactions of 1,000, with nothing else in the way.
    let raw_rows = (rates[2] * plan.window.as_secs_f64()).max(50_000.0) as u64;
    let raw_elapsed = tokio::task::spawn_blocking({
        let path = dir.join("raw-inserts.db");
        move || crate::common::raw_inserts(&path, STREAMS, EVENT_BYTES, raw_rows)
    })
    .await
    .unwrap();
    let raw = raw_rows as f64 / raw_elapsed.as_secs_f64();

    let what = |setup: Setup| {
        format!(
            "events/s, {STREAMS} streams x {EVENT_BYTES} B, {}",
            setup.label()
        )
    };
    report.push(Row::new("2. Raw SSE", what(Setup::NoLayer), rate(rates[0])));
    report.push(
        Row::new("2. Raw SSE", what(Setup::Memory), rate(rates[1]))
            .against(format!("no layer {}", rate(rates[0])), rates[1] / rates[0])
            .ratio_target(Target::AtLeast(0.5)),
    );
    report.push(
        Row::new("2. Raw SSE", what(Setup::SqliteNormal), rate(rates[2]))
            .against(format!("raw rusqlite insert {}", rate(raw)), rates[2] / raw)
            .ratio_target(Target::AtLeast(0.25)),
    );
    report.push(
        Row::new("2. Raw SSE", what(Setup::SqliteFull), rate(rates[3]))
            .against(format!("raw rusqlite insert {}", rate(raw)), rates[3] / raw),
    );
    report.push(
        Row::new(
            "2. Raw SSE",
            format!("raw rusqlite: {STREAMS} streams' rows of {EVENT_BYTES} B, 1,000 per transaction, WAL NORMAL"),
            rate(raw),
        )
        .command("cargo bench --bench e2e (also cargo bench --bench store)"),
    );

    // Added latency at an offered 10,000 events/s: 100 streams, one event every 10 ms each.
    let period = Duration::from_millis(10);
    let mut percentiles = Vec::new();
    for (_, addr, _) in &servers {
        let mut latencies =
            paced_latencies(&client, *addr, STREAMS, period, plan.latency_window).await;
        latencies.sort_unstable();
        percentiles.push((
            percentile(&latencies, 0.5) as f64,
            percentile(&latencies, 0.99) as f64,
            latencies.len(),
        ));
    }
    // The same paced load on this disk written by rusqlite alone, at each
    // sync mode, with SQLite's automatic checkpoints (inside the commit that
    // crosses 1,000 WAL pages) and with none (the WAL only grows).
    let mut alone = Vec::new();
    for sync in [SyncMode::Normal, SyncMode::Full] {
        for checkpoints in [true, false] {
            let path = dir.join(format!("paced-alone-{sync:?}-{checkpoints}.db"));
            let window = plan.latency_window;
            let latencies = tokio::task::spawn_blocking(move || {
                paced_commit_latencies(&path, sync, checkpoints, STREAMS, period, window)
            })
            .await
            .unwrap();
            alone.push(AloneRun {
                sync,
                checkpoints,
                p50: percentile(&latencies, 0.5) as f64,
                p99: percentile(&latencies, 0.99) as f64,
                events: latencies.len(),
            });
        }
    }
    // The better (lower) p99 of rusqlite alone at the setup's sync mode.
    let alone_p99 = |setup: Setup| {
        let sync = setup.sync()?;
        alone
            .iter()
            .filter(|run| run.sync == sync)
            .map(|run| run.p99)
            .reduce(f64::min)
    };
    let (base_p50, base_p99, _) = percentiles[0];
    let micros = |nanos: f64| format!("{:.0} us", nanos / 1e3);
    report.push(Row::new(
        "2. Raw SSE",
        format!(
            "latency produced->read at 10,000 events/s offered, {}",
            Setup::NoLayer.label()
        ),
        format!("p50 {} / p99 {}", micros(base_p50), micros(base_p99)),
    ));
    for (n, setup) in setups.iter().enumerate().skip(1) {
        let (p50, p99, count) = percentiles[n];
        let added99 = p99 - base_p99;
        let mut row = Row::new(
            "2. Raw SSE",
            format!(
                "added latency at 10,000 events/s offered, {} ({count} events)",
                setup.label()
            ),
            format!("p50 {} / p99 {}", micros(p50 - base_p50), micros(added99)),
        );
        if let Some(alone) = alone_p99(*setup) {
            row = row.against(
                format!("rusqlite alone, same load, better p99 {}", micros(alone)),
                added99 / alone,
            );
        }
        report.push(row.value_target("p99 added < 1 ms", Target::AtMost(1e6), added99));
    }
    for run in alone {
        let checkpoints = if run.checkpoints {
            "SQLite's automatic checkpoints"
        } else {
            "no checkpoints"
        };
        report.push(Row::new(
            "2. Raw SSE",
            format!(
                "rusqlite alone, WAL {}, {checkpoints}: the same 10,000 events/s committed as they \
                 come due (one thread, all due events in one transaction; no HTTP, channel or thread \
                 hop), produced to committed, a late wake-up not counted ({} events)",
                run.sync.pragma_value(),
                run.events
            ),
            format!("p50 {} / p99 {}", micros(run.p50), micros(run.p99)),
        ));
    }
    // What a `FULL` commit cannot go under: one WAL append synced to disk.
    let syncs = tokio::task::spawn_blocking({
        let path = dir.join("sync-probe");
        move || append_sync_latencies(&path, 500)
    })
    .await
    .unwrap();
    report.push(
        Row::new(
            "2. Raw SSE",
            "disk: a 4,120 B append (a WAL frame) and fdatasync, in the stores' directory: the floor of a FULL commit",
            format!(
                "p50 {} / p99 {}",
                micros(percentile(&syncs, 0.5) as f64),
                micros(percentile(&syncs, 0.99) as f64)
            ),
        ),
    );
    for (_, _, store) in servers {
        if let Some(store) = store {
            let _ = store.close().await;
        }
    }
}

/// Nanoseconds each of `count` appends of a WAL frame's size to a new file
/// at `path` took to be synced (`fdatasync`), sorted.
fn append_sync_latencies(path: &Path, count: usize) -> Vec<u64> {
    use std::io::Write;
    let mut file = std::fs::File::create(path).unwrap();
    let frame = vec![0x5a_u8; 4_096 + 24];
    let mut latencies: Vec<u64> = (0..count)
        .map(|_| {
            file.write_all(&frame).unwrap();
            let started = Instant::now();
            file.sync_data().unwrap();
            started.elapsed().as_nanos() as u64
        })
        .collect();
    drop(file);
    let _ = std::fs::remove_file(path);
    latencies.sort_unstable();
    latencies
}

/// One run of row 2's paced load by rusqlite alone
/// ([`paced_commit_latencies`]), in nanoseconds.
struct AloneRun {
    sync: SyncMode,
    checkpoints: bool,
    p50: f64,
    p99: f64,
    events: usize,
}

/// Row 2's paced load written by rusqlite alone on this disk: in WAL mode
/// at `sync`, with SQLite's automatic checkpoints or none (`checkpoints`),
/// it commits 256 B events of `streams` streams, one event each per
/// `period` (due times spread evenly), for `duration`. One thread does it
/// all: every event due by the time a commit starts goes into that commit
/// (group commit), with no channel, thread hop or HTTP in the way. Returns
/// nanoseconds from each event's production to its commit, sorted: an
/// event is produced when it is due, or when the thread wakes from the
/// sleep it came due in, if later. So a late timer is not counted, as it is
/// not for the layer's paced producers, which stamp an event when woken.
fn paced_commit_latencies(
    path: &Path,
    sync: SyncMode,
    checkpoints: bool,
    streams: usize,
    period: Duration,
    duration: Duration,
) -> Vec<u64> {
    let mut conn = crate::common::open_raw_events(path, sync);
    if !checkpoints {
        conn.pragma_update(None, "wal_autocheckpoint", 0).unwrap();
    }
    let data = vec![b'x'; EVENT_BYTES];
    // Event n of the run is due `n * spacing` after its start.
    let spacing = (period.as_nanos() as u64 / streams as u64).max(1);
    let total = duration.as_nanos() as u64 / spacing;
    let mut latencies = Vec::with_capacity(total as usize);
    let start = Instant::now();
    let mut committed = 0;
    // When the thread last woke from a sleep: every event not yet committed
    // came due after it started sleeping.
    let mut woke = 0;
    while committed < total {
        let now = start.elapsed().as_nanos() as u64;
        // Events committed..ready are due by now.
        let ready = (now / spacing + 1).min(total);
        if ready == committed {
            std::thread::sleep(Duration::from_nanos(committed * spacing - now));
            woke = start.elapsed().as_nanos() as u64;
            continue;
        }
        let tx = conn.transaction().unwrap();
        {
            let mut insert = tx.prepare_cached(crate::common::RAW_INSERT).unwrap();
            for event in committed..ready {
                let stream = event % streams as u64;
                let seq = event / streams as u64 + 1;
                insert
                    .execute(rusqlite::params![stream as i64, seq as i64, &data])
                    .unwrap();
            }
        }
        tx.commit().unwrap();
        let done = start.elapsed().as_nanos() as u64;
        latencies.extend((committed..ready).map(|event| done - (event * spacing).max(woke)));
        committed = ready;
    }
    drop(conn);
    latencies.sort_unstable();
    latencies
}

/// Row 7, throughput: events/s at 1, 10, 100 and 1,000 concurrent streams.
pub async fn scaling(report: &mut Report, plan: &Plan, dir: &Path) -> Vec<Series> {
    let setups = [
        Setup::NoLayer,
        Setup::Memory,
        Setup::SqliteNormal,
        Setup::SqliteFull,
    ];
    let servers = servers(&setups, dir).await;
    let mut series: Vec<Series> = setups
        .iter()
        .map(|s| Series {
            label: s.label().into(),
            points: Vec::new(),
        })
        .collect();
    for &streams in &plan.scaling_streams {
        let client = net::client(streams);
        for (n, (setup, addr, _)) in servers.iter().enumerate() {
            let rate = flood_rate(&client, *addr, streams, plan.window).await;
            series[n].points.push((streams as f64, rate));
            report.push(Row::new(
                "7. Scaling",
                format!(
                    "events/s, {streams} streams x {EVENT_BYTES} B, {}",
                    setup.label()
                ),
                self::rate(rate),
            ));
        }
    }
    for (_, _, store) in servers {
        if let Some(store) = store {
            let _ = store.close().await;
        }
    }
    series
}
