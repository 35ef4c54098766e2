//! A budget is a hard cap whatever a request looks like: thousands of generated bodies, every
//! numeric form of every number that sets what a call may cost, on both front doors, whole and
//! streamed, sent many at once through the real binary to an upstream that bills all it may.
//! Each call is refused with a 4xx naming a field at fault, or admitted; and what the upstream
//! billed never passes the tenant's budget. Once with the limits in the process, once in Redis.

mod support;

use std::{sync::Arc, time::Instant};

use proptest::{
    prelude::*,
    test_runner::{Config as RunnerConfig, TestCaseError, TestRunner},
};
use serde_json::{Value, json};
use support::*;
use tollgate_testkit::{TestRedis, Topology};

/// The tenant's budget, in micro-dollars: $1 a day.
const BUDGET: u64 = 1_000_000;
/// Micro-dollars per output token: $10 per million.
const PER_TOKEN: u64 = 10;
/// What the upstream writes for a call that sets no bound: far past the budget, so a bound not
/// forwarded shows.
const UPSTREAM_DEFAULT: u64 = 200_000;
/// The gateway's caps.
const MAX_OUTPUT: u64 = 100_000;
const MAX_CHOICES: u64 = 16;

/// How a number is written, and the whole number it is, if it is one.
#[derive(Debug, Clone)]
struct Written {
    text: String,
    whole: Option<u64>,
    null: bool,
}

fn written() -> impl Strategy<Value = Written> {
    let whole = |text: String, value: u64| Written {
        text,
        whole: Some(value),
        null: false,
    };
    let not = |text: String| Written {
        text,
        whole: None,
        null: false,
    };
    prop_oneof![
        6 => (1u64..600).prop_map(move |k| whole(k.to_string(), k)),
        2 => (1u64..600).prop_map(move |k| whole(format!("{k}.0"), k)),
        2 => (1u64..10, 0u32..4).prop_map(move |(m, e)| whole(format!("{m}e{e}"), m * 10u64.pow(e))),
        1 => (1u64..4).prop_map(move |k| whole(k.to_string(), k)),
        1 => Just(whole("0".into(), 0)),
        1 => Just(whole("150000".into(), 150_000)),
        1 => (0u64..600).prop_map(move |k| not(format!("{k}.5"))),
        1 => (1u64..600).prop_map(move |k| not(format!("-{k}"))),
        1 => Just(not("9007199254740992".into())),
        1 => Just(not("18446744073709551616".into())),
        1 => Just(not("4294967296".into())),
        1 => Just(not("1e300".into())),
        1 => (1u64..600).prop_map(move |k| not(format!("\"{k}\""))),
        1 => Just(not("true".into())),
        1 => Just(Written { text: "null".into(), whole: None, null: true }),
    ]
}

