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

impl TestServers {
    async fn start(python: &PathBuf) -> Self {
        let script = format!("{}/tests/clients/providers.py", env!("CARGO_MANIFEST_DIR"));
        let mut child = tokio::process::Command::new(python)
            .args([script.as_str(), "serve"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let line = tokio::time::timeout(std::time::Duration::from_secs(30), lines.next_line())
            .await
            .expect("the test servers start")
            .unwrap()
            .unwrap();
        let said: Value = serde_json::from_str(&line).unwrap();
        Self {
            url: said["url"].as_str().unwrap().to_owned(),
            _child: child,
        }
    }
}

/// The configuration: each provider's role falls back to simulated roles, whose models say
/// where a call went.
fn config(servers: &TestServers) -> String {
    format!(
        r#"
providers:
  azure: {{ kind: azure, base_url: "{url}", api_key_env: AZURE_TEST_KEY, deployments: {{ gpt-4o: gpt-4o-prod }}, timeout: 10s }}
  sim: {{ kind: simulated }}
roles:
  default: {{ provider: sim, model: sim-default }}
  long: {{ provider: sim, model: sim-long-context }}
  lenient: {{ provider: sim, model: sim-lenient }}
  azure: {{ provider: azure, model: gpt-4o, context_window_fallbacks: [long], content_policy_fallbacks: [lenient] }}
pricing:
  sim-default: {{ input: "1", output: "1" }}
  sim-long-context: {{ input: "1", output: "1" }}
  sim-lenient: {{ input: "1", output: "1" }}
retry: {{ max_retries: 0 }}
keys:
  alice: {{ hash: "{alice}", tenant: acme }}
"#,
        url = servers.url,
        alice = tollgate_gateway::hash_key(ALICE),
    )
}

/// The sum of a counter's series for `provider`, from the gateway's `/metrics`.
fn counter(metrics: &str, name: &str, provider: &str) -> f64 {
    let label = format!("gen_ai_provider_name=\"{provider}\"");
    metrics
        .lines()
        .filter(|line| line.starts_with(&format!("{name}{{")) && line.contains(&label))
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

#[tokio::test(flavor = "multi_thread")]
async fn each_provider_serves_both_official_clients_tool_calls_and_bills_its_cache_reads() {
    let Some(python) = python() else { return };
    let servers = TestServers::start(&python).await;
    let gateway = GatewayProcess::start_in(
        &config(&servers),
        &[],
        &[("AZURE_TEST_KEY", "azure-test-key")],
    )
    .await;
    let catalog = PriceCatalog::shipped();
    // (role = provider, the catalog's cloud, the model billed)
    for (provider, cloud, model) in [("azure", "azure", "gpt-4o")] {
        for door in ["openai", "anthropic"] {
            let script = format!("{}/tests/clients/providers.py", env!("CARGO_MANIFEST_DIR"));
            let out = tokio::process::Command::new(&python)
                .args([script.as_str(), provider, door])
                .env("TOLLGATE_URL", &gateway.url)
                .env("TOLLGATE_KEY", ALICE)
                .output()
                .await
                .unwrap();
            assert!(
                out.status.success() && String::from_utf8_lossy(&out.stdout).trim() == "ok",
                "{provider} through the {door} client:\n{}\n{}\ngateway logs:\n{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr),
                gateway.logs()
            );
        }
        // Four calls, each 1,000 prompt tokens (800 from the cache) and 20 answer tokens, at the
        // catalog's price for this cloud, its cached rate for the cache reads.
        let price = *catalog
            .table([(provider, cloud)])
            .get_for(Some(provider), model)
            .unwrap();
        assert!(price.cached_input_per_mtok.is_some(), "{model}");
        let per_call = price.cost(Usage::new(1_000, 20).with_cached_input(800));
        assert!(per_call < price.cost(Usage::new(1_000, 20)));
        let metrics = scrape(&gateway).await;
        assert_eq!(
            counter(&metrics, "tollgate_cost_microdollars", provider),
            4.0 * per_call.0 as f64,
            "{provider}: {metrics}"
        );

        // Refusals move by their kind: too long to the long-context role, filtered to the
        // lenient one.
        assert_eq!(
            answered_by(&gateway, provider, "TOO LONG").await,
            "sim-long-context"
        );
        assert_eq!(
            answered_by(&gateway, provider, "FILTER ME").await,
            "sim-lenient"
        );
    }
}
