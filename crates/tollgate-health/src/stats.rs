//! Passive statistics per component: what every call through the layer said about it.

use std::{
    collections::{HashMap, VecDeque},
    fmt,
    sync::{
        Arc, Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard,
        atomic::{AtomicU8, Ordering},
    },
    time::Duration,
};

use foldhash::fast::RandomState;
use serde::Serialize;
use tollgate_core::{
    ConfigError, ErrorKind, Key,
    clock::{Clock, QuantaClock},
    telemetry::{Gauge, HEALTH_STATUS},
};

use crate::{config::HealthConfig, status::Status};

/// One finished call, as a window keeps it.
#[derive(Clone, Copy)]
struct Sample {
    at: u64,
    latency: u64,
    failed: bool,
}

/// How often the latency part of the status is recomputed, in calls: finding the p95 walks the
/// window, so it is amortized (and skipped entirely when no latency threshold is set).
const LATENCY_EVERY: u32 = 64;

struct Component {
    calls: u64,
    successes: u64,
    failures_by_kind: [u64; ErrorKind::ALL.len()],
    consecutive_failures: u64,
    window: VecDeque<Sample>,
    window_failures: u64,
    latency_sum: u64,
    since_latency: u32,
    p95: u64,
    scratch: Vec<u64>,
}

impl Component {
    fn new(capacity: usize) -> Self {
        Self {
            calls: 0,
            successes: 0,
            failures_by_kind: [0; ErrorKind::ALL.len()],
            consecutive_failures: 0,
            window: VecDeque::with_capacity(capacity.min(1_024)),
            window_failures: 0,
            latency_sum: 0,
            since_latency: 0,
            p95: 0,
            scratch: Vec::new(),
        }
    }

    fn pop_front(&mut self) {
        if let Some(old) = self.window.pop_front() {
            self.window_failures -= u64::from(old.failed);
            self.latency_sum -= old.latency;
        }
    }

    /// Drops samples older than the window's span.
    fn expire(&mut self, config: &HealthConfig, now: u64) {
        if let Some(span) = config.window_span_nanos() {
            let oldest = now.saturating_sub(span);
            while self.window.front().is_some_and(|s| s.at < oldest) {
                self.pop_front();
            }
        }
    }

    fn latencies(&self) -> Vec<u64> {
        let mut latencies: Vec<u64> = self.window.iter().map(|s| s.latency).collect();
        latencies.sort_unstable();
        latencies
    }

    /// The window's p95 by selection (linear), reusing one buffer.
    fn refresh_p95(&mut self) {
        let mut scratch = std::mem::take(&mut self.scratch);
        scratch.clear();
        scratch.extend(self.window.iter().map(|s| s.latency));
        self.p95 = if scratch.is_empty() {
            0
        } else {
            let rank = ((0.95 * scratch.len() as f64).ceil() as usize).clamp(1, scratch.len());
            *scratch.select_nth_unstable(rank - 1).1
        };
        self.scratch = scratch;
    }

    fn status(&self, config: &HealthConfig) -> Status {
        let mut status = Status::Healthy;
        let mut worsen = |s: Status| status = status.max(s);
        let consecutive = self.consecutive_failures;
        if consecutive >= u64::from(config.unhealthy_consecutive_failures) {
            worsen(Status::Unhealthy);
        } else if consecutive >= u64::from(config.degraded_consecutive_failures) {
            worsen(Status::Degraded);
        }
        let calls = self.window.len() as u64;
        if calls >= u64::from(config.minimum_calls) {
            // Integer comparisons in hundredths of a percent: no division on every call.
            let reaches = |percent: f64| {
                u128::from(self.window_failures) * 10_000
                    >= u128::from((percent * 100.0).round() as u64) * u128::from(calls)
            };
            if reaches(config.unhealthy_error_rate) {
                worsen(Status::Unhealthy);
            } else if reaches(config.degraded_error_rate) {
                worsen(Status::Degraded);
            }
            let p95 = Duration::from_nanos(self.p95);
            if config.unhealthy_p95.is_some_and(|limit| p95 >= limit) {
                worsen(Status::Unhealthy);
            } else if config.degraded_p95.is_some_and(|limit| p95 >= limit) {
                worsen(Status::Degraded);
            }
        }
        status
    }
}

