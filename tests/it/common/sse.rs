//! A raw HTTP/1.1 client (hyper 1, one connection per request) that reports a
//! response's status and headers and reads its body incrementally, as raw
//! bytes and as parsed SSE items.
//!
//! The SSE parser here is written independently of `mcp_resume::sse` on
//! purpose: the tests check the layer's output with their own reading of the
//! WHATWG rules (lines end in CRLF, LF or CR; `:` starts a comment; one
//! leading space of a value is removed; `data` lines are joined by LF; `id`
//! with a NUL is ignored; `retry` counts only if all digits), keeping `id`
//! and `retry` per block as a proxy needs.

use std::collections::VecDeque;
use std::net::SocketAddr;

use bytes::Bytes;
use http::header::{HeaderMap, HeaderName, HeaderValue};
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::task::JoinHandle;

use super::guard;

/// One SSE event block, fields as the block set them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Ev {
    /// The block's last valid `id` field.
    pub id: Option<String>,
    /// The block's last `event` field.
    pub event: Option<String>,
    /// The `data` lines joined by LF (`None` if there was no `data` field).
    pub data: Option<String>,
    /// The block's last valid `retry` field.
    pub retry: Option<u64>,
}

impl Ev {
    /// The id, which must be present.
    pub fn id(&self) -> &str {
        self.id
            .as_deref()
            .unwrap_or_else(|| panic!("event without id: {self:?}"))
    }

    /// The data, or "" when absent.
    pub fn data(&self) -> &str {
        self.data.as_deref().unwrap_or("")
    }

    /// Sequence part of a layer id (`<stream>.<seq>`).
    pub fn seq(&self) -> u64 {
        super::layer_id(self.id()).1
    }

    /// Stream part of a layer id.
    pub fn stream(&self) -> String {
        super::layer_id(self.id()).0
    }

    /// Whether this is a priming-like block (no data or empty data).
    pub fn is_empty_data(&self) -> bool {
        self.data.as_deref().is_none_or(str::is_empty)
    }
}

/// One finished SSE block.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Item {
    /// A block with at least one event field.
    Event(Ev),
    /// A comment-only block: its comment lines (with their leading `:`), joined by LF.
    Comment(String),
}

impl Item {
    /// The event, if this is one.
    pub fn event(&self) -> Option<&Ev> {
        match self {
            Item::Event(ev) => Some(ev),
            Item::Comment(_) => None,
        }
    }
}

/// An incremental SSE parser (independent of the crate's).
#[derive(Default, Debug)]
pub struct Parser {
    line: Vec<u8>,
    after_cr: bool,
    bom_checked: bool,
    bom_buf: Vec<u8>,
    block: Block,
}

#[derive(Default, Debug)]
struct Block {
    ev: Ev,
    data: Option<Vec<u8>>,
    has_field: bool,
    comments: Vec<String>,
}

impl Parser {
    /// A parser at the start of a stream.
    pub fn new() -> Self {
        Self::default()
    }

    /// Feeds bytes (split anywhere); returns the blocks they finished.
    pub fn feed(&mut self, bytes: &[u8]) -> Vec<Item> {
        const BOM: &[u8] = b"\xEF\xBB\xBF";
        let mut out = Vec::new();
        let held;
        let mut bytes = bytes;
        if !self.bom_checked {
            // Hold the first bytes until they are known to be (or not be) a BOM.
            self.bom_buf.extend_from_slice(bytes);
            let n = self.bom_buf.len().min(BOM.len());
            if self.bom_buf[..n] != BOM[..n] {
                self.bom_checked = true;
                held = std::mem::take(&mut self.bom_buf);
                bytes = &held;
            } else if self.bom_buf.len() >= BOM.len() {
                self.bom_checked = true;
                held = self.bom_buf.split_off(BOM.len());
                bytes = &held;
            } else {
                return out;
            }
        }
        for &b in bytes {
            if self.after_cr {
                self.after_cr = false;
                if b == b'\n' {
                    continue;
                }
            }
            match b {
                b'\n' => self.end_line(&mut out),
                b'\r' => {
                    self.after_cr = true;
                    self.end_line(&mut out);
                }
                _ => self.line.push(b),
            }
        }
        out
    }

    /// Whether bytes of an unfinished block are held (the stream was cut
    /// inside a block, if it ended here).
    pub fn has_partial(&self) -> bool {
        !self.line.is_empty()
            || self.block.has_field
            || !self.block.comments.is_empty()
            || (!self.bom_checked && !self.bom_buf.is_empty())
    }

