//! The rmcp MCP server the tests and the benchmarks share: one tool, `stream_progress`, that
//! sends `count` progress notifications (optionally `interval_ms` apart), then answers.
//! rmcp's `StreamableHttpService` serves it with stateful sessions and rmcp's own
//! `LocalSessionManager` (its in-memory resumption), with SSE keep-alives off.
//!
//! The integration tests (`tests/it/rmcp_resume.rs`) and the end-to-end benches use it.

use std::sync::Arc;
use std::time::Duration;

use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::{
    CallToolResult, ContentBlock, ProgressNotificationParam, ServerCapabilities, ServerConfig,
};
use rmcp::service::RequestContext;
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use rmcp::{ErrorData, RoleServer, ServerHandler, tool, tool_handler, tool_router};

/// The tool's arguments.
#[derive(Debug, rmcp::serde::Deserialize, rmcp::schemars::JsonSchema)]
#[serde(crate = "rmcp::serde")]
#[schemars(crate = "rmcp::schemars")]
pub struct StreamProgressArgs {
    /// How many progress notifications to send before the result.
    count: u32,
    /// Pause between two notifications, in milliseconds (default 0).
    #[serde(default)]
    interval_ms: u64,
}

/// The server: stateless itself; rmcp makes one per session.
#[derive(Clone)]
pub struct ProgressServer;

#[tool_router]
impl ProgressServer {
    #[tool(description = "Send `count` progress notifications (progress 1..=count), then return")]
    async fn stream_progress(
        &self,
        Parameters(args): Parameters<StreamProgressArgs>,
        ctx: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, ErrorData> {
        let token = ctx
            .meta
            .get_progress_token()
            .ok_or_else(|| ErrorData::invalid_params("a progress token is required", None))?;
        for step in 1..=args.count {
            ctx.peer
                .notify_progress(
                    ProgressNotificationParam::new(token.clone(), f64::from(step))
                        .with_total(f64::from(args.count)),
                )
                .await
                .map_err(|error| ErrorData::internal_error(error.to_string(), None))?;
            if args.interval_ms > 0 {
                tokio::time::sleep(Duration::from_millis(args.interval_ms)).await;
            }
        }
        Ok(CallToolResult::success(vec![ContentBlock::text(format!(
            "sent {} progress notifications",
            args.count
        ))]))
    }
}

#[tool_handler]
impl ServerHandler for ProgressServer {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
    }
}

/// rmcp's service for [`ProgressServer`], and a function that shuts its sessions down.
pub fn mcp_service() -> (
    StreamableHttpService<ProgressServer, LocalSessionManager>,
    impl FnOnce(),
) {
    let config = StreamableHttpServerConfig::default().with_sse_keep_alive(None);
    let shutdown = config.cancellation_token.clone();
    let service = StreamableHttpService::new(
        || Ok(ProgressServer),
        Arc::new(LocalSessionManager::default()),
        config,
    );
    (service, move || shutdown.cancel())
}
