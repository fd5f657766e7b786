//! Settling: moving the rows of a full `recent` table into `events`.
//!
//! Appends go to one of two `recent` tables, in commit order, so a group
//! commit of many streams dirties a few pages at the end of one table
//! instead of a page per stream in `events` (see the schema). Once the
//! table taking appends holds [`SETTLE_ROWS`] rows, appends switch to the
//! other one and the writer settles the full one: it copies its rows into
//! `events` in key order, a slice per transaction between commits, and the
//! slice that copies the last rows empties the table in one statement.
//! Slices keep an append that arrives meanwhile from waiting for the whole
//! move; the writer moves them while it has nothing else to do, or after
//! its commits when it never has.

use std::path::Path;
use std::time::{Duration, Instant};

use rusqlite::{Connection, OptionalExtension, Transaction, TransactionBehavior, params};

use super::SyncMode;
use super::ledger::Ledger;
use super::schema::classify;
use super::writer::Writer;
use crate::store::StoreError;

/// When the `recent` table taking appends holds this many rows, appends
/// switch to the other one and the writer starts settling this one into
/// `events`. Larger amortises the settling better; smaller keeps the index
/// of `recent`, rewritten by every commit, smaller.
const SETTLE_ROWS: u64 = 4_096;

/// Rows a settle moves in one slice while the writer is idle: an append
/// that arrives during a slice waits for it, so slices are short, though
/// not so short that each slice's own commit costs more than its rows
/// (the measurements behind 64 are in `docs/performance-notes-2026-12.md`,
/// "Settle slices").
const IDLE_SLICE_ROWS: u64 = 64;

/// A writer that is never idle (appends arrive faster than it commits them)
/// still settles once the table taking appends is full again before the
/// other is settled: after a commit, until the settle is done, in slices of
/// this many rows, which move rows at the lowest cost per row: what matters
/// when throughput is.
const BUSY_SLICE_ROWS: u64 = SETTLE_ROWS;

/// The wait before retrying a settle slice that failed, the first time...
const SETTLE_RETRY_MIN: Duration = Duration::from_millis(100);
/// ...and at most, after failures in a row.
const SETTLE_RETRY_MAX: Duration = Duration::from_secs(30);

/// One of the two tables appends go to (see the schema).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Recent {
    /// `recent`.
    First,
    /// `recent_alt`.
    Second,
}

impl Recent {
    pub(super) const BOTH: [Recent; 2] = [Recent::First, Recent::Second];

    fn table(self) -> &'static str {
        match self {
            Recent::First => "recent",
            Recent::Second => "recent_alt",
        }
    }

    fn index(self) -> &'static str {
        match self {
            Recent::First => "recent_by_stream",
            Recent::Second => "recent_alt_by_stream",
        }
    }

    fn other(self) -> Recent {
        match self {
            Recent::First => Recent::Second,
            Recent::Second => Recent::First,
        }
    }

    /// Deletes a stream's rows, returning the sequence of each (so that
    /// rows also in `events` are counted once).
    pub(super) fn delete_stream(self) -> &'static str {
        match self {
            Recent::First => "DELETE FROM recent WHERE stream_no = ?1 RETURNING seq",
            Recent::Second => "DELETE FROM recent_alt WHERE stream_no = ?1 RETURNING seq",
        }
    }

    /// The append statement, spelled out: it runs once per event.
    pub(super) fn insert(self) -> &'static str {
        match self {
            Recent::First => {
                "INSERT INTO recent (stream_no, seq, event_type, data) VALUES (?1, ?2, ?3, ?4)"
            }
            Recent::Second => {
                "INSERT INTO recent_alt (stream_no, seq, event_type, data) VALUES (?1, ?2, ?3, ?4)"
            }
        }
    }
}

/// A settle under way, of the `recent` table appends do not go to: its
/// rows are copied into `events` in key order, a slice per transaction so
/// that appends committed between slices never wait for the whole move,
/// and the slice that copies the last rows empties the table in one
/// statement.
///
/// Until then a copied row is in both tables. Readers take a stream's
/// events from `events` first and then only the later ones from the
/// `recent` tables, so a row in both is read once; the copy keeps each
/// stream's rows in `events` a contiguous run of sequences, which that read
/// needs.
#[derive(Clone, Copy, Debug)]
struct Settle {
    /// The key (stream, sequence) of the last row copied so far.
    after: (i64, i64),
}

impl Settle {
    const START: Settle = Settle {
        after: (i64::MIN, i64::MIN),
    };
}

