//! The proxy's TLS, both ways (issue 24, part 2), with certificates made
//! here by rcgen: a test CA, a good certificate for `localhost` and
//! `127.0.0.1`, an expired one, one for another host name, and one from a
//! CA nobody trusts.
//!
//! - Upstream side: an `https://` upstream whose certificate verifies is
//!   proxied; one that does not gets the client a `502` whose JSON-RPC
//!   error says why (expired, unknown issuer, wrong host name); an
//!   `https://` upstream that speaks plain HTTP is never spoken to in
//!   plain text.
//! - Listener side: [`serve_tls`] serves HTTP/1.1 and HTTP/2 as the client
//!   chooses by ALPN, tells the upstream the client's scheme was `https`,
//!   and a reload (asked for, or seen in the files) gives new connections
//!   the new certificate while a failed one keeps the old.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, StatusCode, Version};
use http_body_util::{BodyExt, Empty, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use mcp_resume::proxy::{
    ListenerTls, ReverseProxy, ServeOptions, TlsConfigError, UpstreamTls, serve_tls,
};
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
use rustls::pki_types::{CertificateDer, ServerName};
use serde_json::Value;
use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsConnector;

use crate::common::server::{Reply, Script};
use crate::common::{guard, wait_until};

/// A certificate authority made for one test, and the directory its files go in.
struct TestCa {
    dir: tempfile::TempDir,
    issuer: CertifiedIssuer<'static, KeyPair>,
    /// The CA certificate, PEM, in `dir`.
    ca_file: PathBuf,
}

/// A leaf certificate and its key, as PEM.
struct Leaf {
    cert_pem: String,
    key_pem: String,
}

impl Leaf {
    /// The certificate, DER, as a server presents it.
    fn der(&self) -> CertificateDer<'static> {
        use rustls::pki_types::pem::PemObject;
        CertificateDer::from_pem_slice(self.cert_pem.as_bytes()).unwrap()
    }

    /// Writes the certificate and key to `cert` and `key`.
    fn write(&self, cert: &Path, key: &Path) {
        std::fs::write(cert, &self.cert_pem).unwrap();
        std::fs::write(key, &self.key_pem).unwrap();
    }
}

impl TestCa {
    fn new(name: &str) -> Self {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        let issuer = CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let ca_file = dir.path().join("ca.pem");
        std::fs::write(&ca_file, issuer.pem()).unwrap();
        Self {
            dir,
            issuer,
            ca_file,
        }
    }

    /// A certificate for `names`, valid now (rcgen's default validity).
    fn leaf(&self, names: &[&str]) -> Leaf {
        self.leaf_with(names, |_| {})
    }

    /// A certificate for `names`, through 2020 only.
    fn expired_leaf(&self, names: &[&str]) -> Leaf {
        self.leaf_with(names, |params| {
            params.not_before = rcgen::date_time_ymd(2020, 1, 1);
            params.not_after = rcgen::date_time_ymd(2021, 1, 1);
        })
    }

    fn leaf_with(&self, names: &[&str], adjust: impl FnOnce(&mut CertificateParams)) -> Leaf {
        let names: Vec<String> = names.iter().map(|name| name.to_string()).collect();
        let mut params = CertificateParams::new(names).unwrap();
        adjust(&mut params);
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        Leaf {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        }
    }

    /// Writes `leaf` under `name` in the CA's directory: the certificate's
    /// and the key's paths.
    fn files(&self, name: &str, leaf: &Leaf) -> (PathBuf, PathBuf) {
        let cert = self.dir.path().join(format!("{name}.pem"));
        let key = self.dir.path().join(format!("{name}.key"));
        leaf.write(&cert, &key);
        (cert, key)
    }

    /// A client configuration trusting this CA only, offering `alpn`.
    fn client_config(&self, alpn: &[&[u8]]) -> Arc<rustls::ClientConfig> {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.issuer.der().clone()).unwrap();
        #[allow(deprecated)] // the crate's own provider: see src/proxy/tls.rs
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        Arc::new(config)
    }
}

const UPSTREAM_ANSWER: &str = r#"{"jsonrpc":"2.0","id":1,"result":{}}"#;

