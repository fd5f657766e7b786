//! The integration tests, in one binary so that axum, rmcp and the crate are
//! linked once: one module per area, and the shared infrastructure beside
//! them. Run one area with `cargo test --test it layer_resume::`.

// Shared infrastructure.
mod common;
#[cfg(feature = "redis")]
mod common_redis;
#[macro_use]
mod suite;

// The tests.
mod admin;
mod cli;
mod fleet;
mod infra;
#[cfg(feature = "sqlite")]
mod inspect;
mod layer_compose;
mod layer_faults;
mod layer_passthrough;
mod layer_resume;
mod layer_rewrite;
mod layer_session;
mod layer_tracing;
mod metrics;
mod proxy_faults;
mod proxy_rebinding;
mod proxy_tls;
#[cfg(feature = "redis")]
mod redis_cluster;
#[cfg(feature = "redis")]
mod redis_store;
mod rmcp_resume;
#[cfg(feature = "sqlite")]
mod sqlite_faults;
mod store_backends;
mod tasks;
