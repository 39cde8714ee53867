//! A reduced online iterative DPO loop (built-in task, 2 iterations), run through the same code as
//! `examples/iterative_dpo.rs`: gold reward must rise over SFT, every stage file must parse, and a
//! run resumed after a simulated interruption must produce the same summary.

#[path = "../examples/iterative_dpo.rs"]
#[allow(dead_code, unused_imports)]
mod iterative_dpo;

use iterative_dpo::{LoopConfig, Summary, run};
use kiln::data::{
    AnnotatedRecord, GenerationRecord, JsonlReader, PairRecord, PromptRecord, SftRecord,
};
use std::path::{Path, PathBuf};

/// The default built-in task (same SFT and reward-model budget as the example) with two online
/// iterations and a larger evaluation set, so the gain is measured with less sampling noise.
fn reduced(out: PathBuf) -> LoopConfig {
    LoopConfig {
        out,
        iterations: 2,
        eval_prompts: 256,
        ..LoopConfig::default()
    }
}

fn scratch(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(name);
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

fn count<T: serde::de::DeserializeOwned>(path: &Path) -> usize {
    let mut n = 0;
    for record in JsonlReader::<T>::open(path).unwrap_or_else(|e| panic!("{e}")) {
        record.unwrap_or_else(|e| panic!("{e}"));
        n += 1;
    }
    n
}

/// Everything but wall times.
fn numbers(s: &Summary) -> String {
    let mut s = s.clone();
    s.total_seconds = 0.0;
    s.sft.seconds = 0.0;
    for e in &mut s.iterations {
        e.seconds = 0.0;
    }
    if let Some(o) = &mut s.offline_dpo {
        o.seconds = 0.0;
    }
    serde_json::to_string(&s).unwrap()
}

#[test]
fn reduced_loop_learns_writes_parseable_stages_and_resumes() {
    let out = scratch("loop-full");
    let summary = run(&reduced(out.clone())).expect("the reduced loop runs");

    // Gold reward after the loop exceeds SFT's by a meaningful margin (about two standard errors
    // of the paired difference over 512 evaluation responses), and the policy wins more often than
    // it loses against SFT under the hidden gold judge.
    let sft = summary.sft.gold_reward_mean.unwrap();
    let last = summary.iterations.last().unwrap();
    let gold = last.gold_reward_mean.unwrap();
    assert!(
        gold > sft + 0.1,
        "gold reward did not rise: SFT {sft:.3} -> {gold:.3}\n{summary:#?}"
    );
    assert!(last.win_rate_vs_sft.unwrap() > 0.5, "{summary:#?}");
    assert_eq!(
        summary.iterations.len(),
        3,
        "iteration 0 (SFT) plus 2 online iterations"
    );
    assert!(summary.offline_dpo.is_some());

    // Every stage file parses with the kiln-data readers.
    assert!(count::<SftRecord>(&out.join("data/sft.jsonl")) > 0);
    assert!(count::<PairRecord>(&out.join("data/reward_pairs.jsonl")) > 0);
    assert_eq!(
        count::<PromptRecord>(&out.join("data/eval_prompts.jsonl")),
        256
    );
    for dir in ["iter_1", "iter_2", "offline"] {
        let d = out.join(dir);
        let prompts = count::<PromptRecord>(&d.join("prompts.jsonl"));
        assert_eq!(
            count::<GenerationRecord>(&d.join("generations.jsonl")),
            prompts
        );
        assert_eq!(
            count::<AnnotatedRecord>(&d.join("annotated.jsonl")),
            prompts
        );
        assert!(count::<PairRecord>(&d.join("pairs.jsonl")) > 0);
        assert!(
            d.join("policy/config.json").exists() && d.join("policy/model.safetensors").exists()
        );
    }
    let on_disk: Summary =
        serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).unwrap()).unwrap();
    assert_eq!(numbers(&on_disk), numbers(&summary));
    assert!(
        std::fs::read_to_string(out.join("reward_plot.svg"))
            .unwrap()
            .starts_with("<svg")
    );

    // Simulated interruption: the second iteration died after generating (its annotations, pairs,
    // policy and evaluation are gone, a half-written checkpoint is left behind) and the offline
    // baseline never started. Resuming must reproduce the same summary.
    let it2 = out.join("iter_2");
    for f in [
        "annotated.jsonl",
        "pairs.jsonl",
        "pairs_stats.json",
        "eval.json",
    ] {
        std::fs::remove_file(it2.join(f)).unwrap();
    }
    std::fs::rename(it2.join("policy"), it2.join("policy.partial")).unwrap();
    std::fs::remove_dir_all(out.join("offline")).unwrap();
    std::fs::remove_file(out.join("summary.json")).unwrap();
    let resumed = run(&reduced(out.clone())).expect("the resumed loop runs");
    assert_eq!(
        numbers(&resumed),
        numbers(&summary),
        "resume changed the results"
    );

    // A different configuration in the same directory is refused, not mixed in.
    let mut other = reduced(out);
    other.beta = 0.5;
    let err = run(&other).unwrap_err().to_string();
    assert!(err.contains("different configuration"), "{err}");
}

/// Real-model mode: Hugging Face directories (policy with its tokenizer, a
/// `LlamaForSequenceClassification` reward model) and a prompts file instead of the built-in task.
/// No gold judge exists, so evaluation reports the proxy reward only.
#[test]
fn real_model_mode_runs_on_hf_directories() {
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let out = scratch("loop-real");
    std::fs::create_dir_all(&out).unwrap();
    let prompts = out.with_extension("prompts.jsonl");
    let lines: Vec<String> = (0..24)
        .map(|i| {
            format!(r#"{{"messages": [{{"role": "user", "content": "Question number {i}?"}}]}}"#)
        })
        .collect();
    std::fs::write(&prompts, lines.join("\n")).unwrap();
    let cfg = LoopConfig {
        out: out.clone(),
        policy: Some(fixtures.join("sampling/tiny-chat")),
        reward_model: Some(fixtures.join("reward/tiny-rm")),
        prompts: Some(prompts),
        iterations: 1,
        prompts_per_iteration: 8,
        k: 4,
        eval_prompts: 4,
        max_new_tokens: 8,
        ..LoopConfig::default()
    };
    let summary = run(&cfg).expect("real-model mode runs");
    assert!(
        summary.sft.gold_reward_mean.is_none(),
        "no gold judge with real models"
    );
    assert_eq!(summary.iterations.len(), 2);
    for e in summary.iterations.iter().chain(&summary.offline_dpo) {
        assert!(
            e.proxy_reward_mean.is_finite() && e.kl_to_reference.is_finite(),
            "{e:?}"
        );
    }
    assert_eq!(count::<PromptRecord>(&out.join("iter_1/prompts.jsonl")), 8);
    assert!(count::<PairRecord>(&out.join("iter_1/pairs.jsonl")) > 0);
    assert!(out.join("iter_1/policy/model.safetensors").exists());
    assert!(
        !out.join("sft").exists(),
        "no SFT stage with a given policy"
    );
}
