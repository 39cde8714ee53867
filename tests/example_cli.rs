//! The example binaries' command lines: a negative number after an option is its value, so the
//! validation that names the option answers (`generate --temperature -1`, `score --batch-size -1`)
//! instead of clap's "unexpected argument '-1' found"; `iterative_dpo` merges `--config` with flags
//! in any order, and every `LoopConfig` field has a flag.
// The examples include the shared `examples/support/logging.rs`.
#![allow(clippy::duplicate_mod)]

#[path = "../examples/generate.rs"]
#[allow(dead_code, unused_imports)]
mod generate;
#[path = "../examples/iterative_dpo.rs"]
#[allow(dead_code, unused_imports)]
mod iterative_dpo;
#[path = "../examples/score.rs"]
#[allow(dead_code, unused_imports)]
mod score;

use clap::Parser;
use std::path::{Path, PathBuf};

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

#[test]
fn the_command_line_merges_config_files_and_flags_in_any_order() {
    use iterative_dpo::cli::{Args, parse};
    use iterative_dpo::{Algorithm, LoopConfig, ReferenceChoice};
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("loop-cli");
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("c.json");
    std::fs::write(&file, r#"{"k": 6, "beta": 0.3, "offline": false}"#).unwrap();
    let f = file.to_str().unwrap();
    for args in [
        vec!["--k", "4", "--config", f],
        vec!["--config", f, "--k", "4"],
        vec!["--k=4", "--config", f],
    ] {
        let cfg = parse(&args).unwrap();
        assert_eq!(
            cfg.k, 4,
            "flags win over the file whatever the order: {args:?}"
        );
        assert_eq!(cfg.beta, 0.3, "the file's other keys apply");
        assert!(!cfg.offline);
    }
    assert!(parse(&["--config", f, "--offline"]).unwrap().offline);
    assert!(!parse(&["--offline", "--no-offline"]).unwrap().offline);
    assert!(parse(&["--no-offline", "--offline"]).unwrap().offline);
    assert!(parse(&[]).unwrap().offline, "the baseline runs by default");
    assert_eq!(parse(&[]).unwrap().reference, ReferenceChoice::Previous);
    // The shipped real-model config parses and keeps the reference its seeds were measured with.
    let real = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/scripts/real_model/smollm2_loop.json"
    );
    assert_eq!(
        parse(&["--config", real]).unwrap().reference,
        ReferenceChoice::Previous
    );
    let cfg = parse(&[
        "--loss",
        "cdpo:0.1",
        "--choose",
        "max_min_p:0.05",
        "--algorithm",
        "rrhf",
        "--lora-targets",
        "q,v",
        "--eval-prompts",
        "32",
    ])
    .unwrap();
    assert_eq!(cfg.loss.to_string(), "cdpo:0.1");
    assert_eq!(cfg.choose.to_string(), "max_min_p:0.05");
    assert_eq!(cfg.algorithm, Algorithm::Rrhf);
    assert_eq!(cfg.lora_targets.len(), 2);
    assert_eq!(cfg.eval_prompts, 32);
    for bad in [
        vec!["--k", "1"],
        vec!["--loss", "dpo"],
        vec!["--lora-targets", "qq"],
        vec!["--train-phrasings", "0"],
        vec!["--train-phrasings", "7"],
    ] {
        assert!(parse(&bad).is_err(), "{bad:?}");
    }
    // Negative numbers are values: the validation that names the option answers, not clap's
    // "unexpected argument '-0.1'".
    for (args, names) in [
        (vec!["--beta", "-0.1"], "--beta"),
        (vec!["--lr", "-1e-5"], "--lr"),
        (vec!["--seed", "-1"], "--seed"),
        (vec!["--iterations", "-3"], "--iterations"),
    ] {
        let err = parse(&args).unwrap_err().to_string();
        assert!(
            err.contains(names) && !err.contains("unexpected argument"),
            "{args:?}: {err}"
        );
    }
    // Every LoopConfig field has a flag.
    use clap::CommandFactory;
    let cmd = Args::command();
    let longs: Vec<String> = cmd
        .get_arguments()
        .filter_map(|a| a.get_long().map(str::to_string))
        .collect();
    let json = serde_json::to_value(LoopConfig::default()).unwrap();
    for key in json.as_object().unwrap().keys() {
        let flag = key.replace('_', "-");
        assert!(
            longs.contains(&flag),
            "LoopConfig field `{key}` has no --{flag}"
        );
    }
}
