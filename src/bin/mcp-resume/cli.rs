//! The command line: the two commands and their options. Every default is
//! the library's own constant, so `--help` shows what the library does.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use clap::builder::RangedU64ValueParser;
use clap::{ArgAction, Args, Parser, Subcommand};
use mcp_resume::proxy::{
    AllowedHost, AllowedOrigin, DEFAULT_AUTHORIZE_RESUMES_WITH_UPSTREAM, DEFAULT_IDENTITY_HEADER,
    DEFAULT_LISTEN_ADDR, ForwardedHeaders, ListenerTls, RebindingGuardLayer, ReverseProxy,
    ServeOptions, TlsConfigError, Upstream, UpstreamTls,
};
use mcp_resume::store::{EventStore, Retention, SqliteOptions};
use mcp_resume::tasks::TasksLayer;
use mcp_resume::{ResumabilityLayer, StoreFailurePolicy};

use crate::store::{StoreSpec, parse_store};
use crate::values::{
    BytesOrOff, CliDuration, DurationOrOff, ForwardedArg, HeaderOrNone, OnStoreFailure, SyncArg,
    ToolThreshold,
};

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
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
    #[command(flatten)]
    pub options: Options,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// The layer in front of a streaming reverse proxy to an upstream MCP server.
    ///
    /// A request to <path>?<query> is forwarded to the upstream's host and
    /// port with the same path and query: with --upstream
    /// http://127.0.0.1:8000/mcp, clients use http://<listen>/mcp.
    Proxy {
        /// Upstream MCP endpoint, http:// or https://, e.g. http://127.0.0.1:8000/mcp
        #[arg(long, env = "MCP_RESUME_UPSTREAM", value_name = "URL")]
        upstream: Upstream,
        // Boxed: the proxy's options make this variant far larger than `Demo`.
        #[command(flatten)]
        proxy: Box<ProxyOptions>,
    },
    /// A built-in MCP server with a slow streaming tool, `countdown`, behind the layer.
    ///
    /// Prints a walkthrough to paste into another terminal: it calls the
    /// tool with curl, cuts the stream, and resumes it.
    Demo,
    /// The history in a store: sessions, tool calls, one stream's events, a summary.
    ///
    /// Reads the store given by --store, as the proxy does; an SQLite file
    /// is opened read-only, so it can be inspected while a proxy writes it.
    /// A table for people, --json for scripts.
    Inspect(crate::inspect::InspectArgs),
}

