//! The command line (clap): one flag per setting, each with the built-in task's default;
//! `--config FILE.json` (keys as in `<out>/config.json`) supplies a base configuration and flags
//! given anywhere on the line override it.

use super::config::{LoopConfig, TaskConfig, finite};
use clap::parser::ValueSource;
use clap::{ArgMatches, CommandFactory, FromArgMatches, Parser};
use kiln::data::{SelectionStrategy, TemplateChoice};
use kiln::losses::DpoLoss;
use kiln::model::{LoraConfig, LoraTarget};
use kiln::online::{Algorithm, ReferenceChoice};
use serde_json::Value;
use std::path::PathBuf;

fn d() -> LoopConfig {
    LoopConfig::default()
}

fn targets(s: &str) -> Result<Vec<LoraTarget>, String> {
    kiln::model::lora::parse_targets(s).map_err(|e| e.to_string())
}

/// Online iterative DPO / RRHF (RLHFlow, arXiv 2405.07863) with Kiln.
///
/// With no options, runs the whole loop on the built-in tiny task on CPU from the shipped SFT
/// policy and reward model: T online iterations and an offline baseline, then an evaluation
/// table. Rerun with the same --out to resume after the last finished stage.
#[derive(Debug, Parser)]
// Negative numbers are values, not flags (they reach the validation that names the option).
#[command(name = "iterative_dpo", version, allow_negative_numbers = true)]
#[command(
    after_help = "Your own models: --policy DIR --reward-model DIR --prompts FILE.jsonl \
(Llama or Qwen2, picked from each directory's config.json; prompts as {\"prompt\": ...} or \
{\"messages\": [...]}); --policy DIR alone runs the built-in task on that policy, training a \
reward model on its own samples. Logging: RUST_LOG (warnings by default)."
)]
pub struct Args {
    /// JSON file with settings (keys as in <out>/config.json); flags override it.
    #[arg(long, value_name = "FILE.json")]
    pub config: Option<PathBuf>,
    /// Built-in task: only train the SFT policy and the proxy reward model into --out, with
    /// manifest.json (settings and SHA-256 digests) beside them.
    #[arg(long)]
    pub setup_only: bool,
    /// Master seed of the online loop (prompts, sampling, pairs, data order, evaluation).
    #[arg(long, default_value_t = d().online.seed)]
    pub seed: u64,
    /// dpo | rrhf: DPO on one pair per prompt, or RRHF on all K ranked responses.
    #[arg(long, value_name = "ALGORITHM", default_value_t = d().online.algorithm)]
    pub algorithm: Algorithm,
    /// Online iterations T.
    #[arg(long, default_value_t = d().online.iterations)]
    pub iterations: usize,
    /// Responses per prompt K.
    #[arg(long, default_value_t = d().online.generation.num_responses)]
    pub k: usize,
    /// Prompts per iteration.
    #[arg(long, default_value_t = d().online.prompts_per_iteration.unwrap_or(128))]
    pub prompts_per_iteration: usize,
    /// Evaluation prompts (real models: held out from the end of --prompts).
    #[arg(long, default_value_t = d().online.eval_prompts)]
    pub eval_prompts: usize,
    /// Responses sampled per evaluation prompt.
    #[arg(long, default_value_t = d().online.eval_samples)]
    pub eval_samples: usize,
    /// Maximum new tokens per response.
    #[arg(long, default_value_t = d().online.generation.max_new_tokens)]
    pub max_new_tokens: usize,
    /// Sampling temperature of the online generations (0 = greedy).
    #[arg(long, value_parser = finite, allow_hyphen_values = true, default_value_t = d().online.generation.sampler.temperature)]
    pub temperature: f64,
    /// Prompts keep at most their last this many tokens.
    #[arg(long, default_value_t = d().online.truncation.max_prompt_len)]
    pub max_prompt_tokens: usize,
    /// Prompt + response keep at most this many tokens.
    #[arg(long, default_value_t = d().online.truncation.max_total_len)]
    pub max_total_tokens: usize,
    /// DPO beta.
    #[arg(long, value_parser = finite, allow_hyphen_values = true, default_value_t = d().online.dpo.loss.beta)]
    pub beta: f64,
    /// DPO learning rate.
    #[arg(long, value_parser = finite, allow_hyphen_values = true, default_value_t = d().online.dpo_optimizer.lr)]
    pub lr: f64,
    /// DPO-family loss: sigmoid | cdpo:EPS | robust:EPS | ipo | hinge.
    #[arg(long, value_name = "LOSS", default_value_t = d().online.dpo.loss.loss)]
    pub loss: DpoLoss,
    /// Pair selection (DPO): max_min | max_random | max_max | random | max_min_p:LAMBDA[:chars].
    #[arg(long, value_name = "STRATEGY", default_value_t = d().online.choose)]
    pub choose: SelectionStrategy,
    /// DPO's reference: previous (the last iteration's policy) | sft (pi_0 at every iteration,
    /// the paper).
    #[arg(long, value_name = "REFERENCE", default_value_t = d().online.reference)]
    pub reference: ReferenceChoice,
    /// Epochs over each iteration's pairs (DPO) or ranked prompts (RRHF).
    #[arg(long, default_value_t = d().online.epochs)]
    pub policy_epochs: usize,
    /// DPO micro-batch size (pairs).
    #[arg(long, default_value_t = d().online.dpo_optimizer.micro_batch_size)]
    pub dpo_batch_size: usize,
    /// Weight of an NLL term on the chosen responses (TRL's rpo_alpha; 0 = plain DPO).
    #[arg(long, value_parser = finite, allow_hyphen_values = true, default_value_t = d().online.dpo.nll_weight)]
    pub dpo_nll_weight: f64,
    /// RRHF learning rate.
    #[arg(long, value_parser = finite, allow_hyphen_values = true, default_value_t = d().online.rrhf_optimizer.lr)]
    pub rrhf_lr: f64,
    /// RRHF micro-batch size (prompts, K responses each).
    #[arg(long, default_value_t = d().online.rrhf_optimizer.micro_batch_size)]
    pub rrhf_batch_size: usize,
    /// RRHF length normalisation: scores are logp / |y|^alpha (1 = the paper).
    #[arg(long, value_parser = finite, allow_hyphen_values = true, default_value_t = d().online.rrhf.loss.length_alpha)]
    pub rrhf_length_alpha: f64,
    /// RRHF weight of the ranking term.
    #[arg(long, value_parser = finite, allow_hyphen_values = true, default_value_t = d().online.rrhf.loss.rank_weight)]
    pub rrhf_rank_weight: f64,
    /// Skip the offline baseline (same algorithm and steps on pi_0's samples only).
    #[arg(long)]
    pub no_offline: bool,
    /// LoRA rank of the policy (0 = train every weight).
    #[arg(long, default_value_t = 0)]
    pub lora_rank: usize,
    /// LoRA alpha.
    #[arg(long, value_parser = finite, allow_hyphen_values = true, default_value_t = 16.0)]
    pub lora_alpha: f64,
    /// LoRA dropout.
    #[arg(long, value_parser = finite, allow_hyphen_values = true, default_value_t = 0.0)]
    pub lora_dropout: f64,
    /// Projections that get LoRA adapters: q,k,v,o,gate,up,down (or q_proj, ...) | all-linear.
    #[arg(long, value_name = "LIST", value_parser = targets, default_value = "all-linear")]
    pub lora_targets: ::std::vec::Vec<LoraTarget>,
    /// The policy's chat template: checkpoint | llama3 | FILE.jinja.
    #[arg(long, value_name = "T", default_value_t = d().online.chat_template)]
    pub chat_template: TemplateChoice,
    /// The date strftime_now returns in chat templates (YYYY-MM-DD) [default: today].
    #[arg(long, value_name = "DATE")]
    pub template_date: Option<String>,
    /// The built-in task's options and your models.
    #[command(flatten)]
    pub task: TaskConfig,
}

