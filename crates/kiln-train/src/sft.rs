//! Supervised fine-tuning: token-level NLL on assistant tokens only.
//!
//! Examples come from `kiln_data::examples::encode_sft` (loss mask = assistant content and its
//! `<|eot_id|>`). The loss of a micro-batch is the mean NLL over its counted tokens (HF's
//! token-averaged cross-entropy), computed with `LogProbs::sequence_logprob_loss`
//! (chunked by default: no `[batch, seq, vocab]` logits in the forward or backward pass).

use burn::config::Config;
use burn::module::AutodiffModule;
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::{ElementConversion, Tensor};
use kiln_data::collate::collate_sft;
use kiln_data::{Example, LmBatch};
use kiln_model::{CausalLm, LogProbs};
use kiln_model::{LogProbReduction, LogProbStrategy};

use crate::error::Error;
use crate::train_loop::{StepLoss, StepStats, TrainLoop};

/// Number of counted (shifted) tokens of a batch.
fn counted_tokens<B: Backend>(batch: &LmBatch<B>) -> f64 {
    let [b, t] = batch.loss_mask.dims();
    batch
        .loss_mask
        .clone()
        .slice([0..b, 1..t])
        .sum()
        .into_scalar()
        .elem::<f64>()
}

/// Sum of the masked log-probs and the number of counted tokens of a batch
/// ([`LogProbs::sequence_logprobs`]: chunked without autodiff).
///
/// # Shapes
/// - `batch`: `[B, T]` tensors; output: (`[1]` sum of log-probs, counted tokens)
pub fn masked_logprob_sum<B: Backend, M: CausalLm<B>>(
    model: &M,
    batch: &LmBatch<B>,
) -> crate::Result<(Tensor<B, 1>, f64)> {
    let sum = model
        .sequence_logprobs(
            batch.input_ids.clone(),
            Some(batch.attention_mask.clone()),
            batch.loss_mask.clone(),
            LogProbReduction::Sum,
        )?
        .sum();
    Ok((sum, counted_tokens(batch)))
}

/// SFT options (the optimiser settings live in the [`TrainConfig`](crate::TrainConfig)).
#[derive(Config, Debug, PartialEq)]
pub struct SftTrainConfig {
    /// Padding id of the micro-batches: the tokenizer's (`None` until set; the online trainer
    /// sets its chat encoder's). Training with `None` is an error naming this field.
    pub pad_id: Option<u32>,
    /// How log-probs and their gradients are computed (default: chunked, without the
    /// `[batch, seq, vocab]` logits; [`LogProbStrategy::Full`] is the reference path).
    #[config(default = "LogProbStrategy::default()")]
    pub logprobs: LogProbStrategy,
    /// Stop after this optimiser step (`None`: the schedule's last, `TrainConfig::total_steps`);
    /// a later call continues from there.
    pub until_step: Option<usize>,
}

impl SftTrainConfig {
    /// [`Self::pad_id`], which must be set.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] when it is `None`.
    pub fn pad(&self) -> crate::Result<u32> {
        self.pad_id.ok_or_else(|| {
            Error::InvalidConfig(
                "SftTrainConfig.pad_id is not set: set it to the tokenizer's padding id".into(),
            )
        })
    }
}

/// The SFT loss of one micro-batch: mean NLL per counted token, with metrics `nll` and `tokens`,
/// log-probs computed as `logprobs` says
/// ([`LogProbs::sequence_logprob_loss`]).
///
/// # Errors
/// [`Error::InvalidInput`] when the batch has no counted token.
pub fn sft_loss<B: AutodiffBackend, M: CausalLm<B>>(
    model: &M,
    batch: &LmBatch<B>,
    logprobs: LogProbStrategy,
) -> crate::Result<StepLoss<B>> {
    let count = counted_tokens(batch);
    if count == 0.0 {
        return Err(Error::InvalidInput(
            "SFT micro-batch has no assistant token to train on".into(),
        ));
    }
    let (loss, ()) = model.sequence_logprob_loss(
        batch.input_ids.clone(),
        Some(batch.attention_mask.clone()),
        batch.loss_mask.clone(),
        LogProbReduction::Sum,
        logprobs,
        |logps| (logps.sum().neg().div_scalar(count), ()),
    )?;
    let nll = loss.clone().into_scalar().elem::<f64>();
    Ok(StepLoss::new(loss)
        .with_weight(count)
        .with_metric("nll", nll)
        .with_metric("tokens", count))
}

