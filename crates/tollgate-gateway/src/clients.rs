//! The upstream clients the gateway's own routes use beside the stack: the `passthrough`
//! section's provider, and each Anthropic provider for `/v1/messages/count_tokens`. Built with
//! each configuration, so that a reload swaps them with it.

use std::{collections::HashMap, sync::Arc};

use serde::Deserialize;
use tollgate::{Config, ConfigError, ConfigErrors, ProviderKind, providers, providers::Anthropic};

/// The `passthrough` section: the provider the rest of `/v1/` goes to.
///
/// ```yaml
/// passthrough:
///   provider: openai   # a provider of `kind: openai` (OpenAI, or a server that serves these routes)
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct PassthroughConfig {
    /// The provider's name in `providers`; it must be of `kind: openai`.
    pub provider: String,
}

impl PassthroughConfig {
    /// The provider must exist and speak OpenAI's API under a base URL of its own.
    pub(crate) fn check(&self, stack: &Config) -> Vec<ConfigError> {
        let at = "passthrough.provider";
        match stack.providers.get(&self.provider) {
            None => vec![ConfigError::new(
                at,
                format!("no provider `{}` in `providers`", self.provider),
            )],
            Some(provider) if provider.kind != ProviderKind::Openai => vec![ConfigError::new(
                at,
                format!(
                    "`{}` is not of `kind: openai`: only an OpenAI-compatible provider serves files, batches, images, audio and moderations (Azure's URLs are per deployment)",
                    self.provider
                ),
            )],
            Some(_) => Vec::new(),
        }
    }
}

/// The pass-through's provider and its client, built with each configuration.
pub(crate) struct Passthrough {
    pub(crate) provider: Arc<str>,
    pub(crate) client: providers::OpenAiCompatible,
}

impl Passthrough {
    /// The client for the section's provider: its base URL, key, headers and timeouts.
    pub(crate) fn build(config: &crate::GatewayConfig) -> Result<Option<Self>, ConfigErrors> {
        let Some(section) = &config.passthrough else {
            return Ok(None);
        };
        let name = &section.provider;
        let provider = &config.stack.providers[name];
        let at = |field: &str| format!("providers.{name}.{field}");
        let base = provider
            .base_url
            .as_deref()
            .or(provider.preset.map(|preset| preset.base_url()))
            .unwrap_or("https://api.openai.com/v1");
        let mut builder = providers::OpenAiCompatible::builder(base).name(name.as_str());
        if let Some(var) = &provider.api_key_env {
            let key = std::env::var(var)
                .ok()
                .filter(|key| !key.trim().is_empty())
                .ok_or_else(|| {
                    ConfigError::new(
                        at("api_key_env"),
                        format!("the environment variable {var} is not set"),
                    )
                })?;
            builder = builder.api_key(key);
        }
        if let Some(timeout) = provider.timeout {
            builder = builder.timeout(timeout);
        }
        if let Some(timeout) = provider.connect_timeout {
            builder = builder.connect_timeout(timeout);
        }
        for (header, value) in &provider.headers {
            builder = builder.header(header, value);
        }
        let client = builder
            .build()
            .map_err(|e| e.under(&format!("providers.{name}")))?;
        Ok(Some(Self {
            provider: name.as_str().into(),
            client,
        }))
    }
}

/// A client per `kind: anthropic` provider, for its counts.
pub(crate) type Counters = HashMap<String, Anthropic>;

/// The clients for every Anthropic provider of `config`.
pub(crate) fn counters(config: &crate::GatewayConfig) -> Result<Counters, ConfigErrors> {
    let mut clients = Counters::new();
    for (name, provider) in &config.stack.providers {
        if provider.kind != ProviderKind::Anthropic {
            continue;
        }
        let Some(key) = provider
            .api_key_env
            .as_ref()
            .and_then(|var| std::env::var(var).ok())
        else {
            // The stack refuses it already, by name.
            continue;
        };
        let mut builder = Anthropic::builder(key);
        if let Some(url) = &provider.base_url {
            builder = builder.base_url(url);
        }
        for (header, value) in &provider.headers {
            builder = builder.header(header, value);
        }
        let client = builder
            .build()
            .map_err(|e: ConfigError| e.under(&format!("providers.{name}")))?;
        clients.insert(name.clone(), client);
    }
    Ok(clients)
}
