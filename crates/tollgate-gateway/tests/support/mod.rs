//! What the gateway's black-box tests share: a scripted upstream, the real binary, and a
//! configuration pointing one at the other.

#![allow(dead_code, unused_imports, unreachable_pub)] // each test binary uses some

pub mod anthropic;
pub mod gateway;
pub mod python;
pub mod responses;
pub mod upstream;

use serde_json::Value;

pub use anthropic::{AnthropicReply, AnthropicUpstream};
pub use gateway::GatewayProcess;
pub use python::{python, run_scenario, run_scenario_as};
pub use responses::{ResponsesReply, ResponsesUpstream};
pub use upstream::{Reply, Upstream, answer, chunk, eventually, usage_chunk};

/// The keys the test configurations accept.
pub const ALICE: &str = "tg-alice-key";
pub const BOB: &str = "tg-bob-key";

/// A configuration with one OpenAI-compatible provider `up` at `upstream` (role `default`,
/// model `up-model`, $1 / $2 per million tokens), no retries, the keys `alice` (tenant acme,
/// every `up/*` model) and `bob` (tenant globex, the `default` role only), and `more` appended.
pub fn config(upstream: &Upstream, more: &str) -> String {
    format!(
        r#"
providers:
  up: {{ kind: openai, base_url: "{url}", timeout: 5s }}
roles:
  default: {{ provider: up, model: up-model }}
pricing:
  up-model: {{ input: "1.00", output: "2.00" }}
retry: {{ max_retries: 0 }}
keys:
  alice: {{ hash: "{alice}", tenant: acme, models: ["up/*"] }}
  bob: {{ hash: "{bob}", tenant: globex, roles: [default] }}
{more}
"#,
        url = upstream.base_url(),
        alice = tollgate_gateway::hash_key(ALICE),
        bob = tollgate_gateway::hash_key(BOB),
    )
}

/// A configuration whose `default` role (model `up-model`, $1 / $2 per million tokens) is served
/// by `upstreams`, each an OpenAI-compatible provider of the name given; `role` holds the role's
/// other keys (its `targets`, `strategy`, ...), one per line, and `more` is appended; the key
/// `alice` (tenant acme) may call it.
pub fn role_config(upstreams: &[(&str, &Upstream)], role: &str, more: &str) -> String {
    let providers: String = upstreams
        .iter()
        .map(|(name, upstream)| {
            format!(
                "  {name}: {{ kind: openai, base_url: \"{}\", timeout: 5s }}\n",
                upstream.base_url()
            )
        })
        .collect();
    let role: String = role.lines().map(|line| format!("    {line}\n")).collect();
    format!(
        r#"
providers:
{providers}roles:
  default:
    model: up-model
{role}pricing:
  up-model: {{ input: "1.00", output: "2.00" }}
keys:
  alice: {{ hash: "{alice}", tenant: acme }}
{more}
"#,
        alice = tollgate_gateway::hash_key(ALICE),
    )
}

/// A client with no retries of its own.
pub fn client() -> reqwest::Client {
    reqwest::Client::new()
}

/// Posts `body` to `/v1/chat/completions` with `key`.
pub async fn chat(gateway: &GatewayProcess, key: &str, body: &Value) -> reqwest::Response {
    client()
        .post(format!("{}/v1/chat/completions", gateway.url))
        .bearer_auth(key)
        .json(body)
        .send()
        .await
        .unwrap()
}

/// GETs `path` from the gateway, with `key` as a bearer token when given.
pub async fn get(gateway: &GatewayProcess, path: &str, key: Option<&str>) -> reqwest::Response {
    let mut request = client().get(format!("{}{path}", gateway.url));
    if let Some(key) = key {
        request = request.bearer_auth(key);
    }
    request.send().await.unwrap()
}

/// GETs `path` and reads its JSON.
pub async fn get_json(gateway: &GatewayProcess, path: &str, key: Option<&str>) -> Value {
    get(gateway, path, key).await.json().await.unwrap()
}

/// The gateway's `/metrics` text.
pub async fn scrape(gateway: &GatewayProcess) -> String {
    client()
        .get(format!("{}/metrics", gateway.url))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// A chat body asking the `default` role `text`.
pub fn ask(text: &str) -> Value {
    serde_json::json!({ "model": "default", "messages": [{ "role": "user", "content": text }] })
}

/// The `data:` payloads of an event-stream body, in order.
pub fn data_lines(body: &str) -> Vec<String> {
    body.lines()
        .filter_map(|line| line.strip_prefix("data: "))
        .map(str::to_owned)
        .collect()
}

/// Waits until `check` holds, trying again every 20 ms; whether it did within `limit`. For a
/// condition that needs an answer (an HTTP call, a database read); `eventually` is for one that
/// does not.
pub async fn until<F: std::future::Future<Output = bool>>(
    limit: std::time::Duration,
    mut check: impl FnMut() -> F,
) -> bool {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if check().await {
            return true;
        }
        if tokio::time::Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// Whether a chat call with `key` comes to be answered with `status` within `limit`.
pub async fn comes_to(
    gateway: &GatewayProcess,
    key: &str,
    status: u16,
    limit: std::time::Duration,
) -> bool {
    until(limit, || async {
        chat(gateway, key, &ask("hi")).await.status().as_u16() == status
    })
    .await
}
