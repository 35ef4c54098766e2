//! `POST /v1/messages/count_tokens`: Anthropic's token count for a Messages request. The key and
//! the model are checked as for a Messages call; a model whose provider (a role's first target)
//! is `kind: anthropic` has the request passed to its `/v1/messages/count_tokens`, with the
//! provider's key and the caller's `anthropic-version` and `anthropic-beta`, and the answer as it
//! came, or a failure in the gateway's words as for a call. The caller's request limits count
//! it. For any other provider the count is an estimate over the request as the Messages door
//! reads it, answered as `{"input_tokens": N}` with `x-tollgate-estimate: true`: by
//! [`WordEstimator`](tollgate::WordEstimator), which aims at what a BPE tokenizer counts
//! (within 7 % of OpenAI's `o200k_base` on its samples), not by the estimator the stack's limits
//! reserve with, which errs high on purpose.

use axum::{
    extract::{Request, State},
    response::Response,
};
use http::HeaderMap;
use tollgate::TokenEstimator;

use crate::{
    call::{self, Accepted, FrontDoor},
    error::{ApiError, Dialect},
    messages::Messages,
    state::Gateway,
};

/// The header that marks a count the gateway estimated.
const ESTIMATE: &str = "x-tollgate-estimate";

/// Serves `POST /v1/messages/count_tokens`.
pub(crate) async fn handle(State(gateway): State<Gateway>, request: Request) -> Response {
    let Accepted {
        live,
        key,
        headers,
        body,
        meta,
    } = match call::accept(&gateway, request, Dialect::Anthropic).await {
        Ok(accepted) => accepted,
        Err(response) => return response,
    };
    let mut asked: serde_json::Value = match serde_json::from_slice(&body) {
        Ok(asked) => asked,
        Err(_) => return meta.fail(ApiError::invalid("the request body is not JSON")),
    };
    // A count takes no `max_tokens`, which a Messages call must have: one is added to read it
    // as the door does, and never sent on.
    let mut readable = asked.clone();
    if let Some(fields) = readable.as_object_mut() {
        fields
            .entry("max_tokens")
            .or_insert(serde_json::Value::from(1));
    }
    let readable = bytes::Bytes::from(serde_json::to_vec(&readable).expect("JSON"));
    let mut request = match Messages::parse(readable, &headers) {
        Ok(request) => request,
        Err(error) => return meta.fail(error),
    };
    if let Err(error) = call::authorize_model(&live, &key, &mut request) {
        return meta.fail(error);
    }
    let stack = &live.config.stack;
    let target = match &request.meta.role {
        Some(role) => stack.role(role).and_then(|role| {
            let first = role.targets.first()?;
            Some((first.provider.to_string(), first.model.to_string()))
        }),
        None => request
            .provider
            .as_ref()
            .map(|p| (p.to_string(), request.model.to_string())),
    };
    if let Some((provider, model)) = target
        && let Some(client) = live.counters.get(&provider)
    {
        // The caller's body as it came, for the provider's own model name.
        asked["model"] = serde_json::Value::String(model);
        let mut sent = HeaderMap::new();
        for name in ["anthropic-version", "anthropic-beta"] {
            if let Some(value) = headers.get(name) {
                sent.insert(name, value.clone());
            }
        }
        // A count is no LLM call, but it is a request to the provider: the caller's request
        // limits count it, and the call's deadline bounds it.
        let outside = match live
            .stack
            .admit_outside(&request, tollgate::MicroUsd::ZERO)
            .await
        {
            Ok(outside) => outside,
            Err(error) => {
                call::count_denial(&live, &key.tenant, &error);
                return meta.fail(ApiError::from_llm(&error));
            }
        };
        let counting = client.count_tokens(serde_json::to_vec(&asked).expect("JSON"), sent);
        let answer = match tokio::time::timeout(meta.timeout, counting).await {
            Ok(Ok(answer)) => answer,
            Ok(Err(error)) => return meta.fail(ApiError::from_llm(&error)),
            Err(_) => {
                return meta.fail(ApiError::from_llm(&tollgate::LlmError::new(
                    tollgate::ErrorKind::Timeout,
                    "the count did not finish in time",
                )));
            }
        };
        outside.bill(tollgate::Usage::default(), Some(tollgate::MicroUsd::ZERO));
        return meta.finish(call::json_response(answer), None);
    }
    let tokens = tollgate::WordEstimator.estimate_prompt(&request);
    let mut response = call::json_response(format!(r#"{{"input_tokens":{tokens}}}"#));
    response
        .headers_mut()
        .insert(ESTIMATE, http::HeaderValue::from_static("true"));
    meta.finish(response, None)
}
