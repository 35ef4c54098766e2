//! The cost tracker's memory policy: at most `costs.max_tenants` tenants keep a line of their own,
//! the ones idle longest are folded into `other_tenants`, and `drain` hands spend off exactly.

use tollgate::{Config, LlmRequest, Message, Stack};
use tower::ServiceExt;

/// A stack on one simulated provider at $1 in and $2 out per million tokens: a call of "hi" (7
/// prompt tokens) answered with 10 tokens costs 7 + 20 = 27 micro-dollars.
fn stack(costs: &str) -> Stack {
    let yaml = format!(
        r#"
providers:
  sim: {{ kind: simulated, output_tokens: 10 }}
roles:
  default: {{ provider: sim, model: small, max_tokens: 10 }}
pricing:
  small: {{ input: "1.00", output: "2.00" }}
{costs}
"#
    );
    Stack::from_config(&Config::from_yaml(&yaml).unwrap()).unwrap()
}

async fn call(stack: &Stack, tenant: &str) {
    let request = LlmRequest::new("", vec![Message::user("hi")]).with_tenant(tenant);
    stack.clone().oneshot(request).await.unwrap();
}

fn tenants(report: &tollgate::CostReport) -> Vec<&str> {
    report.by_tenant.keys().map(String::as_str).collect()
}

#[tokio::test]
async fn past_the_bound_the_tenants_idle_longest_are_folded_and_the_sums_stay_exact() {
    // 16 tenants: a full table folds 16 / 8 = 2 lines at a time.
    let stack = stack("costs: { max_tenants: 16 }");
    for n in 0..16 {
        call(&stack, &format!("t{n:02}")).await;
    }
    // t00 and t01 call again, so t02 and t03 are now the ones idle longest.
    call(&stack, "t00").await;
    call(&stack, "t01").await;
    assert_eq!(stack.costs().tenants(), 16);

    call(&stack, "new").await;
    let report = stack.costs().report();
    assert_eq!(stack.costs().tenants(), 15);
    assert!(!report.by_tenant.contains_key("t02"));
    assert!(!report.by_tenant.contains_key("t03"));
    assert_eq!(report.by_tenant["t00"].spend.calls, 2);
    assert_eq!(report.by_tenant["new"].spend.calls, 1);
    assert_eq!(report.other_tenants.folded, 2);
    assert_eq!(report.other_tenants.spend.calls, 2);
    assert_eq!(report.other_tenants.spend.cost.0, 2 * 27);
    assert_eq!(report.total.calls, 19);
    assert_eq!(report.total.cost.0, 19 * 27);

    // A folded tenant that calls again starts a new line; its earlier spend stays in other.
    call(&stack, "t02").await;
    let report = stack.costs().report();
    assert_eq!(report.by_tenant["t02"].spend.calls, 1);
    assert_eq!(report.other_tenants.spend.calls, 2);
    assert_eq!(stack.costs().tenants(), 16);
}

#[tokio::test]
async fn the_folded_tenants_are_one_line_in_the_json_and_absent_until_then() {
    let stack = stack("costs: { max_tenants: 1 }");
    call(&stack, "acme").await;
    assert!(!stack.costs().report().to_json().contains("other_tenants"));

    call(&stack, "initech").await;
    let json = stack.costs().report().to_json();
    let other = r#"  "other_tenants": {
    "folded": 1,
    "calls": 1,
    "input_tokens": 7,
    "output_tokens": 10,
    "cost_usd": "0.000027",
    "unpriced_calls": 0,
    "incomplete_calls": 0
  },
  "by_provider""#;
    assert!(json.contains(other), "{json}");
    assert_eq!(tenants(&stack.costs().report()), ["initech"]);
}

#[tokio::test]
async fn a_drain_returns_the_spend_since_the_last_one_and_starts_from_zero() {
    let stack = stack("");
    assert_eq!(stack.costs().max_tenants(), tollgate::DEFAULT_MAX_TENANTS);
    call(&stack, "acme").await;
    call(&stack, "acme").await;
    call(&stack, "initech").await;

    let first = stack.costs().drain();
    assert_eq!(first.total.calls, 3);
    assert_eq!(first.by_tenant["acme"].spend.cost.0, 2 * 27);
    assert_eq!(first.by_provider["sim"].calls, 3);
    assert_eq!(stack.costs().tenants(), 0);
    assert_eq!(stack.costs().report().total.calls, 0);

    call(&stack, "acme").await;
    let second = stack.costs().drain();
    assert_eq!(second.total.calls, 1);
    assert_eq!(tenants(&second), ["acme"]);
    assert_eq!(second.by_role["default"].cost.0, 27);
    assert_eq!(stack.costs().drain(), tollgate::CostReport::default());
}

