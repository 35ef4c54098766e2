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

use super::node::{Throttle, lost_master, watched};
use crate::telemetry::{self, Counter};

/// The least time between two reads of the slot map.
const CHECK_EVERY: Duration = Duration::from_millis(100);
/// How long a read of the slot map may take: a node that died may never answer.
const READ_WITHIN: Duration = Duration::from_secs(1);
/// How long calls may fail for want of a connection before the client is opened afresh, and the
/// least time between two fresh opens.
const REOPEN_AFTER: Duration = Duration::from_secs(1);

/// A slot range and the master serving it (`host:port`).
pub(super) type SlotRange = (u16, u16, String);

pub(super) struct Watch {
    client: ClusterClient,
    connect_timeout: Duration,
    /// Swapped whole when the client is opened afresh; read without a lock on every call.
    connection: arc_swap::ArcSwap<ClusterConnection>,
    opened: Instant,
    /// Milliseconds after `opened` (at least 1) since when calls have found no node, 0 while they
    /// answer; and of the last fresh open.
    failing_since_ms: AtomicU64,
    reopened_ms: AtomicU64,
    /// The slot map as last confirmed; empty until the first call answers.
    map: Mutex<SlotMap>,
    /// Set when a call failed in a way a failover explains (or was dropped unanswered): the next
    /// answer reads the slot map again.
    suspect: AtomicBool,
    /// Whether `map` holds a baseline, readable on every call without its lock.
    known: AtomicBool,
    checking: Throttle,
    switches: AtomicU64,
    counter: Counter,
}

impl Watch {
    pub(super) fn new(client: ClusterClient, connect_timeout: Duration) -> Self {
        let connection = open(&client, connect_timeout);
        Self {
            client,
            connect_timeout,
            connection: arc_swap::ArcSwap::from_pointee(connection),
            opened: Instant::now(),
            failing_since_ms: AtomicU64::new(0),
            reopened_ms: AtomicU64::new(0),
            map: Mutex::new(SlotMap::default()),
            suspect: AtomicBool::new(false),
            known: AtomicBool::new(false),
            checking: Throttle::new(CHECK_EVERY),
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
        ClusterConnection::clone(&self.connection.load())
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.opened.elapsed().as_millis())
            .unwrap_or(u64::MAX)
            .max(1)
    }

    /// Opens the client afresh when calls have found no node for [`REOPEN_AFTER`].
    fn reopen_if_stuck(&self) {
        let now = self.now_ms();
        let since = match self.failing_since_ms.compare_exchange(
            0,
            now,
            Ordering::Relaxed,
            Ordering::Relaxed,
        ) {
            Ok(_) => now,
            Err(since) => since,
        };
        let limit = REOPEN_AFTER.as_millis() as u64;
        let reopened = self.reopened_ms.load(Ordering::Relaxed);
        if now.saturating_sub(since) < limit
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
        self.connection
            .store(Arc::new(open(&self.client, self.connect_timeout)));
    }

    /// Runs `call`, noting whether its outcome says the masters may have changed.
    pub(super) async fn observe<T>(
        self: Arc<Self>,
        call: impl Future<Output = RedisResult<T>>,
    ) -> RedisResult<T> {
        let result = watched(&self.suspect, call).await;
        match &result {
            Err(error) if lost_master(error) => self.reopen_if_stuck(),
            Ok(_) => {
                // Written only when it changes, so answers do not contend for its cache line.
                if self.failing_since_ms.load(Ordering::Relaxed) != 0 {
                    self.failing_since_ms.store(0, Ordering::Relaxed);
                }
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
        if !self.checking.start() {
            return;
        }
        // After trouble, nodes may disagree for a while (one that has not heard of a failover
        // yet still names the old master): read until a change is confirmed, for up to
        // 50 reads. Without trouble, one read (the first, for a baseline) is enough.
        let suspected = self.suspect.swap(false, Ordering::Relaxed);
        let reads = if suspected { 50 } else { 1 };
        let watch = self.clone();
        tokio::spawn(async move {
            for _ in 0..reads {
                let read = tokio::time::timeout(READ_WITHIN, masters(&watch.connection())).await;
                if let Ok(Ok(now)) = read
                    && watch.compare(now) == Read::Counted
                {
                    break;
                }
                tokio::time::sleep(CHECK_EVERY).await;
            }
            watch.checking.done();
        });
    }

    /// Takes a slot map just read. A change counts once two reads in a row agree on it.
    fn compare(&self, now: Vec<SlotRange>) -> Read {
        let mut map = self.map.lock().expect("never poisoned");
        if map.current.is_empty() {
            // The first read: the baseline.
            map.current = now;
            self.known.store(true, Ordering::Relaxed);
            return Read::Same;
        }
        if now == map.current {
            map.candidate = None;
            return Read::Same;
        }
        if map.candidate.as_ref() != Some(&now) {
            map.candidate = Some(now);
            return Read::Changed;
        }
        let mut replaced: Vec<(&str, &str)> = Vec::new();
        for (start, end, before) in &map.current {
            let after = now
                .iter()
                .find(|(s, e, _)| s <= start && start <= e)
                .map(|(_, _, master)| master.as_str());
            if let Some(after) = after
                && after != before
                && !replaced.contains(&(before.as_str(), after))
            {
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
        let count = replaced.len() as u64;
        if count > 0 {
            self.switches.fetch_add(count, Ordering::Relaxed);
            self.counter.increment(count);
        }
        map.current = now;
        map.candidate = None;
        Read::Counted
    }
}

/// What a read of the slot map showed.
#[derive(Debug, PartialEq, Eq)]
enum Read {
    /// The map held.
    Same,
    /// A different map, not confirmed yet.
    Changed,
    /// The change confirmed, and each replaced master counted.
    Counted,
}

/// The slot map a [`Watch`] holds.
#[derive(Default)]
struct SlotMap {
    current: Vec<SlotRange>,
    /// A different map read once, counted when the next read agrees.
    candidate: Option<Vec<SlotRange>>,
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
