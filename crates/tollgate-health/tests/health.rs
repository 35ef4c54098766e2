//! HealthLayer, HealthStats and HealthRegistry through their public API, on tokio's paused clock.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU32, Ordering},
    },
    time::{Duration, SystemTime},
};

use tokio::time::advance;
use tollgate_core::{
    ByProvider, ErrorKind, LlmError, LlmRequest, LlmResponse, Message, Outcome, SimulatedProvider,
    clock::TokioClock,
};
use tollgate_health::{
    CheckOptions, CheckOutcome, HealthConfig, HealthLayer, HealthRegistry, HealthStats,
    ProviderCheck, StatsCheck, Status, check_fn,
};
use tower::{Layer, Service, ServiceExt};

const MS: Duration = Duration::from_millis(1);

fn stats(config: HealthConfig) -> HealthStats {
    HealthStats::with_clock(config, TokioClock::new()).unwrap()
}

/// A service that takes `max_tokens` milliseconds and fails when the tenant is `fail`.
fn timed() -> impl Service<LlmRequest, Response = LlmResponse, Error = LlmError> + Clone {
    tower::service_fn(|req: LlmRequest| async move {
        let millis = u64::from(req.params.max_tokens.unwrap_or(0));
        tokio::time::sleep(MS * millis as u32).await;
        match req.meta.tenant.as_deref() {
            Some("fail") => Err(LlmError::new(ErrorKind::Server, "down")),
            Some("bad") => Err(LlmError::new(ErrorKind::InvalidRequest, "your fault")),
            _ => Ok(LlmResponse::default()),
        }
    })
}

fn req(millis: u32, tenant: &str) -> LlmRequest {
    LlmRequest::new("m", vec![Message::user("hi")])
        .with_max_tokens(millis)
        .with_tenant(tenant)
}

async fn call<S>(stack: &mut S, request: LlmRequest) -> Result<LlmResponse, LlmError>
where
    S: Service<LlmRequest, Response = LlmResponse, Error = LlmError>,
{
    stack.ready().await?.call(request).await
}

#[tokio::test(start_paused = true)]
async fn latency_percentiles_match_a_known_distribution() {
    let stats = stats(HealthConfig::default());
    let mut stack = HealthLayer::new(stats.clone()).layer(timed());
    // 1 ms, 2 ms, ..., 100 ms, in a shuffled order.
    for i in 0..100_u32 {
        let millis = (i * 37) % 100 + 1;
        call(&mut stack, req(millis, "ok")).await.unwrap();
    }
    let latency = stats.component_snapshot("*").unwrap().window.latency_ms;
    assert_eq!(
        (
            latency.min,
            latency.p50,
            latency.p95,
            latency.p99,
            latency.max
        ),
        (1.0, 50.0, 95.0, 99.0, 100.0)
    );
    assert_eq!(latency.mean, 50.5);
}

#[tokio::test(start_paused = true)]
async fn thresholds_move_the_status_both_ways() {
    let stats = stats(HealthConfig {
        window_calls: 10,
        minimum_calls: 10,
        degraded_error_rate: 10.0,
        unhealthy_error_rate: 30.0,
        degraded_consecutive_failures: 5,
        unhealthy_consecutive_failures: 8,
        ..Default::default()
    });
    let mut stack = HealthLayer::new(stats.clone()).layer(timed());
    let status = || stats.component_snapshot("*").unwrap().status;
    for _ in 0..10 {
        call(&mut stack, req(0, "ok")).await.unwrap();
    }
    assert_eq!(status(), Status::Healthy);
    call(&mut stack, req(0, "fail")).await.unwrap_err();
    assert_eq!(status(), Status::Degraded); // 1 of 10
    call(&mut stack, req(0, "fail")).await.unwrap_err();
    call(&mut stack, req(0, "fail")).await.unwrap_err();
    assert_eq!(status(), Status::Unhealthy); // 3 of 10
    // A caller's own mistakes are counted by kind, not as failures.
    for _ in 0..7 {
        call(&mut stack, req(0, "bad")).await.unwrap_err();
    }
    assert_eq!(status(), Status::Unhealthy); // still 3 of 10
    for _ in 0..10 {
        call(&mut stack, req(0, "ok")).await.unwrap();
    }
    assert_eq!(status(), Status::Healthy);
    let snapshot = stats.component_snapshot("*").unwrap();
    assert_eq!(snapshot.failures["server"], 3);
    assert_eq!(snapshot.failures["invalid_request"], 7);
    assert_eq!(snapshot.calls, 30);
}

