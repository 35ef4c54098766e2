//! The gateway's configuration: the stack's sections (read by [`tollgate::Config`]), and the
//! gateway's own: `keys`, `gateway`, `database`, `logs`, `idempotency` and `passthrough`.

use std::{collections::BTreeMap, net::SocketAddr, path::Path, time::Duration};

use serde::Deserialize;
use tollgate::{Config, ConfigDocument, ConfigError, ConfigErrors, Limits, Switch};

use crate::keys::{KeyTable, VirtualKey, parse_hash};

/// A whole gateway configuration: one YAML file.
///
/// ```
/// use tollgate_gateway::GatewayConfig;
///
/// let config = GatewayConfig::from_yaml(&format!(r#"
/// providers:
///   local: {{ kind: simulated }}
/// roles:
///   default: {{ provider: local, model: sim-small }}
/// keys:
///   acme-backend:
///     hash: "{}"
///     tenant: acme
///     limits: {{ per_minute: 600, cost_per_day: "20" }}
/// gateway:
///   listen: 127.0.0.1:8080
/// "#, tollgate_gateway::hash_key("tg-example"))).unwrap();
/// assert_eq!(config.gateway.listen.port(), 8080);
/// assert_eq!(config.keys["acme-backend"].tenant, "acme");
///
/// // Every mistake at once, each with its path: the stack's and the gateway's.
/// let err = GatewayConfig::from_yaml(r#"
/// providers: { local: { kind: simulated } }
/// roles: { default: { provider: local, model: m, temperature: 9 } }
/// keys: { k: { hash: "md5:00", tenant: "" } }
/// "#).unwrap_err();
/// assert_eq!(err.paths(), ["roles.default.temperature", "keys.k.hash", "keys.k.tenant"]);
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct GatewayConfig {
    /// The stack: providers, roles, pricing, caching, rate limits, retry, breaker, health, Redis.
    pub stack: Config,
    /// The virtual keys callers present, by name.
    pub keys: BTreeMap<String, KeyConfig>,
    /// How the server listens and what it accepts.
    pub gateway: ServerConfig,
    /// The control plane's database (`database: { url: "sqlite://tollgate.db" }`, or
    /// `{ url_env: DATABASE_URL }` for PostgreSQL): keys and teams kept as records beside the
    /// file's, and the spend ledger. Absent, keys are the file's and spend is kept in memory.
    pub database: Option<tollgate_control::DatabaseConfig>,
    /// The call log (`logs: { sinks: [...] }`): one record per call, written to a JSON-lines
    /// file, the database's `tg_calls` table, or OTLP logs. Absent, no record is kept. Read once,
    /// at start.
    pub logs: Option<crate::logs::LogsConfig>,
    /// How answers to calls with an `Idempotency-Key` are kept for their retries (`idempotency:
    /// { ttl: 24h }`); on by default, `false` turns it off.
    pub idempotency: Switch<crate::idempotency::IdempotencyConfig>,
    /// Where the rest of `/v1/` (files, batches, images, audio, moderations) is passed through
    /// to, and the tenants let in (`passthrough: { provider: openai, tenants: ["*"] }`); absent,
    /// those routes are 404s.
    pub passthrough: Option<crate::clients::PassthroughConfig>,
}

/// One virtual key. The key itself is never written here, only its hash.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct KeyConfig {
    /// `sha256:` and 64 hex digits, as `tollgate keys hash` prints.
    pub hash: String,
    /// The tenant its calls are made for: its cost report line, its `rate_limiting.tenants`
    /// quota, its cache scope.
    pub tenant: String,
    /// The roles it may name as `model`; absent, every role.
    #[serde(default)]
    pub roles: Option<Vec<String>>,
    /// The `provider/model` names it may use directly (`provider/*` for any model of the
    /// provider); absent, none.
    #[serde(default)]
    pub models: Vec<String>,
    /// Its own limits and budgets, besides its tenant's (the key's name is its principal).
    #[serde(default)]
    pub limits: Option<Limits>,
    /// Anything the operator wants to keep with the key (owner, ticket); not used.
    #[serde(default)]
    pub metadata: BTreeMap<String, serde_json::Value>,
    /// Never accepted: read so that a key pasted into the file is refused by name without its
    /// value being kept or shown.
    #[serde(default, rename = "key")]
    pasted_key: Option<serde::de::IgnoredAny>,
}