/// One generated call: which door, streamed or not, and the numbers it writes.
#[derive(Debug, Clone)]
struct Call {
    messages_door: bool,
    stream: bool,
    fields: Vec<(&'static str, Written)>,
}

fn call() -> impl Strategy<Value = Call> {
    const FIELDS: [&str; 6] = [
        "max_tokens",
        "max_completion_tokens",
        "n",
        "best_of",
        "top_logprobs",
        // The Responses API's name for the bound, seldom: it is refused on both doors.
        "max_output_tokens",
    ];
    (
        any::<bool>(),
        any::<bool>(),
        prop::collection::vec(prop::option::weighted(0.4, written()), FIELDS.len() - 1),
        prop::option::weighted(0.05, written()),
    )
        .prop_map(|(messages_door, stream, mut numbers, responses)| {
            numbers.push(responses);
            Call {
                messages_door,
                stream,
                fields: FIELDS
                    .iter()
                    .zip(numbers)
                    .filter_map(|(field, number)| Some((*field, number?)))
                    .collect(),
            }
        })
}

impl Call {
    fn body(&self, text: &str) -> String {
        let mut body = format!(
            r#"{{"model": "default", "stream": {}, "messages": [{{"role": "user", "content": "{text}"}}]"#,
            self.stream
        );
        for (field, number) in &self.fields {
            body.push_str(&format!(r#", "{field}": {}"#, number.text));
        }
        body.push('}');
        body
    }

    /// The fields the gateway must refuse the call for, by the issue's rules; empty when it
    /// must be admitted (or refused by the budget).
    fn faults(&self) -> Vec<&'static str> {
        let mut faults = Vec::new();
        let given = |field: &str| {
            self.fields
                .iter()
                .find(|(name, w)| *name == field && !w.null)
                .map(|(_, w)| w.whole)
        };
        let range = |field: &'static str, least: u64, most: u64, faults: &mut Vec<&str>| {
            if let Some(whole) = given(field)
                && whole.is_none_or(|w| w < least || w > most)
            {
                faults.push(field);
            }
        };
        if self.messages_door {
            match given("max_tokens") {
                None => faults.push("max_tokens"),
                Some(_) => range("max_tokens", 1, MAX_OUTPUT, &mut faults),
            }
            range("n", 1, 1, &mut faults);
            range("best_of", 1, 1, &mut faults);
            // The Messages API has neither.
            for field in ["max_completion_tokens", "top_logprobs"] {
                if given(field).is_some() {
                    faults.push(field);
                }
            }
        } else {
            range("max_tokens", 1, MAX_OUTPUT, &mut faults);
            range("max_completion_tokens", 1, MAX_OUTPUT, &mut faults);
            if let (Some(Some(a)), Some(Some(b))) =
                (given("max_tokens"), given("max_completion_tokens"))
                && a != b
            {
                faults.push("max_completion_tokens");
            }
            range("n", 1, MAX_CHOICES, &mut faults);
            range("best_of", 1, MAX_CHOICES, &mut faults);
            range("top_logprobs", 0, u64::from(u32::MAX), &mut faults);
        }
        if given("max_output_tokens").is_some() {
            faults.push("max_output_tokens");
        }
        faults
    }
}

/// What became of a call.
#[derive(Debug, PartialEq, Eq)]
enum Outcome {
    Admitted,
    OverBudget,
    Refused(String),
}

async fn send(
    http: &reqwest::Client,
    gateway: &GatewayProcess,
    call: &Call,
    text: &str,
) -> Outcome {
    let path = if call.messages_door {
        "/v1/messages"
    } else {
        "/v1/chat/completions"
    };
    let response = http
        .post(format!("{}{path}", gateway.url))
        .bearer_auth(ALICE)
        .header("content-type", "application/json")
        .body(call.body(text))
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let body = response.text().await.unwrap();
    match status {
        200 => {
            // A streamed answer ends as a whole one does, never with an error event.
            assert!(!body.contains("\"error\""), "{body}");
            Outcome::Admitted
        }
        429 => {
            let error: Value = serde_json::from_str(&body).unwrap();
            let kind = if call.messages_door {
                &error["error"]["type"]
            } else {
                &error["error"]["code"]
            };
            assert!(
                *kind == "budget_exceeded" || *kind == "rate_limit_error",
                "{body}"
            );
            Outcome::OverBudget
        }
        400 => {
            let error: Value = serde_json::from_str(&body).unwrap();
            let named = match error["error"]["param"].as_str() {
                Some(param) => param.to_owned(),
                // Anthropic's shape has no `param`: the message begins with the field.
                None => error["error"]["message"]
                    .as_str()
                    .and_then(|m| m.split_once(':'))
                    .map(|(field, _)| field.to_owned())
                    .unwrap_or_default(),
            };
            assert!(!named.is_empty(), "a 400 naming no field: {body}");
            Outcome::Refused(named)
        }
        other => panic!("{other} for {}: {body}", call.body(text)),
    }
}

/// Sends `batches` of generated calls, each batch all at once, and checks every answer and the
/// spend after each batch.
fn holds(extra_config: &str) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let (upstream, gateway) = runtime.block_on(async {
        let upstream = Upstream::billing(UPSTREAM_DEFAULT).await;
        let more = format!(
            r#"
rate_limiting:
  tenants:
    acme: {{ cost_per_day: "{budget}" }}
gateway: {{ max_output_tokens: {MAX_OUTPUT}, max_choices: {MAX_CHOICES} }}
{extra_config}
"#,
            budget = BUDGET as f64 / 1e6,
        );
        let yaml = config(&upstream, &more).replace(
            r#"up-model: { input: "1.00", output: "2.00" }"#,
            r#"up-model: { input: "0", output: "10.00" }"#,
        );
        (upstream, GatewayProcess::start(&yaml).await)
    });
    let started = Instant::now();
    let gateway = Arc::new(gateway);
    // One client for every call: making one per call costs more than the call.
    let http = client();
    let tally = Arc::new(std::sync::Mutex::new((0u64, 0u64, 0u64)));
    let mut runner = TestRunner::new(RunnerConfig {
        cases: 24,
        failure_persistence: None,
        // The gateway keeps its spend between cases: a smaller case run later proves nothing.
        max_shrink_iters: 0,
        ..RunnerConfig::default()
    });
    let batch = prop::collection::vec(call(), 128);
    let result = runner.run(&batch, |calls| {
        let outcomes = runtime.block_on(async {
            let sent = calls.iter().enumerate().map(|(i, call)| {
                let (gateway, http) = (gateway.clone(), http.clone());
                let call = call.clone();
                tokio::spawn(
                    async move { send(&http, &gateway, &call, &format!("call {i}")).await },
                )
            });
            let mut outcomes = Vec::new();
            for handle in sent.collect::<Vec<_>>() {
                outcomes.push(handle.await.unwrap());
            }
            outcomes
        });
        let mut tally = tally.lock().unwrap();
        for (call, outcome) in calls.iter().zip(outcomes) {
            let faults = call.faults();
            match outcome {
                Outcome::Refused(field) => {
                    prop_assert!(
                        faults.contains(&field.as_str()),
                        "refused for {field:?}, faults {faults:?}: {}",
                        call.body("")
                    );
                    tally.2 += 1;
                }
                admitted => {
                    prop_assert!(
                        faults.is_empty(),
                        "{admitted:?} with faults {faults:?}: {}",
                        call.body("")
                    );
                    match admitted {
                        Outcome::Admitted => tally.0 += 1,
                        _ => tally.1 += 1,
                    }
                }
            }
        }
        // What a day's budget refills over the run is the only room past it.
        let refill = BUDGET * started.elapsed().as_secs().saturating_add(1) / 86_400;
        let spent = upstream.billed() * PER_TOKEN;
        if spent > BUDGET + refill {
            return Err(TestCaseError::fail(format!(
                "billed {spent} µ$ against a budget of {BUDGET} µ$ (+{refill} refilled)"
            )));
        }
        Ok(())
    });
    if let Err(failure) = result {
        panic!("{failure}\nlogs:\n{}", gateway.logs());
    }
    let (admitted, over_budget, refused) = *tally.lock().unwrap();
    // Not vacuous: the budget was spent, calls were refused by it, and bodies at fault by name.
    assert!(
        admitted > 0 && over_budget > 0 && refused > 0,
        "{admitted} {over_budget} {refused}"
    );
    assert!(
        upstream.billed() * PER_TOKEN > BUDGET / 2,
        "the budget was used"
    );
    assert!(
        upstream.bodies().iter().all(|body| {
            body.get("max_tokens").is_some() || body.get("max_completion_tokens").is_some()
        }),
        "every call reached the upstream with a bound"
    );
}

