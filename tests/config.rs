//! The one-file configuration: the example loads and builds a stack that behaves as configured,
//! mistakes are reported together with their paths, keys never come from the file, and the cost
//! report adds up exactly.

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use tollgate::{
    Config, ErrorKind, LlmError, LlmRequest, LlmResponse, Message, Outcome, SimulatedProvider,
    Stack, Switch, circuit_breaker::State, clock::ManualClock, health::Status, ratelimit::Denial,
};
use tower::{Service, ServiceExt, service_fn};

const EXAMPLE: &str = include_str!("../examples/config.yaml");

/// The example configuration, without whatever the test's environment holds.
fn example() -> Config {
    Config::from_yaml(EXAMPLE)
        .and_then(|config| config.with_env_from(|_| None))
        .expect("the example configuration is valid")
}

/// A provider that answers at once and keeps every request it was sent.
fn recording() -> (
    impl Service<LlmRequest, Response = LlmResponse, Error = LlmError, Future: Send>
    + Clone
    + Send
    + Sync
    + 'static,
    Arc<Mutex<Vec<LlmRequest>>>,
) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    let service = service_fn(move |request: LlmRequest| {
        log.lock().unwrap().push(request.clone());
        let answer = LlmResponse::new(&*request.model, "ok");
        async move { Ok::<_, LlmError>(answer) }
    });
    (service, seen)
}

fn ask(role: &str, text: &str) -> LlmRequest {
    LlmRequest::new("", vec![Message::user(text)])
        .with_role(role)
        .with_tenant("globex")
}

#[tokio::test]
async fn a_role_falls_back_to_the_default_role_field_by_field() {
    let config = example();
    let summarize = config.role("summarize").unwrap();
    assert_eq!(
        (&*summarize.provider, &*summarize.model),
        ("openai", "gpt-4o-mini")
    );
    assert_eq!(
        (summarize.temperature, summarize.default_max_tokens),
        (Some(0.2), Some(256))
    );
    let reason = config.role("reason").unwrap();
    assert_eq!(
        (&*reason.provider, &*reason.model),
        ("anthropic", "claude-sonnet-4-5")
    );
    assert_eq!(
        (reason.temperature, reason.default_max_tokens),
        (Some(1.0), Some(1024))
    );

    // Through the stack: each request reaches its role's provider, filled in; what a request sets
    // itself wins.
    let (openai, to_openai) = recording();
    let (anthropic, to_anthropic) = recording();
    let stack = Stack::builder(&config)
        .provider("openai", openai)
        .provider("anthropic", anthropic)
        .build()
        .unwrap();
    stack.clone().oneshot(ask("summarize", "a")).await.unwrap();
    stack
        .clone()
        .oneshot(ask("reason", "b").with_max_tokens(99))
        .await
        .unwrap();
    stack
        .clone()
        .oneshot(LlmRequest::new(
            "gpt-4o-mini-2024-07-18",
            vec![Message::user("c")],
        ))
        .await
        .unwrap();

    let sent = to_openai.lock().unwrap();
    let fields = |r: &LlmRequest| {
        (
            r.provider.as_deref().map(str::to_owned),
            r.model.to_string(),
            r.params.temperature,
            r.params.max_tokens,
            r.meta.role.as_deref().map(str::to_owned),
        )
    };
    let own = |p: &str, m: &str, t, n, role: &str| {
        (
            Some(p.to_owned()),
            m.to_owned(),
            t,
            n,
            Some(role.to_owned()),
        )
    };
    assert_eq!(
        sent.iter().map(fields).collect::<Vec<_>>(),
        [
            own("openai", "gpt-4o-mini", Some(0.2), Some(256), "summarize"),
            own(
                "openai",
                "gpt-4o-mini-2024-07-18",
                Some(0.2),
                Some(1024),
                "default"
            ),
        ]
    );
    assert_eq!(
        to_anthropic
            .lock()
            .unwrap()
            .iter()
            .map(fields)
            .collect::<Vec<_>>(),
        [own(
            "anthropic",
            "claude-sonnet-4-5",
            Some(1.0),
            Some(99),
            "reason"
        )]
    );
}

