//! The backend test suite: every `EventStore` must pass all of it.
//!
//! Each test takes a factory that opens a fresh store with the given
//! retention, so backends are instantiated by `backend_suite!` in
//! `tests/it/store_backends.rs` with one line each.

use std::any::Any;
use std::collections::HashSet;
use std::ops::Deref;
use std::sync::Arc;
use std::time::Duration;

use mcp_resume::store::{
    self, EventStore, NewEvent, NewStream, ReadLimit, Retention, StoreError, StoredEvent,
    StreamEnd, StreamId, StreamKind, StreamState,
};

/// A store under test, with whatever it needs kept for the test's length:
/// the SQLite store's temporary directory, removed when the test ends.
/// It derefs to the store, so `store.clone()` is the `Arc`'s clone.
pub struct Store {
    store: Arc<dyn EventStore>,
    _keep: Option<Box<dyn Any + Send + Sync>>,
}

impl Store {
    pub fn new(store: Arc<dyn EventStore>) -> Self {
        Store { store, _keep: None }
    }

    /// Keeps `resource` (a `TempDir`) alive as long as the store.
    #[allow(dead_code)] // Not every backend has something to keep.
    pub fn keeping(mut self, resource: impl Any + Send + Sync) -> Self {
        self._keep = Some(Box::new(resource));
        self
    }
}

impl Deref for Store {
    type Target = Arc<dyn EventStore>;

    fn deref(&self) -> &Self::Target {
        &self.store
    }
}

/// Opens a fresh, empty store with the given retention.
pub type Open = Box<dyn Fn(Retention) -> Store>;

