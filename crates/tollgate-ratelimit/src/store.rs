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

use std::sync::{
    Arc, Mutex, MutexGuard,
    atomic::{AtomicU64, AtomicUsize, Ordering},
};

use foldhash::fast::RandomState;
use hashbrown::HashTable;
use std::hash::BuildHasher;

use crate::{
    definition::Definition,
    gcra::{self, Verdict},
    metrics::Metrics,
    quota::{Amounts, MAX_TARGETS},
};

const INLINE_TIERS: usize = 3;

const FIRST_TRY: Mode = Mode::Consume { queued: false };

/// One (scope, key) a call is checked against, with its hash computed once.
#[derive(Clone, Copy, Default)]
pub(crate) struct Target<'a> {
    pub(crate) scope: u32,
    pub(crate) key: &'a str,
    hash: u64,
}

impl Target<'_> {
    /// Whether `scope` and `key` name this target (a wait queue's, or a key's counts).
    fn is(&self, scope: u32, key: &str) -> bool {
        self.scope == scope && self.key == key
    }
}

/// Why the store refused a call, and which of its targets refused it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Refusal {
    pub(crate) target: usize,
    pub(crate) reason: Reason,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Reason {
    /// Tier `tier` admits in `after` nanoseconds.
    Wait { tier: usize, after: u64 },
    /// Tier `tier` can never admit the call.
    Never { tier: usize },
    /// Callers are already waiting on this key; a newcomer queues behind them.
    Queued,
    /// A new key would exceed the cap on live keys.
    Capacity,
}

/// Whether a decision only looks, or consumes on admission.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    Check,
    /// Consume if admitted. A caller that is not `queued` is refused by keys that have callers
    /// waiting, and counted in the metrics; a `queued` caller holds its queue's turn, and the limiter
    /// counts how its wait ends.
    Consume {
        queued: bool,
    },
}

enum Tats {
    Inline([u64; INLINE_TIERS]),
    Heap(Box<[u64]>),
}

impl Tats {
    fn full(tiers: usize) -> Self {
        if tiers <= INLINE_TIERS {
            Self::Inline([0; INLINE_TIERS])
        } else {
            Self::Heap(vec![0; tiers].into_boxed_slice())
        }
    }

    fn get(&self, tiers: usize) -> &[u64] {
        match self {
            Self::Inline(tats) => &tats[..tiers],
            Self::Heap(tats) => tats,
        }
    }

    fn get_mut(&mut self, tiers: usize) -> &mut [u64] {
        match self {
            Self::Inline(tats) => &mut tats[..tiers],
            Self::Heap(tats) => tats,
        }
    }
}

/// A key's text: inline when short (most tenant, user and API-key ids), so the common lookup
/// touches one cache line and a key costs no allocation of its own.
enum KeyText {
    Inline { len: u8, bytes: [u8; INLINE_KEY] },
    Heap(Box<str>),
}

const INLINE_KEY: usize = 22;

impl KeyText {
    fn new(key: &str) -> Self {
        if key.len() <= INLINE_KEY {
            let mut bytes = [0; INLINE_KEY];
            bytes[..key.len()].copy_from_slice(key.as_bytes());
            Self::Inline {
                len: key.len() as u8,
                bytes,
            }
        } else {
            Self::Heap(key.into())
        }
    }

    fn as_bytes(&self) -> &[u8] {
        match self {
            Self::Inline { len, bytes } => &bytes[..usize::from(*len)],
            Self::Heap(key) => key.as_bytes(),
        }
    }

    fn as_str(&self) -> &str {
        std::str::from_utf8(self.as_bytes()).expect("copied from a str")
    }
}

struct Slot {
    key: KeyText,
    scope: u32,
    quota: u32,
    tats: Tats,
}

struct KeyStats {
    key: Arc<str>,
    scope: u32,
    hash: u64,
    metrics: Metrics,
}

