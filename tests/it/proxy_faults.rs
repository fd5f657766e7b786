//! The reverse proxy facing a broken client or a silent upstream (issue 26,
//! parts 3 and 4): a client's malformed request is the client's `400` and,
//! when it fits the request buffer, never reaches the upstream; an upstream
//! that accepts and never answers gets the client a `504` in the configured
//! time, while a stream that has started has no time limit.
//!
//! Clients here write raw bytes on a TCP connection, so that they can send
//! what no HTTP client library would; the upstreams are raw TCP listeners
//! that record what reached them.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use mcp_resume::proxy::{ReverseProxy, ServeOptions, serve};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::common::guard;

/// An upstream that accepts connections, reads whatever is sent, records
/// it, and never answers.
#[derive(Clone, Default)]
struct SilentUpstream {
    connections: Arc<Mutex<usize>>,
    received: Arc<Mutex<Vec<u8>>>,
}

impl SilentUpstream {
    async fn start() -> (SocketAddr, Self) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let upstream = Self::default();
        let recorder = upstream.clone();
        tokio::spawn(async move {
            while let Ok((mut tcp, _)) = listener.accept().await {
                *recorder.connections.lock().unwrap() += 1;
                let received = recorder.received.clone();
                tokio::spawn(async move {
                    let mut buf = [0; 4096];
                    while let Ok(n @ 1..) = tcp.read(&mut buf).await {
                        received.lock().unwrap().extend_from_slice(&buf[..n]);
                    }
                    // Held open, as a hung server would.
                    std::future::pending::<()>().await;
                });
            }
        });
        (addr, upstream)
    }

    fn received(&self) -> String {
        String::from_utf8_lossy(&self.received.lock().unwrap()).into_owned()
    }
}

/// Serves `proxy` on loopback as the command does ([`serve`]).
async fn serve_proxy(proxy: ReverseProxy) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(serve(
        listener,
        proxy,
        std::future::pending(),
        ServeOptions::new(),
    ));
    addr
}

fn proxy_to(upstream: SocketAddr) -> ReverseProxy {
    ReverseProxy::new(format!("http://{upstream}/mcp").parse().unwrap())
}

/// A proxy's answer read off a raw connection: status and JSON body.
struct Answer {
    status: u16,
    body: Value,
}

/// Writes `head` then `body` on a fresh connection and reads the answer
/// (the head asks the server to close the connection after it).
async fn exchange(addr: SocketAddr, head: &str, body: &[u8]) -> Answer {
    let mut client = TcpStream::connect(addr).await.unwrap();
    client.write_all(head.as_bytes()).await.unwrap();
    client.write_all(body).await.unwrap();
    read_answer(client).await
}

/// Writes `head` then `body`, closes the sending side as a client that
/// went away mid-request does, and reads the answer.
async fn cut_short(addr: SocketAddr, head: &str, body: &[u8]) -> Answer {
    let mut client = TcpStream::connect(addr).await.unwrap();
    client.write_all(head.as_bytes()).await.unwrap();
    client.write_all(body).await.unwrap();
    client.shutdown().await.unwrap();
    read_answer(client).await
}

async fn read_answer(mut client: TcpStream) -> Answer {
    let mut raw = Vec::new();
    // A reset after the answer is the server closing a broken connection.
    let _ = guard("the proxy's answer", client.read_to_end(&mut raw)).await;
    let raw = String::from_utf8_lossy(&raw).into_owned();
    let status = raw
        .strip_prefix("HTTP/1.1 ")
        .and_then(|rest| rest.get(..3))
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP/1.1 answer: {raw:?}"));
    let (_, body) = raw.split_once("\r\n\r\n").unwrap();
    let body = serde_json::from_str(body).unwrap_or_else(|_| panic!("not JSON: {raw:?}"));
    Answer { status, body }
}

/// The head of a POST to `/mcp` on `addr` with `framing` (its
/// `Content-Length` or `Transfer-Encoding` line).
fn post_head(addr: SocketAddr, framing: &str) -> String {
    format!(
        "POST /mcp HTTP/1.1\r\nhost: {addr}\r\ncontent-type: application/json\r\n\
         accept: application/json, text/event-stream\r\n{framing}\r\nconnection: close\r\n\r\n"
    )
}

/// 17 bytes of a JSON-RPC message.
const CUT_BODY: &[u8] = b"{\"jsonrpc\":\"2.0\",";

fn assert_client_error(answer: &Answer) {
    assert_eq!(answer.status, 400, "{}", answer.body);
    let message = answer.body["error"]["message"].as_str().unwrap();
    assert!(message.contains("request body"), "{message}");
    assert!(!message.contains("upstream MCP server"), "{message}");
}

#[tokio::test]
async fn a_chunked_body_with_a_bad_chunk_size_is_a_400_and_never_reaches_the_upstream() {
    let (upstream_addr, upstream) = SilentUpstream::start().await;
    let addr = serve_proxy(proxy_to(upstream_addr)).await;
    let head = post_head(addr, "transfer-encoding: chunked");
    let answer = exchange(addr, &head, b"ZZZ\r\n{}\r\n0\r\n\r\n").await;
    assert_client_error(&answer);
    // The answer came after the body was read (and found broken), and
    // nothing connects upstream after that.
    assert_eq!(*upstream.connections.lock().unwrap(), 0);
    assert_eq!(upstream.received(), "");
}

