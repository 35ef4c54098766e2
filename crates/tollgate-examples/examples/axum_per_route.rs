//! An OpenAI-compatible gateway in axum where each route carries its own tollgate stack.
//!
//! - `POST /strict/v1/chat/completions`: answers cached per tenant, then 3 requests a minute per
//!   tenant; past that, `429 Too Many Requests` with `Retry-After`.
//! - `POST /relaxed/v1/chat/completions`: no limit and no cache, retries on transient failures.
//!
//! The tenant comes from the API key (`Authorization: Bearer <key>`), looked up in a table; an
//! unknown key is `401`. Errors become the HTTP status a client expects, with `Retry-After` when
//! there is one, in OpenAI's error shape. The upstream is the simulated provider, or any
//! OpenAI-compatible server when `OPENAI_BASE_URL` is set.
//!
//! `cargo run -p tollgate-examples --example axum_per_route` starts it on a free port, sends a few requests to each
//! route, prints what came back and exits; add `-- --serve` to keep serving on 127.0.0.1:8080.
//! `tests/axum_per_route.rs` drives the same app over HTTP.

use std::{collections::HashMap, sync::Arc, time::Duration};

use axum::{
    Json, Router,
    extract::State,
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
    routing::{get, post},
};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use serde_json::{Value, json};
use tollgate::{
    ByTenant, ErrorKind, LlmError, LlmRequest, LlmResponse, ServiceBuilderExt,
    cache::{CacheConfig, CacheLayer, MemoryStore},
    ratelimit::{Quota, RateLimitLayer, RateLimiter, Tier},
    retry::{RetryLayer, RetryPolicy},
};
use tower::{Service, ServiceBuilder, ServiceExt, util::BoxCloneSyncService};

/// A route's whole stack, boxed so routes with different layers have one type.
type Stack = BoxCloneSyncService<LlmRequest, LlmResponse, LlmError>;

#[derive(Clone)]
struct Route {
    stack: Stack,
    tenants: Arc<HashMap<String, String>>,
}

/// The app over `upstream`, with API keys mapped to tenants by `tenants`, and `/metrics` in
/// Prometheus's text from `metrics` (the handle of the recorder installed before the layers were
/// built, which they record into).
pub(crate) fn app<S>(
    upstream: S,
    tenants: HashMap<String, String>,
    metrics: PrometheusHandle,
) -> Router
where
    S: Service<LlmRequest, Response = LlmResponse, Error = LlmError>
        + Clone
        + Send
        + Sync
        + 'static,
    S::Future: Send + 'static,
{
    let tenants = Arc::new(tenants);
    let limiter = RateLimiter::new(
        Quota::new([Tier::requests(3, Duration::from_secs(60))]).expect("a valid quota"),
    );
    let strict = ServiceBuilder::new()
        .cache(
            CacheLayer::new(MemoryStore::new(16 << 20), CacheConfig::default())
                .expect("a valid cache configuration"),
        )
        .rate_limits(RateLimitLayer::new(limiter, ByTenant))
        .service(upstream.clone());
    let relaxed = ServiceBuilder::new()
        .retries(RetryLayer::new(
            RetryPolicy::builder()
                .max_retries(2)
                .base_delay(Duration::from_millis(200))
                .build()
                .expect("a valid policy"),
        ))
        .service(upstream);
    let route = |stack: Stack| Route {
        stack,
        tenants: tenants.clone(),
    };
    Router::new()
        .route(
            "/strict/v1/chat/completions",
            post(complete).with_state(route(BoxCloneSyncService::new(strict))),
        )
        .route(
            "/relaxed/v1/chat/completions",
            post(complete).with_state(route(BoxCloneSyncService::new(relaxed))),
        )
        .route(
            "/metrics",
            get(move || std::future::ready(metrics.render())),
        )
}

/// The process's `metrics` recorder: Prometheus's, installed once, before any layer is built.
pub(crate) fn prometheus() -> PrometheusHandle {
    static HANDLE: std::sync::OnceLock<PrometheusHandle> = std::sync::OnceLock::new();
    HANDLE
        .get_or_init(|| {
            PrometheusBuilder::new()
                .install_recorder()
                .expect("no other recorder is installed")
        })
        .clone()
}

async fn complete(State(route): State<Route>, headers: HeaderMap, body: Json<Value>) -> Response {
    let key = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    let Some(tenant) = key.and_then(|key| route.tenants.get(key)) else {
        return error_response(&LlmError::new(ErrorKind::Auth, "unknown API key"), true);
    };
    let request = match serde_json::from_value::<LlmRequest>(body.0) {
        Ok(request) => request.with_tenant(tenant.as_str()),
        Err(e) => {
            return error_response(
                &LlmError::new(ErrorKind::InvalidRequest, format!("bad request body: {e}")),
                true,
            );
        }
    };
    match route.stack.oneshot(request).await {
        Ok(answer) => completion_response(&answer),
        Err(error) => error_response(&error, false),
    }
}

