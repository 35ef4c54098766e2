//! A whole cache, store included, from one serde document.

use tollgate_cache::{CacheConfig, CacheStore, MemoryStore, StoreKind};
use tollgate_core::{LlmRequest, Message, SimulatedProvider};
use tower::{Layer, ServiceExt};

fn config(json: &str) -> CacheConfig {
    serde_json::from_str(json).expect("parses")
}

fn ask(text: &str) -> LlmRequest {
    LlmRequest::new("sim", vec![Message::user(text)]).with_tenant("acme")
}

async fn served(cache: &tollgate_cache::CacheLayer, provider: &SimulatedProvider) -> String {
    let answer = cache
        .layer(provider.clone())
        .oneshot(ask("hello"))
        .await
        .unwrap();
    answer.headers["x-cache"].to_str().unwrap().to_owned()
}

#[tokio::test]
async fn a_file_store_from_config_keeps_answers_in_its_directory() {
    let dir = std::env::temp_dir().join(format!("tollgate-cache-config-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let config = config(&format!(
        r#"{{ "store": "file", "path": {:?}, "max_bytes": 1048576, "ttl": "10m" }}"#,
        dir.display().to_string()
    ));
    let cache = config.build().unwrap();
    let provider = SimulatedProvider::new();
    assert_eq!(served(&cache, &provider).await, "MISS");
    assert_eq!(served(&cache, &provider).await, "HIT");
    assert_eq!(provider.calls(), 1);
    let shards = std::fs::read_dir(&dir).unwrap().count();
    assert!(
        shards >= 1,
        "the answer was written under {}",
        dir.display()
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test]
async fn a_tiered_store_from_config_writes_through_to_the_shared_store() {
    let config = config(r#"{ "store": "tiered", "max_bytes": 1048576 }"#);
    assert!(config.store.is_shared());
    // Without the shared store it cannot be built, and says which field needs it.
    assert_eq!(config.build().unwrap_err().path(), "store");

    let shared = MemoryStore::new(1 << 20);
    let cache = config.build_with_shared(shared.clone()).unwrap();
    let provider = SimulatedProvider::new();
    assert_eq!(served(&cache, &provider).await, "MISS");
    assert_eq!(shared.stats().entries, 1);
    assert_eq!(served(&cache, &provider).await, "HIT");
    assert_eq!(provider.calls(), 1);
}

#[test]
fn store_mistakes_name_their_field_and_ttl_has_two_names() {
    assert_eq!(
        config(r#"{ "store": "file" }"#)
            .validate()
            .unwrap_err()
            .path(),
        "path"
    );
    assert_eq!(
        config(r#"{ "max_bytes": 0 }"#)
            .validate()
            .unwrap_err()
            .path(),
        "max_bytes"
    );
    assert_eq!(
        config(r#"{ "ttl": "0s" }"#).validate().unwrap_err().path(),
        "ttl"
    );
    assert_eq!(
        config(r#"{ "default_ttl": "5m" }"#),
        config(r#"{ "ttl": "5m" }"#)
    );
    assert_eq!(CacheConfig::default().store, StoreKind::Memory);
    assert!(serde_json::from_str::<CacheConfig>(r#"{ "stor": "memory" }"#).is_err());
}

/// Every field that changes the answer changes the key: tools, tool choice, response format,
/// several choices, and a tool turn's call id; the same request keys the same.
#[test]
fn tools_tool_choice_response_format_and_n_are_part_of_the_key() {
    use serde_json::json;
    use tollgate_cache::{Scope, cache_key};

    let base = json!({
        "model": "gpt-4o",
        "messages": [
            { "role": "user", "content": "Weather?" },
            { "role": "assistant", "content": null, "tool_calls": [
                { "id": "call_1", "type": "function", "function": { "name": "weather", "arguments": "{}" } } ] },
            { "role": "tool", "tool_call_id": "call_1", "content": "sunny" }
        ],
        "tools": [{ "type": "function", "function": { "name": "weather", "parameters": { "type": "object" } } }],
        "tool_choice": "auto",
        "response_format": { "type": "text" },
        "n": 1
    });
    let key = |value: &serde_json::Value| {
        let request: LlmRequest = serde_json::from_value(value.clone()).unwrap();
        cache_key(&request.with_tenant("acme"), Scope::Tenant, false)
    };
    assert_eq!(key(&base), key(&base.clone()));
    let changes = [
        ("/tools/0/function/name", json!("forecast")),
        (
            "/tools/0/function/parameters",
            json!({ "type": "object", "required": ["city"] }),
        ),
        ("/tool_choice", json!("required")),
        (
            "/response_format",
            json!({ "type": "json_schema", "json_schema": { "name": "w", "schema": {} } }),
        ),
        ("/n", json!(2)),
        (
            "/messages/1/tool_calls/0/function/arguments",
            json!("{\"city\":\"Oslo\"}"),
        ),
        ("/messages/2/tool_call_id", json!("call_2")),
    ];
    for (pointer, value) in changes {
        let mut changed = base.clone();
        *changed.pointer_mut(pointer).unwrap() = value;
        assert_ne!(key(&base), key(&changed), "{pointer}");
    }
}
