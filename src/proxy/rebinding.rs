//! [`RebindingGuard`]: DNS-rebinding protection, refusing requests whose
//! `Host` or `Origin` names something other than this server.

use std::fmt;
use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::pin::Pin;
use std::str::FromStr;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::header::{self, HeaderMap};
use http::uri::{Authority, Uri};
use http::{Request, Response, StatusCode};
use http_body_util::{Either, Full};
use pin_project_lite::pin_project;
use tower::{Layer, Service};

use super::answer::{INVALID_REQUEST, json_error};

/// DNS-rebinding protection for a server on this machine, as the MCP
/// specification asks of local servers: requests whose `Host` or `Origin`
/// is not an allowed name are refused with `403 Forbidden` and a JSON-RPC
/// error, before they reach the service.
///
/// A web page can make a browser send requests to `127.0.0.1` under a name
/// of its own: its DNS name first resolves to its server, then to
/// `127.0.0.1`. The browser then treats the local MCP server as part of the
/// page's site, and the page can call its tools. The request still carries
/// the page's name in `Host` (and its origin in `Origin`), which is what
/// this refuses.
///
/// With the Host check on, a request passes when its `Host` (HTTP/2:
/// `:authority`) is a loopback name (`localhost`, an address in
/// `127.0.0.0/8`, `[::1]`, with any port or none) or matches an
/// [`AllowedHost`]. With the Origin check on, a request passes when it has
/// no `Origin` (clients other than browsers send none) or its `Origin` names
/// a loopback host (any scheme and port) or matches an [`AllowedOrigin`].
/// Each check is on or off by itself:
///
/// - [`loopback`](Self::loopback): both on, loopback names only. For a
///   server listening on a loopback address.
/// - [`off`](Self::off): both off. For a server reachable from other
///   machines, which is addressed by names it cannot know beforehand (its
///   DNS names, its addresses) and is protected by authentication instead:
///   a check there refuses legitimate clients unless told every name.
/// - [`for_listener`](Self::for_listener): one of the two, by the address
///   the server listens on.
/// - [`allow_hosts`](Self::allow_hosts) and
///   [`allow_origins`](Self::allow_origins) add names, turning their check
///   on if it was off.
///
/// ```
/// use std::net::Ipv4Addr;
/// use mcp_resume::proxy::{AllowedOrigin, RebindingGuardLayer, ReverseProxy};
/// use tower::Layer;
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let guard = RebindingGuardLayer::for_listener(Ipv4Addr::LOCALHOST.into())
///     .allow_origins(["https://inspector.example.com".parse::<AllowedOrigin>()?]);
/// let service = guard.layer(ReverseProxy::new("http://127.0.0.1:8000/mcp".parse()?));
/// # let _ = service;
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RebindingGuardLayer {
    /// The allowed hosts beyond loopback names; `None`: no Host check.
    hosts: Option<Arc<[AllowedHost]>>,
    /// The allowed origins beyond loopback ones; `None`: no Origin check.
    origins: Option<Arc<[AllowedOrigin]>>,
}

impl RebindingGuardLayer {
    /// Both checks on, allowing loopback names only.
    pub fn loopback() -> Self {
        Self {
            hosts: Some(Arc::new([])),
            origins: Some(Arc::new([])),
        }
    }

    /// Both checks off: every request passes.
    pub fn off() -> Self {
        Self {
            hosts: None,
            origins: None,
        }
    }

    /// [`loopback`](Self::loopback) for a server listening on a loopback
    /// address, [`off`](Self::off) for any other (the unspecified
    /// `0.0.0.0` and `[::]` included: they listen on every interface).
    pub fn for_listener(listening_on: IpAddr) -> Self {
        if listening_on.is_loopback() {
            Self::loopback()
        } else {
            Self::off()
        }
    }

    /// Turns the Host check on, if it was off, and allows `hosts` besides
    /// loopback names.
    pub fn allow_hosts(mut self, hosts: impl IntoIterator<Item = AllowedHost>) -> Self {
        self.hosts = Some(extended(self.hosts.as_deref(), hosts));
        self
    }

    /// Turns the Origin check on, if it was off, and allows `origins`
    /// besides those of loopback hosts.
    pub fn allow_origins(mut self, origins: impl IntoIterator<Item = AllowedOrigin>) -> Self {
        self.origins = Some(extended(self.origins.as_deref(), origins));
        self
    }

