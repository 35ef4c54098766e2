//! What a provider that translates a call from another API refuses before anything is sent.

use tollgate_core::{ErrorKind, LlmError, LlmRequest};
use tollgate_wire::openai::responses;

/// Refuses a call from the Responses door that `provider` would have to translate but cannot
/// honour: a built-in tool (`web_search_preview`, `file_search`, ...), which only OpenAI's
/// Responses API runs, an input item with no chat form, or a field that changes the answer
/// ([`responses::check_translatable`]). Every translating provider calls it before it writes a
/// body, so the refusal is the same wherever the call was routed.
pub(crate) fn refuse_untranslatable(provider: &str, request: &LlmRequest) -> Result<(), LlmError> {
    responses::check_translatable(request)
        .map_err(|why| LlmError::new(ErrorKind::InvalidRequest, format!("{provider}: {why}")))
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;

    fn call(body: &'static str) -> LlmRequest {
        responses::decode_request(Bytes::from_static(body.as_bytes()), &Default::default()).unwrap()
    }

    #[test]
    fn a_built_in_tool_is_refused_by_name_and_a_function_tool_is_not() {
        let hosted =
            call(r#"{"model": "m", "input": "hi", "tools": [{"type": "web_search_preview"}]}"#);
        let refused = refuse_untranslatable("anthropic", &hosted).unwrap_err();
        assert_eq!(refused.kind(), ErrorKind::InvalidRequest);
        assert_eq!(
            refused.message(),
            "anthropic: the built-in tool `web_search_preview` runs only at OpenAI's Responses API"
        );
        let function =
            call(r#"{"model": "m", "input": "hi", "tools": [{"type": "function", "name": "f"}]}"#);
        assert!(refuse_untranslatable("anthropic", &function).is_ok());
        let chat = LlmRequest::new("m", vec![tollgate_core::Message::user("hi")]);
        assert!(refuse_untranslatable("gemini", &chat).is_ok());
    }
}