/// The options of the proxy command only: how requests go upstream.
#[derive(Debug, Args)]
pub struct ProxyOptions {
    /// Request bodies up to N bytes are read whole before they go upstream,
    /// so a broken one never reaches it; longer ones stream (`off`: all stream)
    #[arg(
        long,
        env = "MCP_RESUME_REQUEST_BUFFER_BYTES",
        value_name = "N",
        default_value_t = BytesOrOff(Some(ReverseProxy::DEFAULT_REQUEST_BUFFER_BYTES as u64))
    )]
    request_buffer_bytes: BytesOrOff,

    /// How long the upstream may take to send response headers before the
    /// client gets 504 (`off` or a duration); a started stream has no limit
    #[arg(
        long,
        env = "MCP_RESUME_UPSTREAM_HEADER_TIMEOUT",
        value_name = "DUR",
        default_value_t = DurationOrOff(Some(ReverseProxy::DEFAULT_UPSTREAM_HEADER_TIMEOUT))
    )]
    upstream_header_timeout: DurationOrOff,

    /// Headers telling the upstream the client's address and the Host it used
    #[arg(
        long,
        env = "MCP_RESUME_FORWARDED_HEADERS",
        value_name = "WHICH",
        value_enum,
        default_value_t = ForwardedArg::from(ForwardedHeaders::default())
    )]
    forwarded_headers: ForwardedArg,

    /// Keep and extend the X-Forwarded-*/Forwarded headers clients send
    /// (only behind a proxy that sets them); `false` replaces them
    #[arg(
        long,
        env = "MCP_RESUME_TRUST_FORWARDED_HEADERS",
        value_name = "BOOL",
        action = ArgAction::Set,
        default_value_t = false
    )]
    trust_forwarded_headers: bool,

    /// PEM bundle of the CAs an https:// upstream's certificate must chain
    /// to, instead of the system's root certificates (always verified)
    #[arg(long, env = "MCP_RESUME_UPSTREAM_CA_FILE", value_name = "PATH")]
    upstream_ca_file: Option<PathBuf>,

    /// Request header that identifies the caller (`none`: no binding): streams
    /// are bound to its SHA-256, and a resume under another value, or none,
    /// is refused like an unknown id
    #[arg(
        long,
        env = "MCP_RESUME_IDENTITY_HEADER",
        value_name = "NAME",
        default_value_t = HeaderOrNone(Some(DEFAULT_IDENTITY_HEADER))
    )]
    identity_header: HeaderOrNone,

    /// Before a resume is replayed, send its GET (without Last-Event-ID) to
    /// the upstream, and pass a 401, 403 or 404 on instead: costs one upstream
    /// request per resume; `false` replays to a token the upstream has revoked
    #[arg(
        long,
        env = "MCP_RESUME_AUTHORIZE_RESUMES_WITH_UPSTREAM",
        value_name = "BOOL",
        action = ArgAction::Set,
        default_value_t = DEFAULT_AUTHORIZE_RESUMES_WITH_UPSTREAM
    )]
    authorize_resumes_with_upstream: bool,

    /// Answer 2026-07-28 tool calls with durable tasks (the
    /// io.modelcontextprotocol/tasks extension) for clients that declare it,
    /// stored like streams; see docs/tasks.md
    #[arg(
        long,
        env = "MCP_RESUME_TASKS",
        value_name = "BOOL",
        action = ArgAction::Set,
        default_value_t = false
    )]
    tasks: bool,

    /// With --tasks: a call whose result has not come after this becomes a
    /// task (`0s`: every call of a declaring client)
    #[arg(
        long,
        env = "MCP_RESUME_TASK_AFTER",
        value_name = "DUR",
        default_value_t = CliDuration(TasksLayer::DEFAULT_TASK_AFTER)
    )]
    task_after: CliDuration,

    /// With --tasks: --task-after for one tool, as NAME=DUR; repeatable
    /// (comma-separated in the variable)
    #[arg(
        long = "task-tool",
        env = "MCP_RESUME_TASK_TOOLS",
        value_name = "NAME=DUR",
        value_delimiter = ','
    )]
    task_tools: Vec<ToolThreshold>,

    /// With --tasks: a tool that only runs as a task; calls from clients
    /// without the extension get error -32021; repeatable
    #[arg(
        long = "task-required",
        env = "MCP_RESUME_TASK_REQUIRED",
        value_name = "NAME",
        value_delimiter = ','
    )]
    task_required: Vec<String>,

    /// With --tasks: how long a task is kept from its creation, at most
    /// --max-age (the default)
    #[arg(long, env = "MCP_RESUME_TASK_TTL", value_name = "DUR")]
    task_ttl: Option<CliDuration>,

    /// With --tasks: the polling interval suggested to clients
    #[arg(
        long,
        env = "MCP_RESUME_TASK_POLL_INTERVAL",
        value_name = "DUR",
        default_value_t = CliDuration(TasksLayer::DEFAULT_POLL_INTERVAL)
    )]
    task_poll_interval: CliDuration,
}

impl ProxyOptions {
    /// The tasks gateway on `layer`'s store, identity and caps, if `--tasks`.
    pub fn tasks_layer(&self, layer: &ResumabilityLayer) -> Option<TasksLayer> {
        if !self.tasks {
            return None;
        }
        let mut tasks = TasksLayer::new(layer)
            .task_after(self.task_after.0)
            .poll_interval(self.task_poll_interval.0);
        for threshold in &self.task_tools {
            tasks = tasks.tool_task_after(threshold.tool.clone(), threshold.after);
        }
        for tool in &self.task_required {
            tasks = tasks.require_task(tool.clone());
        }
        if let Some(ttl) = self.task_ttl {
            tasks = tasks.ttl(ttl.0);
        }
        Some(tasks)
    }

