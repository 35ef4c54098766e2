//! What the router knows about each deployment between calls: calls in flight, when it may be
//! called again, what is left of its provider's limits, how fast it answers, how often it failed.
//! Shared by every call, so it is all atomics except the rarely touched failure window.

use std::{
    collections::VecDeque,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicU8, AtomicU32, AtomicU64, Ordering::Relaxed},
    },
    time::Duration,
};

use tokio::sync::Notify;
use tollgate_core::{
    Operation, RateLimitSnapshot,
    telemetry::{Counter, ROUTER_COOLDOWNS},
};

use crate::news::News;

/// Why a deployment is left alone for a while.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum CooldownReason {
    /// It answered 429 (or overloaded) with a `Retry-After`: skipped until then.
    RetryAfter,
    /// It answered 429 with no word on when to come back: skipped for the configured duration.
    RateLimited,
    /// Its rate-limit headers say a limit has nothing left: skipped until that limit resets.
    QuotaExhausted,
    /// It failed `cooldown.failures` times within `cooldown.window`.
    Failures,
    /// Its key was refused: left out for `cooldown.auth`.
    Auth,
    /// Its circuit breaker is open: skipped until the breaker lets a call through.
    BreakerOpen,
}

impl CooldownReason {
    /// Every reason, in declaration order.
    pub const ALL: [Self; 6] = [
        Self::RetryAfter,
        Self::RateLimited,
        Self::QuotaExhausted,
        Self::Failures,
        Self::Auth,
        Self::BreakerOpen,
    ];

