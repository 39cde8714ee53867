//! The example binaries' command lines: a negative number after an option is its value, so the
//! validation that names the option answers (`generate --temperature -1`, `score --batch-size -1`)
//! instead of clap's "unexpected argument '-1' found". `iterative_dpo`'s flags are checked in
//! `tests/iterative_dpo_loop.rs`.
// Both examples include the shared `examples/support/logging.rs`.
#![allow(clippy::duplicate_mod)]

#[path = "../examples/generate.rs"]
#[allow(dead_code, unused_imports)]
mod generate;
#[path = "../examples/score.rs"]
#[allow(dead_code, unused_imports)]
mod score;

use clap::Parser;
use std::path::PathBuf;

fn fixture(name: &str) -> String {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
        .display()
        .to_string()
}

#[test]
fn generate_takes_negative_numbers_and_validation_names_the_option() {
    let dir = fixture("sampling/tiny-chat");
    let base = ["generate", "--model-dir", &dir, "--prompt", "hi"];
    let args = |extra: &[&str]| {
        generate::Args::try_parse_from(base.iter().chain(extra).copied()).map_err(|e| e.to_string())
    };
    let parsed = args(&["--temperature", "-1"]).expect("-1 is a value");
    let err = generate::run(parsed).unwrap_err().to_string();
    assert!(err.contains("temperature") && err.contains("-1"), "{err}");
    let parsed = args(&["--top-p", "-5e-1", "--max-new-tokens", "2"]).expect("-5e-1 is a value");
    let err = generate::run(parsed).unwrap_err().to_string();
    assert!(err.contains("top_p"), "{err}");
    // Unsigned options: clap's own message names the option, not "unexpected argument".
    for (flag, value) in [("--seed", "-3"), ("--n", "-2"), ("--max-new-tokens", "-1")] {
        let err = args(&[flag, value]).unwrap_err();
        assert!(
            err.contains(flag) && !err.contains("unexpected argument"),
            "{flag} {value}: {err}"
        );
    }
}

#[test]
fn score_takes_negative_numbers_and_validation_names_the_option() {
    let dir = fixture("reward/tiny-rm");
    for flag in ["--batch-size", "--max-len"] {
        let err = score::Args::try_parse_from([
            "score",
            "--model-dir",
            &dir,
            "--pairs",
            "p.jsonl",
            flag,
            "-1",
        ])
        .unwrap_err()
        .to_string();
        assert!(
            err.contains(flag) && !err.contains("unexpected argument"),
            "{flag}: {err}"
        );
    }
}