#[tokio::test]
async fn the_budgets_of_a_folded_tenant_are_still_enforced() {
    // The report forgets a line; the limiter does not forget what a tenant owes.
    let stack = stack(
        r#"
costs: { max_tenants: 1 }
rate_limiting:
  tenants:
    default: { cost_per_day: "0.000054" }
"#,
    );
    call(&stack, "acme").await;
    call(&stack, "acme").await;
    call(&stack, "initech").await; // folds acme's line
    assert!(!stack.costs().report().by_tenant.contains_key("acme"));
    let refused = stack
        .clone()
        .oneshot(LlmRequest::new("", vec![Message::user("hi")]).with_tenant("acme"))
        .await
        .unwrap_err();
    assert_eq!(refused.kind(), tollgate::ErrorKind::BudgetExceeded);
}

#[test]
fn the_costs_section_is_checked_with_its_paths() {
    let read = |costs: &str| {
        let yaml = format!(
            "providers: {{ sim: {{ kind: simulated }} }}\n\
             roles: {{ default: {{ provider: sim, model: small }} }}\n{costs}"
        );
        Config::from_yaml(&yaml).map(|c| c.costs.max_tenants)
    };
    assert_eq!(read("").unwrap(), tollgate::DEFAULT_MAX_TENANTS);
    assert_eq!(read("costs: { max_tenants: 3 }").unwrap(), 3);

    let zero = read("costs: { max_tenants: 0 }").unwrap_err();
    assert_eq!(zero.paths(), ["costs.max_tenants"]);
    assert!(zero.to_string().contains("must be at least 1"), "{zero}");

    let typo = read("costs: { max_tenant: 3 }").unwrap_err();
    assert_eq!(typo.paths(), ["costs.max_tenant"]);
    assert!(
        typo.to_string().contains("unknown field `max_tenant`"),
        "{typo}"
    );
}

/// Ten tokens a word: nothing like the default estimator's count, so its use shows.
struct TenPerWord;

impl tollgate::TokenEstimator for TenPerWord {
    fn estimate_text(&self, text: &str) -> u64 {
        10 * text.split_whitespace().count() as u64
    }
}

#[tokio::test(start_paused = true)]
async fn one_estimator_counts_for_the_limiter_and_for_an_unfinished_stream() {
    use tollgate::{
        ErrorKind, LlmError, LlmResponse,
        stream::{LlmStream, StreamEvent},
    };
    let yaml = r#"
providers:
  sim: { kind: simulated }
roles:
  default: { provider: sim, model: small, max_tokens: 1 }
pricing:
  small: { input: "1.00", output: "2.00" }
rate_limiting:
  tenants:
    default: { tokens_per_minute: 30 }
"#;
    // The stream says two words, then stops without reporting usage.
    let streaming = tower::service_fn(|request: LlmRequest| async move {
        let stream = LlmStream::from_events(vec![Ok(StreamEvent::text("two words"))]);
        Ok::<_, LlmError>(LlmResponse::new(&*request.model, "").with_stream(stream))
    });
    let stack = Stack::builder(&Config::from_yaml(yaml).unwrap())
        .provider("sim", streaming)
        .estimator(TenPerWord)
        .build()
        .unwrap();
    let ask = |text: &str| {
        LlmRequest::new("", vec![Message::user(text)])
            .with_tenant("acme")
            .streaming()
    };

    // The limiter reserves by it: "hi" is 10 + 6 framing + 1 answer token = 17, which fits in 30;
    // "a b" is 20 + 6 + 1 = 27, which does not fit beside it.
    let mut stream = stack
        .clone()
        .oneshot(ask("hi"))
        .await
        .unwrap()
        .take_stream()
        .unwrap();
    let refused = stack.clone().oneshot(ask("a b")).await.unwrap_err();
    assert_eq!(refused.kind(), ErrorKind::RateLimited);

    // The report estimates the unfinished stream by it too: 16 in, 20 out ("two words").
    stream.next().await.unwrap().unwrap();
    drop(stream);
    let spend = stack.costs().report().by_tenant["acme"].spend;
    assert_eq!((spend.input_tokens, spend.output_tokens), (16, 20));
    assert_eq!(spend.incomplete_calls, 1);
}
