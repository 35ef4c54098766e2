//! What every connection to one Redis node needs: opening it, and reading its failures.

use std::{
    sync::{
        Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use redis::aio::{ConnectionManager, ConnectionManagerConfig};

use crate::ConfigError;

/// How long a first connection may take: at least 100 ms, so a tight per-call timeout does not
/// make connecting impossible.
pub(super) fn connect_timeout(timeout: Duration) -> Duration {
    timeout.max(Duration::from_millis(100))
}

pub(super) fn in_runtime() -> Result<(), ConfigError> {
    if tokio::runtime::Handle::try_current().is_err() {
        return Err(ConfigError::new(
            "redis",
            "open Redis connections inside a Tokio runtime (they run on it)",
        ));
    }
    Ok(())
}

/// A connection manager for `client` that connects on first use and backs off up to
/// `max_backoff` between attempts.
pub(super) fn manager(
    client: redis::Client,
    timeout: Duration,
    max_backoff: Duration,
) -> Result<ConnectionManager, ConfigError> {
    let config = ConnectionManagerConfig::new()
        .set_connection_timeout(Some(connect_timeout(timeout)))
        .set_number_of_retries(1)
        .set_max_delay(max_backoff);
    ConnectionManager::new_lazy_with_config(client, config)
        .map_err(|e| ConfigError::new("redis.url", e.to_string()))
}

/// Whether `error` says the node answering may no longer be the master: it is gone, slow, or
/// now a replica.
pub(super) fn lost_master(error: &redis::RedisError) -> bool {
    use redis::{ErrorKind, ServerErrorKind};
    error.is_io_error()
        || error.is_connection_refusal()
        || error.is_connection_dropped()
        || error.is_timeout()
        || error.is_cluster_error()
        || matches!(
            error.kind(),
            ErrorKind::Server(ServerErrorKind::ReadOnly | ServerErrorKind::MasterDown)
        )
}

/// Runs `call`, setting `suspect` when it fails as a replaced master would, or is dropped before
/// it answered (a caller's timeout).
pub(super) async fn watched<T>(
    suspect: &AtomicBool,
    call: impl std::future::Future<Output = redis::RedisResult<T>>,
) -> redis::RedisResult<T> {
    let mut unanswered = Unanswered(suspect, true);
    let result = call.await;
    unanswered.1 = false;
    if result.as_ref().is_err_and(lost_master) {
        suspect.store(true, Ordering::Relaxed);
    }
    result
}

/// Sets the flag when dropped, unless disarmed.
struct Unanswered<'a>(&'a AtomicBool, bool);

impl Drop for Unanswered<'_> {
    fn drop(&mut self) {
        if self.1 {
            self.0.store(true, Ordering::Relaxed);
        }
    }
}

/// One background job at a time, started at most once every `every`: re-reading a cluster's slot
/// map, asking the Sentinels again.
pub(super) struct Throttle {
    busy: AtomicBool,
    started: Mutex<Option<Instant>>,
    every: Duration,
}

impl Throttle {
    pub(super) fn new(every: Duration) -> Self {
        Self {
            busy: AtomicBool::new(false),
            started: Mutex::new(None),
            every,
        }
    }

    /// Whether a job may start now; one that may must call [`done`](Self::done) when it ends.
    pub(super) fn start(&self) -> bool {
        if self.busy.swap(true, Ordering::AcqRel) {
            return false;
        }
        let mut started = self.started.lock().expect("never poisoned");
        if started.is_some_and(|at| at.elapsed() < self.every) {
            self.busy.store(false, Ordering::Release);
            return false;
        }
        *started = Some(Instant::now());
        true
    }

    pub(super) fn done(&self) {
        self.busy.store(false, Ordering::Release);
    }
}

/// Where `url` points (`host:port`, or a socket path), as redis-rs reads it: never the user or
/// the password, so no message or `Debug` repeats them.
pub fn shown(url: &str) -> String {
    redis::IntoConnectionInfo::into_connection_info(url).map_or_else(
        |_| "an invalid Redis URL".to_owned(),
        |info| info.addr().to_string(),
    )
}
