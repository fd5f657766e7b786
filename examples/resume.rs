//! A tool streams progress into the default SQLite store while its client
//! drops off mid-way; the client comes back with its `Last-Event-ID` and
//! receives exactly what it missed, then the rest live, on the SSE wire.
//!
//! ```sh
//! cargo run --release --example resume
//! ```
//!
//! Run it twice: the second run finds the first run's streams still in
//! `./mcp_events.db` (until retention expires them).

use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use mcp_resume::sse::{OutgoingEvent, encode_event};
use mcp_resume::store::{
    self, EventId, EventStore, NewEvent, NewStream, SqliteEventStore, StreamEnd, StreamKind,
};

const NOTIFICATIONS: u64 = 20;

fn wire(stream: store::StreamId, event: &store::StoredEvent) -> String {
    let id = EventId::new(stream, event.seq).to_string();
    let mut out = BytesMut::new();
    encode_event(
        &OutgoingEvent::new()
            .with_id(id.as_bytes())
            .with_data(&event.data),
        &mut out,
    )
    .expect("layer ids and stored data are always encodable");
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let store: Arc<dyn EventStore> =
        Arc::new(SqliteEventStore::open(SqliteEventStore::DEFAULT_PATH)?);
    let earlier = store.session_streams("demo-session").await?.len();
    println!(
        "store {} holds {earlier} stream(s) of demo-session from earlier runs",
        SqliteEventStore::DEFAULT_PATH
    );

    let stream = store
        .create_stream(NewStream::new(StreamKind::PostResponse).session("demo-session"))
        .await?;

    // The tool: progress notifications, then the result. Each is committed
    // before anyone could send it.
    let producer = {
        let store = store.clone();
        tokio::spawn(async move {
            for n in 1..=NOTIFICATIONS {
                let progress = format!(
                    r#"{{"jsonrpc":"2.0","method":"notifications/progress","params":{{"progressToken":1,"progress":{n},"total":{NOTIFICATIONS}}}}}"#
                );
                store
                    .append(stream, vec![NewEvent::message(progress)])
                    .await?;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            let result =
                r#"{"jsonrpc":"2.0","id":1,"result":{"content":[{"type":"text","text":"done"}]}}"#;
            store
                .append(stream, vec![NewEvent::message(result)])
                .await?;
            store.end_stream(stream, StreamEnd::Complete).await
        })
    };

    // The client reads the first five events, then its connection drops.
    println!("\n--- first connection ---");
    let mut live = store::follow(store.clone(), stream, 0);
    let mut last_seen = 0;
    'connection: while let Some(batch) = live.next_batch().await {
        for event in batch? {
            print!("{}", wire(stream, &event));
            last_seen = event.seq;
            if last_seen == 5 {
                break 'connection;
            }
        }
    }
    drop(live);
    let last_event_id = EventId::new(stream, last_seen).to_string();
    println!("--- connection lost; the tool keeps running ---");
    tokio::time::sleep(Duration::from_millis(400)).await;

    // It reconnects with Last-Event-ID: the missed events come first, then live ones.
    println!("\n--- GET with Last-Event-ID: {last_event_id} ---");
    let resume = EventId::parse(last_event_id.as_bytes())?;
    let info = store
        .stream_info(resume.stream)
        .await?
        .ok_or("unknown stream")?;
    println!(
        "(stream is {}, {} events committed so far)",
        info.state, info.last_seq
    );
    let mut resumed = store::follow(store.clone(), resume.stream, resume.seq);
    let mut received = Vec::new();
    while let Some(batch) = resumed.next_batch().await {
        for event in batch? {
            print!("{}", wire(stream, &event));
            received.push(event.seq);
        }
    }
    producer.await??;

    let expected: Vec<u64> = (6..=NOTIFICATIONS + 1).collect();
    assert_eq!(
        received, expected,
        "every missed event exactly once, in order"
    );
    println!(
        "resumed with events {}..={}: nothing lost, nothing repeated",
        expected[0],
        expected[expected.len() - 1]
    );
    store.close().await?;
    Ok(())
}