/// The answer in OpenAI's chat-completion shape, with the cache's `x-cache` mark passed on.
fn completion_response(answer: &LlmResponse) -> Response {
    let body = json!({
        "object": "chat.completion",
        "model": answer.model,
        "choices": [ {
            "index": 0,
            "message": { "role": "assistant", "content": answer.content() },
            "finish_reason": answer.finish_reason().as_ref().map_or("stop", |r| r.as_str()),
        } ],
        "usage": {
            "prompt_tokens": answer.usage.input_tokens,
            "completion_tokens": answer.usage.output_tokens,
            "total_tokens": answer.usage.total(),
        },
    });
    let mut response = (StatusCode::OK, Json(body)).into_response();
    if let Some(mark) = answer.headers.get(tollgate::cache::X_CACHE) {
        response
            .headers_mut()
            .insert(tollgate::cache::X_CACHE, mark.clone());
    }
    response
}

/// The status a client expects for `error`. `from_client` errors are the caller's own (bad key,
/// bad body); the others happened on the way to the provider, where an upstream 401 is this
/// gateway's misconfiguration (502), not the caller's.
fn error_response(error: &LlmError, from_client: bool) -> Response {
    let status = match error.kind() {
        ErrorKind::RateLimited | ErrorKind::BudgetExceeded => StatusCode::TOO_MANY_REQUESTS,
        ErrorKind::Auth if from_client => StatusCode::UNAUTHORIZED,
        ErrorKind::InvalidRequest | ErrorKind::ContextWindow => StatusCode::BAD_REQUEST,
        ErrorKind::ContentFilter => StatusCode::UNPROCESSABLE_ENTITY,
        ErrorKind::Overloaded | ErrorKind::CircuitOpen | ErrorKind::Unavailable => {
            StatusCode::SERVICE_UNAVAILABLE
        }
        ErrorKind::Timeout => StatusCode::GATEWAY_TIMEOUT,
        _ => StatusCode::BAD_GATEWAY,
    };
    let body = json!({ "error": { "message": error.to_string(), "type": error.kind().as_str() } });
    let mut response = (status, Json(body)).into_response();
    if let Some(after) = error.retry_after() {
        // Whole seconds, rounded up: a client that waits this long finds room.
        let seconds = after.as_secs() + u64::from(after.subsec_nanos() > 0);
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
    }
    response
}

#[allow(dead_code)] // the test includes this file for `app` alone
#[tokio::main]
async fn main() {
    let tenants = HashMap::from([
        ("key-acme".to_owned(), "acme".to_owned()),
        ("key-globex".to_owned(), "globex".to_owned()),
    ]);
    let app = app(upstream(), tenants, prometheus());
    let serve = std::env::args().any(|a| a == "--serve");
    let address = if serve {
        "127.0.0.1:8080"
    } else {
        "127.0.0.1:0"
    };
    let listener = tokio::net::TcpListener::bind(address).await.expect("binds");
    let url = format!("http://{}", listener.local_addr().expect("bound"));
    let server = tokio::spawn(async move { axum::serve(listener, app).await });
    if serve {
        println!("serving on {url} (keys: key-acme, key-globex)");
        server.await.expect("server task").expect("serves");
        return;
    }
    // Four different questions on the strict route (the fourth is over the limit), one repeated
    // (a cache hit costs no quota), and the relaxed route, which has no limit.
    let calls = [
        ("strict", "What is a tollgate?"),
        ("strict", "Who pays at a tollgate?"),
        ("strict", "When were tollgates invented?"),
        ("strict", "Are tollgates still used?"),
        ("strict", "What is a tollgate?"),
        ("relaxed", "Are tollgates still used?"),
    ];
    for (route, prompt) in calls {
        let (status, retry_after, cache, body) = send(&url, route, "key-acme", prompt).await;
        println!(
            "POST /{route} {prompt:?}: {status} retry-after={retry_after:?} x-cache={cache:?}"
        );
        println!("  {body}");
    }
    server.abort();
}

/// The simulated provider, or the OpenAI-compatible server at `OPENAI_BASE_URL`.
#[allow(dead_code)]
fn upstream() -> BoxCloneSyncService<LlmRequest, LlmResponse, LlmError> {
    if let Ok(base) = std::env::var("OPENAI_BASE_URL") {
        let mut client = tollgate::providers::OpenAiCompatible::builder(&base);
        if let Ok(key) = std::env::var("OPENAI_API_KEY") {
            client = client.api_key(key);
        }
        return BoxCloneSyncService::new(client.build().expect("a valid OPENAI_BASE_URL"));
    }
    BoxCloneSyncService::new(tollgate::SimulatedProvider::new())
}

/// One chat request over plain HTTP/1.1 (no client library needed for a demo).
#[allow(dead_code)]
pub(crate) async fn send(
    url: &str,
    route: &str,
    key: &str,
    prompt: &str,
) -> (u16, Option<String>, Option<String>, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let body = json!({ "model": "sim", "messages": [ { "role": "user", "content": prompt } ] })
        .to_string();
    let host = url.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(host)
        .await
        .expect("connects");
    let request = format!(
        "POST /{route}/v1/chat/completions HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {key}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).await.expect("sends");
    let mut raw = String::new();
    stream.read_to_string(&mut raw).await.expect("reads");
    let (head, body) = raw.split_once("\r\n\r\n").unwrap_or((&raw, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let header = |name: &str| {
        head.lines().find_map(|line| {
            let (n, v) = line.split_once(':')?;
            n.eq_ignore_ascii_case(name).then(|| v.trim().to_owned())
        })
    };
    (
        status,
        header("retry-after"),
        header("x-cache"),
        body.to_owned(),
    )
}