    /// Whether the Host check is on.
    pub fn checks_host(&self) -> bool {
        self.hosts.is_some()
    }

    /// Whether the Origin check is on.
    pub fn checks_origin(&self) -> bool {
        self.origins.is_some()
    }

    /// Why a request with these `headers` and `uri` is refused, if it is:
    /// the message of the `403`.
    fn refusal(&self, headers: &HeaderMap, uri: &Uri) -> Option<String> {
        if let Some(allowed) = &self.hosts {
            let mut hosts: Vec<&[u8]> = headers
                .get_all(header::HOST)
                .iter()
                .map(|host| host.as_bytes())
                .collect();
            if hosts.is_empty()
                && let Some(authority) = uri.authority()
            {
                hosts.push(authority.as_str().as_bytes());
            }
            // No host at all: not a browser, which always sends one.
            for host in hosts {
                if !host_allowed(host, allowed) {
                    return Some(format!(
                        "Forbidden: Host `{}` is not a name this server answers to \
                         (DNS-rebinding protection)",
                        String::from_utf8_lossy(host)
                    ));
                }
            }
        }
        if let Some(allowed) = &self.origins {
            for origin in headers.get_all(header::ORIGIN) {
                if !origin_allowed(origin.as_bytes(), allowed) {
                    return Some(format!(
                        "Forbidden: Origin `{}` is not allowed to call this server \
                         (DNS-rebinding protection)",
                        String::from_utf8_lossy(origin.as_bytes())
                    ));
                }
            }
        }
        None
    }
}

/// `current` (or nothing) followed by `more`.
fn extended<T: Clone>(current: Option<&[T]>, more: impl IntoIterator<Item = T>) -> Arc<[T]> {
    current
        .unwrap_or_default()
        .iter()
        .cloned()
        .chain(more)
        .collect()
}

impl<S> Layer<S> for RebindingGuardLayer {
    type Service = RebindingGuard<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RebindingGuard {
            inner,
            guard: self.clone(),
        }
    }
}

/// The service of [`RebindingGuardLayer`]: refuses requests with a `Host` or
/// `Origin` that is not allowed, passes the others to `S`.
#[derive(Clone, Debug)]
pub struct RebindingGuard<S> {
    inner: S,
    guard: RebindingGuardLayer,
}

impl<S, B, ResBody> Service<Request<B>> for RebindingGuard<S>
where
    S: Service<Request<B>, Response = Response<ResBody>>,
{
    type Response = Response<Either<ResBody, Full<Bytes>>>;
    type Error = S::Error;
    type Future = RebindingGuardFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        match self.guard.refusal(request.headers(), request.uri()) {
            Some(message) => {
                tracing::info!(
                    method = %request.method(),
                    uri = %request.uri(),
                    "{message}; answered 403"
                );
                let refused = json_error(StatusCode::FORBIDDEN, INVALID_REQUEST, &message);
                RebindingGuardFuture {
                    inner: None,
                    refused: Some(refused.map(Full::new)),
                }
            }
            None => RebindingGuardFuture {
                inner: Some(self.inner.call(request)),
                refused: None,
            },
        }
    }
}

pin_project! {
    /// The future of [`RebindingGuard`]: the service's response, or the `403`.
    pub struct RebindingGuardFuture<F> {
        #[pin]
        inner: Option<F>,
        refused: Option<Response<Full<Bytes>>>,
    }
}

impl<F> fmt::Debug for RebindingGuardFuture<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RebindingGuardFuture")
            .field("refused", &self.refused.is_some())
            .finish_non_exhaustive()
    }
}

impl<F, ResBody, E> Future for RebindingGuardFuture<F>
where
    F: Future<Output = Result<Response<ResBody>, E>>,
{
    type Output = Result<Response<Either<ResBody, Full<Bytes>>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        if let Some(refused) = this.refused.take() {
            return Poll::Ready(Ok(refused.map(Either::Right)));
        }
        let inner = this
            .inner
            .as_pin_mut()
            .expect("RebindingGuardFuture polled after completion");
        inner
            .poll(cx)
            .map(|answer| answer.map(|response| response.map(Either::Left)))
    }
}

