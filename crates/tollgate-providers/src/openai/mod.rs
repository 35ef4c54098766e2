//! `OpenAiCompatible`: the chat-completions API of OpenAI and of every server that speaks it
//! (vLLM, Ollama, llama.cpp, LiteLLM, Azure-style gateways).

use std::{borrow::Cow, fmt, future::Future, pin::Pin, sync::Arc};

use tollgate_core::{
    ConfigError, ErrorKind, LlmError, LlmRequest, LlmResponse, MaxTokensName, Operation, Quirks,
};

use tollgate_wire::openai::{chat, embeddings};

mod builder;
mod completions;
mod raw;
mod responses;

pub use builder::OpenAiCompatibleBuilder;

use crate::{
    stream::ChatStream,
    transport::{
        Answer, Call, Http, answered, malformed, open_stream, post, provider_service, status_error,
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
/// A call that came in OpenAI's Responses API (it carries a
/// [`ResponsesBody`](tollgate_wire::openai::responses::ResponsesBody)) goes to
/// `POST {base_url}/responses` as it came when the server serves that API
/// ([`responses_api`](OpenAiCompatibleBuilder::responses_api)): the answer is read for the stack
/// and kept as it came for the caller, and a stream's events pass through verbatim. Otherwise it
/// is translated through chat completions, and refused by name when it offers a built-in tool
/// (`web_search_preview`, `file_search`, ...) only OpenAI's Responses API runs.
///
/// A request whose `meta.operation` is [`Embeddings`](tollgate_core::Operation::Embeddings) goes
/// to `POST {base_url}/embeddings` instead, with its model and its `extra` fields (`input`,
/// `dimensions`, ...); the answer has no choices, its `data` and other fields in `extra`, and its
/// `prompt_tokens` as `usage.input_tokens`.
///
/// A request whose `meta.operation` is [`Completions`](tollgate_core::Operation::Completions)
/// (legacy text completions, which vLLM and Ollama serve) goes to `POST {base_url}/completions`
/// (an Azure deployment's `completions`), whole or streamed
/// ([`stream_completion`](Self::stream_completion)); see
/// [`tollgate_wire::openai::completions`] for the body and the answer. A call that came in that
/// API is sent its caller's body as it came but for the model, the bound and `stream`, and its
/// answer goes back as it came.
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
    /// The base URL raw calls ([`OpenAiCompatible::forward`]) go under; `None` for Azure.
    raw_base: Option<String>,
    url: String,
    embeddings_url: String,
    /// `{base_url}/responses`, for calls that came in the Responses API when `responses_api`.
    responses_url: String,
    /// Whether the server serves OpenAI's Responses API: calls that came in it pass through.
    responses_api: bool,
    /// An Azure resource's deployments by model, and the endpoint for those it does not list.
    azure: Option<AzureRoutes>,
    /// How the server differs from OpenAI in what it takes.
    quirks: Quirks,
    /// Request fields the server answers with a 400, refused by name before anything is sent.
    refuses: &'static [&'static str],
    name: String,
    /// The name an output bound goes under when the caller gave none (a layer set it).
    max_tokens_name: MaxTokensName,
}

