//! `Vertex`: Google Cloud's Vertex AI, for Google's Gemini models (`generateContent`) and
//! Anthropic's Claude models (`rawPredict`), with OAuth access tokens from a service-account key
//! file or the environment's application-default credentials.

use std::{fmt, future::Future, path::PathBuf, pin::Pin, sync::Arc, time::Duration};

use serde_json::{Map, Value};
use tollgate_core::{ConfigError, ErrorKind, LlmError, LlmRequest, LlmResponse};
use tollgate_wire::anthropic::messages::{self, MessageStream, MessagesAnswer, MessagesBody};

use crate::{
    DEFAULT_MAX_TOKENS, RequestHeaders,
    gemini::{Auth, Endpoint, TokenSource, invalid, refusal},
    stream::ChatStream,
    transport::{
        Call, Settings, answered, common_builder_methods, malformed, open_stream_with, post,
        provider_service,
    },
};

/// The `anthropic_version` a Claude body on Vertex AI carries.
pub const VERTEX_ANTHROPIC_VERSION: &str = "vertex-2023-10-16";

/// The OAuth scope tokens are asked for.
const SCOPE: &str = "https://www.googleapis.com/auth/cloud-platform";

/// Whose models a call goes to on Vertex AI: the URL's `publishers/{publisher}`, and the API the
/// body speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Publisher {
    /// Google's Gemini models: `generateContent`, the Gemini API's body.
    Google,
    /// Anthropic's Claude models: `rawPredict`, the Messages API's body.
    Anthropic,
}

impl Publisher {
    /// The publisher of `model` by its name: `claude*` is Anthropic's, anything else Google's.
    pub fn of(model: &str) -> Self {
        if model.starts_with("claude") {
            Self::Anthropic
        } else {
            Self::Google
        }
    }

    const fn path(self) -> &'static str {
        match self {
            Self::Google => "google",
            Self::Anthropic => "anthropic",
        }
    }
}

/// A client for Vertex AI's model endpoints, as a `Service<LlmRequest>`.
///
/// A Gemini model is called at
/// `{base_url}/v1/projects/{project}/locations/{location}/publishers/google/models/{model}:generateContent`
/// (a stream at `:streamGenerateContent?alt=sse`) with the body, answer and errors of
/// [`Gemini`](crate::Gemini); a Claude model at `.../publishers/anthropic/models/{model}:rawPredict`
/// (a stream at `:streamRawPredict`) with the Messages body of [`Anthropic`](crate::Anthropic)
/// less its `model`, plus `anthropic_version: vertex-2023-10-16` ([`VERTEX_ANTHROPIC_VERSION`]).
/// Which one a model goes to is its name's ([`Publisher::of`]: `claude*` is Anthropic's) unless
/// the builder sets a [`publisher`](VertexBuilder::publisher). The base URL is
/// `https://{location}-aiplatform.googleapis.com`, or `https://aiplatform.googleapis.com` for
/// location `global`.
///
/// Calls carry `Authorization: Bearer` with an OAuth access token for the `cloud-platform` scope,
/// from a service-account key file ([`credentials_file`](VertexBuilder::credentials_file); its
/// JWT is sent to the key's own `token_uri`) or else the environment's application-default
/// credentials (`GOOGLE_APPLICATION_CREDENTIALS`, gcloud's, the metadata server), through the
/// `gcp_auth` crate. A token is cached and fetched anew 20 seconds before it expires; it is never
/// logged, and the client's `Debug` shows none. A token that cannot be had fails the call with
/// `Auth`, one that does not come within the call's [`timeout`](VertexBuilder::timeout) with
/// `Timeout`. Embeddings are not served.
///
/// ```no_run
/// use tollgate_core::{LlmRequest, Message};
/// use tollgate_providers::Vertex;
/// use tower::ServiceExt;
///
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let vertex = Vertex::builder("my-project", "us-east5")
///     .credentials_file("/etc/tollgate/vertex-sa.json") // else application-default credentials
///     .build()?;
/// let claude = LlmRequest::new("claude-sonnet-4-5@20250929", vec![Message::user("Say hi")]);
/// println!("{}", vertex.clone().oneshot(claude).await?.content());
/// let gemini = LlmRequest::new("gemini-2.5-flash", vec![Message::user("Say hi")]);
/// println!("{}", vertex.oneshot(gemini).await?.content());
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Vertex {
    inner: Arc<Inner>,
}

