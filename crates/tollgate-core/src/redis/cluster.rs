//! A Redis Cluster connection, and watching its masters so a failover that hands a master's
//! slots to its replica is logged and counted. redis-rs's cluster client follows the move by
//! itself (`MOVED`, a slot map refresh after connection errors); this notices it happened, and
//! opens the client afresh from its seed nodes when no node has answered for a while (redis-rs's
//! client can stay without a connection to any node after every node was down at once).

use std::{
    future::Future,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use redis::{
    RedisResult, Value,
    cluster::{ClusterClient, ClusterConfig},
    cluster_async::ClusterConnection,
    cluster_routing::{RoutingInfo, SingleNodeRoutingInfo},
};

use super::connection::lost_master;
use crate::telemetry::{self, Counter};

/// The least time between two reads of the slot map.
const CHECK_EVERY: Duration = Duration::from_millis(100);
/// How long calls may fail for want of a connection before the client is opened afresh, and the
/// least time between two fresh opens.
const REOPEN_AFTER: Duration = Duration::from_secs(1);

/// A slot range and the master serving it (`host:port`).
pub(super) type SlotRange = (u16, u16, String);

pub(super) struct Watch {
    client: ClusterClient,
    connect_timeout: Duration,
    connection: std::sync::RwLock<ClusterConnection>,
    opened: Instant,
    /// Milliseconds after `opened` of the last answer, and of the last fresh open.
    answered_ms: AtomicU64,
    reopened_ms: AtomicU64,
    /// The slot map as last read; empty until the first call answers.
    map: Mutex<(Vec<SlotRange>, Option<Instant>)>,
    /// Set when a call failed in a way a failover explains (or was dropped unanswered): the next
    /// answer reads the slot map again.
    suspect: AtomicBool,
    known: AtomicBool,
    checking: AtomicBool,
    switches: AtomicU64,
    counter: Counter,
}

impl Watch {
    pub(super) fn new(client: ClusterClient, connect_timeout: Duration) -> Self {
        let connection = open(&client, connect_timeout);
        Self {
            client,
            connect_timeout,
            connection: std::sync::RwLock::new(connection),
            opened: Instant::now(),
            answered_ms: AtomicU64::new(0),
            reopened_ms: AtomicU64::new(0),
            map: Mutex::new((Vec::new(), None)),
            suspect: AtomicBool::new(false),
            known: AtomicBool::new(false),
            checking: AtomicBool::new(false),
            switches: AtomicU64::new(0),
            counter: Counter::new(
                telemetry::REDIS_MASTER_SWITCHES,
                &[("topology", "cluster".to_owned())],
            ),
        }
    }

    pub(super) fn switches(&self) -> u64 {
        self.switches.load(Ordering::Relaxed)
    }

    /// The client's connection now (a handle: cheap to clone).
    pub(super) fn connection(&self) -> ClusterConnection {
        self.connection.read().expect("never poisoned").clone()
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.opened.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// Opens the client afresh when calls have found no node for [`REOPEN_AFTER`].
    fn reopen_if_stuck(&self) {
        let now = self.now_ms();
        let limit = REOPEN_AFTER.as_millis() as u64;
        let reopened = self.reopened_ms.load(Ordering::Relaxed);
        if now.saturating_sub(self.answered_ms.load(Ordering::Relaxed)) < limit
            || now.saturating_sub(reopened) < limit
            || self
                .reopened_ms
                .compare_exchange(reopened, now, Ordering::AcqRel, Ordering::Relaxed)
                .is_err()
        {
            return;
        }
        tracing::info!(
            target: "tollgate::redis",
            "no Redis Cluster node answered for {REOPEN_AFTER:?}; connecting afresh through the seed nodes"
        );
        *self.connection.write().expect("never poisoned") =
            open(&self.client, self.connect_timeout);
    }

    /// Runs `call`, noting whether its outcome says the masters may have changed.
    pub(super) async fn observe<T>(
        self: Arc<Self>,
        call: impl Future<Output = RedisResult<T>>,
    ) -> RedisResult<T> {
        let mut unanswered = Unanswered(&self.suspect, true);
        let result = call.await;
        unanswered.1 = false;
        match &result {
            Err(error) if lost_master(error) => {
                self.suspect.store(true, Ordering::Relaxed);
                self.reopen_if_stuck();
            }
            Ok(_) => {
                self.answered_ms.store(self.now_ms(), Ordering::Relaxed);
                if self.suspect.load(Ordering::Relaxed) || !self.known.load(Ordering::Relaxed) {
                    self.check();
                }
            }
            Err(_) => {}
        }
        result
    }

    /// Reads the slot map in the background (one read at a time, at most every
    /// [`CHECK_EVERY`]) and counts every master that was replaced.
    fn check(self: &Arc<Self>) {
        if self.checking.swap(true, Ordering::AcqRel) {
            return;
        }
        let recent = self
            .map
            .lock()
            .expect("never poisoned")
            .1
            .is_some_and(|at| at.elapsed() < CHECK_EVERY);
        if recent {
            self.checking.store(false, Ordering::Release);
            return;
        }
        self.suspect.store(false, Ordering::Relaxed);
        let watch = self.clone();
        tokio::spawn(async move {
            if let Ok(now) = masters(&watch.connection()).await {
                watch.compare(now);
            }
            watch.checking.store(false, Ordering::Release);
        });
    }

    fn compare(&self, now: Vec<SlotRange>) {
        let mut map = self.map.lock().expect("never poisoned");
        let mut replaced: Vec<(&str, &str)> = Vec::new();
        for (start, end, before) in &map.0 {
            let after = now
                .iter()
                .find(|(s, e, _)| s <= start && start <= e)
                .map(|(_, _, master)| master.as_str());
            if let Some(after) = after {
                if after != before && !replaced.contains(&(before.as_str(), after)) {
                    replaced.push((before, after));
                    tracing::warn!(
                        target: "tollgate::redis",
                        from = %before,
                        to = %after,
                        slots = %format_args!("{start}-{end}"),
                        "a Redis Cluster master was replaced; its slots are served by {after} now"
                    );
                }
            }
        }
        let count = replaced.len() as u64;
        if count > 0 {
            self.switches.fetch_add(count, Ordering::Relaxed);
            self.counter.increment(count);
        }
        *map = (now, Some(Instant::now()));
        self.known.store(true, Ordering::Relaxed);
    }
}

/// Sets the flag when a call is dropped before it answered (a caller's timeout), unless disarmed.
pub(super) struct Unanswered<'a>(pub(super) &'a AtomicBool, pub(super) bool);

impl Drop for Unanswered<'_> {
    fn drop(&mut self) {
        if self.1 {
            self.0.store(true, Ordering::Relaxed);
        }
    }
}

