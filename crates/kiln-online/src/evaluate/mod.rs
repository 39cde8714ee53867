//! Evaluation of a policy on held-out prompts: gold (when a [`Judge`] exists) and proxy reward,
//! win rate against the SFT policy with paired-bootstrap intervals, response length and the
//! sampled KL to the SFT policy; [`stats`] holds the statistics.

use burn::tensor::backend::AutodiffBackend;
use kiln_data::{ChatEncoder, Content};
use kiln_model::CausalLm;
use kiln_reward::AnyAnnotator;
use kiln_sampling::{FinishReason, GenerationConfig};
use kiln_train::Placement;
use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::generate::sample;
use crate::judge::Judge;
use crate::observer::Observer;

pub mod stats;

pub use stats::{
    Interval, completion_logprobs, mean_difference, paired_bootstrap, sampled_kl, win_rate,
    win_rate_statistic,
};

/// Bootstrap replicates for the confidence intervals.
pub const RESAMPLES: usize = 2000;

/// serde for `f64` metrics that may be NaN or infinite: written as `null` (JSON has no NaN) and
/// read back as NaN, so a resumed run can always read what an earlier one wrote.
pub mod nan_as_null {
    use serde::{Deserialize, Deserializer, Serializer};

    /// Writes finite values as numbers, anything else as `null`.
    ///
    /// # Errors
    /// The serializer's.
    pub fn serialize<S: Serializer>(v: &f64, s: S) -> Result<S::Ok, S::Error> {
        if v.is_finite() {
            s.serialize_f64(*v)
        } else {
            s.serialize_none()
        }
    }

    /// Reads a number, or `null` as NaN.
    ///
    /// # Errors
    /// The deserializer's.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
        Ok(Option::<f64>::deserialize(d)?.unwrap_or(f64::NAN))
    }
}

/// One evaluation of a policy on the held-out prompts (a row of the run's table).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct Evaluation {
    /// Mean gold reward (absent without a judge).
    pub gold_reward_mean: Option<f64>,
    /// Mean proxy reward: the BT score, or the pairwise model's preference over the SFT policy's
    /// response.
    #[serde(with = "nan_as_null")]
    pub proxy_reward_mean: f64,
    /// Gold win rate against the SFT policy on the same prompts and samples (ties count one half).
    pub win_rate_vs_sft: Option<f64>,
    /// 95 % paired-bootstrap interval (over evaluation prompts) of the gold gain over the SFT
    /// policy.
    pub gold_gain_ci: Option<Interval>,
    /// 95 % paired-bootstrap interval of the win rate against the SFT policy.
    pub win_rate_ci: Option<Interval>,
    /// Mean response length in tokens.
    #[serde(with = "nan_as_null")]
    pub mean_response_tokens: f64,
    /// Sampled estimate of KL(policy || SFT): mean of `logp_pi(y) - logp_sft(y)`, `y ~ pi`.
    #[serde(with = "nan_as_null")]
    pub kl_to_sft: f64,
    /// Pairs (DPO) or ranked prompts (RRHF) trained on to produce this policy (0 for SFT).
    pub pairs: usize,
    /// Prompts dropped because their rewards tied.
    pub ties_dropped: usize,
    /// Wall time of the stages that produced this policy and its evaluation, seconds.
    #[serde(with = "nan_as_null")]
    pub seconds: f64,
}

/// What an evaluation stores: the numbers plus what later evaluations are compared with
/// (per-response gold rewards and the responses).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EvalRecord {
    /// The numbers.
    pub evaluation: Evaluation,
    /// Gold reward of every evaluation response, prompt-major (empty without a judge).
    pub gold_per_response: Vec<f64>,
    /// The evaluation responses, prompt-major.
    pub responses: Vec<String>,
}

