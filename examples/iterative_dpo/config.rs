//! The loop's configuration ([`LoopConfig`], written to `<out>/config.json`) and its checks.

use kiln::data::{DateTime, SelectionStrategy, TemplateChoice, TemplateClock};
use kiln::losses::DpoLoss;
use kiln::model::{LoraConfig, LoraTarget};
pub use kiln::online::{Algorithm, ReferenceChoice};
use kiln::online::{DpoSettings, IterationConfig, RrhfSettings, SamplingSettings};
pub use kiln::reward::AnnotatorKind;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// What the loop runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// The built-in task with a tiny policy trained from scratch (no `--policy`).
    Builtin,
    /// The built-in task on a real policy (`--policy` alone): the policy is pi_0, its own samples
    /// (gold-labelled with noise) train a proxy reward model on its own backbone.
    BuiltinOnPolicy,
    /// Real checkpoints and prompts (`--policy --reward-model --prompts`): no gold judge.
    Real,
}

/// Everything a run depends on; written to `<out>/config.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LoopConfig {
    /// Output directory (stage files, checkpoints, summary, plot).
    pub out: PathBuf,
    /// Master seed.
    pub seed: u64,
    /// DPO or RRHF.
    pub algorithm: Algorithm,
    /// Online iterations T.
    pub iterations: usize,
    /// Responses per prompt K.
    pub k: usize,
    /// Fresh prompts per iteration.
    pub prompts_per_iteration: usize,
    /// Held-out evaluation prompts.
    pub eval_prompts: usize,
    /// Responses sampled per evaluation prompt.
    pub eval_samples: usize,
    /// Maximum new tokens per response.
    pub max_new_tokens: usize,
    /// Sampling temperature for the online generations.
    pub temperature: f64,
    /// Prompts keep at most their last this many tokens.
    pub max_prompt_tokens: usize,
    /// Prompt + response keep at most this many tokens.
    pub max_total_tokens: usize,
    /// DPO beta.
    pub beta: f64,
    /// DPO learning rate.
    pub lr: f64,
    /// DPO-family loss.
    pub loss: DpoLoss,
    /// Pair selection strategy (DPO).
    pub choose: SelectionStrategy,
    /// Reference model for DPO.
    pub reference: ReferenceChoice,
    /// Epochs over each iteration's pairs (DPO) or ranked lists (RRHF).
    pub policy_epochs: usize,
    /// DPO micro-batch size (pairs).
    pub dpo_batch_size: usize,
    /// Weight of an NLL term on the chosen responses added to DPO (TRL's `rpo_alpha`; 0 = plain
    /// DPO).
    pub dpo_nll_weight: f64,
    /// RRHF learning rate.
    pub rrhf_lr: f64,
    /// RRHF micro-batch size (prompts, K responses each).
    pub rrhf_batch_size: usize,
    /// RRHF length normalisation exponent: scores are `logp / |y|^alpha` (1 = the paper).
    pub rrhf_length_alpha: f64,
    /// RRHF weight of the ranking term.
    pub rrhf_rank_weight: f64,
    /// Run the offline baseline (same algorithm, pairs and steps, on SFT samples only).
    pub offline: bool,
    /// Who scores the responses.
    pub annotator: AnnotatorKind,
    /// The pairwise preference model (HF causal-LM directory) for `annotator = pairwise`; the
    /// built-in task trains one on its preference pairs when absent.
    pub annotator_model: Option<PathBuf>,
    /// LoRA rank for the policy (0 = train every weight).
    pub lora_rank: usize,
    /// LoRA alpha.
    pub lora_alpha: f64,
    /// LoRA dropout.
    pub lora_dropout: f64,
    /// Projections that get LoRA adapters.
    pub lora_targets: Vec<LoraTarget>,
    /// Real-model mode: HF policy directory (with tokenizer.json) instead of the built-in task.
    pub policy: Option<PathBuf>,
    /// Real-model mode: HF `LlamaForSequenceClassification` reward-model directory.
    pub reward_model: Option<PathBuf>,
    /// Real-model mode: prompts JSONL (`prompt` or `messages`).
    pub prompts: Option<PathBuf>,
    /// Real-model mode: the policy's chat template (`checkpoint`, `llama3` or a Jinja file).
    pub chat_template: TemplateChoice,
    /// Date `strftime_now` returns in chat templates (`YYYY-MM-DD`); the system date when absent.
    pub template_date: Option<String>,
    /// Built-in task: tiny policy hidden size.
    pub hidden_size: usize,
    /// Built-in task: decoder layers.
    pub layers: usize,
    /// Built-in task: phrasings of each question in the training prompts (1 to 6); the
    /// evaluation prompts ask the same facts in one more phrasing, never trained on.
    pub train_phrasings: usize,
    /// Built-in task: SFT demonstrations.
    pub sft_examples: usize,
    /// Built-in task: SFT optimiser steps.
    pub sft_steps: usize,
    /// Built-in task: SFT learning rate.
    pub sft_lr: f64,
    /// Built-in task: offline preference pairs for the proxy reward model.
    pub rm_pairs: usize,
    /// Built-in task: reward-model optimiser steps.
    pub rm_steps: usize,
    /// Built-in task: reward-model learning rate.
    pub rm_lr: f64,
    /// Built-in task: fraction of reward-model labels flipped (human label noise).
    pub label_noise: f64,
    /// Built-in task on a real policy: prompts whose pi_0 samples make the reward-model pairs.
    pub rm_prompts: usize,
    /// Built-in task on a real policy: pi_0 samples per reward-model prompt (every two with
    /// different gold rewards make a pair).
    pub rm_samples: usize,
    /// Built-in task on a real policy: LoRA rank of the reward model on the policy's backbone
    /// (its score head is always trained; 0 = train every weight).
    pub rm_lora_rank: usize,
    /// Micro-batch size for SFT and reward-model training.
    pub batch_size: usize,
}

