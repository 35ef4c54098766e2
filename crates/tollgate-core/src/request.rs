//! What a caller asks a model ([`LlmRequest`]), and what tollgate needs to know about the caller
//! ([`RequestMeta`]).
//!
//! The prompt half of a request (`model`, `messages`, `params`) serializes to and from the OpenAI
//! chat-completions request shape. The caller half (`provider`, `meta`, `extensions`) never goes on
//! the wire: it is for the layers (limit by tenant, route by role, skip the cache).

use std::{fmt, sync::Arc, time::Duration};

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;

pub use crate::json::JsonMap;
use crate::params::Params;

/// One LLM call: model, conversation, sampling parameters and caller metadata.
///
/// Cloning is cheap: the messages and the `extra` parameters are shared behind `Arc`s (`extra` only
/// once it has anything in it), so a retry that clones the request copies pointers, not the
/// prompt.
///
/// ```
/// use tollgate_core::{LlmRequest, Message};
///
/// let req = LlmRequest::new("gpt-4o-mini", vec![
///     Message::system("Answer in one word."),
///     Message::user("Capital of France?"),
/// ])
/// .with_tenant("acme")
/// .with_max_tokens(16)
/// .with_temperature(0.0);
///
/// assert_eq!(req.meta.tenant.as_deref(), Some("acme"));
/// assert_eq!(req.params.max_tokens, Some(16));
/// ```
#[derive(Debug, Clone, Default)]
pub struct LlmRequest {
    /// Model name as the provider knows it, e.g. `gpt-4o-mini` or `claude-sonnet-4-5`.
    pub model: Arc<str>,
    /// Which configured provider should serve the request, when the caller wants to choose.
    pub provider: Option<Arc<str>>,
    /// The conversation, oldest first.
    pub messages: Arc<[Message]>,
    /// Sampling and output parameters.
    pub params: Params,
    /// Facts about the caller rather than the prompt: tenant, role, cache control, priority, id.
    pub meta: RequestMeta,
    /// Anything else a caller or layer wants to carry along with the request.
    pub extensions: http::Extensions,
}

impl LlmRequest {
    /// How many answers the provider generates, and bills: the parameters'
    /// [`choices`](Params::choices), and for legacy text completions that many for each prompt
    /// (each prompt is one of the request's messages).
    ///
    /// ```
    /// use tollgate_core::{LlmRequest, Message, Operation};
    ///
    /// let mut request = LlmRequest::new("m", vec![Message::user("a"), Message::user("b")]);
    /// request.params.n = Some(3);
    /// assert_eq!(request.answers(), 3);
    /// request.meta.operation = Operation::Completions;
    /// assert_eq!(request.answers(), 6);
    /// ```
    pub fn answers(&self) -> u64 {
        let each = u64::from(self.params.choices());
        match self.meta.operation {
            Operation::Completions => each.saturating_mul(self.messages.len().max(1) as u64),
            _ => each,
        }
    }

    /// A request for `model` with the given conversation and default parameters.
    pub fn new(model: impl Into<Arc<str>>, messages: impl Into<Arc<[Message]>>) -> Self {
        Self {
            model: model.into(),
            messages: messages.into(),
            ..Self::default()
        }
    }

    /// Asks for the answer as a stream of events; see [`crate::stream`].
    #[must_use]
    pub fn streaming(mut self) -> Self {
        self.meta.stream = true;
        self
    }

    /// Sets the provider that should serve this request.
    #[must_use]
    pub fn with_provider(mut self, provider: impl Into<Arc<str>>) -> Self {
        self.provider = Some(provider.into());
        self
    }

    /// Sets the tenant the request is made for (used for quotas and cache isolation).
    #[must_use]
    pub fn with_tenant(mut self, tenant: impl Into<Arc<str>>) -> Self {
        self.meta.tenant = Some(tenant.into());
        self
    }

    /// Sets the role (an application-level purpose such as `summarizer`) used for routing.
    #[must_use]
    pub fn with_role(mut self, role: impl Into<Arc<str>>) -> Self {
        self.meta.role = Some(role.into());
        self
    }

