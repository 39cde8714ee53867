//! The loop's library parts with the second architecture: a Qwen2 policy (full and LoRA) and a
//! Qwen2 reward model run two online DPO iterations, an RRHF iteration and an evaluation through
//! `kiln-online` unchanged; every stage resumes, and the saved policies are Qwen2 checkpoints or
//! PEFT adapters over the Qwen2 base.
#![cfg(test)]

use std::path::{Path, PathBuf};

use burn::backend::{Autodiff, Flex};
use kiln_data::{ChatEncoder, Content, TruncationConfig};
use kiln_model::{
    DecoderConfig, HfModel, LoraConfig, LoraTarget, ModelType, Qwen2ForCausalLM,
    Qwen2ForSequenceClassification,
};
use kiln_online::{
    Algorithm, Evaluator, Iteration, OnlineConfig, PolicyStore, ReferenceChoice, Silent,
    StageRunner, exact_save_options,
};
use kiln_reward::{Annotator, AnnotatorKind};
use kiln_test_support::scratch;

type B = Autodiff<Flex>;
type I = Flex;

fn encoder() -> ChatEncoder {
    ChatEncoder::builtin_tiny(TruncationConfig {
        max_prompt_len: 32,
        max_total_len: 48,
    })
    .unwrap()
}

/// A tiny Qwen2 shaped for the built-in tokenizer.
fn config(enc: &ChatEncoder) -> DecoderConfig {
    let mut c = DecoderConfig::tiny(enc.tokenizer.vocab_size(), 32);
    c.tie_word_embeddings = true;
    c.max_position_embeddings = 128;
    c.bos_token_id = enc.template.bos_id();
    c.eos_token_id = enc.stop_ids();
    c.pad_token_id = Some(enc.pad_id);
    c
}

/// pi_0 and the reward model written as Qwen2 checkpoints under `dir`.
fn models(dir: &Path, enc: &ChatEncoder) -> (PathBuf, PathBuf) {
    let device = Default::default();
    let (sft, rm) = (dir.join("sft"), dir.join("rm"));
    let policy = Qwen2ForCausalLM::<I>::init_seeded(&config(enc), 0.2, 1, &device);
    policy.save_hf(&sft, exact_save_options()).unwrap();
    let reward = Qwen2ForSequenceClassification::<I>::init_seeded(&config(enc), 0.2, 2, &device);
    reward.save_hf(&rm, exact_save_options()).unwrap();
    (sft, rm)
}

fn prompts() -> Vec<Content> {
    [
        "What is the capital of France?",
        "Name a colour.",
        "Count to three.",
        "Say hello.",
    ]
    .iter()
    .map(|s| Content::Text(s.to_string()))
    .collect()
}

fn iteration_config(algorithm: Algorithm) -> OnlineConfig {
    let generation = OnlineConfig::default_generation()
        .with_num_responses(4)
        .with_max_new_tokens(6);
    OnlineConfig::new()
        .with_algorithm(algorithm)
        .with_generation(generation)
        .with_epochs(1)
}

