//! The comparative benchmarks: `bash benches/run.sh` (which installs the
//! Python SDK and runs `cargo bench --bench e2e`) writes `BENCHMARKS.md` and
//! the scaling chart `benches/scaling.svg`.
//!
//! Every figure is set beside a baseline measured in the same run, and
//! throughput rounds of the setups compared are interleaved, in an order
//! that alternates from round to round (A B, B A, ...), so drift on a
//! shared machine, and work one setup leaves behind, hit both sides alike.
//! Sections, numbered as in `BENCHMARKS.md`:
//!
//! 1. JSON request/response through the layer (on SQLite) against the same
//!    service without it: 32 clients on keep-alive connections.
//! 2. Raw SSE: an inner service emitting 256 B events as fast as it is
//!    polled, 100 concurrent streams over loopback HTTP/1.1: no layer, the
//!    layer on the memory store, on SQLite `NORMAL` and on SQLite `FULL`;
//!    beside them, in the same rounds, rusqlite alone appending the same
//!    rows in commit order to the store's append table at each sync mode,
//!    one prepared statement, no checkpoints, 1,000, 10,000 or 100,000 rows
//!    per transaction: the fastest at a sync mode is the limit the layer at
//!    that mode is set against.
//!    Latency: 100 streams each producing an event every 10 ms (10,000
//!    events/s offered), each event stamped when produced and timed when
//!    the client has parsed it; "added" is the percentile minus the same
//!    percentile without the layer. Beside them, the same paced load
//!    written by rusqlite alone at each sync mode, with SQLite's automatic
//!    checkpoints and with none, committed in one thread as events come due
//!    (no HTTP, channel or thread hop): what SQLite itself gives at that
//!    load on this disk, which the `SQLite` rows' added p99 is set against.
//!    And how long this disk takes to sync one appended WAL frame: what a
//!    `FULL` commit waits for at least.
//!    And the cost of metrics: the same flood through the layer (memory
//!    store, SQLite `NORMAL`) with a Prometheus recorder receiving the
//!    layer's metrics, against the recorder switched off, on the same
//!    servers in alternating runs (the median of each round's ratio).
//! 3. rmcp's `StreamableHttpService` alone against behind the layer on
//!    SQLite: rmcp's client, 20 tool calls at once, 1,000 progress
//!    notifications each, timed until every result and notification arrived.
//! 4. The same workload against the Python SDK (`mcp` 2.3.0) with its
//!    example in-memory event store, and against the same Python server
//!    without a store behind `mcp-resume proxy` on SQLite.
//! 5. A resume through the layer on SQLite of 1,000 and of 10,000 events,
//!    timed to the first replayed event and to the end, in a file of 10,000
//!    events and in one of 1,000,000.
//! 6. Resident memory of the server process with 10,000 streams attached
//!    (producers idle) and after their clients left, minus the same without
//!    the layer (negative, as measured, if the run with the layer took less).
//! 7. Events/s at 1, 10, 100 and 1,000 streams; resume times as the file
//!    grows to 10,000,000 events. Drawn in the chart.
//!
//! `BENCHMARKS.md` opens with a summary (its `## Summary` section, between
//! HTML comments that mark it): machine, date, commit, the targets met and
//! the headline rows, for the README to link to or quote.
//!
//! Environment: `MCP_RESUME_BENCH_ONLY=json,sse,metrics,rmcp,python,resume,memory,scaling`
//! runs some sections; `MCP_RESUME_BENCH_QUICK=1` runs a small version of
//! everything (a smoke test: it writes under `target/` instead);
//! `MCP_RESUME_BENCH_PYTHON` and `MCP_RESUME_BENCH_PY_EXAMPLE` (set by
//! `benches/run.sh`) enable row 4.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

#[path = "../common/mod.rs"]
mod common;
mod mcp;
mod memory;
mod metrics_overhead;
mod net;
mod raw;
mod report;
mod resume;

use mcp_resume_testkit::progress_server;
use report::{Panel, Report};

/// How much of everything to run.
pub struct Plan {
    /// Interleaved rounds per setup for throughput rows.
    pub rounds: usize,
    /// How long producers produce in one throughput round.
    pub window: Duration,
    /// How long the paced latency run lasts.
    pub latency_window: Duration,
    pub scaling_streams: Vec<usize>,
    pub replay_store_sizes: Vec<u64>,
    pub resume_repeats: usize,
    /// Interleaved rounds per server for row 3. A round of rmcp's is a
    /// fifth of a second, so a stall of the shared machine moves one round's
    /// rate by a third: fifteen rounds (6 s in all) keep a few such rounds
    /// out of the median.
    pub rmcp_rounds: usize,
    /// Interleaved rounds per server for row 4, whose rounds last seconds
    /// each (the Python SDK serves about 6,000 notifications/s).
    pub mcp_rounds: usize,
    pub memory_streams: usize,
}

