//! DPO-family training against a frozen reference whose log-probs are precomputed.
//!
//! [`precompute_reference_logps`] runs the reference model once over the dataset (on any backend,
//! typically the inference backend) and stores two numbers per pair, so the reference model can
//! be dropped before training. Every loss of `kiln_losses::DpoLoss` (sigmoid/cDPO, robust, IPO,
//! hinge) is supported; IPO uses length-averaged log-probs like TRL
//! ([`DpoTrainConfig::reduction`]). Metrics carry TRL's names (`rewards/chosen`, ...).

use burn::config::Config;
use burn::module::AutodiffModule;
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::{ElementConversion, Tensor, TensorData};
use kiln_data::Example;
use kiln_data::PairBatch;
use kiln_data::collate::collate_pairs;
use kiln_losses::{Dpo, DpoConfig, DpoLoss, DpoMetrics};
use kiln_model::{CausalLm, LogProbs};
use kiln_model::{LogProbReduction, LogProbStrategy};

use crate::error::Error;
use crate::train_loop::{StepLoss, StepStats, TrainLoop};

/// DPO options (the optimiser settings live in the [`TrainConfig`](crate::TrainConfig)).
#[derive(Config, Debug, PartialEq)]
pub struct DpoTrainConfig {
    /// The loss (beta, variant, reference-free).
    #[config(default = "DpoConfig::new()")]
    pub loss: DpoConfig,
    /// Padding id of the micro-batches: the tokenizer's (`None` until set; the online trainer
    /// sets its chat encoder's). Training with `None` is an error naming this field.
    pub pad_id: Option<u32>,
    /// How the policy's log-probs and their gradients are computed (default: chunked, without
    /// the `[batch, seq, vocab]` logits; [`LogProbStrategy::Full`] is the reference path).
    #[config(default = "LogProbStrategy::default()")]
    pub logprobs: LogProbStrategy,
    /// Weight `alpha` of an NLL term on the chosen responses added to the DPO loss:
    /// `L = L_dpo + alpha * mean_pairs(-logp(y_w) / |y_w|)` (TRL's `rpo_alpha`, "RPO" of Pang et
    /// al. 2024, Iterative Reasoning Preference Optimization). 0 (the default) is plain DPO, as
    /// in RLHFlow's recipe. Reported as metric `nll/chosen`.
    #[config(default = 0.0)]
    pub nll_weight: f64,
    /// Stop after this optimiser step (`None`: the schedule's last, `TrainConfig::total_steps`);
    /// a later call continues from there.
    pub until_step: Option<usize>,
}

impl DpoTrainConfig {
    /// How sequence log-probs are reduced: `Mean` for IPO (as TRL runs it), else `Sum`.
    pub fn reduction(&self) -> LogProbReduction {
        match self.loss.loss {
            DpoLoss::Ipo => LogProbReduction::Mean,
            _ => LogProbReduction::Sum,
        }
    }

    /// [`Self::pad_id`], which must be set.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] when it is `None`.
    pub fn pad(&self) -> crate::Result<u32> {
        self.pad_id.ok_or_else(|| {
            Error::InvalidConfig(
                "DpoTrainConfig.pad_id is not set: set it to the tokenizer's padding id".into(),
            )
        })
    }
}

/// Reference log-probs of a dataset's pairs, in dataset order.
#[derive(Debug, Clone, PartialEq)]
pub struct ReferenceLogps {
    /// `logp_ref(y_w)` per pair.
    pub chosen: Vec<f32>,
    /// `logp_ref(y_l)` per pair.
    pub rejected: Vec<f32>,
    /// The reduction they were computed with (must match the training config).
    pub reduction: LogProbReduction,
}

/// `(chosen, rejected)` sequence log-probs of a pair batch, `[N]` each
/// ([`LogProbs::sequence_logprobs`]: chunked without autodiff; f32 for a bf16 model).
pub fn pair_logps<B: Backend, M: CausalLm<B>>(
    model: &M,
    batch: &PairBatch<B>,
    reduction: LogProbReduction,
) -> crate::Result<(Tensor<B, 1>, Tensor<B, 1>)> {
    let b = &batch.batch;
    let logps = model.sequence_logprobs(
        b.input_ids.clone(),
        Some(b.attention_mask.clone()),
        b.loss_mask.clone(),
        reduction,
    )?;
    Ok(split_pairs(logps, batch.num_pairs))
}

