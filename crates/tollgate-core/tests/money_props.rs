//! Property tests of what keeps money safe and secrets in: every number that sets what a call
//! may cost is read as exactly one whole number or refused by name, and redaction leaves no
//! secret or address behind whatever surrounds it.

use proptest::prelude::*;
use serde_json::{Value, json};
use tollgate_core::{LlmRequest, MaxTokensName, redact, whole_number};

/// A JSON number written every way a client might, and the whole number it is, if one.
fn number() -> impl Strategy<Value = (String, Option<u64>)> {
    prop_oneof![
        any::<u64>().prop_map(|k| (k.to_string(), Some(k))),
        (0u64..=u64::from(u32::MAX)).prop_map(|k| (k.to_string(), Some(k))),
        (0u64..100_000).prop_map(|k| (format!("{k}.0"), Some(k))),
        (1u64..10, 0u32..9).prop_map(|(m, e)| (format!("{m}e{e}"), Some(m * 10u64.pow(e)))),
        (0u64..100_000).prop_map(|k| (format!("{k}.25"), None)),
        (1i64..i64::MAX).prop_map(|k| (format!("-{k}"), None)),
        Just(("18446744073709551616".to_owned(), None)),
        Just(("1e19".to_owned(), None)),
        Just(("-0.0".to_owned(), Some(0))),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(|f| {
                let whole =
                    (f.fract() == 0.0 && f >= 0.0 && f <= u64::MAX as f64).then_some(f as u64);
                (serde_json::to_string(&f).unwrap(), whole)
            }),
    ]
}

const FIELDS: [(&str, u64); 5] = [
    ("max_tokens", 1),
    ("max_completion_tokens", 1),
    ("n", 1),
    ("best_of", 1),
    ("top_logprobs", 0),
];

proptest! {
    #[test]
    fn a_number_is_taken_exactly_when_it_is_whole_and_in_range((text, whole) in number(), least in 0u32..3) {
        let value: Value = serde_json::from_str(&text).unwrap();
        let expected = whole
            .filter(|w| *w >= u64::from(least) && *w <= u64::from(u32::MAX))
            .map(|w| w as u32);
        prop_assert_eq!(whole_number(&value, least).ok(), expected, "{}", text);
    }

    #[test]
    fn each_field_is_read_once_or_refused_by_name(which in 0..FIELDS.len(), (text, whole) in number()) {
        let (field, least) = FIELDS[which];
        let body = format!(r#"{{"model": "m", "messages": [], "{field}": {text}}}"#);
        let parsed = serde_json::from_str::<LlmRequest>(&body);
        let valid = whole.filter(|w| *w >= least && *w <= u64::from(u32::MAX));
        match (parsed, valid) {
            (Ok(request), Some(whole)) => {
                let params = &request.params;
                let read = match field {
                    "max_tokens" | "max_completion_tokens" => params.max_tokens,
                    "n" => params.n,
                    "best_of" => params.best_of,
                    _ => params.top_logprobs,
                };
                prop_assert_eq!(read.map(u64::from), Some(whole));
                // What goes on is the one value read, as a plain integer under the same name.
                let wire = serde_json::to_value(&request).unwrap();
                prop_assert_eq!(&wire[field], &json!(whole));
                prop_assert!(!params.extra.contains_key(field));
            }
            (Err(error), None) => {
                let message = error.to_string();
                prop_assert!(message.starts_with(&format!("{field}: ")), "{}", message);
            }
            (parsed, valid) => prop_assert!(false, "{body}: {parsed:?}, expected {valid:?}"),
        }
    }

    #[test]
    fn both_names_of_the_bound_must_agree(a in 1u32..1_000, b in 1u32..1_000) {
        let body = json!({ "model": "m", "messages": [], "max_tokens": a, "max_completion_tokens": b });
        match serde_json::from_value::<LlmRequest>(body) {
            Ok(request) => {
                prop_assert_eq!(a, b);
                prop_assert_eq!(request.params.max_tokens, Some(a));
                prop_assert_eq!(request.params.max_tokens_name, Some(MaxTokensName::Both));
            }
            Err(error) => {
                prop_assert_ne!(a, b);
                prop_assert!(error.to_string().starts_with("max_completion_tokens: "));
            }
        }
    }

    #[test]
    fn the_billed_bound_is_the_bound_times_every_answer(max in 1u32..100_000, n in 1u32..200, best_of in prop::option::of(1u32..200)) {
        let mut request = LlmRequest::new("m", vec![]).with_max_tokens(max);
        request.params.n = Some(n);
        request.params.best_of = best_of;
        let answers = u64::from(n.max(best_of.unwrap_or(1)));
        prop_assert_eq!(request.params.max_billed_output_tokens(), Some(u64::from(max) * answers));
    }
}

/// Something that looks like a secret or an address, as an upstream might write it.
fn secret() -> impl Strategy<Value = String> {
    prop_oneof![
        "[A-Za-z0-9_-]{8,40}".prop_map(|key| format!("sk-{key}")),
        "[A-Za-z0-9_-]{8,40}".prop_map(|key| format!("sk-ant-api03-{key}")),
        "[A-Za-z0-9._~+/=-]{1,40}[A-Za-z0-9]".prop_map(|token| format!("Bearer {token}")),
        (any::<[u8; 4]>(), prop::option::of(1u16..)).prop_map(|(ip, port)| {
            let ip = format!("{}.{}.{}.{}", ip[0], ip[1], ip[2], ip[3]);
            port.map_or(ip.clone(), |port| format!("{ip}:{port}"))
        }),
        ("[a-z]{1,10}(\\.[a-z]{2,5}){1,2}", "[a-z0-9/]{0,20}")
            .prop_map(|(host, path)| format!("https://{host}/{path}")),
        "[0-9a-f]{32,64}",
    ]
}

proptest! {
    #[test]
    fn no_secret_survives_redaction_whatever_surrounds_it(
        before in "[a-zA-Z ,.:;()'\"]{0,40}",
        secret in secret(),
        after in "[a-zA-Z ,.:;()'\"]{0,40}",
    ) {
        // Words around it are separated from it, as in a sentence.
        let text = format!("{before} {secret} {after}");
        let redacted = redact(&text);
        // The secret's distinctive part is gone (for a token, what follows "Bearer ").
        let core = secret.strip_prefix("Bearer ").unwrap_or(&secret);
        prop_assert!(!redacted.contains(core), "{} -> {}", text, redacted);
    }

    #[test]
    fn plain_words_pass_unchanged(text in "[a-zA-Z][a-zA-Z ,.'()]{0,80}") {
        prop_assert_eq!(redact(&text), text.as_str());
    }
}