/// How the server listens and what it accepts (the `gateway` section).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct ServerConfig {
    /// The address to listen on (default `127.0.0.1:4000`); `--listen` replaces it.
    pub listen: SocketAddr,
    /// The largest request body, in bytes (default 4 MiB); a larger one is a 413.
    pub max_body_bytes: usize,
    /// Time a client has to send a request's headers (default 10 s).
    #[serde(with = "tollgate_core::duration")]
    pub header_timeout: Duration,
    /// Time a client has to send a request's body once its headers are in (default 30 s).
    #[serde(with = "tollgate_core::duration")]
    pub body_timeout: Duration,
    /// On SIGTERM, how long calls in flight (streams included) may take to finish (default 30 s).
    #[serde(with = "tollgate_core::duration")]
    pub drain_timeout: Duration,
    /// The largest `max_tokens` (or `max_completion_tokens`) a request may ask for (default
    /// 262,144).
    pub max_output_tokens: u64,
    /// The most answers one request may ask for, as `n` or `best_of` (default 128, OpenAI's own
    /// bound).
    pub max_choices: u32,
    /// Bound on a whole call, every attempt and move included, and a stream to its end (default
    /// 10 min). A role's `timeout`, and a caller's `x-tollgate-timeout` or `x-stainless-timeout`
    /// header (seconds), may shorten it, never lengthen it.
    #[serde(with = "tollgate_core::duration")]
    pub request_timeout: Duration,
    /// The hash (`tollgate keys hash`) of the key that opens the live page `/ui`; without one
    /// the page is refused.
    pub admin_key_hash: Option<String>,
    /// The hash of the key `/metrics` and the detailed `/health` then require (as a bearer
    /// token or `x-api-key`); without one they are open. `/health/live` and `/health/ready`
    /// stay open for orchestrators either way.
    pub metrics_key_hash: Option<String>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 4000)),
            max_body_bytes: 4 << 20,
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(30),
            drain_timeout: Duration::from_secs(30),
            max_output_tokens: 262_144,
            max_choices: 128,
            request_timeout: Duration::from_secs(600),
            admin_key_hash: None,
            metrics_key_hash: None,
        }
    }
}

