//! `POST /v1/responses` through the real binary, as the official `openai` client and the OpenAI
//! Agents SDK call it: passed through to a server that serves the Responses API, translated for
//! an Anthropic-shaped one, with the same typed events and final Response either way; stored
//! responses continued (the whole history reaching a provider that keeps no state), read and
//! deleted by their key alone.
//!
//! The clients come from `clients/requirements.txt` (see `support::python`).

mod support;

use std::{
    path::{Path, PathBuf},
    time::Duration,
};

use serde_json::{Value, json};
use support::{responses::*, *};

/// How long anything the tests wait on may take, on a busy machine.
const PATIENCE: Duration = Duration::from_secs(30);

/// A folder of its own for a test's files.
fn folder(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("responses-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The gateway's configuration: its `default` role on `provider` (`openai`, a server of the
/// Responses API at `openai_url`, or `claude`, an Anthropic-shaped one at `claude_url`), the
/// keys `alice` and `bob` of one tenant, and `more` (a `database` section, a call log).
fn yaml(provider: &str, openai_url: &str, claude_url: &str, more: &str) -> String {
    let model = if provider == "openai" {
        "gpt-4.1"
    } else {
        "claude-sonnet-4-5"
    };
    format!(
        r#"
providers:
  openai: {{ kind: openai, base_url: "{openai_url}", responses_api: true, timeout: 20s }}
  claude: {{ kind: anthropic, base_url: "{claude_url}", api_key_env: TOLLGATE_TEST_ANTHROPIC_KEY, timeout: 20s }}
roles:
  default: {{ provider: {provider}, model: {model} }}
retry: {{ max_retries: 0 }}
circuit_breaker: false
keys:
  alice: {{ hash: "{alice}", tenant: acme }}
  bob: {{ hash: "{bob}", tenant: acme }}
{more}
"#,
        alice = tollgate_gateway::hash_key(ALICE),
        bob = tollgate_gateway::hash_key(BOB),
    )
}

/// A `database` section on a SQLite file in `dir`.
fn database(dir: &Path) -> String {
    format!(
        "database: {{ url: \"sqlite://{}\" }}\n",
        dir.join("tollgate.db").display()
    )
}

async fn start(yaml: &str) -> GatewayProcess {
    GatewayProcess::start_in(yaml, &[], &[("TOLLGATE_TEST_ANTHROPIC_KEY", "sk-ant-test")]).await
}

/// Runs `clients/<script>` with `scenario` as `key`, and reads the JSON line it printed.
async fn run_client(
    python: &Path,
    gateway: &GatewayProcess,
    script: &str,
    key: &str,
    scenario: &[&str],
) -> Value {
    let stdout = run_scenario_as(python, gateway, script, key, scenario).await;
    serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("{e}: {stdout}"))
}

async fn responses(python: &Path, gateway: &GatewayProcess, key: &str, scenario: &[&str]) -> Value {
    run_client(python, gateway, "responses.py", key, scenario).await
}

/// The typed events OpenAI streams for a text answer, in order.
const TEXT_EVENTS: [&str; 10] = [
    "response.created",
    "response.in_progress",
    "response.output_item.added",
    "response.content_part.added",
    "response.output_text.delta",
    "response.output_text.delta",
    "response.output_text.done",
    "response.content_part.done",
    "response.output_item.done",
    "response.completed",
];

/// The typed events OpenAI streams for a function call, in order.
const CALL_EVENTS: [&str; 8] = [
    "response.created",
    "response.in_progress",
    "response.output_item.added",
    "response.function_call_arguments.delta",
    "response.function_call_arguments.delta",
    "response.function_call_arguments.done",
    "response.output_item.done",
    "response.completed",
];

fn text_shape(text: &str) -> Value {
    json!({
        "object": "response",
        "id_prefix": "resp_",
        "status": "completed",
        "output": [{
            "type": "message", "role": "assistant", "status": "completed",
            "content": [{ "type": "output_text", "text": text }]
        }],
        "output_text": text,
        "usage": { "input_tokens": 36, "output_tokens": 12, "total_tokens": 48 }
    })
}

fn call_shape() -> Value {
    json!({
        "object": "response",
        "id_prefix": "resp_",
        "status": "completed",
        "output": [{
            "type": "function_call", "name": "get_weather", "arguments": { "city": "Paris" },
            "status": "completed", "call_id": true
        }],
        "output_text": "",
        "usage": { "input_tokens": 36, "output_tokens": 12, "total_tokens": 48 }
    })
}

/// Whether `id` is one the gateway made: `resp_` and 32 hex digits.
fn made_here(id: &Value) -> bool {
    let id = id.as_str().unwrap();
    id.len() == 37
        && id.starts_with("resp_")
        && id[5..]
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

#[tokio::test(flavor = "multi_thread")]
async fn the_openai_client_gets_the_same_responses_and_events_passed_through_and_translated() {
    let Some(python) = python() else { return };
    let openai = ResponsesUpstream::start().await;
    let claude = AnthropicUpstream::start().await;
    let dir = folder("same");
    let (openai_url, claude_url) = (openai.base_url(), claude.base_url());
    let passed = start(&yaml("openai", &openai_url, &claude_url, &database(&dir))).await;
    let translated = start(&yaml("claude", &openai_url, &claude_url, "")).await;

    openai.push(ResponsesReply::Json(openai_text(
        "resp_up_text",
        "Hello there!",
    )));
    openai.push(ResponsesReply::Events(openai_text_events(
        "resp_up_stream",
        &["Hello", " there!"],
    )));
    openai.push(ResponsesReply::Json(openai_call(
        "resp_up_call",
        r#"{"city":"Paris"}"#,
    )));
    openai.push(ResponsesReply::Events(openai_call_events(
        "resp_up_call_stream",
        &[r#"{"city":"#, r#""Paris"}"#],
    )));
    claude.push(AnthropicReply::Message(claude_text("Hello there!")));
    claude.push(AnthropicReply::Events(claude_text_events(&[
        "Hello", " there!",
    ])));
    claude.push(AnthropicReply::Message(claude_call(
        json!({"city": "Paris"}),
    )));
    claude.push(AnthropicReply::Events(claude_call_events(&[
        r#"{"city":"#,
        r#""Paris"}"#,
    ])));

    let mut runs = Vec::new();
    for gateway in [&passed, &translated] {
        let mut said = Vec::new();
        for scenario in ["create_text", "stream_text", "create_call", "stream_call"] {
            said.push(responses(&python, gateway, ALICE, &[scenario]).await);
        }
        runs.push(said);
    }
    let (through, across) = (&runs[0], &runs[1]);

    // Passed through: the upstream's own answers, under its ids.
    assert_eq!(through[0]["id"], "resp_up_text");
    assert_eq!(through[1]["id"], "resp_up_stream");
    assert_eq!(through[2]["id"], "resp_up_call");
    assert_eq!(through[3]["id"], "resp_up_call_stream");
    // Translated: ids made by the gateway.
    for said in across {
        assert!(made_here(&said["id"]), "{said}");
    }
    for said in [through, across] {
        assert_eq!(said[0]["shape"], text_shape("Hello there!"));
        assert_eq!(said[1]["shape"], text_shape("Hello there!"));
        assert_eq!(said[1]["events"], json!(TEXT_EVENTS));
        assert_eq!(said[2]["shape"], call_shape());
        assert_eq!(said[3]["shape"], call_shape());
        assert_eq!(said[3]["events"], json!(CALL_EVENTS));
    }

    // The Responses server got each call as the client wrote it, but for the model.
    let sent = openai.bodies();
    assert_eq!(sent.len(), 4);
    assert_eq!(sent[0]["model"], "gpt-4.1");
    assert_eq!(sent[0]["input"], "Say hello.");
    assert_eq!(sent[1]["stream"], true);
    assert_eq!(sent[2]["tools"][0]["name"], "get_weather");
    assert_eq!(sent[2]["input"], "What is the weather in Paris?");
    // The Anthropic-shaped one got Messages calls: the tool as Anthropic takes it.
    let received = claude.received();
    assert_eq!(received.len(), 4);
    let call: Value = serde_json::from_slice(&received[2].body).unwrap();
    assert_eq!(call["model"], "claude-sonnet-4-5");
    assert_eq!(call["tools"][0]["name"], "get_weather");
    assert_eq!(
        call["tools"][0]["input_schema"]["required"],
        json!(["city"])
    );
    let streamed: Value = serde_json::from_slice(&received[1].body).unwrap();
    assert_eq!(streamed["stream"], true);

    // A passed-through answer is stored as it came, to the byte; a stream's final object too.
    let stored = get(&passed, "/v1/responses/resp_up_text", Some(ALICE)).await;
    assert_eq!(stored.status(), 200);
    assert_eq!(
        stored.text().await.unwrap(),
        openai_text("resp_up_text", "Hello there!")
    );
    let stored = get_json(&passed, "/v1/responses/resp_up_call_stream", Some(ALICE)).await;
    assert_eq!(stored["status"], "completed");
    assert_eq!(stored["output"][0]["arguments"], r#"{"city":"Paris"}"#);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stored_response_continues_on_anthropic_and_is_its_keys_alone() {
    let Some(python) = python() else { return };
    let openai = ResponsesUpstream::start().await;
    let claude = AnthropicUpstream::start().await;
    let dir = folder("continue");
    let gateway = start(&yaml(
        "claude",
        &openai.base_url(),
        &claude.base_url(),
        &database(&dir),
    ))
    .await;

    claude.push(AnthropicReply::Message(claude_text("Hello, Ada.")));
    let first = responses(&python, &gateway, ALICE, &["create_text"]).await;
    let first_id = first["id"].as_str().unwrap().to_owned();

    // Continued: the Anthropic server, which keeps nothing, gets the whole conversation.
    claude.push(AnthropicReply::Message(claude_text("Your name is Ada.")));
    let next = responses(&python, &gateway, ALICE, &["continued", &first_id]).await;
    assert_eq!(next["shape"], text_shape("Your name is Ada."));
    assert_eq!(next["retrieved"], next["shape"]);
    assert_eq!(next["same_id"], true);
    let received = claude.received();
    assert_eq!(received.len(), 2);
    let sent: Value = serde_json::from_slice(&received[1].body).unwrap();
    let said: Vec<(String, String)> = sent["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|message| {
            let text = match &message["content"] {
                Value::String(text) => text.clone(),
                blocks => blocks
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|block| block["text"].as_str().unwrap())
                    .collect(),
            };
            (message["role"].as_str().unwrap().to_owned(), text)
        })
        .collect();
    assert_eq!(
        said,
        [
            ("user".to_owned(), "Say hello.".to_owned()),
            ("assistant".to_owned(), "Hello, Ada.".to_owned()),
            ("user".to_owned(), "And what is my name?".to_owned()),
        ]
    );

    // Another key of the same tenant: not found, reading, continuing or deleting it.
    let theirs = responses(&python, &gateway, BOB, &["not_theirs", &first_id]).await;
    assert_eq!(theirs["read"]["status"], 404);
    assert_eq!(theirs["continued"]["status"], 404);
    assert_eq!(theirs["continued"]["param"], "previous_response_id");
    assert_eq!(theirs["deleted"]["status"], 404);
    assert_eq!(
        claude.received().len(),
        2,
        "a refused call reaches no upstream"
    );

    // `store: false` keeps nothing.
    claude.push(AnthropicReply::Message(claude_text("Hello.")));
    let unstored = responses(&python, &gateway, ALICE, &["unstored"]).await;
    assert_eq!(unstored["read"]["status"], 404);
    assert_eq!(unstored["continued"]["status"], 404);
    assert_eq!(unstored["continued"]["param"], "previous_response_id");

    // A streamed answer is stored once its stream completes.
    claude.push(AnthropicReply::Events(claude_text_events(&["Hi", "!"])));
    let streamed = responses(&python, &gateway, ALICE, &["stream_text"]).await;
    let path = format!("/v1/responses/{}", streamed["id"].as_str().unwrap());
    let stored = get_json(&gateway, &path, Some(ALICE)).await;
    assert_eq!(stored["id"], streamed["id"]);
    assert_eq!(stored["output"][0]["content"][0]["text"], "Hi!");

    // Read and deleted by its key: OpenAI's shapes.
    let gone = client()
        .delete(format!("{}{path}", gateway.url))
        .bearer_auth(ALICE)
        .send()
        .await
        .unwrap();
    assert_eq!(gone.status(), 200);
    assert_eq!(
        gone.json::<Value>().await.unwrap(),
        json!({ "id": streamed["id"], "object": "response.deleted", "deleted": true })
    );
    let done = responses(&python, &gateway, ALICE, &["read_and_delete", &first_id]).await;
    assert_eq!(done["id"], first_id.as_str());
    assert_eq!(done["shape"], text_shape("Hello, Ada."));
    assert_eq!(done["read_again"]["status"], 404);
    assert_eq!(done["deleted_again"]["status"], 404);
    let anonymous = get(&gateway, &path, None).await;
    assert_eq!(anonymous.status(), 401);

    // A built-in tool only OpenAI runs is refused by name, before anything is sent.
    let hosted = responses(&python, &gateway, ALICE, &["hosted_tool"]).await;
    assert_eq!(hosted["refused"]["status"], 400, "{hosted}");
    let message = hosted["refused"]["message"].as_str().unwrap();
    assert!(message.contains("web_search_preview"), "{message}");
    assert_eq!(claude.received().len(), 4);
}

#[tokio::test(flavor = "multi_thread")]
async fn without_a_database_previous_response_id_is_refused_naming_what_is_missing() {
    let openai = ResponsesUpstream::start().await;
    let claude = AnthropicUpstream::start().await;
    let gateway = start(&yaml("claude", &openai.base_url(), &claude.base_url(), "")).await;
    let answer = client()
        .post(format!("{}/v1/responses", gateway.url))
        .bearer_auth(ALICE)
        .json(&json!({ "model": "default", "input": "hi", "previous_response_id": "resp_1" }))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 400);
    let error: Value = answer.json().await.unwrap();
    assert_eq!(error["error"]["param"], "previous_response_id");
    let message = error["error"]["message"].as_str().unwrap();
    assert!(message.contains("`database` section"), "{message}");
    assert!(claude.received().is_empty());
    // Nothing is stored, so nothing is found.
    let read = get(&gateway, "/v1/responses/resp_1", Some(ALICE)).await;
    assert_eq!(read.status(), 404);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_agent_calls_its_tool_through_the_gateway_and_the_call_log_shows_both_calls() {
    let Some(python) = python() else { return };
    let openai = ResponsesUpstream::start().await;
    let claude = AnthropicUpstream::start().await;
    let dir = folder("agent");
    let log = dir.join("calls.jsonl");
    let more = format!(
        "logs:\n  sinks:\n    - {{ kind: file, path: \"{}\" }}\n",
        log.display()
    );
    let gateway = start(&yaml(
        "claude",
        &openai.base_url(),
        &claude.base_url(),
        &more,
    ))
    .await;
    claude.push(AnthropicReply::Message(claude_call(
        json!({"city": "Paris"}),
    )));
    claude.push(AnthropicReply::Message(claude_text(
        "It is sunny and 22 C in Paris.",
    )));

    let ran = run_client(&python, &gateway, "agent_run.py", ALICE, &[]).await;
    assert_eq!(
        ran,
        json!({ "final": "It is sunny and 22 C in Paris.", "cities": ["Paris"] })
    );

    // The second call carried the tool's result back to the model.
    let received = claude.received();
    assert_eq!(received.len(), 2);
    let second: Value = serde_json::from_slice(&received[1].body).unwrap();
    let results: Vec<&Value> = second["messages"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|message| message["content"].as_array().into_iter().flatten())
        .filter(|block| block["type"] == "tool_result")
        .collect();
    assert_eq!(results.len(), 1, "{second}");
    assert_eq!(results[0]["tool_use_id"], "toolu_01A09q90qw90lq917835lq9");
    assert!(
        results[0].to_string().contains("Sunny and 22 C in Paris"),
        "{second}"
    );

    // One record per call, each answered, under alice.
    let records = || {
        std::fs::read_to_string(&log)
            .unwrap_or_default()
            .lines()
            .map(|line| serde_json::from_str::<Value>(line).unwrap())
            .collect::<Vec<_>>()
    };
    assert!(
        until(PATIENCE, || async { records().len() >= 2 }).await,
        "{}",
        gateway.logs()
    );
    let records = records();
    assert_eq!(records.len(), 2);
    for record in &records {
        assert_eq!(record["status"], 200, "{record}");
        assert_eq!(record["key_id"], "alice", "{record}");
        assert_eq!(record["provider"], "claude", "{record}");
        assert_eq!(record["usage"]["output_tokens"], 12, "{record}");
    }
}
