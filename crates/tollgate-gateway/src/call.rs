//! What every front door does with a call before and after the stack: the request id, the key, the
//! body (bounded in size and time), the model the call names, and the headers on the answer.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use axum::{
    body::Body,
    extract::{Request, State},
    response::Response,
};
use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use tollgate::{
    CallRecorder, LlmRequest, LlmResponse,
    router::{Deadline, Served},
    stream::LlmStream,
};
use tower::ServiceExt;

use crate::{
    error::{ApiError, Dialect},
    keys::VirtualKey,
    state::{Gateway, Live},
    upstream::UpstreamTime,
};

/// The header that carries a request's id, taken from the request or made.
pub(crate) const REQUEST_ID: &str = "x-request-id";

/// The header that carries the gateway's own time on a call: its total less the upstream's.
pub(crate) const OVERHEAD: &str = "x-tollgate-overhead-ms";

/// The header that names the role a low budget moved a call to.
const DEGRADED: &str = "x-tollgate-degraded";

// The names above as header names, made once: a name given as text is parsed, and copied, on
// every insert.
pub(crate) const REQUEST_ID_NAME: HeaderName = HeaderName::from_static(REQUEST_ID);
pub(crate) const OVERHEAD_NAME: HeaderName = HeaderName::from_static(OVERHEAD);
const DEGRADED_NAME: HeaderName = HeaderName::from_static(DEGRADED);
const CACHE_NAME: HeaderName = HeaderName::from_static("x-tollgate-cache");
const DEPLOYMENT_NAME: HeaderName = HeaderName::from_static("x-tollgate-deployment");
const MOVES_NAME: HeaderName = HeaderName::from_static("x-tollgate-moves");

/// A call that is in: its key is known and its body read.
pub(crate) struct Accepted {
    pub(crate) live: Arc<Live>,
    pub(crate) key: Arc<VirtualKey>,
    pub(crate) headers: HeaderMap,
    pub(crate) body: Bytes,
    pub(crate) meta: CallMeta,
}

/// What the answer's headers need, whatever becomes of the call.
pub(crate) struct CallMeta {
    pub(crate) id: HeaderValue,
    pub(crate) dialect: Dialect,
    /// When the gateway had the whole request: what the client takes to send its body is not
    /// the gateway's overhead.
    pub(crate) started: Instant,
    pub(crate) upstream: UpstreamTime,
    /// How long the whole call may take: the gateway's bound, or the caller's, if shorter.
    pub(crate) timeout: Duration,
    /// The role a low budget moved the call to, said in `x-tollgate-degraded`.
    pub(crate) degraded: Option<HeaderValue>,
    /// The call's record, when the gateway keeps a call log.
    pub(crate) recorder: Option<CallRecorder>,
    /// What a door keeps from reading a call to writing its answer ([`FrontDoor::prepare`]).
    pub(crate) carry: http::Extensions,
}

impl CallMeta {
    /// The error as a response, with this call's headers.
    pub(crate) fn fail(&self, error: ApiError) -> Response {
        let response = error.into_response(self.dialect);
        self.finish(response, None)
    }

    /// `response` with the headers every answer carries: its request id, the gateway's
    /// overhead, and (for an answer from the stack) whether the cache answered.
    pub(crate) fn finish(&self, mut response: Response, cache: Option<&'static str>) -> Response {
        let overhead = self.started.elapsed().saturating_sub(self.upstream.get());
        if let Some(recorder) = &self.recorder {
            let status = response.status().as_u16();
            recorder.update(|record| {
                record.status = Some(status);
                record.overhead = overhead;
            });
        }
        let headers = response.headers_mut();
        headers.insert(REQUEST_ID_NAME, self.id.clone());
        headers.insert(OVERHEAD_NAME, overhead_value(overhead));
        if let Some(cache) = cache {
            headers.insert(CACHE_NAME, HeaderValue::from_static(cache));
        }
        if let Some(role) = &self.degraded {
            headers.insert(DEGRADED_NAME, role.clone());
        }
        crate::metrics::answered(self.dialect, response.status(), overhead);
        response
    }

