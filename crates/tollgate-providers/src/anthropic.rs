//! `Anthropic`: the Messages API (`POST /v1/messages`).

use std::{fmt, sync::Arc};

use serde::Deserialize;
use serde_json::{Map, Value};
use tollgate_core::{
    ConfigError, Content, ErrorKind, LlmError, LlmRequest, LlmResponse, Role, Usage,
};

use crate::{
    stream::{ChatStream, Dialect},
    transport::{
        Settings, answered, common_builder_methods, malformed, open_stream, post, provider_service,
        status_error,
    },
};

/// The API version sent as `anthropic-version` unless another is set.
pub const DEFAULT_ANTHROPIC_VERSION: &str = "2023-06-01";

/// `max_tokens` sent for a request that sets none (the Messages API requires one).
pub const DEFAULT_MAX_TOKENS: u32 = 4_096;

/// A client for Anthropic's Messages API, as a `Service<LlmRequest>`.
///
/// The request is mapped from the OpenAI shape: system (and developer) messages become the
/// top-level `system` prompt, tool and function results go as `user` turns, `stop` becomes
/// `stop_sequences`, `max_tokens` (or `max_completion_tokens`, or [`DEFAULT_MAX_TOKENS`]) is always
/// sent, `seed` is dropped (the API has none) and every other `extra` field is passed through
/// (`top_k`, `metadata`, `tools`, ...). The answer's text blocks are joined; `stop_reason`
/// becomes the finish reason (`refusal` is a `ContentFilter` error); usage, headers and the
/// `anthropic-ratelimit-*` snapshot are kept. Failures map like
/// [`OpenAiCompatible`](crate::OpenAiCompatible)'s (529 `overloaded_error` → `Overloaded`).
///
/// ```no_run
/// use tollgate_core::{LlmRequest, Message};
/// use tollgate_providers::Anthropic;
/// use tower::ServiceExt;
///
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let claude = Anthropic::builder(std::env::var("ANTHROPIC_API_KEY")?).build()?;
/// let request = LlmRequest::new(
///     "claude-sonnet-4-5",
///     vec![Message::system("Be brief."), Message::user("Say hi")],
/// );
/// println!("{}", claude.oneshot(request).await?.content());
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Anthropic {
    inner: Arc<Inner>,
}

struct Inner {
    client: reqwest::Client,
    url: String,
    default_max_tokens: u32,
}

impl fmt::Debug for Anthropic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Anthropic")
            .field("url", &self.inner.url)
            .finish_non_exhaustive()
    }
}

impl Anthropic {
    /// A builder for `api.anthropic.com` with `api_key` (sent as `x-api-key`).
    pub fn builder(api_key: impl Into<String>) -> AnthropicBuilder {
        AnthropicBuilder {
            settings: Settings::new("https://api.anthropic.com"),
            api_key: api_key.into(),
            version: DEFAULT_ANTHROPIC_VERSION.to_owned(),
            default_max_tokens: DEFAULT_MAX_TOKENS,
        }
    }
}

impl Anthropic {
    /// Sends `request` with `stream: true` and returns the stream once Anthropic has accepted it.
    ///
    /// # Errors
    ///
    /// The same errors as a call, for everything that happens before the stream starts.
    pub async fn stream(&self, request: LlmRequest) -> Result<ChatStream, LlmError> {
        let mut body = self.inner.body(&request);
        if let Some(fields) = body.as_object_mut() {
            fields.insert("stream".into(), true.into());
        }
        let body = serde_json::to_vec(&body).expect("a JSON value serializes");
        let response = open_stream(&self.inner.client, &self.inner.url, body, NAME).await?;
        Ok(ChatStream::new(response, Dialect::Anthropic, NAME))
    }
}

provider_service!(Anthropic);

const NAME: &str = "anthropic";

impl Inner {
    async fn complete(&self, request: LlmRequest) -> Result<LlmResponse, LlmError> {
        let body = serde_json::to_vec(&self.body(&request)).map_err(|e| {
            LlmError::new(
                ErrorKind::InvalidRequest,
                format!("{NAME}: the request does not serialize: {e}"),
            )
        })?;
        let answer = post(&self.client, &self.url, body, NAME).await?;
        if !answer.status.is_success() {
            return Err(status_error(&answer, NAME));
        }
        let wire: Message = serde_json::from_slice(&answer.body).map_err(|e| malformed(NAME, e))?;
        let text: String = wire
            .content
            .iter()
            .filter(|block| block.kind == "text")
            .filter_map(|block| block.text.as_deref())
            .collect();
        let mut response = LlmResponse::new(
            wire.model.unwrap_or_else(|| request.model.to_string()),
            text,
        )
        .with_usage(Usage::new(
            wire.usage.input_tokens,
            wire.usage.output_tokens,
        ));
        if let Some(reason) = wire.stop_reason.as_deref() {
            response =
                response.with_finish_reason(tollgate_core::FinishReason::from_provider(reason));
        }
        answered(answer, response, NAME)
    }

