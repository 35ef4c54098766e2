//! `Config`: the whole stack from one YAML document.
//!
//! Read with [`Config::from_yaml`] or [`Config::load`], which report every mistake they find
//! together, each with its path; build with [`Stack::from_config`](crate::Stack::from_config).
//! `examples/config.yaml` is a commented example of every section.

mod limits;
mod switch;

use std::{
    collections::{BTreeMap, BTreeSet},
    fmt,
    path::{Path, PathBuf},
    time::Duration,
};

use serde::{Deserialize, de::IgnoredAny};
use serde_yaml_ng::{Mapping, Value};
use tollgate_cache::{CacheConfig, Override, Scope as CacheScope};
use tollgate_circuit_breaker::CircuitBreakerConfig;
use tollgate_core::{ConfigError, PricingTable, duration};
use tollgate_health::HealthConfig;
use tollgate_ratelimit::{LeaseConfig, OnFailureConfig, UnpricedModels};
use tollgate_retry::{RetryConfig, RetryPolicy};

use crate::cost::CostsConfig;

pub use limits::Limits;
pub use switch::Switch;

/// The environment variable that replaces `redis.url`: the same one the rate limiter's own
/// configuration reads.
pub use tollgate_ratelimit::REDIS_URL_VAR;

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
///   summarize: { max_tokens: 256 }
/// "#).unwrap();
/// let summarize = config.role("summarize").unwrap();
/// assert_eq!((&*summarize.provider, &*summarize.model), ("local", "sim-small"));
/// assert_eq!((summarize.temperature, summarize.max_tokens), (Some(0.2), Some(256)));
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
    /// Model settings per role; `default` is required, and the others fall back to it field by
    /// field.
    pub roles: BTreeMap<String, RoleConfig>,
    /// Dollars per million tokens, per model (or model-name prefix): `{ input: "2.50", output:
    /// "10.00" }`.
    #[serde(default)]
    pub pricing: PricingTable,
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
    pub redis: Option<RedisSection>,
    /// How the cost report keeps spend: how many tenants it keeps apart.
    #[serde(default)]
    pub costs: CostsConfig,
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

impl<T: serde::de::DeserializeOwned> PerProvider<T> {
    /// Reads a section's mapping: what parsed, and each mistake with its path under `at`. A
    /// provider whose settings do not parse is left out; the others are kept, so that the checks
    /// after parsing still see them. `section_only` names the fields a provider may not change.
    fn read(
        mut section: serde_json::Map<String, serde_json::Value>,
        at: &str,
        section_only: &[&str],
    ) -> (Option<Self>, Vec<ConfigError>) {
        use serde_json::Value as Json;

        let providers = section.remove("providers");
        let defaults = match from_json::<T>(Json::Object(section.clone()), at) {
            Ok(defaults) => defaults,
            Err(e) => return (None, vec![e]),
        };
        let mut read = Self {
            defaults,
            providers: BTreeMap::new(),
        };
        let providers = match providers {
            None | Some(Json::Null) => return (Some(read), Vec::new()),
            Some(Json::Object(providers)) => providers,
            Some(_) => {
                let error = ConfigError::new(
                    under(at, "providers"),
                    "expected a mapping of provider names to false or the settings they change",
                );
                return (Some(read), vec![error]);
            }
        };
        let mut errors = Vec::new();
        for (name, own) in providers {
            let at = under(at, &format!("providers.{name}"));
            let fields = match own {
                Json::Bool(false) => {
                    read.providers.insert(name, Switch::Off);
                    continue;
                }
                Json::Bool(true) | Json::Null => serde_json::Map::new(),
                Json::Object(fields) => fields,
                _ => {
                    errors.push(ConfigError::new(
                        at,
                        "expected false (the layer off) or the settings it changes",
                    ));
                    continue;
                }
            };
            if let Some(field) = section_only.iter().find(|f| fields.contains_key(**f)) {
                errors.push(ConfigError::new(
                    under(&at, field),
                    "set for the whole section only: it bounds every provider together",
                ));
                continue;
            }
            // Its own fields alone first, so that a mistake in them is named where it was made;
            // then over the section's, which fill in the rest.
            let mut merged = section.clone();
            merged.extend(fields.clone());
            match from_json::<T>(Json::Object(fields), &at)
                .and_then(|_| from_json(Json::Object(merged), &at))
            {
                Ok(settings) => {
                    read.providers.insert(name, Switch::On(settings));
                }
                Err(e) => errors.push(e),
            }
        }
        (Some(read), errors)
    }
}