#[tokio::test(start_paused = true)]
async fn failures_in_a_row_and_an_old_window_are_judged_too() {
    let stats = stats(HealthConfig {
        window_span: Some(Duration::from_secs(60)),
        minimum_calls: 100,
        ..Default::default()
    });
    let mut stack = HealthLayer::new(stats.clone()).layer(timed());
    let status = || stats.component_snapshot("*").unwrap().status;
    for expected in [
        Status::Healthy,
        Status::Healthy,
        Status::Degraded,
        Status::Degraded,
    ] {
        call(&mut stack, req(0, "fail")).await.unwrap_err();
        assert_eq!(status(), expected);
    }
    call(&mut stack, req(0, "fail")).await.unwrap_err();
    assert_eq!(status(), Status::Unhealthy); // 5 in a row
    call(&mut stack, req(0, "ok")).await.unwrap();
    assert_eq!(status(), Status::Healthy);
    // Calls older than the span leave the window.
    advance(Duration::from_secs(61)).await;
    assert_eq!(stats.component_snapshot("*").unwrap().window.calls, 0);
}

#[tokio::test(start_paused = true)]
async fn fail_fast_refuses_an_unhealthy_component() {
    let stats = stats(HealthConfig {
        fail_fast: true,
        ..Default::default()
    });
    let provider = SimulatedProvider::builder()
        .failure_rate(Outcome::Server, 1.0)
        .build();
    let layer = HealthLayer::builder(stats.clone()).key(ByProvider).build();
    let mut stack = layer.layer(provider.clone());
    let to = |p: &str| LlmRequest::new("m", vec![Message::user("hi")]).with_provider(p);
    for _ in 0..5 {
        assert_eq!(
            call(&mut stack, to("a")).await.unwrap_err().kind(),
            ErrorKind::Server
        );
    }
    let err = call(&mut stack, to("a")).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unavailable);
    assert_eq!(provider.calls(), 5);
    // Another component is judged on its own.
    assert_eq!(
        call(&mut stack, to("b")).await.unwrap_err().kind(),
        ErrorKind::Server
    );
    assert_eq!(stats.status("b"), Some(Status::Healthy));
    let snapshot = serde_json::to_value(stats.snapshot()).unwrap();
    assert_eq!(snapshot["a"]["status"], "fail");
    assert_eq!(snapshot["a"]["consecutive_failures"], 5);
}

#[tokio::test(start_paused = true)]
async fn a_check_is_unhealthy_after_three_failures_and_healthy_after_two_passes() {
    let up = Arc::new(AtomicBool::new(false));
    let flag = up.clone();
    let registry = HealthRegistry::builder()
        .check(
            check_fn("db", move || {
                let up = flag.load(Ordering::Relaxed);
                async move {
                    if up {
                        CheckOutcome::healthy("ok")
                    } else {
                        CheckOutcome::unhealthy("connection refused")
                    }
                }
            }),
            CheckOptions::default(),
        )
        .build()
        .unwrap();
    let status = || registry.report().checks["db"].status;
    let mut seen = Vec::new();
    for _ in 0..3 {
        registry.run_all().await;
        seen.push(status());
    }
    assert_eq!(seen, [Status::Healthy, Status::Healthy, Status::Unhealthy]);
    assert_eq!(registry.report().status, Status::Unhealthy);
    assert_eq!(registry.report().readiness().failing, ["db"]);
    assert_eq!(registry.report().readiness().http_status(), 503);

    up.store(true, Ordering::Relaxed);
    registry.run_all().await;
    assert_eq!(status(), Status::Unhealthy);
    registry.run_all().await;
    assert_eq!(status(), Status::Healthy);
}

