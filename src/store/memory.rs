//! [`MemoryEventStore`]: the in-process backend, for tests and servers that
//! need resumption across dropped connections but not across restarts.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

use super::lease::LeaseTable;
use super::live::LiveStreams;
use super::{
    AppendReceipt, Batch, BoxFuture, EventStore, LeaseKind, NewEvent, NewStream, ReadLimit,
    Retention, StoreError, StoredEvent, StreamCall, StreamEnd, StreamId, StreamInfo, StreamOutcome,
    StreamQuery, StreamRecord, StreamState, Subscription, SweepReport,
};

/// An [`EventStore`] that keeps everything in memory.
///
/// It has the same semantics as the durable backends, and the same
/// [`Retention`] bounds its size: each stream keeps at most
/// `max_events_per_stream` events, and ended streams idle longer than
/// `max_age` are dropped by a sweep that runs on its own (at most every
/// `sweep_interval`, piggybacked on [`create_stream`](EventStore::create_stream)).
///
/// ```
/// use mcp_resume::store::{MemoryEventStore, Retention};
///
/// let store = MemoryEventStore::with_retention(Retention::new().max_events_per_stream(1_000));
/// ```
#[derive(Debug)]
pub struct MemoryEventStore {
    inner: Mutex<Inner>,
    live: LiveStreams,
    leases: LeaseTable,
    retention: Retention,
}

#[derive(Debug)]
struct Inner {
    streams: HashMap<StreamId, MemStream>,
    sessions: HashMap<String, HashSet<StreamId>>,
    last_sweep: Instant,
    closed: bool,
}

#[derive(Debug)]
struct MemStream {
    info: StreamInfo,
    /// The most events this stream keeps.
    cap: u64,
    /// Retained events; `events[i].seq == info.first_seq + i`.
    events: VecDeque<StoredEvent>,
    /// Its history: the request it answers, when it ended, its resumes.
    call: Option<StreamCall>,
    ended_at: Option<SystemTime>,
    resumes: u64,
}

impl MemStream {
    fn record(&self) -> StreamRecord {
        let last = self.events.back().map(|event| &event.data[..]);
        StreamRecord {
            info: self.info.clone(),
            call: self.call.clone(),
            ended_at: self.ended_at,
            outcome: StreamOutcome::derive(self.info.kind, self.info.state, last),
            bytes: self
                .events
                .iter()
                .map(|e| (e.data.len() + e.event_type.as_ref().map_or(0, |t| t.len())) as u64)
                .sum(),
            resumes: self.resumes,
        }
    }
}

impl MemoryEventStore {
    /// An empty store with the default [`Retention`].
    pub fn new() -> Self {
        Self::with_retention(Retention::default())
    }

    /// An empty store with the given retention.
    pub fn with_retention(retention: Retention) -> Self {
        Self {
            inner: Mutex::new(Inner {
                streams: HashMap::new(),
                sessions: HashMap::new(),
                last_sweep: Instant::now(),
                closed: false,
            }),
            live: LiveStreams::default(),
            leases: LeaseTable::default(),
            retention,
        }
    }

    fn lock(&self) -> Result<std::sync::MutexGuard<'_, Inner>, StoreError> {
        // Every mutation below leaves `Inner` consistent before anything can
        // panic, so a poisoned lock still guards valid data.
        let inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        if inner.closed {
            return Err(StoreError::Closed);
        }
        Ok(inner)
    }

    fn sweep_now(&self, inner: &mut Inner) -> SweepReport {
        inner.last_sweep = Instant::now();
        let Some(cutoff) = SystemTime::now().checked_sub(self.retention.max_age) else {
            return SweepReport::default();
        };
        let expired: Vec<StreamId> = inner
            .streams
            .values()
            .filter(|s| s.info.state.is_ended() && s.info.last_activity < cutoff)
            .map(|s| s.info.id)
            .collect();
        let mut report = SweepReport::default();
        for id in expired {
            if let Some(stream) = inner.remove(id) {
                report.streams_removed += 1;
                report.events_removed += stream.events.len() as u64;
            }
        }
        report
    }
}

impl Default for MemoryEventStore {
    fn default() -> Self {
        Self::new()
    }
}

impl Inner {
    fn stream(&mut self, id: StreamId) -> Result<&mut MemStream, StoreError> {
        self.streams
            .get_mut(&id)
            .ok_or(StoreError::StreamNotFound(id))
    }

