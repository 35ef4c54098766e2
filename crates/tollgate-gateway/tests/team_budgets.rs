//! A team's monthly budget kept in the records is a hard cap: under a thousand calls at once
//! across two gateway processes (sharing one Redis and one database), what the upstream bills
//! never passes it, and after both restart the period's spend is the same and the next call is
//! still refused. One process alone, with its limits in memory, reads the period's spend back
//! from the ledger when it starts again.

mod support;

use std::time::Duration;

use serde_json::{Value, json};
use support::*;
use tollgate_control::{Database, DatabaseConfig, GroupBy, NewKey, NewTeam};
use tollgate_testkit::{TestDatabase, TestPostgres, TestRedis, Topology};

const PATIENCE: Duration = Duration::from_secs(30);
/// Each call's bound, which the billing upstream bills whole: 1,000 tokens at $2 per million.
const CALL_MICROS: u64 = 2_000;

fn bounded() -> Value {
    json!({ "model": "default", "max_tokens": 1000, "messages": [{ "role": "user", "content": "hi" }] })
}

async fn status(gateway: &GatewayProcess, key: &str) -> u16 {
    chat(gateway, key, &bounded()).await.status().as_u16()
}

/// The records of `url` with a team `search` capped at `dollars` a calendar month, and a key
/// of it.
async fn capped_team(url: &str, dollars: &str) -> (Database, String) {
    let records = Database::open(&DatabaseConfig::url(url)).await.unwrap();
    let mut team = NewTeam::named("search");
    team.limits = Some(
        serde_json::from_value(json!({ "budgets": [{ "limit": dollars, "period": "month" }] }))
            .unwrap(),
    );
    records.create_team("ops", team).await.unwrap();
    let made = records
        .create_key("ops", NewKey::new("search-backend", "search"))
        .await
        .unwrap();
    (records, made.key)
}

/// What the ledger says the team spent, once every process has written what it holds.
async fn team_spend(records: &Database) -> u64 {
    let report = records.spend(GroupBy::Team, None, None).await.unwrap();
    report.groups.get("search").map_or(0, |t| t.cost_micros)
}

