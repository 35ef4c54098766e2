//! `POST /v1/embeddings`: passed to an OpenAI-compatible provider through the same stack as chat
//! (keys, limits, budgets, cache, retries, breaker, cost report).

use axum::response::Response;
use serde_json::{Map, Value};
use tollgate::{LlmRequest, LlmResponse, Operation, ProviderKind};

use crate::{
    call::{self, Asked, CallMeta, FrontDoor},
    error::{ApiError, Dialect},
    state::Live,
};

/// The embeddings front door.
pub(crate) struct Embeddings;

impl FrontDoor for Embeddings {
    const DIALECT: Dialect = Dialect::OpenAi;

    fn parse(body: &[u8]) -> Result<LlmRequest, ApiError> {
        parse(body)
    }

    /// Only an OpenAI-compatible provider has an embeddings API: the one the request names, or
    /// every one its role may route to.
    fn check(live: &Live, request: &LlmRequest) -> Result<(), ApiError> {
        let config = &live.config.stack;
        let providers: Vec<String> = match &request.provider {
            Some(provider) => vec![provider.to_string()],
            None => config
                .role(request.meta.role.as_deref().unwrap_or_default())
                .map(|role| {
                    role.targets
                        .iter()
                        .map(|target| target.provider.to_string())
                        .collect()
                })
                .unwrap_or_default(),
        };
        let refusing = providers.iter().find(|p| {
            config.providers.get(p.as_str()).map(|p| p.kind) != Some(ProviderKind::Openai)
        });
        match (refusing, providers.is_empty()) {
            (None, false) => Ok(()),
            (provider, _) => Err(ApiError::invalid(format!(
                "the provider `{}` serves no embeddings: only OpenAI-compatible providers do",
                provider.map_or("", String::as_str)
            ))
            .with_param("model")),
        }
    }

    fn answer(answer: LlmResponse, _: &CallMeta, _: Asked) -> Response {
        let mut object: Map<String, Value> = (*answer.extra).clone();
        object.insert("model".into(), answer.model.clone().into());
        let tokens = answer.usage.input_tokens;
        object.insert(
            "usage".into(),
            serde_json::json!({ "prompt_tokens": tokens, "total_tokens": tokens }),
        );
        call::json_response(serde_json::to_vec(&object).expect("an answer serializes"))
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
