//! Bradley-Terry reward-model training (`kiln_losses::BradleyTerry`) and pairwise accuracy.
//!
//! The score of a sequence is read at its **last real token** (the final `<|eot_id|>` of
//! `chat_template(prompt + [response])`, see `kiln_data::examples::encode_reward_input`), located
//! through the attention mask, so it does not depend on the config's `pad_token_id`. With the
//! dedicated pad token this equals HF's "rightmost non-pad id" rule.

use burn::config::Config;
use burn::module::AutodiffModule;
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::{ElementConversion, Tensor, TensorData};
use kiln_data::collate::collate_pairs;
use kiln_data::{Example, LmBatch};
use kiln_losses::{BradleyTerry, BradleyTerryConfig};
use kiln_model::SequenceScorer;

use crate::error::Error;
use crate::train_loop::{StepLoss, StepStats, TrainLoop};

/// One preference pair of reward-model inputs.
#[derive(Debug, Clone, PartialEq)]
pub struct RewardPair {
    /// Tokens of the preferred conversation.
    pub chosen: Example,
    /// Tokens of the other conversation.
    pub rejected: Example,
    /// Required score gap (Llama-2 margin loss), used when the trainer enables margins.
    pub margin: Option<f32>,
}

impl RewardPair {
    /// The pair of a preference record, each side rendered with the chat template as a reward
    /// model reads it (margin unused).
    ///
    /// # Errors
    /// Tokenisation errors.
    pub fn from_record(
        enc: &kiln_data::ChatEncoder,
        r: &kiln_data::PairRecord,
    ) -> crate::Result<Self> {
        Ok(RewardPair {
            chosen: enc.reward_example(&r.prompt, &r.chosen)?,
            rejected: enc.reward_example(&r.prompt, &r.rejected)?,
            margin: None,
        })
    }
}

/// A collated reward-model micro-batch: `2N` rows (chosen `0..N`, rejected `N..2N`).
#[derive(Debug, Clone)]
pub struct RewardBatch<B: Backend> {
    /// The stacked sequences.
    pub batch: LmBatch<B>,
    /// Number of pairs `N`.
    pub num_pairs: usize,
    /// `[N]` margins (0 where a pair has none), when margins are enabled.
    pub margins: Option<Tensor<B, 1>>,
}

/// Collates pairs; `use_margin` uploads their margins (missing ones count as 0).
pub fn collate_reward<B: Backend>(
    pairs: &[RewardPair],
    pad_id: u32,
    use_margin: bool,
    device: &B::Device,
) -> crate::Result<RewardBatch<B>> {
    let rows: Vec<(Example, Example)> = pairs
        .iter()
        .map(|p| (p.chosen.clone(), p.rejected.clone()))
        .collect();
    let pb = collate_pairs::<B>(&rows, pad_id, device)?;
    let margins = use_margin.then(|| {
        let m: Vec<f32> = pairs.iter().map(|p| p.margin.unwrap_or(0.0)).collect();
        Tensor::from_data(TensorData::new(m, [pairs.len()]), device)
    });
    Ok(RewardBatch {
        batch: pb.batch,
        num_pairs: pb.num_pairs,
        margins,
    })
}

/// One score per row, read at the last real token of each row.
///
/// # Shapes
/// - `batch`: `[rows, T]` -> `[rows]`
pub fn score_rows<B: Backend, M: SequenceScorer<B>>(
    model: &M,
    batch: &LmBatch<B>,
) -> crate::Result<Tensor<B, 1>> {
    let all = model.position_scores(batch.input_ids.clone(), Some(batch.attention_mask.clone()))?;
    let [rows, _] = all.dims();
    Ok(all
        .gather(1, batch.last_index.clone().reshape([rows, 1]))
        .reshape([rows]))
}