impl GatewayConfig {
    /// Reads and checks the YAML file at `path`, with the stack's environment overrides
    /// ([`Config::with_env`]).
    ///
    /// # Errors
    ///
    /// Every mistake found, each with its path.
    pub fn load(path: impl AsRef<Path>) -> Result<Self, ConfigErrors> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|e| {
            ConfigError::new(path.display().to_string(), format!("cannot read: {e}"))
        })?;
        Self::read(&text, true)
    }

    /// Reads and checks a YAML document (without environment overrides).
    ///
    /// # Errors
    ///
    /// Every mistake found, each with its path.
    pub fn from_yaml(text: &str) -> Result<Self, ConfigErrors> {
        Self::read(text, false)
    }

    fn read(text: &str, env: bool) -> Result<Self, ConfigErrors> {
        let mut document = ConfigDocument::parse(text)?;
        let mut own_errors = Vec::new();
        let keys: BTreeMap<String, KeyConfig> = document.take_section("keys").unwrap_or_else(|e| {
            own_errors.push(e);
            BTreeMap::new()
        });
        let gateway: ServerConfig = document.take_section("gateway").unwrap_or_else(|e| {
            own_errors.push(e);
            ServerConfig::default()
        });
        let database: Option<tollgate_control::DatabaseConfig> =
            document.take_section("database").unwrap_or_else(|e| {
                own_errors.push(e);
                None
            });
        if let Some(database) = &database {
            own_errors.extend(database.check());
        }
        let logs: Option<crate::logs::LogsConfig> =
            document.take_section("logs").unwrap_or_else(|e| {
                own_errors.push(e);
                None
            });
        if let Some(logs) = &logs {
            own_errors.extend(logs.check());
        }
        let idempotency: Switch<crate::idempotency::IdempotencyConfig> =
            document.take_section("idempotency").unwrap_or_else(|e| {
                own_errors.push(e);
                Switch::Off
            });
        let passthrough: Option<crate::clients::PassthroughConfig> =
            document.take_section("passthrough").unwrap_or_else(|e| {
                own_errors.push(e);
                None
            });
        // What keys may name, as written: checked even when those sections have mistakes.
        let known = Known {
            providers: document.names("providers"),
            roles: document.names("roles"),
        };
        let stack = document
            .into_config()
            .and_then(|c| if env { c.with_env() } else { Ok(c) });
        let mut errors = Vec::new();
        let stack = stack
            .map_err(|e| errors.extend(e.errors().iter().cloned()))
            .ok();
        errors.extend(own_errors);
        errors.extend(check_keys(
            &keys,
            &known,
            stack.as_ref(),
            database.is_some(),
        ));
        errors.extend(check_server(&gateway));
        errors.extend(crate::idempotency::check(
            &idempotency,
            stack.as_ref().map(|stack| stack.redis.is_some()),
        ));
        errors.extend(check_degrades(stack.as_ref(), &keys, &known));
        if let (Some(section), Some(stack)) = (&passthrough, stack.as_ref()) {
            errors.extend(section.check(stack));
        }
        match stack {
            Some(stack) if errors.is_empty() => Ok(Self {
                stack,
                keys,
                gateway,
                database,
                logs,
                idempotency,
                passthrough,
            }),
            _ => Err(errors.into_iter().collect()),
        }
    }

    /// The stack's configuration with each key's own limits added under
    /// `rate_limiting.principals`, keyed by the key's name, and the `tenant` and `principal`
    /// scopes kept open for the limits of the records' teams and keys (but on a Redis Cluster
    /// without `redis.hash_tag_scope`, where a call may be limited in one scope only).
    pub fn stack_config(&self) -> Config {
        let mut stack = self.stack.clone();
        let own: Vec<(&String, &Limits)> = self
            .keys
            .iter()
            .filter_map(|(name, key)| Some((name, key.limits.as_ref()?)))
            .collect();
        if !matches!(stack.rate_limiting, Switch::On(_)) {
            stack.rate_limiting = Switch::On(Default::default());
        }
        if let Switch::On(limiting) = &mut stack.rate_limiting {
            for (name, limits) in own {
                limiting.principals.insert(name.clone(), limits.clone());
            }
            // On a Redis Cluster a call's keys must share a slot: without a hash-tag scope
            // the limiter takes one scope at most, and the records' limits cannot be kept.
            let untagged = |redis: Option<&tollgate::RedisConfig>| {
                redis.is_some_and(|r| r.cluster.is_some() && r.hash_tag_scope.is_none())
            };
            if !untagged(self.stack.redis.as_ref()) && !untagged(limiting.redis.as_ref()) {
                *limiting = std::mem::take(limiting)
                    .open_scope(tollgate::ratelimit::TENANT_SCOPE)
                    .open_scope(tollgate::ratelimit::PRINCIPAL_SCOPE);
            }
        }
        stack
    }

    /// The keys, by digest.
    pub(crate) fn key_table(&self) -> KeyTable {
        let mut table = KeyTable::default();
        for (name, key) in &self.keys {
            let digest = parse_hash(&key.hash).expect("checked when read");
            let tenant = table.tenant(&key.tenant);
            table.insert(
                digest,
                VirtualKey {
                    name: name.as_str().into(),
                    label: None,
                    tenant,
                    roles: key.roles.clone(),
                    models: key.models.clone(),
                    admin: false,
                    used: std::sync::atomic::AtomicU64::new(0),
                    until: 0,
                },
            );
        }
        table
    }
}

/// The providers and roles the configuration names.
struct Known {
    providers: Vec<String>,
    roles: Vec<String>,
}

