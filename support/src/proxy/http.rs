//! Cuts inside the event streams of chosen HTTP/1.1 responses: the interop runs' proxy
//! (`examples/fault_proxy.rs` is its command line).
//!
//! It reads HTTP/1.1 framing in both directions, so it knows which response answers which
//! request. Only these responses may be cut:
//!
//! - `200 text/event-stream` answers to a `POST` whose JSON-RPC method is `tools/call`, and
//! - `200 text/event-stream` answers to a `GET` with `Last-Event-ID` (a resume).
//!
//! The initialize handshake, notifications, the standalone `GET` stream, JSON and `202` answers
//! are never touched. An eligible response is cut with probability
//! [`CutOptions::cut_probability`] after N bytes of its body, N drawn uniformly from
//! [`CutOptions::min_bytes`]`..=`[`CutOptions::max_bytes`] (so anywhere, including in the middle
//! of an event or of HTTP chunk framing), and each event stream (the layer's stream id,
//! `<stream>` in `<stream>.<seq>`) is cut at most [`CutOptions::max_cuts`] times. A cut forwards
//! exactly the first N bytes, then closes the client connection with FIN (so the client reads
//! everything before the cut) and closes the upstream connection.
//!
//! The random draws come from [`CutOptions::seed`] (per connection: seed and connection
//! number).
//!
//! With a log, one JSON line per response records what the client was sent: the request
//! (method, `Last-Event-ID`, JSON-RPC method and id, `params.arguments.tag`), the status, the
//! stream, the ids of the complete events forwarded (`first_seq`, `last_seq`, `messages`), and
//! how the response ended (`complete`, `cut` with `cut_at` and `mid_event`, `upstream_closed`,
//! `client_closed`). `tests/interop/check.py` reads it.

use std::collections::{HashMap, VecDeque};
use std::fs::File;
use std::io::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use bytes::Bytes;
use mcp_resume::sse::{Block, SseLimits, SseParser};
use mcp_resume::store::EventId;
use serde_json::{Value, json};

use super::{Connection, Ending, Faults, Relay};

/// The largest request or response head accepted.
const MAX_HEAD: usize = 64 * 1024;
/// The largest request body kept for reading its JSON-RPC method.
const MAX_SNIFFED_BODY: usize = 1024 * 1024;

/// Where [`HttpFaults`] cuts. The defaults are the interop runs'.
#[derive(Debug, Clone, PartialEq)]
pub struct CutOptions {
    /// Seeds the draws (whether to cut a response, and where). Default 1.
    pub seed: u64,
    /// The fewest body bytes an eligible response carries before its cut. Default 400.
    pub min_bytes: u64,
    /// The most body bytes an eligible response carries before its cut. Default 30,000.
    pub max_bytes: u64,
    /// The chance that an eligible response is cut, within `0.0..=1.0`. Default 0.8.
    pub cut_probability: f64,
    /// At most this many cuts per event stream. Default 3.
    pub max_cuts: u32,
}

impl Default for CutOptions {
    fn default() -> Self {
        Self {
            seed: 1,
            min_bytes: 400,
            max_bytes: 30_000,
            cut_probability: 0.8,
            max_cuts: 3,
        }
    }
}

impl CutOptions {
    /// Checks the ranges: `0 < min_bytes <= max_bytes`, `cut_probability` within `0..=1`.
    pub fn validate(&self) -> Result<(), String> {
        if self.min_bytes == 0 || self.min_bytes > self.max_bytes {
            return Err("need 0 < --min-bytes <= --max-bytes".into());
        }
        if !(0.0..=1.0).contains(&self.cut_probability) {
            return Err("--cut-probability must be within 0..=1".into());
        }
        Ok(())
    }
}

/// The [`Faults`] of the interop runs: cuts event streams of chosen responses (see the module
/// documentation) and logs every response.
pub struct HttpFaults {
    shared: Arc<Shared>,
}

impl HttpFaults {
    /// Cuts per `options`; with `log`, writes one JSON line per response (and per cut or failed
    /// connection) to it.
    pub fn new(options: CutOptions, log: Option<File>) -> Self {
        Self {
            shared: Arc::new(Shared {
                options,
                started: Instant::now(),
                log: log.map(Mutex::new),
                cuts: Mutex::default(),
                requests: AtomicU64::new(0),
            }),
        }
    }
}