    /// A short snake-case name, for logs and metrics.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::RetryAfter => "retry_after",
            Self::RateLimited => "rate_limited",
            Self::QuotaExhausted => "quota_exhausted",
            Self::Failures => "failures",
            Self::Auth => "auth",
            Self::BreakerOpen => "breaker_open",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// Recent latencies kept for a hedge at the 95th percentile.
const LATENCY_SAMPLES: usize = 64;
/// Answers needed before a percentile is trusted.
const MIN_SAMPLES: usize = 20;
/// How fast an old latency estimate fades (peak-EWMA's decay, as in tower's `PeakEwma`).
const DECAY_NANOS: f64 = 10e9;
/// One call in flight, in [`DeploymentState::load`]; below it, the count of calls made (wrapping
/// past 2^40, a trillion calls).
const IN_FLIGHT: u64 = 1 << 40;
const CALLS: u64 = IN_FLIGHT - 1;
/// The permille that means "the whole limit is left".
pub(crate) const FULL: u32 = 1_000;
/// How far (in permille) what is left of a limit must move to be news for other processes.
const NEWS_STEP: u32 = 50;

/// One deployment's shared state.
#[derive(Debug)]
pub(crate) struct DeploymentState {
    pub(crate) name: Arc<str>,
    pub(crate) weight: u32,
    pub(crate) max_in_flight: u32,
    /// Calls in flight (the bits from [`IN_FLIGHT`] up) and calls made (the bits below), in one
    /// word so that starting a call is one atomic add.
    load: AtomicU64,
    /// Clock nanoseconds before which it is skipped (0: never cooled), and why.
    cool_until: AtomicU64,
    cool_reason: AtomicU8,
    /// What its last call asked ([`Operation::index`]): what a probe asks.
    operation: AtomicU8,
    /// What is left of its tightest provider limit, in permille, until `share_until`.
    share: AtomicU32,
    share_until: AtomicU64,
    /// When that was read (clock nanos): the later of two readings is the truer.
    share_at: AtomicU64,
    /// Peak-EWMA latency in nanoseconds (f64 bits) and when it was last updated.
    ewma: AtomicU64,
    ewma_at: AtomicU64,
    timed: bool,
    latencies: Option<Mutex<Samples>>,
    p95: AtomicU64,
    failures: Mutex<VecDeque<u64>>,
    /// Set when it cooled down for failures, until it answers a call: meanwhile it takes one
    /// call at a time where a call could go elsewhere, so calls arriving together as its
    /// cooldown ends do not all pay for learning whether it is back.
    trial: AtomicBool,
    /// The end (clock nanos) of the last cooldown an answered probe ended: the same cooldown
    /// told again by another process (which has not probed it) is not taken back.
    forgiven: AtomicU64,
    /// Groups that wait for room in this deployment, woken when a call ends.
    pub(crate) wake: Vec<Arc<Notify>>,
    counters: Counters,
    /// Which of its changes other processes have not been told yet ([`HealthBoard`](crate::HealthBoard)).
    pub(crate) news: News,
}

#[derive(Debug, Default)]
struct Counters {
    // Answers are what is left of the calls: the success path pays for one count, not two.
    dropped: AtomicU64,
    failures: AtomicU64,
    cooldowns: [AtomicU64; CooldownReason::ALL.len()],
    probes: AtomicU64,
    failed_probes: AtomicU64,
}

#[derive(Debug)]
struct Samples {
    nanos: [u64; LATENCY_SAMPLES],
    len: usize,
    next: usize,
}

impl DeploymentState {
    /// `timed`: keep a latency estimate (for the latency strategy); `percentile`: keep recent
    /// latencies too (for a hedge at the 95th percentile).
    pub(crate) fn new(
        name: Arc<str>,
        weight: u32,
        max_in_flight: Option<u32>,
        timed: bool,
        percentile: bool,
    ) -> Self {
        Self {
            name,
            weight,
            max_in_flight: max_in_flight.unwrap_or(u32::MAX),
            load: AtomicU64::new(0),
            cool_until: AtomicU64::new(0),
            cool_reason: AtomicU8::new(0),
            operation: AtomicU8::new(0),
            share: AtomicU32::new(FULL),
            share_until: AtomicU64::new(0),
            share_at: AtomicU64::new(0),
            ewma: AtomicU64::new(0f64.to_bits()),
            ewma_at: AtomicU64::new(0),
            timed: timed || percentile,
            latencies: percentile.then(|| {
                Mutex::new(Samples {
                    nanos: [0; LATENCY_SAMPLES],
                    len: 0,
                    next: 0,
                })
            }),
            p95: AtomicU64::new(0),
            failures: Mutex::new(VecDeque::new()),
            trial: AtomicBool::new(false),
            forgiven: AtomicU64::new(0),
            wake: Vec::new(),
            counters: Counters::default(),
            news: News::default(),
        }
    }

    pub(crate) fn in_flight(&self) -> u32 {
        (self.load.load(Relaxed) / IN_FLIGHT) as u32
    }

    /// Takes a place in the bulkhead (and counts the call): false when it is full.
    pub(crate) fn try_enter(&self) -> bool {
        const ONE: u64 = IN_FLIGHT + 1;
        if self.max_in_flight == u32::MAX {
            // Without a bound a plain add will do: cheaper than a compare-and-swap.
            self.load.fetch_add(ONE, Relaxed);
            return true;
        }
        let bound = u64::from(self.max_in_flight);
        self.load
            .fetch_update(Relaxed, Relaxed, |n| {
                (n / IN_FLIGHT < bound).then_some(n.wrapping_add(ONE))
            })
            .is_ok()
    }

    pub(crate) fn leave(&self) {
        self.load.fetch_sub(IN_FLIGHT, Relaxed);
        for notify in &self.wake {
            notify.notify_one();
        }
    }

    pub(crate) fn is_full(&self) -> bool {
        self.in_flight() >= self.max_in_flight
    }

    /// When it may be called again, if it is cooling down at `now`.
    pub(crate) fn cooling_until(&self, now: u64) -> Option<u64> {
        let until = self.cool_until.load(Relaxed);
        (until > now).then_some(until)
    }

    /// Why it is cooling down (the reason of the cooldown that set its end).
    pub(crate) fn cool_reason(&self) -> CooldownReason {
        CooldownReason::ALL[usize::from(self.cool_reason.load(Relaxed))]
    }

