//! The incremental `text/event-stream` parser: [`SseParser`] and the types it
//! produces.

use std::collections::VecDeque;
use std::mem;

use bytes::{Bytes, BytesMut};

/// The UTF-8 byte order mark, skipped once at the very start of a stream.
const BOM: [u8; 3] = [0xEF, 0xBB, 0xBF];

/// Size limits that keep an [`SseParser`]'s memory bounded whatever the
/// inner service sends.
///
/// Both limits default to 8 MiB ([`SseLimits::DEFAULT_MAX_LINE_BYTES`],
/// [`SseLimits::DEFAULT_MAX_EVENT_BYTES`]), far above any sane JSON-RPC
/// message yet small enough that a runaway stream cannot exhaust memory.
///
/// - The *line* limit bounds one line, not counting its line end. It is
///   enforced as soon as the buffered part of an unfinished line exceeds it,
///   so a stream that never sends a line end fails early instead of growing.
///   Exceeding it yields [`SseError::LineTooLong`].
/// - The *event* limit bounds one block: the length of its data (the `data`
///   values joined by LF) plus its event type plus its id. While a block has
///   only comments (a keep-alive being assembled) the comment lines count
///   instead. Exceeding it yields [`SseError::EventTooLarge`].
///
/// ```
/// use mcp_resume::sse::SseLimits;
///
/// let limits = SseLimits::new().max_line_bytes(64 * 1024).max_event_bytes(1 << 20);
/// assert_eq!(limits.line_limit(), 64 * 1024);
/// assert_eq!(limits.event_limit(), 1 << 20);
/// assert_eq!(SseLimits::default(), SseLimits::new());
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SseLimits {
    line: usize,
    event: usize,
}

impl SseLimits {
    /// Default for [`SseLimits::max_line_bytes`]: 8 MiB.
    pub const DEFAULT_MAX_LINE_BYTES: usize = 8 * 1024 * 1024;
    /// Default for [`SseLimits::max_event_bytes`]: 8 MiB.
    pub const DEFAULT_MAX_EVENT_BYTES: usize = 8 * 1024 * 1024;

    /// The default limits: 8 MiB per line and 8 MiB per event.
    pub const fn new() -> Self {
        Self {
            line: Self::DEFAULT_MAX_LINE_BYTES,
            event: Self::DEFAULT_MAX_EVENT_BYTES,
        }
    }

    /// Sets the longest accepted line, in bytes, not counting its line end.
    #[must_use]
    pub const fn max_line_bytes(mut self, n: usize) -> Self {
        self.line = n;
        self
    }

    /// Sets the largest accepted event, in bytes: data (lines joined by LF)
    /// plus event type plus id.
    #[must_use]
    pub const fn max_event_bytes(mut self, n: usize) -> Self {
        self.event = n;
        self
    }

    /// The longest accepted line, in bytes (see [`SseLimits::max_line_bytes`]).
    pub const fn line_limit(&self) -> usize {
        self.line
    }

    /// The largest accepted event, in bytes (see [`SseLimits::max_event_bytes`]).
    pub const fn event_limit(&self) -> usize {
        self.event
    }
}

impl Default for SseLimits {
    fn default() -> Self {
        Self::new()
    }
}

/// One event: the fields of a block that set at least one of them.
///
/// Values are the raw bytes from the wire. Unlike a browser, the parser keeps
/// `id` and `retry` per block (a browser folds them into stream-wide state)
/// and does not substitute `message` for a missing event type, so a proxy can
/// re-encode exactly what the inner service meant. A block whose only field
/// is an `id` or a `retry` (a priming event without data, say) is still an
/// event here, although a browser would not fire anything for it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SseEvent {
    /// Value of the block's last `event` field; `None` if it had none.
    /// `event:` alone gives `Some` of an empty value.
    pub event_type: Option<Bytes>,
    /// The data buffer: the values of the block's `data` fields joined by LF
    /// (the WHATWG buffer without its final LF). `None` if the block had no
    /// `data` field; `data:` alone gives `Some` of an empty value.
    pub data: Option<Bytes>,
    /// Value of the block's last valid `id` field (one whose value contains
    /// no NUL); `None` if it had none. `id:` alone gives `Some` of an empty
    /// value.
    pub id: Option<Bytes>,
    /// Value of the block's last `retry` field that was one or more ASCII
    /// digits and fits in a `u64`; other `retry` fields are ignored.
    pub retry: Option<u64>,
}

