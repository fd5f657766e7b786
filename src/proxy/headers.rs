//! Hop-by-hop headers: they describe one connection, so a proxy consumes
//! them instead of passing them on (RFC 9110, section 7.6.1).

use http::header::{self, HeaderMap, HeaderName};

/// Hop-by-hop headers by name, beyond those a `Connection` header lists and
/// the `Proxy-*` family. `Keep-Alive` is not in the `http` crate's constants.
const HOP_BY_HOP: [HeaderName; 6] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
];

/// Removes the hop-by-hop headers from `headers`: `Connection` and every
/// header it names, `Keep-Alive`, `Proxy-*` (`Proxy-Authorization`,
/// `Proxy-Authenticate`, `Proxy-Connection`...), `TE`, `Trailer`,
/// `Transfer-Encoding` and `Upgrade`. Everything else is end to end and stays.
pub(crate) fn remove_hop_by_hop(headers: &mut HeaderMap) {
    // The names listed in `Connection` first, while it is still there. A name
    // that is not a valid header name cannot be present, so it is skipped.
    let listed: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
        .collect();
    for name in listed {
        headers.remove(name);
    }
    for name in HOP_BY_HOP {
        headers.remove(name);
    }
    // Header names are stored lower-case.
    let proxy: Vec<HeaderName> = headers
        .keys()
        .filter(|name| name.as_str().starts_with("proxy-"))
        .cloned()
        .collect();
    for name in proxy {
        headers.remove(name);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(*name, HeaderValue::from_static(value));
        }
        map
    }

    #[test]
    fn hop_by_hop_headers_go_and_end_to_end_headers_stay() {
        let mut map = headers(&[
            ("connection", "keep-alive, X-Drop-Me"),
            ("connection", "x-also-dropped , not a name"),
            ("x-drop-me", "1"),
            ("x-also-dropped", "1"),
            ("keep-alive", "timeout=5"),
            ("proxy-authorization", "Basic abc"),
            ("proxy-authenticate", "Basic"),
            ("proxy-connection", "keep-alive"),
            ("te", "trailers"),
            ("trailer", "x-checksum"),
            ("transfer-encoding", "chunked"),
            ("upgrade", "websocket"),
            ("mcp-session-id", "abc"),
            ("mcp-protocol-version", "2025-11-25"),
            ("authorization", "Bearer token"),
            ("accept", "application/json, text/event-stream"),
            ("content-type", "application/json"),
            ("origin", "http://localhost"),
            ("last-event-id", "x.1"),
            ("x-custom", "kept"),
        ]);
        remove_hop_by_hop(&mut map);
        let mut left: Vec<&str> = map.keys().map(HeaderName::as_str).collect();
        left.sort_unstable();
        assert_eq!(
            left,
            [
                "accept",
                "authorization",
                "content-type",
                "last-event-id",
                "mcp-protocol-version",
                "mcp-session-id",
                "origin",
                "x-custom",
            ]
        );
    }

    #[test]
    fn a_connection_header_may_name_an_end_to_end_header() {
        // The sender says this hop consumes it: it goes.
        let mut map = headers(&[("connection", "x-custom"), ("x-custom", "1")]);
        remove_hop_by_hop(&mut map);
        assert!(map.is_empty());
    }
}
