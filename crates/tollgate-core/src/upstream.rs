//! What an upstream said about a failed call, kept apart from what a caller may be shown: an
//! upstream is a party that is never trusted with the caller's eyes.
//!
//! An upstream's error text can echo the key it was sent (`Incorrect API key provided: Bearer
//! sk-…`), carry an HTML page with its scripts, or name internal addresses. Provider clients
//! therefore never put it in an [`LlmError`](crate::LlmError)'s message: the message is a fixed
//! sentence per kind ([`upstream_summary`]), and the details ride along as an [`UpstreamError`],
//! whose message is kept only where it is known safe and explains the caller's own request, with
//! anything that looks like a secret or an address cut ([`redact`]).

use std::{borrow::Cow, sync::OnceLock};

use http::StatusCode;
use regex_lite::Regex;

use crate::ErrorKind;

/// The most of an upstream's message kept for a caller, in bytes.
pub const MAX_UPSTREAM_MESSAGE: usize = 512;

/// What an upstream said about a call it failed: an [`LlmError`](crate::LlmError) extension set
/// by the provider clients.
///
/// ```
/// use tollgate_core::{ErrorKind, UpstreamError, http::StatusCode};
///
/// let said = UpstreamError::new(Some(StatusCode::UNAUTHORIZED))
///     .with_identifiers(Some("invalid_request_error"), Some("invalid_api_key"), None)
///     .with_message(ErrorKind::Auth, "Incorrect API key provided: Bearer sk-upstream-secret");
/// assert_eq!(said.code.as_deref(), Some("invalid_api_key"));
/// assert_eq!(said.message, None); // a refused key is never explained to the caller
///
/// let said = UpstreamError::new(Some(StatusCode::BAD_REQUEST)).with_message(
///     ErrorKind::InvalidRequest,
///     "Invalid 'messages[0].content': see https://internal.example/docs or ask 10.0.0.7",
/// );
/// assert_eq!(
///     said.message.as_deref(),
///     Some("Invalid 'messages[0].content': see [url] or ask [address]")
/// );
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct UpstreamError {
    /// The upstream's HTTP status, when it answered with one.
    pub status: Option<StatusCode>,
    /// Its error's `type` (`invalid_request_error`), when that is a short identifier.
    pub error_type: Option<String>,
    /// Its error's `code` (`context_length_exceeded`), when that is a short identifier.
    pub code: Option<String>,
    /// The request field its error names (`messages`), when that is a short identifier.
    pub param: Option<String>,
    /// Its message, only where it is known safe to show the caller (a content filter's or a
    /// context window's explanation, or a 400 about the caller's own request), with whatever
    /// looks like a key, a token, a URL or an address cut, and at most
    /// [`MAX_UPSTREAM_MESSAGE`] bytes.
    pub message: Option<String>,
    /// Whether the upstream refused the prompt for its length.
    pub context_window: bool,
}

impl UpstreamError {
    /// Details of a failure the upstream answered with `status` (none: it never answered).
    pub fn new(status: Option<StatusCode>) -> Self {
        Self {
            status,
            ..Self::default()
        }
    }

    /// Keeps the upstream's error `type`, `code` and `param`, each only if it is a short
    /// identifier (letters, digits, `_ - . [ ]`, at most 64 bytes).
    #[must_use]
    pub fn with_identifiers(
        mut self,
        error_type: Option<&str>,
        code: Option<&str>,
        param: Option<&str>,
    ) -> Self {
        let keep = |value: Option<&str>| value.filter(|v| is_identifier(v)).map(str::to_owned);
        self.error_type = keep(error_type);
        self.code = keep(code);
        self.param = keep(param);
        self
    }

    /// Reads the upstream's `message` for a failure of `kind`: marks a context-window refusal,
    /// and keeps the message itself only where it is safe to show (see [`message`](Self::message)),
    /// redacted and cut to [`MAX_UPSTREAM_MESSAGE`] bytes.
    #[must_use]
    pub fn with_message(mut self, kind: ErrorKind, message: &str) -> Self {
        self.context_window = kind == ErrorKind::ContextWindow
            || (kind == ErrorKind::InvalidRequest
                && (is_context_window(message)
                    || self.code.as_deref().is_some_and(is_context_window)));
        let explains_the_request = match kind {
            ErrorKind::ContentFilter | ErrorKind::ContextWindow => true,
            ErrorKind::InvalidRequest => {
                self.context_window
                    || matches!(self.status.map(|s| s.as_u16()), Some(400 | 422) | None)
            }
            _ => false,
        };
        // Markup is a page, not an explanation.
        let markup = message.as_bytes().windows(2).any(|pair| {
            pair[0] == b'<' && (pair[1].is_ascii_alphabetic() || b"/!".contains(&pair[1]))
        });
        if explains_the_request && !markup && !message.trim().is_empty() {
            self.message = Some(cut(&redact(message.trim()), MAX_UPSTREAM_MESSAGE));
        }
        self
    }
}

