//! RRHF training: K responses per prompt ranked by reward, no reference model
//! (`kiln_losses::Rrhf`).
//!
//! Response `i` of a prompt is scored `p_i = logp(y_i) / |y_i|^alpha` where `|y_i|` is its number
//! of response tokens (the paper's definition); the loss ranks the scores like the rewards and
//! adds the NLL of the best response.

use burn::config::Config;
use burn::module::AutodiffModule;
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::{ElementConversion, Tensor, TensorData};
use kiln_data::collate::collate_sft;
use kiln_data::{Example, LmBatch};
use kiln_losses::{Rrhf, RrhfConfig};
use kiln_model::{CausalLm, LogProbs};
use kiln_model::{LogProbReduction, LogProbStrategy};

use crate::error::Error;
use crate::train_loop::{StepLoss, StepStats, TrainLoop};

/// One prompt's K encoded responses (prompt + response tokens, response mask) and their rewards.
#[derive(Debug, Clone, PartialEq)]
pub struct RankedExamples {
    /// `K` examples sharing a prompt.
    pub responses: Vec<Example>,
    /// One reward per response.
    pub rewards: Vec<f32>,
}

/// Ranked records (a prompt's K responses, best first, with their rewards) encoded for RRHF with
/// the run's chat template and truncation.
///
/// # Errors
/// Tokenisation errors.
pub fn ranked_examples(
    records: &[kiln_data::RankedRecord],
    enc: &kiln_data::ChatEncoder,
) -> crate::Result<Vec<RankedExamples>> {
    records
        .iter()
        .map(|r| {
            Ok(RankedExamples {
                responses: enc.ranked(r)?,
                rewards: r.rewards.iter().map(|&x| x as f32).collect(),
            })
        })
        .collect()
}

/// A collated RRHF micro-batch of `P` prompts with `K` responses each (row `p * K + k`).
#[derive(Debug, Clone)]
pub struct RrhfBatch<B: Backend> {
    /// `P * K` right-padded rows.
    pub batch: LmBatch<B>,
    /// `[P, K]` response lengths in tokens.
    pub lengths: Tensor<B, 2>,
    /// `[P, K]` rewards.
    pub rewards: Tensor<B, 2>,
    /// `P`.
    pub prompts: usize,
    /// `K`.
    pub k: usize,
}

/// Collates ranked lists; all must have the same `K >= 2` and one reward per response.
///
/// # Errors
/// [`Error::InvalidInput`] naming the offending item.
pub fn collate_rrhf<B: Backend>(
    items: &[RankedExamples],
    pad_id: u32,
    device: &B::Device,
) -> crate::Result<RrhfBatch<B>> {
    let k = items.first().map_or(0, |i| i.responses.len());
    if k < 2 {
        return Err(Error::InvalidInput(format!(
            "RRHF needs at least 2 responses per prompt, got {k}"
        )));
    }
    for (i, item) in items.iter().enumerate() {
        if item.responses.len() != k || item.rewards.len() != k {
            return Err(Error::InvalidInput(format!(
                "RRHF item {i} has {} responses and {} rewards, expected {k} of each",
                item.responses.len(),
                item.rewards.len()
            )));
        }
    }
    let rows: Vec<Example> = items.iter().flat_map(|i| i.responses.clone()).collect();
    let lengths: Vec<f32> = rows.iter().map(|e| e.num_loss_tokens() as f32).collect();
    let rewards: Vec<f32> = items.iter().flat_map(|i| i.rewards.clone()).collect();
    let p = items.len();
    Ok(RrhfBatch {
        batch: collate_sft::<B>(&rows, pad_id, device)?,
        lengths: Tensor::from_data(TensorData::new(lengths, [p, k]), device),
        rewards: Tensor::from_data(TensorData::new(rewards, [p, k]), device),
        prompts: p,
        k,
    })
}

/// `[P, K]` summed response log-probs of a batch
/// ([`LogProbs::sequence_logprobs`]: chunked without autodiff).
pub fn response_logps<B: Backend, M: CausalLm<B>>(
    model: &M,
    batch: &RrhfBatch<B>,
) -> crate::Result<Tensor<B, 2>> {
    let b = &batch.batch;
    Ok(model
        .sequence_logprobs(
            b.input_ids.clone(),
            Some(b.attention_mask.clone()),
            b.loss_mask.clone(),
            LogProbReduction::Sum,
        )?
        .reshape([batch.prompts, batch.k]))
}

/// RRHF options (the optimiser settings live in the [`TrainConfig`](crate::TrainConfig)).
#[derive(Config, Debug, PartialEq)]
pub struct RrhfTrainConfig {
    /// The loss (length normalisation, ranking weight).
    #[config(default = "RrhfConfig::new()")]
    pub loss: RrhfConfig,
    /// Padding id of the micro-batches: the tokenizer's (`None` until set; the online trainer
    /// sets its chat encoder's). Training with `None` is an error naming this field.
    pub pad_id: Option<u32>,
    /// How log-probs and their gradients are computed (default: chunked).
    #[config(default = "LogProbStrategy::default()")]
    pub logprobs: LogProbStrategy,
    /// Stop after this optimiser step (`None`: the schedule's last); a later call continues.
    pub until_step: Option<usize>,
}