/// An MCP-ish upstream served over TLS with `leaf`: every request gets
/// [`UPSTREAM_ANSWER`].
async fn tls_upstream(ca: &TestCa, name: &str, leaf: &Leaf) -> (SocketAddr, Script) {
    let (cert, key) = ca.files(name, leaf);
    let tls = ListenerTls::from_pem_files(cert, key).unwrap();
    let script = Script::new(|_| Reply::json(UPSTREAM_ANSWER));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(serve_tls(
        listener,
        tls,
        script.clone(),
        std::future::pending(),
        ServeOptions::new(),
    ));
    (addr, script)
}

/// A proxy to `upstream` trusting `ca`'s certificates.
fn proxy_trusting(ca: &TestCa, upstream: &str) -> ReverseProxy {
    ReverseProxy::new(upstream.parse().unwrap())
        .upstream_tls(UpstreamTls::from_ca_file(&ca.ca_file).unwrap())
}

/// POSTs a JSON-RPC message to `/mcp` on `proxy`, served in cleartext on
/// loopback, over HTTP/1.1: the status and the body.
async fn post(proxy: ReverseProxy) -> (StatusCode, String) {
    let served = crate::common::serve(proxy).await;
    let tcp = TcpStream::connect(served.addr).await.unwrap();
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .unwrap();
    tokio::spawn(connection);
    let request = Request::post("/mcp")
        .header("host", served.addr.to_string())
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .body(Full::new(Bytes::from_static(
            br#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#,
        )))
        .unwrap();
    let response = guard("the proxy's answer", sender.send_request(request))
        .await
        .unwrap();
    let status = response.status();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8(body.to_vec()).unwrap())
}

