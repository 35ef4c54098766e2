//! `POST /v1/embeddings`: passed to an OpenAI-compatible provider through the same stack as chat
//! (keys, limits, budgets, cache, retries, breaker, cost report).

use axum::{
    extract::{Request, State},
    response::Response,
};
use serde_json::{Map, Value};
use tollgate::{LlmRequest, Operation, ProviderKind};
use tower::ServiceExt;

use crate::{
    call::{self, Accepted},
    error::{ApiError, Dialect},
    state::Gateway,
};

/// Answers an embeddings call.
pub(crate) async fn handle(State(gateway): State<Gateway>, request: Request) -> Response {
    let Accepted {
        live,
        key,
        body,
        meta,
    } = match call::accept(&gateway, request, Dialect::OpenAi).await {
        Ok(accepted) => accepted,
        Err(response) => return response,
    };
    let mut request = match parse(&body) {
        Ok(request) => request,
        Err(error) => return meta.fail(error),
    };
    if let Err(error) = call::route(&live, &key, &mut request) {
        return meta.fail(error);
    }
    let provider = request
        .provider
        .clone()
        .or_else(|| {
            let role = request.meta.role.as_deref()?;
            Some(live.config.stack.role(role)?.provider)
        })
        .unwrap_or_default();
    let kind = live.config.stack.providers.get(&*provider).map(|p| p.kind);
    if kind != Some(ProviderKind::Openai) {
        return meta.fail(
            ApiError::invalid(format!(
                "the provider `{provider}` serves no embeddings: only OpenAI-compatible providers do"
            ))
            .with_param("model"),
        );
    }
    meta.tag(&mut request);
    match live.stack.clone().oneshot(request).await {
        Ok(answer) => {
            let cache = answer.headers.get("x-cache").cloned();
            let cache = cache
                .as_ref()
                .and_then(|v| v.to_str().ok())
                .or(Some("MISS"));
            let mut object: Map<String, Value> = (*answer.extra).clone();
            object.insert("model".into(), answer.model.clone().into());
            let tokens = answer.usage.input_tokens;
            object.insert(
                "usage".into(),
                serde_json::json!({ "prompt_tokens": tokens, "total_tokens": tokens }),
            );
            let body = serde_json::to_vec(&object).expect("an answer serializes");
            meta.finish(call::json_response(body), cache)
        }
        Err(error) => meta.fail(ApiError::from_llm(&error)),
    }
}

/// Reads an embeddings request: `model` and `input` are required; every other field goes to the
/// provider as it came.
fn parse(body: &[u8]) -> Result<LlmRequest, ApiError> {
    let mut object: Map<String, Value> = serde_json::from_slice(body).map_err(|e| {
        ApiError::invalid(format!(
            "the request body is not a valid embeddings request: {e}"
        ))
        .with_code("invalid_json")
    })?;
    let Some(Value::String(model)) = object.remove("model") else {
        return Err(ApiError::invalid("model: required, a string").with_param("model"));
    };
    match object.get("input") {
        Some(Value::String(_)) => {}
        Some(Value::Array(items)) if !items.is_empty() => {}
        _ => {
            return Err(ApiError::invalid(
                "input: required, a string or a non-empty array of strings or token arrays",
            )
            .with_param("input"));
        }
    }
    let mut request = LlmRequest::new(model, Vec::new());
    request.meta.operation = Operation::Embeddings;
    request.params.extra = object.into();
    Ok(request)
}