/// What [`SseParser::next_block`] yields for one finished block.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Block {
    /// A block that set at least one of `data`, `event`, `id` or `retry`.
    /// Comment lines in such a block are dropped.
    Event(SseEvent),
    /// A block with comment lines and no event fields: a keep-alive. Holds
    /// bytes ready to forward as they are: the comment lines, each ended by
    /// LF, then the empty line (for example `b": ping\n\n"`). Any unknown or
    /// ignored field lines of the block are left out. When the block came in
    /// one chunk with LF line ends this is a slice of that chunk, not a copy.
    Comment(Bytes),
}

/// Why an [`SseParser`] gave up. The parser is then failed for good.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum SseError {
    /// A line grew beyond [`SseLimits::line_limit`] bytes before its line
    /// end arrived.
    #[error(
        "SSE line exceeds the line limit of {limit} bytes; \
         raise it with `SseLimits::max_line_bytes`"
    )]
    LineTooLong {
        /// The limit in force.
        limit: usize,
    },
    /// A block's data, event type and id together grew beyond
    /// [`SseLimits::event_limit`] bytes.
    #[error(
        "SSE event exceeds the event limit of {limit} bytes (data, event type and id together); \
         raise it with `SseLimits::max_event_bytes`"
    )]
    EventTooLarge {
        /// The limit in force.
        limit: usize,
    },
}

/// An incremental, zero-copy parser for a `text/event-stream` body.
///
/// It implements the WHATWG "event stream interpretation" on bytes: one
/// leading byte order mark is skipped, lines end in CRLF, LF or a lone CR
/// (also when the CR and the LF arrive in different chunks), an empty line
/// ends a block, lines starting with `:` are comments, other lines are
/// `field:value` with one leading space of the value removed, and unknown
/// fields are ignored. Input is not checked for UTF-8: bytes are passed
/// through unchanged.
///
/// Feed chunks with [`feed`](SseParser::feed) split anywhere, then call
/// [`next_block`](SseParser::next_block) until it returns `Ok(None)`. Values
/// that lie within one fed chunk are returned as slices of it, not copies.
///
/// ```
/// use bytes::Bytes;
/// use mcp_resume::sse::{Block, SseLimits, SseParser};
///
/// let mut parser = SseParser::new(SseLimits::default());
/// parser.feed(Bytes::from_static(b"data: hel"));
/// assert_eq!(parser.next_block(), Ok(None));
/// parser.feed(Bytes::from_static(b"lo\r\n\r\n"));
/// let Some(Block::Event(event)) = parser.next_block()? else { panic!("expected an event") };
/// assert_eq!(event.data.as_deref(), Some(&b"hello"[..]));
/// assert_eq!(parser.next_block(), Ok(None));
/// # Ok::<(), mcp_resume::sse::SseError>(())
/// ```
#[derive(Debug)]
pub struct SseParser {
    limits: SseLimits,
    /// Fed chunks after `cur`, not yet looked at.
    queue: VecDeque<Bytes>,
    /// Total length of `queue`.
    queued: usize,
    /// The chunk being parsed; `pos` is the first unparsed byte.
    cur: Bytes,
    pos: usize,
    /// The start of a line whose end has not arrived yet.
    line: BytesMut,
    bom: Bom,
    /// The last line ended in a CR that was the last byte of its chunk: an LF
    /// at the start of the next chunk belongs to that line end.
    skip_lf: bool,
    block: BlockInProgress,
    failed: Option<SseError>,
}

