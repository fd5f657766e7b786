//! The `mcp-resume` command: makes any MCP Streamable HTTP server resumable.
//!
//! ```text
//! mcp-resume proxy --upstream http://127.0.0.1:8000/mcp   # the layer in front of a streaming reverse proxy
//! mcp-resume demo                                         # a built-in MCP server with a slow tool, behind the layer
//! ```
//!
//! On start it prints one line to stdout, `mcp-resume listening on
//! http://<addr>` (scripts wait for it), and logs to stderr (`RUST_LOG`).
//! SIGINT or SIGTERM stops accepting, lets streams finish for the grace
//! period, flushes and closes the store, and exits 0. Exit status 2 is a
//! usage error, 1 a failure to start or to close the store.
#![deny(unsafe_code)]
#![warn(missing_docs)]

use std::io::IsTerminal;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use clap::{Args, Parser, Subcommand, ValueEnum};
use http::{Request, Response};
use http_body::Body;
use hyper::body::Incoming;
use mcp_resume::demo::DemoServer;
use mcp_resume::proxy::{ReverseProxy, ServeOptions, Shutdown, Upstream};
use mcp_resume::store::{
    EventStore, MemoryEventStore, Retention, SqliteOptions, StoreError, SyncMode,
};
use mcp_resume::{ResumabilityLayer, StoreFailurePolicy};
use tokio::net::TcpListener;
use tower::{Layer, Service};
use tracing_subscriber::EnvFilter;

use tower::BoxError;

// ---------------------------------------------------------------------------
// The command line
// ---------------------------------------------------------------------------

/// Makes any MCP Streamable HTTP server resumable.
///
/// Every SSE event gets a durable id and is stored before the client sees it,
/// streams keep running when clients drop, and a GET with Last-Event-ID
/// replays what was missed, even across a restart.
#[derive(Debug, Parser)]
#[command(name = "mcp-resume", version, propagate_version = true)]
#[command(
    after_help = "Durations: 250ms, 2s, 5m, 1h (a bare number is seconds). \
    Every option can also be set from its MCP_RESUME_* environment variable. Logs: RUST_LOG."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    #[command(flatten)]
    options: Options,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// The layer in front of a streaming reverse proxy to an upstream MCP server.
    ///
    /// A request to <path>?<query> is forwarded to the upstream's host and
    /// port with the same path and query: with --upstream
    /// http://127.0.0.1:8000/mcp, clients use http://<listen>/mcp.
    Proxy {
        /// Upstream MCP endpoint, http:// only, e.g. http://127.0.0.1:8000/mcp
        #[arg(long, env = "MCP_RESUME_UPSTREAM", value_name = "URL")]
        upstream: Upstream,
    },
    /// A built-in MCP server with a slow streaming tool, `countdown`, behind the layer.
    ///
    /// Prints copy-paste curl commands to call the tool and to resume it.
    Demo,
}

