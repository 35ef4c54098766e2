//! Which provider fields each `kind` takes, and what each kind requires.

use tollgate_core::ConfigError;

use super::sections::{ProviderConfig, ProviderKind};

use ProviderKind as K;

/// Every field set on `provider` that its kind does not take, and every field it requires but
/// lacks, as errors under `providers.<name>`.
pub(super) fn check(name: &str, provider: &ProviderConfig, errors: &mut Vec<ConfigError>) {
    let at = |field: &str| format!("providers.{name}.{field}");
    let kind = provider.kind;
    const NETWORK: &[ProviderKind] = &[
        K::Openai,
        K::Anthropic,
        K::Azure,
        K::Gemini,
        K::Vertex,
        K::Bedrock,
    ];
    const KEYED: &[ProviderKind] = &[K::Openai, K::Anthropic, K::Azure, K::Gemini, K::Bedrock];
    let fields: [(&str, bool, &[ProviderKind]); 15] = [
        ("base_url", provider.base_url.is_some(), NETWORK),
        ("api_key_env", provider.api_key_env.is_some(), KEYED),
        (
            "max_tokens_name",
            provider.max_tokens_name.is_some(),
            &[K::Openai, K::Azure],
        ),
        ("preset", provider.preset.is_some(), &[K::Openai]),
        (
            "responses_api",
            provider.responses_api.is_some(),
            &[K::Openai],
        ),
        ("deployments", !provider.deployments.is_empty(), &[K::Azure]),
        ("api_version", provider.api_version.is_some(), &[K::Azure]),
        (
            "entra_token_env",
            provider.entra_token_env.is_some(),
            &[K::Azure],
        ),
        ("project", provider.project.is_some(), &[K::Vertex]),
        ("location", provider.location.is_some(), &[K::Vertex]),
        (
            "credentials_file",
            provider.credentials_file.is_some(),
            &[K::Vertex],
        ),
        ("region", provider.region.is_some(), &[K::Bedrock]),
        ("profile", provider.profile.is_some(), &[K::Bedrock]),
        ("latency", provider.latency.is_some(), &[K::Simulated]),
        (
            "output_tokens",
            provider.output_tokens.is_some(),
            &[K::Simulated],
        ),
    ];
    for (field, set, kinds) in fields {
        if set && !kinds.contains(&kind) {
            let reason = if kind == K::Simulated {
                "a simulated provider makes no network calls".to_owned()
            } else {
                let names: Vec<String> = kinds.iter().map(|k| name_of(*k)).collect();
                format!(
                    "only for kind: {}, not {}",
                    names.join(" or "),
                    name_of(kind)
                )
            };
            errors.push(ConfigError::new(at(field), reason));
        }
    }
    if let Some(var) = &provider.entra_token_env
        && !is_env_var_name(var)
    {
        errors.push(ConfigError::new(
            at("entra_token_env"),
            "must be the name of an environment variable, not the token itself",
        ));
    }
    match kind {
        K::Azure => {
            if provider.base_url.is_none() {
                errors.push(ConfigError::new(
                    at("base_url"),
                    "missing: the resource's endpoint (https://<resource>.openai.azure.com)",
                ));
            }
            match (&provider.api_key_env, &provider.entra_token_env) {
                (None, None) => errors.push(ConfigError::new(
                    at("api_key_env"),
                    "missing: Azure needs an API key (api_key_env) or an Entra ID token (entra_token_env)",
                )),
                (Some(_), Some(_)) => errors.push(ConfigError::new(
                    at("entra_token_env"),
                    "give api_key_env or entra_token_env, not both",
                )),
                _ => {}
            }
        }
        K::Openai => {
            if let Some(preset) = provider.preset
                && preset.needs_key()
                && provider.api_key_env.is_none()
            {
                errors.push(ConfigError::new(
                    at("api_key_env"),
                    format!(
                        "missing: {preset} needs an API key (api_key_env: {}_API_KEY)",
                        preset.name().to_uppercase()
                    ),
                ));
            }
        }
        K::Gemini => {
            if provider.api_key_env.is_none() {
                errors.push(ConfigError::new(
                    at("api_key_env"),
                    "missing: the Gemini API needs a key (api_key_env: GEMINI_API_KEY)",
                ));
            }
        }
        K::Vertex => {
            for (field, set) in [
                ("project", provider.project.is_some()),
                ("location", provider.location.is_some()),
            ] {
                if !set {
                    errors.push(ConfigError::new(
                        at(field),
                        "missing: Vertex AI needs the project and location it serves from",
                    ));
                }
            }
        }
        K::Bedrock => {
            if provider.region.is_none() {
                errors.push(ConfigError::new(
                    at("region"),
                    "missing: Bedrock needs its AWS region (us-east-1, ...)",
                ));
            }
            if provider.profile.is_some() && provider.api_key_env.is_some() {
                errors.push(ConfigError::new(
                    at("profile"),
                    "give a profile or a Bedrock API key (api_key_env), not both",
                ));
            }
        }
        K::Anthropic | K::Simulated => {}
    }
}

/// Whether `name` can be an environment variable's (letters, digits and `_`, not first a digit).
pub(super) fn is_env_var_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// `kind`'s name in configuration.
fn name_of(kind: ProviderKind) -> String {
    format!("{kind:?}").to_lowercase()
}
