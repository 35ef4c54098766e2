//! Calendar budgets: a hard cap per day, week or month, that resets at the period's boundary and
//! never lets a period spend more than its limit, whatever the concurrency.

use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, SystemTime},
};

use proptest::prelude::*;
use tollgate_core::{
    ErrorKind, LlmError, MicroUsd,
    clock::{ManualClock, TokioClock},
};
use tollgate_ratelimit::{
    Amounts, Calendar, DenialReason, Dimension, Limits, Period, Quota, RateLimiter, Tier,
};

const DOLLAR: u64 = 1_000_000;

/// `text`, an RFC 3339 instant, as a `SystemTime`.
fn at(text: &str) -> SystemTime {
    let seconds: i64 = match text {
        "2026-12-31T23:59:00Z" => 1_798_761_540,
        "2027-01-01T00:00:00Z" => 1_798_761_600,
        "2026-12-05T12:00:00Z" => 1_796_472_000,
        other => panic!("no instant for {other}"),
    };
    SystemTime::UNIX_EPOCH + Duration::from_secs(seconds as u64)
}

fn monthly(dollars: u64) -> Tier {
    Tier::calendar(
        Dimension::Cost,
        dollars * DOLLAR,
        Calendar::utc(Period::Month),
    )
}

/// $1 a calendar month for scope `team`, on tokio's clock, a minute before 2027 begins.
fn new_years_eve() -> RateLimiter {
    RateLimiter::builder()
        .scope("team", Quota::new([monthly(1)]).unwrap())
        .clock(TokioClock::new())
        .wall_time(at("2026-12-31T23:59:00Z"))
        .build()
        .unwrap()
}

fn cost(micros: u64) -> Amounts {
    Amounts::requests(1).with_cost(MicroUsd(micros))
}

#[tokio::test(start_paused = true)]
async fn a_monthly_budget_refuses_past_its_limit_until_the_month_ends() {
    let limiter = new_years_eve();
    let team = limiter.scope("team").unwrap();
    let call = cost(300_000);
    for _ in 0..3 {
        limiter.check_and_consume(&[(team, "acme")], call).unwrap();
    }
    let denial = limiter
        .check_and_consume(&[(team, "acme")], call)
        .unwrap_err();
    assert_eq!(denial.reason(), DenialReason::Exhausted);
    assert_eq!(denial.kind(), ErrorKind::BudgetExceeded);
    assert_eq!(denial.retry_after(), Some(Duration::from_secs(60)));
    assert_eq!(denial.period(), Some((900_000, at("2027-01-01T00:00:00Z"))));
    let error = LlmError::from(denial);
    assert_eq!(
        error.message(),
        "scope \"team\" key \"acme\": tier 0 ($1.000000 per month (UTC)) has no room for this call: \
         $0.900000 spent this period, which resets at 2027-01-01T00:00:00Z"
    );
    // What is left fits; another tenant has its own month.
    limiter
        .check_and_consume(&[(team, "acme")], cost(100_000))
        .unwrap();
    limiter
        .check_and_consume(&[(team, "globex")], call)
        .unwrap();
    let status = limiter.status(team, "acme");
    assert_eq!(status.tiers[0].remaining, 0);
    assert_eq!(status.tiers[0].resets_in, Duration::from_secs(60));

    // A second before the new year nothing has come back: no refill within a period.
    tokio::time::advance(Duration::from_secs(59)).await;
    assert!(limiter.check(&[(team, "acme")], cost(1)).is_err());
    tokio::time::advance(Duration::from_secs(1)).await;
    for _ in 0..3 {
        limiter.check_and_consume(&[(team, "acme")], call).unwrap();
    }
    assert_eq!(limiter.status(team, "acme").tiers[0].remaining, 100_000);
}

