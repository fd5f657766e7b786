//! The admin listener (`--admin-listen ADDR`): what an operator, a
//! Prometheus server or a load balancer asks of a running `mcp-resume`, on
//! an address of its own, apart from the MCP port. Plain HTTP, `GET` only:
//!
//! | Path | Answer |
//! |---|---|
//! | `/metrics` | the Prometheus text format, rendered on request from the recorder installed at start-up (names: `mcp_resume::metrics`) |
//! | `/healthz` | `200 ok` while the process serves |
//! | `/readyz` | `200 ready` when the event store answers its health check; `503` with the store's error otherwise, or while shutting down |
//! | `/` | the status page: live streams, recent resumes and refusals, a chart of the last minutes |
//! | `/status.json` | what the page shows, polled by it every second |
//!
//! The page's counters are read from the same recorder as `/metrics`, so
//! the two agree; its list of streams and of resumes comes from
//! [`ResumabilityLayer::snapshot`](mcp_resume::ResumabilityLayer::snapshot),
//! at most [`STATUS_STREAMS`](server::STATUS_STREAMS) streams. Every second a sampler keeps the
//! recorder's histograms up to date and records the counters into a ring of
//! [`HISTORY_SAMPLES`](server::HISTORY_SAMPLES) samples, the chart's data.

mod exposition;
mod history;
mod routes;
mod server;
mod status;

pub use server::{Admin, install_recorder};
