//! Reusable property checks that accept any loss with the right signature.
//!
//! Each check returns `Err(TestCaseError)` on failure, so it can be used with `?` inside
//! `proptest!`. A *pair loss* is any function
//! `Fn(policy_chosen, policy_rejected, reference_chosen, reference_rejected) -> per-pair losses`
//! on `[batch]` tensors, like `|pc, pr, rc, rr| dpo.forward(pc, pr, rc, rr).losses`. The generic
//! checks ([`finite_with_gradients`], [`gradients_match_finite_differences`]) take a function of a
//! slice of `[n]` tensors, which covers Bradley-Terry, RRHF (reshape inside) and anything else.

use burn::tensor::Tensor;
use burn::tensor::backend::{AutodiffBackend, Backend};
use proptest::prelude::TestCaseError;

use super::strategies::{PreferenceBatch, PreferencePair, tensor1};

fn values<B: Backend, const D: usize>(t: Tensor<B, D>) -> Vec<f64> {
    t.into_data().iter::<f64>().collect()
}

fn eval_pairs<B: Backend, F>(f: &F, batch: &PreferenceBatch) -> Vec<f64>
where
    F: Fn(Tensor<B, 1>, Tensor<B, 1>, Tensor<B, 1>, Tensor<B, 1>) -> Tensor<B, 1>,
{
    let [pc, pr, rc, rr] = batch.to_tensors::<B>(&Default::default());
    values(f(pc, pr, rc, rr))
}

/// `|a - b| <= bound`, false whenever a NaN is involved (so NaN never passes a check).
fn close(a: f64, b: f64, bound: f64) -> bool {
    (a - b).abs() <= bound
}

fn fail(msg: String) -> Result<(), TestCaseError> {
    Err(TestCaseError::fail(msg))
}

/// Every pair's loss equals `reference(pair)` within `tol * (1 + |reference|)`.
pub fn pair_loss_matches<B: Backend, F>(
    f: F,
    batch: &PreferenceBatch,
    reference: impl Fn(&PreferencePair) -> f64,
    tol: f64,
) -> Result<(), TestCaseError>
where
    F: Fn(Tensor<B, 1>, Tensor<B, 1>, Tensor<B, 1>, Tensor<B, 1>) -> Tensor<B, 1>,
{
    let got = eval_pairs(&f, batch);
    if got.len() != batch.len() {
        return fail(format!(
            "loss has {} values for {} pairs",
            got.len(),
            batch.len()
        ));
    }
    for (i, (g, pair)) in got.iter().zip(&batch.pairs).enumerate() {
        let want = reference(pair);
        if !close(*g, want, tol * (1.0 + want.abs())) {
            return fail(format!(
                "pair {i} {pair:?}: loss {g} but reference {want} (tol {tol})"
            ));
        }
    }
    Ok(())
}

/// The loss is monotone in both log-ratios: raising `logp_pi(y_w)` or `logp_ref(y_l)` by `delta`
/// never raises it, raising `logp_pi(y_l)` or `logp_ref(y_w)` never lowers it (up to f32 noise).
pub fn pair_loss_monotone<B: Backend, F>(
    f: F,
    batch: &PreferenceBatch,
    delta: f64,
) -> Result<(), TestCaseError>
where
    F: Fn(Tensor<B, 1>, Tensor<B, 1>, Tensor<B, 1>, Tensor<B, 1>) -> Tensor<B, 1>,
{
    let base = eval_pairs(&f, batch);
    // (column to shift, +1 if the loss may not decrease, -1 if it may not increase)
    for (column, direction, what) in [
        (0, -1.0, "policy_chosen"),
        (1, 1.0, "policy_rejected"),
        (2, 1.0, "reference_chosen"),
        (3, -1.0, "reference_rejected"),
    ] {
        let shifted = PreferenceBatch {
            pairs: batch
                .pairs
                .iter()
                .map(|p| {
                    let mut v = p.to_array();
                    v[column] += delta;
                    PreferencePair::from_array(v)
                })
                .collect(),
        };
        let moved = eval_pairs(&f, &shifted);
        for (i, (b, m)) in base.iter().zip(&moved).enumerate() {
            let slack = 1e-5 * (1.0 + b.abs());
            if direction * (m - b) < -slack {
                return fail(format!(
                    "pair {i} {:?}: raising {what} by {delta} moved the loss from {b} to {m}",
                    batch.pairs[i]
                ));
            }
        }
    }
    Ok(())
}

/// Swapping chosen and rejected changes each pair's loss by `expected(pair)`:
/// `L(pair) - L(swapped) = expected(pair)` within `tol * (1 + |L(pair)| + |L(swapped)|)`.
/// For plain sigmoid DPO, `expected = -beta * h`.
pub fn pair_loss_swap_identity<B: Backend, F>(
    f: F,
    batch: &PreferenceBatch,
    expected: impl Fn(&PreferencePair) -> f64,
    tol: f64,
) -> Result<(), TestCaseError>
where
    F: Fn(Tensor<B, 1>, Tensor<B, 1>, Tensor<B, 1>, Tensor<B, 1>) -> Tensor<B, 1>,
{
    let a = eval_pairs(&f, batch);
    let b = eval_pairs(&f, &batch.swapped());
    for (i, pair) in batch.pairs.iter().enumerate() {
        let want = expected(pair);
        let got = a[i] - b[i];
        if !close(got, want, tol * (1.0 + a[i].abs() + b[i].abs())) {
            return fail(format!(
                "pair {i} {pair:?}: L - L_swapped = {got}, expected {want}"
            ));
        }
    }
    Ok(())
}

