//! The run's configuration: the library's [`OnlineConfig`] plus the built-in task's options
//! ([`TaskConfig`]), written flattened into one `<out>/config.json` (so `OnlineConfig` reads it
//! straight back), and the built-in task's defaults.

use kiln::burn::config::Config;
use kiln::data::{SelectionStrategy, TruncationConfig};
use kiln::losses::DpoConfig;
use kiln::online::{Algorithm, OnlineConfig, PromptOrder, ReferenceChoice};
use kiln::reward::AnnotatorKind;
use kiln::sampling::SamplerConfig;
use serde_json::{Map, Value};
use std::path::PathBuf;

/// The built-in task's options, and where the run's models and prompts come from.
#[derive(Config, Debug, PartialEq)]
pub struct TaskConfig {
    /// Output directory.
    #[config(default = "PathBuf::from(\"runs/iterative_dpo\")")]
    pub out: PathBuf,
    /// Seed of the setup (data, SFT policy, reward model).
    #[config(default = 42)]
    pub setup_seed: u64,
    /// Start from this `--setup-only` directory instead of the shipped `assets/builtin`.
    pub setup_from: Option<PathBuf>,
    /// Train the SFT policy and reward model in the run instead of installing the shipped ones.
    #[config(default = false)]
    pub train_setup: bool,
    /// Tiny policy hidden size.
    #[config(default = 128)]
    pub hidden_size: usize,
    /// Tiny policy decoder layers.
    #[config(default = 2)]
    pub layers: usize,
    /// Phrasings of each question in the training prompts (1 to 6).
    #[config(default = 6)]
    pub train_phrasings: usize,
    /// SFT demonstrations.
    #[config(default = 3000)]
    pub sft_examples: usize,
    /// SFT optimiser steps.
    #[config(default = 1000)]
    pub sft_steps: usize,
    /// SFT learning rate.
    #[config(default = 3e-3)]
    pub sft_lr: f64,
    /// Preference pairs for the proxy reward model.
    #[config(default = 32000)]
    pub rm_pairs: usize,
    /// Reward-model optimiser steps.
    #[config(default = 3600)]
    pub rm_steps: usize,
    /// Reward-model learning rate.
    #[config(default = 1e-3)]
    pub rm_lr: f64,
    /// Fraction of reward-model labels flipped.
    #[config(default = 0.1)]
    pub label_noise: f64,
    /// On a real policy: prompts whose samples make the reward model's pairs.
    #[config(default = 128)]
    pub rm_prompts: usize,
    /// On a real policy: samples per reward-model prompt.
    #[config(default = 4)]
    pub rm_samples: usize,
    /// On a real policy: LoRA rank of the reward model (0 = every weight).
    #[config(default = 8)]
    pub rm_lora_rank: usize,
    /// Micro-batch size of SFT and reward-model training.
    #[config(default = 32)]
    pub batch_size: usize,
    /// Peers in this process.
    #[config(default = 1)]
    pub devices: usize,
    /// Who scores the responses.
    #[config(default = "AnnotatorKind::Bt")]
    pub annotator: AnnotatorKind,
    /// The pairwise preference model's directory.
    pub annotator_model: Option<PathBuf>,
    /// A Hugging Face policy directory instead of the built-in task's.
    pub policy: Option<PathBuf>,
    /// A Hugging Face reward-model directory.
    pub reward_model: Option<PathBuf>,
    /// A prompts JSONL file.
    pub prompts: Option<PathBuf>,
}

/// What the loop runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// The built-in task with its tiny policy.
    Builtin,
    /// The built-in task on a real policy (`--policy` alone).
    BuiltinOnPolicy,
    /// Real checkpoints and prompts (`--policy --reward-model --prompts`).
    Real,
}

/// The whole configuration of a run.
#[derive(Debug, Clone, PartialEq)]
pub struct LoopConfig {
    /// The loop's settings (the library's).
    pub online: OnlineConfig,
    /// The task's.
    pub task: TaskConfig,
}

