//! Roles with several targets, through the whole stack a configuration builds: moves, hedges and
//! what the cost report counts, the retry layer leaving failing deployments to the router
//! (`retries_before_move`), requests that name their own provider, and the configuration's
//! mistakes.

use std::time::Duration;

use tollgate::{
    Config, ErrorKind, LlmRequest, Message, Outcome, SimulatedProvider, Stack, clock::TokioClock,
    router::Served,
};
use tower::ServiceExt;

/// Two simulated providers, each $1 in and $2 out per million tokens.
fn config(roles: &str, extra: &str) -> Config {
    Config::from_yaml(&format!(
        r#"
providers:
  first: {{ kind: simulated }}
  second: {{ kind: simulated }}
  spare: {{ kind: simulated }}
roles:
{roles}
pricing:
  m: {{ input: "1.00", output: "2.00" }}
  big: {{ input: "1.00", output: "2.00" }}
{extra}
"#
    ))
    .unwrap()
}

fn ask() -> LlmRequest {
    LlmRequest::new("", vec![Message::user("hi")]).with_tenant("acme")
}

fn served(answer: &tollgate::LlmResponse) -> (String, u32) {
    let served = answer.extensions.get::<Served>().unwrap();
    (served.deployment.to_string(), served.moves)
}

#[tokio::test(start_paused = true)]
async fn an_overloaded_target_moves_to_the_next_and_the_report_counts_what_was_billed() {
    let config = config(
        "  default: { model: m, strategy: priority, targets: [{ provider: first }, { provider: second }] }",
        "",
    );
    let first = SimulatedProvider::builder()
        .script([Outcome::Overloaded])
        .output_tokens(10)
        .build();
    let second = SimulatedProvider::builder().output_tokens(10).build();
    let stack = Stack::builder(&config)
        .provider("first", first.clone())
        .provider("second", second.clone())
        .clock(TokioClock::new())
        .build()
        .unwrap();

    let answer = stack.clone().oneshot(ask()).await.unwrap();
    assert_eq!(served(&answer), ("second/m".to_owned(), 1));
    assert_eq!(answer.model, "m");
    // One call each: the retry layer left the overloaded target to the router, which moved.
    assert_eq!((first.calls(), second.calls()), (1, 1));
    let report = stack.cost_report();
    assert_eq!(report.total.calls, 1, "the overloaded call was not billed");
    assert_eq!(report.by_provider["second"].calls, 1);
    let deployments = stack.deployments();
    assert_eq!(deployments[0].name.as_ref(), "first/m");
    assert_eq!((deployments[0].failures, deployments[1].successes), (1, 1));
    assert_eq!(stack.routing().moves, 1);
}

#[tokio::test(start_paused = true)]
async fn a_hedged_call_is_billed_twice() {
    let config = config(
        "  default: { model: m, strategy: priority, hedge_after: 1s, targets: [{ provider: first }, { provider: second }] }",
        "retry: false",
    );
    let slow = SimulatedProvider::builder()
        .latency(Duration::from_secs(10))
        .output_tokens(10)
        .build();
    let fast = SimulatedProvider::builder()
        .latency(Duration::from_millis(100))
        .output_tokens(10)
        .build();
    let stack = Stack::builder(&config)
        .provider("first", slow.clone())
        .provider("second", fast.clone())
        .clock(TokioClock::new())
        .build()
        .unwrap();

    let started = tokio::time::Instant::now();
    let answer = stack.clone().oneshot(ask()).await.unwrap();
    assert_eq!(started.elapsed(), Duration::from_millis(1_100));
    assert_eq!(served(&answer), ("second/m".to_owned(), 1));
    let report = stack.cost_report();
    // Both providers were called and both bill: the answer in full, the dropped call for the
    // prompt it read (7 tokens, estimated), marked incomplete.
    assert_eq!((report.total.calls, report.total.incomplete_calls), (2, 1));
    let first = report.by_provider["first"];
    assert_eq!(
        (first.input_tokens, first.output_tokens, first.cost.0),
        (7, 0, 7)
    );
    let second = report.by_provider["second"];
    assert_eq!(
        (second.input_tokens, second.output_tokens, second.cost.0),
        (7, 10, 27)
    );
}