/// The pair loss and its gradients with respect to the policy log-probs are finite.
pub fn pair_loss_finite<B: AutodiffBackend, F>(
    f: F,
    batch: &PreferenceBatch,
) -> Result<(), TestCaseError>
where
    F: Fn(Tensor<B, 1>, Tensor<B, 1>, Tensor<B, 1>, Tensor<B, 1>) -> Tensor<B, 1>,
{
    let columns: Vec<Vec<f64>> = (0..4).map(|i| batch.column(i)).collect();
    finite_with_gradients(|t: &[Tensor<B, 1>]| pair_call(&f, t), &columns, &[0, 1])
}

/// Autodiff gradients of the pair loss with respect to the policy log-probs agree with central
/// finite differences of step `step` within `tol * max(1, |fd|)`.
pub fn pair_loss_gradients_match_finite_differences<B: AutodiffBackend, F>(
    f: F,
    batch: &PreferenceBatch,
    step: f64,
    tol: f64,
) -> Result<(), TestCaseError>
where
    F: Fn(Tensor<B, 1>, Tensor<B, 1>, Tensor<B, 1>, Tensor<B, 1>) -> Tensor<B, 1>,
{
    let columns: Vec<Vec<f64>> = (0..4).map(|i| batch.column(i)).collect();
    gradients_match_finite_differences(
        |t: &[Tensor<B, 1>]| pair_call(&f, t),
        &columns,
        &[0, 1],
        step,
        tol,
    )
}

fn pair_call<B: Backend, F>(f: &F, t: &[Tensor<B, 1>]) -> Tensor<B, 1>
where
    F: Fn(Tensor<B, 1>, Tensor<B, 1>, Tensor<B, 1>, Tensor<B, 1>) -> Tensor<B, 1>,
{
    f(t[0].clone(), t[1].clone(), t[2].clone(), t[3].clone())
}

/// `f(inputs)` is finite, and so are the gradients of its sum with respect to the inputs whose
/// indices are in `wrt`.
pub fn finite_with_gradients<B: AutodiffBackend>(
    f: impl Fn(&[Tensor<B, 1>]) -> Tensor<B, 1>,
    inputs: &[Vec<f64>],
    wrt: &[usize],
) -> Result<(), TestCaseError> {
    let device = Default::default();
    let tensors: Vec<Tensor<B, 1>> = inputs
        .iter()
        .enumerate()
        .map(|(i, v)| {
            let t = tensor1::<B>(v, &device);
            if wrt.contains(&i) {
                t.require_grad()
            } else {
                t
            }
        })
        .collect();
    let out = f(&tensors);
    let loss_values = values(out.clone());
    if let Some(bad) = loss_values.iter().find(|v| !v.is_finite()) {
        return fail(format!("non-finite loss {bad} for inputs {inputs:?}"));
    }
    let grads = out.sum().backward();
    for &i in wrt {
        let Some(g) = tensors[i].grad(&grads) else {
            return fail(format!("input {i} received no gradient"));
        };
        if let Some(bad) = values(g).iter().find(|v| !v.is_finite()) {
            return fail(format!(
                "non-finite gradient {bad} for input {i}, inputs {inputs:?}"
            ));
        }
    }
    Ok(())
}

/// Autodiff gradients of `sum(f(inputs))` with respect to each input in `wrt` agree with central
/// finite differences (one element perturbed at a time by `+-step`; the step actually realised in
/// the backend's float type is used) within `tol * max(1, |fd|)`.
pub fn gradients_match_finite_differences<B: AutodiffBackend>(
    f: impl Fn(&[Tensor<B, 1>]) -> Tensor<B, 1>,
    inputs: &[Vec<f64>],
    wrt: &[usize],
    step: f64,
    tol: f64,
) -> Result<(), TestCaseError> {
    let device: B::Device = Default::default();
    let tensors: Vec<Tensor<B, 1>> = inputs
        .iter()
        .enumerate()
        .map(|(i, v)| {
            let t = tensor1::<B>(v, &device);
            if wrt.contains(&i) {
                t.require_grad()
            } else {
                t
            }
        })
        .collect();
    let grads = f(&tensors).sum().backward();
    let total = |xs: &[Vec<f64>]| -> f64 {
        let ts: Vec<Tensor<B, 1>> = xs.iter().map(|v| tensor1::<B>(v, &device)).collect();
        values(f(&ts)).iter().sum()
    };
    for &i in wrt {
        let Some(g) = tensors[i].grad(&grads) else {
            return fail(format!("input {i} received no gradient"));
        };
        let analytic = values(g);
        for j in 0..inputs[i].len() {
            let mut plus = inputs.to_vec();
            let mut minus = inputs.to_vec();
            plus[i][j] += step;
            minus[i][j] -= step;
            // The step the backend really sees after rounding to its float type.
            let realised = values(tensor1::<B::InnerBackend>(
                &plus[i][j..=j],
                &Default::default(),
            ))[0]
                - values(tensor1::<B::InnerBackend>(
                    &minus[i][j..=j],
                    &Default::default(),
                ))[0];
            let fd = (total(&plus) - total(&minus)) / realised;
            let ad = analytic[j];
            if !close(ad, fd, tol * fd.abs().max(1.0)) {
                return fail(format!(
                    "input {i}[{j}]: autodiff gradient {ad} vs finite difference {fd} (step {step})"
                ));
            }
        }
    }
    Ok(())
}
