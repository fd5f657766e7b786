//! [`Upstream`]: where the proxy forwards to, parsed once at start-up so a
//! bad URL is a clear error there rather than a 502 on every request.

use std::fmt;
use std::str::FromStr;

use http::HeaderValue;
use http::uri::{Authority, PathAndQuery, Scheme, Uri};

/// The upstream MCP server of a [`ReverseProxy`](super::ReverseProxy): an
/// `http://` or `https://` URL such as `http://127.0.0.1:8000/mcp`.
///
/// An `https://` upstream's certificate is verified against the system's
/// root certificates, or a CA bundle ([`UpstreamTls`](super::UpstreamTls)).
///
/// Only the scheme and authority decide where requests go: a request for
/// `/<path>?<query>` is forwarded to the same path and query on the upstream,
/// so clients use the upstream's path on the proxy's address. The URL's own
/// path is kept for messages ([`endpoint`](Self::endpoint)).
///
/// ```
/// use mcp_resume::proxy::Upstream;
///
/// let upstream: Upstream = "http://127.0.0.1:8000/mcp".parse()?;
/// assert_eq!(upstream.authority().as_str(), "127.0.0.1:8000");
/// assert_eq!(upstream.path(), "/mcp");
/// assert!("https://example.com/mcp".parse::<Upstream>()?.is_https());
/// assert!("ws://example.com/mcp".parse::<Upstream>().is_err());
/// # Ok::<(), mcp_resume::proxy::InvalidUpstream>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Upstream {
    /// `http` or `https`.
    scheme: Scheme,
    authority: Authority,
    /// The `Host` header sent upstream: the authority, validated once.
    host: HeaderValue,
    path: String,
}

/// Why an upstream URL was refused. Every message names the input and says
/// what would be accepted.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum InvalidUpstream {
    /// The text is not an absolute URL.
    #[error(
        "invalid upstream `{input}`: not an absolute URL; expected one like http://127.0.0.1:8000/mcp"
    )]
    NotAUrl {
        /// The text given.
        input: String,
    },
    /// The scheme is neither `http` nor `https`.
    #[error(
        "invalid upstream `{input}`: only http:// and https:// upstreams are supported, \
         e.g. http://127.0.0.1:8000/mcp"
    )]
    UnsupportedScheme {
        /// The text given.
        input: String,
    },
    /// The URL carries `user:password@`, which would never be sent.
    #[error(
        "invalid upstream `{input}`: credentials in the URL are not supported; clients' \
         Authorization headers are forwarded as they are"
    )]
    Credentials {
        /// The text given.
        input: String,
    },
    /// The port is not a number from 1 to 65535. (Left as it is, the
    /// connector would quietly use port 80.)
    #[error(
        "invalid upstream `{input}`: the port must be a number from 1 to 65535, \
         e.g. http://127.0.0.1:8000/mcp"
    )]
    InvalidPort {
        /// The text given.
        input: String,
    },
}

impl Upstream {
    /// Where requests are sent: `host:port`.
    pub fn authority(&self) -> &Authority {
        &self.authority
    }

    /// Whether the upstream is reached over TLS (`https://`).
    pub fn is_https(&self) -> bool {
        self.scheme == Scheme::HTTPS
    }

    /// The path of the URL the upstream was given as (`/mcp`), or `/`.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The URL the upstream was given as, normalised: `scheme://host:port/path`.
    pub fn endpoint(&self) -> String {
        self.to_string()
    }

    /// The `Host` header for requests sent upstream.
    pub(crate) fn host_header(&self) -> HeaderValue {
        self.host.clone()
    }

    /// The upstream URL for a request's path and query.
    pub(crate) fn uri_for(&self, path_and_query: PathAndQuery) -> Result<Uri, http::Error> {
        Uri::builder()
            .scheme(self.scheme.clone())
            .authority(self.authority.clone())
            .path_and_query(path_and_query)
            .build()
    }
}

impl FromStr for Upstream {
    type Err = InvalidUpstream;