fn run_iterations(name: &str, lora: Option<LoraConfig>) {
    let dir = scratch(&format!("online-{name}"));
    let enc = encoder();
    let (sft, rm) = models(&dir, &enc);
    let device = Default::default();
    let annotator: Annotator<I, Qwen2ForSequenceClassification<I>, Qwen2ForCausalLM<I>> =
        Annotator::load(AnnotatorKind::Bt, &rm, &enc, &device).unwrap();
    let store = PolicyStore::<B, Qwen2ForCausalLM<B>>::new(&sft, lora.clone(), device).unwrap();
    let config = iteration_config(Algorithm::Dpo);
    let prompts = prompts();
    let root = StageRunner::open(dir.join("run")).unwrap();
    let mut previous = store.base.clone();
    for t in 1..=2u64 {
        let mut stages = root.child(&format!("iter_{t}")).unwrap();
        let iteration = Iteration {
            config: &config,
            enc: &enc,
            prompts: &prompts,
            reward: annotator.reward_model(),
            store: &store,
            policy_dir: &previous,
            reference_dir: ReferenceChoice::Sft.dir(&store.base, &previous),
            fixed_steps: None,
            seed: 7 + t,
            observer: &Silent,
        };
        let outcome = iteration.run(&mut stages).unwrap();
        assert!(
            outcome.stats.emitted > 0,
            "random models still rank responses"
        );
        assert_eq!(outcome.steps, config.steps(outcome.stats.emitted, None));
        // A rerun skips every finished stage and returns the same outcome.
        let again = iteration.run(&mut stages).unwrap();
        assert_eq!(again, outcome);
        match &lora {
            Some(_) => {
                let text =
                    std::fs::read_to_string(outcome.policy.join("adapter_config.json")).unwrap();
                assert!(text.contains(&store.base.display().to_string()), "{text}");
                assert!(!outcome.policy.join("config.json").exists());
            }
            None => {
                let text = std::fs::read_to_string(outcome.policy.join("config.json")).unwrap();
                assert!(text.contains("Qwen2ForCausalLM"), "{text}");
            }
        }
        // The trained policy loads as Qwen2 (adapters over the base resolved from their config).
        let policy = store.load(&outcome.policy).unwrap();
        assert_eq!(policy.config().model_type, ModelType::Qwen2);
        previous = outcome.policy;
    }

    // Evaluation of the last policy against pi_0, with a judge that prefers short answers.
    let judge = |_: &str, response: &str, _: bool| -(response.len() as f32);
    let setup = Evaluator {
        placement: &store.placement,
        prompts: &prompts,
        enc: &enc,
        annotator: &annotator,
        judge: Some(&judge),
        sft: None,
        generation: OnlineConfig::default_generation()
            .with_num_responses(2)
            .with_max_new_tokens(6),
        seed: 3,
        observer: &Silent,
    };
    let base = setup
        .evaluate(
            "sft",
            &store.load(&store.base).unwrap(),
            &store.load(&store.base).unwrap(),
        )
        .unwrap();
    assert_eq!(base.evaluation.kl_to_sft, 0.0);
    let setup = Evaluator {
        sft: Some(&base),
        ..setup
    };
    let last = setup
        .evaluate(
            "last",
            &store.load(&previous).unwrap(),
            &store.load(&store.base).unwrap(),
        )
        .unwrap();
    let e = last.evaluation;
    assert!(e.kl_to_sft.is_finite() && e.proxy_reward_mean.is_finite());
    assert!(e.win_rate_vs_sft.is_some() && e.gold_gain_ci.is_some());
    assert_eq!(last.responses.len(), prompts.len() * 2);
}

#[test]
fn qwen2_policy_and_reward_model_run_online_dpo() {
    run_iterations("qwen2-full", None);
}

#[test]
fn qwen2_lora_policy_runs_online_dpo_with_the_base_as_reference() {
    let lora = LoraConfig::new(vec![LoraTarget::Q, LoraTarget::V]).with_rank(4);
    run_iterations("qwen2-lora", Some(lora));
}

#[test]
fn qwen2_policy_runs_rrhf() {
    let dir = scratch("online-qwen2-rrhf");
    let enc = encoder();
    let (sft, rm) = models(&dir, &enc);
    let device = Default::default();
    let annotator: Annotator<I, Qwen2ForSequenceClassification<I>, Qwen2ForCausalLM<I>> =
        Annotator::load(AnnotatorKind::Bt, &rm, &enc, &device).unwrap();
    let store = PolicyStore::<B, Qwen2ForCausalLM<B>>::new(&sft, None, device).unwrap();
    let config = iteration_config(Algorithm::Rrhf);
    let prompts = prompts();
    let mut stages = StageRunner::open(dir.join("run")).unwrap();
    let outcome = Iteration {
        config: &config,
        enc: &enc,
        prompts: &prompts,
        reward: annotator.reward_model(),
        store: &store,
        policy_dir: &sft,
        reference_dir: &sft,
        fixed_steps: Some(2),
        seed: 5,
        observer: &Silent,
    }
    .run(&mut stages)
    .unwrap();
    assert_eq!(outcome.steps, 2);
    assert!(outcome.data.ends_with("ranked.jsonl"));
    assert!(dir.join("run/rrhf_metrics.jsonl").exists());
}