/// A host name (or address) allowed in `Host` by a [`RebindingGuardLayer`],
/// besides loopback names.
///
/// Written `example.com` (any port, or none), `example.com:8443` (that port
/// only), `192.0.2.7`, `[2001:db8::7]:8080`, or `*` (any host: the check
/// passes everything). Names compare without regard to case.
///
/// ```
/// use mcp_resume::proxy::AllowedHost;
///
/// let host: AllowedHost = "MCP.example.com:8443".parse()?;
/// assert_eq!(host.to_string(), "mcp.example.com:8443");
/// assert!("https://mcp.example.com".parse::<AllowedHost>().is_err());
/// # Ok::<(), mcp_resume::proxy::InvalidAllowList>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AllowedHost {
    /// Lower-case; IPv6 addresses bracketed. `None`: any host.
    host: Option<String>,
    port: Option<u16>,
}

impl AllowedHost {
    fn matches(&self, host: &str, port: Option<u16>) -> bool {
        let Some(allowed) = &self.host else {
            return true;
        };
        allowed.eq_ignore_ascii_case(host) && self.port.is_none_or(|allowed| Some(allowed) == port)
    }
}

impl FromStr for AllowedHost {
    type Err = InvalidAllowList;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        if text == "*" {
            return Ok(Self {
                host: None,
                port: None,
            });
        }
        let invalid = || InvalidAllowList::Host(text.to_owned());
        let (host, port) = split_host(text.as_bytes()).ok_or_else(invalid)?;
        Ok(Self {
            host: Some(host.to_ascii_lowercase()),
            port,
        })
    }
}

impl fmt::Display for AllowedHost {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.host, self.port) {
            (None, _) => f.write_str("*"),
            (Some(host), None) => f.write_str(host),
            (Some(host), Some(port)) => write!(f, "{host}:{port}"),
        }
    }
}

/// An origin allowed in `Origin` by a [`RebindingGuardLayer`], besides those
/// of loopback hosts.
///
/// Written `https://app.example.com` (that scheme and host, any port),
/// `https://app.example.com:8443` (that port only), `null` (the origin
/// browsers send from sandboxed frames and local files), or `*` (any
/// origin: the check passes everything). Compared without regard to case.
///
/// ```
/// use mcp_resume::proxy::AllowedOrigin;
///
/// let origin: AllowedOrigin = "https://App.example.com".parse()?;
/// assert_eq!(origin.to_string(), "https://app.example.com");
/// assert!("app.example.com".parse::<AllowedOrigin>().is_err());
/// # Ok::<(), mcp_resume::proxy::InvalidAllowList>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AllowedOrigin {
    kind: OriginKind,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum OriginKind {
    Any,
    Null,
    /// Lower-case scheme and host (IPv6 bracketed); `None` port: any.
    Site {
        scheme: String,
        host: String,
        port: Option<u16>,
    },
}

impl FromStr for AllowedOrigin {
    type Err = InvalidAllowList;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let kind = match text {
            "*" => OriginKind::Any,
            "null" => OriginKind::Null,
            _ => {
                let (scheme, host, port) = split_origin(text.as_bytes())
                    .ok_or_else(|| InvalidAllowList::Origin(text.to_owned()))?;
                OriginKind::Site {
                    scheme: scheme.to_ascii_lowercase(),
                    host: host.to_ascii_lowercase(),
                    port,
                }
            }
        };
        Ok(Self { kind })
    }
}

impl fmt::Display for AllowedOrigin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            OriginKind::Any => f.write_str("*"),
            OriginKind::Null => f.write_str("null"),
            OriginKind::Site { scheme, host, port } => {
                write!(f, "{scheme}://{host}")?;
                match port {
                    Some(port) => write!(f, ":{port}"),
                    None => Ok(()),
                }
            }
        }
    }
}

/// An [`AllowedHost`] or [`AllowedOrigin`] that cannot be read. The message
/// names the text and says what is accepted.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum InvalidAllowList {
    /// Not a host name, address, `host:port` or `*`.
    #[error(
        "invalid allowed host `{0}`: expected a host name or address with an optional port \
         (mcp.example.com, mcp.example.com:8443, [::1]:8080) or `*`"
    )]
    Host(String),
    /// Not `scheme://host[:port]`, `null` or `*`.
    #[error(
        "invalid allowed origin `{0}`: expected scheme://host with an optional port \
         (https://app.example.com, http://app.example.com:3000), `null` or `*`"
    )]
    Origin(String),
}

