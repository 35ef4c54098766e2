//! A shard: one mutex-guarded hash table of keys' timestamps, with its wait queues and counts.

use std::sync::Arc;

use hashbrown::HashTable;

use super::key::{KeyText, Target};
use crate::metrics::Metrics;

const INLINE_TIERS: usize = 3;

/// A key's GCRA timestamps, one per tier of its quota: inline for up to three tiers.
pub(super) enum Tats {
    Inline([u64; INLINE_TIERS]),
    Heap(Box<[u64]>),
}

impl Tats {
    pub(super) fn full(tiers: usize) -> Self {
        if tiers <= INLINE_TIERS {
            Self::Inline([0; INLINE_TIERS])
        } else {
            Self::Heap(vec![0; tiers].into_boxed_slice())
        }
    }

    pub(super) fn get(&self, tiers: usize) -> &[u64] {
        match self {
            Self::Inline(tats) => &tats[..tiers],
            Self::Heap(tats) => tats,
        }
    }

    pub(super) fn get_mut(&mut self, tiers: usize) -> &mut [u64] {
        match self {
            Self::Inline(tats) => &mut tats[..tiers],
            Self::Heap(tats) => tats,
        }
    }
}

pub(super) struct Slot {
    pub(super) key: KeyText,
    pub(super) scope: u32,
    pub(super) quota: u32,
    pub(super) tats: Tats,
}

pub(super) struct KeyStats {
    pub(super) key: Arc<str>,
    pub(super) scope: u32,
    pub(super) hash: u64,
    pub(super) metrics: Metrics,
}

/// Callers waiting for one key, served first come first served by a one-permit semaphore.
pub(super) struct WaitQueue {
    pub(super) scope: u32,
    pub(super) key: Arc<str>,
    pub(super) turn: Arc<tokio::sync::Semaphore>,
    pub(super) waiters: usize,
}

#[derive(Default)]
pub(super) struct Shard {
    pub(super) slots: HashTable<Slot>,
    pub(super) queues: Vec<WaitQueue>,
    pub(super) metrics: Metrics,
    pub(super) per_key: Option<HashTable<KeyStats>>,
}

impl Shard {
    pub(super) fn is_queued(&self, target: &Target<'_>) -> bool {
        !self.queues.is_empty() && self.queues.iter().any(|q| target.is(q.scope, &q.key))
    }

    pub(super) fn slot(&self, target: &Target<'_>) -> Option<&Slot> {
        self.slots.find(target.hash, eq(target))
    }

    pub(super) fn slot_mut(&mut self, target: &Target<'_>) -> Option<&mut Slot> {
        self.slots.find_mut(target.hash, eq(target))
    }

    pub(super) fn count(&mut self, target: &Target<'_>, add: impl Fn(&mut Metrics)) {
        add(&mut self.metrics);
        if let Some(per_key) = &mut self.per_key {
            match per_key.find_mut(target.hash, |s| target.is(s.scope, &s.key)) {
                Some(stats) => add(&mut stats.metrics),
                // Only tracked keys get counts of their own, so a flood of refused new keys
                // cannot grow this table past the key cap.
                None if self.slots.find(target.hash, eq(target)).is_none() => {}
                None => {
                    let mut metrics = Metrics::default();
                    add(&mut metrics);
                    let stats = KeyStats {
                        key: target.key.into(),
                        scope: target.scope,
                        hash: target.hash,
                        metrics,
                    };
                    per_key.insert_unique(target.hash, stats, |s| s.hash);
                }
            }
        }
    }
}

pub(super) fn eq<'a>(target: &'a Target<'_>) -> impl Fn(&Slot) -> bool + 'a {
    move |slot| slot.scope == target.scope && slot.key.as_bytes() == target.key.as_bytes()
}

#[cfg(test)]
mod tests {
    use super::Slot;

    #[test]
    fn a_slot_is_one_cache_line() {
        assert_eq!(std::mem::size_of::<Slot>(), 64);
    }
}