    /// Marks `request` for the gateway's bookkeeping: its id, the clock its upstream time goes
    /// on, and its deadline (which a role's own `timeout` may bring nearer).
    pub(crate) fn tag(&self, request: &mut LlmRequest) {
        request.meta.request_id = self.id.to_str().ok().map(Into::into);
        request.extensions.insert(self.upstream.clone());
        request.extensions.insert(Deadline::after(self.timeout));
        if let Some(recorder) = &self.recorder {
            recorder.attach(request);
            let (user, tags) = caller_labels(request);
            recorder.update(|record| {
                record.user = user;
                record.tags = tags;
            });
        }
    }
}

/// The id the stamp layer gave a request, for its handler.
#[derive(Clone)]
pub(crate) struct RequestId(pub(crate) HeaderValue);

/// Milliseconds to three places (`0.064`), written without float formatting.
pub(crate) fn overhead_value(overhead: Duration) -> HeaderValue {
    let micros = overhead.as_micros();
    HeaderValue::try_from(format!("{}.{:03}", micros / 1_000, micros % 1_000)).expect("digits")
}

/// Identifies the caller and reads the body: 401 before anything else, 413 for a body over the
/// limit, 408 for one that does not arrive in time.
pub(crate) async fn accept(
    gateway: &Gateway,
    request: Request,
    dialect: Dialect,
) -> Result<Accepted, Response> {
    let (parts, body) = request.into_parts();
    let (live, key, mut meta) = open(gateway, &parts, dialect)?;
    let limit = live.config.gateway.max_body_bytes;
    if declared_length(&parts.headers).is_some_and(|length| length > limit as u64) {
        return Err(meta.fail(too_large(limit)));
    }
    let body = read_body(body, &live, &meta).await?;
    meta.started = Instant::now();
    Ok(Accepted {
        live,
        key,
        headers: parts.headers,
        body,
        meta,
    })
}

/// Reads a request's body whole: 413 for one over `max_body_bytes`, 408 for one that does not
/// arrive within `body_timeout`.
pub(crate) async fn read_body(body: Body, live: &Live, meta: &CallMeta) -> Result<Bytes, Response> {
    let limit = live.config.gateway.max_body_bytes;
    let read = Limited::new(body, limit).collect();
    match tokio::time::timeout(live.config.gateway.body_timeout, read).await {
        Ok(Ok(collected)) => Ok(collected.to_bytes()),
        Ok(Err(error)) if error.is::<LengthLimitError>() => Err(meta.fail(too_large(limit))),
        Ok(Err(error)) => Err(meta.fail(ApiError::invalid(format!(
            "the request body could not be read: {error}"
        )))),
        Err(_) => Err(meta.fail(ApiError::new(
            StatusCode::REQUEST_TIMEOUT,
            "invalid_request_error",
            "the request body did not arrive in time",
        ))),
    }
}

/// The length a request's `Content-Length` declares, if it declares one.
pub(crate) fn declared_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok())
}

/// Identifies the caller before its body is read: the request's id and record, its key (401
/// without a known one), and the time it may take.
#[allow(clippy::result_large_err)] // the refusal is the answer, sent at once: not worth a box
pub(crate) fn open(
    gateway: &Gateway,
    parts: &http::request::Parts,
    dialect: Dialect,
) -> Result<(Arc<Live>, Arc<VirtualKey>, CallMeta), Response> {
    let id = parts
        .extensions
        .get::<RequestId>()
        .map_or_else(|| HeaderValue::from_static("unknown"), |id| id.0.clone());
    let live = gateway.live();
    let recorder = gateway
        .call_logs()
        .map(|logs| logs.recorder(id.to_str().unwrap_or("unknown")));
    let mut meta = CallMeta {
        id,
        dialect,
        started: Instant::now(),
        upstream: UpstreamTime::default(),
        timeout: live.config.gateway.request_timeout,
        degraded: None,
        recorder,
        carry: http::Extensions::new(),
    };
    let Some(key) = presented_key(&parts.headers).and_then(|k| gateway.find_key(&live, k)) else {
        return Err(meta.fail(ApiError::unauthorized()));
    };
    if let Some(recorder) = &meta.recorder {
        let trace_id = crate::otel::trace_id();
        recorder.update(|record| {
            record.trace_id = trace_id;
            record.key_id = Some(key.name.clone());
            record.key_name = Some(key.label.clone().unwrap_or_else(|| key.name.clone()));
            record.team = Some(key.tenant.clone());
        });
    }
    match callers_timeout(&parts.headers) {
        Ok(Some(asked)) => meta.timeout = meta.timeout.min(asked),
        Ok(None) => {}
        Err(error) => return Err(meta.fail(error)),
    }
    Ok((live, key, meta))
}

