//! Row 5 and the replay half of row 7: a resume (`GET` + `Last-Event-ID`)
//! through the layer on SQLite, timed to the first replayed event and to
//! the end of the replay, as the file around the stream grows from 10,000
//! to millions of events.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::Request;
use http_body_util::Full;
use mcp_resume::store::{
    EventId, EventStore, NewEvent, NewStream, Retention, SqliteOptions, StreamEnd, StreamId,
    StreamKind,
};

use crate::Plan;
use crate::net::{self, HttpClient, STORED_DATA_BYTES, median};
use crate::report::{Report, Row, Series, Target};

/// Events in the stream that is resumed.
const STREAM_EVENTS: u64 = 10_000;
/// Events per filler stream, and per append.
const FILLER_STREAM_EVENTS: u64 = 10_000;
const BATCH: usize = 1_000;

/// One resume timing: to the first replayed event, and to the end.
#[derive(Clone, Copy)]
struct Timing {
    first: Duration,
    end: Duration,
}

/// Appends finished streams of [`FILLER_STREAM_EVENTS`] events until the store holds `total`.
async fn fill(store: &Arc<dyn EventStore>, held: &mut u64, total: u64) {
    let data = Bytes::from(vec![b'x'; STORED_DATA_BYTES]);
    // Four appenders at once: the writer thread commits their batches together.
    while *held < total {
        let streams = ((total - *held) / FILLER_STREAM_EVENTS).clamp(1, 4);
        let tasks: Vec<_> = (0..streams)
            .map(|_| {
                let store = store.clone();
                let data = data.clone();
                tokio::spawn(async move {
                    let id = store
                        .create_stream(NewStream::new(StreamKind::PostResponse))
                        .await
                        .unwrap();
                    for _ in 0..FILLER_STREAM_EVENTS / BATCH as u64 {
                        store
                            .append(id, vec![NewEvent::message(data.clone()); BATCH])
                            .await
                            .unwrap();
                    }
                    store.end_stream(id, StreamEnd::Complete).await.unwrap();
                })
            })
            .collect();
        for task in tasks {
            task.await.unwrap();
        }
        *held += streams * FILLER_STREAM_EVENTS;
    }
    store.flush().await.unwrap();
}

/// Resumes `stream` after `after` and reads the replay to its end.
async fn resume_once(
    client: &HttpClient,
    addr: SocketAddr,
    stream: StreamId,
    after: u64,
    expect: usize,
) -> Timing {
    let request = Request::get(format!("http://{addr}/mcp"))
        .header("accept", "text/event-stream")
        .header("mcp-protocol-version", "2025-06-18")
        .header("last-event-id", EventId::new(stream, after).to_string())
        .body(Full::new(Bytes::new()))
        .unwrap();
    let start = Instant::now();
    let response = client.request(request).await.unwrap();
    assert!(
        response.status().is_success(),
        "resume answered {}",
        response.status()
    );
    let mut first = None;
    let events = net::read_events(response, |_| {
        first.get_or_insert_with(|| start.elapsed());
    })
    .await;
    let end = start.elapsed();
    assert_eq!(
        events, expect,
        "the replay holds every event after the resume point"
    );
    Timing {
        first: first.unwrap(),
        end,
    }
}

/// Median timings of `repeats` resumes replaying `replayed` events.
async fn resumes(
    client: &HttpClient,
    addr: SocketAddr,
    stream: StreamId,
    replayed: u64,
    repeats: usize,
) -> Timing {
    let after = STREAM_EVENTS - replayed;
    let mut firsts = Vec::new();
    let mut ends = Vec::new();
    resume_once(client, addr, stream, after, replayed as usize).await;
    for _ in 0..repeats {
        let timing = resume_once(client, addr, stream, after, replayed as usize).await;
        firsts.push(timing.first.as_secs_f64());
        ends.push(timing.end.as_secs_f64());
    }
    Timing {
        first: Duration::from_secs_f64(median(&mut firsts)),
        end: Duration::from_secs_f64(median(&mut ends)),
    }
}

