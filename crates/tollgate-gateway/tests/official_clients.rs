//! The official `openai`, `anthropic` and `prometheus-client` Python packages as the gateway's
//! clients: each scenario of `clients/scenarios.py` runs against the real binary, with the
//! upstream scripted here.
//!
//! The packages come from `clients/requirements.txt` (see `support::python`).

mod support;

use std::path::Path;

use serde_json::json;
use support::*;

/// Runs `scenario` against `gateway` as alice; panics with what the client said if it fails.
async fn run(python: &Path, gateway: &GatewayProcess, scenario: &str) {
    let said = run_scenario(python, gateway, "scenarios.py", scenario).await;
    assert_eq!(said.trim(), "ok", "{scenario}");
}

fn hello_stream() -> Reply {
    Reply::Stream {
        chunks: vec![
            chunk(json!({ "role": "assistant", "content": "Hello" }), None),
            chunk(json!({ "content": " world" }), None),
            chunk(json!({}), Some("stop")),
            usage_chunk(3, 2),
        ],
        done: true,
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_openai_client_chats_streams_calls_tools_and_embeds() {
    let Some(python) = python() else { return };
    let upstream = Upstream::start().await;
    let gateway = GatewayProcess::start(&config(&upstream, "")).await;
    run(&python, &gateway, "chat").await;

    upstream.push(hello_stream());
    run(&python, &gateway, "stream").await;

    let mut tools = answer("");
    tools["choices"][0]["message"] = json!({
        "role": "assistant", "content": null,
        "tool_calls": [{ "id": "call_1", "type": "function",
                         "function": { "name": "weather", "arguments": "{\"city\":\"Paris\"}" } }]
    });
    tools["choices"][0]["finish_reason"] = json!("tool_calls");
    upstream.push(Reply::Json(200, tools, vec![]));
    run(&python, &gateway, "tool_call").await;
    assert_eq!(
        upstream.bodies()[2]["tools"][0]["function"]["name"],
        "weather"
    );

    run(&python, &gateway, "embeddings").await;
    run(&python, &gateway, "unauthorized").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_openai_client_sees_a_rate_limit_and_waits_as_long_as_it_says() {
    let Some(python) = python() else { return };
    let upstream = Upstream::start().await;
    let yaml = config(&upstream, "").replace(
        "tenant: acme, models",
        "tenant: acme, limits: { tiers: [{ requests: 1, per: 2s }] }, models",
    );
    let gateway = GatewayProcess::start(&yaml).await;
    run(&python, &gateway, "rate_limited").await;
    assert_eq!(
        upstream.calls(),
        2,
        "the refused calls never reached the upstream"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_anthropic_client_gets_a_message_and_a_stream() {
    let Some(python) = python() else { return };
    let upstream = Upstream::start().await;
    let gateway = GatewayProcess::start(&config(&upstream, "")).await;
    run(&python, &gateway, "anthropic_message").await;
    upstream.push(hello_stream());
    run(&python, &gateway, "anthropic_stream").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn prometheus_clients_parser_reads_the_metrics() {
    let Some(python) = python() else { return };
    let upstream = Upstream::start().await;
    let gateway = GatewayProcess::start(&config(&upstream, "")).await;
    let status = chat(&gateway, ALICE, &ask("hi")).await.status();
    assert_eq!(status, 200);
    run(&python, &gateway, "metrics").await;
}
