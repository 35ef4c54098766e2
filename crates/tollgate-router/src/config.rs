//! The router's settings as data: how it balances a group, when it hedges, how long it cools a
//! deployment down. Each has safe defaults and is checked when the router is built.

use std::{fmt, str::FromStr, time::Duration};

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use tollgate_core::{ConfigError, duration};

/// How a group chooses among its deployments that can take a call now.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Strategy {
    /// At random, in proportion to each deployment's weight (the default).
    #[default]
    Weighted,
    /// The first deployment in the group's order that can take the call.
    Priority,
    /// The deployment with the fewest calls in flight, ties broken at random.
    LeastInFlight,
    /// Power of two choices over each deployment's peak-EWMA latency times its calls in flight.
    Latency,
}

/// When a hedge (a second call to another deployment) starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HedgeAfter {
    /// After a fixed time without an answer.
    After(Duration),
    /// After the first deployment's 95th-percentile latency over its recent calls (no hedge until
    /// it has answered 20 calls).
    P95,
}

impl FromStr for HedgeAfter {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        if text.trim().eq_ignore_ascii_case("p95") {
            return Ok(Self::P95);
        }
        duration::parse(text)
            .map(Self::After)
            .map_err(|e| format!("{e} (or `p95`)"))
    }
}

impl fmt::Display for HedgeAfter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::After(after) => f.write_str(&duration::format(*after)),
            Self::P95 => f.write_str("p95"),
        }
    }
}

impl Serialize for HedgeAfter {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for HedgeAfter {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// Which calls of a group go to the same deployment, so its provider's prompt cache is hit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Affinity {
    /// Calls whose system prompt and tools are the same go to the same deployment while it can
    /// take them; new prompts are spread over the deployments by their weights.
    Prefix,
}

/// A tiny call sent to a deployment that is cooling down after failures, an open breaker or a
/// refused key, so it comes back as soon as it answers.
///
/// ```
/// use std::time::Duration;
/// use tollgate_router::ProbeConfig;
///
/// let probe: ProbeConfig = serde_json::from_str(r#"{ "every": "10s" }"#).unwrap();
/// assert_eq!(probe.every, Duration::from_secs(10));
/// assert!(serde_json::from_str::<ProbeConfig>(r#"{ "every": "10s", "path": "/" }"#).is_err());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProbeConfig {
    /// How often a cooling deployment is probed; also how long a probe may take (must be > 0).
    #[serde(with = "duration")]
    pub every: Duration,
}

/// When a deployment that keeps failing, or whose key was refused, is left alone.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CooldownConfig {
    /// Failures worth moving for (overloaded, server, timeout, connect, unavailable) within
    /// `window` that cool a deployment down; `0` never cools for failures (default 3).
    pub failures: u32,
    /// The window those failures are counted in (default 1 minute).
    #[serde(with = "duration")]
    pub window: Duration,
    /// How long a deployment cools down after `failures`, or after a 429 that says nothing of
    /// when to come back (default 10 s). Its circuit breaker handles longer outages.
    #[serde(with = "duration")]
    pub duration: Duration,
    /// How long a deployment whose key was refused (401, 403) is left out (default 10 minutes).
    #[serde(with = "duration")]
    pub auth: Duration,
}

impl Default for CooldownConfig {
    fn default() -> Self {
        Self {
            failures: 3,
            window: Duration::from_secs(60),
            duration: Duration::from_secs(10),
            auth: Duration::from_secs(600),
        }
    }
}

/// Router-wide settings.
///
/// ```
/// use std::time::Duration;
/// use tollgate_router::RouterConfig;
///
/// let config: RouterConfig = serde_json::from_str(
///     r#"{ "max_fallbacks": 2, "timeout": "30s", "cooldown": { "failures": 5 } }"#,
/// ).unwrap();
/// assert_eq!(config.timeout, Some(Duration::from_secs(30)));
/// assert_eq!(config.cooldown.window, Duration::from_secs(60)); // the default
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RouterConfig {
    /// Most moves to another deployment per call, hedges included (default 3).
    pub max_fallbacks: u32,
    /// Bound on a whole call, every move included; none by default. A request may bound itself
    /// more tightly with a [`Deadline`](crate::Deadline).
    #[serde(with = "duration::option")]
    pub timeout: Option<Duration>,
    /// When failing deployments are left alone.
    pub cooldown: CooldownConfig,
    /// The share of a provider's limit left (from its rate-limit headers) below which a
    /// deployment gets less traffic, in proportion to what is left: at `0.5`, a deployment with
    /// 10 % left gets a fifth of its usual share. `0` turns this off (default 0.5).
    pub adaptive_below: f64,
    /// Seed for the random choices; random when absent.
    pub seed: Option<u64>,
}

