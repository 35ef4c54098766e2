//! `CircuitBreakers`: one breaker per key, bounded, observable and operable.

use std::{
    collections::HashMap,
    fmt,
    sync::{Arc, RwLock},
};

use foldhash::fast::RandomState;
use tollgate_core::{
    ConfigError, Key,
    clock::{Clock, QuantaClock},
    telemetry::{BREAKER_STATE, BREAKER_TRANSITIONS, Counter, Gauge},
};

use crate::{
    breaker::{Breaker, BreakerMetrics, Change, Reason, State},
    config::{CircuitBreakerConfig, Settings},
};

/// A state change of one key's breaker, as the transition callback and tracing see it.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Transition {
    /// The key whose breaker changed.
    pub key: Key,
    /// The state it left.
    pub from: State,
    /// The state it entered.
    pub to: State,
    /// Why.
    pub reason: Reason,
}

type Listener = Arc<dyn Fn(&Transition) + Send + Sync>;

/// The breakers of a layer, one per key, shared by every clone.
///
/// Read a key's [`state`](Self::state) and [`metrics`](Self::metrics), or step in as an operator:
/// [`force_open`](Self::force_open), [`force_closed`](Self::force_closed), [`reset`](Self::reset).
///
/// ```
/// use tollgate_circuit_breaker::{CircuitBreakerConfig, CircuitBreakers, State};
///
/// let breakers = CircuitBreakers::new(CircuitBreakerConfig::default()).unwrap();
/// breakers.force_open("openai");
/// assert_eq!(breakers.state("openai"), Some(State::ForcedOpen));
/// breakers.reset("openai");
/// assert_eq!(breakers.state("openai"), Some(State::Closed));
/// assert_eq!(breakers.state("anthropic"), None); // no call yet, no breaker
/// ```
#[derive(Clone)]
pub struct CircuitBreakers {
    pub(crate) inner: Arc<Registry>,
}

pub(crate) struct Registry {
    pub(crate) settings: Settings,
    // Keys with rules of their own.
    own: HashMap<Key, Settings, RandomState>,
    pub(crate) config: CircuitBreakerConfig,
    pub(crate) clock: Arc<dyn Clock>,
    map: RwLock<HashMap<Key, Arc<Breaker>, RandomState>>,
    listener: Option<Listener>,
}

impl fmt::Debug for CircuitBreakers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CircuitBreakers")
            .field("config", &self.inner.config)
            .field("keys", &self.read().len())
            .finish_non_exhaustive()
    }
}

