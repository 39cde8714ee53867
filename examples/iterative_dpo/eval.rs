//! Evaluation of a policy on held-out prompts: gold and proxy reward, win rate against the SFT
//! policy, response length and a sampled KL estimate to the reference.

use super::models::{I, Res, Text, completion_logprobs, score};
use super::progress::Progress;
use super::report::Evaluation;
use super::task::GoldJudge;
use kiln::data::Content;
use kiln::data::examples::encode_generation_prompt;
use kiln::model::LlamaForCausalLM;
use kiln::reward::RewardModel;
use kiln::sampling::{FinishReason, GenerationConfig, Generator, SamplerConfig};
use serde::{Deserialize, Serialize};

/// Responses sampled per evaluation prompt.
pub const EVAL_SAMPLES: usize = 2;

/// What an evaluation stores (`eval.json`): the summary numbers plus the per-response gold
/// rewards the win rate of later policies is computed against.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EvalRecord {
    /// The numbers of the table.
    pub evaluation: Evaluation,
    /// Gold reward of every evaluation response, prompt-major (empty without a gold judge).
    pub gold_per_response: Vec<f64>,
}

/// Settings shared by every evaluation of a run.
pub struct EvalSetup<'a> {
    /// Held-out prompts.
    pub prompts: &'a [Content],
    /// Text plumbing.
    pub text: &'a Text,
    /// The proxy reward model.
    pub reward_model: &'a dyn RewardModel,
    /// The hidden judge (built-in task only).
    pub judge: Option<&'a GoldJudge>,
    /// Gold rewards of the SFT policy's evaluation responses (for the win rate).
    pub sft_gold: Option<&'a [f64]>,
    /// Generation length limit.
    pub max_new_tokens: usize,
    /// Sampling seed (the same for every policy: common random numbers).
    pub seed: u64,
}

fn mean(xs: impl IntoIterator<Item = f64>) -> f64 {
    let (s, n) = xs
        .into_iter()
        .fold((0.0, 0usize), |(s, n), x| (s + x, n + 1));
    if n == 0 { 0.0 } else { s / n as f64 }
}

/// Evaluates `policy` (sampling at temperature 1) against `reference` for the KL estimate.
pub fn evaluate(
    setup: &EvalSetup<'_>,
    label: &str,
    policy: &LlamaForCausalLM<I>,
    reference: &LlamaForCausalLM<I>,
) -> Res<EvalRecord> {
    let text = setup.text;
    let ids: Vec<Vec<u32>> = setup
        .prompts
        .iter()
        .map(|p| {
            encode_generation_prompt(
                &text.tokenizer,
                &text.template,
                p,
                text.truncation.max_prompt_len,
            )
        })
        .collect::<Result<_, _>>()?;
    let config = GenerationConfig::new()
        .with_sampler(
            SamplerConfig::new()
                .with_temperature(1.0)
                .with_seed(setup.seed),
        )
        .with_max_new_tokens(setup.max_new_tokens)
        .with_num_responses(EVAL_SAMPLES)
        .with_stop_token_ids(text.template.stop_ids())
        .with_pad_token_id(text.pad_id)
        .with_prompt_batch_size(32)
        .with_concurrent_batches(super::models::cpu_cores());
    let generator = Generator::new(policy, config)?.with_tokenizer(&text.tokenizer);
    let streams: Vec<u64> = (0..ids.len() as u64).collect();
    let mut bar = Progress::new(format!("eval {label}"), ids.len() * EVAL_SAMPLES);
    let mut done = 0;
    let out = generator.generate_with(&ids, &streams, |p| {
        bar.advance(p.finished_responses - done, "");
        done = p.finished_responses;
    })?;
    bar.finish();

    let mut items = Vec::new();
    let mut gold = Vec::new();
    let mut lengths = Vec::new();
    let mut examples = Vec::new();
    for (prompt, responses) in setup.prompts.iter().zip(&out.responses) {
        for g in responses {
            items.push((prompt.clone(), g.text.clone()));
            lengths.push(g.token_ids.len() as f64);
            examples.push(text.example(prompt, &g.text)?);
            if let Some(judge) = setup.judge {
                let finished = g.finish_reason != FinishReason::Length;
                gold.push(f64::from(judge.score(&prompt.text(), &g.text, finished)));
            }
        }
    }
    let proxy = score(setup.reward_model, &items)?;
    let lp_policy = completion_logprobs(policy, &examples, text.pad_id, 64)?;
    let lp_ref = completion_logprobs(reference, &examples, text.pad_id, 64)?;
    let win_rate = match (setup.judge, setup.sft_gold) {
        (Some(_), Some(sft)) if sft.len() == gold.len() => {
            Some(mean(gold.iter().zip(sft).map(|(a, b)| {
                if a > b {
                    1.0
                } else if a == b {
                    0.5
                } else {
                    0.0
                }
            })))
        }
        _ => None,
    };
    let evaluation = Evaluation {
        gold_reward_mean: setup.judge.map(|_| mean(gold.iter().copied())),
        proxy_reward_mean: mean(proxy.iter().map(|&x| f64::from(x))),
        win_rate_vs_sft: win_rate,
        mean_response_tokens: mean(lengths),
        kl_to_reference: mean(lp_policy.iter().zip(&lp_ref).map(|(a, b)| f64::from(a - b))),
        ..Evaluation::default()
    };
    Ok(EvalRecord {
        evaluation,
        gold_per_response: gold,
    })
}
