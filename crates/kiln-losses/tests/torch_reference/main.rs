//! kiln-losses against independent float64 values computed with PyTorch
//! (`scripts/make_loss_fixtures.py`; the values are committed, CI needs no Python).
#![cfg(test)]

mod values;

use burn::backend::{Autodiff, Flex};
use burn::tensor::Tensor;
use kiln_losses::testing::strategies::tensor1;
use kiln_losses::{BradleyTerryConfig, DpoConfig, DpoLoss, RrhfConfig};

type B = Autodiff<Flex>;

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
fn dpo_family_matches_torch() {
    let device = Default::default();
    for &(kind, beta, eps, pc, pr, rc, rr, losses, grad_pc, rew_c, rew_r, acc) in values::DPO {
        let loss = match kind {
            "sigmoid" if eps == 0.0 => DpoLoss::Sigmoid,
            "sigmoid" => DpoLoss::Cdpo {
                label_smoothing: eps,
            },
            "robust" => DpoLoss::Robust {
                label_smoothing: eps,
            },
            "ipo" => DpoLoss::Ipo,
            "hinge" => DpoLoss::Hinge,
            other => panic!("unknown variant {other}"),
        };
        let dpo = DpoConfig::new()
            .with_beta(beta)
            .with_loss(loss)
            .init()
            .unwrap();
        let pc_t = tensor1::<B>(pc, &device).require_grad();
        let out = dpo.forward(
            pc_t.clone(),
            tensor1(pr, &device),
            tensor1(rc, &device),
            tensor1(rr, &device),
        );
        let what = format!("{kind} beta={beta} eps={eps}");
        assert_close(
            &vals(out.losses.clone().inner()),
            losses,
            1e-5,
            &format!("{what} losses"),
        );
        let m = out.metrics();
        assert!(
            (m.rewards_chosen - rew_c).abs() < 1e-4,
            "{what}: rewards/chosen"
        );
        assert!(
            (m.rewards_rejected - rew_r).abs() < 1e-4,
            "{what}: rewards/rejected"
        );
        assert!(
            (m.rewards_accuracies - acc).abs() < 1e-6,
            "{what}: rewards/accuracies"
        );
        let grads = out.loss.backward();
        let g = vals(pc_t.grad(&grads).unwrap());
        assert_close(
            &g,
            grad_pc,
            1e-5,
            &format!("{what} d loss / d policy_chosen"),
        );
    }
}

#[test]
fn bradley_terry_matches_torch() {
    let device = Default::default();
    for &(c, chosen, rejected, margin, loss, grad) in values::BT {
        let bt = BradleyTerryConfig::new()
            .with_center_rewards_coefficient(c)
            .init()
            .unwrap();
        let ch = tensor1::<B>(chosen, &device).require_grad();
        let out = bt.forward(
            ch.clone(),
            tensor1(rejected, &device),
            Some(tensor1(margin, &device)),
        );
        let value = f64::from(out.loss.clone().into_scalar());
        assert!((value - loss).abs() < 1e-6, "c={c}: {value} vs {loss}");
        let grads = out.loss.backward();
        assert_close(&vals(ch.grad(&grads).unwrap()), grad, 1e-5, "bt grad");
    }
}

#[test]
fn rrhf_matches_torch() {
    let device = Default::default();
    for &(alpha, w, p, k, logps, lengths, rewards, loss) in values::RRHF {
        let rrhf = RrhfConfig::new()
            .with_length_alpha(alpha)
            .with_rank_weight(w)
            .init()
            .unwrap();
        let t = |v: &[f64]| tensor1::<Flex>(v, &device).reshape([p, k]);
        let out = rrhf.forward(t(logps), t(lengths), t(rewards));
        let value = f64::from(out.loss.into_scalar());
        assert!(
            (value - loss).abs() <= 1e-5 * (1.0 + loss.abs()),
            "alpha={alpha}: {value} vs {loss}"
        );
    }
}
