//! A role over two real upstreams, through the real binary: the answer names the deployment and
//! the moves, a provider's 429 and its rate-limit headers keep calls away, `/health` shows it.

mod support;

use serde_json::{Value, json};
use support::*;

/// Two OpenAI-compatible upstreams serving the `default` role in priority order.
fn two_upstreams(first: &Upstream, second: &Upstream) -> String {
    role_config(
        &[("first", first), ("second", second)],
        "strategy: priority\ntargets: [{ provider: first }, { provider: second }]",
        "",
    )
}

async fn deployments(gateway: &GatewayProcess) -> Value {
    let health = get_json(gateway, "/health", None).await;
    health["deployments"].clone()
}

fn served(response: &reqwest::Response) -> (String, String) {
    let header = |name: &str| response.headers()[name].to_str().unwrap().to_owned();
    (header("x-tollgate-deployment"), header("x-tollgate-moves"))
}

#[tokio::test]
async fn a_429_moves_the_call_and_keeps_the_next_ones_away() {
    let (first, second) = (Upstream::start().await, Upstream::start().await);
    first.push(Reply::Json(
        429,
        json!({ "error": { "message": "slow down", "type": "requests", "code": "rate_limit_exceeded" } }),
        vec![("retry-after", "30".to_owned())],
    ));
    let gateway = GatewayProcess::start(&two_upstreams(&first, &second)).await;

    let response = chat(&gateway, ALICE, &ask("one")).await;
    assert_eq!(response.status(), 200);
    assert_eq!(served(&response), ("second/up-model".into(), "1".into()));
    for text in ["two", "three"] {
        let response = chat(&gateway, ALICE, &ask(text)).await;
        assert_eq!(served(&response), ("second/up-model".into(), "0".into()));
    }
    assert_eq!((first.calls(), second.calls()), (1, 3));

    let deployments = deployments(&gateway).await;
    let cooling = &deployments["first/up-model"];
    assert_eq!(cooling["cooldowns"], json!({ "retry_after": 1 }));
    let left = cooling["cooling_for_ms"].as_u64().unwrap();
    assert!((25_000..=30_000).contains(&left), "{left}");
    assert_eq!(deployments["second/up-model"]["successes"], 3);
}

#[tokio::test]
async fn a_spent_limit_in_the_providers_headers_is_skipped_without_a_call() {
    let (first, second) = (Upstream::start().await, Upstream::start().await);
    // A good answer, whose headers say no request is left for a minute.
    first.push(Reply::Json(
        200,
        answer("hello"),
        vec![
            ("x-ratelimit-limit-requests", "100".to_owned()),
            ("x-ratelimit-remaining-requests", "0".to_owned()),
            ("x-ratelimit-reset-requests", "1m0s".to_owned()),
        ],
    ));
    let gateway = GatewayProcess::start(&two_upstreams(&first, &second)).await;

    let response = chat(&gateway, ALICE, &ask("one")).await;
    assert_eq!(served(&response), ("first/up-model".into(), "0".into()));
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["choices"][0]["message"]["content"], "hello");
    for text in ["two", "three", "four"] {
        let response = chat(&gateway, ALICE, &ask(text)).await;
        assert_eq!(served(&response).0, "second/up-model");
    }
    assert_eq!((first.calls(), second.calls()), (1, 3));
    let deployments = deployments(&gateway).await;
    assert_eq!(
        deployments["first/up-model"]["cooldowns"],
        json!({ "quota_exhausted": 1 })
    );
}

#[tokio::test]
async fn a_bad_request_is_the_callers_answer_and_moves_nowhere() {
    let (first, second) = (Upstream::start().await, Upstream::start().await);
    first.push(Reply::Json(
        400,
        json!({ "error": { "message": "temperature must be at most 2", "type": "invalid_request_error", "param": "temperature", "code": null } }),
        vec![],
    ));
    let gateway = GatewayProcess::start(&two_upstreams(&first, &second)).await;
    let response = chat(&gateway, ALICE, &ask("one")).await;
    assert_eq!(response.status(), 400);
    assert!(!response.headers().contains_key("x-tollgate-deployment"));
    assert_eq!((first.calls(), second.calls()), (1, 0));
}
