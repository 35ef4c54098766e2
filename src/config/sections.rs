//! The sections of a configuration, as types: providers, roles, caching, rate limiting, Redis, and
//! the per-provider form of the retry, breaker and health sections.

use std::{collections::BTreeMap, time::Duration};

use serde::{Deserialize, de::IgnoredAny};
use tollgate_cache::CacheConfig;
use tollgate_core::Preset;
use tollgate_core::{duration, redis::RedisConfig};
use tollgate_ratelimit::RateLimitConfig;

use tollgate_circuit_breaker::CircuitBreakerConfig;
use tollgate_health::HealthConfig;
use tollgate_retry::RetryConfig;

use super::{roles::RoleConfig, switch::Switch};
use crate::cost::CostsConfig;

/// The environment variable that replaces `rate_limiting.tenants.default`: the quota every tenant
/// without its own gets, in the same shape as in the file (`{per_minute: 600, cost_per_day: "20"}`;
/// YAML or JSON).
pub const DEFAULT_QUOTA_VAR: &str = "TOLLGATE_DEFAULT_QUOTA";

/// The role a request without one takes, and that every other role falls back to.
pub const DEFAULT_ROLE: &str = "default";

/// Everything one YAML document configures. Unknown fields are errors everywhere.
///
/// ```
/// use tollgate::Config;
///
/// let config = Config::from_yaml(r#"
/// providers:
///   local: { kind: simulated }
/// roles:
///   default: { provider: local, model: sim-small, temperature: 0.2 }
///   summarize: { default_max_tokens: 256 }
/// "#).unwrap();
/// let summarize = config.role("summarize").unwrap();
/// assert_eq!((&*summarize.provider, &*summarize.model), ("local", "sim-small"));
/// assert_eq!((summarize.temperature, summarize.default_max_tokens), (Some(0.2), Some(256)));
///
/// // Every mistake at once, each with its path.
/// let err = Config::from_yaml(r#"
/// providers:
///   local: { kind: simulated, timeout: 0s }
/// roles:
///   default: { provider: nowhere, model: sim-small, temperature: 7 }
/// "#).unwrap_err();
/// assert_eq!(err.paths(), ["providers.local.timeout", "roles.default.provider", "roles.default.temperature"]);
/// ```
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The upstreams, by the name roles use.
    pub providers: BTreeMap<String, ProviderConfig>,
    /// What serves each role, and its model settings; `default` is required, and the others
    /// fall back to it.
    pub roles: BTreeMap<String, RoleConfig>,
    /// How calls move between a role's targets and to its fallbacks: moves, deadline, cooldowns.
    #[serde(default)]
    pub routing: RoutingConfig,
    /// Dollars per million tokens, per model (`{ input: "2.50", output: "10.00" }`), over the
    /// shipped catalog; see [`PricingConfig`](super::PricingConfig).
    #[serde(default)]
    pub pricing: super::PricingConfig,
    /// The response cache (off when absent).
    #[serde(default = "Switch::off")]
    pub caching: Switch<CachingConfig>,
    /// Quotas per provider and per tenant, budgets included (off when absent).
    #[serde(default = "Switch::off")]
    pub rate_limiting: Switch<RateLimitingConfig>,
    /// Retries (on with its defaults when absent), with a policy and a retry budget of its own
    /// for each provider, which `retry.providers` may change.
    #[serde(default)]
    pub retry: Switch<PerProvider<RetryConfig>>,
    /// A circuit breaker per provider (on with its defaults when absent), whose rules
    /// `circuit_breaker.providers` may change.
    #[serde(default)]
    pub circuit_breaker: Switch<PerProvider<CircuitBreakerConfig>>,
    /// Call statistics per provider (on with its defaults when absent), whose thresholds
    /// `health.providers` may change.
    #[serde(default)]
    pub health: Switch<PerProvider<HealthConfig>>,
    /// Redis, for limits and a cache shared by every process (needs the `redis` feature).
    #[serde(default)]
    pub redis: Option<RedisConfig>,
    /// How the cost report keeps spend: how many tenants it keeps apart.
    #[serde(default)]
    pub costs: CostsConfig,
    /// What per-call metrics carry besides provider and model (feature `metrics`).
    #[serde(default)]
    pub metrics: crate::MetricsConfig,
}