/// The options of both commands. `global` so that they are accepted, and
/// listed by `--help`, before or after the command name.
#[derive(Debug, Args)]
struct Options {
    /// Address to serve on; port 0 picks a free port
    #[arg(
        long,
        env = "MCP_RESUME_LISTEN",
        value_name = "ADDR",
        default_value = "127.0.0.1:8080",
        global = true
    )]
    listen: SocketAddr,

    /// Event store: `sqlite:PATH`, `memory`, or `redis://HOST:PORT/[DB]` (builds with the `redis` feature)
    #[arg(
        long,
        env = "MCP_RESUME_STORE",
        value_name = "SPEC",
        default_value = "sqlite:./mcp_events.db",
        value_parser = parse_store,
        global = true
    )]
    store: StoreSpec,

    /// SQLite sync: `normal` survives a process crash, `full` also power loss
    #[arg(
        long,
        env = "MCP_RESUME_SYNC",
        value_name = "MODE",
        value_enum,
        default_value_t = SyncArg::Normal,
        global = true
    )]
    sync: SyncArg,

    /// SQLite file size cap in bytes, or `off`; appends past it fail (see --on-store-failure)
    #[arg(
        long,
        env = "MCP_RESUME_MAX_DB_BYTES",
        value_name = "N",
        default_value = "off",
        value_parser = parse_max_db_bytes,
        global = true
    )]
    max_db_bytes: MaxDbBytes,

    /// SQLite write-ahead log bound in bytes: past it the writer waits for a full checkpoint
    #[arg(
        long,
        env = "MCP_RESUME_MAX_WAL_BYTES",
        value_name = "N",
        default_value = "67108864",
        value_parser = clap::value_parser!(u64).range(1_048_576..),
        global = true
    )]
    max_wal_bytes: u64,

    /// Retry hint sent to clients: how long they wait before reconnecting
    #[arg(
        long,
        env = "MCP_RESUME_RETRY",
        value_name = "DUR",
        default_value = "1s",
        value_parser = parse_duration,
        global = true
    )]
    retry: Duration,

    /// How long a stream runs on after its client left
    #[arg(
        long,
        env = "MCP_RESUME_DETACH_TIMEOUT",
        value_name = "DUR",
        default_value = "5m",
        value_parser = parse_duration,
        global = true
    )]
    detach_timeout: Duration,

    /// Ended streams idle this long are deleted
    #[arg(
        long,
        env = "MCP_RESUME_MAX_AGE",
        value_name = "DUR",
        default_value = "1h",
        value_parser = parse_duration,
        global = true
    )]
    max_age: Duration,

    /// Per-stream event cap; resuming from before the kept events is refused
    #[arg(
        long,
        env = "MCP_RESUME_MAX_EVENTS_PER_STREAM",
        value_name = "N",
        default_value = "10000",
        value_parser = clap::value_parser!(u64).range(1..),
        global = true
    )]
    max_events_per_stream: u64,

    /// Largest SSE event accepted from upstream, in bytes; a larger one ends its stream
    #[arg(
        long,
        env = "MCP_RESUME_MAX_EVENT_BYTES",
        value_name = "N",
        default_value = "8388608",
        value_parser = clap::value_parser!(u64).range(1..),
        global = true
    )]
    max_event_bytes: u64,

    /// Live streams kept at once, of all sessions; beyond it, streams are served without resumability
    #[arg(
        long,
        env = "MCP_RESUME_MAX_LIVE_STREAMS",
        value_name = "N",
        default_value = "10000",
        value_parser = clap::value_parser!(u64).range(1..),
        global = true
    )]
    max_live_streams: u64,

    /// Live streams one session may have; beyond it, streams are served without resumability
    #[arg(
        long,
        env = "MCP_RESUME_MAX_LIVE_STREAMS_PER_SESSION",
        value_name = "N",
        default_value = "64",
        value_parser = clap::value_parser!(u64).range(1..),
        global = true
    )]
    max_live_streams_per_session: u64,

    /// When the store fails: `open` serves without resumability, `closed` answers 503
    #[arg(
        long,
        env = "MCP_RESUME_ON_STORE_FAILURE",
        value_name = "POLICY",
        value_enum,
        default_value_t = OnStoreFailure::Open,
        global = true
    )]
    on_store_failure: OnStoreFailure,

    /// SSE polling for 2025-11-25 clients: end each response after DUR while
    /// the stream goes on (`off` or a duration)
    #[arg(
        long,
        env = "MCP_RESUME_POLL_AFTER",
        value_name = "DUR",
        default_value = "off",
        value_parser = parse_poll_after,
        global = true
    )]
    poll_after: PollAfter,

    /// On SIGINT/SIGTERM: how long streams may finish before exit
    #[arg(
        long,
        env = "MCP_RESUME_GRACE_PERIOD",
        value_name = "DUR",
        default_value = "10s",
        value_parser = parse_duration,
        global = true
    )]
    grace_period: Duration,

    /// Client connections open at once; at the cap, new ones wait until one closes
    #[arg(
        long,
        env = "MCP_RESUME_MAX_CONNECTIONS",
        value_name = "N",
        default_value = "10000",
        value_parser = clap::value_parser!(u64).range(1..),
        global = true
    )]
    max_connections: u64,
}

