//! `POST /v1/messages/count_tokens` through the real gateway: passed to an Anthropic provider
//! with the provider's key and the caller's version header, its answer returned as it came; for
//! an OpenAI-compatible provider, estimated (within 10 % of what a real tokenizer counts) and
//! marked as an estimate.

mod support;

use std::sync::{Arc, Mutex};

use axum::{extract::Request, response::Response};
use http::HeaderMap;
use serde_json::{Value, json};
use support::*;

const ANTHROPIC_KEY: &str = "sk-ant-upstream";

/// A few hundred words of English prose.
const PROSE: &str = "The old lighthouse keeper kept a careful log of every ship that passed the \
headland, writing in a small hand by the light of the lamp he tended through the night. He noted \
the hour, the direction of the wind, the state of the sea and, when he could make it out through \
his brass telescope, the name painted on the bow. Most nights were quiet. A fishing boat would \
slip out before dawn, its engine coughing against the swell, and a freighter might cross the \
horizon far to the west, lit like a small town drifting on the water. In winter the storms came \
in from the Atlantic without warning, and then the keeper climbed the spiral stairs every hour to \
wipe the salt from the great lens and check that the clockwork turned the beam at its proper \
pace. He had learned the trade from his father, who had learned it from his own, and the log \
books of all three men filled a shelf in the kitchen below. Visitors sometimes asked whether he \
was lonely. He would smile and point to the sea, which was never the same two days running, and \
to the birds that nested in the cliffs each spring, and to the ships whose captains flashed their \
lights in greeting as they rounded the point. When the authorities finally automated the light, \
they offered him a cottage in the village and a modest pension. He accepted the pension but \
refused the cottage, and for years afterwards he walked out along the headland every evening to \
watch the beam sweep across the water, as if to make sure the machine was doing its job as well \
as he had done it. The village children called him the captain, although he had never been to \
sea, and he let them believe it, telling stories of wrecks and rescues that grew a little longer \
every time he told them.";

/// What `o200k_base` (OpenAI's tokenizer for the gpt-4o family) counts for [`PROSE`] and the tool
/// schema of [`request`] serialized compactly: counted once with the `tiktoken-rs` crate
/// (`o200k_base().encode_ordinary(PROSE).len()` plus the same for the schema's JSON), and
/// written here.
const TRUTH: u64 = TRUTH_PROSE + TRUTH_TOOL;
const TRUTH_PROSE: u64 = 360;
const TRUTH_TOOL: u64 = 90;

fn tool() -> Value {
    json!({
        "name": "log_ship",
        "description": "Record a ship seen from the lighthouse in the keeper's log book.",
        "input_schema": {
            "type": "object",
            "properties": {
                "name": { "type": "string", "description": "The name painted on the bow" },
                "heading": { "type": "string", "enum": ["north", "south", "east", "west"] },
                "seen_at": { "type": "string", "description": "The hour, as HH:MM" }
            },
            "required": ["name", "seen_at"]
        }
    })
}

fn request(model: &str) -> Value {
    json!({
        "model": model,
        "messages": [{ "role": "user", "content": PROSE }],
        "tools": [tool()],
    })
}

async fn count(gateway: &GatewayProcess, body: &Value) -> reqwest::Response {
    client()
        .post(format!("{}/v1/messages/count_tokens", gateway.url))
        .header("x-api-key", ALICE)
        .header("anthropic-version", "2023-06-01")
        .json(body)
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn anthropic_counts_are_passed_through_and_others_estimated() {
    let seen: Arc<Mutex<Vec<(HeaderMap, Value)>>> = Arc::default();
    let kept = seen.clone();
    let app = axum::Router::new().fallback(move |request: Request| {
        let kept = kept.clone();
        async move {
            let (parts, body) = request.into_parts();
            let body = axum::body::to_bytes(body, usize::MAX).await.unwrap();
            assert_eq!(parts.uri.path(), "/v1/messages/count_tokens");
            let asked: Value = serde_json::from_slice(&body).unwrap();
            let refused = asked["model"] == "claude-refused";
            kept.lock().unwrap().push((parts.headers, asked));
            if refused {
                // The provider refusing its own key: its words name the key.
                return Response::builder()
                    .status(401)
                    .header("content-type", "application/json")
                    .body(axum::body::Body::from(
                        r#"{"type":"error","error":{"type":"authentication_error","message":"invalid x-api-key sk-ant-upstream"}}"#,
                    ))
                    .unwrap();
            }
            Response::builder()
                .header("content-type", "application/json")
                .body(axum::body::Body::from(r#"{"input_tokens":1234}"#))
                .unwrap()
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let anthropic = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let openai = Upstream::start().await;
    let yaml = format!(
        r#"
providers:
  claude: {{ kind: anthropic, base_url: "{anthropic}", api_key_env: TOLLGATE_TEST_ANTHROPIC_KEY }}
  up: {{ kind: openai, base_url: "{openai}" }}
roles:
  default: {{ provider: claude, model: claude-sonnet-4-5 }}
  refused: {{ provider: claude, model: claude-refused }}
  local: {{ provider: up, model: up-model }}
keys:
  alice: {{ hash: "{alice}", tenant: acme }}
"#,
        openai = openai.base_url(),
        alice = tollgate_gateway::hash_key(ALICE),
    );
    let gateway = GatewayProcess::start_in(
        &yaml,
        &[],
        &[("TOLLGATE_TEST_ANTHROPIC_KEY", ANTHROPIC_KEY)],
    )
    .await;

    let passed = count(&gateway, &request("default")).await;
    assert_eq!(passed.status(), 200, "{:?}", passed.text().await);
    assert!(!passed.headers().contains_key("x-tollgate-estimate"));
    assert_eq!(passed.text().await.unwrap(), r#"{"input_tokens":1234}"#);
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 1);
    let (headers, body) = &seen[0];
    assert_eq!(headers["x-api-key"], ANTHROPIC_KEY);
    assert_eq!(headers["anthropic-version"], "2023-06-01");
    assert_eq!(
        *body,
        request("claude-sonnet-4-5"),
        "the role's model, the rest as sent"
    );

    let estimated = count(&gateway, &request("local")).await;
    assert_eq!(estimated.status(), 200);
    assert_eq!(estimated.headers()["x-tollgate-estimate"], "true");
    let tokens = estimated.json::<Value>().await.unwrap()["input_tokens"]
        .as_u64()
        .unwrap();
    // The message's and the tool's framing are the provider's too: within a tenth either way.
    let off = (tokens as f64 - TRUTH as f64).abs() / TRUTH as f64;
    assert!(off <= 0.10, "estimated {tokens}, o200k_base counts {TRUTH}");
    assert_eq!(openai.calls(), 0, "an estimate asks no upstream");

    let stranger = client()
        .post(format!("{}/v1/messages/count_tokens", gateway.url))
        .header("x-api-key", "tg-nobody")
        .json(&request("default"))
        .send()
        .await
        .unwrap();
    assert_eq!(stranger.status(), 401);

    // The provider refusing its own key: the caller gets the gateway's words, not its.
    let refused = count(&gateway, &request("refused")).await;
    assert_eq!(refused.status(), 502);
    let said = refused.text().await.unwrap();
    assert!(
        !said.contains(ANTHROPIC_KEY) && !said.contains("x-api-key"),
        "{said}"
    );
}