    /// How an `https://` upstream's certificate is verified: the
    /// `--upstream-ca-file` bundle, or the system's root certificates; read
    /// now, so that a missing file or an empty system store stops the
    /// start. `None` for an `http://` upstream.
    pub fn upstream_tls(&self, upstream: &Upstream) -> Result<Option<UpstreamTls>, TlsConfigError> {
        if !upstream.is_https() {
            if let Some(path) = &self.upstream_ca_file {
                tracing::warn!(
                    path = %path.display(),
                    "--upstream-ca-file is unused: the upstream is http://"
                );
            }
            return Ok(None);
        }
        match &self.upstream_ca_file {
            Some(path) => UpstreamTls::from_ca_file(path).map(Some),
            None => UpstreamTls::system_roots().map(Some),
        }
    }

    /// `layer` as the proxy needs it: streams bound to the caller's
    /// `--identity-header`, and resumes checked with the upstream, whose
    /// authentication sits behind the layer.
    pub fn caller_checks(&self, layer: ResumabilityLayer) -> ResumabilityLayer {
        let layer = layer.authorize_resumes_with_service(self.authorize_resumes_with_upstream);
        match &self.identity_header.0 {
            Some(name) => layer.identity_header(name.clone()),
            None => layer,
        }
    }

    /// Says who callers are and whether resumes are checked with the
    /// upstream, so a refused resume is no surprise.
    pub fn log_caller_checks(&self) {
        let identity = match &self.identity_header.0 {
            Some(name) => format!("streams are bound to the SHA-256 of the caller's {name} header"),
            None => "streams are not bound to a caller (--identity-header none)".to_owned(),
        };
        let resumes = if self.authorize_resumes_with_upstream {
            "each resume is checked with the upstream before it is replayed"
        } else {
            "resumes are replayed without asking the upstream (--authorize-resumes-with-upstream false)"
        };
        tracing::info!("{identity}; {resumes}");
    }

    /// The reverse proxy to `upstream`.
    pub fn reverse_proxy(&self, upstream: Upstream) -> ReverseProxy {
        let request_buffer_bytes = self
            .request_buffer_bytes
            .0
            // A limit past the address space buffers everything the memory can hold.
            .map(|bytes| usize::try_from(bytes).unwrap_or(usize::MAX));
        ReverseProxy::new(upstream)
            .request_buffer_bytes(request_buffer_bytes)
            .upstream_header_timeout(self.upstream_header_timeout.0)
            .forwarded_headers(self.forwarded_headers.into())
            .trust_forwarded_headers(self.trust_forwarded_headers)
    }
}

/// A whole number from 1, as a `usize`.
fn at_least_one() -> RangedU64ValueParser<usize> {
    RangedU64ValueParser::new().range(1..)
}

