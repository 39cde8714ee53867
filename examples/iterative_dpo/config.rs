//! The run's configuration: the library's [`OnlineConfig`] plus the built-in task's options
//! ([`TaskConfig`]), written flattened into one `<out>/config.json` (so `OnlineConfig` reads it
//! straight back), and the built-in task's defaults.

use kiln::burn::config::Config;
use kiln::data::TruncationConfig;
use kiln::online::{OnlineConfig, PromptOrder, ReferenceChoice};
use kiln::reward::AnnotatorKind;
use serde_json::{Map, Value};
use std::path::PathBuf;

fn t() -> TaskConfig {
    TaskConfig::new()
}

/// A finite number (a NaN or an infinity is refused, naming the flag, instead of reaching the run).
pub fn finite(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v.is_finite() => Ok(v),
        Ok(v) => Err(format!("{v} is not a finite number")),
        Err(e) => Err(e.to_string()),
    }
}

/// The built-in task's options, and where the run's models and prompts come from: each field is
/// a flag (its doc is the help) and a key of `config.json`.
#[derive(Config, Debug, PartialEq, clap::Args)]
pub struct TaskConfig {
    /// Output directory (stage files, checkpoints, summary.json, reward_plot.svg).
    #[config(default = "PathBuf::from(\"runs/iterative_dpo\")")]
    #[arg(long, value_name = "DIR", default_value_os_t = t().out)]
    pub out: PathBuf,
    /// Peers in this process (on a CPU they share the cores): training data-parallel,
    /// generation, annotation and reference log-probs sharded (the same results).
    #[config(default = 1)]
    #[arg(long, default_value_t = t().devices)]
    pub devices: usize,
    /// Who scores the responses: bt (a reward model) | pairwise (a pairwise preference model).
    #[config(default = "AnnotatorKind::Bt")]
    #[arg(long, value_name = "ANNOTATOR", default_value_t = t().annotator)]
    pub annotator: AnnotatorKind,
    /// The pairwise preference model (HF causal-LM directory); the built-in task trains one
    /// when absent.
    #[arg(long, value_name = "DIR")]
    pub annotator_model: Option<PathBuf>,
    /// Your policy: a Hugging Face directory (config.json, safetensors, tokenizer.json, chat
    /// template), Llama or Qwen2.
    #[arg(long, value_name = "DIR")]
    pub policy: Option<PathBuf>,
    /// Your Bradley-Terry reward model: a Hugging Face *ForSequenceClassification directory (one
    /// label), Llama or Qwen2, full or PEFT adapters.
    #[arg(long, value_name = "DIR")]
    pub reward_model: Option<PathBuf>,
    /// Your prompts: JSON Lines of {"prompt": ...} or {"messages": [...]}.
    #[arg(long, value_name = "FILE.jsonl")]
    pub prompts: Option<PathBuf>,
    /// Built-in task: seed of the setup (data, SFT policy, reward model).
    #[config(default = 42)]
    #[arg(long, default_value_t = t().setup_seed)]
    pub setup_seed: u64,
    /// Built-in task: start from this --setup-only directory instead of assets/builtin.
    #[arg(long, value_name = "DIR")]
    pub setup_from: Option<PathBuf>,
    /// Built-in task: train the SFT policy and reward model in the run (trained anyway when a
    /// setup setting differs from the shipped ones).
    #[config(default = false)]
    #[arg(long)]
    pub train_setup: bool,
    /// Built-in task: tiny policy hidden size.
    #[config(default = 128)]
    #[arg(long, default_value_t = t().hidden_size)]
    pub hidden_size: usize,
    /// Built-in task: decoder layers.
    #[config(default = 2)]
    #[arg(long, default_value_t = t().layers)]
    pub layers: usize,
    /// Built-in task: phrasings of each question in the training prompts (1 to 6; evaluation
    /// asks in one more, never trained on).
    #[config(default = 6)]
    #[arg(long, default_value_t = t().train_phrasings)]
    pub train_phrasings: usize,
    /// Built-in task: SFT demonstrations.
    #[config(default = 3000)]
    #[arg(long, default_value_t = t().sft_examples)]
    pub sft_examples: usize,
    /// Built-in task: SFT optimiser steps.
    #[config(default = 1000)]
    #[arg(long, default_value_t = t().sft_steps)]
    pub sft_steps: usize,
    /// Built-in task: SFT learning rate.
    #[config(default = 3e-3)]
    #[arg(long, value_parser = finite, allow_hyphen_values = true, default_value_t = t().sft_lr)]
    pub sft_lr: f64,
    /// Built-in task: preference pairs for the proxy reward model.
    #[config(default = 32000)]
    #[arg(long, default_value_t = t().rm_pairs)]
    pub rm_pairs: usize,
    /// Built-in task: reward-model optimiser steps.
    #[config(default = 3600)]
    #[arg(long, default_value_t = t().rm_steps)]
    pub rm_steps: usize,
    /// Built-in task: reward-model learning rate.
    #[config(default = 1e-3)]
    #[arg(long, value_parser = finite, allow_hyphen_values = true, default_value_t = t().rm_lr)]
    pub rm_lr: f64,
    /// Built-in task: fraction of reward-model labels flipped (human label noise).
    #[config(default = 0.1)]
    #[arg(long, value_parser = finite, allow_hyphen_values = true, default_value_t = t().label_noise)]
    pub label_noise: f64,
    /// Built-in task on a real policy: prompts whose samples make the reward model's pairs.
    #[config(default = 128)]
    #[arg(long, default_value_t = t().rm_prompts)]
    pub rm_prompts: usize,
    /// Built-in task on a real policy: samples per reward-model prompt.
    #[config(default = 4)]
    #[arg(long, default_value_t = t().rm_samples)]
    pub rm_samples: usize,
    /// Built-in task on a real policy: LoRA rank of its reward model (0 = every weight).
    #[config(default = 8)]
    #[arg(long, default_value_t = t().rm_lora_rank)]
    pub rm_lora_rank: usize,
    /// Built-in task: micro-batch size of SFT and reward-model training.
    #[config(default = 32)]
    #[arg(long, default_value_t = t().batch_size)]
    pub batch_size: usize,
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
        .with_max_new_tokens(24)
        .with_concurrent_batches(kiln::backend::decode_concurrency());
    OnlineConfig::new()
        .with_iterations(4)
        .with_prompts_per_iteration(Some(128))
        .with_prompt_order(PromptOrder::Random)
        .with_eval_prompts(128)
        .with_eval_samples(2)
        .with_reference(ReferenceChoice::Previous)
        .with_epochs(4)
        .with_offline(true)
        .with_truncation(
            TruncationConfig::new()
                .with_max_prompt_len(96)
                .with_max_total_len(160),
        )
        .with_generation(generation)
        .with_dpo_optimizer(OnlineConfig::default_optimizer(3e-4, 16))
        .with_rrhf_optimizer(OnlineConfig::default_optimizer(1e-4, 4))
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
        let given = (
            t.policy.is_some(),
            t.reward_model.is_some(),
            t.prompts.is_some(),
        );
        if !matches!(given, (true, true, true) | (_, false, false)) {
            return Err(
                "--reward-model and --prompts go together, with --policy (real-model \
                        mode); --policy alone runs the built-in task on that policy"
                    .into(),
            );
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
