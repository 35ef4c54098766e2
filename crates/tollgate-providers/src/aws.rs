//! AWS credentials and Signature Version 4, for Bedrock: credentials from a provider
//! ([`ProvideCredentials`], the standard chain by default), kept until shortly before they expire,
//! and each request signed over what it carries with [`aws_sigv4`].

use std::{
    fmt,
    time::{Duration, SystemTime},
};

use aws_credential_types::{
    Credentials,
    provider::{ProvideCredentials, SharedCredentialsProvider},
};
use aws_sigv4::{
    http_request::{SignableBody, SignableRequest, SigningSettings, sign},
    sign::v4,
};
use aws_smithy_runtime_api::client::identity::Identity;
use tollgate_core::{ErrorKind, LlmError};

/// How long before their expiry credentials are fetched anew: a call signed with them must still
/// reach AWS in time, and a retry after it too.
const REFRESH_BEFORE: Duration = Duration::from_secs(300);

/// Credentials from `provider`, fetched once and again when they near their expiry; one fetch
/// at a time, so a burst of calls on cold credentials makes one request for them.
pub(crate) struct CredentialsCache {
    provider: SharedCredentialsProvider,
    current: tokio::sync::Mutex<Option<Credentials>>,
}

impl fmt::Debug for CredentialsCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // `Credentials`' own Debug redacts the secret; the provider may hold anything.
        f.debug_struct("CredentialsCache").finish_non_exhaustive()
    }
}

impl CredentialsCache {
    pub(crate) fn new(provider: SharedCredentialsProvider) -> Self {
        Self {
            provider,
            current: tokio::sync::Mutex::new(None),
        }
    }

    /// Credentials that are good for a while yet.
    pub(crate) async fn get(&self, provider: &str) -> Result<Credentials, LlmError> {
        let mut current = self.current.lock().await;
        if let Some(credentials) = current.as_ref().filter(|c| fresh(c, SystemTime::now())) {
            return Ok(credentials.clone());
        }
        // A source that never answers (an endpoint gone silent) must not hold every call.
        let fetched = tokio::time::timeout(FETCH_WITHIN, self.provider.provide_credentials())
            .await
            .map_err(|_| {
                LlmError::new(
                    ErrorKind::Timeout,
                    format!(
                        "{provider}: no AWS credentials came within {}",
                        tollgate_core::duration::format(FETCH_WITHIN)
                    ),
                )
            })?;
        let credentials = fetched.map_err(|error| {
            // The provider's own words say which source failed; they carry no secret.
            tracing::debug!(provider, %error, "no AWS credentials could be loaded");
            LlmError::new(
                ErrorKind::Auth,
                format!("{provider}: no AWS credentials could be loaded ({error})"),
            )
        })?;
        *current = Some(credentials.clone());
        Ok(credentials)
    }
}

/// How long a credentials source has to answer.
const FETCH_WITHIN: std::time::Duration = std::time::Duration::from_secs(30);

/// Whether `credentials` are good past `now` plus [`REFRESH_BEFORE`].
fn fresh(credentials: &Credentials, now: SystemTime) -> bool {
    credentials
        .expiry()
        .is_none_or(|expiry| expiry > now + REFRESH_BEFORE)
}

/// Signs `request` for `service` in `region` with `credentials` at `time`: `x-amz-date`,
/// `x-amz-security-token` (for temporary credentials) and `authorization` are added, over the
/// method, the URL (its path encoded twice, as every AWS service but S3 takes it), every header
/// the request carries by now, and the body's SHA-256.
pub(crate) fn sign_request(
    request: &mut reqwest::Request,
    credentials: &Credentials,
    region: &str,
    service: &str,
    time: SystemTime,
    provider: &str,
) -> Result<(), LlmError> {
    let failed = |error: &dyn fmt::Display| {
        LlmError::new(
            ErrorKind::Internal,
            format!("{provider}: the request could not be signed ({error})"),
        )
    };
    let identity: Identity = credentials.clone().into();
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(region)
        .name(service)
        .time(time)
        .settings(SigningSettings::default())
        .build()
        .map_err(|e| failed(&e))?
        .into();
    let mut headers = Vec::with_capacity(request.headers().len());
    for (name, value) in request.headers() {
        let value = value.to_str().map_err(|e| failed(&e))?;
        headers.push((name.as_str(), value));
    }
    let body = request
        .body()
        .and_then(reqwest::Body::as_bytes)
        .unwrap_or_default();
    let signable = SignableRequest::new(
        request.method().as_str(),
        request.url().as_str(),
        headers.into_iter(),
        SignableBody::Bytes(body),
    )
    .map_err(|e| failed(&e))?;
    let (instructions, _) = sign(signable, &params)
        .map_err(|e| failed(&e))?
        .into_parts();
    let (added, _) = instructions.into_parts();
    for header in added {
        let mut value = http::HeaderValue::from_str(header.value()).map_err(|e| failed(&e))?;
        value.set_sensitive(header.sensitive() || header.name() == "authorization");
        request.headers_mut().insert(header.name(), value);
    }
    Ok(())
}

/// The standard credential chain (environment, shared profile files, web identity, containers,
/// instance metadata) over `client`, built on first use; `profile` names a profile other than
/// the environment's (`AWS_PROFILE`) or `default`.
#[cfg(feature = "aws-config")]
pub(crate) fn default_chain(
    client: reqwest::Client,
    region: &str,
    profile: Option<String>,
) -> SharedCredentialsProvider {
    SharedCredentialsProvider::new(chain::Lazy {
        client,
        region: region.to_owned(),
        profile,
        chain: std::sync::Arc::new(tokio::sync::OnceCell::new()),
    })
}

