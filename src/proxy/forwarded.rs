//! Telling the upstream who the client is and which name it used: the
//! `X-Forwarded-*` headers and RFC 7239's `Forwarded`.

use std::net::{IpAddr, SocketAddr};

use http::header::{self, HeaderMap, HeaderName, HeaderValue};

/// Which headers a [`ReverseProxy`](super::ReverseProxy) adds to tell the
/// upstream about the client: its address, the `Host` it asked for (the
/// proxy sends the upstream's own `Host`) and the scheme it spoke.
///
/// An upstream that checks the name a browser used (DNS-rebinding
/// protection, links it builds) reads it from these. Default:
/// [`XForwarded`](Self::XForwarded), the set most servers and frameworks read.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ForwardedHeaders {
    /// `X-Forwarded-For` (the client's IP address), `X-Forwarded-Host` (the
    /// client's `Host`) and `X-Forwarded-Proto` (`http`).
    #[default]
    XForwarded,
    /// RFC 7239's `Forwarded: for=...;host=...;proto=http`.
    Forwarded,
    /// Both sets.
    Both,
    /// None of them.
    None,
}

impl ForwardedHeaders {
    fn x_forwarded(self) -> bool {
        matches!(self, Self::XForwarded | Self::Both)
    }

    fn forwarded(self) -> bool {
        matches!(self, Self::Forwarded | Self::Both)
    }
}

/// The address of the client a request came from, in the request's
/// extensions. [`serve`](super::serve) puts it there; a
/// [`ReverseProxy`](super::ReverseProxy) served another way forwards no
/// client address without it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClientAddr(pub SocketAddr);

const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");

/// What the proxy knows of one request's client.
pub(crate) struct Client {
    /// Its IP address, when the server gave it ([`ClientAddr`]).
    pub(crate) ip: Option<IpAddr>,
    /// The `Host` (or HTTP/2 `:authority`) it sent.
    pub(crate) host: Option<HeaderValue>,
    /// The scheme it spoke.
    pub(crate) proto: &'static str,
}

/// Sets the forwarding headers of a request about to go upstream.
///
/// Untrusted (`trust_incoming` false), the client's own `X-Forwarded-*` and
/// `Forwarded` headers are removed first, whatever `which` is: a client
/// could otherwise claim any address or name. Trusted (the proxy runs
/// behind another proxy that sets them), the incoming ones are kept and
/// extended: this client's address is appended to `X-Forwarded-For` and to
/// `Forwarded`, and `X-Forwarded-Host` / `X-Forwarded-Proto` are set only
/// when absent.
pub(crate) fn set_forwarded(
    headers: &mut HeaderMap,
    which: ForwardedHeaders,
    trust_incoming: bool,
    client: &Client,
) {
    if !trust_incoming {
        for name in [
            X_FORWARDED_FOR,
            X_FORWARDED_HOST,
            X_FORWARDED_PROTO,
            header::FORWARDED,
        ] {
            headers.remove(name);
        }
    }
    if which.x_forwarded() {
        if let Some(ip) = client.ip {
            append_to_list(headers, X_FORWARDED_FOR, &ip.to_string());
        }
        if let Some(host) = &client.host
            && !headers.contains_key(X_FORWARDED_HOST)
        {
            headers.insert(X_FORWARDED_HOST, host.clone());
        }
        if !headers.contains_key(X_FORWARDED_PROTO) {
            headers.insert(X_FORWARDED_PROTO, HeaderValue::from_static(client.proto));
        }
    }
    if which.forwarded() {
        append_to_list(headers, header::FORWARDED, &forwarded_element(client));
    }
}

/// Appends `item` to the comma-separated list `name` holds (over one or
/// more header lines), as one line.
fn append_to_list(headers: &mut HeaderMap, name: HeaderName, item: &str) {
    let mut list: Vec<&str> = headers
        .get_all(&name)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .collect();
    list.push(item);
    // Made of valid header values, separators and an element built from
    // valid text: a valid header value.
    if let Ok(value) = HeaderValue::from_str(&list.join(", ")) {
        headers.insert(name, value);
    }
}

