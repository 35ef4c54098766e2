//! `HealthRegistry`: runs active checks on tokio at their intervals and keeps their state.

use std::{
    fmt,
    sync::{Arc, Mutex, MutexGuard},
    time::{Duration, SystemTime},
};

use tokio::{task::JoinHandle, time::Instant};
use tollgate_core::{ConfigError, duration};

use crate::{
    check::{CheckOutcome, HealthCheck},
    report::{CheckReport, HealthReport},
    status::Status,
};

/// How a registered check is run and judged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub struct CheckOptions {
    /// A failing critical check makes the whole report unhealthy (and the service not ready);
    /// a failing non-critical one only degrades it. Default: critical.
    pub critical: bool,
    /// A run taking longer fails as a timeout (default 5 s).
    pub timeout: Duration,
    /// Time between runs (default 30 s).
    pub interval: Duration,
    /// Failed runs in a row before the check is unhealthy (default 3).
    pub unhealthy_after: u32,
    /// Passing runs in a row before an unhealthy check is healthy again (default 2).
    pub healthy_after: u32,
}

impl Default for CheckOptions {
    fn default() -> Self {
        Self {
            critical: true,
            timeout: Duration::from_secs(5),
            interval: Duration::from_secs(30),
            unhealthy_after: 3,
            healthy_after: 2,
        }
    }
}

impl CheckOptions {
    /// A check whose failure degrades the report instead of failing it.
    pub fn non_critical() -> Self {
        Self {
            critical: false,
            ..Self::default()
        }
    }

    /// With this timeout.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// With this interval.
    pub fn interval(mut self, interval: Duration) -> Self {
        self.interval = interval;
        self
    }

    /// Unhealthy after `failures` failed runs in a row, healthy again after `successes` passing ones.
    pub fn thresholds(mut self, failures: u32, successes: u32) -> Self {
        self.unhealthy_after = failures;
        self.healthy_after = successes;
        self
    }

    fn validate(&self, name: &str) -> Result<(), ConfigError> {
        let at = |field: &str| format!("checks.{name}.{field}");
        tollgate_core::non_zero(&at("timeout"), self.timeout)?;
        tollgate_core::non_zero(&at("interval"), self.interval)?;
        if self.unhealthy_after == 0 {
            return Err(ConfigError::new(
                at("unhealthy_after"),
                "must be at least 1",
            ));
        }
        if self.healthy_after == 0 {
            return Err(ConfigError::new(at("healthy_after"), "must be at least 1"));
        }
        Ok(())
    }
}

struct Registered {
    check: Box<dyn HealthCheck>,
    options: CheckOptions,
    state: Mutex<CheckState>,
}

struct CheckState {
    status: Status,
    message: String,
    duration: Duration,
    runs: u64,
    consecutive_failures: u32,
    consecutive_successes: u32,
    last_run: Option<Instant>,
    last_success: Option<Instant>,
    last_change: Instant,
}

impl Registered {
    fn lock(&self) -> MutexGuard<'_, CheckState> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Runs the check once under its timeout and folds the outcome into its state.
    async fn run(&self) {
        let started = Instant::now();
        let timeout = self.options.timeout;
        let outcome = tokio::time::timeout(timeout, self.check.check())
            .await
            .unwrap_or_else(|_| {
                CheckOutcome::unhealthy(format!("timed out after {}", duration::format(timeout)))
            });
        let finished = Instant::now();
        let mut state = self.lock();
        state.runs += 1;
        state.duration = finished - started;
        state.last_run = Some(finished);
        state.message = outcome.message;
        let next = if outcome.status == Status::Unhealthy {
            state.consecutive_failures += 1;
            state.consecutive_successes = 0;
            if state.consecutive_failures >= self.options.unhealthy_after {
                Status::Unhealthy
            } else {
                state.status
            }
        } else {
            state.last_success = Some(finished);
            state.consecutive_successes += 1;
            state.consecutive_failures = 0;
            if state.status == Status::Unhealthy
                && state.consecutive_successes < self.options.healthy_after
            {
                Status::Unhealthy
            } else {
                outcome.status
            }
        };
        if next != state.status {
            tracing::info!(
                target: "tollgate::health",
                check = self.check.name(), from = %state.status, to = %next, message = %state.message,
                "health check changed status"
            );
            state.status = next;
            state.last_change = finished;
        }
    }
}

