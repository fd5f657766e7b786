//! Self-tests of the shared test infrastructure (`tests/it/common`): the
//! fault-injecting proxy, the SSE client and parser, the scripted server and
//! the failing store. None of them involves the layer.

use crate::common;

use std::time::Duration;

use crate::common::proxy::{CutPolicy, Proxy};
use crate::common::server::{Reply, Script};
use crate::common::sse::{End, Ev, Item, Parser, Req, parse_all};
use crate::common::store::{FailingStore, ops};
use crate::common::{guard, serve};
use http::StatusCode;
use mcp_resume::store::{EventStore, NewEvent, NewStream, StreamKind};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// A TCP server that writes `len` pattern bytes to each client, then waits
/// for the client to go away and reports it on the channel.
async fn pattern_server(
    len: usize,
) -> (
    std::net::SocketAddr,
    tokio::sync::mpsc::UnboundedReceiver<()>,
) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (gone_tx, gone_rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        loop {
            let (mut tcp, _) = listener.accept().await.unwrap();
            let gone_tx = gone_tx.clone();
            tokio::spawn(async move {
                let data: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
                let _ = tcp.write_all(&data).await;
                let mut buf = [0u8; 64];
                loop {
                    match tcp.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(_) => {}
                    }
                }
                let _ = gone_tx.send(());
            });
        }
    });
    (addr, gone_rx)
}

async fn read_to_end(addr: std::net::SocketAddr) -> Vec<u8> {
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    let mut out = Vec::new();
    let _ = guard("reading to EOF", tcp.read_to_end(&mut out)).await;
    out
}

#[tokio::test]
async fn proxy_cuts_after_the_scheduled_byte_counts() {
    let (target, mut gone) = pattern_server(10_000).await;
    let proxy = Proxy::with_policy(target, CutPolicy::schedule(vec![100, 5_001])).await;
    let expected: Vec<u8> = (0..10_000).map(|i| (i % 251) as u8).collect();

    let first = read_to_end(proxy.addr()).await;
    assert_eq!(first, &expected[..100]);
    guard("the server to see the cut", gone.recv()).await;

    let second = read_to_end(proxy.addr()).await;
    assert_eq!(second, &expected[..5_001]);
    guard("the server to see the cut", gone.recv()).await;
    assert_eq!(proxy.cuts(), 2);

    // Past the schedule: not cut. The server keeps the connection open, so
    // read exactly the length.
    let mut tcp = TcpStream::connect(proxy.addr()).await.unwrap();
    let mut third = vec![0u8; 10_000];
    guard("reading everything", tcp.read_exact(&mut third))
        .await
        .unwrap();
    assert_eq!(third, expected);
    assert_eq!(proxy.cuts(), 2);
    assert_eq!(proxy.connections(), 3);
}

#[tokio::test]
async fn proxy_seeded_policy_is_deterministic_and_bounded() {
    let a = CutPolicy::seeded(7, 5, 10, 20);
    let b = CutPolicy::seeded(7, 5, 10, 20);
    let (target, _gone) = pattern_server(100).await;
    let pa = Proxy::with_policy(target, a).await;
    let pb = Proxy::with_policy(target, b).await;
    for _ in 0..5 {
        let la = read_to_end(pa.addr()).await.len();
        let lb = read_to_end(pb.addr()).await.len();
        assert_eq!(la, lb);
        assert!((10..=20).contains(&la), "{la}");
    }
    // The sixth connection is not cut.
    let mut tcp = TcpStream::connect(pa.addr()).await.unwrap();
    let mut all = vec![0u8; 100];
    guard("reading everything", tcp.read_exact(&mut all))
        .await
        .unwrap();
}

#[tokio::test]
async fn proxy_cuts_on_demand_and_only_open_connections() {
    let (target, mut gone) = pattern_server(0).await;
    let proxy = Proxy::new(target).await;
    let mut a = TcpStream::connect(proxy.addr()).await.unwrap();
    // Make sure the proxy has accepted and connected before cutting.
    common::wait_until("the proxy to accept", || async { proxy.connections() == 1 }).await;
    tokio::time::sleep(Duration::from_millis(20)).await;
    proxy.cut_all();
    let mut buf = [0u8; 1];
    let n = guard("the cut to reach the client", a.read(&mut buf)).await;
    assert!(matches!(n, Ok(0) | Err(_)));
    guard("the server to see the cut", gone.recv()).await;
    assert_eq!(proxy.cuts(), 1);

    // A connection made after the cut is not affected by it.
    let mut b = TcpStream::connect(proxy.addr()).await.unwrap();
    let r = tokio::time::timeout(Duration::from_millis(100), b.read(&mut buf)).await;
    assert!(r.is_err(), "new connection was cut: {r:?}");
}

#[tokio::test]
async fn proxy_stops_when_dropped() {
    let (target, mut gone) = pattern_server(0).await;
    let proxy = Proxy::new(target).await;
    let addr = proxy.addr();
    let mut a = TcpStream::connect(addr).await.unwrap();
    common::wait_until("the proxy to accept", || async { proxy.connections() == 1 }).await;
    drop(proxy);
    let mut buf = [0u8; 1];
    let n = guard("the drop to close the client", a.read(&mut buf)).await;
    assert!(matches!(n, Ok(0) | Err(_)));
    guard("the server to see the close", gone.recv()).await;
    assert!(
        TcpStream::connect(addr).await.is_err(),
        "listener still open"
    );
}

