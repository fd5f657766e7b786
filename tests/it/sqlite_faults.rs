//! The SQLite store's behaviour on restarts, crashes and bad files: typed
//! errors, no panic, and nothing committed lost. Each fault is produced for
//! real where this machine allows it (a tmpfs that fills up, an immutable
//! file, an unwritable directory, a process that aborts).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use crate::common::server::message;
use crate::common::sse::End;
use crate::common::{self, call_then_leave, guard, resume_after, serve_scripted, wait_until};
use http::StatusCode;
use mcp_resume::ResumabilityLayer;
use mcp_resume::store::{
    self, EventStore, NewEvent, NewStream, Retention, SqliteEventStore, SqliteOptions, StoreError,
    StreamEnd, StreamKind, StreamState, SyncMode,
};

fn temp_db() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("mcp_events.db");
    (dir, path)
}

async fn replay_all(
    store: &Arc<SqliteEventStore>,
    stream: store::StreamId,
) -> Vec<store::StoredEvent> {
    let dyn_store: Arc<dyn EventStore> = store.clone();
    let mut batches = store::replay(dyn_store, stream, 0);
    let mut events = Vec::new();
    while let Some(batch) = batches.next_batch().await {
        events.extend(batch.unwrap());
    }
    events
}

#[tokio::test]
async fn reopen_after_close_keeps_everything_committed() {
    let (_dir, path) = temp_db();
    let store = Arc::new(SqliteEventStore::open(&path).unwrap());
    let done = store
        .create_stream(NewStream::new(StreamKind::PostResponse).session("s"))
        .await
        .unwrap();
    let live = store
        .create_stream(
            NewStream::new(StreamKind::Standalone)
                .session("s")
                .identity("u"),
        )
        .await
        .unwrap();
    store
        .append(
            done,
            (0..100)
                .map(|n| NewEvent::message(format!("d{n}")))
                .collect(),
        )
        .await
        .unwrap();
    store
        .append(live, vec![NewEvent::typed("message", "l0")])
        .await
        .unwrap();
    store.end_stream(done, StreamEnd::Complete).await.unwrap();
    store.close().await.unwrap();
    drop(store);

    let store = Arc::new(SqliteEventStore::open(&path).unwrap());
    let events = replay_all(&store, done).await;
    assert_eq!(events.len(), 100);
    assert!(
        events
            .iter()
            .enumerate()
            .all(|(i, e)| e.seq == i as u64 + 1 && e.data == format!("d{i}"))
    );
    let info = store.stream_info(done).await.unwrap().unwrap();
    assert_eq!(info.state, StreamState::Complete);
    // Close ended the stream that was still live, so a resume of it ends.
    let info = store.stream_info(live).await.unwrap().unwrap();
    assert_eq!(info.state, StreamState::Abandoned);
    assert_eq!(info.identity.as_deref(), Some("u"));
    assert_eq!(
        replay_all(&store, live).await[0].event_type.as_deref(),
        Some(&b"message"[..])
    );
    assert_eq!(store.session_streams("s").await.unwrap().len(), 2);
    // Sequences continue where they were: a new stream starts at 1, nothing collides.
    let next = store
        .create_stream(NewStream::new(StreamKind::PostResponse))
        .await
        .unwrap();
    assert_eq!(
        store
            .append(next, vec![NewEvent::message("x")])
            .await
            .unwrap()
            .first_seq,
        1
    );
}

/// Run in a child process by `a_crashed_process_loses_nothing_committed`:
/// commits events, prints the stream id, and aborts without closing.
#[test]
#[ignore = "helper: runs only as the child of a_crashed_process_loses_nothing_committed"]
fn crash_child() {
    let Ok(path) = std::env::var("MCP_RESUME_CRASH_DB") else {
        return;
    };
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let store = SqliteEventStore::open(&path).unwrap();
        let stream = store
            .create_stream(NewStream::new(StreamKind::PostResponse))
            .await
            .unwrap();
        for n in 0..500 {
            store
                .append(stream, vec![NewEvent::message(format!("e{n}"))])
                .await
                .unwrap();
        }
        println!("STREAM {stream}");
        std::process::abort();
    });
}

#[tokio::test]
async fn a_crashed_process_loses_nothing_committed() {
    let (_dir, path) = temp_db();
    // The harness names a test by its module path without the crate's name.
    let (_crate, module) = module_path!().split_once("::").unwrap();
    let child = format!("{module}::crash_child");
    let output = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", &child, "--ignored", "--nocapture"])
        .env("MCP_RESUME_CRASH_DB", &path)
        .output()
        .unwrap();
    assert!(!output.status.success(), "the child aborts");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stream = stdout
        .lines()
        .find_map(|line| line.strip_prefix("STREAM "))
        .expect("the child printed its stream id")
        .trim()
        .parse()
        .unwrap();

    // The dead process's lock is gone with it; its live stream is recognised as orphaned.
    let store = Arc::new(SqliteEventStore::open(&path).unwrap());
    let info = store.stream_info(stream).await.unwrap().unwrap();
    assert_eq!(info.state, StreamState::Abandoned);
    assert_eq!(info.last_seq, 500);
    let events = replay_all(&store, stream).await;
    assert_eq!(
        events.len(),
        500,
        "every acknowledged append survived the crash"
    );
    assert!(
        events
            .iter()
            .enumerate()
            .all(|(i, e)| e.data == format!("e{i}"))
    );
}

