//! Evaluation of a policy on held-out prompts: gold and proxy reward, win rate against the SFT
//! policy with paired-bootstrap confidence intervals, response length and the sampled KL to the
//! reference. The statistics come from `kiln::train::eval`.

use super::models::{Annotation, I, Res, decode_concurrency};
use super::progress::Bar;
use super::report::Evaluation;
use super::task::GoldJudge;
use kiln::data::{ChatEncoder, Content};
use kiln::model::LlamaForCausalLM;
use kiln::reward::RewardModel;
use kiln::sampling::{FinishReason, GenerationConfig, Generator, SamplerConfig};
use kiln::train::eval::{
    completion_logprobs, mean_difference, paired_bootstrap, sampled_kl, win_rate,
    win_rate_statistic,
};
use serde::{Deserialize, Serialize};

/// Bootstrap replicates for the confidence intervals.
const RESAMPLES: usize = 2000;

/// What an evaluation stores (`eval.json`): the table's numbers plus what later evaluations are
/// compared with (per-response gold rewards and, for the pairwise annotator, the responses).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EvalRecord {
    /// The numbers of the table.
    pub evaluation: Evaluation,
    /// Gold reward of every evaluation response, prompt-major (empty without a gold judge).
    pub gold_per_response: Vec<f64>,
    /// The evaluation responses, prompt-major.
    pub responses: Vec<String>,
}

/// Settings shared by every evaluation of a run.
pub struct EvalSetup<'a> {
    /// Held-out prompts.
    pub prompts: &'a [Content],
    /// Text to ids.
    pub enc: &'a ChatEncoder,
    /// The proxy: a BT model's mean score, or the pairwise model's preference over SFT's response.
    pub annotator: &'a Annotation,
    /// The hidden judge (built-in task only).
    pub judge: Option<&'a GoldJudge>,
    /// The SFT policy's evaluation (win rates and pairwise proxies are against it).
    pub sft: Option<&'a EvalRecord>,
    /// Responses per prompt.
    pub samples: usize,
    /// Generation length limit.
    pub max_new_tokens: usize,
    /// Sampling seed (the same for every policy: common random numbers).
    pub seed: u64,
}

fn mean(xs: &[f64]) -> f64 {
    if xs.is_empty() {
        0.0
    } else {
        xs.iter().sum::<f64>() / xs.len() as f64
    }
}

/// Evaluates `policy` (sampling at temperature 1) against `reference` for the KL estimate.
pub fn evaluate(
    setup: &EvalSetup<'_>,
    label: &str,
    policy: &LlamaForCausalLM<I>,
    reference: &LlamaForCausalLM<I>,
) -> Res<EvalRecord> {
    let enc = setup.enc;
    let ids: Vec<Vec<u32>> = setup
        .prompts
        .iter()
        .map(|p| enc.generation_prompt(p))
        .collect::<Result<_, _>>()?;
    let config = GenerationConfig::new()
        .with_sampler(
            SamplerConfig::new()
                .with_temperature(1.0)
                .with_seed(setup.seed),
        )
        .with_max_new_tokens(setup.max_new_tokens)
        .with_num_responses(setup.samples)
        .with_stop_token_ids(enc.stop_ids())
        .with_pad_token_id(enc.pad_id)
        .with_prompt_batch_size(32)
        .with_concurrent_batches(decode_concurrency());
    let generator = Generator::new(policy, config)?.with_tokenizer(&enc.tokenizer);
    let streams: Vec<u64> = (0..ids.len() as u64).collect();
    let bar = Bar::new(format!("eval {label}"), ids.len() * setup.samples);
    let out = generator.generate_with(&ids, &streams, |p| bar.set(p.finished_responses))?;
    bar.finish();

    let (mut items, mut gold, mut lengths, mut examples, mut responses) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for (prompt, gens) in setup.prompts.iter().zip(&out.responses) {
        for g in gens {
            items.push((prompt.clone(), g.text.clone()));
            lengths.push(g.token_ids.len() as f64);
            examples.push(enc.prompt_completion(prompt, &Content::Text(g.text.clone()))?);
            responses.push(g.text.clone());
            if let Some(judge) = setup.judge {
                let finished = g.finish_reason != FinishReason::Length;
                gold.push(f64::from(judge.score(&prompt.text(), &g.text, finished)));
            }
        }
    }
    let proxy = proxy_scores(setup, &items)?;
    let lp_policy = completion_logprobs(policy, &examples, enc.pad_id, 64)?;
    let lp_ref = completion_logprobs(reference, &examples, enc.pad_id, 64)?;
    let mut evaluation = Evaluation {
        gold_reward_mean: setup.judge.map(|_| mean(&gold)),
        proxy_reward_mean: mean(&proxy),
        mean_response_tokens: mean(&lengths),
        kl_to_reference: sampled_kl(&lp_policy, &lp_ref)?,
        ..Evaluation::default()
    };
    if let (Some(_), Some(sft)) = (setup.judge, setup.sft)
        && sft.gold_per_response.len() == gold.len()
    {
        let base = &sft.gold_per_response;
        evaluation.win_rate_vs_sft = Some(win_rate(&gold, base)?);
        let g = setup.samples;
        evaluation.gold_gain_ci = Some(paired_bootstrap(
            &gold,
            base,
            g,
            RESAMPLES,
            0.95,
            setup.seed,
            mean_difference,
        )?);
        evaluation.win_rate_ci = Some(paired_bootstrap(
            &gold,
            base,
            g,
            RESAMPLES,
            0.95,
            setup.seed,
            win_rate_statistic,
        )?);
    }
    Ok(EvalRecord {
        evaluation,
        gold_per_response: gold,
        responses,
    })
}

/// Per-response proxy rewards: the BT score, or the pairwise model's `p(response > SFT's
/// response)` on the same prompt and sample (0.5 for the SFT policy itself).
fn proxy_scores(setup: &EvalSetup<'_>, items: &[(Content, String)]) -> Res<Vec<f64>> {
    match (setup.annotator, setup.sft) {
        (Annotation::Bt(rm), _) => {
            let refs: Vec<(&Content, &str)> = items.iter().map(|(p, r)| (p, r.as_str())).collect();
            Ok(rm.score_batch(&refs)?.into_iter().map(f64::from).collect())
        }
        (Annotation::Pairwise(pm), Some(sft)) if sft.responses.len() == items.len() => {
            let triples: Vec<(&Content, &str, &str)> = items
                .iter()
                .zip(&sft.responses)
                .map(|((p, r), s)| (p, r.as_str(), s.as_str()))
                .collect();
            let mut out = Vec::with_capacity(triples.len());
            for chunk in triples.chunks(32) {
                out.extend(pm.preference_probs(chunk)?.into_iter().map(f64::from));
            }
            Ok(out)
        }
        (Annotation::Pairwise(_), _) => Ok(vec![0.5; items.len()]),
    }
}
