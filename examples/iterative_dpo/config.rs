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

/// Everything a run depends on; written to `<out>/config.json`. Every field is declared once:
/// its doc is the `--help` text, its `#[arg]` default is the default (also of [`Default`] and of
/// keys missing from a `--config` file), and its name is the JSON key and the flag.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, clap::Args)]
#[serde(default, deny_unknown_fields)]
pub struct LoopConfig {
    /// Output directory (stage files, checkpoints, summary, plot).
    #[arg(long, value_name = "DIR", default_value = "runs/iterative_dpo")]
    pub out: PathBuf,
    /// Master seed of the online loop (prompts, sampling, pair selection, data order,
    /// evaluation samples).
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Seed of the setup: the built-in task's data, SFT policy and reward model (the shipped ones
    /// were made with 42), or the on-policy reward model's pairs.
    #[arg(long, default_value_t = 42)]
    pub setup_seed: u64,
    /// Built-in task: start from the SFT policy and reward model of this `--setup-only` directory
    /// (its `manifest.json`) instead of the shipped `assets/builtin`.
    #[arg(long, value_name = "DIR")]
    pub setup_from: Option<PathBuf>,
    /// dpo | rrhf: DPO on one pair per prompt, or RRHF on all K ranked responses.
    #[arg(long, value_name = "ALGORITHM", default_value_t = Algorithm::Dpo)]
    pub algorithm: Algorithm,
    /// Online iterations T (4: gold rises at every one of them on most seeds from the shipped
    /// setup; a fifth lowers the mean win rate against SFT and dips on one more seed).
    #[arg(long, default_value_t = 4)]
    pub iterations: usize,
    /// Responses per prompt K.
    #[arg(long, default_value_t = 8)]
    pub k: usize,
    /// Fresh prompts per iteration.
    #[arg(long, default_value_t = 128)]
    pub prompts_per_iteration: usize,
    /// Held-out evaluation prompts.
    #[arg(long, default_value_t = 128)]
    pub eval_prompts: usize,
    /// Responses sampled per evaluation prompt.
    #[arg(long, default_value_t = 2)]
    pub eval_samples: usize,
    /// Maximum new tokens per response.
    #[arg(long, default_value_t = 24)]
    pub max_new_tokens: usize,
    /// Sampling temperature for the online generations.
    #[arg(long, allow_hyphen_values = true, default_value_t = 1.0)]
    pub temperature: f64,
    /// Prompts keep at most their last this many tokens.
    #[arg(long, default_value_t = 96)]
    pub max_prompt_tokens: usize,
    /// Prompt + response keep at most this many tokens.
    #[arg(long, default_value_t = 160)]
    pub max_total_tokens: usize,
    /// DPO beta.
    #[arg(long, allow_hyphen_values = true, default_value_t = 0.1)]
    pub beta: f64,
    /// DPO learning rate.
    #[arg(long, allow_hyphen_values = true, default_value_t = 3e-4)]
    pub lr: f64,
    /// DPO-family loss: sigmoid | cdpo:EPS | robust:EPS | ipo | hinge.
    #[arg(long, value_name = "LOSS", default_value_t = DpoLoss::SIGMOID)]
    pub loss: DpoLoss,
    /// Pair selection (DPO): max_min | max_random | max_max | random | max_min_p:LAMBDA[:chars].
    #[arg(long, value_name = "STRATEGY", default_value_t = SelectionStrategy::MaxMin)]
    pub choose: SelectionStrategy,
    /// Reference model for DPO: previous (the last iteration's policy, later RLHFlow scripts) |
    /// sft (pi_0 at every iteration, the paper).
    #[arg(long, value_name = "REFERENCE", default_value_t = ReferenceChoice::Previous)]
    pub reference: ReferenceChoice,
    /// Epochs over each iteration's pairs (DPO) or ranked lists (RRHF).
    #[arg(long, default_value_t = 4)]
    pub policy_epochs: usize,
    /// DPO micro-batch size (pairs).
    #[arg(long, default_value_t = 16)]
    pub dpo_batch_size: usize,
    /// Weight of an NLL term on the chosen responses added to DPO (TRL's `rpo_alpha`; 0 = plain
    /// DPO).
    #[arg(long, allow_hyphen_values = true, default_value_t = 0.0)]
    pub dpo_nll_weight: f64,
    /// RRHF learning rate.
    #[arg(long, allow_hyphen_values = true, default_value_t = 1e-4)]
    pub rrhf_lr: f64,
    /// RRHF micro-batch size (prompts, K responses each).
    #[arg(long, default_value_t = 4)]
    pub rrhf_batch_size: usize,
    /// RRHF length normalisation exponent: scores are `logp / |y|^alpha` (1 = the paper).
    #[arg(long, allow_hyphen_values = true, default_value_t = 1.0)]
    pub rrhf_length_alpha: f64,
    /// RRHF weight of the ranking term.
    #[arg(long, allow_hyphen_values = true, default_value_t = 1.0)]
    pub rrhf_rank_weight: f64,
    /// Run the offline baseline (same algorithm, pairs and steps, on SFT samples only);
    /// `--no-offline` skips it.
    #[arg(long, default_value_t = true, action = clap::ArgAction::SetTrue)]
    pub offline: bool,
    /// Who scores the responses: bt (a reward model) | pairwise (a pairwise preference model).
    #[arg(long, value_name = "ANNOTATOR", default_value_t = AnnotatorKind::Bt)]
    pub annotator: AnnotatorKind,
    /// The pairwise preference model (HF causal-LM directory) for `annotator = pairwise`; the
    /// built-in task trains one on its preference pairs when absent.
    #[arg(long, value_name = "DIR")]
    pub annotator_model: Option<PathBuf>,
    /// LoRA rank for the policy (0 = train every weight).
    #[arg(long, default_value_t = 0)]
    pub lora_rank: usize,
    /// LoRA alpha.
    #[arg(long, allow_hyphen_values = true, default_value_t = 16.0)]
    pub lora_alpha: f64,
    /// LoRA dropout.
    #[arg(long, allow_hyphen_values = true, default_value_t = 0.0)]
    pub lora_dropout: f64,
    /// Projections that get LoRA adapters: q,k,v,o,gate,up,down (or q_proj, ...) | all-linear.
    #[arg(long, value_name = "LIST", value_parser = parse_targets, default_value = "all-linear")]
    pub lora_targets: ::std::vec::Vec<LoraTarget>,
    /// Real-model mode: HF policy directory (with tokenizer.json) instead of the built-in task.
    #[arg(long, value_name = "DIR")]
    pub policy: Option<PathBuf>,
    /// Real-model mode: HF `LlamaForSequenceClassification` reward-model directory.
    #[arg(long, value_name = "DIR")]
    pub reward_model: Option<PathBuf>,
    /// Real-model mode: prompts JSONL (`prompt` or `messages`).
    #[arg(long, value_name = "FILE.jsonl")]
    pub prompts: Option<PathBuf>,
    /// Real-model mode: the policy's chat template (`checkpoint`, `llama3` or a Jinja file).
    #[arg(long, value_name = "T", default_value_t = TemplateChoice::Checkpoint)]
    pub chat_template: TemplateChoice,
    /// Date `strftime_now` returns in chat templates (`YYYY-MM-DD`); the system date when absent.
    #[arg(long, value_name = "DATE")]
    pub template_date: Option<String>,
    /// Built-in task: tiny policy hidden size (128: the capacity to carry what DPO teaches to the
    /// unseen evaluation phrasing; 64 gains on no seed from the shipped setup).
    #[arg(long, default_value_t = 128)]
    pub hidden_size: usize,
    /// Built-in task: decoder layers.
    #[arg(long, default_value_t = 2)]
    pub layers: usize,
    /// Built-in task: phrasings of each question in the training prompts (1 to 6); the
    /// evaluation prompts ask the same facts in one more phrasing, never trained on (6: what the
    /// policy learns transfers to that phrasing; with 2 the SFT policy's gold on it is 0.6 lower).
    #[arg(long, default_value_t = 6)]
    pub train_phrasings: usize,
    /// Built-in task: SFT demonstrations.
    #[arg(long, default_value_t = 3000)]
    pub sft_examples: usize,
    /// Built-in task: SFT optimiser steps.
    #[arg(long, default_value_t = 1000)]
    pub sft_steps: usize,
    /// Built-in task: SFT learning rate.
    #[arg(long, allow_hyphen_values = true, default_value_t = 3e-3)]
    pub sft_lr: f64,
    /// Built-in task: offline preference pairs for the proxy reward model (32000: with 4000 it
    /// memorises the label noise; the online gain follows the reward model's quality).
    #[arg(long, default_value_t = 32000)]
    pub rm_pairs: usize,
    /// Built-in task: reward-model optimiser steps (3600 on 32000 pairs: held-out accuracy 0.88
    /// on the noisy labels, against 0.85 after 1800 and 0.76 for 1800 steps on 4000 pairs).
    #[arg(long, default_value_t = 3600)]
    pub rm_steps: usize,
    /// Built-in task: reward-model learning rate.
    #[arg(long, allow_hyphen_values = true, default_value_t = 1e-3)]
    pub rm_lr: f64,
    /// Built-in task: fraction of reward-model labels flipped (human label noise).
    #[arg(long, allow_hyphen_values = true, default_value_t = 0.1)]
    pub label_noise: f64,
    /// Built-in task on a real policy: prompts whose pi_0 samples make the reward-model pairs.
    #[arg(long, default_value_t = 128)]
    pub rm_prompts: usize,
    /// Built-in task on a real policy: pi_0 samples per reward-model prompt (every two with
    /// different gold rewards make a pair).
    #[arg(long, default_value_t = 4)]
    pub rm_samples: usize,
    /// Built-in task on a real policy: LoRA rank of the reward model on the policy's backbone
    /// (its score head is always trained; 0 = train every weight).
    #[arg(long, default_value_t = 8)]
    pub rm_lora_rank: usize,
    /// Peers in this process, one per device (on a CPU they share the cores): SFT, the reward
    /// model and DPO/RRHF train data-parallel (gradients averaged with burn-collective), and
    /// generation, annotation and reference log-probs are sharded over them (the same bytes
    /// whatever the number).
    #[arg(long, default_value_t = 1)]
    pub devices: usize,
    /// Built-in task: train the SFT policy and the proxy reward model in this run instead of
    /// starting from the shipped ones (`assets/builtin/`; trained in the run anyway when a setup
    /// setting differs from theirs).
    #[arg(long)]
    pub train_setup: bool,
    /// Micro-batch size for SFT and reward-model training.
    #[arg(long, default_value_t = 32)]
    pub batch_size: usize,
}

impl Default for LoopConfig {
    /// The `#[arg]` defaults.
    fn default() -> Self {
        use clap::{Args, FromArgMatches};
        let cmd = Self::augment_args(clap::Command::new("defaults"));
        let matches = cmd.get_matches_from(["defaults"]);
        Self::from_arg_matches(&matches).unwrap_or_else(|e| e.exit())
    }
}

/// `--lora-targets`: PEFT module names or short names, comma-separated, or `all-linear`.
fn parse_targets(s: &str) -> Result<Vec<LoraTarget>, String> {
    kiln::model::lora::parse_targets(s).map_err(|e| e.to_string())
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
            peers: self.devices.max(1),
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