fn assert_unchanged(path: &Path, before: &[u8]) {
    // Not assert_eq!: a failure would print the whole file.
    assert!(
        std::fs::read(path).unwrap() == before,
        "the file was modified"
    );
}

#[tokio::test]
async fn a_file_that_is_not_a_database_is_refused() {
    let (_dir, path) = temp_db();
    let garbage: Vec<u8> = (0..8192u32).map(|i| (i * 7 + 3) as u8).collect();
    std::fs::write(&path, &garbage).unwrap();
    let error = SqliteEventStore::open(&path).unwrap_err();
    assert!(matches!(error, StoreError::NotADatabase { .. }), "{error}");
    assert!(error.to_string().contains("not an SQLite database"));
    assert_unchanged(&path, &garbage);
}

#[tokio::test]
async fn a_database_of_another_application_is_refused() {
    let (_dir, path) = temp_db();
    {
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.execute_batch("CREATE TABLE accounts (id INTEGER PRIMARY KEY, name TEXT); INSERT INTO accounts VALUES (1, 'x');")
            .unwrap();
    }
    let before = std::fs::read(&path).unwrap();
    let error = SqliteEventStore::open(&path).unwrap_err();
    assert!(
        matches!(error, StoreError::ForeignDatabase { .. }),
        "{error}"
    );
    assert_unchanged(&path, &before);
}

#[tokio::test]
async fn a_newer_schema_is_refused_without_changes() {
    let (_dir, path) = temp_db();
    SqliteEventStore::open(&path)
        .unwrap()
        .close()
        .await
        .unwrap();
    {
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.pragma_update(None, "user_version", 99).unwrap();
    }
    let before = std::fs::read(&path).unwrap();
    let error = SqliteEventStore::open(&path).unwrap_err();
    assert!(
        matches!(
            error,
            StoreError::SchemaTooNew {
                found: 99,
                supported: 4,
                ..
            }
        ),
        "{error}"
    );
    assert!(error.to_string().contains("upgrade mcp-resume"));
    assert_unchanged(&path, &before);
}

#[tokio::test]
async fn an_empty_database_file_is_initialised() {
    let (_dir, path) = temp_db();
    std::fs::write(&path, b"").unwrap();
    let store = SqliteEventStore::open(&path).unwrap();
    let stream = store
        .create_stream(NewStream::new(StreamKind::PostResponse))
        .await
        .unwrap();
    store
        .append(stream, vec![NewEvent::message("ok")])
        .await
        .unwrap();
}

#[tokio::test]
async fn a_second_process_is_locked_out() {
    let (_dir, path) = temp_db();
    let first = SqliteEventStore::open(&path).unwrap();
    let error = SqliteEventStore::open(&path).unwrap_err();
    assert!(matches!(error, StoreError::Locked { .. }), "{error}");
    first.close().await.unwrap();
    // The lock is released by the time close returns.
    SqliteEventStore::open(&path).unwrap();
}

#[tokio::test]
async fn a_missing_directory_is_reported() {
    let (dir, _) = temp_db();
    let path = dir.path().join("no/such/dir/mcp_events.db");
    let error = SqliteEventStore::open(&path).unwrap_err();
    assert!(matches!(error, StoreError::Io { .. }), "{error}");
    let message = error.to_string();
    assert!(message.contains("no/such/dir does not exist"), "{message}");
    assert!(
        !message.contains(".lock"),
        "names the directory, not the lock file: {message}"
    );
}

#[tokio::test]
async fn an_unwritable_directory_is_reported() {
    // Root ignores directory permissions, so as root use a directory even
    // root cannot create files in (sysfs); otherwise a read-only temp dir.
    let dir = tempfile::tempdir().unwrap();
    let locked_dir = dir.path().join("read-only");
    std::fs::create_dir(&locked_dir).unwrap();
    set_mode(&locked_dir, 0o555);
    let writable = std::fs::write(locked_dir.join("probe"), b"").is_ok();
    let target = if !writable {
        locked_dir.join("mcp_events.db")
    } else if std::fs::write("/sys/mcp-resume-probe", b"").is_err() && Path::new("/sys").is_dir() {
        PathBuf::from("/sys/mcp_events.db")
    } else {
        panic!(
            "this user writes into a mode 0555 directory (root) and no sysfs is mounted at /sys: \
             run the test as a user other than root, or where /sys is mounted"
        );
    };
    let error = SqliteEventStore::open(&target).unwrap_err();
    assert!(
        matches!(error, StoreError::ReadOnly { .. }),
        "{target:?}: {error}"
    );
    set_mode(&locked_dir, 0o755);
}