    /// The Messages API body for `request`.
    fn body(&self, request: &LlmRequest) -> Value {
        let params = &request.params;
        let mut body = Map::new();
        body.insert("model".into(), Value::from(&*request.model));
        let max_tokens = params
            .max_output_tokens()
            .unwrap_or(u64::from(self.default_max_tokens));
        body.insert("max_tokens".into(), Value::from(max_tokens));
        let mut system = Vec::new();
        let mut messages = Vec::new();
        for message in request.messages.iter() {
            match message.role {
                Role::System | Role::Developer => {
                    system.extend(message.content.iter().flat_map(Content::texts));
                }
                role => {
                    let role = if role == Role::Assistant {
                        "assistant"
                    } else {
                        "user"
                    };
                    let content = match &message.content {
                        Some(Content::Text(text)) => Value::from(text.as_str()),
                        Some(Content::Parts(parts)) => Value::from(parts.clone()),
                        None => Value::from(""),
                    };
                    messages.push(serde_json::json!({ "role": role, "content": content }));
                }
            }
        }
        if !system.is_empty() {
            body.insert("system".into(), Value::from(system.join("\n\n")));
        }
        body.insert("messages".into(), Value::from(messages));
        if let Some(temperature) = params.temperature {
            body.insert("temperature".into(), Value::from(temperature));
        }
        if let Some(top_p) = params.top_p {
            body.insert("top_p".into(), Value::from(top_p));
        }
        if !params.stop.is_empty() {
            body.insert("stop_sequences".into(), Value::from(params.stop.clone()));
        }
        for (key, value) in params.extra.iter() {
            // Already mapped, or OpenAI-only and rejected by the Messages API.
            if matches!(
                key.as_str(),
                "max_completion_tokens" | "stream" | "stream_options" | "n" | "seed"
            ) {
                continue;
            }
            body.entry(key.clone()).or_insert_with(|| value.clone());
        }
        Value::Object(body)
    }
}

#[derive(Deserialize)]
struct Message {
    #[serde(default)]
    model: Option<String>,
    #[serde(default)]
    content: Vec<Block>,
    #[serde(default)]
    stop_reason: Option<String>,
    #[serde(default)]
    usage: WireUsage,
}

#[derive(Deserialize)]
struct Block {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    text: Option<String>,
}

#[derive(Deserialize, Default)]
struct WireUsage {
    #[serde(default)]
    input_tokens: u64,
    #[serde(default)]
    output_tokens: u64,
}

/// Builds an [`Anthropic`] client; checks everything in [`build`](Self::build).
#[must_use]
pub struct AnthropicBuilder {
    settings: Settings,
    api_key: String,
    version: String,
    default_max_tokens: u32,
}

impl std::fmt::Debug for AnthropicBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AnthropicBuilder")
            .field("api_key", &"<redacted>")
            .field("version", &self.version)
            .field("default_max_tokens", &self.default_max_tokens)
            .finish_non_exhaustive()
    }
}

impl AnthropicBuilder {
    /// Another server speaking the Messages API (a proxy, a test server), the part before
    /// `/v1/messages` (default `https://api.anthropic.com`).
    pub fn base_url(mut self, base_url: &str) -> Self {
        self.settings.base_url = base_url.trim_end_matches('/').to_owned();
        self
    }

    /// The `anthropic-version` header (default [`DEFAULT_ANTHROPIC_VERSION`]).
    pub fn version(mut self, version: impl Into<String>) -> Self {
        self.version = version.into();
        self
    }

    /// `max_tokens` for requests that set none (default [`DEFAULT_MAX_TOKENS`]).
    pub fn default_max_tokens(mut self, tokens: u32) -> Self {
        self.default_max_tokens = tokens;
        self
    }

    common_builder_methods!();

    /// The client.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] for an empty key, a zero `default_max_tokens` or timeout, a base URL that
    /// is not `http(s)://`, or a header that is not valid HTTP.
    pub fn build(mut self) -> Result<Anthropic, ConfigError> {
        if self.api_key.trim().is_empty() {
            return Err(ConfigError::new("api_key", "must not be empty"));
        }
        if self.default_max_tokens == 0 {
            return Err(ConfigError::new("default_max_tokens", "must be at least 1"));
        }
        self.settings
            .header("x-api-key", &self.api_key, "api_key")?;
        self.settings
            .header("anthropic-version", &self.version, "version")?;
        let url = format!("{}/v1/messages", self.settings.base_url);
        let client = self.settings.client()?;
        Ok(Anthropic {
            inner: Arc::new(Inner {
                client,
                url,
                default_max_tokens: self.default_max_tokens,
            }),
        })
    }
}