/// Progress of the byte order mark check at the start of the stream.
#[derive(Clone, Copy, Debug)]
enum Bom {
    /// This many leading bytes matched the BOM so far.
    Pending(u8),
    Done,
}

impl SseParser {
    /// A parser with the given limits, expecting the start of a stream.
    pub fn new(limits: SseLimits) -> Self {
        Self {
            limits,
            queue: VecDeque::new(),
            queued: 0,
            cur: Bytes::new(),
            pos: 0,
            line: BytesMut::new(),
            bom: Bom::Pending(0),
            skip_lf: false,
            block: BlockInProgress::default(),
            failed: None,
        }
    }

    /// The limits this parser enforces.
    pub fn limits(&self) -> SseLimits {
        self.limits
    }

    /// Queues a chunk of input. Chunks may be split anywhere: mid-line,
    /// between a CR and its LF, inside the byte order mark, down to single
    /// bytes. Nothing is parsed until [`next_block`](SseParser::next_block).
    /// Empty chunks, and any input after the parser failed, are dropped.
    pub fn feed(&mut self, chunk: Bytes) {
        if chunk.is_empty() || self.failed.is_some() {
            return;
        }
        self.queued += chunk.len();
        self.queue.push_back(chunk);
    }

    /// The former name of [`next_block`](Self::next_block).
    #[deprecated(since = "0.2.0", note = "renamed to `next_block`")]
    pub fn next_frame(&mut self) -> Result<Option<Block>, SseError> {
        self.next_block()
    }

    /// Parses queued input up to the next finished block and returns it,
    /// or `Ok(None)` once all queued input is consumed without
    /// finishing one (feed more and call again).
    ///
    /// Blocks that set no event field and have no comment (only unknown or
    /// ignored fields) yield nothing, as do repeated empty lines.
    ///
    /// # Errors
    ///
    /// [`SseError::LineTooLong`] or [`SseError::EventTooLarge`] when input
    /// breaks the [`SseLimits`]. The parser then drops its buffers and
    /// returns the same error from every later call.
    pub fn next_block(&mut self) -> Result<Option<Block>, SseError> {
        if let Some(err) = &self.failed {
            return Err(err.clone());
        }
        let result = self.step();
        if let Err(err) = &result {
            self.fail(err.clone());
        }
        result
    }

    /// Whether input consumed by [`next_block`](SseParser::next_block) belongs
    /// to a block that is not finished: part of a line, or lines not yet
    /// followed by an empty line. Ask it after `next_block` returned
    /// `Ok(None)` at the end of the stream: an unfinished block is never
    /// dispatched (as in a browser), and this tells it was cut off.
    pub fn has_partial_block(&self) -> bool {
        self.block.started || !self.line.is_empty() || matches!(self.bom, Bom::Pending(n) if n > 0)
    }

    /// Bytes the parser holds: queued input not yet parsed, plus the
    /// unfinished line and the unfinished block. Once
    /// [`next_block`](SseParser::next_block) has returned `Ok(None)`, this is
    /// at most about [`SseLimits::line_limit`] + [`SseLimits::event_limit`].
    pub fn buffered_len(&self) -> usize {
        let bom = match self.bom {
            Bom::Pending(n) => usize::from(n),
            Bom::Done => 0,
        };
        (self.cur.len() - self.pos) + self.queued + self.line.len() + self.block.held_len() + bom
    }

    fn fail(&mut self, err: SseError) {
        self.queue = VecDeque::new();
        self.queued = 0;
        self.cur = Bytes::new();
        self.pos = 0;
        self.line = BytesMut::new();
        self.block = BlockInProgress::default();
        self.failed = Some(err);
    }