/// The proxy's `502`: its JSON-RPC error message.
fn bad_gateway_message(status: StatusCode, body: &str) -> String {
    assert_eq!(status, StatusCode::BAD_GATEWAY, "{body}");
    let body: Value = serde_json::from_str(body).unwrap();
    body["error"]["message"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn an_https_upstream_with_a_good_certificate_is_proxied_by_name_and_by_address() {
    let ca = TestCa::new("test CA");
    let (upstream, script) = tls_upstream(&ca, "good", &ca.leaf(&["localhost", "127.0.0.1"])).await;
    for host in ["localhost", "127.0.0.1"] {
        let port = upstream.port();
        let (status, body) = post(proxy_trusting(&ca, &format!("https://{host}:{port}/mcp"))).await;
        assert_eq!(status, StatusCode::OK, "{host}: {body}");
        assert_eq!(body, UPSTREAM_ANSWER, "{host}");
        let seen = script.requests().pop().unwrap();
        assert_eq!(seen.header("host"), Some(format!("{host}:{port}").as_str()));
    }
}

#[tokio::test]
async fn an_expired_upstream_certificate_is_a_502_that_says_so() {
    let ca = TestCa::new("test CA");
    let expired = ca.expired_leaf(&["localhost", "127.0.0.1"]);
    let (upstream, script) = tls_upstream(&ca, "expired", &expired).await;
    let (status, body) = post(proxy_trusting(&ca, &format!("https://{upstream}/mcp"))).await;
    let message = bad_gateway_message(status, &body);
    assert!(message.contains("certificate has expired"), "{message}");
    assert!(
        message.contains(&format!("https://{upstream}/mcp")),
        "{message}"
    );
    assert_eq!(script.request_count(), 0);
}

#[tokio::test]
async fn an_upstream_certificate_for_another_host_name_is_a_502_that_says_so() {
    let ca = TestCa::new("test CA");
    let (upstream, script) = tls_upstream(&ca, "wrong", &ca.leaf(&["mcp.example.com"])).await;
    let port = upstream.port();
    let proxy = proxy_trusting(&ca, &format!("https://localhost:{port}/mcp"));
    let (status, body) = post(proxy).await;
    let message = bad_gateway_message(status, &body);
    assert!(
        message.contains("not valid for the upstream's host name"),
        "{message}"
    );
    assert!(message.contains("mcp.example.com"), "{message}");
    assert_eq!(script.request_count(), 0);
}

#[tokio::test]
async fn an_upstream_certificate_from_an_untrusted_ca_is_a_502_that_says_so() {
    let ca = TestCa::new("test CA");
    let (upstream, script) = tls_upstream(&ca, "good", &ca.leaf(&["localhost", "127.0.0.1"])).await;
    let upstream_url = format!("https://{upstream}/mcp");
    let other_ca = TestCa::new("another CA");
    // Another CA's bundle, and the system's roots (ReverseProxy::new's default).
    for proxy in [
        proxy_trusting(&other_ca, &upstream_url),
        ReverseProxy::new(upstream_url.parse().unwrap()),
    ] {
        let (status, body) = post(proxy).await;
        let message = bad_gateway_message(status, &body);
        assert!(message.contains("unknown issuer"), "{message}");
    }
    assert_eq!(script.request_count(), 0);
}

#[tokio::test]
async fn an_https_upstream_that_speaks_plain_http_is_never_sent_the_request_in_plain_text() {
    // A plain-HTTP server behind an https:// URL: what reaches it is a TLS
    // ClientHello (record type 22), never the request.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let upstream = listener.local_addr().unwrap();
    let received = Arc::new(Mutex::new(Vec::new()));
    let recorder = received.clone();
    tokio::spawn(async move {
        while let Ok((mut tcp, _)) = listener.accept().await {
            let recorder = recorder.clone();
            tokio::spawn(async move {
                let mut buf = [0; 4096];
                if let Ok(n @ 1..) = tcp.read(&mut buf).await {
                    recorder.lock().unwrap().extend_from_slice(&buf[..n]);
                }
                // Answered as a plain HTTP server would, then closed.
                use tokio::io::AsyncWriteExt;
                let _ = tcp
                    .write_all(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n")
                    .await;
            });
        }
    });
    let ca = TestCa::new("test CA");
    let (status, body) = post(proxy_trusting(&ca, &format!("https://{upstream}/mcp"))).await;
    let message = bad_gateway_message(status, &body);
    assert!(message.contains("cannot be reached securely"), "{message}");
    let received = received.lock().unwrap().clone();
    assert_eq!(
        received.first(),
        Some(&22),
        "{:?}",
        String::from_utf8_lossy(&received)
    );
    assert!(!String::from_utf8_lossy(&received).contains("POST"));
}

#[test]
fn a_ca_file_that_is_missing_or_holds_no_certificate_is_refused_with_its_name() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.pem");
    let error = UpstreamTls::from_ca_file(&missing).unwrap_err();
    assert!(matches!(error, TlsConfigError::Read { .. }), "{error}");
    assert!(error.to_string().contains("missing.pem"), "{error}");

    let empty = dir.path().join("empty.pem");
    std::fs::write(&empty, "no PEM here\n").unwrap();
    let error = UpstreamTls::from_ca_file(&empty).unwrap_err();
    assert!(
        matches!(error, TlsConfigError::NoCertificate { .. }),
        "{error}"
    );
    assert!(error.to_string().contains("empty.pem"), "{error}");
}

/// A TLS connection to `addr` as `localhost`, trusting `ca`, offering `alpn`.
async fn connect_tls(
    ca: &TestCa,
    addr: SocketAddr,
    alpn: &[&[u8]],
) -> tokio_rustls::client::TlsStream<TcpStream> {
    let tcp = TcpStream::connect(addr).await.unwrap();
    let connector = TlsConnector::from(ca.client_config(alpn));
    let name = ServerName::try_from("localhost").unwrap();
    guard("the TLS handshake", connector.connect(name, tcp))
        .await
        .unwrap()
}

/// The certificate `addr` presents to a new connection.
async fn presented_certificate(ca: &TestCa, addr: SocketAddr) -> CertificateDer<'static> {
    let tls = connect_tls(ca, addr, &[b"http/1.1"]).await;
    tls.get_ref().1.peer_certificates().unwrap()[0].clone()
}

/// A GET of `/mcp` over `tls`, in the protocol ALPN chose: the
/// response's HTTP version.
async fn get_over(tls: tokio_rustls::client::TlsStream<TcpStream>) -> Version {
    let h2 = tls.get_ref().1.alpn_protocol() == Some(b"h2");
    let io = TokioIo::new(tls);
    let request = |uri: &str| {
        Request::get(uri)
            .header("accept", "application/json, text/event-stream")
            .body(Empty::<Bytes>::new())
            .unwrap()
    };
    let response = if h2 {
        let (mut sender, connection) =
            hyper::client::conn::http2::handshake(TokioExecutor::new(), io)
                .await
                .unwrap();
        tokio::spawn(connection);
        sender.send_request(request("https://localhost/mcp")).await
    } else {
        let (mut sender, connection) = hyper::client::conn::http1::handshake(io).await.unwrap();
        tokio::spawn(connection);
        let mut request = request("/mcp");
        request
            .headers_mut()
            .insert("host", "localhost".parse().unwrap());
        sender.send_request(request).await
    };
    let response = response.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let version = response.version();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(body, UPSTREAM_ANSWER);
    version
}

/// The proxy served over TLS with `leaf` (files in `ca`'s directory), in
/// front of a cleartext upstream that records what it sees.
struct TlsProxy {
    addr: SocketAddr,
    tls: ListenerTls,
    upstream: Script,
    cert: PathBuf,
    key: PathBuf,
}

impl TlsProxy {
    async fn start(ca: &TestCa, leaf: &Leaf) -> Self {
        let (cert, key) = ca.files("listener", leaf);
        let tls = ListenerTls::from_pem_files(&cert, &key).unwrap();
        let upstream = Script::new(|_| Reply::json(UPSTREAM_ANSWER));
        let served = crate::common::serve(upstream.clone()).await;
        let proxy = ReverseProxy::new(format!("{}/mcp", served.base()).parse().unwrap());
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let serving = serve_tls(
            listener,
            tls.clone(),
            proxy,
            std::future::pending(),
            ServeOptions::new(),
        );
        tokio::spawn(async move {
            // The upstream lives as long as the proxy.
            let _served = served;
            serving.await
        });
        Self {
            addr,
            tls,
            upstream,
            cert,
            key,
        }
    }
}

#[tokio::test]
async fn the_tls_listener_serves_http1_and_http2_as_alpn_chooses() {
    let ca = TestCa::new("test CA");
    let proxy = TlsProxy::start(&ca, &ca.leaf(&["localhost"])).await;
    for (alpn, expected) in [
        (&[&b"h2"[..], b"http/1.1"][..], Version::HTTP_2),
        (&[&b"http/1.1"[..]][..], Version::HTTP_11),
        (&[][..], Version::HTTP_11),
    ] {
        let tls = connect_tls(&ca, proxy.addr, alpn).await;
        assert_eq!(get_over(tls).await, expected, "{alpn:?}");
        let seen = proxy.upstream.requests().pop().unwrap();
        assert_eq!(seen.header("x-forwarded-proto"), Some("https"), "{alpn:?}");
    }
}

#[tokio::test]
async fn a_reload_gives_new_connections_the_new_certificate_and_a_failed_one_keeps_the_old() {
    let ca = TestCa::new("test CA");
    let first = ca.leaf(&["localhost"]);
    let proxy = TlsProxy::start(&ca, &first).await;
    let open = connect_tls(&ca, proxy.addr, &[b"http/1.1"]).await;
    assert_eq!(presented_certificate(&ca, proxy.addr).await, first.der());

    let second = ca.leaf(&["localhost"]);
    second.write(&proxy.cert, &proxy.key);
    // Not before the reload.
    assert_eq!(presented_certificate(&ca, proxy.addr).await, first.der());
    proxy.tls.reload().unwrap();
    assert_eq!(presented_certificate(&ca, proxy.addr).await, second.der());
    // A connection opened before the reload goes on with the old one.
    assert_eq!(
        open.get_ref().1.peer_certificates().unwrap()[0],
        first.der()
    );
    assert_eq!(get_over(open).await, Version::HTTP_11);

    // A key that is not the certificate's: refused, the second one stays.
    let third = ca.leaf(&["localhost"]);
    std::fs::write(&proxy.cert, &third.cert_pem).unwrap();
    let error = proxy.tls.reload().unwrap_err();
    assert!(matches!(error, TlsConfigError::Rejected { .. }), "{error}");
    assert!(error.to_string().contains("listener.key"), "{error}");
    assert_eq!(presented_certificate(&ca, proxy.addr).await, second.der());
}

#[tokio::test]
async fn changed_files_are_reloaded_without_being_asked() {
    let ca = TestCa::new("test CA");
    let first = ca.leaf(&["localhost"]);
    let proxy = TlsProxy::start(&ca, &first).await;
    let reloads = proxy.tls.reload_when_changed(Duration::from_millis(50));
    // Half written (a new certificate, the old key): kept; then whole: taken.
    let second = ca.leaf(&["localhost"]);
    std::fs::write(&proxy.cert, &second.cert_pem).unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(presented_certificate(&ca, proxy.addr).await, first.der());
    std::fs::write(&proxy.key, &second.key_pem).unwrap();
    wait_until("the new certificate to be served", || async {
        presented_certificate(&ca, proxy.addr).await == second.der()
    })
    .await;
    reloads.abort();
}
