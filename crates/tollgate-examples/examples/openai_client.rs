//! A real OpenAI-compatible client (reqwest with rustls) inside the full tollgate stack.
//!
//! `OPENAI_BASE_URL=https://api.openai.com/v1 OPENAI_API_KEY=sk-... OPENAI_MODEL=gpt-4o-mini
//! cargo run -p tollgate-examples --example openai_client` talks to OpenAI; any compatible server
//! works (`http://localhost:11434/v1` for Ollama, `http://localhost:8000/v1` for vLLM). Without
//! `OPENAI_BASE_URL` it starts a small compatible server of its own on a free port, which answers
//! its first request with `429` and `Retry-After: 1`, so the run shows a retry, a cache hit and the
//! provider's rate-limit headers with no network and no key.

use std::{
    sync::{
        Arc,
        atomic::{AtomicU32, Ordering},
    },
    time::Duration,
};

use axum::{Json, Router, http::StatusCode, response::IntoResponse, routing::post};
use serde_json::{Value, json};
use tollgate::{
    ByProvider, ByTenant, LlmRequest, Message, ServiceBuilderExt,
    cache::{CacheConfig, CacheLayer, CacheStatus, MemoryStore},
    circuit_breaker::{CircuitBreakerConfig, CircuitBreakerLayer, CircuitBreakers},
    health::{HealthLayer, HealthStats},
    providers::{OpenAiCompatible, RateLimitSnapshot},
    ratelimit::{Quota, RateLimitLayer, RateLimiter, Tier},
    retry::{Attempts, RetryLayer, RetryPolicy},
};
use tower::{ServiceBuilder, ServiceExt};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let (base_url, model) = match std::env::var("OPENAI_BASE_URL") {
        Ok(url) => (
            url,
            std::env::var("OPENAI_MODEL").unwrap_or("gpt-4o-mini".into()),
        ),
        Err(_) => (local_server().await, "local-model".to_owned()),
    };
    let mut client = OpenAiCompatible::builder(&base_url).timeout(Duration::from_secs(60));
    if let Ok(key) = std::env::var("OPENAI_API_KEY") {
        client = client.api_key(key);
    }
    let client = client.build()?;

    let stats = HealthStats::new(Default::default())?;
    let limiter = RateLimiter::new(Quota::new([
        Tier::requests(60, Duration::from_secs(60)).with_burst(10),
        Tier::tokens(200_000, Duration::from_secs(3_600)),
    ])?);
    let breakers = CircuitBreakers::new(CircuitBreakerConfig::default())?;
    let stack = ServiceBuilder::new()
        .map_request(|request: LlmRequest| request.with_tenant("acme").with_provider("openai"))
        .health(HealthLayer::builder(stats.clone()).key(ByProvider).build())
        .cache(CacheLayer::new(
            MemoryStore::new(16 << 20),
            CacheConfig::default(),
        )?)
        .rate_limits(RateLimitLayer::new(limiter, ByTenant))
        .retries(RetryLayer::new(
            RetryPolicy::builder()
                .max_retries(3)
                .base_delay(Duration::from_millis(500))
                .deadline(Duration::from_secs(60))
                .build()?,
        ))
        .circuit_breaker(
            CircuitBreakerLayer::builder(breakers)
                .key(ByProvider)
                .build(),
        )
        .service(client);

    let question = LlmRequest::new(
        model.as_str(),
        vec![
            Message::system("Answer in one sentence."),
            Message::user("What is a tollgate?"),
        ],
    )
    .with_max_tokens(60);
    for round in 1..=2 {
        let answer = stack.clone().oneshot(question.clone()).await?;
        let cache = match answer.extensions.get::<CacheStatus>() {
            Some(CacheStatus::Hit { .. }) => "cache hit",
            _ => "from the provider",
        };
        println!(
            "#{round} ({cache}, {} attempt(s), {} tokens): {}",
            Attempts::of(&answer),
            answer.usage.total(),
            answer.content()
        );
        if let Some(limits) = answer.extensions.get::<RateLimitSnapshot>() {
            println!(
                "   provider says: {:?} requests left",
                limits.requests.remaining
            );
        }
    }
    if let Some(component) = stats.component_snapshot("openai") {
        println!("health of openai: {:?}", component.status);
    }
    Ok(())
}

/// A chat-completions server on a free port: `429` with `Retry-After: 1` once, then answers.
async fn local_server() -> String {
    let calls = Arc::new(AtomicU32::new(0));
    let app = Router::new().route(
        "/v1/chat/completions",
        post(move |Json(body): Json<Value>| {
            let calls = calls.clone();
            async move {
                if calls.fetch_add(1, Ordering::Relaxed) == 0 {
                    return (
                        StatusCode::TOO_MANY_REQUESTS,
                        [("retry-after", "1")],
                        Json(json!({ "error": { "message": "slow down", "type": "rate_limit" } })),
                    )
                        .into_response();
                }
                let answer = json!({
                    "object": "chat.completion",
                    "model": body["model"],
                    "choices": [ { "index": 0, "finish_reason": "stop",
                        "message": { "role": "assistant", "content": "A tollgate is a barrier where a toll is paid before passing." } } ],
                    "usage": { "prompt_tokens": 24, "completion_tokens": 14, "total_tokens": 38 }
                });
                (
                    [("x-ratelimit-remaining-requests", "499"), ("x-ratelimit-limit-requests", "500")],
                    Json(answer),
                )
                    .into_response()
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("binds");
    let url = format!("http://{}/v1", listener.local_addr().expect("bound"));
    tokio::spawn(async move { axum::serve(listener, app).await });
    url
}