/// Stops a gateway as an operator does (SIGTERM: calls drain, the ledger is written).
async fn stop(mut gateway: GatewayProcess) {
    gateway.signal("TERM");
    assert!(gateway.wait(PATIENCE).await.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dollar_a_month_holds_under_a_thousand_calls_on_two_processes_and_their_restart() {
    let (Some(redis), Some(postgres)) = (TestRedis::start(Topology::Server), TestPostgres::start())
    else {
        return;
    };
    let upstream = Upstream::billing(1_000).await;
    let (records, key) = capped_team(&postgres.url(), "1").await;
    // A thousand calls at once on two busy cores: the upstream may take its time, and a
    // connection its headers.
    let yaml = config(
        &upstream,
        &format!(
            "database: {{ url: \"{}\" }}\nredis: {{ {}, on_failure: fail_closed, limiter_timeout: 10s, cache_timeout: 10s }}\ngateway: {{ header_timeout: 120s }}\n",
            postgres.url(),
            redis.yaml()
        ),
    )
    .replace("timeout: 5s", "timeout: 120s, connect_timeout: 60s");
    let (a, b) = (
        GatewayProcess::start(&yaml).await,
        GatewayProcess::start(&yaml).await,
    );
    for gateway in [&a, &b] {
        assert!(until(PATIENCE, || async { status(gateway, &key).await == 200 }).await);
    }

    let calls = (0..1_000).map(|i| {
        let (url, key) = (
            if i % 2 == 0 { &a.url } else { &b.url }.clone(),
            key.clone(),
        );
        tokio::spawn(async move {
            let response = client()
                .post(format!("{url}/v1/chat/completions"))
                .bearer_auth(key)
                .json(&bounded())
                .send()
                .await
                .unwrap_or_else(|error| panic!("{error:?}"));
            let status = response.status().as_u16();
            let body = response.text().await.unwrap_or_default();
            (status, body)
        })
    });
    let mut statuses = Vec::new();
    for call in calls.collect::<Vec<_>>() {
        let (status, body) = call.await.unwrap();
        // Fail-closed: a limiter whose Redis does not answer in time (on CI's two busy cores)
        // refuses with a 503, which spends nothing. Any other failure fails the test.
        if status == 503 {
            assert!(body.contains("rate-limit store"), "{body}");
        }
        statuses.push(status);
    }
    let admitted = statuses.iter().filter(|s| **s == 200).count();
    let refused = statuses.iter().filter(|s| **s == 429 || **s == 503).count();
    assert_eq!(admitted + refused, 1_000, "{statuses:?}");
    assert!(refused > 0);
    // The upstream billed every token of every call it answered: never past $1.
    let billed = upstream.billed() * CALL_MICROS / 1_000;
    assert!(billed <= 1_000_000, "billed {billed} micro-dollars");
    // Refused calls came while others held reservations (their prompt's estimate too) that
    // settled for a little less, so a little of the budget may be left; not more than 1 %.
    assert!(billed >= 990_000, "the budget was spent: {billed}");

    stop(a).await;
    stop(b).await;
    let spent = team_spend(&records).await;
    assert_eq!(
        spent, billed,
        "the ledger has every call the upstream billed"
    );

    // Both again: they read the month's spend back, so what little the load left (under 1 %)
    // is all they admit before refusing, and the month stays under $1.
    let (a, b) = (
        GatewayProcess::start(&yaml).await,
        GatewayProcess::start(&yaml).await,
    );
    for gateway in [&a, &b] {
        let mut admitted = 0;
        let refused = loop {
            let response = chat(gateway, &key, &bounded()).await;
            if response.status() != 200 {
                break response;
            }
            admitted += 1;
            assert!(admitted <= 5, "a restart forgot the month's spend");
        };
        assert_eq!(refused.status(), 429);
        assert_eq!(
            refused.headers()["x-ratelimit-budget-period"],
            "month (UTC)"
        );
    }
    let billed = upstream.billed() * CALL_MICROS / 1_000;
    assert!(billed <= 1_000_000, "billed {billed} micro-dollars");
    stop(a).await;
    stop(b).await;
    assert_eq!(team_spend(&records).await, billed);
    records.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_process_reads_the_months_spend_back_from_the_ledger_when_it_starts_again() {
    for home in TestDatabase::each("team-budget-restart") {
        let upstream = Upstream::billing(1_000).await;
        // Five calls of $0.002 (each reserved with its prompt's estimate too).
        let (records, key) = capped_team(&home.url(), "0.0101").await;
        let yaml = config(
            &upstream,
            &format!("database: {{ url: \"{}\" }}", home.url()),
        );
        let gateway = GatewayProcess::start(&yaml).await;
        let mut seen = Vec::new();
        for _ in 0..6 {
            seen.push(status(&gateway, &key).await);
        }
        assert_eq!(seen, [200, 200, 200, 200, 200, 429], "{}", home.url());
        stop(gateway).await;
        assert_eq!(team_spend(&records).await, 5 * CALL_MICROS);

        // Its limits were in its memory; the ledger kept the month's spend.
        let gateway = GatewayProcess::start(&yaml).await;
        assert_eq!(status(&gateway, &key).await, 429);
        assert_eq!(upstream.billed(), 5_000);

        // Raised on the records: five more, then refused again.
        let mut team = tollgate_control::TeamChange::default();
        team.limits = Some(Some(
            serde_json::from_value(
                json!({ "budgets": [{ "limit": "0.0201", "period": "month" }] }),
            )
            .unwrap(),
        ));
        records.update_team("ops", "search", team).await.unwrap();
        assert!(until(PATIENCE, || async { status(&gateway, &key).await == 200 }).await);
        let mut more = 1;
        while status(&gateway, &key).await == 200 {
            more += 1;
            assert!(more <= 5, "the raised budget let a sixth call through");
        }
        assert_eq!(more, 5);
        assert_eq!(upstream.billed(), 10_000);
        drop(gateway);
        records.close().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_team_low_on_its_budget_is_moved_to_the_cheap_role_then_refused_at_nothing_left() {
    let home = TestDatabase::each("degrade").remove(0);
    let upstream = Upstream::billing(1_000).await;
    // Prompts are free here, so every figure is exact: an answer token costs $2 per million on
    // the default role's model and $1 on the cheap one's.
    let yaml = config(&upstream, &format!("database: {{ url: \"{}\" }}", home.url()))
        .replace(
            r#"up-model: { input: "1.00", output: "2.00" }"#,
            "up-model: { input: \"0\", output: \"2.00\" }\n  cheap-model: { input: \"0\", output: \"1.00\" }",
        )
        .replace("roles:\n", "roles:\n  cheap: { provider: up, model: cheap-model }\n");
    assert!(yaml.contains("cheap-model: { input"), "{yaml}");
    let records = Database::open(&DatabaseConfig::url(home.url()))
        .await
        .unwrap();
    let mut team = NewTeam::named("search");
    // $0.001 a month; under 20 % left, calls go to `cheap`.
    team.limits = Some(
        serde_json::from_value(json!({ "budgets": [{
            "limit": "0.001", "period": "month", "degrade": { "below": "20%", "to": "cheap" }
        }] }))
        .unwrap(),
    );
    records.create_team("ops", team).await.unwrap();
    let key = records
        .create_key("ops", NewKey::new("search-backend", "search"))
        .await
        .unwrap()
        .key;
    let gateway = GatewayProcess::start(&yaml).await;
    // A call on the default role that writes `tokens`: its status and where it went.
    let call = |tokens: u32| {
        let (gateway, key) = (&gateway, &key);
        async move {
            let body = json!({ "model": "default", "max_tokens": tokens, "messages": [{ "role": "user", "content": "hi" }] });
            let response = chat(gateway, key, &body).await;
            let degraded = response
                .headers()
                .get("x-tollgate-degraded")
                .map(|v| v.to_str().unwrap().to_owned());
            (response.status().as_u16(), degraded)
        }
    };
    // $0.00081 spent: 19 % left.
    for _ in 0..8 {
        assert_eq!(call(50).await, (200, None));
    }
    assert_eq!(call(5).await, (200, None));
    // Moved to the cheap role, and said: $0.00005 each.
    for _ in 0..3 {
        assert_eq!(call(50).await, (200, Some("cheap".to_owned())));
    }
    // $0.00004 left: a call that takes it all, then nothing.
    assert_eq!(call(40).await, (200, Some("cheap".to_owned())));
    let (status, degraded) = call(1).await;
    assert_eq!((status, degraded.as_deref()), (429, Some("cheap")));
    let models: Vec<String> = upstream
        .bodies()
        .iter()
        .map(|body| body["model"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(models.iter().filter(|m| *m == "up-model").count(), 9);
    assert_eq!(models.iter().filter(|m| *m == "cheap-model").count(), 4);
    assert_eq!(upstream.billed(), 8 * 50 + 5 + 3 * 50 + 40);
    // Counted on /metrics.
    assert!(
        scrape(&gateway)
            .await
            .contains(r#"tollgate_degraded_calls_total{from="default",to="cheap"} 5"#)
    );
    drop(gateway);
    records.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_month_boundary_on_a_test_clock_gives_two_processes_the_whole_budget_again() {
    let Some(redis) = TestRedis::start(Topology::Server) else {
        return;
    };
    let home = TestDatabase::each("month-boundary").remove(0);
    let upstream = Upstream::billing(1_000).await;
    let (records, key) = capped_team(&home.url(), "0.0101").await;
    let yaml = config(
        &upstream,
        &format!(
            "database: {{ url: \"{}\" }}\nredis: {{ {}, on_failure: fail_closed, limiter_timeout: 10s, cache_timeout: 10s }}\n",
            home.url(),
            redis.yaml()
        ),
    );
    // Both gateways' calendars start twenty seconds before 2027 begins.
    let clock = ["--wall-clock", "2026-12-31T23:59:40Z"];
    let (a, b) = (
        GatewayProcess::start_with(&yaml, &clock).await,
        GatewayProcess::start_with(&yaml, &clock).await,
    );
    let mut seen = Vec::new();
    for i in 0..6 {
        seen.push(status(if i % 2 == 0 { &a } else { &b }, &key).await);
    }
    assert_eq!(seen, [200, 200, 200, 200, 200, 429]);
    let refused = chat(&b, &key, &bounded()).await;
    assert_eq!(refused.status(), 429);
    assert_eq!(
        refused.headers()["x-ratelimit-budget-resets-at"],
        "2027-01-01T00:00:00Z"
    );
    // January, on each process's clock (each read the test clock as it started, a moment apart,
    // and one still in December refuses without spending): the whole budget again, shared.
    assert!(until(PATIENCE, || async { status(&a, &key).await == 200 }).await);
    assert!(until(PATIENCE, || async { status(&b, &key).await == 200 }).await);
    let mut january = vec![200, 200];
    for i in 0..4 {
        january.push(status(if i % 2 == 0 { &a } else { &b }, &key).await);
    }
    assert_eq!(january, [200, 200, 200, 200, 200, 429]);
    assert_eq!(upstream.billed(), 10 * 1_000);
    drop((a, b));
    records.close().await;
}