#[tokio::test(start_paused = true)]
async fn a_role_without_fallbacks_still_retries_its_one_provider() {
    let config = config(
        "  default: { provider: first, model: m }",
        "retry: { base_delay: 1s, budget: null }",
    );
    let first = SimulatedProvider::builder()
        .script([Outcome::rate_limited(Duration::from_secs(2))])
        .build();
    let stack = Stack::builder(&config)
        .provider("first", first.clone())
        .clock(TokioClock::new())
        .build()
        .unwrap();
    let answer = stack.clone().oneshot(ask()).await.unwrap();
    assert_eq!(first.calls(), 2, "nowhere else to go: the 429 was retried");
    assert_eq!(served(&answer), ("first/m".to_owned(), 0));
}

#[tokio::test(start_paused = true)]
async fn fallback_roles_and_retry_after_cooldowns_through_the_stack() {
    let config = config(
        "  default: { provider: first, model: m, fallbacks: [backup] }\n  backup: { provider: spare, model: m }",
        "",
    );
    let first = SimulatedProvider::builder()
        .script([Outcome::rate_limited(Duration::from_secs(30))])
        .build();
    let spare = SimulatedProvider::new();
    let stack = Stack::builder(&config)
        .provider("first", first.clone())
        .provider("spare", spare.clone())
        .clock(TokioClock::new())
        .build()
        .unwrap();
    for _ in 0..3 {
        let answer = stack.clone().oneshot(ask()).await.unwrap();
        assert_eq!(served(&answer).0, "spare/m");
        tokio::time::advance(Duration::from_secs(10)).await;
    }
    assert_eq!((first.calls(), spare.calls()), (1, 3));
    let answer = stack.clone().oneshot(ask()).await.unwrap();
    assert_eq!(served(&answer).0, "first/m", "30 s later it is used again");
}

#[tokio::test]
async fn a_request_naming_its_provider_or_model_goes_straight_there() {
    let config = config(
        "  default: { model: m, targets: [{ provider: first }, { provider: second }] }",
        "",
    );
    let stack = Stack::from_config(&config).unwrap();
    let answer = stack
        .clone()
        .oneshot(ask().with_provider("spare"))
        .await
        .unwrap();
    assert!(answer.extensions.get::<Served>().is_none());
    assert_eq!(stack.cost_report().by_provider["spare"].calls, 1);

    // A model the role does not give goes to the role's first provider, as asked.
    let answer = stack
        .clone()
        .oneshot(LlmRequest::new("other-model", vec![Message::user("hi")]))
        .await
        .unwrap();
    assert_eq!(answer.model, "other-model");
    assert_eq!(stack.cost_report().by_provider["first"].calls, 1);
}

#[tokio::test]
async fn a_target_with_a_key_of_its_own_is_a_deployment_of_its_own() {
    let config = config(
        "  default: { model: m, targets: [{ provider: first }, { provider: first, name: first-b, model: big }] }",
        "",
    );
    let stack = Stack::from_config(&config).unwrap();
    let names: Vec<String> = stack
        .deployments()
        .iter()
        .map(|d| d.name.to_string())
        .collect();
    assert_eq!(names, ["first/m", "first-b"]);
    for _ in 0..40 {
        stack.clone().oneshot(ask()).await.unwrap();
    }
    // Weighted evenly, both serve; the cost report keeps the provider and each model apart.
    let report = stack.cost_report();
    assert_eq!(report.by_provider["first"].calls, 40);
    assert!(report.by_model["m"].calls > 0 && report.by_model["big"].calls > 0);
}

