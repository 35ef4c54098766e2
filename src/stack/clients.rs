//! The clients: one per provider, and one per target with a key or base URL of its own, each
//! the one its section describes unless the builder was given a service for it.

use std::{collections::HashMap, sync::Arc};

use tollgate_core::{ConfigError, SimulatedProvider};
use tower::util::BoxCloneSyncService;

use super::BoxedProvider;
use crate::{Config, ProviderConfig, ProviderKind, ResolvedTarget};

/// Wraps a provider's client, given the provider's name ([`StackBuilder::wrap_clients`]).
///
/// [`StackBuilder::wrap_clients`]: super::StackBuilder::wrap_clients
pub(super) type WrapClient = dyn Fn(&str, BoxedProvider) -> BoxedProvider;

/// What the builder's caller plugs in: where API keys are read, what wraps each client, what
/// hears of each billed call, and where on the calendar the limiter's clock starts.
pub(super) struct Hooks<'a> {
    pub(super) env: &'a dyn Fn(&str) -> Option<String>,
    pub(super) wrap: Option<&'a WrapClient>,
    pub(super) on_billed: Option<crate::OnBilled>,
    pub(super) wall_time: Option<std::time::SystemTime>,
    pub(super) records: super::Records,
}

/// Each client by its name, with the provider whose settings it takes (its own name, or for a
/// target's own client, its provider's); every mistake found in `errors`.
pub(super) fn clients(
    config: &Config,
    mut given: HashMap<String, BoxedProvider>,
    hooks: &Hooks<'_>,
    errors: &mut Vec<ConfigError>,
) -> HashMap<Arc<str>, (String, BoxedProvider)> {
    let own = own_clients(config);
    for name in given.keys() {
        let targets = own.iter().any(|(_, target)| *target.client == **name);
        if !config.providers.contains_key(name) && !targets {
            errors.push(ConfigError::new(
                format!("providers.{name}"),
                "a service was given for a provider the configuration does not have",
            ));
        }
    }
    let wrapped = |name: &str, client: BoxedProvider| match hooks.wrap {
        Some(wrap) => wrap(name, client),
        None => client,
    };
    let mut clients = HashMap::new();
    for (name, provider) in &config.providers {
        let client = match given.remove(name) {
            Some(client) => Ok(client),
            None => client(name, provider, hooks.env),
        };
        match client {
            Ok(client) => {
                let client = wrapped(name, client);
                clients.insert(Arc::<str>::from(name.as_str()), (name.clone(), client));
            }
            Err(e) => errors.push(e),
        }
    }
    // Targets with a key or base URL of their own get a client of their own, from their
    // provider's section with those replaced.
    for (at, target) in &own {
        let mut section = config.providers[&*target.provider].clone();
        if let Some(var) = &target.api_key_env {
            section.api_key_env = Some(var.clone());
        }
        if let Some(url) = &target.base_url {
            section.base_url = Some(url.clone());
        }
        let client = match given.remove(&*target.client) {
            Some(client) => Ok(client),
            None => client(&target.client, &section, hooks.env),
        };
        match client {
            Ok(client) => {
                let client = wrapped(&target.client, client);
                clients.insert(target.client.clone(), (target.provider.to_string(), client));
            }
            // Named where the target is, not under `providers`.
            Err(e) => {
                let field = e.path().rsplit('.').next().unwrap_or_default();
                errors.push(ConfigError::new(format!("{at}.{field}"), e.reason()));
            }
        }
    }
    clients
}

/// The targets with a client of their own (a key or base URL), each once, with its path.
pub(super) fn own_clients(config: &Config) -> Vec<(String, ResolvedTarget)> {
    let mut seen = std::collections::BTreeSet::new();
    let mut found = Vec::new();
    for name in config.roles.keys() {
        let Some(role) = config.role(name) else {
            continue;
        };
        for (i, target) in role.targets.into_iter().enumerate() {
            if target.client != target.provider && seen.insert(target.client.clone()) {
                found.push((format!("roles.{name}.targets.{i}"), target));
            }
        }
    }
    found
}