/// One `Forwarded` element: `for=...;host="...";proto=http`.
fn forwarded_element(client: &Client) -> String {
    let mut pairs = Vec::new();
    match client.ip {
        Some(IpAddr::V4(ip)) => pairs.push(format!("for={ip}")),
        // RFC 7239: an IPv6 node is bracketed, and so must be quoted.
        Some(IpAddr::V6(ip)) => pairs.push(format!("for=\"[{ip}]\"")),
        None => {}
    }
    if let Some(host) = client.host.as_ref().and_then(|host| host.to_str().ok()) {
        // `host:port` is not an RFC 7230 token: always quoted.
        let quoted = host.replace('\\', "\\\\").replace('"', "\\\"");
        pairs.push(format!("host=\"{quoted}\""));
    }
    pairs.push(format!("proto={}", client.proto));
    pairs.join(";")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client(ip: &str, host: &'static str) -> Client {
        Client {
            ip: Some(ip.parse().unwrap()),
            host: Some(HeaderValue::from_static(host)),
            proto: "http",
        }
    }

    fn incoming() -> HeaderMap {
        let mut headers = HeaderMap::new();
        for (name, value) in [
            ("x-forwarded-for", "203.0.113.7"),
            ("x-forwarded-host", "claimed.example"),
            ("x-forwarded-proto", "https"),
            ("forwarded", "for=203.0.113.7;proto=https"),
        ] {
            headers.append(name, HeaderValue::from_static(value));
        }
        headers
    }

    fn get<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
        headers.get(name).map(|value| value.to_str().unwrap())
    }

    #[test]
    fn untrusted_incoming_headers_are_replaced_by_what_the_proxy_saw() {
        let mut headers = incoming();
        let client = client("127.0.0.1", "localhost:8080");
        set_forwarded(&mut headers, ForwardedHeaders::Both, false, &client);
        assert_eq!(get(&headers, "x-forwarded-for"), Some("127.0.0.1"));
        assert_eq!(get(&headers, "x-forwarded-host"), Some("localhost:8080"));
        assert_eq!(get(&headers, "x-forwarded-proto"), Some("http"));
        assert_eq!(
            get(&headers, "forwarded"),
            Some("for=127.0.0.1;host=\"localhost:8080\";proto=http")
        );

        let mut headers = incoming();
        set_forwarded(&mut headers, ForwardedHeaders::None, false, &client);
        assert!(headers.is_empty(), "{headers:?}");
    }

    #[test]
    fn trusted_incoming_headers_are_kept_and_extended() {
        let mut headers = incoming();
        let client = client("::1", "localhost:8080");
        set_forwarded(&mut headers, ForwardedHeaders::Both, true, &client);
        assert_eq!(get(&headers, "x-forwarded-for"), Some("203.0.113.7, ::1"));
        assert_eq!(get(&headers, "x-forwarded-host"), Some("claimed.example"));
        assert_eq!(get(&headers, "x-forwarded-proto"), Some("https"));
        assert_eq!(
            get(&headers, "forwarded"),
            Some("for=203.0.113.7;proto=https, for=\"[::1]\";host=\"localhost:8080\";proto=http")
        );

        let mut headers = incoming();
        set_forwarded(&mut headers, ForwardedHeaders::None, true, &client);
        assert_eq!(headers, incoming());
    }

    #[test]
    fn only_the_chosen_set_is_added() {
        let client = client("127.0.0.1", "localhost");
        let mut headers = HeaderMap::new();
        set_forwarded(&mut headers, ForwardedHeaders::XForwarded, false, &client);
        assert!(headers.contains_key("x-forwarded-host") && !headers.contains_key("forwarded"));
        let mut headers = HeaderMap::new();
        set_forwarded(&mut headers, ForwardedHeaders::Forwarded, false, &client);
        assert_eq!(headers.len(), 1, "{headers:?}");
        assert!(headers.contains_key("forwarded"));
    }
}
