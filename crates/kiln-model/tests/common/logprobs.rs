//! Shared helpers of the log-prob tests (`logprob_*.rs`): an f64 reference for
//! [`kiln_model::sequence_logprobs`] and a proptest strategy of logits with ids and masks.
//!
//! Included with `#[path = "common/logprobs.rs"] mod logprobs;` (not from `common/mod.rs`, so the
//! model tests that use `mod common;` do not compile it). Moved from kiln-losses' `testing` kit
//! (`reference::sequence_logprob`, `strategies::{LogitsCase, logits_case}`) with the log-prob
//! code, since kiln-model does not depend on kiln-losses.
#![allow(dead_code)]

use burn::tensor::backend::Backend;
use burn::tensor::{Int, Tensor};
use kiln_model::LogProbReduction;
use proptest::collection::vec;
use proptest::prelude::*;

/// A rank-1 tensor of `values` in the backend's default float dtype.
pub fn tensor1<B: Backend>(values: &[f64], device: &B::Device) -> Tensor<B, 1> {
    Tensor::from_floats(values, device)
}

/// Sequence log-prob of one row: `logits` is `seq` rows of `vocab` values, the shift as in
/// [`kiln_model::sequence_logprobs`].
pub fn sequence_logprob(
    logits: &[Vec<f64>],
    input_ids: &[usize],
    mask: &[f64],
    reduction: LogProbReduction,
) -> f64 {
    let mut sum = 0.0;
    let mut count = 0.0;
    for t in 0..logits.len().saturating_sub(1) {
        let row = &logits[t];
        let max = row.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        let lse = max + row.iter().map(|v| (v - max).exp()).sum::<f64>().ln();
        sum += mask[t + 1] * (row[input_ids[t + 1]] - lse);
        count += mask[t + 1];
    }
    match reduction {
        LogProbReduction::Sum => sum,
        LogProbReduction::Mean => {
            if count > 0.0 {
                sum / count
            } else {
                0.0
            }
        }
    }
}

/// Logits, input ids and a loss mask for [`kiln_model::sequence_logprobs`].
#[derive(Debug, Clone, PartialEq)]
pub struct LogitsCase {
    /// Batch size.
    pub batch: usize,
    /// Sequence length (>= 2).
    pub seq: usize,
    /// Vocabulary size.
    pub vocab: usize,
    /// Logits, row-major `[batch, seq, vocab]`.
    pub logits: Vec<f64>,
    /// Input ids, row-major `[batch, seq]`.
    pub input_ids: Vec<usize>,
    /// Mask 0/1, row-major `[batch, seq]`.
    pub mask: Vec<f64>,
}

impl LogitsCase {
    /// The `(logits, input_ids, mask)` tensors.
    pub fn to_tensors<B: Backend>(
        &self,
        device: &B::Device,
    ) -> (Tensor<B, 3>, Tensor<B, 2, Int>, Tensor<B, 2>) {
        let logits = tensor1::<B>(&self.logits, device).reshape([self.batch, self.seq, self.vocab]);
        let ids: Vec<i64> = self.input_ids.iter().map(|&i| i as i64).collect();
        let ids =
            Tensor::<B, 1, Int>::from_ints(ids.as_slice(), device).reshape([self.batch, self.seq]);
        let mask = tensor1::<B>(&self.mask, device).reshape([self.batch, self.seq]);
        (logits, ids, mask)
    }

    /// Row `b` as `(logits rows, ids, mask)` for the f64 reference.
    pub fn row(&self, b: usize) -> (Vec<Vec<f64>>, Vec<usize>, Vec<f64>) {
        let logits = (0..self.seq)
            .map(|t| {
                let start = (b * self.seq + t) * self.vocab;
                self.logits[start..start + self.vocab].to_vec()
            })
            .collect();
        let r = b * self.seq..(b + 1) * self.seq;
        (
            logits,
            self.input_ids[r.clone()].to_vec(),
            self.mask[r].to_vec(),
        )
    }
}

/// Random logits in `[-10, 10]` with ids and masks, `batch` in `1..5`, `seq` in `2..12`,
/// `vocab` in `2..40`.
pub fn logits_case() -> impl Strategy<Value = LogitsCase> {
    (1..5usize, 2..12usize, 2..40usize).prop_flat_map(|(batch, seq, vocab)| {
        (
            vec(-10.0f64..10.0, batch * seq * vocab),
            vec(0..vocab, batch * seq),
            vec(any::<bool>(), batch * seq),
        )
            .prop_map(move |(logits, input_ids, mask)| LogitsCase {
                batch,
                seq,
                vocab,
                logits,
                input_ids,
                mask: mask
                    .into_iter()
                    .map(|m| if m { 1.0 } else { 0.0 })
                    .collect(),
            })
    })
}