/// Where events are stored.
#[derive(Clone, Debug, PartialEq, Eq)]
enum StoreSpec {
    /// An SQLite file: survives restarts.
    Sqlite(PathBuf),
    /// Memory: resumes survive dropped connections, not restarts.
    Memory,
    /// A Redis server shared by a fleet of proxies (`redis://` or `redis+unix://` URL).
    Redis(String),
}

impl std::fmt::Display for StoreSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Sqlite(path) => write!(f, "sqlite:{}", path.display()),
            Self::Memory => f.write_str("memory"),
            Self::Redis(url) => f.write_str(&without_password(url)),
        }
    }
}

/// `url` with its password, if any, masked (in `user:password@` or in a
/// `pass=` query parameter): store URLs are logged at start-up and shown in
/// errors.
fn without_password(url: &str) -> std::borrow::Cow<'_, str> {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.into();
    };
    let (address, query) = match rest.split_once('?') {
        Some((address, query)) => (address, Some(query)),
        None => (rest, None),
    };
    let authority_end = address.find('/').unwrap_or(address.len());
    let (authority, path) = address.split_at(authority_end);
    // `?pass=` is how redis-rs takes a password for a Unix socket.
    let masked_authority = authority.rsplit_once('@').and_then(|(userinfo, host)| {
        let (user, _password) = userinfo.split_once(':')?;
        Some(format!("{user}:***@{host}"))
    });
    let masked_query = query
        .filter(|q| q.split('&').any(|pair| pair.starts_with("pass=")))
        .map(|q| {
            q.split('&')
                .map(|pair| {
                    if pair.starts_with("pass=") {
                        "pass=***"
                    } else {
                        pair
                    }
                })
                .collect::<Vec<_>>()
                .join("&")
        });
    if masked_authority.is_none() && masked_query.is_none() {
        return url.into();
    }
    let authority = masked_authority.as_deref().unwrap_or(authority);
    match masked_query.as_deref().or(query) {
        Some(query) => format!("{scheme}://{authority}{path}?{query}").into(),
        None => format!("{scheme}://{authority}{path}").into(),
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum SyncArg {
    Normal,
    Full,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum OnStoreFailure {
    Open,
    Closed,
}

/// `--max-db-bytes`: off, or a size in bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct MaxDbBytes(Option<u64>);

fn parse_max_db_bytes(text: &str) -> Result<MaxDbBytes, String> {
    if text == "off" {
        return Ok(MaxDbBytes(None));
    }
    text.parse()
        .map(|bytes| MaxDbBytes(Some(bytes)))
        .map_err(|_| format!("`off` or a number of bytes, e.g. 1073741824 for 1 GiB; got `{text}`"))
}

/// `--poll-after`: off, or a duration.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct PollAfter(Option<Duration>);

const STORE_FORMS: &str = "expected `sqlite:PATH` (e.g. sqlite:./mcp_events.db), `memory` (nothing kept across restarts) or `redis://HOST:PORT/` (a fleet sharing one Redis)";

fn parse_store(text: &str) -> Result<StoreSpec, String> {
    if text == "memory" {
        return Ok(StoreSpec::Memory);
    }
    if text.starts_with("redis://") || text.starts_with("redis+unix://") {
        if !cfg!(feature = "redis") {
            return Err(
                "this build has no Redis support; build with `--features redis` (e.g. `cargo install mcp-resume --features redis`)"
                    .to_owned(),
            );
        }
        return Ok(StoreSpec::Redis(text.to_owned()));
    }
    match text.strip_prefix("sqlite:") {
        Some("") => Err(format!("the SQLite path is empty; {STORE_FORMS}")),
        Some(path) => Ok(StoreSpec::Sqlite(PathBuf::from(path))),
        None => Err(STORE_FORMS.to_owned()),
    }
}

/// `250ms`, `2s`, `5m`, `1h`, or a bare number of seconds.
fn parse_duration(text: &str) -> Result<Duration, String> {
    let expected = "expected a whole number with an optional unit: 250ms, 2s, 5m, 1h (a bare number is seconds)";
    let digits = text.bytes().take_while(u8::is_ascii_digit).count();
    let (number, unit) = text.split_at(digits);
    let number: u64 = number.parse().map_err(|_| expected.to_owned())?;
    let millis_per_unit = match unit {
        "ms" => 1,
        "" | "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        _ => return Err(expected.to_owned()),
    };
    number
        .checked_mul(millis_per_unit)
        .map(Duration::from_millis)
        .ok_or_else(|| "too long a duration".to_owned())
}

fn parse_poll_after(text: &str) -> Result<PollAfter, String> {
    if text == "off" {
        return Ok(PollAfter(None));
    }
    parse_duration(text)
        .map(|after| PollAfter(Some(after)))
        .map_err(|error| format!("`off` or a duration; {error}"))
}

// ---------------------------------------------------------------------------
// Running
// ---------------------------------------------------------------------------

/// Why the command could not start or end cleanly. Each message says what
/// was being done and what to check.
#[derive(Debug, thiserror::Error)]
enum Failure {
    // The cause is part of each message (it is what the user reads), so it
    // is not also chained as a `source`.
    #[error("cannot open the event store `{spec}`: {error}")]
    Store { spec: StoreSpec, error: StoreError },
    #[error("cannot listen on {addr}: {error}{}", listen_hint(error))]
    Listen {
        addr: SocketAddr,
        error: std::io::Error,
    },
    #[error("cannot install the SIGINT/SIGTERM handlers: {0}")]
    Signals(std::io::Error),
    #[error("cannot start the async runtime: {0}")]
    Runtime(std::io::Error),
    #[error("the event store failed while closing; the last events written may be lost: {0}")]
    Close(StoreError),
}

/// What to try when the listening address cannot be bound.
fn listen_hint(error: &std::io::Error) -> &'static str {
    match error.kind() {
        std::io::ErrorKind::AddrInUse => {
            " (another process is using it; pick another --listen, port 0 picks a free one)"
        }
        std::io::ErrorKind::AddrNotAvailable => " (no interface of this machine has that address)",
        std::io::ErrorKind::PermissionDenied => " (ports below 1024 need privileges)",
        _ => "",
    }
}

fn main() -> ExitCode {
    // Usage errors exit with status 2, printed by clap.
    let cli = Cli::parse();
    init_tracing();
    let outcome = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(Failure::Runtime)
        .and_then(|runtime| {
            let outcome = runtime.block_on(run(cli));
            // Nothing of ours is left running; do not wait on stragglers.
            runtime.shutdown_timeout(Duration::from_secs(1));
            outcome
        });
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            // Printed rather than logged: shown whatever RUST_LOG says.
            eprintln!("mcp-resume: {failure}");
            ExitCode::FAILURE
        }
    }
}

