//! One key's breaker: the state machine, behind one short critical section.

use std::{
    fmt,
    sync::{
        Mutex, MutexGuard,
        atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering},
    },
    time::Duration,
};

use tollgate_core::telemetry::{BREAKER_REFUSALS, BREAKER_STATE, Counter, Gauge};

use crate::{
    classify::Verdict,
    config::Settings,
    window::{Sample, Totals, Window},
};

/// Where a breaker is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    /// Calls flow; outcomes are counted.
    Closed,
    /// Calls fail fast with `CircuitOpen` until the wait is over.
    Open,
    /// A few probe calls are let through to test the upstream; the rest fail fast.
    HalfOpen,
    /// Held open by an operator: every call fails fast until reset.
    ForcedOpen,
    /// Held closed by an operator: every call flows and nothing is counted, until reset.
    ForcedClosed,
}

impl State {
    const fn code(self) -> u8 {
        self as u8
    }

    fn flows_freely(code: u8) -> bool {
        code == Self::Closed.code() || code == Self::ForcedClosed.code()
    }
}

impl State {
    /// The state as the `tollgate.breaker.state` gauge reads it: 0 closed, 1 open, 2 half-open.
    pub(crate) fn gauge(self) -> f64 {
        match self {
            Self::Closed | Self::ForcedClosed => 0.0,
            Self::Open | Self::ForcedOpen => 1.0,
            Self::HalfOpen => 2.0,
        }
    }
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Closed => "closed",
            Self::Open => "open",
            Self::HalfOpen => "half-open",
            Self::ForcedOpen => "forced open",
            Self::ForcedClosed => "forced closed",
        })
    }
}

/// Why a breaker changed state.
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub enum Reason {
    /// The failure rate (percent) reached the threshold.
    FailureRate(f64),
    /// The slow-call rate (percent) reached the threshold.
    SlowCallRate(f64),
    /// The wait in open is over; probes may go through.
    WaitElapsed,
    /// Enough probes succeeded.
    ProbesSucceeded,
    /// Too many probes failed or were slow.
    ProbesFailed,
    /// An operator forced the state.
    Forced,
    /// An operator reset the breaker.
    Reset,
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::FailureRate(rate) => write!(f, "failure rate {rate:.1}%"),
            Self::SlowCallRate(rate) => write!(f, "slow-call rate {rate:.1}%"),
            Self::WaitElapsed => f.write_str("wait in open elapsed"),
            Self::ProbesSucceeded => f.write_str("probes succeeded"),
            Self::ProbesFailed => f.write_str("probes failed"),
            Self::Forced => f.write_str("forced by an operator"),
            Self::Reset => f.write_str("reset by an operator"),
        }
    }
}

/// A state change, without the key (the registry adds it).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Change {
    pub(crate) from: State,
    pub(crate) to: State,
    pub(crate) reason: Reason,
}

/// How a call was let through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Admission {
    Normal,
    Probe,
}

/// Why a call was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// Open: the wait ends in `retry_after`.
    Open { retry_after: Duration },
    /// Half-open with every probe slot taken.
    ProbesBusy,
    /// Forced open.
    Forced,
}

/// Counts and rates of one breaker, as [`CircuitBreakers::metrics`](crate::CircuitBreakers::metrics) reports them.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
#[non_exhaustive]
pub struct BreakerMetrics {
    /// The state.
    pub state: State,
    /// Calls in the current window (the probes, when half-open).
    pub calls: u64,
    /// Failed calls among them.
    pub failures: u64,
    /// Slow calls among them (failed or not).
    pub slow_calls: u64,
    /// `failures / calls` in percent (0 with no calls).
    pub failure_rate: f64,
    /// `slow_calls / calls` in percent (0 with no calls).
    pub slow_call_rate: f64,
    /// Calls refused since the breaker was created.
    pub not_permitted: u64,
    /// Times it opened in a row without closing in between.
    pub consecutive_opens: u32,
}

