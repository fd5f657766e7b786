//! The proxy must not make a local MCP server easier to reach by DNS
//! rebinding (issue 24, part 1): on a loopback listener, requests whose
//! `Host` or `Origin` is not a loopback or allow-listed name are refused
//! with `403` before they reach the layer or the upstream, and the upstream
//! learns the `Host` the client used from `X-Forwarded-Host`.
//!
//! The stack is the command's: the guard, the layer, the reverse proxy,
//! served by `proxy::serve` on 127.0.0.1.

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::{HeaderMap, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use mcp_resume::ResumabilityLayer;
use mcp_resume::proxy::{RebindingGuardLayer, ReverseProxy, ServeOptions, serve};
use serde_json::Value;
use tokio::net::{TcpListener, TcpStream};
use tower::Layer;

use crate::common::{guard, memory_store};

/// An upstream that records the headers of every request and answers a
/// JSON-RPC result.
#[derive(Clone, Default)]
struct Upstream {
    seen: Arc<Mutex<Vec<HeaderMap>>>,
}

impl Upstream {
    async fn start() -> (SocketAddr, Self) {
        let upstream = Self::default();
        let seen = upstream.seen.clone();
        let app = axum::Router::new().route(
            "/mcp",
            axum::routing::post(move |headers: HeaderMap| async move {
                seen.lock().unwrap().push(headers);
                (
                    [("content-type", "application/json")],
                    r#"{"jsonrpc":"2.0","id":1,"result":{}}"#,
                )
            }),
        );
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        (addr, upstream)
    }

    fn requests(&self) -> Vec<HeaderMap> {
        self.seen.lock().unwrap().clone()
    }
}

/// The command's stack in front of `upstream`, on 127.0.0.1; `configure`
/// adjusts the guard and the proxy.
async fn start_proxy(
    upstream: SocketAddr,
    configure: impl FnOnce(RebindingGuardLayer, ReverseProxy) -> (RebindingGuardLayer, ReverseProxy),
) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let guard = RebindingGuardLayer::for_listener(addr.ip());
    let proxy = ReverseProxy::new(format!("http://{upstream}/mcp").parse().unwrap());
    let (guard, proxy) = configure(guard, proxy);
    let service = guard.layer(ResumabilityLayer::new(memory_store()).layer(proxy));
    tokio::spawn(serve(
        listener,
        service,
        std::future::pending(),
        ServeOptions::new(),
    ));
    addr
}

/// POSTs a ping to `addr` with these headers (`host` among them, as a
/// browser would send it), on a fresh HTTP/1.1 connection.
async fn post(addr: SocketAddr, headers: &[(&str, &str)]) -> (StatusCode, Value) {
    let mut request = Request::post("/mcp")
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream");
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let request = request
        .body(Full::new(Bytes::from_static(
            br#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#,
        )))
        .unwrap();
    let tcp = TcpStream::connect(addr).await.unwrap();
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .unwrap();
    tokio::spawn(connection);
    let response = guard("the answer", sender.send_request(request))
        .await
        .unwrap();
    let status = response.status();
    let body = guard("the body", response.into_body().collect())
        .await
        .unwrap()
        .to_bytes();
    let body = serde_json::from_slice(&body)
        .unwrap_or_else(|_| panic!("not JSON: {}", String::from_utf8_lossy(&body)));
    (status, body)
}

fn unchanged(
    guard: RebindingGuardLayer,
    proxy: ReverseProxy,
) -> (RebindingGuardLayer, ReverseProxy) {
    (guard, proxy)
}

/// Asserts a JSON-RPC `403` naming `what`.
fn assert_refused((status, body): &(StatusCode, Value), what: &str) {
    assert_eq!(*status, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(body["jsonrpc"], "2.0");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.contains(what), "{message}");
}

#[tokio::test]
async fn a_rebound_host_and_origin_are_refused_with_403_before_the_upstream() {
    let (upstream_addr, upstream) = Upstream::start().await;
    let addr = start_proxy(upstream_addr, unchanged).await;
    let answer = post(
        addr,
        &[
            ("host", "evil.example.com"),
            ("origin", "http://evil.example.com"),
        ],
    )
    .await;
    assert_refused(&answer, "evil.example.com");
    let answer = post(
        addr,
        &[("host", &format!("evil.example.com:{}", addr.port()))],
    )
    .await;
    assert_refused(&answer, "evil.example.com");
    assert!(upstream.requests().is_empty());
}