/// The header a caller bounds its call with: seconds (`30`, `2.5`) or a duration (`30s`).
const TIMEOUT: &str = "x-tollgate-timeout";

/// The timeout the official OpenAI and Anthropic clients send, in seconds.
const CLIENT_TIMEOUT: &str = "x-stainless-timeout";

/// How long the caller will wait, if it says: `x-tollgate-timeout` (a bad one is a 400, naming
/// it), else the official clients' `x-stainless-timeout` (a bad one is ignored: the caller did
/// not write it). Either may only shorten the gateway's bound.
fn callers_timeout(headers: &HeaderMap) -> Result<Option<Duration>, ApiError> {
    let read = |name: &str| {
        let text = headers.get(name)?.to_str().ok().unwrap_or("").trim();
        let seconds = text
            .parse::<f64>()
            .ok()
            .filter(|s| s.is_finite() && *s > 0.0 && *s < 1e9)
            .map(Duration::from_secs_f64);
        Some(
            seconds
                .or_else(|| tollgate_core::duration::parse(text).ok())
                .filter(|d| !d.is_zero()),
        )
    };
    match read(TIMEOUT) {
        Some(Some(timeout)) => Ok(Some(timeout)),
        Some(None) => Err(ApiError::invalid(format!(
            "the {TIMEOUT} header must be a positive number of seconds or a duration such as 30s"
        ))
        .with_param(TIMEOUT)),
        None => Ok(read(CLIENT_TIMEOUT).flatten()),
    }
}

pub(crate) fn too_large(limit: usize) -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "invalid_request_error",
        format!("the request body is over the gateway's limit of {limit} bytes"),
    )
    .with_code("request_too_large")
}

/// The caller's id when it is a sensible one (printable, at most 128 bytes), else `None`.
pub(crate) fn request_id(headers: &HeaderMap) -> Option<HeaderValue> {
    let id = headers.get(REQUEST_ID_NAME)?;
    let ok =
        !id.is_empty() && id.len() <= 128 && id.as_bytes().iter().all(|b| b.is_ascii_graphic());
    ok.then(|| id.clone())
}

/// The key from `Authorization: Bearer <key>` or `x-api-key: <key>`.
pub(crate) fn presented_key(headers: &HeaderMap) -> Option<&str> {
    if let Some(value) = headers.get(header::AUTHORIZATION) {
        let value = value.to_str().ok()?;
        let (scheme, key) = value.split_once(' ')?;
        return scheme.eq_ignore_ascii_case("bearer").then(|| key.trim());
    }
    headers.get("x-api-key")?.to_str().ok().map(str::trim)
}

