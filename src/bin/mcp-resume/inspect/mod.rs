//! `mcp-resume inspect`: the history a store holds, for operators: its
//! sessions, its tool calls, one stream's events, and summary statistics;
//! a table for people, `--json` for scripts.
//!
//! An SQLite store is opened read-only ([`SqliteReadOnlyStore`]), so it can
//! be inspected while a proxy writes it: nothing is written, migrated or
//! checkpointed.

mod output;
mod time;

use std::sync::Arc;

use clap::{Args, Subcommand};
use mcp_resume::store::{
    EventId, EventStore, ReadLimit, SqliteReadOnlyStore, StoreError, StreamId, StreamQuery,
    StreamRecord, history,
};

use crate::store::StoreSpec;
use time::CliTime;

/// What `inspect` shows.
#[derive(Debug, Args)]
pub struct InspectArgs {
    /// Print one JSON document instead of a table
    #[arg(long, global = true)]
    pub json: bool,
    #[command(subcommand)]
    pub what: What,
}

/// The listings of `inspect`.
#[derive(Debug, Subcommand)]
pub enum What {
    /// Sessions: their streams and tool calls, first and last activity; most recent first
    Sessions {
        #[command(flatten)]
        window: Window,
    },
    /// Tool calls (or with --all every stream): method, tool, request id, outcome, duration; newest first
    Calls {
        #[command(flatten)]
        window: Window,
        /// Every stream (prompts, GET streams, ...), not only tools/call
        #[arg(long)]
        all: bool,
    },
    /// One stream's events, their JSON decoded (a stream id, or an event id to start after it)
    Events {
        /// A stream id (32 hex digits) or an event id (`<stream>.<seq>`: the events after it)
        #[arg(value_name = "STREAM")]
        stream: String,
        /// At most this many events
        #[arg(long, default_value_t = DEFAULT_EVENTS)]
        limit: usize,
        /// Cut each event's data to this many characters in the table (0: never)
        #[arg(long, default_value_t = DEFAULT_WIDTH)]
        width: usize,
    },
    /// Calls per method and tool, p50/p99 duration, share resumed, share cut off
    Summary {
        #[command(flatten)]
        window: Window,
    },
}

/// How many events `inspect events` shows unless `--limit` says otherwise.
pub const DEFAULT_EVENTS: usize = 1_000;

/// How many characters of an event's data the table shows unless
/// `--width` says otherwise: a line of a wide terminal.
pub const DEFAULT_WIDTH: usize = 120;

/// Which streams a listing looks at.
#[derive(Debug, Args)]
pub struct Window {
    /// Only this MCP session's streams
    #[arg(long, value_name = "ID")]
    pub session: Option<String>,
    /// Only streams started at or after this time: 2026-12-07T06:10:02Z, 2026-12-07, or 15m (ago)
    #[arg(long, value_name = "TIME")]
    pub since: Option<CliTime>,
    /// Only streams started before this time (same forms as --since)
    #[arg(long, value_name = "TIME")]
    pub until: Option<CliTime>,
    /// Look at the newest N streams at most
    #[arg(long, value_name = "N", default_value_t = StreamQuery::DEFAULT_LIMIT)]
    pub limit: usize,
}

impl Window {
    fn query(&self) -> StreamQuery {
        let mut query = StreamQuery::new().limit(self.limit);
        if let Some(session) = &self.session {
            query = query.session(session.clone());
        }
        if let Some(CliTime(since)) = self.since {
            query = query.since(since);
        }
        if let Some(CliTime(until)) = self.until {
            query = query.until(until);
        }
        query
    }
}

/// Why `inspect` could not answer.
#[derive(Debug, thiserror::Error)]
pub enum InspectError {
    /// The store could not be opened or read.
    #[error("cannot inspect the event store `{spec}`: {error}")]
    Store {
        /// The store.
        spec: StoreSpec,
        /// Why.
        error: StoreError,
    },
    /// A memory store lives in its process.
    #[error(
        "a memory store lives inside the process that serves it; there is nothing to inspect from outside (inspect an sqlite: or redis:// store)"
    )]
    Memory,
    /// The stream argument is not an id.
    #[error("`{0}` is not a stream id (32 hex digits) or an event id (`<stream>.<seq>`)")]
    NotAnId(String),
    /// The stream is not in the store.
    #[error("stream {0} is not in the store (never created here, purged, or expired by retention)")]
    NoSuchStream(StreamId),
}

