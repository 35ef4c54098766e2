//! `tollgate check` and `tollgate keys hash`, as an operator runs them.

use std::{
    io::Write,
    process::{Command, Stdio},
};

fn tollgate(args: &[&str], stdin: &str) -> (i32, String, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_tollgate"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

fn file(name: &str, text: &str) -> String {
    let dir = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path.display().to_string()
}

#[test]
fn check_prints_every_mistake_with_its_path_and_exits_1() {
    let path = file(
        "broken.yaml",
        r#"
providers:
  up: { kind: openai, base_url: "http://127.0.0.1:9/v1", timeout: 0s }
roles:
  default: { provider: up, model: m }
keys:
  team: { hash: "sha256:1234", tenant: acme, key: "tg-pasted-secret", models: [nowhere/x],
          limits: { budgets: [ { limit: "5", period: month, degrade: { below: "20%", to: nowhere } } ] } }
gateway: { max_body_bytes: 0, listen: "not an address" }
"#,
    );
    let (code, out, _) = tollgate(&["check", "--config", &path], "");
    assert_eq!(code, 1, "{out}");
    for path in [
        "providers.up.timeout",
        "keys.team.hash",
        "keys.team.key",
        "keys.team.models[0]",
        "keys.team.limits.budgets[0].degrade.to",
        "gateway.listen",
    ] {
        assert!(out.contains(&format!("{path}:")), "no `{path}` in:\n{out}");
    }
    assert!(
        !out.contains("tg-pasted-secret"),
        "a pasted key is never shown"
    );
}

#[test]
fn check_accepts_the_embedded_configuration_and_a_sound_file() {
    let path = file("embedded.yaml", tollgate_gateway::EMBEDDED_CONFIG);
    let (code, out, _) = tollgate(&["check", "--config", &path], "");
    assert_eq!((code, out.trim_end().ends_with(": ok")), (0, true), "{out}");

    let path = file(
        "unset.yaml",
        &tollgate_gateway::EMBEDDED_CONFIG.replace(
            "fast: { kind: simulated, latency: 20ms, output_tokens: 16 }",
            "fast: { kind: openai, api_key_env: TOLLGATE_TEST_UNSET_VARIABLE }",
        ),
    );
    let (code, out, _) = tollgate(&["check", "--config", &path], "");
    assert_eq!(code, 1);
    assert!(out.contains("providers.fast.api_key_env: the environment variable TOLLGATE_TEST_UNSET_VARIABLE is not set"), "{out}");
}

#[test]
fn keys_hash_makes_a_key_or_hashes_one() {
    let (code, out, _) = tollgate(&["keys", "hash"], "");
    assert_eq!(code, 0);
    let mut lines = out.lines();
    let key = lines
        .next()
        .unwrap()
        .strip_prefix("key:  ")
        .unwrap()
        .to_owned();
    let hash = lines
        .next()
        .unwrap()
        .strip_prefix("hash: ")
        .unwrap()
        .to_owned();
    assert!(key.starts_with(tollgate_gateway::KEY_PREFIX));
    assert_eq!(hash, tollgate_gateway::hash_key(&key));

    let (code, out, _) = tollgate(&["keys", "hash", "--stdin"], &format!("{key}\n"));
    assert_eq!((code, out.trim()), (0, hash.as_str()));

    let (code, _, err) = tollgate(&["keys", "hash", "--stdin"], "");
    assert_eq!(code, 1);
    assert!(err.contains("no key"), "{err}");
}

#[test]
fn the_demo_key_is_the_one_the_embedded_configuration_accepts() {
    let hash = tollgate_gateway::hash_key(tollgate_gateway::DEMO_KEY);
    assert!(tollgate_gateway::EMBEDDED_CONFIG.contains(&hash));
}

#[test]
fn the_readme_configuration_is_valid() {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../README.md")).unwrap();
    let section = &readme[readme.find("## The gateway").expect("a gateway section")..];
    let start = section.find("```yaml\n").expect("a YAML block") + "```yaml\n".len();
    let yaml = &section[start..start + section[start..].find("```").unwrap()];
    let config = tollgate_gateway::GatewayConfig::from_yaml(yaml).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(config.keys["search-backend"].tenant, "search");
    assert_eq!(config.gateway.listen.port(), 4000);
}

#[test]
fn serve_writes_json_logs_when_asked() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_tollgate"))
        .args(["serve", "--listen", "127.0.0.1:0", "--log-format", "json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(child.stdout.as_mut().unwrap()),
        &mut first,
    )
    .unwrap();
    assert!(
        first.starts_with("tollgate listening on http://"),
        "{first}"
    );
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    let logs = String::from_utf8(out.stderr).unwrap();
    let lines: Vec<&str> = logs.lines().collect();
    assert!(!lines.is_empty());
    for line in lines {
        let event: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        assert!(
            event["level"].is_string() && event["fields"]["message"].is_string(),
            "{event}"
        );
    }
}

#[test]
fn prices_prints_what_a_model_is_billed_at_and_where_the_price_comes_from() {
    let date = tollgate::PriceCatalog::shipped().date().to_owned();
    // The catalog alone: a dated snapshot takes its base's price; a longer name is not it.
    let (code, out, _) = tollgate(&["prices", "gpt-4o-mini-2024-07-18"], "");
    assert_eq!(code, 0, "{out}");
    assert_eq!(
        out,
        format!(
            "gpt-4o-mini-2024-07-18: input $0.15 · cached input $0.075 · output $0.60 (as gpt-4o-mini, catalog {date})\n"
        )
    );
    let (code, out, _) = tollgate(&["prices", "my-finetune"], "");
    assert_eq!(code, 1);
    assert_eq!(
        out,
        "my-finetune: no price (its calls are counted as unpriced, or refused with pricing.refuse_unpriced)\n"
    );
    // A cloud's own model id, priced on that cloud alone.
    let (code, out, _) = tollgate(
        &["prices", "global.anthropic.claude-sonnet-4-5-20250929-v1:0"],
        "",
    );
    assert_eq!(code, 0, "{out}");
    assert!(
        out.starts_with("global.anthropic.claude-sonnet-4-5-20250929-v1:0 on bedrock: input $3.00")
            && out.trim_end().ends_with(&format!(
                "(as global.anthropic.claude-sonnet-4-5-20250929-v1:0, catalog {date})"
            ))
            && out.lines().count() == 1,
        "{out}"
    );
    let (code, out, _) = tollgate(&["prices", "gpt-4o?x=1"], "");
    assert_eq!(
        (code, out.as_str()),
        (1, "\"gpt-4o?x=1\" is not a model id\n")
    );

    // A configuration's own prices win, a provider's own apply on it, and the listing says which.
    let path = file(
        "priced.yaml",
        r#"
providers:
  sim: { kind: simulated }
  other: { kind: simulated }
roles:
  default: { provider: sim, model: my-finetune }
pricing:
  my-finetune: { input: "0.30", output: "1.2" }
  gpt-4o: { input: "2", output: "8" }
  providers: { other: { gpt-4o: { input: "3", output: "12", long_context: { above_input_tokens: 128000, input: "6", output: "24" } } } }
keys:
  team: { hash: "sha256:0000000000000000000000000000000000000000000000000000000000000000", tenant: acme }
"#,
    );
    let (code, out, _) = tollgate(&["prices", "gpt-4o-2024-08-06", "--config", &path], "");
    assert_eq!(code, 0, "{out}");
    assert_eq!(
        out,
        "gpt-4o-2024-08-06: input $2.00 · output $8.00 (as gpt-4o, configuration)\ngpt-4o-2024-08-06 on other: input $3.00 · output $12.00 · past 128000 input tokens: input $6.00 · output $24.00 (as gpt-4o, configuration)\n"
    );
    let (code, out, _) = tollgate(&["prices", "--config", &path], "");
    assert_eq!(code, 0);
    let lines: Vec<&str> = out.lines().collect();
    assert!(
        lines[0].starts_with(&format!(
            "# US dollars per million tokens; the catalog of {date} (sources: "
        )),
        "{out}"
    );
    assert!(
        lines.contains(&"my-finetune: input $0.30 · output $1.20 (configuration)"),
        "{out}"
    );
    assert!(
        lines.contains(&"gpt-4o: input $2.00 · output $8.00 (configuration)"),
        "{out}"
    );
    assert!(
        lines
            .iter()
            .any(|line| line.starts_with("gpt-4o-mini: input $0.15")
                && line.ends_with(&format!("(catalog {date})"))),
        "{out}"
    );
    assert_eq!(
        lines.last(),
        Some(
            &"gpt-4o on other: input $3.00 · output $12.00 · past 128000 input tokens: input $6.00 · output $24.00 (configuration)"
        )
    );
}
