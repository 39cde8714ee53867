//! The loop's configuration: defaults for the built-in task, a JSON config file, and CLI flags.

use kiln::data::{DateTime, LengthUnit, SelectionStrategy, TemplateChoice, TemplateClock};
use kiln::losses::DpoLoss;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// Which model DPO measures the policy against.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Reference {
    /// The SFT policy pi_0 for every iteration (the paper).
    Sft,
    /// The previous iteration's policy (later RLHFlow scripts).
    Previous,
}

/// Everything a run depends on; written to `<out>/config.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LoopConfig {
    /// Output directory (stage files, checkpoints, summary, plot).
    pub out: PathBuf,
    /// Master seed.
    pub seed: u64,
    /// Online iterations T.
    pub iterations: usize,
    /// Responses per prompt K.
    pub k: usize,
    /// Fresh prompts per iteration.
    pub prompts_per_iteration: usize,
    /// DPO beta.
    pub beta: f64,
    /// DPO learning rate.
    pub lr: f64,
    /// DPO-family loss.
    pub loss: DpoLoss,
    /// Pair selection strategy.
    pub choose: SelectionStrategy,
    /// Reference model for DPO.
    pub reference: Reference,
    /// Maximum new tokens per response.
    pub max_new_tokens: usize,
    /// Sampling temperature for the online generations.
    pub temperature: f64,
    /// DPO epochs over each iteration's pairs.
    pub dpo_epochs: usize,
    /// DPO micro-batch size (pairs).
    pub dpo_batch_size: usize,
    /// Run the offline-DPO baseline.
    pub offline: bool,
    /// Held-out evaluation prompts.
    pub eval_prompts: usize,
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
    /// Micro-batch size for SFT and reward-model training.
    pub batch_size: usize,
}

impl Default for LoopConfig {
    fn default() -> Self {
        LoopConfig {
            out: PathBuf::from("runs/iterative_dpo"),
            seed: 42,
            iterations: 3,
            k: 8,
            prompts_per_iteration: 128,
            beta: 0.1,
            lr: 3e-4,
            loss: DpoLoss::SIGMOID,
            choose: SelectionStrategy::MaxMin,
            reference: Reference::Sft,
            max_new_tokens: 24,
            temperature: 1.0,
            dpo_epochs: 4,
            dpo_batch_size: 16,
            offline: true,
            eval_prompts: 128,
            policy: None,
            reward_model: None,
            prompts: None,
            chat_template: TemplateChoice::Checkpoint,
            template_date: None,
            hidden_size: 64,
            layers: 2,
            sft_examples: 3000,
            sft_steps: 1000,
            sft_lr: 3e-3,
            rm_pairs: 4000,
            rm_steps: 900,
            rm_lr: 1e-3,
            label_noise: 0.1,
            batch_size: 32,
        }
    }
}

/// Usage text for `--help`.
pub const USAGE: &str = "\
Online iterative DPO (RLHFlow, arXiv 2405.07863) with Kiln.

USAGE: cargo run --release --example iterative_dpo -- [OPTIONS]

With no options, runs the whole loop on the built-in tiny task on CPU: SFT, a proxy reward model,
T online iterations and an offline-DPO baseline, then prints an evaluation table.

OPTIONS
  --out DIR                   output directory [runs/iterative_dpo]; rerun to resume
  --config FILE.json          load settings from a JSON file (keys as in <out>/config.json);
                              flags given after it override it
  --iterations T              online iterations [3]
  --k K                       responses per prompt [8]
  --prompts-per-iteration N   fresh prompts per iteration [128]
  --eval-prompts N            held-out evaluation prompts [128]
  --beta B                    DPO beta [0.1]
  --lr LR                     DPO learning rate [3e-4]
  --loss L                    sigmoid | cdpo:EPS | robust:EPS | ipo | hinge [sigmoid]
  --choose S                  max_min | max_random | max_max | random | max_min_p:LAMBDA
                              (length penalty per token) [max_min]
  --reference R               sft | previous [sft]
  --max-new-tokens N          [24]
  --temperature T             sampling temperature [1.0]
  --seed S                    [42]
  --no-offline                skip the offline-DPO baseline
  --policy DIR                HF Llama-3 policy directory (with tokenizer.json)
  --reward-model DIR          HF LlamaForSequenceClassification directory
  --prompts FILE.jsonl        prompts ({\"prompt\": ...} or {\"messages\": [...]}, multi-turn and
                              system messages allowed) for real models
  --chat-template T           the policy's chat template: checkpoint | llama3 | FILE.jinja
                              [checkpoint: chat_template.jinja or tokenizer_config.json]
  --template-date YYYY-MM-DD  date the template's strftime_now() returns [today]
  -h, --help                  this text
";

fn value<'a>(flag: &str, it: &mut impl Iterator<Item = &'a String>) -> Result<&'a String, String> {
    it.next()
        .ok_or_else(|| format!("{flag} needs a value (see --help)"))
}

fn number<T: std::str::FromStr>(flag: &str, v: &str) -> Result<T, String> {
    v.parse()
        .map_err(|_| format!("{flag}: `{v}` is not a valid number"))
}

