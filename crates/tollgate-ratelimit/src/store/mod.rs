//! The in-memory state store: GCRA timestamps per (scope, key), in mutex-guarded shards.
//!
//! # Cost per key
//!
//! A live key is one `Slot` in a shard's hash table: 64 bytes (a key of up to 22 bytes inline,
//! scope and quota indices, and up to three timestamps inline) plus one control byte, divided by
//! the table's load (between 7/16 and 7/8 full). A longer key, or a quota of more than three
//! tiers, adds a heap allocation of its own. `benches/ratelimit.rs` measures the total.
//!
//! # Why mutexes
//!
//! A call may have to check and consume several tiers of several keys as one step (every key
//! admits or nothing is consumed). Locking the shards those keys live in, always in ascending
//! order so two calls cannot deadlock, makes that one step without a retry loop; a single-key
//! call locks one shard, which costs about what a compare-and-swap loop does when uncontended.

mod decide;
mod key;
mod shard;
mod sweep;

use std::sync::{
    Arc, Mutex, MutexGuard,
    atomic::{AtomicU64, AtomicUsize, Ordering},
};

use foldhash::fast::RandomState;
use hashbrown::HashTable;
use std::hash::BuildHasher;

pub(crate) use decide::{Mode, Reason, Refusal};
pub(crate) use key::Target;
use shard::{Shard, WaitQueue, eq};

use crate::{definition::Definition, metrics::Metrics};

#[repr(align(128))]
#[derive(Default)]
struct Padded<T>(T);

/// Every key's state in shards, under a cap on live keys; decisions in `decide`, forgetting in
/// `sweep`.
pub(crate) struct Store {
    shards: Box<[Padded<Mutex<Shard>>]>,
    shift: u32,
    hasher: RandomState,
    definition: Definition,
    live: AtomicUsize,
    max_keys: usize,
    last_full_sweep: AtomicU64,
    /// The wall clock (nanoseconds since the Unix epoch) when the limiter's clock read zero:
    /// calendar tiers count their periods from it.
    wall_origin: u64,
}

impl Store {
    pub(crate) fn new(
        definition: Definition,
        max_keys: usize,
        per_key_metrics: bool,
        wall_origin: u64,
    ) -> Self {
        let shards = std::thread::available_parallelism()
            .map_or(4, usize::from)
            .saturating_mul(16)
            .next_power_of_two()
            .clamp(4, 256);
        let shards = (0..shards)
            .map(|_| {
                Padded(Mutex::new(Shard {
                    per_key: per_key_metrics.then(HashTable::new),
                    ..Shard::default()
                }))
            })
            .collect::<Vec<_>>()
            .into_boxed_slice();
        Self {
            shift: 64 - shards.len().trailing_zeros(),
            shards,
            hasher: RandomState::default(),
            definition,
            live: AtomicUsize::new(0),
            max_keys,
            last_full_sweep: AtomicU64::new(u64::MAX),
            wall_origin,
        }
    }

    /// The limiter clock's `now`, with the wall time calendar tiers read.
    pub(crate) fn at(&self, now: u64) -> crate::gcra::At {
        crate::gcra::At {
            now,
            wall: self.wall_origin.saturating_add(now),
        }
    }

    pub(crate) fn definition(&self) -> &Definition {
        &self.definition
    }