#[test]
fn routing_mistakes_are_named_with_their_paths() {
    let mistakes = |roles: &str, extra: &str| {
        let yaml = format!(
            r#"
providers:
  first: {{ kind: simulated }}
  second: {{ kind: openai, base_url: "http://127.0.0.1:1" }}
roles:
{roles}
{extra}
"#
        );
        let error = Config::from_yaml(&yaml).unwrap_err();
        error
            .paths()
            .iter()
            .map(|p| p.to_string())
            .collect::<Vec<_>>()
    };
    assert_eq!(
        mistakes(
            "  default: { provider: first, model: m, targets: [{ provider: nowhere, model: m, weight: 0 }] }",
            ""
        ),
        [
            "roles.default.provider",
            "roles.default.targets.0.provider",
            "roles.default.targets.0.weight"
        ]
    );
    assert_eq!(
        mistakes(
            "  default: { model: m, fallbacks: [default, ghost], targets: [{ provider: second, api_key_env: KEY_B }] }",
            ""
        ),
        [
            "roles.default.targets.0.name",
            "roles.default.fallbacks",
            "roles.default.fallbacks"
        ]
    );
    assert_eq!(
        mistakes(
            "  default: { model: m, targets: [{ provider: first }, { provider: second }] }\n  other: { model: m, targets: [{ provider: first, max_in_flight: 2 }] }",
            "routing: { timeout: 0s, adaptive_below: 2 }\nrate_limiting: { providers: { first: { per_minute: 10 } } }\ncaching: { providers: { second: { enabled: false } } }"
        ),
        [
            "roles.other.targets.0",
            "routing.timeout",
            "routing.adaptive_below",
            "rate_limiting.providers.first",
            "caching.providers.second"
        ]
    );
    // A fallback role's provider is reached after the limiter too.
    assert_eq!(
        mistakes(
            "  default: { provider: first, model: m, fallbacks: [backup] }\n  backup: { provider: second, model: m }",
            "rate_limiting: { providers: { second: { per_minute: 10 } } }"
        ),
        ["rate_limiting.providers.second"]
    );
    assert_eq!(
        mistakes(
            "  default: { provider: first, model: m, strategy: latency, hedge_after: soon }",
            ""
        ),
        ["roles.default.hedge_after"]
    );
    assert_eq!(
        mistakes(
            "  default: { provider: first, model: m, fallback_on_status: [404, 200, 503] }",
            ""
        ),
        ["roles.default.fallback_on_status[1]"]
    );
}

#[cfg(feature = "providers")]
#[test]
fn a_target_s_own_key_is_read_from_its_own_variable() {
    let config = Config::from_yaml(
        r#"
providers:
  openai: { kind: openai, base_url: "http://127.0.0.1:1/v1", api_key_env: KEY_A }
roles:
  default:
    model: m
    targets:
      - { provider: openai }
      - { provider: openai, name: openai-b, api_key_env: KEY_B }
"#,
    )
    .unwrap();
    let error = Stack::builder(&config)
        .env(|name| (name == "KEY_A").then(|| "sk-a".to_owned()))
        .build()
        .unwrap_err();
    assert_eq!(error.paths(), ["roles.default.targets.1.api_key_env"]);
    assert!(error.to_string().contains("KEY_B is not set"), "{error}");
    let stack = Stack::builder(&config)
        .env(|_| Some("sk-secret".to_owned()))
        .build()
        .unwrap();
    assert_eq!(stack.deployments().len(), 2);
    assert!(!format!("{stack:?}").contains("sk-secret"));
}

#[tokio::test]
async fn an_unknown_role_is_refused_before_any_call() {
    let config = config("  default: { provider: first, model: m }", "");
    let stack = Stack::from_config(&config).unwrap();
    let error = stack
        .clone()
        .oneshot(ask().with_role("ghost"))
        .await
        .unwrap_err();
    assert_eq!(error.kind(), ErrorKind::InvalidRequest);
    assert!(error.message().contains("\"ghost\""));
}