/// Parses `--loss`.
pub fn parse_loss(v: &str) -> Result<DpoLoss, String> {
    let (name, arg) = v.split_once(':').map_or((v, None), |(a, b)| (a, Some(b)));
    let eps = |arg: Option<&str>| -> Result<f64, String> {
        number(
            "--loss",
            arg.ok_or_else(|| format!("--loss {name} needs :EPS, e.g. {name}:0.1"))?,
        )
    };
    Ok(match name {
        "sigmoid" => DpoLoss::SIGMOID,
        "cdpo" => DpoLoss::Sigmoid {
            label_smoothing: eps(arg)?,
        },
        "robust" => DpoLoss::Robust {
            label_smoothing: eps(arg)?,
        },
        "ipo" => DpoLoss::Ipo,
        "hinge" => DpoLoss::Hinge,
        other => {
            return Err(format!(
                "--loss: unknown loss `{other}` (sigmoid, cdpo:EPS, robust:EPS, ipo, hinge)"
            ));
        }
    })
}

/// Parses `--choose`.
pub fn parse_choose(v: &str) -> Result<SelectionStrategy, String> {
    Ok(match v.split_once(':') {
        Some(("max_min_p", lambda)) => SelectionStrategy::MaxMinP {
            lambda: number("--choose", lambda)?,
            unit: LengthUnit::Tokens,
        },
        _ => match v {
            "max_min" => SelectionStrategy::MaxMin,
            "max_random" => SelectionStrategy::MaxRandom,
            "max_max" => SelectionStrategy::MaxMax,
            "random" => SelectionStrategy::Random,
            other => {
                return Err(format!(
                    "--choose: unknown strategy `{other}` (max_min, max_random, max_max, random, max_min_p:LAMBDA)"
                ));
            }
        },
    })
}

/// What the command line asks for.
pub enum Command {
    /// Run the loop.
    Run(Box<LoopConfig>),
    /// Print usage.
    Help,
}

/// Parses the command line (without the program name).
pub fn parse_args(args: &[String]) -> Result<Command, String> {
    let mut cfg = LoopConfig::default();
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        let f = flag.as_str();
        match f {
            "-h" | "--help" => return Ok(Command::Help),
            "--config" => {
                let path = value(f, &mut it)?;
                let text =
                    std::fs::read_to_string(path).map_err(|e| format!("--config {path}: {e}"))?;
                cfg = serde_json::from_str(&text).map_err(|e| format!("--config {path}: {e}"))?;
            }
            "--out" => cfg.out = value(f, &mut it)?.into(),
            "--iterations" => cfg.iterations = number(f, value(f, &mut it)?)?,
            "--k" => cfg.k = number(f, value(f, &mut it)?)?,
            "--prompts-per-iteration" => cfg.prompts_per_iteration = number(f, value(f, &mut it)?)?,
            "--eval-prompts" => cfg.eval_prompts = number(f, value(f, &mut it)?)?,
            "--beta" => cfg.beta = number(f, value(f, &mut it)?)?,
            "--lr" => cfg.lr = number(f, value(f, &mut it)?)?,
            "--loss" => cfg.loss = parse_loss(value(f, &mut it)?)?,
            "--choose" => cfg.choose = parse_choose(value(f, &mut it)?)?,
            "--reference" => {
                cfg.reference = match value(f, &mut it)?.as_str() {
                    "sft" => Reference::Sft,
                    "previous" => Reference::Previous,
                    other => return Err(format!("--reference: `{other}` is not sft or previous")),
                }
            }
            "--max-new-tokens" => cfg.max_new_tokens = number(f, value(f, &mut it)?)?,
            "--temperature" => cfg.temperature = number(f, value(f, &mut it)?)?,
            "--seed" => cfg.seed = number(f, value(f, &mut it)?)?,
            "--no-offline" => cfg.offline = false,
            "--policy" => cfg.policy = Some(value(f, &mut it)?.into()),
            "--reward-model" => cfg.reward_model = Some(value(f, &mut it)?.into()),
            "--prompts" => cfg.prompts = Some(value(f, &mut it)?.into()),
            "--chat-template" => {
                cfg.chat_template = value(f, &mut it)?
                    .parse()
                    .map_err(|e| format!("--chat-template: {e}"))?
            }
            "--template-date" => cfg.template_date = Some(value(f, &mut it)?.clone()),
            other => return Err(format!("unknown option `{other}` (see --help)")),
        }
    }
    validate(&cfg)?;
    Ok(Command::Run(Box::new(cfg)))
}

/// Rejects settings that cannot run.
pub fn validate(cfg: &LoopConfig) -> Result<(), String> {
    if cfg.k < 2 {
        return Err(format!(
            "--k must be at least 2 to form pairs (got {})",
            cfg.k
        ));
    }
    if cfg.iterations == 0 || cfg.prompts_per_iteration == 0 || cfg.eval_prompts == 0 {
        return Err(
            "--iterations, --prompts-per-iteration and eval prompts must be positive".into(),
        );
    }
    if !(cfg.beta > 0.0 && cfg.lr > 0.0 && cfg.temperature >= 0.0) {
        return Err("--beta and --lr must be positive and --temperature non-negative".into());
    }
    let real = [
        cfg.policy.is_some(),
        cfg.reward_model.is_some(),
        cfg.prompts.is_some(),
    ];
    if real.iter().any(|&r| r) && !real.iter().all(|&r| r) {
        return Err("real-model mode needs all of --policy, --reward-model and --prompts".into());
    }
    template_clock(cfg)?;
    if cfg.max_new_tokens == 0 {
        return Err("--max-new-tokens must be positive".into());
    }
    Ok(())
}

/// The clock chat templates read (`--template-date`, else the system's).
pub fn template_clock(cfg: &LoopConfig) -> Result<TemplateClock, String> {
    match &cfg.template_date {
        None => Ok(TemplateClock::System),
        Some(d) => DateTime::parse_date(d)
            .map(TemplateClock::Pinned)
            .ok_or_else(|| format!("--template-date: `{d}` is not a date (YYYY-MM-DD)")),
    }
}