/// The options of both commands. `global` so that they are accepted, and
/// listed by `--help`, before or after the command name.
#[derive(Debug, Args)]
pub struct Options {
    /// Address to serve on; port 0 picks a free port
    #[arg(
        long,
        env = "MCP_RESUME_LISTEN",
        value_name = "ADDR",
        default_value_t = DEFAULT_LISTEN_ADDR,
        global = true
    )]
    pub listen: SocketAddr,

    /// Serve /metrics, /healthz, /readyz and the status page on this
    /// address, apart from the MCP port (plain HTTP; off unless given)
    #[arg(
        long,
        env = "MCP_RESUME_ADMIN_LISTEN",
        value_name = "ADDR",
        global = true
    )]
    pub admin_listen: Option<SocketAddr>,

    /// Event store: `sqlite:PATH`, `memory`, `redis://HOST:PORT/[DB]` or a Redis Cluster's `redis+cluster://HOST:PORT,HOST:PORT` (builds with the `redis` feature)
    #[arg(
        long,
        env = "MCP_RESUME_STORE",
        value_name = "SPEC",
        default_value_t = StoreSpec::default_sqlite(),
        value_parser = parse_store,
        global = true
    )]
    pub store: StoreSpec,

    /// SQLite sync: `normal` survives a process crash, `full` also power loss
    #[arg(
        long,
        env = "MCP_RESUME_SYNC",
        value_name = "MODE",
        value_enum,
        default_value_t = SyncArg::from(SqliteOptions::DEFAULT_SYNC),
        global = true
    )]
    sync: SyncArg,

    /// SQLite file size cap in bytes, or `off`; appends past it fail (see --on-store-failure)
    #[arg(
        long,
        env = "MCP_RESUME_MAX_DB_BYTES",
        value_name = "N",
        default_value_t = BytesOrOff(None),
        global = true
    )]
    max_db_bytes: BytesOrOff,

    /// SQLite write-ahead log bound in bytes: past it the writer waits for a full checkpoint
    #[arg(
        long,
        env = "MCP_RESUME_MAX_WAL_BYTES",
        value_name = "N",
        default_value_t = SqliteOptions::DEFAULT_MAX_WAL_BYTES,
        value_parser = clap::value_parser!(u64).range(SqliteOptions::MIN_MAX_WAL_BYTES..),
        global = true
    )]
    max_wal_bytes: u64,

    /// Retry hint sent to clients: how long they wait before reconnecting
    #[arg(
        long,
        env = "MCP_RESUME_RETRY",
        value_name = "DUR",
        default_value_t = CliDuration(ResumabilityLayer::DEFAULT_RETRY),
        global = true
    )]
    retry: CliDuration,

    /// How long a stream runs on after its client left
    #[arg(
        long,
        env = "MCP_RESUME_DETACH_TIMEOUT",
        value_name = "DUR",
        default_value_t = CliDuration(ResumabilityLayer::DEFAULT_DETACH_TIMEOUT),
        global = true
    )]
    detach_timeout: CliDuration,

    /// How often leases are renewed that keep a fleet's instances in step (a stream read on another instance keeps running; a dead producer's readers end)
    #[arg(
        long,
        env = "MCP_RESUME_LEASE_PERIOD",
        value_name = "DUR",
        default_value_t = CliDuration(ResumabilityLayer::DEFAULT_LEASE_PERIOD),
        global = true
    )]
    lease_period: CliDuration,

    /// Ended streams idle this long are deleted
    #[arg(
        long,
        env = "MCP_RESUME_MAX_AGE",
        value_name = "DUR",
        default_value_t = CliDuration(Retention::DEFAULT_MAX_AGE),
        global = true
    )]
    max_age: CliDuration,

    /// Per-stream event cap; resuming from before the kept events is refused
    #[arg(
        long,
        env = "MCP_RESUME_MAX_EVENTS_PER_STREAM",
        value_name = "N",
        default_value_t = Retention::DEFAULT_MAX_EVENTS_PER_STREAM,
        value_parser = clap::value_parser!(u64).range(1..),
        global = true
    )]
    max_events_per_stream: u64,

    /// Largest SSE event accepted from upstream, in bytes; a larger one ends its stream
    #[arg(
        long,
        env = "MCP_RESUME_MAX_EVENT_BYTES",
        value_name = "N",
        default_value_t = ResumabilityLayer::DEFAULT_MAX_EVENT_BYTES,
        value_parser = at_least_one(),
        global = true
    )]
    max_event_bytes: usize,

    /// Live streams kept at once, of all sessions; beyond it, streams are served without resumability
    #[arg(
        long,
        env = "MCP_RESUME_MAX_LIVE_STREAMS",
        value_name = "N",
        default_value_t = ResumabilityLayer::DEFAULT_MAX_LIVE_STREAMS,
        value_parser = at_least_one(),
        global = true
    )]
    max_live_streams: usize,

    /// Live streams one session may have; beyond it, streams are served without resumability
    #[arg(
        long,
        env = "MCP_RESUME_MAX_LIVE_STREAMS_PER_SESSION",
        value_name = "N",
        default_value_t = ResumabilityLayer::DEFAULT_MAX_LIVE_STREAMS_PER_SESSION,
        value_parser = at_least_one(),
        global = true
    )]
    max_live_streams_per_session: usize,

    /// When the store fails: `open` serves without resumability, `closed` answers 503
    #[arg(
        long,
        env = "MCP_RESUME_ON_STORE_FAILURE",
        value_name = "POLICY",
        value_enum,
        default_value_t = OnStoreFailure::from(StoreFailurePolicy::default()),
        global = true
    )]
    on_store_failure: OnStoreFailure,

    /// SSE polling for 2025-11-25 clients: end each response after DUR while
    /// the stream goes on (`off` or a duration)
    #[arg(
        long,
        env = "MCP_RESUME_POLL_AFTER",
        value_name = "DUR",
        default_value_t = DurationOrOff(None),
        global = true
    )]
    poll_after: DurationOrOff,

    /// On SIGINT/SIGTERM: how long streams may finish before exit
    #[arg(
        long,
        env = "MCP_RESUME_GRACE_PERIOD",
        value_name = "DUR",
        default_value_t = CliDuration(ServeOptions::DEFAULT_GRACE_PERIOD),
        global = true
    )]
    grace_period: CliDuration,

    /// Host names (with or without :port) accepted besides loopback names; turns the
    /// Host check on when not listening on loopback (comma-separated; `*`: any)
    #[arg(
        long,
        env = "MCP_RESUME_ALLOWED_HOSTS",
        value_name = "HOSTS",
        value_delimiter = ',',
        global = true
    )]
    allowed_hosts: Vec<AllowedHost>,

    /// Origins (scheme://host[:port], `null`) accepted besides loopback ones; turns the
    /// Origin check on when not listening on loopback (comma-separated; `*`: any)
    #[arg(
        long,
        env = "MCP_RESUME_ALLOWED_ORIGINS",
        value_name = "ORIGINS",
        value_delimiter = ',',
        global = true
    )]
    allowed_origins: Vec<AllowedOrigin>,

    /// Client connections open at once; at the cap, new ones wait until one closes
    #[arg(
        long,
        env = "MCP_RESUME_MAX_CONNECTIONS",
        value_name = "N",
        default_value_t = ServeOptions::DEFAULT_MAX_CONNECTIONS,
        value_parser = at_least_one(),
        global = true
    )]
    max_connections: usize,

    /// Serve over TLS with this PEM certificate chain (and --tls-key);
    /// reloaded on SIGHUP or when the files change. Clients may use HTTP/2 (ALPN)
    #[arg(
        long,
        env = "MCP_RESUME_TLS_CERT",
        value_name = "PATH",
        requires = "tls_key",
        global = true
    )]
    tls_cert: Option<PathBuf>,

    /// The PEM private key of --tls-cert
    #[arg(
        long,
        env = "MCP_RESUME_TLS_KEY",
        value_name = "PATH",
        requires = "tls_cert",
        global = true
    )]
    tls_key: Option<PathBuf>,
}

