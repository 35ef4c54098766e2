//! The standard AWS credential chain (the `aws-config` feature): a client given no credentials
//! finds them in a shared profile file, or trades a web identity token for them at STS, and signs
//! with them (checked by botocore, `tests/bedrock_server.py`).
//!
//! The chain reads the process's environment, which a test cannot set safely while others run:
//! each scenario runs this test binary again as a child process with the environment it needs,
//! and the child runs only that scenario.

#![cfg(feature = "aws-config")]

mod bedrock_support;

use std::process::Command;

use bedrock_support::{ACCESS_KEY, REGION, SECRET};
use serde_json::{Value, json};
use tollgate_core::{LlmRequest, Message};
use tollgate_providers::Bedrock;
use tower::ServiceExt;

const CHILD: &str = "TOLLGATE_BEDROCK_CHAIN_CHILD";
const SERVER: &str = "TOLLGATE_BEDROCK_CHAIN_SERVER";
const TOKEN: &str = "web-identity-session-token";

/// Runs the child scenario in a child process against `server`, with `vars` set and every AWS
/// variable of ours removed.
fn run_child(server: &bedrock_support::Server, vars: &[(&str, String)]) {
    let mut command = Command::new(std::env::current_exe().unwrap());
    command
        .args(["child_scenario", "--exact", "--nocapture"])
        .env(CHILD, "1")
        .env(SERVER, &server.url)
        // No shared files but those a scenario names.
        .env("HOME", files().join("home"));
    for (name, _) in std::env::vars() {
        if name.starts_with("AWS_") {
            command.env_remove(name);
        }
    }
    command.env("AWS_EC2_METADATA_DISABLED", "true");
    for (name, value) in vars {
        command.env(name, value);
    }
    if vars.is_empty() {
        command.env(CHILD, "none");
    }
    let out = command.output().unwrap();
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && said.contains("1 passed"),
        "{said}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// In the child: one call with no credentials given, to the parent's server.
#[tokio::test]
async fn child_scenario() {
    let Ok(url) = std::env::var(SERVER) else {
        return;
    };
    assert!(std::env::var(CHILD).is_ok());
    let bedrock = Bedrock::builder(REGION).base_url(&url).build().unwrap();
    let answer = bedrock
        .oneshot(LlmRequest::new(
            "amazon.nova-lite-v1:0",
            vec![Message::user("Hi")],
        ))
        .await;
    if std::env::var(CHILD).is_ok_and(|v| v == "none") {
        let error = answer.unwrap_err();
        assert_eq!(error.kind(), tollgate_core::ErrorKind::Auth, "{error}");
        assert!(
            error
                .message()
                .starts_with("bedrock: no AWS credentials could be loaded")
        );
        return;
    }
    assert_eq!(answer.unwrap().content(), "Hi");
}

fn answer() -> Value {
    json!({ "json": {
        "output": { "message": { "role": "assistant", "content": [ { "text": "Hi" } ] } },
        "stopReason": "end_turn",
        "usage": { "inputTokens": 1, "outputTokens": 1, "totalTokens": 2 }
    } })
}

fn files() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("tollgate-bedrock-chain-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[tokio::test]
async fn the_chain_reads_a_shared_profile() {
    let Some(server) = bedrock_support::start(None, None) else {
        return;
    };
    server.script(answer()).await;
    let dir = files();
    let credentials = dir.join("credentials");
    std::fs::write(
        &credentials,
        format!("[default]\naws_access_key_id = AKIDWRONG\naws_secret_access_key = wrong\n\n[bedrock-test]\naws_access_key_id = {ACCESS_KEY}\naws_secret_access_key = {SECRET}\n"),
    )
    .unwrap();
    let config = dir.join("config");
    std::fs::write(&config, "[profile bedrock-test]\nregion = us-east-1\n").unwrap();
    run_child(
        &server,
        &[
            (
                "AWS_SHARED_CREDENTIALS_FILE",
                credentials.display().to_string(),
            ),
            ("AWS_CONFIG_FILE", config.display().to_string()),
            ("AWS_PROFILE", "bedrock-test".into()),
        ],
    );
    let seen = server.seen().await;
    assert_eq!(seen.len(), 1);
    assert_eq!(
        seen[0]["signature"],
        Value::Null,
        "signed with the profile's keys"
    );
}

#[tokio::test]
async fn the_chain_trades_a_web_identity_token_at_sts() {
    let Some(server) = bedrock_support::start(Some(TOKEN), None) else {
        return;
    };
    server.script(answer()).await;
    let token = files().join("token");
    std::fs::write(&token, "eyJhbGciOiJSUzI1NiJ9.web-identity.token").unwrap();
    run_child(
        &server,
        &[
            ("AWS_WEB_IDENTITY_TOKEN_FILE", token.display().to_string()),
            (
                "AWS_ROLE_ARN",
                "arn:aws:iam::123456789012:role/bedrock-caller".into(),
            ),
            ("AWS_ROLE_SESSION_NAME", "app".into()),
            ("AWS_REGION", REGION.into()),
            // STS is reached at the test server too.
            ("AWS_ENDPOINT_URL_STS", server.url.clone()),
        ],
    );
    let seen = server.seen().await;
    assert_eq!(seen[0]["sts"], "AssumeRoleWithWebIdentity", "{seen:?}");
    assert_eq!(seen[0]["token"], "eyJhbGciOiJSUzI1NiJ9.web-identity.token");
    assert_eq!(
        seen[1]["signature"],
        Value::Null,
        "signed with STS's credentials"
    );
    assert_eq!(seen[1]["headers"]["x-amz-security-token"], TOKEN);
}

#[tokio::test]
async fn with_no_credentials_anywhere_a_call_is_an_auth_error() {
    let Some(server) = bedrock_support::start(None, None) else {
        return;
    };
    run_child(&server, &[]);
    assert!(server.seen().await.is_empty(), "nothing is sent unsigned");
}
