//! What a call is billed at: the configuration's own prices over the shipped catalog, a model
//! priced by its exact name or a versioned form of it and never by a prefix, and calls to a
//! model with no price counted, or refused with `pricing.refuse_unpriced`.

use tollgate::{Config, ErrorKind, LlmRequest, Message, ModelPrice, Stack};
use tollgate_core::{MicroUsd, PriceCatalog, Usage};
use tower::ServiceExt;

/// A stack on one simulated provider whose role serves `gpt-4o`: a call of "hi" is 7 prompt
/// tokens answered with 10.
fn stack(pricing: &str) -> Stack {
    let yaml = format!(
        r#"
providers:
  sim: {{ kind: simulated, output_tokens: 10 }}
roles:
  default: {{ provider: sim, model: gpt-4o, max_tokens: 10 }}
pricing:
{pricing}
"#
    );
    Stack::from_config(&Config::from_yaml(&yaml).unwrap()).unwrap()
}

/// One call to `model` (a model the role does not give goes straight to its provider).
async fn call(stack: &Stack, model: &str) -> Result<(), tollgate::LlmError> {
    let request = LlmRequest::new(model, vec![Message::user("hi")]);
    stack.clone().oneshot(request).await.map(drop)
}

/// What the cost report says `model`'s calls cost, and how many were unpriced.
fn billed(stack: &Stack, model: &str) -> (MicroUsd, u64) {
    let report = stack.costs().report();
    let line = &report.by_model[model];
    (line.cost, line.unpriced_calls)
}

fn catalog(model: &str) -> ModelPrice {
    *PriceCatalog::shipped().models().get(model).unwrap()
}

const CALL: Usage = Usage::new(7, 10);