#[tokio::test]
async fn a_per_provider_limit_denies_the_call_past_it_and_only_that_provider() {
    let config = example();
    let (openai, _) = recording();
    let (anthropic, to_anthropic) = recording();
    let stack = Stack::builder(&config)
        .provider("openai", openai)
        .provider("anthropic", anthropic)
        .clock(ManualClock::new()) // time stands still: the figures are exact
        .build()
        .unwrap();
    // anthropic: 50 a minute. globex has the default tenant quota, 60 a minute. Small answers, so
    // the token tiers stay out of it.
    let ask = |role: &str, text: &str| ask(role, text).with_max_tokens(10);
    for i in 0..50 {
        let answer = stack.clone().oneshot(ask("reason", &format!("q{i}"))).await;
        assert!(answer.is_ok(), "call {i}: {answer:?}");
    }
    let denied = stack
        .clone()
        .oneshot(ask("reason", "q50"))
        .await
        .unwrap_err();
    assert_eq!(denied.kind(), ErrorKind::RateLimited);
    let denial = denied
        .extensions()
        .get::<Denial>()
        .expect("a limiter's denial");
    assert_eq!((denial.scope(), denial.key()), ("provider", "anthropic"));
    assert_eq!(denied.retry_after(), Some(Duration::from_millis(1_200)));
    assert_eq!(to_anthropic.lock().unwrap().len(), 50);

    // The same tenant still reaches openai: its own quota had room for 10 more.
    for i in 0..10 {
        let answer = stack
            .clone()
            .oneshot(ask("summarize", &format!("s{i}")))
            .await;
        assert!(answer.is_ok(), "call {i}: {answer:?}");
    }
    // ...and now it is the tenant's quota that says no.
    let denied = stack
        .clone()
        .oneshot(ask("summarize", "s10"))
        .await
        .unwrap_err();
    let denial = denied.extensions().get::<Denial>().unwrap();
    assert_eq!((denial.scope(), denial.key()), ("tenant", "globex"));
}

#[tokio::test]
async fn caching_is_off_for_the_provider_configured_so() {
    let config = example();
    let (openai, to_openai) = recording();
    let (anthropic, to_anthropic) = recording();
    let stack = Stack::builder(&config)
        .provider("openai", openai)
        .provider("anthropic", anthropic)
        .build()
        .unwrap();
    for _ in 0..2 {
        stack
            .clone()
            .oneshot(ask("summarize", "same"))
            .await
            .unwrap();
        stack.clone().oneshot(ask("reason", "same")).await.unwrap();
    }
    assert_eq!(
        to_openai.lock().unwrap().len(),
        1,
        "openai's repeat is a hit"
    );
    assert_eq!(
        to_anthropic.lock().unwrap().len(),
        2,
        "anthropic is never cached"
    );
    let metrics = stack.cache().unwrap().metrics();
    assert_eq!((metrics.hits, metrics.stores), (1, 1));
}

#[test]
fn three_mistakes_are_reported_together_with_their_paths() {
    let yaml = EXAMPLE
        .replace("      per_minute: 500", "      per_minute: 0")
        .replace(
            "  summarize:                         # openai, gpt-4o-mini, temperature 0.2 and timeout 2m from default",
            "  summarize:\n    provider: opnai",
        )
        .replace("  multiplier: 2.0", "  multiplier: \"twice\"");
    let err = Config::from_yaml(&yaml).unwrap_err();
    assert_eq!(
        err.paths(),
        [
            "retry.multiplier",
            "roles.summarize.provider",
            "rate_limiting.providers.openai.per_minute",
        ]
    );
    let text = err.to_string();
    assert!(
        text.starts_with("invalid configuration (3 mistakes):"),
        "{text}"
    );
    assert!(
        text.contains("rate_limiting.providers.openai.per_minute: must be > 0"),
        "{text}"
    );
    assert!(
        text.contains(
            "roles.summarize.provider: unknown provider \"opnai\" (providers: anthropic, local_fast, local_slow, openai)"
        ),
        "{text}"
    );
    assert!(
        text.contains("retry.multiplier: invalid type: string \"twice\""),
        "{text}"
    );
}

