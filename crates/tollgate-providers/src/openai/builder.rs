//! [`OpenAiCompatibleBuilder`]: every setting of an OpenAI-compatible client, checked in `build`.

use std::sync::Arc;

use tollgate_core::{ConfigError, MaxTokensName, Preset, Quirks};

use super::{Azure, AzureRoutes, Inner, OpenAiCompatible};
use crate::transport::{Settings, common_builder_methods};

impl OpenAiCompatible {
    /// A builder for the server at `base_url`, the part before `/chat/completions`
    /// (`https://api.openai.com/v1`, `http://localhost:11434/v1`, `http://vllm:8000/v1`).
    pub fn builder(base_url: &str) -> OpenAiCompatibleBuilder {
        OpenAiCompatibleBuilder {
            settings: Settings::new(base_url),
            api_key: None,
            organization: None,
            project: None,
            name: "openai".to_owned(),
            azure: None,
            quirks: Quirks::OPENAI,
            refuses: &[],
            entra_token: None,
            misplaced: None,
            max_tokens_name: None,
            responses_api: None,
        }
    }

    /// A builder for an Azure OpenAI deployment: calls go to
    /// `{endpoint}/openai/deployments/{deployment}/chat/completions?api-version={api_version}`
    /// and the [`api_key`](OpenAiCompatibleBuilder::api_key) is sent as `api-key`, as Azure
    /// expects (<https://learn.microsoft.com/azure/ai-foundry/openai/reference>).
    ///
    /// Every call goes to this deployment whatever model it names (but those
    /// [`deployment_for`](OpenAiCompatibleBuilder::deployment_for) lists). A stack prices a call
    /// by its model: send this client only the deployment's model, or use
    /// [`azure_by_model`](Self::azure_by_model), as the configuration's `kind: azure` does.
    ///
    /// ```
    /// use tollgate_providers::OpenAiCompatible;
    ///
    /// let azure = OpenAiCompatible::azure("https://my-resource.openai.azure.com", "gpt-4o-prod", "2024-10-21")
    ///     .api_key("azure-key")
    ///     .build()
    ///     .unwrap();
    /// assert!(format!("{azure:?}").contains("/openai/deployments/gpt-4o-prod/chat/completions?api-version=2024-10-21"));
    /// ```
    pub fn azure(endpoint: &str, deployment: &str, api_version: &str) -> OpenAiCompatibleBuilder {
        OpenAiCompatibleBuilder {
            name: "azure".to_owned(),
            azure: Some(Azure {
                deployment: Some(deployment.to_owned()),
                by_model: Vec::new(),
                api_version: api_version.to_owned(),
            }),
            ..Self::builder(endpoint)
        }
    }

    /// A builder for a known OpenAI-compatible service: its base URL, its name, and what it
    /// takes differently from OpenAI ([`Preset`]'s table).
    ///
    /// ```
    /// use tollgate_core::Preset;
    /// use tollgate_providers::OpenAiCompatible;
    ///
    /// let groq = OpenAiCompatible::preset(Preset::Groq).api_key("gsk-key").build().unwrap();
    /// assert!(format!("{groq:?}").contains("https://api.groq.com/openai/v1/chat/completions"));
    /// ```
    pub fn preset(preset: Preset) -> OpenAiCompatibleBuilder {
        Self::builder(preset.base_url())
            .name(preset.name())
            .quirks_of(preset)
    }

    /// A builder for an Azure OpenAI resource whose deployments are found by each call's model:
    /// the one [`deployment_for`](OpenAiCompatibleBuilder::deployment_for) names, else the
    /// deployment named like the model (Azure's own default when a model is deployed).
    ///
    /// ```
    /// use tollgate_providers::OpenAiCompatible;
    ///
    /// let azure = OpenAiCompatible::azure_by_model("https://my-resource.openai.azure.com", "2024-10-21")
    ///     .deployment_for("gpt-4o", "gpt-4o-prod")
    ///     .entra_token("eyJ0eXAi...")
    ///     .build()
    ///     .unwrap();
    /// ```
    pub fn azure_by_model(endpoint: &str, api_version: &str) -> OpenAiCompatibleBuilder {
        OpenAiCompatibleBuilder {
            name: "azure".to_owned(),
            azure: Some(Azure {
                deployment: None,
                by_model: Vec::new(),
                api_version: api_version.to_owned(),
            }),
            ..Self::builder(endpoint)
        }
    }
}