/// Checks that `key` may use what the request's `model` names, and points the request at it: a
/// role (`summarize`), or a provider's model (`openai/gpt-4o-mini`) the key lists. A model the
/// configuration does not have is a 404, one the key may not use a 403. Sets the tenant and
/// principal the key calls for.
pub(crate) fn authorize_model(
    live: &Live,
    key: &VirtualKey,
    request: &mut LlmRequest,
) -> Result<(), ApiError> {
    let model = std::mem::take(&mut request.model);
    let config = &live.config.stack;
    if !tollgate::is_model_id(&model) {
        // Not echoed: a name that is no id may carry anything.
        return Err(ApiError::invalid(format!(
            "`model` is not a model id: 1 to {} letters, digits and . _ - : / @ +",
            tollgate::MAX_MODEL_ID
        ))
        .with_param("model")
        .with_code("invalid_model"));
    }
    if config.roles.contains_key(&*model) {
        if !key.may_use_role(&model) {
            return Err(forbidden(&model));
        }
        request.meta.role = Some(model);
    } else if let Some((provider, name)) = model
        .split_once('/')
        .filter(|(provider, _)| config.providers.contains_key(*provider))
    {
        if !key.may_use_model(provider, name) {
            return Err(forbidden(&model));
        }
        request.provider = Some(provider.into());
        request.model = name.into();
    } else {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "invalid_request_error",
            format!("the model `{model}` does not exist or you do not have access to it"),
        )
        .with_param("model")
        .with_code("model_not_found"));
    }
    request.meta.tenant = Some(key.tenant.clone());
    request.meta.principal = Some(key.name.clone());
    Ok(())
}

fn forbidden(model: &str) -> ApiError {
    ApiError::new(
        StatusCode::FORBIDDEN,
        "permission_error",
        format!("this key may not use the model `{model}`"),
    )
    .with_param("model")
    .with_code("model_not_allowed")
}

/// Checks what a request may cost against the gateway's bounds: its output bound
/// (`max_output_tokens`) and the answers it asks for (`max_choices`).
pub(crate) fn check_bounds(live: &Live, request: &LlmRequest) -> Result<(), ApiError> {
    let server = &live.config.gateway;
    let params = &request.params;
    if let Some(asked) = params.max_tokens {
        let most = server.max_output_tokens;
        if u64::from(asked) > most {
            let field = params
                .max_tokens_name
                .map_or("max_tokens", |name| name.names()[0]);
            return Err(ApiError::invalid(format!(
                "{field}: {asked} is over the gateway's limit of {most}"
            ))
            .with_param(field));
        }
    }
    for (field, asked) in [("n", params.n), ("best_of", params.best_of)] {
        let most = server.max_choices;
        if let Some(asked) = asked.filter(|asked| *asked > most) {
            return Err(ApiError::invalid(format!(
                "{field}: {asked} is over the gateway's limit of {most} answers"
            ))
            .with_param(field));
        }
    }
    // Legacy completions answer each prompt that many times.
    let answers = request.answers();
    if answers > u64::from(server.max_choices) {
        return Err(ApiError::invalid(format!(
            "prompt: {} prompts of {} answers each are {answers} answers, over the gateway's limit of {}",
            request.messages.len(),
            params.choices(),
            server.max_choices
        ))
        .with_param("prompt"));
    }
    Ok(())
}

/// What a caller asked for besides the answer itself, read before the request goes down the stack.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Asked {
    /// A stream.
    pub(crate) stream: bool,
    /// Usage at the end of the stream (`stream_options.include_usage`).
    pub(crate) usage: bool,
}

/// A front door: how it reads a call, what it checks beyond the key and the model, and how it
/// writes the answer.
pub(crate) trait FrontDoor {
    /// The error shape it answers in.
    const DIALECT: Dialect;

    /// Reads a body (with the request's headers), naming the field at fault when it does not
    /// parse.
    fn parse(body: Bytes, headers: &HeaderMap) -> Result<LlmRequest, ApiError>;

    /// What else the routed request must satisfy (by default, the gateway's answer bound).
    fn check(live: &Live, request: &LlmRequest) -> Result<(), ApiError> {
        check_bounds(live, request)
    }

    /// What the door does with a routed, checked request that needs the gateway or the key,
    /// before the request goes down the stack (by default nothing): what it keeps for its
    /// answer goes in `meta.carry`.
    fn prepare(
        _gateway: &Gateway,
        _key: &VirtualKey,
        _request: &mut LlmRequest,
        _meta: &mut CallMeta,
    ) -> impl Future<Output = Result<(), ApiError>> + Send {
        std::future::ready(Ok(()))
    }