fn split_pairs<B: Backend>(logps: Tensor<B, 1>, n: usize) -> (Tensor<B, 1>, Tensor<B, 1>) {
    (logps.clone().narrow(0, 0, n), logps.narrow(0, n, n))
}

/// Runs the (frozen) reference model once over `pairs` in batches of `batch_size`.
///
/// # Errors
/// Collation errors.
pub fn precompute_reference_logps<B: Backend, M: CausalLm<B>>(
    reference: &M,
    pairs: &[(Example, Example)],
    pad_id: u32,
    batch_size: usize,
    reduction: LogProbReduction,
) -> crate::Result<ReferenceLogps> {
    let device = reference.device();
    let mut out = ReferenceLogps {
        chosen: Vec::with_capacity(pairs.len()),
        rejected: Vec::with_capacity(pairs.len()),
        reduction,
    };
    for chunk in pairs.chunks(batch_size.max(1)) {
        let batch = collate_pairs::<B>(chunk, pad_id, &device)?;
        let (c, r) = pair_logps(reference, &batch, reduction)?;
        out.chosen.extend(to_vec(c)?);
        out.rejected.extend(to_vec(r)?);
    }
    tracing::info!(pairs = pairs.len(), "precomputed reference log-probs");
    Ok(out)
}

fn to_vec<B: Backend>(t: Tensor<B, 1>) -> crate::Result<Vec<f32>> {
    Ok(kiln_model::read_f32(t, "reference log-probs")?)
}

/// A DPO micro-batch: the pairs and their reference log-probs.
#[derive(Debug, Clone)]
pub struct DpoBatch<B: Backend> {
    /// `2N` stacked rows (chosen first).
    pub pairs: PairBatch<B>,
    /// `[N]` reference log-probs of the chosen responses.
    pub reference_chosen: Tensor<B, 1>,
    /// `[N]` reference log-probs of the rejected responses.
    pub reference_rejected: Tensor<B, 1>,
}

/// Collates dataset pairs `idx` with their precomputed reference log-probs.
///
/// # Errors
/// [`Error::InvalidInput`] for an index outside the reference table; collation errors.
pub fn collate_dpo<B: Backend>(
    pairs: &[(Example, Example)],
    reference: &ReferenceLogps,
    idx: &[usize],
    pad_id: u32,
    device: &B::Device,
) -> crate::Result<DpoBatch<B>> {
    if reference.chosen.len() != pairs.len() || reference.rejected.len() != pairs.len() {
        return Err(Error::InvalidInput(format!(
            "{} pairs but {} / {} reference log-probs",
            pairs.len(),
            reference.chosen.len(),
            reference.rejected.len()
        )));
    }
    let rows: Vec<(Example, Example)> = idx.iter().map(|&i| pairs[i].clone()).collect();
    let take = |v: &[f32]| -> Tensor<B, 1> {
        let d: Vec<f32> = idx.iter().map(|&i| v[i]).collect();
        Tensor::from_data(TensorData::new(d, [idx.len()]), device)
    };
    Ok(DpoBatch {
        pairs: collate_pairs::<B>(&rows, pad_id, device)?,
        reference_chosen: take(&reference.chosen),
        reference_rejected: take(&reference.rejected),
    })
}

