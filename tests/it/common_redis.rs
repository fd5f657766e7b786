//! The Redis store on a throwaway `redis-server` (`mcp_resume_testkit::redis_server`): a
//! prefix per test, and stores opened on it.

use std::sync::Arc;

use mcp_resume::store::{EventStore, RedisEventStore, RedisOptions, Retention, StreamId};
pub use mcp_resume_testkit::redis_server::{RedisServer, shared};

/// A key prefix no other test uses.
pub fn unique_prefix() -> String {
    format!("test-{}:", StreamId::random())
}

/// Opens a store on `server` under `prefix`.
pub async fn open(server: &RedisServer, prefix: &str, retention: Retention) -> RedisEventStore {
    RedisOptions::new(server.url())
        .key_prefix(prefix)
        .retention(retention)
        .open()
        .await
        .expect("open the Redis store")
}

/// For `backend_suite!`: a fresh store (a fresh prefix on the shared server),
/// opened from synchronous code running on a multi-threaded Tokio runtime.
pub fn open_store(retention: Retention) -> Arc<dyn EventStore> {
    let server = shared();
    let prefix = unique_prefix();
    let store = tokio::task::block_in_place(|| {
        tokio::runtime::Handle::current().block_on(open(server, &prefix, retention))
    });
    Arc::new(store)
}

/// For `backend_suite!` on a Redis Cluster: a fresh store (a fresh prefix on
/// the process's shared cluster of three masters and three replicas).
pub fn open_cluster_store(retention: Retention) -> Arc<dyn EventStore> {
    let cluster = mcp_resume_testkit::redis_cluster::shared();
    let prefix = unique_prefix();
    let store = tokio::task::block_in_place(|| {
        tokio::runtime::Handle::current().block_on(
            RedisOptions::new(cluster.url())
                .key_prefix(&prefix)
                .retention(retention)
                .open(),
        )
    })
    .expect("open the Redis store on the cluster");
    Arc::new(store)
}
