//! Runs the shared backend suite (`tests/it/suite`) against every store.

use crate::suite;

use std::sync::Arc;

use mcp_resume::store::MemoryEventStore;

backend_suite!(memory, |retention| -> suite::Store {
    suite::Store::new(Arc::new(MemoryEventStore::with_retention(retention)))
});

#[cfg(feature = "sqlite")]
backend_suite!(sqlite, |retention| -> suite::Store {
    use mcp_resume::store::SqliteOptions;
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteOptions::new(dir.path().join("events.db"))
        .retention(retention)
        .open()
        .unwrap();
    suite::Store::new(Arc::new(store)).keeping(dir)
});

#[cfg(feature = "redis")]
use crate::common_redis;

// Each store gets its own key prefix on one `redis-server` per test binary.
#[cfg(feature = "redis")]
backend_suite!(redis, |retention| -> suite::Store {
    suite::Store::new(common_redis::open_store(retention))
});

// The same on a Redis Cluster (three masters, three replicas), one per test
// binary, each store under its own prefix.
#[cfg(feature = "redis")]
backend_suite!(redis_cluster, |retention| -> suite::Store {
    suite::Store::new(common_redis::open_cluster_store(retention))
});
