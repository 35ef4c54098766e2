//! `/ui`: a live page for an operator with no Prometheus yet, embedded in the binary (no build
//! step, nothing from a CDN), and `/ui/data`, the JSON it redraws from every few seconds. Both
//! need the admin key (`gateway.admin_key_hash`), as a bearer token or (for the page, which a
//! browser opens by address) a `key` query parameter, which the page then drops from the address.

use std::{
    collections::BTreeMap,
    time::{SystemTime, UNIX_EPOCH},
};

use axum::{
    extract::{Request, State},
    response::{Html, IntoResponse, Response},
};
use http::{StatusCode, header};
use serde_json::{Value, json};
use tollgate::{
    circuit_breaker::State as Breaker,
    health::Status,
    ratelimit::{Calendar, Period},
};
use tollgate_control::GroupBy;

use crate::{
    call::presented_key,
    error::{ApiError, Dialect},
    keys,
    state::{Gateway, Live},
};

const PAGE: &str = include_str!("ui.html");

/// `GET /ui`: the page.
pub(crate) async fn page(State(gateway): State<Gateway>, request: Request) -> Response {
    let live = gateway.live();
    if let Some(refused) = refusal(&gateway, &live, &request) {
        return refused;
    }
    ([(header::CACHE_CONTROL, "no-store")], Html(PAGE)).into_response()
}

/// `GET /ui/data`: what the page draws, now.
pub(crate) async fn data(State(gateway): State<Gateway>, request: Request) -> Response {
    let live = gateway.live();
    if let Some(refused) = refusal(&gateway, &live, &request) {
        return refused;
    }
    let mut body = snapshot(&live);
    body["records"] = records_view(&gateway).await;
    body["calls"] = match gateway.call_logs() {
        Some(logs) => json!({
            "latest": logs.recent(50),
            "sinks": logs.stats(),
        }),
        None => json!({ "latest": [], "sinks": [], "off": true }),
    };
    ([(header::CACHE_CONTROL, "no-store")], axum::Json(body)).into_response()
}

/// The records the page lists: every key with what it spent this period against its first
/// budget (this calendar month's spend for a key with none), the teams, and each team's spend
/// per UTC day over the last 30 days; or why they cannot be read now.
async fn records_view(gateway: &Gateway) -> Value {
    let Some(records) = gateway.records() else {
        return json!({ "keys": [], "teams": [], "team_days": {} });
    };
    match read_records(records.database()).await {
        Ok(view) => view,
        Err(error) => json!({ "error": error.message(), "keys": [], "teams": [], "team_days": {} }),
    }
}

async fn read_records(
    database: &tollgate_control::Database,
) -> Result<Value, tollgate_core::LlmError> {
    let now = SystemTime::now();
    let month = Calendar::utc(Period::Month);
    let (keys, teams) = (database.keys().await?, database.teams().await?);
    // What each key spent since each first day asked for, read once a day.
    let mut since: BTreeMap<String, BTreeMap<String, u64>> = BTreeMap::new();
    let mut rows = Vec::new();
    for key in &keys {
        let budget = key
            .limits
            .as_ref()
            .and_then(|limits| limits.budgets.first())
            .and_then(|budget| budget.to_tier().ok());
        let calendar = budget
            .as_ref()
            .and_then(|tier| tier.calendar_period().cloned())
            .unwrap_or_else(|| month.clone());
        let day = crate::restore::first_day(&calendar, now);
        if !since.contains_key(&day) {
            let report = database.spend(GroupBy::Key, Some(&day), None).await?;
            let spent = report
                .groups
                .into_iter()
                .map(|(k, t)| (k, t.cost_micros))
                .collect();
            since.insert(day.clone(), spent);
        }
        let spent = since[&day].get(&key.id).copied().unwrap_or(0);
        rows.push(json!({
            "id": key.id,
            "name": key.name,
            "team": key.team,
            "live": key.is_live(now),
            "period": calendar.to_string(),
            "spent_usd": spent as f64 / 1e6,
            "budget_usd": budget.map(|tier| tier.limit() as f64 / 1e6),
        }));
    }
    let from = crate::restore::utc_day(now - std::time::Duration::from_secs(29 * 86_400));
    let team_days: BTreeMap<String, BTreeMap<String, f64>> = database
        .daily_spend_by_team(&from)
        .await?
        .into_iter()
        .map(|(team, days)| {
            (
                team,
                days.into_iter().map(|(d, c)| (d, c as f64 / 1e6)).collect(),
            )
        })
        .collect();
    Ok(json!({
        "keys": rows,
        "teams": teams.iter().map(|team| team.name.clone()).collect::<Vec<_>>(),
        "team_days": team_days,
    }))
}