impl Args {
    /// `c` with every flag that `given` says was given set.
    fn apply(&self, c: &mut LoopConfig, given: &dyn Fn(&str) -> bool) {
        let o = &mut c.online;
        macro_rules! set {
            ($($flag:literal: $target:expr => $value:expr;)+) => {
                $(if given($flag) { $target = $value; })+
            };
        }
        set! {
            "seed": o.seed => self.seed;
            "algorithm": o.algorithm => self.algorithm;
            "iterations": o.iterations => self.iterations;
            "k": o.generation.num_responses => self.k;
            "prompts_per_iteration": o.prompts_per_iteration => Some(self.prompts_per_iteration);
            "eval_prompts": o.eval_prompts => self.eval_prompts;
            "eval_samples": o.eval_samples => self.eval_samples;
            "max_new_tokens": o.generation.max_new_tokens => self.max_new_tokens;
            "temperature": o.generation.sampler.temperature => self.temperature;
            "max_prompt_tokens": o.truncation.max_prompt_len => self.max_prompt_tokens;
            "max_total_tokens": o.truncation.max_total_len => self.max_total_tokens;
            "beta": o.dpo.loss.beta => self.beta;
            "lr": o.dpo_optimizer.lr => self.lr;
            "loss": o.dpo.loss.loss => self.loss;
            "choose": o.choose => self.choose;
            "reference": o.reference => self.reference;
            "policy_epochs": o.epochs => self.policy_epochs;
            "dpo_batch_size": o.dpo_optimizer.micro_batch_size => self.dpo_batch_size;
            "dpo_nll_weight": o.dpo.nll_weight => self.dpo_nll_weight;
            "rrhf_lr": o.rrhf_optimizer.lr => self.rrhf_lr;
            "rrhf_batch_size": o.rrhf_optimizer.micro_batch_size => self.rrhf_batch_size;
            "rrhf_length_alpha": o.rrhf.loss.length_alpha => self.rrhf_length_alpha;
            "rrhf_rank_weight": o.rrhf.loss.rank_weight => self.rrhf_rank_weight;
            "no_offline": o.offline => !self.no_offline;
            "chat_template": o.chat_template => self.chat_template.clone();
            "template_date": o.template_date => self.template_date.clone();
        }
        let lora_flags = ["lora_rank", "lora_alpha", "lora_dropout", "lora_targets"];
        if lora_flags.iter().any(|f| given(f)) {
            let base = o.lora.clone().unwrap_or_else(|| {
                LoraConfig::new(self.lora_targets.clone())
                    .with_rank(self.lora_rank)
                    .with_alpha(self.lora_alpha)
                    .with_dropout(self.lora_dropout)
            });
            let mut l = base;
            set! {
                "lora_rank": l.rank => self.lora_rank;
                "lora_alpha": l.alpha => self.lora_alpha;
                "lora_dropout": l.dropout => self.lora_dropout;
                "lora_targets": l.targets => self.lora_targets.clone();
            }
            o.lora = (l.rank > 0).then_some(l);
        }
    }

