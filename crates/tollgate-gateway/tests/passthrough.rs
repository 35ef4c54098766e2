//! Same API in and out: the official `anthropic` client, through the gateway, to an
//! Anthropic-shaped server that records what it receives. The request arrives as the client
//! wrote it but for its model; the answer, whole or streamed, reaches the client as the server
//! wrote it; and its cache reads and writes are billed at their own rates. From the `openai`
//! client, cache marks on parts and tools reach the Anthropic server on the matching blocks.

mod support;

use base64::Engine as _;
use serde_json::{Value, json};
use support::*;

const ADMIN: &str = "tg-admin-key";

const MESSAGE: &str = r#"{"id":"msg_01XFDUDYJgAACzvnptvVoYEL","type":"message","role":"assistant","model":"claude-sonnet-4-5-20250929","content":[{"type":"redacted_thinking","data":"EmwKAhgBEgy3va3pzix/LafPsn4aDFIT2Xlxh0L5L8rLVyIwxtE3rAFBa8cr3qpP"},{"type":"text","text":"Blue.","citations":[{"type":"char_location","cited_text":"The sky is blue.","document_index":0,"document_title":"Sky","start_char_index":0,"end_char_index":16}]}],"stop_reason":"end_turn","stop_sequence":null,"usage":{"input_tokens":100,"cache_creation_input_tokens":1000,"cache_read_input_tokens":2000,"output_tokens":50}}"#;

const EVENTS: &str = concat!(
    "event: message_start\n",
    r#"data: {"type":"message_start","message":{"id":"msg_02","type":"message","role":"assistant","model":"claude-sonnet-4-5-20250929","content":[],"stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":100,"cache_creation_input_tokens":1000,"cache_read_input_tokens":2000,"output_tokens":1}}}"#,
    "\n\nevent: content_block_start\n",
    r#"data: {"type":"content_block_start","index":0,"content_block":{"type":"redacted_thinking","data":"EmwKAhgBEgy3va3pzix"}}"#,
    "\n\nevent: content_block_stop\n",
    r#"data: {"type":"content_block_stop","index":0}"#,
    "\n\nevent: ping\n",
    r#"data: {"type": "ping"}"#,
    "\n\nevent: content_block_start\n",
    r#"data: {"type":"content_block_start","index":1,"content_block":{"type":"text","text":"","citations":[]}}"#,
    "\n\nevent: content_block_delta\n",
    r#"data: {"type":"content_block_delta","index":1,"delta":{"type":"citations_delta","citation":{"type":"char_location","cited_text":"The sky is blue.","document_index":0,"document_title":"Sky","start_char_index":0,"end_char_index":16}}}"#,
    "\n\nevent: content_block_delta\n",
    r#"data: {"type":"content_block_delta","index":1,"delta":{"type":"text_delta","text":"Blue."}}"#,
    "\n\nevent: content_block_stop\n",
    r#"data: {"type":"content_block_stop","index":1}"#,
    "\n\nevent: message_delta\n",
    r#"data: {"type":"message_delta","delta":{"stop_reason":"end_turn","stop_sequence":null},"usage":{"output_tokens":50}}"#,
    "\n\nevent: message_stop\n",
    r#"data: {"type":"message_stop"}"#,
    "\n\n",
);

fn yaml(upstream: &AnthropicUpstream) -> String {
    format!(
        r#"
providers:
  claude: {{ kind: anthropic, base_url: "{url}", api_key_env: TOLLGATE_TEST_ANTHROPIC_KEY }}
roles:
  default: {{ provider: claude, model: claude-sonnet-4-5 }}
pricing:
  claude-sonnet-4-5: {{ input: "3.00", cached_input: "0.30", cache_write: "3.75", output: "15.00" }}
retry: {{ max_retries: 0 }}
keys:
  alice: {{ hash: "{alice}", tenant: acme }}
gateway: {{ admin_key_hash: "{admin}" }}
"#,
        url = upstream.base_url(),
        alice = tollgate_gateway::hash_key(ALICE),
        admin = tollgate_gateway::hash_key(ADMIN),
    )
}