/// A layer's section that each provider may change: the settings every provider gets, and
/// per-provider replacements (the `retry`, `circuit_breaker` and `health` sections).
///
/// Under `providers`, a provider is either `false` (the layer is off for it) or a mapping of the
/// fields it changes; the rest come from the section. A field that is a mapping itself (`budget`,
/// `window`) is replaced whole. Each provider has its own instance of the layer's state either
/// way: its own retry budget, its own breaker, its own statistics.
///
/// ```
/// use std::time::Duration;
/// use tollgate::Config;
///
/// let config = Config::from_yaml(r#"
/// providers:
///   openai: { kind: simulated }
///   local: { kind: simulated }
///   batch: { kind: simulated }
/// roles:
///   default: { provider: openai, model: gpt-4o-mini }
/// retry:
///   max_retries: 2
///   base_delay: 500ms
///   providers:
///     local: false
///     batch: { max_retries: 5 }
/// circuit_breaker:
///   slow_call_duration: 30s
///   providers:
///     local: { slow_call_duration: 5s }
/// health:
///   providers:
///     batch: false
/// "#).unwrap();
/// let retry = &config.retry;
/// assert_eq!(retry.for_provider("openai").unwrap().max_retries, 2);
/// assert!(retry.for_provider("local").is_none());
/// let batch = retry.for_provider("batch").unwrap();
/// assert_eq!((batch.max_retries, batch.base_delay), (5, Duration::from_millis(500)));
/// let breaker = &config.circuit_breaker;
/// assert_eq!(breaker.for_provider("local").unwrap().slow_call_duration, Duration::from_secs(5));
/// assert_eq!(breaker.for_provider("batch").unwrap().slow_call_duration, Duration::from_secs(30));
/// assert!(config.health.for_provider("batch").is_none());
/// ```
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PerProvider<T> {
    /// The settings of every provider without its own.
    pub defaults: T,
    /// Per provider: off, or its own settings (already filled in from `defaults`).
    pub providers: BTreeMap<String, Switch<T>>,
}

impl<T> PerProvider<T> {
    /// The settings `provider` gets, or `None` when the layer is off for it.
    pub fn for_provider(&self, provider: &str) -> Option<&T> {
        match self.providers.get(provider) {
            Some(own) => own.get(),
            None => Some(&self.defaults),
        }
    }

    /// The providers with settings of their own (not those turned off), by name.
    pub fn own_settings(&self) -> impl Iterator<Item = (&str, &T)> {
        self.providers
            .iter()
            .filter_map(|(provider, own)| Some((provider.as_str(), own.get()?)))
    }
}

impl<T> Switch<PerProvider<T>> {
    /// The settings `provider` gets, or `None` when the layer is off, for every provider or for
    /// this one.
    pub fn for_provider(&self, provider: &str) -> Option<&T> {
        self.get()?.for_provider(provider)
    }
}

