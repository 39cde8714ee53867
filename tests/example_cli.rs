//! The example binaries' command lines: a negative number after an option is its value, so the
//! validation that names the option answers (`generate --temperature -1`, `score --batch-size -1`)
//! instead of clap's "unexpected argument '-1' found"; `iterative_dpo` merges `--config` with flags
//! in any order, names the flag of a NaN and the key of a bad `--config` value, and its defaults
//! are the built-in task's.
#![cfg(test)]
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

fn fixture(name: &str) -> String {
    kiln_test_support::fixture(name).display().to_string()
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
    use iterative_dpo::config::{LoopConfig, online_defaults};
    use kiln::online::{Algorithm, ReferenceChoice};
    let dir = kiln_test_support::scratch("cli-config");
    let file = dir.join("c.json");
    std::fs::write(
        &file,
        r#"{"generation": {"num_responses": 6}, "dpo": {"loss": {"beta": 0.3}}, "offline": false}"#,
    )
    .unwrap();
    let f = file.to_str().unwrap();
    for args in [
        vec!["--k", "4", "--config", f],
        vec!["--config", f, "--k", "4"],
        vec!["--k=4", "--config", f],
    ] {
        let cfg = parse(&args).unwrap();
        assert_eq!(
            cfg.online.k(),
            4,
            "flags win over the file whatever the order: {args:?}"
        );
        assert_eq!(cfg.online.dpo.loss.beta, 0.3, "the file's other keys apply");
        assert!(!cfg.online.offline);
    }
    assert!(!parse(&["--no-offline"]).unwrap().online.offline);
    let defaults = parse(&[]).unwrap();
    assert!(defaults.online.offline, "the baseline runs by default");
    assert_eq!(defaults.online.reference, ReferenceChoice::Previous);
    assert_eq!(
        defaults.online,
        online_defaults(),
        "the flags' defaults are the task's"
    );
    assert_eq!(defaults, LoopConfig::default());
    // A run's config.json is a --config file (its recorded inputs are not settings).
    let run = dir.join("config.json");
    let mut json = parse(&["--beta", "0.2"]).unwrap().to_json();
    json["policy_dir"] = "runs/x/sft".into();
    json["reward_source"] = serde_json::json!({"bt": "runs/x/reward_model"});
    std::fs::write(&run, json.to_string()).unwrap();
    let again = parse(&["--config", run.to_str().unwrap()]).unwrap();
    assert_eq!(again.online.dpo.loss.beta, 0.2);
    // The shipped real-model config parses.
    let real = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/scripts/real_model/smollm2_loop.json"
    );
    let cfg = parse(&["--config", real]).unwrap();
    assert_eq!(cfg.online.reference, ReferenceChoice::Previous);
    assert_eq!(cfg.online.lora.as_ref().map(|l| l.rank), Some(16));
    assert_eq!(cfg.online.k(), 4);
    let cfg = parse(&[
        "--loss",
        "cdpo:0.1",
        "--choose",
        "max_min_p:0.05",
        "--algorithm",
        "rrhf",
        "--lora-rank",
        "4",
        "--lora-targets",
        "q,v",
        "--eval-prompts",
        "32",
    ])
    .unwrap();
    assert_eq!(cfg.online.dpo.loss.loss.to_string(), "cdpo:0.1");
    assert_eq!(cfg.online.choose.to_string(), "max_min_p:0.05");
    assert_eq!(cfg.online.algorithm, Algorithm::Rrhf);
    let lora = cfg.online.lora.unwrap();
    assert_eq!((lora.targets.len(), lora.alpha), (2, 16.0));
    assert_eq!(cfg.online.eval_prompts, 32);
    for bad in [
        vec!["--k", "1"],
        vec!["--loss", "dpo"],
        vec!["--lora-targets", "qq"],
        vec!["--train-phrasings", "0"],
        vec!["--train-phrasings", "7"],
        vec!["--devices", "0"],
    ] {
        assert!(parse(&bad).is_err(), "{bad:?}");
    }
    // A NaN or an infinity names the flag; a bad --config key names the key.
    for flag in ["--beta", "--lr", "--temperature", "--label-noise"] {
        for v in ["NaN", "inf", "-inf"] {
            let err = parse(&[flag, v]).unwrap_err().to_string();
            assert!(
                err.contains(flag) && err.contains("finite"),
                "{flag} {v}: {err}"
            );
        }
    }
    for (text, key) in [
        (r#"{"dpo": {"loss": {"beta": null}}}"#, "dpo.loss.beta"),
        (r#"{"iterations": "three"}"#, "iterations"),
        (r#"{"no_such_key": 1}"#, "no_such_key"),
        (
            r#"{"generation": {"max_new_tokens": true}}"#,
            "generation.max_new_tokens",
        ),
    ] {
        std::fs::write(&file, text).unwrap();
        let err = parse(&["--config", f]).unwrap_err().to_string();
        assert!(
            err.contains(key) && err.contains("--config"),
            "{text}: {err}"
        );
    }
    // Negative numbers are values: the validation that names the option answers, not clap's
    // "unexpected argument '-0.1'".
    for (args, names) in [
        (vec!["--beta", "-0.1"], "beta"),
        (vec!["--lr", "-1e-5"], "lr"),
        (vec!["--seed", "-1"], "--seed"),
        (vec!["--iterations", "-3"], "--iterations"),
    ] {
        let err = parse(&args).unwrap_err().to_string();
        assert!(
            err.contains(names) && !err.contains("unexpected argument"),
            "{args:?}: {err}"
        );
    }
    // Every flag's help says what it does, and none carries measurement history.
    use clap::CommandFactory;
    let help = Args::command().render_long_help().to_string();
    for word in ["measured", "seeds", "win rate"] {
        assert!(!help.contains(word), "--help mentions `{word}`:\n{help}");
    }
    assert!(help.contains("[default: 4]"), "defaults are shown");
}