    /// Makes `cur` the next queued chunk. Returns false when there is none.
    fn next_chunk(&mut self) -> bool {
        // Values still pointing into the finished chunk are copied out, so
        // that an unfinished block never pins a whole old chunk in memory.
        if !self.cur.is_empty() {
            self.block.detach(&self.cur);
        }
        self.pos = 0;
        match self.queue.pop_front() {
            Some(chunk) => {
                self.queued -= chunk.len();
                self.cur = chunk;
                true
            }
            None => {
                self.cur = Bytes::new();
                false
            }
        }
    }

    fn step(&mut self) -> Result<Option<Block>, SseError> {
        loop {
            if self.pos >= self.cur.len() && !self.next_chunk() {
                return Ok(None);
            }
            if let Bom::Pending(matched) = self.bom {
                self.check_bom(matched);
                continue;
            }
            if self.skip_lf {
                self.skip_lf = false;
                if self.cur[self.pos] == b'\n' {
                    self.pos += 1;
                    continue;
                }
            }
            let start = self.pos;
            let rest = &self.cur[start..];
            let Some(i) = rest.iter().position(|&b| b == b'\n' || b == b'\r') else {
                if self.line.len() + rest.len() > self.limits.line {
                    return Err(SseError::LineTooLong {
                        limit: self.limits.line,
                    });
                }
                self.line.extend_from_slice(rest);
                self.pos = self.cur.len();
                continue;
            };
            let end = start + i;
            let lf_only = rest[i] == b'\n';
            let mut next = end + 1;
            if !lf_only {
                match self.cur.get(next) {
                    Some(b'\n') => next += 1,
                    Some(_) => {}
                    None => self.skip_lf = true,
                }
            }
            self.pos = next;
            if self.line.len() + i > self.limits.line {
                return Err(SseError::LineTooLong {
                    limit: self.limits.line,
                });
            }
            let block = if self.line.is_empty() {
                let line = LineRef {
                    src: &self.cur,
                    start,
                    end,
                    in_cur: true,
                    lf_next: lf_only.then_some(next),
                };
                self.block.line(&self.cur, line, &self.limits)?
            } else {
                self.line.extend_from_slice(&self.cur[start..end]);
                let owned = self.line.split().freeze();
                let line = LineRef {
                    src: &owned,
                    start: 0,
                    end: owned.len(),
                    in_cur: false,
                    lf_next: None,
                };
                self.block.line(&self.cur, line, &self.limits)?
            };
            if block.is_some() {
                return Ok(block);
            }
        }
    }

    /// Consumes leading bytes of `cur` that continue the byte order mark.
    /// On a mismatch, the bytes that did match are the start of the first
    /// line. Called with at least one unparsed byte in `cur`.
    fn check_bom(&mut self, mut matched: u8) {
        while let Some(&b) = self.cur.get(self.pos) {
            if b != BOM[usize::from(matched)] {
                self.line.extend_from_slice(&BOM[..usize::from(matched)]);
                self.bom = Bom::Done;
                return;
            }
            matched += 1;
            self.pos += 1;
            if usize::from(matched) == BOM.len() {
                self.bom = Bom::Done;
                return;
            }
        }
        self.bom = Bom::Pending(matched);
    }
}

/// One complete line, without its line end: `src[start..end]`.
struct LineRef<'a> {
    src: &'a Bytes,
    start: usize,
    end: usize,
    /// `src` is the current chunk.
    in_cur: bool,
    /// The line is in the current chunk and ended by a lone LF; this is the
    /// offset just past it.
    lf_next: Option<usize>,
}

impl LineRef<'_> {
    fn bytes(&self) -> &[u8] {
        &self.src[self.start..self.end]
    }
}

/// A value, and whether it is a slice of the current chunk.
#[derive(Debug)]
struct Field {
    bytes: Bytes,
    in_cur: bool,
}

impl Field {
    fn detach(&mut self) {
        if self.in_cur {
            self.bytes = Bytes::copy_from_slice(&self.bytes);
            self.in_cur = false;
        }
    }
}