/// One upstream. The API key is never written here: `api_key_env` names the environment variable
/// that holds it.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProviderConfig {
    /// `openai` (any OpenAI-compatible server: OpenAI, vLLM, Ollama, ...; see `preset`),
    /// `azure` (Azure OpenAI), `anthropic`, `gemini` (the Gemini API), `vertex` (Vertex AI's
    /// Gemini and Claude models), `bedrock` (Amazon Bedrock's Converse API), or `simulated` (the
    /// [`SimulatedProvider`](crate::SimulatedProvider), for trying a configuration out).
    pub kind: ProviderKind,
    /// `openai` only: a known OpenAI-compatible service, which sets the base URL (unless
    /// `base_url` is given) and the service's quirks: `groq`, `mistral`, `deepseek`,
    /// `together`, `fireworks`, `openrouter`, `xai`, `ollama`, `vllm`, `lmstudio`.
    #[serde(default)]
    pub preset: Option<Preset>,
    /// `azure` only: the deployment that serves each model (`gpt-4o: gpt-4o-prod`); a model not
    /// listed goes to the deployment named like it. (No deployment serves every model: a call
    /// is priced by its model, so the deployment that answers it must be that model's.)
    #[serde(default)]
    pub deployments: BTreeMap<String, String>,
    /// `azure` only: the API version (default `2024-10-21`).
    #[serde(default)]
    pub api_version: Option<String>,
    /// `azure` only: the environment variable holding a Microsoft Entra ID access token, sent
    /// as `Authorization: Bearer` instead of an `api-key` (read at start and on reload).
    #[serde(default)]
    pub entra_token_env: Option<String>,
    /// `vertex` only: the Google Cloud project.
    #[serde(default)]
    pub project: Option<String>,
    /// `vertex` only: the region (`us-central1`, or `global`).
    #[serde(default)]
    pub location: Option<String>,
    /// `vertex` only: a service-account key file; absent, the environment's application-default
    /// credentials (`GOOGLE_APPLICATION_CREDENTIALS`, the metadata server).
    #[serde(default)]
    pub credentials_file: Option<std::path::PathBuf>,
    /// `bedrock` only: the AWS region (`us-east-1`).
    #[serde(default)]
    pub region: Option<String>,
    /// `bedrock` only: the shared-config profile the credentials come from (default: the
    /// standard chain: the environment, `AWS_PROFILE` or `default`, web identity, ...). With
    /// `api_key_env`, a Bedrock API key is sent instead.
    #[serde(default)]
    pub profile: Option<String>,
    /// The API's base URL (default: the provider's public API; required for other servers).
    #[serde(default)]
    pub base_url: Option<String>,
    /// The name of the environment variable holding the API key (`OPENAI_API_KEY`); absent for
    /// servers that need none.
    #[serde(default)]
    pub api_key_env: Option<String>,
    /// Bound on a whole call (default 10 min).
    #[serde(default, with = "duration::option")]
    pub timeout: Option<Duration>,
    /// Bound on opening a connection (default 10 s).
    #[serde(default, with = "duration::option")]
    pub connect_timeout: Option<Duration>,
    /// Bound on the wait for an attempt's first byte, past which the upstream is taken for
    /// stuck and the call is not retried on it (default: 60 s for a stream; for a whole answer,
    /// whose first byte comes only once it is all written, `timeout`). Set, it bounds both.
    #[serde(default, with = "duration::option")]
    pub first_byte_timeout: Option<Duration>,
    /// The longest silence between two pieces of a stream once it has begun (default 5 min).
    #[serde(default, with = "duration::option")]
    pub stream_idle_timeout: Option<Duration>,
    /// The largest answer read, in bytes: a whole answer's body, or all a stream sends (default
    /// 32 MiB). A larger one fails the call (a 502 at the gateway) without being read whole.
    #[serde(default)]
    pub max_response_bytes: Option<usize>,
    /// The largest event (or line) of a stream, in bytes (default 4 MiB).
    #[serde(default)]
    pub max_event_bytes: Option<usize>,
    /// `openai` and `azure`: the field an output bound is sent as when the caller gave none (a role's
    /// default, or the one a budget reserved): `max_tokens` or `max_completion_tokens` (the only
    /// one OpenAI's reasoning models take). Default: `max_completion_tokens` for OpenAI's own
    /// API and Azure, `max_tokens` for any other server.
    #[serde(default)]
    pub max_tokens_name: Option<tollgate_core::MaxTokensName>,
    /// `openai` only: whether the server serves OpenAI's Responses API (`POST
    /// {base_url}/responses`). A call that came in to the gateway's `/v1/responses` then passes
    /// through to it as it came; otherwise it is translated through chat completions (and refused
    /// when it offers a built-in tool such as `web_search_preview`). Default: true for OpenAI's
    /// own API (no `base_url`, or `https://api.openai.com...`), false for any other server and
    /// every preset; vLLM, for one, serves it too.
    #[serde(default)]
    pub responses_api: Option<bool>,
    /// Extra headers every call carries.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// `simulated` only: how long each answer takes (default 0).
    #[serde(default, with = "duration::option")]
    pub latency: Option<Duration>,
    /// `simulated` only: tokens in each answer (default 16).
    #[serde(default)]
    pub output_tokens: Option<u64>,
    /// Never accepted: read so that a key pasted into the file is refused by name without its
    /// value being kept or shown.
    #[serde(default, rename = "api_key")]
    pub(super) pasted_key: Option<IgnoredAny>,
}

/// Which client serves a provider.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProviderKind {
    /// An OpenAI-compatible `/chat/completions` server.
    Openai,
    /// Anthropic's Messages API.
    Anthropic,
    /// Azure OpenAI: a resource's deployments, keyed with `api-key` or an Entra ID token.
    Azure,
    /// Google's Gemini API (`generateContent`), keyed with `x-goog-api-key`.
    Gemini,
    /// Google Cloud's Vertex AI: Gemini and Claude models, with OAuth tokens.
    Vertex,
    /// Amazon Bedrock's Converse API, signed with SigV4 (or a Bedrock API key).
    Bedrock,
    /// The simulated provider: answers from memory, no network.
    Simulated,
}

impl ProviderKind {
    /// The cloud whose own prices in the catalog this kind's calls pay, when it has any.
    pub const fn cloud(self) -> Option<&'static str> {
        match self {
            Self::Azure => Some("azure"),
            Self::Vertex => Some("vertex"),
            Self::Bedrock => Some("bedrock"),
            Self::Openai | Self::Anthropic | Self::Gemini | Self::Simulated => None,
        }
    }
}

/// How calls move between a role's targets: the router crate's own settings.
pub type RoutingConfig = tollgate_router::RouterConfig;

/// The response cache: the cache crate's own configuration, store and rules together.
pub type CachingConfig = CacheConfig;

/// Quotas per tenant, per provider and per any other scope, budgets included: the rate-limit
/// crate's own configuration. Its Redis settings live in the top-level `redis` section.
pub type RateLimitingConfig = RateLimitConfig;
