//! Shared helpers for the router's tests: simulated deployments, provider headers, requests.
#![allow(dead_code, unused_imports, unreachable_pub)]

use std::time::{Duration, SystemTime};

use tollgate_core::{
    LlmError, LlmRequest, LlmResponse, Message, RateLimitSnapshot, SimulatedProvider,
    clock::TokioClock, http::HeaderMap,
};
use tollgate_router::{Deployment, Group, Router, RouterBuilder, RouterConfig, Served};
use tower::{ServiceExt, util::BoxCloneSyncService};

pub type Boxed = BoxCloneSyncService<LlmRequest, LlmResponse, LlmError>;

/// A router builder on tokio's (paused) clock, with a fixed seed.
pub fn builder() -> RouterBuilder<Boxed> {
    builder_with(RouterConfig {
        seed: Some(7),
        ..RouterConfig::default()
    })
}

pub fn builder_with(config: RouterConfig) -> RouterBuilder<Boxed> {
    Router::builder().config(config).clock(TokioClock::new())
}

pub fn deployment(name: &str, provider: &SimulatedProvider) -> Deployment<Boxed> {
    Deployment::new(name, BoxCloneSyncService::new(provider.clone())).model(format!("{name}-model"))
}

/// What a provider's rate-limit headers say: `remaining` of `limit` requests, full in `reset`.
pub fn snapshot(limit: u64, remaining: u64, reset: &str) -> RateLimitSnapshot {
    let mut headers = HeaderMap::new();
    headers.insert("x-ratelimit-limit-requests", limit.into());
    headers.insert("x-ratelimit-remaining-requests", remaining.into());
    headers.insert("x-ratelimit-reset-requests", reset.parse().unwrap());
    RateLimitSnapshot::from_headers(&headers, SystemTime::now()).unwrap()
}

/// `provider`, with `headers(n)` attached to its n-th answer (0-based) when it gives some.
pub fn with_limits(
    name: &str,
    provider: &SimulatedProvider,
    headers: impl Fn(u64) -> Option<RateLimitSnapshot> + Clone + Send + Sync + 'static,
) -> Deployment<Boxed> {
    let counter = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let service = provider
        .clone()
        .map_response(move |mut answer: LlmResponse| {
            let n = counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            if let Some(snapshot) = headers(n) {
                answer.extensions.insert(snapshot);
            }
            answer
        });
    Deployment::new(name, BoxCloneSyncService::new(service)).model(format!("{name}-model"))
}

pub fn ask() -> LlmRequest {
    LlmRequest::new("", vec![Message::user("hello there")])
}

pub fn ask_role(role: &str) -> LlmRequest {
    ask().with_role(role)
}

/// Which deployment answered, and after how many moves.
pub fn served(answer: &LlmResponse) -> (String, u32) {
    let served = answer
        .extensions
        .get::<Served>()
        .expect("the router marks answers");
    (served.deployment.to_string(), served.moves)
}

pub async fn call(router: &Router<Boxed>, request: LlmRequest) -> Result<LlmResponse, LlmError> {
    router.clone().oneshot(request).await
}

pub async fn advance(by: Duration) {
    tokio::time::advance(by).await;
}