/// `(chosen, rejected)` scores of a reward batch, `[N]` each.
pub fn pair_scores<B: Backend, M: SequenceScorer<B>>(
    model: &M,
    batch: &RewardBatch<B>,
) -> crate::Result<(Tensor<B, 1>, Tensor<B, 1>)> {
    let scores = score_rows(model, &batch.batch)?;
    let n = batch.num_pairs;
    Ok((scores.clone().narrow(0, 0, n), scores.narrow(0, n, n)))
}

/// The Bradley-Terry loss of a micro-batch, with metrics `accuracy` and `margin`.
pub fn reward_loss<B: AutodiffBackend, M: SequenceScorer<B>>(
    model: &M,
    batch: &RewardBatch<B>,
    loss: &BradleyTerry,
) -> crate::Result<StepLoss<B>> {
    let (chosen, rejected) = pair_scores(model, batch)?;
    let out = loss.forward(chosen, rejected, batch.margins.clone());
    let m = out.metrics();
    Ok(StepLoss::new(out.loss)
        .with_weight(batch.num_pairs as f64)
        .with_metric("accuracy", m.accuracy)
        .with_metric("margin", m.mean_margin))
}

/// Reward-model training options (the optimiser settings live in the
/// [`TrainConfig`](crate::TrainConfig)).
#[derive(Config, Debug, PartialEq)]
pub struct RewardTrainConfig {
    /// The loss (reward centering coefficient).
    #[config(default = "BradleyTerryConfig::new()")]
    pub loss: BradleyTerryConfig,
    /// Use each pair's margin in the loss.
    #[config(default = false)]
    pub use_margin: bool,
    /// Padding id of the micro-batches: the tokenizer's (`None` until set; the online trainer
    /// sets its chat encoder's). Training with `None` is an error naming this field.
    pub pad_id: Option<u32>,
    /// Stop after this optimiser step (`None`: the schedule's last); a later call continues.
    pub until_step: Option<usize>,
}

impl RewardTrainConfig {
    /// [`Self::pad_id`], which must be set.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] when it is `None`.
    pub fn pad(&self) -> crate::Result<u32> {
        self.pad_id.ok_or_else(|| {
            Error::InvalidConfig(
                "RewardTrainConfig.pad_id is not set: set it to the tokenizer's padding id".into(),
            )
        })
    }
}

/// Runs reward-model steps until `config.until_step` or the end of the schedule.
///
/// # Errors
/// Loss configuration, collation and [`TrainLoop::fit`] errors.
pub fn train_reward_model<B: AutodiffBackend, M: SequenceScorer<B> + AutodiffModule<B>>(
    train: &mut TrainLoop<B, M>,
    pairs: &[RewardPair],
    config: &RewardTrainConfig,
) -> crate::Result<Vec<StepStats>> {
    let loss = config.loss.init()?;
    let device = train.model()?.device();
    let until = config.until_step.unwrap_or(train.config().total_steps);
    train.fit(
        pairs.len(),
        until,
        |idx| {
            let rows: Vec<RewardPair> = idx.iter().map(|&i| pairs[i].clone()).collect();
            collate_reward::<B>(&rows, config.pad()?, config.use_margin, &device)
        },
        |model, batch| reward_loss(model, batch, &loss),
    )
}

/// Fraction of pairs whose chosen score is strictly higher (ties count as wrong), and the mean
/// score margin, without gradients.
///
/// # Errors
/// Collation errors; an empty `pairs` gives `(0, 0)`.
pub fn pairwise_accuracy<B: Backend, M: SequenceScorer<B>>(
    model: &M,
    pairs: &[RewardPair],
    pad_id: u32,
    batch_size: usize,
) -> crate::Result<(f64, f64)> {
    let device = model.device();
    let (mut correct, mut margin) = (0.0, 0.0);
    for chunk in pairs.chunks(batch_size.max(1)) {
        let batch = collate_reward::<B>(chunk, pad_id, false, &device)?;
        let (c, r) = pair_scores(model, &batch)?;
        let diff = c - r;
        correct += diff
            .clone()
            .greater_elem(0.0)
            .float()
            .sum()
            .into_scalar()
            .elem::<f64>();
        margin += diff.sum().into_scalar().elem::<f64>();
    }
    let n = pairs.len().max(1) as f64;
    Ok((correct / n, margin / n))
}