impl<'de, T: serde::de::DeserializeOwned> Deserialize<'de> for PerProvider<T> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let section = serde_json::Map::deserialize(deserializer)?;
        match Self::read(section, "", &[]) {
            (Some(read), errors) if errors.is_empty() => Ok(read),
            (_, errors) => Err(serde::de::Error::custom(
                errors
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join("; "),
            )),
        }
    }
}

/// `path` under `at`, or `path` alone when `at` is the root.
fn under(at: &str, path: &str) -> String {
    if at.is_empty() {
        path.to_owned()
    } else {
        format!("{at}.{path}")
    }
}

/// One upstream. The API key is never written here: `api_key_env` names the environment variable
/// that holds it.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProviderConfig {
    /// `openai` (any OpenAI-compatible server: OpenAI, vLLM, Ollama, ...), `anthropic`, or
    /// `simulated` (the [`SimulatedProvider`](crate::SimulatedProvider), for trying a
    /// configuration out).
    pub kind: ProviderKind,
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
    pasted_key: Option<IgnoredAny>,
}

/// Which client serves a provider.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProviderKind {
    /// An OpenAI-compatible `/chat/completions` server.
    Openai,
    /// Anthropic's Messages API.
    Anthropic,
    /// The simulated provider: answers from memory, no network.
    Simulated,
}

/// One role's model settings; an absent field falls back to the `default` role's.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RoleConfig {
    /// A provider named in `providers`.
    pub provider: Option<String>,
    /// The model.
    pub model: Option<String>,
    /// Sampling temperature, 0 to 2.
    pub temperature: Option<f64>,
    /// Most tokens in an answer.
    pub max_tokens: Option<u32>,
}

/// A role with the `default` role's fields filled in.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct ResolvedRole {
    /// The provider's name.
    pub provider: std::sync::Arc<str>,
    /// The model.
    pub model: std::sync::Arc<str>,
    /// The temperature, when set.
    pub temperature: Option<f64>,
    /// The answer's token bound, when set.
    pub max_tokens: Option<u32>,
}

/// Where the cache keeps answers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StoreKind {
    /// In this process, bounded by `max_bytes` (default).
    #[default]
    Memory,
    /// Files under `path`, bounded by `max_bytes`; survives restarts.
    File,
    /// Redis (the `redis` section), shared by every process.
    Redis,
    /// Memory in front of Redis.
    Tiered,
}

/// The response cache. Unknown fields are errors.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CachingConfig {
    /// `memory` (default), `file`, `redis` or `tiered` (memory in front of Redis).
    pub store: StoreKind,
    /// Bytes the memory or file store holds (default 64 MiB).
    pub max_bytes: u64,
    /// The file store's directory.
    pub path: Option<PathBuf>,
    /// How long an answer is served (default 1 h).
    #[serde(with = "duration")]
    pub ttl: Duration,
    /// Answers longer than this are not stored (default 1 MiB).
    pub max_entry_bytes: usize,
    /// Cache only reproducible requests (temperature 0, or a seed).
    pub deterministic_only: bool,
    /// Treat runs of whitespace in message text as one space.
    pub normalize_whitespace: bool,
    /// `tenant` (default: tenants never see each other's answers) or `shared`.
    pub scope: CacheScope,
    /// Per provider: `enabled: false` to never cache it, or its own `ttl`.
    pub providers: BTreeMap<String, Override>,
    /// Per model (wins over its provider's rule).
    pub models: BTreeMap<String, Override>,
}

impl Default for CachingConfig {
    fn default() -> Self {
        let rules = CacheConfig::default();
        Self {
            store: StoreKind::Memory,
            max_bytes: 64 << 20,
            path: None,
            ttl: rules.default_ttl,
            max_entry_bytes: rules.max_entry_bytes,
            deterministic_only: rules.deterministic_only,
            normalize_whitespace: rules.normalize_whitespace,
            scope: rules.scope,
            providers: BTreeMap::new(),
            models: BTreeMap::new(),
        }
    }
}

impl CachingConfig {
    /// The cache layer's own rules.
    pub fn rules(&self) -> CacheConfig {
        CacheConfig {
            default_ttl: self.ttl,
            max_entry_bytes: self.max_entry_bytes,
            deterministic_only: self.deterministic_only,
            normalize_whitespace: self.normalize_whitespace,
            scope: self.scope,
            providers: self.providers.clone(),
            models: self.models.clone(),
        }
    }
}

