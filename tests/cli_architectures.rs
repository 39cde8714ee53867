//! The command-line tools `generate` and `score` take Llama and Qwen2 checkpoints, chosen by
//! `config.json`'s `model_type`: both run on the tiny fixtures of each architecture, `score` gives
//! the same bits whatever `--devices`, and an architecture Kiln does not implement is an error
//! naming the file and its `model_type`, not a Rust type.
#![cfg(test)]
// The examples include the shared `examples/support/logging.rs`.
#![allow(clippy::duplicate_mod)]

#[path = "../examples/generate.rs"]
#[allow(dead_code, unused_imports)]
mod generate;
#[path = "../examples/score.rs"]
#[allow(dead_code, unused_imports)]
mod score;

use std::path::{Path, PathBuf};

use clap::Parser;
use serde_json::Value;

fn fixture(name: &str) -> String {
    kiln_test_support::fixture(name).display().to_string()
}

/// A fresh scratch directory.
fn scratch(name: &str) -> PathBuf {
    kiln_test_support::scratch(&format!("cli-architectures/{name}"))
}

fn vocab_size(dir: &str) -> u64 {
    let text = std::fs::read_to_string(Path::new(dir).join("config.json")).unwrap();
    let config: Value = serde_json::from_str(&text).unwrap();
    config["vocab_size"].as_u64().unwrap()
}

/// `generate` with `extra` flags: its stdout, or the error's text.
fn generate(dir: &str, extra: &[&str]) -> Result<String, String> {
    let base = ["generate", "--model-dir", dir];
    let args = generate::Args::try_parse_from(base.iter().chain(extra).copied())
        .map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    generate::run_to(args, &mut out).map_err(|e| e.to_string())?;
    Ok(String::from_utf8(out).unwrap())
}

/// `score` with `extra` flags: its stdout and stderr, or the error's text.
fn score(dir: &str, extra: &[&str]) -> Result<(String, String), String> {
    let base = ["score", "--model-dir", dir];
    let args = score::Args::try_parse_from(base.iter().chain(extra).copied())
        .map_err(|e| e.to_string())?;
    let (mut out, mut err) = (Vec::new(), Vec::new());
    score::run_to(args, &mut out, &mut err).map_err(|e| e.to_string())?;
    Ok((
        String::from_utf8(out).unwrap(),
        String::from_utf8(err).unwrap(),
    ))
}

