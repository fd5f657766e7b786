//! The bytes the layer sends: events under its own ids, the priming event,
//! and the `retry` hint. One place, so live and replayed events are identical.

use std::io::Write as _;

use bytes::{Bytes, BytesMut};

use crate::sse::{OutgoingEvent, encode_event};
use crate::store::{EventId, StreamId};

/// Appends one event under the layer's id for `(stream, seq)`.
pub(crate) fn encode(
    stream: StreamId,
    seq: u64,
    event_type: Option<&[u8]>,
    data: &[u8],
    out: &mut BytesMut,
) {
    let mut id = [0u8; 64];
    let id = {
        let mut cursor = std::io::Cursor::new(&mut id[..]);
        // 32 hex digits, a dot and at most 20 digits always fit in 64 bytes.
        let _ = write!(cursor, "{}", EventId::new(stream, seq));
        let len = cursor.position() as usize;
        &id[..len]
    };
    let event = OutgoingEvent::new().with_id(id).with_data(data);
    let typed = match event_type {
        Some(event_type) => event.with_event_type(event_type),
        None => event,
    };
    if encode_event(&typed, out).is_err() {
        // Only an event type holding NUL gets here (the parser rejects CR and
        // LF in it, and the id and data are always encodable): drop the type
        // rather than the event.
        tracing::warn!(%stream, seq, "inner event type is not encodable; sent as a plain message");
        let _ = encode_event(&event, out);
    }
}

/// Appends an event without an id: after a store failure under the fail-open
/// policy, an id would promise a resume the store cannot keep.
pub(crate) fn encode_unstored(event_type: Option<&[u8]>, data: &[u8], out: &mut BytesMut) {
    let event = OutgoingEvent::new().with_data(data);
    let typed = match event_type {
        Some(event_type) => event.with_event_type(event_type),
        None => event,
    };
    if encode_event(&typed, out).is_err() {
        let _ = encode_event(&event, out);
    }
}

/// The priming event of a 2025-11-25 response: the client's position (0,
/// before the first event, for a new stream; the resume point for a resume),
/// the reconnection delay, and empty data. It gives the client an id and a
/// `retry` before anything else, so even a response that ends before any
/// event (poll mode) leaves it able to reconnect where it was.
pub(crate) fn priming(stream: StreamId, seq: u64, retry_millis: u64) -> Bytes {
    Bytes::from(format!(
        "id: {}\nretry: {retry_millis}\ndata:\n\n",
        EventId::new(stream, seq)
    ))
}

/// `chunk` with a `retry` field in its first block. Field order within a block
/// does not matter to SSE, so the field goes first.
pub(crate) fn with_retry(retry_millis: u64, chunk: &[u8]) -> Bytes {
    let mut out = BytesMut::with_capacity(chunk.len() + 16);
    out.extend_from_slice(format!("retry: {retry_millis}\n").as_bytes());
    out.extend_from_slice(chunk);
    out.freeze()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sse::{Block, SseLimits, SseParser};

    fn parse(bytes: Bytes) -> Vec<Block> {
        let mut parser = SseParser::new(SseLimits::default());
        parser.feed(bytes);
        std::iter::from_fn(|| parser.next_block().unwrap()).collect()
    }

    #[test]
    fn events_carry_the_layer_id_and_keep_type_and_data() {
        let stream = StreamId::random();
        let mut out = BytesMut::new();
        encode(stream, 7, Some(b"message"), b"line one\nline two", &mut out);
        let Block::Event(event) = &parse(out.freeze())[0] else {
            panic!()
        };
        assert_eq!(event.id.as_deref(), Some(format!("{stream}.7").as_bytes()));
        assert_eq!(event.event_type.as_deref(), Some(&b"message"[..]));
        assert_eq!(event.data.as_deref(), Some(&b"line one\nline two"[..]));
    }

    #[test]
    fn an_unencodable_event_type_is_dropped_not_the_event() {
        let mut out = BytesMut::new();
        encode(StreamId::random(), 1, Some(b"bad\0type"), b"{}", &mut out);
        let Block::Event(event) = &parse(out.freeze())[0] else {
            panic!()
        };
        assert_eq!(event.event_type, None);
        assert_eq!(event.data.as_deref(), Some(&b"{}"[..]));
    }

    #[test]
    fn priming_and_retry_prefix_parse_as_intended() {
        let stream = StreamId::random();
        let Block::Event(priming) = &parse(priming(stream, 0, 1500))[0] else {
            panic!()
        };
        assert_eq!(
            priming.id.as_deref(),
            Some(format!("{stream}.0").as_bytes())
        );
        assert_eq!(
            (priming.retry, priming.data.as_deref()),
            (Some(1500), Some(&b""[..]))
        );

        let mut out = BytesMut::new();
        encode(stream, 1, None, b"x", &mut out);
        let Block::Event(first) = &parse(with_retry(250, &out))[0] else {
            panic!()
        };
        assert_eq!(
            (first.retry, first.data.as_deref()),
            (Some(250), Some(&b"x"[..]))
        );
    }
}
