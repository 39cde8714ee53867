//! `sequence_logprobs` keeps its logits' dtype (f32, f64, bf16) with an f32 loss mask: values
//! agree with the f64 reference within dtype-sized tolerances and backward runs (gradients in the
//! logits' dtype). Moved from kiln-losses' `tests/dtypes.rs` with the log-prob code.
#![cfg(test)]
#![allow(clippy::print_stderr)]

#[path = "common/logprobs.rs"]
mod logprobs;

use burn::backend::{Autodiff, Flex};
use burn::tensor::backend::Backend;
use burn::tensor::{DType, Int, Tensor, TensorData};
use kiln_model::{LogProbReduction, sequence_logprobs};
use logprobs as reference;

type AD = Autodiff<Flex>;

const DTYPES: [DType; 3] = [DType::F32, DType::F64, DType::BF16];

/// Tolerance for a value of magnitude `scale` computed in `dtype` through a few ops.
fn tol(dtype: DType, scale: f64) -> f64 {
    let rel = match dtype {
        DType::F64 => 1e-12,
        DType::F32 => 2e-6,
        _ => 2e-2, // bf16: 8 significant bits, a few roundings
    };
    rel * scale.abs().max(1.0)
}

fn t1<B: Backend>(v: &[f64], dtype: DType) -> Tensor<B, 1> {
    Tensor::from_data(
        TensorData::new(v.to_vec(), [v.len()]),
        (&Default::default(), dtype),
    )
}

fn t2<B: Backend>(v: &[f64], shape: [usize; 2], dtype: DType) -> Tensor<B, 2> {
    Tensor::from_data(
        TensorData::new(v.to_vec(), shape),
        (&Default::default(), dtype),
    )
}

fn read<B: Backend, const D: usize>(t: Tensor<B, D>) -> Vec<f64> {
    t.into_data().convert::<f64>().to_vec::<f64>().unwrap()
}

/// Values as they are once rounded to `dtype` (the reference then sees the same inputs).
fn rounded(v: &[f64], dtype: DType) -> Vec<f64> {
    read(t1::<Flex>(v, dtype))
}

fn assert_close(what: &str, dtype: DType, got: &[f64], want: &[f64]) {
    assert_eq!(got.len(), want.len(), "{what}");
    let mut worst = 0f64;
    for (g, w) in got.iter().zip(want) {
        assert!(
            (g - w).abs() <= tol(dtype, *w),
            "{what} {dtype:?}: {g} vs reference {w}"
        );
        worst = worst.max((g - w).abs() / w.abs().max(1.0));
    }
    eprintln!(
        "{what} {dtype:?}: max error vs f64 reference (relative to max(1, |ref|)) {worst:.2e}"
    );
}

#[test]
fn sequence_logprobs_keeps_the_dtype() {
    let (batch, seq, vocab) = (2, 5, 7);
    let logits: Vec<f64> = (0..batch * seq * vocab)
        .map(|i| ((i * 37 % 23) as f64 - 11.0) * 0.3)
        .collect();
    let ids = [[0i64, 3, 6, 1, 2], [4, 4, 0, 5, 1]];
    let mask = [0.0, 1.0, 1.0, 0.0, 1.0, 0.0, 0.0, 1.0, 1.0, 1.0];
    for dtype in DTYPES {
        let lg = rounded(&logits, dtype);
        let rows: Vec<Vec<Vec<f64>>> = (0..batch)
            .map(|b| {
                (0..seq)
                    .map(|t| lg[(b * seq + t) * vocab..(b * seq + t + 1) * vocab].to_vec())
                    .collect()
            })
            .collect();
        for reduction in [LogProbReduction::Sum, LogProbReduction::Mean] {
            let logits_t = Tensor::<Flex, 3>::from_data(
                TensorData::new(lg.clone(), [batch, seq, vocab]),
                (&Default::default(), dtype),
            );
            let ids_t = Tensor::<Flex, 2, Int>::from_data(ids, &Default::default());
            // The loss mask as collated (default f32) with bf16/f64 logits.
            let out = sequence_logprobs(
                logits_t,
                ids_t,
                t2::<Flex>(&mask, [batch, seq], DType::F32),
                reduction,
            );
            assert_eq!(out.dtype(), dtype, "{reduction:?}");
            let want: Vec<f64> = (0..batch)
                .map(|b| {
                    let ids: Vec<usize> = ids[b].iter().map(|&i| i as usize).collect();
                    reference::sequence_logprob(
                        &rows[b],
                        &ids,
                        &mask[b * seq..(b + 1) * seq],
                        reduction,
                    )
                })
                .collect();
            assert_close(
                &format!("sequence_logprobs {reduction:?}"),
                dtype,
                &read(out),
                &want,
            );

            let logits_t = Tensor::<AD, 3>::from_data(
                TensorData::new(lg.clone(), [batch, seq, vocab]),
                (&Default::default(), dtype),
            )
            .require_grad();
            let out = sequence_logprobs(
                logits_t.clone(),
                Tensor::<AD, 2, Int>::from_data(ids, &Default::default()),
                t2::<AD>(&mask, [batch, seq], DType::F32),
                reduction,
            );
            let g = logits_t.grad(&out.sum().backward()).expect("gradient");
            assert_eq!(g.dtype(), dtype);
        }
    }
}