    fn remove(&mut self, id: StreamId) -> Option<MemStream> {
        let stream = self.streams.remove(&id)?;
        if let Some(session) = &stream.info.session
            && let Some(ids) = self.sessions.get_mut(session)
        {
            ids.remove(&id);
            if ids.is_empty() {
                self.sessions.remove(session);
            }
        }
        Some(stream)
    }
}

impl EventStore for MemoryEventStore {
    fn create_stream(&self, new: NewStream) -> BoxFuture<'_, Result<StreamId, StoreError>> {
        Box::pin(async move {
            let mut inner = self.lock()?;
            if inner.last_sweep.elapsed() >= self.retention.sweep_interval {
                self.sweep_now(&mut inner);
            }
            let id = StreamId::random();
            let now = SystemTime::now();
            let cap = new.event_cap(&self.retention);
            if let Some(session) = &new.session {
                inner
                    .sessions
                    .entry(session.clone())
                    .or_default()
                    .insert(id);
            }
            inner.streams.insert(
                id,
                MemStream {
                    info: StreamInfo {
                        id,
                        kind: new.kind,
                        state: StreamState::Live,
                        session: new.session,
                        identity: new.identity,
                        event_count: 0,
                        first_seq: 1,
                        last_seq: 0,
                        created_at: now,
                        last_activity: now,
                    },
                    events: VecDeque::new(),
                    cap,
                    call: new.call,
                    ended_at: None,
                    resumes: 0,
                },
            );
            self.live.started(id, 0);
            Ok(id)
        })
    }

    fn append(
        &self,
        stream: StreamId,
        events: Vec<NewEvent>,
    ) -> BoxFuture<'_, Result<AppendReceipt, StoreError>> {
        Box::pin(async move {
            let mut inner = self.lock()?;
            let entry = inner.stream(stream)?;
            if entry.info.state.is_ended() {
                return Err(StoreError::StreamEnded {
                    stream,
                    state: entry.info.state,
                });
            }
            let first_seq = entry.info.last_seq + 1;
            for event in events {
                entry.info.last_seq += 1;
                entry.events.push_back(StoredEvent {
                    seq: entry.info.last_seq,
                    event_type: event.event_type,
                    data: event.data,
                });
            }
            while entry.events.len() as u64 > entry.cap {
                entry.events.pop_front();
            }
            entry.info.first_seq = entry
                .events
                .front()
                .map_or(entry.info.last_seq + 1, |e| e.seq);
            entry.info.event_count = entry.events.len() as u64;
            entry.info.last_activity = SystemTime::now();
            let last_seq = entry.info.last_seq;
            drop(inner);
            self.live.advanced(stream, last_seq);
            Ok(AppendReceipt {
                first_seq,
                last_seq,
            })
        })
    }

    fn end_stream(
        &self,
        stream: StreamId,
        end: StreamEnd,
    ) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(async move {
            let mut inner = self.lock()?;
            let entry = inner.stream(stream)?;
            if entry.info.state.is_ended() {
                return Ok(());
            }
            entry.info.state = end.into();
            entry.info.last_activity = SystemTime::now();
            entry.ended_at = Some(entry.info.last_activity);
            let (last_seq, state) = (entry.info.last_seq, entry.info.state);
            drop(inner);
            self.live.ended(stream, last_seq, state);
            Ok(())
        })
    }

    fn read_batch(
        &self,
        stream: StreamId,
        after: u64,
        limit: ReadLimit,
    ) -> BoxFuture<'_, Result<Batch, StoreError>> {
        Box::pin(async move {
            let mut inner = self.lock()?;
            let entry = inner.stream(stream)?;
            let info = &entry.info;
            check_position(info, after)?;
            // Sequences are contiguous, so the start is an index computation.
            let start = (after + 1 - info.first_seq) as usize;
            let mut bytes = 0;
            let mut events = Vec::new();
            for event in entry.events.range(start..) {
                if limit.is_full(events.len(), bytes) {
                    break;
                }
                bytes += event.data.len();
                events.push(event.clone());
            }
            Ok(Batch {
                events,
                head: info.head(),
            })
        })
    }

    fn subscribe(&self, stream: StreamId) -> BoxFuture<'_, Result<Subscription, StoreError>> {
        Box::pin(async move {
            let mut inner = self.lock()?;
            // Under the lock, so the stream cannot end between the two look-ups.
            if let Some(subscription) = self.live.subscribe(stream) {
                return Ok(subscription);
            }
            Ok(Subscription::fixed(inner.stream(stream)?.info.head()))
        })
    }

    fn stream_info(
        &self,
        stream: StreamId,
    ) -> BoxFuture<'_, Result<Option<StreamInfo>, StoreError>> {
        Box::pin(async move { Ok(self.lock()?.streams.get(&stream).map(|s| s.info.clone())) })
    }

    fn session_streams<'a>(
        &'a self,
        session: &'a str,
    ) -> BoxFuture<'a, Result<Vec<StreamInfo>, StoreError>> {
        Box::pin(async move {
            let inner = self.lock()?;
            let mut infos: Vec<StreamInfo> = inner
                .sessions
                .get(session)
                .into_iter()
                .flatten()
                .filter_map(|id| inner.streams.get(id).map(|s| s.info.clone()))
                .collect();
            infos.sort_by_key(|info| info.created_at);
            Ok(infos)
        })
    }

    fn purge_session<'a>(&'a self, session: &'a str) -> BoxFuture<'a, Result<u64, StoreError>> {
        Box::pin(async move {
            let mut inner = self.lock()?;
            let ids: Vec<StreamId> = inner
                .sessions
                .get(session)
                .into_iter()
                .flatten()
                .copied()
                .collect();
            let mut removed = 0;
            for id in ids {
                if let Some(stream) = inner.remove(id) {
                    removed += 1;
                    self.live
                        .ended(id, stream.info.last_seq, StreamState::Abandoned);
                }
            }
            Ok(removed)
        })
    }

    fn sweep(&self) -> BoxFuture<'_, Result<SweepReport, StoreError>> {
        Box::pin(async move {
            let mut inner = self.lock()?;
            Ok(self.sweep_now(&mut inner))
        })
    }

    fn retention(&self) -> Retention {
        self.retention
    }

    fn flush(&self) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(async move { self.lock().map(drop) })
    }

    fn record_resume(&self, stream: StreamId) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(async move {
            if let Some(entry) = self.lock()?.streams.get_mut(&stream) {
                entry.resumes += 1;
            }
            Ok(())
        })
    }

    fn list_streams<'a>(
        &'a self,
        query: &'a StreamQuery,
    ) -> BoxFuture<'a, Result<Vec<StreamRecord>, StoreError>> {
        Box::pin(async move {
            let inner = self.lock()?;
            let records = inner
                .streams
                .values()
                .filter(|s| query.admits(&s.info, s.call.as_ref()))
                .map(MemStream::record)
                .collect();
            Ok(query.finish(records))
        })
    }

    fn close(&self) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(async move {
            let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
            if inner.closed {
                return Ok(());
            }
            // The streams are dropped below: only their followers need telling.
            for id in self.live.ids() {
                if let Some(stream) = inner.streams.get(&id) {
                    self.live
                        .ended(id, stream.info.last_seq, StreamState::Abandoned);
                }
            }
            inner.closed = true;
            inner.streams.clear();
            inner.sessions.clear();
            self.leases.clear();
            Ok(())
        })
    }

    fn renew_lease(
        &self,
        stream: StreamId,
        kind: LeaseKind,
        ttl: Duration,
    ) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(async move {
            drop(self.lock()?);
            self.leases.renew(stream, kind, ttl);
            Ok(())
        })
    }

    fn lease(
        &self,
        stream: StreamId,
        kind: LeaseKind,
    ) -> BoxFuture<'_, Result<Option<Duration>, StoreError>> {
        Box::pin(async move {
            drop(self.lock()?);
            Ok(self.leases.remaining(stream, kind))
        })
    }
}

/// Refuses a read position whose successors are not all retained.
pub(crate) fn check_position(info: &StreamInfo, after: u64) -> Result<(), StoreError> {
    if after > info.last_seq {
        return Err(StoreError::PositionAhead {
            stream: info.id,
            after,
            last_seq: info.last_seq,
        });
    }
    if after + 1 < info.first_seq {
        return Err(StoreError::Trimmed {
            stream: info.id,
            after,
            first_retained: info.first_seq,
        });
    }
    Ok(())
}