fn json_lines(text: &str) -> Vec<Value> {
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

/// Greedy `--json` generation of 4 tokens: two responses whose ids lie in the vocabulary.
fn check_generates(dir: &str) {
    let vocab = vocab_size(dir);
    let flags = [
        "--prompt",
        "What colour is the sky?",
        "--system",
        "Be brief.",
        "--max-new-tokens",
        "4",
        "--temperature",
        "0",
        "--n",
        "2",
        "--json",
    ];
    let out = generate(dir, &flags).unwrap_or_else(|e| panic!("{dir}: {e}"));
    let lines = json_lines(&out);
    assert_eq!(lines.len(), 2, "{dir}: {out}");
    for (i, line) in lines.iter().enumerate() {
        assert_eq!(line["index"].as_u64(), Some(i as u64), "{line}");
        let ids = line["token_ids"].as_array().expect("token_ids");
        assert!(!ids.is_empty() && ids.len() <= 4, "{dir}: {line}");
        for id in ids {
            let id = id.as_u64().expect("a token id");
            assert!(id < vocab, "{dir}: token {id} >= vocabulary {vocab}");
        }
        assert!(line["text"].is_string(), "{line}");
        assert!(line["finish_reason"].is_string(), "{line}");
    }
    // Greedy: both responses are the same.
    assert_eq!(lines[0]["token_ids"], lines[1]["token_ids"], "{dir}");
    // The plain-text report names the parameter count from config.json.
    let text = generate(
        dir,
        &[
            "--prompt",
            "Hi",
            "--max-new-tokens",
            "2",
            "--temperature",
            "0",
        ],
    )
    .unwrap_or_else(|e| panic!("{dir}: {e}"));
    assert!(
        text.contains("parameters") && text.contains("--- response 0"),
        "{text}"
    );
    // A raw prompt (stop ids from config.json and generation_config.json) works too.
    generate(dir, &["--prompt", "Hi", "--raw", "--max-new-tokens", "2"])
        .unwrap_or_else(|e| panic!("{dir} --raw: {e}"));
}

#[test]
fn generate_runs_qwen2_and_llama_checkpoints() {
    check_generates(&fixture("qwen2/chat"));
    check_generates(&fixture("sampling/tiny-chat"));
}

/// `score --pairs FILE --json`: finite scores, the same bits on 1 and 3 devices.
fn check_scores_pairs(dir: &str, pairs: &Path, n: usize) {
    let pairs = pairs.to_str().unwrap();
    let run = |devices: &str| {
        let flags = [
            "--pairs",
            pairs,
            "--json",
            "--batch-size",
            "2",
            "--devices",
            devices,
        ];
        score(dir, &flags).unwrap_or_else(|e| panic!("{dir} --devices {devices}: {e}"))
    };
    let (one, summary) = run("1");
    let lines = json_lines(&one);
    assert_eq!(lines.len(), n, "{one}");
    let bits = |lines: &[Value]| -> Vec<u32> {
        lines
            .iter()
            .flat_map(|l| [&l["score_chosen"], &l["score_rejected"]])
            .map(|v| {
                let v = v.as_f64().unwrap_or_else(|| panic!("a score: {v}")) as f32;
                assert!(v.is_finite(), "{v}");
                v.to_bits()
            })
            .collect()
    };
    assert!(summary.contains("pairwise accuracy"), "{summary}");
    let (three, _) = run("3");
    assert_eq!(bits(&lines), bits(&json_lines(&three)), "{dir}");
    assert_eq!(one, three, "{dir}");
}

#[test]
fn score_pairs_on_qwen2_and_llama_reward_models_same_bits_on_any_devices() {
    let dir = scratch("qwen2-pairs");
    let file = dir.join("pairs.jsonl");
    let pairs = [
        r#"{"prompt": "What colour is the sky?", "chosen": "Blue.", "rejected": "Green."}"#,
        r#"{"prompt": "Say hello.", "chosen": "Hello!", "rejected": "No."}"#,
        r#"{"prompt": [{"role": "system", "content": "You are terse."}, {"role": "user", "content": "Name a fruit."}], "chosen": "Apple.", "rejected": "A fruit is a seed-bearing structure."}"#,
        r#"{"prompt": "Count to three.", "chosen": "1, 2, 3", "rejected": "5, 4"}"#,
        r#"{"prompt": "Is water wet?", "chosen": "Yes.", "rejected": "I cannot say."}"#,
    ];
    std::fs::write(&file, pairs.join("\n") + "\n").unwrap();
    check_scores_pairs(&fixture("qwen2/chat-rm"), &file, pairs.len());

    let llama = fixture("reward/tiny-rm");
    let file = Path::new(&llama).join("pairs.jsonl");
    let n = std::fs::read_to_string(&file).unwrap().lines().count();
    check_scores_pairs(&llama, &file, n);
}

#[test]
fn score_annotates_generations_of_a_qwen2_reward_model_same_bits_on_any_devices() {
    let dir = scratch("qwen2-generations");
    let file = dir.join("generations.jsonl");
    // More prompts than one annotation call takes, so 3 devices split them.
    let n = 2 * kiln::reward::annotate::PROMPTS_PER_CALL + 3;
    let lines: Vec<String> = (0..n)
        .map(|i| {
            serde_json::json!({
                "prompt": format!("Question {i}?"),
                "responses": [format!("Answer {i}."), "I do not know.".to_string()],
            })
            .to_string()
        })
        .collect();
    std::fs::write(&file, lines.join("\n") + "\n").unwrap();
    let model = fixture("qwen2/chat-rm");
    let run = |devices: &str| {
        let flags = [
            "--generations",
            file.to_str().unwrap(),
            "--devices",
            devices,
        ];
        score(&model, &flags).unwrap_or_else(|e| panic!("--devices {devices}: {e}"))
    };
    let (one, _) = run("1");
    let records = json_lines(&one);
    assert_eq!(records.len(), n);
    for r in &records {
        let rewards = r["rewards"].as_array().expect("rewards");
        assert_eq!(rewards.len(), 2, "{r}");
        assert!(
            rewards
                .iter()
                .all(|v| v.as_f64().is_some_and(f64::is_finite))
        );
    }
    let (three, _) = run("3");
    assert_eq!(one, three);
}

#[test]
fn an_unknown_model_type_is_named_with_its_file_not_a_rust_type() {
    let dir = scratch("mistral");
    let config = serde_json::json!({
        "model_type": "mistral",
        "vocab_size": 770,
        "hidden_size": 64,
        "intermediate_size": 128,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "hidden_act": "silu",
        "max_position_embeddings": 128,
        "rms_norm_eps": 1e-6,
        "rope_theta": 10000.0,
        "sliding_window": 4096,
        "tie_word_embeddings": false,
    });
    std::fs::write(dir.join("config.json"), config.to_string()).unwrap();
    let dir = dir.to_str().unwrap();
    let check = |tool: &str, err: String| {
        assert!(
            err.contains("model_type") && err.contains("mistral") && err.contains("config.json"),
            "{tool}: {err}"
        );
        assert!(
            !err.contains("ForCausalLM") && !err.contains("ForSequenceClassification"),
            "{tool}: {err}"
        );
    };
    let err = generate(dir, &["--prompt", "hi", "--max-new-tokens", "2"]).unwrap_err();
    check("generate", err);
    let err = score(dir, &["--pairs", "pairs.jsonl"]).unwrap_err();
    check("score", err);
}

/// `dir` with fresh LoRA adapters (`B = 0`: the base's outputs) saved as PEFT adapters over
/// `base` (`base_model_name_or_path`, no `tokenizer.json` of their own).
fn fresh_adapter<M>(model: M, base: &str, dir: &Path)
where
    M: kiln::model::Adapters<kiln::backend::Selected>,
{
    let targets = kiln::model::lora::parse_targets("q,k,v,o,gate,up,down").unwrap();
    let lora = kiln::model::LoraConfig::new(targets)
        .with_rank(2)
        .with_alpha(4.0)
        .with_base_model_name_or_path(Some(base.to_string()));
    let device = Default::default();
    model
        .with_lora(&lora, &device)
        .unwrap()
        .save_adapter(dir)
        .unwrap();
    assert!(!dir.join("config.json").exists() && !dir.join("tokenizer.json").exists());
}

#[test]
fn peft_adapter_directories_load_over_their_qwen2_base() {
    use kiln::model::{HfModel, Qwen2ForCausalLM, Qwen2ForSequenceClassification};
    type B = kiln::backend::Selected;
    let device = Default::default();

    // generate: --model-dir ADAPTER (model_type, tokenizer and template from the base) and
    // --adapter ADAPTER give the base's greedy tokens.
    let base = fixture("qwen2/chat");
    let adapter = scratch("qwen2-chat-adapter");
    let lm = Qwen2ForCausalLM::<B>::load_hf(Path::new(&base), &device).unwrap();
    fresh_adapter(lm, &base, &adapter);
    let adapter = adapter.to_str().unwrap();
    let flags = [
        "--prompt",
        "Hi",
        "--max-new-tokens",
        "4",
        "--temperature",
        "0",
        "--json",
    ];
    let plain = generate(&base, &flags).unwrap();
    assert_eq!(generate(adapter, &flags).unwrap(), plain);
    let with_flag: Vec<&str> = flags
        .iter()
        .copied()
        .chain(["--adapter", adapter])
        .collect();
    assert_eq!(generate(&base, &with_flag).unwrap(), plain);

    // score: the same with a SEQ_CLS adapter (which carries the score head).
    let base = fixture("qwen2/chat-rm");
    let adapter = scratch("qwen2-rm-adapter");
    let rm = Qwen2ForSequenceClassification::<B>::load_hf(Path::new(&base), &device).unwrap();
    fresh_adapter(rm, &base, &adapter);
    let adapter = adapter.to_str().unwrap();
    let pairs = fixture("reward/tiny-rm/pairs.jsonl");
    let flags = ["--pairs", pairs.as_str(), "--json"];
    let (plain, _) = score(&base, &flags).unwrap();
    assert_eq!(score(adapter, &flags).unwrap().0, plain);
    let with_flag: Vec<&str> = flags
        .iter()
        .copied()
        .chain(["--adapter", adapter])
        .collect();
    assert_eq!(score(&base, &with_flag).unwrap().0, plain);
}