/// Quotas per provider and per tenant. Unknown fields are errors.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RateLimitingConfig {
    /// Wait up to this long for room before refusing; absent, refuse at once.
    #[serde(with = "duration::option")]
    pub wait: Option<Duration>,
    /// Per provider, shared by everyone calling it; providers not listed are not limited here.
    pub providers: BTreeMap<String, Limits>,
    /// Per tenant: `default` for every tenant not listed, and a tenant's own entry instead of it.
    /// Cost tiers here are the tenants' budgets.
    pub tenants: BTreeMap<String, Limits>,
    /// Tokens reserved for an answer when neither the request nor its role bounds it (default
    /// 1,024); the real usage settles it afterwards.
    pub default_output_tokens: u64,
    /// Calls to models without a price when a budget counts dollars: `reject` (default) or `free`.
    pub unpriced_models: UnpricedModels,
    /// At most this many keys tracked at once (default 100,000).
    pub max_keys: usize,
}

impl Default for RateLimitingConfig {
    fn default() -> Self {
        Self {
            wait: None,
            providers: BTreeMap::new(),
            tenants: BTreeMap::new(),
            default_output_tokens: 1_024,
            unpriced_models: UnpricedModels::default(),
            max_keys: tollgate_ratelimit::DEFAULT_MAX_KEYS,
        }
    }
}

impl RateLimitingConfig {
    /// The quota a tenant has: its own, else `default`.
    pub fn tenant_limits(&self, tenant: &str) -> Option<&Limits> {
        self.tenants
            .get(tenant)
            .or_else(|| self.tenants.get(DEFAULT_ROLE))
    }

    fn has_budget(&self) -> bool {
        self.tenants
            .values()
            .chain(self.providers.values())
            .any(Limits::has_budget)
    }
}

/// Redis, shared by the rate limiter (keys under `<prefix>:rl`) and the cache (`<prefix>:cache`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedisSection {
    /// `redis://host:port/db`; the `REDIS_URL` environment variable replaces it.
    pub url: String,
    /// Key prefix (default `tollgate`).
    #[serde(default = "default_prefix")]
    pub prefix: String,
    /// What the limiter does while Redis does not answer: `local` (default: an in-process limiter
    /// with `local_share` of each tier), `fail_open` or `fail_closed`. The cache always treats an
    /// unanswered read as a miss.
    #[serde(default)]
    pub on_failure: OnFailureConfig,
    /// The share of each tier the local fallback holds (default 0.5).
    #[serde(default = "default_share")]
    pub local_share: f64,
    /// Limiter calls failed in a row before Redis is left alone for a while (default 3).
    #[serde(default = "default_threshold")]
    pub failure_threshold: u32,
    /// How often one limiter call probes a Redis that was left alone (default 500 ms).
    #[serde(default = "default_probe", with = "duration")]
    pub probe_interval: Duration,
    /// Bound on each limiter call to Redis (default 5 ms).
    #[serde(default = "default_limiter_timeout", with = "duration")]
    pub limiter_timeout: Duration,
    /// Bound on each cache call to Redis (default 50 ms).
    #[serde(default = "default_cache_timeout", with = "duration")]
    pub cache_timeout: Duration,
    /// Cached answers larger than this in Redis (after compression) are not written there
    /// (default 512 KiB).
    #[serde(default = "default_cache_max_value_bytes")]
    pub cache_max_value_bytes: usize,
    /// Compress cached answers in Redis with LZ4 (default false): natural-language answers shrink
    /// to about half, for a few microseconds per kilobyte on each write and read.
    #[serde(default)]
    pub cache_compress: bool,
    /// Hybrid mode for request limits: lease permits in batches (`{ batch: 100, ttl: 1s }`).
    #[serde(default)]
    pub lease: Option<LeaseConfig>,
}

fn default_prefix() -> String {
    "tollgate".to_owned()
}

fn default_threshold() -> u32 {
    tollgate_ratelimit::DEFAULT_FAILURE_THRESHOLD
}

fn default_probe() -> Duration {
    tollgate_ratelimit::DEFAULT_PROBE_INTERVAL
}

fn default_share() -> f64 {
    tollgate_ratelimit::DEFAULT_LOCAL_SHARE
}

