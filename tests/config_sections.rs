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