/// Nearest-rank percentile of sorted values.
fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = (p / 100.0 * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// A status as the `tollgate.health.status` gauge reads it.
fn gauge_of(status: Status) -> f64 {
    match status {
        Status::Healthy => 1.0,
        Status::Degraded => 0.5,
        Status::Unhealthy => 0.0,
    }
}

/// Statistics and status of one component, kept behind one short lock.
pub(crate) struct ComponentStats {
    // Its own judgement: a component may have thresholds of its own.
    config: Arc<HealthConfig>,
    status: AtomicU8,
    inner: Mutex<Component>,
    // The status as a gauge under the component's key (feature `metrics`), set when it changes.
    gauge: Gauge,
}

impl ComponentStats {
    fn new(config: Arc<HealthConfig>, key: &str) -> Self {
        let gauge = Gauge::new(HEALTH_STATUS, &[("key", key.to_owned())]);
        gauge.set(gauge_of(Status::Healthy));
        Self {
            status: AtomicU8::new(Status::Healthy as u8),
            inner: Mutex::new(Component::new(config.window_calls)),
            config,
            gauge,
        }
    }

    /// Stores the status, and sets the gauge when it changed.
    fn set_status(&self, status: Status) {
        let before = self.status.swap(status as u8, Ordering::Relaxed);
        if before != status as u8 {
            self.gauge.set(gauge_of(status));
        }
    }

    /// Whether an unhealthy status refuses calls.
    pub(crate) fn fails_fast(&self) -> bool {
        self.config.fail_fast
    }

    fn lock(&self) -> MutexGuard<'_, Component> {
        // Counters stay consistent between statements, so a poisoned lock is safe to keep using.
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The status as of the last recorded call, without taking the lock.
    pub(crate) fn status(&self) -> Status {
        Status::from_code(self.status.load(Ordering::Relaxed))
    }

    /// Records a finished call: `error` is its error kind when it failed.
    pub(crate) fn record(&self, error: Option<ErrorKind>, latency: u64, now: u64) {
        let config = &*self.config;
        let mut c = self.lock();
        c.calls += 1;
        let failed = match error {
            None => {
                c.successes += 1;
                false
            }
            Some(kind) => {
                let index = ErrorKind::ALL.iter().position(|k| *k == kind).unwrap_or(0);
                c.failures_by_kind[index] += 1;
                !config.ignored(kind)
            }
        };
        // An ignored error (the caller's own mistake) neither breaks nor extends a failure streak.
        if failed {
            c.consecutive_failures += 1;
        } else if error.is_none() {
            c.consecutive_failures = 0;
        }
        if c.window.len() >= config.window_calls {
            c.pop_front();
        }
        c.window.push_back(Sample {
            at: now,
            latency,
            failed,
        });
        c.window_failures += u64::from(failed);
        c.latency_sum += latency;
        c.expire(config, now);
        if config.judges_latency() {
            c.since_latency += 1;
            if c.since_latency >= LATENCY_EVERY {
                c.since_latency = 0;
                c.refresh_p95();
            }
        }
        let status = c.status(config);
        self.set_status(status);
    }

    fn snapshot(&self, now: u64) -> ComponentSnapshot {
        let config = &*self.config;
        let mut c = self.lock();
        c.expire(config, now);
        let latencies = c.latencies();
        c.p95 = percentile(&latencies, 95.0);
        let status = c.status(config);
        self.set_status(status);
        let ms = |nanos: u64| nanos as f64 / 1e6;
        let window_calls = c.window.len() as u64;
        ComponentSnapshot {
            status,
            calls: c.calls,
            successes: c.successes,
            failures: ErrorKind::ALL
                .iter()
                .zip(c.failures_by_kind)
                .filter(|(_, n)| *n > 0)
                .map(|(kind, n)| (kind.name(), n))
                .collect(),
            consecutive_failures: c.consecutive_failures,
            window: WindowSnapshot {
                calls: window_calls,
                failures: c.window_failures,
                error_rate: if window_calls == 0 {
                    0.0
                } else {
                    c.window_failures as f64 * 100.0 / window_calls as f64
                },
                latency_ms: LatencySnapshot {
                    min: ms(latencies.first().copied().unwrap_or(0)),
                    mean: if window_calls == 0 {
                        0.0
                    } else {
                        ms(c.latency_sum) / window_calls as f64
                    },
                    p50: ms(percentile(&latencies, 50.0)),
                    p95: ms(percentile(&latencies, 95.0)),
                    p99: ms(percentile(&latencies, 99.0)),
                    max: ms(latencies.last().copied().unwrap_or(0)),
                },
            },
        }
    }
}

/// Latency over a component's window, in milliseconds (nearest-rank percentiles).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[non_exhaustive]
pub struct LatencySnapshot {
    /// Fastest call.
    pub min: f64,
    /// Mean.
    pub mean: f64,
    /// Median.
    pub p50: f64,
    /// 95th percentile.
    pub p95: f64,
    /// 99th percentile.
    pub p99: f64,
    /// Slowest call.
    pub max: f64,
}

/// The calls in a component's sliding window.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[non_exhaustive]
pub struct WindowSnapshot {
    /// Calls in the window.
    pub calls: u64,
    /// Failed calls in the window (ignored kinds excluded).
    pub failures: u64,
    /// `failures / calls` in percent.
    pub error_rate: f64,
    /// Latency of the window's calls.
    pub latency_ms: LatencySnapshot,
}

/// One component's passive statistics.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub struct ComponentSnapshot {
    /// Status from the thresholds.
    pub status: Status,
    /// Calls since the component was first seen.
    pub calls: u64,
    /// Successful calls since then.
    pub successes: u64,
    /// Errors since then, by kind (`server`, `timeout`, ...).
    pub failures: std::collections::BTreeMap<&'static str, u64>,
    /// Failures in a row, up to the last call.
    pub consecutive_failures: u64,
    /// The sliding window the status is judged on.
    pub window: WindowSnapshot,
}

