//! Hybrid mode: permits leased from Redis in batches and spent locally.
//!
//! One lease per set of keys, refilled by one caller at a time (the others wait for that refill),
//! so a process holds at most one batch per key set at any moment: the bound on how far the fleet
//! can run ahead of the quota within a window. Spending a permit is one short lock of the lease
//! table, no allocation and no round trip.

use std::{
    hash::{BuildHasher, Hash, Hasher},
    sync::{Arc, Mutex, MutexGuard},
    time::Duration,
};

use hashbrown::HashTable;
use tokio::time::Instant;

use super::{RedisRateLimiter, Via, metrics::bump, script::Op};
use crate::{Amounts, Denial, DenialReason, Dimension, Scope};

/// Key sets holding a lease before idle ones are dropped (their permits handed back).
pub const MAX_LEASE_SETS: usize = 10_000;

pub(super) struct Leases {
    batch: u32,
    ttl: Duration,
    table: Mutex<HashTable<Lease>>,
    hasher: foldhash::fast::RandomState,
}

struct Lease {
    hash: u64,
    /// Whose permits these are, to find the lease and to hand its permits back.
    keys: Box<[(Scope, Box<str>)]>,
    remaining: u64,
    expires: Instant,
    /// Redis's last refusal and until when it holds: callers are refused locally until then,
    /// rather than each asking Redis the same question in turn.
    refused: Option<(Instant, Denial)>,
    /// Held by the one caller refilling this lease; the others wait on it.
    refill: Arc<tokio::sync::Mutex<()>>,
}

impl Lease {
    fn is_for(&self, keys: &[(Scope, impl AsRef<str>)]) -> bool {
        self.keys.len() == keys.len()
            && self
                .keys
                .iter()
                .zip(keys)
                .all(|((s, k), (scope, key))| s == scope && **k == *key.as_ref())
    }

    /// Takes one permit if the lease has one and is still running (`Some(Ok)`), or repeats Redis's
    /// refusal while it holds (`Some(Err)`); `None` when Redis must be asked.
    fn take(&mut self, now: Instant) -> Option<Result<Via, Denial>> {
        if self.remaining > 0 && now < self.expires {
            self.remaining -= 1;
            return Some(Ok(Via::Lease));
        }
        match &self.refused {
            Some((until, denial)) if now < *until => {
                let mut denial = denial.clone();
                denial.0.retry_after = Some(*until - now);
                Some(Err(denial))
            }
            _ => None,
        }
    }
}

/// Permits to hand back to Redis, once no lock is held.
type Unused = Vec<(Box<[(Scope, Box<str>)]>, u64)>;