#[test]
fn an_unknown_field_is_rejected_with_its_name() {
    let yaml = EXAMPLE.replace("    temperature: 0.2", "    temprature: 0.2");
    let err = Config::from_yaml(&yaml).unwrap_err();
    assert_eq!(err.errors().len(), 1, "{err}");
    let error = &err.errors()[0];
    assert_eq!(error.path(), "roles.default.temprature");
    assert!(
        error.reason().starts_with("unknown field `temprature`"),
        "{err}"
    );

    let err = Config::from_yaml(&format!("{EXAMPLE}\nlogging: {{ level: debug }}\n")).unwrap_err();
    assert_eq!(err.paths(), ["logging"]);
    assert!(
        err.errors()[0]
            .reason()
            .contains("unknown section `logging`")
    );

    let yaml = EXAMPLE.replace(
        "    anthropic: { enabled: false }",
        "    anthropic: { enable: false }",
    );
    assert_eq!(
        Config::from_yaml(&yaml).unwrap_err().paths(),
        ["caching.providers.anthropic.enable"]
    );
}

#[test]
fn a_key_in_the_file_is_refused_without_being_repeated() {
    let secret = "sk-proj-a1b2c3d4e5f6";
    for (yaml, path) in [
        (
            EXAMPLE.replace(
                "    api_key_env: OPENAI_API_KEY ",
                &format!("    api_key: {secret} "),
            ),
            "providers.openai.api_key",
        ),
        (
            EXAMPLE.replace(
                "    api_key_env: OPENAI_API_KEY ",
                &format!("    api_key_env: {secret} "),
            ),
            "providers.openai.api_key_env",
        ),
    ] {
        let err = Config::from_yaml(&yaml).unwrap_err();
        assert_eq!(err.paths(), [path]);
        let shown = format!("{err} {err:?}");
        assert!(!shown.contains(secret), "the key leaked: {shown}");
        assert!(shown.contains("environment variable"), "{shown}");
    }
}

#[test]
fn a_key_variable_that_is_not_set_stops_the_build() {
    let config = example();
    let err = Stack::builder(&config).env(|_| None).build().unwrap_err();
    assert_eq!(
        err.errors()
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>(),
        [
            "providers.anthropic.api_key_env: the environment variable ANTHROPIC_API_KEY is not set",
            "providers.openai.api_key_env: the environment variable OPENAI_API_KEY is not set",
        ]
    );
}

#[test]
fn the_environment_overrides_the_redis_url_and_the_default_quota() {
    let yaml = format!("{EXAMPLE}\nredis: {{ url: \"redis://config-host:6379/\" }}\n");
    let config = Config::from_yaml(&yaml)
        .unwrap()
        .with_env_from(|name| match name {
            "REDIS_URL" => Some("redis://env-host:6380/".into()),
            "TOLLGATE_DEFAULT_QUOTA" => Some("{per_minute: 5, cost_per_day: \"1.50\"}".into()),
            _ => None,
        })
        .unwrap();
    assert_eq!(
        config.redis.unwrap().url.as_deref(),
        Some("redis://env-host:6380/")
    );
    let Switch::On(limiting) = &config.rate_limiting else {
        panic!("rate limiting is on")
    };
    let default = &limiting.tenants["default"];
    assert_eq!(default.per_minute, Some(5));
    assert_eq!(default.tokens_per_hour, None, "replaced, not merged");

    let err = Config::from_yaml(EXAMPLE)
        .unwrap()
        .with_env_from(|name| (name == "TOLLGATE_DEFAULT_QUOTA").then(|| "{per_minute: 0}".into()))
        .unwrap_err();
    assert_eq!(err.paths(), ["env.TOLLGATE_DEFAULT_QUOTA.per_minute"]);
}