/// Passive statistics of every component a [`HealthLayer`](crate::HealthLayer) has seen,
/// shared by every clone.
#[derive(Clone)]
pub struct HealthStats {
    pub(crate) inner: Arc<StatsInner>,
}

type Components = HashMap<Key, Arc<ComponentStats>, RandomState>;

pub(crate) struct StatsInner {
    pub(crate) config: Arc<HealthConfig>,
    // Components judged by settings of their own.
    own: HashMap<Key, Arc<HealthConfig>, RandomState>,
    pub(crate) clock: Arc<dyn Clock>,
    components: RwLock<Components>,
}

impl fmt::Debug for HealthStats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HealthStats")
            .field("config", &self.inner.config)
            .finish_non_exhaustive()
    }
}

impl HealthStats {
    /// Statistics judged by `config`, on the default [`QuantaClock`].
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] naming the first field out of range.
    pub fn new(config: HealthConfig) -> Result<Self, ConfigError> {
        Self::with_clock(config, QuantaClock::new())
    }

    /// Statistics on `clock` (a [`TokioClock`](tollgate_core::clock::TokioClock) for tests on
    /// paused time).
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] naming the first field out of range.
    pub fn with_clock(config: HealthConfig, clock: impl Clock) -> Result<Self, ConfigError> {
        Self::builder(config).clock(clock).build()
    }

    /// A builder, to set a clock or a component's own settings.
    pub fn builder(config: HealthConfig) -> HealthStatsBuilder {
        HealthStatsBuilder {
            config,
            own: Vec::new(),
            clock: None,
        }
    }

    // A panic while a lock is held leaves the map whole (each change is one insert), so a
    // poisoned lock is still good to use.
    fn read(&self) -> RwLockReadGuard<'_, Components> {
        self.inner
            .components
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn write(&self) -> RwLockWriteGuard<'_, Components> {
        self.inner
            .components
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// A new component's settings: its own, or the main configuration.
    fn config_of(&self, key: &Key) -> Arc<HealthConfig> {
        self.inner
            .own
            .get(key.as_str())
            .unwrap_or(&self.inner.config)
            .clone()
    }

    pub(crate) fn now(&self) -> u64 {
        self.inner.clock.now_nanos()
    }

    /// The stats of `key`, created even past `max_components` (a layer's only component).
    pub(crate) fn pinned(&self, key: &Key) -> Arc<ComponentStats> {
        let mut write = self.write();
        write
            .entry(key.clone())
            .or_insert_with(|| Arc::new(ComponentStats::new(self.config_of(key), key.as_str())))
            .clone()
    }

    /// The stats of `key`, created on first use; `None` past `max_components` (the call is then
    /// simply not recorded).
    pub(crate) fn component(&self, key: &Key) -> Option<Arc<ComponentStats>> {
        let read = self.read();
        if let Some(stats) = read.get(key.as_str()) {
            return Some(stats.clone());
        }
        drop(read);
        let mut write = self.write();
        if let Some(stats) = write.get(key.as_str()) {
            return Some(stats.clone());
        }
        if write.len() >= self.inner.config.max_components {
            tracing::warn!(
                target: "tollgate::health",
                key = key.as_str(),
                "health component cap reached: calls for this key are not recorded"
            );
            return None;
        }
        let stats = Arc::new(ComponentStats::new(self.config_of(key), key.as_str()));
        write.insert(key.clone(), stats.clone());
        Some(stats)
    }

    /// Components with statistics now: at most `max_components`, but for the one component a
    /// layer without a key extractor keeps past it.
    pub fn len(&self) -> usize {
        self.read().len()
    }

    /// Whether no component has statistics yet.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The status of `component` from its passive statistics, or `None` if it has none.
    pub fn status(&self, component: &str) -> Option<Status> {
        Some(self.get(component)?.snapshot(self.now()).status)
    }

    fn get(&self, component: &str) -> Option<Arc<ComponentStats>> {
        self.read().get(component).cloned()
    }

    /// One component's statistics.
    pub fn component_snapshot(&self, component: &str) -> Option<ComponentSnapshot> {
        Some(self.get(component)?.snapshot(self.now()))
    }

    /// Every component's statistics, by key: the telemetry view, serializable as JSON.
    pub fn snapshot(&self) -> std::collections::BTreeMap<String, ComponentSnapshot> {
        let components: Vec<(Key, Arc<ComponentStats>)> = self
            .read()
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let now = self.now();
        components
            .into_iter()
            .map(|(key, stats)| (key.to_string(), stats.snapshot(now)))
            .collect()
    }
}