impl Faults for HttpFaults {
    type Connection = HttpConnection;

    async fn connection(&self, index: usize) -> HttpConnection {
        // Connections are numbered from 1 in the log and in the draws.
        let number = index as u64 + 1;
        let shared = self.shared.clone();
        let rng = Rng(shared.options.seed ^ number.wrapping_mul(0xA076_1D64_78BD_642F));
        HttpConnection {
            shared,
            number,
            requests: Requests::default(),
            pending: VecDeque::new(),
            responses: Responses {
                rng,
                head: HeadReader::default(),
                current: None,
            },
        }
    }
}

/// One connection under [`HttpFaults`].
pub struct HttpConnection {
    shared: Arc<Shared>,
    number: u64,
    requests: Requests,
    /// The requests whose responses have not started, oldest first.
    pending: VecDeque<Arc<Mutex<RequestInfo>>>,
    responses: Responses,
}

/// Reading the client's requests.
#[derive(Default)]
struct Requests {
    head: HeadReader,
    body: Option<(BodyDecoder, Arc<Mutex<RequestInfo>>, Vec<u8>)>,
}

/// Reading the server's responses.
struct Responses {
    rng: Rng,
    head: HeadReader,
    current: Option<Response>,
}

impl Connection for HttpConnection {
    /// Learns what each response will answer.
    fn request(&mut self, input: &[u8]) {
        let shared = &self.shared;
        let state = &mut self.requests;
        let mut pos = 0;
        while state.head.understood && pos < input.len() {
            if let Some((decoder, info, sniffed)) = &mut state.body {
                let (used, done) = decoder.feed(&input[pos..], &mut |p| {
                    if sniffed.len() + p.len() <= MAX_SNIFFED_BODY {
                        sniffed.extend_from_slice(p);
                    }
                });
                pos += used;
                if done {
                    sniff_rpc(&mut info.lock().expect("request lock"), sniffed);
                    state.body = None;
                }
                continue;
            }
            let Some(parsed) = state.head.next_head(input, &mut pos) else {
                continue;
            };
            let mut parts = parsed.start_line.split(' ');
            let info = RequestInfo {
                seq: shared.requests.fetch_add(1, Ordering::Relaxed),
                method: parts.next().unwrap_or("").to_owned(),
                path: parts.next().unwrap_or("").to_owned(),
                last_event_id: parsed.header("last-event-id").map(str::to_owned),
                session: parsed.header("mcp-session-id").map(str::to_owned),
                started_ms: shared.started.elapsed().as_millis() as u64,
                ..RequestInfo::default()
            };
            let info = Arc::new(Mutex::new(info));
            self.pending.push_back(info.clone());
            let decoder = BodyDecoder::new(parsed.body_kind());
            if !decoder.is_done_at_start() {
                state.body = Some((decoder, info, Vec::new()));
            }
        }
    }

