//! The command line (clap): every [`LoopConfig`] field is a flag; `--config FILE.json` supplies a
//! base configuration, and flags given anywhere on the line override it.

use super::config::{Algorithm, AnnotatorKind, LoopConfig, ReferenceChoice};
use clap::Parser;
use kiln::data::{SelectionStrategy, TemplateChoice};
use kiln::losses::DpoLoss;
use kiln::model::LoraTarget;
use std::path::PathBuf;

/// Online iterative DPO / RRHF (RLHFlow, arXiv 2405.07863) with Kiln.
///
/// With no options, runs the whole loop on the built-in tiny task on CPU: SFT, a proxy reward
/// model, T online iterations and an offline baseline, then prints an evaluation table. Rerun
/// with the same --out to resume after the last finished stage.
#[derive(Debug, Default, Parser)]
// Negative numbers are values, not flags (`--temperature -1` reaches the validation that names
// the option instead of "unexpected argument"); float options also take `allow_hyphen_values`,
// since clap does not read `-1e-5` as a number.
#[command(name = "iterative_dpo", version, allow_negative_numbers = true)]
#[command(
    after_help = "Real models: --policy DIR alone runs the built-in task on that Hugging Face \
policy (its own samples train a proxy reward model on its backbone); --policy DIR --reward-model \
DIR --prompts FILE.jsonl runs the loop on your checkpoints and prompts (prompts as \
{\"prompt\": ...} or {\"messages\": [...]}, multi-turn with system messages). Logging: \
RUST_LOG (warnings are shown by default)."
)]
pub struct Args {
    /// JSON file with settings (keys as in <out>/config.json); flags override it.
    #[arg(long, value_name = "FILE.json")]
    pub config: Option<PathBuf>,
    /// Output directory; rerun to resume [default: runs/iterative_dpo].
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Master seed [default: 42].
    #[arg(long)]
    pub seed: Option<u64>,
    /// dpo | rrhf [default: dpo].
    #[arg(long, value_name = "ALGORITHM")]
    pub algorithm: Option<Algorithm>,
    /// Online iterations T [default: 3].
    #[arg(long)]
    pub iterations: Option<usize>,
    /// Responses per prompt K [default: 8].
    #[arg(long)]
    pub k: Option<usize>,
    /// Fresh prompts per iteration [default: 128].
    #[arg(long)]
    pub prompts_per_iteration: Option<usize>,
    /// Held-out evaluation prompts [default: 128].
    #[arg(long)]
    pub eval_prompts: Option<usize>,
    /// Responses sampled per evaluation prompt [default: 2].
    #[arg(long)]
    pub eval_samples: Option<usize>,
    /// Maximum new tokens per response [default: 24].
    #[arg(long)]
    pub max_new_tokens: Option<usize>,
    /// Sampling temperature of the online generations [default: 1.0].
    #[arg(long, allow_hyphen_values = true)]
    pub temperature: Option<f64>,
    /// Prompts keep at most their last N tokens [default: 96].
    #[arg(long)]
    pub max_prompt_tokens: Option<usize>,
    /// Prompt + response keep at most N tokens [default: 160].
    #[arg(long)]
    pub max_total_tokens: Option<usize>,
    /// DPO beta [default: 0.1].
    #[arg(long, allow_hyphen_values = true)]
    pub beta: Option<f64>,
    /// DPO learning rate [default: 3e-4].
    #[arg(long, allow_hyphen_values = true)]
    pub lr: Option<f64>,
    /// sigmoid | cdpo:EPS | robust:EPS | ipo | hinge [default: sigmoid].
    #[arg(long, value_name = "LOSS")]
    pub loss: Option<DpoLoss>,
    /// max_min | max_random | max_max | random | max_min_p:LAMBDA[:chars] [default: max_min].
    #[arg(long, value_name = "STRATEGY")]
    pub choose: Option<SelectionStrategy>,
    /// sft | previous [default: sft].
    #[arg(long, value_name = "REFERENCE")]
    pub reference: Option<ReferenceChoice>,
    /// Epochs over each iteration's pairs / ranked lists [default: 4].
    #[arg(long)]
    pub policy_epochs: Option<usize>,
    /// DPO micro-batch size in pairs [default: 16].
    #[arg(long)]
    pub dpo_batch_size: Option<usize>,
    /// Weight of an NLL term on the chosen responses (TRL's rpo_alpha; 0 = plain DPO) [default: 0].
    #[arg(long, allow_hyphen_values = true)]
    pub dpo_nll_weight: Option<f64>,
    /// RRHF learning rate [default: 1e-4].
    #[arg(long, allow_hyphen_values = true)]
    pub rrhf_lr: Option<f64>,
    /// RRHF micro-batch size in prompts (K responses each) [default: 4].
    #[arg(long)]
    pub rrhf_batch_size: Option<usize>,
    /// RRHF length normalisation: scores logp / |y|^alpha [default: 1].
    #[arg(long, allow_hyphen_values = true)]
    pub rrhf_length_alpha: Option<f64>,
    /// RRHF weight of the ranking term [default: 1].
    #[arg(long, allow_hyphen_values = true)]
    pub rrhf_rank_weight: Option<f64>,
    /// Run the offline baseline [default].
    #[arg(long, overrides_with = "no_offline")]
    pub offline: bool,
    /// Skip the offline baseline.
    #[arg(long, overrides_with = "offline")]
    pub no_offline: bool,
    /// bt | pairwise [default: bt].
    #[arg(long, value_name = "ANNOTATOR")]
    pub annotator: Option<AnnotatorKind>,
    /// Pairwise preference model (HF causal-LM directory) for --annotator pairwise.
    #[arg(long, value_name = "DIR")]
    pub annotator_model: Option<PathBuf>,
    /// LoRA rank of the policy (0 = train every weight) [default: 0].
    #[arg(long)]
    pub lora_rank: Option<usize>,
    /// LoRA alpha [default: 16].
    #[arg(long, allow_hyphen_values = true)]
    pub lora_alpha: Option<f64>,
    /// LoRA dropout [default: 0].
    #[arg(long, allow_hyphen_values = true)]
    pub lora_dropout: Option<f64>,
    /// Comma-separated projections (q,k,v,o,gate,up,down or all-linear) [default: all].
    #[arg(long, value_name = "LIST", value_parser = parse_targets)]
    pub lora_targets: Option<Targets>,
    /// HF Llama policy directory (with tokenizer.json and a chat template).
    #[arg(long, value_name = "DIR")]
    pub policy: Option<PathBuf>,
    /// HF LlamaForSequenceClassification directory.
    #[arg(long, value_name = "DIR")]
    pub reward_model: Option<PathBuf>,
    /// Prompts JSONL for real models.
    #[arg(long, value_name = "FILE.jsonl")]
    pub prompts: Option<PathBuf>,
    /// The policy's chat template: checkpoint | llama3 | FILE.jinja [default: checkpoint].
    #[arg(long, value_name = "T")]
    pub chat_template: Option<TemplateChoice>,
    /// Date (YYYY-MM-DD) the template's strftime_now() returns [default: today].
    #[arg(long, value_name = "DATE")]
    pub template_date: Option<String>,
    /// Built-in task: policy hidden size [default: 64].
    #[arg(long)]
    pub hidden_size: Option<usize>,
    /// Built-in task: decoder layers [default: 2].
    #[arg(long)]
    pub layers: Option<usize>,
    /// Built-in task: phrasings of each question in the training prompts, 1 to 6; the evaluation
    /// prompts use one more that is never trained on [default: 2].
    #[arg(long)]
    pub train_phrasings: Option<usize>,
    /// Built-in task: SFT demonstrations [default: 3000].
    #[arg(long)]
    pub sft_examples: Option<usize>,
    /// Built-in task: SFT optimiser steps [default: 1000].
    #[arg(long)]
    pub sft_steps: Option<usize>,
    /// Built-in task: SFT learning rate [default: 3e-3].
    #[arg(long, allow_hyphen_values = true)]
    pub sft_lr: Option<f64>,
    /// Built-in task: preference pairs for the proxy reward model [default: 4000].
    #[arg(long)]
    pub rm_pairs: Option<usize>,
    /// Built-in task: reward-model optimiser steps [default: 900].
    #[arg(long)]
    pub rm_steps: Option<usize>,
    /// Built-in task: reward-model learning rate [default: 1e-3].
    #[arg(long, allow_hyphen_values = true)]
    pub rm_lr: Option<f64>,
    /// Built-in task: fraction of preference labels flipped [default: 0.1].
    #[arg(long, allow_hyphen_values = true)]
    pub label_noise: Option<f64>,
    /// Built-in task on a real policy: prompts whose samples train the reward model [default: 128].
    #[arg(long)]
    pub rm_prompts: Option<usize>,
    /// Built-in task on a real policy: samples per reward-model prompt [default: 4].
    #[arg(long)]
    pub rm_samples: Option<usize>,
    /// Built-in task on a real policy: LoRA rank of the reward model (0 = full) [default: 8].
    #[arg(long)]
    pub rm_lora_rank: Option<usize>,
    /// Micro-batch size of SFT and reward-model training [default: 32].
    #[arg(long)]
    pub batch_size: Option<usize>,
}

