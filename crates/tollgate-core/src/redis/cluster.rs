//! Watching a Redis Cluster's masters, so a failover that hands a master's slots to its replica
//! is logged and counted. redis-rs's cluster client follows the move by itself (`MOVED`, a slot
//! map refresh after connection errors); this only notices it happened.

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
    cluster_async::ClusterConnection,
    cluster_routing::{RoutingInfo, SingleNodeRoutingInfo},
};

use super::connection::lost_master;
use crate::telemetry::{self, Counter};

/// The least time between two reads of the slot map.
const CHECK_EVERY: Duration = Duration::from_millis(100);

/// A slot range and the master serving it (`host:port`).
pub(super) type SlotRange = (u16, u16, String);

pub(super) struct Watch {
    connection: ClusterConnection,
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
    pub(super) fn new(connection: ClusterConnection) -> Self {
        Self {
            connection,
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

    /// Runs `call`, noting whether its outcome says the masters may have changed.
    pub(super) async fn observe<T>(
        self: Arc<Self>,
        call: impl Future<Output = RedisResult<T>>,
    ) -> RedisResult<T> {
        let mut unanswered = Unanswered(&self.suspect, true);
        let result = call.await;
        unanswered.1 = false;
        match &result {
            Err(error) if lost_master(error) => self.suspect.store(true, Ordering::Relaxed),
            Ok(_)
                if self.suspect.load(Ordering::Relaxed) || !self.known.load(Ordering::Relaxed) =>
            {
                self.check();
            }
            _ => {}
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
            if let Ok(now) = masters(&watch.connection).await {
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