    /// Follows the responses, and cuts an eligible event stream where its draw says.
    fn response(&mut self, input: &[u8]) -> Relay {
        let shared = &self.shared;
        let state = &mut self.responses;
        let n = input.len();
        let mut pos = 0;
        while state.head.understood && pos < n {
            if let Some(response) = &mut state.current {
                if response.cut_at == Some(response.body_bytes) {
                    let stream = response.tracker.stream.clone();
                    let mut cuts = shared.cuts.lock().expect("cuts lock");
                    let allowed = stream.as_ref().is_some_and(|s| {
                        cuts.get(s).copied().unwrap_or(0) < shared.options.max_cuts
                    });
                    if allowed {
                        *cuts.entry(stream.expect("checked")).or_default() += 1;
                        return Relay::CutAfter(pos);
                    }
                    response.cut_at = None;
                }
                let limit = match response.cut_at {
                    Some(at) => ((n - pos) as u64).min(at - response.body_bytes) as usize,
                    None => n - pos,
                };
                let tracker = &mut response.tracker;
                let sse = response.sse;
                let (used, done) = response.decoder.feed(&input[pos..pos + limit], &mut |p| {
                    if sse {
                        tracker.feed(p);
                    }
                });
                pos += used;
                response.body_bytes += used as u64;
                if done {
                    response.record("complete", shared);
                    state.current = None;
                }
                continue;
            }
            let Some(parsed) = state.head.next_head(input, &mut pos) else {
                continue;
            };
            let status: u16 = parsed
                .start_line
                .split(' ')
                .nth(1)
                .and_then(|s| s.parse().ok())
                .unwrap_or(0);
            if (100..200).contains(&status) {
                continue; // an interim response: the final one follows
            }
            let request = self
                .pending
                .pop_front()
                .map(|info| info.lock().expect("request lock").clone())
                .unwrap_or_default();
            let sse = parsed
                .header("content-type")
                .is_some_and(|ct| ct.to_ascii_lowercase().starts_with("text/event-stream"));
            let kind = if request.method == "HEAD" || status == 204 || status == 304 {
                BodyKind::None
            } else {
                match parsed.body_kind() {
                    BodyKind::None => BodyKind::UntilClose,
                    kind => kind,
                }
            };
            let eligible = status == 200
                && sse
                && ((request.method == "POST"
                    && request.rpc_method.as_deref() == Some("tools/call"))
                    || (request.method == "GET" && request.last_event_id.is_some()));
            let options = &shared.options;
            let cut_at = (eligible && state.rng.unit() < options.cut_probability)
                .then(|| state.rng.between(options.min_bytes, options.max_bytes));
            let stream = request
                .last_event_id
                .as_deref()
                .and_then(|id| EventId::parse(id.as_bytes()).ok())
                .map(|id| id.stream.to_string());
            let response = Response {
                request,
                status,
                sse,
                decoder: BodyDecoder::new(kind),
                body_bytes: 0,
                cut_at,
                tracker: SseTracker::new(stream),
            };
            if response.decoder.is_done_at_start() {
                response.record("complete", shared);
            } else {
                state.current = Some(response);
            }
        }
        Relay::All
    }

    /// Records how the response in flight ended.
    fn ended(&mut self, ending: Ending) {
        let outcome = match &ending {
            Ending::ServerClosed => "upstream_closed",
            Ending::ClientClosed => "client_closed",
            Ending::Cut | Ending::CutOnDemand => "cut",
            Ending::ConnectFailed(error) => {
                self.shared.log(
                    json!({"kind": "connect_failed", "conn": self.number, "error": error.to_string()}),
                );
                return;
            }
        };
        if let Some(response) = &self.responses.current {
            response.record(outcome, &self.shared);
        }
        if outcome == "cut" {
            self.shared
                .log(json!({"kind": "conn_cut", "conn": self.number}));
        }
    }
}

/// SplitMix64: small, seeded, good enough to spread cut points.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0.0..1.0`.
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Uniform in `lo..=hi`.
    fn between(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi - lo + 1)
    }
}

/// State shared by all connections.
struct Shared {
    options: CutOptions,
    started: Instant,
    log: Option<Mutex<File>>,
    /// Cuts made so far per event stream.
    cuts: Mutex<HashMap<String, u32>>,
    requests: AtomicU64,
}

impl Shared {
    fn log(&self, mut record: Value) {
        let Some(log) = &self.log else { return };
        record["t_ms"] = json!(self.started.elapsed().as_millis() as u64);
        let mut line = record.to_string();
        line.push('\n');
        let mut file = log.lock().expect("log lock");
        // A failed log write must not take the proxy down; the checker notices missing lines.
        let _ = file.write_all(line.as_bytes());
    }
}

/// What the proxy learned about one request.
#[derive(Debug, Default, Clone)]
struct RequestInfo {
    seq: u64,
    method: String,
    path: String,
    last_event_id: Option<String>,
    session: Option<String>,
    rpc_method: Option<String>,
    rpc_id: Option<Value>,
    tag: Option<Value>,
    started_ms: u64,
}

/// A parsed HTTP/1.1 head.
struct Head {
    start_line: String,
    headers: Vec<(String, String)>,
}

