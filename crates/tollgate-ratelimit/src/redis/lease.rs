//! Hybrid mode: permits leased from Redis in batches and spent locally.
//!
//! One lease per set of keys, refilled by one caller at a time (the others wait on the lease's
//! lock), so a process holds at most one batch per key set at any moment: the bound on how far
//! the fleet can run ahead of the quota within a window.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use tokio::time::Instant;

use super::{RedisRateLimiter, Via, counts, script::Op};
use crate::{Amounts, Denial, Scope};

/// Lease sets kept before idle ones are dropped (their permits handed back).
const MAX_LEASES: usize = 10_000;

pub(super) struct Leases {
    batch: u32,
    ttl: Duration,
    map: Mutex<HashMap<String, Shared>>,
}

#[derive(Debug)]
struct Lease {
    remaining: u64,
    expires: Instant,
    /// Whose permits these are, to hand them back when the lease is dropped.
    keys: Vec<(Scope, Box<str>)>,
}

type Shared = Arc<tokio::sync::Mutex<Lease>>;

impl Leases {
    pub(super) fn new(batch: u32, ttl: Duration) -> Self {
        Self {
            batch,
            ttl,
            map: Mutex::new(HashMap::new()),
        }
    }

    fn entry(&self, name: String, keys: &[(Scope, impl AsRef<str>)]) -> (Shared, Vec<Shared>) {
        let mut map = self.map.lock().expect("never poisoned");
        let mut dropped = Vec::new();
        if map.len() >= MAX_LEASES && !map.contains_key(&name) {
            // Drop leases nobody is using; their permits go back below.
            map.retain(|_, lease| {
                let idle = Arc::strong_count(lease) == 1;
                if idle {
                    dropped.push(lease.clone());
                }
                !idle
            });
        }
        let lease = map
            .entry(name)
            .or_insert_with(|| {
                Arc::new(tokio::sync::Mutex::new(Lease {
                    remaining: 0,
                    expires: Instant::now(),
                    keys: keys
                        .iter()
                        .map(|(scope, key)| (*scope, key.as_ref().into()))
                        .collect(),
                }))
            })
            .clone();
        (lease, dropped)
    }

    /// Admits one call of one request from the lease of `keys`, leasing a new batch when it is
    /// spent or expired.
    pub(super) async fn admit(
        &self,
        limiter: &RedisRateLimiter,
        keys: &[(Scope, impl AsRef<str>)],
        amounts: &Amounts,
    ) -> Result<Via, Denial> {
        let name = keys
            .iter()
            .map(|(scope, key)| limiter.redis_key(keys, *scope, key.as_ref()))
            .collect::<Vec<_>>()
            .join("\n");
        let (lease, dropped) = self.entry(name, keys);
        for old in dropped {
            let mut old = old.lock().await;
            let unused = std::mem::take(&mut old.remaining);
            give_back(limiter, &old.keys, unused).await;
        }
        let mut lease = lease.lock().await;
        let now = Instant::now();
        if lease.remaining > 0 {
            if now < lease.expires {
                lease.remaining -= 1;
                counts::bump(&limiter.inner.counts.lease_admits, 1);
                return Ok(Via::Lease);
            }
            let unused = std::mem::take(&mut lease.remaining);
            give_back(limiter, keys, unused).await;
        }
        let (via, granted) = limiter.decide(keys, amounts, Op::Lease(self.batch)).await?;
        if via == Via::Redis {
            counts::bump(&limiter.inner.counts.leases, 1);
            lease.remaining = granted.saturating_sub(1);
            lease.expires = now + self.ttl;
        }
        Ok(via)
    }

    pub(super) async fn release_all(&self, limiter: &RedisRateLimiter) {
        let all: Vec<_> = self.map.lock().expect("never poisoned").drain().collect();
        for (_, lease) in all {
            let mut lease = lease.lock().await;
            let unused = std::mem::take(&mut lease.remaining);
            give_back(limiter, &lease.keys, unused).await;
        }
    }
}

/// Hands `unused` request permits of `keys` back to Redis.
async fn give_back(limiter: &RedisRateLimiter, keys: &[(Scope, impl AsRef<str>)], unused: u64) {
    if unused == 0 {
        return;
    }
    counts::bump(&limiter.inner.counts.lease_returned, unused);
    limiter
        .adjust_signed(keys, |dimension| match dimension {
            crate::Dimension::Requests => -i128::from(unused),
            _ => 0,
        })
        .await;
}