/// A parsed `--lora-targets` list.
#[derive(Debug, Clone, PartialEq)]
pub struct Targets(pub Vec<LoraTarget>);

fn parse_targets(s: &str) -> Result<Targets, String> {
    kiln::model::lora::parse_targets(s)
        .map(Targets)
        .map_err(|e| e.to_string())
}

macro_rules! overlay {
    ($cfg:ident, $args:ident; $($field:ident),* $(,)?) => {
        $(if let Some(v) = $args.$field { $cfg.$field = v; })*
    };
}

impl Args {
    /// The configuration: `--config`'s file (or the defaults), then every flag given on top,
    /// whatever their order; validated.
    pub fn into_config(self) -> Result<LoopConfig, String> {
        let mut cfg = match &self.config {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|e| format!("--config {}: {e}", path.display()))?;
                serde_json::from_str(&text)
                    .map_err(|e| format!("--config {}: {e}", path.display()))?
            }
            None => LoopConfig::default(),
        };
        let a = self;
        overlay!(cfg, a; out, seed, algorithm, iterations, k, prompts_per_iteration, eval_prompts,
            eval_samples, max_new_tokens, temperature, max_prompt_tokens, max_total_tokens, beta, lr,
            loss, choose, reference, policy_epochs, dpo_batch_size, dpo_nll_weight, rrhf_lr, rrhf_batch_size,
            rrhf_length_alpha, rrhf_rank_weight, annotator, lora_rank, lora_alpha, lora_dropout,
            chat_template, hidden_size, layers, train_phrasings, sft_examples, sft_steps, sft_lr, rm_pairs, rm_steps,
            rm_lr, label_noise, rm_prompts, rm_samples, rm_lora_rank, batch_size);
        if a.no_offline {
            cfg.offline = false;
        }
        if a.offline {
            cfg.offline = true;
        }
        if let Some(t) = a.lora_targets {
            cfg.lora_targets = t.0;
        }
        for (field, value) in [
            (&mut cfg.annotator_model, a.annotator_model),
            (&mut cfg.policy, a.policy),
            (&mut cfg.reward_model, a.reward_model),
            (&mut cfg.prompts, a.prompts),
        ] {
            if value.is_some() {
                *field = value;
            }
        }
        if a.template_date.is_some() {
            cfg.template_date = a.template_date;
        }
        cfg.validate()?;
        Ok(cfg)
    }
}

/// Parses a command line (without the program name) into a validated configuration; `Err` holds
/// clap's error (which prints help and version too).
pub fn parse(args: &[&str]) -> Result<LoopConfig, clap::Error> {
    let args = Args::try_parse_from(std::iter::once("iterative_dpo").chain(args.iter().copied()))?;
    args.into_config()
        .map_err(|m| clap::Error::raw(clap::error::ErrorKind::ValueValidation, m + "\n"))
}