    /// Skips it until `now + for_`, unless it is already skipped for longer. Returns whether this
    /// made it cool down for longer.
    pub(crate) fn cool(&self, now: u64, for_: Duration, reason: CooldownReason) -> bool {
        let until = now.saturating_add(nanos(for_));
        let before = self.cool_until.fetch_max(until, Relaxed);
        if before >= until {
            return false;
        }
        self.cool_reason.store(reason.index() as u8, Relaxed);
        self.counters.cooldowns[reason.index()].fetch_add(1, Relaxed);
        if cfg!(feature = "metrics") {
            let labels = [
                ("deployment", self.name.to_string()),
                ("reason", reason.as_str().to_owned()),
            ];
            Counter::new(ROUTER_COOLDOWNS, &labels).increment(1);
        }
        tracing::info!(
            deployment = &*self.name,
            reason = reason.as_str(),
            seconds = for_.as_secs_f64(),
            "deployment cooling down"
        );
        self.news.cooled();
        true
    }

    /// Notes what its calls ask, for its probes; written only when it changes, so the calls of
    /// one kind share the word unwritten.
    pub(crate) fn serves(&self, operation: Operation) {
        let index = operation.index() as u8;
        if self.operation.load(Relaxed) != index {
            self.operation.store(index, Relaxed);
        }
    }

    /// What its last call asked: chat, embeddings or a text completion.
    pub(crate) fn operation(&self) -> Operation {
        Operation::ALL
            .get(usize::from(self.operation.load(Relaxed)))
            .copied()
            .unwrap_or_default()
    }

    /// Whether a probe may bring it back at `now`: it is cooling down after failures, an open
    /// breaker or a refused key. Not for a pause its provider asked for or a spent limit: the
    /// provider said when to come back, and a probe would only spend its quota.
    pub(crate) fn wants_probe(&self, now: u64) -> bool {
        self.cooling_until(now).is_some()
            && matches!(
                self.cool_reason(),
                CooldownReason::Failures | CooldownReason::BreakerOpen | CooldownReason::Auth
            )
    }

    /// Brings it back after a probe answered: its cooldown ends (unless its provider has since
    /// asked for a pause) and its failures so far are forgotten. Whether it came back.
    pub(crate) fn recover(&self, now: u64) -> bool {
        let Some(until) = self.cooling_until(now) else {
            return false;
        };
        if !self.wants_probe(now)
            || self
                .cool_until
                .compare_exchange(until, 0, Relaxed, Relaxed)
                .is_err()
        {
            return false;
        }
        self.failures
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
        // The probe was its trial.
        self.answered();
        self.forgiven.fetch_max(until, Relaxed);
        tracing::info!(
            deployment = &*self.name,
            "deployment answered a probe: back"
        );
        true
    }

    /// Keeps it out until at least `now + for_`, after a probe failed: the same cooldown, longer,
    /// so it is not counted as another.
    pub(crate) fn extend(&self, now: u64, for_: Duration) {
        self.cool_until
            .fetch_max(now.saturating_add(nanos(for_)), Relaxed);
    }

    /// Whether a cooldown ending at `until` for `reason`, as another process found, is one an
    /// answered probe here has already ended (within `slack`): a probe's answer outweighs a
    /// failure seen before it. A pause its provider asked for is never forgiven.
    pub(crate) fn forgives(&self, until: u64, reason: CooldownReason, slack: u64) -> bool {
        matches!(
            reason,
            CooldownReason::Failures | CooldownReason::BreakerOpen | CooldownReason::Auth
        ) && until <= self.forgiven.load(Relaxed).saturating_add(slack)
    }

    /// Counts a probe sent, and whether it failed.
    pub(crate) fn probed(&self, failed: bool) {
        self.counters.probes.fetch_add(1, Relaxed);
        if failed {
            self.counters.failed_probes.fetch_add(1, Relaxed);
        }
    }

