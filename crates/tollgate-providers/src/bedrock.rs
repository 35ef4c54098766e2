//! `Bedrock`: Amazon Bedrock's Converse and ConverseStream APIs, and embeddings through
//! InvokeModel, signed with SigV4 or sent with a Bedrock API key.

use std::{
    fmt,
    sync::Arc,
    time::{Duration, SystemTime},
};

use aws_credential_types::provider::{ProvideCredentials, SharedCredentialsProvider};
use http::HeaderMap;
use serde_json::Value;
use tollgate_core::{ConfigError, ErrorKind, LlmError, LlmRequest, LlmResponse};
use tollgate_wire::bedrock::{self, embeddings};

use crate::{
    aws::{CredentialsCache, sign_request, static_credentials},
    failure::{Said, refusal_said},
    stream::ChatStream,
    transport::{
        Answer, Call, Http, Settings, answered, common_builder_methods, malformed,
        open_stream_with, post, provider_service,
    },
};

/// The environment variable a Bedrock API key is read from when the builder is given no
/// credentials.
pub const BEDROCK_API_KEY_ENV: &str = "AWS_BEARER_TOKEN_BEDROCK";

const NAME: &str = "bedrock";

/// A client for Amazon Bedrock's Converse API, as a `Service<LlmRequest>`.
///
/// A call goes to `POST {base}/model/{modelId}/converse` (a streaming one to
/// `converse-stream`), with the model id percent-encoded so that ids with `:`
/// (`anthropic.claude-3-5-sonnet-20241022-v2:0`), inference profiles (`us.anthropic...`) and ARNs
/// all reach their model; the base is `https://bedrock-runtime.{region}.amazonaws.com`. The request
/// is mapped from the OpenAI shape as [`tollgate_wire::bedrock`] tells, field by field; what
/// Converse cannot express is an `InvalidRequest` naming it. The answer comes back in the OpenAI
/// shape with usage counting the prompt whole (cache reads and writes included, and counted apart),
/// and Converse's `metrics` kept; a `guardrail_intervened` or `content_filtered` stop is a
/// `ContentFilter` error. A stream is AWS's binary event stream, read within the same bounds as
/// any other ([`ChatStream`]): one that closes before `messageStop` and `metadata` is a `Server`
/// error, and an exception event ends it with its kind.
///
/// A request whose `meta.operation` is [`Embeddings`](tollgate_core::Operation::Embeddings) goes
/// to `POST {base}/model/{modelId}/invoke` in its model family's body (Amazon Titan, one call per
/// input; Cohere, one call) and answers in OpenAI's embeddings shape
/// ([`tollgate_wire::bedrock::embeddings`]).
///
/// Calls are signed with Signature Version 4 (service `bedrock`, the client's region), with
/// credentials from, in order of choice: [`credentials`](BedrockBuilder::credentials) (static),
/// [`credentials_provider`](BedrockBuilder::credentials_provider) (any
/// [`ProvideCredentials`]), or, when neither is set, the standard chain (environment, shared
/// profile files, web identity, containers, instance metadata; environment only without the
/// `aws-config` feature). Credentials are fetched again shortly before they expire. A Bedrock API
/// key ([`api_key`](BedrockBuilder::api_key), or [`BEDROCK_API_KEY_ENV`] when nothing else is
/// set) is sent as `Authorization: Bearer` instead. Neither is ever logged or shown: `Debug`
/// redacts them.
///
/// Failures map by the `x-amzn-ErrorType` AWS names: `ThrottlingException` → `RateLimited`,
/// `ServiceUnavailableException` and `ModelNotReadyException` → `Overloaded`,
/// `ModelTimeoutException` → `Timeout`, `AccessDeniedException`, `UnrecognizedClientException`,
/// `ExpiredTokenException` and signature errors → `Auth`, `ValidationException` →
/// `InvalidRequest` (`ContextWindow` when it says the prompt is too long),
/// `InternalServerException` → `Server`; by status otherwise.
///
/// ```
/// use tollgate_core::{LlmRequest, Message};
/// use tollgate_providers::Bedrock;
/// use tower::ServiceExt;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # // A Converse server for the example to talk to.
/// # let app = axum::Router::new().fallback(axum::routing::post(|| async {
/// #     axum::Json(serde_json::json!({
/// #         "output": { "message": { "role": "assistant", "content": [ { "text": "Hi!" } ] } },
/// #         "stopReason": "end_turn",
/// #         "usage": { "inputTokens": 8, "outputTokens": 2, "totalTokens": 10 },
/// #         "metrics": { "latencyMs": 120 } }))
/// # }));
/// # let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
/// # let base_url = format!("http://{}", listener.local_addr()?);
/// # tokio::spawn(async move { axum::serve(listener, app).await });
/// let bedrock = Bedrock::builder("us-east-1")
///     // Static credentials here; left out, the standard AWS chain is read.
///     .credentials("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY")
/// #   .base_url(&base_url)
///     .build()?;
/// let request = LlmRequest::new(
///     "anthropic.claude-3-5-sonnet-20241022-v2:0",
///     vec![Message::system("Be brief."), Message::user("Say hi")],
/// );
/// let answer = bedrock.oneshot(request).await?;
/// assert_eq!(answer.content(), "Hi!");
/// assert_eq!(answer.usage.total(), 10);
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Bedrock {
    inner: Arc<Inner>,
}