/// Logs go to stderr, filtered by `RUST_LOG` (default `info`); stdout is
/// kept for the listening line.
fn init_tracing() {
    let filter = match EnvFilter::try_from_default_env() {
        Ok(filter) => filter,
        Err(error) => {
            if std::env::var_os(EnvFilter::DEFAULT_ENV).is_some() {
                eprintln!("mcp-resume: ignoring RUST_LOG ({error}); logging at `info`");
            }
            EnvFilter::new("info")
        }
    };
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // Colour codes only for a terminal, not for a log file or a pipe.
        .with_ansi(std::io::stderr().is_terminal())
        .init();
}

async fn run(cli: Cli) -> Result<(), Failure> {
    let options = cli.options;
    let store = open_store(&options).await?;
    let layer = build_layer(store.clone(), &options);
    let listener = TcpListener::bind(options.listen)
        .await
        .map_err(|error| Failure::Listen {
            addr: options.listen,
            error,
        })?;
    let addr = listener.local_addr().map_err(|error| Failure::Listen {
        addr: options.listen,
        error,
    })?;
    // Installed before the listening line, so a script that signals as soon
    // as it reads the line gets a graceful shutdown, not the default kill.
    let signals = Signals::install().map_err(Failure::Signals)?;
    // The one line scripts wait for.
    print_stdout(&format!("mcp-resume listening on http://{addr}"));
    tracing::info!(store = %options.store, "serving on http://{addr}");

    match cli.command {
        Command::Proxy { upstream } => {
            tracing::info!(
                "forwarding to {upstream}; clients use http://{addr}{}",
                upstream.path()
            );
            let service = layer.layer(ReverseProxy::new(upstream));
            serve(listener, service, signals, &options).await;
        }
        Command::Demo => {
            print_stdout(&demo_commands(addr));
            let service = layer.layer(DemoServer::new());
            serve(listener, service, signals, &options).await;
        }
    }

    tracing::info!(stats = ?layer.stats(), "closing the event store");
    // Close flushes too; flushing first makes a flush failure visible on its own.
    if let Err(error) = store.flush().await {
        tracing::error!(%error, "the event store failed to flush");
    }
    store.close().await.map_err(Failure::Close)?;
    tracing::info!("stopped");
    Ok(())
}