#[tokio::test(start_paused = true)]
async fn a_roles_retries_before_move_is_how_often_a_failing_target_is_retried_before_moving() {
    for (more, calls_to_first) in [("", 1), (", retries_before_move: 2", 3)] {
        let config = config(
            &format!(
                "  default: {{ model: m, strategy: priority{more}, targets: [{{ provider: first }}, {{ provider: second }}] }}"
            ),
            "retry: { max_retries: 3, base_delay: 1s, jitter: none, budget: null }",
        );
        let first = SimulatedProvider::builder()
            .failure_rate(Outcome::Server, 1.0)
            .build();
        let second = SimulatedProvider::new();
        let stack = Stack::builder(&config)
            .provider("first", first.clone())
            .provider("second", second.clone())
            .clock(TokioClock::new())
            .build()
            .unwrap();
        let answer = stack.clone().oneshot(ask()).await.unwrap();
        assert_eq!(served(&answer), ("second/m".to_owned(), 1), "{more}");
        assert_eq!(
            (first.calls(), second.calls()),
            (calls_to_first, 1),
            "{more}"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn a_role_with_affinity_keeps_each_system_prompt_on_one_target() {
    let config = config(
        "  default: { model: m, affinity: prefix, targets: [{ provider: first }, { provider: second }, { provider: spare }] }",
        "",
    );
    let providers = [(); 3].map(|()| SimulatedProvider::new());
    let stack = ["first", "second", "spare"]
        .iter()
        .zip(&providers)
        .fold(Stack::builder(&config), |builder, (name, provider)| {
            builder.provider(*name, provider.clone())
        })
        .clock(TokioClock::new())
        .build()
        .unwrap();
    let mut homes = std::collections::BTreeMap::new();
    for n in 0..5 {
        for prompt in 0..6 {
            let request = LlmRequest::new(
                "",
                vec![
                    Message::system(format!("You are helper {prompt}.")),
                    Message::user(format!("question {n}")),
                ],
            )
            .with_tenant("acme");
            let answer = stack.clone().oneshot(request).await.unwrap();
            let went = served(&answer).0;
            assert_eq!(homes.entry(prompt).or_insert_with(|| went.clone()), &went);
        }
    }
    // Equal weights: two prompts of five calls each per target.
    let calls: Vec<u64> = providers.iter().map(SimulatedProvider::calls).collect();
    assert_eq!(calls, [10, 10, 10]);
}

#[tokio::test(start_paused = true)]
async fn a_probed_target_comes_back_when_its_probe_is_answered_and_the_probe_is_billed() {
    let start = tokio::time::Instant::now();
    let config = config(
        "  default: { model: m, strategy: priority, probe: { every: 10s }, targets: [{ provider: first }, { provider: second }] }",
        "retry: { max_retries: 0 }\nrouting: { cooldown: { failures: 3, duration: 60s } }",
    );
    let first = SimulatedProvider::builder()
        .script([Outcome::Server, Outcome::Server, Outcome::Server])
        .build();
    let second = SimulatedProvider::new();
    let stack = Stack::builder(&config)
        .provider("first", first.clone())
        .provider("second", second.clone())
        .clock(TokioClock::new())
        .build()
        .unwrap();
    for _ in 0..3 {
        let answer = stack.clone().oneshot(ask()).await.unwrap();
        assert_eq!(served(&answer), ("second/m".to_owned(), 1));
    }
    assert!(stack.deployments()[0].cooling_for.is_some());

    // The stack started the probes when it was built: the one at 10 s is answered.
    tokio::time::sleep_until(start + Duration::from_millis(10_001)).await;
    assert_eq!(first.calls(), 4);
    let deployment = &stack.deployments()[0];
    assert_eq!((deployment.probes, deployment.cooling_for), (1, None));
    assert_eq!(
        stack.cost_report().by_provider["first"].calls,
        1,
        "a probe is billed"
    );
    let answer = stack.clone().oneshot(ask()).await.unwrap();
    assert_eq!(served(&answer), ("first/m".to_owned(), 0));
}

#[test]
fn affinity_and_probe_mistakes_are_named_with_their_paths() {
    let mistakes = |roles: &str| {
        let yaml = format!(
            "providers:\n  first: {{ kind: simulated }}\n  second: {{ kind: simulated }}\nroles:\n{roles}\n"
        );
        let error = Config::from_yaml(&yaml).unwrap_err();
        (
            error
                .paths()
                .iter()
                .map(|p| p.to_string())
                .collect::<Vec<_>>(),
            error.to_string(),
        )
    };
    let (paths, _) = mistakes(
        "  default: { model: m, probe: { every: 0s }, targets: [{ provider: first }, { provider: second }] }",
    );
    assert_eq!(paths, ["roles.default.probe.every"]);
    let (paths, text) = mistakes(
        "  default: { provider: first, model: m, affinity: prefix, probe: { every: 5s } }",
    );
    assert_eq!(paths, ["roles.default.affinity", "roles.default.probe"]);
    assert!(text.contains("nowhere else to go"), "{text}");
    // With somewhere to go, one provider may be probed.
    let yaml = "providers:\n  first: { kind: simulated }\n  second: { kind: simulated }\nroles:\n  default: { provider: first, model: m, probe: { every: 5s }, fallbacks: [backup] }\n  backup: { provider: second, model: m }\n";
    assert!(Config::from_yaml(yaml).is_ok());
    for (bad, says) in [
        (
            "probe: { every: 5s, path: /v1/models }",
            "unknown field `path`",
        ),
        ("affinity: suffix", "unknown variant `suffix`"),
    ] {
        let (_, text) = mistakes(&format!(
            "  default: {{ model: m, {bad}, targets: [{{ provider: first }}, {{ provider: second }}] }}"
        ));
        assert!(text.contains(says), "{bad}: {text}");
        assert!(text.contains("roles.default"), "{bad}: {text}");
    }
}