/// `host[:port]` (the text of `Host` or of an origin's authority) as its
/// host (IPv6 bracketed) and port; `None` if it is not one.
fn split_host(text: &[u8]) -> Option<(&str, Option<u16>)> {
    let text = std::str::from_utf8(text).ok()?;
    // `Authority` takes `user@host`, which `Host` never is.
    if text.is_empty() || text.contains('@') {
        return None;
    }
    let authority: Authority = text.parse().ok()?;
    // With no `user@`, the host is where the text starts.
    let host = &text[..authority.host().len()];
    // `http` parses any text after the host's colon as the port, and
    // reports none when it is not a number.
    let has_port = text.len() > host.len();
    let port = authority.port_u16();
    if host.is_empty() || (has_port && port.is_none()) {
        return None;
    }
    Some((host, port))
}

/// `scheme://host[:port]`, an origin, as its parts; `None` if it is not one.
fn split_origin(text: &[u8]) -> Option<(&str, &str, Option<u16>)> {
    let text = std::str::from_utf8(text).ok()?;
    let (scheme, rest) = text.split_once("://")?;
    let valid_scheme = scheme.starts_with(|c: char| c.is_ascii_alphabetic())
        && scheme
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
    if !valid_scheme {
        return None;
    }
    let (host, port) = split_host(rest.as_bytes())?;
    Some((scheme, host, port))
}

/// Whether `host` (`127.0.0.1`, `[::1]`, `localhost`) is a loopback name:
/// one a page elsewhere cannot make a browser use.
fn is_loopback(host: &str) -> bool {
    if host.eq_ignore_ascii_case("localhost") {
        return true;
    }
    if let Some(v6) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        return v6.parse::<Ipv6Addr>().is_ok_and(|ip| ip.is_loopback());
    }
    host.parse::<Ipv4Addr>().is_ok_and(|ip| ip.is_loopback())
}

fn host_allowed(host: &[u8], allowed: &[AllowedHost]) -> bool {
    split_host(host).is_some_and(|(host, port)| {
        is_loopback(host) || allowed.iter().any(|entry| entry.matches(host, port))
    })
}

