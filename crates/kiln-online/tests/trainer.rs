//! [`OnlineTrainer`] on Hugging Face fixture directories (a Llama chat policy with its tokenizer
//! and template, a Llama reward model; the Qwen2 pair picked from `model_type`): the whole loop
//! runs and writes parseable stage files, a run killed anywhere resumes to the same summary, a
//! directory holding other settings is refused by key, RRHF, LoRA, the pairwise annotator, a
//! judge and two peers run, all-tie iterations carry the policy over, bad input is named.
#![cfg(test)]

use std::path::{Path, PathBuf};
use std::sync::Arc;

use burn::backend::{Autodiff, Flex};
use kiln_data::{
    AnnotatedRecord, Content, GenerationRecord, JsonlReader, Message, PairRecord, PromptRecord,
    RankedRecord,
};
use kiln_model::{LlamaForSequenceClassification, LoraConfig, LoraTarget, MissingScore};
use kiln_online::{
    Algorithm, OnlineConfig, OnlineTrainer, RewardSource, Silent, StageEvent, StageHook, Summary,
};
use kiln_test_support::{fixture, one_at_a_time, scratch};

type B = Autodiff<Flex>;

/// Questions in both prompt forms (text, and messages with a system turn).
fn prompts(n: usize) -> Vec<Content> {
    (0..n)
        .map(|i| {
            if i % 3 == 0 {
                Content::Messages(vec![
                    Message::system("Be brief."),
                    Message::user(format!("Question number {i}?")),
                ])
            } else {
                Content::Text(format!("Question number {i}?"))
            }
        })
        .collect()
}

/// Two iterations of 8 prompts, K = 4, 8 new tokens, one epoch, the offline baseline.
fn small() -> OnlineConfig {
    let generation = OnlineConfig::default_generation()
        .with_num_responses(4)
        .with_max_new_tokens(8);
    OnlineConfig::new()
        .with_iterations(2)
        .with_prompts_per_iteration(Some(8))
        .with_eval_prompts(4)
        .with_epochs(1)
        .with_offline(true)
        .with_generation(generation)
        .with_dpo_optimizer(OnlineConfig::default_optimizer(1e-3, 4))
        .with_rrhf_optimizer(OnlineConfig::default_optimizer(1e-3, 2))
}

fn trainer(config: OnlineConfig) -> OnlineTrainer<B> {
    OnlineTrainer::new(
        fixture("sampling/tiny-chat"),
        RewardSource::bt(fixture("reward/tiny-rm")),
        prompts(24),
        config,
    )
    .with_observer(Arc::new(Silent))
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
    for e in std::iter::once(&mut s.sft)
        .chain(s.online.iter_mut())
        .chain(s.offline.as_mut())
    {
        e.seconds = 0.0;
    }
    serde_json::to_string(&s).unwrap()
}