#[test]
fn a_budget_in_the_process_holds_whatever_the_requests_look_like() {
    holds("");
}

#[test]
fn a_budget_in_redis_holds_whatever_the_requests_look_like() {
    let Some(redis) = TestRedis::start(Topology::Server) else {
        return;
    };
    // Redis answers every decision, however loaded the machine: the limit comes from Redis
    // alone, never from a process's fallback share.
    holds(&format!(
        "redis: {{ {}, on_failure: fail_closed, limiter_timeout: 5s }}",
        redis.yaml()
    ));
    drop(redis);
}

#[tokio::test]
async fn a_call_without_a_bound_reaches_the_upstream_with_the_one_reserved() {
    let upstream = Upstream::billing(UPSTREAM_DEFAULT).await;
    let budget = "rate_limiting: { tenants: { acme: { cost_per_day: \"1\" } } }";
    // The role's own bound, and the stated default for a model tollgate does not know.
    let yaml = config(&upstream, budget).replace(
        "roles:\n",
        "roles:\n  capped: { provider: up, model: up-model, default_max_tokens: 300 }\n",
    );
    let gateway = GatewayProcess::start(&yaml).await;
    for (model, stream) in [("default", false), ("default", true), ("capped", false)] {
        let body = json!({ "model": model, "stream": stream, "messages": [{ "role": "user", "content": "hi" }] });
        let response = chat(&gateway, ALICE, &body).await;
        assert_eq!(response.status(), 200);
        response.text().await.unwrap();
    }
    let bounds: Vec<Value> = upstream
        .bodies()
        .iter()
        .map(|body| body["max_tokens"].clone())
        .collect();
    let default = u64::from(tollgate::DEFAULT_MAX_TOKENS);
    assert_eq!(bounds, [json!(default), json!(default), json!(300)]);
    assert_eq!(upstream.billed(), 2 * default + 300);
}

