//! The upstream clients the gateway's own routes use beside the stack: the `passthrough`
//! section's provider, and each Anthropic provider for `/v1/messages/count_tokens`. Built with
//! each configuration, so that a reload swaps them with it.

use std::{collections::HashMap, sync::Arc};

use serde::Deserialize;
use tollgate::{Config, ConfigError, ConfigErrors, ProviderKind, providers, providers::Anthropic};

/// The `passthrough` section: the provider the rest of `/v1/` goes to, and the tenants whose
/// keys may use it.
///
/// The provider's files and batches are one account's: every tenant let in sees and may change
/// all of them, whoever made them, and a batch runs at the provider's prices, unpriced here. So
/// the tenants are named, never implied.
///
/// ```yaml
/// passthrough:
///   provider: openai      # a provider of `kind: openai` (OpenAI, or a server that serves these routes)
///   tenants: [research]   # the tenants whose keys may use it; ["*"] for every tenant
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct PassthroughConfig {
    /// The provider's name in `providers`; it must be of `kind: openai`.
    pub provider: String,
    /// The tenants whose keys may use these routes, or `["*"]` for every tenant. Another
    /// tenant's key gets a 403.
    pub tenants: Vec<String>,
}

impl PassthroughConfig {
    /// Whether `tenant`'s keys may use the routes.
    pub(crate) fn lets_in(&self, tenant: &str) -> bool {
        self.tenants
            .iter()
            .any(|let_in| let_in == "*" || let_in == tenant)
    }

    /// The provider must exist and speak OpenAI's API under a base URL of its own; the tenants
    /// must be named.
    pub(crate) fn check(&self, stack: &Config) -> Vec<ConfigError> {
        if self.tenants.is_empty() {
            return vec![ConfigError::new(
                "passthrough.tenants",
                "must name at least one tenant, or be [\"*\"] for every tenant",
            )];
        }
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
    pub(crate) section: PassthroughConfig,
    /// The headers the provider's configuration sets: the gateway's, which a caller's may not
    /// replace.
    pub(crate) own_headers: Vec<http::HeaderName>,
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
        let own_headers = provider
            .headers
            .keys()
            .filter_map(|header| http::HeaderName::try_from(header.as_str()).ok())
            .collect();
        Ok(Some(Self {
            provider: name.as_str().into(),
            client,
            section: section.clone(),
            own_headers,
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
