//! Deciding a call against one target or several as one step, and settling after the fact.

use std::sync::MutexGuard;

use super::{
    Store,
    key::{KeyText, Target},
    shard::{Shard, Slot, Tats},
};
use crate::{
    gcra::{self, Verdict},
    quota::{Amounts, MAX_TARGETS},
};

const FIRST_TRY: Mode = Mode::Consume { queued: false };

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

impl Store {
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
                let verdict = gcra::evaluate(tiers, tats, amounts, self.at(now));
                if verdict == Verdict::Admit && mode != Mode::Check {
                    gcra::charge(tiers, tats, amounts, self.at(now));
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
                let verdict = gcra::evaluate(tiers, fresh.get(tiers.len()), amounts, self.at(now));
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
                    gcra::charge(tiers, slot.tats.get_mut(tiers.len()), amounts, self.at(now));
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
                    gcra::evaluate(tiers, slot.tats.get(tiers.len()), amounts, self.at(now))
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
                        self.at(now),
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
                    gcra::refund(tiers, slot.tats.get_mut(tiers.len()), amounts, self.at(now));
                }
            } else if shard.slot(target).is_some() || self.has_room(&mut shard, 1, now) {
                self.charge_locked(&mut shard, target, amounts, now);
            }
        }
    }

    pub(super) fn charge_locked(
        &self,
        shard: &mut Shard,
        target: &Target<'_>,
        amounts: &Amounts,
        now: u64,
    ) {
        if let Some(slot) = shard.slot_mut(target) {
            let tiers = self.definition.quotas.all[slot.quota as usize].tiers();
            gcra::charge(tiers, slot.tats.get_mut(tiers.len()), amounts, self.at(now));
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
        gcra::charge(tiers, slot.tats.get_mut(tiers.len()), amounts, self.at(now));
        self.insert(shard, target.hash, slot, now);
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