fn default_limiter_timeout() -> Duration {
    tollgate_ratelimit::DEFAULT_REDIS_TIMEOUT
}

fn default_cache_max_value_bytes() -> usize {
    tollgate_cache::store::DEFAULT_MAX_VALUE_BYTES
}

fn default_cache_timeout() -> Duration {
    tollgate_cache::store::DEFAULT_CACHE_TIMEOUT
}

/// Every mistake found in a configuration, each with its path; displayed one per line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors(Vec<ConfigError>);

impl ConfigErrors {
    /// The mistakes, in the order of the document's sections.
    pub fn errors(&self) -> &[ConfigError] {
        &self.0
    }

    /// Each mistake's path.
    pub fn paths(&self) -> Vec<&str> {
        self.0.iter().map(ConfigError::path).collect()
    }

    pub(crate) fn one(error: ConfigError) -> Self {
        Self(vec![error])
    }

    pub(crate) fn check(errors: Vec<ConfigError>) -> Result<(), Self> {
        if errors.is_empty() {
            Ok(())
        } else {
            Err(Self(errors))
        }
    }
}

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "invalid configuration ({}):",
            tollgate_core::counted(self.0.len() as u64, "mistake")
        )?;
        for error in &self.0 {
            write!(f, "\n  {error}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

impl From<ConfigError> for ConfigErrors {
    fn from(error: ConfigError) -> Self {
        Self::one(error)
    }
}

impl Config {
    /// Reads, checks and returns the configuration in the YAML file at `path`, with the
    /// environment's overrides ([`with_env`](Self::with_env)).
    ///
    /// # Errors
    ///
    /// Every mistake found: an unreadable file, YAML that does not parse, and then each section's
    /// mistakes together.
    pub fn load(path: impl AsRef<Path>) -> Result<Self, ConfigErrors> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|e| {
            ConfigError::new(path.display().to_string(), format!("cannot read: {e}"))
        })?;
        Self::parse(&text)?.with_env()
    }

    /// Reads and checks a YAML document (without environment overrides).
    ///
    /// # Errors
    ///
    /// As [`load`](Self::load).
    pub fn from_yaml(text: &str) -> Result<Self, ConfigErrors> {
        Self::parse(text)
    }

    /// Parses each section on its own, so a mistake in one does not hide those in the others;
    /// then checks what parsed.
    fn parse(text: &str) -> Result<Self, ConfigErrors> {
        let mut document: Value = serde_yaml_ng::from_str(text)
            .map_err(|e| ConfigError::new("", format!("not valid YAML: {e}")))?;
        document
            .apply_merge()
            .map_err(|e| ConfigError::new("", format!("not valid YAML: {e}")))?;
        let mut sections = match document {
            Value::Mapping(sections) => sections,
            Value::Null => Mapping::new(),
            _ => {
                return Err(ConfigError::new("", "expected a mapping of sections").into());
            }
        };
        let mut errors = Vec::new();
        let known = [
            "providers",
            "roles",
            "pricing",
            "caching",
            "rate_limiting",
            "retry",
            "circuit_breaker",
            "health",
            "redis",
            "costs",
        ];
        for (name, _) in sections.iter() {
            let name = name.as_str().unwrap_or("?");
            if !known.contains(&name) {
                errors.push(ConfigError::new(
                    name,
                    format!(
                        "unknown section `{name}`, expected one of {}",
                        known.join(", ")
                    ),
                ));
            }
        }
        let mut broken = BTreeSet::new();
        let mut read = Reader {
            sections: &mut sections,
            errors: &mut errors,
            broken: &mut broken,
        };
        let config = Self {
            providers: read.required("providers"),
            roles: read.required("roles"),
            pricing: read.optional("pricing").unwrap_or_default(),
            caching: read.optional("caching").unwrap_or_else(Switch::off),
            rate_limiting: read.optional("rate_limiting").unwrap_or_else(Switch::off),
            retry: read.per_provider("retry", &[]),
            circuit_breaker: read.per_provider("circuit_breaker", &["max_keys", "idle_timeout"]),
            health: read.per_provider("health", &["max_components"]),
            redis: read.optional("redis"),
            costs: read.optional("costs").unwrap_or_default(),
        };
        errors.extend(config.mistakes(&broken));
        ConfigErrors::check(errors)?;
        Ok(config)
    }

    /// This configuration with the environment's overrides: [`REDIS_URL_VAR`] replaces
    /// `redis.url`, and [`DEFAULT_QUOTA_VAR`] replaces `rate_limiting.tenants.default`.
    ///
    /// # Errors
    ///
    /// A variable that does not parse, or an override that makes the configuration invalid; each
    /// named (`env.TOLLGATE_DEFAULT_QUOTA.per_minute: must be > 0`).
    pub fn with_env(self) -> Result<Self, ConfigErrors> {
        self.with_env_from(|name| std::env::var(name).ok())
    }

    /// [`with_env`](Self::with_env), reading variables through `lookup`.
    ///
    /// # Errors
    ///
    /// As [`with_env`](Self::with_env).
    pub fn with_env_from(
        mut self,
        lookup: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, ConfigErrors> {
        if let (Some(redis), Some(url)) = (&mut self.redis, lookup(REDIS_URL_VAR)) {
            redis.url = url;
        }
        if let Some(text) = lookup(DEFAULT_QUOTA_VAR) {
            let at = format!("env.{DEFAULT_QUOTA_VAR}");
            let value: Value = serde_yaml_ng::from_str(&text).map_err(|e| {
                ConfigError::new(
                    &at,
                    format!(
                        "expected limits such as {{per_minute: 600, cost_per_day: \"20\"}}: {e}"
                    ),
                )
            })?;
            let limits: Limits = typed(value, &at)?;
            limits.quota(&at).map_err(ConfigErrors)?;
            match &mut self.rate_limiting {
                Switch::On(limiting) => {
                    limiting.tenants.insert(DEFAULT_ROLE.to_owned(), limits);
                }
                Switch::Off => {
                    let mut limiting = RateLimitingConfig::default();
                    limiting.tenants.insert(DEFAULT_ROLE.to_owned(), limits);
                    self.rate_limiting = Switch::On(limiting);
                }
            }
        }
        self.validate()?;
        Ok(self)
    }

    /// Checks every section.
    ///
    /// # Errors
    ///
    /// Every mistake found, each with its path.
    pub fn validate(&self) -> Result<(), ConfigErrors> {
        ConfigErrors::check(self.mistakes(&BTreeSet::new()))
    }

    /// `role` with the `default` role's fields filled in, or `None` when there is no such role (or
    /// it names no provider or model even with the default's).
    pub fn role(&self, role: &str) -> Option<ResolvedRole> {
        let own = self.roles.get(role)?;
        let fallback = self.roles.get(DEFAULT_ROLE);
        let pick = |field: fn(&RoleConfig) -> Option<&String>| {
            field(own).or_else(|| fallback.and_then(field)).cloned()
        };
        Some(ResolvedRole {
            provider: pick(|r| r.provider.as_ref())?.into(),
            model: pick(|r| r.model.as_ref())?.into(),
            temperature: own.temperature.or(fallback.and_then(|r| r.temperature)),
            max_tokens: own.max_tokens.or(fallback.and_then(|r| r.max_tokens)),
        })
    }

    /// Every mistake, skipping the checks that need a section that did not parse.
    fn mistakes(&self, broken: &BTreeSet<&str>) -> Vec<ConfigError> {
        let ok = |names: &[&str]| names.iter().all(|name| !broken.contains(name));
        let mut errors = Vec::new();
        if ok(&["providers"]) {
            self.check_providers(&mut errors);
        }
        if ok(&["providers", "roles"]) {
            self.check_roles(&mut errors);
        }
        if ok(&["providers", "roles", "pricing", "rate_limiting"]) {
            self.check_pricing(&mut errors);
        }
        if ok(&["providers", "caching", "redis"]) {
            self.check_caching(&mut errors);
        }
        if ok(&["providers", "rate_limiting"]) {
            self.check_rate_limiting(&mut errors);
        }
        if let Switch::On(retry) = &self.retry {
            self.check_per_provider("retry", retry, &ok, &mut errors, |policy| {
                RetryPolicy::from_config(policy.clone()).map(|_| ())
            });
        }
        if let Switch::On(breaker) = &self.circuit_breaker {
            self.check_per_provider(
                "circuit_breaker",
                breaker,
                &ok,
                &mut errors,
                CircuitBreakerConfig::validate,
            );
        }
        if let Switch::On(health) = &self.health {
            self.check_per_provider("health", health, &ok, &mut errors, HealthConfig::validate);
        }
        if let Some(redis) = &self.redis {
            check_redis(redis, &mut errors);
        }
        if let Err(error) = self.costs.validate() {
            errors.push(error.under("costs"));
        }
        errors
    }

    /// A per-provider section: its settings and each provider's are valid, and every provider it
    /// names exists.
    fn check_per_provider<T>(
        &self,
        name: &str,
        section: &PerProvider<T>,
        ok: &dyn Fn(&[&str]) -> bool,
        errors: &mut Vec<ConfigError>,
        validate: impl Fn(&T) -> Result<(), ConfigError>,
    ) {
        if let Err(e) = validate(&section.defaults) {
            errors.push(e.under(name));
        }
        for (provider, own) in &section.providers {
            let at = format!("{name}.providers.{provider}");
            if ok(&["providers"]) && !self.providers.contains_key(provider) {
                errors.push(ConfigError::new(
                    &at,
                    format!("unknown provider (providers: {})", self.provider_names()),
                ));
            }
            if let Switch::On(settings) = own {
                if let Err(e) = validate(settings) {
                    errors.push(e.under(&at));
                }
            }
        }
    }

    fn check_providers(&self, errors: &mut Vec<ConfigError>) {
        if self.providers.is_empty() {
            errors.push(ConfigError::new("providers", "name at least one provider"));
        }
        for (name, provider) in &self.providers {
            let at = |field: &str| format!("providers.{name}.{field}");
            if provider.pasted_key.is_some() {
                errors.push(ConfigError::new(
                    at("api_key"),
                    "API keys never go in the file: put the key in an environment variable and name \
                     it with api_key_env (e.g. api_key_env: OPENAI_API_KEY)",
                ));
            }
            if let Some(var) = &provider.api_key_env {
                if !is_env_var_name(var) {
                    // The value is not repeated: it may well be the key itself.
                    errors.push(ConfigError::new(
                        at("api_key_env"),
                        "must be the name of an environment variable (letters, digits and _, \
                         e.g. OPENAI_API_KEY), not the key itself",
                    ));
                }
            }
            for (field, value) in [
                ("timeout", provider.timeout),
                ("connect_timeout", provider.connect_timeout),
            ] {
                if let Some(value) = value {
                    if let Err(e) = tollgate_core::non_zero(&at(field), value) {
                        errors.push(e);
                    }
                }
            }
            if let Some(url) = &provider.base_url {
                if !(url.starts_with("http://") || url.starts_with("https://")) {
                    errors.push(ConfigError::new(
                        at("base_url"),
                        format!("expected an http:// or https:// URL, got {url:?}"),
                    ));
                }
            }
            match provider.kind {
                ProviderKind::Simulated => {
                    for (field, set) in [
                        ("base_url", provider.base_url.is_some()),
                        ("api_key_env", provider.api_key_env.is_some()),
                    ] {
                        if set {
                            errors.push(ConfigError::new(
                                at(field),
                                "a simulated provider makes no network calls",
                            ));
                        }
                    }
                }
                kind => {
                    for (field, set) in [
                        ("latency", provider.latency.is_some()),
                        ("output_tokens", provider.output_tokens.is_some()),
                    ] {
                        if set {
                            errors.push(ConfigError::new(
                                at(field),
                                format!("only for kind: simulated, not {kind:?}").to_lowercase(),
                            ));
                        }
                    }
                }
            }
        }
    }

    fn check_roles(&self, errors: &mut Vec<ConfigError>) {
        if !self.roles.contains_key(DEFAULT_ROLE) {
            errors.push(ConfigError::new(
                "roles.default",
                "missing: a request without a role uses it, and other roles fall back to it",
            ));
        }
        let fallback = self.roles.get(DEFAULT_ROLE);
        for (name, role) in &self.roles {
            let at = |field: &str| format!("roles.{name}.{field}");
            match role
                .provider
                .as_ref()
                .or_else(|| fallback.and_then(|d| d.provider.as_ref()))
            {
                None => errors.push(ConfigError::new(at("provider"), "missing (and no default)")),
                Some(provider) if !self.providers.contains_key(provider) => {
                    errors.push(ConfigError::new(
                        at("provider"),
                        format!(
                            "unknown provider {provider:?} (providers: {})",
                            self.provider_names()
                        ),
                    ));
                }
                Some(_) => {}
            }
            match role
                .model
                .as_ref()
                .or_else(|| fallback.and_then(|d| d.model.as_ref()))
            {
                None => errors.push(ConfigError::new(at("model"), "missing (and no default)")),
                Some(model) if model.trim().is_empty() => {
                    errors.push(ConfigError::new(at("model"), "must not be empty"));
                }
                Some(_) => {}
            }
            if let Some(t) = role.temperature {
                if !(0.0..=2.0).contains(&t) {
                    errors.push(ConfigError::new(
                        at("temperature"),
                        format!("must be between 0 and 2, got {t}"),
                    ));
                }
            }
            if role.max_tokens == Some(0) {
                errors.push(ConfigError::new(at("max_tokens"), "must be > 0"));
            }
        }
    }

    fn check_pricing(&self, errors: &mut Vec<ConfigError>) {
        let Switch::On(limiting) = &self.rate_limiting else {
            return;
        };
        if !limiting.has_budget() || limiting.unpriced_models == UnpricedModels::Free {
            return;
        }
        for name in self.roles.keys() {
            let Some(role) = self.role(name) else {
                continue;
            };
            if self.pricing.get(&role.model).is_none() {
                errors.push(ConfigError::new(
                    format!("pricing.{}", role.model),
                    format!(
                        "missing: role {name:?} uses this model and rate_limiting has dollar \
                         budgets (or set rate_limiting.unpriced_models: free)"
                    ),
                ));
            }
        }
        errors.dedup();
    }

    fn check_caching(&self, errors: &mut Vec<ConfigError>) {
        let Switch::On(caching) = &self.caching else {
            return;
        };
        if let Err(e) = caching.rules().validate() {
            // The rules name the time to live `default_ttl`; this section calls it `ttl`.
            let path = if e.path() == "default_ttl" {
                "ttl"
            } else {
                e.path()
            };
            errors.push(ConfigError::new(format!("caching.{path}"), e.reason()));
        }
        if caching.max_bytes == 0 {
            errors.push(ConfigError::new("caching.max_bytes", "must be > 0"));
        }
        match caching.store {
            StoreKind::File if caching.path.is_none() => errors.push(ConfigError::new(
                "caching.path",
                "missing: the file store needs a directory",
            )),
            StoreKind::Redis | StoreKind::Tiered if self.redis.is_none() => {
                errors.push(ConfigError::new(
                    "caching.store",
                    "needs the redis section (url, prefix)",
                ));
            }
            _ => {}
        }
        for name in caching.providers.keys() {
            if !self.providers.contains_key(name) {
                errors.push(ConfigError::new(
                    format!("caching.providers.{name}"),
                    format!("unknown provider (providers: {})", self.provider_names()),
                ));
            }
        }
    }

    fn check_rate_limiting(&self, errors: &mut Vec<ConfigError>) {
        let Switch::On(limiting) = &self.rate_limiting else {
            return;
        };
        if limiting.max_keys == 0 {
            errors.push(ConfigError::new("rate_limiting.max_keys", "must be > 0"));
        }
        if limiting.wait == Some(Duration::ZERO) {
            errors.push(ConfigError::new(
                "rate_limiting.wait",
                "must be > 0 (leave it out to refuse at once)",
            ));
        }
        for (name, limits) in &limiting.providers {
            let at = format!("rate_limiting.providers.{name}");
            if !self.providers.contains_key(name) {
                errors.push(ConfigError::new(
                    &at,
                    format!("unknown provider (providers: {})", self.provider_names()),
                ));
            }
            if let Err(mistakes) = limits.quota(&at) {
                errors.extend(mistakes);
            }
        }
        for (name, limits) in &limiting.tenants {
            if let Err(mistakes) = limits.quota(&format!("rate_limiting.tenants.{name}")) {
                errors.extend(mistakes);
            }
        }
    }

    fn provider_names(&self) -> String {
        self.providers
            .keys()
            .cloned()
            .collect::<Vec<_>>()
            .join(", ")
    }
}

fn check_redis(redis: &RedisSection, errors: &mut Vec<ConfigError>) {
    if !["redis://", "rediss://", "unix://", "redis+unix://"]
        .iter()
        .any(|scheme| redis.url.starts_with(scheme))
    {
        errors.push(ConfigError::new(
            "redis.url",
            "expected redis://host:port/db (or rediss://, unix://)",
        ));
    }
    if redis.prefix.is_empty() {
        errors.push(ConfigError::new("redis.prefix", "must not be empty"));
    }
    if !(redis.local_share > 0.0 && redis.local_share <= 1.0) {
        errors.push(ConfigError::new(
            "redis.local_share",
            format!("must be above 0 and at most 1, got {}", redis.local_share),
        ));
    }
    if redis.failure_threshold == 0 {
        errors.push(ConfigError::new("redis.failure_threshold", "must be > 0"));
    }
    if redis.cache_max_value_bytes == 0 {
        errors.push(ConfigError::new(
            "redis.cache_max_value_bytes",
            "must be > 0",
        ));
    }
    for (field, value) in [
        ("probe_interval", redis.probe_interval),
        ("limiter_timeout", redis.limiter_timeout),
        ("cache_timeout", redis.cache_timeout),
    ] {
        if let Err(e) = tollgate_core::non_zero(&format!("redis.{field}"), value) {
            errors.push(e);
        }
    }
    if let Some(lease) = redis.lease {
        if lease.batch == 0 {
            errors.push(ConfigError::new("redis.lease.batch", "must be > 0"));
        }
        if let Err(e) = tollgate_core::non_zero("redis.lease.ttl", lease.ttl) {
            errors.push(e);
        }
    }
}

/// Deserializes each section on its own, recording a mistake (with its path) instead of stopping.
struct Reader<'a> {
    sections: &'a mut Mapping,
    errors: &'a mut Vec<ConfigError>,
    broken: &'a mut BTreeSet<&'static str>,
}