impl Default for RouterConfig {
    fn default() -> Self {
        Self {
            max_fallbacks: 3,
            timeout: None,
            cooldown: CooldownConfig::default(),
            adaptive_below: 0.5,
            seed: None,
        }
    }
}

impl RouterConfig {
    /// Every mistake, each with its path.
    pub fn mistakes(&self) -> Vec<ConfigError> {
        let mut errors = Vec::new();
        if let Some(timeout) = self.timeout
            && let Err(e) = tollgate_core::non_zero("timeout", timeout)
        {
            errors.push(e);
        }
        let cooldown = &self.cooldown;
        for (field, value) in [("window", cooldown.window), ("duration", cooldown.duration)] {
            if cooldown.failures > 0
                && let Err(e) = tollgate_core::non_zero(field, value)
            {
                errors.push(e.under("cooldown"));
            }
        }
        if !(0.0..=1.0).contains(&self.adaptive_below) {
            errors.push(ConfigError::new(
                "adaptive_below",
                format!("must be between 0 and 1, got {}", self.adaptive_below),
            ));
        }
        errors
    }
}

/// One group's settings: how it balances, where its calls go when it cannot serve them, and
/// whether it hedges or waits for room.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GroupConfig {
    /// How a deployment is chosen.
    pub strategy: Strategy,
    /// Groups tried in order once every deployment of this one has failed.
    pub fallbacks: Vec<String>,
    /// Groups tried, in order, when a prompt is too long for a deployment's context window.
    pub context_window_fallbacks: Vec<String>,
    /// Groups tried, in order, when a provider's content filter refused the call.
    pub content_policy_fallbacks: Vec<String>,
    /// Upstream HTTP statuses that move a call on, to the next deployment and then the
    /// `fallbacks`, whatever their kind says (a provider's 400 or 404 for a model it has not
    /// deployed, say). Failures move as their kind says besides.
    pub fallback_on_status: Vec<u16>,
    /// A second call to another deployment when the first has not answered in time; off by
    /// default. The first answer wins; the other call is dropped.
    pub hedge_after: Option<HedgeAfter>,
    /// When every deployment is at its `max_in_flight`: wait in line for room (within the
    /// deadline) instead of moving on.
    pub wait: bool,
    /// Retries a deployment's own retry layer may make for a call before the router moves it,
    /// while the call has somewhere else to go (default 0: a failure moves at once, and the
    /// retry schedule runs only on the last place left).
    pub retries_before_move: u32,
    /// Sends calls with the same prompt prefix (system messages and tools) to the same
    /// deployment, for its provider's prompt cache; off by default. It takes the place of the
    /// group's `strategy` for calls that have a prefix (spreading prefixes by weight); calls with
    /// none follow the strategy.
    pub affinity: Option<Affinity>,
    /// Probes its deployments while they cool down after failures, an open breaker or a refused
    /// key; off by default.
    pub probe: Option<ProbeConfig>,
}

impl GroupConfig {
    /// Every group this one may send a call to, with the field that names it.
    pub fn named_groups(&self) -> impl Iterator<Item = (&'static str, &str)> {
        self.fallbacks
            .iter()
            .map(|g| ("fallbacks", g.as_str()))
            .chain(
                self.context_window_fallbacks
                    .iter()
                    .map(|g| ("context_window_fallbacks", g.as_str())),
            )
            .chain(
                self.content_policy_fallbacks
                    .iter()
                    .map(|g| ("content_policy_fallbacks", g.as_str())),
            )
    }

    /// Whether a call to this group may move to another group.
    pub fn has_fallbacks(&self) -> bool {
        !(self.fallbacks.is_empty()
            && self.context_window_fallbacks.is_empty()
            && self.content_policy_fallbacks.is_empty())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hedge_after_reads_a_duration_or_p95() {
        assert_eq!(
            "250ms".parse::<HedgeAfter>(),
            Ok(HedgeAfter::After(Duration::from_millis(250)))
        );
        assert_eq!("P95".parse::<HedgeAfter>(), Ok(HedgeAfter::P95));
        assert!("soon".parse::<HedgeAfter>().unwrap_err().contains("p95"));
        assert_eq!(HedgeAfter::After(Duration::from_secs(2)).to_string(), "2s");
    }

    #[test]
    fn mistakes_name_their_fields() {
        let config = RouterConfig {
            timeout: Some(Duration::ZERO),
            adaptive_below: 1.5,
            cooldown: CooldownConfig {
                window: Duration::ZERO,
                ..CooldownConfig::default()
            },
            ..RouterConfig::default()
        };
        let paths: Vec<String> = config
            .mistakes()
            .iter()
            .map(|e| e.path().to_owned())
            .collect();
        assert_eq!(paths, ["timeout", "cooldown.window", "adaptive_below"]);
    }
}