fn payload(stream: usize, n: u64) -> NewEvent {
    NewEvent::message(format!(r#"{{"stream":{stream},"n":{n}}}"#))
}

async fn collect(mut batches: store::EventBatches) -> Result<Vec<StoredEvent>, StoreError> {
    let mut events = Vec::new();
    while let Some(batch) = batches.next_batch().await {
        let batch = batch?;
        assert!(!batch.is_empty(), "batches are never empty");
        events.extend(batch);
    }
    Ok(events)
}

/// What a spawned follower returned once it ended; fails the test when it
/// is still following after 10 s.
async fn ended(
    follower: tokio::task::JoinHandle<Result<Vec<StoredEvent>, StoreError>>,
) -> Result<Vec<StoredEvent>, StoreError> {
    tokio::time::timeout(Duration::from_secs(10), follower)
        .await
        .expect("the follower ends")
        .expect("the follower does not panic")
}

fn assert_contiguous(events: &[StoredEvent], from: u64, to: u64) {
    let seqs: Vec<u64> = events.iter().map(|e| e.seq).collect();
    let expected: Vec<u64> = (from..=to).collect();
    assert_eq!(
        seqs, expected,
        "events must be exactly {from}..={to}, in order"
    );
}

pub async fn appends_are_ordered_and_gap_free(open: Open) {
    let store = open(Retention::default());
    let stream = store
        .create_stream(NewStream::new(StreamKind::PostResponse))
        .await
        .unwrap();
    let mut expected_next = 1;
    for size in [1, 3, 0, 7, 1] {
        let events: Vec<NewEvent> = (0..size).map(|i| payload(0, expected_next + i)).collect();
        let receipt = store.append(stream, events).await.unwrap();
        assert_eq!(receipt.first_seq, expected_next);
        assert_eq!(receipt.last_seq, expected_next + size - 1);
        expected_next += size;
    }
    let events = collect(store::replay(store.clone(), stream, 0))
        .await
        .unwrap();
    assert_contiguous(&events, 1, 12);
    for event in &events {
        assert_eq!(event.data, payload(0, event.seq).data);
        assert_eq!(event.event_type, None);
    }
    let info = store.stream_info(stream).await.unwrap().unwrap();
    assert_eq!(
        (info.first_seq, info.last_seq, info.event_count),
        (1, 12, 12)
    );
    assert_eq!(info.state, StreamState::Live);
}

pub async fn event_types_and_binary_data_round_trip(open: Open) {
    let store = open(Retention::default());
    let stream = store
        .create_stream(NewStream::new(StreamKind::Standalone))
        .await
        .unwrap();
    let binary: Vec<u8> = (0..=255).collect();
    store
        .append(
            stream,
            vec![
                NewEvent::typed("message", "typed"),
                NewEvent::message(binary.clone()),
                NewEvent::message(""),
                NewEvent::typed("", "empty type"),
            ],
        )
        .await
        .unwrap();
    let events = collect(store::replay(store.clone(), stream, 0))
        .await
        .unwrap();
    assert_eq!(events[0].event_type.as_deref(), Some(&b"message"[..]));
    assert_eq!(events[1].data, binary);
    assert_eq!(events[2].data, "");
    assert_eq!(events[3].event_type.as_deref(), Some(&b""[..]));
}

pub async fn reading_resumes_from_any_position(open: Open) {
    let store = open(Retention::default());
    let stream = store
        .create_stream(NewStream::new(StreamKind::PostResponse))
        .await
        .unwrap();
    store
        .append(stream, (1..=20).map(|n| payload(0, n)).collect())
        .await
        .unwrap();
    for after in [0, 1, 10, 19, 20] {
        let events = collect(store::replay(store.clone(), stream, after))
            .await
            .unwrap();
        assert_eq!(events.len() as u64, 20 - after);
        if after < 20 {
            assert_contiguous(&events, after + 1, 20);
        }
    }
}

pub async fn batches_respect_read_limits(open: Open) {
    let store = open(Retention::default());
    let stream = store
        .create_stream(NewStream::new(StreamKind::PostResponse))
        .await
        .unwrap();
    store
        .append(
            stream,
            (0..100)
                .map(|_| NewEvent::message(vec![b'x'; 100]))
                .collect(),
        )
        .await
        .unwrap();
    for limit in [
        ReadLimit {
            max_events: 7,
            max_bytes: usize::MAX,
        },
        ReadLimit {
            max_events: usize::MAX,
            max_bytes: 350,
        },
        // An event larger than the byte limit still comes, alone.
        ReadLimit {
            max_events: 10,
            max_bytes: 1,
        },
    ] {
        let mut batches = store::replay(store.clone(), stream, 0).limit(limit);
        let mut total = 0;
        while let Some(batch) = batches.next_batch().await {
            let batch = batch.unwrap();
            assert!(batch.len() <= limit.max_events);
            assert!(
                batch.len() == 1
                    || batch.iter().map(|e| e.data.len()).sum::<usize>()
                        <= limit.max_bytes.saturating_add(100)
            );
            total += batch.len();
        }
        assert_eq!(total, 100, "{limit:?}");
    }
}

pub async fn bad_positions_are_refused(open: Open) {
    let store = open(Retention::default());
    let stream = store
        .create_stream(NewStream::new(StreamKind::PostResponse))
        .await
        .unwrap();
    store.append(stream, vec![payload(0, 1)]).await.unwrap();
    let ahead = store
        .read_batch(stream, 2, ReadLimit::default())
        .await
        .unwrap_err();
    assert!(
        matches!(
            ahead,
            StoreError::PositionAhead {
                after: 2,
                last_seq: 1,
                ..
            }
        ),
        "{ahead}"
    );
    assert!(ahead.is_cannot_resume());
    let unknown = StreamId::random();
    let missing = store
        .read_batch(unknown, 0, ReadLimit::default())
        .await
        .unwrap_err();
    assert!(
        matches!(missing, StoreError::StreamNotFound(id) if id == unknown),
        "{missing}"
    );
    assert!(store.stream_info(unknown).await.unwrap().is_none());
    let first = collect(store::follow(store.clone(), unknown, 0))
        .await
        .unwrap_err();
    assert!(first.is_cannot_resume());
    let append = store
        .append(unknown, vec![payload(0, 1)])
        .await
        .unwrap_err();
    assert!(matches!(append, StoreError::StreamNotFound(_)), "{append}");
}

pub async fn concurrent_appenders_on_many_streams(open: Open) {
    let store = open(Retention::default());
    const STREAMS: usize = 40;
    const APPENDS: u64 = 50;
    let mut tasks = Vec::new();
    for s in 0..STREAMS {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let stream = store
                .create_stream(NewStream::new(StreamKind::PostResponse))
                .await
                .unwrap();
            for n in 1..=APPENDS {
                let receipt = store.append(stream, vec![payload(s, n)]).await.unwrap();
                assert_eq!(receipt.first_seq, n);
                assert_eq!(receipt.last_seq, n);
            }
            (s, stream)
        }));
    }
    let mut ids = HashSet::new();
    for task in tasks {
        let (s, stream) = task.await.unwrap();
        assert!(ids.insert(stream), "stream ids are unique");
        let events = collect(store::replay(store.clone(), stream, 0))
            .await
            .unwrap();
        assert_contiguous(&events, 1, APPENDS);
        for event in &events {
            assert_eq!(
                event.data,
                payload(s, event.seq).data,
                "no event lands on another stream"
            );
        }
    }
}

pub async fn concurrent_appenders_on_one_stream_get_distinct_sequences(open: Open) {
    let store = open(Retention::default());
    let stream = store
        .create_stream(NewStream::new(StreamKind::Standalone))
        .await
        .unwrap();
    let mut tasks = Vec::new();
    for s in 0..8 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let mut seqs = Vec::new();
            for n in 0..25 {
                let receipt = store
                    .append(stream, vec![payload(s, n), payload(s, n)])
                    .await
                    .unwrap();
                assert_eq!(receipt.last_seq, receipt.first_seq + 1);
                seqs.extend([receipt.first_seq, receipt.last_seq]);
            }
            seqs
        }));
    }
    let mut all = Vec::new();
    for task in tasks {
        all.extend(task.await.unwrap());
    }
    all.sort_unstable();
    assert_eq!(all, (1..=400).collect::<Vec<_>>());
}