/// The fixed sentence a failure of `kind` at an upstream is told by: what a caller reads in place
/// of the upstream's own words.
///
/// ```
/// use tollgate_core::{ErrorKind, upstream_summary};
///
/// assert_eq!(upstream_summary(ErrorKind::Auth), "the upstream refused the credentials it was sent");
/// ```
pub const fn upstream_summary(kind: ErrorKind) -> &'static str {
    match kind {
        ErrorKind::RateLimited => "the upstream is rate limiting these calls",
        ErrorKind::Overloaded => "the upstream is overloaded",
        ErrorKind::Timeout => "the upstream did not answer in time",
        ErrorKind::Connect => "the upstream could not be reached",
        ErrorKind::Auth => "the upstream refused the credentials it was sent",
        ErrorKind::InvalidRequest => "the upstream refused the request",
        ErrorKind::ContentFilter => "the upstream's content filter refused the request",
        ErrorKind::ContextWindow => "the prompt is too long for the model's context window",
        _ => "the upstream failed",
    }
}

/// Whether `text` says a prompt was too long for a model's context window: OpenAI's
/// `context_length_exceeded`, vLLM's and Ollama's "maximum context length", Anthropic's "prompt
/// is too long", Gemini's "input token count (N) exceeds the maximum number of tokens allowed".
pub fn is_context_window(text: &str) -> bool {
    const MARKS: [&str; 7] = [
        "context_length_exceeded",
        "maximum context length",
        "context window",
        "context length",
        "prompt is too long",
        "input is too long",
        "exceeds the maximum number of tokens allowed",
    ];
    let text = text.to_ascii_lowercase();
    MARKS.iter().any(|mark| text.contains(mark))
}

/// `text` with whatever looks like a secret or an address replaced: bearer tokens, API keys
/// (OpenAI's, Anthropic's, Google's, AWS's, Slack's, GitHub's and tollgate's own prefixes, JWTs,
/// and any run of 32 or more key characters with a digit among them), URLs, and IP addresses
/// with their ports.
///
/// ```
/// use tollgate_core::redact;
///
/// assert_eq!(
///     redact("Incorrect API key provided: Bearer sk-proj-abc123XYZ. See https://x.example/keys"),
///     "Incorrect API key provided: Bearer [redacted]. See [url]"
/// );
/// assert_eq!(redact("no route to 10.2.3.4:8080"), "no route to [address]");
/// assert_eq!(redact("nothing to hide"), "nothing to hide");
/// ```
pub fn redact(text: &str) -> Cow<'_, str> {
    static PATTERNS: OnceLock<[(Regex, &str); 4]> = OnceLock::new();
    static LONG_RUNS: OnceLock<Regex> = OnceLock::new();
    let patterns = PATTERNS.get_or_init(|| {
        let compiled = |pattern: &str| Regex::new(pattern).expect("a valid pattern");
        [
            (compiled(r"(?i)\bbearer\s+[A-Za-z0-9._~+/=*\-]*[A-Za-z0-9_~+/=*\-]"), "Bearer [redacted]"),
            (
                compiled(r"(?i)\b[a-z][a-z0-9+.\-]*://[^\s\x22'<>()]*[^\s\x22'<>().,;:]"),
                "[url]",
            ),
            (
                compiled(
                    r"\b(?:sk|pk|rk|tg)-[A-Za-z0-9_*\-]{4,}|\bAIza[0-9A-Za-z_\-]{16,}|\b(?:AKIA|ASIA)[0-9A-Z]{16}\b|\bxox[abprs]-[A-Za-z0-9\-]+|\bgh[pousr]_[A-Za-z0-9]{16,}|\beyJ[A-Za-z0-9_\-]+\.[A-Za-z0-9_\-]+\.[A-Za-z0-9_\-]+",
                ),
                "[redacted]",
            ),
            (
                compiled(
                    r"\b(?:\d{1,3}\.){3}\d{1,3}(?::\d{1,5})?\b|\[?\b[0-9A-Fa-f]{1,4}(?::[0-9A-Fa-f]{0,4}){2,7}\b\]?(?::\d{1,5})?|\[::1?\](?::\d{1,5})?",
                ),
                "[address]",
            ),
        ]
    });
    let mut text = Cow::Borrowed(text);
    for (pattern, replacement) in patterns {
        if let Cow::Owned(replaced) = pattern.replace_all(&text, *replacement) {
            text = Cow::Owned(replaced);
        }
    }
    // A long run of key characters is a key when it holds a digit (a long word does not).
    let long_runs =
        LONG_RUNS.get_or_init(|| Regex::new(r"[A-Za-z0-9_*+/=\-]{32,}").expect("a valid pattern"));
    if let Cow::Owned(replaced) =
        long_runs.replace_all(&text, |found: &regex_lite::Captures<'_>| {
            let run = &found[0];
            if run.bytes().any(|b| b.is_ascii_digit()) {
                "[redacted]".to_owned()
            } else {
                run.to_owned()
            }
        })
    {
        text = Cow::Owned(replaced);
    }
    text
}

