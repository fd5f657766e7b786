//! `--store`: where events are kept, and opening it.

use std::borrow::Cow;
use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

use mcp_resume::store::{EventStore, MemoryEventStore, SqliteEventStore, StoreError};

use crate::cli::Options;

/// Where events are stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StoreSpec {
    /// An SQLite file: survives restarts.
    Sqlite(PathBuf),
    /// Memory: resumes survive dropped connections, not restarts.
    Memory,
    /// A Redis server shared by a fleet of proxies (`redis://` or `redis+unix://` URL), or a
    /// Redis Cluster (`redis+cluster://host:port,host:port,...`).
    Redis(String),
}

impl StoreSpec {
    /// The default: an SQLite file at [`SqliteEventStore::DEFAULT_PATH`].
    pub fn default_sqlite() -> Self {
        Self::Sqlite(PathBuf::from(SqliteEventStore::DEFAULT_PATH))
    }

    /// Opens the store, configured from `options`.
    pub async fn open(&self, options: &Options) -> Result<Arc<dyn EventStore>, StoreError> {
        let retention = options.retention();
        match self {
            Self::Memory => Ok(Arc::new(MemoryEventStore::with_retention(retention))),
            // Blocking (opens the file), which is fine before serving starts.
            Self::Sqlite(path) => Ok(Arc::new(options.sqlite_options(path).open()?)),
            Self::Redis(url) => open_redis(url, retention).await,
        }
    }
}

#[cfg(feature = "redis")]
async fn open_redis(
    url: &str,
    retention: mcp_resume::store::Retention,
) -> Result<Arc<dyn EventStore>, StoreError> {
    let store = mcp_resume::store::RedisOptions::new(url)
        .retention(retention)
        .open()
        .await?;
    Ok(Arc::new(store))
}

#[cfg(not(feature = "redis"))]
async fn open_redis(
    _: &str,
    _: mcp_resume::store::Retention,
) -> Result<Arc<dyn EventStore>, StoreError> {
    unreachable!("`parse_store` accepts Redis URLs only in builds with the `redis` feature")
}

impl fmt::Display for StoreSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Sqlite(path) => write!(f, "sqlite:{}", path.display()),
            Self::Memory => f.write_str("memory"),
            Self::Redis(url) => f.write_str(&without_password(url)),
        }
    }
}

/// Reads `--store`: `sqlite:PATH`, `memory`, or a Redis URL.
pub fn parse_store(text: &str) -> Result<StoreSpec, String> {
    if text == "memory" {
        return Ok(StoreSpec::Memory);
    }
    if text.starts_with("redis://")
        || text.starts_with("redis+unix://")
        || text.starts_with("redis+cluster://")
    {
        if !cfg!(feature = "redis") {
            return Err(
                "this build has no Redis support; build with `--features redis` (e.g. `cargo install mcp-resume --features redis`)"
                    .to_owned(),
            );
        }
        return Ok(StoreSpec::Redis(text.to_owned()));
    }
    let forms = format!(
        "expected `sqlite:PATH` (e.g. {}), `memory` (nothing kept across restarts) or `redis://HOST:PORT/` (a fleet sharing one Redis) or `redis+cluster://HOST:PORT,HOST:PORT` (a fleet sharing a Redis Cluster)",
        StoreSpec::default_sqlite()
    );
    match text.strip_prefix("sqlite:") {
        Some("") => Err(format!("the SQLite path is empty; {forms}")),
        Some(path) => Ok(StoreSpec::Sqlite(PathBuf::from(path))),
        None => Err(forms),
    }
}

/// `url` with its password, if any, masked (in `user:password@` or in a
/// `pass=` query parameter): store URLs are logged at start-up and shown in
/// errors.
fn without_password(url: &str) -> Cow<'_, str> {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.into();
    };
    let (address, query) = match rest.split_once('?') {
        Some((address, query)) => (address, Some(query)),
        None => (rest, None),
    };
    let authority_end = address.find('/').unwrap_or(address.len());
    let (authority, path) = address.split_at(authority_end);
    // `?pass=` is how redis-rs takes a password for a Unix socket.
    let masked_authority = authority.rsplit_once('@').and_then(|(userinfo, host)| {
        let (user, _password) = userinfo.split_once(':')?;
        Some(format!("{user}:***@{host}"))
    });
    let masked_query = query
        .filter(|q| q.split('&').any(|pair| pair.starts_with("pass=")))
        .map(|q| {
            q.split('&')
                .map(|pair| {
                    if pair.starts_with("pass=") {
                        "pass=***"
                    } else {
                        pair
                    }
                })
                .collect::<Vec<_>>()
                .join("&")
        });
    if masked_authority.is_none() && masked_query.is_none() {
        return url.into();
    }
    let authority = masked_authority.as_deref().unwrap_or(authority);
    match masked_query.as_deref().or(query) {
        Some(query) => format!("{scheme}://{authority}{path}?{query}").into(),
        None => format!("{scheme}://{authority}{path}").into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stores_are_sqlite_paths_or_memory() {
        assert_eq!(parse_store("memory"), Ok(StoreSpec::Memory));
        assert_eq!(
            parse_store("sqlite:./x.db"),
            Ok(StoreSpec::Sqlite("./x.db".into()))
        );
        for bad in ["bogus", "sqlite:", "sqlite", "Memory", "rediss://x"] {
            let error = parse_store(bad).unwrap_err();
            assert!(
                error.contains("sqlite:PATH") && error.contains("memory"),
                "{bad}: {error}"
            );
        }
    }

    #[test]
    fn the_default_store_reads_back_as_itself() {
        let shown = StoreSpec::default_sqlite().to_string();
        assert_eq!(parse_store(&shown), Ok(StoreSpec::default_sqlite()));
    }

    #[test]
    fn store_urls_are_shown_without_their_password() {
        for (url, shown) in [
            ("redis://:s3cret@db:6379/0", "redis://:***@db:6379/0"),
            ("redis://app:p@ss@db/", "redis://app:***@db/"),
            ("rediss://app@db:6380", "rediss://app@db:6380"),
            ("redis://db:6379/", "redis://db:6379/"),
            (
                "redis+cluster://app:s3cret@a:7000,b:7001",
                "redis+cluster://app:***@a:7000,b:7001",
            ),
            (
                "redis+unix:///run/redis.sock",
                "redis+unix:///run/redis.sock",
            ),
            (
                "redis+unix:///run/redis.sock?db=1&pass=s3cret&user=app",
                "redis+unix:///run/redis.sock?db=1&pass=***&user=app",
            ),
            ("redis://db/0?protocol=resp3", "redis://db/0?protocol=resp3"),
            (
                "redis://app:pw@db/0?protocol=resp3",
                "redis://app:***@db/0?protocol=resp3",
            ),
        ] {
            assert_eq!(StoreSpec::Redis(url.into()).to_string(), shown);
        }
    }

    #[test]
    fn redis_urls_need_the_redis_feature() {
        let parsed = parse_store("redis://127.0.0.1:6379/");
        if cfg!(feature = "redis") {
            assert_eq!(
                parsed,
                Ok(StoreSpec::Redis("redis://127.0.0.1:6379/".into()))
            );
        } else {
            assert!(parsed.unwrap_err().contains("--features redis"));
        }
    }
}