    /// The response for the stack's answer (without the headers every answer carries).
    fn answer(answer: LlmResponse, meta: &CallMeta, asked: Asked) -> Response;
}

/// Serves one call through door `D`: the key, the body, the model, the stack, the answer; in
/// a span that continues the caller's trace, when spans are exported.
pub(crate) async fn handle<D: FrontDoor + 'static>(
    State(gateway): State<Gateway>,
    request: Request,
) -> Response {
    use tracing::Instrument as _;
    let span = crate::otel::server_span(request.method(), request.uri().path(), request.headers());
    match span {
        Some(span) => serve_call::<D>(gateway, request).instrument(span).await,
        None => serve_call::<D>(gateway, request).await,
    }
}

async fn serve_call<D: FrontDoor + 'static>(gateway: Gateway, request: Request) -> Response {
    // All a call without an Idempotency-Key pays for them: this lookup.
    let route = (request.headers().contains_key(crate::idempotency::HEADER))
        .then(|| request.uri().path().to_owned());
    let Accepted {
        live,
        key,
        headers,
        body,
        meta,
    } = match accept(&gateway, request, D::DIALECT).await {
        Ok(accepted) => accepted,
        Err(response) => return response,
    };
    let lead = match (route, &live.idempotency, live.config.idempotency.get()) {
        (Some(route), Some(idempotency), Some(settings)) => {
            // Under its tenant too: a key's name given to another tenant later (a file key
            // renamed on reload) does not find the first holder's answers.
            let principal = format!("{}\n{}", key.tenant, key.name);
            let call = crate::idempotency::Call {
                principal: &principal,
                headers: &headers,
                route: &route,
                body: &body,
                settings,
                wait: meta.timeout,
            };
            match idempotency.begin(call).await {
                Ok(lead) => Some(lead),
                Err(crate::idempotency::Early::Replay(answer)) => return meta.finish(answer, None),
                Err(crate::idempotency::Early::Refused(error)) => return meta.fail(error),
            }
        }
        _ => None,
    };
    let accepted = Accepted {
        live,
        key,
        headers,
        body,
        meta,
    };
    match lead {
        None => run::<D>(gateway, accepted, None).await,
        // Kept for the call's retries: it runs to its end even if its caller leaves.
        Some(lead) => {
            let failed = || {
                ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "server_error",
                    "the call failed inside the gateway",
                )
                .into_response(D::DIALECT)
            };
            crate::idempotency::run_to_end(run::<D>(gateway, accepted, Some(lead)), failed).await
        }
    }
}

/// An accepted call, from reading its body to its answer (kept for `lead`'s key, if any).
async fn run<D: FrontDoor>(
    gateway: Gateway,
    Accepted {
        live,
        key,
        headers,
        body,
        mut meta,
    }: Accepted,
    lead: Option<crate::idempotency::Lead>,
) -> Response {
    let mut request = match D::parse(body, &headers) {
        Ok(request) => request,
        Err(error) => return meta.fail(error),
    };
    if let Err(error) =
        authorize_model(&live, &key, &mut request).and_then(|()| D::check(&live, &request))
    {
        return meta.fail(error);
    }
    if let Err(error) = D::prepare(&gateway, &key, &mut request, &mut meta).await {
        return meta.fail(error);
    }
    degrade(&gateway, &live, &key, &mut request, &mut meta).await;
    meta.tag(&mut request);
    let asked = Asked {
        stream: request.meta.stream,
        usage: request.params.include_usage(),
    };
    match live.stack.clone().oneshot(request).await {
        Ok(answer) => {
            let hit = answer
                .headers
                .get("x-cache")
                .is_some_and(|status| status == "HIT");
            let served = answer.extensions.get::<Served>().cloned();
            let response = D::answer(answer, &meta, asked);
            let mut response = meta.finish(response, Some(if hit { "HIT" } else { "MISS" }));
            if let Some(served) = served {
                served_headers(response.headers_mut(), &served);
            }
            match lead {
                Some(lead) => lead.watch(response),
                None => response,
            }
        }
        Err(error) => {
            count_denial(&live, &key.tenant, &error);
            meta.fail(ApiError::from_llm(&error))
        }
    }
}