#[tokio::test(start_paused = true)]
async fn every_layer_can_be_turned_off() {
    let yaml = "
providers:
  sim: { kind: simulated }
roles:
  default: { provider: sim, model: sim-small }
retry: false
circuit_breaker: false
health: false
";
    let config = Config::from_yaml(yaml).unwrap();
    let provider = SimulatedProvider::builder()
        .script([Outcome::rate_limited(Duration::from_millis(10))])
        .build();
    let stack = Stack::builder(&config)
        .provider("sim", provider.clone())
        .build()
        .unwrap();
    assert!(stack.cache().is_none() && stack.limiter().is_none());
    assert!(stack.breakers().is_none() && stack.health().is_none());
    let err = stack
        .clone()
        .oneshot(ask("default", "x"))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::RateLimited);
    assert_eq!(provider.calls(), 1, "no retry");

    // The same with the defaults: the 429 is retried.
    let config = Config::from_yaml(&yaml.replace(": false", ": true")).unwrap();
    let provider = SimulatedProvider::builder()
        .script([Outcome::rate_limited(Duration::from_millis(10))])
        .build();
    let stack = Stack::builder(&config)
        .provider("sim", provider.clone())
        .build()
        .unwrap();
    stack.clone().oneshot(ask("default", "x")).await.unwrap();
    assert_eq!(provider.calls(), 2);
    assert!(stack.breakers().is_some() && stack.health().is_some());
}

/// A provider scripted to fail with a server error `failures` times, then answer.
fn failing(failures: usize) -> SimulatedProvider {
    SimulatedProvider::builder()
        .script(std::iter::repeat_n(
            Outcome::fail(ErrorKind::Server),
            failures,
        ))
        .build()
}

/// The stack `yaml` describes, each named provider served by its simulated provider.
fn stack_over(yaml: &str, providers: &[(&str, &SimulatedProvider)]) -> Stack {
    let config = Config::from_yaml(yaml).unwrap();
    providers
        .iter()
        .fold(Stack::builder(&config), |stack, (name, provider)| {
            stack.provider(*name, (*provider).clone())
        })
        .build()
        .unwrap()
}

#[tokio::test(start_paused = true)]
async fn one_providers_outage_does_not_spend_the_retries_of_another() {
    // A budget of one retry (1 a second over a 1 s window) and nothing earned per call.
    let yaml = "
providers:
  down: { kind: simulated }
  up: { kind: simulated }
roles:
  default: { provider: down, model: m }
  other: { provider: up, model: m }
retry:
  max_retries: 1
  base_delay: 10ms
  jitter: none
  budget: { window: 1s, min_per_second: 1, ratio: 0.0 }
circuit_breaker: false
health: false
";
    let (down, up) = (failing(10), failing(1));
    let stack = stack_over(yaml, &[("down", &down), ("up", &up)]);
    let call = |role: &str| stack.clone().oneshot(ask(role, "x"));

    call("default").await.unwrap_err();
    assert_eq!(down.calls(), 2, "retried once, spending its budget");
    call("default").await.unwrap_err();
    assert_eq!(down.calls(), 3, "no budget left: tried once");
    call("other").await.unwrap();
    assert_eq!(up.calls(), 2, "its own budget is whole: retried");
}

#[tokio::test(start_paused = true)]
async fn a_provider_can_change_its_retry_settings_or_turn_them_off() {
    let yaml = "
providers:
  plain: { kind: simulated }
  never: { kind: simulated }
  patient: { kind: simulated }
roles:
  default: { provider: plain, model: m }
  never: { provider: never, model: m }
  patient: { provider: patient, model: m }
retry:
  max_retries: 1
  base_delay: 10ms
  jitter: none
  budget: null
  providers:
    never: false
    patient: { max_retries: 3 }
circuit_breaker: false
health: false
";
    let (plain, never, patient) = (failing(3), failing(3), failing(3));
    let stack = stack_over(
        yaml,
        &[("plain", &plain), ("never", &never), ("patient", &patient)],
    );
    let call = |role: &str| stack.clone().oneshot(ask(role, "x"));

    call("default").await.unwrap_err();
    assert_eq!(plain.calls(), 2, "the section's policy: one retry");
    call("never").await.unwrap_err();
    assert_eq!(never.calls(), 1, "retries off");
    // Three retries of its own, with the section's base delay and no jitter: 10 + 20 + 40 ms.
    let start = tokio::time::Instant::now();
    call("patient").await.unwrap();
    assert_eq!(patient.calls(), 4);
    assert_eq!(start.elapsed(), Duration::from_millis(70));
}