#[tokio::test(start_paused = true)]
async fn a_hanging_check_times_out_and_the_others_still_run() {
    let registry = HealthRegistry::builder()
        .check(
            check_fn("stuck", std::future::pending::<CheckOutcome>),
            CheckOptions::default()
                .timeout(Duration::from_secs(2))
                .thresholds(1, 1),
        )
        .check(
            check_fn("fine", || async { CheckOutcome::healthy("ok") }),
            CheckOptions::default(),
        )
        .build()
        .unwrap();
    let started = tokio::time::Instant::now();
    registry.run_all().await;
    assert_eq!(started.elapsed(), Duration::from_secs(2));
    let report = registry.report();
    assert_eq!(report.checks["stuck"].status, Status::Unhealthy);
    assert_eq!(report.checks["stuck"].output, "timed out after 2s");
    assert_eq!(report.checks["fine"].status, Status::Healthy);
}

#[tokio::test(start_paused = true)]
async fn checks_run_at_their_interval_until_the_registry_is_dropped() {
    let runs = Arc::new(AtomicU32::new(0));
    let counter = runs.clone();
    let registry = HealthRegistry::builder()
        .check(
            check_fn("tick", move || {
                counter.fetch_add(1, Ordering::Relaxed);
                async { CheckOutcome::healthy("ok") }
            }),
            CheckOptions::default().interval(Duration::from_secs(30)),
        )
        .build()
        .unwrap();
    registry.start();
    // Sleeping (not jumping) lets paused time stop at every timer on the way.
    tokio::time::sleep(Duration::from_secs(65)).await;
    assert_eq!(runs.load(Ordering::Relaxed), 3); // at 0 s, 30 s and 60 s
    drop(registry);
    tokio::time::sleep(Duration::from_secs(300)).await;
    assert_eq!(runs.load(Ordering::Relaxed), 3);
}

#[tokio::test(start_paused = true)]
async fn the_json_report_matches_the_golden_file() {
    let provider = SimulatedProvider::builder()
        .latency(Duration::from_millis(120))
        .build();
    let stats = stats(HealthConfig::default());
    let mut stack = HealthLayer::new(stats.clone()).layer(provider.clone());
    for _ in 0..3 {
        call(
            &mut stack,
            LlmRequest::new("sim", vec![Message::user("hi")]),
        )
        .await
        .unwrap();
    }
    let epoch = SystemTime::UNIX_EPOCH + Duration::from_secs(1_795_446_245);
    let registry = HealthRegistry::builder()
        .epoch(epoch)
        .check(
            ProviderCheck::new("openai", "sim", provider),
            CheckOptions::default(),
        )
        .check(
            StatsCheck::new("openai:calls", stats, "*"),
            CheckOptions::default(),
        )
        .check(
            check_fn("redis", || async {
                CheckOutcome::unhealthy("connection refused")
            }),
            CheckOptions::non_critical().thresholds(1, 1),
        )
        .build()
        .unwrap();
    advance(Duration::from_secs(5)).await;
    registry.run_all().await;
    let report = registry.report();
    assert_eq!(report.status, Status::Degraded);
    assert_eq!(report.http_status(), 200);
    let json = serde_json::to_string_pretty(&report).unwrap();
    let golden = include_str!("golden/report.json");
    assert_eq!(json.trim(), golden.trim(), "report:\n{json}");
    assert_eq!(
        serde_json::to_string(&report.liveness()).unwrap(),
        r#"{"status":"pass"}"#
    );
    assert_eq!(
        serde_json::to_string(&report.readiness()).unwrap(),
        r#"{"status":"pass"}"#
    );
}