pub(crate) struct Breaker {
    // Its own rules: a key may have settings of its own.
    settings: Settings,
    // A copy of the state, read without the lock on the closed path.
    state: AtomicU8,
    pinned: AtomicBool,
    inner: Mutex<Inner>,
    not_permitted: AtomicU64,
    // Registered when the breaker is made, under its key (feature `metrics`).
    refusals: Counter,
}

struct Inner {
    state: State,
    window: Window,
    open_until: u64,
    opens: u32,
    probes_left: u32,
    probes: Totals,
    last_used: u64,
}

/// Whether `part / calls` is at least `threshold_bp` basis points (hundredths of a percent).
fn reaches(part: u64, calls: u64, threshold_bp: u64) -> bool {
    u128::from(part) * 10_000 >= u128::from(threshold_bp) * u128::from(calls)
}

fn rate(part: u64, calls: u64) -> f64 {
    if calls == 0 {
        0.0
    } else {
        part as f64 * 100.0 / calls as f64
    }
}

impl Breaker {
    pub(crate) fn new(settings: Settings, now: u64, key: &str) -> Self {
        if cfg!(feature = "metrics") {
            Gauge::new(BREAKER_STATE, &[("key", key.to_owned())]).set(State::Closed.gauge());
        }
        Self {
            settings,
            state: AtomicU8::new(State::Closed.code()),
            pinned: AtomicBool::new(false),
            inner: Mutex::new(Inner {
                state: State::Closed,
                window: Window::new(settings.window),
                open_until: 0,
                opens: 0,
                probes_left: 0,
                probes: Totals::default(),
                last_used: now,
            }),
            not_permitted: AtomicU64::new(0),
            refusals: Counter::new(BREAKER_REFUSALS, &[("key", key.to_owned())]),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // Every update leaves the state consistent before it can panic (none of them does), so a
        // poisoned lock is safe to keep using.
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn set(&self, inner: &mut Inner, to: State, reason: Reason) -> Change {
        let from = inner.state;
        inner.state = to;
        self.state.store(to.code(), Ordering::Release);
        Change { from, to, reason }
    }

    /// Lets a call through or refuses it; may move open → half-open on the way.
    pub(crate) fn acquire(&self, now: u64) -> (Result<Admission, Refusal>, Option<Change>) {
        if State::flows_freely(self.state.load(Ordering::Acquire)) {
            return (Ok(Admission::Normal), None);
        }
        let mut inner = self.lock();
        let mut change = None;
        let result = match inner.state {
            State::Closed | State::ForcedClosed => Ok(Admission::Normal),
            State::ForcedOpen => Err(Refusal::Forced),
            State::Open if now < inner.open_until => Err(Refusal::Open {
                retry_after: Duration::from_nanos(inner.open_until - now),
            }),
            State::Open => {
                inner.probes_left = self.settings.half_open_calls - 1;
                inner.probes = Totals::default();
                change = Some(self.set(&mut inner, State::HalfOpen, Reason::WaitElapsed));
                Ok(Admission::Probe)
            }
            State::HalfOpen if inner.probes_left > 0 => {
                inner.probes_left -= 1;
                Ok(Admission::Probe)
            }
            State::HalfOpen => Err(Refusal::ProbesBusy),
        };
        if result.is_err() {
            self.not_permitted.fetch_add(1, Ordering::Relaxed);
            self.refusals.increment(1);
            // In the call's span, so a trace shows why no attempt went out.
            tracing::debug!(target: "tollgate::circuit_breaker", "circuit breaker refused the call");
        }
        (result, change)
    }

    /// Counts a finished call; may open or close the breaker.
    pub(crate) fn record(
        &self,
        admission: Admission,
        verdict: Verdict,
        elapsed: u64,
        now: u64,
    ) -> Option<Change> {
        let settings = &self.settings;
        let mut inner = self.lock();
        inner.last_used = now;
        let sample = match verdict {
            Verdict::Ignore => {
                if admission == Admission::Probe && inner.state == State::HalfOpen {
                    inner.probes_left += 1;
                }
                return None;
            }
            Verdict::Success | Verdict::Failure => Sample {
                failure: verdict == Verdict::Failure,
                slow: elapsed > settings.slow_call_nanos,
            },
        };
        match (admission, inner.state) {
            (Admission::Normal, State::Closed) => {
                inner.window.record(sample, now);
                let totals = inner.window.totals(now);
                if totals.calls < settings.minimum_calls {
                    return None;
                }
                // Integer comparisons on the hot path; the rate as a float only for the event.
                let reason = if reaches(totals.failures, totals.calls, settings.failure_bp) {
                    Reason::FailureRate(rate(totals.failures, totals.calls))
                } else if reaches(totals.slow, totals.calls, settings.slow_call_bp) {
                    Reason::SlowCallRate(rate(totals.slow, totals.calls))
                } else {
                    return None;
                };
                Some(self.open(&mut inner, settings, reason, now))
            }
            (Admission::Probe, State::HalfOpen) => {
                inner.probes.add_sample(sample);
                if inner.probes.calls < u64::from(settings.half_open_calls) {
                    return None;
                }
                let probes = inner.probes;
                if reaches(probes.failures, probes.calls, settings.failure_bp)
                    || reaches(probes.slow, probes.calls, settings.slow_call_bp)
                {
                    Some(self.open(&mut inner, settings, Reason::ProbesFailed, now))
                } else {
                    inner.opens = 0;
                    inner.window.clear();
                    Some(self.set(&mut inner, State::Closed, Reason::ProbesSucceeded))
                }
            }
            // The state changed while the call was in flight (it opened, or an operator stepped
            // in): its outcome belongs to a state that is gone.
            _ => None,
        }
    }

    fn open(&self, inner: &mut Inner, settings: &Settings, reason: Reason, now: u64) -> Change {
        inner.opens = inner.opens.saturating_add(1);
        let wait = settings.wait_after(inner.opens);
        inner.open_until = now.saturating_add(u64::try_from(wait.as_nanos()).unwrap_or(u64::MAX));
        inner.window.clear();
        self.set(inner, State::Open, reason)
    }

    /// A call let through ended without an outcome (its future was dropped): give back its probe slot.
    pub(crate) fn release(&self, admission: Admission) {
        if admission == Admission::Probe {
            let mut inner = self.lock();
            if inner.state == State::HalfOpen {
                inner.probes_left += 1;
            }
        }
    }

    /// Forces a state, or resets to closed with an empty window (`None`).
    pub(crate) fn force(&self, to: Option<State>) -> Option<Change> {
        let mut inner = self.lock();
        let (to, reason) = match to {
            Some(state) => (state, Reason::Forced),
            None => {
                inner.window.clear();
                inner.opens = 0;
                (State::Closed, Reason::Reset)
            }
        };
        (inner.state != to || reason == Reason::Reset).then(|| self.set(&mut inner, to, reason))
    }

    pub(crate) fn state(&self) -> State {
        self.lock().state
    }

    /// Never forget this breaker, however idle.
    pub(crate) fn pin(&self) {
        self.pinned.store(true, Ordering::Relaxed);
    }

    /// Closed, not pinned, and unused since `before`: safe to forget. Returns when it was last used.
    pub(crate) fn idle_since(&self, before: u64) -> Option<u64> {
        if self.pinned.load(Ordering::Relaxed) {
            return None;
        }
        let inner = self.lock();
        (inner.state == State::Closed && inner.last_used <= before).then_some(inner.last_used)
    }

    pub(crate) fn metrics(&self, now: u64) -> BreakerMetrics {
        let mut inner = self.lock();
        let totals = match inner.state {
            State::HalfOpen => inner.probes,
            _ => inner.window.totals(now),
        };
        BreakerMetrics {
            state: inner.state,
            calls: totals.calls,
            failures: totals.failures,
            slow_calls: totals.slow,
            failure_rate: rate(totals.failures, totals.calls),
            slow_call_rate: rate(totals.slow, totals.calls),
            not_permitted: self.not_permitted.load(Ordering::Relaxed),
            consecutive_opens: inner.opens,
        }
    }
}