    /// Sets the request id, carried for tracing; it never affects caching or limits.
    #[must_use]
    pub fn with_request_id(mut self, id: impl Into<Arc<str>>) -> Self {
        self.meta.request_id = Some(id.into());
        self
    }

    /// Sets `max_tokens`.
    #[must_use]
    pub fn with_max_tokens(mut self, max_tokens: u32) -> Self {
        self.params.max_tokens = Some(max_tokens);
        self
    }

    /// Sets `temperature`.
    #[must_use]
    pub fn with_temperature(mut self, temperature: f64) -> Self {
        self.params.temperature = Some(temperature);
        self
    }

    /// Sets `seed`.
    #[must_use]
    pub fn with_seed(mut self, seed: i64) -> Self {
        self.params.seed = Some(seed);
        self
    }

    /// Sets the per-request cache control.
    #[must_use]
    pub fn with_cache_control(mut self, cache: CacheControl) -> Self {
        self.meta.cache = cache;
        self
    }
}

impl PartialEq for LlmRequest {
    /// Two requests are equal when everything but their extensions is equal
    /// (extensions hold arbitrary types that cannot be compared).
    fn eq(&self, other: &Self) -> bool {
        self.model == other.model
            && self.provider == other.provider
            && self.messages == other.messages
            && self.params == other.params
            && self.meta == other.meta
    }
}

#[derive(Serialize)]
struct WireRef<'a> {
    model: &'a str,
    messages: &'a [Message],
    #[serde(flatten)]
    params: &'a Params,
}

#[derive(Deserialize)]
struct Wire {
    model: Arc<str>,
    messages: Vec<Message>,
    #[serde(flatten)]
    params: Params,
}

impl Serialize for LlmRequest {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        WireRef {
            model: &self.model,
            messages: &self.messages,
            params: &self.params,
        }
        .serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for LlmRequest {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let wire = Wire::deserialize(deserializer)?;
        Ok(Self {
            model: wire.model,
            messages: wire.messages.into(),
            params: wire.params,
            ..Self::default()
        })
    }
}

/// Who wrote a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Instructions from the application.
    System,
    /// OpenAI's newer name for system instructions on reasoning models.
    Developer,
    /// The end user.
    User,
    /// The model.
    Assistant,
    /// The result of a tool call.
    Tool,
    /// The legacy OpenAI function-call result.
    Function,
}

impl Role {
    /// The role's wire name.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::System => "system",
            Self::Developer => "developer",
            Self::User => "user",
            Self::Assistant => "assistant",
            Self::Tool => "tool",
            Self::Function => "function",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A message body: plain text, or OpenAI content parts (text, images, audio).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Content {
    /// Plain text.
    Text(String),
    /// Content parts as the provider defines them, kept verbatim.
    Parts(Vec<Value>),
}

impl Content {
    /// The text pieces of the content: the text itself, or the `text` field of each text part.
    pub fn texts(&self) -> impl Iterator<Item = &str> {
        let (single, parts) = match self {
            Self::Text(text) => (Some(text.as_str()), &[][..]),
            Self::Parts(parts) => (None, parts.as_slice()),
        };
        single.into_iter().chain(
            parts
                .iter()
                .filter_map(|part| part.get("text").and_then(Value::as_str)),
        )
    }
}

impl From<String> for Content {
    fn from(text: String) -> Self {
        Self::Text(text)
    }
}

impl From<&str> for Content {
    fn from(text: &str) -> Self {
        Self::Text(text.to_owned())
    }
}

/// One turn of the conversation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Message {
    /// Who wrote it.
    pub role: Role,
    /// What it says; `None` for an assistant turn that only calls tools.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content: Option<Content>,
    /// Other message fields (`name`, `tool_calls`, `tool_call_id`, ...), kept verbatim and in order.
    #[serde(flatten)]
    pub extra: JsonMap,
}

impl Message {
    /// A message with the given role and text.
    pub fn new(role: Role, text: impl Into<Content>) -> Self {
        Self {
            role,
            content: Some(text.into()),
            extra: JsonMap::new(),
        }
    }

    /// A system message.
    pub fn system(text: impl Into<Content>) -> Self {
        Self::new(Role::System, text)
    }

    /// A user message.
    pub fn user(text: impl Into<Content>) -> Self {
        Self::new(Role::User, text)
    }