impl Plan {
    fn full() -> Plan {
        Plan {
            rounds: 3,
            window: Duration::from_millis(1500),
            latency_window: Duration::from_secs(3),
            scaling_streams: vec![1, 10, 100, 1_000],
            replay_store_sizes: vec![10_000, 100_000, 1_000_000, 10_000_000],
            resume_repeats: 9,
            rmcp_rounds: 15,
            mcp_rounds: 7,
            memory_streams: 10_000,
        }
    }

    fn quick() -> Plan {
        Plan {
            rounds: 1,
            window: Duration::from_millis(300),
            latency_window: Duration::from_millis(500),
            scaling_streams: vec![1, 10, 100],
            replay_store_sizes: vec![10_000, 100_000],
            resume_repeats: 3,
            rmcp_rounds: 1,
            mcp_rounds: 1,
            memory_streams: 500,
        }
    }
}

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines().find_map(|l| {
                l.strip_prefix("model name")
                    .map(|m| m.trim_start_matches([' ', '\t', ':']).to_string())
            })
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    format!("{cores} cores ({cpu})")
}

/// What `program` with `args` prints, trimmed; `None` if it cannot run or fails.
fn output_of(program: &str, args: &[&str]) -> Option<String> {
    let output = std::process::Command::new(program)
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .ok()
        .filter(|output| output.status.success())?;
    Some(String::from_utf8_lossy(&output.stdout).trim().to_string())
}

/// The commit the run measured, short, and whether tracked files differed from it.
fn commit() -> String {
    let Some(head) = output_of("git", &["rev-parse", "--short=7", "HEAD"]) else {
        return "unknown (not a git checkout)".into();
    };
    match output_of("git", &["status", "--porcelain", "--untracked-files=no"]) {
        Some(changes) if changes.is_empty() => head,
        _ => format!("{head} with uncommitted changes"),
    }
}

fn main() {
    if let Ok(setup) = std::env::var(memory::CHILD_ENV) {
        memory::child(&setup);
        return;
    }
    let quick = std::env::var("MCP_RESUME_BENCH_QUICK").is_ok_and(|v| v == "1");
    let plan = if quick { Plan::quick() } else { Plan::full() };
    let only = std::env::var("MCP_RESUME_BENCH_ONLY").ok();
    let runs = |section: &str| {
        only.as_deref()
            .is_none_or(|only| only.split(',').any(|s| s.trim() == section))
    };
    let python = match (
        std::env::var_os("MCP_RESUME_BENCH_PYTHON"),
        std::env::var_os("MCP_RESUME_BENCH_PY_EXAMPLE"),
    ) {
        (Some(interpreter), Some(example_store)) => Some(mcp::Python {
            interpreter: interpreter.into(),
            example_store: example_store.into(),
        }),
        _ => None,
    };

    let started = Instant::now();
    let dir = common::scratch_dir("e2e");
    let rt = common::runtime();
    let mut report = Report {
        machine: machine(),
        date: output_of("date", &["-u", "+%Y-%m-%d"]).unwrap_or_else(|| "an unknown date".into()),
        commit: commit(),
        ..Report::default()
    };
    rt.block_on(async {
        net::epoch();
        if runs("json") {
            raw::json(&mut report, &plan, &dir).await;
        }
        if runs("sse") {
            raw::sse(&mut report, &plan, &dir).await;
        }
        if runs("metrics") {
            metrics_overhead::overhead(&mut report, &plan, &dir).await;
        }
        let mut rmcp_layer = None;
        if runs("rmcp") {
            rmcp_layer = Some(mcp::rmcp(&mut report, &plan, &dir).await);
        }
        if runs("python") {
            match &python {
                Some(python) => mcp::python(&mut report, &plan, &dir, python, rmcp_layer).await,
                None => report.note(
                    "Row 4 (Python SDK) did not run: it needs MCP_RESUME_BENCH_PYTHON and MCP_RESUME_BENCH_PY_EXAMPLE, which `bash benches/run.sh` sets up.",
                ),
            }
        }
        if runs("resume") {
            let series = resume::resume(&mut report, &plan, &dir).await;
            report.panels.push(Panel {
                title: "Resume time as the store grows".into(),
                x_label: "events stored in the SQLite file".into(),
                y_label: "milliseconds".into(),
                series,
                log_y: true,
            });
        }
        if runs("memory") {
            memory::memory(&mut report, &plan, &dir).await;
        }
        if runs("scaling") {
            let series = raw::scaling(&mut report, &plan, &dir).await;
            report.panels.insert(0, Panel {
                title: "SSE events/s by concurrent streams (256 B)".into(),
                x_label: "concurrent streams".into(),
                y_label: "events per second".into(),
                series,
                log_y: false,
            });
        }
    });
    report.seconds = started.elapsed().as_secs_f64();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let (markdown, chart): (PathBuf, PathBuf) = if quick || only.is_some() {
        let out = root.join("target/e2e");
        std::fs::create_dir_all(&out).unwrap();
        (out.join("BENCHMARKS.md"), out.join("scaling.svg"))
    } else {
        (root.join("BENCHMARKS.md"), root.join("benches/scaling.svg"))
    };
    report.write(&markdown, &chart);
    drop(rt);
    let _ = std::fs::remove_dir_all(&dir);
}