fn origin_allowed(origin: &[u8], allowed: &[AllowedOrigin]) -> bool {
    if allowed.iter().any(|entry| entry.kind == OriginKind::Any) {
        return true;
    }
    if origin == b"null" {
        return allowed.iter().any(|entry| entry.kind == OriginKind::Null);
    }
    split_origin(origin).is_some_and(|(scheme, host, port)| {
        is_loopback(host)
            || allowed.iter().any(|entry| match &entry.kind {
                OriginKind::Site {
                    scheme: allowed_scheme,
                    host: allowed_host,
                    port: allowed_port,
                } => {
                    allowed_scheme.eq_ignore_ascii_case(scheme)
                        && allowed_host.eq_ignore_ascii_case(host)
                        && allowed_port.is_none_or(|allowed| Some(allowed) == port)
                }
                OriginKind::Any | OriginKind::Null => false,
            })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(guard: &RebindingGuardLayer, host: Option<&str>, origin: Option<&str>) -> bool {
        let mut request = Request::post("/mcp");
        if let Some(host) = host {
            request = request.header("host", host);
        }
        if let Some(origin) = origin {
            request = request.header("origin", origin);
        }
        let request = request.body(()).unwrap();
        guard.refusal(request.headers(), request.uri()).is_some()
    }

    #[test]
    fn loopback_names_pass_with_any_port_and_others_are_refused() {
        let guard = RebindingGuardLayer::loopback();
        for host in [
            "localhost",
            "LOCALHOST:8080",
            "127.0.0.1",
            "127.0.0.1:8080",
            "127.8.9.10:1",
            "[::1]",
            "[::1]:8080",
        ] {
            assert!(!refused(&guard, Some(host), None), "{host}");
            let origin = format!("http://{host}");
            assert!(
                !refused(&guard, Some("localhost"), Some(&origin)),
                "{origin}"
            );
        }
        assert!(!refused(&guard, None, None), "no Host: not a browser");
        assert!(!refused(
            &guard,
            Some("localhost"),
            Some("https://localhost:3000")
        ));
        for host in [
            "evil.example.com",
            "evil.example.com:8080",
            "localhost.evil.example.com",
            "128.0.0.1",
            "0.0.0.0",
            "[::2]",
            "192.168.1.2:8080",
            "user@localhost",
            "localhost:http",
            "",
        ] {
            assert!(refused(&guard, Some(host), None), "{host:?}");
        }
        for origin in [
            "http://evil.example.com",
            "http://evil.example.com:8080",
            "null",
            "localhost",
            "http://localhost.evil.example.com",
        ] {
            assert!(refused(&guard, Some("localhost"), Some(origin)), "{origin}");
        }
    }

    #[test]
    fn allow_lists_add_names_and_turn_their_check_on() {
        let off = RebindingGuardLayer::off();
        assert!(!refused(&off, Some("evil.example.com"), Some("null")));

        let hosts = off.clone().allow_hosts([
            "mcp.example.com".parse().unwrap(),
            "other.example:8443".parse().unwrap(),
        ]);
        assert!(hosts.checks_host() && !hosts.checks_origin());
        assert!(!refused(
            &hosts,
            Some("MCP.example.com:9000"),
            Some("http://evil.example.com")
        ));
        assert!(!refused(&hosts, Some("other.example:8443"), None));
        assert!(!refused(&hosts, Some("localhost:1"), None));
        assert!(refused(&hosts, Some("other.example:8444"), None));
        assert!(refused(&hosts, Some("evil.example.com"), None));

        let origins = RebindingGuardLayer::loopback().allow_origins([
            "https://app.example.com".parse().unwrap(),
            "http://dev.example:3000".parse().unwrap(),
            "null".parse().unwrap(),
        ]);
        for origin in [
            "https://app.example.com",
            "https://APP.example.com:8443",
            "http://dev.example:3000",
            "null",
        ] {
            assert!(
                !refused(&origins, Some("localhost"), Some(origin)),
                "{origin}"
            );
        }
        for origin in ["http://app.example.com", "http://dev.example:3001"] {
            assert!(
                refused(&origins, Some("localhost"), Some(origin)),
                "{origin}"
            );
        }

        let any = RebindingGuardLayer::loopback()
            .allow_hosts(["*".parse().unwrap()])
            .allow_origins(["*".parse().unwrap()]);
        assert!(!refused(&any, Some("evil.example.com"), Some("null")));
    }

    #[test]
    fn the_listener_decides_the_default() {
        assert_eq!(
            RebindingGuardLayer::for_listener(Ipv4Addr::LOCALHOST.into()),
            RebindingGuardLayer::loopback()
        );
        assert_eq!(
            RebindingGuardLayer::for_listener(Ipv6Addr::LOCALHOST.into()),
            RebindingGuardLayer::loopback()
        );
        for ip in ["0.0.0.0", "::", "192.0.2.7"] {
            let guard = RebindingGuardLayer::for_listener(ip.parse().unwrap());
            assert_eq!(guard, RebindingGuardLayer::off(), "{ip}");
        }
    }

    #[test]
    fn allow_list_entries_read_back_as_written() {
        for text in [
            "*",
            "example.com",
            "example.com:8443",
            "192.0.2.7",
            "[2001:db8::7]:8080",
        ] {
            assert_eq!(text.parse::<AllowedHost>().unwrap().to_string(), text);
        }
        for bad in [
            "",
            "https://example.com",
            "example.com/mcp",
            "example.com:x",
            "a@b",
        ] {
            let error = bad.parse::<AllowedHost>().unwrap_err().to_string();
            assert!(error.contains(&format!("`{bad}`")), "{error}");
        }
        for text in ["*", "null", "https://app.example.com", "http://[::1]:3000"] {
            assert_eq!(text.parse::<AllowedOrigin>().unwrap().to_string(), text);
        }
        for bad in [
            "",
            "app.example.com",
            "https://",
            "1http://x",
            "https://a.example/path",
        ] {
            let error = bad.parse::<AllowedOrigin>().unwrap_err().to_string();
            assert!(error.contains(&format!("`{bad}`")), "{error}");
        }
    }
}