impl Default for LoopConfig {
    fn default() -> Self {
        LoopConfig {
            out: PathBuf::from("runs/iterative_dpo"),
            seed: 42,
            algorithm: Algorithm::Dpo,
            iterations: 3,
            k: 8,
            prompts_per_iteration: 128,
            eval_prompts: 128,
            eval_samples: 2,
            max_new_tokens: 24,
            temperature: 1.0,
            max_prompt_tokens: 96,
            max_total_tokens: 160,
            beta: 0.1,
            lr: 3e-4,
            loss: DpoLoss::SIGMOID,
            choose: SelectionStrategy::MaxMin,
            reference: ReferenceChoice::Sft,
            policy_epochs: 4,
            dpo_batch_size: 16,
            dpo_nll_weight: 0.0,
            rrhf_lr: 1e-4,
            rrhf_batch_size: 4,
            rrhf_length_alpha: 1.0,
            rrhf_rank_weight: 1.0,
            offline: true,
            annotator: AnnotatorKind::Bt,
            annotator_model: None,
            lora_rank: 0,
            lora_alpha: 16.0,
            lora_dropout: 0.0,
            lora_targets: LoraTarget::ALL.to_vec(),
            policy: None,
            reward_model: None,
            prompts: None,
            chat_template: TemplateChoice::Checkpoint,
            template_date: None,
            hidden_size: 64,
            layers: 2,
            train_phrasings: 2,
            sft_examples: 3000,
            sft_steps: 1000,
            sft_lr: 3e-3,
            rm_pairs: 4000,
            rm_steps: 900,
            rm_lr: 1e-3,
            label_noise: 0.1,
            rm_prompts: 128,
            rm_samples: 4,
            rm_lora_rank: 8,
            batch_size: 32,
        }
    }
}

impl LoopConfig {
    /// How the online iterations sample, select and train.
    pub fn iteration_config(&self) -> IterationConfig {
        IterationConfig {
            algorithm: self.algorithm,
            sampling: self.sampling(self.k, self.temperature, 32),
            choose: self.choose,
            epochs: self.policy_epochs,
            dpo: DpoSettings {
                beta: self.beta,
                loss: self.loss,
                lr: self.lr,
                batch_size: self.dpo_batch_size,
                nll_weight: self.dpo_nll_weight,
            },
            rrhf: RrhfSettings {
                lr: self.rrhf_lr,
                batch_size: self.rrhf_batch_size,
                length_alpha: self.rrhf_length_alpha,
                rank_weight: self.rrhf_rank_weight,
            },
        }
    }

    /// `k` responses per prompt at `temperature`, up to `max_new_tokens`, `batch` prompts per
    /// decoding batch, as many batches at a time as the backend wants.
    pub fn sampling(&self, k: usize, temperature: f64, batch: usize) -> SamplingSettings {
        SamplingSettings {
            k,
            temperature,
            max_new_tokens: self.max_new_tokens,
            prompt_batch_size: batch,
            concurrent_batches: kiln::backend::decode_concurrency(),
        }
    }

