//! kiln-model's `sequence_logprobs` against independent float64 values computed with PyTorch
//! (`scripts/make_loss_fixtures.py`, TRL's `get_batch_logps`; the values are committed in
//! `logprob_torch/values.rs`, CI needs no Python).
#![cfg(test)]

#[path = "logprob_torch/values.rs"]
mod values;

use burn::backend::Flex;
use burn::tensor::backend::Backend;
use burn::tensor::{Int, Tensor};
use kiln_model::{LogProbReduction, sequence_logprobs};

/// A rank-1 tensor of `values` (kiln-losses' `testing::strategies::tensor1`).
fn tensor1<B: Backend>(values: &[f64], device: &B::Device) -> Tensor<B, 1> {
    Tensor::from_floats(values, device)
}

fn vals<const D: usize>(t: Tensor<Flex, D>) -> Vec<f64> {
    t.into_data().iter::<f64>().collect()
}

fn assert_close(got: &[f64], want: &[f64], tol: f64, what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!(
            (g - w).abs() <= tol * (1.0 + w.abs()),
            "{what}[{i}]: got {g}, torch {w}"
        );
    }
}

#[test]
fn sequence_logprobs_match_torch() {
    let device = Default::default();
    let (b, t, v, logits, ids, mask, sum, mean) = values::LOGPROBS;
    let logits = tensor1::<Flex>(logits, &device).reshape([b, t, v]);
    let ids = Tensor::<Flex, 1, Int>::from_ints(ids, &device).reshape([b, t]);
    let mask = tensor1::<Flex>(mask, &device).reshape([b, t]);
    let s = sequence_logprobs(
        logits.clone(),
        ids.clone(),
        mask.clone(),
        LogProbReduction::Sum,
    );
    let m = sequence_logprobs(logits, ids, mask, LogProbReduction::Mean);
    assert_close(&vals(s), sum, 1e-6, "sum");
    assert_close(&vals(m), mean, 1e-6, "mean");
}