/// Prints a line to stdout and flushes it. A closed stdout (a script that
/// read the listening line and went away) is not a reason to stop serving.
fn print_stdout(text: &str) {
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    if let Err(error) = writeln!(stdout, "{text}").and_then(|()| stdout.flush()) {
        tracing::debug!(%error, "cannot write to stdout");
    }
}

async fn open_store(options: &Options) -> Result<Arc<dyn EventStore>, Failure> {
    let retention = Retention::new()
        .max_age(options.max_age)
        .max_events_per_stream(options.max_events_per_stream);
    match &options.store {
        StoreSpec::Memory => Ok(Arc::new(MemoryEventStore::with_retention(retention))),
        StoreSpec::Sqlite(path) => {
            let sync = match options.sync {
                SyncArg::Normal => SyncMode::Normal,
                SyncArg::Full => SyncMode::Full,
            };
            let mut sqlite = SqliteOptions::new(path)
                .sync(sync)
                .max_wal_bytes(options.max_wal_bytes)
                .retention(retention);
            if let MaxDbBytes(Some(bytes)) = options.max_db_bytes {
                sqlite = sqlite.max_size_bytes(bytes);
            }
            // Blocking (opens the file), which is fine before serving starts.
            let store = sqlite.open().map_err(|error| Failure::Store {
                spec: options.store.clone(),
                error,
            })?;
            Ok(Arc::new(store))
        }
        StoreSpec::Redis(url) => open_redis(url, retention, options).await,
    }
}

#[cfg(feature = "redis")]
async fn open_redis(
    url: &str,
    retention: Retention,
    options: &Options,
) -> Result<Arc<dyn EventStore>, Failure> {
    let store = mcp_resume::store::RedisOptions::new(url)
        .retention(retention)
        .open()
        .await
        .map_err(|error| Failure::Store {
            spec: options.store.clone(),
            error,
        })?;
    Ok(Arc::new(store))
}

#[cfg(not(feature = "redis"))]
async fn open_redis(_: &str, _: Retention, _: &Options) -> Result<Arc<dyn EventStore>, Failure> {
    unreachable!("`parse_store` accepts Redis URLs only in builds with the `redis` feature")
}

fn build_layer(store: Arc<dyn EventStore>, options: &Options) -> ResumabilityLayer {
    let mut layer = ResumabilityLayer::new(store)
        .retry(options.retry)
        .detach_timeout(options.detach_timeout)
        // The event cap needs no setting here: the layer takes the store's
        // retention, which `open_store` set from the same option.
        .max_event_bytes(usize::try_from(options.max_event_bytes).unwrap_or(usize::MAX))
        .max_live_streams(usize::try_from(options.max_live_streams).unwrap_or(usize::MAX))
        .max_live_streams_per_session(
            usize::try_from(options.max_live_streams_per_session).unwrap_or(usize::MAX),
        )
        .on_store_failure(match options.on_store_failure {
            OnStoreFailure::Open => StoreFailurePolicy::FailOpen,
            OnStoreFailure::Closed => StoreFailurePolicy::FailClosed,
        });
    if let PollAfter(Some(after)) = options.poll_after {
        layer = layer.poll_after(after);
    }
    layer
}