/// The data buffer of a block.
#[derive(Debug, Default)]
enum Data {
    #[default]
    None,
    /// One `data` line: its value, possibly a slice of the chunk.
    Single(Field),
    /// Several `data` lines, joined by LF.
    Multi(BytesMut),
}

/// Where the comment lines of a block without event fields are.
#[derive(Clone, Copy, Debug, Default)]
enum Comments {
    #[default]
    None,
    /// `cur[start..end]`: contiguous comment lines, each ended by a lone LF.
    InCur { start: usize, end: usize },
    /// `BlockInProgress::comment_buf`, normalised to LF line ends.
    Owned,
}

/// The block being assembled.
#[derive(Debug, Default)]
struct BlockInProgress {
    /// At least one non-empty line of this block was read.
    started: bool,
    data: Data,
    event_type: Option<Field>,
    id: Option<Field>,
    retry: Option<u64>,
    comments: Comments,
    comment_buf: BytesMut,
    /// Length of the comment lines, LF line ends included.
    comment_len: usize,
}

impl BlockInProgress {
    fn data_len(&self) -> usize {
        match &self.data {
            Data::None => 0,
            Data::Single(field) => field.bytes.len(),
            Data::Multi(buf) => buf.len(),
        }
    }

    fn has_event(&self) -> bool {
        !matches!(self.data, Data::None)
            || self.event_type.is_some()
            || self.id.is_some()
            || self.retry.is_some()
    }

    fn held_len(&self) -> usize {
        let len = |f: &Option<Field>| f.as_ref().map_or(0, |f| f.bytes.len());
        self.data_len() + len(&self.event_type) + len(&self.id) + self.comment_len
    }

    /// Processes one complete line. `cur` is the current chunk.
    fn line(
        &mut self,
        cur: &Bytes,
        line: LineRef<'_>,
        limits: &SseLimits,
    ) -> Result<Option<Block>, SseError> {
        let bytes = line.bytes();
        let Some(&first) = bytes.first() else {
            return Ok(self.dispatch(cur, &line));
        };
        self.started = true;
        if first == b':' {
            self.comment(cur, &line, limits)?;
            return Ok(None);
        }
        let (name, value_start) = match bytes.iter().position(|&b| b == b':') {
            Some(colon) => {
                let mut value_start = line.start + colon + 1;
                if value_start < line.end && line.src[value_start] == b' ' {
                    value_start += 1;
                }
                (&bytes[..colon], value_start)
            }
            None => (bytes, line.end),
        };
        let value = &line.src[value_start..line.end];
        let field = || Field {
            bytes: line.src.slice(value_start..line.end),
            in_cur: line.in_cur,
        };
        let len = |f: &Option<Field>| f.as_ref().map_or(0, |f| f.bytes.len());
        match name {
            b"data" => {
                let data_len = match self.data {
                    Data::None => value.len(),
                    _ => self.data_len() + 1 + value.len(),
                };
                check_event(data_len + len(&self.event_type) + len(&self.id), limits)?;
                self.data = match mem::take(&mut self.data) {
                    Data::None => Data::Single(field()),
                    Data::Single(single) => {
                        let mut buf = BytesMut::with_capacity(data_len);
                        buf.extend_from_slice(&single.bytes);
                        buf.extend_from_slice(b"\n");
                        buf.extend_from_slice(value);
                        Data::Multi(buf)
                    }
                    Data::Multi(mut buf) => {
                        buf.extend_from_slice(b"\n");
                        buf.extend_from_slice(value);
                        Data::Multi(buf)
                    }
                };
            }
            b"event" => {
                check_event(self.data_len() + value.len() + len(&self.id), limits)?;
                self.event_type = Some(field());
            }
            b"id" => {
                if value.contains(&0) {
                    return Ok(None);
                }
                check_event(
                    self.data_len() + len(&self.event_type) + value.len(),
                    limits,
                )?;
                self.id = Some(field());
            }
            b"retry" => match parse_retry(value) {
                Some(retry) => self.retry = Some(retry),
                None => return Ok(None),
            },
            _ => return Ok(None),
        }
        // The block is an event now: its comments are dropped.
        self.clear_comments();
        Ok(None)
    }