impl Leases {
    pub(super) fn new(batch: u32, ttl: Duration) -> Self {
        Self {
            batch,
            ttl,
            table: Mutex::new(HashTable::new()),
            hasher: foldhash::fast::RandomState::default(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, HashTable<Lease>> {
        self.table.lock().expect("never poisoned")
    }

    fn hash(&self, keys: &[(Scope, impl AsRef<str>)]) -> u64 {
        let mut hasher = self.hasher.build_hasher();
        for (scope, key) in keys {
            scope.hash(&mut hasher);
            key.as_ref().hash(&mut hasher);
        }
        hasher.finish()
    }

    /// Admits one call of one request from the lease of `keys`, leasing a new batch when it is
    /// spent or expired.
    pub(super) async fn admit(
        &self,
        limiter: &RedisRateLimiter,
        keys: &[(Scope, impl AsRef<str>)],
        amounts: &Amounts,
    ) -> Result<Via, Denial> {
        let hash = self.hash(keys);
        let mut unused = Unused::new();
        let refill = {
            let mut table = self.lock();
            if let Some(lease) = table.find_mut(hash, |lease| lease.is_for(keys)) {
                if let Some(decided) = lease.take(Instant::now()) {
                    return counted(limiter, decided);
                }
                lease.refill.clone()
            } else {
                if table.len() >= MAX_LEASE_SETS {
                    // Drop the leases nobody is refilling; their permits go back below.
                    table.retain(|lease| {
                        let idle = Arc::strong_count(&lease.refill) == 1;
                        if idle {
                            unused.push((std::mem::take(&mut lease.keys), lease.remaining));
                        }
                        !idle
                    });
                }
                let refill = Arc::new(tokio::sync::Mutex::new(()));
                table.insert_unique(
                    hash,
                    Lease {
                        hash,
                        keys: keys
                            .iter()
                            .map(|(scope, key)| (*scope, key.as_ref().into()))
                            .collect(),
                        remaining: 0,
                        expires: Instant::now(),
                        refused: None,
                        refill: refill.clone(),
                    },
                    |lease| lease.hash,
                );
                refill
            }
        };
        // Handing back thousands of evicted leases must not hold up this caller.
        hand_back(limiter, unused);
        let _turn = refill.lock().await;
        // Whoever refilled while this caller waited may have left permits.
        let leftover = {
            let mut table = self.lock();
            match table.find_mut(hash, |lease| lease.is_for(keys)) {
                Some(lease) => {
                    if let Some(decided) = lease.take(Instant::now()) {
                        return counted(limiter, decided);
                    }
                    std::mem::take(&mut lease.remaining)
                }
                None => 0,
            }
        };
        give_back(limiter, keys, leftover).await;
        let (via, decided) = limiter
            .decide_by(keys, amounts, Op::Lease(self.batch))
            .await;
        let mut table = self.lock();
        let lease = table.find_mut(hash, |lease| lease.is_for(keys));
        match (via, decided, lease) {
            (Via::Redis, Ok(granted), Some(lease)) => {
                bump(&limiter.inner.counts.leases, 1);
                lease.remaining = granted.saturating_sub(1);
                lease.expires = Instant::now() + self.ttl;
                lease.refused = None;
                Ok(Via::Redis)
            }
            // Only Redis's own refusal holds for the fleet; the fallback's is asked anew.
            (Via::Redis, Err(denial), Some(lease)) => {
                if let (DenialReason::Exhausted, Some(after)) =
                    (denial.reason(), denial.retry_after())
                {
                    lease.refused = Some((Instant::now() + after, denial.clone()));
                }
                Err(denial)
            }
            (via, decided, _) => decided.map(|_| via),
        }
    }

    /// Key sets holding a lease now.
    pub(super) fn len(&self) -> usize {
        self.lock().len()
    }

    pub(super) async fn release_all(&self, limiter: &RedisRateLimiter) {
        let all: Unused = self
            .lock()
            .drain()
            .map(|lease| (lease.keys, lease.remaining))
            .collect();
        for (keys, count) in all {
            give_back(limiter, &keys, count).await;
        }
    }
}

/// Counts a decision made from the lease alone.
fn counted(limiter: &RedisRateLimiter, decided: Result<Via, Denial>) -> Result<Via, Denial> {
    if decided.is_ok() {
        bump(&limiter.inner.counts.lease_admits, 1);
    }
    decided
}

/// Hands `unused` request permits of `keys` back to Redis, counting them once Redis has them.
async fn give_back(limiter: &RedisRateLimiter, keys: &[(Scope, impl AsRef<str>)], unused: u64) {
    if unused == 0 {
        return;
    }
    let returned = limiter
        .adjust_signed(keys, |dimension| match dimension {
            Dimension::Requests => -i128::from(unused),
            _ => 0,
        })
        .await;
    if returned {
        bump(&limiter.inner.counts.lease_returned, unused);
    }
}

/// How many tasks hand evicted leases back at once: one round trip after another would take
/// seconds for thousands of leases, held from the rest of the fleet meanwhile; a few at a time
/// share the connection with live calls without crowding them past their timeout (and tripping
/// the breaker that sends them to the failure policy).
const HAND_BACK_TASKS: usize = 4;

/// Hands the permits of evicted leases back in the background, [`HAND_BACK_TASKS`] at a time.
fn hand_back(limiter: &RedisRateLimiter, mut unused: Unused) {
    unused.retain(|(_, count)| *count > 0);
    let per_task = unused.len().div_ceil(HAND_BACK_TASKS).max(1);
    while !unused.is_empty() {
        let share = unused.split_off(unused.len().saturating_sub(per_task));
        let limiter = limiter.clone();
        tokio::spawn(async move {
            for (keys, count) in share {
                give_back(&limiter, &keys, count).await;
            }
        });
    }
}
