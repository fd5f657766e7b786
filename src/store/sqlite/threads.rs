//! The store's own threads: named, scheduled below the threads serving
//! requests ([`SqliteOptions::thread_nice`](super::SqliteOptions::thread_nice)),
//! and logging where the thread that opened the store logs.

use std::path::Path;
use std::sync::Arc;
use std::thread::JoinHandle;

use crate::store::StoreError;

/// Starts a thread of the store at `path` named `name` (at most 15 bytes,
/// all Linux keeps) that runs `body` `nice` levels below the calling thread.
pub(crate) fn spawn<T: Send + 'static>(
    name: &'static str,
    nice: u8,
    path: &Path,
    body: impl FnOnce() -> T + Send + 'static,
) -> Result<JoinHandle<T>, StoreError> {
    // The thread logs where the opening thread does, to its scoped
    // subscriber if it has one, not only to the global one.
    let dispatch = tracing::dispatcher::get_default(|dispatch| dispatch.clone());
    std::thread::Builder::new()
        .name(name.into())
        .spawn(move || {
            let _logging = tracing::dispatcher::set_default(&dispatch);
            lower_this_thread(nice);
            body()
        })
        .map_err(|source| StoreError::Io {
            path: path.to_owned(),
            source: Arc::new(source),
        })
}

/// Lowers the calling thread's scheduling priority by `levels` nice levels,
/// from the nice value it inherited from the thread that spawned it (at
/// most to 19, the lowest). Linux only, where nice is a per-thread
/// setting; elsewhere it does nothing. Lowering a priority needs no
/// privilege; a failure is logged and changes nothing else.
fn lower_this_thread(levels: u8) {
    if levels == 0 {
        return;
    }
    #[cfg(target_os = "linux")]
    {
        use rustix::process::{getpriority_process, setpriority_process};
        let me = Some(rustix::thread::gettid());
        let lowered = getpriority_process(me)
            .and_then(|nice| setpriority_process(me, (nice + i32::from(levels)).min(19)));
        if let Err(error) = lowered {
            tracing::debug!(%error, "could not lower the priority of an mcp-resume SQLite thread");
        }
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    #[test]
    fn a_thread_lowers_its_own_priority_and_no_other() {
        let nice = || rustix::process::getpriority_process(Some(rustix::thread::gettid())).unwrap();
        let before = nice();
        let lowered = std::thread::spawn(move || {
            lower_this_thread(3);
            nice()
        })
        .join()
        .unwrap();
        assert_eq!(lowered, (before + 3).min(19));
        assert_eq!(nice(), before, "the spawning thread is left as it was");
    }

    /// The nice value of each of this process's threads with that name.
    fn nice_of_threads_named(name: &str) -> Vec<i32> {
        let mut found = Vec::new();
        for task in std::fs::read_dir("/proc/self/task").unwrap().flatten() {
            let comm = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
            let stat = std::fs::read_to_string(task.path().join("stat")).unwrap_or_default();
            // Fields after the parenthesised name: state is field 3, nice field 19.
            let nice = stat
                .rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().nth(16)?.parse().ok());
            if let (true, Some(nice)) = (comm.trim_end() == name, nice) {
                found.push(nice);
            }
        }
        found
    }

    #[tokio::test]
    async fn the_store_threads_run_below_the_thread_that_opened_it() {
        let opener = rustix::process::getpriority_process(Some(rustix::thread::gettid())).unwrap();
        // 7: a value no other test's store uses, since they run in this process too.
        let levels = 7;
        let expected = (opener + levels).min(19);
        let dir = tempfile::tempdir().unwrap();
        let store = crate::store::SqliteOptions::new(dir.path().join("events.db"))
            .thread_nice(levels as u8)
            .open()
            .unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        for name in [
            super::super::writer::THREAD_NAME,
            super::super::checkpointer::THREAD_NAME,
        ] {
            while !nice_of_threads_named(name).contains(&expected) {
                assert!(
                    std::time::Instant::now() < deadline,
                    "no {name} thread at nice {expected}: {:?}",
                    nice_of_threads_named(name)
                );
                tokio::time::sleep(std::time::Duration::from_millis(5)).await;
            }
        }
        crate::store::EventStore::close(&store).await.unwrap();
    }
}