/// Three simulated providers, each with a role of its own (`hosted` is the default one).
const THREE_PROVIDERS: &str = "
providers:
  hosted: { kind: simulated }
  local: { kind: simulated }
  bare: { kind: simulated }
roles:
  default: { provider: hosted, model: m }
  local: { provider: local, model: m }
  bare: { provider: bare, model: m }
";

#[tokio::test(start_paused = true)]
async fn a_provider_can_have_breaker_rules_of_its_own_or_none() {
    let yaml = THREE_PROVIDERS.to_owned()
        + "
retry: false
circuit_breaker:
  window: { count: 10 }
  minimum_calls: 10
  providers:
    local: { window: { count: 2 }, minimum_calls: 2 }
    bare: false
";
    let (hosted, local, bare) = (failing(10), failing(10), failing(10));
    let stack = stack_over(
        &yaml,
        &[("hosted", &hosted), ("local", &local), ("bare", &bare)],
    );
    let call = |role: &str| stack.clone().oneshot(ask(role, "x"));
    for _ in 0..2 {
        for role in ["default", "local", "bare"] {
            assert_eq!(call(role).await.unwrap_err().kind(), ErrorKind::Server);
        }
    }
    let breakers = stack.breakers().unwrap();
    assert_eq!(breakers.state("local"), Some(State::Open), "2 of 2 failed");
    assert_eq!(
        breakers.state("hosted"),
        Some(State::Closed),
        "2 calls of 10"
    );
    assert_eq!(breakers.state("bare"), None, "no breaker");
    assert_eq!(
        call("local").await.unwrap_err().kind(),
        ErrorKind::CircuitOpen
    );
    assert_eq!(call("bare").await.unwrap_err().kind(), ErrorKind::Server);
    assert_eq!((hosted.calls(), local.calls(), bare.calls()), (2, 2, 3));

    // What bounds every breaker together is set once, for the section.
    let err = Config::from_yaml(&yaml.replace("bare: false", "bare: { max_keys: 5 }")).unwrap_err();
    assert_eq!(
        err.paths(),
        ["circuit_breaker.providers.bare.max_keys"],
        "{err}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_provider_can_have_health_thresholds_of_its_own_or_none() {
    let yaml = THREE_PROVIDERS.to_owned()
        + "
retry: false
circuit_breaker: false
health:
  minimum_calls: 10
  providers:
    local: { minimum_calls: 1 }
    bare: false
";
    let (hosted, local, bare) = (failing(1), failing(1), failing(1));
    let stack = stack_over(
        &yaml,
        &[("hosted", &hosted), ("local", &local), ("bare", &bare)],
    );
    for role in ["default", "local", "bare"] {
        stack.clone().oneshot(ask(role, "x")).await.unwrap_err();
    }
    let health = stack.health().unwrap();
    assert_eq!(
        health.status("local"),
        Some(Status::Unhealthy),
        "1 of 1 failed"
    );
    assert_eq!(
        health.status("hosted"),
        Some(Status::Healthy),
        "1 call of 10"
    );
    assert_eq!(health.status("bare"), None, "no statistics");

    // What bounds every component together is set once, for the section.
    let yaml = yaml.replace("bare: false", "bare: { max_components: 5 }");
    let err = Config::from_yaml(&yaml).unwrap_err();
    assert_eq!(
        err.paths(),
        ["health.providers.bare.max_components"],
        "{err}"
    );
}

#[test]
fn a_providers_retry_settings_are_checked_with_their_paths() {
    let yaml = "
providers:
  sim: { kind: simulated }
roles:
  default: { provider: sim, model: m }
retry:
  providers:
    nowhere: { max_retries: 2 }
    sim: { max_retrie: 2 }
";
    let err = Config::from_yaml(yaml).unwrap_err();
    assert_eq!(
        err.paths(),
        ["retry.providers.sim.max_retrie", "retry.providers.nowhere"],
        "{err}"
    );
    assert!(
        err.to_string()
            .contains("retry.providers.nowhere: unknown provider (providers: sim)"),
        "{err}"
    );

    // A value that is checked after parsing, and one that is neither false nor settings.
    let yaml = yaml
        .replace("nowhere: { max_retries: 2 }", "sim: { multiplier: 0.5 }")
        .replace("    sim: { max_retrie: 2 }\n", "");
    let err = Config::from_yaml(&yaml).unwrap_err();
    assert_eq!(err.paths(), ["retry.providers.sim.multiplier"], "{err}");
    let err = Config::from_yaml(&yaml.replace("{ multiplier: 0.5 }", "3")).unwrap_err();
    assert_eq!(err.paths(), ["retry.providers.sim"], "{err}");

    // Through serde alone (a configuration read from JSON), the same rules, with the mistakes in
    // one message.
    let json = r#"{
        "providers": { "sim": { "kind": "simulated" } },
        "roles": { "default": { "provider": "sim", "model": "m" } },
        "retry": { "max_retries": 1, "providers": { "sim": { "base_delay": "2s" } } }
    }"#;
    let config: Config = serde_json::from_str(json).unwrap();
    let sim = config.retry.for_provider("sim").unwrap();
    assert_eq!(
        (sim.max_retries, sim.base_delay),
        (1, Duration::from_secs(2))
    );
    let err = serde_json::from_str::<Config>(&json.replace("base_delay", "base_dlay")).unwrap_err();
    assert!(
        err.to_string()
            .starts_with("providers.sim.base_dlay: unknown field `base_dlay`"),
        "{err}"
    );
}

