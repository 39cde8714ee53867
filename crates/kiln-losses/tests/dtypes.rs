//! Every loss keeps its inputs' dtype (f32, f64, bf16): no tensor is built in the default float
//! dtype, values agree with the f64 references within dtype-sized tolerances, metrics read back,
//! and backward runs (gradients in the input dtype). (`sequence_logprobs` is checked the same way
//! in kiln-model's `tests/logprob_dtypes.rs`.)
#![cfg(test)]
#![allow(clippy::print_stderr)]

use burn::backend::{Autodiff, Flex};
use burn::tensor::backend::Backend;
use burn::tensor::{DType, Tensor, TensorData};
use kiln_losses::testing::reference;
use kiln_losses::{BradleyTerryConfig, DpoConfig, DpoLoss, RrhfConfig};

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

const PC: [f64; 4] = [-12.5, -30.25, -7.0, -3.5];
const PR: [f64; 4] = [-14.0, -28.5, -9.75, -2.0];
const RC: [f64; 4] = [-13.0, -29.0, -8.0, -3.0];
const RR: [f64; 4] = [-13.5, -29.5, -9.0, -2.5];

#[test]
fn dpo_keeps_the_dtype_for_every_variant() {
    let losses = [
        DpoLoss::Sigmoid,
        DpoLoss::Cdpo {
            label_smoothing: 0.1,
        },
        DpoLoss::Robust {
            label_smoothing: 0.2,
        },
        DpoLoss::Ipo,
        DpoLoss::Hinge,
    ];
    for dtype in DTYPES {
        let (pc, pr, rc, rr) = (
            rounded(&PC, dtype),
            rounded(&PR, dtype),
            rounded(&RC, dtype),
            rounded(&RR, dtype),
        );
        for loss in losses {
            for reference_free in [false, true] {
                let beta = 0.5;
                let d = DpoConfig::new()
                    .with_beta(beta)
                    .with_loss(loss)
                    .with_reference_free(reference_free)
                    .init()
                    .unwrap();
                let what = format!("dpo {} free={reference_free}", loss.name());
                // f32 reference log-probs (e.g. a precomputed table) with bf16/f64 policy
                // log-probs: cast to the policy's dtype, not mixed.
                let out = d.forward(
                    t1::<Flex>(&pc, dtype),
                    t1::<Flex>(&pr, dtype),
                    t1::<Flex>(&rc, DType::F32),
                    t1::<Flex>(&rr, DType::F32),
                );
                assert_eq!(out.loss.dtype(), dtype, "{what}");
                assert_eq!(out.losses.dtype(), dtype, "{what}");
                assert_eq!(out.chosen_rewards.dtype(), dtype, "{what}");
                let want: Vec<f64> = (0..4)
                    .map(|i| {
                        let h = reference::dpo_margin(pc[i], pr[i], rc[i], rr[i], reference_free);
                        reference::dpo_pair_loss(loss, beta, h)
                    })
                    .collect();
                assert_close(&what, dtype, &read(out.losses.clone()), &want);
                let m = out.metrics();
                assert!(
                    m.rewards_accuracies.is_finite() && m.logps_chosen < 0.0,
                    "{what}"
                );

                let pc_t = t1::<AD>(&pc, dtype).require_grad();
                let out = d.forward(
                    pc_t.clone(),
                    t1::<AD>(&pr, dtype),
                    t1::<AD>(&rc, dtype),
                    t1::<AD>(&rr, dtype),
                );
                let grads = out.loss.backward();
                let g = pc_t.grad(&grads).expect("gradient");
                assert_eq!(g.dtype(), dtype, "{what}");
            }
        }
    }
}

#[test]
fn bradley_terry_keeps_the_dtype() {
    let chosen = [1.5, -0.25, 3.0, 0.5];
    let rejected = [0.5, 0.75, -1.0, 0.5];
    let margin = [0.5, 0.0, 1.0, 0.25];
    for dtype in DTYPES {
        let (c, r, m) = (
            rounded(&chosen, dtype),
            rounded(&rejected, dtype),
            rounded(&margin, dtype),
        );
        let bt = BradleyTerryConfig::new()
            .with_center_rewards_coefficient(0.01)
            .init()
            .unwrap();
        let out = bt.forward(
            t1::<Flex>(&c, dtype),
            t1::<Flex>(&r, dtype),
            Some(t1::<Flex>(&m, DType::F32)),
        );
        assert_eq!(out.loss.dtype(), dtype);
        assert_eq!(out.score_margins.dtype(), dtype);
        let want: Vec<f64> = (0..4)
            .map(|i| reference::bradley_terry_pair_loss(c[i], r[i], m[i], 0.01))
            .collect();
        assert_close("bradley_terry", dtype, &read(out.losses.clone()), &want);
        let metrics = out.metrics();
        assert_eq!(metrics.accuracy, 0.5, "{dtype:?}");

        let c_t = t1::<AD>(&c, dtype).require_grad();
        let out = bt.forward(c_t.clone(), t1::<AD>(&r, dtype), Some(t1::<AD>(&m, dtype)));
        let g = c_t.grad(&out.loss.backward()).expect("gradient");
        assert_eq!(g.dtype(), dtype);
    }
}

#[test]
fn rrhf_keeps_the_dtype() {
    // Two prompts, three responses each; a reward tie in the second prompt.
    let logps = [-10.0, -14.5, -6.25, -20.0, -18.0, -22.5];
    let lengths = [5.0, 7.0, 3.0, 8.0, 6.0, 9.0];
    let rewards = [0.5, -1.0, 2.0, 1.0, 1.0, -0.5];
    for dtype in DTYPES {
        let (lp, len, rw) = (
            rounded(&logps, dtype),
            rounded(&lengths, dtype),
            rounded(&rewards, dtype),
        );
        let rrhf = RrhfConfig::new().init().unwrap();
        // Lengths and rewards in f32 (as collated) with bf16/f64 log-probs.
        let out = rrhf.forward(
            t2::<Flex>(&lp, [2, 3], dtype),
            t2::<Flex>(&len, [2, 3], DType::F32),
            t2::<Flex>(&rw, [2, 3], DType::F32),
        );
        assert_eq!(out.loss.dtype(), dtype);
        assert_eq!(out.scores.dtype(), dtype);
        let want: Vec<f64> = (0..2)
            .map(|p| {
                let s = p * 3..p * 3 + 3;
                reference::rrhf_prompt_loss(&lp[s.clone()], &len[s.clone()], &rw[s], 1.0, 1.0).0
            })
            .collect();
        assert_close("rrhf", dtype, &read(out.losses.clone()), &want);

        let lp_t = t2::<AD>(&lp, [2, 3], dtype).require_grad();
        let out = rrhf.forward(
            lp_t.clone(),
            t2::<AD>(&len, [2, 3], dtype),
            t2::<AD>(&rw, [2, 3], dtype),
        );
        let g = lp_t.grad(&out.loss.backward()).expect("gradient");
        assert_eq!(g.dtype(), dtype);
    }
}
