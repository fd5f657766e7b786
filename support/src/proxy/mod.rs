//! The fault-injecting TCP proxy, on loopback between a client and a server.
//!
//! It relays bytes unchanged in both directions and cuts connections (both sides closed at
//! once, so the client sees a broken body and the server sees its client go away):
//!
//! - after N server->client bytes, N chosen per connection by a [`CutPolicy`] (exactly N bytes
//!   are delivered, wherever they fall);
//! - immediately, on demand ([`Proxy::cut_all`]);
//! - inside the event streams of chosen HTTP responses ([`http::HttpFaults`], the interop
//!   runs' proxy, `examples/fault_proxy.rs`);
//! - wherever another [`Faults`] policy says (a test can write its own).
//!
//! It counts connections and cuts, uses one fixed buffer per direction, and stops (listener
//! and every connection) when dropped.
//!
//! ```no_run
//! # async fn run(server: std::net::SocketAddr) {
//! use mcp_resume_testkit::proxy::{CutPolicy, Proxy};
//!
//! // The first connection is cut after 1,000 bytes, later ones are relayed untouched.
//! let proxy = Proxy::with_policy(server, CutPolicy::schedule(vec![1_000])).await;
//! // ... a client connects to `proxy.addr()` ...
//! assert_eq!(proxy.cuts(), 1);
//! # }
//! ```

pub mod http;
mod policy;
mod tcp;

pub use policy::{ByteLimit, CutPolicy};
pub use tcp::{Connection, Ending, Faults, Proxy, Relay};