struct Inner {
    http: Http,
    base: String,
    region: String,
    /// `None`: calls carry a Bedrock API key (a default header) and are not signed.
    credentials: Option<CredentialsCache>,
}

impl fmt::Debug for Bedrock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Bedrock")
            .field("base", &self.inner.base)
            .field("region", &self.inner.region)
            .field(
                "auth",
                &if self.inner.credentials.is_some() {
                    "sigv4"
                } else {
                    "api key"
                },
            )
            .finish_non_exhaustive()
    }
}

impl Bedrock {
    /// A builder for Bedrock in `region` (`us-east-1`, `eu-central-1`, ...).
    pub fn builder(region: impl Into<String>) -> BedrockBuilder {
        let region = region.into();
        BedrockBuilder {
            settings: Settings::new(&format!("https://bedrock-runtime.{region}.amazonaws.com")),
            region,
            auth: None,
            #[cfg(feature = "aws-config")]
            profile: None,
        }
    }

    /// Sends `request` to ConverseStream and returns the stream once Bedrock has accepted it.
    ///
    /// # Errors
    ///
    /// The same errors as a call, for everything that happens before the stream starts.
    pub async fn stream(&self, request: LlmRequest) -> Result<ChatStream, LlmError> {
        let inner = &self.inner;
        let body = body(&request)?;
        let url = inner.url(&request.model, "converse-stream");
        let sign = inner.signer(EVENT_STREAM).await?;
        let call = Call {
            url: &url,
            body,
            headers: request.extensions.get(),
            provider: NAME,
            sign: Some(&*sign),
        };
        let (response, first_byte) =
            open_stream_with(&inner.http, call, |answer, _| failure(answer)).await?;
        let decoder = bedrock::ConverseEvents::new(NAME, inner.http.limits.max_event_bytes);
        Ok(ChatStream::with_decoder(
            response,
            Box::new(decoder),
            NAME,
            inner.http.limits,
            first_byte,
        ))
    }
}

/// The media type of ConverseStream's answer.
const EVENT_STREAM: &str = "application/vnd.amazon.eventstream";

fn body(request: &LlmRequest) -> Result<Vec<u8>, LlmError> {
    crate::translated::refuse_untranslatable(NAME, request)?;
    bedrock::encode_request(request).map_err(refused_here)
}

fn refused_here(reason: String) -> LlmError {
    LlmError::new(ErrorKind::InvalidRequest, format!("{NAME}: {reason}"))
}

type Signer = Box<crate::transport::Sign>;

impl Inner {
    fn url(&self, model: &str, action: &str) -> String {
        format!("{}{}", self.base, bedrock::path(model, action))
    }

    /// What every call carries last: `accept`, then (with credentials) the signature.
    async fn signer(&self, accept: &'static str) -> Result<Signer, LlmError> {
        let accept = http::HeaderValue::from_static(accept);
        let Some(cache) = &self.credentials else {
            return Ok(Box::new(move |request: &mut reqwest::Request| {
                request
                    .headers_mut()
                    .insert(http::header::ACCEPT, accept.clone());
                Ok(())
            }));
        };
        let credentials = cache.get(NAME).await?;
        let region = self.region.clone();
        Ok(Box::new(move |request: &mut reqwest::Request| {
            request
                .headers_mut()
                .insert(http::header::ACCEPT, accept.clone());
            sign_request(
                request,
                &credentials,
                &region,
                "bedrock",
                SystemTime::now(),
                NAME,
            )
        }))
    }

    /// Sends one signed call and reads its whole answer, or the error it is.
    async fn send(
        &self,
        url: &str,
        body: Vec<u8>,
        request: &LlmRequest,
    ) -> Result<Answer, LlmError> {
        let sign = self.signer("application/json").await?;
        let call = Call {
            url,
            body,
            headers: request.extensions.get(),
            provider: NAME,
            sign: Some(&*sign),
        };
        let answer = post(&self.http, call).await?;
        if !answer.status.is_success() {
            return Err(failure(&answer));
        }
        Ok(answer)
    }