    fn end_line(&mut self, out: &mut Vec<Item>) {
        let line = std::mem::take(&mut self.line);
        if line.is_empty() {
            let block = std::mem::take(&mut self.block);
            if block.has_field {
                let mut ev = block.ev;
                ev.data = block
                    .data
                    .map(|d| String::from_utf8(d).expect("test data is UTF-8"));
                out.push(Item::Event(ev));
            } else if !block.comments.is_empty() {
                out.push(Item::Comment(block.comments.join("\n")));
            }
            return;
        }
        if line[0] == b':' {
            self.block
                .comments
                .push(String::from_utf8_lossy(&line).into_owned());
            return;
        }
        let (name, value) = match line.iter().position(|&b| b == b':') {
            Some(i) => {
                let v = &line[i + 1..];
                (&line[..i], v.strip_prefix(b" ").unwrap_or(v))
            }
            None => (&line[..], &b""[..]),
        };
        let text = || String::from_utf8_lossy(value).into_owned();
        match name {
            b"data" => {
                match &mut self.block.data {
                    Some(data) => {
                        data.push(b'\n');
                        data.extend_from_slice(value);
                    }
                    None => self.block.data = Some(value.to_vec()),
                }
                self.block.has_field = true;
            }
            b"event" => {
                self.block.ev.event = Some(text());
                self.block.has_field = true;
            }
            b"id" if !value.contains(&0) => {
                self.block.ev.id = Some(text());
                self.block.has_field = true;
            }
            b"retry" if !value.is_empty() && value.iter().all(u8::is_ascii_digit) => {
                if let Ok(ms) = text().parse() {
                    self.block.ev.retry = Some(ms);
                    self.block.has_field = true;
                }
            }
            _ => {}
        }
    }
}

/// Parses a whole SSE body.
pub fn parse_all(bytes: &[u8]) -> Vec<Item> {
    Parser::new().feed(bytes)
}

/// The events of a whole SSE body (comments left out).
pub fn parse_events(bytes: &[u8]) -> Vec<Ev> {
    parse_all(bytes)
        .into_iter()
        .filter_map(|item| match item {
            Item::Event(ev) => Some(ev),
            Item::Comment(_) => None,
        })
        .collect()
}

/// How a response body ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum End {
    /// The body ended properly (last chunk received).
    Clean,
    /// The body failed: the connection was cut or reset.
    Error(String),
}

/// A request to send.
#[derive(Clone, Debug)]
pub struct Req {
    method: Method,
    path: String,
    headers: Vec<(HeaderName, HeaderValue)>,
    body: Bytes,
}

impl Req {
    /// A request with `method` to `path`.
    pub fn new(method: Method, path: &str) -> Self {
        Self {
            method,
            path: path.to_string(),
            headers: Vec::new(),
            body: Bytes::new(),
        }
    }

    /// GET `path` (accepting `text/event-stream`).
    pub fn get(path: &str) -> Self {
        Self::new(Method::GET, path).header("accept", "text/event-stream")
    }

    /// POST a JSON `body` to `path` (accepting JSON and SSE).
    pub fn post(path: &str, body: &str) -> Self {
        let mut req = Self::new(Method::POST, path)
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream");
        req.body = Bytes::copy_from_slice(body.as_bytes());
        req
    }

    /// DELETE `path`.
    pub fn delete(path: &str) -> Self {
        Self::new(Method::DELETE, path)
    }

    /// Adds a header (value as text).
    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((
            HeaderName::from_bytes(name.as_bytes()).expect("header name"),
            HeaderValue::from_str(value).expect("header value"),
        ));
        self
    }

    /// Adds a header whose value is arbitrary bytes.
    pub fn header_bytes(mut self, name: &str, value: &[u8]) -> Self {
        self.headers.push((
            HeaderName::from_bytes(name.as_bytes()).expect("header name"),
            HeaderValue::from_bytes(value).expect("header value bytes"),
        ));
        self
    }

    /// `MCP-Protocol-Version`.
    pub fn version(self, version: &str) -> Self {
        self.header("mcp-protocol-version", version)
    }

    /// `Mcp-Session-Id`.
    pub fn session(self, session: &str) -> Self {
        self.header("mcp-session-id", session)
    }

    /// `Last-Event-ID`.
    pub fn last_event_id(self, id: &str) -> Self {
        self.header("last-event-id", id)
    }

    /// Sends the request on a new connection to `addr`; panics on failure.
    pub async fn send(&self, addr: SocketAddr) -> Resp {
        match guard("a response", self.try_send(addr)).await {
            Ok(resp) => resp,
            Err(err) => panic!("{} {} failed: {err}", self.method, self.path),
        }
    }

    /// Sends the request on a new connection to `addr`.
    pub async fn try_send(&self, addr: SocketAddr) -> Result<Resp, String> {
        let tcp = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
        let _ = tcp.set_nodelay(true);
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
            .await
            .map_err(|e| e.to_string())?;
        let conn = tokio::spawn(async move {
            let _ = conn.await;
        });
        let mut builder = Request::builder()
            .method(self.method.clone())
            .uri(&self.path)
            .header("host", addr.to_string());
        for (name, value) in &self.headers {
            builder = builder.header(name, value);
        }
        let request = builder.body(Full::new(self.body.clone())).expect("request");
        let response = match sender.send_request(request).await {
            Ok(response) => response,
            Err(err) => {
                conn.abort();
                return Err(err.to_string());
            }
        };
        let (parts, body) = response.into_parts();
        Ok(Resp {
            status: parts.status,
            headers: parts.headers,
            body: Some(body),
            parser: Parser::new(),
            raw: Vec::new(),
            items: VecDeque::new(),
            end: None,
            _sender: sender,
            conn,
        })
    }
}