#[tokio::test(start_paused = true)]
async fn a_component_with_settings_of_its_own_is_judged_by_them() {
    // "strict" is judged from its first call and fails fast; every other component from 20 calls.
    let strict = HealthConfig {
        minimum_calls: 1,
        fail_fast: true,
        ..HealthConfig::default()
    };
    let stats = HealthStats::builder(HealthConfig::default())
        .component_config("strict", strict)
        .clock(TokioClock::new())
        .build()
        .unwrap();
    let provider = SimulatedProvider::builder()
        .script([
            Outcome::fail(ErrorKind::Server),
            Outcome::fail(ErrorKind::Server),
        ])
        .build();
    let mut stack = HealthLayer::builder(stats.clone())
        .key(ByProvider)
        .build()
        .layer(provider.clone());
    let to = |component: &str| {
        LlmRequest::new("sim", vec![Message::user("hi")]).with_provider(component)
    };

    call(&mut stack, to("strict")).await.unwrap_err();
    call(&mut stack, to("lenient")).await.unwrap_err();
    assert_eq!(
        stats.status("strict"),
        Some(Status::Unhealthy),
        "1 of 1 failed"
    );
    assert_eq!(
        stats.status("lenient"),
        Some(Status::Healthy),
        "1 call of 20"
    );
    let refused = call(&mut stack, to("strict")).await.unwrap_err();
    assert_eq!(refused.kind(), ErrorKind::Unavailable, "its own fail-fast");
    call(&mut stack, to("lenient")).await.unwrap();
    assert_eq!(provider.calls(), 3);

    let err = HealthStats::builder(HealthConfig::default())
        .component_config(
            "strict",
            HealthConfig {
                window_calls: 0,
                ..HealthConfig::default()
            },
        )
        .build()
        .unwrap_err();
    assert_eq!(err.path(), "strict.window_calls");
}

#[tokio::test(start_paused = true)]
async fn the_statistics_check_says_what_it_counted() {
    use tollgate_health::HealthCheck;

    let stats = stats(HealthConfig::default());
    let check = StatsCheck::new("sim:calls", stats.clone(), "*");
    assert_eq!(check.check().await.message, "no calls yet");
    let mut stack = HealthLayer::new(stats).layer(
        SimulatedProvider::builder()
            .script([Outcome::fail(ErrorKind::Server)])
            .build(),
    );
    let request = || LlmRequest::new("sim", vec![Message::user("hi")]);
    call(&mut stack, request()).await.unwrap_err();
    assert_eq!(
        check.check().await.message,
        "1 call in window, 100.0% failed, p95 0 ms, 1 failure in a row"
    );
    call(&mut stack, request()).await.unwrap();
    assert_eq!(
        check.check().await.message,
        "2 calls in window, 50.0% failed, p95 0 ms, 0 failures in a row"
    );
}