    pub(crate) fn target<'a>(&self, scope: u32, key: &'a str) -> Target<'a> {
        Target {
            scope,
            key,
            hash: self.hasher.hash_one((scope, key)),
        }
    }

    fn shard_of(&self, target: &Target<'_>) -> usize {
        // The table uses the hash's low bits for buckets and its top 7 for tags; a shard index from
        // the top bits would make every entry of a shard share its tag, so take bits from below them.
        ((target.hash << 7) >> self.shift) as usize
    }

    fn lock(&self, shard: usize) -> MutexGuard<'_, Shard> {
        // A panic while holding a shard leaves valid timestamps (each write is one store), so a
        // poisoned lock is safe to keep using.
        self.shards[shard]
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The quota and timestamps of a key, or its quota with full tiers when it is not live.
    pub(crate) fn state(&self, target: &Target<'_>) -> (u32, Vec<u64>) {
        let shard = self.lock(self.shard_of(target));
        match shard.slot(target) {
            Some(slot) => {
                let tiers = self.definition.quotas.all[slot.quota as usize]
                    .tiers()
                    .len();
                (slot.quota, slot.tats.get(tiers).to_vec())
            }
            None => {
                let quota = self.definition.quotas.resolve(target.scope, target.key);
                (
                    quota,
                    vec![0; self.definition.quotas.all[quota as usize].tiers().len()],
                )
            }
        }
    }

    /// Moves a tracked key to quota `quota`, carrying each tier's count into the new tier that
    /// counts the same thing ([`Tier::carries_to`](crate::Tier)); a tier with no such match starts
    /// full. A key not tracked takes its new quota when it is first seen.
    pub(crate) fn requota(&self, target: &Target<'_>, quota: u32) {
        let mut shard = self.lock(self.shard_of(target));
        let Some(slot) = shard.slot_mut(target) else {
            return;
        };
        if slot.quota == quota {
            return;
        }
        let old = self.definition.quotas.all[slot.quota as usize].tiers();
        let new = self.definition.quotas.all[quota as usize].tiers();
        let before = slot.tats.get(old.len());
        let mut tats = shard::Tats::full(new.len());
        let after = tats.get_mut(new.len());
        for (i, tier) in new.iter().enumerate() {
            if let Some(j) = old.iter().position(|o| o.carries_to(tier)) {
                after[i] = before[j];
            }
        }
        slot.tats = tats;
        slot.quota = quota;
    }

    /// Has each calendar tier of `dimension` on `calendar` in the key's quota count at least
    /// `spent` in its current period; other tiers are left alone. Returns whether the key is
    /// tracked (a new key past the key cap is not).
    pub(crate) fn restore_spent(
        &self,
        target: &Target<'_>,
        (dimension, calendar): (crate::Dimension, &crate::Calendar),
        spent: u64,
        now: u64,
    ) -> bool {
        let mut shard = self.lock(self.shard_of(target));
        if shard.slot(target).is_none() {
            if !self.has_room(&mut shard, 1, now) {
                return false;
            }
            let quota = self.definition.quotas.resolve(target.scope, target.key);
            let tiers = self.definition.quotas.all[quota as usize].tiers().len();
            let slot = shard::Slot {
                key: key::KeyText::new(target.key),
                scope: target.scope,
                quota,
                tats: shard::Tats::full(tiers),
            };
            self.insert(&mut shard, target.hash, slot, now);
        }
        let at = self.at(now);
        let slot = shard.slot_mut(target).expect("made above");
        let tiers = self.definition.quotas.all[slot.quota as usize].tiers();
        for (tier, state) in tiers.iter().zip(slot.tats.get_mut(tiers.len())) {
            if let Some(own) = tier.calendar_period()
                && tier.dimension() == dimension
                && own == calendar
            {
                let index = own.span(at.wall).index;
                let had = crate::calendar::spent::in_period(*state, index);
                *state = crate::calendar::spent::state(index, had.max(spent));
            }
        }
        true
    }

    /// Forgets a key's state: its tiers are full again. Returns whether it was live.
    pub(crate) fn remove(&self, target: &Target<'_>) -> bool {
        let mut shard = self.lock(self.shard_of(target));
        // Its counts go with it, as when a sweep drops it: otherwise keys reset one after another
        // would each leave counts behind that no sweep is due to clear.
        if let Some(per_key) = &mut shard.per_key
            && let Ok(stats) = per_key.find_entry(target.hash, |s| target.is(s.scope, &s.key))
        {
            stats.remove();
        }
        match shard.slots.find_entry(target.hash, eq(target)) {
            Ok(entry) => {
                entry.remove();
                self.live.fetch_sub(1, Ordering::Relaxed);
                true
            }
            Err(_) => false,
        }
    }

    /// Keys that have callers waiting now.
    pub(crate) fn queued_keys(&self) -> usize {
        (0..self.shards.len())
            .map(|i| self.lock(i).queues.len())
            .sum()
    }

    pub(crate) fn metrics(&self) -> Metrics {
        (0..self.shards.len()).fold(Metrics::default(), |sum, i| sum + self.lock(i).metrics)
    }

    pub(crate) fn key_metrics(&self, target: &Target<'_>) -> Option<Metrics> {
        let shard = self.lock(self.shard_of(target));
        let per_key = shard.per_key.as_ref()?;
        Some(
            per_key
                .find(target.hash, |s| target.is(s.scope, &s.key))
                .map_or_else(Metrics::default, |s| s.metrics),
        )
    }

    pub(crate) fn reset_metrics(&self) {
        for i in 0..self.shards.len() {
            let mut shard = self.lock(i);
            shard.metrics = Metrics::default();
            if let Some(per_key) = &mut shard.per_key {
                per_key.clear();
            }
        }
    }

    pub(crate) fn record(&self, target: &Target<'_>, add: impl Fn(&mut Metrics)) {
        self.lock(self.shard_of(target)).count(target, add);
    }

    /// Joins the wait queue of `target`, creating it for the first waiter.
    pub(crate) fn join_queue(&self, target: &Target<'_>) -> Arc<tokio::sync::Semaphore> {
        let mut shard = self.lock(self.shard_of(target));
        if let Some(queue) = shard.queues.iter_mut().find(|q| target.is(q.scope, &q.key)) {
            queue.waiters += 1;
            return queue.turn.clone();
        }
        let turn = Arc::new(tokio::sync::Semaphore::new(1));
        shard.queues.push(WaitQueue {
            scope: target.scope,
            key: target.key.into(),
            turn: turn.clone(),
            waiters: 1,
        });
        turn
    }

    /// Leaves the wait queue of `target`; the last waiter out removes it.
    pub(crate) fn leave_queue(&self, target: &Target<'_>) {
        let mut shard = self.lock(self.shard_of(target));
        if let Some(i) = shard.queues.iter().position(|q| target.is(q.scope, &q.key)) {
            shard.queues[i].waiters -= 1;
            if shard.queues[i].waiters == 0 {
                shard.queues.swap_remove(i);
            }
        }
    }
}
