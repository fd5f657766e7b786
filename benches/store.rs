//! Event store benchmarks: `cargo bench --bench store`.
//!
//! - `append/*`: events per second committed by [`SqliteEventStore`] with 1
//!   and 100 concurrent streams, each caller awaiting its own commit, for
//!   256 B and 4 KiB events; beside them, `append/raw_rusqlite/*`, the rate at
//!   which rusqlite alone appends the same rows in commit order to the
//!   store's append table, in large transactions at the same sync mode
//!   (`RAW`): the limit for a durable store on this disk. The memory store is
//!   shown for scale.
//! - `replay/*`: reading 10,000 events after a position, in a file holding
//!   10,000 events and in one holding 1,000,000.
//!
//! At the end it prints the ratios the targets are stated in, computed from
//! criterion's estimates of this same run.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput};

mod common;
use common::{RawWrites, mean_seconds, raw_inserts, runtime, scratch_dir, timed_appends};
use mcp_resume::store::{
    self, EventStore, MemoryEventStore, NewEvent, NewStream, Retention, SqliteOptions, StreamId,
    StreamKind, SyncMode,
};

const SIZES: [usize; 2] = [256, 4096];
const CONCURRENCY: [usize; 2] = [1, 100];

/// How the raw baseline appends: at the store's default sync mode, 10,000
/// rows per transaction, one of the shapes the end-to-end bench tries
/// (`RawWrites::candidates`).
const RAW: RawWrites = RawWrites {
    sync: SyncMode::Normal,
    rows_per_commit: 10_000,
};

/// Appends in the throughput runs are never trimmed, as the raw baseline never deletes.
fn unbounded() -> Retention {
    Retention::new().max_events_per_stream(u64::MAX)
}

fn append_benches(c: &mut Criterion, rt: &tokio::runtime::Runtime, dir: &Path) {
    let mut group = c.benchmark_group("append");
    group.measurement_time(Duration::from_secs(6));
    for size in SIZES {
        for streams in CONCURRENCY {
            let label = format!("{size}B/{streams}streams");
            group.throughput(Throughput::Elements(streams as u64));
            let path = dir.join(format!("append-{size}-{streams}.db"));
            let sqlite: Arc<dyn EventStore> = {
                let _guard = rt.enter();
                Arc::new(
                    SqliteOptions::new(&path)
                        .retention(unbounded())
                        .open()
                        .unwrap(),
                )
            };
            group.bench_function(BenchmarkId::new("sqlite_normal", &label), |b| {
                b.to_async(rt)
                    .iter_custom(|iters| timed_appends(sqlite.clone(), streams, size, iters));
            });
            rt.block_on(sqlite.close()).unwrap();
            let memory: Arc<dyn EventStore> =
                Arc::new(MemoryEventStore::with_retention(unbounded()));
            group.bench_function(BenchmarkId::new("memory", &label), |b| {
                b.to_async(rt)
                    .iter_custom(|iters| timed_appends(memory.clone(), streams, size, iters));
            });
            let raw_path = dir.join(format!("raw-{size}-{streams}.db"));
            group.bench_function(BenchmarkId::new("raw_rusqlite", &label), |b| {
                b.iter_custom(|iters| {
                    let rows = iters * streams as u64;
                    raw_inserts(&raw_path, RAW, streams, size, rows, Duration::MAX).1
                });
            });
        }
    }
    group.finish();
}

/// A store holding `total` events of 256 B: one stream of 10,000 to replay,
/// and the rest spread over other streams of 10,000 events each.
fn replay_fixture(
    rt: &tokio::runtime::Runtime,
    path: &Path,
    total: u64,
) -> (Arc<dyn EventStore>, StreamId) {
    let _guard = rt.enter();
    let store: Arc<dyn EventStore> = Arc::new(
        SqliteOptions::new(path)
            .retention(unbounded())
            .open()
            .unwrap(),
    );
    let target = rt.block_on(async {
        let data = bytes::Bytes::from(vec![b'x'; 256]);
        let mut target = None;
        for _ in 0..total / 10_000 {
            let id = store
                .create_stream(NewStream::new(StreamKind::PostResponse))
                .await
                .unwrap();
            for _ in 0..10 {
                store
                    .append(id, vec![NewEvent::message(data.clone()); 1_000])
                    .await
                    .unwrap();
            }
            target.get_or_insert(id);
        }
        store.flush().await.unwrap();
        target.unwrap()
    });
    (store, target)
}

fn replay_benches(c: &mut Criterion, rt: &tokio::runtime::Runtime, dir: &Path) {
    let mut group = c.benchmark_group("replay");
    group.throughput(Throughput::Elements(10_000));
    group.sample_size(20);
    for total in [10_000u64, 1_000_000] {
        let (store, stream) = replay_fixture(rt, &dir.join(format!("replay-{total}.db")), total);
        group.bench_function(
            BenchmarkId::new("sqlite_10k_events", format!("store_{total}")),
            |b| {
                b.to_async(rt).iter(|| async {
                    let mut batches = store::replay(store.clone(), stream, 0);
                    let mut count = 0;
                    while let Some(batch) = batches.next_batch().await {
                        count += batch.unwrap().len();
                    }
                    assert_eq!(count, 10_000);
                });
            },
        );
        rt.block_on(store.close()).unwrap();
    }
    group.finish();
}

fn print_ratios() {
    println!("\n== store benchmark summary (this run) ==");
    println!(
        "{:<28} {:>14} {:>14} {:>14} {:>8}",
        "append", "sqlite ev/s", "raw ev/s", "memory ev/s", "ratio"
    );
    for size in SIZES {
        for streams in CONCURRENCY {
            let label = format!("{size}B/{streams}streams");
            let rate =
                |function| mean_seconds("append", function, &label).map(|s| streams as f64 / s);
            let (sqlite, raw, memory) =
                (rate("sqlite_normal"), rate("raw_rusqlite"), rate("memory"));
            if sqlite.is_none() && raw.is_none() && memory.is_none() {
                continue;
            }
            // A benchmark filtered out of this run shows as "-".
            let show = |rate: Option<f64>| rate.map_or("-".to_string(), |r| format!("{r:.0}"));
            let ratio = sqlite
                .zip(raw)
                .map_or("-".to_string(), |(s, r)| format!("{:.2}", s / r));
            println!(
                "{label:<28} {:>14} {:>14} {:>14} {ratio:>8}",
                show(sqlite),
                show(raw),
                show(memory)
            );
        }
    }
    println!("target: 256B and 4096B with 100 streams, sqlite/raw >= 0.50");
    let small = mean_seconds("replay", "sqlite_10k_events", "store_10000");
    let large = mean_seconds("replay", "sqlite_10k_events", "store_1000000");
    if let (Some(small), Some(large)) = (small, large) {
        println!(
            "replay 10k events: {:.2} ms in a 10k-event file, {:.2} ms in a 1M-event file, ratio {:.2} (target <= 1.5)",
            small * 1e3,
            large * 1e3,
            large / small
        );
    }
}

fn main() {
    let mut criterion = Criterion::default().configure_from_args();
    let rt = runtime();
    let dir = scratch_dir("store-bench");
    append_benches(&mut criterion, &rt, &dir);
    replay_benches(&mut criterion, &rt, &dir);
    criterion.final_summary();
    print_ratios();
    let _ = std::fs::remove_dir_all(&dir);
}