#[tokio::test]
async fn a_model_whose_name_starts_with_a_priced_one_is_never_priced_as_it() {
    // Only gpt-4o is configured: gpt-4o-mini takes the catalog's price for itself.
    let stack = stack(r#"  gpt-4o: { input: "2.50", output: "10.00" }"#);
    call(&stack, "gpt-4o").await.unwrap();
    call(&stack, "gpt-4o-mini").await.unwrap();
    let (four_o, _) = billed(&stack, "gpt-4o");
    let (mini, unpriced) = billed(&stack, "gpt-4o-mini");
    // 7 × $2.50/M + 10 × $10/M = 117.5 µ$, rounded up.
    assert_eq!(four_o, MicroUsd(118));
    assert_eq!(mini, catalog("gpt-4o-mini").cost(CALL));
    assert_ne!(mini, four_o);
    assert_eq!(unpriced, 0);

    // Without the catalog, gpt-4o-mini has no price: counted as unpriced, at no cost.
    let stack = self::stack("  catalog: false\n  gpt-4o: { input: \"2.50\", output: \"10.00\" }");
    call(&stack, "gpt-4o-mini").await.unwrap();
    assert_eq!(billed(&stack, "gpt-4o-mini"), (MicroUsd::ZERO, 1));
    // A name that is no model id is not a form of gpt-4o either: refused before it is priced
    // or sent.
    for name in ["gpt-4o?x=1", "gpt-4o 2", "gpt-4o\n"] {
        let error = call(&stack, name).await.unwrap_err();
        assert_eq!(error.kind(), ErrorKind::InvalidRequest, "{name:?}");
    }
    assert_eq!(stack.costs().report().total.calls, 1);
}

#[tokio::test]
async fn dated_variants_take_their_base_price_and_the_configuration_wins() {
    let stack = stack(
        r#"  gpt-4o: { input: "2.50", output: "10.00" }
  gpt-4.1-mini: { input: "1.00", output: "1.00" }"#,
    );
    for model in [
        "gpt-4o-2024-08-06",
        "claude-sonnet-4-5-20250929",
        "gpt-4.1-mini-2025-04-14",
    ] {
        call(&stack, model).await.unwrap();
    }
    assert_eq!(billed(&stack, "gpt-4o-2024-08-06"), (MicroUsd(118), 0));
    assert_eq!(
        billed(&stack, "claude-sonnet-4-5-20250929"),
        (catalog("claude-sonnet-4-5").cost(CALL), 0)
    );
    // The configuration's price, not the catalog's: 7 × $1/M + 10 × $1/M.
    assert_eq!(billed(&stack, "gpt-4.1-mini-2025-04-14"), (MicroUsd(17), 0));
    assert_ne!(catalog("gpt-4.1-mini").cost(CALL), MicroUsd(17));
}

#[tokio::test]
async fn refuse_unpriced_refuses_an_unpriced_model_before_any_call() {
    let stack = stack("  refuse_unpriced: true");
    // The role's model is in the catalog; a model nobody prices is refused.
    call(&stack, "gpt-4o").await.unwrap();
    let error = call(&stack, "mystery-model").await.unwrap_err();
    assert_eq!(error.kind(), ErrorKind::InvalidRequest);
    assert_eq!(
        error.message(),
        "model \"mystery-model\" has no price, in the catalog or the configuration, and pricing.refuse_unpriced is on"
    );
    let report = stack.costs().report();
    assert_eq!(report.total.calls, 1);
    assert!(!report.by_model.contains_key("mystery-model"));

    // A role whose own model has no price is refused with the configuration.
    let yaml = r#"
providers:
  sim: { kind: simulated }
roles:
  default: { provider: sim, model: my-finetune }
pricing: { refuse_unpriced: true }
"#;
    let error = Config::from_yaml(yaml).unwrap_err();
    let paths: Vec<String> = error.paths().iter().map(|p| p.to_string()).collect();
    assert_eq!(paths, ["pricing.my-finetune"]);
    assert!(
        error.to_string().contains("pricing.refuse_unpriced is on"),
        "{error}"
    );
    // Priced by the configuration, it is served.
    let priced = format!("{yaml}\n").replace(
        "pricing: { refuse_unpriced: true }",
        "pricing: { refuse_unpriced: true, my-finetune: { input: \"1\", output: \"1\" } }",
    );
    assert!(Config::from_yaml(&priced).is_ok());
}

#[test]
fn a_price_that_is_not_dollars_or_has_an_unknown_field_is_named() {
    for (pricing, words) in [
        (r#"  gpt-4o: { input: "-1", output: "1" }"#, "invalid price"),
        (
            r#"  gpt-4o: { input: "1", ouput: "1" }"#,
            "unknown field `ouput`",
        ),
        ("  catalog: maybe", "invalid type"),
        (
            r#"  providers: { sim: { gpt-4o: { input: "1" } } }"#,
            "missing field `output`",
        ),
        (
            r#"  providers: { simm: { gpt-4o: { input: "1", output: "1" } } }"#,
            "pricing.providers.simm: no provider of this name",
        ),
    ] {
        let yaml = format!(
            "providers:\n  sim: {{ kind: simulated }}\nroles:\n  default: {{ provider: sim, model: m }}\npricing:\n{pricing}\n"
        );
        let error = Config::from_yaml(&yaml).unwrap_err().to_string();
        assert!(
            error.contains("pricing") && error.contains(words),
            "{pricing}: {error}"
        );
    }
}

#[tokio::test]
async fn a_provider_s_own_price_applies_to_its_calls() {
    let stack = stack(
        r#"  gpt-4o: { input: "2.50", output: "10.00" }
  providers: { sim: { gpt-4o: { input: "5.00", output: "20.00" } } }"#,
    );
    call(&stack, "gpt-4o").await.unwrap();
    // 7 × $5/M + 10 × $20/M = 235 µ$.
    assert_eq!(billed(&stack, "gpt-4o"), (MicroUsd(235), 0));
}

#[test]
fn a_target_with_a_client_of_its_own_pays_its_provider_s_prices() {
    let config = Config::from_yaml(
        r#"
providers:
  eu: { kind: openai, base_url: "http://127.0.0.1:1/v1" }
roles:
  default:
    model: gpt-4o
    targets:
      - { provider: eu }
      - { provider: eu, name: eu-2, base_url: "http://127.0.0.1:2/v1" }
pricing:
  providers: { eu: { gpt-4o: { input: "3", output: "12" } } }
"#,
    )
    .unwrap();
    let prices = config.prices();
    for client in ["eu", "eu-2"] {
        let price = prices.get_for(Some(client), "gpt-4o-2024-08-06").unwrap();
        assert_eq!(price.input_per_mtok, MicroUsd(3_000_000), "{client}");
    }
    // Anyone else pays the catalog's.
    assert_eq!(
        prices.get_for(Some("other"), "gpt-4o"),
        PriceCatalog::shipped().models().get("gpt-4o")
    );
}

#[tokio::test]
async fn a_refusal_the_provider_billed_is_counted_and_one_it_did_not_is_not() {
    use tollgate::{LlmError, Outcome, SimulatedProvider};
    use tollgate_core::BilledUsage;
    let config = Config::from_yaml(
        r#"
providers:
  sim: { kind: simulated }
roles:
  default: { provider: sim, model: gpt-4o }
pricing:
  gpt-4o: { input: "2.50", output: "10.00" }
retry: false
"#,
    )
    .unwrap();
    let filtered = LlmError::new(ErrorKind::ContentFilter, "withheld")
        .with_extension(BilledUsage(Usage::new(1_000, 40)));
    let provider = SimulatedProvider::builder()
        .script([
            Outcome::Fail(filtered),
            Outcome::Fail(LlmError::new(ErrorKind::Server, "down")),
        ])
        .build();
    let stack = Stack::builder(&config)
        .provider("sim", provider)
        .build()
        .unwrap();
    for kind in [ErrorKind::ContentFilter, ErrorKind::Server] {
        let error = call(&stack, "").await.unwrap_err();
        assert_eq!(error.kind(), kind);
    }
    // 1,000 × $2.50/M + 40 × $10/M = 2,900 µ$: the filtered call only.
    let report = stack.costs().report();
    assert_eq!(report.total.calls, 1);
    assert_eq!(report.total.cost, MicroUsd(2_900));
}
