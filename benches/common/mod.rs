//! Shared by the benchmarks: the runtime they run on and the figures of the
//! current run, read back from criterion's estimates.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mcp_resume::store::{EventStore, NewEvent, NewStream, StreamEnd, StreamKind, SyncMode};
use std::sync::OnceLock;
use std::time::SystemTime;

static STARTED: OnceLock<SystemTime> = OnceLock::new();

/// Marks the start of this run: estimates written before it are stale (a
/// benchmark filtered out of this run) and are not reported.
pub fn mark_run_start() {
    STARTED.get_or_init(SystemTime::now);
}

/// The runtime every benchmark runs on: two workers, as the machine has two cores.
pub fn runtime() -> tokio::runtime::Runtime {
    mark_run_start();
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a Tokio runtime")
}

/// Mean time per iteration of one benchmark in this run, in seconds, from
/// criterion's estimates; `None` if it did not run in this run (filtered out).
pub fn mean_seconds(group: &str, function: &str, parameter: &str) -> Option<f64> {
    let path = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join("../criterion")
        .join(group)
        .join(function)
        .join(parameter.replace('/', "_"))
        .join("new/estimates.json");
    let written = std::fs::metadata(&path).ok()?.modified().ok()?;
    if STARTED.get().is_some_and(|started| written < *started) {
        return None;
    }
    let json: serde_json::Value = serde_json::from_slice(&std::fs::read(path).ok()?).ok()?;
    Some(json["mean"]["point_estimate"].as_f64()? / 1e9)
}

/// A scratch directory for one benchmark's files, emptied first.
pub fn scratch_dir(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("a scratch directory");
    dir
}

/// Runs `iters` appends on each of `streams` concurrent new streams and
/// returns the time they took: each append is one event of `size` bytes and
/// awaits its commit. The streams are ended afterwards, outside the timing.
pub async fn timed_appends(
    store: Arc<dyn EventStore>,
    streams: usize,
    size: usize,
    iters: u64,
) -> Duration {
    let mut ids = Vec::with_capacity(streams);
    for _ in 0..streams {
        ids.push(
            store
                .create_stream(NewStream::new(StreamKind::PostResponse))
                .await
                .expect("a stream"),
        );
    }
    let data = bytes::Bytes::from(vec![b'x'; size]);
    let start = Instant::now();
    let tasks: Vec<_> = ids
        .iter()
        .map(|&id| {
            let store = store.clone();
            let data = data.clone();
            tokio::spawn(async move {
                for _ in 0..iters {
                    store
                        .append(id, vec![NewEvent::message(data.clone())])
                        .await
                        .expect("an append");
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("an appending task");
    }
    let elapsed = start.elapsed();
    for id in ids {
        store
            .end_stream(id, StreamEnd::Complete)
            .await
            .expect("the end of a stream");
    }
    elapsed
}

/// The value at `fraction` (0.5 for the median, 0.99 for p99) of `sorted`,
/// which is sorted in ascending order and not empty: the nearest rank.
pub fn percentile<T: Copy>(sorted: &[T], fraction: f64) -> T {
    sorted[((sorted.len() - 1) as f64 * fraction).round() as usize]
}

/// The insert of one row into [`open_raw_events`]'s table: stream, sequence, data.
pub const RAW_INSERT: &str =
    "INSERT INTO events (stream_no, seq, event_type, data) VALUES (?1, ?2, NULL, ?3)";

/// Opens `path` for a raw rusqlite baseline, in WAL mode syncing as the
/// store does at `sync`, with an empty `events` table laid out as the
/// store's (keyed by stream and sequence): what the store is measured against.
pub fn open_raw_events(path: &Path, sync: SyncMode) -> rusqlite::Connection {
    let conn = rusqlite::Connection::open(path).unwrap();
    conn.pragma_update(None, "journal_mode", "WAL").unwrap();
    conn.pragma_update(None, "synchronous", sync.pragma_value())
        .unwrap();
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS events (stream_no INTEGER NOT NULL, seq INTEGER NOT NULL,
         event_type BLOB, data BLOB NOT NULL, PRIMARY KEY (stream_no, seq)) WITHOUT ROWID;
         DELETE FROM events;",
    )
    .unwrap();
    conn
}

/// The limit: rusqlite inserting the same rows into the same table, in
/// transactions of 1,000 rows, interleaved across `streams` streams.
pub fn raw_inserts(path: &Path, streams: usize, size: usize, rows: u64) -> Duration {
    let mut conn = open_raw_events(path, SyncMode::Normal);
    let data = vec![b'x'; size];
    let mut seqs = vec![0i64; streams];
    let start = Instant::now();
    let mut written = 0;
    while written < rows {
        let tx = conn.transaction().unwrap();
        {
            let mut insert = tx.prepare_cached(RAW_INSERT).unwrap();
            for _ in 0..1_000.min(rows - written) {
                let stream = (written % streams as u64) as usize;
                seqs[stream] += 1;
                insert
                    .execute(rusqlite::params![stream as i64, seqs[stream], &data])
                    .unwrap();
                written += 1;
            }
        }
        tx.commit().unwrap();
    }
    start.elapsed()
}
