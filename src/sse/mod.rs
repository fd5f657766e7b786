//! An exact, incremental Server-Sent-Events codec.
//!
//! The resumability layer sits between a client and an MCP server that
//! answers with `text/event-stream` bodies. It cannot treat those bodies as
//! opaque bytes: every event has to be cut out of the stream, stored, and
//! sent on under an id the layer chose. This module does the cutting and the
//! re-encoding:
//!
//! - [`SseParser`] takes the inner service's body chunk by chunk, split
//!   anywhere, and yields one [`Block`] per finished block: a
//!   [`Block::Event`] carrying an [`SseEvent`], or a [`Block::Comment`]
//!   carrying a keep-alive ready to forward unchanged.
//! - [`encode_event`] writes an event back out, typically the parsed one with
//!   its id replaced (see [`OutgoingEvent`]); [`encode_comment`] writes a
//!   comment-only block.
//!
//! The parser follows the WHATWG HTML "event stream interpretation" rules:
//! one leading UTF-8 byte order mark is skipped; lines end in CRLF, LF or a
//! lone CR, also when the CR and the LF arrive in different chunks; an empty
//! line ends a block; a line starting with `:` is a comment; other lines are
//! `field:value` with one leading space of the value removed (a line without
//! a colon is a field with an empty value); field names are case-sensitive
//! and unknown ones are ignored; `data` values are joined by LF, `event`
//! sets the type, `id` is ignored if it contains NUL, and `retry` only counts
//! if it is all ASCII digits. A block that is not finished when the stream
//! ends is not an event ([`SseParser::has_partial_block`] tells that one was
//! cut off).
//!
//! Where a proxy needs more than a browser keeps, the parser reports the wire
//! faithfully rather than interpreting it: it works on bytes and passes
//! invalid UTF-8 through unchanged, keeps `id` and `retry` per block, leaves
//! a missing event type as `None` rather than `message`, and yields blocks
//! without data (such as a priming event: an id and nothing else) as events.
//!
//! Parsing copies as little as it can: a value that lies within one fed chunk
//! is returned as a [`Bytes`](bytes::Bytes) slice of that chunk, and lines
//! are found with slice scans, not byte-by-byte pushes.
//!
//! # Limits
//!
//! [`SseLimits`] bounds one line (8 MiB by default) and one event's data,
//! event type and id together (8 MiB by default). A line is rejected as soon
//! as its buffered part exceeds the limit, before its line end arrives, so
//! the parser never holds much more than the two limits plus the input it
//! was fed and has not parsed yet. Going over a limit fails the parser with
//! an [`SseError`] that names the setting to raise.
//!
//! # Example
//!
//! Parse a stream that arrives in awkward pieces and re-encode its event
//! under a new id, forwarding the keep-alive as it is:
//!
//! ```
//! use bytes::{Bytes, BytesMut};
//! use mcp_resume::sse::{encode_event, OutgoingEvent, Block, SseLimits, SseParser};
//!
//! let mut parser = SseParser::new(SseLimits::default());
//! // The body's chunks split a field name, and a CRLF between two chunks.
//! let chunks: [&'static [u8]; 3] = [
//!     b": ping\n\nevent: mess",
//!     b"age\r\nid: 0/upstream-7\r\ndata: {\"jsonrpc\":\"2.0\",\r",
//!     b"\ndata:  \"id\":1}\r\n\r\n",
//! ];
//! for chunk in chunks {
//!     parser.feed(Bytes::from_static(chunk));
//! }
//!
//! let mut out = BytesMut::new();
//! while let Some(block) = parser.next_block()? {
//!     match block {
//!         Block::Comment(raw) => out.extend_from_slice(&raw),
//!         Block::Event(event) => {
//!             assert_eq!(event.id.as_deref(), Some(&b"0/upstream-7"[..]));
//!             assert_eq!(event.data.as_deref(), Some(&b"{\"jsonrpc\":\"2.0\",\n \"id\":1}"[..]));
//!             let renamed = OutgoingEvent::from(&event).with_id(b"stream-1/42");
//!             encode_event(&renamed, &mut out)?;
//!         }
//!     }
//! }
//! // The stream ended on a block boundary: nothing was cut off.
//! assert!(!parser.has_partial_block());
//! assert_eq!(
//!     &out[..],
//!     &b": ping\n\n\
//!        id: stream-1/42\nevent: message\n\
//!        data: {\"jsonrpc\":\"2.0\",\ndata:  \"id\":1}\n\n"[..],
//! );
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod encoder;
mod parser;
#[cfg(test)]
mod tests;

pub use encoder::{EncodeError, OutgoingEvent, encode_comment, encode_event};
pub use parser::{Block, SseError, SseEvent, SseLimits, SseParser};

/// The former name of [`Block`].
#[deprecated(since = "0.2.0", note = "renamed to `Block`")]
pub type Frame = Block;

/// The former name of [`OutgoingEvent`].
#[deprecated(since = "0.2.0", note = "renamed to `OutgoingEvent`")]
pub type EventFrame<'a> = OutgoingEvent<'a>;
