//! Roles as types: what serves each one (a provider and model, or a list of targets the router
//! balances and falls back over), as written and as resolved.

use std::sync::Arc;

use serde::Deserialize;
use tollgate_router::{Affinity, HedgeAfter, ProbeConfig, Strategy};

/// One role: what serves it and its model settings.
///
/// Either `provider` and `model` (one deployment; an absent field falls back to the `default`
/// role's), or `targets`, the deployments the router balances between with `strategy`. A role
/// with neither takes the `default` role's targets (its own `model`, if any, replacing theirs).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RoleConfig {
    /// A provider named in `providers`.
    pub provider: Option<String>,
    /// The model; also the model of each target that names none.
    pub model: Option<String>,
    /// Sampling temperature, 0 to 2.
    pub temperature: Option<f64>,
    /// The output bound of a call to this role that sets none (`max_tokens` is the same field):
    /// sent to the provider, and what a token or cost budget reserves. Without one, a budget
    /// reserves, and sends, the model's own output limit where tollgate knows it, else 4,096.
    #[serde(alias = "max_tokens")]
    pub default_max_tokens: Option<u32>,
    /// Bound on a whole call to this role, every attempt and move included (its first event, for
    /// a stream, and its end); none by default. A gateway's `request_timeout` and a caller's
    /// timeout header bound it further.
    #[serde(with = "tollgate_core::duration::option")]
    pub timeout: Option<std::time::Duration>,
    /// The deployments that serve this role, in order.
    pub targets: Option<Vec<TargetConfig>>,
    // The router's `GroupConfig` fields, written out: serde cannot flatten a struct into one that
    // refuses unknown fields, and a typo here must be an error.
    /// How a target is chosen: `weighted` (default), `priority`, `least_in_flight`, `latency`.
    pub strategy: Strategy,
    /// Roles whose targets are tried, in order, once every target of this one has failed.
    pub fallbacks: Vec<String>,
    /// Roles tried, in order, when a prompt is too long for a target's context window.
    pub context_window_fallbacks: Vec<String>,
    /// Roles tried, in order, when a provider's content filter refused a call.
    pub content_policy_fallbacks: Vec<String>,
    /// Upstream HTTP statuses (`[400, 404]`) that move a call to the next target and then the
    /// `fallbacks`, whatever their kind.
    pub fallback_on_status: Vec<u16>,
    /// A second call to another target when the first has not answered within this time (`2s`)
    /// or the target's recent 95th percentile (`p95`); off by default.
    pub hedge_after: Option<HedgeAfter>,
    /// When every target is at its `max_in_flight`: wait for room (within `routing.timeout`)
    /// instead of failing at once.
    pub wait: bool,
    /// Retries a target's provider may make for a call before it moves to another target or
    /// fallback (default 0: a failure moves at once; the retry schedule runs only on the last
    /// place a call can go).
    pub retries_before_move: u32,
    /// `prefix`: calls whose system prompt and tools are the same go to the same target while it
    /// can take them, so its provider's prompt cache is hit; new prompts are spread over the
    /// targets by their weights. Off by default; only for a role with targets.
    pub affinity: Option<Affinity>,
    /// `{ every: 10s }`: a target cooling down after failures, an open breaker or a refused key
    /// is sent a one-token call every `every`, and comes back as soon as one is answered. Probes
    /// are real calls, billed as any other. Off by default; only for a role that has somewhere
    /// else to go (targets, or fallbacks).
    pub probe: Option<ProbeConfig>,
}

/// One deployment of a role: a provider (with its own key or base URL, when given) and a model.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TargetConfig {
    /// A provider named in `providers`.
    pub provider: String,
    /// The model (default: the role's).
    #[serde(default)]
    pub model: Option<String>,
    /// Its share of traffic under the `weighted` strategy (default 1).
    #[serde(default = "one")]
    pub weight: u32,
    /// Most calls at once.
    #[serde(default)]
    pub max_in_flight: Option<u32>,
    /// The deployment's name (default `provider/model`); required with `api_key_env` or
    /// `base_url`, and the name its calls go under in the cost report, the circuit breakers and
    /// the statistics.
    #[serde(default)]
    pub name: Option<String>,
    /// Another API key for the provider: the environment variable that holds it.
    #[serde(default)]
    pub api_key_env: Option<String>,
    /// Another base URL for the provider.
    #[serde(default)]
    pub base_url: Option<String>,
}

fn one() -> u32 {
    1
}

impl TargetConfig {
    /// Whether it calls the provider with a key or URL of its own, through a client of its own.
    pub fn has_own_client(&self) -> bool {
        self.api_key_env.is_some() || self.base_url.is_some()
    }
}

/// A role with everything it takes from the `default` role filled in.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct ResolvedRole {
    /// The first target's provider (its client's name when it has a key of its own).
    pub provider: Arc<str>,
    /// The first target's model.
    pub model: Arc<str>,
    /// The temperature, when set.
    pub temperature: Option<f64>,
    /// The output bound of a call that sets none, when set.
    pub default_max_tokens: Option<u32>,
    /// Bound on a whole call, when set.
    pub timeout: Option<std::time::Duration>,
    /// Every deployment that serves the role, in order.
    pub targets: Vec<ResolvedTarget>,
    /// Whether a call may move to another deployment (several targets, or fallbacks).
    pub moves: bool,
}

/// One deployment of a role, resolved.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct ResolvedTarget {
    /// The deployment's name.
    pub name: Arc<str>,
    /// The client its calls go through: the provider's name, or the target's own `name` when
    /// it has a key or base URL of its own.
    pub client: Arc<str>,
    /// The provider (its section in `providers`).
    pub provider: Arc<str>,
    /// The model.
    pub model: Arc<str>,
    /// Its weight.
    pub weight: u32,
    /// Its bulkhead.
    pub max_in_flight: Option<u32>,
    /// The environment variable with its own API key, when it has one.
    pub api_key_env: Option<String>,
    /// Its own base URL, when it has one.
    pub base_url: Option<String>,
}

pub(super) fn single(own: &RoleConfig, fallback: Option<&RoleConfig>) -> Option<TargetConfig> {
    let pick = |field: fn(&RoleConfig) -> Option<&String>| {
        field(own).or_else(|| fallback.and_then(field)).cloned()
    };
    Some(TargetConfig {
        provider: pick(|r| r.provider.as_ref())?,
        model: Some(pick(|r| r.model.as_ref())?),
        weight: 1,
        max_in_flight: None,
        name: None,
        api_key_env: None,
        base_url: None,
    })
}

pub(super) fn has_fallbacks(role: &RoleConfig) -> bool {
    fallback_names(role).next().is_some()
}

/// The roles `role` may send a call on to, with the field that names each.
pub(super) fn fallback_names(role: &RoleConfig) -> impl Iterator<Item = (&'static str, &str)> {
    [
        ("fallbacks", &role.fallbacks),
        ("context_window_fallbacks", &role.context_window_fallbacks),
        ("content_policy_fallbacks", &role.content_policy_fallbacks),
    ]
    .into_iter()
    .flat_map(|(field, names)| names.iter().map(move |name| (field, name.as_str())))
}
