//! The encoder: [`encode_event`] and [`encode_comment`].

use bytes::BytesMut;

use super::parser::SseEvent;

/// The fields of an event to encode, borrowed.
///
/// Build one field by field, or borrow a parsed [`SseEvent`] with
/// [`From`] and replace what should change:
///
/// ```
/// use bytes::BytesMut;
/// use mcp_resume::sse::{encode_event, OutgoingEvent};
///
/// let event = OutgoingEvent::new().with_id(b"7").with_data(b"{}").with_retry(3000);
/// let mut out = BytesMut::new();
/// encode_event(&event, &mut out)?;
/// assert_eq!(&out[..], b"id: 7\nretry: 3000\ndata: {}\n\n");
/// # Ok::<(), mcp_resume::sse::EncodeError>(())
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct OutgoingEvent<'a> {
    /// The `id` field; must not contain CR, LF or NUL.
    pub id: Option<&'a [u8]>,
    /// The `event` field; must not contain CR, LF or NUL.
    pub event_type: Option<&'a [u8]>,
    /// The data, written as one `data` line per line: it is split at CRLF,
    /// LF and lone CR. `Some` of an empty value writes one empty `data` line.
    pub data: Option<&'a [u8]>,
    /// The `retry` field, in milliseconds.
    pub retry: Option<u64>,
}

impl<'a> OutgoingEvent<'a> {
    /// An event with no fields (it encodes to nothing).
    pub const fn new() -> Self {
        Self {
            id: None,
            event_type: None,
            data: None,
            retry: None,
        }
    }

    /// Sets the id.
    #[must_use]
    pub const fn with_id(mut self, id: &'a [u8]) -> Self {
        self.id = Some(id);
        self
    }

    /// Sets the event type.
    #[must_use]
    pub const fn with_event_type(mut self, event_type: &'a [u8]) -> Self {
        self.event_type = Some(event_type);
        self
    }

    /// Sets the data.
    #[must_use]
    pub const fn with_data(mut self, data: &'a [u8]) -> Self {
        self.data = Some(data);
        self
    }

    /// Sets the reconnection time, in milliseconds.
    #[must_use]
    pub const fn with_retry(mut self, retry: u64) -> Self {
        self.retry = Some(retry);
        self
    }

    /// Whether no field is set.
    pub const fn is_empty(&self) -> bool {
        self.id.is_none()
            && self.event_type.is_none()
            && self.data.is_none()
            && self.retry.is_none()
    }
}

impl<'a> From<&'a SseEvent> for OutgoingEvent<'a> {
    fn from(event: &'a SseEvent) -> Self {
        Self {
            id: event.id.as_deref(),
            event_type: event.event_type.as_deref(),
            data: event.data.as_deref(),
            retry: event.retry,
        }
    }
}

/// Why a value cannot be encoded.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum EncodeError {
    /// The value contains CR, LF or NUL, which the field cannot carry (a
    /// line end would split it; a browser ignores an `id` with NUL).
    #[error("cannot encode the SSE {field}: it contains a CR, LF or NUL byte")]
    ForbiddenByte {
        /// Which value: `"id"`, `"event"` or `"comment"`.
        field: &'static str,
    },
}

/// Appends one event to `out`: its `id`, `event`, `retry` and `data` lines,
/// in that order, then the empty line that ends it.
///
/// Each field is written `name: value` (one space, which the parser removes,
/// so values that start with a space survive), or `name:` when the value is
/// empty. Data gives one `data` line per line; `None` gives no `data` line,
/// and `Some` of an empty value gives `data:`. An event with no fields at all
/// writes nothing, since an empty block is not an event.
///
/// For an [`SseEvent`] whose id and event type have no CR, LF or NUL and whose
/// data has no CR, [`SseParser`](super::SseParser) gives back exactly that
/// event. CR in data becomes a line end, so it comes back as LF.
///
/// # Errors
///
/// [`EncodeError::ForbiddenByte`] if the id or the event type contains CR,
/// LF or NUL. `out` is then left unchanged.
pub fn encode_event(event: &OutgoingEvent<'_>, out: &mut BytesMut) -> Result<(), EncodeError> {
    if let Some(id) = event.id {
        check(id, "id")?;
    }
    if let Some(event_type) = event.event_type {
        check(event_type, "event")?;
    }
    if event.is_empty() {
        return Ok(());
    }
    let len = |v: Option<&[u8]>, name: usize| v.map_or(0, |v| name + v.len());
    out.reserve(
        len(event.id, 5)
            + len(event.event_type, 8)
            + event.retry.map_or(0, |_| 28)
            + len(event.data, 8)
            + 1,
    );
    if let Some(id) = event.id {
        put_field(out, b"id", id);
    }
    if let Some(event_type) = event.event_type {
        put_field(out, b"event", event_type);
    }
    if let Some(retry) = event.retry {
        let mut digits = [0u8; 20];
        let mut start = digits.len();
        let mut n = retry;
        loop {
            start -= 1;
            // `n % 10` is below 10, so the cast cannot truncate.
            digits[start] = b'0' + (n % 10) as u8;
            n /= 10;
            if n == 0 {
                break;
            }
        }
        put_field(out, b"retry", &digits[start..]);
    }
    if let Some(mut data) = event.data {
        while let Some(i) = data.iter().position(|&b| b == b'\n' || b == b'\r') {
            put_field(out, b"data", &data[..i]);
            let skip = if data[i] == b'\r' && data.get(i + 1) == Some(&b'\n') {
                2
            } else {
                1
            };
            data = &data[i + skip..];
        }
        put_field(out, b"data", data);
    }
    out.extend_from_slice(b"\n");
    Ok(())
}

/// Appends a comment-only block to `out`: `: text` and the empty line, or
/// `:` and the empty line when `text` is empty. Parsed back, it is a
/// [`Block::Comment`](super::Block::Comment) with exactly these bytes.
///
/// ```
/// use bytes::BytesMut;
/// use mcp_resume::sse::encode_comment;
///
/// let mut out = BytesMut::new();
/// encode_comment(b"keep-alive", &mut out)?;
/// assert_eq!(&out[..], b": keep-alive\n\n");
/// # Ok::<(), mcp_resume::sse::EncodeError>(())
/// ```
///
/// # Errors
///
/// [`EncodeError::ForbiddenByte`] if `text` contains CR, LF or NUL. `out` is
/// then left unchanged.
pub fn encode_comment(text: &[u8], out: &mut BytesMut) -> Result<(), EncodeError> {
    check(text, "comment")?;
    out.reserve(text.len() + 4);
    // A comment is a field line with an empty name, then the blank line.
    put_field(out, b"", text);
    out.extend_from_slice(b"\n");
    Ok(())
}

fn check(value: &[u8], field: &'static str) -> Result<(), EncodeError> {
    if value.iter().any(|&b| matches!(b, b'\r' | b'\n' | 0)) {
        Err(EncodeError::ForbiddenByte { field })
    } else {
        Ok(())
    }
}

fn put_field(out: &mut BytesMut, name: &[u8], value: &[u8]) {
    out.extend_from_slice(name);
    if value.is_empty() {
        out.extend_from_slice(b":\n");
    } else {
        out.extend_from_slice(b": ");
        out.extend_from_slice(value);
        out.extend_from_slice(b"\n");
    }
}
