//! [`Redactor`]: what is cut out of a prompt or an answer before any sink keeps it.

use std::{borrow::Cow, fmt, sync::Arc};

use regex_lite::Regex;
use tollgate_core::ConfigError;

/// What replaces a secret a pattern found.
pub const REDACTED: &str = "[redacted]";

/// A hook of one's own, run after the patterns: given the text, returns it redacted.
pub type RedactHook = Arc<dyn Fn(&str) -> Cow<'_, str> + Send + Sync>;

/// Cuts secrets out of text before it is kept: the built-in patterns (API keys of OpenAI,
/// Anthropic, Google, AWS, GitHub, Slack and tollgate, JWTs, and `Bearer` tokens), then the
/// configured regular expressions, then a [hook](Self::with_hook) of one's own. What a pattern
/// finds becomes `[redacted]`.
///
/// ```
/// use tollgate_log::Redactor;
///
/// let redactor = Redactor::new(&[r"\bACCT-\d{6}\b".to_owned()]).unwrap();
/// assert_eq!(
///     redactor.redact("use sk-proj-abcdef123456 for ACCT-123456"),
///     "use [redacted] for [redacted]"
/// );
/// assert_eq!(redactor.redact("Authorization: Bearer abc.def"), "Authorization: Bearer [redacted]");
/// assert!(Redactor::new(&["(".to_owned()]).is_err());
/// ```
#[derive(Clone)]
pub struct Redactor {
    patterns: Arc<[Regex]>,
    hook: Option<RedactHook>,
}

impl fmt::Debug for Redactor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Redactor")
            .field("patterns", &self.patterns.len())
            .field("hook", &self.hook.is_some())
            .finish()
    }
}

impl Default for Redactor {
    fn default() -> Self {
        Self::new(&[]).expect("the built-in patterns are valid")
    }
}

/// Secrets by their shape: provider keys, JWTs.
const KEYS: &str = r"\b(?:sk|pk|rk|tg)-[A-Za-z0-9_\-]{8,}|\bAIza[0-9A-Za-z_\-]{16,}|\b(?:AKIA|ASIA)[0-9A-Z]{16}\b|\bxox[abprs]-[A-Za-z0-9\-]+|\bgh[pousr]_[A-Za-z0-9]{16,}|\beyJ[A-Za-z0-9_\-]+\.[A-Za-z0-9_\-]+\.[A-Za-z0-9_\-]+";

/// A bearer token, whatever its shape (the scheme stays, so the text still reads).
const BEARER: &str = r"(?i)\b(bearer\s+)[A-Za-z0-9._~+/=\-]+";

impl Redactor {
    /// The built-in patterns and `patterns` (regular expressions, `regex-lite` syntax).
    ///
    /// # Errors
    ///
    /// The first pattern that does not compile, by its index in `patterns`.
    pub fn new(patterns: &[String]) -> Result<Self, ConfigError> {
        let mut compiled = vec![
            Regex::new(KEYS).expect("valid"),
            Regex::new(BEARER).expect("valid"),
        ];
        for (index, pattern) in patterns.iter().enumerate() {
            let regex = Regex::new(pattern).map_err(|error| {
                ConfigError::new(
                    format!("redact[{index}]"),
                    format!("not a valid pattern: {error}"),
                )
            })?;
            compiled.push(regex);
        }
        Ok(Self {
            patterns: compiled.into(),
            hook: None,
        })
    }

    /// Runs `hook` after the patterns, on what they left.
    #[must_use]
    pub fn with_hook(
        mut self,
        hook: impl Fn(&str) -> Cow<'_, str> + Send + Sync + 'static,
    ) -> Self {
        self.hook = Some(Arc::new(hook));
        self
    }

    /// `text` with every secret the patterns and the hook find cut out.
    pub fn redact<'a>(&self, text: &'a str) -> Cow<'a, str> {
        let mut text = Cow::Borrowed(text);
        for (index, pattern) in self.patterns.iter().enumerate() {
            // The bearer pattern keeps its scheme.
            let replacement = if index == 1 {
                "${1}[redacted]"
            } else {
                REDACTED
            };
            if let Cow::Owned(replaced) = pattern.replace_all(&text, replacement) {
                text = Cow::Owned(replaced);
            }
        }
        match &self.hook {
            Some(hook) => match hook(&text) {
                Cow::Borrowed(same) if same.len() == text.len() => text,
                changed => Cow::Owned(changed.into_owned()),
            },
            None => text,
        }
    }
}

/// `text` cut to at most `max` bytes, at a character's boundary, marked when it was cut.
pub fn capped(mut text: String, max: usize) -> String {
    const MARK: &str = "…[truncated]";
    if text.len() <= max {
        return text;
    }
    // A cap too small for the mark gets none.
    let mark = if max >= MARK.len() { MARK } else { "" };
    let mut end = max - mark.len();
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text.truncate(end);
    text.push_str(mark);
    text
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        /// Whatever surrounds a key, it does not survive.
        #[test]
        fn a_key_anywhere_in_text_is_cut_out(
            before in "[ -~]{0,40}",
            key in "[A-Za-z0-9]{20,40}",
            after in "[ -~]{0,40}",
        ) {
            let secret = format!("sk-{key}");
            let text = format!("{before} {secret} {after}");
            let redacted = Redactor::default().redact(&text).into_owned();
            prop_assert!(!redacted.contains(&secret), "{redacted}");
        }

        /// A capped text is never longer than its cap, and is the start of the text.
        #[test]
        fn a_capped_text_fits_and_keeps_its_start(text in "\\PC{0,200}", max in 0usize..100) {
            let cut = capped(text.clone(), max);
            prop_assert!(cut.len() <= max || cut == text);
            let kept = cut.strip_suffix("…[truncated]").unwrap_or(&cut);
            prop_assert!(text.starts_with(kept));
        }
    }

    #[test]
    fn text_without_secrets_is_not_copied() {
        assert!(matches!(
            Redactor::default().redact("nothing to hide here"),
            Cow::Borrowed(_)
        ));
    }

    #[test]
    fn a_hook_runs_on_what_the_patterns_left() {
        let redactor = Redactor::default()
            .with_hook(|text| Cow::Owned(text.replace("alice@example.com", "[email]")));
        assert_eq!(
            redactor.redact("mail alice@example.com the key sk-0123456789abcdef"),
            "mail [email] the key [redacted]"
        );
    }
}
