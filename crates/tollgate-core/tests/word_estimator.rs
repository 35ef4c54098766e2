//! `WordEstimator` against what OpenAI's `o200k_base` tokenizer really counts, on samples of the
//! kinds of text prompts hold. Each count was taken once with the `tiktoken-rs` crate
//! (`o200k_base().encode_ordinary(text).len()`) and is written here, so the test needs no
//! tokenizer.

use tollgate_core::{TokenEstimator, WordEstimator};

/// Each sample under `tests/samples/` and its real `o200k_base` count.
const SAMPLES: [(&str, u64); 8] = [
    ("chat.txt", 61),
    ("code.txt", 97),
    ("md.txt", 123),
    ("news.txt", 101),
    ("prose.txt", 360),
    ("py.txt", 113),
    ("tech.txt", 120),
    ("tool.json", 90),
];

fn sample(name: &str) -> String {
    let path = format!("{}/tests/samples/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(path).unwrap()
}

#[test]
fn every_sample_is_within_seven_percent_of_the_real_count() {
    for (name, truth) in SAMPLES {
        let text = sample(name);
        let estimate = if name.ends_with(".json") {
            // As a request's tool schema is read: the JSON value, written compactly.
            let value: serde_json::Value = serde_json::from_str(&text).unwrap();
            assert_eq!(
                value.to_string(),
                text.trim_end(),
                "the sample is compact JSON"
            );
            WordEstimator.estimate_json(&value)
        } else {
            WordEstimator.estimate_text(&text)
        };
        let off = (estimate as f64 / truth as f64 - 1.0).abs();
        assert!(
            off <= 0.07,
            "{name}: estimated {estimate}, o200k_base counts {truth} ({:.1} % off)",
            off * 100.0
        );
    }
}

#[test]
fn pieces_count_as_a_pre_tokenizer_splits_them() {
    let count = |text: &str| WordEstimator.estimate_text(text);
    assert_eq!(count(""), 0);
    // A word takes the space before it; a long one takes a token per 8 letters past its first.
    assert_eq!(count("hello world"), 2);
    assert_eq!(count("internationalization"), 3);
    // Digits go in threes; a run of punctuation a token per 4 characters, and one punctuation
    // character before a word joins it.
    assert_eq!(count("1234567"), 3);
    assert_eq!(count("\":{\""), 1);
    assert_eq!(count("(index"), 1);
    // Line breaks are a token; spaces before a line break or before more spaces are one too.
    assert_eq!(count("a\n\nb"), 3);
    assert_eq!(count("    let"), 2);
    assert_eq!(count("end  \n"), 3);
    // Non-ASCII characters count one each, as in CharEstimator.
    assert_eq!(count("東京都"), 3);
    assert_eq!(count("café"), 2);
}
