//! Evaluation helpers for a policy: teacher-forced completion log-probs under any model, the
//! sampled KL estimate to a reference, win rates between two reward vectors, and paired bootstrap
//! confidence intervals over evaluation prompts.
//!
//! ```
//! use kiln_online::evaluate::{Interval, mean_difference, paired_bootstrap, win_rate};
//! let policy = [2.0, 1.5, 3.0, 0.5];
//! let sft = [1.0, 1.5, 2.0, 1.0];
//! assert_eq!(win_rate(&policy, &sft)?, 0.625); // 2 wins, 1 tie, 1 loss
//! let ci: Interval = paired_bootstrap(&policy, &sft, 2, 1000, 0.95, 7, mean_difference)?;
//! assert!(ci.low <= ci.estimate && ci.estimate <= ci.high);
//! # Ok::<(), kiln_online::Error>(())
//! ```

use burn::tensor::backend::Backend;
use kiln_data::Example;
use kiln_data::Rng;
use kiln_data::collate::pad_right;
use kiln_model::{CausalLm, LogProbReduction, LogProbs};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Summed log-probs of each example's loss-masked tokens (the completion) under `model`, by
/// teacher forcing in batches of `batch_size`, in input order.
///
/// # Errors
/// Collation errors, or [`Error::InvalidInput`] when the values cannot be read back.
pub fn completion_logprobs<B: Backend, M: CausalLm<B>>(
    model: &M,
    examples: &[Example],
    pad_id: u32,
    batch_size: usize,
) -> Result<Vec<f32>> {
    let device = model.device();
    let mut out = Vec::with_capacity(examples.len());
    for chunk in examples.chunks(batch_size.max(1)) {
        let b = pad_right(chunk, pad_id)?.to_tensors::<B>(&device);
        let lp = model.sequence_logprobs(
            b.input_ids,
            Some(b.attention_mask),
            b.loss_mask,
            LogProbReduction::Sum,
        )?;
        let v = kiln_model::read_f32(lp, "log-probs")?;
        out.extend_from_slice(&v[..chunk.len()]);
    }
    Ok(out)
}

fn same_len(a: usize, b: usize, what: &str) -> Result<()> {
    if a != b {
        return Err(Error::InvalidInput(format!(
            "{what}: {a} values against {b}; both sides must score the same responses"
        )));
    }
    if a == 0 {
        return Err(Error::InvalidInput(format!("{what}: no values")));
    }
    Ok(())
}

/// The sampled estimate of `KL(policy || reference)`: the mean over responses `y ~ policy` of
/// `log pi(y) - log ref(y)` (sequence log-probs of the same responses under both models).
///
/// # Errors
/// [`Error::InvalidInput`] for different lengths or no value.
pub fn sampled_kl(policy_logps: &[f32], reference_logps: &[f32]) -> Result<f64> {
    same_len(policy_logps.len(), reference_logps.len(), "sampled KL")?;
    Ok(policy_logps
        .iter()
        .zip(reference_logps)
        .map(|(&p, &r)| f64::from(p) - f64::from(r))
        .sum::<f64>()
        / policy_logps.len() as f64)
}

/// Fraction of positions where `a` beats `b` (ties count one half), e.g. gold rewards of a
/// policy's responses against the SFT policy's on the same prompts and samples.
///
/// # Errors
/// [`Error::InvalidInput`] for different lengths or no value.
pub fn win_rate(a: &[f64], b: &[f64]) -> Result<f64> {
    same_len(a.len(), b.len(), "win rate")?;
    Ok(win_rate_unchecked(a, b))
}

fn win_rate_unchecked(a: &[f64], b: &[f64]) -> f64 {
    let wins: f64 = a
        .iter()
        .zip(b)
        .map(|(x, y)| {
            if x > y {
                1.0
            } else if x == y {
                0.5
            } else {
                0.0
            }
        })
        .sum();
    wins / a.len().max(1) as f64
}

/// `mean(a) - mean(b)`: a paired statistic for [`paired_bootstrap`].
pub fn mean_difference(a: &[f64], b: &[f64]) -> f64 {
    let n = a.len().max(1) as f64;
    a.iter().zip(b).map(|(x, y)| x - y).sum::<f64>() / n
}

/// The win rate of `a` over `b` as a paired statistic for [`paired_bootstrap`].
pub fn win_rate_statistic(a: &[f64], b: &[f64]) -> f64 {
    win_rate_unchecked(a, b)
}

/// A point estimate with a confidence interval.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Interval {
    /// The statistic on the full data.
    pub estimate: f64,
    /// Lower end of the interval.
    pub low: f64,
    /// Upper end of the interval.
    pub high: f64,
}

