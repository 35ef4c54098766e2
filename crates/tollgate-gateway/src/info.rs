//! The read-only endpoints: `/v1/models`, `/health`, `/health/live`, `/health/ready`, `/metrics`,
//! and the 404 for everything else.

use std::collections::BTreeMap;

use axum::{
    Json,
    extract::{Request, State},
    response::{IntoResponse, Response},
};
use http::{HeaderValue, StatusCode, header};
use serde_json::{Value, json};
use tollgate::health::Status;

use crate::{
    call,
    error::{ApiError, Dialect},
    state::{Gateway, Live},
};

/// `GET /v1/models`: the roles the key may name, then the `provider/model` names it may use.
pub(crate) async fn models(State(gateway): State<Gateway>, request: Request) -> Response {
    let accepted = match call::accept(&gateway, request, Dialect::OpenAi).await {
        Ok(accepted) => accepted,
        Err(response) => return response,
    };
    let config = &accepted.live.config.stack;
    let key = &accepted.key;
    let mut data = Vec::new();
    for role in config.roles.keys().filter(|role| key.may_use_role(role)) {
        let owner = config.role(role).map(|r| r.provider.to_string());
        data.push(json!({ "id": role, "object": "model", "created": 0, "owned_by": owner }));
    }
    for model in key.models.iter().filter(|m| !m.ends_with("/*")) {
        let owner = model.split_once('/').map(|(provider, _)| provider);
        data.push(json!({ "id": model, "object": "model", "created": 0, "owned_by": owner }));
    }
    let response = Json(json!({ "object": "list", "data": data })).into_response();
    accepted.meta.finish(response, None)
}

/// `GET /health`: each provider's status and statistics and its breaker's state, and each
/// deployment's calls in flight and cooldown; 503 when no provider can serve. Behind the
/// metrics key, when there is one.
pub(crate) async fn health(State(gateway): State<Gateway>, request: Request) -> Response {
    let live = gateway.live();
    if let Some(refused) = refusal(&live, &request) {
        return refused;
    }
    let stack = &live.stack;
    let mut providers: BTreeMap<String, Value> = BTreeMap::new();
    if let Some(stats) = stack.health() {
        for (provider, snapshot) in stats.snapshot() {
            providers.insert(
                provider,
                json!({ "status": snapshot.status, "calls": snapshot }),
            );
        }
    }
    if let Some(breakers) = stack.breakers() {
        for (provider, state) in breakers.states() {
            let entry = providers
                .entry(provider.to_string())
                .or_insert_with(|| json!({}));
            entry["breaker"] = format!("{state:?}").to_lowercase().into();
        }
    }
    let ready = ready(&live);
    let status = if ready { "pass" } else { "fail" };
    let code = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let deployments: BTreeMap<String, Value> = stack
        .deployments()
        .into_iter()
        .map(|d| {
            let cooldowns: BTreeMap<&str, u64> = d
                .cooldowns
                .iter()
                .map(|(reason, n)| (reason.as_str(), *n))
                .collect();
            let entry = json!({
                "in_flight": d.in_flight,
                "cooling_for_ms": d.cooling_for.map(|left| left.as_millis() as u64),
                "limit_left": d.traffic_share,
                "calls": d.calls,
                "successes": d.successes,
                "failures": d.failures,
                "dropped": d.dropped,
                "cooldowns": cooldowns,
                "probes": d.probes,
                "failed_probes": d.failed_probes,
            });
            (d.name.to_string(), entry)
        })
        .collect();
    let body = json!({
        "status": status,
        "providers": providers,
        "deployments": deployments,
        "sizes": stack.sizes(),
    });
    (code, health_json(body)).into_response()
}

/// `GET /health/live`: the process answers.
pub(crate) async fn live() -> Response {
    health_json(json!({ "status": "pass" })).into_response()
}

/// `GET /health/ready`: 200 while some provider can serve, else 503.
pub(crate) async fn ready_probe(State(gateway): State<Gateway>) -> Response {
    if ready(&gateway.live()) {
        health_json(json!({ "status": "pass" })).into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            health_json(json!({ "status": "fail" })),
        )
            .into_response()
    }
}

/// Whether some provider can serve: not every provider's statistics say it is down.
fn ready(live: &Live) -> bool {
    let Some(stats) = live.stack.health() else {
        return true;
    };
    live.config
        .stack
        .providers
        .keys()
        .any(|provider| stats.status(provider) != Some(Status::Unhealthy))
}

fn health_json(body: Value) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/health+json"),
        )],
        Json(body),
    )
}

/// `GET /metrics`: Prometheus text, behind the metrics key when there is one.
pub(crate) async fn metrics(State(gateway): State<Gateway>, request: Request) -> Response {
    if let Some(refused) = refusal(&gateway.live(), &request) {
        return refused;
    }
    let Some(handle) = gateway.metrics() else {
        return not_found().await;
    };
    metrics::counter!("tollgate_ledger_dropped_total").absolute(gateway.ledger_dropped());
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4"),
        )],
        handle.render(),
    )
        .into_response()
}

/// A 401, unless the gateway asks no key for what it tells of itself, or the request carries the
/// one it asks for (`gateway.metrics_key_hash`).
fn refusal(live: &Live, request: &Request) -> Option<Response> {
    let wanted = live.metrics_key.as_ref()?;
    match call::presented_key(request.headers()) {
        Some(key) if crate::keys::matches(wanted, key) => None,
        _ => Some(
            ApiError::new(
                StatusCode::UNAUTHORIZED,
                "invalid_request_error",
                "this endpoint needs the gateway's metrics key, as `Authorization: Bearer <key>` \
                 or `x-api-key`",
            )
            .with_code("invalid_api_key")
            .into_response(Dialect::OpenAi),
        ),
    }
}

/// Every other path: a 404 in OpenAI's shape.
pub(crate) async fn not_found() -> Response {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "invalid_request_error",
        "no such endpoint: the gateway serves /v1/chat/completions, /v1/messages, \
         /v1/messages/count_tokens, /v1/responses, /v1/completions, /v1/embeddings, \
         /v1/models, /health and /metrics (and with a `passthrough` section /v1/files, \
         /v1/batches, /v1/images/generations, /v1/audio and /v1/moderations)",
    )
    .with_code("unknown_url")
    .into_response(Dialect::OpenAi)
}

/// A route the gateway serves, asked with a method it does not take: 405 in OpenAI's shape.
pub(crate) async fn method_not_allowed() -> Response {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "invalid_request_error",
        "this endpoint does not take that method",
    )
    .with_code("method_not_allowed")
    .into_response(Dialect::OpenAi)
}