    fn from_str(input: &str) -> Result<Self, Self::Err> {
        let not_a_url = || InvalidUpstream::NotAUrl {
            input: input.to_owned(),
        };
        let uri: Uri = input.trim().parse().map_err(|_| not_a_url())?;
        let (Some(scheme), Some(authority)) = (uri.scheme(), uri.authority()) else {
            return Err(not_a_url());
        };
        if *scheme != Scheme::HTTP && *scheme != Scheme::HTTPS {
            return Err(InvalidUpstream::UnsupportedScheme {
                input: input.to_owned(),
            });
        }
        if authority.as_str().contains('@') {
            return Err(InvalidUpstream::Credentials {
                input: input.to_owned(),
            });
        }
        if authority.host().is_empty() {
            return Err(not_a_url());
        }
        // `http` parses any text after the host's colon as the authority,
        // and reports no port when it is not a valid one.
        let port_text = authority.as_str().len() > authority.host().len();
        if port_text && authority.port_u16().is_none_or(|port| port == 0) {
            return Err(InvalidUpstream::InvalidPort {
                input: input.to_owned(),
            });
        }
        // An authority that parsed as part of a URI is valid header text.
        let host = HeaderValue::from_str(authority.as_str()).map_err(|_| not_a_url())?;
        Ok(Self {
            scheme: scheme.clone(),
            authority: authority.clone(),
            host,
            path: uri.path().to_owned(),
        })
    }
}

impl fmt::Display for Upstream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}://{}{}", self.scheme, self.authority, self.path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_urls_are_accepted() {
        let upstream: Upstream = "http://127.0.0.1:8000/mcp".parse().unwrap();
        assert_eq!(upstream.authority().as_str(), "127.0.0.1:8000");
        assert_eq!(upstream.host_header(), "127.0.0.1:8000");
        assert_eq!(upstream.path(), "/mcp");
        assert_eq!(upstream.to_string(), "http://127.0.0.1:8000/mcp");

        let v6: Upstream = "http://[::1]:8000/mcp".parse().unwrap();
        assert_eq!(v6.authority().port_u16(), Some(8000));

        let bare: Upstream = "http://localhost".parse().unwrap();
        assert_eq!(bare.path(), "/");
        assert_eq!(bare.endpoint(), "http://localhost/");

        let uri = upstream
            .uri_for(PathAndQuery::from_static("/other?x=1"))
            .unwrap();
        assert_eq!(uri, "http://127.0.0.1:8000/other?x=1");
        assert!(!upstream.is_https());
    }

    #[test]
    fn https_urls_are_accepted() {
        let upstream: Upstream = "https://mcp.example.com/mcp".parse().unwrap();
        assert!(upstream.is_https());
        assert_eq!(upstream.host_header(), "mcp.example.com");
        assert_eq!(upstream.endpoint(), "https://mcp.example.com/mcp");
        let uri = upstream
            .uri_for(PathAndQuery::from_static("/mcp?x=1"))
            .unwrap();
        assert_eq!(uri, "https://mcp.example.com/mcp?x=1");
    }

    #[test]
    fn other_urls_are_refused_with_the_reason() {
        for (input, expected) in [
            ("", "not an absolute URL"),
            ("127.0.0.1:8000", "not an absolute URL"),
            ("/mcp", "not an absolute URL"),
            ("http://", "not an absolute URL"),
            ("not a url", "not an absolute URL"),
            ("ws://example.com/mcp", "only http:// and https://"),
            ("ftp://example.com/mcp", "only http:// and https://"),
            ("http://user:secret@example.com/mcp", "credentials"),
            ("http://127.0.0.1:99999/mcp", "port must be a number"),
            ("http://127.0.0.1:80a/mcp", "port must be a number"),
            ("http://127.0.0.1:0/mcp", "port must be a number"),
            ("http://127.0.0.1:/mcp", "port must be a number"),
        ] {
            let error = input.parse::<Upstream>().unwrap_err().to_string();
            assert!(error.contains(expected), "{input:?}: {error}");
            assert!(error.contains(&format!("`{input}`")), "{input:?}: {error}");
        }
    }
}