/// Serves until the first SIGINT/SIGTERM, then shuts down gracefully; a
/// second signal stops waiting for streams at once.
async fn serve<S, B>(listener: TcpListener, service: S, mut signals: Signals, options: &Options)
where
    S: Service<Request<Incoming>, Response = Response<B>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    let grace = options.grace_period;
    let serve_options = ServeOptions::new()
        .grace_period(grace)
        .max_connections(usize::try_from(options.max_connections).unwrap_or(usize::MAX));
    let (first_tx, first_rx) = tokio::sync::oneshot::channel::<()>();
    let watch_signals = async move {
        let signal = signals.recv().await;
        tracing::info!(
            "{signal}: shutting down; streams have {grace:?} to finish (send it again to stop now)"
        );
        let _ = first_tx.send(());
        let signal = signals.recv().await;
        tracing::warn!("{signal} again: not waiting for open streams");
    };
    let shutdown = async {
        // An error means the watcher is gone, which only happens with us.
        let _ = first_rx.await;
    };
    tokio::select! {
        outcome = mcp_resume::proxy::serve(listener, service, shutdown, serve_options) => match outcome {
            Shutdown::Drained => tracing::info!("every connection finished"),
            Shutdown::GracePeriodElapsed { connections } => tracing::warn!(
                connections,
                "grace period over: closed the connections still open; their streams can be resumed after a restart"
            ),
            _ => {}
        },
        () = watch_signals => {}
    }
}

/// SIGINT and SIGTERM (Ctrl-C only, off Unix).
struct Signals {
    #[cfg(unix)]
    interrupt: tokio::signal::unix::Signal,
    #[cfg(unix)]
    terminate: tokio::signal::unix::Signal,
}

impl Signals {
    fn install() -> std::io::Result<Self> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            Ok(Self {
                interrupt: signal(SignalKind::interrupt())?,
                terminate: signal(SignalKind::terminate())?,
            })
        }
        #[cfg(not(unix))]
        {
            Ok(Self {})
        }
    }

    /// The next signal's name.
    async fn recv(&mut self) -> &'static str {
        #[cfg(unix)]
        {
            tokio::select! {
                _ = self.interrupt.recv() => "SIGINT",
                _ = self.terminate.recv() => "SIGTERM",
            }
        }
        #[cfg(not(unix))]
        {
            match tokio::signal::ctrl_c().await {
                Ok(()) => "Ctrl-C",
                Err(_) => std::future::pending().await,
            }
        }
    }
}

/// Copy-paste curl commands for the demo at `addr`.
fn demo_commands(addr: SocketAddr) -> String {
    // A wildcard address is not one to connect to: use loopback.
    let ip = match addr.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    let url = format!("http://{}/mcp", SocketAddr::new(ip, addr.port()));
    DEMO_COMMANDS.replace("{url}", &url)
}

const DEMO_COMMANDS: &str = r#"
Try it from another terminal:

# 1. initialize, and keep the session id the server minted
SESSION=$(curl -s -o /dev/null -D - {url} \
  -H 'Content-Type: application/json' -H 'Accept: application/json, text/event-stream' \
  -d '{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"curl","version":"1.0"}}}' \
  | awk 'tolower($1) == "mcp-session-id:" { print $2 }' | tr -d '\r')

# 2. finish the handshake (202 Accepted)
curl -s {url} \
  -H 'Content-Type: application/json' -H 'Accept: application/json, text/event-stream' \
  -H "Mcp-Session-Id: $SESSION" -H 'MCP-Protocol-Version: 2025-11-25' \
  -d '{"jsonrpc":"2.0","method":"notifications/initialized"}'

# 3. call the countdown (20 steps, 0.5 s apart); press Ctrl-C after a few events
curl -N {url} \
  -H 'Content-Type: application/json' -H 'Accept: application/json, text/event-stream' \
  -H "Mcp-Session-Id: $SESSION" -H 'MCP-Protocol-Version: 2025-11-25' \
  -d '{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"countdown","arguments":{"steps":20,"interval_ms":500},"_meta":{"progressToken":"countdown-1"}}}'

# 4. resume: the events you missed, then the rest live (put the last id you saw)
curl -N {url} -H 'Accept: text/event-stream' \
  -H "Mcp-Session-Id: $SESSION" -H 'MCP-Protocol-Version: 2025-11-25' \
  -H 'Last-Event-ID: <the last id you saw>'