fn check_keys(
    keys: &BTreeMap<String, KeyConfig>,
    known: &Known,
    stack: Option<&Config>,
    database: bool,
) -> Vec<ConfigError> {
    let mut errors = Vec::new();
    // With a database, keys may all be records, made over /admin/ or the CLI.
    if keys.is_empty() && !database {
        errors.push(ConfigError::new(
            "keys",
            "add at least one key: every call must present one (`tollgate keys hash` makes it), or a `database` section to keep them in",
        ));
    }
    let mut seen: BTreeMap<[u8; 32], &str> = BTreeMap::new();
    for (name, key) in keys {
        let at = |field: &str| format!("keys.{name}.{field}");
        if key.pasted_key.is_some() {
            errors.push(ConfigError::new(
                at("key"),
                "never write a key here: put its hash in `hash` (`tollgate keys hash` prints it)",
            ));
        }
        match parse_hash(&key.hash) {
            Ok(digest) => {
                if let Some(other) = seen.insert(digest, name) {
                    errors.push(ConfigError::new(
                        at("hash"),
                        format!("the same key as `keys.{other}`"),
                    ));
                }
            }
            Err(reason) => errors.push(ConfigError::new(at("hash"), reason)),
        }
        if key.tenant.trim().is_empty() {
            errors.push(ConfigError::new(at("tenant"), "must not be empty"));
        }
        if let Some(limits) = &key.limits
            && let Err(mistakes) = limits.quota(&at("limits"))
        {
            errors.extend(mistakes);
        }
        for (i, role) in key.roles.iter().flatten().enumerate() {
            if !known.roles.contains(role) {
                errors.push(ConfigError::new(
                    format!("{}[{i}]", at("roles")),
                    format!("no role `{role}` in `roles`"),
                ));
            }
        }
        for (i, model) in key.models.iter().enumerate() {
            let reason = match model.split_once('/') {
                Some((provider, model)) if !provider.is_empty() && !model.is_empty() => {
                    (!known.providers.iter().any(|p| p == provider))
                        .then(|| format!("no provider `{provider}` in `providers`"))
                }
                _ => Some("expected `provider/model` or `provider/*`".to_owned()),
            };
            if let Some(reason) = reason {
                errors.push(ConfigError::new(format!("{}[{i}]", at("models")), reason));
            }
        }
        if let Some(Switch::On(limiting)) = stack.map(|s| &s.rate_limiting)
            && key.limits.is_some()
            && limiting.principals.contains_key(name)
        {
            errors.push(ConfigError::new(
                at("limits"),
                format!("`rate_limiting.principals.{name}` limits this key too: keep one"),
            ));
        }
    }
    errors
}

/// Every budget's `degrade.to` must name a role: the budgets of `rate_limiting`'s tenants,
/// principals and roles, and of the keys' own limits.
fn check_degrades(
    stack: Option<&Config>,
    keys: &BTreeMap<String, KeyConfig>,
    known: &Known,
) -> Vec<ConfigError> {
    let mut places: Vec<(String, &Limits)> = keys
        .iter()
        .filter_map(|(name, key)| Some((format!("keys.{name}.limits"), key.limits.as_ref()?)))
        .collect();
    if let Some(Switch::On(limiting)) = stack.map(|s| &s.rate_limiting) {
        for (section, entries) in [
            ("tenants", &limiting.tenants),
            ("principals", &limiting.principals),
            ("roles", &limiting.roles),
        ] {
            places.extend(
                entries
                    .iter()
                    .map(|(name, limits)| (format!("rate_limiting.{section}.{name}"), limits)),
            );
        }
    }
    let mut errors = Vec::new();
    for (at, limits) in places {
        for (i, budget) in limits.budgets.iter().enumerate() {
            if let Some(degrade) = &budget.degrade
                && !known.roles.contains(&degrade.to)
            {
                errors.push(ConfigError::new(
                    format!("{at}.budgets[{i}].degrade.to"),
                    format!("no role `{}` in `roles`", degrade.to),
                ));
            }
        }
    }
    errors
}

fn check_server(server: &ServerConfig) -> Vec<ConfigError> {
    let zero = |field: &str, is_zero: bool| {
        is_zero.then(|| ConfigError::new(format!("gateway.{field}"), "must be > 0"))
    };
    let hash = |field: &str, value: Option<&str>| {
        value.and_then(|hash| {
            crate::keys::parse_hash(hash)
                .err()
                .map(|reason| ConfigError::new(format!("gateway.{field}"), reason))
        })
    };
    [
        zero("max_body_bytes", server.max_body_bytes == 0),
        zero("header_timeout", server.header_timeout.is_zero()),
        zero("body_timeout", server.body_timeout.is_zero()),
        zero("max_output_tokens", server.max_output_tokens == 0),
        zero("max_choices", server.max_choices == 0),
        zero("request_timeout", server.request_timeout.is_zero()),
        hash("admin_key_hash", server.admin_key_hash.as_deref()),
        hash("metrics_key_hash", server.metrics_key_hash.as_deref()),
    ]
    .into_iter()
    .flatten()
    .collect()
}
