//! tollgate quickstart: the whole stack from one YAML file.
//!
//! ```text
//! cargo run --example quickstart                                     # the embedded examples/config.yaml
//! cargo run --example quickstart -- --config examples/config.yaml   # any configuration file
//! ```
//!
//! It also sends 40 calls to the `bulk` role, whose two targets the router balances by latency,
//! and prints how many each served.
//!
//! A provider whose API key variable is not set (or every network provider, in a build without
//! the `providers` feature) is served by the simulated provider, so this runs with no network and
//! no keys. Set `OPENAI_API_KEY` / `ANTHROPIC_API_KEY` and build with `--features providers` to
//! call the real APIs.

use std::{process::ExitCode, time::Duration};

use tollgate::{
    Config, LlmRequest, Message, Outcome, ProviderKind, SimulatedProvider, Stack, retry::Attempts,
};
use tower::ServiceExt;

const EMBEDDED: &str = include_str!("config.yaml");

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let loaded = match args.as_slice() {
        [] => {
            println!("tollgate quickstart on the embedded examples/config.yaml\n");
            Config::from_yaml(EMBEDDED).and_then(Config::with_env)
        }
        [flag, path] if flag == "--config" => {
            println!("tollgate quickstart on {path}\n");
            Config::load(path)
        }
        _ => {
            eprintln!("usage: quickstart [--config <file.yaml>]");
            return ExitCode::from(2);
        }
    };
    let config = match loaded {
        Ok(config) => config,
        Err(errors) => {
            // Every mistake at once, each with its path; the program refuses to start.
            eprintln!("{errors}");
            return ExitCode::FAILURE;
        }
    };

    let mut builder = Stack::builder(&config);
    let mut simulated = Vec::new();
    for (name, provider) in &config.providers {
        let has_key = provider
            .api_key_env
            .as_deref()
            .is_some_and(|var| std::env::var(var).is_ok_and(|key| !key.is_empty()));
        let real = provider.kind == ProviderKind::Simulated
            || (cfg!(feature = "providers") && (has_key || provider.api_key_env.is_none()));
        if real {
            continue;
        }
        // 25 ms an answer; each simulated provider refuses its second call with a 429 that says
        // "retry after 300 ms", so the retry layer has something to do.
        let stand_in = SimulatedProvider::builder()
            .latency(Duration::from_millis(25))
            .output_tokens(40)
            .script([
                Outcome::Success,
                Outcome::rate_limited(Duration::from_millis(300)),
            ])
            .build();
        builder = builder.provider(name, stand_in);
        simulated.push(name.as_str());
    }
    if !simulated.is_empty() {
        println!(
            "simulated (no key set{}): {}\n",
            if cfg!(feature = "providers") {
                ""
            } else {
                ", or built without the `providers` feature"
            },
            simulated.join(", ")
        );
    }
    let stack = match builder.build() {
        Ok(stack) => stack,
        Err(errors) => {
            eprintln!("{errors}");
            return ExitCode::FAILURE;
        }
    };

    // (tenant, role, question). With simulated providers, the second call each gets is a 429:
    // #2 on openai, #6 on anthropic.
    let calls = [
        ("acme", "default", "What is a tollgate?"),
        (
            "acme",
            "summarize",
            "Summarize: a tollgate charges for passage.",
        ), // default's model, its own max_tokens
        ("acme", "reason", "Why would a road charge tolls?"), // another provider
        ("acme", "default", "What is a tollgate?"),           // a repeat: from the cache
        ("globex", "default", "What is a tollgate?"),         // another tenant: never acme's answer
        ("globex", "reason", "Why would a road charge tolls?"),
        ("globex", "reason", "Why would a road charge tolls?"), // caching is off for anthropic
        ("globex", "translate", "Bonjour"),                     // no such role: refused
    ];
    for (i, (tenant, role, question)) in calls.into_iter().enumerate() {
        let request = LlmRequest::new("", vec![Message::user(question)])
            .with_tenant(tenant)
            .with_role(role);
        let started = tokio::time::Instant::now();
        match stack.clone().oneshot(request).await {
            Ok(answer) => {
                let cached = answer.headers.get("x-cache").is_some_and(|v| v == "HIT");
                println!(
                    "#{} {tenant:<6} {role:<9} -> {:<18} {} in {:>4.0?}, {} attempt(s), tokens {}/{}",
                    i + 1,
                    answer.model,
                    if cached { "cache hit" } else { "answered " },
                    started.elapsed(),
                    Attempts::of(&answer),
                    answer.usage.input_tokens,
                    answer.usage.output_tokens,
                );
            }
            Err(err) => println!("#{} {tenant:<6} {role:<9} -> refused: {err}", i + 1),
        }
    }

    if config.roles.contains_key("bulk") {
        // The `bulk` role's targets: the router sends most calls to the faster one.
        println!("\n40 calls to `bulk`, 4 at a time:");
        for round in 0..10 {
            let batch = (0..4).map(|i| {
                let text = format!("Item {}", round * 4 + i);
                let request = LlmRequest::new("", vec![Message::user(text)])
                    .with_tenant("initech")
                    .with_role("bulk");
                stack.clone().oneshot(request)
            });
            for answer in futures_util::future::join_all(batch).await {
                if let Err(err) = answer {
                    println!("  refused: {err}");
                }
            }
        }
        for deployment in stack.deployments() {
            println!(
                "  {:<28} {:>3} calls, {} failed",
                deployment.name, deployment.calls, deployment.failures
            );
        }
    }

    println!("\nspend, from the usage each provider reported and the pricing table:");
    println!("{}", stack.cost_report().to_json());
    ExitCode::SUCCESS
}