pub async fn follow_races_a_fast_producer(open: Open) {
    let store = open(Retention::default());
    // Past the SQLite store's settle threshold (4,096), so followers race a settle.
    const EVENTS: u64 = 6_000;
    let stream = store
        .create_stream(NewStream::new(StreamKind::PostResponse))
        .await
        .unwrap();
    store
        .append(stream, (1..=5).map(|n| payload(0, n)).collect())
        .await
        .unwrap();
    // Followers start at different positions while the producer is writing.
    let followers: Vec<_> = [0, 3, 5]
        .into_iter()
        .map(|after| {
            let store = store.clone();
            tokio::spawn(async move {
                (
                    after,
                    collect(store::follow(store.clone(), stream, after)).await,
                )
            })
        })
        .collect();
    let producer = {
        let store = store.clone();
        tokio::spawn(async move {
            let mut n = 6;
            while n <= EVENTS {
                let size = 1 + n % 7;
                let events: Vec<_> = (n..(n + size).min(EVENTS + 1))
                    .map(|k| payload(0, k))
                    .collect();
                n += events.len() as u64;
                store.append(stream, events).await.unwrap();
                if n % 50 == 0 {
                    tokio::task::yield_now().await;
                }
            }
            store.end_stream(stream, StreamEnd::Complete).await.unwrap();
        })
    };
    // A replay taken mid-way ends at the head it saw, without waiting.
    tokio::time::sleep(Duration::from_millis(1)).await;
    let partial = collect(store::replay(store.clone(), stream, 0))
        .await
        .unwrap();
    assert_contiguous(&partial, 1, partial.len() as u64);
    producer.await.unwrap();
    for follower in followers {
        let (after, events) = tokio::time::timeout(Duration::from_secs(30), follower)
            .await
            .expect("a follower of a completed stream ends")
            .unwrap();
        let events = events.unwrap();
        assert_contiguous(&events, after + 1, EVENTS);
        for event in &events {
            assert_eq!(event.data, payload(0, event.seq).data);
        }
    }
}

pub async fn completion_and_abandonment(open: Open) {
    let store = open(Retention::default());
    let complete = store
        .create_stream(NewStream::new(StreamKind::PostResponse))
        .await
        .unwrap();
    store.append(complete, vec![payload(0, 1)]).await.unwrap();
    let follower = tokio::spawn(collect(store::follow(store.clone(), complete, 1)));
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert!(!follower.is_finished(), "a follower of a live stream waits");
    store
        .end_stream(complete, StreamEnd::Complete)
        .await
        .unwrap();
    let events = ended(follower).await.unwrap();
    assert!(events.is_empty());
    // Ending again keeps the first end.
    store
        .end_stream(complete, StreamEnd::Abandoned)
        .await
        .unwrap();
    let info = store.stream_info(complete).await.unwrap().unwrap();
    assert_eq!(info.state, StreamState::Complete);
    let late = store
        .append(complete, vec![payload(0, 2)])
        .await
        .unwrap_err();
    assert!(
        matches!(
            late,
            StoreError::StreamEnded {
                state: StreamState::Complete,
                ..
            }
        ),
        "{late}"
    );
    // An ended stream can still be replayed, and following it ends at once.
    let events = collect(store::follow(store.clone(), complete, 0))
        .await
        .unwrap();
    assert_contiguous(&events, 1, 1);

    let abandoned = store
        .create_stream(NewStream::new(StreamKind::Standalone))
        .await
        .unwrap();
    store
        .end_stream(abandoned, StreamEnd::Abandoned)
        .await
        .unwrap();
    assert_eq!(
        store.stream_info(abandoned).await.unwrap().unwrap().state,
        StreamState::Abandoned
    );
    assert!(
        collect(store::follow(store.clone(), abandoned, 0))
            .await
            .unwrap()
            .is_empty()
    );
}

