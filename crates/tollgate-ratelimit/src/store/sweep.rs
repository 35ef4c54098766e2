//! Forgetting keys whose tiers are full again: before a shard's table grows, at the key cap, and
//! on demand.

use std::{hash::BuildHasher, sync::atomic::Ordering};

use super::{
    Store,
    shard::{Shard, Slot},
};
use crate::gcra;

/// Nanoseconds between sweeps of every shard triggered by the key cap.
const FULL_SWEEP_EVERY: u64 = 10_000_000;

impl Store {
    /// Whether `n` new keys fit under the cap, sweeping first if they do not.
    ///
    /// The count itself moves only where keys are really inserted or removed, so a sweep that
    /// forgets a key a call was about to touch cannot skew it. Calls racing past this check at
    /// the same moment can pass the cap by at most their own new keys.
    pub(super) fn has_room(&self, shard: &mut Shard, n: usize, now: u64) -> bool {
        let fits = || {
            self.live
                .load(Ordering::Relaxed)
                .checked_add(n)
                .is_some_and(|total| total <= self.max_keys)
        };
        if fits() {
            return true;
        }
        self.sweep_shard(shard, now);
        self.sweep_others(now);
        fits()
    }

    /// At the cap, sweeps the shards nobody holds, at most once per [`FULL_SWEEP_EVERY`]: often
    /// enough that idle keys elsewhere make room, rarely enough that a flood of new keys at a full
    /// limiter cannot turn every call into a walk over every key.
    pub(super) fn sweep_others(&self, now: u64) {
        let last = self.last_full_sweep.load(Ordering::Relaxed);
        let never = last == u64::MAX;
        if (!never && now < last.saturating_add(FULL_SWEEP_EVERY))
            || self
                .last_full_sweep
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_err()
        {
            return;
        }
        for shard in self.shards.iter() {
            // try_lock: the caller holds its own shard(s), and waiting here could deadlock.
            if let Ok(mut shard) = shard.0.try_lock() {
                self.sweep_shard(&mut shard, now);
            }
        }
    }

    pub(super) fn insert(&self, shard: &mut Shard, hash: u64, slot: Slot, now: u64) {
        // Before the table grows, forget keys that are full again: under churn the table then
        // stays the size of the live set instead of growing with every key ever seen.
        if shard.slots.len() == shard.slots.capacity() && !shard.slots.is_empty() {
            self.sweep_shard(shard, now);
        }
        let hasher = &self.hasher;
        shard
            .slots
            .insert_unique(hash, slot, |s| hasher.hash_one((s.scope, s.key.as_str())));
        self.live.fetch_add(1, Ordering::Relaxed);
    }

    pub(super) fn sweep_shard(&self, shard: &mut Shard, now: u64) -> usize {
        let quotas = &self.definition.quotas;
        let at = self.at(now);
        let before = shard.slots.len();
        shard.slots.retain(|slot| {
            let tiers = quotas.all[slot.quota as usize].tiers();
            !gcra::is_full(tiers, slot.tats.get(tiers.len()), at)
        });
        if let Some(per_key) = &mut shard.per_key {
            let slots = &shard.slots;
            per_key.retain(|stats| {
                slots
                    .find(stats.hash, |slot| {
                        slot.scope == stats.scope && slot.key.as_bytes() == stats.key.as_bytes()
                    })
                    .is_some()
            });
        }
        let removed = before - shard.slots.len();
        if removed > 0 {
            self.live.fetch_sub(removed, Ordering::Relaxed);
            if shard.slots.len() < shard.slots.capacity() / 4 {
                let hasher = &self.hasher;
                shard.slots.shrink_to(shard.slots.len() * 2, |s| {
                    hasher.hash_one((s.scope, s.key.as_str()))
                });
            }
        }
        removed
    }

    /// Drops every key that is full again; returns how many.
    pub(crate) fn sweep(&self, now: u64) -> usize {
        (0..self.shards.len())
            .map(|i| self.sweep_shard(&mut self.lock(i), now))
            .sum()
    }

    pub(crate) fn live_keys(&self) -> usize {
        self.live.load(Ordering::Relaxed)
    }
}
