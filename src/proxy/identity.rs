//! Who the caller is: the defaults with which the proxy binds streams to a
//! caller and checks a resume's caller with the upstream.

use http::HeaderName;

/// The request header whose value identifies a caller of the proxy by
/// default: `Authorization`, where MCP clients carry their bearer token.
///
/// The proxy passes it to
/// [`ResumabilityLayer::identity_header`](crate::ResumabilityLayer::identity_header),
/// which stores the header's SHA-256, never the token: a resume under
/// another token, or none, is refused like an unknown id. A client that
/// sends no `Authorization` has no identity, and its streams can be resumed
/// by any request without one, as before.
pub const DEFAULT_IDENTITY_HEADER: HeaderName = http::header::AUTHORIZATION;

/// Whether the proxy asks the upstream, before it serves a resume, whether
/// the caller may still use the session
/// ([`ResumabilityLayer::authorize_resumes_with_service`](crate::ResumabilityLayer::authorize_resumes_with_service)):
/// yes by default.
///
/// The layer answers resumes itself, so without this an upstream never sees
/// one, and a token it has since revoked still replays. It costs one
/// request to the upstream per resume: the resume's own `GET`, without its
/// `Last-Event-ID`.
pub const DEFAULT_AUTHORIZE_RESUMES_WITH_UPSTREAM: bool = true;
