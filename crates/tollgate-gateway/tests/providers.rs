//! Each cloud provider through the real binary, against a local server that speaks the
//! provider's documented protocol (`clients/providers.py`): the official `openai` client gets a
//! tool call whole and streamed, the official `anthropic` client a `tool_use` whole and streamed,
//! the usage's cached tokens are billed at the catalog's cached rate, and the provider's
//! context-window and content-filter refusals move to the role's fallbacks by their kind.

mod support;

use std::{path::PathBuf, process::Stdio};

use serde_json::{Value, json};
use support::*;
use tokio::io::{AsyncBufReadExt, BufReader};
use tollgate::{PriceCatalog, Usage};

/// The providers' test servers, up until dropped (standard input closed).
struct TestServers {
    url: String,
    _child: tokio::process::Child,
}

/// Runs a Python test server with `args` (standard input kept open: closing it stops the
/// server) and returns it with the first line it prints once it listens.
async fn spawn_server(python: &PathBuf, args: &[&str]) -> (tokio::process::Child, String) {
    let mut child = tokio::process::Command::new(python)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let line = tokio::time::timeout(std::time::Duration::from_secs(30), lines.next_line())
        .await
        .unwrap_or_else(|_| panic!("{args:?} does not start"))
        .unwrap()
        .unwrap();
    (child, line)
}

impl TestServers {
    async fn start(python: &PathBuf) -> Self {
        let script = format!("{}/tests/clients/providers.py", env!("CARGO_MANIFEST_DIR"));
        let (child, line) = spawn_server(python, &[script.as_str(), "serve"]).await;
        let said: Value = serde_json::from_str(&line).unwrap();
        Self {
            url: said["url"].as_str().unwrap().to_owned(),
            _child: child,
        }
    }
}

/// The Bedrock test server (`tollgate-providers/tests/bedrock_server.py`): every call's SigV4
/// signature checked with botocore's own signer, answers scripted through `/_script`.
struct BedrockServer {
    url: String,
    _child: tokio::process::Child,
}

const AWS_KEY: &str = "AKIDEXAMPLE";
const AWS_SECRET: &str = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";

impl BedrockServer {
    async fn start(python: &PathBuf) -> Self {
        let script = format!(
            "{}/../tollgate-providers/tests/bedrock_server.py",
            env!("CARGO_MANIFEST_DIR")
        );
        let args = [
            script.as_str(),
            "--access-key",
            AWS_KEY,
            "--secret",
            AWS_SECRET,
        ];
        let (child, line) = spawn_server(python, &args).await;
        let port = line.strip_prefix("PORT ").expect("PORT <n>");
        Self {
            url: format!("http://127.0.0.1:{port}"),
            _child: child,
        }
    }

    /// Queues the answers to the next calls.
    async fn script(&self, answers: &[Value]) {
        for answer in answers {
            let status = client()
                .post(format!("{}/_script", self.url))
                .json(answer)
                .send()
                .await
                .unwrap()
                .status();
            assert!(status.is_success(), "{status}");
        }
    }
}

/// Converse's tool use, whole and streamed, with 800 of 1,000 prompt tokens read from the cache
/// (Converse counts `inputTokens` without them).
/// <https://docs.aws.amazon.com/bedrock/latest/APIReference/API_runtime_Converse.html>
fn bedrock_tool_use() -> [Value; 2] {
    let usage = json!({ "inputTokens": 200, "outputTokens": 20, "totalTokens": 1020,
                        "cacheReadInputTokens": 800, "cacheWriteInputTokens": 0 });
    let whole = json!({ "status": 200, "json": {
        "output": { "message": { "role": "assistant", "content": [
            { "toolUse": { "toolUseId": "tooluse_1", "name": "get_weather", "input": { "city": "Paris" } } } ] } },
        "stopReason": "tool_use", "usage": usage, "metrics": { "latencyMs": 12 } } });
    let streamed = json!({ "status": 200, "events": [
        ["messageStart", { "role": "assistant" }],
        ["contentBlockStart", { "contentBlockIndex": 0, "start": { "toolUse": { "toolUseId": "tooluse_1", "name": "get_weather" } } }],
        ["contentBlockDelta", { "contentBlockIndex": 0, "delta": { "toolUse": { "input": "{\"city\": " } } }],
        ["contentBlockDelta", { "contentBlockIndex": 0, "delta": { "toolUse": { "input": "\"Paris\"}" } } }],
        ["contentBlockStop", { "contentBlockIndex": 0 }],
        ["messageStop", { "stopReason": "tool_use" }],
        ["metadata", { "usage": usage, "metrics": { "latencyMs": 12 } }] ] });
    [whole, streamed]
}