    async fn complete(&self, request: LlmRequest) -> Result<LlmResponse, LlmError> {
        let url = self.url(&request.model, "converse");
        let answer = self.send(&url, body(&request)?, &request).await?;
        let response =
            bedrock::decode_answer(&answer.body, &request.model).map_err(|e| malformed(NAME, e))?;
        answered(answer, response, NAME)
    }

    async fn embed(&self, request: LlmRequest) -> Result<LlmResponse, LlmError> {
        let model = &request.model;
        let family = embeddings::EmbeddingFamily::of(model).ok_or_else(|| {
            refused_here(format!(
                "model {model:?}: embeddings are read for Amazon Titan (amazon.titan-embed-*) and \
                 Cohere (cohere.embed-*) models"
            ))
        })?;
        let inputs = embeddings::inputs(&request).map_err(refused_here)?;
        let url = self.url(model, "invoke");
        let mut vectors = Vec::with_capacity(inputs.len());
        let mut tokens = 0;
        let mut last = None;
        match family {
            embeddings::EmbeddingFamily::Cohere => {
                let body = embeddings::encode_cohere(&request, &inputs).map_err(refused_here)?;
                let answer = self.send(&url, body, &request).await?;
                vectors =
                    embeddings::decode_cohere(&answer.body).map_err(|e| malformed(NAME, e))?;
                tokens = input_tokens(&answer.headers);
                last = Some(answer);
            }
            _ => {
                for text in &inputs {
                    let body = embeddings::encode_titan(&request, text).map_err(refused_here)?;
                    let answer = self.send(&url, body, &request).await?;
                    let (vector, read) =
                        embeddings::decode_titan(&answer.body).map_err(|e| malformed(NAME, e))?;
                    vectors.push(vector);
                    tokens = tokens.saturating_add(read);
                    last = Some(answer);
                }
            }
        }
        if tokens == 0 {
            // An answer that says nothing of its tokens is billed all the same.
            tokens = crate::transport::estimated_input(&request);
        }
        let mut response = embeddings::answer(model, vectors, tokens);
        if let Some(answer) = last {
            response.headers = answer.headers;
        }
        Ok(response)
    }
}

/// Tokens an InvokeModel answer says it read (`X-Amzn-Bedrock-Input-Token-Count`).
fn input_tokens(headers: &HeaderMap) -> u64 {
    headers
        .get("x-amzn-bedrock-input-token-count")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

/// The error for a failed answer: its kind from the `x-amzn-ErrorType` (or the body's `__type`),
/// else from its status; the body's `message` as what the upstream said.
fn failure(answer: &Answer) -> LlmError {
    let body: Value = serde_json::from_slice(&answer.body).unwrap_or(Value::Null);
    let header = answer
        .headers
        .get("x-amzn-errortype")
        .and_then(|v| v.to_str().ok());
    let name = bedrock::error_name(header, &body);
    let kind = name
        .and_then(bedrock::error_kind)
        .unwrap_or_else(|| ErrorKind::from_status(answer.status));
    let message = body
        .get("message")
        .or_else(|| body.get("Message"))
        .and_then(Value::as_str);
    let said = Said {
        kind,
        error_type: name,
        code: None,
        param: None,
        message,
        retry_after: None,
        filtered: false,
    };
    refusal_said(answer.status, &answer.headers, &answer.body, NAME, said)
}

provider_service!(Bedrock);

/// Who a call is from: Bedrock's own key, or AWS credentials.
enum Auth {
    ApiKey(String),
    Static {
        access_key_id: String,
        secret_access_key: String,
        session_token: Option<String>,
    },
    Provider(SharedCredentialsProvider),
}

/// Builds a [`Bedrock`] client; checks everything in [`build`](Self::build).
#[must_use]
pub struct BedrockBuilder {
    settings: Settings,
    region: String,
    auth: Option<Auth>,
    #[cfg(feature = "aws-config")]
    profile: Option<String>,
}

impl fmt::Debug for BedrockBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let auth = match &self.auth {
            None => "the standard chain",
            Some(Auth::ApiKey(_)) => "api key <redacted>",
            Some(Auth::Static { .. }) => "static credentials <redacted>",
            Some(Auth::Provider(_)) => "a credentials provider",
        };
        f.debug_struct("BedrockBuilder")
            .field("region", &self.region)
            .field("base_url", &self.settings.base_url)
            .field("auth", &auth)
            .finish_non_exhaustive()
    }
}

impl BedrockBuilder {
    /// Another server speaking Bedrock's runtime API (a VPC endpoint, a FIPS endpoint, a proxy, a
    /// test server), the part before `/model/...` (default
    /// `https://bedrock-runtime.{region}.amazonaws.com`).
    pub fn base_url(mut self, base_url: &str) -> Self {
        self.settings.base_url = base_url.trim_end_matches('/').to_owned();
        self
    }