impl CircuitBreakers {
    /// Breakers under `config`, reading time from the default [`QuantaClock`].
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] naming the first field out of range.
    pub fn new(config: CircuitBreakerConfig) -> Result<Self, ConfigError> {
        Self::builder(config).build()
    }

    /// A builder, to set a clock, a transition callback or a key's own settings.
    pub fn builder(config: CircuitBreakerConfig) -> CircuitBreakersBuilder {
        CircuitBreakersBuilder {
            config,
            own: Vec::new(),
            clock: None,
            listener: None,
        }
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, HashMap<Key, Arc<Breaker>, RandomState>> {
        self.inner
            .map
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<Key, Arc<Breaker>, RandomState>> {
        self.inner
            .map
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub(crate) fn now(&self) -> u64 {
        self.inner.clock.now_nanos()
    }

    /// The breaker for `key`, kept even when idle (a layer with one breaker holds it directly).
    pub(crate) fn pinned(&self, key: &Key) -> Arc<Breaker> {
        let breaker = self
            .lookup(key, true)
            .expect("a breaker past the cap is always created");
        breaker.pin();
        breaker
    }

    /// The breaker for `key`, created on first use. `None` only when the key cap is reached and
    /// no closed breaker has been idle long enough to forget: the call then goes unguarded (and a
    /// warning is traced) rather than failing because of a bookkeeping limit.
    pub(crate) fn breaker(&self, key: &Key) -> Option<Arc<Breaker>> {
        self.lookup(key, false)
    }

    fn lookup(&self, key: &Key, past_cap: bool) -> Option<Arc<Breaker>> {
        if let Some(breaker) = self.read().get(key.as_str()) {
            return Some(breaker.clone());
        }
        let now = self.now();
        let mut map = self.write();
        if let Some(breaker) = map.get(key.as_str()) {
            return Some(breaker.clone());
        }
        if map.len() >= self.inner.config.max_keys && !past_cap {
            let idle = u64::try_from(self.inner.config.idle_timeout.as_nanos()).unwrap_or(u64::MAX);
            // Nobody can have been idle for longer than the clock has run.
            let oldest = now.checked_sub(idle).and_then(|before| {
                map.iter()
                    .filter_map(|(k, b)| b.idle_since(before).map(|used| (used, k.clone())))
                    .min_by_key(|(used, _)| *used)
            });
            match oldest {
                Some((_, old)) => {
                    map.remove(old.as_str());
                }
                None => {
                    tracing::warn!(
                        target: "tollgate::circuit_breaker",
                        key = key.as_str(),
                        max_keys = self.inner.config.max_keys,
                        "circuit breaker key cap reached and no breaker is idle: call goes unguarded"
                    );
                    return None;
                }
            }
        }
        let settings = self
            .inner
            .own
            .get(key.as_str())
            .unwrap_or(&self.inner.settings);
        let breaker = Arc::new(Breaker::new(*settings, now, key.as_str()));
        map.insert(key.clone(), breaker.clone());
        Some(breaker)
    }

    /// Reports a state change to tracing and the callback.
    pub(crate) fn announce(&self, key: &Key, change: Change) {
        if cfg!(feature = "metrics") {
            let labelled = [("key", key.as_str().to_owned())];
            Gauge::new(BREAKER_STATE, &labelled).set(change.to.gauge());
            let to = [
                ("key", key.as_str().to_owned()),
                ("to", change.to.to_string()),
            ];
            Counter::new(BREAKER_TRANSITIONS, &to).increment(1);
        }
        if change.to == State::Open || change.to == State::ForcedOpen {
            tracing::warn!(
                target: "tollgate::circuit_breaker",
                key = key.as_str(), from = %change.from, to = %change.to, reason = %change.reason,
                "circuit breaker opened"
            );
        } else {
            tracing::info!(
                target: "tollgate::circuit_breaker",
                key = key.as_str(), from = %change.from, to = %change.to, reason = %change.reason,
                "circuit breaker changed state"
            );
        }
        if let Some(listener) = &self.inner.listener {
            listener(&Transition {
                key: key.clone(),
                from: change.from,
                to: change.to,
                reason: change.reason,
            });
        }
    }

    /// The state of `key`'s breaker, or `None` when it has none (no call yet, or forgotten).
    pub fn state(&self, key: &str) -> Option<State> {
        self.read().get(key).map(|breaker| breaker.state())
    }

    /// Counts and rates of `key`'s breaker.
    pub fn metrics(&self, key: &str) -> Option<BreakerMetrics> {
        let breaker = self.read().get(key).cloned()?;
        Some(breaker.metrics(self.now()))
    }

    /// Keys with a breaker now: at most `max_keys`, but for the one breaker a layer without a
    /// key extractor keeps past it.
    pub fn len(&self) -> usize {
        self.read().len()
    }

    /// Whether no key has a breaker yet.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Every key with a breaker, and its state.
    pub fn states(&self) -> Vec<(Key, State)> {
        self.read()
            .iter()
            .map(|(key, breaker)| (key.clone(), breaker.state()))
            .collect()
    }

    fn operate(&self, key: &str, to: Option<State>) {
        let key = Key::from(key);
        let Some(breaker) = self.breaker(&key) else {
            return;
        };
        if let Some(change) = breaker.force(to) {
            self.announce(&key, change);
        }
    }

    /// Holds `key`'s breaker open: every call fails fast until [`reset`](Self::reset).
    pub fn force_open(&self, key: &str) {
        self.operate(key, Some(State::ForcedOpen));
    }

    /// Holds `key`'s breaker closed: every call flows and nothing is counted until [`reset`](Self::reset).
    pub fn force_closed(&self, key: &str) {
        self.operate(key, Some(State::ForcedClosed));
    }

    /// Closes `key`'s breaker with an empty window, ending any forced state.
    pub fn reset(&self, key: &str) {
        self.operate(key, None);
    }
}

/// Builds [`CircuitBreakers`].
#[must_use]
pub struct CircuitBreakersBuilder {
    config: CircuitBreakerConfig,
    own: Vec<(Key, CircuitBreakerConfig)>,
    clock: Option<Arc<dyn Clock>>,
    listener: Option<Listener>,
}

impl std::fmt::Debug for CircuitBreakersBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CircuitBreakersBuilder")
            .field("config", &self.config)
            .field("own", &self.own)
            .field("clock", &self.clock)
            .field("listener", &self.listener.is_some())
            .finish()
    }
}

impl CircuitBreakersBuilder {
    /// Reads time from `clock` (default: a [`QuantaClock`]; tests on tokio's paused time use a
    /// [`TokioClock`](tollgate_core::clock::TokioClock)).
    pub fn clock(mut self, clock: impl Clock) -> Self {
        self.clock = Some(Arc::new(clock));
        self
    }

    /// Gives `key`'s breaker rules of its own (window, thresholds, waits, probes) instead of the
    /// main configuration's: a local model judged slow after 5 s, a hosted one after 30 s. Its
    /// `max_keys` and `idle_timeout` are not read: they bound the whole set of breakers.
    ///
    /// ```
    /// use tollgate_circuit_breaker::{CircuitBreakerConfig, CircuitBreakers, SlidingWindow};
    ///
    /// let strict = CircuitBreakerConfig {
    ///     window: SlidingWindow::Count(10),
    ///     minimum_calls: 5,
    ///     ..CircuitBreakerConfig::default()
    /// };
    /// let breakers = CircuitBreakers::builder(CircuitBreakerConfig::default())
    ///     .key_config("local", strict)
    ///     .build()
    ///     .unwrap();
    /// ```
    pub fn key_config(mut self, key: impl Into<Key>, config: CircuitBreakerConfig) -> Self {
        self.own.push((key.into(), config));
        self
    }

    /// Calls `listener` on every state change of every key, outside the breaker's lock.
    pub fn on_transition(mut self, listener: impl Fn(&Transition) + Send + Sync + 'static) -> Self {
        self.listener = Some(Arc::new(listener));
        self
    }

    /// The breakers.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] naming the first field of the configuration that is out of range; in a
    /// key's own settings, under the key (`local.minimum_calls`).
    pub fn build(self) -> Result<CircuitBreakers, ConfigError> {
        let settings = self.config.settings()?;
        let mut own = HashMap::with_hasher(RandomState::default());
        for (key, config) in self.own {
            let settings = config.settings().map_err(|e| e.under(key.as_str()))?;
            own.insert(key, settings);
        }
        Ok(CircuitBreakers {
            inner: Arc::new(Registry {
                settings,
                own,
                config: self.config,
                clock: self.clock.unwrap_or_else(|| Arc::new(QuantaClock::new())),
                map: RwLock::new(HashMap::with_hasher(RandomState::default())),
                listener: self.listener,
            }),
        })
    }
}