/// Percentile bootstrap of a paired statistic over **groups**: `a` and `b` hold values for the
/// same items, `group_size` consecutive items per evaluation prompt (e.g. the samples drawn per
/// prompt); each of `resamples` replicates draws prompts with replacement, keeping their items
/// together, and evaluates `stat` on them. Returns the estimate and the central `level`
/// interval (e.g. 0.95). Deterministic for a given `seed`.
///
/// # Errors
/// [`Error::InvalidInput`] for different lengths, no value, a length that is not a multiple of
/// `group_size`, or `level` outside `(0, 1)`.
pub fn paired_bootstrap(
    a: &[f64],
    b: &[f64],
    group_size: usize,
    resamples: usize,
    level: f64,
    seed: u64,
    stat: impl Fn(&[f64], &[f64]) -> f64,
) -> Result<Interval> {
    same_len(a.len(), b.len(), "paired bootstrap")?;
    let g = group_size.max(1);
    if !a.len().is_multiple_of(g) {
        return Err(Error::InvalidInput(format!(
            "paired bootstrap: {} values are not whole groups of {g}",
            a.len()
        )));
    }
    if !(level > 0.0 && level < 1.0) {
        return Err(Error::InvalidInput(format!(
            "paired bootstrap: confidence level {level} is not in (0, 1)"
        )));
    }
    let estimate = stat(a, b);
    let groups = a.len() / g;
    let mut rng = Rng::new(seed);
    let mut stats = Vec::with_capacity(resamples.max(1));
    let (mut ra, mut rb) = (Vec::with_capacity(a.len()), Vec::with_capacity(a.len()));
    for _ in 0..resamples.max(1) {
        ra.clear();
        rb.clear();
        for _ in 0..groups {
            let k = rng.index(groups) * g;
            ra.extend_from_slice(&a[k..k + g]);
            rb.extend_from_slice(&b[k..k + g]);
        }
        stats.push(stat(&ra, &rb));
    }
    stats.sort_by(f64::total_cmp);
    let q = |p: f64| {
        let i = (p * (stats.len() - 1) as f64).round() as usize;
        stats[i.min(stats.len() - 1)]
    };
    let alpha = (1.0 - level) / 2.0;
    Ok(Interval {
        estimate,
        low: q(alpha),
        high: q(1.0 - alpha),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn win_rates_count_ties_as_half_and_check_lengths() {
        assert_eq!(win_rate(&[1.0, 2.0, 3.0], &[0.0, 2.0, 4.0]).unwrap(), 0.5);
        assert!(win_rate(&[1.0], &[1.0, 2.0]).is_err());
        assert!(win_rate(&[], &[]).is_err());
        assert!((sampled_kl(&[-1.0, -2.0], &[-1.5, -3.0]).unwrap() - 0.75).abs() < 1e-12);
    }

    #[test]
    fn bootstrap_intervals_cover_the_estimate_and_shrink_with_data() {
        let mut rng = Rng::new(3);
        let make = |n: usize, rng: &mut Rng| -> (Vec<f64>, Vec<f64>) {
            let b: Vec<f64> = (0..n).map(|_| rng.next_f64()).collect();
            let a: Vec<f64> = b
                .iter()
                .map(|x| x + 0.1 + 0.5 * (rng.next_f64() - 0.5))
                .collect();
            (a, b)
        };
        let (a, b) = make(64, &mut rng);
        let small = paired_bootstrap(&a, &b, 2, 2000, 0.95, 1, mean_difference).unwrap();
        let (a2, b2) = make(1024, &mut rng);
        let large = paired_bootstrap(&a2, &b2, 2, 2000, 0.95, 1, mean_difference).unwrap();
        for ci in [small, large] {
            assert!(ci.low < ci.estimate && ci.estimate < ci.high, "{ci:?}");
            assert!(ci.low > 0.0, "a clear +0.1 shift is significant: {ci:?}");
        }
        assert!(large.high - large.low < 0.5 * (small.high - small.low));
        let again = paired_bootstrap(&a, &b, 2, 2000, 0.95, 1, mean_difference).unwrap();
        assert_eq!(small, again, "deterministic per seed");
        let wr = paired_bootstrap(&a, &b, 2, 500, 0.9, 1, win_rate_statistic).unwrap();
        assert!(wr.low <= wr.estimate && wr.estimate <= wr.high && wr.high <= 1.0);
        assert!(paired_bootstrap(&a, &b, 5, 10, 0.95, 1, mean_difference).is_err());
        assert!(paired_bootstrap(&a, &b, 2, 10, 1.5, 1, mean_difference).is_err());
    }
}
