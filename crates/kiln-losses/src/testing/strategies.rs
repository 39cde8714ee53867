//! proptest strategies for loss inputs: log-probs, preference batches, reward sets.
//!
//! Log-probs are drawn on a grid of 1/64 so that they, and sums and differences of a few of them,
//! are exact in f32: agreement tests then measure the loss, not input rounding.

use burn::tensor::Tensor;
use burn::tensor::backend::Backend;
use proptest::collection::vec;
use proptest::prelude::*;
use std::ops::Range;

use crate::DpoLoss;

/// A sequence log-prob in `[-200, 0]` on the 1/64 grid (exact in f32).
pub fn logp() -> impl Strategy<Value = f64> + Clone {
    (-(200 * 64)..=0i32).prop_map(|v| f64::from(v) / 64.0)
}

/// A small sequence log-prob in `[-8, 0]` on the 1/256 grid (for finite-difference checks, where
/// f32 resolution near the input matters).
pub fn small_logp() -> impl Strategy<Value = f64> + Clone {
    (-(8 * 256)..=0i32).prop_map(|v| f64::from(v) / 256.0)
}

/// `beta` log-uniform in `[0.01, 10]`.
pub fn beta() -> impl Strategy<Value = f64> {
    (-2.0f64..1.0).prop_map(|e| 10f64.powf(e))
}

/// Any DPO-family variant, label smoothing in `[0, 0.45]`.
pub fn dpo_loss() -> impl Strategy<Value = DpoLoss> {
    prop_oneof![
        Just(DpoLoss::Sigmoid),
        (0.0f64..0.45).prop_map(|e| DpoLoss::Cdpo { label_smoothing: e }),
        (0.0f64..0.45).prop_map(|e| DpoLoss::Robust { label_smoothing: e }),
        Just(DpoLoss::Ipo),
        Just(DpoLoss::Hinge),
    ]
}

/// Log-probs of one preference pair under the policy and the reference.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PreferencePair {
    /// `logp_pi(y_w)`.
    pub policy_chosen: f64,
    /// `logp_pi(y_l)`.
    pub policy_rejected: f64,
    /// `logp_ref(y_w)`.
    pub reference_chosen: f64,
    /// `logp_ref(y_l)`.
    pub reference_rejected: f64,
}

impl PreferencePair {
    /// The DPO margin `h = (pc - rc) - (pr - rr)`.
    pub fn margin(&self) -> f64 {
        (self.policy_chosen - self.reference_chosen)
            - (self.policy_rejected - self.reference_rejected)
    }

    /// The same pair with chosen and rejected exchanged (`h -> -h`).
    pub fn swapped(&self) -> Self {
        PreferencePair {
            policy_chosen: self.policy_rejected,
            policy_rejected: self.policy_chosen,
            reference_chosen: self.reference_rejected,
            reference_rejected: self.reference_chosen,
        }
    }

    /// The pair as `[pc, pr, rc, rr]`.
    pub fn to_array(&self) -> [f64; 4] {
        [
            self.policy_chosen,
            self.policy_rejected,
            self.reference_chosen,
            self.reference_rejected,
        ]
    }

    /// Builds a pair from `[pc, pr, rc, rr]`.
    pub fn from_array(v: [f64; 4]) -> Self {
        PreferencePair {
            policy_chosen: v[0],
            policy_rejected: v[1],
            reference_chosen: v[2],
            reference_rejected: v[3],
        }
    }
}

/// A batch of preference pairs.
#[derive(Debug, Clone, PartialEq)]
pub struct PreferenceBatch {
    /// The pairs.
    pub pairs: Vec<PreferencePair>,
}

impl PreferenceBatch {
    /// Number of pairs.
    pub fn len(&self) -> usize {
        self.pairs.len()
    }

    /// Whether the batch has no pair.
    pub fn is_empty(&self) -> bool {
        self.pairs.is_empty()
    }

    /// Column `i` of `[pc, pr, rc, rr]` as f64 values.
    pub fn column(&self, i: usize) -> Vec<f64> {
        self.pairs.iter().map(|p| p.to_array()[i]).collect()
    }

    /// The four `[batch]` tensors `(policy_chosen, policy_rejected, reference_chosen,
    /// reference_rejected)`.
    pub fn to_tensors<B: Backend>(&self, device: &B::Device) -> [Tensor<B, 1>; 4] {
        std::array::from_fn(|i| tensor1(&self.column(i), device))
    }

    /// The batch with every pair swapped.
    pub fn swapped(&self) -> Self {
        PreferenceBatch {
            pairs: self.pairs.iter().map(PreferencePair::swapped).collect(),
        }
    }
}