/// Builds [`HealthStats`].
#[must_use]
#[derive(Debug)]
pub struct HealthStatsBuilder {
    config: HealthConfig,
    own: Vec<(Key, HealthConfig)>,
    clock: Option<Arc<dyn Clock>>,
}

impl HealthStatsBuilder {
    /// Reads time from `clock` (default: a [`QuantaClock`]).
    pub fn clock(mut self, clock: impl Clock) -> Self {
        self.clock = Some(Arc::new(clock));
        self
    }

    /// Judges `component` by settings of its own (window, thresholds, ignored kinds, fail-fast)
    /// instead of the main configuration's: a local model's p95 of 10 s is normal, a hosted
    /// one's is not. Its `max_components` is not read: it bounds every component together.
    ///
    /// ```
    /// use std::time::Duration;
    /// use tollgate_health::{HealthConfig, HealthStats};
    ///
    /// let local = HealthConfig {
    ///     degraded_p95: Some(Duration::from_secs(10)),
    ///     ..HealthConfig::default()
    /// };
    /// let stats = HealthStats::builder(HealthConfig::default())
    ///     .component_config("local", local)
    ///     .build()
    ///     .unwrap();
    /// assert!(stats.status("local").is_none()); // no call yet
    /// ```
    pub fn component_config(mut self, component: impl Into<Key>, config: HealthConfig) -> Self {
        self.own.push((component.into(), config));
        self
    }

    /// The statistics.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] naming the first field out of range; in a component's own settings,
    /// under the component (`local.degraded_error_rate`).
    pub fn build(self) -> Result<HealthStats, ConfigError> {
        self.config.validate()?;
        let mut own = HashMap::with_hasher(RandomState::default());
        for (component, config) in self.own {
            config.validate().map_err(|e| e.under(component.as_str()))?;
            own.insert(component, Arc::new(config));
        }
        Ok(HealthStats {
            inner: Arc::new(StatsInner {
                config: Arc::new(self.config),
                own,
                clock: self.clock.unwrap_or_else(|| Arc::new(QuantaClock::new())),
                components: RwLock::new(HashMap::with_hasher(RandomState::default())),
            }),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::percentile;

    #[test]
    fn nearest_rank_percentiles() {
        let values: Vec<u64> = (1..=100).collect();
        assert_eq!(percentile(&values, 50.0), 50);
        assert_eq!(percentile(&values, 95.0), 95);
        assert_eq!(percentile(&values, 99.0), 99);
        assert_eq!(percentile(&values, 100.0), 100);
        assert_eq!(percentile(&[7], 99.0), 7);
        assert_eq!(percentile(&[], 50.0), 0);
    }
}