#[tokio::test]
async fn an_unknown_role_or_provider_is_an_invalid_request() {
    let stack = Stack::builder(&example())
        .provider("openai", recording().0)
        .provider("anthropic", recording().0)
        .build()
        .unwrap();
    let err = stack
        .clone()
        .oneshot(ask("summarise", "x"))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidRequest);
    assert!(
        err.to_string().contains("no role named \"summarise\""),
        "{err}"
    );
    let err = stack
        .clone()
        .oneshot(ask("default", "x").with_provider("azure"))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidRequest);
}

#[tokio::test(start_paused = true)]
async fn the_cost_report_is_exact_for_a_scripted_run() {
    // Prices chosen so every figure is a whole number of micro-dollars: $1 and $2 per million
    // tokens are 1 and 2 micro-dollars per token.
    let yaml = "
providers:
  fast: { kind: simulated, output_tokens: 10 }
  slow: { kind: simulated, output_tokens: 100 }
roles:
  default: { provider: fast, model: small }
  deep: { provider: slow, model: large }
pricing:
  small: { input: \"1.00\", output: \"2.00\" }
  large: { input: \"10.00\", output: \"20.00\" }
caching: true
rate_limiting:
  tenants:
    default: { cost_per_day: \"1.00\" }
    acme: { per_minute: 100, cost_per_day: \"2.50\" }
retry: { base_delay: 10ms, budget: null }
";
    let config = Config::from_yaml(yaml).unwrap();
    // `slow` answers its first call with a 429: retried, and only the answer is counted.
    let slow = SimulatedProvider::builder()
        .output_tokens(100)
        .script([Outcome::rate_limited(Duration::from_millis(10))])
        .build();
    let stack = Stack::builder(&config)
        .provider("slow", slow.clone())
        .clock(ManualClock::new())
        .build()
        .unwrap();
    let call = |role: &str, tenant: Option<&str>, text: &str| {
        let mut request = LlmRequest::new("", vec![Message::user(text)]).with_role(role);
        if let Some(tenant) = tenant {
            request = request.with_tenant(tenant);
        }
        stack.clone().oneshot(request)
    };
    // "hi" is 7 prompt tokens (1 + 3 framing + 3 priming); "hello there" 9.
    call("default", Some("acme"), "hi").await.unwrap(); // small: 7 in, 10 out = 7 + 20 = 27
    call("default", Some("acme"), "hi").await.unwrap(); // a cache hit: not counted
    call("deep", Some("acme"), "hi").await.unwrap(); // large: 70 + 2000 = 2070, after a retry
    call("default", Some("initech"), "hello there")
        .await
        .unwrap(); // small: 9 + 20 = 29
    call("default", None, "hi").await.unwrap(); // no tenant: its own cache entry; 27
    assert_eq!(slow.calls(), 2);

    let report = stack.cost_report();
    assert_eq!(report.total.cost.0, 27 + 2_070 + 29 + 27);
    let expected = r#"{
  "total": {
    "calls": 4,
    "input_tokens": 30,
    "output_tokens": 130,
    "cost_usd": "0.002153",
    "unpriced_calls": 0,
    "incomplete_calls": 0
  },
  "by_tenant": {
    "-": {
      "calls": 1,
      "input_tokens": 7,
      "output_tokens": 10,
      "cost_usd": "0.000027",
      "unpriced_calls": 0,
      "incomplete_calls": 0,
      "budgets": [
        {
          "per": "1d",
          "limit_usd": "1.000000",
          "remaining_usd": "0.999973"
        }
      ]
    },
    "acme": {
      "calls": 2,
      "input_tokens": 14,
      "output_tokens": 110,
      "cost_usd": "0.002097",
      "unpriced_calls": 0,
      "incomplete_calls": 0,
      "budgets": [
        {
          "per": "1d",
          "limit_usd": "2.500000",
          "remaining_usd": "2.497903"
        }
      ]
    },
    "initech": {
      "calls": 1,
      "input_tokens": 9,
      "output_tokens": 10,
      "cost_usd": "0.000029",
      "unpriced_calls": 0,
      "incomplete_calls": 0,
      "budgets": [
        {
          "per": "1d",
          "limit_usd": "1.000000",
          "remaining_usd": "0.999971"
        }
      ]
    }
  },
  "by_provider": {
    "fast": {
      "calls": 3,
      "input_tokens": 23,
      "output_tokens": 30,
      "cost_usd": "0.000083",
      "unpriced_calls": 0,
      "incomplete_calls": 0
    },
    "slow": {
      "calls": 1,
      "input_tokens": 7,
      "output_tokens": 100,
      "cost_usd": "0.002070",
      "unpriced_calls": 0,
      "incomplete_calls": 0
    }
  },
  "by_model": {
    "large": {
      "calls": 1,
      "input_tokens": 7,
      "output_tokens": 100,
      "cost_usd": "0.002070",
      "unpriced_calls": 0,
      "incomplete_calls": 0
    },
    "small": {
      "calls": 3,
      "input_tokens": 23,
      "output_tokens": 30,
      "cost_usd": "0.000083",
      "unpriced_calls": 0,
      "incomplete_calls": 0
    }
  },
  "by_role": {
    "deep": {
      "calls": 1,
      "input_tokens": 7,
      "output_tokens": 100,
      "cost_usd": "0.002070",
      "unpriced_calls": 0,
      "incomplete_calls": 0
    },
    "default": {
      "calls": 3,
      "input_tokens": 23,
      "output_tokens": 30,
      "cost_usd": "0.000083",
      "unpriced_calls": 0,
      "incomplete_calls": 0
    }
  }
}"#;
    assert_eq!(report.to_json(), expected);
}

#[test]
fn the_redis_section_refuses_a_zero_cache_bound_with_its_path() {
    let yaml = "
providers:
  sim: { kind: simulated }
roles:
  default: { provider: sim, model: m }
redis: { url: \"redis://127.0.0.1:6379/\", cache_timeout: 0s, cache_max_value_bytes: 0 }
";
    let err = Config::from_yaml(yaml).unwrap_err();
    assert_eq!(
        err.paths(),
        ["redis.cache_max_value_bytes", "redis.cache_timeout"]
    );
}

/// A stream the caller drops, or that fails midway, is billed by the provider all the same: the
/// report counts it, with the usage reported by then and the rest estimated.
#[tokio::test(start_paused = true)]
async fn a_stream_is_counted_however_it_ends() {
    use tollgate::{
        TokenEstimator,
        stream::{LlmStream, StreamEvent},
    };
    let yaml = "
providers:
  fast: { kind: simulated }
roles:
  default: { provider: fast, model: small }
pricing:
  small: { input: \"1.00\", output: \"2.00\" }
";
    let config = Config::from_yaml(yaml).unwrap();
    // The tenant picks what the stream says.
    let streaming = service_fn(|request: LlmRequest| {
        let events = match request.meta.tenant.as_deref() {
            Some("whole") => vec![
                Ok(StreamEvent::text("abcdefgh")),
                Ok(StreamEvent::Usage(tollgate::Usage::new(5, 3))),
            ],
            // Anthropic's way: the prompt's size first, with a placeholder answer count.
            Some("failed") => vec![
                Ok(StreamEvent::Usage(tollgate::Usage::new(6, 1))),
                Ok(StreamEvent::text("abcdefghijkl")),
                Err(LlmError::new(ErrorKind::Server, "connection lost")),
            ],
            _ => vec![
                Ok(StreamEvent::text("abcd")),
                Ok(StreamEvent::text("efgh")),
                Ok(StreamEvent::Usage(tollgate::Usage::new(7, 2))),
            ],
        };
        let stream = LlmStream::from_events(events);
        async move { Ok::<_, LlmError>(LlmResponse::new(&*request.model, "").with_stream(stream)) }
    });
    let stack = Stack::builder(&config)
        .provider("fast", streaming)
        .build()
        .unwrap();
    let call = |tenant: &str| {
        let request = LlmRequest::new("", vec![Message::user("hi")])
            .with_tenant(tenant)
            .streaming();
        stack.clone().oneshot(request)
    };

    let whole = call("whole").await.unwrap().take_stream().unwrap();
    whole.collect().await.unwrap();
    let failed = call("failed").await.unwrap().take_stream().unwrap();
    assert_eq!(
        failed.collect().await.unwrap_err().kind(),
        ErrorKind::Server
    );
    let mut dropped = call("dropped").await.unwrap().take_stream().unwrap();
    dropped.next().await.unwrap().unwrap(); // "abcd", then the caller stops reading
    drop(dropped);
    drop(call("untaken").await.unwrap()); // the stream is never taken

    // No usage reported before the end: the prompt is estimated as the limiter would.
    let prompt = tollgate::CharEstimator
        .estimate_prompt(&LlmRequest::new("small", vec![Message::user("hi")]));
    assert_eq!(prompt, 7);
    let report = stack.cost_report();
    let spent = |tenant: &str| {
        let spend = report.by_tenant[tenant].spend;
        (
            spend.calls,
            spend.incomplete_calls,
            spend.input_tokens,
            spend.output_tokens,
            spend.cost.0,
        )
    };
    // At $1 and $2 per million tokens, each prompt token is 1 micro-dollar, each answer token 2.
    assert_eq!(
        spent("whole"),
        (1, 0, 5, 3, 5 + 6),
        "as reported at its end"
    );
    // Reported: 6 in, 1 out; but 12 characters (3 tokens) were read, which is more.
    assert_eq!(spent("failed"), (1, 1, 6, 3, 6 + 6));
    // Nothing reported: the prompt estimated, "abcd" read (1 token).
    assert_eq!(spent("dropped"), (1, 1, 7, 1, 7 + 2));
    // Never taken, but the router read its first event ("abcd") to see the stream start before it
    // answered: the provider sent it, and it is billed.
    assert_eq!(spent("untaken"), (1, 1, 7, 1, 7 + 2));
    assert_eq!((report.total.calls, report.total.incomplete_calls), (4, 3));
}