impl RrhfTrainConfig {
    /// [`Self::pad_id`], which must be set.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] when it is `None`.
    pub fn pad(&self) -> crate::Result<u32> {
        self.pad_id.ok_or_else(|| {
            Error::InvalidConfig(
                "RrhfTrainConfig.pad_id is not set: set it to the tokenizer's padding id".into(),
            )
        })
    }
}

/// The RRHF loss of a micro-batch, with metrics `rank_loss` and `sft_loss`, log-probs computed
/// as `logprobs` says
/// ([`LogProbs::sequence_logprob_loss`]).
pub fn rrhf_loss<B: AutodiffBackend, M: CausalLm<B>>(
    model: &M,
    batch: &RrhfBatch<B>,
    rrhf: &Rrhf,
    logprobs: LogProbStrategy,
) -> crate::Result<StepLoss<B>> {
    let b = &batch.batch;
    let (loss, (rank, sft)) = model.sequence_logprob_loss(
        b.input_ids.clone(),
        Some(b.attention_mask.clone()),
        b.loss_mask.clone(),
        LogProbReduction::Sum,
        logprobs,
        |logps| {
            let logps = logps.reshape([batch.prompts, batch.k]);
            let out = rrhf.forward(logps, batch.lengths.clone(), batch.rewards.clone());
            let rank = out.rank_losses.mean().into_scalar().elem::<f64>();
            let sft = out.sft_losses.mean().into_scalar().elem::<f64>();
            (out.loss, (rank, sft))
        },
    )?;
    Ok(StepLoss::new(loss)
        .with_weight(batch.prompts as f64)
        .with_metric("rank_loss", rank)
        .with_metric("sft_loss", sft))
}

/// Runs RRHF steps (a micro-batch holds `micro_batch_size` prompts) until `config.until_step`
/// or the end of the schedule.
///
/// # Errors
/// Loss configuration, collation and [`TrainLoop::fit`] errors.
pub fn train_rrhf<B: AutodiffBackend, M: CausalLm<B> + AutodiffModule<B>>(
    train: &mut TrainLoop<B, M>,
    items: &[RankedExamples],
    config: &RrhfTrainConfig,
) -> crate::Result<Vec<StepStats>> {
    let rrhf = config.loss.init()?;
    let device = train.model()?.device();
    let until = config.until_step.unwrap_or(train.config().total_steps);
    let (pad_id, logprobs) = (config.pad()?, config.logprobs);
    train.fit(
        items.len(),
        until,
        |idx| {
            let rows: Vec<RankedExamples> = idx.iter().map(|&i| items[i].clone()).collect();
            collate_rrhf::<B>(&rows, pad_id, &device)
        },
        |model, batch| rrhf_loss(model, batch, &rrhf, logprobs),
    )
}

/// Length-normalised scores `p_i` of every response (no gradients), one `Vec` of `K` per item.
///
/// # Errors
/// Loss configuration and collation errors.
pub fn rrhf_scores<B: Backend, M: CausalLm<B>>(
    model: &M,
    items: &[RankedExamples],
    config: &RrhfTrainConfig,
) -> crate::Result<Vec<Vec<f32>>> {
    let (rrhf, pad_id) = (config.loss.init()?, config.pad()?);
    let device = model.device();
    let mut out = Vec::with_capacity(items.len());
    for item in items {
        let batch = collate_rrhf::<B>(std::slice::from_ref(item), pad_id, &device)?;
        let scores = rrhf.scores(response_logps(model, &batch)?, batch.lengths.clone());
        out.push(kiln_model::read_f32(scores, "RRHF scores")?);
    }
    Ok(out)
}