/// The DPO-family loss of a micro-batch, with TRL-named metrics: the policy's log-probs as
/// `config.logprobs` says
/// ([`LogProbs::sequence_logprob_loss`]), reduced by
/// `config.reduction()`, plus `config.nll_weight` times the NLL of the chosen responses.
pub fn dpo_loss<B: AutodiffBackend, M: CausalLm<B>>(
    model: &M,
    batch: &DpoBatch<B>,
    dpo: &Dpo,
    config: &DpoTrainConfig,
) -> crate::Result<StepLoss<B>> {
    let (reduction, logprobs, nll_weight) =
        (config.reduction(), config.logprobs, config.nll_weight);
    let b = &batch.pairs.batch;
    let n = batch.pairs.num_pairs;
    // Counted (shifted) tokens of each chosen response, for the per-token NLL.
    let [_, t] = b.loss_mask.dims();
    let chosen_tokens = (nll_weight != 0.0).then(|| {
        b.loss_mask
            .clone()
            .narrow(0, 0, n)
            .narrow(1, 1, t - 1)
            .sum_dim(1)
            .reshape([n])
            .clamp_min(1.0)
    });
    let (loss, (metrics, nll)) = model.sequence_logprob_loss(
        b.input_ids.clone(),
        Some(b.attention_mask.clone()),
        b.loss_mask.clone(),
        reduction,
        logprobs,
        |logps| {
            let (pc, pr) = split_pairs(logps, n);
            let out = dpo.forward(
                pc.clone(),
                pr,
                batch.reference_chosen.clone(),
                batch.reference_rejected.clone(),
            );
            match &chosen_tokens {
                Some(len) => {
                    // Sum log-probs per token (Mean already is per token).
                    let per_token = match reduction {
                        LogProbReduction::Sum => pc / len.clone().cast(out.loss.dtype()),
                        LogProbReduction::Mean => pc,
                    };
                    let nll = per_token.mean().neg();
                    let value = nll.clone().into_scalar().elem::<f64>();
                    let loss = out.loss.clone() + nll.mul_scalar(nll_weight);
                    (loss, (out.metrics(), Some(value)))
                }
                None => (out.loss.clone(), (out.metrics(), None)),
            }
        },
    )?;
    let mut step = StepLoss::new(loss).with_weight(n as f64);
    for (name, v) in metrics.named() {
        step = step.with_metric(name, v);
    }
    if let Some(v) = nll {
        step = step.with_metric("nll/chosen", v);
    }
    Ok(step)
}

/// Runs DPO steps on `pairs` with their precomputed reference log-probs until
/// `config.until_step` or the end of the schedule.
///
/// # Errors
/// [`Error::InvalidConfig`] when the reference was computed with another reduction; loss,
/// collation and [`TrainLoop::fit`] errors.
pub fn train_dpo<B: AutodiffBackend, M: CausalLm<B> + AutodiffModule<B>>(
    train: &mut TrainLoop<B, M>,
    (pairs, reference): (&[(Example, Example)], &ReferenceLogps),
    config: &DpoTrainConfig,
) -> crate::Result<Vec<StepStats>> {
    if reference.reduction != config.reduction() {
        return Err(Error::InvalidConfig(format!(
            "reference log-probs were computed with {:?} but training uses {:?}",
            reference.reduction,
            config.reduction()
        )));
    }
    let dpo = config.loss.init()?;
    let device = train.model()?.device();
    let until = config.until_step.unwrap_or(train.config().total_steps);
    train.fit(
        pairs.len(),
        until,
        |idx| collate_dpo::<B>(pairs, reference, idx, config.pad()?, &device),
        |model, batch| dpo_loss(model, batch, &dpo, config),
    )
}

/// DPO metrics of `model` on the whole dataset (no gradients), as batch means weighted by size.
///
/// # Errors
/// Loss configuration and collation errors.
pub fn evaluate_dpo<B: Backend, M: CausalLm<B>>(
    model: &M,
    pairs: &[(Example, Example)],
    reference: &ReferenceLogps,
    config: &DpoTrainConfig,
    batch_size: usize,
) -> crate::Result<DpoMetrics> {
    let dpo = config.loss.init()?;
    let device = model.device();
    let all: Vec<usize> = (0..pairs.len()).collect();
    let mut acc = [0.0f64; 6];
    for idx in all.chunks(batch_size.max(1)) {
        let batch = collate_dpo::<B>(pairs, reference, idx, config.pad()?, &device)?;
        let (pc, pr) = pair_logps(model, &batch.pairs, config.reduction())?;
        let m = dpo
            .forward(pc, pr, batch.reference_chosen, batch.reference_rejected)
            .metrics();
        for (a, (_, v)) in acc.iter_mut().zip(m.named()) {
            *a += v * idx.len() as f64;
        }
    }
    let n = pairs.len().max(1) as f64;
    Ok(DpoMetrics {
        rewards_chosen: acc[0] / n,
        rewards_rejected: acc[1] / n,
        rewards_accuracies: acc[2] / n,
        rewards_margins: acc[3] / n,
        logps_chosen: acc[4] / n,
        logps_rejected: acc[5] / n,
    })
}