/// Which `recent` table takes appends, how full it is, and the settle of
/// the other one under way, if any.
pub(super) struct RecentTables {
    /// The `recent` table appends go to; the other one is empty unless it
    /// is being settled.
    pub(super) active: Recent,
    /// Rows appended to `active`, as of the last commit (trims and purges
    /// are not subtracted, so it may be a little high).
    pub(super) active_rows: u64,
    /// The settle of the other `recent` table under way, if any.
    settle: Option<Settle>,
}

impl RecentTables {
    /// Picks the `recent` table appends go to, from the rows a previous run
    /// left: the one that has rows, if one is empty. If both have rows, the
    /// previous run stopped during a settle: the older table is settled
    /// again (its copy is idempotent) and appends go to the newer one.
    pub(super) fn load(conn: &Connection, path: &Path) -> Result<Self, StoreError> {
        let loaded = (|| {
            let [first, second] = Recent::BOTH.map(|recent| count_rows(conn, recent));
            let (first, second) = (first?, second?);
            Ok(match (first, second) {
                (_, 0) => (Recent::First, first, None),
                (0, _) => (Recent::Second, second, None),
                _ => {
                    let older = older_recent(conn)?;
                    let rows = if older == Recent::First {
                        second
                    } else {
                        first
                    };
                    (older.other(), rows, Some(Settle::START))
                }
            })
        })();
        let (active, active_rows, settle) =
            loaded.map_err(|e| classify(path, "reading recent events at open", e))?;
        Ok(Self {
            active,
            active_rows,
            settle,
        })
    }

    /// Once the table taking appends holds [`SETTLE_ROWS`] and the other
    /// one is empty (no settle under way), appends switch to the other one
    /// and a settle of this one starts.
    pub(super) fn start_settle_if_due(&mut self) {
        if self.settle.is_none() && self.active_rows >= SETTLE_ROWS {
            self.active = self.active.other();
            self.active_rows = 0;
            self.settle = Some(Settle::START);
        }
    }

    /// Counts the rows of the table taking appends again, after a rollback
    /// left the count ahead of the file.
    pub(super) fn recount(&mut self, conn: &Connection) {
        if let Ok(rows) = count_rows(conn, self.active) {
            self.active_rows = rows;
        }
    }
}

impl Writer {
    /// Whether a settle is under way and not waiting to retry after a failure.
    pub(super) fn settle_due(&self) -> bool {
        self.ledger.recent.settle.is_some()
            && self.settle_retry.is_none_or(|(_, at)| Instant::now() >= at)
    }

    /// Moves one short slice of the settle under way: what the writer does
    /// when no command is waiting.
    pub(super) fn settle_while_idle(&mut self) {
        self.settle_slice(IDLE_SLICE_ROWS);
    }

    /// After a commit: a writer too busy to be idle settles anyway once the
    /// table taking appends is full again, slice after slice until the
    /// settle is done; otherwise `recent` would grow as long as the load
    /// lasts.
    pub(super) fn settle_if_behind(&mut self) {
        while self.settle_due()
            && self.ledger.recent.active_rows >= SETTLE_ROWS
            && self.settle_slice(BUSY_SLICE_ROWS)
        {}
    }

    /// Moves the settle under way to its end, for a flush. Unlike the
    /// settle between commits, a failure is returned, not retried later.
    pub(super) fn settle_to_end(&mut self) -> Result<(), StoreError> {
        while self.ledger.recent.settle.is_some() {
            settle_step(&mut self.conn, &mut self.ledger, BUSY_SLICE_ROWS)?;
        }
        Ok(())
    }

    /// Moves one slice of the settle under way. A failure leaves the settle
    /// where it was, retried later (appends do not depend on it): the next
    /// try waits twice as long as the last, up to [`SETTLE_RETRY_MAX`], and
    /// only the first failure of a run is a warning. Returns whether the
    /// slice was moved.
    fn settle_slice(&mut self, rows: u64) -> bool {
        match settle_step(&mut self.conn, &mut self.ledger, rows) {
            Ok(()) => {
                if self.settle_retry.take().is_some() {
                    tracing::info!("mcp-resume SQLite store settles events again");
                }
                self.checkpointer.request();
                self.wal.after_commit(&self.conn, &self.ledger.path);
                true
            }
            Err(error) => {
                let wait = match self.settle_retry {
                    None => {
                        tracing::warn!(%error, "mcp-resume SQLite store could not settle events; will retry");
                        SETTLE_RETRY_MIN
                    }
                    Some((wait, _)) => {
                        tracing::debug!(%error, "mcp-resume SQLite store still cannot settle events");
                        (wait * 2).min(SETTLE_RETRY_MAX)
                    }
                };
                self.settle_retry = Some((wait, Instant::now() + wait));
                false
            }
        }
    }
}

