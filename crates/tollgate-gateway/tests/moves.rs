//! Move before retrying, through the real binary: a priority role over an upstream that answers
//! 500 to everything and a healthy one answers every call from the healthy one without waiting
//! on the failing one's backoff; a role with only the failing upstream runs its retry schedule.

mod support;

use std::time::{Duration, Instant};

use serde_json::json;
use support::*;

fn broken() -> Reply {
    Reply::Json(
        500,
        json!({ "error": { "message": "it broke", "type": "server_error" } }),
        vec![],
    )
}

/// `upstreams` serving the `default` role in priority order, each retried up to 3 times
/// `backoff` apart: a call that waited on a retry takes that much longer.
fn role_over(upstreams: &[(&str, &Upstream)], cooldown: &str, backoff: &str) -> String {
    let targets: Vec<String> = upstreams
        .iter()
        .map(|(name, _)| format!("{{ provider: {name} }}"))
        .collect();
    role_config(
        upstreams,
        &format!("strategy: priority\ntargets: [{}]", targets.join(", ")),
        &format!(
            "routing: {{ cooldown: {cooldown} }}\n\
             retry: {{ max_retries: 3, base_delay: {backoff}, multiplier: 1.0, jitter: none, budget: null }}"
        ),
    )
}

/// One call to the gateway at `url`: its status, who served it and how long it took.
async fn timed_call(client: &reqwest::Client, url: &str, text: &str) -> (u16, String, Duration) {
    let started = Instant::now();
    let response = client
        .post(format!("{url}/v1/chat/completions"))
        .bearer_auth(ALICE)
        .json(&ask(text))
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let deployment = response
        .headers()
        .get("x-tollgate-deployment")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    let _ = response.bytes().await.unwrap();
    (status, deployment, started.elapsed())
}

async fn failure_cooldowns(gateway: &GatewayProcess) -> u64 {
    let health = get_json(gateway, "/health", None).await;
    health["deployments"]["broken/up-model"]["cooldowns"]["failures"]
        .as_u64()
        .unwrap_or(0)
}

#[tokio::test]
async fn a_failing_priority_deployment_costs_a_call_one_attempt_not_its_backoff() {
    let (broken_up, healthy) = (Upstream::start().await, Upstream::start().await);
    for _ in 0..400 {
        broken_up.push(broken());
    }
    let gateway = GatewayProcess::start(&role_over(
        &[("broken", &broken_up), ("healthy", &healthy)],
        "{ failures: 3, window: 1m, duration: 1s }",
        "5s",
    ))
    .await;

    // 50 calls one at a time, then 200 at concurrency 8.
    let mut slowest = Duration::ZERO;
    let caller = client();
    for n in 0..50 {
        let (status, deployment, took) =
            timed_call(&caller, &gateway.url, &format!("one {n}")).await;
        assert_eq!((status, deployment.as_str()), (200, "healthy/up-model"));
        slowest = slowest.max(took);
    }
    // Three failures cooled it; it was not called again while it cooled.
    assert!(broken_up.calls() >= 3);
    let mut workers = tokio::task::JoinSet::new();
    for worker in 0..8 {
        let (url, caller) = (gateway.url.clone(), caller.clone());
        workers.spawn(async move {
            let mut calls = Vec::new();
            for n in 0..25 {
                calls.push(timed_call(&caller, &url, &format!("eight {worker}.{n}")).await);
            }
            calls
        });
    }
    let calls = workers.join_all().await.into_iter().flatten();
    for (status, deployment, took) in calls {
        assert_eq!((status, deployment.as_str()), (200, "healthy/up-model"));
        slowest = slowest.max(took);
    }
    assert_eq!(healthy.calls(), 250);

    // A retry on the failing upstream would have waited 5 s: none did. (On an idle machine the
    // slowest call takes milliseconds; the bound is loose for a loaded one.)
    assert!(slowest < Duration::from_secs(5), "slowest call {slowest:?}");
    println!("slowest of 250 calls: {slowest:?}");
    // The first cooldown took `failures` calls; each one after it, one trial call that failed.
    let cooldowns = failure_cooldowns(&gateway).await;
    assert!(cooldowns >= 1);
    assert_eq!(broken_up.calls() as u64, 3 + (cooldowns - 1));
}

#[tokio::test]
async fn with_only_the_failing_deployment_its_retry_schedule_runs() {
    let broken_up = Upstream::start().await;
    for _ in 0..4 {
        broken_up.push(broken());
    }
    let gateway = GatewayProcess::start(&role_over(
        &[("broken", &broken_up)],
        "{ failures: 3, window: 1m, duration: 10s }",
        "1s",
    ))
    .await;

    let (status, _, took) = timed_call(&client(), &gateway.url, "alone").await;
    assert!(status >= 500, "{status}");
    // Four attempts, a second apart: the schedule ran, as a call with no router would.
    assert_eq!(broken_up.calls(), 4);
    assert!(took >= Duration::from_secs(3), "{took:?}");
}
