//! Property tests of `sequence_logprobs`: values against an f64 reference and autodiff gradients
//! against central finite differences, on random logits, ids and masks (moved from kiln-losses'
//! `tests/properties.rs` with the log-prob code; same cases and tolerances).
#![cfg(test)]

#[path = "common/logprobs.rs"]
mod logprobs;

use burn::backend::{Autodiff, Flex};
use burn::tensor::Tensor;
use burn::tensor::backend::{AutodiffBackend, Backend};
use kiln_model::{LogProbReduction, sequence_logprobs};
use logprobs::{logits_case, sequence_logprob, tensor1};
use proptest::prelude::*;

type B = Autodiff<Flex>;

fn values<Bk: Backend, const D: usize>(t: Tensor<Bk, D>) -> Vec<f64> {
    t.into_data().iter::<f64>().collect()
}

/// `|a - b| <= bound`, false whenever a NaN is involved (so NaN never passes a check).
fn close(a: f64, b: f64, bound: f64) -> bool {
    (a - b).abs() <= bound
}

/// Autodiff gradients of `sum(f(input))` agree with central finite differences (one element
/// perturbed at a time by `+-step`; the step actually realised in the backend's float type is
/// used) within `tol * max(1, |fd|)`. The one-input case of kiln-losses'
/// `testing::checks::gradients_match_finite_differences`.
fn gradients_match_finite_differences<Bk: AutodiffBackend>(
    f: impl Fn(Tensor<Bk, 1>) -> Tensor<Bk, 1>,
    input: &[f64],
    step: f64,
    tol: f64,
) -> Result<(), TestCaseError> {
    let device: Bk::Device = Default::default();
    let x = tensor1::<Bk>(input, &device).require_grad();
    let grads = f(x.clone()).sum().backward();
    let Some(g) = x.grad(&grads) else {
        return Err(TestCaseError::fail("the input received no gradient"));
    };
    let analytic = values(g);
    let total = |v: &[f64]| -> f64 { values(f(tensor1::<Bk>(v, &device))).iter().sum() };
    let rounded = |v: f64| values(tensor1::<Bk::InnerBackend>(&[v], &Default::default()))[0];
    for j in 0..input.len() {
        let mut plus = input.to_vec();
        let mut minus = input.to_vec();
        plus[j] += step;
        minus[j] -= step;
        // The step the backend really sees after rounding to its float type.
        let realised = rounded(plus[j]) - rounded(minus[j]);
        let fd = (total(&plus) - total(&minus)) / realised;
        let ad = analytic[j];
        if !close(ad, fd, tol * fd.abs().max(1.0)) {
            return Err(TestCaseError::fail(format!(
                "input[{j}]: autodiff gradient {ad} vs finite difference {fd} (step {step})"
            )));
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn sequence_logprobs_match_f64_reference(case in logits_case(), mean in any::<bool>()) {
        let reduction = if mean { LogProbReduction::Mean } else { LogProbReduction::Sum };
        let (logits, ids, mask) = case.to_tensors::<Flex>(&Default::default());
        let got: Vec<f64> = sequence_logprobs(logits, ids, mask, reduction).into_data().iter::<f64>().collect();
        for (b, g) in got.iter().enumerate() {
            let (l, i, m) = case.row(b);
            let want = sequence_logprob(&l, &i, &m, reduction);
            prop_assert!((g - want).abs() <= 1e-5 * (1.0 + want.abs()), "row {b}: {g} vs {want}");
        }
    }

    #[test]
    fn sequence_logprob_gradients_match_finite_differences(case in logits_case()) {
        let (batch, seq, vocab) = (case.batch, case.seq, case.vocab);
        let (_, ids, mask) = case.to_tensors::<B>(&Default::default());
        gradients_match_finite_differences(
            |t: Tensor<B, 1>| {
                let logits = t.reshape([batch, seq, vocab]);
                sequence_logprobs(logits, ids.clone(), mask.clone(), LogProbReduction::Sum)
            },
            &case.logits, 1e-2, 2e-2,
        )?;
    }
}