    /// What the loop runs on.
    pub fn mode(&self) -> Mode {
        match (&self.policy, &self.reward_model) {
            (None, _) => Mode::Builtin,
            (Some(_), None) => Mode::BuiltinOnPolicy,
            (Some(_), Some(_)) => Mode::Real,
        }
    }

    /// The LoRA adapter config, when `lora_rank > 0`.
    pub fn lora(&self) -> Option<LoraConfig> {
        (self.lora_rank > 0).then(|| {
            LoraConfig::new(self.lora_targets.clone())
                .with_rank(self.lora_rank)
                .with_alpha(self.lora_alpha)
                .with_dropout(self.lora_dropout)
        })
    }

    /// Rejects settings that cannot run, naming the flag.
    pub fn validate(&self) -> Result<(), String> {
        if self.k < 2 {
            return Err(format!(
                "--k must be at least 2 to compare responses (got {})",
                self.k
            ));
        }
        let positive = [
            ("--iterations", self.iterations),
            ("--prompts-per-iteration", self.prompts_per_iteration),
            ("--eval-prompts", self.eval_prompts),
            ("--eval-samples", self.eval_samples),
            ("--max-new-tokens", self.max_new_tokens),
            ("--policy-epochs", self.policy_epochs),
            ("--dpo-batch-size", self.dpo_batch_size),
            ("--rrhf-batch-size", self.rrhf_batch_size),
            ("--batch-size", self.batch_size),
        ];
        if let Some((flag, _)) = positive.iter().find(|(_, v)| *v == 0) {
            return Err(format!("{flag} must be positive"));
        }
        if !(self.dpo_nll_weight >= 0.0 && self.dpo_nll_weight.is_finite()) {
            return Err("--dpo-nll-weight must be a finite number >= 0".into());
        }
        if !(self.beta > 0.0 && self.lr > 0.0 && self.rrhf_lr > 0.0) {
            return Err("--beta, --lr and --rrhf-lr must be positive".into());
        }
        if !(self.temperature >= 0.0 && self.temperature.is_finite()) {
            return Err("--temperature must be a finite number >= 0".into());
        }
        if !(1..=super::task::MAX_TRAIN_PHRASINGS).contains(&self.train_phrasings) {
            return Err(format!(
                "--train-phrasings must lie in 1..={} (got {})",
                super::task::MAX_TRAIN_PHRASINGS,
                self.train_phrasings
            ));
        }
        if !(0.0..=0.5).contains(&self.label_noise) {
            return Err("--label-noise must lie in [0, 0.5]".into());
        }
        if self.max_prompt_tokens == 0 || self.max_prompt_tokens >= self.max_total_tokens {
            return Err(format!(
                "need 0 < --max-prompt-tokens ({}) < --max-total-tokens ({})",
                self.max_prompt_tokens, self.max_total_tokens
            ));
        }
        match (
            self.policy.is_some(),
            self.reward_model.is_some(),
            self.prompts.is_some(),
        ) {
            (true, true, true) | (_, false, false) => {}
            _ => {
                return Err(
                    "--reward-model and --prompts go together, with --policy (real-model \
                     mode); --policy alone runs the built-in task on that policy"
                        .into(),
                );
            }
        }
        if self.annotator == AnnotatorKind::Pairwise
            && self.mode() != Mode::Builtin
            && self.annotator_model.is_none()
        {
            return Err(
                "--annotator pairwise with a real policy needs --annotator-model DIR".into(),
            );
        }
        if self.mode() == Mode::BuiltinOnPolicy && self.rm_samples < 2 {
            return Err("--rm-samples must be at least 2 to form pairs".into());
        }
        if let Some(lora) = self.lora() {
            lora.validate().map_err(|e| format!("--lora-*: {e}"))?;
        }
        self.template_clock()?;
        Ok(())
    }

    /// The clock chat templates read (`--template-date`, else the system's).
    pub fn template_clock(&self) -> Result<TemplateClock, String> {
        match &self.template_date {
            None => Ok(TemplateClock::System),
            Some(d) => DateTime::parse_date(d)
                .map(TemplateClock::Pinned)
                .ok_or_else(|| format!("--template-date: `{d}` is not a date (YYYY-MM-DD)")),
        }
    }
}
