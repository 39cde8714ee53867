//! [`OnlineConfig`]: everything an online run depends on, in one burn `Config` that embeds the
//! trainer, optimiser and generation configs (a run's `config.json` deserialises straight into
//! it), with the variants it picks between ([`Algorithm`], [`ReferenceChoice`], [`PromptOrder`]).

use burn::config::Config;
use kiln_data::{SelectionStrategy, TemplateChoice, TruncationConfig};
use kiln_losses::DpoConfig;
use kiln_model::LoraConfig;
use kiln_sampling::{GenerationConfig, SamplerConfig};
use kiln_train::TrainConfig;
use kiln_train::dpo::DpoTrainConfig;
use kiln_train::rrhf::RrhfTrainConfig;
use serde::{Deserialize, Serialize};

use crate::error::Error;

/// What trains the policy on an iteration's annotated responses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Algorithm {
    /// DPO on one selected pair per prompt, against the reference model.
    #[default]
    Dpo,
    /// RRHF on all K ranked responses per prompt: length-normalised ranking loss plus the NLL of
    /// the best response; no reference model.
    Rrhf,
}

/// Which model DPO measures the policy against.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ReferenceChoice {
    /// The SFT policy pi_0 for every iteration (the paper).
    #[default]
    Sft,
    /// The previous iteration's policy (later RLHFlow scripts).
    Previous,
}

/// How each iteration's prompts are taken from the training prompts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PromptOrder {
    /// Consecutive slices (iteration `t` takes prompts `(t-1) n .. t n`, wrapping around), as the
    /// paper splits its prompt set over the iterations.
    #[default]
    InOrder,
    /// `n` prompts drawn uniformly with replacement, from the run seed and the iteration.
    Random,
}

macro_rules! text_enum {
    ($t:ty, $what:literal, $($name:literal => $v:expr),+) => {
        impl std::str::FromStr for $t {
            type Err = Error;

            fn from_str(s: &str) -> Result<Self, Error> {
                match s {
                    $($name => Ok($v),)+
                    other => Err(Error::InvalidConfig(format!(
                        concat!("unknown ", $what, " `{}` (", $($name, " "),+ , ")"),
                        other
                    ))),
                }
            }
        }

        impl std::fmt::Display for $t {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                $(if *self == $v { return f.write_str($name); })+
                Ok(())
            }
        }
    };
}

text_enum!(Algorithm, "algorithm", "dpo" => Algorithm::Dpo, "rrhf" => Algorithm::Rrhf);
text_enum!(ReferenceChoice, "reference", "sft" => ReferenceChoice::Sft,
    "previous" => ReferenceChoice::Previous);
text_enum!(PromptOrder, "prompt order", "in_order" => PromptOrder::InOrder,
    "random" => PromptOrder::Random);

impl ReferenceChoice {
    /// The reference's directory for an iteration that starts from `previous`.
    pub fn dir<'a>(
        self,
        sft: &'a std::path::Path,
        previous: &'a std::path::Path,
    ) -> &'a std::path::Path {
        match self {
            ReferenceChoice::Sft => sft,
            ReferenceChoice::Previous => previous,
        }
    }
}