/// Runs SFT steps over `examples` (seeded order, micro-batches collated with right padding by
/// `config.pad()?`) until `config.until_step` or the end of the schedule.
///
/// # Errors
/// Those of [`TrainLoop::fit`] and collation.
pub fn train_sft<B: AutodiffBackend, M: CausalLm<B> + AutodiffModule<B>>(
    train: &mut TrainLoop<B, M>,
    examples: &[Example],
    config: &SftTrainConfig,
) -> crate::Result<Vec<StepStats>> {
    let device = train.model()?.device();
    let until = config.until_step.unwrap_or(train.config().total_steps);
    let (pad_id, logprobs) = (config.pad()?, config.logprobs);
    train.fit(
        examples.len(),
        until,
        |idx| {
            let rows: Vec<Example> = idx.iter().map(|&i| examples[i].clone()).collect();
            Ok(collate_sft::<B>(&rows, pad_id, &device)?)
        },
        |model, batch| sft_loss(model, batch, logprobs),
    )
}

/// Token-averaged NLL of `model` on `examples` (no gradients; pass `model.valid()` of a training
/// model, or any inference model).
///
/// # Errors
/// [`Error::InvalidInput`] when no example has a counted token; collation errors.
pub fn eval_nll<B: Backend, M: CausalLm<B>>(
    model: &M,
    examples: &[Example],
    pad_id: u32,
    batch_size: usize,
) -> crate::Result<f64> {
    let device = model.device();
    let (mut total, mut count) = (0.0, 0.0);
    for chunk in examples.chunks(batch_size.max(1)) {
        let batch = collate_sft::<B>(chunk, pad_id, &device)?;
        let (sum, n) = masked_logprob_sum(model, &batch)?;
        total += sum.into_scalar().elem::<f64>();
        count += n;
    }
    if count == 0.0 {
        return Err(Error::InvalidInput(
            "no assistant token to evaluate the NLL on".into(),
        ));
    }
    Ok(-total / count)
}

/// [`eval_nll`] on the inference copy of a training loop's model.
pub fn eval_nll_of<B: AutodiffBackend, M: CausalLm<B> + AutodiffModule<B>>(
    train: &TrainLoop<B, M>,
    examples: &[Example],
    pad_id: u32,
    batch_size: usize,
) -> crate::Result<f64>
where
    M::InnerModule: CausalLm<B::InnerBackend>,
{
    eval_nll(&train.model()?.valid(), examples, pad_id, batch_size)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::optim::TrainConfig;
    use crate::testutil::{TB, tiny};
    use kiln_model::LlamaForCausalLM;

    #[test]
    fn chunked_and_full_logprobs_train_identically() {
        let t = tiny();
        let device = Default::default();
        let model = LlamaForCausalLM::<TB>::init_seeded(&t.config, 0.05, 25, &device);
        let data = t.sft(0..8);
        let run = |logprobs: LogProbStrategy| {
            crate::testutil::steps_with(model.clone(), 3, |train| {
                let config = SftTrainConfig::new()
                    .with_pad_id(Some(t.pad))
                    .with_logprobs(logprobs)
                    .with_until_step(Some(train.step() + 1));
                train_sft(train, &data, &config).unwrap().remove(0)
            })
        };
        let (s_full, w_full) = run(LogProbStrategy::Full);
        let (s_chunk, w_chunk) = run(LogProbStrategy::chunks_of(16).unwrap());
        for (a, b) in s_full.iter().zip(&s_chunk) {
            assert!((a.loss - b.loss).abs() < 1e-5 * a.loss.abs().max(1.0));
            assert!((a.grad_norm - b.grad_norm).abs() < 1e-4 * a.grad_norm.max(1.0));
        }
        let e = crate::testutil::max_rel_diff(&w_chunk, &w_full);
        assert!(e < 1e-5, "weights differ by {e}");
    }

    #[test]
    fn sft_lowers_held_out_nll() {
        let t = tiny();
        let device = Default::default();
        let model = LlamaForCausalLM::<TB>::init_seeded(&t.config, 0.02, 26, &device);
        let train_set = t.sft(0..16);
        let held_out = t.sft(100..106);
        let config = TrainConfig::new(16)
            .with_lr(5e-3)
            .with_warmup_steps(2)
            .with_micro_batch_size(4)
            .with_log_every(0);
        let mut train = TrainLoop::new(model, config).unwrap();
        let before = eval_nll_of(&train, &held_out, t.pad, 8).unwrap();
        let stats = train_sft(
            &mut train,
            &train_set,
            &SftTrainConfig::new().with_pad_id(Some(t.pad)),
        )
        .unwrap();
        let after = eval_nll_of(&train, &held_out, t.pad, 8).unwrap();
        assert_eq!(stats.len(), 16);
        assert!(stats.iter().all(|s| s.metric("tokens").unwrap() > 0.0));
        assert!(after < before - 1.0, "held-out NLL {before} -> {after}");
    }
}