/// [`pairwise_accuracy`] on the inference copy of a training loop's model.
pub fn pairwise_accuracy_of<B: AutodiffBackend, M: SequenceScorer<B> + AutodiffModule<B>>(
    train: &TrainLoop<B, M>,
    pairs: &[RewardPair],
    pad_id: u32,
    batch_size: usize,
) -> crate::Result<(f64, f64)>
where
    M::InnerModule: SequenceScorer<B::InnerBackend>,
{
    pairwise_accuracy(&train.model()?.valid(), pairs, pad_id, batch_size)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::optim::TrainConfig;
    use crate::testutil::{TB, prompt, tiny};
    use kiln_model::LlamaForSequenceClassification;

    #[test]
    fn reward_training_raises_pairwise_accuracy() {
        let t = tiny();
        let device = Default::default();
        // Learnable preference: affirmative answers beat negative ones.
        let pairs: Vec<RewardPair> = (0..40)
            .map(|i| {
                let p = prompt(i);
                let good = ["yes, gladly.", "yes of course!", "sure, yes."][i % 3];
                let bad = ["no.", "no, never!", "nope, no."][(i / 3) % 3];
                RewardPair {
                    chosen: t.reward_input(&p, good),
                    rejected: t.reward_input(&p, bad),
                    margin: Some(0.5),
                }
            })
            .collect();
        let (train_pairs, eval_pairs) = pairs.split_at(32);
        let model = LlamaForSequenceClassification::<TB>::init_seeded(&t.config, 0.02, 22, &device);
        let config = TrainConfig::new(20)
            .with_lr(3e-3)
            .with_micro_batch_size(8)
            .with_log_every(0);
        let mut train = TrainLoop::new(model, config).unwrap();
        let (acc0, margin0) = pairwise_accuracy_of(&train, eval_pairs, t.pad, 8).unwrap();
        let rm = RewardTrainConfig::new()
            .with_pad_id(Some(t.pad))
            .with_loss(BradleyTerryConfig::new().with_center_rewards_coefficient(0.01))
            .with_use_margin(true);
        let stats = train_reward_model(&mut train, train_pairs, &rm).unwrap();
        let (acc1, margin1) = pairwise_accuracy_of(&train, eval_pairs, t.pad, 8).unwrap();
        assert!(acc1 >= 0.99, "eval accuracy {acc0} -> {acc1}");
        assert!(margin1 > margin0 + 1.0, "margin {margin0} -> {margin1}");
        assert!(stats.last().unwrap().metric("accuracy").unwrap() >= 0.99);
        assert!(stats.last().unwrap().loss < stats[0].loss);
    }

    #[test]
    fn score_is_read_at_the_last_real_token() {
        let t = tiny();
        let device = Default::default();
        let model = LlamaForSequenceClassification::<burn::backend::Flex>::init_seeded(
            &t.config, 0.1, 23, &device,
        );
        let short = RewardPair {
            chosen: t.reward_input("hi", "yes"),
            rejected: t.reward_input("hi there, a much longer prompt", "no, not at all"),
            margin: None,
        };
        let batch = collate_reward::<burn::backend::Flex>(
            std::slice::from_ref(&short),
            t.pad,
            false,
            &device,
        )
        .unwrap();
        let (c, _) = pair_scores(&model, &batch).unwrap();
        let alone = kiln_data::collate::collate_sft::<burn::backend::Flex>(
            std::slice::from_ref(&short.chosen),
            t.pad,
            &device,
        )
        .unwrap();
        let unpadded = model.forward(alone.input_ids, None).unwrap().into_scalar();
        assert!((c.into_scalar() - unpadded).abs() < 1e-5);
    }
}