/// The built-in task's loop settings: what its defaults were measured with (docs/RESULTS.md).
pub fn online_defaults() -> OnlineConfig {
    let generation = OnlineConfig::default_generation()
        .with_sampler(SamplerConfig::new())
        .with_num_responses(8)
        .with_max_new_tokens(24)
        .with_prompt_batch_size(32)
        .with_concurrent_batches(kiln::backend::decode_concurrency());
    let mut dpo = OnlineConfig::new().dpo;
    dpo.loss = DpoConfig::new().with_beta(0.1);
    OnlineConfig::new()
        .with_iterations(4)
        .with_prompts_per_iteration(Some(128))
        .with_prompt_order(PromptOrder::Random)
        .with_eval_prompts(128)
        .with_eval_samples(2)
        .with_reference(ReferenceChoice::Previous)
        .with_choose(SelectionStrategy::MaxMin)
        .with_epochs(4)
        .with_offline(true)
        .with_truncation(
            TruncationConfig::new()
                .with_max_prompt_len(96)
                .with_max_total_len(160),
        )
        .with_generation(generation)
        .with_dpo(dpo)
        .with_dpo_optimizer(OnlineConfig::default_optimizer(3e-4, 16))
        .with_rrhf_optimizer(OnlineConfig::default_optimizer(1e-4, 4))
        .with_algorithm(Algorithm::Dpo)
}

impl Default for LoopConfig {
    fn default() -> Self {
        LoopConfig {
            online: online_defaults(),
            task: TaskConfig::new(),
        }
    }
}

impl LoopConfig {
    /// What the loop runs on.
    pub fn mode(&self) -> Mode {
        match (&self.task.policy, &self.task.reward_model) {
            (None, _) => Mode::Builtin,
            (Some(_), None) => Mode::BuiltinOnPolicy,
            (Some(_), Some(_)) => Mode::Real,
        }
    }

    /// Both configs flattened into one JSON object (the task's keys next to the loop's).
    pub fn to_json(&self) -> Value {
        let mut all = object(&self.online);
        all.extend(object(&self.task));
        Value::Object(all)
    }

    /// The task's settings as `config.json` records them beside the loop's.
    pub fn task_settings(&self) -> Map<String, Value> {
        object(&self.task)
    }

    /// Reads both configs back from one flattened object.
    pub fn from_json(value: Value) -> Result<Self, String> {
        Ok(LoopConfig {
            online: serde_json::from_value(value.clone()).map_err(|e| e.to_string())?,
            task: serde_json::from_value(value).map_err(|e| e.to_string())?,
        })
    }

    /// Rejects settings that cannot run, naming the flag.
    pub fn validate(&self) -> Result<(), String> {
        let t = &self.task;
        let positive = [
            ("--batch-size", t.batch_size),
            ("--devices", t.devices),
            ("--hidden-size", t.hidden_size),
            ("--layers", t.layers),
            ("--sft-steps", t.sft_steps),
            ("--rm-steps", t.rm_steps),
        ];
        if let Some((flag, _)) = positive.iter().find(|(_, v)| *v == 0) {
            return Err(format!("{flag} must be positive"));
        }
        if !(1..=super::task::MAX_TRAIN_PHRASINGS).contains(&t.train_phrasings) {
            return Err(format!(
                "--train-phrasings must lie in 1..={} (got {})",
                super::task::MAX_TRAIN_PHRASINGS,
                t.train_phrasings
            ));
        }
        if !(0.0..=0.5).contains(&t.label_noise) {
            return Err("--label-noise must lie in [0, 0.5]".into());
        }
        if !(t.sft_lr > 0.0 && t.rm_lr > 0.0 && t.sft_lr.is_finite() && t.rm_lr.is_finite()) {
            return Err("--sft-lr and --rm-lr must be positive".into());
        }
        match (
            t.policy.is_some(),
            t.reward_model.is_some(),
            t.prompts.is_some(),
        ) {
            (true, true, true) | (_, false, false) => {}
            _ => {
                return Err("--reward-model and --prompts go together, with --policy \
                            (real-model mode); --policy alone runs the built-in task on that \
                            policy"
                    .into());
            }
        }
        if t.annotator == AnnotatorKind::Pairwise
            && self.mode() != Mode::Builtin
            && t.annotator_model.is_none()
        {
            return Err(
                "--annotator pairwise with a real policy needs --annotator-model DIR".into(),
            );
        }
        if self.mode() == Mode::BuiltinOnPolicy && t.rm_samples < 2 {
            return Err("--rm-samples must be at least 2 to form pairs".into());
        }
        self.online.validate().map_err(|e| e.to_string())
    }
}

fn object(c: &impl serde::Serialize) -> Map<String, Value> {
    match serde_json::to_value(c) {
        Ok(Value::Object(m)) => m,
        _ => Map::new(),
    }
}
