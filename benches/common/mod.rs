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

/// The table the store appends to, as `src/store/sqlite/schema.rs` creates
/// it (`recent`): rows in commit order under an integer key, with a unique
/// index by stream and sequence that reads use.
const RAW_TABLE: &str = "
    CREATE TABLE recent (
        position   INTEGER PRIMARY KEY,
        stream_no  INTEGER NOT NULL,
        seq        INTEGER NOT NULL,
        event_type BLOB,
        data       BLOB    NOT NULL
    );
    CREATE UNIQUE INDEX recent_by_stream ON recent (stream_no, seq);
";

/// The insert of one row into [`open_raw_events`]'s table: stream, sequence, data.
pub const RAW_INSERT: &str =
    "INSERT INTO recent (stream_no, seq, event_type, data) VALUES (?1, ?2, NULL, ?3)";

/// Creates a new file at `path` (removing any earlier one and its WAL) for
/// a raw rusqlite baseline: WAL mode syncing as the store does at `sync`,
/// with SQLite's automatic checkpoints (inside the commit that crosses
/// 1,000 WAL pages) if `checkpoints`, else none (the WAL only grows), and
/// the store's append table, empty.
pub fn open_raw_events(path: &Path, sync: SyncMode, checkpoints: bool) -> rusqlite::Connection {
    remove_raw_events(path);
    let conn = rusqlite::Connection::open(path).unwrap();
    conn.pragma_update(None, "journal_mode", "WAL").unwrap();
    conn.pragma_update(None, "synchronous", sync.pragma_value())
        .unwrap();
    if !checkpoints {
        conn.pragma_update(None, "wal_autocheckpoint", 0).unwrap();
    }
    conn.execute_batch(RAW_TABLE).unwrap();
    conn
}

/// Removes a raw baseline's file at `path` with its WAL and shared-memory files.
pub fn remove_raw_events(path: &Path) {
    for suffix in ["", "-wal", "-shm"] {
        let mut file = path.as_os_str().to_owned();
        file.push(suffix);
        let _ = std::fs::remove_file(file);
    }
}

/// How a raw rusqlite baseline appends: the sync mode and the rows each
/// transaction commits. It never checkpoints (the WAL only grows): a
/// checkpoint only adds work, and the store runs its own on another thread.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RawWrites {
    pub sync: SyncMode,
    pub rows_per_commit: u64,
}

impl RawWrites {
    /// The shapes a baseline tries at `sync`, its limit being the fastest:
    /// transactions of 1,000 rows (the store groups up to 1,024 appends in
    /// one), 10,000 and 100,000.
    pub fn candidates(sync: SyncMode) -> Vec<RawWrites> {
        [1_000, 10_000, 100_000]
            .into_iter()
            .map(|rows_per_commit| RawWrites {
                sync,
                rows_per_commit,
            })
            .collect()
    }

    /// "WAL NORMAL, 10,000 rows per transaction".
    pub fn describe(self) -> String {
        format!(
            "WAL {}, {} rows per transaction",
            self.sync.pragma_value(),
            thousands(self.rows_per_commit)
        )
    }
}

/// 100000 -> "100,000".
pub fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, digit) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(digit);
    }
    out
}

/// The limit for a durable store: rusqlite alone appending rows of `size`
/// bytes of data, interleaved across `streams` streams, in commit order to
/// the store's append table in a new file at `path`, through one prepared
/// statement, as `writes` says. Stops after `rows` rows or once `window` has
/// passed (checked between transactions), whichever comes first; returns
/// the rows written and the time they took. The file is removed after.
pub fn raw_inserts(
    path: &Path,
    writes: RawWrites,
    streams: usize,
    size: usize,
    rows: u64,
    window: Duration,
) -> (u64, Duration) {
    let mut conn = open_raw_events(path, writes.sync, false);
    let data = vec![b'x'; size];
    let start = Instant::now();
    let mut written = 0;
    while written < rows && start.elapsed() < window {
        let tx = conn.transaction().unwrap();
        {
            let mut insert = tx.prepare_cached(RAW_INSERT).unwrap();
            for row in written..rows.min(written + writes.rows_per_commit) {
                let stream = row % streams as u64;
                let seq = row / streams as u64 + 1;
                insert
                    .execute(rusqlite::params![stream as i64, seq as i64, &data])
                    .unwrap();
            }
        }
        tx.commit().unwrap();
        written = rows.min(written + writes.rows_per_commit);
    }
    let elapsed = start.elapsed();
    drop(conn);
    remove_raw_events(path);
    (written, elapsed)
}