impl Reader<'_> {
    fn optional<T: serde::de::DeserializeOwned>(&mut self, name: &'static str) -> Option<T> {
        let value = self.sections.remove(name)?;
        match typed(value, name) {
            Ok(parsed) => Some(parsed),
            Err(error) => {
                self.errors.push(error);
                self.broken.insert(name);
                None
            }
        }
    }

    /// A section each provider may change, read piece by piece so that every mistake in it has
    /// its own path.
    fn per_provider<T: serde::de::DeserializeOwned + Default>(
        &mut self,
        name: &'static str,
        section_only: &[&str],
    ) -> Switch<PerProvider<T>> {
        let Some(value) = self.sections.remove(name) else {
            return Switch::default();
        };
        let (read, errors) = match serde_json::to_value(value) {
            Ok(serde_json::Value::Object(section)) => {
                let (read, errors) = PerProvider::read(section, name, section_only);
                (read.map(Switch::On), errors)
            }
            Ok(other) => match from_json::<Switch<T>>(other, name) {
                Ok(switch) => (
                    Some(match switch {
                        Switch::On(defaults) => Switch::On(PerProvider {
                            defaults,
                            providers: BTreeMap::new(),
                        }),
                        Switch::Off => Switch::Off,
                    }),
                    Vec::new(),
                ),
                Err(e) => (None, vec![e]),
            },
            Err(e) => (
                None,
                vec![ConfigError::new(name, format!("cannot be read: {e}"))],
            ),
        };
        if !errors.is_empty() {
            self.errors.extend(errors);
            self.broken.insert(name);
        }
        read.unwrap_or_default()
    }

    fn required<T: serde::de::DeserializeOwned + Default>(&mut self, name: &'static str) -> T {
        if !self.sections.contains_key(name) {
            self.errors.push(ConfigError::new(name, "missing"));
            self.broken.insert(name);
        }
        self.optional(name).unwrap_or_default()
    }
}

/// `value` as a `T`, or the mistake with its path under `at`.
///
/// The YAML goes through JSON's data model first: serde_yaml reads an enum only from a YAML tag
/// (`!count 50`), while people (and every layer's documentation) write `{ count: 50 }`.
fn typed<T: serde::de::DeserializeOwned>(value: Value, at: &str) -> Result<T, ConfigError> {
    let json = serde_json::to_value(value)
        .map_err(|e| ConfigError::new(at, format!("cannot be read: {e}")))?;
    from_json(json, at)
}

/// `json` as a `T`, or the mistake with its path under `at`.
fn from_json<T: serde::de::DeserializeOwned>(
    json: serde_json::Value,
    at: &str,
) -> Result<T, ConfigError> {
    serde_path_to_error::deserialize::<_, T>(json).map_err(|e| {
        let path = e.path().to_string();
        let path = if path == "." {
            at.to_owned()
        } else {
            format!("{at}.{path}")
        };
        ConfigError::new(path, e.into_inner().to_string())
    })
}

fn is_env_var_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}