/// A 1-D tensor from f64 values (converted to the backend's float type).
pub fn tensor1<B: Backend>(values: &[f64], device: &B::Device) -> Tensor<B, 1> {
    Tensor::from_floats(values, device)
}

fn pair(logp: impl Strategy<Value = f64> + Clone) -> impl Strategy<Value = PreferencePair> {
    (logp.clone(), logp.clone(), logp.clone(), logp)
        .prop_map(|(a, b, c, d)| PreferencePair::from_array([a, b, c, d]))
}

/// Preference batches with log-probs from [`logp`] and a batch size in `size`.
pub fn preference_batch(size: Range<usize>) -> impl Strategy<Value = PreferenceBatch> {
    vec(pair(logp()), size).prop_map(|pairs| PreferenceBatch { pairs })
}

/// Preference batches with log-probs from [`small_logp`] (for gradient checks).
pub fn small_preference_batch(size: Range<usize>) -> impl Strategy<Value = PreferenceBatch> {
    vec(pair(small_logp()), size).prop_map(|pairs| PreferenceBatch { pairs })
}

/// Extreme batches for a given `beta`: margins with `|beta * h|` log-uniform in `[1, 1e4]`, either
/// sign, carried by the policy log-probs (reference log-probs 0).
pub fn extreme_preference_batch(
    beta: f64,
    size: Range<usize>,
) -> impl Strategy<Value = PreferenceBatch> {
    let one = (0.0f64..4.0, any::<bool>(), any::<bool>()).prop_map(move |(e, neg, on_chosen)| {
        let h = 10f64.powf(e) / beta * if neg { -1.0 } else { 1.0 };
        if on_chosen {
            PreferencePair::from_array([h, 0.0, 0.0, 0.0])
        } else {
            PreferencePair::from_array([0.0, -h, 0.0, 0.0])
        }
    });
    vec(one, size).prop_map(|pairs| PreferenceBatch { pairs })
}

/// Reward-model scores for a batch of pairs, with optional margins.
#[derive(Debug, Clone, PartialEq)]
pub struct ScoredPairs {
    /// Scores of the chosen responses.
    pub chosen: Vec<f64>,
    /// Scores of the rejected responses.
    pub rejected: Vec<f64>,
    /// Per-pair margins (all 0 when the batch has none).
    pub margin: Vec<f64>,
}

/// Scored pairs with scores in `[-20, 20]` and margins in `[0, 2]` (all on the 1/64 grid).
pub fn scored_pairs(size: Range<usize>) -> impl Strategy<Value = ScoredPairs> {
    let score = (-(20 * 64)..=20 * 64i32).prop_map(|v| f64::from(v) / 64.0);
    let margin = (0..=128i32).prop_map(|v| f64::from(v) / 64.0);
    vec((score.clone(), score, margin), size).prop_map(|rows| ScoredPairs {
        chosen: rows.iter().map(|r| r.0).collect(),
        rejected: rows.iter().map(|r| r.1).collect(),
        margin: rows.iter().map(|r| r.2).collect(),
    })
}

/// K responses for each of several prompts: log-probs, token lengths and rewards.
#[derive(Debug, Clone, PartialEq)]
pub struct RewardSets {
    /// Number of prompts.
    pub prompts: usize,
    /// Responses per prompt.
    pub k: usize,
    /// Summed log-probs, row-major `[prompts, k]`.
    pub logps: Vec<f64>,
    /// Token lengths (>= 1), row-major `[prompts, k]`.
    pub lengths: Vec<f64>,
    /// Rewards, row-major `[prompts, k]`; drawn from few values so that ties occur.
    pub rewards: Vec<f64>,
}

impl RewardSets {
    /// Row `p` of a row-major `[prompts, k]` field.
    pub fn row<'a>(&self, field: &'a [f64], p: usize) -> &'a [f64] {
        &field[p * self.k..(p + 1) * self.k]
    }

    /// A `[prompts, k]` tensor from a row-major field.
    pub fn tensor<B: Backend>(&self, field: &[f64], device: &B::Device) -> Tensor<B, 2> {
        tensor1::<B>(field, device).reshape([self.prompts, self.k])
    }
}

/// Reward sets with `prompts` in `prompts` and `k` in `k`.
pub fn reward_sets(prompts: Range<usize>, k: Range<usize>) -> impl Strategy<Value = RewardSets> {
    (prompts, k).prop_flat_map(|(p, k)| {
        let n = p * k;
        (
            vec(logp(), n),
            vec(1..=64u32, n),
            vec((-8..=8i32).prop_map(|v| f64::from(v) / 4.0), n),
        )
            .prop_map(move |(logps, lengths, rewards)| RewardSets {
                prompts: p,
                k,
                logps,
                lengths: lengths.into_iter().map(f64::from).collect(),
                rewards,
            })
    })
}