impl Head {
    fn parse(raw: &[u8]) -> Option<Self> {
        let text = std::str::from_utf8(raw).ok()?;
        let mut lines = text.split("\r\n");
        let start_line = lines.next()?.to_owned();
        let headers = lines
            .filter(|l| !l.is_empty())
            .filter_map(|l| {
                let (name, value) = l.split_once(':')?;
                Some((name.trim().to_ascii_lowercase(), value.trim().to_owned()))
            })
            .collect();
        Some(Self {
            start_line,
            headers,
        })
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    fn body_kind(&self) -> BodyKind {
        if self
            .header("transfer-encoding")
            .is_some_and(|te| te.to_ascii_lowercase().contains("chunked"))
        {
            BodyKind::Chunked
        } else if let Some(len) = self.header("content-length") {
            BodyKind::Length(len.parse().unwrap_or(0))
        } else {
            BodyKind::None
        }
    }
}

/// Accumulates bytes up to the end of a head (`\r\n\r\n`), until bytes that are not HTTP/1.1.
struct HeadReader {
    buf: Vec<u8>,
    /// False after bytes that are not HTTP/1.1: framing is no longer read, bytes still flow.
    understood: bool,
}

impl Default for HeadReader {
    fn default() -> Self {
        Self {
            buf: Vec::new(),
            understood: true,
        }
    }
}

impl HeadReader {
    /// Consumes bytes of `input` from `*pos` on, and returns the head once complete.
    fn next_head(&mut self, input: &[u8], pos: &mut usize) -> Option<Head> {
        let (used, complete) = self.feed(&input[*pos..]);
        *pos += used;
        let Some(raw) = complete else {
            if self.buf.len() > MAX_HEAD {
                self.understood = false;
            }
            return None;
        };
        let head = Head::parse(&raw);
        self.understood = head.is_some();
        head
    }

    /// Consumes bytes of `input`; returns how many, and the head once complete.
    fn feed(&mut self, input: &[u8]) -> (usize, Option<Vec<u8>>) {
        for (i, &b) in input.iter().enumerate() {
            self.buf.push(b);
            if self.buf.ends_with(b"\r\n\r\n") {
                return (i + 1, Some(std::mem::take(&mut self.buf)));
            }
            if self.buf.len() > MAX_HEAD {
                // Not HTTP we understand: stop reading framing, keep forwarding.
                return (i + 1, None);
            }
        }
        (input.len(), None)
    }
}

#[derive(Debug, Clone, Copy)]
enum BodyKind {
    None,
    Length(u64),
    Chunked,
    UntilClose,
}

#[derive(Debug)]
enum ChunkState {
    Size(Vec<u8>),
    Data(u64),
    DataEnd,
    Trailer(Vec<u8>),
}

/// Decodes one message body, reporting payload bytes and where the message ends.
struct BodyDecoder {
    kind: BodyKind,
    remaining: u64,
    chunk: ChunkState,
}

impl BodyDecoder {
    fn new(kind: BodyKind) -> Self {
        let remaining = match kind {
            BodyKind::Length(n) => n,
            _ => 0,
        };
        Self {
            kind,
            remaining,
            chunk: ChunkState::Size(Vec::new()),
        }
    }

    fn is_done_at_start(&self) -> bool {
        matches!(self.kind, BodyKind::None) || matches!(self.kind, BodyKind::Length(0))
    }