/// [`rrhf_scores`] on the inference copy of a training loop's model.
pub fn rrhf_scores_of<B: AutodiffBackend, M: CausalLm<B> + AutodiffModule<B>>(
    train: &TrainLoop<B, M>,
    items: &[RankedExamples],
    config: &RrhfTrainConfig,
) -> crate::Result<Vec<Vec<f32>>>
where
    M::InnerModule: CausalLm<B::InnerBackend>,
{
    rrhf_scores(&train.model()?.valid(), items, config)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::optim::TrainConfig;
    use crate::testutil::{TB, prompt, tiny};
    use kiln_data::examples::encode_prompt_completion;
    use kiln_data::{Content, TruncationConfig};
    use kiln_model::LlamaForCausalLM;

    fn best_stats(scores: &[Vec<f32>], items: &[RankedExamples]) -> (f64, f64) {
        let (mut top, mut best_score) = (0.0, 0.0);
        for (s, item) in scores.iter().zip(items) {
            let best = (0..item.rewards.len())
                .max_by(|&a, &b| item.rewards[a].total_cmp(&item.rewards[b]))
                .unwrap();
            if (0..s.len()).all(|j| j == best || s[j] < s[best]) {
                top += 1.0;
            }
            best_score += s[best] as f64;
        }
        (top / items.len() as f64, best_score / items.len() as f64)
    }

    #[test]
    fn chunked_and_full_logprobs_train_identically() {
        let t = tiny();
        let device = Default::default();
        let trunc = TruncationConfig {
            max_prompt_len: 64,
            max_total_len: 128,
        };
        let items: Vec<RankedExamples> = (0..8)
            .map(|i| {
                let enc = |r: &str| {
                    encode_prompt_completion(
                        &t.tok,
                        &t.template,
                        &Content::Text(prompt(i)),
                        &Content::Text(r.into()),
                        &trunc,
                    )
                    .unwrap()
                };
                RankedExamples {
                    responses: vec![enc("certainly, here it is."), enc("no."), enc("maybe.")],
                    rewards: vec![1.0, -1.0, (i % 3) as f32 - 1.0],
                }
            })
            .collect();
        let model = LlamaForCausalLM::<TB>::init_seeded(&t.config, 0.05, 27, &device);
        let run = |logprobs: LogProbStrategy| {
            crate::testutil::steps_with(model.clone(), 3, |train| {
                let cfg = RrhfTrainConfig::new()
                    .with_loss(RrhfConfig::new())
                    .with_pad_id(Some(t.pad))
                    .with_logprobs(logprobs)
                    .with_until_step(Some(train.step() + 1));
                train_rrhf(train, &items, &cfg).unwrap().remove(0)
            })
        };
        let (s_full, w_full) = run(LogProbStrategy::Full);
        let (s_chunk, w_chunk) = run(LogProbStrategy::chunks_of(9).unwrap());
        for (a, b) in s_full.iter().zip(&s_chunk) {
            assert!((a.loss - b.loss).abs() < 1e-5 * a.loss.abs().max(1.0));
            assert!((a.grad_norm - b.grad_norm).abs() < 1e-4 * a.grad_norm.max(1.0));
        }
        let e = crate::testutil::max_rel_diff(&w_chunk, &w_full);
        assert!(e < 1e-5, "weights differ by {e}");
    }

    #[test]
    fn rrhf_raises_the_score_of_the_highest_reward_responses() {
        let t = tiny();
        let device = Default::default();
        let trunc = TruncationConfig {
            max_prompt_len: 64,
            max_total_len: 128,
        };
        let responses = [
            ("certainly, here it is.", 1.0f32),
            ("maybe later.", 0.0),
            ("no.", -1.0),
        ];
        let items: Vec<RankedExamples> = (0..12)
            .map(|i| {
                let mut order: Vec<usize> = vec![0, 1, 2];
                order.rotate_left(i % 3);
                let enc = |r: &str| {
                    encode_prompt_completion(
                        &t.tok,
                        &t.template,
                        &Content::Text(prompt(i)),
                        &Content::Text(r.into()),
                        &trunc,
                    )
                    .unwrap()
                };
                RankedExamples {
                    responses: order.iter().map(|&j| enc(responses[j].0)).collect(),
                    rewards: order.iter().map(|&j| responses[j].1).collect(),
                }
            })
            .collect();
        let cfg = RrhfTrainConfig::new()
            .with_loss(RrhfConfig::new())
            .with_pad_id(Some(t.pad));
        let model = LlamaForCausalLM::<TB>::init_seeded(&t.config, 0.02, 28, &device);
        let config = TrainConfig::new(15)
            .with_lr(3e-3)
            .with_micro_batch_size(4)
            .with_log_every(0);
        let mut train = TrainLoop::new(model, config).unwrap();
        let (top0, best0) = best_stats(&rrhf_scores_of(&train, &items, &cfg).unwrap(), &items);
        let stats = train_rrhf(&mut train, &items, &cfg).unwrap();
        let (top1, best1) = best_stats(&rrhf_scores_of(&train, &items, &cfg).unwrap(), &items);
        assert!(
            best1 > best0 + 1.0,
            "best-response score {best0} -> {best1}"
        );
        assert!(
            top1 >= 0.99 && top1 >= top0,
            "best ranked first {top0} -> {top1}"
        );
        assert!(
            stats.last().unwrap().metric("rank_loss").unwrap()
                < stats[0].metric("rank_loss").unwrap() + 1e-9
        );
        // Mismatched K is a clear error.
        let mut bad = items[..2].to_vec();
        bad[1].responses.pop();
        assert!(collate_rrhf::<TB>(&bad, t.pad, &device).is_err());
    }
}