/// Runs `inspect` on the store at `spec` and prints what it found.
pub async fn run(args: &InspectArgs, spec: &StoreSpec) -> Result<(), InspectError> {
    let failed = |error| InspectError::Store {
        spec: spec.clone(),
        error,
    };
    let store = open(spec).await?;
    let text = match &args.what {
        What::Sessions { window } => {
            let records = store.list_streams(&window.query()).await.map_err(failed)?;
            output::sessions(&history::sessions_of(&records), args.json)
        }
        What::Calls { window, all } => {
            let mut query = window.query();
            if !all {
                query = query.tool_calls_only();
            }
            let records = store.list_streams(&query).await.map_err(failed)?;
            output::calls(&records, args.json)
        }
        What::Summary { window } => {
            let records = store.list_streams(&window.query()).await.map_err(failed)?;
            output::summary(&history::summary_of(&records), args.json)
        }
        What::Events {
            stream,
            limit,
            width,
        } => {
            let (stream, after) = parse_stream(stream)?;
            let record = record_of(&*store, stream)
                .await
                .map_err(failed)?
                .ok_or(InspectError::NoSuchStream(stream))?;
            let events = read_events(&*store, &record, after, *limit)
                .await
                .map_err(failed)?;
            output::events(&record, &events, *width, args.json)
        }
    };
    // Closing a read-only view releases its connection; it writes nothing.
    let _ = store.close().await;
    print!("{text}");
    Ok(())
}

/// Opens the store for reading only, where the backend allows it.
async fn open(spec: &StoreSpec) -> Result<Arc<dyn EventStore>, InspectError> {
    let failed = |error| InspectError::Store {
        spec: spec.clone(),
        error,
    };
    match spec {
        StoreSpec::Sqlite(path) => Ok(Arc::new(SqliteReadOnlyStore::open(path).map_err(failed)?)),
        StoreSpec::Memory => Err(InspectError::Memory),
        StoreSpec::Redis(url) => open_redis(url).await.map_err(failed),
    }
}

#[cfg(feature = "redis")]
async fn open_redis(url: &str) -> Result<Arc<dyn EventStore>, StoreError> {
    Ok(Arc::new(
        mcp_resume::store::RedisOptions::new(url)
            .open_read_only()
            .await?,
    ))
}

#[cfg(not(feature = "redis"))]
async fn open_redis(_: &str) -> Result<Arc<dyn EventStore>, StoreError> {
    unreachable!("`parse_store` accepts Redis URLs only in builds with the `redis` feature")
}

/// A stream id, or an event id: the stream and the position to read after.
fn parse_stream(text: &str) -> Result<(StreamId, u64), InspectError> {
    if let Ok(stream) = text.parse::<StreamId>() {
        return Ok((stream, 0));
    }
    let id: EventId = text
        .parse()
        .map_err(|_| InspectError::NotAnId(text.to_owned()))?;
    Ok((id.stream, id.seq))
}

/// The stream's history record.
async fn record_of(
    store: &dyn EventStore,
    stream: StreamId,
) -> Result<Option<StreamRecord>, StoreError> {
    let records = store
        .list_streams(&StreamQuery::new().stream(stream))
        .await?;
    Ok(records.into_iter().next())
}

/// Up to `limit` events after `after`, starting at the oldest retained one
/// when retention trimmed the ones asked for.
async fn read_events(
    store: &dyn EventStore,
    record: &StreamRecord,
    after: u64,
    limit: usize,
) -> Result<Vec<mcp_resume::store::StoredEvent>, StoreError> {
    let mut position = after.max(record.info.first_seq.saturating_sub(1));
    let mut events = Vec::new();
    while events.len() < limit && position < record.info.last_seq {
        let batch = store
            .read_batch(
                record.info.id,
                position,
                ReadLimit {
                    max_events: (limit - events.len()).min(256),
                    ..ReadLimit::default()
                },
            )
            .await?;
        let Some(last) = batch.events.last() else {
            break;
        };
        position = last.seq;
        events.extend(batch.events);
    }
    Ok(events)
}
