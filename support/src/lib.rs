//! Test support for mcp-resume, shared by its integration tests (`tests/it`), its benches and
//! the interop runs (`tests/interop`, through `examples/fault_proxy.rs`):
//!
//! - [`proxy`]: the fault-injecting TCP proxy. It relays bytes unchanged and cuts connections
//!   where a [`proxy::Faults`] policy says: after N bytes ([`proxy::CutPolicy`]), on demand,
//!   or inside the event streams of chosen HTTP responses ([`proxy::http::HttpFaults`]).
//! - [`progress_server`]: an rmcp MCP server with one tool that streams progress.
//! - [`redis_server`]: a throwaway `redis-server` on a free loopback port.
//! - [`redis_cluster`]: a throwaway Redis Cluster of six such servers.
//! - [`cli`]: `--flag value` command lines, for the interop runs' programs.
//!
//! Not published: it exists to keep one copy of each of these.
#![deny(unsafe_code)]
#![warn(missing_docs)]

pub mod cli;
pub mod progress_server;
pub mod proxy;
pub mod redis_cluster;
pub mod redis_server;
