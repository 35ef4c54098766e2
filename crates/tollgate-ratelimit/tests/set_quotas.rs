//! Quotas given to keys while the limiter runs (`set_quotas`): what a key has counted carries
//! over where a tier counts the same thing, and an open scope limits only keys given a quota.

use std::time::{Duration, SystemTime};

use tollgate_core::{
    ErrorKind, LlmRequest, Message, MicroUsd, SimulatedProvider, clock::ManualClock,
};
use tollgate_ratelimit::{
    Amounts, Calendar, Dimension, Limits, PRINCIPAL_SCOPE, Period, Quota, RateLimitConfig,
    RateLimiter, TENANT_SCOPE, Tier,
};
use tower::ServiceExt;

const DOLLAR: u64 = 1_000_000;
const MINUTE: Duration = Duration::from_secs(60);

fn monthly(dollars: u64) -> Tier {
    Tier::calendar(
        Dimension::Cost,
        dollars * DOLLAR,
        Calendar::utc(Period::Month),
    )
}

fn limiter(clock: &ManualClock) -> RateLimiter {
    RateLimiter::builder()
        .scope("team", Quota::new([Tier::requests(100, MINUTE)]).unwrap())
        .clock(clock.clone())
        // 2026-12-05T12:00:00Z: most of December left.
        .wall_time(SystemTime::UNIX_EPOCH + Duration::from_secs(1_796_472_000))
        .build()
        .unwrap()
}

/// What becomes of `request` through `service`: admitted, or refused with its kind.
fn outcome<S>(
    service: &S,
    request: LlmRequest,
) -> impl std::future::Future<Output = Result<(), ErrorKind>> + use<S>
where
    S: tower::Service<
            LlmRequest,
            Response = tollgate_core::LlmResponse,
            Error = tollgate_core::LlmError,
        > + Clone,
{
    let service = service.clone();
    async move {
        service
            .oneshot(request)
            .await
            .map(drop)
            .map_err(|e| e.kind())
    }
}

fn spend(dollars: u64) -> Amounts {
    Amounts::requests(1).with_cost(MicroUsd(dollars * DOLLAR))
}

#[test]
fn a_budget_raised_mid_month_keeps_what_the_month_spent() {
    let clock = ManualClock::new();
    let limiter = limiter(&clock);
    let team = limiter.scope("team").unwrap();
    let rate = Tier::requests(100, MINUTE);
    limiter.set_quotas(
        team,
        [(
            "acme".into(),
            Some(Quota::new([rate.clone(), monthly(5)]).unwrap()),
        )],
    );
    assert!(limiter.has_own_quota(team, "acme") && !limiter.has_own_quota(team, "globex"));
    limiter
        .check_and_consume(&[(team, "acme")], spend(4))
        .unwrap();
    assert!(
        limiter
            .check_and_consume(&[(team, "acme")], spend(2))
            .is_err()
    );

    // $8 a month now: $4 is spent, so $4 more and no further.
    limiter.set_quotas(
        team,
        [(
            "acme".into(),
            Some(Quota::new([rate.clone(), monthly(8)]).unwrap()),
        )],
    );
    let status = limiter.status(team, "acme");
    assert_eq!(status.tiers[1].remaining, 4 * DOLLAR);
    // The unchanged request tier kept its count too: one request of 100 used.
    assert_eq!(status.tiers[0].remaining, 99);
    limiter
        .check_and_consume(&[(team, "acme")], spend(4))
        .unwrap();
    let denial = limiter
        .check_and_consume(&[(team, "acme")], spend(1))
        .unwrap_err();
    assert_eq!(denial.kind(), ErrorKind::BudgetExceeded);

    // Lowered below what is spent: nothing more this month.
    limiter.set_quotas(
        team,
        [("acme".into(), Some(Quota::new([rate, monthly(3)]).unwrap()))],
    );
    assert_eq!(limiter.status(team, "acme").tiers[1].remaining, 0);
    assert!(
        limiter
            .check_and_consume(
                &[(team, "acme")],
                Amounts::requests(1).with_cost(MicroUsd(1))
            )
            .is_err()
    );
}

#[test]
fn a_periods_spend_read_from_a_ledger_is_restored_once_and_only_in_calendar_budgets() {
    let clock = ManualClock::new();
    let limiter = limiter(&clock);
    let team = limiter.scope("team").unwrap();
    let rate = Tier::requests(100, MINUTE);
    let quota = Quota::new([rate, monthly(5)]).unwrap();
    limiter.set_quotas(team, [("acme".into(), Some(quota))]);
    let month = Calendar::utc(Period::Month);
    let budget = (Dimension::Cost, &month);
    assert!(limiter.restore_period_spend(team, "acme", budget, 3 * DOLLAR));
    // Again, or with less: still what the period spent, not more; another calendar's figure
    // is not this one's.
    limiter.restore_period_spend(team, "acme", budget, 3 * DOLLAR);
    limiter.restore_period_spend(team, "acme", budget, DOLLAR);
    let day = Calendar::utc(Period::Day);
    limiter.restore_period_spend(team, "acme", (Dimension::Cost, &day), 5 * DOLLAR);
    let status = limiter.status(team, "acme");
    assert_eq!(
        (status.tiers[0].remaining, status.tiers[1].remaining),
        (100, 2 * DOLLAR)
    );
    assert!(
        limiter
            .check_and_consume(&[(team, "acme")], spend(3))
            .is_err()
    );
    limiter
        .check_and_consume(&[(team, "acme")], spend(2))
        .unwrap();
    // January starts from nothing.
    clock.advance(Duration::from_secs(27 * 86_400));
    assert_eq!(limiter.status(team, "acme").tiers[1].remaining, 5 * DOLLAR);
}

