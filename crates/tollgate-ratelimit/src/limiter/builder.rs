//! [`RateLimiterBuilder`]: scopes, overrides, the key cap and the clock, checked in `build`.

use std::{sync::Arc, time::SystemTime};

use tollgate_core::{
    ConfigError,
    clock::{Clock, QuantaClock},
};

use super::{Inner, RateLimiter};
use crate::{definition::Definition, quota::Quota, store::Store};

/// Builds a [`RateLimiter`]; checks everything in [`build`](Self::build).
#[must_use]
#[derive(Debug)]
pub struct RateLimiterBuilder {
    scopes: Vec<(String, Quota)>,
    overrides: Vec<(String, String, Quota)>,
    max_keys: usize,
    per_key_metrics: bool,
    clock: Option<Arc<dyn Clock>>,
    wall_time: Option<SystemTime>,
}

impl Default for RateLimiterBuilder {
    fn default() -> Self {
        Self {
            scopes: Vec::new(),
            overrides: Vec::new(),
            max_keys: DEFAULT_MAX_KEYS,
            per_key_metrics: false,
            clock: None,
            wall_time: None,
        }
    }
}

/// Default cap on tracked keys: about 15 MB of state at the measured cost per key.
pub const DEFAULT_MAX_KEYS: usize = 100_000;

impl RateLimiterBuilder {
    /// Adds a scope: a family of keys with `quota` as their default.
    pub fn scope(mut self, name: impl Into<String>, quota: Quota) -> Self {
        self.scopes.push((name.into(), quota));
        self
    }

    /// Gives `key` in scope `scope` its own quota instead of the scope's default.
    pub fn override_quota(
        mut self,
        scope: impl Into<String>,
        key: impl Into<String>,
        quota: Quota,
    ) -> Self {
        self.overrides.push((scope.into(), key.into(), quota));
        self
    }

    /// At most `max_keys` keys tracked at once (default [`DEFAULT_MAX_KEYS`]). When a new key
    /// would pass the cap, keys whose tiers are full again are dropped first; if none is, the new
    /// key is refused ([`DenialReason::Capacity`](crate::DenialReason::Capacity)) rather than evicting a key that still owes time,
    /// which would hand it a fresh burst. Calls adding new keys at the same instant may pass the
    /// cap by at most the keys they add.
    pub fn max_keys(mut self, max_keys: usize) -> Self {
        self.max_keys = max_keys;
        self
    }

    /// Also count decisions per key ([`RateLimiter::key_metrics`]); off by default, as it costs
    /// a second table entry per key.
    pub fn per_key_metrics(mut self, enabled: bool) -> Self {
        self.per_key_metrics = enabled;
        self
    }

    /// Reads time from `clock` (default: a [`QuantaClock`] started at `build`, the cheapest
    /// monotonic clock). Tests on tokio's paused time use a
    /// [`TokioClock`](tollgate_core::clock::TokioClock); code without a runtime can use a
    /// [`ManualClock`](tollgate_core::clock::ManualClock).
    pub fn clock(mut self, clock: impl Clock) -> Self {
        self.clock = Some(Arc::new(clock));
        self
    }

    /// The wall-clock time when the limiter is built (default: the system's). Calendar tiers
    /// ([`Tier::calendar`](crate::Tier::calendar)) count their periods from it as the clock
    /// advances, so a test on a paused clock can start just before a month ends and cross it.
    pub fn wall_time(mut self, now: SystemTime) -> Self {
        self.wall_time = Some(now);
        self
    }

    /// The limiter.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] when there is no scope, a scope name repeats, an override names an
    /// unknown scope or repeats a key, or `max_keys` is zero.
    pub fn build(self) -> Result<RateLimiter, ConfigError> {
        let definition = self.definition()?;
        Ok(self.limiter_over(definition, self.per_key_metrics))
    }

    /// The scopes and quotas, checked, with the key cap.
    pub(crate) fn definition(&self) -> Result<Definition, ConfigError> {
        if self.scopes.is_empty() {
            return Err(ConfigError::new("scopes", "add at least one scope"));
        }
        if self.max_keys == 0 {
            return Err(ConfigError::new("max_keys", "must be at least 1"));
        }
        Definition::new(self.scopes.clone(), self.overrides.clone())
    }

    /// The clock, and the wall time (nanoseconds since the Unix epoch) when it read zero.
    pub(crate) fn timeline(&self) -> (Arc<dyn Clock>, u64) {
        let clock = self
            .clock
            .clone()
            .unwrap_or_else(|| Arc::new(QuantaClock::new()));
        let wall = self
            .wall_time
            .unwrap_or_else(SystemTime::now)
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX));
        let wall_origin = wall.saturating_sub(clock.now_nanos());
        (clock, wall_origin)
    }

    /// A limiter in this process keeping counts for `definition`, with this builder's key cap and
    /// clock.
    pub(crate) fn limiter_over(
        &self,
        definition: Definition,
        per_key_metrics: bool,
    ) -> RateLimiter {
        let (clock, wall_origin) = self.timeline();
        RateLimiter {
            inner: Arc::new(Inner {
                store: Store::new(definition, self.max_keys, per_key_metrics, wall_origin),
                clock,
            }),
        }
    }
}
