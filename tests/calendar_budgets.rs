//! Calendar budgets from the configuration: on a tenant and on a role, enforced by the stack and
//! shown in the cost report with their period.

use tollgate::{Config, ErrorKind, LlmRequest, Message, Stack};
use tower::ServiceExt;

/// One simulated provider at $1 in and $2 out per million tokens: a call of "hi" (7 prompt
/// tokens) bounded to 10 answer tokens reserves and costs 7 + 20 = 27 micro-dollars.
fn stack(limits: &str) -> Stack {
    let yaml = format!(
        r#"
providers:
  sim: {{ kind: simulated, output_tokens: 10 }}
roles:
  default: {{ provider: sim, model: small, max_tokens: 10 }}
  other: {{ provider: sim, model: small, max_tokens: 10 }}
pricing:
  small: {{ input: "1.00", output: "2.00" }}
rate_limiting:
{limits}
"#
    );
    Stack::from_config(&Config::from_yaml(&yaml).unwrap()).unwrap()
}

async fn call(stack: &Stack, tenant: &str, role: &str) -> Result<(), ErrorKind> {
    let request = LlmRequest::new("", vec![Message::user("hi")])
        .with_tenant(tenant)
        .with_role(role);
    stack
        .clone()
        .oneshot(request)
        .await
        .map(drop)
        .map_err(|e| e.kind())
}

#[tokio::test]
async fn a_tenants_monthly_budget_admits_its_limit_and_the_report_shows_its_period() {
    let stack = stack(
        r#"  tenants:
    acme: { budgets: [ { limit: "0.000054", period: month } ] }"#,
    );
    call(&stack, "acme", "default").await.unwrap();
    call(&stack, "acme", "default").await.unwrap();
    assert_eq!(
        call(&stack, "acme", "default").await,
        Err(ErrorKind::BudgetExceeded)
    );
    // Tenants without an entry are not limited.
    call(&stack, "globex", "default").await.unwrap();
    let json = stack.cost_report().to_json();
    let budget = r#""budgets": [
        {
          "per": "31d",
          "calendar": "month (UTC)",
          "limit_usd": "0.000054",
          "remaining_usd": "0.000000"
        }
      ]"#;
    assert!(json.contains(budget), "{json}");
}

#[tokio::test]
async fn a_roles_daily_budget_is_shared_by_every_caller_of_the_role() {
    let stack = stack(
        r#"  roles:
    default: { budgets: [ { limit: "0.000027", period: day, time_zone: America/New_York } ] }"#,
    );
    call(&stack, "acme", "default").await.unwrap();
    assert_eq!(
        call(&stack, "globex", "default").await,
        Err(ErrorKind::BudgetExceeded)
    );
    // Another role is not.
    call(&stack, "globex", "other").await.unwrap();
}

#[test]
fn a_budget_on_an_unknown_role_or_with_an_unknown_zone_is_named() {
    let yaml = r#"
providers: { sim: { kind: simulated } }
roles: { default: { provider: sim, model: small } }
pricing: { small: { input: "1", output: "1" } }
rate_limiting:
  roles:
    defualt: { budgets: [ { limit: 5, period: week } ] }
    default: { budgets: [ { limit: 5, period: week, time_zone: Atlantis } ] }
"#;
    let errors = Config::from_yaml(yaml).unwrap_err();
    assert_eq!(
        errors.paths(),
        [
            "rate_limiting.roles.default.budgets[0].time_zone",
            "rate_limiting.roles.defualt"
        ]
    );
}
