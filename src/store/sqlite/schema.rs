//! Opening a database file: checks, pragmas, schema and migrations, and
//! turning SQLite's error codes into [`StoreError`]s a user can act on; and
//! how a stream's head is read from the tables the schema lays out.

use std::path::Path;

use rusqlite::{Connection, ErrorCode, OpenFlags};

use super::SqliteOptions;
use crate::store::StoreError;

/// Written to the file header (`PRAGMA application_id`) so a database of
/// another application is recognised and left alone. ASCII "mcpr".
pub(super) const APPLICATION_ID: i64 = 0x6d63_7072;

/// The forward migrations, in order: `MIGRATIONS[n]` takes schema version `n`
/// to `n + 1`. Released versions are never edited; a change is a new entry.
const MIGRATIONS: &[&str] = &[
    // Version 1: the first released schema.
    //
    // A stream's head (first and last retained sequence) is not stored: it
    // is read from the events' keys in O(log n), so an append writes its rows
    // and nothing else.
    //
    // Appends go to `recent`, in commit order: a group commit of many
    // streams then dirties a few pages at the end of that table and of its
    // small index, instead of one page per stream in `events`. The writer
    // moves `recent` into `events` in one sorted batch every few thousand
    // rows. For a stream, every sequence in `events` precedes every sequence
    // in `recent`, and a read transaction sees each event in exactly one.
    "
    CREATE TABLE streams (
        stream_no     INTEGER PRIMARY KEY,
        stream_id     BLOB    NOT NULL UNIQUE,
        kind          INTEGER NOT NULL,
        state         INTEGER NOT NULL,
        session_id    TEXT,
        identity      TEXT,
        max_events    INTEGER,
        created_at    INTEGER NOT NULL,
        last_activity INTEGER NOT NULL
    );
    CREATE INDEX streams_by_session ON streams (session_id) WHERE session_id IS NOT NULL;
    CREATE INDEX streams_by_activity ON streams (state, last_activity);
    CREATE TABLE events (
        stream_no  INTEGER NOT NULL,
        seq        INTEGER NOT NULL,
        event_type BLOB,
        data       BLOB    NOT NULL,
        PRIMARY KEY (stream_no, seq)
    ) WITHOUT ROWID;
    CREATE TABLE recent (
        position   INTEGER PRIMARY KEY,
        stream_no  INTEGER NOT NULL,
        seq        INTEGER NOT NULL,
        event_type BLOB,
        data       BLOB    NOT NULL
    );
    CREATE UNIQUE INDEX recent_by_stream ON recent (stream_no, seq);
    ",
    // Version 2: the same tables; what changes is what a file may hold.
    //
    // `recent` is moved into `events` in small slices between commits
    // instead of one batch inside a commit (which held every append of that
    // commit for tens of milliseconds): the rows are copied first and
    // deleted from `recent` after, so an event may be in both tables for a
    // while. For a stream, the sequences in `events` are a contiguous run
    // and `recent` holds every later one: readers take `events` first, then
    // what follows it from `recent`. Version 1 builds, which expected each
    // event in one table only, refuse a version 2 file.
    "-- No change to the tables.",
    // Version 3: a second table like `recent`, so that a settle empties a
    // whole table at once instead of deleting its rows one by one (with
    // their index entries). Appends go to one of the two; when it is full,
    // they go to the other, and the full one is copied into `events` in
    // slices, then emptied in one statement. The table being settled gets
    // no new rows, and a stream's rows in it precede its rows in the other.
    //
    // What readers rely on is unchanged: for a stream, the sequences in
    // `events` are a contiguous run, and the two `recent` tables together
    // hold every later one (a row may also be in `events` until its table
    // is emptied). Version 2 builds, which read `recent` only, refuse a
    // version 3 file.
    "
    CREATE TABLE recent_alt (
        position   INTEGER PRIMARY KEY,
        stream_no  INTEGER NOT NULL,
        seq        INTEGER NOT NULL,
        event_type BLOB,
        data       BLOB    NOT NULL
    );
    CREATE UNIQUE INDEX recent_alt_by_stream ON recent_alt (stream_no, seq);
    ",
    // Version 4: each stream's history, for operators (`mcp-resume
    // inspect`): the JSON-RPC request it answers, when it ended, and how
    // many times it was resumed. Written at creation, at the end and at a
    // resume, never per event; the outcome, the event count and the bytes
    // are read from the events when a stream is listed. Streams of earlier
    // versions have no call and no end time. No index: listings go newest
    // first by `stream_no` (the creation order), and the empty store stays
    // within its 10 pages.
    "
    ALTER TABLE streams ADD COLUMN rpc_method TEXT;
    ALTER TABLE streams ADD COLUMN tool_name TEXT;
    ALTER TABLE streams ADD COLUMN request_id TEXT;
    ALTER TABLE streams ADD COLUMN ended_at INTEGER;
    ALTER TABLE streams ADD COLUMN resumes INTEGER NOT NULL DEFAULT 0;
    ",
];

