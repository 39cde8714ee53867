//! f64 reference implementations of every Kiln loss, written with plain loops and no tensors.
//!
//! These follow RECIPE.md section 2 literally and are the "closed form" the tensor losses are
//! checked against.

use crate::DpoLoss;

/// `log s(x) = -softplus(-x)`, stable for any finite `x`.
pub fn log_sigmoid(x: f64) -> f64 {
    if x >= 0.0 {
        -(-x).exp().ln_1p()
    } else {
        x - x.exp().ln_1p()
    }
}

/// The DPO margin `h = (pc - rc) - (pr - rr)`, or `pc - pr` when reference-free.
pub fn dpo_margin(pc: f64, pr: f64, rc: f64, rr: f64, reference_free: bool) -> f64 {
    if reference_free {
        pc - pr
    } else {
        (pc - rc) - (pr - rr)
    }
}

/// The per-pair loss of a DPO-family variant at margin `h`.
pub fn dpo_pair_loss(loss: DpoLoss, beta: f64, h: f64) -> f64 {
    let z = beta * h;
    match loss {
        DpoLoss::Sigmoid => -log_sigmoid(z),
        DpoLoss::Cdpo { label_smoothing: e } => -(1.0 - e) * log_sigmoid(z) - e * log_sigmoid(-z),
        DpoLoss::Robust { label_smoothing: e } => {
            (-(1.0 - e) * log_sigmoid(z) + e * log_sigmoid(-z)) / (1.0 - 2.0 * e)
        }
        DpoLoss::Ipo => (h - 1.0 / (2.0 * beta)).powi(2),
        DpoLoss::Hinge => (1.0 - z).max(0.0),
    }
}

/// Bradley-Terry per-pair loss `-log s(rw - rl - margin) + c (rw + rl)^2`.
pub fn bradley_terry_pair_loss(rw: f64, rl: f64, margin: f64, center: f64) -> f64 {
    -log_sigmoid(rw - rl - margin) + center * (rw + rl).powi(2)
}

/// One prompt's RRHF terms `(total, rank, sft)` for responses with summed log-probs `logps`,
/// token `lengths` and `rewards` (all of length K).
pub fn rrhf_prompt_loss(
    logps: &[f64],
    lengths: &[f64],
    rewards: &[f64],
    alpha: f64,
    rank_weight: f64,
) -> (f64, f64, f64) {
    let k = logps.len();
    let score = |i: usize| logps[i] / lengths[i].max(1.0).powf(alpha);
    let mut rank = 0.0;
    for i in 0..k {
        for j in 0..k {
            if rewards[i] < rewards[j] {
                rank += (score(i) - score(j)).max(0.0);
            }
        }
    }
    let mut best = 0;
    for i in 1..k {
        if rewards[i] > rewards[best] {
            best = i;
        }
    }
    let sft = -logps[best];
    (rank_weight * rank + sft, rank, sft)
}