#[tokio::test]
async fn a_body_cut_short_of_its_content_length_is_a_400_and_never_reaches_the_upstream() {
    let (upstream_addr, upstream) = SilentUpstream::start().await;
    let addr = serve_proxy(proxy_to(upstream_addr)).await;
    let answer = cut_short(addr, &post_head(addr, "content-length: 1000"), CUT_BODY).await;
    assert_client_error(&answer);
    assert_eq!(*upstream.connections.lock().unwrap(), 0);
    assert_eq!(upstream.received(), "");
}

#[tokio::test]
async fn a_streamed_body_cut_midway_is_still_the_clients_400() {
    // Past the buffer, the body streams: the upstream may have seen its start.
    let (upstream_addr, _upstream) = SilentUpstream::start().await;
    let addr = serve_proxy(proxy_to(upstream_addr).request_buffer_bytes(Some(8))).await;
    let answer = cut_short(addr, &post_head(addr, "content-length: 1000"), CUT_BODY).await;
    assert_client_error(&answer);

    // With no buffer at all, the same.
    let addr = serve_proxy(proxy_to(upstream_addr).request_buffer_bytes(None)).await;
    let head = post_head(addr, "transfer-encoding: chunked");
    let answer = exchange(addr, &head, b"5\r\n{\"a\":\r\nZZZ\r\n").await;
    assert_client_error(&answer);
}

#[tokio::test]
async fn a_whole_request_is_still_forwarded_with_its_length() {
    // The buffered path sends what it read, with a Content-Length for a
    // body that came chunked.
    let (upstream_addr, upstream) = SilentUpstream::start().await;
    let addr = serve_proxy(
        proxy_to(upstream_addr).upstream_header_timeout(Some(Duration::from_millis(200))),
    )
    .await;
    let head = post_head(addr, "transfer-encoding: chunked");
    let answer = exchange(addr, &head, b"2\r\n{}\r\n0\r\n\r\n").await;
    assert_eq!(answer.status, 504, "{}", answer.body);
    let received = upstream.received().to_ascii_lowercase();
    assert!(received.contains("content-length: 2\r\n"), "{received}");
    assert!(!received.contains("transfer-encoding"), "{received}");
    assert!(received.ends_with("\r\n\r\n{}"), "{received}");
}

#[tokio::test]
async fn an_upstream_that_never_answers_gets_the_client_a_504_within_the_timeout() {
    let (upstream_addr, upstream) = SilentUpstream::start().await;
    let timeout = Duration::from_millis(300);
    let addr = serve_proxy(proxy_to(upstream_addr).upstream_header_timeout(Some(timeout))).await;
    let body = br#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#;
    let head = post_head(addr, &format!("content-length: {}", body.len()));
    let started = Instant::now();
    let answer = exchange(addr, &head, body).await;
    let waited = started.elapsed();
    assert_eq!(answer.status, 504, "{}", answer.body);
    assert!(waited >= timeout, "answered after {waited:?}");
    assert_eq!(answer.body["jsonrpc"], "2.0");
    let message = answer.body["error"]["message"].as_str().unwrap();
    assert!(
        message.contains(&format!("http://{upstream_addr}/mcp")),
        "{message}"
    );
    // The upstream did get the request: it is the one that did not answer.
    assert!(upstream.received().ends_with(r#""method":"ping"}"#));
}

/// An upstream that answers every connection's request at once with the
/// head of an SSE stream, then sends one event after `delay` and ends.
async fn slow_stream_upstream(delay: Duration) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut tcp, _)) = listener.accept().await {
            tokio::spawn(async move {
                // The whole request: its head, and the small body after it.
                let mut buf = [0; 4096];
                let _ = tcp.read(&mut buf).await;
                let head = "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n\
                            transfer-encoding: chunked\r\n\r\n";
                tcp.write_all(head.as_bytes()).await.unwrap();
                tokio::time::sleep(delay).await;
                let event = "data: {\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{}}\n\n";
                let chunk = format!("{:x}\r\n{event}\r\n0\r\n\r\n", event.len());
                tcp.write_all(chunk.as_bytes()).await.unwrap();
            });
        }
    });
    addr
}

#[tokio::test]
async fn a_stream_whose_headers_came_in_time_has_no_time_limit() {
    let timeout = Duration::from_millis(200);
    let upstream_addr = slow_stream_upstream(timeout * 4).await;
    let addr = serve_proxy(proxy_to(upstream_addr).upstream_header_timeout(Some(timeout))).await;
    let body = br#"{"jsonrpc":"2.0","id":1,"method":"tools/call"}"#;
    let head = post_head(addr, &format!("content-length: {}", body.len()));
    let mut client = TcpStream::connect(addr).await.unwrap();
    client.write_all(head.as_bytes()).await.unwrap();
    client.write_all(body).await.unwrap();
    let mut raw = Vec::new();
    guard("the whole stream", client.read_to_end(&mut raw))
        .await
        .unwrap();
    let raw = String::from_utf8_lossy(&raw);
    assert!(raw.starts_with("HTTP/1.1 200"), "{raw}");
    assert!(raw.contains(r#""result":{}"#), "{raw}");
}
