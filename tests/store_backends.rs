//! Runs the shared backend suite (`tests/suite`) against every store.

mod suite;

use std::sync::Arc;

use mcp_resume::store::MemoryEventStore;

backend_suite!(memory, |retention| -> suite::Store {
    Arc::new(MemoryEventStore::with_retention(retention))
});

#[cfg(feature = "sqlite")]
backend_suite!(sqlite, |retention| -> suite::Store {
    use mcp_resume::store::SqliteOptions;
    // The directory is leaked for the test's duration; the OS temp dir is cleaned by the system.
    let dir = tempfile::tempdir().unwrap().keep();
    Arc::new(
        SqliteOptions::new(dir.join("events.db"))
            .retention(retention)
            .open()
            .unwrap(),
    )
});

#[cfg(feature = "redis")]
mod common_redis;

// Each store gets its own key prefix on one `redis-server` per test binary.
#[cfg(feature = "redis")]
backend_suite!(redis, |retention| -> suite::Store {
    common_redis::open_store(retention)
});