/// The configuration: each provider's role falls back to simulated roles, whose models say
/// where a call went.
fn config(servers: &TestServers, bedrock: &BedrockServer, key_file: &str) -> String {
    let fallbacks = "context_window_fallbacks: [long], content_policy_fallbacks: [lenient]";
    format!(
        r#"
providers:
  azure: {{ kind: azure, base_url: "{url}", api_key_env: AZURE_TEST_KEY, deployments: {{ gpt-4o: gpt-4o-prod }}, timeout: 10s }}
  gemini: {{ kind: gemini, base_url: "{url}", api_key_env: GEMINI_TEST_KEY, timeout: 10s }}
  vertex: {{ kind: vertex, base_url: "{url}", project: test-project, location: us-east5, credentials_file: "{key_file}", timeout: 10s }}
  bedrock: {{ kind: bedrock, base_url: "{bedrock}", region: us-east-1, timeout: 10s }}
  groq: {{ kind: openai, preset: groq, base_url: "{url}/groq/openai/v1", api_key_env: GROQ_TEST_KEY, timeout: 10s }}
  sim: {{ kind: simulated }}
roles:
  default: {{ provider: sim, model: sim-default }}
  long: {{ provider: sim, model: sim-long-context }}
  lenient: {{ provider: sim, model: sim-lenient }}
  azure: {{ provider: azure, model: gpt-4o, {fallbacks} }}
  gemini: {{ provider: gemini, model: gemini-2.5-flash, {fallbacks} }}
  vertex: {{ provider: vertex, model: gemini-2.5-flash, {fallbacks} }}
  vertex_claude: {{ provider: vertex, model: "claude-sonnet-4-5@20250929", {fallbacks} }}
  bedrock: {{ provider: bedrock, model: "anthropic.claude-sonnet-4-5-20250929-v1:0", {fallbacks} }}
  groq: {{ provider: groq, model: openai/gpt-oss-120b, {fallbacks} }}
pricing:
  sim-default: {{ input: "1", output: "1" }}
  sim-long-context: {{ input: "1", output: "1" }}
  sim-lenient: {{ input: "1", output: "1" }}
retry: {{ max_retries: 0 }}
keys:
  alice: {{ hash: "{alice}", tenant: acme }}
"#,
        url = servers.url,
        bedrock = bedrock.url,
        alice = tollgate_gateway::hash_key(ALICE),
    )
}

/// A copy of the providers crate's test service-account key, its `token_uri` the test servers'.
fn key_file(servers: &TestServers) -> String {
    let fixture = format!(
        "{}/../tollgate-providers/tests/fixtures/vertex-service-account.json",
        env!("CARGO_MANIFEST_DIR")
    );
    let mut account: Value =
        serde_json::from_str(&std::fs::read_to_string(fixture).unwrap()).unwrap();
    account["token_uri"] = json!(format!("{}/token", servers.url));
    let path = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("vertex-key-{}.json", std::process::id()));
    std::fs::write(&path, account.to_string()).unwrap();
    path.display().to_string()
}

