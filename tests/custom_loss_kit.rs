//! A downstream user property-tests their own DPO-family loss with Kiln's kit
//! (`kiln-losses` feature `testing`), exactly as the README and `docs/GUIDE.md` describe.
//!
//! The custom loss is a margin-shifted sigmoid `-log s(beta * h - gamma)`, which asks the policy to
//! beat the reference by a margin `gamma / beta` (as in ODPO / SimPO-style margins).
#![cfg(test)]

use kiln::backend::AutodiffCpu;
use kiln::burn::tensor::{Tensor, activation::log_sigmoid};
use kiln::losses::testing::{checks, reference, strategies};
use proptest::prelude::*;

type B = AutodiffCpu;
const BETA: f64 = 0.5;
const GAMMA: f64 = 0.3;

/// The user's loss: per-pair `-log s(beta * h - gamma)`.
fn margin_shifted(
    policy_chosen: Tensor<B, 1>,
    policy_rejected: Tensor<B, 1>,
    reference_chosen: Tensor<B, 1>,
    reference_rejected: Tensor<B, 1>,
) -> Tensor<B, 1> {
    let h = (policy_chosen - reference_chosen.detach())
        - (policy_rejected - reference_rejected.detach());
    log_sigmoid(h.mul_scalar(BETA).sub_scalar(GAMMA)).neg()
}

proptest! {
    #[test]
    fn custom_loss_matches_its_closed_form(batch in strategies::preference_batch(1..16)) {
        checks::pair_loss_matches(margin_shifted, &batch, |p| -reference::log_sigmoid(BETA * p.margin() - GAMMA), 1e-4)?;
    }

    #[test]
    fn custom_loss_is_monotone(batch in strategies::preference_batch(1..16), delta in 0.1f64..10.0) {
        checks::pair_loss_monotone(margin_shifted, &batch, delta)?;
    }

    #[test]
    fn custom_loss_swap_identity(batch in strategies::preference_batch(1..16)) {
        // -log s(z - g) + log s(-z - g) is not linear in h for g != 0, but with g = 0 the kit's
        // swap identity L(h) - L(-h) = -beta h must hold for the unshifted version.
        let unshifted = |pc: Tensor<B, 1>, pr: Tensor<B, 1>, rc: Tensor<B, 1>, rr: Tensor<B, 1>| {
            log_sigmoid(((pc - rc) - (pr - rr)).mul_scalar(BETA)).neg()
        };
        checks::pair_loss_swap_identity(unshifted, &batch, |p| -BETA * p.margin(), 1e-5)?;
    }

    #[test]
    fn custom_loss_is_finite_at_extremes(batch in strategies::extreme_preference_batch(BETA, 1..16)) {
        checks::pair_loss_finite(margin_shifted, &batch)?;
    }

    #[test]
    fn custom_loss_gradients_are_right(batch in strategies::small_preference_batch(1..8)) {
        checks::pair_loss_gradients_match_finite_differences(margin_shifted, &batch, 1e-2, 2e-2)?;
    }
}

/// The kit catches a wrong loss: a sign error in the margin fails monotonicity.
#[test]
fn kit_rejects_a_broken_loss() {
    let broken = |pc: Tensor<B, 1>, pr: Tensor<B, 1>, rc: Tensor<B, 1>, rr: Tensor<B, 1>| {
        log_sigmoid(((pr - rr) - (pc - rc)).mul_scalar(BETA)).neg()
    };
    let batch = strategies::PreferenceBatch {
        pairs: vec![strategies::PreferencePair::from_array([
            -5.0, -7.0, -6.0, -6.0,
        ])],
    };
    assert!(checks::pair_loss_monotone(broken, &batch, 1.0).is_err());
    assert!(
        checks::pair_loss_matches(
            broken,
            &batch,
            |p| -reference::log_sigmoid(BETA * p.margin()),
            1e-4
        )
        .is_err()
    );
}