#[tokio::test]
async fn a_keys_monthly_budget_refuses_with_its_period_what_is_left_and_when_it_resets() {
    let upstream = Upstream::billing(UPSTREAM_DEFAULT).await;
    // $0.001 a calendar month on alice's key; each call writes its whole bound of 100 tokens at
    // $2 per million: $0.0002, and a little for its prompt.
    let yaml = config(&upstream, "").replace(
        r#"models: ["up/*"] }"#,
        r#"models: ["up/*"], limits: { budgets: [ { limit: "0.001", period: month } ] } }"#,
    );
    let gateway = GatewayProcess::start(&yaml).await;
    let body = json!({ "model": "default", "max_tokens": 100, "messages": [{ "role": "user", "content": "hi" }] });
    let mut admitted = 0;
    let refused = loop {
        let response = chat(&gateway, ALICE, &body).await;
        if response.status() != 200 {
            break response;
        }
        response.text().await.unwrap();
        admitted += 1;
        assert!(admitted < 10, "the budget never refused");
    };
    assert_eq!(admitted, 4, "four calls of about $0.0002 fit in $0.001");
    assert_eq!(refused.status(), 429);
    let headers = refused.headers().clone();
    let header = |name: &str| headers[name].to_str().unwrap().to_owned();
    assert_eq!(header("x-ratelimit-budget-period"), "month (UTC)");
    assert_eq!(header("x-ratelimit-limit-budget-usd"), "0.001000");
    // Four calls billed $0.0002 each; the fifth reserves its prompt's estimate on top.
    assert_eq!(header("x-ratelimit-remaining-budget-usd"), "0.000200");
    let now = jiff::Timestamp::now().to_zoned_datetime(jiff::tz::TimeZone::UTC);
    let next_month = now
        .date()
        .first_of_month()
        .last_of_month()
        .tomorrow()
        .unwrap();
    assert_eq!(
        header("x-ratelimit-budget-resets-at"),
        format!("{next_month}T00:00:00Z")
    );
    assert_eq!(header("x-should-retry"), "false");
    let error: Value = refused.json().await.unwrap();
    assert_eq!(error["error"]["type"], "insufficient_quota");
    assert_eq!(error["error"]["code"], "budget_exceeded");
    let message = error["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("per month (UTC)) has no room for this call")
            && message.contains(&format!("which resets at {next_month}T00:00:00Z")),
        "{message}"
    );
    assert_eq!(upstream.billed(), 400);
    // Another key of the same tenant has no such budget.
    let response = chat(&gateway, BOB, &body).await;
    assert_eq!(response.status(), 200);
}