#[test]
fn a_changed_rate_starts_full_and_a_quota_taken_back_is_the_default_again() {
    let clock = ManualClock::new();
    let limiter = limiter(&clock);
    let team = limiter.scope("team").unwrap();
    let two = Quota::new([Tier::requests(2, MINUTE)]).unwrap();
    limiter.set_quotas(team, [("acme".into(), Some(two))]);
    let call = Amounts::requests(1);
    let admits = |n: usize| {
        (0..n)
            .map(|_| limiter.check_and_consume(&[(team, "acme")], call).is_ok())
            .collect::<Vec<_>>()
    };
    assert_eq!(admits(3), [true, true, false]);
    // Three a minute is another tier: it starts full.
    limiter.set_quotas(
        team,
        [(
            "acme".into(),
            Some(Quota::new([Tier::requests(3, MINUTE)]).unwrap()),
        )],
    );
    assert_eq!(admits(4), [true, true, true, false]);
    // Back to the scope's default, 100 a minute, which starts full as well.
    limiter.set_quotas(team, [("acme".into(), None)]);
    assert!(!limiter.has_own_quota(team, "acme"));
    assert_eq!(limiter.status(team, "acme").tiers[0].remaining, 100);
    assert!(limiter.own_quota_keys(team).is_empty());
}

#[tokio::test]
async fn an_open_scope_limits_only_the_keys_given_a_quota_while_the_layer_runs() {
    let config = RateLimitConfig::default()
        .open_scope(PRINCIPAL_SCOPE)
        .open_scope(TENANT_SCOPE);
    let layer = config.build(None).unwrap();
    let limiter = layer.limiter().clone();
    assert_eq!(
        limiter.scope_names().collect::<Vec<_>>(),
        [TENANT_SCOPE, PRINCIPAL_SCOPE]
    );
    let service = tower::ServiceBuilder::new()
        .layer(layer)
        .service(SimulatedProvider::new());
    // A call by `principal` of tenant acme.
    let call = |principal: &str| {
        let mut request = LlmRequest::new("sim", vec![Message::user("hi")]).with_tenant("acme");
        request.meta.principal = Some(principal.into());
        outcome(&service, request)
    };
    // Nobody has a quota yet: nothing limits.
    for _ in 0..5 {
        assert_eq!(call("key-1").await, Ok(()));
    }
    let principal = limiter.scope(PRINCIPAL_SCOPE).unwrap();
    let one_a_minute: Limits = serde_json::from_str(r#"{ "per_minute": 1 }"#).unwrap();
    limiter
        .set_quotas(
            principal,
            [("key-1".into(), Some(one_a_minute.quota("limits").unwrap()))],
        )
        .unwrap();
    assert_eq!(call("key-1").await, Ok(()));
    assert_eq!(call("key-1").await, Err(ErrorKind::RateLimited));
    // Another key of the same tenant is not limited.
    assert_eq!(call("key-2").await, Ok(()));
}

#[tokio::test]
async fn a_budget_given_to_one_tenant_does_not_stop_anothers_calls_to_an_unpriced_model() {
    let layer = RateLimitConfig::default()
        .open_scope(TENANT_SCOPE)
        .build(Some(
            serde_json::from_str(r#"{ "priced": { "input": "1.00", "output": "2.00" } }"#).unwrap(),
        ))
        .unwrap();
    let limiter = layer.limiter().clone();
    let service = tower::ServiceBuilder::new()
        .layer(layer)
        .service(SimulatedProvider::new());
    let tenant = limiter.scope(TENANT_SCOPE).unwrap();
    let budget: Limits =
        serde_json::from_str(r#"{ "budgets": [{ "limit": "5", "period": "month" }] }"#).unwrap();
    limiter
        .set_quotas(
            tenant,
            [("acme".into(), Some(budget.quota("limits").unwrap()))],
        )
        .unwrap();
    let call = |tenant: &str, model: &str| {
        outcome(
            &service,
            LlmRequest::new(model, vec![Message::user("hi")]).with_tenant(tenant),
        )
    };
    // acme's budget cannot price `unpriced`, so acme's call is refused; globex has no budget.
    assert_eq!(
        call("acme", "unpriced").await,
        Err(ErrorKind::InvalidRequest)
    );
    assert_eq!(call("globex", "unpriced").await, Ok(()));
    assert_eq!(call("acme", "priced").await, Ok(()));
}