/// A connection through `client` that connects in the background, so opening never waits.
fn open(client: &ClusterClient, connect_timeout: Duration) -> ClusterConnection {
    client.get_pending_async_connection_with_config(
        ClusterConfig::new().set_connection_timeout(connect_timeout),
    )
}

/// The cluster's slot map (`CLUSTER SLOTS`), as one node sees it.
pub(super) async fn masters(connection: &ClusterConnection) -> RedisResult<Vec<SlotRange>> {
    let mut connection = connection.clone();
    let reply = connection
        .route_command(
            redis::cmd("CLUSTER").arg("SLOTS").clone(),
            RoutingInfo::SingleNode(SingleNodeRoutingInfo::Random),
        )
        .await?;
    let Value::Array(ranges) = reply else {
        return Err(unexpected());
    };
    let mut map = Vec::with_capacity(ranges.len());
    for range in ranges {
        let Value::Array(parts) = range else {
            return Err(unexpected());
        };
        let [Value::Int(start), Value::Int(end), Value::Array(master), ..] = parts.as_slice()
        else {
            return Err(unexpected());
        };
        let [host, Value::Int(port), ..] = master.as_slice() else {
            return Err(unexpected());
        };
        let host = match host {
            Value::BulkString(bytes) => String::from_utf8_lossy(bytes).into_owned(),
            Value::SimpleString(text) => text.clone(),
            _ => return Err(unexpected()),
        };
        let slot = |n: i64| u16::try_from(n).map_err(|_| unexpected());
        map.push((slot(*start)?, slot(*end)?, format!("{host}:{port}")));
    }
    map.sort();
    Ok(map)
}

fn unexpected() -> redis::RedisError {
    redis::RedisError::from((
        redis::ErrorKind::UnexpectedReturnType,
        "CLUSTER SLOTS answered in an unexpected shape",
    ))
}