/// The schema version this build writes and understands.
pub(crate) const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

/// Opens the writer connection: checks the file is ours (or new), applies
/// pragmas and migrations.
pub(crate) fn open_writer(options: &SqliteOptions) -> Result<Connection, StoreError> {
    let path = &options.path;
    let mut conn = Connection::open(path).map_err(|e| classify(path, "opening the database", e))?;
    if conn.is_readonly(rusqlite::MAIN_DB).unwrap_or(false) {
        return Err(StoreError::ReadOnly { path: path.clone() });
    }
    configure(&conn, options).map_err(|e| classify(path, "configuring the database", e))?;
    // Read-only checks first: a file that is not ours must not be touched,
    // and switching to WAL would rewrite its header.
    let version = check_ownership(&conn, path)?;
    conn.pragma_update(None, "journal_mode", "WAL")
        .map_err(|e| classify(path, "switching to WAL mode", e))?;
    // Checkpoints run on a thread of their own (see `checkpointer`), never
    // inside a commit.
    conn.pragma_update(None, "wal_autocheckpoint", 0)
        .map_err(|e| classify(path, "configuring checkpoints", e))?;
    // When the writer restarts the WAL, a file grown past the bound (by the
    // commits made while a full checkpoint was awaited) is cut back to it.
    conn.pragma_update(None, "journal_size_limit", options.max_wal_bytes as i64)
        .map_err(|e| classify(path, "configuring checkpoints", e))?;
    if let Some(max_pages) = options
        .max_size_bytes
        .map(|bytes| bytes.div_ceil(page_size(&conn)))
    {
        conn.pragma_update(None, "max_page_count", max_pages.max(1) as i64)
            .map_err(|e| classify(path, "setting the size limit", e))?;
    }
    migrate(&mut conn, path, version)?;
    Ok(conn)
}

/// Opens a read connection to a database the writer has already prepared.
pub(crate) fn open_reader(options: &SqliteOptions) -> Result<Connection, StoreError> {
    open_more(
        options,
        OpenFlags::SQLITE_OPEN_READ_ONLY,
        "opening a read connection",
    )
}

/// Opens the checkpointing thread's connection (read-write: a checkpoint
/// writes the database file).
pub(crate) fn open_checkpointer(options: &SqliteOptions) -> Result<Connection, StoreError> {
    open_more(
        options,
        OpenFlags::SQLITE_OPEN_READ_WRITE,
        "opening the checkpoint connection",
    )
}

/// Opens one more connection, besides the writer's, to the prepared database;
/// `what` names the step in its errors.
fn open_more(
    options: &SqliteOptions,
    access: OpenFlags,
    what: &'static str,
) -> Result<Connection, StoreError> {
    let path = &options.path;
    let conn = Connection::open_with_flags(path, access | OpenFlags::SQLITE_OPEN_NO_MUTEX)
        .map_err(|e| classify(path, what, e))?;
    configure(&conn, options).map_err(|e| classify(path, what, e))?;
    Ok(conn)
}

fn configure(conn: &Connection, options: &SqliteOptions) -> rusqlite::Result<()> {
    conn.busy_timeout(options.busy_timeout)?;
    conn.pragma_update(None, "synchronous", options.sync.pragma_value())?;
    conn.set_prepared_statement_cache_capacity(32);
    Ok(())
}

pub(crate) fn page_size(conn: &Connection) -> u64 {
    conn.pragma_query_value(None, "page_size", |row| row.get::<_, i64>(0))
        .map_or(4096, |size| size.max(512) as u64)
}