/// Builds an [`OpenAiCompatible`] client; checks everything in [`build`](Self::build).
#[must_use]
pub struct OpenAiCompatibleBuilder {
    settings: Settings,
    api_key: Option<String>,
    organization: Option<String>,
    project: Option<String>,
    name: String,
    azure: Option<Azure>,
    quirks: Quirks,
    refuses: &'static [&'static str],
    entra_token: Option<String>,
    /// An Azure-only setting given to a client that is not Azure's.
    misplaced: Option<&'static str>,
    max_tokens_name: Option<MaxTokensName>,
    responses_api: Option<bool>,
}

impl std::fmt::Debug for OpenAiCompatibleBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenAiCompatibleBuilder")
            .field("name", &self.name)
            .field("api_key", &self.api_key.as_ref().map(|_| "<redacted>"))
            .field("organization", &self.organization)
            .field("project", &self.project)
            .field("azure", &self.azure)
            .finish_non_exhaustive()
    }
}

impl OpenAiCompatibleBuilder {
    /// Sent as `Authorization: Bearer <key>` (as `api-key` for [`azure`](OpenAiCompatible::azure));
    /// local servers often need none.
    pub fn api_key(mut self, key: impl Into<String>) -> Self {
        self.api_key = Some(key.into());
        self
    }

    /// Azure only: the deployment that serves `model`'s calls (repeat for more models); a
    /// model not listed goes to the client's deployment, or for
    /// [`azure_by_model`](OpenAiCompatible::azure_by_model) to the one named like it.
    pub fn deployment_for(
        mut self,
        model: impl Into<String>,
        deployment: impl Into<String>,
    ) -> Self {
        if let Some(azure) = &mut self.azure {
            azure.by_model.push((model.into(), deployment.into()));
        } else {
            self.misplaced = Some("deployment_for");
        }
        self
    }

    /// Azure only: a Microsoft Entra ID access token, sent as `Authorization: Bearer` instead of
    /// an `api-key` (for a resource that refuses keys).
    pub fn entra_token(mut self, token: impl Into<String>) -> Self {
        if self.azure.is_some() {
            self.entra_token = Some(token.into());
        } else {
            self.misplaced = Some("entra_token");
        }
        self
    }

    /// Writes requests as `preset`'s service takes them, and refuses what it would answer with
    /// a 400 ([`Preset`]'s table), at whatever base URL the builder was given.
    pub fn quirks_of(mut self, preset: Preset) -> Self {
        self.quirks = preset.quirks();
        self.refuses = preset.refuses();
        self
    }

    /// Sent as `OpenAI-Organization`.
    pub fn organization(mut self, organization: impl Into<String>) -> Self {
        self.organization = Some(organization.into());
        self
    }

    /// Sent as `OpenAI-Project`.
    pub fn project(mut self, project: impl Into<String>) -> Self {
        self.project = Some(project.into());
        self
    }

    common_builder_methods!();

    /// The field an output bound is sent as when the caller gave none, because a layer set it
    /// (a rate limiter's reserved bound, a role's default): `max_tokens`, which most compatible
    /// servers take, or `max_completion_tokens`, the only one OpenAI's reasoning models take.
    /// Default: `max_completion_tokens` for `https://api.openai.com` and Azure, `max_tokens` for any other
    /// server. A bound the caller sent goes under the name it came under.
    pub fn max_tokens_name(mut self, name: MaxTokensName) -> Self {
        self.max_tokens_name = Some(name);
        self
    }

    /// Whether the server serves OpenAI's Responses API (`POST {base_url}/responses`): a call
    /// that came in that API then passes through to it as it came; otherwise it is translated
    /// through chat completions. Default: on for OpenAI's own API (`https://api.openai.com`), off
    /// for every other server, preset and Azure. Not for Azure: its Responses API lives
    /// elsewhere.
    ///
    /// ```
    /// use tollgate_providers::OpenAiCompatible;
    ///
    /// // vLLM serves /v1/responses too.
    /// let vllm = OpenAiCompatible::builder("http://vllm:8000/v1").responses_api(true).build().unwrap();
    /// assert!(format!("{vllm:?}").contains("responses_api: true"));
    /// let openai = OpenAiCompatible::builder("https://api.openai.com/v1").build().unwrap();
    /// assert!(format!("{openai:?}").contains("responses_api: true"));
    /// let ollama = OpenAiCompatible::builder("http://localhost:11434/v1").build().unwrap();
    /// assert!(format!("{ollama:?}").contains("responses_api: false"));
    /// ```
    pub fn responses_api(mut self, serves: bool) -> Self {
        self.responses_api = Some(serves);
        self
    }