/// The sum of a counter's series for `provider` and `model`, from the gateway's `/metrics`.
fn counter(metrics: &str, name: &str, provider: &str, model: &str) -> f64 {
    let labels = [
        format!("gen_ai_provider_name=\"{provider}\""),
        format!("gen_ai_request_model=\"{model}\""),
    ];
    metrics
        .lines()
        .filter(|line| line.starts_with(&format!("{name}{{")))
        .filter(|line| labels.iter().all(|label| line.contains(label.as_str())))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Which model answered a chat call to `role` saying `text`.
async fn answered_by(gateway: &GatewayProcess, role: &str, text: &str) -> String {
    let body = json!({ "model": role, "messages": [{ "role": "user", "content": text }] });
    let response = chat(gateway, ALICE, &body).await;
    assert_eq!(response.status(), 200, "{role}: {text}");
    let answer: Value = response.json().await.unwrap();
    answer["model"].as_str().unwrap().to_owned()
}

/// Runs the official client of `door` against `role`; panics with what it said if it fails.
async fn through(python: &PathBuf, gateway: &GatewayProcess, role: &str, door: &str) {
    let script = format!("{}/tests/clients/providers.py", env!("CARGO_MANIFEST_DIR"));
    let out = tokio::process::Command::new(python)
        .args([script.as_str(), role, door])
        .env("TOLLGATE_URL", &gateway.url)
        .env("TOLLGATE_KEY", ALICE)
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success() && String::from_utf8_lossy(&out.stdout).trim() == "ok",
        "{role} through the {door} client:\n{}\n{}\ngateway logs:\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        gateway.logs()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn each_provider_serves_both_official_clients_tool_calls_and_bills_its_cache_reads() {
    let Some(python) = python() else { return };
    let servers = TestServers::start(&python).await;
    let bedrock = BedrockServer::start(&python).await;
    let gateway = GatewayProcess::start_in(
        &config(&servers, &bedrock, &key_file(&servers)),
        &[],
        &[
            ("AZURE_TEST_KEY", "azure-test-key"),
            ("GEMINI_TEST_KEY", "gemini-test-key"),
            ("GROQ_TEST_KEY", "groq-test-key"),
            ("AWS_ACCESS_KEY_ID", AWS_KEY),
            ("AWS_SECRET_ACCESS_KEY", AWS_SECRET),
        ],
    )
    .await;
    let catalog = PriceCatalog::shipped();
    // (role, provider, the catalog's cloud for it, the model billed)
    let roles = [
        ("azure", "azure", "azure", "gpt-4o"),
        ("gemini", "gemini", "", "gemini-2.5-flash"),
        ("vertex", "vertex", "vertex", "gemini-2.5-flash"),
        (
            "vertex_claude",
            "vertex",
            "vertex",
            "claude-sonnet-4-5@20250929",
        ),
        (
            "bedrock",
            "bedrock",
            "bedrock",
            "anthropic.claude-sonnet-4-5-20250929-v1:0",
        ),
        ("groq", "groq", "", "openai/gpt-oss-120b"),
    ];
    for (role, provider, cloud, model) in roles {
        for door in ["openai", "anthropic"] {
            if provider == "bedrock" {
                bedrock.script(&bedrock_tool_use()).await;
            }
            through(&python, &gateway, role, door).await;
        }
        // Four calls, each 1,000 prompt tokens (800 from the cache) and 20 answer tokens, at the
        // catalog's price for this cloud, its cached rate for the cache reads.
        let price = *catalog
            .table([(provider, cloud)])
            .get_for(Some(provider), model)
            .unwrap_or_else(|| panic!("the catalog prices {model}"));
        assert!(price.cached_input_per_mtok.is_some(), "{model}");
        let per_call = price.cost(Usage::new(1_000, 20).with_cached_input(800));
        assert!(per_call < price.cost(Usage::new(1_000, 20)));
        let metrics = scrape(&gateway).await;
        assert_eq!(
            counter(&metrics, "tollgate_cost_microdollars", provider, model),
            4.0 * per_call.0 as f64,
            "{role}: {metrics}"
        );

        // Refusals move by their kind: too long to the long-context role, filtered to the
        // lenient one.
        if provider == "bedrock" {
            bedrock
                .script(&[
                    json!({ "status": 400, "headers": { "x-amzn-ErrorType": "ValidationException" },
                            "json": { "message": "Input is too long for requested model." } }),
                    // https://docs.aws.amazon.com/bedrock/latest/userguide/guardrails-use-converse-api.html
                    json!({ "status": 200, "json": {
                        "output": { "message": { "role": "assistant", "content": [ { "text": "Sorry, the model cannot answer this question." } ] } },
                        "stopReason": "guardrail_intervened",
                        "usage": { "inputTokens": 10, "outputTokens": 9, "totalTokens": 19 } } }),
                ])
                .await;
        }
        assert_eq!(
            answered_by(&gateway, role, "TOO LONG").await,
            "sim-long-context",
            "{role}"
        );
        assert_eq!(
            answered_by(&gateway, role, "FILTER ME").await,
            "sim-lenient",
            "{role}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_model_with_no_price_is_warned_about_at_start_and_counted_on_each_call() {
    let yaml = format!(
        r#"
providers:
  sim: {{ kind: simulated }}
roles:
  default: {{ provider: sim, model: my-finetune }}
  priced: {{ provider: sim, model: gpt-4o-mini }}
retry: {{ max_retries: 0 }}
keys:
  alice: {{ hash: "{alice}", tenant: acme }}
"#,
        alice = tollgate_gateway::hash_key(ALICE),
    );
    let gateway = GatewayProcess::start(&yaml).await;
    let logs = gateway.logs();
    let warnings: Vec<&str> = logs
        .lines()
        .filter(|line| line.contains("no price for this model"))
        .collect();
    assert_eq!(warnings.len(), 1, "{logs}");
    assert!(warnings[0].contains("my-finetune"), "{logs}");
    for _ in 0..3 {
        assert_eq!(answered_by(&gateway, "default", "hi").await, "my-finetune");
    }
    answered_by(&gateway, "priced", "hi").await;
    let metrics = scrape(&gateway).await;
    assert_eq!(
        counter(
            &metrics,
            "tollgate_cost_unpriced_calls",
            "sim",
            "my-finetune"
        ),
        3.0,
        "{metrics}"
    );
    assert_eq!(
        counter(
            &metrics,
            "tollgate_cost_unpriced_calls",
            "sim",
            "gpt-4o-mini"
        ),
        0.0
    );
}
