//! An [rmcp](https://crates.io/crates/rmcp) server made resumable by one layer.
//!
//! The server has one slow tool, `slow_count`: it sends a progress notification every second
//! (30 by default), then returns. rmcp's `StreamableHttpService` serves it at `/mcp` in an axum
//! router, behind [`ResumabilityLayer`] on SQLite (`./mcp_events.db`). Every SSE event gets a
//! durable id and is committed before it is sent; when the client goes away the tool keeps
//! running and its events keep being stored; a `GET` with `Last-Event-ID` replays what was
//! missed and continues live.
//!
//! ```text
//! cargo run --example axum_rmcp            # listens on 127.0.0.1:8000 (env MCP_RESUME_ADDR)
//! ```
//!
//! Then, in another terminal, the walkthrough (curl only) initializes a session, calls
//! `slow_count`, cuts its stream after a few events, and resumes it with `Last-Event-ID`:
//!
//! ```text
//! examples/walkthrough.sh http://127.0.0.1:8000/mcp slow_count '{"steps":8}'
//! # session 60cf5a9d-8a39-41a3-977a-43552d5b3d6e
//! # calling slow_count {"steps":8}; cutting the stream after 4 events
//! id: 0f6e2d1c3b4a59687706f5e4d3c2b1a0.0      <- the layer's priming event: a resume point
//! retry: 1000
//! data:
//!
//! id: 0f6e2d1c3b4a59687706f5e4d3c2b1a0.1
//! data: {"jsonrpc":"2.0","method":"notifications/progress","params":{"message":"step 1 of 8",...}}
//! ...
//! # cut after 0f6e2d1c3b4a59687706f5e4d3c2b1a0.3; the tool runs on. Resuming in 2 s with ...
//! id: 0f6e2d1c3b4a59687706f5e4d3c2b1a0.3      <- primed at the resume point
//! retry: 1000
//! data:
//!
//! id: 0f6e2d1c3b4a59687706f5e4d3c2b1a0.4      <- the events missed, at once, then live
//! ...
//! id: 0f6e2d1c3b4a59687706f5e4d3c2b1a0.9
//! data: {"jsonrpc":"2.0","id":2,"result":{"content":[{"type":"text","text":"counted to 8"}],"isError":false}}
//! ```
//!
//! A `Last-Event-ID` that is unknown, expired or from another session gets `400` with a
//! JSON-RPC error, never someone else's events. The events live in `./mcp_events.db`, so a
//! stream that has finished can be replayed for as long as the store retains it.
//!
//! Logs: `RUST_LOG` (default `info,mcp_resume=debug`). rmcp only accepts loopback `Host`
//! headers by default; serving other hosts needs `StreamableHttpServerConfig::with_allowed_hosts`.

use std::sync::Arc;
use std::time::Duration;

use mcp_resume::ResumabilityLayer;
use mcp_resume::store::SqliteEventStore;
use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::{
    CallToolResult, ContentBlock, ProgressNotificationParam, ServerCapabilities, ServerConfig,
};
use rmcp::service::RequestContext;
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::{StreamableHttpServerConfig, StreamableHttpService};
use rmcp::{ErrorData, RoleServer, ServerHandler, tool, tool_handler, tool_router};
use tracing_subscriber::EnvFilter;

/// Arguments of `slow_count`.
#[derive(Debug, rmcp::serde::Deserialize, rmcp::schemars::JsonSchema)]
#[serde(crate = "rmcp::serde")]
#[schemars(crate = "rmcp::schemars")]
struct SlowCountArgs {
    /// How far to count, one step a second (default 30).
    #[serde(default = "default_steps")]
    steps: u32,
}

fn default_steps() -> u32 {
    30
}

#[derive(Clone)]
struct SlowCounter;

#[tool_router]
impl SlowCounter {
    #[tool(
        description = "Count slowly: one progress notification a second (send a progressToken \
                       in _meta to receive them), then return"
    )]
    async fn slow_count(
        &self,
        Parameters(SlowCountArgs { steps }): Parameters<SlowCountArgs>,
        ctx: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, ErrorData> {
        let token = ctx.meta.get_progress_token();
        for step in 1..=steps {
            tokio::time::sleep(Duration::from_secs(1)).await;
            if let Some(token) = &token {
                let progress = ProgressNotificationParam::new(token.clone(), f64::from(step))
                    .with_total(f64::from(steps))
                    .with_message(format!("step {step} of {steps}"));
                ctx.peer
                    .notify_progress(progress)
                    .await
                    .map_err(|error| ErrorData::internal_error(error.to_string(), None))?;
            }
            tracing::info!(step, steps, "counted");
        }
        Ok(CallToolResult::success(vec![ContentBlock::text(format!(
            "counted to {steps}"
        ))]))
    }
}

#[tool_handler]
impl ServerHandler for SlowCounter {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build()).with_instructions(
            "Call slow_count with a progress token, drop the connection, resume.",
        )
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| EnvFilter::new("info,mcp_resume=debug")),
        )
        .init();

    let mcp = StreamableHttpService::new(
        || Ok(SlowCounter),
        Arc::new(LocalSessionManager::default()),
        StreamableHttpServerConfig::default(),
    );
    let resumable = ResumabilityLayer::sqlite(SqliteEventStore::DEFAULT_PATH)?;
    let app = axum::Router::new().route_service("/mcp", tower::Layer::layer(&resumable, mcp));

    let addr = std::env::var("MCP_RESUME_ADDR").unwrap_or_else(|_| "127.0.0.1:8000".to_owned());
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    tracing::info!(
        "resumable MCP server on http://{}/mcp (events in {})",
        listener.local_addr()?,
        SqliteEventStore::DEFAULT_PATH
    );
    axum::serve(listener, app).await?;
    Ok(())
}