    /// An assistant message.
    pub fn assistant(text: impl Into<Content>) -> Self {
        Self::new(Role::Assistant, text)
    }

    /// The message's text pieces (see [`Content::texts`]).
    pub fn texts(&self) -> impl Iterator<Item = &str> {
        self.content.iter().flat_map(Content::texts)
    }
}

/// Facts about the caller, not the prompt. None of it is sent to the provider, and none of it but
/// the tenant (as the cache scope) changes what a cache considers the same request.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RequestMeta {
    /// The tenant (customer, workspace, organization) the request is made for.
    pub tenant: Option<Arc<str>>,
    /// The principal (user, API key, agent) inside the tenant.
    pub principal: Option<Arc<str>>,
    /// The application role of the call (e.g. `summarizer`), used to route to a model.
    pub role: Option<Arc<str>>,
    /// Per-request cache control.
    pub cache: CacheControl,
    /// Scheduling priority.
    pub priority: Priority,
    /// An id for tracing; never part of a cache key.
    pub request_id: Option<Arc<str>>,
    /// What the call does: a chat completion (the default), a legacy text completion, or
    /// embeddings.
    pub operation: Operation,
    /// Ask for the answer as a stream ([`LlmResponse::take_stream`](crate::LlmResponse::take_stream)).
    /// A stream and a whole answer to the same request are the same answer, so this is not part
    /// of a cache key either.
    pub stream: bool,
    /// The most retries a layer below may make for this call before giving its failure back:
    /// set by a router that has somewhere else to send the call, so a failing deployment costs
    /// one attempt rather than its whole backoff schedule. `None` leaves the retry policy's own.
    pub retry_cap: Option<u32>,
}

/// What a call asks of a model, named as the OpenTelemetry conventions for generative AI name it
/// (`gen_ai.operation.name`).
///
/// An embeddings call carries the provider's fields (`input`, `dimensions`, `encoding_format`)
/// in [`Params::extra`]; its answer has no choices, its vectors (`data`) in
/// [`LlmResponse::extra`](crate::LlmResponse::extra) and its tokens in `usage.input_tokens`.
///
/// A legacy text completion (OpenAI's `POST /v1/completions`, which vLLM and Ollama serve too)
/// carries each prompt as a user message, so that token estimates, budgets and cache keys read
/// it as they read a chat prompt: a text prompt as its text, a token-array prompt as one part
/// `{"type": "tokens", "tokens": [...]}`. Its other fields (`echo`, `suffix`, `logprobs`, ...)
/// are in [`Params::extra`]; its answer is a chat answer whose choices' content is the completed
/// text.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Operation {
    /// A chat completion.
    #[default]
    Chat,
    /// Embeddings of the `input` texts.
    Embeddings,
    /// A legacy text completion of a prompt.
    Completions,
}

impl Operation {
    /// Every operation, in the order of [`index`](Self::index).
    pub const ALL: [Self; 3] = [Self::Chat, Self::Embeddings, Self::Completions];

    /// The operation's name as the OpenTelemetry conventions write it: `chat`, `embeddings` or
    /// `text_completion`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Chat => "chat",
            Self::Embeddings => "embeddings",
            Self::Completions => "text_completion",
        }
    }

    /// The operation's place in [`ALL`](Self::ALL), for tables kept per operation.
    pub const fn index(self) -> usize {
        match self {
            Self::Chat => 0,
            Self::Embeddings => 1,
            Self::Completions => 2,
        }
    }

    /// Whether the call's answer is generated text, bounded by `max_tokens` (every operation but
    /// embeddings).
    pub const fn generates(self) -> bool {
        !matches!(self, Self::Embeddings)
    }
}

/// Per-request cache control, in the spirit of HTTP's `Cache-Control`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CacheControl {
    /// Do not answer from the cache (the fresh answer may still be stored).
    pub no_cache: bool,
    /// Do not store the answer.
    pub no_store: bool,
    /// Keep the stored answer this long instead of the configured TTL.
    pub ttl: Option<Duration>,
}

/// Scheduling priority of a request.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Priority {
    /// Background work that may wait.
    Low,
    /// The default.
    #[default]
    Normal,
    /// Interactive work that should go first.
    High,
}