impl Options {
    /// The listener's TLS, read now so that a bad file stops the start, or
    /// `None` without `--tls-cert`.
    pub fn listener_tls(&self) -> Result<Option<ListenerTls>, TlsConfigError> {
        match (&self.tls_cert, &self.tls_key) {
            (Some(cert), Some(key)) => ListenerTls::from_pem_files(cert, key).map(Some),
            // clap requires both or neither.
            _ => Ok(None),
        }
    }

    /// How long streams are kept, in any store.
    pub fn retention(&self) -> Retention {
        Retention::new()
            .max_age(self.max_age.0)
            .max_events_per_stream(self.max_events_per_stream)
    }

    /// How an SQLite store at `path` is opened.
    pub fn sqlite_options(&self, path: &Path) -> SqliteOptions {
        let sqlite = SqliteOptions::new(path)
            .sync(self.sync.into())
            .max_wal_bytes(self.max_wal_bytes)
            .retention(self.retention());
        match self.max_db_bytes {
            BytesOrOff(Some(bytes)) => sqlite.max_size_bytes(bytes),
            BytesOrOff(None) => sqlite,
        }
    }

    /// The layer, storing streams in `store`.
    pub fn layer(&self, store: Arc<dyn EventStore>) -> ResumabilityLayer {
        let layer = ResumabilityLayer::new(store)
            .retry(self.retry.0)
            .detach_timeout(self.detach_timeout.0)
            .lease_period(self.lease_period.0)
            // The event cap needs no setting here: the layer takes the store's
            // retention, which `retention` set from the same option.
            .max_event_bytes(self.max_event_bytes)
            .max_live_streams(self.max_live_streams)
            .max_live_streams_per_session(self.max_live_streams_per_session)
            .on_store_failure(self.on_store_failure.into());
        match self.poll_after {
            DurationOrOff(Some(after)) => layer.poll_after(after),
            DurationOrOff(None) => layer,
        }
    }