/// Counts a refusal by the limiter itself for `tenant` (the live page's denials; a provider's
/// 429 is not one).
pub(crate) fn count_denial(live: &Live, tenant: &Arc<str>, error: &tollgate::LlmError) {
    if error
        .extensions()
        .get::<tollgate::ratelimit::Denial>()
        .is_some()
    {
        let mut denials = live.denials.lock().unwrap_or_else(|e| e.into_inner());
        *denials.entry(tenant.clone()).or_default() += 1;
    }
}

/// Moves a call to the role a low budget names, if one does, and counts it.
async fn degrade(
    gateway: &Gateway,
    live: &Live,
    key: &VirtualKey,
    request: &mut LlmRequest,
    meta: &mut CallMeta,
) {
    let Some(role) = request.meta.role.clone() else {
        return;
    };
    let records = gateway.records();
    let Some(to) = crate::degrade::moved_to(live, records.as_deref(), key, &role).await else {
        return;
    };
    // Role names come from the configuration; one that is no header value is not said.
    meta.degraded = HeaderValue::from_str(&to).ok();
    if let Some(recorder) = &meta.recorder {
        recorder.update(|record| record.degraded_from = Some(role.clone()));
    }
    metrics::counter!("tollgate_degraded_calls_total", "from" => role.to_string(), "to" => to.clone())
        .increment(1);
    request.meta.role = Some(to.into());
}

/// The caller's `user` field (Anthropic's `metadata.user_id`), and its `metadata` tags (string
/// values only, at most 16 of them, each cut to 256 bytes): what a call log files a call under.
fn caller_labels(
    request: &LlmRequest,
) -> (Option<String>, std::collections::BTreeMap<String, String>) {
    const MOST: usize = 16;
    let cut = |text: &str| tollgate::log::capped(text.to_owned(), 256);
    let extra = &request.params.extra;
    let metadata = extra.get("metadata").and_then(serde_json::Value::as_object);
    let user = extra
        .get("user")
        .and_then(serde_json::Value::as_str)
        .or_else(|| metadata?.get("user_id")?.as_str())
        .map(cut);
    let tags = metadata
        .into_iter()
        .flatten()
        .filter_map(|(name, value)| Some((cut(name), cut(value.as_str()?))))
        .take(MOST)
        .collect();
    (user, tags)
}

/// Which deployment answered, and after how many moves (a cache hit has none).
fn served_headers(headers: &mut HeaderMap, served: &Served) {
    // Names come from the configuration; one that is no header value is left out.
    if let Ok(name) = HeaderValue::from_str(&served.deployment) {
        headers.insert(DEPLOYMENT_NAME, name);
    }
    headers.insert(MOVES_NAME, HeaderValue::from(served.moves));
}

/// The answer's stream; for a caller who asked for one from a service that answered whole (a
/// simulated provider, a service of one's own), the whole answer replayed as one.
pub(crate) fn stream_of(answer: &mut LlmResponse, streaming: bool) -> Option<LlmStream> {
    answer
        .take_stream()
        .or_else(|| streaming.then(|| LlmStream::replay(answer)))
}

/// A JSON body, for an answer that is whole.
pub(crate) fn json_response(body: impl Into<Body>) -> Response {
    let mut response = Response::new(body.into());
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_overhead_header_is_milliseconds_to_three_places() {
        let said = |micros| overhead_value(Duration::from_micros(micros));
        assert_eq!(said(0), "0.000");
        assert_eq!(said(64), "0.064");
        assert_eq!(said(1_234_005), "1234.005");
        assert_eq!(
            overhead_value(Duration::MAX),
            format!(
                "{}.{:03}",
                Duration::MAX.as_micros() / 1_000,
                Duration::MAX.as_micros() % 1_000
            )
            .as_str()
        );
    }
}
