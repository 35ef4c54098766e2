//! Prompt-cache affinity: calls with the same system prompt and tools stay on one deployment,
//! prefixes are spread by the weights, and a deployment that cannot take a call hands over only
//! its own prefixes, for as long as it cannot.

mod support;

use std::{collections::BTreeMap, time::Duration};

use support::*;
use tollgate_core::{LlmRequest, Message, Outcome, SimulatedProvider};
use tollgate_router::{Affinity, Group, Strategy};

/// A call whose system prompt is prompt number `prefix`, asking question `n`.
fn prompted(prefix: usize, n: usize) -> LlmRequest {
    LlmRequest::new(
        "",
        vec![
            Message::system(format!("You are assistant {prefix}. Answer briefly.")),
            Message::user(format!("question {n}")),
        ],
    )
}

/// Deployments a, b and c of weights 2, 1 and 1, in one group with affinity.
fn weighted(providers: [&SimulatedProvider; 3]) -> tollgate_router::Router<support::Boxed> {
    let [a, b, c] = providers;
    builder()
        .deployment(deployment("a", a).weight(2))
        .deployment(deployment("b", b).weight(1))
        .deployment(deployment("c", c).weight(1))
        .group(Group::new("default", ["a", "b", "c"]).affinity(Affinity::Prefix))
        .build()
        .unwrap()
}

/// Sends one call for each of `prefixes` prompts, `rounds` times over, and says where each
/// prompt's calls went.
async fn rounds(
    router: &tollgate_router::Router<support::Boxed>,
    prefixes: usize,
    rounds: usize,
) -> BTreeMap<usize, Vec<String>> {
    let mut landed: BTreeMap<usize, Vec<String>> = BTreeMap::new();
    for round in 0..rounds {
        for prefix in 0..prefixes {
            let answer = call(router, prompted(prefix, round)).await.unwrap();
            landed.entry(prefix).or_default().push(served(&answer).0);
        }
    }
    landed
}

/// Each prompt's one deployment; panics if a prompt's calls went to two.
fn homes(landed: &BTreeMap<usize, Vec<String>>) -> BTreeMap<usize, String> {
    landed
        .iter()
        .map(|(prefix, went)| {
            assert!(
                went.iter().all(|d| *d == went[0]),
                "prompt {prefix} went to {went:?}"
            );
            (*prefix, went[0].clone())
        })
        .collect()
}

#[tokio::test(start_paused = true)]
async fn each_prompt_stays_on_one_deployment_and_prompts_follow_the_weights() {
    let providers = [(); 3].map(|()| SimulatedProvider::new());
    let router = weighted([&providers[0], &providers[1], &providers[2]]);

    // 1,000 calls over 20 prompts, each asking something new.
    let landed = rounds(&router, 20, 50).await;
    let homes = homes(&landed);

    // Weights 2:1:1 over 20 prompts: 10, 5 and 5 prompts of 50 calls each. The issue asks for
    // the split within 10 % of the weights; giving each new prompt to the deployment with the
    // fewest for its weight makes it exact, whatever the prompts hash to.
    let calls: Vec<u64> = providers.iter().map(SimulatedProvider::calls).collect();
    assert_eq!(calls, [500, 250, 250]);
    let mut per_deployment = BTreeMap::new();
    for home in homes.values() {
        *per_deployment.entry(home.as_str()).or_insert(0) += 1;
    }
    assert_eq!(
        per_deployment,
        BTreeMap::from([("a", 10), ("b", 5), ("c", 5)])
    );
    assert_eq!(router.metrics().moves, 0);
}

#[tokio::test(start_paused = true)]
async fn a_cooling_deployment_hands_over_only_its_prompts_and_gets_them_back() {
    // c answers its 5 prompts once, then says 429 with `Retry-After: 30`.
    let (a, b) = (SimulatedProvider::new(), SimulatedProvider::new());
    let c = SimulatedProvider::builder()
        .script(
            std::iter::repeat_n(Outcome::Success, 5)
                .chain([Outcome::rate_limited(Duration::from_secs(30))]),
        )
        .build();
    let router = weighted([&a, &b, &c]);
    let before = homes(&rounds(&router, 20, 1).await);
    assert_eq!(c.calls(), 5);

    // Three rounds while c cools down: its first call there is refused and moves.
    let during = homes(&rounds(&router, 20, 3).await);
    assert_eq!(c.calls(), 6);
    assert_eq!(router.metrics().moves, 1);
    let mut moved = Vec::new();
    for (prefix, home) in &before {
        if home == "c" {
            // Each of c's prompts went to one other deployment, every time.
            assert_ne!(during[prefix], "c");
            moved.push(*prefix);
        } else {
            assert_eq!(during[prefix], *home, "prompt {prefix} moved");
        }
    }
    assert_eq!(moved.len(), 5);

    // Once the pause is over, c's prompts go back to c, whose cache may still be warm.
    advance(Duration::from_secs(30)).await;
    let after = homes(&rounds(&router, 20, 2).await);
    assert_eq!(after, before);
    assert_eq!(c.calls(), 6 + 10);
}