impl fmt::Debug for OpenAiCompatible {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OpenAiCompatible")
            .field("url", &self.inner.url)
            .field("name", &self.inner.name)
            .field("responses_api", &self.inner.responses_api)
            .finish_non_exhaustive()
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
        if inner.serves_responses(&request) {
            return self.respond_streamed(request).await;
        }
        inner.check(&request)?;
        let body = chat::encode_request_with(&request, inner.max_tokens_name, true, &inner.quirks)
            .map_err(|e| {
                LlmError::new(
                    ErrorKind::InvalidRequest,
                    format!("{}: the request does not serialize: {e}", inner.name),
                )
            })?;
        let url = inner.url_for(&request.model, Operation::Chat)?;
        let call = Call {
            url: &url,
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

provider_service!(OpenAiCompatible, completions);

impl Inner {
    /// Where a call to `model` goes: the client's URL, or for an Azure resource the deployment
    /// that serves the model.
    fn url_for(&self, model: &str, operation: Operation) -> Result<Cow<'_, str>, LlmError> {
        let fixed = match operation {
            Operation::Embeddings => &self.embeddings_url,
            _ => &self.url,
        };
        let Some(routes) = &self.azure else {
            return Ok(Cow::Borrowed(fixed));
        };
        if let Some((_, chat, embeddings)) = routes.by_model.iter().find(|(m, ..)| m == model) {
            return Ok(Cow::Borrowed(match operation {
                Operation::Embeddings => embeddings,
                _ => chat,
            }));
        }
        if routes.has_default {
            return Ok(Cow::Borrowed(fixed));
        }
        // The deployment named like the model.
        let azure = Azure {
            deployment: Some(model.to_owned()),
            by_model: Vec::new(),
            api_version: routes.api_version.clone(),
        };
        let path = match operation {
            Operation::Embeddings => "embeddings",
            _ => "chat/completions",
        };
        azure
            .url(&routes.endpoint, model, path)
            .map(Cow::Owned)
            .map_err(|_| {
                LlmError::new(
                    ErrorKind::InvalidRequest,
                    format!(
                        "{}: the model is not a deployment name (letters, digits, '-', '_' or '.'), and no deployment is set for it",
                        self.name
                    ),
                )
            })
    }

    /// Refuses, by name, what the server would answer with a 400.
    fn check(&self, request: &LlmRequest) -> Result<(), LlmError> {
        crate::translated::refuse_untranslatable(&self.name, request)?;
        let params = &request.params;
        let sent = |field: &str| match field {
            "n" => params.n.is_some_and(|n| n > 1),
            "top_logprobs" => params.top_logprobs.is_some(),
            other => params
                .extra
                .get(other)
                .is_some_and(|value| !value.is_null() && *value != serde_json::Value::Bool(false)),
        };
        match self.refuses.iter().find(|field| sent(field)) {
            Some(field) => Err(LlmError::new(
                ErrorKind::InvalidRequest,
                format!(
                    "{}: this server does not take `{field}`{}",
                    self.name,
                    if *field == "n" { " above 1" } else { "" }
                ),
            )),
            None => Ok(()),
        }
    }

    async fn complete(&self, request: LlmRequest) -> Result<LlmResponse, LlmError> {
        if self.serves_responses(&request) {
            return self.respond(request).await;
        }
        let name = &self.name;
        self.check(&request)?;
        let body = chat::encode_request_with(&request, self.max_tokens_name, false, &self.quirks)
            .map_err(|e| {
            LlmError::new(
                ErrorKind::InvalidRequest,
                format!("{name}: the request does not serialize: {e}"),
            )
        })?;
        let url = self.url_for(&request.model, Operation::Chat)?;
        let answer = self.post_whole(&url, body, &request).await?;
        let response = chat::decode_kept_answer(&answer.body, &request.model)
            .map_err(|e| malformed(name, e))?;
        answered(answer, response, name)
    }

    /// POSTs `body` to `url` for `request` (with the request's own headers) and reads the whole
    /// answer: what every whole call to the server shares; a non-success answer is its error.
    async fn post_whole(
        &self,
        url: &str,
        body: Vec<u8>,
        request: &LlmRequest,
    ) -> Result<Answer, LlmError> {
        let call = Call {
            url,
            body,
            headers: request.extensions.get(),
            provider: &self.name,
            sign: None,
        };
        let answer = post(&self.http, call).await?;
        if !answer.status.is_success() {
            return Err(status_error(&answer, &self.name));
        }
        Ok(answer)
    }

    /// `POST /embeddings` with the model and the request's `extra` fields (`input`,
    /// `dimensions`, ...): the answer's vectors and other fields in `extra`, its tokens as input.
    async fn embed(&self, request: LlmRequest) -> Result<LlmResponse, LlmError> {
        let name = &self.name;
        let url = self.url_for(&request.model, Operation::Embeddings)?;
        let answer = self
            .post_whole(&url, embeddings::encode_request(&request), &request)
            .await?;
        let response = embeddings::decode_answer(&answer.body, &request.model)
            .map_err(|e| malformed(name, e))?;
        answered(answer, response, name)
    }
}

/// Where an Azure OpenAI resource's deployments live under its endpoint.
#[derive(Debug)]
struct Azure {
    /// Every call's deployment, unless its model has one of its own; none: the model's name.
    deployment: Option<String>,
    /// Deployments by model.
    by_model: Vec<(String, String)>,
    api_version: String,
}

/// An Azure resource's URLs: each listed model's (chat, embeddings), and what the rest need.
#[derive(Debug)]
struct AzureRoutes {
    endpoint: String,
    api_version: String,
    by_model: Vec<(String, String, String)>,
    /// Whether the client's own URLs are a default deployment's (else: the model's name).
    has_default: bool,
}

impl Azure {
    /// `deployment`'s URL for `operation` (`chat/completions`, `embeddings`) under `endpoint`,
    /// or which field is unusable.
    fn url(
        &self,
        endpoint: &str,
        deployment: &str,
        operation: &str,
    ) -> Result<String, ConfigError> {
        let plain = |value: &str| {
            !value.is_empty()
                && value
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        };
        if !plain(deployment) {
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
            "{endpoint}/openai/deployments/{deployment}/{operation}?api-version={}",
            self.api_version
        ))
    }
}
