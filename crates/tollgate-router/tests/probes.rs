//! Active probes: a deployment cooling down after failures is sent a tiny call every `every`,
//! and comes back when one is answered; a failed probe keeps it out; a pause the provider asked
//! for is not probed; the probes end with the router.

mod support;

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use support::*;
use tollgate_core::{LlmRequest, Message, Operation, Outcome, SimulatedProvider};
use tollgate_router::{
    CooldownConfig, CooldownReason, Deployment, Group, ProbeConfig, Router, RouterConfig, Strategy,
};
use tower::{ServiceExt, util::BoxCloneSyncService};

const EVERY: Duration = Duration::from_secs(10);

/// `flaky` before `spare` in priority order, probed every 10 s; three failures cool a
/// deployment for `cooldown`.
fn router(
    flaky: Deployment<Boxed>,
    spare: &SimulatedProvider,
    cooldown: Duration,
) -> Router<Boxed> {
    builder_with(RouterConfig {
        seed: Some(7),
        cooldown: CooldownConfig {
            failures: 3,
            duration: cooldown,
            ..CooldownConfig::default()
        },
        ..RouterConfig::default()
    })
    .deployment(flaky)
    .deployment(deployment("spare", spare))
    .group(
        Group::new("default", ["flaky", "spare"])
            .strategy(Strategy::Priority)
            .probe(ProbeConfig { every: EVERY }),
    )
    .build()
    .unwrap()
}

/// A provider that fails its first `failures` calls with a 500.
fn failing(failures: usize) -> SimulatedProvider {
    SimulatedProvider::builder()
        .script(std::iter::repeat_n(Outcome::Server, failures))
        .build()
}

/// Three calls, each failing on `flaky` and answered by `spare`: `flaky` cools down.
async fn cool(router: &Router<Boxed>) {
    for _ in 0..3 {
        assert_eq!(
            served(&call(router, ask()).await.unwrap()),
            ("spare".into(), 1)
        );
    }
    assert_eq!(router.stats()[0].cooldowns, [(CooldownReason::Failures, 1)]);
}

/// Sleeps until just past `at` from the test's start, letting every timer due by then fire.
async fn until(start: tokio::time::Instant, at: Duration) {
    tokio::time::sleep_until(start + at + Duration::from_millis(1)).await;
}

#[tokio::test(start_paused = true)]
async fn a_cooling_deployment_comes_back_on_its_first_answered_probe() {
    let start = tokio::time::Instant::now();
    let (flaky, spare) = (failing(3), SimulatedProvider::new());
    let router = router(deployment("flaky", &flaky), &spare, Duration::from_secs(60));
    tokio::spawn(router.probes().expect("the group probes"));
    cool(&router).await;

    // Its cooldown would run for a minute; the probe at 10 s is answered, and it is back.
    until(start, EVERY).await;
    assert_eq!(flaky.calls(), 4);
    let stats = &router.stats()[0];
    assert_eq!((stats.probes, stats.failed_probes), (1, 0));
    assert_eq!(stats.cooling_for, None);
    assert_eq!(
        served(&call(&router, ask()).await.unwrap()),
        ("flaky".into(), 0)
    );

    // A deployment that is not cooling down is not probed.
    until(start, 3 * EVERY).await;
    assert_eq!(flaky.calls(), 5);
    assert_eq!(router.stats()[0].probes, 1);
    // Probes are not calls: the router's own count is the real ones.
    assert_eq!(router.stats()[0].calls, 4);
}

#[tokio::test(start_paused = true)]
async fn a_failed_probe_keeps_the_deployment_out_until_one_is_answered() {
    let start = tokio::time::Instant::now();
    // Three real calls and the probes at 10 s and 20 s fail; the probe at 30 s is answered.
    let (flaky, spare) = (failing(5), SimulatedProvider::new());
    let router = router(deployment("flaky", &flaky), &spare, Duration::from_secs(15));
    tokio::spawn(router.probes().unwrap());
    cool(&router).await;

    until(start, EVERY).await;
    assert_eq!(flaky.calls(), 4);
    // Without the probe it would have come back at 15 s: it stays out until the next probe
    // has had its time (two intervals from the failed one).
    let left = router.stats()[0].cooling_for.unwrap();
    assert_eq!(left, Duration::from_secs(20) - Duration::from_millis(1));
    until(start, Duration::from_secs(16)).await;
    assert_eq!(
        served(&call(&router, ask()).await.unwrap()),
        ("spare".into(), 0)
    );

    until(start, 2 * EVERY).await;
    assert_eq!(flaky.calls(), 5);
    assert_eq!(
        served(&call(&router, ask()).await.unwrap()),
        ("spare".into(), 0)
    );

    until(start, 3 * EVERY).await;
    assert_eq!(flaky.calls(), 6);
    let stats = &router.stats()[0];
    assert_eq!((stats.probes, stats.failed_probes), (3, 2));
    // One cooldown, held longer by the failed probes.
    assert_eq!(stats.cooldowns, [(CooldownReason::Failures, 1)]);
    assert_eq!(
        served(&call(&router, ask()).await.unwrap()),
        ("flaky".into(), 0)
    );
    assert_eq!(spare.calls(), 5);
}