/// Of two `recent` tables that both have rows, the one being settled when
/// the writer stopped: for a stream with rows in both, its rows there
/// precede its rows in the other. If no stream has rows in both, settling
/// either one first keeps every stream's rows in `events` contiguous, and
/// `recent` is picked.
fn older_recent(conn: &Connection) -> rusqlite::Result<Recent> {
    let first_is_older: Option<bool> = conn
        .query_row(
            "SELECT r.seq < a.seq FROM recent r JOIN recent_alt a ON a.stream_no = r.stream_no
             LIMIT 1",
            [],
            |row| row.get(0),
        )
        .optional()?;
    Ok(match first_is_older {
        Some(false) => Recent::Second,
        Some(true) | None => Recent::First,
    })
}

fn count_rows(conn: &Connection, recent: Recent) -> rusqlite::Result<u64> {
    conn.query_row(
        &format!("SELECT COUNT(*) FROM {}", recent.table()),
        [],
        |row| row.get::<_, i64>(0),
    )
    .map(|rows| rows as u64)
}

/// Moves one slice of the ledger's settle, in a transaction of its own.
fn settle_step(conn: &mut Connection, ledger: &mut Ledger, rows: u64) -> Result<(), StoreError> {
    let Some(settle) = ledger.recent.settle else {
        return Ok(());
    };
    // A slice only moves rows that are already durable: losing its commit
    // to a power cut leaves them where they were. So it is not synced even
    // in `FULL` mode; the next synced commit makes it durable, as the WAL is
    // written in order.
    let full = ledger.sync == SyncMode::Full;
    let moved = (|| {
        if full {
            conn.pragma_update(None, "synchronous", SyncMode::Normal.pragma_value())?;
        }
        let moved = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .and_then(|tx| {
                let moved = move_slice(&tx, ledger.recent.active.other(), settle, rows)?;
                tx.commit()?;
                Ok(moved)
            });
        if full {
            conn.pragma_update(None, "synchronous", SyncMode::Full.pragma_value())?;
        }
        moved
    })();
    ledger.recent.settle =
        moved.map_err(|e| classify(&ledger.path, "settling recent events", e))?;
    Ok(())
}

/// One slice of `settle` of the table `settling`, over at most `rows` rows:
/// returns where the settle goes on from, `None` once it is done.
fn move_slice(
    tx: &Transaction<'_>,
    settling: Recent,
    Settle { after }: Settle,
    rows: u64,
) -> rusqlite::Result<Option<Settle>> {
    let (table, index) = (settling.table(), settling.index());
    // The key `rows` rows on, if there are that many left. The index is
    // named so that the copy below reads the rows in key order rather than
    // sorting them.
    let end: Option<(i64, i64)> = tx
        .prepare_cached(&format!(
            "SELECT stream_no, seq FROM {table} INDEXED BY {index}
             WHERE (stream_no, seq) > (?1, ?2)
             ORDER BY stream_no, seq LIMIT 1 OFFSET ?3"
        ))?
        .query_row(params![after.0, after.1, rows.max(1) as i64 - 1], |row| {
            Ok((row.get(0)?, row.get(1)?))
        })
        .optional()?;
    let end_key = end.unwrap_or((i64::MAX, i64::MAX));
    // OR IGNORE: a settle cut short by a crash is done again from the start,
    // over rows it had already copied.
    tx.prepare_cached(&format!(
        "INSERT OR IGNORE INTO events (stream_no, seq, event_type, data)
         SELECT stream_no, seq, event_type, data FROM {table} INDEXED BY {index}
         WHERE (stream_no, seq) > (?1, ?2) AND (stream_no, seq) <= (?3, ?4)
         ORDER BY stream_no, seq"
    ))?
    .execute(params![after.0, after.1, end_key.0, end_key.1])?;
    match end {
        Some(after) => Ok(Some(Settle { after })),
        None => {
            // Every row is in `events` now. Without a WHERE clause SQLite
            // frees the table's pages whole, without visiting its rows and
            // their index entries one by one.
            tx.execute(&format!("DELETE FROM {table}"), [])?;
            Ok(None)
        }
    }
}