struct Inner {
    /// Google's models, and what every call shares: the HTTP client, the tokens, the name.
    google: crate::gemini::Inner,
    anthropic: Endpoint,
    publisher: Option<Publisher>,
    default_max_tokens: u32,
    project: String,
    location: String,
    base_url: String,
}

impl fmt::Debug for Vertex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Vertex")
            .field("name", &self.inner.google.name)
            .field("project", &self.inner.project)
            .field("location", &self.inner.location)
            .field("base_url", &self.inner.base_url)
            .field("publisher", &self.inner.publisher)
            .finish_non_exhaustive()
    }
}

impl Vertex {
    /// A builder for `project`'s models in `location` (`us-central1`, `europe-west4`, `global`).
    pub fn builder(project: impl Into<String>, location: impl Into<String>) -> VertexBuilder {
        VertexBuilder {
            settings: Settings::new("https://aiplatform.googleapis.com"),
            base_url: None,
            project: project.into(),
            location: location.into(),
            credentials: None,
            publisher: None,
            default_max_tokens: DEFAULT_MAX_TOKENS,
            name: "vertex".to_owned(),
        }
    }

    /// Sends `request` as a stream and returns it once Vertex AI has accepted it.
    ///
    /// # Errors
    ///
    /// The same errors as a call, for everything that happens before the stream starts.
    pub async fn stream(&self, request: LlmRequest) -> Result<ChatStream, LlmError> {
        let inner = &self.inner;
        if inner.publisher(&request.model) == Publisher::Google {
            return inner.google.stream(request).await;
        }
        let google = &inner.google;
        let body = inner.claude_body(&request, true)?;
        let url = inner
            .anthropic
            .url(&request.model, "streamRawPredict", &google.name)?;
        let headers = inner.claude_headers(&request).await?;
        let call = Call {
            url: &url,
            body,
            headers: headers.as_ref(),
            provider: &google.name,
            sign: None,
        };
        let (response, first_byte) = open_stream_with(&google.http, call, refusal).await?;
        // A caller in the Messages API gets the events as they came.
        let verbatim = request.extensions.get::<MessagesBody>().is_some();
        Ok(ChatStream::new(
            response,
            MessageStream::default(),
            verbatim,
            &google.name,
            google.http.limits,
            first_byte,
        ))
    }
}

provider_service!(Vertex);

impl Inner {
    fn publisher(&self, model: &str) -> Publisher {
        self.publisher.unwrap_or_else(|| Publisher::of(model))
    }

    async fn embed(&self, request: LlmRequest) -> Result<LlmResponse, LlmError> {
        self.google.embed(request).await
    }

    async fn complete(&self, request: LlmRequest) -> Result<LlmResponse, LlmError> {
        if self.publisher(&request.model) == Publisher::Google {
            return self.google.complete(request).await;
        }
        let google = &self.google;
        let name = &google.name;
        let body = self.claude_body(&request, false)?;
        let url = self.anthropic.url(&request.model, "rawPredict", name)?;
        let headers = self.claude_headers(&request).await?;
        let call = Call {
            url: &url,
            body,
            headers: headers.as_ref(),
            provider: name,
            sign: None,
        };
        let answer = post(&google.http, call).await?;
        if !answer.status.is_success() {
            return Err(refusal(&answer, name));
        }
        let mut response = messages::decode_answer(&answer.body, &request.model)
            .map_err(|e| malformed(name, e))?;
        if request.extensions.get::<MessagesBody>().is_some() {
            response
                .extensions
                .insert(MessagesAnswer(answer.body.clone()));
        }
        answered(answer, response, name)
    }