/// [`evaluate_dpo`] on the inference copy of a training loop's model.
pub fn evaluate_dpo_of<B: AutodiffBackend, M: CausalLm<B> + AutodiffModule<B>>(
    train: &TrainLoop<B, M>,
    pairs: &[(Example, Example)],
    reference: &ReferenceLogps,
    config: &DpoTrainConfig,
    batch_size: usize,
) -> crate::Result<DpoMetrics>
where
    M::InnerModule: CausalLm<B::InnerBackend>,
{
    evaluate_dpo(
        &train.model()?.valid(),
        pairs,
        reference,
        config,
        batch_size,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::optim::TrainConfig;
    use crate::testutil::{TB, tiny};
    use kiln_model::LlamaForCausalLM;

    /// `L = L_dpo + alpha * mean(-logp(y_w) / |y_w|)`: at policy == reference the DPO part is
    /// ln 2, so the loss is ln 2 + alpha * (the chosen per-token NLL computed independently).
    #[test]
    fn the_nll_term_adds_alpha_times_the_chosen_per_token_nll() {
        let t = tiny();
        let device = Default::default();
        let policy = LlamaForCausalLM::<TB>::init_seeded(&t.config, 0.1, 18, &device);
        let pairs = t.dpo_pairs(0..4);
        let cfg = DpoTrainConfig::new()
            .with_loss(DpoConfig::new())
            .with_pad_id(Some(t.pad))
            .with_nll_weight(0.5);
        let reference =
            precompute_reference_logps(&policy.valid(), &pairs, t.pad, 4, cfg.reduction()).unwrap();
        let nll: f64 = pairs
            .iter()
            .zip(&reference.chosen)
            .map(|((c, _), &lp)| {
                let tokens = c.loss_mask[1..].iter().filter(|&&m| m).count() as f64;
                -f64::from(lp) / tokens
            })
            .sum::<f64>()
            / pairs.len() as f64;
        let batch = collate_dpo::<TB>(&pairs, &reference, &[0, 1, 2, 3], t.pad, &device).unwrap();
        let dpo = cfg.loss.init().unwrap();
        let step = dpo_loss(&policy, &batch, &dpo, &cfg.clone().with_nll_weight(0.5)).unwrap();
        let value = step.loss.clone().into_scalar().elem::<f64>();
        assert!(
            (value - (std::f64::consts::LN_2 + 0.5 * nll)).abs() < 1e-4,
            "{value} vs ln 2 + 0.5 * {nll}"
        );
        let metric = step
            .metrics
            .iter()
            .find(|(n, _)| n == "nll/chosen")
            .unwrap()
            .1;
        assert!((metric - nll).abs() < 1e-4, "{metric} vs {nll}");
        let plain = dpo_loss(&policy, &batch, &dpo, &cfg.clone().with_nll_weight(0.0)).unwrap();
        assert!(plain.metrics.iter().all(|(n, _)| n != "nll/chosen"));
    }

    #[test]
    fn dpo_raises_rewards_accuracy_and_margin_on_its_pairs() {
        let t = tiny();
        let device = Default::default();
        let policy = LlamaForCausalLM::<TB>::init_seeded(&t.config, 0.02, 19, &device);
        let pairs = t.dpo_pairs(0..16);
        let cfg = DpoTrainConfig::new()
            .with_loss(DpoConfig::new().with_beta(0.1))
            .with_pad_id(Some(t.pad));
        // The reference (a frozen copy of the initial policy) is used once and dropped.
        let reference = {
            let frozen = policy.valid();
            precompute_reference_logps(&frozen, &pairs, t.pad, 8, cfg.reduction()).unwrap()
        };
        assert_eq!(reference.chosen.len(), 16);
        let config = TrainConfig::new(15)
            .with_lr(3e-3)
            .with_micro_batch_size(4)
            .with_grad_accum_steps(2)
            .with_log_every(0);
        let mut train = TrainLoop::new(policy, config).unwrap();
        let m0 = evaluate_dpo_of(&train, &pairs, &reference, &cfg, 8).unwrap();
        assert!(
            m0.rewards_margins.abs() < 1e-4,
            "policy == reference at start: {m0:?}"
        );
        let stats = train_dpo(
            &mut train,
            (&pairs, &reference),
            &cfg.clone().with_until_step(Some(15)),
        )
        .unwrap();
        let m1 = evaluate_dpo_of(&train, &pairs, &reference, &cfg, 8).unwrap();
        assert!(m1.rewards_accuracies >= 0.99, "{m0:?} -> {m1:?}");
        assert!(
            m1.rewards_margins > m0.rewards_margins + 0.5,
            "{m0:?} -> {m1:?}"
        );
        assert!(m1.rewards_chosen > m1.rewards_rejected);
        let names: Vec<&str> = stats[0].metrics.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            [
                "rewards/chosen",
                "rewards/rejected",
                "rewards/accuracies",
                "rewards/margins",
                "logps/chosen",
                "logps/rejected"
            ]
        );
    }

    #[test]
    fn chunked_and_full_logprobs_train_identically() {
        let t = tiny();
        let device = Default::default();
        let mut cfg = t.config.clone();
        for tied in [false, true] {
            cfg.tie_word_embeddings = tied;
            let policy = LlamaForCausalLM::<TB>::init_seeded(&cfg, 0.05, 20, &device);
            let pairs = t.dpo_pairs(0..8);
            let reference = precompute_reference_logps(
                &policy.valid(),
                &pairs,
                t.pad,
                8,
                LogProbReduction::Sum,
            )
            .unwrap();
            let run = |logprobs: LogProbStrategy| {
                let dtc = DpoTrainConfig::new()
                    .with_loss(DpoConfig::new().with_beta(0.5))
                    .with_pad_id(Some(t.pad))
                    .with_logprobs(logprobs);
                crate::testutil::steps_with(policy.clone(), 3, |train| {
                    let dtc = dtc.clone().with_until_step(Some(train.step() + 1));
                    train_dpo(train, (&pairs, &reference), &dtc)
                        .unwrap()
                        .remove(0)
                })
            };
            let (s_full, w_full) = run(LogProbStrategy::Full);
            let (s_chunk, w_chunk) = run(LogProbStrategy::chunks_of(7).unwrap());
            for (a, b) in s_full.iter().zip(&s_chunk) {
                assert!((a.loss - b.loss).abs() < 1e-5, "{a:?} vs {b:?}");
                assert!((a.grad_norm - b.grad_norm).abs() < 1e-4 * a.grad_norm.max(1.0));
                for ((n, x), (_, y)) in a.metrics.iter().zip(&b.metrics) {
                    assert!((x - y).abs() < 1e-4 * x.abs().max(1.0), "{n}: {x} vs {y}");
                }
            }
            let e = crate::testutil::max_rel_diff(&w_chunk, &w_full);
            assert!(e < 1e-5, "tied={tied}: weights differ by {e}");
        }
    }

    #[test]
    fn ipo_uses_mean_logprobs_and_mismatch_is_an_error() {
        let t = tiny();
        let device = Default::default();
        let ipo = DpoTrainConfig::new()
            .with_loss(DpoConfig::new().with_loss(DpoLoss::Ipo))
            .with_pad_id(Some(t.pad));
        assert_eq!(ipo.reduction(), LogProbReduction::Mean);
        let policy = LlamaForCausalLM::<TB>::init_seeded(&t.config, 0.02, 21, &device);
        let pairs = t.dpo_pairs(0..4);
        let reference =
            precompute_reference_logps(&policy.valid(), &pairs, t.pad, 4, LogProbReduction::Sum)
                .unwrap();
        let mut train = TrainLoop::new(policy, TrainConfig::new(2).with_lr(1e-3)).unwrap();
        let err = train_dpo(&mut train, (&pairs, &reference), &ipo).unwrap_err();
        assert!(matches!(err, Error::InvalidConfig(_)), "{err}");
    }
}