    /// When it may be called again (clock nanos, 0 when never cooled) and why.
    pub(crate) fn cooldown(&self) -> (u64, CooldownReason) {
        (self.cool_until.load(Relaxed), self.cool_reason())
    }

    /// Skips it until `until` (clock nanos) for `reason`, as another process found, unless it
    /// is already skipped for longer: whether this made it longer. Neither news to pass on nor
    /// a cooldown this process decided (its count and metric are the deciding process's).
    pub(crate) fn cool_as_told(&self, until: u64, reason: CooldownReason) -> bool {
        let before = self.cool_until.fetch_max(until, Relaxed);
        if before >= until {
            return false;
        }
        self.cool_reason.store(reason.index() as u8, Relaxed);
        if reason == CooldownReason::Failures {
            // As after a cooldown decided here: one call at a time once it ends.
            self.trial.store(true, Relaxed);
        }
        true
    }

    /// What is left of its tightest limit (permille), until when, and when that was read (clock
    /// nanos; 0 for never).
    pub(crate) fn limit_reading(&self) -> (u32, u64, u64) {
        (
            self.share.load(Relaxed),
            self.share_until.load(Relaxed),
            self.share_at.load(Relaxed),
        )
    }

    /// Takes another process's reading of its limits: `share` permille left until `until`, read
    /// at `read_at` (clock nanos).
    pub(crate) fn take_reading(&self, share: u32, until: u64, read_at: u64) {
        self.share.store(share.min(FULL), Relaxed);
        self.share_until.store(until, Relaxed);
        self.share_at.store(read_at, Relaxed);
    }

    /// How much of its usual traffic it gets at `now`: 1, or less when its provider said its
    /// limit is running low (`share / below`, never quite 0).
    pub(crate) fn traffic_factor(&self, now: u64, below: f64) -> f64 {
        if below <= 0.0 || self.share_until.load(Relaxed) <= now {
            return 1.0;
        }
        let share = f64::from(self.share.load(Relaxed)) / f64::from(FULL);
        if share >= below {
            1.0
        } else {
            (share / below).max(0.01)
        }
    }

    /// Reads what the provider said of its limits: a limit with nothing left skips the
    /// deployment until it resets (`fallback` when the provider gave no reset); a low one lowers
    /// its share of traffic until then.
    pub(crate) fn observe_limits(
        &self,
        now: u64,
        snapshot: &RateLimitSnapshot,
        fallback: Duration,
    ) {
        if let Some((share, reset)) = snapshot.lowest_share() {
            let reset = reset.unwrap_or(fallback);
            let share = (share * f64::from(FULL)) as u32;
            let (before, until_before, _) = self.limit_reading();
            self.share.store(share, Relaxed);
            self.share_until
                .store(now.saturating_add(nanos(reset)), Relaxed);
            self.share_at.store(now, Relaxed);
            // Most answers move what is left a little: only a step, or a reading after the last
            // one lapsed, is worth telling other processes.
            if until_before <= now || before / NEWS_STEP != share / NEWS_STEP {
                self.news.read_limits();
            }
        }
        if let Some(reset) = snapshot.exhausted_for() {
            let reset = if reset.is_zero() { fallback } else { reset };
            self.cool(now, reset, CooldownReason::QuotaExhausted);
        }
    }

    /// Counts a failure worth moving for; true when it makes `threshold` within `window`, or
    /// when it failed the trial after a cooldown for failures (and starts another trial).
    pub(crate) fn failed(&self, now: u64, threshold: u32, window: Duration) -> bool {
        self.counters.failures.fetch_add(1, Relaxed);
        if threshold == 0 {
            return false;
        }
        let mut recent = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        if self.trial.load(Relaxed) {
            // Its trial failed; a call sent before the cooldown (or by a group with nowhere
            // else to go) failing while it cools says nothing new.
            return self.cooling_until(now).is_none();
        }
        let window = nanos(window);
        while recent
            .front()
            .is_some_and(|at| at.saturating_add(window) <= now)
        {
            recent.pop_front();
        }
        recent.push_back(now);
        if recent.len() >= threshold as usize {
            recent.clear();
            self.trial.store(true, Relaxed);
            return true;
        }
        false
    }