/// Static credentials: an access key, its secret, and a session token for temporary ones.
pub(crate) fn static_credentials(
    access_key_id: String,
    secret_access_key: String,
    session_token: Option<String>,
) -> SharedCredentialsProvider {
    SharedCredentialsProvider::new(Credentials::new(
        access_key_id,
        secret_access_key,
        session_token,
        None,
        "tollgate",
    ))
}

/// Credentials from the environment only (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`,
/// `AWS_SESSION_TOKEN`): the chain when this crate is built without `aws-config`.
#[cfg(not(feature = "aws-config"))]
pub(crate) fn environment() -> SharedCredentialsProvider {
    SharedCredentialsProvider::new(Environment)
}

#[cfg(not(feature = "aws-config"))]
#[derive(Debug)]
struct Environment;

#[cfg(not(feature = "aws-config"))]
impl ProvideCredentials for Environment {
    fn provide_credentials<'a>(
        &'a self,
    ) -> aws_credential_types::provider::future::ProvideCredentials<'a>
    where
        Self: 'a,
    {
        use aws_credential_types::provider::{error::CredentialsError, future};
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        future::ProvideCredentials::ready(
            match (var("AWS_ACCESS_KEY_ID"), var("AWS_SECRET_ACCESS_KEY")) {
                (Some(id), Some(secret)) => Ok(Credentials::new(
                    id,
                    secret,
                    var("AWS_SESSION_TOKEN"),
                    None,
                    "environment",
                )),
                _ => Err(CredentialsError::not_loaded(
                    "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY are not set (the aws-config \
                     feature reads the whole standard chain)",
                )),
            },
        )
    }
}

#[cfg(feature = "aws-config")]
mod chain {
    //! aws-config's chain, sending its own calls (STS for web identity, SSO, instance metadata)
    //! through tollgate's reqwest client rather than a second HTTP stack.

    use std::sync::Arc;

    use aws_config::{
        default_provider::credentials::DefaultCredentialsChain, provider_config::ProviderConfig,
    };
    use aws_credential_types::provider::{self, ProvideCredentials};
    use aws_smithy_runtime_api::client::{
        http::{
            HttpClient, HttpConnector, HttpConnectorFuture, HttpConnectorSettings,
            SharedHttpConnector,
        },
        orchestrator::HttpRequest,
        result::ConnectorError,
        runtime_components::RuntimeComponents,
    };
    use aws_smithy_types::body::SdkBody;

    /// The most of an answer to a credential call that is read.
    const MAX_ANSWER: usize = 1 << 20;

    /// The chain, built on the first call (building it reads the environment and files).
    #[derive(Debug)]
    pub(super) struct Lazy {
        pub(super) client: reqwest::Client,
        pub(super) region: String,
        pub(super) profile: Option<String>,
        pub(super) chain: Arc<tokio::sync::OnceCell<DefaultCredentialsChain>>,
    }

    impl ProvideCredentials for Lazy {
        fn provide_credentials<'a>(&'a self) -> provider::future::ProvideCredentials<'a>
        where
            Self: 'a,
        {
            provider::future::ProvideCredentials::new(async move {
                let chain = self
                    .chain
                    .get_or_init(|| async {
                        let config = ProviderConfig::default()
                            .with_http_client(Reqwest(self.client.clone()));
                        let mut builder = DefaultCredentialsChain::builder()
                            .configure(config)
                            .region(aws_config::Region::new(self.region.clone()));
                        if let Some(profile) = &self.profile {
                            builder = builder.profile_name(profile);
                        }
                        builder.build().await
                    })
                    .await;
                chain.provide_credentials().await
            })
        }
    }

    /// aws-config's HTTP client, over reqwest.
    #[derive(Debug, Clone)]
    struct Reqwest(reqwest::Client);

    impl HttpClient for Reqwest {
        fn http_connector(
            &self,
            _: &HttpConnectorSettings,
            _: &RuntimeComponents,
        ) -> SharedHttpConnector {
            SharedHttpConnector::new(self.clone())
        }
    }

    impl HttpConnector for Reqwest {
        fn call(&self, request: HttpRequest) -> HttpConnectorFuture {
            let client = self.0.clone();
            HttpConnectorFuture::new(async move {
                let failed =
                    |e: Box<dyn std::error::Error + Send + Sync>| ConnectorError::other(e, None);
                let method = reqwest::Method::from_bytes(request.method().as_bytes())
                    .map_err(|e| failed(e.into()))?;
                let mut call = client.request(method, request.uri());
                for (name, value) in request.headers() {
                    call = call.header(name, value);
                }
                let body = request.body().bytes().unwrap_or_default().to_vec();
                let mut answer = call.body(body).send().await.map_err(|e| {
                    if e.is_timeout() {
                        ConnectorError::timeout(e.into())
                    } else {
                        ConnectorError::io(e.into())
                    }
                })?;
                let mut response = http::Response::builder().status(answer.status());
                for (name, value) in answer.headers() {
                    response = response.header(name, value);
                }
                let mut body = Vec::new();
                while let Some(chunk) = answer
                    .chunk()
                    .await
                    .map_err(|e| ConnectorError::io(e.into()))?
                {
                    if body.len() + chunk.len() > MAX_ANSWER {
                        return Err(failed("a credentials answer over 1 MiB".into()));
                    }
                    body.extend_from_slice(&chunk);
                }
                let response = response
                    .body(SdkBody::from(body))
                    .map_err(|e| failed(e.into()))?;
                aws_smithy_runtime_api::client::orchestrator::HttpResponse::try_from(response)
                    .map_err(|e| failed(e.into()))
            })
        }
    }
}