pub async fn stream_info_and_session_listing(open: Open) {
    let store = open(Retention::default());
    let a1 = store
        .create_stream(
            NewStream::new(StreamKind::PostResponse)
                .session("A")
                .identity("alice"),
        )
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(5)).await;
    let a2 = store
        .create_stream(NewStream::new(StreamKind::Standalone).session("A"))
        .await
        .unwrap();
    let b = store
        .create_stream(NewStream::new(StreamKind::PostResponse).session("B"))
        .await
        .unwrap();
    let none = store
        .create_stream(NewStream::new(StreamKind::PostResponse))
        .await
        .unwrap();
    store
        .append(a1, vec![payload(0, 1), payload(0, 2)])
        .await
        .unwrap();

    let info = store.stream_info(a1).await.unwrap().unwrap();
    assert_eq!(info.id, a1);
    assert_eq!(info.kind, StreamKind::PostResponse);
    assert_eq!(info.session.as_deref(), Some("A"));
    assert_eq!(info.identity.as_deref(), Some("alice"));
    assert_eq!((info.event_count, info.first_seq, info.last_seq), (2, 1, 2));
    assert!(info.last_activity >= info.created_at);
    let none_info = store.stream_info(none).await.unwrap().unwrap();
    assert_eq!((none_info.session, none_info.identity), (None, None));

    let listed: Vec<StreamId> = store
        .session_streams("A")
        .await
        .unwrap()
        .iter()
        .map(|i| i.id)
        .collect();
    assert_eq!(listed, vec![a1, a2]);
    assert_eq!(store.session_streams("B").await.unwrap()[0].id, b);
    assert!(store.session_streams("nobody").await.unwrap().is_empty());
}

pub async fn purging_a_session_removes_only_its_streams(open: Open) {
    let store = open(Retention::default());
    let a_live = store
        .create_stream(NewStream::new(StreamKind::Standalone).session("A"))
        .await
        .unwrap();
    let a_done = store
        .create_stream(NewStream::new(StreamKind::PostResponse).session("A"))
        .await
        .unwrap();
    let b = store
        .create_stream(NewStream::new(StreamKind::PostResponse).session("B"))
        .await
        .unwrap();
    for stream in [a_live, a_done, b] {
        store
            .append(stream, vec![payload(0, 1), payload(0, 2)])
            .await
            .unwrap();
    }
    store.end_stream(a_done, StreamEnd::Complete).await.unwrap();
    let follower = tokio::spawn(collect(store::follow(store.clone(), a_live, 2)));
    tokio::time::sleep(Duration::from_millis(20)).await;

    assert_eq!(store.purge_session("A").await.unwrap(), 2);
    // The follower of a purged live stream stops instead of waiting forever.
    assert!(
        ended(follower)
            .await
            .map_or(true, |events| events.is_empty())
    );
    for gone in [a_live, a_done] {
        assert!(store.stream_info(gone).await.unwrap().is_none());
        let error = store
            .read_batch(gone, 0, ReadLimit::default())
            .await
            .unwrap_err();
        assert!(error.is_cannot_resume(), "{error}");
        assert!(store.append(gone, vec![payload(0, 3)]).await.is_err());
    }
    assert!(store.session_streams("A").await.unwrap().is_empty());
    assert_eq!(store.stream_info(b).await.unwrap().unwrap().event_count, 2);
    assert_eq!(store.purge_session("A").await.unwrap(), 0);
}

pub async fn retention_caps_events_and_reports_trimmed_positions(open: Open) {
    let store = open(small_retention());
    // The factory gave this store max_events_per_stream = 10.
    assert_eq!(store.retention().max_events_per_stream_value(), 10);
    let stream = store
        .create_stream(NewStream::new(StreamKind::PostResponse))
        .await
        .unwrap();
    for n in 1..=25 {
        store.append(stream, vec![payload(0, n)]).await.unwrap();
    }
    let info = store.stream_info(stream).await.unwrap().unwrap();
    assert_eq!(
        (info.first_seq, info.last_seq, info.event_count),
        (16, 25, 10)
    );
    for after in [0, 5, 14] {
        let error = store
            .read_batch(stream, after, ReadLimit::default())
            .await
            .unwrap_err();
        assert!(
            matches!(
                error,
                StoreError::Trimmed {
                    first_retained: 16,
                    ..
                }
            ),
            "after {after}: {error}"
        );
        assert!(error.is_cannot_resume());
        // Never a silent partial replay, through the combinators either.
        assert!(
            collect(store::replay(store.clone(), stream, after))
                .await
                .is_err()
        );
    }
    let events = collect(store::replay(store.clone(), stream, 15))
        .await
        .unwrap();
    assert_contiguous(&events, 16, 25);
    // A per-stream cap overrides the store's.
    let small = store
        .create_stream(NewStream::new(StreamKind::PostResponse).max_events(3))
        .await
        .unwrap();
    store
        .append(small, (1..=5).map(|n| payload(0, n)).collect())
        .await
        .unwrap();
    let info = store.stream_info(small).await.unwrap().unwrap();
    assert_eq!((info.first_seq, info.last_seq, info.event_count), (3, 5, 3));
    // One append larger than the cap keeps its newest events.
    store
        .append(stream, (26..=40).map(|n| payload(0, n)).collect())
        .await
        .unwrap();
    let info = store.stream_info(stream).await.unwrap().unwrap();
    assert_eq!(
        (info.first_seq, info.last_seq, info.event_count),
        (31, 40, 10)
    );
}