    /// Consumes body bytes from `input` (all of it unless the message ends inside it).
    /// Returns the bytes consumed and whether the message is complete.
    fn feed(&mut self, input: &[u8], payload: &mut impl FnMut(&[u8])) -> (usize, bool) {
        match self.kind {
            BodyKind::None => (0, true),
            BodyKind::UntilClose => {
                payload(input);
                (input.len(), false)
            }
            BodyKind::Length(_) => {
                let take = (input.len() as u64).min(self.remaining) as usize;
                payload(&input[..take]);
                self.remaining -= take as u64;
                (take, self.remaining == 0)
            }
            BodyKind::Chunked => {
                let mut pos = 0;
                while pos < input.len() {
                    match &mut self.chunk {
                        ChunkState::Size(line) => {
                            let b = input[pos];
                            pos += 1;
                            if b != b'\n' {
                                line.push(b);
                                continue;
                            }
                            let text = String::from_utf8_lossy(line);
                            let hex = text.split(';').next().unwrap_or("").trim();
                            let size = u64::from_str_radix(hex, 16).unwrap_or(0);
                            self.chunk = if size == 0 {
                                ChunkState::Trailer(Vec::new())
                            } else {
                                ChunkState::Data(size)
                            };
                        }
                        ChunkState::Data(rem) => {
                            let take = ((input.len() - pos) as u64).min(*rem) as usize;
                            payload(&input[pos..pos + take]);
                            pos += take;
                            *rem -= take as u64;
                            if *rem == 0 {
                                self.chunk = ChunkState::DataEnd;
                            }
                        }
                        ChunkState::DataEnd => {
                            let b = input[pos];
                            pos += 1;
                            if b == b'\n' {
                                self.chunk = ChunkState::Size(Vec::new());
                            }
                        }
                        ChunkState::Trailer(line) => {
                            let b = input[pos];
                            pos += 1;
                            if b != b'\n' {
                                line.push(b);
                                continue;
                            }
                            if line.iter().all(|&c| c == b'\r') {
                                return (pos, true);
                            }
                            line.clear();
                        }
                    }
                }
                (pos, false)
            }
        }
    }
}

fn sniff_rpc(info: &mut RequestInfo, body: &[u8]) {
    let Ok(value) = serde_json::from_slice::<Value>(body) else {
        return;
    };
    let message = match &value {
        Value::Array(items) => items.first().cloned().unwrap_or(Value::Null),
        _ => value,
    };
    info.rpc_method = message
        .get("method")
        .and_then(Value::as_str)
        .map(str::to_owned);
    info.rpc_id = message.get("id").cloned();
    info.tag = message
        .pointer("/params/arguments/tag")
        .cloned()
        .filter(|t| !t.is_null());
}

/// Tracks the SSE events of one response body as the client receives them.
struct SseTracker {
    parser: SseParser,
    stream: Option<String>,
    first_seq: Option<u64>,
    last_seq: Option<u64>,
    last_id: Option<String>,
    messages: u64,
    /// Message seqs not following their predecessor by exactly one.
    irregular: u64,
    broken: bool,
}

impl SseTracker {
    fn new(stream: Option<String>) -> Self {
        Self {
            parser: SseParser::new(SseLimits::default()),
            stream,
            first_seq: None,
            last_seq: None,
            last_id: None,
            messages: 0,
            irregular: 0,
            broken: false,
        }
    }

    fn feed(&mut self, payload: &[u8]) {
        if self.broken || payload.is_empty() {
            return;
        }
        self.parser.feed(Bytes::copy_from_slice(payload));
        loop {
            match self.parser.next_block() {
                Ok(Some(Block::Event(event))) => {
                    let Some(id) = event.id else { continue };
                    let id = String::from_utf8_lossy(&id).into_owned();
                    if let Ok(parsed) = EventId::parse(id.as_bytes()) {
                        if self.stream.is_none() {
                            self.stream = Some(parsed.stream.to_string());
                        }
                        let has_data = event.data.as_ref().is_some_and(|d| !d.is_empty());
                        if has_data {
                            if let Some(last) = self.last_seq
                                && parsed.seq != last + 1
                            {
                                self.irregular += 1;
                            }
                            self.first_seq.get_or_insert(parsed.seq);
                            self.last_seq = Some(parsed.seq);
                            self.messages += 1;
                        }
                    }
                    self.last_id = Some(id);
                }
                Ok(Some(Block::Comment(_))) => {}
                Ok(None) => break,
                Err(_) => {
                    self.broken = true;
                    break;
                }
            }
        }
    }
}

/// One response on its way to the client.
struct Response {
    request: RequestInfo,
    status: u16,
    sse: bool,
    decoder: BodyDecoder,
    body_bytes: u64,
    cut_at: Option<u64>,
    tracker: SseTracker,
}

impl Response {
    fn record(&self, outcome: &str, shared: &Shared) {
        let r = &self.request;
        let mut record = json!({
            "kind": "response",
            "req": r.seq,
            "method": r.method,
            "path": r.path,
            "last_event_id": r.last_event_id,
            "session": r.session,
            "rpc_method": r.rpc_method,
            "rpc_id": r.rpc_id,
            "tag": r.tag,
            "started_ms": r.started_ms,
            "status": self.status,
            "sse": self.sse,
            "body_bytes": self.body_bytes,
            "outcome": outcome,
        });
        if self.sse {
            let t = &self.tracker;
            record["stream"] = json!(t.stream);
            record["first_seq"] = json!(t.first_seq);
            record["last_seq"] = json!(t.last_seq);
            record["last_id"] = json!(t.last_id);
            record["messages"] = json!(t.messages);
            record["irregular"] = json!(t.irregular);
        }
        if outcome == "cut" {
            record["cut_at"] = json!(self.body_bytes);
            record["mid_event"] = json!(self.tracker.parser.has_partial_block());
        }
        shared.log(record);
    }
}