    /// A Claude call's headers: the token, and the `anthropic-beta` flags a caller in the
    /// Messages API sent (its `anthropic-version` goes in the body, as Vertex AI's own).
    async fn claude_headers(
        &self,
        request: &LlmRequest,
    ) -> Result<Option<RequestHeaders>, LlmError> {
        let mut headers = self.google.headers(request).await?;
        let beta = request
            .extensions
            .get::<MessagesBody>()
            .and_then(|body| body.headers().get("anthropic-beta"));
        if let Some(beta) = beta {
            headers
                .get_or_insert_default()
                .0
                .insert("anthropic-beta", beta.clone());
        }
        Ok(headers)
    }

    /// The Messages body for a Claude model on Vertex AI: `anthropic_version` first, no `model`
    /// (the URL names it).
    fn claude_body(&self, request: &LlmRequest, stream: bool) -> Result<Vec<u8>, LlmError> {
        let name = &self.google.name;
        crate::translated::refuse_untranslatable(name, request)?;
        let body = messages::encode_request(request, self.default_max_tokens, stream)
            .map_err(|e| invalid(name, &e))?;
        let fields: Map<String, Value> =
            serde_json::from_slice(&body).map_err(|e| invalid(name, &e.to_string()))?;
        let mut out = Map::new();
        out.insert("anthropic_version".into(), VERTEX_ANTHROPIC_VERSION.into());
        out.extend(fields.into_iter().filter(|(key, _)| key != "model"));
        Ok(serde_json::to_vec(&Value::Object(out)).expect("a JSON object serializes"))
    }
}

/// OAuth access tokens from `gcp_auth`, which caches them and fetches a new one before the last
/// expires.
struct GoogleTokens {
    provider: tokio::sync::OnceCell<Arc<dyn gcp_auth::TokenProvider>>,
    name: String,
    /// How long a token may take to come: the client's call timeout (`gcp_auth` sets none).
    wait: Duration,
}

impl TokenSource for GoogleTokens {
    fn token(&self) -> Pin<Box<dyn Future<Output = Result<String, LlmError>> + Send + '_>> {
        Box::pin(async move {
            let fetch = async {
                let provider = self
                    .provider
                    .get_or_try_init(gcp_auth::provider)
                    .await
                    .map_err(|e| no_token(&self.name, &e))?;
                let token = provider
                    .token(&[SCOPE])
                    .await
                    .map_err(|e| no_token(&self.name, &e))?;
                Ok(token.as_str().to_owned())
            };
            tokio::time::timeout(self.wait, fetch).await.map_err(|_| {
                LlmError::new(
                    ErrorKind::Timeout,
                    format!(
                        "{}: no OAuth access token came within {}",
                        self.name,
                        tollgate_core::duration::format(self.wait)
                    ),
                )
            })?
        })
    }
}

/// A call that could not get a token: `Auth`, with what `gcp_auth` said in the debug log only.
fn no_token(provider: &str, error: &gcp_auth::Error) -> LlmError {
    // Redacted: a credentials file that does not parse is quoted in the error, keys included.
    tracing::debug!(provider, error = %tollgate_core::redact(&error.to_string()), "no access token could be had");
    LlmError::new(
        ErrorKind::Auth,
        format!("{provider}: no OAuth access token could be had for the call"),
    )
}

/// Builds a [`Vertex`] client; checks everything in [`build`](Self::build).
#[must_use]
pub struct VertexBuilder {
    settings: Settings,
    base_url: Option<String>,
    project: String,
    location: String,
    credentials: Option<PathBuf>,
    publisher: Option<Publisher>,
    default_max_tokens: u32,
    name: String,
}