#[tokio::test(start_paused = true)]
async fn a_pause_the_provider_asked_for_is_not_probed() {
    let start = tokio::time::Instant::now();
    let limited = SimulatedProvider::builder()
        .script([Outcome::rate_limited(Duration::from_secs(45))])
        .build();
    let spare = SimulatedProvider::new();
    let router = router(
        deployment("flaky", &limited),
        &spare,
        Duration::from_secs(60),
    );
    tokio::spawn(router.probes().unwrap());
    assert_eq!(
        served(&call(&router, ask()).await.unwrap()),
        ("spare".into(), 1)
    );

    until(start, Duration::from_secs(44)).await;
    assert_eq!(limited.calls(), 1);
    assert_eq!(router.stats()[0].probes, 0);
    until(start, Duration::from_secs(45)).await;
    assert_eq!(
        served(&call(&router, ask()).await.unwrap()),
        ("flaky".into(), 0)
    );
}

/// `provider`, with every request it is sent kept in `seen`.
fn recorded(provider: &SimulatedProvider, seen: &Arc<Mutex<Vec<LlmRequest>>>) -> Deployment<Boxed> {
    let seen = seen.clone();
    let service = provider.clone().map_request(move |request: LlmRequest| {
        seen.lock().unwrap().push(request.clone());
        request
    });
    Deployment::new("flaky", BoxCloneSyncService::new(service)).model("flaky-model")
}

#[tokio::test(start_paused = true)]
async fn a_probe_is_one_word_and_one_token_to_the_deployments_model() {
    let start = tokio::time::Instant::now();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let (flaky, spare) = (failing(3), SimulatedProvider::new());
    let router = router(recorded(&flaky, &seen), &spare, Duration::from_secs(60));
    tokio::spawn(router.probes().unwrap());
    cool(&router).await;
    until(start, EVERY).await;

    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 4);
    let probe = &seen[3];
    assert_eq!(&*probe.model, "flaky-model");
    assert_eq!(&*probe.messages, [Message::user("ping")]);
    assert_eq!(probe.params.max_tokens, Some(1));
    assert_eq!(probe.meta.operation, Operation::Chat);
    assert_eq!(probe.meta.role.as_deref(), Some("default"));
    assert_eq!(probe.meta.request_id.as_deref(), Some("tollgate-probe"));
    // Not retried below the router: the next probe is the retry.
    assert_eq!(probe.meta.retry_cap, Some(0));
}

#[tokio::test(start_paused = true)]
async fn a_deployment_serving_embeddings_is_probed_with_one_word_to_embed() {
    let start = tokio::time::Instant::now();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let (flaky, spare) = (failing(3), SimulatedProvider::new());
    let router = router(recorded(&flaky, &seen), &spare, Duration::from_secs(60));
    tokio::spawn(router.probes().unwrap());
    for _ in 0..3 {
        let mut embed = LlmRequest::new("", Vec::new());
        embed.meta.operation = Operation::Embeddings;
        embed.params.set_extra("input", "some text".into());
        call(&router, embed).await.unwrap();
    }
    until(start, EVERY).await;

    let seen = seen.lock().unwrap();
    let probe = &seen[3];
    assert_eq!(probe.meta.operation, Operation::Embeddings);
    assert!(probe.messages.is_empty());
    assert_eq!(probe.params.extra["input"], "ping");
    assert_eq!(router.stats()[0].cooling_for, None);
}

#[tokio::test(start_paused = true)]
async fn a_deployment_serving_text_completions_is_probed_with_a_one_word_prompt() {
    let start = tokio::time::Instant::now();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let (flaky, spare) = (failing(3), SimulatedProvider::new());
    let router = router(recorded(&flaky, &seen), &spare, Duration::from_secs(60));
    tokio::spawn(router.probes().unwrap());
    for _ in 0..3 {
        let mut complete = LlmRequest::new("", vec![Message::user("Once upon a time")]);
        complete.meta.operation = Operation::Completions;
        call(&router, complete).await.unwrap();
    }
    until(start, EVERY).await;

    let seen = seen.lock().unwrap();
    let probe = &seen[3];
    assert_eq!(probe.meta.operation, Operation::Completions);
    assert_eq!(&*probe.messages, [Message::user("ping")]);
    assert_eq!(probe.params.max_tokens, Some(1));
    assert_eq!(router.stats()[0].cooling_for, None);
}

