//! Choosing a deployment within a group: the four strategies over the deployments that can take
//! a call now (not tried by this call, not cooling down, not at their `max_in_flight`).

use std::sync::{
    Arc,
    atomic::{AtomicU64, Ordering::Relaxed},
};

use crate::{
    config::Strategy,
    state::{CooldownReason, DeploymentState},
};

/// Why nothing in a group could take the call.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Skipped {
    /// Some deployment was at its `max_in_flight`.
    pub(crate) full: bool,
    /// The earliest end of a cooldown that kept one out, and that cooldown's reason.
    pub(crate) cooling: Option<(u64, CooldownReason)>,
    /// A deployment passed over because its trial call is out: taken when nothing else can be.
    pub(crate) on_trial: Option<usize>,
}

impl Skipped {
    pub(crate) fn merge(&mut self, other: Self) {
        self.full |= other.full;
        self.on_trial = self.on_trial.or(other.on_trial);
        self.cooling = match (self.cooling, other.cooling) {
            (Some(a), Some(b)) => Some(if b.0 < a.0 { b } else { a }),
            (a, b) => a.or(b),
        };
    }
}

/// The deployments one call has tried, by index.
#[derive(Debug, Default)]
pub(crate) struct Tried {
    low: u64,
    // Past the 64th deployment (an empty vector allocates nothing).
    high: Vec<usize>,
}

impl Tried {
    pub(crate) fn insert(&mut self, index: usize) {
        if index < 64 {
            self.low |= 1 << index;
        } else if !self.high.contains(&index) {
            self.high.push(index);
        }
    }

    pub(crate) fn contains(&self, index: usize) -> bool {
        if index < 64 {
            self.low & (1 << index) != 0
        } else {
            self.high.contains(&index)
        }
    }
}

/// SplitMix64 over a shared counter, read and written without a locked instruction: two calls
/// at the same moment may draw the same number, which costs a balancer nothing, while a locked
/// add on every call would cost every call. A seed repeats a single-threaded run.
#[derive(Debug)]
pub(crate) struct Rng(AtomicU64);

impl Rng {
    const GAMMA: u64 = 0x9E37_79B9_7F4A_7C15;

    pub(crate) fn new(seed: u64) -> Self {
        Self(AtomicU64::new(seed))
    }

    pub(crate) fn next_u64(&self) -> u64 {
        let mut z = self.0.load(Relaxed).wrapping_add(Self::GAMMA);
        self.0.store(z, Relaxed);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `[0, n)`; `n` must be > 0.
    pub(crate) fn below(&self, n: usize) -> usize {
        ((u128::from(self.next_u64()) * n as u128) >> 64) as usize
    }

    /// Uniform in `[0, 1)`.
    pub(crate) fn unit(&self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1_u64 << 53) as f64)
    }
}

/// What a pick reads: the deployments, the clock and the adaptive threshold.
pub(crate) struct View<'a> {
    pub(crate) states: &'a [Arc<DeploymentState>],
    pub(crate) tried: &'a Tried,
    pub(crate) now: u64,
    pub(crate) below: f64,
    pub(crate) rng: &'a Rng,
    /// Whether cooling deployments are skipped: not in a group with nowhere else to go, where
    /// the provider is left to answer for itself.
    pub(crate) cooldowns: bool,
}