#[test]
fn parser_follows_the_whatwg_rules() {
    let body = b"\xEF\xBB\xBF: ping\n\n\
        event: note\r\nid: a\r\ndata: one\r\ndata:two\r\nretry: 12\r\n\r\n\
        id: b\rdata\r\r\
        id: c\0x\ndata: d\nretry: 1x\nunknown: u\n\n\
        data: partial";
    let items = parse_all(body);
    assert_eq!(
        items,
        vec![
            Item::Comment(": ping".into()),
            Item::Event(Ev {
                id: Some("a".into()),
                event: Some("note".into()),
                data: Some("one\ntwo".into()),
                retry: Some(12),
            }),
            Item::Event(Ev {
                id: Some("b".into()),
                data: Some(String::new()),
                ..Ev::default()
            }),
            Item::Event(Ev {
                data: Some("d".into()),
                ..Ev::default()
            }),
        ]
    );
    // Byte by byte gives the same, and the cut-off last block is reported.
    let mut parser = Parser::new();
    let mut split = Vec::new();
    for b in body.iter() {
        split.extend(parser.feed(std::slice::from_ref(b)));
    }
    assert_eq!(split, items);
    assert!(parser.has_partial());
    // A CR at the end of one chunk and an LF at the start of the next are one line end.
    let mut parser = Parser::new();
    let mut got = parser.feed(b"data: x\r");
    got.extend(parser.feed(b"\n\r"));
    got.extend(parser.feed(b"\ndata: y\n\n"));
    assert_eq!(got.len(), 2, "{got:?}");
}

#[tokio::test]
async fn scripted_server_and_client_round_trip() {
    let script = Script::mcp("session-1");
    let served = serve(script.clone()).await;

    let mut resp = Req::post("/mcp", r#"{"jsonrpc":"2.0","id":1,"method":"initialize"}"#)
        .send(served.addr)
        .await;
    assert_eq!(resp.status, StatusCode::OK);
    assert_eq!(resp.header("mcp-session-id"), Some("session-1"));
    assert_eq!(resp.header("content-type"), Some("text/event-stream"));
    let stream = script.next_stream().await;
    assert!(stream.priming().await);
    assert!(stream.comment("ping").await);
    assert!(stream.event_with_id("1/1", "line one\nline two").await);
    assert_eq!(
        resp.next_item().await,
        Some(Item::Event(Ev {
            id: Some("0/0".into()),
            data: Some(String::new()),
            retry: Some(3000),
            ..Ev::default()
        }))
    );
    assert_eq!(resp.next_item().await, Some(Item::Comment(": ping".into())));
    let ev = resp.expect_event().await;
    assert_eq!(ev.data(), "line one\nline two");
    stream.close();
    assert!(resp.next_item().await.is_none());
    assert_eq!(resp.end(), Some(&End::Clean));

    // A notification: 202.
    let mut resp = Req::post(
        "/mcp",
        r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#,
    )
    .session("session-1")
    .send(served.addr)
    .await;
    assert_eq!(resp.status, StatusCode::ACCEPTED);
    assert!(resp.body_to_end().await.is_empty());

    // The log has both requests with their headers and bodies.
    let seen = script.requests();
    assert_eq!(seen.len(), 2);
    assert_eq!(seen[1].header("mcp-session-id"), Some("session-1"));
    assert!(seen[0].body_text().contains("initialize"));
}

#[tokio::test]
async fn failed_inner_body_is_an_error_end_and_client_drop_drops_the_body() {
    let script = Script::streams();
    let served = serve(script.clone()).await;

    let mut resp = Req::get("/mcp").send(served.addr).await;
    let stream = script.next_stream().await;
    assert!(stream.event("x").await);
    assert_eq!(resp.expect_event().await.data(), "x");
    stream.fail("boom").await;
    assert!(resp.next_item().await.is_none());
    assert!(matches!(resp.end(), Some(End::Error(_))), "{resp:?}");

    // Dropping the client makes the server drop the body.
    let resp = Req::get("/mcp").send(served.addr).await;
    let stream = script.next_stream().await;
    drop(resp);
    // The server notices on its next write.
    while stream.event("tick").await {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    stream.dropped().await;
}

#[tokio::test]
async fn client_through_proxy_sees_a_mid_event_cut() {
    let script = Script::new(|_| Reply::stream());
    let served = serve(script.clone()).await;
    let proxy = Proxy::new(served.addr).await;
    let mut resp = Req::get("/").send(proxy.addr()).await;
    let stream = script.next_stream().await;
    assert!(stream.event("complete").await);
    assert_eq!(resp.expect_event().await.data(), "complete");
    assert!(stream.raw("data: half of an ev").await);
    // Wait for the half event to arrive, then cut.
    while !resp.cut_mid_block() {
        assert!(resp.next_chunk().await.is_some());
    }
    proxy.cut_all();
    assert!(resp.next_item().await.is_none());
    assert!(matches!(resp.end(), Some(End::Error(_))), "{resp:?}");
    assert!(resp.cut_mid_block());
    assert_eq!(proxy.cuts(), 1);
}

#[tokio::test]
async fn failing_store_fails_on_demand_and_heals() {
    let store = FailingStore::new();
    let stream = store
        .create_stream(NewStream::new(StreamKind::PostResponse))
        .await
        .unwrap();
    store.fail(ops::APPEND);
    assert!(
        store
            .append(stream, vec![NewEvent::message("a")])
            .await
            .is_err()
    );
    assert!(store.stream_info(stream).await.unwrap().is_some());
    store.fail(ops::ALL);
    assert!(store.stream_info(stream).await.is_err());
    assert!(
        store
            .create_stream(NewStream::new(StreamKind::Standalone))
            .await
            .is_err()
    );
    assert_eq!(store.injected(), 3);
    store.heal();
    let receipt = store
        .append(stream, vec![NewEvent::message("a")])
        .await
        .unwrap();
    assert_eq!(receipt.first_seq, 1);
}
