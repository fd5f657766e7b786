//! Noticing that the database file was deleted or replaced under the store.
//!
//! SQLite goes on reading and writing the file it opened after that file is
//! removed from its directory (or another file is moved to its path): every
//! commit succeeds, nothing is logged, and whatever is committed from then on
//! is lost when the process stops, since the next start opens whatever is at
//! the path. So the store remembers the file's identity (device and inode)
//! when it opens it and compares it with the file at the path now and then
//! ([`SqliteEventStore::FILE_CHECK_INTERVAL`], on the checkpointing thread)
//! and at every [`health`](crate::store::EventStore::health) check.
//!
//! [`SqliteEventStore::FILE_CHECK_INTERVAL`]: super::SqliteEventStore::FILE_CHECK_INTERVAL

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::store::StoreError;

/// While the file stays deleted or replaced, the error log is repeated at
/// most this often: loud enough to be seen, not so loud that it buries the rest.
const LOG_REPEAT_INTERVAL: Duration = Duration::from_secs(60);

/// What identifies a file whatever its name: its device and inode. (Outside
/// Unix there is no inode to compare, and only a deleted file is noticed;
/// Windows refuses to delete a file that is open anyway.)
type FileIdentity = (u64, u64);

#[cfg(unix)]
fn identity_of(metadata: &std::fs::Metadata) -> FileIdentity {
    use std::os::unix::fs::MetadataExt;
    (metadata.dev(), metadata.ino())
}

#[cfg(not(unix))]
fn identity_of(_metadata: &std::fs::Metadata) -> FileIdentity {
    (0, 0)
}

/// The identity of the database file the store opened, and whether the file
/// at its path is still that one.
#[derive(Debug)]
pub(crate) struct FileWatch {
    path: PathBuf,
    /// `None` when the file could not be looked up right after it was opened
    /// (nothing to compare against, so nothing is ever reported).
    opened: Option<FileIdentity>,
    /// When the change was last logged, while it lasts; `None` while the file
    /// is the one opened.
    logged_at: Mutex<Option<Instant>>,
}

impl FileWatch {
    /// Remembers the identity of the file at `path`, which the store has just opened.
    pub(crate) fn new(path: &Path) -> Self {
        Self {
            path: path.to_owned(),
            opened: std::fs::metadata(path).ok().map(|m| identity_of(&m)),
            logged_at: Mutex::new(None),
        }
    }

    /// Fails with [`StoreError::FileReplaced`] if the file at the path is no
    /// longer the one the store opened, and logs that as an error (again at
    /// most every [`LOG_REPEAT_INTERVAL`] while it lasts). A file that cannot
    /// be looked up for another reason (a directory this process may no
    /// longer search) fails with [`StoreError::Io`] and is not logged here.
    pub(crate) fn check(&self) -> Result<(), StoreError> {
        let Some(opened) = self.opened else {
            return Ok(());
        };
        let same = match std::fs::metadata(&self.path) {
            Ok(metadata) => identity_of(&metadata) == opened,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => false,
            Err(error) => {
                return Err(StoreError::Io {
                    path: self.path.clone(),
                    source: std::sync::Arc::new(error),
                });
            }
        };
        let mut logged_at = self.logged_at.lock().unwrap_or_else(|e| e.into_inner());
        if same {
            // Moved back, or linked again under its name: writes reach it again.
            if logged_at.take().is_some() {
                tracing::warn!(
                    path = %self.path.display(),
                    "the mcp-resume SQLite store's file is back at its path"
                );
            }
            return Ok(());
        }
        let error = StoreError::FileReplaced {
            path: self.path.clone(),
        };
        if logged_at.is_none_or(|at| at.elapsed() >= LOG_REPEAT_INTERVAL) {
            *logged_at = Some(Instant::now());
            tracing::error!(path = %self.path.display(), "{error}");
        }
        Err(error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// When the watch last logged the change it sees.
    fn logged_at(watch: &FileWatch) -> Option<Instant> {
        *watch.logged_at.lock().unwrap()
    }

    /// Deleted, then replaced by another file, then back: `check` reports
    /// the change every time with the path, logs it once while it lasts (not
    /// at every check), and the file being back clears it, so that the next
    /// change is logged again. (That the log names the path is tested in
    /// `tests/it/sqlite_faults.rs`.)
    #[test]
    fn a_deleted_or_replaced_file_fails_the_check_and_is_logged_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("events.db");
        std::fs::write(&path, b"opened").unwrap();
        let watch = FileWatch::new(&path);
        watch.check().unwrap();
        assert_eq!(logged_at(&watch), None);

        let aside = dir.path().join("aside.db");
        std::fs::rename(&path, &aside).unwrap();
        let error = watch.check().unwrap_err();
        assert!(matches!(&error, StoreError::FileReplaced { path: p } if *p == path));
        assert!(error.to_string().contains(&path.display().to_string()));
        let first_log = logged_at(&watch).expect("logged");
        assert!(watch.check().is_err());
        assert_eq!(logged_at(&watch), Some(first_log), "not logged again");

        // Another file at the path is not the one the store writes.
        std::fs::write(&path, b"another").unwrap();
        assert!(matches!(
            watch.check(),
            Err(StoreError::FileReplaced { .. })
        ));
        assert_eq!(logged_at(&watch), Some(first_log));

        std::fs::rename(&aside, &path).unwrap();
        watch.check().unwrap();
        assert_eq!(logged_at(&watch), None);
        std::fs::remove_file(&path).unwrap();
        assert!(watch.check().is_err());
        assert!(logged_at(&watch).is_some_and(|at| at > first_log));
    }
}