#[test]
fn the_loop_runs_writes_parseable_stages_resumes_and_refuses_other_settings() {
    let _turn = one_at_a_time();
    let out = scratch("online-run");
    let summary = trainer(small()).run(&out).expect("the loop runs");
    assert_eq!(summary.online.len(), 2);
    assert!(summary.sft.gold_reward_mean.is_none(), "no judge");
    for e in summary.online.iter().chain(&summary.offline) {
        assert!(
            e.proxy_reward_mean.is_finite() && e.kl_to_sft.is_finite(),
            "{e:?}"
        );
        assert!(e.pairs > 0, "{e:?}");
    }
    for dir in ["iter_1", "iter_2", "offline"] {
        let d = out.join(dir);
        let n = count::<PromptRecord>(&d.join("prompts.jsonl"));
        assert_eq!(n, if dir == "offline" { 16 } else { 8 });
        assert_eq!(count::<GenerationRecord>(&d.join("generations.jsonl")), n);
        assert_eq!(count::<AnnotatedRecord>(&d.join("annotated.jsonl")), n);
        assert!(count::<PairRecord>(&d.join("pairs.jsonl")) > 0);
        assert!(d.join("policy/model.safetensors").exists());
    }
    // One metrics line per optimiser step, with TRL's DPO names.
    let text = std::fs::read_to_string(out.join("iter_1/dpo_metrics.jsonl")).unwrap();
    for (i, line) in text.lines().enumerate() {
        let l: serde_json::Value = serde_json::from_str(line).unwrap();
        assert_eq!(l["step"], i + 1);
        for key in ["loss", "grad_norm", "learning_rate", "rewards/accuracies"] {
            assert!(l.get(key).is_some(), "{key} missing in {l}");
        }
    }
    let on_disk: Summary =
        serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).unwrap()).unwrap();
    assert_eq!(numbers(&on_disk), numbers(&summary));
    let svg = std::fs::read_to_string(out.join("reward_plot.svg")).unwrap();
    assert!(svg.starts_with("<svg"));
    // The run's config.json is the library's config.
    let config: OnlineConfig =
        serde_json::from_str(&std::fs::read_to_string(out.join("config.json")).unwrap()).unwrap();
    assert_eq!(config, small());

    // A rerun finds every stage done and reports the same numbers.
    let again = trainer(small()).run(&out).unwrap();
    assert_eq!(numbers(&again), numbers(&summary));

    // Other settings in the same directory are refused, naming the setting.
    let mut other = small();
    other.dpo.loss.beta = 0.5;
    let err = trainer(other).run(&out).unwrap_err().to_string();
    assert!(
        err.contains("dpo.loss.beta") && err.contains("other settings"),
        "{err}"
    );
}

/// A hook that "kills" the run at `(stage directory name, stage, event)`.
fn kill_at(dir: &'static str, stage: &'static str, event: StageEvent) -> StageHook {
    Arc::new(move |d: &Path, s: &str, e: StageEvent| {
        let name = d.file_name().unwrap().to_string_lossy();
        let here = if dir == "." {
            name == "online-kill"
        } else {
            name == dir
        };
        if here && s == stage && e == event {
            return Err("simulated kill".into());
        }
        Ok(())
    })
}

/// Killed at several points (mid-stage, mid-write of checkpoints and stage files, mid-resume),
/// the run resumes each time and ends with exactly the uninterrupted run's summary and metrics.
#[test]
fn a_run_killed_anywhere_resumes_to_the_same_summary() {
    let _turn = one_at_a_time();
    let clean_dir = scratch("online-clean");
    let clean = trainer(small()).run(&clean_dir).unwrap();
    let out = scratch("online-kill");
    let kills = [
        (".", "sft_eval", StageEvent::Written),
        ("iter_1", "annotate", StageEvent::Written),
        ("iter_1", "train", StageEvent::Written), // mid-write of the iteration's policy
        ("iter_2", "generate", StageEvent::Start),
        ("iter_2", "eval", StageEvent::Written),
        ("offline", "select", StageEvent::Written),
        ("offline", "train", StageEvent::Start),
    ];
    for (dir, stage, event) in kills {
        let err = trainer(small())
            .with_hook(kill_at(dir, stage, event))
            .run(&out)
            .expect_err("the hook stops the run")
            .to_string();
        assert!(err.contains("simulated kill"), "{err}");
        if event == StageEvent::Written && stage == "train" {
            let d = out.join(dir);
            assert!(d.join(".policy.partial").exists() && !d.join("policy").exists());
        }
    }
    let resumed = trainer(small()).run(&out).unwrap();
    assert_eq!(
        numbers(&resumed),
        numbers(&clean),
        "resume changed the results"
    );
    assert!(
        !out.join("iter_1/.policy.partial").exists(),
        "leftovers cleaned"
    );
    for file in ["iter_1/dpo_metrics.jsonl", "iter_2/dpo_metrics.jsonl"] {
        let read = |root: &Path| std::fs::read_to_string(root.join(file)).unwrap();
        assert_eq!(
            read(&out),
            read(&clean_dir),
            "{file} differs after the kills"
        );
    }
}

