//! The `caching` and `rate_limiting` sections are the layer crates' own configurations: whatever
//! those crates accept, the one file accepts, with the paths of mistakes under the section.

use tollgate::{
    Config, ErrorKind, LlmRequest, Message, Stack, clock::ManualClock, ratelimit::Denial,
};
use tower::ServiceExt;

const PROVIDERS: &str = "
providers:
  sim: { kind: simulated }
roles:
  default: { provider: sim, model: small }
  big: { model: large }
";

fn ask(role: &str, tenant: &str) -> LlmRequest {
    LlmRequest::new("", vec![Message::user("hi")])
        .with_role(role)
        .with_tenant(tenant)
        .with_max_tokens(10)
}

#[tokio::test]
async fn a_scope_of_the_rate_limit_crate_limits_through_the_one_file() {
    let config = Config::from_yaml(&format!(
        "{PROVIDERS}
rate_limiting:
  tenants:
    default: {{ per_minute: 100 }}
  scopes:
    - name: per_model
      key: [tenant, model]
      tiers: [ {{ requests: 2, per: 1m }} ]
caching: false
"
    ))
    .unwrap();
    let stack = Stack::builder(&config)
        .clock(ManualClock::new())
        .build()
        .unwrap();
    let call = |role: &str, tenant: &str| stack.clone().oneshot(ask(role, tenant));
    let mut seen = Vec::new();
    for (role, tenant) in [
        ("default", "acme"),
        ("default", "acme"),
        ("default", "acme"),
        ("big", "acme"),
        ("default", "globex"),
    ] {
        seen.push(match call(role, tenant).await {
            Ok(_) => "ok".to_owned(),
            Err(e) => {
                assert_eq!(e.kind(), ErrorKind::RateLimited);
                let denial = e.extensions().get::<Denial>().unwrap();
                format!("{}:{}", denial.scope(), denial.key())
            }
        });
    }
    assert_eq!(seen, ["ok", "ok", "per_model:acme|small", "ok", "ok"]);
}

fn paths(sections: &str) -> Vec<String> {
    Config::from_yaml(&format!("{PROVIDERS}{sections}"))
        .unwrap_err()
        .paths()
        .iter()
        .map(ToString::to_string)
        .collect()
}

#[test]
fn mistakes_in_the_crates_sections_carry_the_sections_paths() {
    assert_eq!(paths("rate_limiting: {}\n"), ["rate_limiting"]);
    assert_eq!(
        paths(
            "rate_limiting: { tenants: { default: { per_minute: 5 } }, redis: { url: \"redis://x/\" } }\n"
        ),
        ["rate_limiting.redis"]
    );
    assert_eq!(
        paths(
            "rate_limiting:
  tenants: { default: { per_minute: 5 } }
  scopes: [ { name: tenant, key: principal, tiers: [ { requests: 1, per: 1s } ] } ]
"
        ),
        ["rate_limiting.scopes[0].name"]
    );
    assert_eq!(
        paths(
            "rate_limiting:
  scopes: [ { name: user, key: principal, tiers: [ { requests: 60, per: 1m }, { requests: 10, per: 1h } ] } ]
"
        ),
        ["rate_limiting.scopes[0].tiers[1].requests"]
    );
    assert_eq!(paths("caching: { store: file }\n"), ["caching.path"]);
    assert_eq!(paths("caching: { ttl: 0s }\n"), ["caching.ttl"]);
    assert_eq!(paths("caching: { store: tiered }\n"), ["caching.store"]);
}

/// The paths of every mistake in a configuration whose providers are `providers`.
fn provider_paths(providers: &str) -> Vec<String> {
    let yaml = format!("providers:\n{providers}\nroles:\n  default: {{ provider: p, model: m }}\n");
    match Config::from_yaml(&yaml) {
        Ok(_) => Vec::new(),
        Err(errors) => errors.paths().iter().map(ToString::to_string).collect(),
    }
}

#[test]
fn each_kind_takes_its_own_fields_and_requires_what_it_needs() {
    // Azure: an endpoint and one credential; its fields nowhere else.
    assert_eq!(
        provider_paths("  p: { kind: azure, deployments: { gpt-4o: gpt-4o-prod } }"),
        ["providers.p.base_url", "providers.p.api_key_env"]
    );
    assert_eq!(
        provider_paths(
            "  p: { kind: azure, base_url: \"https://r.openai.azure.com\", api_key_env: K, entra_token_env: T }"
        ),
        ["providers.p.entra_token_env"]
    );
    assert!(provider_paths(
        "  p: { kind: azure, base_url: \"https://r.openai.azure.com\", entra_token_env: AZURE_TOKEN, deployments: { gpt-4o: gpt-4o-prod }, api_version: 2024-10-21 }"
    )
    .is_empty());
    assert_eq!(
        provider_paths("  p: { kind: openai, deployments: { m: d }, api_version: v }"),
        ["providers.p.deployments", "providers.p.api_version"]
    );
    // A preset: a known name, on kind openai, with a key where the service needs one.
    assert_eq!(
        provider_paths("  p: { kind: openai, preset: groq }"),
        ["providers.p.api_key_env"]
    );
    assert!(provider_paths("  p: { kind: openai, preset: ollama }").is_empty());
    assert_eq!(
        provider_paths("  p: { kind: anthropic, preset: groq, api_key_env: K }"),
        ["providers.p.preset"]
    );
    // Whether the server serves OpenAI's Responses API: said of kind openai only.
    assert!(
        provider_paths(
            "  p: { kind: openai, base_url: \"http://vllm:8000/v1\", responses_api: true }"
        )
        .is_empty()
    );
    assert_eq!(
        provider_paths("  p: { kind: anthropic, api_key_env: K, responses_api: true }"),
        ["providers.p.responses_api"]
    );
    assert_eq!(
        provider_paths(
            "  p: { kind: azure, base_url: \"https://r.openai.azure.com\", api_key_env: K, responses_api: false }"
        ),
        ["providers.p.responses_api"]
    );
    // Google's and Amazon's: what each needs to be reached.
    assert_eq!(
        provider_paths("  p: { kind: gemini }"),
        ["providers.p.api_key_env"]
    );
    assert_eq!(
        provider_paths("  p: { kind: vertex, api_key_env: K, region: us-east-1 }"),
        [
            "providers.p.api_key_env",
            "providers.p.region",
            "providers.p.project",
            "providers.p.location"
        ]
    );
    assert!(provider_paths(
        "  p: { kind: vertex, project: my-project, location: us-east5, credentials_file: /etc/key.json }"
    )
    .is_empty());
    assert_eq!(
        provider_paths("  p: { kind: bedrock, profile: prod, api_key_env: K, project: x }"),
        [
            "providers.p.project",
            "providers.p.region",
            "providers.p.profile"
        ]
    );
    assert!(provider_paths("  p: { kind: bedrock, region: eu-west-1, profile: prod }").is_empty());
    let error = Config::from_yaml(
        "providers:\n  p: { kind: openai, preset: groqq }\nroles:\n  default: { provider: p, model: m }\n",
    )
    .unwrap_err()
    .to_string();
    assert!(
        error.contains("unknown preset \"groqq\"; known: groq, mistral"),
        "{error}"
    );
}