pub async fn sweep_removes_idle_ended_streams_only(open: Open) {
    let store = open(small_retention());
    // The factory gave this store max_age = 50 ms.
    let live = store
        .create_stream(NewStream::new(StreamKind::Standalone).session("S"))
        .await
        .unwrap();
    let ended = store
        .create_stream(NewStream::new(StreamKind::PostResponse).session("S"))
        .await
        .unwrap();
    store.append(live, vec![payload(0, 1)]).await.unwrap();
    store
        .append(ended, vec![payload(0, 1), payload(0, 2), payload(0, 3)])
        .await
        .unwrap();
    store.end_stream(ended, StreamEnd::Complete).await.unwrap();
    let report = store.sweep().await.unwrap();
    assert_eq!(report.streams_removed, 0, "nothing is old enough yet");
    tokio::time::sleep(Duration::from_millis(120)).await;
    let report = store.sweep().await.unwrap();
    assert_eq!((report.streams_removed, report.events_removed), (1, 3));
    assert!(store.stream_info(ended).await.unwrap().is_none());
    assert!(
        store.stream_info(live).await.unwrap().is_some(),
        "live streams are never swept"
    );
    assert_eq!(store.session_streams("S").await.unwrap().len(), 1);
}

pub async fn close_ends_live_streams_and_refuses_work(open: Open) {
    let store = open(Retention::default());
    let stream = store
        .create_stream(NewStream::new(StreamKind::PostResponse))
        .await
        .unwrap();
    store.append(stream, vec![payload(0, 1)]).await.unwrap();
    let follower = tokio::spawn(collect(store::follow(store.clone(), stream, 1)));
    tokio::time::sleep(Duration::from_millis(20)).await;
    store.flush().await.unwrap();
    store.close().await.unwrap();
    // Followers stop at close, with the events or with the store's error.
    let _ = ended(follower).await;
    assert!(matches!(
        store.append(stream, vec![payload(0, 2)]).await,
        Err(StoreError::Closed)
    ));
    assert!(matches!(
        store.stream_info(stream).await,
        Err(StoreError::Closed)
    ));
    assert!(matches!(
        store
            .create_stream(NewStream::new(StreamKind::Standalone))
            .await,
        Err(StoreError::Closed)
    ));
    store.close().await.unwrap();
}

/// `health` (what a readiness check asks) is Ok for a working store, empty or
/// not, and fails once the store is closed.
pub async fn health_is_ok_until_the_store_is_closed(open: Open) {
    let store = open(Retention::default());
    store.health().await.unwrap();
    let stream = store
        .create_stream(NewStream::new(StreamKind::PostResponse))
        .await
        .unwrap();
    store.append(stream, vec![payload(0, 1)]).await.unwrap();
    store.health().await.unwrap();
    store.end_stream(stream, StreamEnd::Complete).await.unwrap();
    store.health().await.unwrap();
    store.close().await.unwrap();
    let closed = store.health().await;
    assert!(matches!(closed, Err(StoreError::Closed)), "{closed:?}");
}

/// The retention the retention tests open their store with, so they are quick.
pub fn small_retention() -> Retention {
    Retention::new()
        .max_events_per_stream(10)
        .max_age(Duration::from_millis(50))
        .sweep_interval(Duration::from_secs(3600))
}

/// Leases (issue 25): held for their time to live from the last renewal,
/// whoever renewed it; the two kinds apart; none on a stream never leased;
/// refused once the store is closed.
pub async fn leases_are_held_for_their_ttl_then_lapse(open: Open) {
    use mcp_resume::store::LeaseKind::{Attachment, Producer};
    let store = open(Retention::default());
    let stream = store
        .create_stream(NewStream::new(StreamKind::PostResponse))
        .await
        .unwrap();
    assert_eq!(store.lease(stream, Attachment).await.unwrap(), None);
    assert_eq!(store.lease(stream, Producer).await.unwrap(), None);

    let ttl = Duration::from_millis(600);
    store.renew_lease(stream, Producer, ttl).await.unwrap();
    let left = store.lease(stream, Producer).await.unwrap().expect("held");
    assert!(
        left <= ttl && left > Duration::from_millis(300),
        "{left:?} left of {ttl:?}"
    );
    assert_eq!(
        store.lease(stream, Attachment).await.unwrap(),
        None,
        "kinds are apart"
    );
    assert_eq!(
        store.lease(StreamId::random(), Producer).await.unwrap(),
        None
    );

    // Renewed before it lapses, it outlives its first time to live.
    tokio::time::sleep(Duration::from_millis(400)).await;
    store.renew_lease(stream, Producer, ttl).await.unwrap();
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert!(
        store.lease(stream, Producer).await.unwrap().is_some(),
        "renewed"
    );
    // Not renewed, it lapses.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(store.lease(stream, Producer).await.unwrap(), None, "lapsed");

    // A renewal replaces the expiry, shorter or longer.
    store
        .renew_lease(stream, Attachment, Duration::from_secs(60))
        .await
        .unwrap();
    store
        .renew_lease(stream, Attachment, Duration::from_millis(1))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert_eq!(store.lease(stream, Attachment).await.unwrap(), None);

    store.close().await.unwrap();
    assert!(store.renew_lease(stream, Producer, ttl).await.is_err());
    assert!(store.lease(stream, Producer).await.is_err());
}