#[test]
fn rrhf_with_lora_the_pairwise_annotator_and_a_judge_run() {
    let _turn = one_at_a_time();
    let out = scratch("online-rrhf-lora");
    let lora = LoraConfig::new(vec![LoraTarget::Q, LoraTarget::V]).with_rank(4);
    let config = small()
        .with_algorithm(Algorithm::Rrhf)
        .with_lora(Some(lora));
    let words = |_: &str, r: &str, finished: bool| r.len() as f32 + f32::from(u8::from(finished));
    let summary = trainer(config).with_judge(words).run(&out).unwrap();
    assert!(out.join("iter_1/policy/adapter_model.safetensors").exists());
    assert!(
        !out.join("iter_1/policy/model.safetensors").exists(),
        "only the adapter"
    );
    assert!(count::<RankedRecord>(&out.join("iter_1/ranked.jsonl")) > 0);
    let last = summary.online.last().unwrap();
    assert!(last.gold_reward_mean.is_some() && last.win_rate_vs_sft.is_some());
    let ci = last.gold_gain_ci.unwrap();
    assert!(ci.low <= ci.high);

    // RLHFlow's pairwise preference model from an HF causal-LM directory (the policy fixture).
    let out = scratch("online-pairwise");
    let summary = OnlineTrainer::<B>::new(
        fixture("sampling/tiny-chat"),
        RewardSource::pairwise(fixture("sampling/tiny-chat")),
        prompts(24),
        small().with_offline(false),
    )
    .with_observer(Arc::new(Silent))
    .run(&out)
    .unwrap();
    let annotated: Vec<AnnotatedRecord> =
        kiln_data::read_jsonl(out.join("iter_1/annotated.jsonl")).unwrap();
    for r in &annotated {
        let sum: f64 = r.rewards.iter().sum();
        assert!(
            (sum - 2.0).abs() < 1e-3,
            "K = 4 win probabilities sum to 2: {sum}"
        );
    }
    assert!(
        (summary.sft.proxy_reward_mean - 0.5).abs() < 1e-9,
        "SFT against itself"
    );
}

/// An iteration whose responses all tie (a reward model with a zero score head) trains nothing:
/// the iteration is recorded with 0 pairs, the policy carried over unchanged, the run goes on.
#[test]
fn all_tie_iterations_carry_the_policy_over() {
    let _turn = one_at_a_time();
    let out = scratch("online-ties");
    let rm_dir = scratch("online-ties-rm");
    let src = fixture("reward/tiny-rm");
    let mut rm = LlamaForSequenceClassification::<Flex>::from_pretrained(
        &src,
        &Default::default(),
        MissingScore::Error,
    )
    .unwrap();
    rm.score.weight = burn::module::Param::from_tensor(rm.score.weight.val().zeros_like());
    rm.save_pretrained(&rm_dir, Default::default()).unwrap();
    for f in [
        "tokenizer.json",
        "tokenizer_config.json",
        "chat_template.jinja",
    ] {
        std::fs::copy(src.join(f), rm_dir.join(f)).unwrap();
    }
    let summary = OnlineTrainer::<B>::new(
        fixture("sampling/tiny-chat"),
        RewardSource::bt(&rm_dir),
        prompts(24),
        small(),
    )
    .with_observer(Arc::new(Silent))
    .run(&out)
    .unwrap();
    for e in summary.online.iter().chain(&summary.offline) {
        assert_eq!(e.pairs, 0);
        assert!(e.ties_dropped >= 8, "every prompt tied: {e:?}");
    }
    assert!(summary.nothing_trained);
    assert!(summary.to_string().contains("NOTHING WAS TRAINED"));
    assert!(summary.verdict().contains("NOTHING WAS TRAINED"));
    let a = std::fs::read(out.join("iter_2/policy/model.safetensors")).unwrap();
    let b = std::fs::read(fixture("sampling/tiny-chat/model.safetensors")).unwrap();
    assert_eq!(a, b, "the policy is carried over unchanged");
}