/// Everything an online run depends on (the loop of RLHFlow, arXiv 2405.07863): `iterations`
/// times generate `K` responses per prompt with the current policy -> annotate -> select
/// (best-vs-worst pairs for DPO, ranked lists for RRHF) -> train, then evaluate.
///
/// The defaults are the paper's recipe where it gives one (T = 3, K = 8, temperature 1, DPO
/// beta 0.1 at lr 5e-7 against pi_0, 2 epochs, 10 % warmup, cosine); the embedded configs keep
/// their own meaning, with three fields set by the loop: each optimiser's `total_steps` (from
/// `epochs` and the data) and `seed` (from [`Self::seed`]), the trainers' `pad_id` (the chat
/// encoder's), and the sampler's `seed` (per iteration). The generation's stop ids are the chat
/// template's (plus any listed in `generation.stop_token_ids`).
///
/// ```
/// use kiln_online::{Algorithm, OnlineConfig};
/// let config = OnlineConfig::new().with_iterations(2).with_algorithm(Algorithm::Rrhf);
/// let json = config.to_string(); // the run's config.json
/// let back: OnlineConfig = serde_json::from_str(&json).unwrap();
/// assert_eq!(back, config);
/// ```
#[derive(Config, Debug, PartialEq)]
pub struct OnlineConfig {
    /// DPO or RRHF.
    #[config(default = "Algorithm::Dpo")]
    pub algorithm: Algorithm,
    /// Online iterations T.
    #[config(default = 3)]
    pub iterations: usize,
    /// Prompts per iteration; `None`: the training prompts split evenly over the iterations.
    pub prompts_per_iteration: Option<usize>,
    /// How each iteration's prompts are taken from the training prompts.
    #[config(default = "PromptOrder::InOrder")]
    pub prompt_order: PromptOrder,
    /// Evaluation prompts held out from the end of the training prompts when none are given.
    #[config(default = 64)]
    pub eval_prompts: usize,
    /// Responses sampled per evaluation prompt (at temperature 1: the policy's own distribution,
    /// which the KL estimate needs).
    #[config(default = 2)]
    pub eval_samples: usize,
    /// DPO's reference model.
    #[config(default = "ReferenceChoice::Sft")]
    pub reference: ReferenceChoice,
    /// Which two responses of a prompt make DPO's pair.
    #[config(default = "SelectionStrategy::MaxMin")]
    pub choose: SelectionStrategy,
    /// Epochs over each iteration's pairs (DPO) or ranked prompts (RRHF): they set the step count.
    #[config(default = 2)]
    pub epochs: usize,
    /// Also train an offline baseline: the same algorithm and total steps on pi_0's samples of
    /// all the iterations' prompts at once.
    #[config(default = false)]
    pub offline: bool,
    /// Master seed: prompts, sampling, pair selection, data order, fresh adapters, evaluation.
    #[config(default = 42)]
    pub seed: u64,
    /// LoRA adapters on the policy (saved as PEFT adapters over pi_0); `None` trains every
    /// weight.
    pub lora: Option<LoraConfig>,
    /// Prompt and total length limits (the prompt keeps its end).
    #[config(default = "TruncationConfig::new()")]
    pub truncation: TruncationConfig,
    /// The chat template: the checkpoint's own, Llama-3's, or a Jinja file.
    #[config(default = "TemplateChoice::Checkpoint")]
    pub chat_template: TemplateChoice,
    /// The date `strftime_now` returns in chat templates (`YYYY-MM-DD`); the system date when
    /// `None`.
    pub template_date: Option<String>,
    /// Sampling of the `K` (`num_responses`) responses per prompt.
    #[config(default = "OnlineConfig::default_generation()")]
    pub generation: GenerationConfig,
    /// DPO's loss and trainer settings.
    #[config(default = "DpoTrainConfig::new().with_loss(DpoConfig::new())")]
    pub dpo: DpoTrainConfig,
    /// DPO's optimiser.
    #[config(default = "OnlineConfig::default_optimizer(5e-7, 16)")]
    pub dpo_optimizer: TrainConfig,
    /// RRHF's loss and trainer settings.
    #[config(default = "RrhfTrainConfig::new()")]
    pub rrhf: RrhfTrainConfig,
    /// RRHF's optimiser (a micro-batch is that many prompts with their `K` responses).
    #[config(default = "OnlineConfig::default_optimizer(1e-4, 4)")]
    pub rrhf_optimizer: TrainConfig,
}

impl OnlineConfig {
    /// `K = 8` responses of at most 512 new tokens at temperature 1 (the paper's 2048 is for
    /// GPUs), 32 prompts per decoding batch.
    pub fn default_generation() -> GenerationConfig {
        GenerationConfig::new()
            .with_sampler(SamplerConfig::new())
            .with_num_responses(8)
            .with_max_new_tokens(512)
            .with_prompt_batch_size(32)
    }

    /// AdamW at `lr` with PyTorch's defaults, `micro_batch` items per micro-batch, 10 % warmup
    /// then cosine; the step count comes from the data.
    pub fn default_optimizer(lr: f64, micro_batch: usize) -> TrainConfig {
        TrainConfig::new(0)
            .with_lr(lr)
            .with_warmup_ratio(0.1)
            .with_micro_batch_size(micro_batch)
            .with_log_every(0)
    }

    /// Responses per prompt `K`.
    pub fn k(&self) -> usize {
        self.generation.num_responses
    }

    /// The optimiser of the configured algorithm.
    pub fn optimizer(&self) -> &TrainConfig {
        match self.algorithm {
            Algorithm::Dpo => &self.dpo_optimizer,
            Algorithm::Rrhf => &self.rrhf_optimizer,
        }
    }

    /// Optimiser steps for `items` pairs or ranked prompts: `epochs` passes at the algorithm's
    /// global batch, at least one when there is anything to train on; `fixed` overrides.
    pub fn steps(&self, items: usize, fixed: Option<usize>) -> usize {
        let batch = self.optimizer().global_batch_size().max(1);
        fixed
            .unwrap_or_else(|| (items * self.epochs).div_ceil(batch))
            .max(usize::from(items > 0))
    }

