//! The rest of `/v1/` passed through to one OpenAI-compatible provider (the `passthrough`
//! section): files, batches, images, audio and moderations. The caller's key is checked and
//! replaced by the provider's, the tenant's request limits apply, the body streams up within
//! `max_body_bytes` and the answer streams back; what has a price is billed where the answer
//! says the quantity (`price.rs`).

use std::{
    sync::{Arc, Mutex},
    time::Instant,
};

use axum::{
    Router,
    body::Body,
    extract::{Request, State},
    response::Response,
    routing::{get, post},
};
use bytes::Bytes;
use http::{HeaderMap, HeaderName, StatusCode, header};
use http_body_util::{BodyExt, Limited};
use tollgate::LlmRequest;

use crate::{
    call,
    error::{ApiError, Dialect},
    state::Gateway,
};

mod price;

/// The pass-through routes, each with the methods OpenAI serves it with.
pub(crate) fn routes() -> Router<Gateway> {
    Router::new()
        .route("/v1/files", get(handle).post(handle))
        .route("/v1/files/{id}", get(handle).delete(handle))
        .route("/v1/files/{id}/content", get(handle))
        .route("/v1/batches", get(handle).post(handle))
        .route("/v1/batches/{id}", get(handle))
        .route("/v1/batches/{id}/cancel", post(handle))
        .route("/v1/images/generations", post(handle))
        .route("/v1/audio/transcriptions", post(handle))
        .route("/v1/audio/speech", post(handle))
        .route("/v1/moderations", post(handle))
}

/// What the call log files a pass-through call under: `files`, `audio.transcriptions`, ...
fn operation(path: &str) -> &'static str {
    let rest = path.trim_start_matches("/v1/");
    match rest.split('/').next().unwrap_or("") {
        "files" => "files",
        "batches" => "batches",
        "images" => "images.generations",
        "moderations" => "moderations",
        _ if rest.starts_with("audio/transcriptions") => "audio.transcriptions",
        _ => "audio.speech",
    }
}

/// Headers that concern one connection, not the call (RFC 9110 §7.6.1), and the caller's
/// credentials, none of which go on; and `accept-encoding`, so that an answer the gateway
/// reads for its price comes uncompressed.
fn dropped(name: &HeaderName) -> bool {
    matches!(
        name.as_str(),
        "connection"
            | "keep-alive"
            | "proxy-connection"
            | "proxy-authenticate"
            | "proxy-authorization"
            | "te"
            | "trailer"
            | "transfer-encoding"
            | "upgrade"
            | "host"
            | "authorization"
            | "x-api-key"
            | "accept-encoding"
            | "x-tollgate-timeout"
    )
}

/// The caller's headers that go on: not [`dropped`], and none that names which of the
/// provider's organisations or projects pays (`OpenAI-Organization`, `OpenAI-Project`) or that
/// the provider's configuration sets (`own`): those are the gateway's to say.
fn forwarded(headers: &HeaderMap, own: &[HeaderName]) -> HeaderMap {
    let mut out = HeaderMap::with_capacity(headers.len());
    for (name, value) in headers {
        let gateways =
            matches!(name.as_str(), "openai-organization" | "openai-project") || own.contains(name);
        if !dropped(name) && !gateways {
            out.append(name.clone(), value.clone());
        }
    }
    out
}

/// The most of an answer read to find what it bills: images' answers carry them base64.
const PRICED_ANSWER_BYTES: usize = 64 << 20;

/// The most of a failure's answer read for what it says.
const FAILURE_BYTES: usize = 64 << 10;