#[tokio::test(start_paused = true)]
async fn probes_end_when_the_router_is_dropped() {
    let (flaky, spare) = (failing(3), SimulatedProvider::new());
    let router = router(deployment("flaky", &flaky), &spare, Duration::from_secs(60));
    let probes = tokio::spawn(router.probes().unwrap());
    cool(&router).await;
    drop(router);
    tokio::time::timeout(2 * EVERY, probes)
        .await
        .expect("the probes end within an interval")
        .unwrap();
    // The probe due after the router was gone was not sent.
    assert_eq!(flaky.calls(), 3);
}

#[test]
fn probes_and_affinity_are_checked_when_the_router_is_built() {
    let provider = SimulatedProvider::new();
    let build = |group: Group, more: bool| {
        let mut builder = builder().deployment(deployment("a", &provider));
        if more {
            builder = builder.deployment(deployment("b", &provider));
        }
        builder.group(group).build().map(|_| ()).unwrap_err()
    };
    let zero = build(
        Group::new("default", ["a", "b"]).probe(ProbeConfig {
            every: Duration::ZERO,
        }),
        true,
    );
    assert_eq!(zero.path(), "groups.default.probe.every");
    assert_eq!(zero.to_string(), "groups.default.probe.every: must be > 0");
    let alone = build(
        Group::new("default", ["a"]).probe(ProbeConfig { every: EVERY }),
        false,
    );
    assert_eq!(alone.path(), "groups.default.probe");
    assert!(alone.to_string().contains("nowhere else to go"), "{alone}");

    // As data: the settings read, and a mistake in them is refused.
    let group: tollgate_router::GroupConfig =
        serde_json::from_str(r#"{ "affinity": "prefix", "probe": { "every": "10s" } }"#).unwrap();
    assert_eq!(group.affinity, Some(tollgate_router::Affinity::Prefix));
    assert_eq!(group.probe, Some(ProbeConfig { every: EVERY }));
    for (bad, says) in [
        (r#"{ "affinity": "suffix" }"#, "unknown variant `suffix`"),
        (
            r#"{ "probe": { "every": "10s", "model": "x" } }"#,
            "unknown field `model`",
        ),
        (r#"{ "probe": {} }"#, "missing field `every`"),
        (r#"{ "probe": { "every": "soon" } }"#, "soon"),
    ] {
        let error = serde_json::from_str::<tollgate_router::GroupConfig>(bad)
            .unwrap_err()
            .to_string();
        assert!(error.contains(says), "{bad}: {error}");
    }

    // No group probes: nothing to spawn.
    let quiet = builder()
        .deployment(deployment("a", &provider))
        .group(Group::new("default", ["a"]))
        .build()
        .unwrap();
    assert!(quiet.probes().is_none());
}

#[tokio::test(start_paused = true)]
async fn a_cooldown_another_process_shares_does_not_undo_what_a_probe_here_found() {
    let start = tokio::time::Instant::now();
    let (flaky, spare) = (failing(3), SimulatedProvider::new());
    let router = router(deployment("flaky", &flaky), &spare, Duration::from_secs(60));
    tokio::spawn(router.probes().expect("the group probes"));
    let board = router.health();
    cool(&router).await;
    // What this process decided, as another process would have it in the shared store.
    let wall = std::time::SystemTime::now();
    let shared = board.changes(wall);
    assert_eq!(shared.len(), 1);

    until(start, EVERY).await;
    assert_eq!(
        router.stats()[0].cooling_for,
        None,
        "the probe brought it back"
    );
    // The same cooldown told again (another process saw the same failures) changes nothing...
    let wall = wall + EVERY;
    assert!(!board.apply(&shared[0], wall));
    assert_eq!(served(&call(&router, ask()).await.unwrap()).0, "flaky");
    // ...but one that ends later (found after the probe) is taken.
    let later = tollgate_router::Notice::Cooldown {
        deployment: "flaky".into(),
        reason: CooldownReason::Failures,
        until: wall + Duration::from_secs(120),
    };
    assert!(board.apply(&later, wall));
    assert_eq!(served(&call(&router, ask()).await.unwrap()).0, "spare");
}