    /// The training data file and its statistics file of the select stage.
    pub fn selection_files(&self) -> (&'static str, &'static str) {
        match self.algorithm {
            Algorithm::Dpo => ("pairs.jsonl", "pairs_stats.json"),
            Algorithm::Rrhf => ("ranked.jsonl", "ranked_stats.json"),
        }
    }

    /// Checks what the embedded configs do not check themselves, naming the field.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] naming the first bad field.
    pub fn validate(&self) -> crate::Result<()> {
        let bad = |m: String| Err(Error::InvalidConfig(m));
        if self.k() < 2 {
            return bad(format!(
                "generation.num_responses (K) must be at least 2 to compare responses, got {}",
                self.k()
            ));
        }
        let positive = [
            ("iterations", self.iterations),
            ("eval_samples", self.eval_samples),
            ("epochs", self.epochs),
            ("generation.max_new_tokens", self.generation.max_new_tokens),
        ];
        if let Some((field, _)) = positive.iter().find(|(_, v)| *v == 0) {
            return bad(format!("{field} must be positive"));
        }
        if self.prompts_per_iteration == Some(0) {
            return bad("prompts_per_iteration must be positive".into());
        }
        self.generation
            .validate()
            .map_err(|e| Error::InvalidConfig(format!("generation: {e}")))?;
        self.truncation
            .validate()
            .map_err(|e| Error::InvalidConfig(format!("truncation: {e}")))?;
        self.dpo
            .loss
            .init()
            .map_err(|e| Error::InvalidConfig(format!("dpo.loss: {e}")))?;
        self.rrhf
            .loss
            .init()
            .map_err(|e| Error::InvalidConfig(format!("rrhf.loss: {e}")))?;
        for (name, o) in [
            ("dpo_optimizer", &self.dpo_optimizer),
            ("rrhf_optimizer", &self.rrhf_optimizer),
        ] {
            let mut o = o.clone();
            o.total_steps = o.total_steps.max(1);
            o.schedule()
                .map_err(|e| Error::InvalidConfig(format!("{name}: {e}")))?;
        }
        if let Some(lora) = &self.lora {
            lora.validate()
                .map_err(|e| Error::InvalidConfig(format!("lora: {e}")))?;
        }
        if let Some(d) = &self.template_date
            && kiln_data::DateTime::parse_date(d).is_none()
        {
            return bad(format!("template_date: `{d}` is not a date (YYYY-MM-DD)"));
        }
        Ok(())
    }

    /// The clock chat templates read: `template_date`, else the system's.
    pub fn template_clock(&self) -> kiln_data::TemplateClock {
        match self
            .template_date
            .as_deref()
            .and_then(kiln_data::DateTime::parse_date)
        {
            Some(d) => kiln_data::TemplateClock::Pinned(d),
            None => kiln_data::TemplateClock::System,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_validate_and_round_trip_through_json() {
        let c = OnlineConfig::new();
        c.validate().unwrap();
        assert_eq!(c.k(), 8);
        let back: OnlineConfig = serde_json::from_str(&c.to_string()).unwrap();
        assert_eq!(back, c);
        for (s, a) in [("dpo", Algorithm::Dpo), ("rrhf", Algorithm::Rrhf)] {
            assert_eq!(s.parse::<Algorithm>().unwrap(), a);
            assert_eq!(a.to_string(), s);
        }
        let e = "ppo".parse::<Algorithm>().unwrap_err().to_string();
        assert!(e.contains("`ppo`") && e.contains("dpo"), "{e}");
        assert_eq!(
            "previous".parse::<ReferenceChoice>().unwrap(),
            ReferenceChoice::Previous
        );
    }

    #[test]
    fn bad_fields_are_named() {
        let e = OnlineConfig::new()
            .with_generation(OnlineConfig::default_generation().with_num_responses(1))
            .validate()
            .unwrap_err();
        assert!(e.to_string().contains("num_responses"), "{e}");
        let e = OnlineConfig::new().with_epochs(0).validate().unwrap_err();
        assert!(e.to_string().contains("epochs"), "{e}");
        let lr = OnlineConfig::default_optimizer(f64::NAN, 4);
        let e = OnlineConfig::new()
            .with_dpo_optimizer(lr)
            .validate()
            .unwrap_err();
        assert!(e.to_string().contains("dpo_optimizer"), "{e}");
    }

    #[test]
    fn steps_come_from_epochs_and_the_global_batch() {
        let c = OnlineConfig::new().with_epochs(4);
        assert_eq!(c.steps(128, None), 32);
        assert_eq!(c.steps(111, None), 28);
        assert_eq!(c.steps(0, None), 0);
        assert_eq!(c.steps(3, Some(10)), 10);
        let o = TrainConfig {
            total_steps: 28,
            ..c.dpo_optimizer.clone()
        };
        assert_eq!(o.warmup(), 2, "floor(0.1 * 28)");
    }
}