/// Callers waiting for one key, served first come first served by a one-permit semaphore.
struct WaitQueue {
    scope: u32,
    key: Arc<str>,
    turn: Arc<tokio::sync::Semaphore>,
    waiters: usize,
}

#[derive(Default)]
struct Shard {
    slots: HashTable<Slot>,
    queues: Vec<WaitQueue>,
    metrics: Metrics,
    per_key: Option<HashTable<KeyStats>>,
}

impl Shard {
    fn is_queued(&self, target: &Target<'_>) -> bool {
        !self.queues.is_empty() && self.queues.iter().any(|q| target.is(q.scope, &q.key))
    }

    fn slot(&self, target: &Target<'_>) -> Option<&Slot> {
        self.slots.find(target.hash, eq(target))
    }

    fn slot_mut(&mut self, target: &Target<'_>) -> Option<&mut Slot> {
        self.slots.find_mut(target.hash, eq(target))
    }

    fn count(&mut self, target: &Target<'_>, add: impl Fn(&mut Metrics)) {
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

fn eq<'a>(target: &'a Target<'_>) -> impl Fn(&Slot) -> bool + 'a {
    move |slot| slot.scope == target.scope && slot.key.as_bytes() == target.key.as_bytes()
}

#[repr(align(128))]
#[derive(Default)]
struct Padded<T>(T);

pub(crate) struct Store {
    shards: Box<[Padded<Mutex<Shard>>]>,
    shift: u32,
    hasher: RandomState,
    definition: Definition,
    live: AtomicUsize,
    max_keys: usize,
    last_full_sweep: AtomicU64,
}

/// Nanoseconds between sweeps of every shard triggered by the key cap.
const FULL_SWEEP_EVERY: u64 = 10_000_000;

impl Store {
    pub(crate) fn new(definition: Definition, max_keys: usize, per_key_metrics: bool) -> Self {
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

    /// Decides a call for one target: the fast path.
    pub(crate) fn decide_one(
        &self,
        target: &Target<'_>,
        amounts: &Amounts,
        now: u64,
        mode: Mode,
    ) -> Result<(), Refusal> {
        let shard_index = self.shard_of(target);
        let mut shard = self.lock(shard_index);
        let refuse = |reason| Refusal { target: 0, reason };
        if mode == FIRST_TRY && shard.is_queued(target) {
            shard.count(target, |m| m.denied += 1);
            return Err(refuse(Reason::Queued));
        }
        let verdict = match shard.slot_mut(target) {
            Some(slot) => {
                let tiers = self.definition.quotas.all[slot.quota as usize].tiers();
                let tats = slot.tats.get_mut(tiers.len());
                let verdict = gcra::evaluate(tiers, tats, amounts, now);
                if verdict == Verdict::Admit && mode != Mode::Check {
                    gcra::charge(tiers, tats, amounts, now);
                    if mode == FIRST_TRY {
                        shard.count(target, |m| m.allowed += 1);
                    }
                    return Ok(());
                }
                verdict
            }
            None => {
                let quota = self.definition.quotas.resolve(target.scope, target.key);
                let tiers = self.definition.quotas.all[quota as usize].tiers();
                let fresh = Tats::full(tiers.len());
                let verdict = gcra::evaluate(tiers, fresh.get(tiers.len()), amounts, now);
                if verdict == Verdict::Admit && mode != Mode::Check {
                    if !self.has_room(&mut shard, 1, now) {
                        if mode == FIRST_TRY {
                            shard.count(target, |m| m.denied += 1);
                        }
                        return Err(refuse(Reason::Capacity));
                    }
                    let mut slot = Slot {
                        key: KeyText::new(target.key),
                        scope: target.scope,
                        quota,
                        tats: fresh,
                    };
                    gcra::charge(tiers, slot.tats.get_mut(tiers.len()), amounts, now);
                    self.insert(&mut shard, target.hash, slot, now);
                    if mode == FIRST_TRY {
                        shard.count(target, |m| m.allowed += 1);
                    }
                    return Ok(());
                }
                verdict
            }
        };
        match verdict {
            Verdict::Admit => Ok(()),
            denied => {
                if mode == FIRST_TRY {
                    shard.count(target, |m| m.denied += 1);
                }
                Err(refuse(reason(denied)))
            }
        }
    }

    /// Decides a call for several targets as one step: every target admits, or nothing changes.
    pub(crate) fn decide_many(
        &self,
        targets: &[Target<'_>],
        amounts: &Amounts,
        now: u64,
        mode: Mode,
    ) -> Result<(), Refusal> {
        debug_assert!(targets.len() <= MAX_TARGETS);
        let mut shard_of = [0_usize; MAX_TARGETS];
        for (i, target) in targets.iter().enumerate() {
            shard_of[i] = self.shard_of(target);
        }
        let mut order = shard_of;
        let order = &mut order[..targets.len()];
        order.sort_unstable();
        let mut guards: [Option<MutexGuard<'_, Shard>>; MAX_TARGETS] = Default::default();
        let mut previous = usize::MAX;
        for &shard in order.iter() {
            if shard != previous {
                guards[shard_slot(order, shard)] = Some(self.lock(shard));
                previous = shard;
            }
        }
        let guard_of = |i: usize| shard_slot(order, shard_of[i]);

        // First pass: decide, changing nothing.
        let mut worst: Option<Refusal> = None;
        let mut new_keys = 0;
        let mut first_new = 0;
        for (i, target) in targets.iter().enumerate() {
            if duplicate(targets, i) {
                continue;
            }
            let shard = guards[guard_of(i)].as_deref().expect("locked above");
            if mode == FIRST_TRY && shard.is_queued(target) {
                worst = Some(Refusal {
                    target: i,
                    reason: Reason::Queued,
                });
                break;
            }
            let verdict = match shard.slot(target) {
                Some(slot) => {
                    let tiers = self.definition.quotas.all[slot.quota as usize].tiers();
                    gcra::evaluate(tiers, slot.tats.get(tiers.len()), amounts, now)
                }
                None => {
                    if new_keys == 0 {
                        first_new = i;
                    }
                    new_keys += 1;
                    let quota = self.definition.quotas.resolve(target.scope, target.key);
                    let tiers = self.definition.quotas.all[quota as usize].tiers();
                    gcra::evaluate(
                        tiers,
                        Tats::full(tiers.len()).get(tiers.len()),
                        amounts,
                        now,
                    )
                }
            };
            if verdict == Verdict::Admit {
                continue;
            }
            let refusal = Refusal {
                target: i,
                reason: reason(verdict),
            };
            match verdict {
                Verdict::Admit => {}
                Verdict::Never { .. } => {
                    worst = Some(refusal);
                    break;
                }
                Verdict::Wait { after, .. } => {
                    let longer = match worst {
                        Some(Refusal {
                            reason: Reason::Wait { after: other, .. },
                            ..
                        }) => after > other,
                        _ => true,
                    };
                    if longer {
                        worst = Some(refusal);
                    }
                }
            }
        }
        if let Some(refusal) = worst {
            if mode == FIRST_TRY {
                for (i, target) in targets.iter().enumerate() {
                    if !duplicate(targets, i) {
                        let shard = guards[guard_of(i)].as_deref_mut().expect("locked above");
                        shard.count(target, |m| m.denied += 1);
                    }
                }
            }
            return Err(refusal);
        }
        if mode == Mode::Check {
            return Ok(());
        }
        if new_keys > 0 {
            let first = guards[guard_of(0)].as_deref_mut().expect("locked above");
            if !self.has_room(first, new_keys, now) {
                for (i, target) in targets.iter().enumerate() {
                    if mode == FIRST_TRY && !duplicate(targets, i) {
                        let shard = guards[guard_of(i)].as_deref_mut().expect("locked above");
                        shard.count(target, |m| m.denied += 1);
                    }
                }
                return Err(Refusal {
                    target: first_new,
                    reason: Reason::Capacity,
                });
            }
        }

        // Second pass: every target admits, so consume everywhere.
        for (i, target) in targets.iter().enumerate() {
            if duplicate(targets, i) {
                continue;
            }
            let shard = guards[guard_of(i)].as_deref_mut().expect("locked above");
            self.charge_locked(shard, target, amounts, now);
            if mode == FIRST_TRY {
                shard.count(target, |m| m.allowed += 1);
            }
        }
        Ok(())
    }

    /// Charges (possibly into debt) or refunds every target, creating keys that a charge needs.
    pub(crate) fn adjust(&self, targets: &[Target<'_>], amounts: &Amounts, refund: bool, now: u64) {
        if amounts.is_zero() {
            return;
        }
        for (i, target) in targets.iter().enumerate() {
            if duplicate(targets, i) {
                continue;
            }
            let mut shard = self.lock(self.shard_of(target));
            if refund {
                if let Some(slot) = shard.slot_mut(target) {
                    let tiers = self.definition.quotas.all[slot.quota as usize].tiers();
                    gcra::refund(tiers, slot.tats.get_mut(tiers.len()), amounts, now);
                }
            } else if shard.slot(target).is_some() || self.has_room(&mut shard, 1, now) {
                self.charge_locked(&mut shard, target, amounts, now);
            }
        }
    }

    fn charge_locked(&self, shard: &mut Shard, target: &Target<'_>, amounts: &Amounts, now: u64) {
        if let Some(slot) = shard.slot_mut(target) {
            let tiers = self.definition.quotas.all[slot.quota as usize].tiers();
            gcra::charge(tiers, slot.tats.get_mut(tiers.len()), amounts, now);
            return;
        }
        // A new key: the caller checked there is room for it.
        let quota = self.definition.quotas.resolve(target.scope, target.key);
        let tiers = self.definition.quotas.all[quota as usize].tiers();
        let mut slot = Slot {
            key: KeyText::new(target.key),
            scope: target.scope,
            quota,
            tats: Tats::full(tiers.len()),
        };
        gcra::charge(tiers, slot.tats.get_mut(tiers.len()), amounts, now);
        self.insert(shard, target.hash, slot, now);
    }

    /// Whether `n` new keys fit under the cap, sweeping first if they do not.
    ///
    /// The count itself moves only where keys are really inserted or removed, so a sweep that
    /// forgets a key a call was about to touch cannot skew it. Calls racing past this check at
    /// the same moment can pass the cap by at most their own new keys.
    fn has_room(&self, shard: &mut Shard, n: usize, now: u64) -> bool {
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
    fn sweep_others(&self, now: u64) {
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

    fn insert(&self, shard: &mut Shard, hash: u64, slot: Slot, now: u64) {
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

    fn sweep_shard(&self, shard: &mut Shard, now: u64) -> usize {
        let quotas = &self.definition.quotas;
        let before = shard.slots.len();
        shard.slots.retain(|slot| {
            let tiers = quotas.all[slot.quota as usize].tiers().len();
            !gcra::is_full(slot.tats.get(tiers), now)
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

fn reason(verdict: Verdict) -> Reason {
    match verdict {
        Verdict::Wait { tier, after } => Reason::Wait { tier, after },
        Verdict::Never { tier } => Reason::Never { tier },
        Verdict::Admit => unreachable!("only refusals are converted"),
    }
}

/// Whether target `i` repeats an earlier one (it is decided and consumed once).
fn duplicate(targets: &[Target<'_>], i: usize) -> bool {
    targets[..i]
        .iter()
        .any(|t| t.scope == targets[i].scope && t.key == targets[i].key)
}

/// Where shard `shard` sits among the sorted shard indices of a call.
fn shard_slot(order: &[usize], shard: usize) -> usize {
    order.partition_point(|&s| s < shard)
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_slot_is_one_cache_line() {
        assert_eq!(std::mem::size_of::<super::Slot>(), 64);
    }
}