#[cfg(unix)]
fn set_mode(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

#[tokio::test]
async fn a_read_only_file_is_reported() {
    let (_dir, path) = temp_db();
    SqliteEventStore::open(&path)
        .unwrap()
        .close()
        .await
        .unwrap();
    // Mode 0444 stops other users; root is stopped only by the immutable flag.
    set_mode(&path, 0o444);
    let root = std::fs::OpenOptions::new().write(true).open(&path).is_ok();
    if root {
        chattr("+i", &path);
    }
    let result = SqliteEventStore::open(&path);
    if root {
        chattr("-i", &path);
    }
    let error = result.unwrap_err();
    assert!(matches!(error, StoreError::ReadOnly { .. }), "{error}");
}

/// Sets or clears (`+i`, `-i`) the immutable flag of `path`, which stops root too.
fn chattr(flag: &str, path: &Path) {
    let output = match Command::new("chattr").arg(flag).arg(path).output() {
        Ok(output) => output,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => panic!(
            "as root, this test needs `chattr` to make a file read-only: install e2fsprogs \
             (Debian/Ubuntu: `apt-get install e2fsprogs`)"
        ),
        Err(error) => panic!("could not run chattr: {error}"),
    };
    assert!(
        output.status.success(),
        "chattr {flag} {path:?} failed ({}): the temporary directory's file system must support \
         the immutable flag (ext4, xfs, btrfs; not tmpfs or overlayfs): point TMPDIR at one. {}",
        output.status,
        String::from_utf8_lossy(&output.stderr).trim()
    );
}

/// Fills the store until the disk is full, checks the error, that everything
/// committed before is intact, and that the store keeps working for reads and
/// for writes once `make_room` has made room.
async fn fill_until_full(
    store: Arc<SqliteEventStore>,
    make_room: impl AsyncFnOnce(&SqliteEventStore),
) {
    let keep = store
        .create_stream(NewStream::new(StreamKind::PostResponse).session("keep"))
        .await
        .unwrap();
    store
        .append(
            keep,
            vec![NewEvent::message("committed before the disk filled")],
        )
        .await
        .unwrap();
    let filler = store
        .create_stream(NewStream::new(StreamKind::PostResponse).session("filler"))
        .await
        .unwrap();
    let mut committed = 0u64;
    let error = loop {
        match store
            .append(filler, vec![NewEvent::message(vec![b'x'; 16 * 1024])])
            .await
        {
            Ok(receipt) => committed = receipt.last_seq,
            Err(error) => break error,
        }
        assert!(committed < 100_000, "the disk never filled");
    };
    assert!(matches!(error, StoreError::DiskFull { .. }), "{error}");
    assert!(error.to_string().contains("committed before this are kept"));
    let events = replay_all(&store, filler).await;
    assert_eq!(
        events.len() as u64,
        committed,
        "every acknowledged append is readable"
    );
    assert_eq!(
        replay_all(&store, keep).await[0].data,
        "committed before the disk filled"
    );
    make_room(&store).await;
    store
        .append(keep, vec![NewEvent::message("after")])
        .await
        .unwrap();
    assert_eq!(replay_all(&store, keep).await.len(), 2);
}

#[tokio::test]
async fn a_size_limit_reached_is_a_full_disk() {
    let (_dir, path) = temp_db();
    let store = Arc::new(
        SqliteOptions::new(&path)
            .max_size_bytes(512 * 1024)
            .open()
            .unwrap(),
    );
    // Under a size cap, deleting events frees pages for reuse.
    fill_until_full(store, async |store| {
        assert_eq!(store.purge_session("filler").await.unwrap(), 1)
    })
    .await;
}

/// The empty store takes 10 pages (40 KiB at the default 4 KiB page size),
/// as `SqliteOptions::max_size_bytes` documents: a cap below that cannot
/// hold the schema, so opening fails with the typed error, and the file
/// opens with a larger cap afterwards.
#[tokio::test]
async fn a_size_limit_below_the_empty_store_fails_at_open() {
    let (_dir, path) = temp_db();
    let too_small = SqliteOptions::new(&path).max_size_bytes(36 * 1024).open();
    assert!(
        matches!(too_small, Err(StoreError::DiskFull { .. })),
        "{:?}",
        too_small.err()
    );
    let store = SqliteOptions::new(&path)
        .max_size_bytes(40 * 1024)
        .open()
        .unwrap();
    store.close().await.unwrap();
}

/// A 2 MiB tmpfs mounted on a temporary directory, a 1 MiB ballast file
/// taking half of it, so that freeing the ballast makes room the way an
/// operator would. Unmounted when dropped, by a failed assertion too.
struct SmallTmpfs {
    dir: tempfile::TempDir,
}

impl SmallTmpfs {
    /// Mounts it; `test` names the test for the message that says how to skip it.
    fn mount(test: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mount = match Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=2m", "tmpfs"])
            .arg(dir.path())
            .output()
        {
            Ok(output) => output,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                panic!("this test needs `mount` (Debian/Ubuntu: `apt-get install mount`)")
            }
            Err(error) => panic!("could not run mount: {error}"),
        };
        assert!(
            mount.status.success(),
            "could not mount a 2 MiB tmpfs, which needs root (CI runs as root): {}\nAs another \
             user, skip this test: `cargo test -- --skip sqlite_faults::{test}`",
            String::from_utf8_lossy(&mount.stderr).trim()
        );
        let tmpfs = Self { dir };
        // Enough that, once freed, the checkpoint at close has room too.
        std::fs::write(tmpfs.ballast(), vec![0u8; 1024 * 1024]).unwrap();
        tmpfs
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn ballast(&self) -> PathBuf {
        self.path().join("ballast")
    }

    fn free_ballast(&self) {
        std::fs::remove_file(self.ballast()).unwrap();
    }
}

impl Drop for SmallTmpfs {
    fn drop(&mut self) {
        // Lazy, so a store still open on it does not keep it mounted.
        let _ = Command::new("umount").arg("-l").arg(self.path()).status();
    }
}

#[tokio::test]
async fn a_real_full_disk_is_reported() {
    let tmpfs = SmallTmpfs::mount("a_real_full_disk_is_reported");
    let path = tmpfs.path().join("mcp_events.db");
    let store = Arc::new(SqliteEventStore::open(&path).unwrap());
    fill_until_full(store.clone(), async |_| tmpfs.free_ballast()).await;
    store.close().await.unwrap();
    let reopened = Arc::new(SqliteEventStore::open(&path).unwrap());
    let keep = reopened.session_streams("keep").await.unwrap()[0].id;
    assert_eq!(replay_all(&reopened, keep).await.len(), 2);
    reopened.close().await.unwrap();
}

/// How many streams the full-disk test prepares, for one whose end fails.
const ATTEMPTS: usize = 8;

/// Issue 26: a stream whose producer ends while the disk is full, so that
/// its end cannot be recorded, still ends promptly for every resume, and
/// the layer records the end by itself once space is freed.
#[tokio::test]
async fn a_stream_that_ends_on_a_full_disk_ends_for_resumes_and_is_recorded_once_freed() {
    let tmpfs = SmallTmpfs::mount(
        "a_stream_that_ends_on_a_full_disk_ends_for_resumes_and_is_recorded_once_freed",
    );
    let store: Arc<dyn EventStore> =
        Arc::new(SqliteEventStore::open(tmpfs.path().join("mcp_events.db")).unwrap());
    let layer = ResumabilityLayer::new(store.clone());
    let (script, served) = serve_scripted(&layer).await;
    // Candidates, each a stream of 3 events whose client left: the end of
    // the first whose end fails to commit is the subject (see below).
    let mut candidates = Vec::new();
    for _ in 0..ATTEMPTS {
        candidates.push(call_then_leave(&script, &served, 3).await);
    }

    // The disk fills up: a filler file takes every free byte, and other
    // writers keep trying appends too large for what room the store's own
    // files still have. The store commits what is queued together, so a
    // producer's end that shares a transaction with one fails with it; one
    // the writer happens to take alone fits in the write-ahead log's
    // already allocated space and is recorded, and the next candidate is
    // tried.
    let other = NewStream::new(StreamKind::PostResponse).session("other");
    let other = store.create_stream(other).await.unwrap();
    let filler = tmpfs.path().join("filler");
    let mut file = std::fs::File::create(&filler).unwrap();
    while std::io::Write::write_all(&mut file, &[0u8; 4096]).is_ok() {}
    drop(file);
    let appenders: Vec<_> = (0..4)
        .map(|_| {
            let store = store.clone();
            tokio::spawn(async move {
                loop {
                    let big = NewEvent::message("x".repeat(256 * 1024));
                    let _ = store.append(other, vec![big]).await;
                }
            })
        })
        .collect();
    let mut subject = None;
    for (stream, inner) in candidates {
        let failures = layer.stats().store_failures;
        inner.close();
        wait_until("the end to be recorded or to fail", || async {
            layer.stats().store_failures > failures
                || store
                    .stream_info(stream)
                    .await
                    .is_ok_and(|info| info.is_some_and(|info| info.state != StreamState::Live))
        })
        .await;
        if layer.stats().store_failures > failures {
            subject = Some(stream);
            break;
        }
    }
    let stream = subject.expect("no candidate's end failed on the full disk");
    for appender in appenders {
        appender.abort();
        let _ = appender.await;
    }
    // Appends the aborted tasks had queued are still the writer's to do;
    // done once space is freed, they would take it again (a loaded machine
    // leaves several queued). A flush is answered after them, while the
    // disk is still full, so they fail (and so may the flush).
    let _ = store.flush().await;
    let info = store.stream_info(stream).await.unwrap().unwrap();
    assert_eq!(info.state, StreamState::Live, "the end is not in the store");
    assert_eq!(info.last_seq, 3, "every event the producer sent is stored");
    let resume = |seq: u64| resume_after(stream, seq);

    // From the last event: nothing more will come, so it is refused now.
    let mut at_end = guard("a resume at the end", resume(3).send(served.addr)).await;
    assert_eq!(at_end.status, StatusCode::BAD_REQUEST);
    assert_eq!(at_end.text().await, common::CANNOT_RESUME_BODY);
    // From before it: what was stored, then the end, not a wait for ever.
    let mut behind = guard("a resume from the first event", resume(1).send(served.addr)).await;
    assert_eq!(behind.status, StatusCode::OK);
    let rest = guard("the replay to end", behind.events_to_end()).await;
    let data: Vec<&str> = rest.iter().map(|ev| ev.data()).collect();
    assert_eq!(data, [message(2), message(3)]);
    assert_eq!(behind.end(), Some(&End::Clean));

    // Space is freed: the end is recorded without anyone asking, as complete
    // since the store holds every event the producer sent.
    tmpfs.free_ballast();
    std::fs::remove_file(&filler).unwrap();
    // The layer retries with back-off up to 5 s, and the store may still be
    // settling what the full disk left behind: a longer guard than the
    // usual 10 s, which a loaded machine exceeded once.
    let recorded = tokio::time::timeout(Duration::from_secs(30), async {
        while !matches!(
            store.stream_info(stream).await,
            Ok(Some(ref info)) if info.state == StreamState::Complete
        ) {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    assert!(
        recorded.is_ok(),
        "the end was not recorded within 30 s of freeing the disk: {:?}",
        store.stream_info(stream).await
    );
    let mut after = resume(3).send(served.addr).await;
    assert_eq!(after.status, StatusCode::BAD_REQUEST);
    assert_eq!(after.text().await, common::CANNOT_RESUME_BODY);
}

#[tokio::test]
async fn full_sync_mode_commits_and_reads() {
    let (_dir, path) = temp_db();
    let store = Arc::new(
        SqliteOptions::new(&path)
            .sync(SyncMode::Full)
            .open()
            .unwrap(),
    );
    let stream = store
        .create_stream(NewStream::new(StreamKind::PostResponse))
        .await
        .unwrap();
    store
        .append(
            stream,
            (0..10).map(|n| NewEvent::message(format!("{n}"))).collect(),
        )
        .await
        .unwrap();
    store.flush().await.unwrap();
    assert_eq!(replay_all(&store, stream).await.len(), 10);
}

/// Appends go to a small table first and are settled into the main one in
/// batches; reads, trimming and restarts must not see the seam.
#[tokio::test]
async fn events_read_the_same_across_settles_trims_and_restarts() {
    let (_dir, path) = temp_db();
    let retention = store::Retention::new().max_events_per_stream(1_500);
    let store = Arc::new(
        SqliteOptions::new(&path)
            .retention(retention)
            .open()
            .unwrap(),
    );
    let mut streams = Vec::new();
    for _ in 0..5 {
        streams.push(
            store
                .create_stream(NewStream::new(StreamKind::PostResponse))
                .await
                .unwrap(),
        );
    }
    // 5 streams x 2,000 events, interleaved: several settles, and trimming
    // to 1,500 per stream on both sides of them.
    for n in 1..=2_000u64 {
        for stream in &streams {
            store
                .append(*stream, vec![NewEvent::message(format!("{stream}:{n}"))])
                .await
                .unwrap();
        }
        if n % 700 == 0 {
            let events = replay_all(&store, streams[0]).await;
            let first = n.saturating_sub(1_500) + 1;
            assert_eq!(events.first().map(|e| e.seq), Some(first));
            assert_eq!(events.last().map(|e| e.seq), Some(n));
            assert_eq!(events.len() as u64, n - first + 1);
        }
    }
    let check = async |store: &Arc<SqliteEventStore>| {
        for stream in &streams {
            let info = store.stream_info(*stream).await.unwrap().unwrap();
            assert_eq!(
                (info.first_seq, info.last_seq, info.event_count),
                (501, 2_000, 1_500)
            );
            for after in [500, 1_000, 1_999, 2_000] {
                let dyn_store: Arc<dyn EventStore> = store.clone();
                let mut batches = store::replay(dyn_store, *stream, after);
                let mut expected = after + 1;
                while let Some(batch) = batches.next_batch().await {
                    for event in batch.unwrap() {
                        assert_eq!(event.seq, expected);
                        assert_eq!(event.data, format!("{stream}:{expected}"));
                        expected += 1;
                    }
                }
                assert_eq!(expected, 2_001);
            }
            let trimmed = store
                .read_batch(*stream, 499, store::ReadLimit::default())
                .await
                .unwrap_err();
            assert!(
                matches!(
                    trimmed,
                    StoreError::Trimmed {
                        first_retained: 501,
                        ..
                    }
                ),
                "{trimmed}"
            );
        }
    };
    check(&store).await;
    store.close().await.unwrap();
    // Rows still waiting to be settled are found after a restart, and settle later.
    let store = Arc::new(
        SqliteOptions::new(&path)
            .retention(retention)
            .open()
            .unwrap(),
    );
    check(&store).await;
    let more = store
        .create_stream(NewStream::new(StreamKind::PostResponse))
        .await
        .unwrap();
    store
        .append(
            more,
            (0..5_000)
                .map(|n| NewEvent::message(format!("{n}")))
                .collect(),
        )
        .await
        .unwrap();
    check(&store).await;
    let info = store.stream_info(more).await.unwrap().unwrap();
    assert_eq!((info.first_seq, info.last_seq), (3_501, 5_000));
}

/// A stream of ten events (ended with `end`, if given) in a store opened
/// with `options`, then closed; and the store's file.
async fn ten_events_closed(
    options: SqliteOptions,
    end: Option<StreamEnd>,
) -> (store::StreamId, PathBuf) {
    let store = options.open().unwrap();
    let path = store.path().to_path_buf();
    let stream = store
        .create_stream(NewStream::new(StreamKind::PostResponse))
        .await
        .unwrap();
    store
        .append(
            stream,
            (1..=10)
                .map(|n| NewEvent::message(format!("{n}")))
                .collect(),
        )
        .await
        .unwrap();
    if let Some(end) = end {
        store.end_stream(stream, end).await.unwrap();
    }
    store.close().await.unwrap();
    (stream, path)
}

/// [`ten_events_closed`], with events 1 to 6 also copied into `events`:
/// what a crash between the copy and the emptying of `recent` by a settle
/// leaves behind.
async fn ten_events_half_copied_by_a_crash(
    options: SqliteOptions,
    end: Option<StreamEnd>,
) -> store::StreamId {
    let (stream, path) = ten_events_closed(options, end).await;
    let copied = rusqlite::Connection::open(&path)
        .unwrap()
        .execute(
            "INSERT INTO events SELECT stream_no, seq, event_type, data FROM recent WHERE seq <= 6",
            [],
        )
        .unwrap();
    assert_eq!(copied, 6);
    stream
}

/// A settle copies rows into `events` before it deletes them from `recent`:
/// a crash between the two leaves rows in both tables, which must be read
/// once and settled later without a conflict.
#[tokio::test]
async fn events_left_in_both_tables_by_a_crash_are_read_once_and_settled_later() {
    let (_dir, path) = temp_db();
    let stream = ten_events_half_copied_by_a_crash(SqliteOptions::new(&path), None).await;

    let store = Arc::new(SqliteOptions::new(&path).open().unwrap());
    assert_reads_one_to_ten(&store, stream).await;
    // Enough rows to settle everything, twice over.
    let more = store
        .create_stream(NewStream::new(StreamKind::PostResponse))
        .await
        .unwrap();
    for _ in 0..3 {
        store
            .append(
                more,
                (0..3_000)
                    .map(|n| NewEvent::message(format!("{n}")))
                    .collect(),
            )
            .await
            .unwrap();
    }
    // Read once while the settle is under way (`more` is then in `events`,
    // `recent` and `recent_alt`), and once it is done (a flush finishes it).
    assert_reads_one_to_ten(&store, stream).await;
    assert_eq!(
        seqs_of(replay_all(&store, more).await),
        (1..=9_000).collect::<Vec<_>>()
    );
    let info = store.stream_info(more).await.unwrap().unwrap();
    assert_eq!((info.first_seq, info.last_seq), (1, 9_000));
    store.flush().await.unwrap();
    assert_reads_one_to_ten(&store, stream).await;
    assert_eq!(
        seqs_of(replay_all(&store, more).await),
        (1..=9_000).collect::<Vec<_>>()
    );
    store.close().await.unwrap();
    let conn = rusqlite::Connection::open(&path).unwrap();
    let count = |sql: &str| conn.query_row(sql, [], |row| row.get::<_, i64>(0)).unwrap();
    // When `recent` passed 4,096 rows, appends went on in `recent_alt` and
    // the 6,010 rows of `recent` were settled, and `recent` emptied; the
    // last 3,000 wait in `recent_alt` for the next settle.
    assert_eq!(count("SELECT COUNT(*) FROM events"), 6_010);
    assert_eq!(count("SELECT COUNT(*) FROM recent"), 0);
    assert_eq!(count("SELECT COUNT(*) FROM recent_alt"), 3_000);
}

/// A stream swept while some of its rows are in both tables (between the
/// two steps of a settle; here as a crash leaves them) counts each event once.
#[tokio::test]
async fn a_sweep_counts_events_in_both_tables_once() {
    let (_dir, path) = temp_db();
    let retention = Retention::new()
        .max_age(Duration::from_millis(50))
        .sweep_interval(Duration::from_secs(3600));
    let options = || SqliteOptions::new(&path).retention(retention);
    ten_events_half_copied_by_a_crash(options(), Some(StreamEnd::Complete)).await;
    let store = options().open().unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let report = store.sweep().await.unwrap();
    assert_eq!((report.streams_removed, report.events_removed), (1, 10));
}

/// Asserts that `stream` reads as events 1 to 10, each once, in order.
async fn assert_reads_one_to_ten(store: &Arc<SqliteEventStore>, stream: store::StreamId) {
    assert_eq!(
        seqs_of(replay_all(store, stream).await),
        (1..=10).collect::<Vec<_>>()
    );
}

/// A new stream in `store` with one event, `text`, flushed.
async fn one_event_in_a_new_stream(
    store: &Arc<SqliteEventStore>,
    text: &'static str,
) -> store::StreamId {
    let stream = store
        .create_stream(NewStream::new(StreamKind::PostResponse))
        .await
        .unwrap();
    store
        .append(stream, vec![NewEvent::message(text)])
        .await
        .unwrap();
    store.flush().await.unwrap();
    stream
}

fn seqs_of(events: Vec<store::StoredEvent>) -> Vec<u64> {
    events.iter().map(|event| event.seq).collect()
}

/// A file written by a version 2 build (one `recent` table, here with some
/// of its rows copied into `events` by a settle a crash cut short) is
/// migrated in place: its events are all read, once, and it takes appends.
#[tokio::test]
async fn a_version_2_file_is_migrated_and_keeps_its_events() {
    let (_dir, path) = temp_db();
    let (stream, _) = ten_events_closed(SqliteOptions::new(&path), None).await;
    {
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.execute_batch(
            "DROP TABLE recent_alt;
             ALTER TABLE streams DROP COLUMN rpc_method;
             ALTER TABLE streams DROP COLUMN tool_name;
             ALTER TABLE streams DROP COLUMN request_id;
             ALTER TABLE streams DROP COLUMN ended_at;
             ALTER TABLE streams DROP COLUMN resumes;
             INSERT INTO events SELECT stream_no, seq, event_type, data FROM recent WHERE seq <= 4;
             PRAGMA user_version = 2;",
        )
        .unwrap();
    }
    let store = Arc::new(SqliteEventStore::open(&path).unwrap());
    assert_reads_one_to_ten(&store, stream).await;
    // Streams from before the history columns list without a call.
    let listed = store
        .list_streams(&mcp_resume::store::StreamQuery::new())
        .await
        .unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!((listed[0].info.id, listed[0].events()), (stream, 10));
    assert_eq!((&listed[0].call, listed[0].resumes), (&None, 0));
    let more = one_event_in_a_new_stream(&store, "after the migration").await;
    assert_eq!(seqs_of(replay_all(&store, more).await), vec![1]);
    store.close().await.unwrap();
    let conn = rusqlite::Connection::open(&path).unwrap();
    let version: i64 = conn
        .pragma_query_value(None, "user_version", |row| row.get(0))
        .unwrap();
    assert_eq!(version, 4);
}

/// A process that stops during a settle leaves rows in both `recent`
/// tables: the older ones, partly copied into `events`, in the table being
/// settled, and the newer ones in the other. Nothing records which is
/// which; the next open tells them apart by a stream's sequences, settles
/// the older table and appends to the newer, and every event is read once,
/// in order, throughout.
#[tokio::test]
async fn rows_in_both_recent_tables_at_open_settle_the_older_one() {
    for (older, newer) in [("recent", "recent_alt"), ("recent_alt", "recent")] {
        let (_dir, path) = temp_db();
        let (stream, _) = ten_events_closed(SqliteOptions::new(&path), None).await;
        {
            // Events 1 to 5 in `older` (1 to 3 already copied), 6 to 10 in `newer`.
            let conn = rusqlite::Connection::open(&path).unwrap();
            conn.execute_batch(&format!(
                "CREATE TEMP TABLE ten AS SELECT stream_no, seq, event_type, data FROM recent;
                 DELETE FROM recent;
                 INSERT INTO {older} (stream_no, seq, event_type, data)
                     SELECT * FROM ten WHERE seq <= 5;
                 INSERT INTO {newer} (stream_no, seq, event_type, data)
                     SELECT * FROM ten WHERE seq > 5;
                 INSERT INTO events SELECT * FROM ten WHERE seq <= 3;"
            ))
            .unwrap();
        }
        let store = Arc::new(SqliteEventStore::open(&path).unwrap());
        assert_reads_one_to_ten(&store, stream).await;
        // The head spans both tables: the last event is in `newer`.
        let info = store.stream_info(stream).await.unwrap().unwrap();
        assert_eq!((info.first_seq, info.last_seq), (1, 10), "older: {older}");
        one_event_in_a_new_stream(&store, "after the open").await;
        assert_reads_one_to_ten(&store, stream).await;
        let info = store.stream_info(stream).await.unwrap().unwrap();
        assert_eq!((info.first_seq, info.last_seq), (1, 10), "older: {older}");
        store.close().await.unwrap();
        let conn = rusqlite::Connection::open(&path).unwrap();
        let count = |sql: &str| conn.query_row(sql, [], |row| row.get::<_, i64>(0)).unwrap();
        assert_eq!(count("SELECT COUNT(*) FROM events"), 5, "older: {older}");
        assert_eq!(
            count(&format!("SELECT COUNT(*) FROM {older}")),
            0,
            "older: {older}"
        );
        // Events 6 to 10, and the append made after the open.
        assert_eq!(
            count(&format!("SELECT COUNT(*) FROM {newer}")),
            6,
            "older: {older}"
        );
    }
}

/// Under appends that never pause, the checkpointing thread never finds
/// the WAL all copied, so it would never start over and grow as long as the
/// load lasts (gigabytes in a minute). The writer restarts it once it holds
/// `max_wal_bytes`, which it may exceed by one commit (here at most 2 MiB, a
/// settle slice of 4,096 events): 32 MiB of events go through a 1 MiB WAL,
/// which never grows past a few MiB.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_wal_stays_bounded_under_appends_that_never_pause() {
    let (_dir, path) = temp_db();
    let store = Arc::new(
        SqliteOptions::new(&path)
            .max_wal_bytes(1 << 20)
            .open()
            .unwrap(),
    );
    let largest = append_mib_watching_the_wal(&store, &path, 32).await;
    assert!(
        largest < 8 << 20,
        "the WAL grew to {largest} bytes while 32 MiB were appended"
    );
    store.close().await.unwrap();
}

/// A reader holding an old snapshot keeps the WAL from being restarted: the
/// writer waits for it at most its busy timeout per bound's worth of
/// growth, goes on appending meanwhile, and bounds the WAL again once the
/// reader is done. How soon depends on the checkpointing thread, which may
/// still be copying the grown WAL past the short busy timeout on a loaded
/// machine (each such try puts the next one a bound's worth later): the
/// WAL must be back under 8 MiB within 64 MiB of appends, in 4 MiB steps.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reader_holding_the_wal_delays_its_restart_without_stopping_appends() {
    let (_dir, path) = temp_db();
    let store = Arc::new(
        SqliteOptions::new(&path)
            .max_wal_bytes(1 << 20)
            .busy_timeout(Duration::from_millis(20))
            .open()
            .unwrap(),
    );
    append_mib_watching_the_wal(&store, &path, 2).await;
    let reader = rusqlite::Connection::open(&path).unwrap();
    reader
        .execute_batch("BEGIN; SELECT COUNT(*) FROM streams;")
        .unwrap();
    let held = append_mib_watching_the_wal(&store, &path, 16).await;
    assert!(held >= 8 << 20, "the reader held the WAL at {held} bytes");
    reader.execute_batch("COMMIT").unwrap();
    drop(reader);
    let wal_size = || std::fs::metadata(path.with_extension("db-wal")).map_or(0, |m| m.len());
    // At least one step: the WAL is bounded under appends, not only at rest.
    let mut appended = 0;
    loop {
        append_mib_watching_the_wal(&store, &path, 4).await;
        appended += 4;
        if wal_size() < 8 << 20 || appended >= 64 {
            break;
        }
    }
    let size = wal_size();
    assert!(
        size < 8 << 20,
        "the WAL is still {size} bytes after the reader left and {appended} MiB more were appended"
    );
    store.close().await.unwrap();
}

/// Appends `mib` MiB of 512 B events from four streams at once, and returns
/// the largest size the WAL beside `path` was seen at meanwhile.
async fn append_mib_watching_the_wal(
    store: &Arc<SqliteEventStore>,
    path: &Path,
    mib: usize,
) -> u64 {
    const STREAMS: usize = 4;
    // 32 events of 512 B: 16 KiB per append.
    let appends = mib * 64 / STREAMS;
    let wal = path.with_extension("db-wal");
    let largest = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let writers: Vec<_> = (0..STREAMS)
        .map(|_| {
            let (store, wal, largest) = (store.clone(), wal.clone(), largest.clone());
            tokio::spawn(async move {
                let stream = store
                    .create_stream(NewStream::new(StreamKind::PostResponse))
                    .await
                    .unwrap();
                for _ in 0..appends {
                    let events = (0..32).map(|_| NewEvent::message("x".repeat(512)));
                    store.append(stream, events.collect()).await.unwrap();
                    let size = std::fs::metadata(&wal).map_or(0, |m| m.len());
                    largest.fetch_max(size, std::sync::atomic::Ordering::Relaxed);
                }
            })
        })
        .collect();
    for writer in writers {
        writer.await.unwrap();
    }
    largest.load(std::sync::atomic::Ordering::Relaxed)
}

/// What the store logs, kept for the test to read (a `tracing` writer).
#[derive(Clone, Default)]
struct Logged(Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Logged {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Logged {
    fn errors(&self) -> Vec<String> {
        String::from_utf8_lossy(&self.0.lock().unwrap())
            .lines()
            .filter(|line| line.contains("ERROR"))
            .map(str::to_owned)
            .collect()
    }
}

/// Issue 26, part 5: the database files deleted under a running store. The
/// store notices within `FILE_CHECK_INTERVAL` without being asked, and logs
/// an error naming the file; `health` then fails with `FileReplaced`, naming
/// it too. Before that, `health` is Ok.
#[tokio::test]
async fn database_files_deleted_while_open_are_logged_and_fail_the_health_check() {
    let (dir, path) = temp_db();
    let logged = Logged::default();
    let writer = logged.clone();
    // Scoped to this thread (the test's runtime is single-threaded); the
    // store's threads log to it too.
    let _logging = tracing::subscriber::set_default(
        tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .finish(),
    );
    let store = Arc::new(SqliteEventStore::open(&path).unwrap());
    let stream = one_event_in_a_new_stream(&store, "committed before").await;
    store.health().await.unwrap();

    // `rm mcp_events.db*`: the database, its -wal and -shm, and the lock file.
    for file in std::fs::read_dir(dir.path()).unwrap() {
        std::fs::remove_file(file.unwrap().path()).unwrap();
    }
    assert!(!path.exists());
    // The store goes on committing, to a file nothing can open again.
    store
        .append(stream, vec![NewEvent::message("lost at the next start")])
        .await
        .unwrap();

    let named = path.display().to_string();
    let deadline =
        std::time::Instant::now() + SqliteEventStore::FILE_CHECK_INTERVAL + Duration::from_secs(2);
    while !logged.errors().iter().any(|line| line.contains(&named)) {
        assert!(
            std::time::Instant::now() < deadline,
            "no error naming {named} logged within the check interval: {:?}",
            logged.errors()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let error = store.health().await.unwrap_err();
    assert!(
        matches!(&error, StoreError::FileReplaced { path: p } if *p == path),
        "{error:?}"
    );
    assert!(error.to_string().contains(&named), "{error}");
    // Logged once while it lasts, not at every check.
    assert_eq!(logged.errors().len(), 1, "{:?}", logged.errors());
    let _ = store.close().await;
}