"#;

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn durations_take_a_unit_or_mean_seconds() {
        for (text, millis) in [
            ("250ms", 250),
            ("2s", 2_000),
            ("2", 2_000),
            ("0", 0),
            ("5m", 300_000),
            ("1h", 3_600_000),
        ] {
            assert_eq!(
                parse_duration(text),
                Ok(Duration::from_millis(millis)),
                "{text}"
            );
        }
        for bad in [
            "",
            "ms",
            "1.5s",
            "-1s",
            "1 s",
            "1d",
            "1S",
            "s1",
            "99999999999999999999",
        ] {
            let error = parse_duration(bad).unwrap_err();
            assert!(error.contains("250ms"), "{bad}: {error}");
        }
        assert!(parse_duration("18446744073709551615h").is_err());
    }

    #[test]
    fn stores_are_sqlite_paths_or_memory() {
        assert_eq!(parse_store("memory"), Ok(StoreSpec::Memory));
        assert_eq!(
            parse_store("sqlite:./x.db"),
            Ok(StoreSpec::Sqlite("./x.db".into()))
        );
        for bad in ["bogus", "sqlite:", "sqlite", "Memory", "rediss://x"] {
            let error = parse_store(bad).unwrap_err();
            assert!(
                error.contains("sqlite:PATH") && error.contains("memory"),
                "{bad}: {error}"
            );
        }
    }

    #[test]
    fn store_urls_are_shown_without_their_password() {
        for (url, shown) in [
            ("redis://:s3cret@db:6379/0", "redis://:***@db:6379/0"),
            ("redis://app:p@ss@db/", "redis://app:***@db/"),
            ("rediss://app@db:6380", "rediss://app@db:6380"),
            ("redis://db:6379/", "redis://db:6379/"),
            (
                "redis+unix:///run/redis.sock",
                "redis+unix:///run/redis.sock",
            ),
            (
                "redis+unix:///run/redis.sock?db=1&pass=s3cret&user=app",
                "redis+unix:///run/redis.sock?db=1&pass=***&user=app",
            ),
            ("redis://db/0?protocol=resp3", "redis://db/0?protocol=resp3"),
            (
                "redis://app:pw@db/0?protocol=resp3",
                "redis://app:***@db/0?protocol=resp3",
            ),
        ] {
            assert_eq!(StoreSpec::Redis(url.into()).to_string(), shown);
        }
    }

    #[test]
    fn redis_urls_need_the_redis_feature() {
        let parsed = parse_store("redis://127.0.0.1:6379/");
        if cfg!(feature = "redis") {
            assert_eq!(
                parsed,
                Ok(StoreSpec::Redis("redis://127.0.0.1:6379/".into()))
            );
        } else {
            assert!(parsed.unwrap_err().contains("--features redis"));
        }
    }

    #[test]
    fn poll_after_is_off_or_a_duration() {
        assert_eq!(parse_poll_after("off"), Ok(PollAfter(None)));
        assert_eq!(
            parse_poll_after("30s"),
            Ok(PollAfter(Some(Duration::from_secs(30))))
        );
        assert!(parse_poll_after("never").is_err());
    }

    #[test]
    fn options_go_before_or_after_the_command() {
        let before =
            Cli::try_parse_from(["mcp-resume", "--listen", "127.0.0.1:0", "demo"]).unwrap();
        let after = Cli::try_parse_from(["mcp-resume", "demo", "--listen", "127.0.0.1:0"]).unwrap();
        assert_eq!(before.options.listen, after.options.listen);
        assert_eq!(after.options.listen.port(), 0);
        assert!(Cli::try_parse_from(["mcp-resume", "proxy"]).is_err());
    }

    #[test]
    fn demo_commands_connect_to_loopback_for_a_wildcard_address() {
        let text = demo_commands("0.0.0.0:9000".parse().unwrap());
        assert!(text.contains("http://127.0.0.1:9000/mcp"));
        assert!(!text.contains("{url}"));
    }
}
