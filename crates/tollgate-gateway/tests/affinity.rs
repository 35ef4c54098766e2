//! Prompt-cache affinity and active probes through the real binary, over three scripted
//! upstreams: each system prompt always lands on one deployment, the prompts follow the weights,
//! a cooling deployment hands over only its own; a deployment cooled by failures comes back on
//! its first answered probe.

mod support;

use std::{
    collections::BTreeMap,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use serde_json::{Value, json};
use support::*;

/// A chat body with system prompt number `prompt`, asking question `n`.
/// Three OpenAI-compatible upstreams serving the `default` role with affinity, weighted 2:1:1.
fn three_upstreams([a, b, c]: &[Upstream; 3]) -> String {
    role_config(
        &[("a", a), ("b", b), ("c", c)],
        "affinity: prefix\ntargets: [{ provider: a, weight: 2 }, { provider: b }, { provider: c }]",
        "retry: { max_retries: 0 }",
    )
}

fn prompted(prompt: usize, n: usize) -> Value {
    json!({
        "model": "default",
        "messages": [
            { "role": "system", "content": format!("You are assistant {prompt}. Answer in one line.") },
            { "role": "user", "content": format!("question {n}") }
        ]
    })
}

/// Sends `calls` (prompt, question) pairs, 8 at a time; says which deployment answered each
/// prompt's calls, and after how many moves.
async fn send(
    gateway: &GatewayProcess,
    calls: Vec<(usize, usize)>,
) -> BTreeMap<usize, Vec<(String, String)>> {
    let calls = Arc::new(calls);
    let next = Arc::new(AtomicUsize::new(0));
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..8 {
        let (calls, next, url) = (calls.clone(), next.clone(), gateway.url.clone());
        workers.spawn(async move {
            let client = client();
            let mut landed = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::SeqCst);
                let Some(&(prompt, n)) = calls.get(i) else {
                    return landed;
                };
                let response = client
                    .post(format!("{url}/v1/chat/completions"))
                    .bearer_auth(ALICE)
                    .json(&prompted(prompt, n))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(response.status(), 200);
                let header = |name: &str| response.headers()[name].to_str().unwrap().to_owned();
                landed.push((
                    prompt,
                    (header("x-tollgate-deployment"), header("x-tollgate-moves")),
                ));
            }
        });
    }
    let mut by_prompt: BTreeMap<usize, Vec<(String, String)>> = BTreeMap::new();
    while let Some(landed) = workers.join_next().await {
        for (prompt, served) in landed.unwrap() {
            by_prompt.entry(prompt).or_default().push(served);
        }
    }
    by_prompt
}

/// Each prompt's one deployment; panics if a prompt's calls went to two.
fn homes(by_prompt: &BTreeMap<usize, Vec<(String, String)>>) -> BTreeMap<usize, String> {
    by_prompt
        .iter()
        .map(|(prompt, served)| {
            let first = &served[0].0;
            assert!(
                served.iter().all(|(d, _)| d == first),
                "prompt {prompt} went to {served:?}"
            );
            (*prompt, first.clone())
        })
        .collect()
}

#[tokio::test]
async fn each_prompt_lands_on_one_deployment_by_weight_and_a_cooling_one_hands_over_only_its_own() {
    let upstreams = [
        Upstream::start().await,
        Upstream::start().await,
        Upstream::start().await,
    ];
    let gateway = GatewayProcess::start(&three_upstreams(&upstreams)).await;

    // 1,000 calls over 20 system prompts.
    let calls: Vec<_> = (0..1_000).map(|i| (i % 20, i)).collect();
    let by_prompt = send(&gateway, calls).await;
    let before = homes(&by_prompt);
    assert!(by_prompt.values().flatten().all(|(_, moves)| moves == "0"));
    // Weights 2:1:1: 10, 5 and 5 prompts of 50 calls each. The issue asks for the split within
    // 10 % of the weights; it is exact, since each new prompt goes to the deployment with the
    // fewest prompts for its weight.
    let calls: Vec<usize> = upstreams.iter().map(Upstream::calls).collect();
    assert_eq!(calls, [500, 250, 250]);

    // c says 429 with `Retry-After: 60` to its next call: one of its prompts, sent alone.
    upstreams[2].push(Reply::Json(
        429,
        json!({ "error": { "message": "slow down", "type": "requests", "code": "rate_limit_exceeded" } }),
        vec![("retry-after", "60".to_owned())],
    ));
    let on_c: Vec<usize> = before
        .iter()
        .filter(|(_, home)| *home == "c/up-model")
        .map(|(prompt, _)| *prompt)
        .collect();
    assert_eq!(on_c.len(), 5);
    let refused = send(&gateway, vec![(on_c[0], 1_000)]).await;
    let (stand_in, moves) = &refused[&on_c[0]][0];
    assert_eq!(moves, "1");
    assert_ne!(stand_in, "c/up-model");

    // 200 more calls while c cools down: only c's prompts moved, each to one deployment.
    let calls: Vec<_> = (0..200).map(|i| (i % 20, 2_000 + i)).collect();
    let during = homes(&send(&gateway, calls).await);
    assert_eq!(upstreams[2].calls(), 251);
    for (prompt, home) in &before {
        if on_c.contains(prompt) {
            assert_ne!(during[prompt], "c/up-model", "prompt {prompt}");
        } else {
            assert_eq!(&during[prompt], home, "prompt {prompt} moved");
        }
    }
    assert_eq!(&during[&on_c[0]], stand_in);
}

#[tokio::test]
async fn a_deployment_cooled_by_failures_comes_back_on_its_first_answered_probe() {
    let (first, second) = (Upstream::start().await, Upstream::start().await);
    let yaml = role_config(
        &[("first", &first), ("second", &second)],
        "strategy: priority\nprobe: { every: 1s }\ntargets: [{ provider: first }, { provider: second }]",
        "routing: { cooldown: { failures: 3, duration: 10m } }\nretry: { max_retries: 0 }",
    );
    for _ in 0..3 {
        first.push(Reply::Json(
            500,
            json!({ "error": { "message": "it broke", "type": "server_error" } }),
            vec![],
        ));
    }
    let gateway = GatewayProcess::start(&yaml).await;
    for text in ["one", "two", "three"] {
        let response = chat(&gateway, ALICE, &ask(text)).await;
        assert_eq!(response.status(), 200);
        assert_eq!(
            response.headers()["x-tollgate-deployment"],
            "second/up-model"
        );
    }

    // Cooled for ten minutes; the probe a second later is answered, and it is back.
    let back = until(Duration::from_secs(15), || async {
        let health = get_json(&gateway, "/health", None).await;
        health["deployments"]["first/up-model"]["cooling_for_ms"].is_null()
    })
    .await;
    assert!(back, "{}", gateway.logs());
    let health = get_json(&gateway, "/health", None).await;
    let deployment = &health["deployments"]["first/up-model"];
    assert_eq!(
        (
            deployment["probes"].as_u64(),
            deployment["failed_probes"].as_u64()
        ),
        (Some(1), Some(0))
    );
    assert_eq!(first.calls(), 4);
    let probe = &first.bodies()[3];
    assert_eq!(probe["model"], "up-model");
    assert_eq!(
        probe["messages"],
        json!([{ "role": "user", "content": "ping" }])
    );
    assert_eq!(probe["max_tokens"], 1);

    let response = chat(&gateway, ALICE, &ask("four")).await;
    assert_eq!(
        response.headers()["x-tollgate-deployment"],
        "first/up-model"
    );
    assert_eq!((first.calls(), second.calls()), (5, 3));
}