    /// Whether it is on trial after a cooldown for failures: one call at a time.
    pub(crate) fn on_trial(&self) -> bool {
        self.trial.load(Relaxed)
    }

    /// Whether its trial call is out: until it answers, calls that can go elsewhere do.
    pub(crate) fn trial_out(&self) -> bool {
        self.on_trial() && self.in_flight() > 0
    }

    /// It answered a call: a trial, if any, is over.
    #[inline]
    pub(crate) fn answered(&self) {
        if self.trial.load(Relaxed) {
            self.trial.store(false, Relaxed);
        }
    }

    /// Whether its latency is measured: only a group that needs it pays for the clock reads.
    pub(crate) fn tracks_latency(&self) -> bool {
        self.timed
    }

    /// Counts a call dropped before it ended (a hedge that lost, a caller that left).
    pub(crate) fn dropped(&self) {
        self.counters.dropped.fetch_add(1, Relaxed);
    }

    /// Feeds the latency estimate and the percentile samples.
    pub(crate) fn observe_latency(&self, now: u64, took: u64) {
        let took = took as f64;
        let estimate = self.latency_estimate(now);
        // Peak-EWMA: a slower answer is believed at once; faster ones pull the estimate down
        // gradually, weighted by how long it has been since the last.
        let next = if took > estimate {
            took
        } else {
            let elapsed = now.saturating_sub(self.ewma_at.load(Relaxed)) as f64;
            let decay = (-elapsed / DECAY_NANOS).exp();
            estimate * decay + took * (1.0 - decay)
        };
        self.ewma.store(next.to_bits(), Relaxed);
        self.ewma_at.store(now, Relaxed);
        if let Some(samples) = &self.latencies {
            let mut samples = samples.lock().unwrap_or_else(|p| p.into_inner());
            let slot = samples.next;
            samples.nanos[slot] = took as u64;
            samples.next = (slot + 1) % LATENCY_SAMPLES;
            samples.len = (samples.len + 1).min(LATENCY_SAMPLES);
            if samples.len >= MIN_SAMPLES && samples.next % 4 == 0 {
                let mut sorted = samples.nanos;
                let sorted = &mut sorted[..samples.len];
                sorted.sort_unstable();
                let rank = (sorted.len() * 95).div_ceil(100) - 1;
                self.p95.store(sorted[rank], Relaxed);
            }
        }
    }

    /// The latency estimate at `now`: the peak-EWMA, fading while no answer refreshes it, so a
    /// deployment that was slow once is tried again in time.
    pub(crate) fn latency_estimate(&self, now: u64) -> f64 {
        let ewma = f64::from_bits(self.ewma.load(Relaxed));
        let idle = now.saturating_sub(self.ewma_at.load(Relaxed)) as f64;
        ewma * (-idle / DECAY_NANOS).exp()
    }

    /// Its recent 95th-percentile latency, once it has answered enough calls.
    pub(crate) fn p95(&self) -> Option<Duration> {
        let p95 = self.p95.load(Relaxed);
        (p95 > 0).then(|| Duration::from_nanos(p95))
    }