/// The refusal, unless the request carries the admin key or a record key made with
/// `admin: true` (in `Authorization: Bearer`, `x-api-key`, or the `key` query parameter).
fn refusal(gateway: &Gateway, live: &Live, request: &Request) -> Option<Response> {
    let from_query = request
        .uri()
        .query()
        .and_then(|query| query.split('&').find_map(|pair| pair.strip_prefix("key=")));
    let presented = presented_key(request.headers()).or(from_query);
    let file_admin = live
        .admin
        .as_ref()
        .zip(presented)
        .is_some_and(|(admin, key)| keys::matches(admin, key));
    let record_admin = presented
        .and_then(|key| gateway.find_key(live, key))
        .is_some_and(|key| key.admin);
    if file_admin || record_admin {
        return None;
    }
    if live.admin.is_none() && presented.is_none() {
        return Some(
            ApiError::new(
                StatusCode::FORBIDDEN,
                "permission_error",
                "the live page is off: set gateway.admin_key_hash to open it, or open it with a key made with `admin: true`",
            )
            .into_response(Dialect::OpenAi),
        );
    }
    Some(ApiError::unauthorized().into_response(Dialect::OpenAi))
}

/// Every figure the page draws, from the stack's own state.
fn snapshot(live: &Live) -> Value {
    let stack = &live.stack;
    let report = stack.cost_report();
    let mut providers: BTreeMap<String, Value> = BTreeMap::new();
    if let Some(health) = stack.health() {
        for (name, component) in health.snapshot() {
            let latency = &component.window.latency_ms;
            providers.insert(
                name,
                json!({
                    "calls": component.calls,
                    "failures": component.failures.values().sum::<u64>(),
                    "status": match component.status {
                        Status::Healthy => "healthy",
                        Status::Degraded => "degraded",
                        Status::Unhealthy => "unhealthy",
                    },
                    "p50_ms": latency.p50,
                    "p95_ms": latency.p95,
                    "p99_ms": latency.p99,
                }),
            );
        }
    }
    if let Some(breakers) = stack.breakers() {
        for (name, state) in breakers.states() {
            let entry = providers
                .entry(name.to_string())
                .or_insert_with(|| json!({}));
            entry["breaker"] = match state {
                Breaker::Closed | Breaker::ForcedClosed => "closed",
                Breaker::Open | Breaker::ForcedOpen => "open",
                Breaker::HalfOpen => "half-open",
            }
            .into();
        }
    }
    let cache = stack.cache().map(|cache| {
        let m = cache.metrics();
        json!({ "hits": m.hits, "misses": m.misses })
    });
    let denials = live
        .denials
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    let tenants: BTreeMap<String, Value> = report
        .by_tenant
        .iter()
        .map(|(tenant, line)| {
            let budget = line.budgets.first();
            (
                tenant.clone(),
                json!({
                    "spent_usd": line.spend.cost.0 as f64 / 1e6,
                    "calls": line.spend.calls,
                    // Streams that ended before their answer did, billed all the same.
                    "incomplete_calls": line.spend.incomplete_calls,
                    "budget_usd": budget.map(|b| b.limit.0 as f64 / 1e6),
                    "budget_per_s": budget.map(|b| b.per.as_secs()),
                    "denials": denials.get(tenant.as_str()).copied().unwrap_or(0),
                }),
            )
        })
        .chain(
            denials
                .iter()
                .filter(|(t, _)| !report.by_tenant.contains_key(&***t))
                .map(|(tenant, n)| {
                    (
                        tenant.to_string(),
                        json!({ "spent_usd": 0.0, "denials": n }),
                    )
                }),
        )
        .collect();
    json!({
        "time_ms": SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64),
        "providers": providers,
        "cache": cache,
        "tenants": tenants,
    })
}