/// Instantiates every suite test for one backend. `$open` is a closure
/// `Fn(Retention) -> Store` that opens a fresh store; it runs inside a Tokio runtime.
#[macro_export]
macro_rules! backend_suite {
    ($backend:ident, $open:expr) => {
        mod $backend {
            #[allow(unused_imports)]
            use super::*;
            $crate::backend_suite!(@tests $open;
                appends_are_ordered_and_gap_free,
                event_types_and_binary_data_round_trip,
                reading_resumes_from_any_position,
                batches_respect_read_limits,
                bad_positions_are_refused,
                concurrent_appenders_on_many_streams,
                concurrent_appenders_on_one_stream_get_distinct_sequences,
                follow_races_a_fast_producer,
                completion_and_abandonment,
                stream_info_and_session_listing,
                purging_a_session_removes_only_its_streams,
                retention_caps_events_and_reports_trimmed_positions,
                sweep_removes_idle_ended_streams_only,
                close_ends_live_streams_and_refuses_work,
                health_is_ok_until_the_store_is_closed,
                leases_are_held_for_their_ttl_then_lapse,
                history_records_calls_outcomes_and_resumes,
                a_stream_created_with_events_holds_them_from_its_first_read,
                append_and_end_commits_the_events_then_the_end,
                read_stream_returns_the_info_and_the_retained_events,
            );
        }
    };
    (@tests $open:expr; $($test:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $test() {
                suite::$test(Box::new($open)).await;
            }
        )*
    };
}

// The combined operations: each must read as its parts in turn would.

pub async fn a_stream_created_with_events_holds_them_from_its_first_read(open: Open) {
    let store = open(Retention::default().max_events_per_stream(2));
    let mut new = NewStream::new(StreamKind::PostResponse).identity("alice");
    new = new.session("s1");
    let info = store
        .create_stream_with_events(new, (1..=3).map(|n| payload(0, n)).collect())
        .await
        .unwrap();
    // The cap applies from the first commit.
    assert_eq!((info.first_seq, info.last_seq, info.event_count), (2, 3, 2));
    assert_eq!(info.state, StreamState::Live);
    let stored = store.stream_info(info.id).await.unwrap().unwrap();
    assert_eq!(stored, info, "what it returns is what the store holds");
    let events = collect(store::replay(store.clone(), info.id, 1))
        .await
        .unwrap();
    assert_contiguous(&events, 2, 3);
    // It is live: followers wait for more, then see it end.
    let follower = tokio::spawn(collect(store::follow(store.clone(), info.id, 3)));
    store.append(info.id, vec![payload(0, 4)]).await.unwrap();
    store
        .end_stream(info.id, StreamEnd::Complete)
        .await
        .unwrap();
    let events = ended(follower).await.unwrap();
    assert_contiguous(&events, 4, 4);
    // With no first events it is a plain new stream.
    let empty = store
        .create_stream_with_events(NewStream::new(StreamKind::Standalone), Vec::new())
        .await
        .unwrap();
    assert_eq!(
        (empty.first_seq, empty.last_seq, empty.event_count),
        (1, 0, 0)
    );
}

pub async fn append_and_end_commits_the_events_then_the_end(open: Open) {
    let store = open(Retention::default());
    let stream = store
        .create_stream(NewStream::new(StreamKind::PostResponse))
        .await
        .unwrap();
    store.append(stream, vec![payload(0, 1)]).await.unwrap();
    let follower = tokio::spawn(collect(store::follow(store.clone(), stream, 0)));
    let receipt = store
        .append_and_end(
            stream,
            vec![payload(0, 2), payload(0, 3)],
            StreamEnd::Complete,
        )
        .await
        .unwrap();
    assert_eq!((receipt.first_seq, receipt.last_seq), (2, 3));
    let events = ended(follower).await.unwrap();
    assert_contiguous(&events, 1, 3);
    let info = store.stream_info(stream).await.unwrap().unwrap();
    assert_eq!((info.state, info.last_seq), (StreamState::Complete, 3));
    // An ended stream takes neither the events nor a second end.
    let late = store
        .append_and_end(stream, vec![payload(0, 4)], StreamEnd::Abandoned)
        .await
        .unwrap_err();
    assert!(matches!(late, StoreError::StreamEnded { .. }), "{late}");
    let info = store.stream_info(stream).await.unwrap().unwrap();
    assert_eq!((info.state, info.last_seq), (StreamState::Complete, 3));
    let missing = store
        .append_and_end(StreamId::random(), vec![payload(0, 1)], StreamEnd::Complete)
        .await
        .unwrap_err();
    assert!(
        matches!(missing, StoreError::StreamNotFound(_)),
        "{missing}"
    );
    // With no events it only ends the stream.
    let bare = store
        .create_stream(NewStream::new(StreamKind::Standalone))
        .await
        .unwrap();
    store
        .append_and_end(bare, Vec::new(), StreamEnd::Abandoned)
        .await
        .unwrap();
    let info = store.stream_info(bare).await.unwrap().unwrap();
    assert_eq!((info.state, info.last_seq), (StreamState::Abandoned, 0));
}

