//! Property tests for every kiln-losses loss, written with the public `testing` kit.
#![cfg(test)]

use burn::backend::{Autodiff, Flex};
use burn::tensor::Tensor;
use kiln_losses::testing::strategies::{self, tensor1};
use kiln_losses::testing::{checks, reference};
use kiln_losses::{BradleyTerryConfig, Dpo, DpoConfig, DpoLoss, RrhfConfig};
use proptest::prelude::*;

type B = Autodiff<Flex>;

fn dpo(loss: DpoLoss, beta: f64, reference_free: bool) -> Dpo {
    DpoConfig::new()
        .with_loss(loss)
        .with_beta(beta)
        .with_reference_free(reference_free)
        .init()
        .expect("valid config")
}

fn pair_losses(
    d: Dpo,
) -> impl Fn(Tensor<B, 1>, Tensor<B, 1>, Tensor<B, 1>, Tensor<B, 1>) -> Tensor<B, 1> {
    move |pc, pr, rc, rr| d.forward(pc, pr, rc, rr).losses
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn dpo_matches_f64_closed_form(
        loss in strategies::dpo_loss(),
        beta in strategies::beta(),
        reference_free in any::<bool>(),
        batch in strategies::preference_batch(1..16),
    ) {
        let d = dpo(loss, beta, reference_free);
        checks::pair_loss_matches(pair_losses(d), &batch, |p| {
            let h = reference::dpo_margin(
                p.policy_chosen, p.policy_rejected, p.reference_chosen, p.reference_rejected,
                reference_free,
            );
            reference::dpo_pair_loss(loss, beta, h)
        }, 1e-4)?;
    }

    #[test]
    fn dpo_is_ln2_when_policy_equals_reference(
        eps in 0.0f64..0.45,
        robust in any::<bool>(),
        beta in strategies::beta(),
        logps in proptest::collection::vec((strategies::logp(), strategies::logp()), 1..16),
    ) {
        let loss = if robust { DpoLoss::Robust { label_smoothing: eps } } else { DpoLoss::Cdpo { label_smoothing: eps } };
        let d = dpo(loss, beta, false);
        let device = Default::default();
        let c: Vec<f64> = logps.iter().map(|p| p.0).collect();
        let r: Vec<f64> = logps.iter().map(|p| p.1).collect();
        let out = d.forward(
            tensor1::<B>(&c, &device), tensor1::<B>(&r, &device),
            tensor1::<B>(&c, &device), tensor1::<B>(&r, &device),
        );
        let value = f64::from(out.loss.into_scalar());
        prop_assert!((value - std::f64::consts::LN_2).abs() < 1e-6, "loss {value}");
    }

    #[test]
    fn dpo_is_monotone_in_both_log_ratios(
        loss in strategies::dpo_loss(),
        beta in strategies::beta(),
        batch in strategies::preference_batch(1..16),
        delta in 0.25f64..20.0,
    ) {
        // IPO and cDPO have a minimum in h (IPO at h* = 1/(2 beta), cDPO with smoothing eps at
        // beta h* = ln((1 - eps) / eps)): they are monotone only below it. Sigmoid (eps = 0),
        // robust DPO and hinge are monotone everywhere.
        let optimum = match loss {
            DpoLoss::Ipo => Some(1.0 / (2.0 * beta)),
            DpoLoss::Cdpo { label_smoothing: e } if e > 0.0 => Some(((1.0 - e) / e).ln() / beta),
            _ => None,
        };
        if let Some(h_star) = optimum {
            prop_assume!(batch.pairs.iter().all(|p| p.margin() + delta < h_star));
        }
        checks::pair_loss_monotone(pair_losses(dpo(loss, beta, false)), &batch, delta)?;
    }

    #[test]
    fn dpo_swap_identities(
        eps in 0.0f64..0.45,
        beta in strategies::beta(),
        batch in strategies::preference_batch(1..16),
    ) {
        // L(h) - L(-h) = -beta h for plain sigmoid, -(1 - 2 eps) beta h for cDPO,
        // -beta h / (1 - 2 eps) for robust DPO and -2 h / beta for IPO.
        let sig = dpo(DpoLoss::Sigmoid, beta, false);
        checks::pair_loss_swap_identity(pair_losses(sig), &batch, |p| -beta * p.margin(), 1e-5)?;
        let cdpo = dpo(DpoLoss::Cdpo { label_smoothing: eps }, beta, false);
        checks::pair_loss_swap_identity(pair_losses(cdpo), &batch, |p| -(1.0 - 2.0 * eps) * beta * p.margin(), 1e-5)?;
        let robust = dpo(DpoLoss::Robust { label_smoothing: eps }, beta, false);
        checks::pair_loss_swap_identity(pair_losses(robust), &batch, |p| -beta * p.margin() / (1.0 - 2.0 * eps), 1e-5)?;
        let ipo = dpo(DpoLoss::Ipo, beta, false);
        checks::pair_loss_swap_identity(pair_losses(ipo), &batch, |p| -2.0 * p.margin() / beta, 1e-5)?;
    }

    #[test]
    fn dpo_is_finite_for_extreme_margins(
        (loss, beta, batch) in (strategies::dpo_loss(), strategies::beta())
            .prop_flat_map(|(l, b)| (Just(l), Just(b), strategies::extreme_preference_batch(b, 1..16))),
    ) {
        checks::pair_loss_finite(pair_losses(dpo(loss, beta, false)), &batch)?;
    }

    #[test]
    fn dpo_gradients_match_finite_differences(
        loss in strategies::dpo_loss(),
        beta in strategies::beta(),
        batch in strategies::small_preference_batch(1..8),
    ) {
        let step = 1e-2 / beta;
        if loss == DpoLoss::Hinge {
            // The hinge has a kink at beta * h = 1, where finite differences are meaningless.
            prop_assume!(batch.pairs.iter().all(|p| (1.0 - beta * p.margin()).abs() > 4.0 * beta * step));
        }
        checks::pair_loss_gradients_match_finite_differences(pair_losses(dpo(loss, beta, false)), &batch, step, 2e-2)?;
    }

    #[test]
    fn bradley_terry_matches_f64_closed_form(
        pairs in strategies::scored_pairs(1..16),
        center in prop_oneof![Just(0.0), 0.0f64..0.1],
        with_margin in any::<bool>(),
    ) {
        let bt = BradleyTerryConfig::new().with_center_rewards_coefficient(center).init().unwrap();
        let device = Default::default();
        let margin = with_margin.then(|| tensor1::<Flex>(&pairs.margin, &device));
        let out = bt.forward(tensor1::<Flex>(&pairs.chosen, &device), tensor1::<Flex>(&pairs.rejected, &device), margin);
        let got: Vec<f64> = out.losses.into_data().iter::<f64>().collect();
        for (i, g) in got.iter().enumerate() {
            let m = if with_margin { pairs.margin[i] } else { 0.0 };
            let want = reference::bradley_terry_pair_loss(pairs.chosen[i], pairs.rejected[i], m, center);
            prop_assert!((g - want).abs() <= 1e-5 * (1.0 + want.abs()), "pair {i}: {g} vs {want}");
        }
        let metrics = out_metrics(&pairs.chosen, &pairs.rejected);
        let acc = pairs.chosen.iter().zip(&pairs.rejected).filter(|(c, r)| c > r).count() as f64 / pairs.chosen.len() as f64;
        prop_assert!((metrics.accuracy - acc).abs() < 1e-6);
    }

    #[test]
    fn bradley_terry_is_shift_invariant(pairs in strategies::scored_pairs(1..16), shift in -50i32..50) {
        let bt = BradleyTerryConfig::new().init().unwrap();
        let device = Default::default();
        let shifted = |v: &[f64]| v.iter().map(|x| x + f64::from(shift)).collect::<Vec<_>>();
        let a: Vec<f64> = bt.forward(tensor1::<Flex>(&pairs.chosen, &device), tensor1::<Flex>(&pairs.rejected, &device), None).losses.into_data().iter::<f64>().collect();
        let b: Vec<f64> = bt.forward(tensor1::<Flex>(&shifted(&pairs.chosen), &device), tensor1::<Flex>(&shifted(&pairs.rejected), &device), None).losses.into_data().iter::<f64>().collect();
        for (x, y) in a.iter().zip(&b) {
            prop_assert!((x - y).abs() <= 1e-6 * (1.0 + x.abs()), "{x} vs {y}");
        }
    }

    #[test]
    fn bradley_terry_finite_and_gradients(pairs in strategies::scored_pairs(1..8), scale in prop_oneof![Just(1.0), Just(500.0)]) {
        let bt = BradleyTerryConfig::new().with_center_rewards_coefficient(0.01).init().unwrap();
        let scaled = |v: &[f64]| v.iter().map(|x| x * scale).collect::<Vec<_>>();
        let inputs = [scaled(&pairs.chosen), scaled(&pairs.rejected)];
        let f = |t: &[Tensor<B, 1>]| bt.forward(t[0].clone(), t[1].clone(), None).losses;
        checks::finite_with_gradients(f, &inputs, &[0, 1])?;
        if scale == 1.0 {
            checks::gradients_match_finite_differences(f, &inputs, &[0, 1], 1e-2, 2e-2)?;
        }
    }

    #[test]
    fn rrhf_matches_f64_closed_form(
        sets in strategies::reward_sets(1..6, 2..6),
        alpha in prop_oneof![Just(1.0), Just(0.0), 0.0f64..2.0],
        weight in prop_oneof![Just(1.0), 0.0f64..4.0],
    ) {
        let rrhf = RrhfConfig::new().with_length_alpha(alpha).with_rank_weight(weight).init().unwrap();
        let device = Default::default();
        let out = rrhf.forward(sets.tensor::<Flex>(&sets.logps, &device), sets.tensor::<Flex>(&sets.lengths, &device), sets.tensor::<Flex>(&sets.rewards, &device));
        let total: Vec<f64> = out.losses.into_data().iter::<f64>().collect();
        let rank: Vec<f64> = out.rank_losses.into_data().iter::<f64>().collect();
        for p in 0..sets.prompts {
            let (t, r, _) = reference::rrhf_prompt_loss(sets.row(&sets.logps, p), sets.row(&sets.lengths, p), sets.row(&sets.rewards, p), alpha, weight);
            prop_assert!((total[p] - t).abs() <= 1e-4 * (1.0 + t.abs()), "prompt {p}: {} vs {t}", total[p]);
            prop_assert!((rank[p] - r).abs() <= 1e-4 * (1.0 + r.abs()), "prompt {p} rank: {} vs {r}", rank[p]);
        }
    }

    #[test]
    fn rrhf_rank_term_vanishes_when_scores_follow_rewards(sets in strategies::reward_sets(1..6, 2..6)) {
        let rrhf = RrhfConfig::new().init().unwrap();
        // logp_i = |y_i| * (r_i - 10): the length-normalised scores are r_i - 10, ordered like rewards.
        let logps: Vec<f64> = sets.lengths.iter().zip(&sets.rewards).map(|(l, r)| l * (r - 10.0)).collect();
        let device = Default::default();
        let out = rrhf.forward(sets.tensor::<Flex>(&logps, &device), sets.tensor::<Flex>(&sets.lengths, &device), sets.tensor::<Flex>(&sets.rewards, &device));
        for r in out.rank_losses.into_data().iter::<f64>() {
            prop_assert!(r.abs() < 1e-4, "rank term {r}");
        }
    }

    #[test]
    fn rrhf_is_invariant_to_monotone_reward_transforms(sets in strategies::reward_sets(1..6, 2..6)) {
        let rrhf = RrhfConfig::new().init().unwrap();
        let device = Default::default();
        let transformed: Vec<f64> = sets.rewards.iter().map(|r| 3.0 * r * r * r + 7.0).collect();
        let run = |rewards: &[f64]| -> Vec<f64> {
            rrhf.forward(sets.tensor::<Flex>(&sets.logps, &device), sets.tensor::<Flex>(&sets.lengths, &device), sets.tensor::<Flex>(rewards, &device))
                .losses.into_data().iter::<f64>().collect()
        };
        prop_assert_eq!(run(&sets.rewards), run(&transformed));
    }

    #[test]
    fn rrhf_finite_and_gradients(sets in strategies::reward_sets(1..4, 2..5), scale in prop_oneof![Just(1.0), Just(1e3)]) {
        let rrhf = RrhfConfig::new().init().unwrap();
        let (p, k) = (sets.prompts, sets.k);
        let device = Default::default();
        let lengths = sets.tensor::<B>(&sets.lengths, &device);
        let rewards = sets.tensor::<B>(&sets.rewards, &device);
        let logps: Vec<f64> = sets.logps.iter().map(|l| l / 25.0 * scale).collect();
        let f = |t: &[Tensor<B, 1>]| rrhf.forward(t[0].clone().reshape([p, k]), lengths.clone(), rewards.clone()).losses;
        checks::finite_with_gradients(f, std::slice::from_ref(&logps), &[0])?;
        if scale == 1.0 {
            // Skip inputs within a step of a hinge kink (two scores almost equal).
            let s: Vec<f64> = logps.iter().zip(&sets.lengths).map(|(l, n)| l / n).collect();
            for row in 0..p {
                for i in 0..k { for j in 0..k {
                    if i != j { prop_assume!((s[row * k + i] - s[row * k + j]).abs() > 0.05); }
                }}
            }
            checks::gradients_match_finite_differences(f, std::slice::from_ref(&logps), &[0], 1e-2, 2e-2)?;
        }
    }
}

fn out_metrics(chosen: &[f64], rejected: &[f64]) -> kiln_losses::BradleyTerryMetrics {
    let device = Default::default();
    BradleyTerryConfig::new()
        .init()
        .unwrap()
        .forward(
            tensor1::<Flex>(chosen, &device),
            tensor1::<Flex>(rejected, &device),
            None,
        )
        .metrics()
}

#[test]
fn invalid_configs_are_errors_not_panics() {
    let e = DpoConfig::new().with_beta(0.0).init().unwrap_err();
    assert!(e.to_string().contains("beta"), "{e}");
    let e = DpoConfig::new()
        .with_loss(DpoLoss::Robust {
            label_smoothing: 0.5,
        })
        .init()
        .unwrap_err();
    assert!(e.to_string().contains("label_smoothing"), "{e}");
    assert!(DpoConfig::new().with_beta(f64::NAN).init().is_err());
    assert!(
        BradleyTerryConfig::new()
            .with_center_rewards_coefficient(-1.0)
            .init()
            .is_err()
    );
    assert!(RrhfConfig::new().with_length_alpha(-0.5).init().is_err());
}