/// Two peers (threads sharing the CPU): training data-parallel, generation, annotation and
/// reference log-probs sharded; the run completes, says so, and resumes.
#[test]
fn two_peers_run_the_loop_and_resume() {
    let _turn = one_at_a_time();
    let out = scratch("online-two-peers");
    let run = || {
        trainer(small().with_offline(false))
            .with_devices(vec![Default::default(); 2])
            .run(&out)
            .unwrap()
    };
    let summary = run();
    assert_eq!(summary.peers, 2);
    assert!(summary.online.iter().all(|e| e.pairs > 0));
    assert_eq!(numbers(&run()), numbers(&summary));
}

/// The architecture comes from `config.json`: Qwen2 checkpoints run through the same call.
#[test]
fn qwen2_checkpoints_are_picked_from_model_type() {
    let _turn = one_at_a_time();
    let out = scratch("online-qwen2");
    let summary = OnlineTrainer::<B>::new(
        fixture("qwen2/chat"),
        RewardSource::bt(fixture("qwen2/chat-rm")),
        prompts(24),
        small().with_offline(false),
    )
    .with_observer(Arc::new(Silent))
    .run(&out)
    .unwrap();
    assert_eq!(summary.online.len(), 2);
    let config = std::fs::read_to_string(out.join("iter_2/policy/config.json")).unwrap();
    assert!(config.contains("\"qwen2\""), "{config}");
}

#[test]
fn bad_input_is_named() {
    let _turn = one_at_a_time();
    // An output directory that cannot be created.
    let file = scratch("online-bad").join("a-file");
    std::fs::write(&file, "not a directory").unwrap();
    let err = trainer(small())
        .run(file.join("run"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("a-file"), "{err}");
    // Too few prompts to hold some out for evaluation.
    let err = OnlineTrainer::<B>::new(
        fixture("sampling/tiny-chat"),
        RewardSource::bt(fixture("reward/tiny-rm")),
        prompts(3),
        small(),
    )
    .run(scratch("online-few"))
    .unwrap_err()
    .to_string();
    assert!(err.contains("eval_prompts"), "{err}");
    // An architecture Kiln does not implement: named with the file.
    let dir: PathBuf = scratch("online-mistral");
    let config = std::fs::read_to_string(fixture("sampling/tiny-chat/config.json")).unwrap();
    std::fs::write(
        dir.join("config.json"),
        config.replace("\"llama\"", "\"mistral\""),
    )
    .unwrap();
    let err = OnlineTrainer::<B>::new(
        &dir,
        RewardSource::bt(fixture("reward/tiny-rm")),
        prompts(24),
        small(),
    )
    .with_encoder(
        kiln_data::ChatEncoder::from_model_dir(
            fixture("sampling/tiny-chat"),
            &Default::default(),
            Default::default(),
            Default::default(),
        )
        .unwrap(),
    )
    .run(scratch("online-mistral-run"))
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("mistral") && err.contains("config.json"),
        "{err}"
    );
    // A config that cannot run names the field.
    let err = trainer(small().with_epochs(0))
        .run(scratch("online-epochs"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("epochs"), "{err}");
}

#[test]
fn nan_metrics_round_trip_through_summary_json() {
    let mut summary = Summary::default();
    summary.sft.kl_to_sft = f64::NAN;
    let text = serde_json::to_string(&summary).unwrap();
    assert!(text.contains("\"kl_to_sft\":null"), "{text}");
    let back: Summary = serde_json::from_str(&text).unwrap();
    assert!(back.sft.kl_to_sft.is_nan());
}
