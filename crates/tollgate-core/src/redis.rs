//! A Redis connection as the layers with Redis stores open it (feature `redis`).

use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};

use crate::ConfigError;

/// A connection manager for the Redis at `url` that connects on first use (so a service starts
/// while Redis is down) and reconnects by itself, with connection attempts bounded by `timeout`
/// (at least 100 ms) and backing off up to `max_backoff` between them.
///
/// # Errors
///
/// `redis.url` for a URL redis-rs cannot parse; `redis` when called outside a Tokio runtime (the
/// connection runs on it).
pub fn lazy_connection(
    url: &str,
    timeout: Duration,
    max_backoff: Duration,
) -> Result<ConnectionManager, ConfigError> {
    if tokio::runtime::Handle::try_current().is_err() {
        return Err(ConfigError::new(
            "redis",
            "open Redis connections inside a Tokio runtime (they run on it)",
        ));
    }
    let client =
        redis::Client::open(url).map_err(|e| ConfigError::new("redis.url", e.to_string()))?;
    let config = ConnectionManagerConfig::new()
        .set_connection_timeout(Some(timeout.max(Duration::from_millis(100))))
        .set_number_of_retries(1)
        .set_max_delay(max_backoff);
    ConnectionManager::new_lazy_with_config(client, config)
        .map_err(|e| ConfigError::new("redis.url", e.to_string()))
}