/// The client a provider's section describes.
fn client(
    name: &str,
    provider: &ProviderConfig,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<BoxedProvider, ConfigError> {
    let at = |field: &str| format!("providers.{name}.{field}");
    if provider.kind == ProviderKind::Simulated {
        let mut simulated = SimulatedProvider::builder();
        if let Some(latency) = provider.latency {
            simulated = simulated.latency(latency);
        }
        if let Some(tokens) = provider.output_tokens {
            simulated = simulated.output_tokens(tokens);
        }
        return Ok(BoxCloneSyncService::new(simulated.build()));
    }
    let read = |field: &str, var: &Option<String>| match var {
        Some(var) => match env(var).filter(|secret| !secret.trim().is_empty()) {
            Some(secret) => Ok(Some(secret)),
            None => Err(ConfigError::new(
                at(field),
                format!("the environment variable {var} is not set"),
            )),
        },
        None => Ok(None),
    };
    let key = read("api_key_env", &provider.api_key_env)?;
    let token = read("entra_token_env", &provider.entra_token_env)?;
    network_client(name, provider, key, token)
}

#[cfg(feature = "providers")]
fn network_client(
    name: &str,
    provider: &ProviderConfig,
    key: Option<String>,
    token: Option<String>,
) -> Result<BoxedProvider, ConfigError> {
    use tollgate_providers::{Anthropic, Bedrock, Gemini, OpenAiCompatible, Vertex};

    let under = |e: ConfigError| e.under(&format!("providers.{name}"));
    macro_rules! common {
        ($builder:expr) => {{
            let mut builder = $builder;
            if let Some(timeout) = provider.timeout {
                builder = builder.timeout(timeout);
            }
            if let Some(timeout) = provider.connect_timeout {
                builder = builder.connect_timeout(timeout);
            }
            if let Some(timeout) = provider.first_byte_timeout {
                builder = builder.first_byte_timeout(timeout);
            }
            if let Some(timeout) = provider.stream_idle_timeout {
                builder = builder.stream_idle_timeout(timeout);
            }
            if let Some(bytes) = provider.max_response_bytes {
                builder = builder.max_response_bytes(bytes);
            }
            if let Some(bytes) = provider.max_event_bytes {
                builder = builder.max_event_bytes(bytes);
            }
            for (header, value) in &provider.headers {
                builder = builder.header(header, value);
            }
            builder
        }};
    }
    match provider.kind {
        ProviderKind::Openai => {
            let url = provider
                .base_url
                .as_deref()
                .unwrap_or(match provider.preset {
                    Some(preset) => preset.base_url(),
                    None => "https://api.openai.com/v1",
                });
            let mut builder = common!(OpenAiCompatible::builder(url).name(name));
            if let Some(preset) = provider.preset {
                builder = builder.quirks_of(preset);
            }
            if let Some(key) = key {
                builder = builder.api_key(key);
            }
            if let Some(field) = provider.max_tokens_name {
                builder = builder.max_tokens_name(field);
            }
            if let Some(serves) = provider.responses_api {
                builder = builder.responses_api(serves);
            }
            builder.build().map(BoxCloneSyncService::new).map_err(under)
        }
        ProviderKind::Anthropic => {
            let Some(key) = key else {
                return Err(ConfigError::new(
                    format!("providers.{name}.api_key_env"),
                    "missing: Anthropic needs an API key (e.g. api_key_env: ANTHROPIC_API_KEY)",
                ));
            };
            let mut builder = common!(Anthropic::builder(key));
            if let Some(url) = &provider.base_url {
                builder = builder.base_url(url);
            }
            builder.build().map(BoxCloneSyncService::new).map_err(under)
        }
        ProviderKind::Azure => {
            let endpoint = provider.base_url.as_deref().unwrap_or_default();
            let version = provider.api_version.as_deref().unwrap_or(AZURE_API_VERSION);
            let builder = OpenAiCompatible::azure_by_model(endpoint, version);
            let mut builder = common!(builder.name(name));
            for (model, deployment) in &provider.deployments {
                builder = builder.deployment_for(model, deployment);
            }
            if let Some(key) = key {
                builder = builder.api_key(key);
            }
            if let Some(token) = token {
                builder = builder.entra_token(token);
            }
            if let Some(field) = provider.max_tokens_name {
                builder = builder.max_tokens_name(field);
            }
            builder.build().map(BoxCloneSyncService::new).map_err(under)
        }
        ProviderKind::Gemini => {
            let Some(key) = key else {
                return Err(ConfigError::new(
                    format!("providers.{name}.api_key_env"),
                    "missing: the Gemini API needs a key (api_key_env: GEMINI_API_KEY)",
                ));
            };
            let mut builder = common!(Gemini::builder(key).name(name));
            if let Some(url) = &provider.base_url {
                builder = builder.base_url(url);
            }
            builder.build().map(BoxCloneSyncService::new).map_err(under)
        }
        ProviderKind::Vertex => {
            let project = provider.project.as_deref().unwrap_or_default();
            let location = provider.location.as_deref().unwrap_or_default();
            let mut builder = common!(Vertex::builder(project, location).name(name));
            if let Some(url) = &provider.base_url {
                builder = builder.base_url(url);
            }
            if let Some(file) = &provider.credentials_file {
                builder = builder.credentials_file(file);
            }
            builder.build().map(BoxCloneSyncService::new).map_err(under)
        }
        ProviderKind::Bedrock => {
            let region = provider.region.as_deref().unwrap_or_default();
            let mut builder = common!(Bedrock::builder(region));
            if let Some(url) = &provider.base_url {
                builder = builder.base_url(url);
            }
            if let Some(key) = key {
                builder = builder.api_key(key);
            }
            if let Some(profile) = &provider.profile {
                builder = builder.profile(profile);
            }
            builder.build().map(BoxCloneSyncService::new).map_err(under)
        }
        ProviderKind::Simulated => unreachable!("handled by the caller"),
    }
}

/// The Azure OpenAI API version a provider without `api_version` calls: the latest GA one.
#[cfg(feature = "providers")]
const AZURE_API_VERSION: &str = "2024-10-21";

#[cfg(not(feature = "providers"))]
fn network_client(
    name: &str,
    _: &ProviderConfig,
    _: Option<String>,
    _: Option<String>,
) -> Result<BoxedProvider, ConfigError> {
    Err(ConfigError::new(
        format!("providers.{name}.kind"),
        "this build has no provider clients: enable tollgate's `providers` feature (or give the \
         stack a service for it with StackBuilder::provider)",
    ))
}
