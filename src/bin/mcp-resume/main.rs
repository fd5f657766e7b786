//! The `mcp-resume` command: makes any MCP Streamable HTTP server resumable.
//!
//! ```text
//! mcp-resume proxy --upstream http://127.0.0.1:8000/mcp   # the layer in front of a streaming reverse proxy
//! mcp-resume demo                                         # a built-in MCP server with a slow tool, behind the layer
//! ```
//!
//! On start it prints one line to stdout, `mcp-resume listening on
//! http://<addr>` (`https://` with `--tls-cert`; scripts wait for it), and
//! logs to stderr (`RUST_LOG`).
//! SIGINT or SIGTERM stops accepting, lets streams finish for the grace
//! period, flushes and closes the store, and exits 0. Exit status 2 is a
//! usage error, 1 a failure to start or to close the store.
#![deny(unsafe_code)]
#![warn(missing_docs)]

mod admin;
mod cli;
mod demo;
mod inspect;
mod shutdown;
mod store;
mod values;

use std::io::IsTerminal;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use mcp_resume::proxy::{ListenerTls, RebindingGuardLayer, TlsConfigError};
use mcp_resume::store::StoreError;
use tokio::net::TcpListener;
use tower::Layer;
use tracing_subscriber::EnvFilter;

use cli::{Cli, Command};
use demo::DemoServer;
use shutdown::{Signals, serve_until_signalled};
use store::StoreSpec;

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
    #[error("cannot set up TLS: {0}")]
    Tls(TlsConfigError),
    #[error("{0}")]
    Inspect(inspect::InspectError),
    #[error("cannot install the Prometheus recorder for --admin-listen: {0}")]
    Metrics(metrics_exporter_prometheus::BuildError),
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
    if let Command::Inspect(inspect) = &cli.command {
        return inspect::run(inspect, &cli.options.store)
            .await
            .map_err(Failure::Inspect);
    }
    let options = cli.options;
    // Read first, so that a bad certificate file stops the start before
    // anything is opened.
    let listener_tls = options.listener_tls().map_err(Failure::Tls)?;
    let upstream_tls = match &cli.command {
        Command::Proxy { upstream, proxy } => proxy.upstream_tls(upstream).map_err(Failure::Tls)?,
        Command::Demo => None,
        Command::Inspect(_) => unreachable!("inspect returned above"),
    };
    // Installed before anything is recorded, so that no count is lost.
    let recorder = match options.admin_listen {
        Some(_) => Some(admin::install_recorder().map_err(Failure::Metrics)?),
        None => None,
    };
    let scheme = if listener_tls.is_some() {
        "https"
    } else {
        "http"
    };
    let store = options
        .store
        .open(&options)
        .await
        .map_err(|error| Failure::Store {
            spec: options.store.clone(),
            error,
        })?;
    let layer = match &cli.command {
        Command::Proxy { proxy, .. } => proxy.caller_checks(options.layer(store.clone())),
        Command::Demo => options.layer(store.clone()),
        Command::Inspect(_) => unreachable!("inspect returned above"),
    };
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
    let admin = match (options.admin_listen, recorder) {
        (Some(admin_addr), Some(recorder)) => {
            let listen_failed = |error| Failure::Listen {
                addr: admin_addr,
                error,
            };
            let listener = TcpListener::bind(admin_addr).await.map_err(listen_failed)?;
            let spec = options.store.to_string();
            let admin = admin::Admin::start(listener, layer.clone(), spec, recorder);
            Some(admin.map_err(listen_failed)?)
        }
        _ => None,
    };
    // Installed before the listening line, so a script that signals as soon
    // as it reads the line gets a graceful shutdown, not the default kill.
    let signals = Signals::install().map_err(Failure::Signals)?;
    // The one line scripts wait for.
    print_stdout(&format!("mcp-resume listening on {scheme}://{addr}"));
    if let Some(admin) = &admin {
        // The second line, for scripts that use the admin listener.
        print_stdout(&format!("mcp-resume admin on http://{}", admin.addr()));
        tracing::info!(
            "admin listener on http://{}: /metrics, /healthz, /readyz, the status page /",
            admin.addr()
        );
    }
    tracing::info!(store = %options.store, "serving on {scheme}://{addr}");
    if matches!(options.store, StoreSpec::Sqlite(_) | StoreSpec::Memory) {
        // Nothing here can see the other instances of a fleet (each has
        // its own file), so this is said to every one, once.
        tracing::info!(
            "this store serves this instance alone: behind a load balancer with several instances, \
             a resume that lands on another instance than the one that produced the stream is refused; \
             give every instance the same `--store redis://...` instead"
        );
    }
    let certificate_reloads = listener_tls
        .as_ref()
        .map(|tls| tls.reload_when_changed(ListenerTls::DEFAULT_RELOAD_INTERVAL));

    // Outermost, so that a refused request reaches neither the store nor the server.
    let guard = options.rebinding_guard(addr.ip());
    log_rebinding_guard(&guard);
    match cli.command {
        Command::Proxy { upstream, proxy } => {
            tracing::info!(
                "forwarding to {upstream}; clients use {scheme}://{addr}{}",
                upstream.path()
            );
            proxy.log_caller_checks();
            let mut reverse_proxy = proxy.reverse_proxy(upstream);
            if let Some(tls) = upstream_tls {
                reverse_proxy = reverse_proxy.upstream_tls(tls);
            }
            let resumable = layer.layer(reverse_proxy);
            match proxy.tasks_layer(&layer) {
                Some(tasks) => {
                    tracing::info!(
                        ?tasks,
                        "2026-07-28 tool calls become durable tasks (--tasks)"
                    );
                    let service = guard.layer(tasks.layer(resumable));
                    serve_until_signalled(listener, listener_tls, service, signals, &options).await;
                }
                None => {
                    let service = guard.layer(resumable);
                    serve_until_signalled(listener, listener_tls, service, signals, &options).await;
                }
            }
        }
        Command::Demo => {
            print_stdout(&demo::walkthrough(addr));
            let service = guard.layer(layer.layer(DemoServer::new()));
            serve_until_signalled(listener, listener_tls, service, signals, &options).await;
        }
        Command::Inspect(_) => unreachable!("inspect returned above"),
    }
    if let Some(reloads) = certificate_reloads {
        reloads.abort();
    }

    // Not ready any more: the admin listener goes first.
    drop(admin);
    tracing::info!(stats = ?layer.stats(), "closing the event store");
    // Close flushes too; flushing first makes a flush failure visible on its own.
    if let Err(error) = store.flush().await {
        tracing::error!(%error, "the event store failed to flush");
    }
    store.close().await.map_err(Failure::Close)?;
    tracing::info!("stopped");
    Ok(())
}

/// Says which DNS-rebinding checks are on, so a refused client's 403 is no surprise.
fn log_rebinding_guard(guard: &RebindingGuardLayer) {
    match (guard.checks_host(), guard.checks_origin()) {
        (false, false) => tracing::info!(
            "DNS-rebinding protection off (not listening on loopback; --allowed-hosts or --allowed-origins turn it on)"
        ),
        (hosts, origins) => tracing::info!(
            host_check = hosts,
            origin_check = origins,
            "DNS-rebinding protection: requests naming other than loopback or allowed hosts are refused with 403"
        ),
    }
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