    pub(crate) fn stats(&self, now: u64) -> DeploymentStats {
        let c = &self.counters;
        let load = self.load.load(Relaxed);
        let in_flight = (load / IN_FLIGHT) as u32;
        let calls = load & CALLS;
        let failures = c.failures.load(Relaxed);
        let dropped = c.dropped.load(Relaxed);
        DeploymentStats {
            name: self.name.clone(),
            in_flight,
            cooling_for: self
                .cooling_until(now)
                .map(|until| Duration::from_nanos(until - now)),
            traffic_share: self.traffic_factor(now, 1.0),
            calls,
            successes: calls
                .saturating_sub(failures)
                .saturating_sub(dropped)
                .saturating_sub(u64::from(in_flight)),
            failures,
            dropped,
            cooldowns: CooldownReason::ALL
                .into_iter()
                .map(|reason| (reason, c.cooldowns[reason.index()].load(Relaxed)))
                .filter(|(_, n)| *n > 0)
                .collect(),
            probes: c.probes.load(Relaxed),
            failed_probes: c.failed_probes.load(Relaxed),
        }
    }
}

/// One deployment as the router sees it now ([`Router::stats`](crate::Router::stats)).
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct DeploymentStats {
    /// The deployment's name.
    pub name: Arc<str>,
    /// Calls in flight.
    pub in_flight: u32,
    /// How long it is still skipped, when it is cooling down.
    pub cooling_for: Option<Duration>,
    /// What is left of its tightest provider limit, 0 to 1 (1 when unknown or reset).
    pub traffic_share: f64,
    /// Calls sent to it.
    pub calls: u64,
    /// Calls it answered.
    pub successes: u64,
    /// Calls it failed.
    pub failures: u64,
    /// Calls dropped before they ended: hedges that lost, callers that went away.
    pub dropped: u64,
    /// Cooldowns it went into, by reason.
    pub cooldowns: Vec<(CooldownReason, u64)>,
    /// Probes sent to it while it cooled down ([`ProbeConfig`](crate::ProbeConfig)): real
    /// upstream calls, not counted in `calls`.
    pub probes: u64,
    /// Probes it failed, each keeping it out longer.
    pub failed_probes: u64,
}

pub(crate) fn nanos(duration: Duration) -> u64 {
    u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = 1_000_000_000;

    #[test]
    fn a_cooldown_only_ever_grows() {
        let state = DeploymentState::new("a".into(), 1, None, false, false);
        assert!(state.cool(0, Duration::from_secs(30), CooldownReason::RetryAfter));
        assert!(!state.cool(S, Duration::from_secs(5), CooldownReason::RateLimited));
        assert_eq!(state.cooling_until(29 * S), Some(30 * S));
        assert_eq!(state.cooling_until(30 * S), None);
    }

    #[test]
    fn failures_cool_only_within_the_window() {
        let state = DeploymentState::new("a".into(), 1, None, false, false);
        let minute = Duration::from_secs(60);
        assert!(!state.failed(0, 3, minute));
        assert!(!state.failed(30 * S, 3, minute));
        // The first has left the window by now.
        assert!(!state.failed(61 * S, 3, minute));
        assert!(state.failed(62 * S, 3, minute));
        // After the cooldown it is on trial: one failure cools it again, one answer ends the
        // trial and the count starts over.
        assert!(state.on_trial());
        state.cool(62 * S, Duration::from_secs(10), CooldownReason::Failures);
        // A call sent before the cooldown failing while it runs says nothing new.
        assert!(!state.failed(65 * S, 3, minute));
        assert!(state.failed(73 * S, 3, minute));
        state.answered();
        assert!(!state.on_trial());
        assert!(!state.failed(74 * S, 3, minute));
        assert!(!state.failed(75 * S, 3, minute));
        assert!(state.failed(76 * S, 3, minute));
    }

    #[test]
    fn the_bulkhead_holds_its_bound() {
        let state = DeploymentState::new("a".into(), 1, Some(2), false, false);
        assert!(state.try_enter() && state.try_enter());
        assert!(!state.try_enter());
        state.leave();
        assert!(state.try_enter());
        assert_eq!(state.in_flight(), 2);
    }

    #[test]
    fn the_percentile_waits_for_enough_answers() {
        let state = DeploymentState::new("a".into(), 1, None, false, true);
        for i in 1..=19 {
            state.observe_latency(i * S, i * 1_000_000);
        }
        assert_eq!(state.p95(), None);
        state.observe_latency(20 * S, 20_000_000);
        assert_eq!(state.p95(), Some(Duration::from_millis(19)));
    }
}