/// `text`, at most `most` bytes of it, cut at a character boundary and marked with `…`.
pub(crate) fn cut(text: &str, most: usize) -> String {
    if text.len() <= most {
        return text.to_owned();
    }
    let mut end = most - '…'.len_utf8();
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

fn is_identifier(value: &str) -> bool {
    !value.is_empty()
        && value.len() <= 64
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b'[' | b']'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_and_addresses_are_cut_wherever_they_stand() {
        let cases = [
            (
                "Incorrect API key provided: sk-upstr**********************1234.",
                "Incorrect API key provided: [redacted].",
            ),
            (
                "key sk-ant-api03-AbCdEf_123-xyz was refused",
                "key [redacted] was refused",
            ),
            (
                "authorization: Bearer abc.def.ghi",
                "authorization: Bearer [redacted]",
            ),
            (
                "google AIzaSyA1234567890abcdefghijklmnop",
                "google [redacted]",
            ),
            ("aws AKIAIOSFODNN7EXAMPLE here", "aws [redacted] here"),
            (
                "error sending request for url (http://10.0.3.7:8080/v1/chat/completions)",
                "error sending request for url ([url])",
            ),
            (
                "upstream at 192.168.1.20:443 refused",
                "upstream at [address] refused",
            ),
            (
                "ipv6 fe80::1:2:3 and [::1]:80",
                "ipv6 [address] and [address]",
            ),
            (
                "token 0123456789abcdef0123456789abcdef01 leaked",
                "token [redacted] leaked",
            ),
            (
                "tollgate key tg-0123456789abcdef",
                "tollgate key [redacted]",
            ),
        ];
        for (text, expected) in cases {
            assert_eq!(redact(text), expected, "{text}");
        }
        // A long word is no key.
        let word = "Donaudampfschifffahrtsgesellschaftskapitaen";
        assert_eq!(redact(word), word);
        // Ordinary explanations survive whole.
        let plain = "This model's maximum context length is 128000 tokens. However, your messages \
                     resulted in 130000 tokens.";
        assert_eq!(redact(plain), plain);
    }

    #[test]
    fn only_explanations_of_the_callers_request_are_kept_and_they_are_bounded() {
        let bad_request = |status: u16| Some(StatusCode::from_u16(status).unwrap());
        let kept = |status, kind, text: &str| {
            UpstreamError::new(bad_request(status))
                .with_message(kind, text)
                .message
        };
        assert_eq!(
            kept(400, ErrorKind::InvalidRequest, "temperature must be <= 2").as_deref(),
            Some("temperature must be <= 2")
        );
        let page = "<html><script>steal()</script>Bad Request</html>";
        assert_eq!(kept(400, ErrorKind::InvalidRequest, page), None);
        assert_eq!(kept(401, ErrorKind::Auth, "bad key sk-12345678"), None);
        assert_eq!(kept(404, ErrorKind::InvalidRequest, "no such model"), None);
        assert_eq!(kept(500, ErrorKind::Server, "stack trace"), None);
        assert_eq!(
            kept(429, ErrorKind::RateLimited, "org-123 over limit"),
            None
        );
        assert_eq!(
            kept(400, ErrorKind::ContentFilter, "flagged as violence").as_deref(),
            Some("flagged as violence")
        );
        let long = "x ".repeat(600);
        let message = kept(400, ErrorKind::InvalidRequest, &long).unwrap();
        assert!(message.len() <= MAX_UPSTREAM_MESSAGE && message.ends_with('…'));

        let window = UpstreamError::new(bad_request(400))
            .with_identifiers(None, Some("context_length_exceeded"), Some("messages"))
            .with_message(ErrorKind::InvalidRequest, "too many tokens");
        assert!(window.context_window);
        assert_eq!(window.param.as_deref(), Some("messages"));
    }

    #[test]
    fn identifiers_are_kept_only_when_short_and_plain() {
        let said = UpstreamError::new(None).with_identifiers(
            Some("invalid_request_error"),
            Some("see https://x"),
            Some(&"p".repeat(65)),
        );
        assert_eq!(said.error_type.as_deref(), Some("invalid_request_error"));
        assert_eq!((said.code, said.param), (None, None));
    }
}