    /// The name errors use for this provider (default `openai`), e.g. `ollama`.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// The client.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] for a base URL that is not `http(s)://`, a zero timeout, a header that
    /// is not valid HTTP, or an Azure deployment or API version that does not fit in a URL.
    pub fn build(mut self) -> Result<OpenAiCompatible, ConfigError> {
        if let Some(setting) = self.misplaced {
            return Err(ConfigError::new(
                setting,
                "only for an Azure client (OpenAiCompatible::azure)",
            ));
        }
        match (&self.api_key, &self.azure, &self.entra_token) {
            (Some(_), Some(_), Some(_)) => {
                return Err(ConfigError::new(
                    "entra_token",
                    "give an API key or an Entra token, not both",
                ));
            }
            (None, Some(_), Some(token)) => {
                self.settings
                    .header("authorization", &format!("Bearer {token}"), "entra_token")?;
            }
            (Some(key), None, _) => {
                self.settings
                    .header("authorization", &format!("Bearer {key}"), "api_key")?;
            }
            (Some(key), Some(_), None) => self.settings.header("api-key", key, "api_key")?,
            (None, _, _) => {}
        }
        if let Some(organization) = &self.organization {
            self.settings
                .header("openai-organization", organization, "organization")?;
        }
        if let Some(project) = &self.project {
            self.settings.header("openai-project", project, "project")?;
        }
        let endpoint = &self.settings.base_url;
        let url_of = |operation: &str| match &self.azure {
            Some(Azure {
                deployment: Some(deployment),
                ..
            }) => self
                .azure
                .as_ref()
                .expect("azure")
                .url(endpoint, deployment, operation),
            // Every call's deployment is its model's: no URL of the client's own.
            Some(_) => Ok(format!(
                "{endpoint}/openai/deployments/{{model}}/{operation}"
            )),
            None => Ok(format!("{endpoint}/{operation}")),
        };
        let url = url_of("chat/completions")?;
        let embeddings_url = url_of("embeddings")?;
        let azure = match &self.azure {
            Some(azure) => {
                let mut by_model = Vec::new();
                for (model, deployment) in &azure.by_model {
                    let at = |e: ConfigError| {
                        ConfigError::new(format!("deployments.{model}"), e.reason())
                    };
                    by_model.push((
                        model.clone(),
                        azure
                            .url(endpoint, deployment, "chat/completions")
                            .map_err(at)?,
                        azure.url(endpoint, deployment, "embeddings").map_err(at)?,
                    ));
                }
                if azure.api_version.is_empty() || azure.url(endpoint, "x", "x").is_err() {
                    return Err(ConfigError::new(
                        "api_version",
                        "must be a version such as 2024-10-21",
                    ));
                }
                Some(AzureRoutes {
                    endpoint: endpoint.clone(),
                    api_version: azure.api_version.clone(),
                    by_model,
                    has_default: azure.deployment.is_some(),
                })
            }
            None => None,
        };
        // OpenAI's reasoning models, on its own API and on Azure, refuse `max_tokens`.
        let max_tokens_name = self.max_tokens_name.unwrap_or(
            if self.azure.is_some() || self.settings.base_url.starts_with("https://api.openai.com")
            {
                MaxTokensName::MaxCompletionTokens
            } else {
                MaxTokensName::MaxTokens
            },
        );
        let responses_api = match (self.responses_api, &self.azure) {
            (Some(true), Some(_)) => {
                return Err(ConfigError::new(
                    "responses_api",
                    "not for an Azure client: its Responses API is not under the deployment's URL",
                ));
            }
            (Some(serves), _) => serves,
            (None, azure) => {
                azure.is_none() && self.settings.base_url.starts_with("https://api.openai.com")
            }
        };
        let responses_url = format!("{}/responses", self.settings.base_url);
        let raw_base = self.azure.is_none().then(|| endpoint.clone());
        let http = self
            .settings
            .http()?
            .knowing([&*url, &*embeddings_url, &*responses_url]);
        Ok(OpenAiCompatible {
            inner: Arc::new(Inner {
                http,
                raw_base,
                url,
                embeddings_url,
                responses_url,
                responses_api,
                azure,
                quirks: self.quirks,
                refuses: self.refuses,
                name: self.name,
                max_tokens_name,
            }),
        })
    }
}
