//! [`fit_reward_model`]: a Bradley-Terry reward model trained on preference pairs (the reward-model
//! stage of the RLHFlow workflow), on every peer of a placement, with its held-out accuracy.

use burn::module::AutodiffModule;
use burn::tensor::backend::AutodiffBackend;
use kiln_data::{ChatEncoder, PairRecord};
use kiln_model::SequenceScorer;
use kiln_train::reward::{RewardPair, RewardTrainConfig, pairwise_accuracy, train_reward_model};
use kiln_train::{Placement, TrainConfig};

use crate::error::Result;
use crate::observer::{FitProgress, fit};

/// What a reward model scores on the pairs it did not train on.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct HeldOut {
    /// Pairs held out (the last tenth).
    pub pairs: usize,
    /// Fraction of held-out pairs whose chosen response scores above the rejected one.
    pub accuracy: f64,
    /// Mean score gap, chosen minus rejected.
    pub mean_margin: f64,
}

/// Trains `model` (a sequence classifier: a backbone and a score head, LoRA adapters attached or
/// not) with the Bradley-Terry loss of `loss` on the first nine tenths of `pairs`, each side
/// rendered with `enc`'s chat template, under `optimizer` on every peer of `placement`, and
/// measures it on the last tenth.
///
/// # Errors
/// Tokenisation, training (a NaN loss names its step) and scoring errors.
pub fn fit_reward_model<B, C>(
    model: C,
    pairs: &[PairRecord],
    enc: &ChatEncoder,
    optimizer: TrainConfig,
    loss: &RewardTrainConfig,
    placement: &Placement<B>,
    progress: &FitProgress<'_>,
) -> Result<(C, HeldOut)>
where
    B: AutodiffBackend,
    C: SequenceScorer<B> + AutodiffModule<B>,
    C::InnerModule: SequenceScorer<B::InnerBackend>,
{
    let mut train = (pairs.iter())
        .map(|r| RewardPair::from_record(enc, r))
        .collect::<kiln_train::Result<Vec<_>>>()?;
    let held_out = train.split_off(train.len() * 9 / 10);
    let loss = loss.clone().with_pad_id(Some(enc.pad_id));
    let trained = fit(model, optimizer, placement, progress, |t| {
        train_reward_model(t, &train, &loss)
    })?;
    let (accuracy, mean_margin) = pairwise_accuracy(&trained.valid(), &held_out, enc.pad_id, 64)?;
    Ok((
        trained,
        HeldOut {
            pairs: held_out.len(),
            accuracy,
            mean_margin,
        },
    ))
}