#[test]
fn configuration_mistakes_name_the_field() {
    // Kinds are typed: a name that is not one is refused as the configuration is read.
    let err = serde_json::from_str::<HealthConfig>(r#"{ "ignore": ["server_error"] }"#)
        .unwrap_err()
        .to_string();
    assert!(err.starts_with(r#"unknown error kind "server_error"; known: rate_limited, "#));
    let err = HealthStats::new(HealthConfig {
        minimum_calls: 0,
        ..Default::default()
    })
    .unwrap_err();
    assert_eq!(err.path(), "minimum_calls");
    let err = HealthRegistry::builder()
        .check(
            check_fn("db", || async { CheckOutcome::healthy("") }),
            CheckOptions::default().timeout(Duration::ZERO),
        )
        .build()
        .unwrap_err();
    assert_eq!(err.path(), "checks.db.timeout");
    assert!(serde_json::from_str::<HealthConfig>(r#"{ "window": 10 }"#).is_err());
}

/// The check pings one server, every master of a cluster, or Sentinel's master; a Redis that
/// went away is unhealthy, and healthy again once it is back.
#[cfg(feature = "redis")]
async fn the_redis_check_pings_a_real_redis(topology: tollgate_testkit::Topology) {
    use tollgate_health::RedisCheck;
    let Some(mut redis) = tollgate_testkit::TestRedis::start(topology) else {
        return;
    };
    let check = match &redis {
        // A bare host:port works too.
        tollgate_testkit::TestRedis::Server(server) => {
            RedisCheck::new("redis", format!("127.0.0.1:{}", server.port()))
        }
        _ => RedisCheck::on("redis", redis.target()),
    };
    let registry = HealthRegistry::builder()
        .check(check, CheckOptions::default().thresholds(1, 1))
        .build()
        .unwrap();
    registry.run_all().await;
    let report = registry.report();
    assert_eq!(report.checks["redis"].status, Status::Healthy, "{report:?}");
    assert_eq!(report.checks["redis"].output, "PONG");
    redis.kill();
    registry.run_all().await;
    assert_eq!(registry.report().checks["redis"].status, Status::Unhealthy);
    redis.restart();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        registry.run_all().await;
        if registry.report().checks["redis"].status == Status::Healthy {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{:?}",
            registry.report()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
#[cfg(feature = "redis")]
tollgate_testkit::each_topology!(the_redis_check_pings_a_real_redis);

/// One master of three gone: the cluster check fails, naming it.
#[cfg(feature = "redis")]
#[tokio::test]
async fn a_cluster_with_one_master_down_is_unhealthy_naming_it() {
    use tollgate_health::RedisCheck;
    let Some(mut cluster) = tollgate_testkit::RedisCluster::start() else {
        return;
    };
    let target = tollgate_core::redis::RedisTarget::Cluster(cluster.urls());
    let registry = HealthRegistry::builder()
        .check(
            RedisCheck::on("redis", target),
            CheckOptions::default().thresholds(1, 1),
        )
        .build()
        .unwrap();
    registry.run_all().await;
    assert_eq!(registry.report().checks["redis"].status, Status::Healthy);
    let gone = cluster.master_of("k");
    let port = cluster.urls()[gone]
        .trim_start_matches("redis://127.0.0.1:")
        .trim_end_matches('/')
        .to_owned();
    cluster.kill_node(gone);
    registry.run_all().await;
    let report = registry.report();
    assert_eq!(report.checks["redis"].status, Status::Unhealthy);
    assert!(
        report.checks["redis"]
            .output
            .contains(&format!("127.0.0.1:{port}")),
        "{report:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_slow_p95_degrades_then_fails_the_component() {
    let stats = stats(HealthConfig {
        minimum_calls: 10,
        degraded_p95: Some(Duration::from_secs(1)),
        unhealthy_p95: Some(Duration::from_secs(3)),
        ..Default::default()
    });
    let mut stack = HealthLayer::new(stats.clone()).layer(timed());
    for _ in 0..10 {
        call(&mut stack, req(2_000, "ok")).await.unwrap();
    }
    assert_eq!(stats.status("*"), Some(Status::Degraded));
    for _ in 0..10 {
        call(&mut stack, req(4_000, "ok")).await.unwrap();
    }
    assert_eq!(stats.status("*"), Some(Status::Unhealthy));
    assert_eq!(
        stats.component_snapshot("*").unwrap().window.latency_ms.p95,
        4_000.0
    );
}

#[tokio::test(start_paused = true)]
async fn components_past_the_cap_are_not_recorded_and_their_calls_go_through() {
    let stats = stats(HealthConfig {
        max_components: 2,
        ..HealthConfig::default()
    });
    let mut stack = HealthLayer::builder(stats.clone())
        .key(ByProvider)
        .build()
        .layer(SimulatedProvider::new());
    let to = |provider: &str| req(0, "t").with_provider(provider);
    assert!(stats.is_empty());
    for provider in ["a", "b", "c", "d", "a"] {
        call(&mut stack, to(provider)).await.unwrap();
    }
    // The first two keep their statistics; the rest are served but not recorded.
    assert_eq!(stats.len(), 2);
    assert_eq!(stats.component_snapshot("a").unwrap().calls, 2);
    assert!(stats.component_snapshot("c").is_none());
    assert_eq!(stats.snapshot().len(), 2);
}

#[tokio::test(start_paused = true)]
async fn a_components_window_keeps_at_most_window_calls() {
    let stats = stats(HealthConfig {
        window_calls: 10,
        ..HealthConfig::default()
    });
    let mut stack = HealthLayer::new(stats.clone()).layer(timed());
    for _ in 0..25 {
        call(&mut stack, req(0, "fail")).await.unwrap_err();
    }
    for _ in 0..4 {
        call(&mut stack, req(0, "ok")).await.unwrap();
    }
    let snapshot = stats.component_snapshot("*").unwrap();
    // Every call counted; only the last ten judged: 6 failures and 4 successes.
    assert_eq!(snapshot.calls, 29);
    assert_eq!(snapshot.window.calls, 10);
    assert_eq!(snapshot.window.error_rate, 60.0);
}