    /// Static AWS credentials: an access key id and its secret.
    pub fn credentials(
        mut self,
        access_key_id: impl Into<String>,
        secret_access_key: impl Into<String>,
    ) -> Self {
        let session_token = match self.auth.take() {
            Some(Auth::Static { session_token, .. }) => session_token,
            _ => None,
        };
        self.auth = Some(Auth::Static {
            access_key_id: access_key_id.into(),
            secret_access_key: secret_access_key.into(),
            session_token,
        });
        self
    }

    /// The session token of temporary static [`credentials`](Self::credentials), sent as
    /// `x-amz-security-token`.
    pub fn session_token(mut self, token: impl Into<String>) -> Self {
        match &mut self.auth {
            Some(Auth::Static { session_token, .. }) => *session_token = Some(token.into()),
            _ => {
                self.auth = Some(Auth::Static {
                    access_key_id: String::new(),
                    secret_access_key: String::new(),
                    session_token: Some(token.into()),
                });
            }
        }
        self
    }

    /// Credentials from `provider` (an assumed role, SSO, a chain of your own), fetched again
    /// shortly before they expire.
    pub fn credentials_provider(mut self, provider: impl ProvideCredentials + 'static) -> Self {
        self.auth = Some(Auth::Provider(SharedCredentialsProvider::new(provider)));
        self
    }

    /// The standard chain's profile to read from the shared files, in place of `AWS_PROFILE` or
    /// `default`.
    #[cfg(feature = "aws-config")]
    pub fn profile(mut self, profile: impl Into<String>) -> Self {
        self.profile = Some(profile.into());
        self
    }

    /// A Bedrock API key, sent as `Authorization: Bearer` in place of a signature.
    pub fn api_key(mut self, key: impl Into<String>) -> Self {
        self.auth = Some(Auth::ApiKey(key.into()));
        self
    }

    common_builder_methods!();

    /// The client.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] for a region that is not one (`us-east-1`), an empty key, secret or API
    /// key, a session token without credentials, a timeout of zero, a base URL that is not
    /// `http(s)://`, or a header that is not valid HTTP.
    pub fn build(mut self) -> Result<Bedrock, ConfigError> {
        let region_ok = !self.region.is_empty()
            && self
                .region
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if !region_ok {
            return Err(ConfigError::new(
                "region",
                format!("{:?} is not an AWS region (us-east-1)", self.region),
            ));
        }
        // A profile asked for by name is the identity calls go out as, whatever key the
        // environment holds.
        let auth = match self.auth.take() {
            Some(auth) => auth,
            None => match std::env::var(BEDROCK_API_KEY_ENV) {
                Ok(key) if !key.trim().is_empty() && self.profile.is_none() => Auth::ApiKey(key),
                _ => Auth::Provider(self.default_chain()?),
            },
        };
        let provider = match auth {
            Auth::ApiKey(key) => {
                if key.trim().is_empty() {
                    return Err(ConfigError::new("api_key", "must not be empty"));
                }
                self.settings
                    .header("authorization", &format!("Bearer {key}"), "api_key")?;
                None
            }
            Auth::Static {
                access_key_id,
                secret_access_key,
                session_token,
            } => {
                if access_key_id.trim().is_empty() {
                    return Err(ConfigError::new(
                        "access_key_id",
                        "must not be empty (a session token needs its credentials)",
                    ));
                }
                if secret_access_key.trim().is_empty() {
                    return Err(ConfigError::new("secret_access_key", "must not be empty"));
                }
                Some(static_credentials(
                    access_key_id,
                    secret_access_key,
                    session_token,
                ))
            }
            Auth::Provider(provider) => Some(provider),
        };
        let base = self.settings.base_url.clone();
        let http = self.settings.http()?;
        Ok(Bedrock {
            inner: Arc::new(Inner {
                http,
                base,
                region: self.region,
                credentials: provider.map(CredentialsCache::new),
            }),
        })
    }

    #[cfg(feature = "aws-config")]
    fn default_chain(&mut self) -> Result<SharedCredentialsProvider, ConfigError> {
        // The chain's own calls (STS, SSO, instance metadata) go through a client of ours.
        let client = reqwest::Client::builder()
            .timeout(
                self.settings
                    .connect_timeout
                    .checked_mul(3)
                    .unwrap_or(Duration::MAX),
            )
            .connect_timeout(self.settings.connect_timeout)
            .build()
            .map_err(|e| ConfigError::new("client", e.to_string()))?;
        Ok(crate::aws::default_chain(
            client,
            &self.region,
            self.profile.take(),
        ))
    }

    #[cfg(not(feature = "aws-config"))]
    #[allow(clippy::unnecessary_wraps)]
    fn default_chain(&mut self) -> Result<SharedCredentialsProvider, ConfigError> {
        Ok(crate::aws::environment())
    }
}