#[tokio::test(start_paused = true)]
async fn a_rolling_month_refills_where_a_calendar_month_does_not() {
    let rolling: Limits = serde_json::from_str(r#"{ "cost_per_month": 100 }"#).unwrap();
    let calendar: Limits =
        serde_json::from_str(r#"{ "budgets": [ { "limit": 100, "period": "month" } ] }"#).unwrap();
    let build = |limits: &Limits| {
        RateLimiter::builder()
            .scope("team", limits.quota("team").unwrap())
            .clock(TokioClock::new())
            .wall_time(at("2026-12-05T12:00:00Z"))
            .build()
            .unwrap()
    };
    let (rolling, calendar) = (build(&rolling), build(&calendar));
    let spend = |limiter: &RateLimiter, dollars: u64| {
        let team = limiter.scope("team").unwrap();
        limiter.check_and_consume(&[(team, "acme")], Amounts::cost(MicroUsd(dollars * DOLLAR)))
    };
    spend(&rolling, 100).unwrap();
    spend(&calendar, 100).unwrap();
    // 15 days later, still December: the rolling tier has refilled half its limit, the calendar
    // one nothing, so within the month the rolling tier lets $150 through.
    tokio::time::advance(Duration::from_secs(15 * 86_400)).await;
    spend(&rolling, 50).unwrap();
    assert!(spend(&calendar, 1).is_err());
}

#[tokio::test(start_paused = true)]
async fn what_a_call_gives_back_returns_to_its_own_period_only() {
    let limiter = new_years_eve();
    let team = limiter.scope("team").unwrap();
    let keys = [(team, "acme")];
    limiter.check_and_consume(&keys, cost(800_000)).unwrap();
    // It used less than it reserved: the rest is December's again.
    limiter.reconcile(&keys, cost(800_000), cost(500_000));
    assert_eq!(limiter.status(team, "acme").tiers[0].remaining, 500_000);
    limiter.check_and_consume(&keys, cost(500_000)).unwrap();
    // Reserved in December, settled in January: January owes nothing of it.
    tokio::time::advance(Duration::from_secs(60)).await;
    limiter.refund(&keys, cost(500_000));
    assert_eq!(limiter.status(team, "acme").tiers[0].remaining, DOLLAR);
    // More than reserved, learned in January, is January's.
    limiter.consume(&keys, cost(200_000));
    assert_eq!(limiter.status(team, "acme").tiers[0].remaining, 800_000);
}

#[tokio::test(start_paused = true)]
async fn a_key_with_spend_this_period_is_never_forgotten_and_is_once_the_period_ends() {
    let limiter = new_years_eve();
    let team = limiter.scope("team").unwrap();
    limiter
        .check_and_consume(&[(team, "acme")], cost(1))
        .unwrap();
    tokio::time::advance(Duration::from_secs(59)).await;
    assert_eq!(limiter.sweep(), 0);
    assert_eq!(limiter.live_keys(), 1);
    tokio::time::advance(Duration::from_secs(1)).await;
    assert_eq!(limiter.sweep(), 1);
    assert_eq!(limiter.live_keys(), 0);
}

#[test]
fn a_calendar_budget_beside_rolling_tiers_holds_each() {
    let clock = ManualClock::new();
    let limits: Limits = serde_yaml_ng::from_str(
        "{ per_minute: 2, budgets: [ { limit: \"0.50\", period: day, time_zone: Europe/Paris } ] }",
    )
    .unwrap();
    let limiter = RateLimiter::builder()
        .scope("team", limits.quota("team").unwrap())
        .clock(clock.clone())
        .wall_time(at("2026-12-05T12:00:00Z"))
        .build()
        .unwrap();
    let team = limiter.scope("team").unwrap();
    let keys = [(team, "acme")];
    limiter.check_and_consume(&keys, cost(200_000)).unwrap();
    limiter.check_and_consume(&keys, cost(200_000)).unwrap();
    // The minute's two requests are spent first: a rate limit, not the budget.
    let denial = limiter.check_and_consume(&keys, cost(1)).unwrap_err();
    assert_eq!(denial.kind(), ErrorKind::RateLimited);
    clock.advance(Duration::from_secs(60));
    let denial = limiter.check_and_consume(&keys, cost(200_000)).unwrap_err();
    assert_eq!(denial.kind(), ErrorKind::BudgetExceeded);
    // Paris's midnight is 23:00 UTC: 10 h 59 min away.
    assert_eq!(
        denial.retry_after(),
        Some(Duration::from_secs(10 * 3_600 + 59 * 60))
    );
    // A call larger than the whole budget can never pass.
    let denial = limiter.check_and_consume(&keys, cost(500_001)).unwrap_err();
    assert_eq!(denial.reason(), DenialReason::TooLarge);
}

#[test]
fn budget_mistakes_are_named_by_their_field() {
    let paths = |json: &str| -> Vec<String> {
        let limits: Limits = serde_json::from_str(json).unwrap();
        limits
            .quota("keys.k.limits")
            .unwrap_err()
            .iter()
            .map(|e| e.path().to_owned())
            .collect()
    };
    assert_eq!(
        paths(r#"{ "budgets": [ { "limit": 0, "period": "month" } ] }"#),
        ["keys.k.limits.budgets[0].limit"]
    );
    assert_eq!(
        paths(
            r#"{ "budgets": [ { "limit": "5", "period": "day", "time_zone": "Mars/Olympus" } ] }"#
        ),
        ["keys.k.limits.budgets[0].time_zone"]
    );
    assert_eq!(
        paths(
            r#"{ "budgets": [ { "limit": "5", "period": "day" }, { "limit": "9", "period": "day" } ] }"#
        ),
        ["keys.k.limits.budgets[1]"]
    );
    assert!(
        serde_json::from_str::<Limits>(r#"{ "budgets": [ { "limit": 5, "period": "year" } ] }"#)
            .is_err()
    );
    let too_much = Tier::calendar(Dimension::Cost, 1 << 44, Calendar::utc(Period::Day));
    assert_eq!(Quota::new([too_much]).unwrap_err().path(), "tiers[0].limit");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_concurrent_calls_never_pass_the_budget() {
    let limiter = RateLimiter::builder()
        .scope("team", Quota::new([monthly(1)]).unwrap())
        .build()
        .unwrap();
    let spent = Arc::new(AtomicU64::new(0));
    let mut calls = Vec::new();
    for i in 0..1_000_u64 {
        let (limiter, spent) = (limiter.clone(), spent.clone());
        calls.push(tokio::spawn(async move {
            let team = limiter.scope("team").unwrap();
            // $0.0010 to $0.0049 each: about four times the budget asked for in all.
            let price = 1_000 + (i * 7_919) % 4_000;
            if limiter
                .check_and_consume(&[(team, "acme")], cost(price))
                .is_ok()
            {
                spent.fetch_add(price, Ordering::Relaxed);
            }
        }));
    }
    for call in calls {
        call.await.unwrap();
    }
    let spent = spent.load(Ordering::Relaxed);
    assert!(spent <= DOLLAR, "spent {spent}");
    assert!(spent > DOLLAR - 5_000, "the budget was not filled: {spent}");
    let team = limiter.scope("team").unwrap();
    assert_eq!(
        limiter.status(team, "acme").tiers[0].remaining,
        DOLLAR - spent
    );
}

proptest! {
    /// Against a model that adds up each period's admitted calls: the limiter admits exactly the
    /// calls that fit within their period's limit, whatever the amounts and the time between them.
    #[test]
    fn the_limiter_admits_what_the_period_model_admits(
        steps in proptest::collection::vec((0_u64..3 * 86_400, 1_u64..400_000), 1..60),
    ) {
        let clock = ManualClock::new();
        let limit = DOLLAR;
        let limiter = RateLimiter::builder()
            .scope("team", Quota::new([Tier::calendar(Dimension::Cost, limit, Calendar::utc(Period::Day))]).unwrap())
            .clock(clock.clone())
            .wall_time(at("2026-12-05T12:00:00Z"))
            .build()
            .unwrap();
        let team = limiter.scope("team").unwrap();
        let start = 1_796_472_000_u64;
        let (mut day, mut spent, mut elapsed) = (start / 86_400, 0_u64, 0_u64);
        for (wait, amount) in steps {
            clock.advance(Duration::from_secs(wait));
            elapsed += wait;
            let today = (start + elapsed) / 86_400;
            if today != day {
                (day, spent) = (today, 0);
            }
            let fits = spent + amount <= limit;
            let admitted = limiter.check_and_consume(&[(team, "acme")], Amounts::cost(MicroUsd(amount))).is_ok();
            prop_assert_eq!(admitted, fits);
            if fits {
                spent += amount;
            }
            prop_assert_eq!(limiter.status(team, "acme").tiers[0].remaining, limit - spent);
        }
    }
}
