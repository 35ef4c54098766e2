//! `POST /v1/embeddings`: passed to an OpenAI-compatible provider through the same stack as chat
//! (keys, limits, budgets, cache, retries, breaker, cost report).

use axum::response::Response;
use bytes::Bytes;
use http::HeaderMap;
use tollgate::{LlmRequest, LlmResponse, ProviderKind};
use tollgate_wire::openai::embeddings;

use crate::{
    call::{self, Asked, CallMeta, FrontDoor},
    error::{ApiError, Dialect},
    state::Live,
};

/// The embeddings front door.
pub(crate) struct Embeddings;

impl FrontDoor for Embeddings {
    const DIALECT: Dialect = Dialect::OpenAi;

    fn parse(body: Bytes, _: &HeaderMap) -> Result<LlmRequest, ApiError> {
        embeddings::decode_request(&body).map_err(ApiError::refused)
    }

    /// Only an OpenAI-compatible provider has an embeddings API: the one the request names, or
    /// every one its role may route to.
    fn check(live: &Live, request: &LlmRequest) -> Result<(), ApiError> {
        served_by(live, request, &[ProviderKind::Openai], "embeddings")
    }

    fn answer(answer: LlmResponse, _: &CallMeta, _: Asked) -> Response {
        call::json_response(embeddings::encode_answer(&answer))
    }
}

/// Checks that a provider of one of `kinds` serves `request`: the one it names, or every one its
/// role may route to; else a 400 naming the provider that serves no `what`.
pub(crate) fn served_by(
    live: &Live,
    request: &LlmRequest,
    kinds: &[ProviderKind],
    what: &str,
) -> Result<(), ApiError> {
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
        config
            .providers
            .get(p.as_str())
            .is_none_or(|p| !kinds.contains(&p.kind))
    });
    match (refusing, providers.is_empty()) {
        (None, false) => Ok(()),
        (provider, _) => Err(ApiError::invalid(format!(
            "the provider `{}` serves no {what}: only OpenAI-compatible providers do",
            provider.map_or("", String::as_str)
        ))
        .with_param("model")),
    }
}