    /// The configuration: the defaults, `--config`'s file merged on top (its keys checked), then
    /// every flag given on the command line; validated.
    fn into_config(self, matches: &ArgMatches) -> Result<LoopConfig, String> {
        let mut cfg = LoopConfig::default();
        if let Some(path) = &self.config {
            let name = path.display();
            let text =
                std::fs::read_to_string(path).map_err(|e| format!("--config {name}: {e}"))?;
            let file: Value =
                serde_json::from_str(&text).map_err(|e| format!("--config {name}: {e}"))?;
            let mut base = cfg.to_json();
            merge(&mut base, &file, "").map_err(|e| format!("--config {name}: {e}"))?;
            cfg = LoopConfig::from_json(base).map_err(|e| format!("--config {name}: {e}"))?;
        }
        let given = |id: &str| matches.value_source(id) == Some(ValueSource::CommandLine);
        self.apply(&mut cfg, &given);
        // The task's flags are its config's keys: those given replace the file's.
        let mut task = serde_json::to_value(&cfg.task).map_err(|e| e.to_string())?;
        if let (Value::Object(task), Ok(Value::Object(flags))) =
            (&mut task, serde_json::to_value(&self.task))
        {
            for (key, value) in flags.into_iter().filter(|(k, _)| given(k)) {
                task.insert(key, value);
            }
        }
        cfg.task = serde_json::from_value(task).map_err(|e| e.to_string())?;
        cfg.validate()?;
        Ok(cfg)
    }
}

/// Merges `file` into `base` key by key, descending into objects whose keys all exist in the
/// base (a struct); any other value replaces the base's whole (an enum's variant, a list). An
/// unknown key or a value of another JSON type than the default's is an error naming the key.
/// `policy_dir` and `reward_source`, which a run's `config.json` records, are not settings.
fn merge(base: &mut Value, file: &Value, path: &str) -> Result<(), String> {
    let (Value::Object(b), Value::Object(f)) = (base, file) else {
        return Err("the file is not a JSON object".into());
    };
    for (key, value) in f {
        let here = if path.is_empty() {
            key.clone()
        } else {
            format!("{path}.{key}")
        };
        if path.is_empty() && (key == "policy_dir" || key == "reward_source") {
            continue;
        }
        let Some(slot) = b.get_mut(key) else {
            return Err(format!("unknown key `{here}`"));
        };
        let kind = |v: &Value| match v {
            Value::Null => "null",
            Value::Bool(_) => "a boolean",
            Value::Number(_) => "a number",
            Value::String(_) => "a string",
            Value::Array(_) => "a list",
            Value::Object(_) => "an object",
        };
        match (&*slot, value) {
            (Value::Object(s), Value::Object(v)) if v.keys().all(|k| s.contains_key(k)) => {
                merge(slot, value, &here)?;
            }
            (Value::Number(_), v) if !v.is_number() => {
                return Err(format!("key `{here}`: expected a number, got {}", kind(v)));
            }
            (Value::Bool(_), v) if !v.is_boolean() => {
                return Err(format!(
                    "key `{here}`: expected true or false, got {}",
                    kind(v)
                ));
            }
            _ => *slot = value.clone(),
        }
    }
    Ok(())
}

/// Parses a command line (without the program name) into a validated configuration; `Err` holds
/// clap's error (which prints help and version too).
pub fn parse(args: &[&str]) -> Result<LoopConfig, clap::Error> {
    Ok(parse_command(args)?.0)
}

/// [`parse`], and whether `--setup-only` was given.
pub fn parse_command(args: &[&str]) -> Result<(LoopConfig, bool), clap::Error> {
    let argv = std::iter::once("iterative_dpo").chain(args.iter().copied());
    let matches = Args::command().try_get_matches_from(argv)?;
    let args = Args::from_arg_matches(&matches)?;
    let setup_only = args.setup_only;
    let cfg = args
        .into_config(&matches)
        .map_err(|m| clap::Error::raw(clap::error::ErrorKind::ValueValidation, m + "\n"))?;
    Ok((cfg, setup_only))
}