/// The head columns of a stream row aliased `s`: the first and the last
/// retained sequence, both NULL when the stream has no events. Each
/// subquery is one index probe. Readers cannot tell which `recent` table is
/// being settled, so both are probed, and the aggregate over the two probes
/// skips the one that found nothing.
pub(super) const HEAD_COLUMNS: &str = "coalesce(
        (SELECT MIN(seq) FROM events WHERE stream_no = s.stream_no),
        (SELECT MIN(m) FROM (
            SELECT (SELECT MIN(seq) FROM recent WHERE stream_no = s.stream_no) AS m
            UNION ALL
            SELECT (SELECT MIN(seq) FROM recent_alt WHERE stream_no = s.stream_no)))),
     coalesce(
        (SELECT MAX(m) FROM (
            SELECT (SELECT MAX(seq) FROM recent WHERE stream_no = s.stream_no) AS m
            UNION ALL
            SELECT (SELECT MAX(seq) FROM recent_alt WHERE stream_no = s.stream_no))),
        (SELECT MAX(seq) FROM events WHERE stream_no = s.stream_no))";

/// First and last retained sequence from [`HEAD_COLUMNS`]. A stream without
/// events has never had any: trimming always keeps the newest.
pub(super) fn head_from(first: Option<i64>, last: Option<i64>) -> (u64, u64) {
    match (first, last) {
        (Some(first), Some(last)) => (first as u64, last as u64),
        _ => (1, 0),
    }
}

/// Returns the file's schema version if it is an mcp-resume store (or an
/// empty database), without changing anything.
fn check_ownership(conn: &Connection, path: &Path) -> Result<i64, StoreError> {
    let read = |pragma: &str| {
        conn.pragma_query_value(None, pragma, |row| row.get::<_, i64>(0))
            .map_err(|e| classify(path, "reading the schema version", e))
    };
    let application_id = read("application_id")?;
    let version = read("user_version")?;
    if application_id != APPLICATION_ID {
        let has_tables: bool = conn
            .query_row("SELECT EXISTS (SELECT 1 FROM sqlite_schema)", [], |row| {
                row.get(0)
            })
            .map_err(|e| classify(path, "inspecting the database", e))?;
        if application_id != 0 || version != 0 || has_tables {
            return Err(StoreError::ForeignDatabase {
                path: path.to_owned(),
            });
        }
    }
    if version > SCHEMA_VERSION {
        return Err(StoreError::SchemaTooNew {
            path: path.to_owned(),
            found: version,
            supported: SCHEMA_VERSION,
        });
    }
    Ok(version)
}

/// Applies the migrations from `version` on, each in its own transaction.
fn migrate(conn: &mut Connection, path: &Path, version: i64) -> Result<(), StoreError> {
    for (from, migration) in MIGRATIONS.iter().enumerate().skip(version.max(0) as usize) {
        let tx = conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(|e| classify(path, "starting a migration", e))?;
        tx.execute_batch(migration)
            .and_then(|()| tx.pragma_update(None, "application_id", APPLICATION_ID))
            .and_then(|()| tx.pragma_update(None, "user_version", from as i64 + 1))
            .and_then(|()| tx.commit())
            .map_err(|e| classify(path, "migrating the schema", e))?;
    }
    Ok(())
}

/// Maps an SQLite error to the [`StoreError`] that tells a user what to do.
pub(crate) fn classify(path: &Path, context: &'static str, error: rusqlite::Error) -> StoreError {
    let path = path.to_owned();
    match error.sqlite_error_code() {
        Some(ErrorCode::NotADatabase) => StoreError::NotADatabase { path },
        Some(ErrorCode::DiskFull) => StoreError::DiskFull { path },
        Some(ErrorCode::ReadOnly | ErrorCode::PermissionDenied) => StoreError::ReadOnly { path },
        Some(ErrorCode::CannotOpen) => match path.parent().filter(|p| !p.as_os_str().is_empty()) {
            Some(dir) if !dir.is_dir() => StoreError::Io {
                source: std::sync::Arc::new(std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    format!("directory {} does not exist", dir.display()),
                )),
                path,
            },
            _ => StoreError::ReadOnly { path },
        },
        _ => StoreError::backend(context, error),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::sqlite::SyncMode;

    /// Every connection the store opens syncs as its options say: SQLite
    /// reads `synchronous` back as 1 for `NORMAL` and 2 for `FULL`.
    #[test]
    fn connections_sync_as_the_options_say() {
        let dir = tempfile::tempdir().unwrap();
        for (sync, expected) in [(SyncMode::Normal, 1), (SyncMode::Full, 2)] {
            let options = SqliteOptions::new(dir.path().join(format!("{sync:?}.db"))).sync(sync);
            let writer = open_writer(&options).unwrap();
            let reader = open_reader(&options).unwrap();
            for conn in [&writer, &reader] {
                let synchronous: i64 = conn
                    .pragma_query_value(None, "synchronous", |row| row.get(0))
                    .unwrap();
                assert_eq!(synchronous, expected, "{sync:?}");
            }
        }
    }
}