/// A response whose body is read incrementally. Dropping it closes the
/// connection.
pub struct Resp {
    /// The status.
    pub status: StatusCode,
    /// The headers.
    pub headers: HeaderMap,
    body: Option<Incoming>,
    parser: Parser,
    raw: Vec<u8>,
    items: VecDeque<Item>,
    end: Option<End>,
    _sender: hyper::client::conn::http1::SendRequest<Full<Bytes>>,
    conn: JoinHandle<()>,
}

impl Drop for Resp {
    fn drop(&mut self) {
        self.conn.abort();
    }
}

impl std::fmt::Debug for Resp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Resp")
            .field("status", &self.status)
            .field("headers", &self.headers)
            .field("raw", &String::from_utf8_lossy(&self.raw))
            .field("end", &self.end)
            .finish()
    }
}

impl Resp {
    /// A header's value as text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .get(name)
            .map(|v| v.to_str().expect("ASCII header"))
    }

    /// Every body byte received so far.
    pub fn raw(&self) -> &[u8] {
        &self.raw
    }

    /// How the body ended, once it has.
    pub fn end(&self) -> Option<&End> {
        self.end.as_ref()
    }

    /// Whether bytes of an unfinished SSE block were received (the body
    /// was cut inside an event).
    pub fn cut_mid_block(&self) -> bool {
        self.parser.has_partial()
    }

    /// Reads the next body chunk (hang guard). `None` once the body ended.
    pub async fn next_chunk(&mut self) -> Option<Bytes> {
        let body = self.body.as_mut()?;
        let frame = guard("a body chunk", body.frame()).await;
        match frame {
            None => {
                self.end = Some(End::Clean);
                self.body = None;
                None
            }
            Some(Err(err)) => {
                self.end = Some(End::Error(err.to_string()));
                self.body = None;
                None
            }
            Some(Ok(frame)) => match frame.into_data() {
                Ok(data) => {
                    self.raw.extend_from_slice(&data);
                    let items = self.parser.feed(&data);
                    self.items.extend(items);
                    Some(data)
                }
                // Trailers: nothing to report, read on.
                Err(_) => Some(Bytes::new()),
            },
        }
    }

    /// The next SSE block (hang guard). `None` once the body ended.
    pub async fn next_item(&mut self) -> Option<Item> {
        loop {
            if let Some(item) = self.items.pop_front() {
                return Some(item);
            }
            self.next_chunk().await?;
        }
    }

    /// The next event, skipping comments (hang guard). `None` at the end.
    pub async fn next_event(&mut self) -> Option<Ev> {
        loop {
            match self.next_item().await? {
                Item::Event(ev) => return Some(ev),
                Item::Comment(_) => continue,
            }
        }
    }

    /// The next event, which must exist.
    pub async fn expect_event(&mut self) -> Ev {
        match self.next_event().await {
            Some(ev) => ev,
            None => panic!("expected an event, the body ended: {self:?}"),
        }
    }

    /// Every remaining block, to the end of the body.
    pub async fn items_to_end(&mut self) -> Vec<Item> {
        let mut items = Vec::new();
        while let Some(item) = self.next_item().await {
            items.push(item);
        }
        items
    }

    /// Every remaining event, to the end of the body (comments skipped).
    pub async fn events_to_end(&mut self) -> Vec<Ev> {
        let mut events = Vec::new();
        while let Some(ev) = self.next_event().await {
            events.push(ev);
        }
        events
    }

    /// Reads the body to its end and returns every byte of it.
    pub async fn body_to_end(&mut self) -> Vec<u8> {
        while self.next_chunk().await.is_some() {}
        self.raw.clone()
    }

    /// Reads the body to its end and returns it as text.
    pub async fn text(&mut self) -> String {
        String::from_utf8(self.body_to_end().await).expect("UTF-8 body")
    }
}