#[tokio::test]
async fn a_foreign_origin_is_refused_even_with_a_loopback_host() {
    let (upstream_addr, upstream) = Upstream::start().await;
    let addr = start_proxy(upstream_addr, unchanged).await;
    let answer = post(
        addr,
        &[
            ("host", &addr.to_string()),
            ("origin", "http://evil.example.com"),
        ],
    )
    .await;
    assert_refused(&answer, "http://evil.example.com");
    assert!(upstream.requests().is_empty());
}

#[tokio::test]
async fn loopback_names_with_their_port_pass() {
    let (upstream_addr, upstream) = Upstream::start().await;
    let addr = start_proxy(upstream_addr, unchanged).await;
    let port = addr.port();
    for host in [
        format!("localhost:{port}"),
        format!("127.0.0.1:{port}"),
        format!("[::1]:{port}"),
        "localhost".to_owned(),
    ] {
        let origin = format!("http://{host}");
        let (status, body) = post(addr, &[("host", &host), ("origin", &origin)]).await;
        assert_eq!(status, StatusCode::OK, "{host}: {body}");
        assert_eq!(body["result"], serde_json::json!({}));
    }
    // No Origin: clients other than browsers send none.
    let (status, _) = post(addr, &[("host", &format!("localhost:{port}"))]).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(upstream.requests().len(), 5);
}

#[tokio::test]
async fn allow_listed_names_pass_and_others_still_do_not() {
    let (upstream_addr, upstream) = Upstream::start().await;
    let addr = start_proxy(upstream_addr, |guard, proxy| {
        let guard = guard
            .allow_hosts(["mcp.example.com".parse().unwrap()])
            .allow_origins(["https://app.example.com".parse().unwrap()]);
        (guard, proxy)
    })
    .await;
    let (status, body) = post(
        addr,
        &[
            ("host", "mcp.example.com"),
            ("origin", "https://app.example.com"),
        ],
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let answer = post(
        addr,
        &[
            ("host", "mcp.example.com"),
            ("origin", "https://evil.example.com"),
        ],
    )
    .await;
    assert_refused(&answer, "https://evil.example.com");
    let answer = post(addr, &[("host", "evil.example.com")]).await;
    assert_refused(&answer, "evil.example.com");
    assert_eq!(upstream.requests().len(), 1);
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).map(|value| value.to_str().unwrap())
}

#[tokio::test]
async fn the_upstream_sees_the_clients_host_in_x_forwarded_host() {
    let (upstream_addr, upstream) = Upstream::start().await;
    let addr = start_proxy(upstream_addr, unchanged).await;
    let host = format!("localhost:{}", addr.port());
    // A client's own claims are replaced by what the proxy saw.
    let (status, _) = post(
        addr,
        &[
            ("host", &host),
            ("x-forwarded-host", "claimed.example.com"),
            ("x-forwarded-for", "203.0.113.7"),
        ],
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let seen = upstream.requests().pop().unwrap();
    assert_eq!(
        header(&seen, "host"),
        Some(upstream_addr.to_string().as_str())
    );
    assert_eq!(header(&seen, "x-forwarded-host"), Some(host.as_str()));
    assert_eq!(header(&seen, "x-forwarded-for"), Some("127.0.0.1"));
    assert_eq!(header(&seen, "x-forwarded-proto"), Some("http"));
    assert!(!seen.contains_key("forwarded"));
}

#[tokio::test]
async fn behind_a_trusted_proxy_its_forwarding_headers_are_kept_and_extended() {
    let (upstream_addr, upstream) = Upstream::start().await;
    let addr = start_proxy(upstream_addr, |guard, proxy| {
        let proxy = proxy
            .trust_forwarded_headers(true)
            .forwarded_headers(mcp_resume::proxy::ForwardedHeaders::Both);
        (guard, proxy)
    })
    .await;
    let host = format!("127.0.0.1:{}", addr.port());
    let (status, _) = post(
        addr,
        &[
            ("host", &host),
            ("x-forwarded-host", "mcp.example.com"),
            ("x-forwarded-for", "203.0.113.7"),
            ("x-forwarded-proto", "https"),
        ],
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let seen = upstream.requests().pop().unwrap();
    let client: IpAddr = "127.0.0.1".parse().unwrap();
    assert_eq!(header(&seen, "x-forwarded-host"), Some("mcp.example.com"));
    assert_eq!(
        header(&seen, "x-forwarded-for"),
        Some(format!("203.0.113.7, {client}").as_str())
    );
    assert_eq!(header(&seen, "x-forwarded-proto"), Some("https"));
    assert_eq!(
        header(&seen, "forwarded"),
        Some(format!("for={client};host=\"{host}\";proto=http").as_str())
    );
}