    /// On SIGINT/SIGTERM, how long streams may finish.
    pub fn grace_period(&self) -> Duration {
        self.grace_period.0
    }

    /// DNS-rebinding protection for a server listening on `listening_on`:
    /// on a loopback address, Host and Origin must be loopback names or
    /// allow-listed; elsewhere each check is on only if its list is given.
    pub fn rebinding_guard(&self, listening_on: IpAddr) -> RebindingGuardLayer {
        let mut guard = RebindingGuardLayer::for_listener(listening_on);
        if !self.allowed_hosts.is_empty() {
            guard = guard.allow_hosts(self.allowed_hosts.iter().cloned());
        }
        if !self.allowed_origins.is_empty() {
            guard = guard.allow_origins(self.allowed_origins.iter().cloned());
        }
        guard
    }

    /// How connections are served and shut down.
    pub fn serve_options(&self) -> ServeOptions {
        ServeOptions::new()
            .grace_period(self.grace_period())
            .max_connections(self.max_connections)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::{CommandFactory, FromArgMatches};
    use mcp_resume::store::{MemoryEventStore, SqliteEventStore};

    #[test]
    fn the_command_line_is_well_formed() {
        Cli::command().debug_assert();
    }

    /// `args` parsed as they are, whatever `MCP_RESUME_*` variables the
    /// environment of the test holds.
    fn try_parse(args: &[&str]) -> Result<Cli, clap::Error> {
        let command = Cli::command()
            .mut_args(|arg| arg.env(None))
            .mut_subcommand("proxy", |proxy| proxy.mut_args(|arg| arg.env(None)));
        Cli::from_arg_matches(&command.try_get_matches_from(args)?)
    }

    fn parse(args: &[&str]) -> Cli {
        try_parse(args).unwrap()
    }

    #[test]
    fn options_go_before_or_after_the_command() {
        let before = parse(&["mcp-resume", "--listen", "127.0.0.1:0", "demo"]);
        let after = parse(&["mcp-resume", "demo", "--listen", "127.0.0.1:0"]);
        assert_eq!(before.options.listen, after.options.listen);
        assert_eq!(after.options.listen.port(), 0);
        assert!(try_parse(&["mcp-resume", "proxy"]).is_err());
    }

    #[test]
    fn with_no_options_everything_is_at_the_library_defaults() {
        let options = parse(&["mcp-resume", "demo"]).options;
        assert_eq!(options.listen, DEFAULT_LISTEN_ADDR);
        assert_eq!(options.store, StoreSpec::default_sqlite());
        assert_eq!(options.retention(), Retention::default());
        let path = Path::new(SqliteEventStore::DEFAULT_PATH);
        assert_eq!(
            format!("{:?}", options.sqlite_options(path)),
            format!("{:?}", SqliteOptions::default())
        );
        let store: Arc<dyn EventStore> = Arc::new(MemoryEventStore::new());
        assert_eq!(
            format!("{:?}", options.layer(store.clone())),
            format!("{:?}", ResumabilityLayer::new(store))
        );
        assert_eq!(options.serve_options(), ServeOptions::default());
    }

    #[test]
    fn options_reach_the_library() {
        let options = parse(&[
            "mcp-resume",
            "demo",
            "--max-age",
            "2m",
            "--max-events-per-stream",
            "7",
            "--sync",
            "full",
            "--max-db-bytes",
            "1048576",
            "--retry",
            "250ms",
            "--poll-after",
            "30s",
            "--on-store-failure",
            "closed",
            "--grace-period",
            "3s",
            "--max-connections",
            "5",
        ])
        .options;
        let retention = Retention::new()
            .max_age(Duration::from_secs(120))
            .max_events_per_stream(7);
        assert_eq!(options.retention(), retention);
        let path = Path::new("x.db");
        assert_eq!(
            format!("{:?}", options.sqlite_options(path)),
            format!(
                "{:?}",
                SqliteOptions::new(path)
                    .sync(mcp_resume::store::SyncMode::Full)
                    .max_size_bytes(1 << 20)
                    .retention(retention)
            )
        );
        let store: Arc<dyn EventStore> = Arc::new(MemoryEventStore::new());
        assert_eq!(
            format!("{:?}", options.layer(store.clone())),
            format!(
                "{:?}",
                ResumabilityLayer::new(store)
                    .retry(Duration::from_millis(250))
                    .poll_after(Duration::from_secs(30))
                    .on_store_failure(StoreFailurePolicy::FailClosed)
            )
        );
        assert_eq!(
            options.serve_options(),
            ServeOptions::new()
                .grace_period(Duration::from_secs(3))
                .max_connections(5)
        );
    }

    /// The proxy command's own options.
    fn proxy_options(args: &[&str]) -> ProxyOptions {
        let mut all = vec![
            "mcp-resume",
            "proxy",
            "--upstream",
            "http://127.0.0.1:8000/mcp",
        ];
        all.extend_from_slice(args);
        match parse(&all).command {
            Command::Proxy { proxy, .. } => *proxy,
            Command::Demo | Command::Inspect(_) => unreachable!("parsed as the proxy command"),
        }
    }

    #[test]
    fn proxy_options_reach_the_library() {
        let upstream: Upstream = "http://127.0.0.1:8000/mcp".parse().unwrap();
        assert_eq!(
            format!("{:?}", proxy_options(&[]).reverse_proxy(upstream.clone())),
            format!("{:?}", ReverseProxy::new(upstream.clone()))
        );
        let options = proxy_options(&[
            "--request-buffer-bytes",
            "off",
            "--upstream-header-timeout",
            "250ms",
            "--forwarded-headers",
            "both",
            "--trust-forwarded-headers",
            "true",
        ]);
        assert_eq!(
            format!("{:?}", options.reverse_proxy(upstream.clone())),
            format!(
                "{:?}",
                ReverseProxy::new(upstream.clone())
                    .request_buffer_bytes(None)
                    .upstream_header_timeout(Some(Duration::from_millis(250)))
                    .forwarded_headers(ForwardedHeaders::Both)
                    .trust_forwarded_headers(true)
            )
        );
        let options = proxy_options(&[
            "--request-buffer-bytes",
            "1024",
            "--upstream-header-timeout",
            "off",
        ]);
        assert_eq!(
            format!("{:?}", options.reverse_proxy(upstream.clone())),
            format!(
                "{:?}",
                ReverseProxy::new(upstream)
                    .request_buffer_bytes(Some(1024))
                    .upstream_header_timeout(None)
            )
        );
    }

    #[test]
    fn the_proxy_binds_callers_and_asks_the_upstream_unless_told_not_to() {
        let store: Arc<dyn EventStore> = Arc::new(MemoryEventStore::new());
        let layer = || ResumabilityLayer::new(store.clone());
        let api_key = http::HeaderName::from_static("x-api-key");
        let cases = [
            (
                &[][..],
                layer()
                    .identity_header(DEFAULT_IDENTITY_HEADER)
                    .authorize_resumes_with_service(true),
            ),
            (
                &[
                    "--identity-header",
                    "none",
                    "--authorize-resumes-with-upstream",
                    "false",
                ][..],
                layer(),
            ),
            (
                &["--identity-header", "X-Api-Key"][..],
                layer()
                    .identity_header(api_key.clone())
                    .authorize_resumes_with_service(true),
            ),
        ];
        for (args, expected) in cases {
            assert_eq!(
                format!("{:?}", proxy_options(args).caller_checks(layer())),
                format!("{expected:?}"),
                "{args:?}"
            );
        }
        // The layer's Debug says whether streams are bound, not to which header.
        assert_eq!(
            proxy_options(&[]).identity_header,
            HeaderOrNone(Some(http::header::AUTHORIZATION))
        );
        assert_eq!(
            proxy_options(&["--identity-header", "X-Api-Key"]).identity_header,
            HeaderOrNone(Some(api_key))
        );
    }

    #[test]
    fn the_rebinding_guard_follows_the_listener_and_the_allow_lists() {
        let loopback: IpAddr = "127.0.0.1".parse().unwrap();
        let everywhere: IpAddr = "0.0.0.0".parse().unwrap();
        let defaults = parse(&["mcp-resume", "demo"]).options;
        assert_eq!(
            defaults.rebinding_guard(loopback),
            RebindingGuardLayer::loopback()
        );
        assert_eq!(
            defaults.rebinding_guard(everywhere),
            RebindingGuardLayer::off()
        );

        let options = parse(&[
            "mcp-resume",
            "demo",
            "--allowed-hosts",
            "mcp.example.com,other.example:8443",
            "--allowed-origins",
            "https://app.example.com",
        ])
        .options;
        let hosts: [AllowedHost; 2] = [
            "mcp.example.com".parse().unwrap(),
            "other.example:8443".parse().unwrap(),
        ];
        let origins: [AllowedOrigin; 1] = ["https://app.example.com".parse().unwrap()];
        for listening_on in [loopback, everywhere] {
            assert_eq!(
                options.rebinding_guard(listening_on),
                RebindingGuardLayer::off()
                    .allow_hosts(hosts.clone())
                    .allow_origins(origins.clone())
            );
        }
        let only_hosts = parse(&["mcp-resume", "demo", "--allowed-hosts", "*"]).options;
        let guard = only_hosts.rebinding_guard(everywhere);
        assert!(guard.checks_host() && !guard.checks_origin());
        assert!(
            try_parse(&["mcp-resume", "demo", "--allowed-origins", "app.example.com"]).is_err()
        );
    }

    #[test]
    fn task_options_reach_the_gateway() {
        let layer = ResumabilityLayer::new(Arc::new(mcp_resume::store::MemoryEventStore::new()));
        assert!(proxy_options(&[]).tasks_layer(&layer).is_none());
        let tasks = proxy_options(&[
            "--tasks",
            "true",
            "--task-after",
            "2s",
            "--task-tool",
            "slow_compute=0s,confirm=250ms",
            "--task-required",
            "failing_job",
            "--task-ttl",
            "10m",
            "--task-poll-interval",
            "1s",
        ])
        .tasks_layer(&layer)
        .expect("--tasks true");
        let expected = TasksLayer::new(&layer)
            .task_after(Duration::from_secs(2))
            .poll_interval(Duration::from_secs(1))
            .tool_task_after("slow_compute", Duration::ZERO)
            .tool_task_after("confirm", Duration::from_millis(250))
            .require_task("failing_job")
            .ttl(Duration::from_secs(600));
        assert_eq!(format!("{tasks:?}"), format!("{expected:?}"));
        let defaults = proxy_options(&["--tasks", "true"])
            .tasks_layer(&layer)
            .unwrap();
        assert_eq!(
            format!("{defaults:?}"),
            format!("{:?}", TasksLayer::new(&layer))
        );
        assert!(
            try_parse(&[
                "mcp-resume",
                "proxy",
                "--upstream",
                "http://x/mcp",
                "--task-tool",
                "noequals"
            ])
            .is_err()
        );
    }
}