fn ms(duration: Duration) -> String {
    format!("{:.2} ms", duration.as_secs_f64() * 1e3)
}

/// Rows 5 and 7 (replay): returns the chart's series.
pub async fn resume(report: &mut Report, plan: &Plan, dir: &Path) -> Vec<Series> {
    let store: Arc<dyn EventStore> = Arc::new(
        SqliteOptions::new(dir.join("resume.db"))
            .retention(Retention::new().max_events_per_stream(u64::MAX))
            .open()
            .unwrap(),
    );
    // The stream to resume: 10,000 events, finished, in no session.
    let stream = store
        .create_stream(NewStream::new(StreamKind::PostResponse))
        .await
        .unwrap();
    let data = Bytes::from(vec![b'p'; STORED_DATA_BYTES]);
    for _ in 0..STREAM_EVENTS / BATCH as u64 {
        store
            .append(stream, vec![NewEvent::message(data.clone()); BATCH])
            .await
            .unwrap();
    }
    store.end_stream(stream, StreamEnd::Complete).await.unwrap();
    let mut held = STREAM_EVENTS;

    let addr = net::serve_setup(Some(store.clone())).await;
    let client = net::client(4);
    let mut by_size: Vec<(u64, Timing, Timing)> = Vec::new();
    for &total in &plan.replay_store_sizes {
        let started = Instant::now();
        fill(&store, &mut held, total).await;
        let filled = started.elapsed();
        let small = resumes(&client, addr, stream, 1_000, plan.resume_repeats).await;
        let large = resumes(&client, addr, stream, 10_000, plan.resume_repeats).await;
        println!(
            "[e2e] replay: store of {held} events (filled in {filled:.1?}): 1k {} / {}, 10k {} / {}",
            ms(small.first),
            ms(small.end),
            ms(large.first),
            ms(large.end)
        );
        by_size.push((held, small, large));
    }
    let _ = store.close().await;

    // Row 5: the 1M-event file against the 10k-event one.
    let at = |size: u64| by_size.iter().find(|(held, ..)| *held == size).copied();
    if let (Some(small_store), Some(large_store)) = (at(10_000), at(1_000_000)) {
        for (replayed, pick) in [(1_000u64, 1usize), (10_000, 2)] {
            let get = |entry: (u64, Timing, Timing)| if pick == 1 { entry.1 } else { entry.2 };
            let (small, large) = (get(small_store), get(large_store));
            for (what, a, b, headline) in [
                (
                    "to the first replayed event",
                    small.first,
                    large.first,
                    false,
                ),
                ("to the end of the replay", small.end, large.end, true),
            ] {
                let mut row = Row::new(
                    "5. Resume",
                    format!(
                        "resume replaying {replayed} events, time {what}, store of 1,000,000 events"
                    ),
                    ms(b),
                )
                .against(
                    format!("store of 10,000 events {}", ms(a)),
                    b.as_secs_f64() / a.as_secs_f64(),
                )
                .ratio_target(Target::AtMost(1.5));
                if headline {
                    row = row.headline(format!(
                        "Resume replaying {replayed} events, time {what}, store of 1,000,000 events"
                    ));
                }
                report.push(row);
            }
        }
    }
    for (held, small, large) in &by_size {
        report.push(Row::new(
            "7. Scaling",
            format!(
                "resume in a store of {held} events: replay of 1,000 / 10,000 events to the end"
            ),
            format!("{} / {}", ms(small.end), ms(large.end)),
        ));
    }
    let series = |label: &str, pick: fn(&(u64, Timing, Timing)) -> Duration| Series {
        label: label.into(),
        points: by_size
            .iter()
            .map(|entry| (entry.0 as f64, pick(entry).as_secs_f64() * 1e3))
            .collect(),
    };
    vec![
        series("replay of 10,000 events, to the end", |e| e.2.end),
        series("replay of 1,000 events, to the end", |e| e.1.end),
        series("first replayed event", |e| e.2.first),
    ]
}