#[tokio::test(start_paused = true)]
async fn a_full_home_hands_over_that_call_only() {
    let slow = |_| {
        SimulatedProvider::builder()
            .latency(Duration::from_secs(1))
            .build()
    };
    let (a, b) = (slow(()), slow(()));
    let router = builder()
        .deployment(deployment("a", &a).max_in_flight(1))
        .deployment(deployment("b", &b).max_in_flight(1))
        .group(Group::new("default", ["a", "b"]).affinity(Affinity::Prefix))
        .build()
        .unwrap();
    let home = served(&call(&router, prompted(0, 0)).await.unwrap()).0;
    let other = if home == "a" { "b" } else { "a" };

    // The home is busy with one call: the next with the same prompt goes to the other.
    let busy = tokio::spawn({
        let router = router.clone();
        async move { call(&router, prompted(0, 1)).await }
    });
    tokio::task::yield_now().await;
    assert_eq!(router.stats().iter().map(|d| d.in_flight).sum::<u32>(), 1);
    let handed = call(&router, prompted(0, 2)).await.unwrap();
    assert_eq!(served(&handed), (other.to_owned(), 0));
    assert_eq!(served(&busy.await.unwrap().unwrap()), (home.clone(), 0));

    // Room again: back home.
    assert_eq!(
        served(&call(&router, prompted(0, 3)).await.unwrap()).0,
        home
    );
    assert_eq!(a.calls() + b.calls(), 4);
}

#[tokio::test(start_paused = true)]
async fn a_home_that_failed_this_call_hands_over_that_call_only() {
    // Whichever is the home fails its second call once; a single failure cools nothing.
    let flaky = || {
        SimulatedProvider::builder()
            .script([Outcome::Success, Outcome::Server])
            .build()
    };
    let (a, b) = (flaky(), flaky());
    let router = builder()
        .deployment(deployment("a", &a))
        .deployment(deployment("b", &b))
        .group(Group::new("default", ["a", "b"]).affinity(Affinity::Prefix))
        .build()
        .unwrap();
    let home = served(&call(&router, prompted(0, 0)).await.unwrap()).0;
    let other = if home == "a" { "b" } else { "a" };

    let moved = call(&router, prompted(0, 1)).await.unwrap();
    assert_eq!(served(&moved), (other.to_owned(), 1));
    for n in 2..5 {
        assert_eq!(
            served(&call(&router, prompted(0, n)).await.unwrap()),
            (home.clone(), 0)
        );
    }
}

#[tokio::test(start_paused = true)]
async fn tools_are_part_of_the_prefix_and_calls_without_one_follow_the_strategy() {
    let providers = [(); 4].map(|()| SimulatedProvider::new());
    let names = ["a", "b", "c", "d"];
    let router = names
        .iter()
        .zip(&providers)
        .fold(builder(), |builder, (name, provider)| {
            builder.deployment(deployment(name, provider))
        })
        .group(
            Group::new("default", names)
                .strategy(Strategy::Priority)
                .affinity(Affinity::Prefix),
        )
        .build()
        .unwrap();

    // No system prompt and no tools: the priority strategy picks, as without affinity.
    for n in 0..5 {
        let plain = LlmRequest::new("", vec![Message::user(format!("hi {n}"))]);
        assert_eq!(served(&call(&router, plain).await.unwrap()).0, "a");
    }

    // The same tools and no system prompt: one deployment, the same for every call. Four
    // different tool lists: one each, the deployments being equal.
    let mut homes = Vec::new();
    for tool in 0..4 {
        let mut went = Vec::new();
        for n in 0..3 {
            let mut request = LlmRequest::new("", vec![Message::user(format!("q {n}"))]);
            request.params.set_extra(
                "tools",
                serde_json::json!([{ "type": "function", "function": { "name": format!("tool_{tool}") } }]),
            );
            went.push(served(&call(&router, request).await.unwrap()).0);
        }
        assert!(went.iter().all(|d| *d == went[0]), "{went:?}");
        homes.push(went[0].clone());
    }
    homes.sort();
    assert_eq!(homes, names);
}