pub async fn read_stream_returns_the_info_and_the_retained_events(open: Open) {
    let store = open(Retention::default().max_events_per_stream(5));
    assert!(
        store
            .read_stream(StreamId::random(), ReadLimit::default())
            .await
            .unwrap()
            .is_none()
    );
    let stream = store
        .create_stream(NewStream::new(StreamKind::PostResponse).identity("bob"))
        .await
        .unwrap();
    let (info, batch) = store
        .read_stream(stream, ReadLimit::default())
        .await
        .unwrap()
        .unwrap();
    assert_eq!((info.identity.as_deref(), info.last_seq), (Some("bob"), 0));
    assert!(batch.events.is_empty());
    // Past the cap, from the oldest event retained; a page at most.
    store
        .append(stream, (1..=8).map(|n| payload(0, n)).collect())
        .await
        .unwrap();
    let (info, batch) = store
        .read_stream(
            stream,
            ReadLimit {
                max_events: 2,
                ..ReadLimit::default()
            },
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!((info.first_seq, info.last_seq), (4, 8));
    assert_contiguous(&batch.events, 4, 5);
    assert_eq!(batch.head.last_seq, 8);
    store.end_stream(stream, StreamEnd::Complete).await.unwrap();
    let (info, batch) = store
        .read_stream(stream, ReadLimit::default())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(info.state, StreamState::Complete);
    assert_contiguous(&batch.events, 4, 8);
    assert_eq!(batch.head.state, StreamState::Complete);
}

// History: what each stream was (`EventStore::list_streams` and the
// listings built on it), the same in every backend.

/// Creates a stream with `call`, appends `events`, and ends it (or not).
async fn history_stream(
    store: &Store,
    session: Option<&str>,
    kind: StreamKind,
    call: Option<store::StreamCall>,
    events: &[&str],
    end: Option<StreamEnd>,
) -> StreamId {
    let mut new = NewStream::new(kind);
    if let Some(session) = session {
        new = new.session(session);
    }
    if let Some(call) = call {
        new = new.call(call);
    }
    let stream = store.create_stream(new).await.unwrap();
    if !events.is_empty() {
        let events = events.iter().map(|e| NewEvent::message(e.to_string()));
        store.append(stream, events.collect()).await.unwrap();
    }
    if let Some(end) = end {
        store.end_stream(stream, end).await.unwrap();
    }
    // Creation times a few milliseconds apart, so the order is the creation order.
    tokio::time::sleep(Duration::from_millis(5)).await;
    stream
}

pub async fn history_records_calls_outcomes_and_resumes(open: Open) {
    use store::history::{sessions_of, summary_of};
    use store::{StreamCall, StreamOutcome, StreamQuery};
    let store = open(Retention::default());
    let progress = r#"{"jsonrpc":"2.0","method":"notifications/progress","params":{"progress":1}}"#;
    let result = r#"{"jsonrpc":"2.0","id":1,"result":{"content":[]}}"#;
    let error = r#"{"jsonrpc":"2.0","id":"x","error":{"code":-32602,"message":"bad"}}"#;
    let tool = |name: &str, id: &str| StreamCall::new("tools/call").tool(name).request_id(id);
    // Stores keep times in whole milliseconds: the marks are too, so a
    // stream created in the same millisecond is not before them.
    let now_ms = || {
        let since_epoch = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap();
        std::time::UNIX_EPOCH + Duration::from_millis(since_epoch.as_millis() as u64)
    };
    let before = now_ms();
    let answered = history_stream(
        &store,
        Some("s1"),
        StreamKind::PostResponse,
        Some(tool("t1", "1")),
        &[progress, progress, result],
        Some(StreamEnd::Complete),
    )
    .await;
    let failed = history_stream(
        &store,
        Some("s1"),
        StreamKind::PostResponse,
        Some(tool("t2", "\"x\"")),
        &[error],
        Some(StreamEnd::Complete),
    )
    .await;
    let middle = now_ms();
    let cut_off = history_stream(
        &store,
        Some("s2"),
        StreamKind::PostResponse,
        Some(StreamCall::new("prompts/get").request_id("3")),
        &[progress],
        Some(StreamEnd::Abandoned),
    )
    .await;
    let standalone = history_stream(
        &store,
        Some("s2"),
        StreamKind::Standalone,
        None,
        &[progress],
        Some(StreamEnd::Complete),
    )
    .await;
    let running = history_stream(
        &store,
        None,
        StreamKind::PostResponse,
        Some(tool("t1", "5")),
        &[],
        None,
    )
    .await;
    for stream in [answered, answered, cut_off] {
        store.record_resume(stream).await.unwrap();
    }
    // Counting a resume of a stream that is gone is not an error.
    store.record_resume(StreamId::random()).await.unwrap();

    let records = store.list_streams(&StreamQuery::new()).await.unwrap();
    let ids: Vec<StreamId> = records.iter().map(|r| r.info.id).collect();
    assert_eq!(
        ids,
        [running, standalone, cut_off, failed, answered],
        "newest first"
    );
    let expected = [
        (running, StreamOutcome::Running, 0, 0, 0),
        (standalone, StreamOutcome::Closed, 1, progress.len(), 0),
        (cut_off, StreamOutcome::Abandoned, 1, progress.len(), 1),
        (failed, StreamOutcome::Error, 1, error.len(), 0),
        (
            answered,
            StreamOutcome::Result,
            3,
            2 * progress.len() + result.len(),
            2,
        ),
    ];
    for (record, (id, outcome, events, bytes, resumes)) in records.iter().zip(expected) {
        assert_eq!(record.info.id, id);
        assert_eq!(record.outcome, outcome, "{id}");
        assert_eq!(record.events(), events, "{id}");
        assert_eq!(record.bytes, bytes as u64, "{id}");
        assert_eq!(record.resumes, resumes, "{id}");
        // The listing and `stream_info` say the same about a stream.
        assert_eq!(
            Some(&record.info),
            store.stream_info(id).await.unwrap().as_ref(),
            "{id}"
        );
        assert_eq!(record.ended_at.is_some(), outcome != StreamOutcome::Running);
        if let Some(ended_at) = record.ended_at {
            assert!(ended_at >= record.info.created_at && ended_at >= before);
            assert!(record.duration().is_some());
        }
    }
    assert_eq!(records[4].call, Some(tool("t1", "1")));
    assert_eq!(records[1].call, None);

    let listed = |query: StreamQuery| {
        let store = store.clone();
        async move {
            let records = store.list_streams(&query).await.unwrap();
            records.iter().map(|r| r.info.id).collect::<Vec<_>>()
        }
    };
    assert_eq!(
        listed(StreamQuery::new().session("s1")).await,
        [failed, answered]
    );
    assert_eq!(
        listed(StreamQuery::new().tool_calls_only()).await,
        [running, failed, answered]
    );
    assert_eq!(
        listed(StreamQuery::new().limit(2)).await,
        [running, standalone]
    );
    assert_eq!(
        listed(StreamQuery::new().since(middle)).await,
        [running, standalone, cut_off]
    );
    assert_eq!(
        listed(StreamQuery::new().until(middle)).await,
        [failed, answered]
    );
    assert_eq!(listed(StreamQuery::new().session("nobody")).await, []);
    assert_eq!(listed(StreamQuery::new().stream(failed)).await, [failed]);
    assert_eq!(
        listed(StreamQuery::new().stream(failed).session("s2")).await,
        []
    );
    assert_eq!(
        listed(StreamQuery::new().stream(StreamId::random())).await,
        []
    );

    let sessions = sessions_of(&records);
    let s1 = sessions.iter().find(|s| s.session == "s1").unwrap();
    let s2 = sessions.iter().find(|s| s.session == "s2").unwrap();
    assert_eq!((sessions.len(), s1.streams, s1.tool_calls), (2, 2, 2));
    assert_eq!((s2.streams, s2.tool_calls, s2.running), (2, 0, 0));
    assert_eq!(sessions[0].session, "s2", "the most recently active first");

    let summary = summary_of(&records);
    assert_eq!((summary.streams, summary.tool_calls), (5, 3));
    // Of the 4 ended streams, 2 were resumed and 1 cut off.
    assert_eq!(summary.share_resumed, 0.5);
    assert_eq!(summary.share_cut_off, 0.25);
    let t1 = summary
        .calls
        .iter()
        .find(|c| c.tool.as_deref() == Some("t1"))
        .unwrap();
    assert_eq!((t1.calls, t1.running, t1.resumed, t1.errors), (2, 1, 1, 0));
    assert!(t1.p50.is_some() && t1.p50 == t1.p99, "one ended call");

    // Purging a session takes its history with it.
    store.purge_session("s1").await.unwrap();
    assert_eq!(listed(StreamQuery::new().session("s1")).await, []);
}