/// Settings shared by every evaluation of a run.
pub struct Evaluator<'a, A: AutodiffBackend> {
    /// Where the sampling runs (this process's peers).
    pub placement: &'a Placement<A>,
    /// Held-out prompts.
    pub prompts: &'a [Content],
    /// Text to ids.
    pub enc: &'a ChatEncoder,
    /// The proxy: a BT model's score, or the pairwise model's preference over the SFT policy's
    /// response.
    pub annotator: &'a dyn AnyAnnotator,
    /// The hidden judge, when the task has one.
    pub judge: Option<&'a dyn Judge>,
    /// The SFT policy's evaluation: win rates and pairwise proxies are against it (`None` when
    /// evaluating the SFT policy itself).
    pub sft: Option<&'a EvalRecord>,
    /// Responses per prompt (`num_responses`), length limit and decoding batches; sample at
    /// temperature 1 (the policy's own distribution), which the KL estimate needs.
    pub generation: GenerationConfig,
    /// Sampling seed (the same for every policy: common random numbers).
    pub seed: u64,
    /// Progress.
    pub observer: &'a dyn Observer,
}

fn mean(xs: &[f64]) -> f64 {
    if xs.is_empty() {
        0.0
    } else {
        xs.iter().sum::<f64>() / xs.len() as f64
    }
}

impl<A: AutodiffBackend> Evaluator<'_, A> {
    /// Evaluates `policy` against the SFT model `sft_model` (for the KL estimate); `label` names
    /// the bar.
    ///
    /// # Errors
    /// Generation, scoring and statistics errors.
    pub fn evaluate<M, R>(&self, label: &str, policy: &M, sft_model: &R) -> Result<EvalRecord>
    where
        M: CausalLm<A::InnerBackend> + Sync,
        R: CausalLm<A::InnerBackend>,
    {
        let enc = self.enc;
        let out = sample(
            self.placement,
            policy,
            enc,
            self.prompts,
            &self.generation,
            self.seed,
            &format!("eval {label}"),
            self.observer,
        )?;
        let (mut items, mut gold, mut lengths, mut examples, mut responses) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for (prompt, gens) in self.prompts.iter().zip(&out) {
            for g in gens {
                items.push((prompt.clone(), g.text.clone()));
                lengths.push(g.token_ids.len() as f64);
                examples.push(enc.prompt_completion(prompt, &Content::Text(g.text.clone()))?);
                responses.push(g.text.clone());
                if let Some(judge) = self.judge {
                    let finished = g.finish_reason != FinishReason::Length;
                    gold.push(f64::from(judge.score(&prompt.text(), &g.text, finished)));
                }
            }
        }
        let baseline = self.sft.map(|b| b.responses.as_slice());
        let proxy = self.annotator.proxy_scores(&items, baseline)?;
        let lp_policy = completion_logprobs(policy, &examples, enc.pad_id, 64)?;
        let lp_sft = completion_logprobs(sft_model, &examples, enc.pad_id, 64)?;
        let mut evaluation = Evaluation {
            gold_reward_mean: self.judge.map(|_| mean(&gold)),
            proxy_reward_mean: mean(&proxy),
            mean_response_tokens: mean(&lengths),
            kl_to_sft: sampled_kl(&lp_policy, &lp_sft)?,
            ..Evaluation::default()
        };
        if let (Some(_), Some(base)) = (self.judge, self.sft)
            && base.gold_per_response.len() == gold.len()
        {
            let base = &base.gold_per_response;
            evaluation.win_rate_vs_sft = Some(win_rate(&gold, base)?);
            let g = self.generation.num_responses;
            evaluation.gold_gain_ci = Some(paired_bootstrap(
                &gold,
                base,
                g,
                RESAMPLES,
                0.95,
                self.seed,
                mean_difference,
            )?);
            evaluation.win_rate_ci = Some(paired_bootstrap(
                &gold,
                base,
                g,
                RESAMPLES,
                0.95,
                self.seed,
                win_rate_statistic,
            )?);
        }
        Ok(EvalRecord {
            evaluation,
            gold_per_response: gold,
            responses,
        })
    }
}
