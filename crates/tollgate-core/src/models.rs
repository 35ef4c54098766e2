//! What tollgate knows of well-known models without being told: the most output each may write,
//! which bounds a call that sets no `max_tokens` of its own.

/// The output bound of a call that sets none, for a model [`known_output_limit`] does not list:
/// reserved by a rate limiter that counts tokens or cost, and sent to the provider as the call's
/// `max_tokens`, so the answer cannot outgrow what was reserved.
///
/// 4,096 tokens is about 3,000 words, longer than almost every ordinary answer, and within the
/// output limit of every model this crate knows of. A model with a small context window (a
/// local model served with 4,096 or 8,192 tokens of context) needs less: set a role's
/// `default_max_tokens`, or the request's own `max_tokens`.
pub const DEFAULT_MAX_TOKENS: u32 = 4_096;

/// The longest model id [`is_model_id`] takes, in bytes.
pub const MAX_MODEL_ID: usize = 256;

/// Whether `name` could be a model id: 1 to [`MAX_MODEL_ID`] bytes of ASCII letters, digits and
/// `. _ - : / @ +` (`gpt-4o-2024-08-06`, `claude-sonnet-4-5@20250929`,
/// `us.anthropic.claude-3-5-sonnet-20241022-v2:0`, `meta-llama/Llama-3.3-70B-Instruct`,
/// `ft:gpt-4o-mini:acme::abc123`). Anything else, a query string, a space, a control character,
/// is no model any provider serves, and is refused before it is priced or sent.
///
/// ```
/// use tollgate_core::is_model_id;
///
/// assert!(is_model_id("anthropic.claude-3-5-sonnet-20241022-v2:0"));
/// assert!(!is_model_id("mock-model?x=1"));
/// assert!(!is_model_id("gpt 4o"));
/// assert!(!is_model_id(""));
/// ```
pub fn is_model_id(name: &str) -> bool {
    (1..=MAX_MODEL_ID).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b".-_:/@+".contains(&b))
}

/// A request extension: the most output every model that may answer the call can write, when
/// that need not be the request's own model (a role whose calls may move to other models). A
/// layer that bounds a call that sets no bound of its own keeps under it, so no model that may
/// answer is sent more than it takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutputCeiling(pub u32);

/// The most output tokens `model` may write, as its provider documents it, for the OpenAI and
/// Anthropic models this table lists by their exact names (aliases and dated snapshots each
/// listed), or `None`.
///
/// A name is never matched by its beginning: `gpt-4o` says nothing of `gpt-4o-mini`, and the
/// first `gpt-4o` snapshot (`gpt-4o-2024-05-13`) writes at most 4,096 tokens where later ones
/// write 16,384. A model not listed takes [`DEFAULT_MAX_TOKENS`].
///
/// ```
/// use tollgate_core::known_output_limit;
///
/// assert_eq!(known_output_limit("gpt-4o-mini"), Some(16_384));
/// assert_eq!(known_output_limit("claude-sonnet-4-5-20250929"), Some(64_000));
/// assert_eq!(known_output_limit("gpt-4o-mini-fine-tuned"), None);
/// ```
pub fn known_output_limit(model: &str) -> Option<u32> {
    OUTPUT_LIMITS
        .binary_search_by(|(name, _)| (*name).cmp(model))
        .ok()
        .map(|at| OUTPUT_LIMITS[at].1)
}

/// Sorted by name, for the binary search; a test checks the order.
const OUTPUT_LIMITS: &[(&str, u32)] = &[
    ("chatgpt-4o-latest", 16_384),
    ("claude-3-5-haiku-20241022", 8_192),
    ("claude-3-5-haiku-latest", 8_192),
    ("claude-3-5-sonnet-20240620", 8_192),
    ("claude-3-5-sonnet-20241022", 8_192),
    ("claude-3-5-sonnet-latest", 8_192),
    ("claude-3-7-sonnet-20250219", 64_000),
    ("claude-3-7-sonnet-latest", 64_000),
    ("claude-3-haiku-20240307", 4_096),
    ("claude-haiku-4-5", 64_000),
    ("claude-haiku-4-5-20251001", 64_000),
    ("claude-opus-4-0", 32_000),
    ("claude-opus-4-1", 32_000),
    ("claude-opus-4-1-20250805", 32_000),
    ("claude-opus-4-20250514", 32_000),
    ("claude-opus-4-5", 64_000),
    ("claude-opus-4-5-20251101", 64_000),
    ("claude-sonnet-4-0", 64_000),
    ("claude-sonnet-4-20250514", 64_000),
    ("claude-sonnet-4-5", 64_000),
    ("claude-sonnet-4-5-20250929", 64_000),
    ("gpt-3.5-turbo", 4_096),
    ("gpt-3.5-turbo-0125", 4_096),
    ("gpt-4-turbo", 4_096),
    ("gpt-4-turbo-2024-04-09", 4_096),
    ("gpt-4.1", 32_768),
    ("gpt-4.1-2025-04-14", 32_768),
    ("gpt-4.1-mini", 32_768),
    ("gpt-4.1-mini-2025-04-14", 32_768),
    ("gpt-4.1-nano", 32_768),
    ("gpt-4.1-nano-2025-04-14", 32_768),
    ("gpt-4o", 16_384),
    ("gpt-4o-2024-05-13", 4_096),
    ("gpt-4o-2024-08-06", 16_384),
    ("gpt-4o-2024-11-20", 16_384),
    ("gpt-4o-mini", 16_384),
    ("gpt-4o-mini-2024-07-18", 16_384),
    ("gpt-5", 128_000),
    ("gpt-5-2025-08-07", 128_000),
    ("gpt-5-mini", 128_000),
    ("gpt-5-mini-2025-08-07", 128_000),
    ("gpt-5-nano", 128_000),
    ("gpt-5-nano-2025-08-07", 128_000),
    ("o1", 100_000),
    ("o1-2024-12-17", 100_000),
    ("o3", 100_000),
    ("o3-2025-04-16", 100_000),
    ("o3-mini", 100_000),
    ("o3-mini-2025-01-31", 100_000),
    ("o4-mini", 100_000),
    ("o4-mini-2025-04-16", 100_000),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_is_sorted_without_repeats_so_every_name_is_found() {
        for pair in OUTPUT_LIMITS.windows(2) {
            assert!(pair[0].0 < pair[1].0, "{:?} before {:?}", pair[0], pair[1]);
        }
        for (name, limit) in OUTPUT_LIMITS {
            assert_eq!(known_output_limit(name), Some(*limit), "{name}");
            assert!(*limit >= DEFAULT_MAX_TOKENS, "{name}");
        }
    }

    #[test]
    fn names_match_whole_never_by_their_start() {
        assert_eq!(known_output_limit("gpt-4o"), Some(16_384));
        assert_eq!(known_output_limit("gpt-4o-2024-05-13"), Some(4_096));
        for unknown in [
            "gpt-4",
            "gpt-4o-",
            "GPT-4O",
            "gpt-4o-mini-2024",
            "llama3.2",
            "",
        ] {
            assert_eq!(known_output_limit(unknown), None, "{unknown}");
        }
    }
}
