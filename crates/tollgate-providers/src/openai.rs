//! `OpenAiCompatible`: the chat-completions API of OpenAI and of every server that speaks it
//! (vLLM, Ollama, llama.cpp, LiteLLM, Azure-style gateways).

use std::{fmt, future::Future, pin::Pin, sync::Arc};

use tollgate_core::{ConfigError, ErrorKind, LlmError, LlmRequest, LlmResponse, MaxTokensName};

use tollgate_wire::openai::{chat, embeddings};

use crate::{
    stream::ChatStream,
    transport::{
        Call, Http, Settings, answered, common_builder_methods, malformed, open_stream, post,
        provider_service, status_error,
    },
};

/// The future of a provider call.
pub type CallFuture = Pin<Box<dyn Future<Output = Result<LlmResponse, LlmError>> + Send>>;

/// A client for `POST {base_url}/chat/completions`, as a `Service<LlmRequest>`.
///
/// The request goes out in the OpenAI shape [`LlmRequest`] serializes to (its `extra` fields
/// included, `stream` removed). The answer becomes the [`LlmResponse`] whole: every choice with its
/// tool calls, refusal, reasoning and log-probabilities, the usage with its cached and reasoning
/// tokens, every field tollgate does not model as it came, the provider's headers, and a
/// [`RateLimitSnapshot`](crate::RateLimitSnapshot) extension when the provider sent rate-limit
/// headers. Failures map to
/// [`ErrorKind`]s by status (429 → `RateLimited`, 503 / 529 → `Overloaded`, other 5xx → `Server`,
/// 401 / 403 → `Auth`, other 4xx → `InvalidRequest`), with the provider's message and its
/// `Retry-After`; a `content_filter` finish is a `ContentFilter` error; an unreachable server is
/// `Connect` and one that does not answer in time is `Timeout`.
///
/// A request whose `meta.operation` is [`Embeddings`](tollgate_core::Operation::Embeddings) goes
/// to `POST {base_url}/embeddings` instead, with its model and its `extra` fields (`input`,
/// `dimensions`, ...); the answer has no choices, its `data` and other fields in `extra`, and its
/// `prompt_tokens` as `usage.input_tokens`.
///
/// ```no_run
/// use tollgate_core::{LlmRequest, Message};
/// use tollgate_providers::OpenAiCompatible;
/// use tower::ServiceExt;
///
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// // OpenAI itself; for Ollama: OpenAiCompatible::builder("http://localhost:11434/v1").
/// let openai = OpenAiCompatible::builder("https://api.openai.com/v1")
///     .api_key(std::env::var("OPENAI_API_KEY")?)
///     .build()?;
/// let answer = openai
///     .oneshot(LlmRequest::new("gpt-4o-mini", vec![Message::user("Say hi")]))
///     .await?;
/// println!("{} ({} tokens)", answer.content(), answer.usage.total());
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct OpenAiCompatible {
    inner: Arc<Inner>,
}

struct Inner {
    http: Http,
    url: String,
    embeddings_url: String,
    name: String,
    /// The name an output bound goes under when the caller gave none (a layer set it).
    max_tokens_name: MaxTokensName,
}

impl fmt::Debug for OpenAiCompatible {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OpenAiCompatible")
            .field("url", &self.inner.url)
            .field("name", &self.inner.name)
            .finish_non_exhaustive()
    }
}

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
            max_tokens_name: None,
        }
    }

    /// A builder for an Azure OpenAI deployment: calls go to
    /// `{endpoint}/openai/deployments/{deployment}/chat/completions?api-version={api_version}`
    /// and the [`api_key`](OpenAiCompatibleBuilder::api_key) is sent as `api-key`, as Azure
    /// expects (<https://learn.microsoft.com/azure/ai-foundry/openai/reference>).
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
                deployment: deployment.to_owned(),
                api_version: api_version.to_owned(),
            }),
            ..Self::builder(endpoint)
        }
    }
}

impl OpenAiCompatible {
    /// Sends `request` with `stream: true` and `stream_options.include_usage` (added to the
    /// caller's stream options) and returns the stream once the provider has accepted it.
    ///
    /// # Errors
    ///
    /// The same errors as a call, for everything that happens before the stream starts.
    pub async fn stream(&self, request: LlmRequest) -> Result<ChatStream, LlmError> {
        let inner = &self.inner;
        let body = chat::encode_request(&request, inner.max_tokens_name, true).map_err(|e| {
            LlmError::new(
                ErrorKind::InvalidRequest,
                format!("{}: the request does not serialize: {e}", inner.name),
            )
        })?;
        let call = Call {
            url: &inner.url,
            body,
            headers: request.extensions.get(),
            provider: &inner.name,
            sign: None,
        };
        let (response, first_byte) = open_stream(&inner.http, call).await?;
        Ok(ChatStream::new(
            response,
            chat::Chunks::default(),
            false,
            &inner.name,
            inner.http.limits,
            first_byte,
        ))
    }
}