impl fmt::Debug for VertexBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VertexBuilder")
            .field("project", &self.project)
            .field("location", &self.location)
            .field("base_url", &self.base_url)
            .field("credentials_file", &self.credentials)
            .field("publisher", &self.publisher)
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl VertexBuilder {
    /// A service-account key file (JSON, as the Cloud console downloads it) to sign token
    /// requests with. Unset: the environment's application-default credentials.
    pub fn credentials_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.credentials = Some(path.into());
        self
    }

    /// Another server speaking Vertex AI's API (a proxy, a test server), the part before `/v1/`
    /// (default `https://{location}-aiplatform.googleapis.com`, or
    /// `https://aiplatform.googleapis.com` for location `global`).
    pub fn base_url(mut self, base_url: &str) -> Self {
        self.base_url = Some(base_url.trim_end_matches('/').to_owned());
        self
    }

    /// Sends every model to `publisher`, whatever its name (default: by name, [`Publisher::of`]).
    pub fn publisher(mut self, publisher: Publisher) -> Self {
        self.publisher = Some(publisher);
        self
    }

    /// `max_tokens` for a Claude request that sets none (default [`DEFAULT_MAX_TOKENS`]).
    pub fn default_max_tokens(mut self, tokens: u32) -> Self {
        self.default_max_tokens = tokens;
        self
    }

    /// The name errors use for this provider (default `vertex`).
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    common_builder_methods!();

    /// The client. A key file is read now; application-default credentials are looked for at
    /// the first call.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] for a project or location that does not fit in a URL, a key file that
    /// cannot be read as a service-account key, a zero `default_max_tokens` or timeout, a base
    /// URL that is not `http(s)://`, or a header that is not valid HTTP.
    pub fn build(mut self) -> Result<Vertex, ConfigError> {
        let plain = |value: &str| {
            !value.is_empty()
                && value
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':'))
        };
        if !plain(&self.project) {
            return Err(ConfigError::new(
                "project",
                "must be a Google Cloud project id",
            ));
        }
        if !plain(&self.location) {
            return Err(ConfigError::new(
                "location",
                "must be a Vertex AI location such as us-central1 or global",
            ));
        }
        if self.default_max_tokens == 0 {
            return Err(ConfigError::new("default_max_tokens", "must be at least 1"));
        }
        let provider = tokio::sync::OnceCell::new();
        if let Some(path) = &self.credentials {
            // What gcp_auth says of a file that does not parse can quote it, private key and all:
            // never repeated.
            let account = gcp_auth::CustomServiceAccount::from_file(path).map_err(|_| {
                ConfigError::new(
                    "credentials_file",
                    "cannot be read as a service-account key file (JSON with client_email, private_key and token_uri)",
                )
            })?;
            let account: Arc<dyn gcp_auth::TokenProvider> = Arc::new(account);
            provider
                .set(account)
                .map_err(|_| ConfigError::new("credentials_file", "set twice"))?;
        }
        self.settings.base_url = match self.base_url.take() {
            Some(base_url) => base_url,
            None if self.location == "global" => "https://aiplatform.googleapis.com".to_owned(),
            None => format!("https://{}-aiplatform.googleapis.com", self.location),
        };
        let prefix = |publisher: Publisher| {
            format!(
                "{}/v1/projects/{}/locations/{}/publishers/{}/models/",
                self.settings.base_url,
                self.project,
                self.location,
                publisher.path()
            )
        };
        let (google, anthropic) = (prefix(Publisher::Google), prefix(Publisher::Anthropic));
        let tokens = GoogleTokens {
            provider,
            name: self.name.clone(),
            wait: self.settings.timeout,
        };
        let base_url = self.settings.base_url.clone();
        let http = self.settings.http()?;
        Ok(Vertex {
            inner: Arc::new(Inner {
                google: crate::gemini::Inner {
                    http,
                    endpoint: Endpoint { prefix: google },
                    auth: Auth::Bearer(Arc::new(tokens)),
                    name: self.name,
                    embeddings: false,
                },
                anthropic: Endpoint { prefix: anthropic },
                publisher: self.publisher,
                default_max_tokens: self.default_max_tokens,
                project: self.project,
                location: self.location,
                base_url,
            }),
        })
    }
}