async fn handle(State(gateway): State<Gateway>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let path = parts.uri.path().to_owned();
    let live = gateway.live();
    let Some(passthrough) = live.passthrough.as_ref() else {
        return ApiError::new(
            StatusCode::NOT_FOUND,
            "invalid_request_error",
            format!(
                "{path} is not served: the gateway's configuration has no `passthrough` provider"
            ),
        )
        .with_code("unknown_url")
        .into_response(Dialect::OpenAi);
    };
    let (live, key, meta) = match call::open(&gateway, &parts, Dialect::OpenAi) {
        Ok(opened) => opened,
        Err(response) => return response,
    };
    if !passthrough.section.lets_in(&key.tenant) {
        return meta.fail(ApiError::new(
            StatusCode::FORBIDDEN,
            "permission_error",
            "this key's tenant may not use the pass-through routes (the `passthrough` section's `tenants`)",
        ));
    }
    // An id is letters, digits, `-` and `_` (`file-abc`, `batch_abc`): nothing a URL parser
    // would read as another path (`..`, an encoded slash).
    let plain = |segment: &str| {
        !segment.is_empty()
            && segment
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    };
    if !path.trim_start_matches("/v1/").split('/').all(plain) {
        return meta.fail(
            ApiError::new(
                StatusCode::NOT_FOUND,
                "invalid_request_error",
                "no such object: an id is letters, digits, '-' and '_'",
            )
            .with_code("unknown_url"),
        );
    }
    let operation = operation(&path);
    let limit = live.config.gateway.max_body_bytes;
    if call::declared_length(&parts.headers).is_some_and(|length| length > limit as u64) {
        return meta.fail(call::too_large(limit));
    }
    let mut counted = LlmRequest::new("", vec![]);
    counted.provider = Some(passthrough.provider.clone());
    counted.meta.tenant = Some(key.tenant.clone());
    counted.meta.principal = Some(key.name.clone());
    counted.meta.request_id = meta.id.to_str().ok().map(Into::into);
    if let Some(recorder) = &meta.recorder {
        recorder.attach(&mut counted);
        let provider = passthrough.provider.clone();
        recorder.update(|record| {
            record.operation = operation.into();
            record.provider = Some(provider);
        });
    }
    // An images call's JSON body is small and says what it may cost: read first, so that
    // cost is held against the caller's budgets before the call goes.
    let (body, hold, asked) = if operation == "images.generations" {
        let asked = match call::read_body(body, &live, &meta).await {
            Ok(asked) => asked,
            Err(response) => return response,
        };
        let hold = price::images_hold(live.stack.prices(), &asked);
        (Body::from(asked.clone()), hold, Some(asked))
    } else {
        (body, tollgate::MicroUsd::ZERO, None)
    };
    let outside = match live.stack.admit_outside(&counted, hold).await {
        Ok(outside) => outside,
        Err(error) => {
            call::count_denial(&live, &key.tenant, &error);
            return meta.fail(ApiError::from_llm(&error));
        }
    };
    let priced = matches!(
        operation,
        "images.generations" | "audio.transcriptions" | "moderations"
    );
    // The body streams up as it arrives; a copy of its two ends is kept to price the call.
    let sniffed = Arc::new(Mutex::new(price::Kept::default()));
    let over = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let upload = {
        let (sniffed, over) = (sniffed.clone(), over.clone());
        let frames = Limited::new(body, limit)
            .map_frame(move |frame| {
                if let Some(bytes) = frame.data_ref().filter(|_| priced) {
                    sniffed.lock().unwrap_or_else(|e| e.into_inner()).add(bytes);
                }
                frame
            })
            .map_err(move |error| {
                if error.is::<http_body_util::LengthLimitError>() {
                    over.store(true, std::sync::atomic::Ordering::Relaxed);
                }
                error
            })
            .into_data_stream();
        reqwest::Body::wrap_stream(frames)
    };
    let target = parts
        .uri
        .path_and_query()
        .map_or(path.as_str(), |p| p.as_str())
        .trim_start_matches("/v1/")
        .to_owned();
    let sent = Instant::now();
    let call = passthrough.client.forward(
        parts.method.clone(),
        &target,
        forwarded(&parts.headers, &passthrough.own_headers),
        upload,
    );
    let answer = match tokio::time::timeout(meta.timeout, call).await {
        Ok(Ok(answer)) => answer,
        Ok(Err(_)) if over.load(std::sync::atomic::Ordering::Relaxed) => {
            return meta.fail(call::too_large(limit));
        }
        Ok(Err(error)) => return meta.fail(ApiError::from_llm(&error)),
        Err(_) => {
            return meta.fail(ApiError::from_llm(&tollgate::LlmError::new(
                tollgate::ErrorKind::Timeout,
                "the pass-through call did not finish in time",
            )));
        }
    };
    let status = answer.status();
    if matches!(status.as_u16(), 401 | 403 | 407 | 429) || status.is_server_error() {
        // What the provider says of its own failure (its key refused, its organisation's
        // limits, its outage) is the gateway's to read, not the caller's: it reaches the caller
        // as for a chat call. A refusal of the caller's request (a 400, a 404 for a file it
        // named) comes as it came.
        let headers = answer.headers().clone();
        let body = read_bounded(answer, FAILURE_BYTES)
            .await
            .unwrap_or_default();
        meta.upstream.add(sent.elapsed());
        let error = passthrough.client.refusal(status, &headers, &body);
        return meta.fail(ApiError::from_llm(&error));
    }
    let mut headers = answer.headers().clone();
    retain_forwarded(&mut headers);
    if !priced {
        meta.upstream.add(sent.elapsed());
        outside.bill(tollgate::Usage::default(), None);
        let mut response = Response::new(Body::new(reqwest::Body::from(answer)));
        *response.status_mut() = status;
        *response.headers_mut() = headers;
        return meta.finish(response, None);
    }
    let body = match read_bounded(answer, PRICED_ANSWER_BYTES).await {
        Ok(body) => body,
        Err(error) => {
            // The provider answered, and bills: what was held is spent.
            outside.bill(tollgate::Usage::default(), Some(hold));
            return meta.fail(ApiError::from_llm(&error));
        }
    };
    meta.upstream.add(sent.elapsed());
    // An images call's whole body was read; of others, its two ends were kept as it streamed up.
    let sniffed = match asked {
        Some(asked) => price::Kept::whole(&asked),
        None => std::mem::take(&mut *sniffed.lock().unwrap_or_else(|e| e.into_inner())),
    };
    let bill = price::bill(
        live.stack.prices(),
        &passthrough.provider,
        operation,
        (&parts.headers, &sniffed),
        &body,
    );
    let outside = match bill.model {
        Some(model) => {
            if let Some(recorder) = &meta.recorder {
                recorder.update(|record| record.model = Some(model.as_str().into()));
            }
            outside.with_model(model)
        }
        None => outside,
    };
    outside.bill(bill.usage, bill.cost);
    headers.remove(header::CONTENT_LENGTH);
    let mut response = Response::new(Body::from(body));
    *response.status_mut() = status;
    *response.headers_mut() = headers;
    meta.finish(response, None)
}

/// An answer read whole (for its price, or for what a failure says), up to `most` bytes.
async fn read_bounded(answer: reqwest::Response, most: usize) -> Result<Bytes, tollgate::LlmError> {
    let body = reqwest::Body::from(answer);
    Limited::new(body, most)
        .collect()
        .await
        .map(|collected| collected.to_bytes())
        .map_err(|error| {
            tollgate::LlmError::new(
                tollgate::ErrorKind::Server,
                format!("the pass-through provider's answer could not be read: {error}"),
            )
        })
}

/// Drops an answer's hop-by-hop headers, and what concerns the provider's account, not the
/// caller (its cookies, which organisation and project it billed).
fn retain_forwarded(headers: &mut HeaderMap) {
    let account = |name: &HeaderName| {
        matches!(
            name.as_str(),
            "set-cookie" | "openai-organization" | "openai-project"
        )
    };
    let names: Vec<HeaderName> = headers
        .keys()
        .filter(|n| dropped(n) || account(n))
        .cloned()
        .collect();
    for name in names {
        headers.remove(name);
    }
}