provider_service!(OpenAiCompatible);

impl Inner {
    async fn complete(&self, request: LlmRequest) -> Result<LlmResponse, LlmError> {
        let name = &self.name;
        let body = chat::encode_request(&request, self.max_tokens_name, false).map_err(|e| {
            LlmError::new(
                ErrorKind::InvalidRequest,
                format!("{name}: the request does not serialize: {e}"),
            )
        })?;
        let call = Call {
            url: &self.url,
            body,
            headers: request.extensions.get(),
            provider: name,
            sign: None,
        };
        let answer = post(&self.http, call).await?;
        if !answer.status.is_success() {
            return Err(status_error(&answer, name));
        }
        let response =
            chat::decode_answer(&answer.body, &request.model).map_err(|e| malformed(name, e))?;
        answered(answer, response, name)
    }

    /// `POST /embeddings` with the model and the request's `extra` fields (`input`,
    /// `dimensions`, ...): the answer's vectors and other fields in `extra`, its tokens as input.
    async fn embed(&self, request: LlmRequest) -> Result<LlmResponse, LlmError> {
        let name = &self.name;
        let call = Call {
            url: &self.embeddings_url,
            body: embeddings::encode_request(&request),
            headers: request.extensions.get(),
            provider: name,
            sign: None,
        };
        let answer = post(&self.http, call).await?;
        if !answer.status.is_success() {
            return Err(status_error(&answer, name));
        }
        let response = embeddings::decode_answer(&answer.body, &request.model)
            .map_err(|e| malformed(name, e))?;
        answered(answer, response, name)
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
    max_tokens_name: Option<MaxTokensName>,
}

/// Where an Azure OpenAI deployment lives under its endpoint.
#[derive(Debug)]
struct Azure {
    deployment: String,
    api_version: String,
}

impl Azure {
    /// The deployment's URL for `operation` (`chat/completions`, `embeddings`) under `endpoint`,
    /// or which field is unusable.
    fn url(&self, endpoint: &str, operation: &str) -> Result<String, ConfigError> {
        let plain = |value: &str| {
            !value.is_empty()
                && value
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        };
        if !plain(&self.deployment) {
            return Err(ConfigError::new(
                "deployment",
                "must be a non-empty name of letters, digits, '-', '_' or '.'",
            ));
        }
        if !plain(&self.api_version) {
            return Err(ConfigError::new(
                "api_version",
                "must be a version such as 2024-10-21",
            ));
        }
        Ok(format!(
            "{endpoint}/openai/deployments/{}/{operation}?api-version={}",
            self.deployment, self.api_version
        ))
    }
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
    /// Default: `max_completion_tokens` for `https://api.openai.com`, `max_tokens` for any other
    /// server. A bound the caller sent goes under the name it came under.
    pub fn max_tokens_name(mut self, name: MaxTokensName) -> Self {
        self.max_tokens_name = Some(name);
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
        match (&self.api_key, &self.azure) {
            (Some(key), None) => {
                self.settings
                    .header("authorization", &format!("Bearer {key}"), "api_key")?;
            }
            (Some(key), Some(_)) => self.settings.header("api-key", key, "api_key")?,
            (None, _) => {}
        }
        if let Some(organization) = &self.organization {
            self.settings
                .header("openai-organization", organization, "organization")?;
        }
        if let Some(project) = &self.project {
            self.settings.header("openai-project", project, "project")?;
        }
        let url_of = |operation: &str| match &self.azure {
            Some(azure) => azure.url(&self.settings.base_url, operation),
            None => Ok(format!("{}/{operation}", self.settings.base_url)),
        };
        let url = url_of("chat/completions")?;
        let embeddings_url = url_of("embeddings")?;
        let max_tokens_name = self.max_tokens_name.unwrap_or(
            if self.settings.base_url.starts_with("https://api.openai.com") {
                MaxTokensName::MaxCompletionTokens
            } else {
                MaxTokensName::MaxTokens
            },
        );
        let http = self.settings.http()?;
        Ok(OpenAiCompatible {
            inner: Arc::new(Inner {
                http,
                url,
                embeddings_url,
                name: self.name,
                max_tokens_name,
            }),
        })
    }
}