impl View<'_> {
    /// Whether deployment `index` can take the call, noting in `skipped` why not.
    pub(crate) fn open(&self, index: usize, skipped: &mut Skipped) -> bool {
        if self.tried.contains(index) {
            return false;
        }
        let state = &self.states[index];
        if let Some(until) = state.cooling_until(self.now).filter(|_| self.cooldowns) {
            skipped.merge(Skipped {
                cooling: Some((until, state.cool_reason())),
                ..Skipped::default()
            });
            return false;
        }
        if state.is_full() {
            skipped.full = true;
            return false;
        }
        // After the bulkhead: a last resort must have room, or the call would look again forever.
        if self.cooldowns && state.trial_out() {
            // Its trial call is still out: the others go elsewhere, or to it as a last resort.
            skipped.on_trial.get_or_insert(index);
            return false;
        }
        true
    }

    fn factor(&self, index: usize) -> f64 {
        self.states[index].traffic_factor(self.now, self.below)
    }

    /// Whether deployment `index` takes this call of those it is sent: all of them, or, while its
    /// provider's limit runs low, a share drawn at random.
    pub(crate) fn takes_share(&self, index: usize) -> bool {
        let factor = self.factor(index);
        factor >= 1.0 || self.rng.unit() < factor
    }

    /// A deployment of `members` by `strategy`, or why there is none.
    pub(crate) fn pick(&self, strategy: Strategy, members: &[usize]) -> Result<usize, Skipped> {
        let mut skipped = Skipped::default();
        let chosen = match strategy {
            Strategy::Weighted => self.weighted(members, &mut skipped),
            Strategy::Priority => self.priority(members, &mut skipped),
            Strategy::LeastInFlight => self.least_in_flight(members, &mut skipped),
            Strategy::Latency => self.latency(members, &mut skipped),
        };
        chosen.or(skipped.on_trial).ok_or(skipped)
    }

    fn weighted(&self, members: &[usize], skipped: &mut Skipped) -> Option<usize> {
        let weight =
            |index: usize| f64::from(self.states[index].weight.max(1)) * self.factor(index);
        let total: f64 = members
            .iter()
            .filter(|&&i| self.open(i, skipped))
            .map(|&i| weight(i))
            .sum();
        if total <= 0.0 {
            return None;
        }
        let mut point = self.rng.unit() * total;
        let mut last = None;
        for &index in members {
            // Read again: a deployment may have filled up since; then the last open one serves.
            if !self.open(index, &mut Skipped::default()) {
                continue;
            }
            last = Some(index);
            point -= weight(index);
            if point < 0.0 {
                return Some(index);
            }
        }
        last
    }

    fn priority(&self, members: &[usize], skipped: &mut Skipped) -> Option<usize> {
        let mut fallback = None;
        for &index in members {
            if !self.open(index, skipped) {
                continue;
            }
            // One running low on quota passes on its share of calls to the next in line.
            let factor = self.factor(index);
            if factor >= 1.0 || self.rng.unit() < factor {
                return Some(index);
            }
            fallback.get_or_insert(index);
        }
        fallback
    }

    fn least_in_flight(&self, members: &[usize], skipped: &mut Skipped) -> Option<usize> {
        // Scanned from a random place, the first of the least loaded wins: ties are broken at
        // random with one draw.
        let start = if members.len() > 1 {
            self.rng.below(members.len())
        } else {
            0
        };
        let mut best: Option<(f64, usize)> = None;
        for n in 0..members.len() {
            let index = members[(start + n) % members.len()];
            if !self.open(index, skipped) {
                continue;
            }
            let load = f64::from(self.states[index].in_flight() + 1) / self.factor(index);
            if best.is_none_or(|(least, _)| load < least) {
                best = Some((load, index));
            }
        }
        best.map(|(_, index)| index)
    }

    fn latency(&self, members: &[usize], skipped: &mut Skipped) -> Option<usize> {
        let open = members.iter().filter(|&&i| self.open(i, skipped)).count();
        let nth = |n: usize| {
            members
                .iter()
                .copied()
                .filter(|&i| self.open(i, &mut Skipped::default()))
                .nth(n)
        };
        let (a, b) = match open {
            0 => return None,
            1 => return nth(0),
            2 => (nth(0)?, nth(1)?),
            n => {
                let first = self.rng.below(n);
                let second = (first + 1 + self.rng.below(n - 1)) % n;
                (nth(first)?, nth(second)?)
            }
        };
        let cost = |index: usize| {
            let state = &self.states[index];
            state.latency_estimate(self.now) * f64::from(state.in_flight() + 1) / self.factor(index)
        };
        Some(if cost(b) < cost(a) { b } else { a })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn states(n: usize) -> Vec<Arc<DeploymentState>> {
        (0..n)
            .map(|i| {
                Arc::new(DeploymentState::new(
                    i.to_string().into(),
                    1,
                    Some(1),
                    false,
                    false,
                ))
            })
            .collect()
    }

    #[test]
    fn tried_holds_any_index() {
        let mut tried = Tried::default();
        tried.insert(3);
        tried.insert(70);
        assert!(tried.contains(3) && tried.contains(70));
        assert!(!tried.contains(4) && !tried.contains(71));
    }

    #[test]
    fn a_deployment_out_on_its_trial_is_the_last_resort() {
        // No bulkhead: only the trial holds it back.
        let states: Vec<_> = (0..2)
            .map(|i| {
                Arc::new(DeploymentState::new(
                    i.to_string().into(),
                    1,
                    None,
                    false,
                    false,
                ))
            })
            .collect();
        let rng = Rng::new(1);
        let minute = std::time::Duration::from_secs(60);
        for at in 0..3 {
            states[0].failed(at, 3, minute);
        }
        assert!(states[0].try_enter(), "its trial call");
        let pick = |tried: &Tried, strategy: Strategy| {
            View {
                states: &states,
                tried,
                now: 0,
                below: 0.5,
                rng: &rng,
                cooldowns: true,
            }
            .pick(strategy, &[0, 1])
        };
        let mut tried = Tried::default();
        assert_eq!(pick(&tried, Strategy::Priority), Ok(1));
        tried.insert(1);
        assert_eq!(pick(&tried, Strategy::Weighted), Ok(0));
    }

    #[test]
    fn priority_takes_the_first_open_one() {
        let states = states(3);
        let rng = Rng::new(1);
        let mut tried = Tried::default();
        tried.insert(0);
        assert!(states[1].try_enter());
        let view = View {
            states: &states,
            tried: &tried,
            now: 0,
            below: 0.5,
            rng: &rng,
            cooldowns: true,
        };
        assert_eq!(view.pick(Strategy::Priority, &[0, 1, 2]), Ok(2));
        assert!(states[2].try_enter());
        assert_eq!(
            view.pick(Strategy::Priority, &[0, 1, 2]),
            Err(Skipped {
                full: true,
                ..Skipped::default()
            })
        );
    }

    #[test]
    fn weighted_follows_the_weights() {
        let states: Vec<_> = [1, 3]
            .into_iter()
            .map(|w| Arc::new(DeploymentState::new("d".into(), w, None, false, false)))
            .collect();
        let rng = Rng::new(7);
        let tried = Tried::default();
        let view = View {
            states: &states,
            tried: &tried,
            now: 0,
            below: 0.5,
            rng: &rng,
            cooldowns: true,
        };
        let heavy = (0..4_000)
            .filter(|_| view.pick(Strategy::Weighted, &[0, 1]) == Ok(1))
            .count();
        // 3 in 4 expected: 3000 ± 3 %.
        assert!((2_900..=3_100).contains(&heavy), "{heavy}");
    }
}