async fn gateway(upstream: &AnthropicUpstream) -> GatewayProcess {
    GatewayProcess::start_in(
        &yaml(upstream),
        &[],
        &[("TOLLGATE_TEST_ANTHROPIC_KEY", "sk-ant-test")],
    )
    .await
}

/// What a scenario printed: each `name base64` line's bytes, by name.
fn printed(said: &str, name: &str) -> Vec<u8> {
    let line = said
        .lines()
        .find_map(|line| line.strip_prefix(&format!("{name} ")))
        .unwrap_or_else(|| panic!("no {name} in {said}"));
    base64::engine::general_purpose::STANDARD
        .decode(line.trim())
        .unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8(bytes.to_vec()).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_anthropic_client_reaches_an_anthropic_upstream_with_nothing_lost_either_way() {
    let Some(python) = python() else { return };
    let upstream = AnthropicUpstream::start().await;
    let gateway = gateway(&upstream).await;

    upstream.push(AnthropicReply::Message(MESSAGE.into()));
    let whole = run_scenario(&python, &gateway, "passthrough.py", "anthropic_message").await;
    upstream.push(AnthropicReply::Events(EVENTS.into()));
    let streamed = run_scenario(&python, &gateway, "passthrough.py", "anthropic_stream").await;

    let received = upstream.received();
    for (said, arrived) in [(&whole, &received[0]), (&streamed, &received[1])] {
        // The client's bytes, but for the model its role names: cache marks, the server tool,
        // the document and top_k included.
        let sent = text(&printed(said, "sent"));
        let expected = sent.replacen(r#""default""#, r#""claude-sonnet-4-5""#, 1);
        assert_ne!(sent, expected, "the model was named");
        assert_eq!(text(&arrived.body), expected);
        assert_eq!(
            arrived.headers["anthropic-beta"],
            "prompt-caching-2024-07-31,citations-2024-11-21"
        );
        // The client's API version, not the gateway's own default.
        let version = text(&printed(said, "version"));
        assert!(!version.is_empty());
        assert_eq!(arrived.headers["anthropic-version"], version.as_str());
        // The gateway's key for the upstream, never the caller's.
        assert_eq!(arrived.headers["x-api-key"], "sk-ant-test");
    }
    // The answer as the server wrote it, whole and streamed.
    assert_eq!(text(&printed(&whole, "got")), MESSAGE);
    assert_eq!(text(&printed(&streamed, "got")), EVENTS);

    // Billed at each kind of token's rate: 100 × $3 + 1,000 × $3.75 (written) + 2,000 × $0.30
    // (read) + 50 × $15, per million: $0.0054 a call.
    let data = get_json(&gateway, "/ui/data", Some(ADMIN)).await;
    let acme = &data["tenants"]["acme"];
    assert_eq!(acme["calls"], 2, "{data}");
    let spent = acme["spent_usd"].as_f64().unwrap();
    assert!((spent - 0.0108).abs() < 1e-9, "spent {spent}");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_openai_clients_cache_marks_reach_an_anthropic_upstream_on_their_blocks() {
    let Some(python) = python() else { return };
    let upstream = AnthropicUpstream::start().await;
    let gateway = gateway(&upstream).await;
    upstream.push(AnthropicReply::Message(
        json!({
            "id": "msg_03", "type": "message", "role": "assistant", "model": "claude-sonnet-4-5",
            "content": [{ "type": "text", "text": "Blue." }], "stop_reason": "end_turn",
            "usage": { "input_tokens": 10, "output_tokens": 2 }
        })
        .to_string(),
    ));
    run_scenario(&python, &gateway, "passthrough.py", "openai_cache_control").await;
    let body: Value = serde_json::from_slice(&upstream.received()[0].body).unwrap();
    let cached = json!({ "type": "ephemeral" });
    assert_eq!(
        body["system"],
        json!([{ "type": "text", "text": "A long, stable preamble.", "cache_control": cached }])
    );
    assert_eq!(
        body["messages"][0]["content"],
        json!([
            { "type": "text", "text": "A long document.", "cache_control": cached },
            { "type": "text", "text": "The question." }
        ])
    );
    assert_eq!(body["tools"][0]["name"], "lookup");
    assert_eq!(body["tools"][0]["cache_control"], cached);
}