/// Active checks, run on tokio at their intervals, and the report of their state.
///
/// ```
/// use std::time::Duration;
/// use tollgate_health::{CheckOptions, CheckOutcome, HealthRegistry, Status, check_fn};
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() {
/// let registry = HealthRegistry::builder()
///     .check(check_fn("db", || async { CheckOutcome::healthy("ok") }), CheckOptions::default())
///     .check(
///         check_fn("cache", || async { CheckOutcome::unhealthy("refused") }),
///         CheckOptions::non_critical().thresholds(1, 1),
///     )
///     .build()
///     .unwrap();
/// registry.run_all().await;
/// let report = registry.report();
/// assert_eq!(report.status, Status::Degraded); // only a non-critical check fails
/// assert!(report.readiness().is_ready());
/// # }
/// ```
#[derive(Clone)]
pub struct HealthRegistry {
    inner: Arc<Inner>,
}

struct Inner {
    checks: Vec<Arc<Registered>>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
    epoch: (SystemTime, Instant),
}

impl Drop for Inner {
    fn drop(&mut self) {
        // The scheduled runs stop with the last handle to the registry.
        for task in self
            .tasks
            .get_mut()
            .unwrap_or_else(|p| p.into_inner())
            .drain(..)
        {
            task.abort();
        }
    }
}

impl fmt::Debug for HealthRegistry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HealthRegistry")
            .field(
                "checks",
                &self
                    .inner
                    .checks
                    .iter()
                    .map(|c| c.check.name())
                    .collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

impl HealthRegistry {
    /// A builder to register checks.
    pub fn builder() -> HealthRegistryBuilder {
        HealthRegistryBuilder {
            checks: Vec::new(),
            epoch: None,
        }
    }

    /// Runs every check once, all at once, and waits for them (each under its timeout).
    pub async fn run_all(&self) {
        let runs: Vec<_> = self
            .inner
            .checks
            .iter()
            .map(|check| {
                let check = check.clone();
                tokio::spawn(async move { check.run().await })
            })
            .collect();
        for run in runs {
            // A check that panicked stays as it was; the others are unaffected.
            let _ = run.await;
        }
    }

    /// Starts running every check at its interval, the first run at once, on the current tokio
    /// runtime. The runs stop when the last clone of the registry is dropped. Calling it again
    /// restarts the schedule.
    pub fn start(&self) {
        let mut tasks = self
            .inner
            .tasks
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        for task in tasks.drain(..) {
            task.abort();
        }
        for check in &self.inner.checks {
            let check = check.clone();
            tasks.push(tokio::spawn(async move {
                let mut ticks = tokio::time::interval(check.options.interval);
                ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    ticks.tick().await;
                    check.run().await;
                }
            }));
        }
    }

    fn wall(&self, at: Instant) -> SystemTime {
        let (wall, instant) = self.inner.epoch;
        wall + at.saturating_duration_since(instant)
    }

    /// The state of every check, and the overall status: a failing critical check makes it
    /// unhealthy, a failing non-critical or a degraded one makes it degraded.
    pub fn report(&self) -> HealthReport {
        let mut checks = std::collections::BTreeMap::new();
        let mut status = Status::Healthy;
        for registered in &self.inner.checks {
            let state = registered.lock();
            let effect = match (state.status, registered.options.critical) {
                (Status::Unhealthy, false) => Status::Degraded,
                (s, _) => s,
            };
            status = status.max(effect);
            checks.insert(
                registered.check.name().to_owned(),
                CheckReport {
                    status: state.status,
                    critical: registered.options.critical,
                    output: state.message.clone(),
                    observed_ms: state.duration.as_secs_f64() * 1e3,
                    runs: state.runs,
                    consecutive_failures: state.consecutive_failures,
                    time: state.last_run.map(|t| self.wall(t)),
                    last_success: state.last_success.map(|t| self.wall(t)),
                    last_change: self.wall(state.last_change),
                },
            );
        }
        HealthReport { status, checks }
    }
}

/// Builds a [`HealthRegistry`].
#[must_use]
pub struct HealthRegistryBuilder {
    checks: Vec<(Box<dyn HealthCheck>, CheckOptions)>,
    epoch: Option<SystemTime>,
}

impl std::fmt::Debug for HealthRegistryBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HealthRegistryBuilder")
            .field("checks", &self.checks.len())
            .field("epoch", &self.epoch)
            .finish()
    }
}

impl HealthRegistryBuilder {
    /// Registers `check` under `options`.
    pub fn check(mut self, check: impl HealthCheck, options: CheckOptions) -> Self {
        self.checks.push((Box::new(check), options));
        self
    }

    /// The wall-clock time that "now" is when the registry is built; reports place their times
    /// from it by tokio's clock. Default: the system time. Tests on paused time set it to get
    /// reproducible reports.
    pub fn epoch(mut self, now: SystemTime) -> Self {
        self.epoch = Some(now);
        self
    }

    /// The registry (nothing runs until [`HealthRegistry::start`] or [`HealthRegistry::run_all`]).
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] for a check name used twice, or options out of range
    /// (`checks.<name>.<field>`).
    pub fn build(self) -> Result<HealthRegistry, ConfigError> {
        let now = Instant::now();
        let mut checks = Vec::new();
        for (check, options) in self.checks {
            let name = check.name().to_owned();
            if name.is_empty() {
                return Err(ConfigError::new("checks", "a check needs a name"));
            }
            options.validate(&name)?;
            if checks
                .iter()
                .any(|c: &Arc<Registered>| c.check.name() == name)
            {
                return Err(ConfigError::new(
                    format!("checks.{name}"),
                    "two checks have this name",
                ));
            }
            checks.push(Arc::new(Registered {
                check,
                options,
                state: Mutex::new(CheckState {
                    status: Status::Healthy,
                    message: "not checked yet".into(),
                    duration: Duration::ZERO,
                    runs: 0,
                    consecutive_failures: 0,
                    consecutive_successes: 0,
                    last_run: None,
                    last_success: None,
                    last_change: now,
                }),
            }));
        }
        Ok(HealthRegistry {
            inner: Arc::new(Inner {
                checks,
                tasks: Mutex::new(Vec::new()),
                epoch: (self.epoch.unwrap_or_else(SystemTime::now), now),
            }),
        })
    }
}
