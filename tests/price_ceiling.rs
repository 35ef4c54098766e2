//! A call that may be answered by a dearer model than its role's first is reserved at the dearest
//! rate any of them charges, and settled at the rate of the one that answered: a long prompt
//! that moves a call to a bigger model cannot spend past the budget at the small model's price.

use tollgate::{Config, ErrorKind, LlmError, LlmRequest, Message, SimulatedProvider, Stack};
use tower::ServiceExt;

const YAML: &str = r#"
providers:
  cheap: { kind: simulated }
  dear: { kind: simulated }
roles:
  default: { provider: cheap, model: small, context_window_fallbacks: [big] }
  big: { provider: dear, model: large }
  alone: { provider: cheap, model: small }
pricing:
  small: { input: "0", output: "1.00" }
  large: { input: "0", output: "30.00" }
rate_limiting:
  tenants:
    acme: { cost_per_day: "0.01" }
retry: false
"#;

/// The stack, whose small model refuses any prompt that says "long" for its context window.
fn stack() -> Stack {
    let config = Config::from_yaml(YAML).unwrap();
    let simulated = SimulatedProvider::builder().output_tokens(100).build();
    let cheap = tower::service_fn(move |request: LlmRequest| {
        let simulated = simulated.clone();
        async move {
            if request
                .messages
                .iter()
                .any(|m| m.texts().any(|t| t.contains("long")))
            {
                return Err(LlmError::new(
                    ErrorKind::InvalidRequest,
                    "this model's maximum context length is 8192 tokens",
                ));
            }
            simulated.oneshot(request).await
        }
    });
    Stack::builder(&config)
        .provider("cheap", cheap)
        .provider(
            "dear",
            SimulatedProvider::builder().output_tokens(100).build(),
        )
        .build()
        .unwrap()
}

fn ask(role: &str, text: &str) -> LlmRequest {
    LlmRequest::new("", vec![Message::user(text)])
        .with_role(role)
        .with_tenant("acme")
        .with_max_tokens(100)
}

/// What is left of acme's budget, in micro-dollars.
fn left(stack: &Stack) -> u64 {
    let report = stack.cost_report();
    report.by_tenant["acme"].budgets[0].remaining.unwrap().0
}

#[tokio::test]
async fn a_call_is_reserved_at_the_dearest_model_that_may_answer_and_settled_at_the_one_that_did() {
    let stack = stack();
    // The small model answers: 100 tokens at $1 per million.
    let answer = stack.clone().oneshot(ask("default", "hi")).await.unwrap();
    assert_eq!(answer.usage.output_tokens, 100);
    assert_eq!(left(&stack), 10_000 - 100);

    // Too long for it: the large model answers, and is charged as the large model.
    let answer = stack
        .clone()
        .oneshot(ask("default", "a long story"))
        .await
        .unwrap();
    assert_eq!(answer.model, "large");
    assert_eq!(left(&stack), 10_000 - 100 - 3_000);

    // A reservation at the dearest rate must fit: 3,900 µ$ left holds one more call (3,000 µ$
    // at most), not two at once.
    stack.clone().oneshot(ask("default", "long")).await.unwrap();
    assert_eq!(left(&stack), 3_900);
    let first = stack.clone().oneshot(ask("default", "a long one"));
    let second = stack.clone().oneshot(ask("default", "another long one"));
    let (first, second) = tokio::join!(first, second);
    assert!(first.is_ok());
    assert_eq!(second.unwrap_err().kind(), ErrorKind::BudgetExceeded);
    assert_eq!(left(&stack), 900);
}

#[tokio::test]
async fn a_role_that_cannot_move_reserves_at_its_own_model() {
    let stack = stack();
    // 2,900 µ$ left after a long call through the fallback...
    stack.clone().oneshot(ask("default", "long")).await.unwrap();
    stack.clone().oneshot(ask("default", "long")).await.unwrap();
    stack.clone().oneshot(ask("default", "long")).await.unwrap();
    assert_eq!(left(&stack), 1_000);
    // ...is too little for a role that may reach the large model, and room enough for one
    // that cannot.
    let refused = stack
        .clone()
        .oneshot(ask("default", "hi"))
        .await
        .unwrap_err();
    assert_eq!(refused.kind(), ErrorKind::BudgetExceeded);
    stack.clone().oneshot(ask("alone", "hi")).await.unwrap();
    assert_eq!(left(&stack), 900);
}

#[tokio::test]
async fn a_call_without_a_bound_is_sent_one_every_model_it_may_reach_can_write() {
    // gpt-4o writes up to 16,384 tokens, its fallback at most 8,192.
    let config = Config::from_yaml(
        r#"
providers:
  openai: { kind: simulated }
  claude: { kind: simulated }
roles:
  default: { provider: openai, model: gpt-4o, fallbacks: [small] }
  small: { provider: claude, model: claude-3-5-haiku-20241022 }
rate_limiting:
  tenants:
    acme: { tokens_per_day: 10000000 }
retry: false
"#,
    )
    .unwrap();
    let sent = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen = sent.clone();
    let openai = tower::service_fn(move |request: LlmRequest| {
        seen.lock().unwrap().push(request.params.max_tokens);
        async { Err::<tollgate::LlmResponse, _>(LlmError::new(ErrorKind::Server, "down")) }
    });
    let stack = Stack::builder(&config)
        .provider("openai", openai)
        .build()
        .unwrap();
    let ask = LlmRequest::new("", vec![Message::user("hi")]).with_tenant("acme");
    let answer = stack.clone().oneshot(ask.clone()).await.unwrap();
    // The fallback answered, within the bound both were sent.
    assert_eq!(answer.model, "claude-3-5-haiku-20241022");
    assert_eq!(sent.lock().unwrap().as_slice(), [Some(8_192)]);
    assert!(answer.usage.output_tokens <= 8_192);

    // Its own role alone is sent its own model's limit.
    let alone = ask.with_role("small");
    stack.clone().oneshot(alone).await.unwrap();
}