    fn comment(
        &mut self,
        cur: &Bytes,
        line: &LineRef<'_>,
        limits: &SseLimits,
    ) -> Result<(), SseError> {
        if self.has_event() {
            return Ok(());
        }
        let bytes = line.bytes();
        let comment_len = self.comment_len + bytes.len() + 1;
        check_event(comment_len, limits)?;
        self.comment_len = comment_len;
        self.comments = match (self.comments, line.lf_next) {
            (Comments::None, Some(next)) => Comments::InCur {
                start: line.start,
                end: next,
            },
            (Comments::InCur { start, end }, Some(next)) if end == line.start => {
                Comments::InCur { start, end: next }
            }
            (comments, _) => {
                if let Comments::InCur { start, end } = comments {
                    self.comment_buf.extend_from_slice(&cur[start..end]);
                }
                self.comment_buf.extend_from_slice(bytes);
                self.comment_buf.extend_from_slice(b"\n");
                Comments::Owned
            }
        };
        Ok(())
    }

    fn clear_comments(&mut self) {
        self.comments = Comments::None;
        self.comment_buf.clear();
        self.comment_len = 0;
    }

    /// Ends the block at an empty line, which is always in `cur`.
    fn dispatch(&mut self, cur: &Bytes, blank: &LineRef<'_>) -> Option<Block> {
        self.started = false;
        let data = match mem::take(&mut self.data) {
            Data::None => None,
            Data::Single(field) => Some(field.bytes),
            Data::Multi(buf) => Some(buf.freeze()),
        };
        let event = SseEvent {
            event_type: self.event_type.take().map(|f| f.bytes),
            data,
            id: self.id.take().map(|f| f.bytes),
            retry: self.retry.take(),
        };
        if event.data.is_some()
            || event.event_type.is_some()
            || event.id.is_some()
            || event.retry.is_some()
        {
            self.clear_comments();
            return Some(Block::Event(event));
        }
        self.comment_len = 0;
        match mem::take(&mut self.comments) {
            Comments::None => None,
            Comments::InCur { start, end } => match blank.lf_next {
                Some(next) if blank.in_cur && blank.start == end => {
                    Some(Block::Comment(cur.slice(start..next)))
                }
                _ => {
                    let mut buf = BytesMut::with_capacity(end - start + 1);
                    buf.extend_from_slice(&cur[start..end]);
                    buf.extend_from_slice(b"\n");
                    Some(Block::Comment(buf.freeze()))
                }
            },
            Comments::Owned => {
                self.comment_buf.extend_from_slice(b"\n");
                Some(Block::Comment(self.comment_buf.split().freeze()))
            }
        }
    }

    /// Copies out whatever still points into `cur`, which is being dropped.
    fn detach(&mut self, cur: &Bytes) {
        if let Data::Single(field) = &mut self.data {
            field.detach();
        }
        if let Some(field) = &mut self.event_type {
            field.detach();
        }
        if let Some(field) = &mut self.id {
            field.detach();
        }
        if let Comments::InCur { start, end } = self.comments {
            self.comment_buf.extend_from_slice(&cur[start..end]);
            self.comments = Comments::Owned;
        }
    }
}

fn check_event(len: usize, limits: &SseLimits) -> Result<(), SseError> {
    if len > limits.event {
        Err(SseError::EventTooLarge {
            limit: limits.event,
        })
    } else {
        Ok(())
    }
}

/// A `retry` value: one or more ASCII digits that fit in a `u64`.
fn parse_retry(value: &[u8]) -> Option<u64> {
    if value.is_empty() {
        return None;
    }
    value.iter().try_fold(0u64, |acc, &b| {
        if b.is_ascii_digit() {
            acc.checked_mul(10)?.checked_add(u64::from(b - b'0'))
        } else {
            None
        }
    })
}
