//! Per-token and per-sequence log-probabilities of target tokens under a causal LM's logits.
//!
//! The **next-token shift** is done here, once, for every trainer: a causal LM's logits at position
//! `t` predict the token at position `t + 1`. [`sequence_logprobs`] therefore takes the *input ids*
//! (the same ids the model was fed) and a loss mask aligned with them, and scores
//! `input_ids[:, t + 1]` with `logits[:, t]` wherever `mask[:, t + 1] == 1`. Position 0 is never
//! scored (nothing predicts the first token), whatever its mask says.

use burn::tensor::activation::log_softmax;
use burn::tensor::backend::Backend;
use burn::tensor::{Int, Tensor};

/// How per-token log-probs are reduced to one number per sequence (`sum` / `mean` on a command
/// line).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, burn::serde::Serialize, burn::serde::Deserialize,
)]
#[serde(crate = "burn::serde")]
pub enum LogProbReduction {
    /// `sum_t log p(y_t | x, y_<t)`: the sequence log-likelihood (DPO, RRHF's SFT term).
    Sum,
    /// The sum divided by the number of counted tokens (IPO as TRL runs it, length-normalised
    /// scores). A row with no counted token gives 0.
    Mean,
}

impl std::fmt::Display for LogProbReduction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            LogProbReduction::Sum => "sum",
            LogProbReduction::Mean => "mean",
        })
    }
}

impl std::str::FromStr for LogProbReduction {
    type Err = crate::error::Error;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "sum" => Ok(LogProbReduction::Sum),
            "mean" => Ok(LogProbReduction::Mean),
            _ => Err(crate::error::Error::Parse {
                what: "log-prob reduction",
                input: s.to_string(),
                expected: "sum or mean",
            }),
        }
    }
}

/// Log-probabilities of `targets` under `logits`, position by position (no shift).
///
/// Returns `log_softmax(logits)[b, t, targets[b, t]]`.
///
/// # Shapes
/// - `logits`: `[batch, seq, vocab]`
/// - `targets`: `[batch, seq]`, ids in `0..vocab`
/// - output: `[batch, seq]`
pub fn gather_logprobs<B: Backend>(
    logits: Tensor<B, 3>,
    targets: Tensor<B, 2, Int>,
) -> Tensor<B, 2> {
    let logp = log_softmax(logits, 2);
    logp.gather(2, targets.unsqueeze_dim::<3>(2))
        .squeeze_dim::<2>(2)
}

/// Per-token log-probs of the next token, with the causal shift applied.
///
/// Output column `t` is `log p(input_ids[:, t + 1] | input_ids[:, ..=t])`, masked by
/// `mask[:, t + 1]` (masked positions are exactly 0). The result has the logits' dtype (the mask
/// is cast to it).
///
/// # Shapes
/// - `logits`: `[batch, seq, vocab]` (the model's output for `input_ids`)
/// - `input_ids`: `[batch, seq]`
/// - `mask`: `[batch, seq]`, 1.0 on tokens that count (response tokens), 0.0 elsewhere
/// - output: `[batch, seq - 1]` (`[batch, 0]` for fewer than 2 positions)
pub fn shifted_token_logprobs<B: Backend>(
    logits: Tensor<B, 3>,
    input_ids: Tensor<B, 2, Int>,
    mask: Tensor<B, 2>,
) -> Tensor<B, 2> {
    let [batch, seq, vocab] = logits.dims();
    if seq < 2 {
        // No position has a next token: nothing to score.
        return Tensor::zeros([batch, 0], (&logits.device(), logits.dtype()));
    }
    let logits = logits.slice([0..batch, 0..seq - 1, 0..vocab]);
    let targets = input_ids.slice([0..batch, 1..seq]);
    let mask = mask.slice([0..batch, 1..seq]).cast(logits.dtype());
    gather_logprobs(logits, targets) * mask
}

/// Log-probability of each sequence's masked target tokens (summed or length-averaged).
///
/// This is `logp(y)` of RECIPE.md section 2: the sum over response tokens of
/// `log pi(y_t | x, y_<t)`, prompt and padding masked out. Computed in the logits' dtype (f32,
/// f64, bf16, ...); the mask may have any float dtype.
///
/// # Shapes
/// - `logits`: `[batch, seq, vocab]` (the model's output for `input_ids`)
/// - `input_ids`: `[batch, seq]`
/// - `mask`: `[batch, seq]`, aligned with `input_ids`: 1.0 on tokens that count
/// - output: `[batch]`
///
/// # Example
/// ```
/// use burn::backend::Flex;
/// use burn::tensor::{Int, Tensor};
/// use kiln_model::{sequence_logprobs, LogProbReduction};
///
/// let device = Default::default();
/// // Uniform logits over 4 tokens: every token has log-prob ln(1/4).
/// let logits = Tensor::<Flex, 3>::zeros([1, 3, 4], &device);
/// let ids = Tensor::<Flex, 2, Int>::from_ints([[0, 1, 2]], &device);
/// let mask = Tensor::<Flex, 2>::from_floats([[0.0, 1.0, 1.0]], &device); // two response tokens
/// let logp = sequence_logprobs(logits, ids, mask, LogProbReduction::Sum);
/// let value = logp.into_scalar();
/// assert!((value - 2.0 * 0.25f32.ln()).abs() < 1e-6);
/// ```
pub fn sequence_logprobs<B: Backend>(
    logits: Tensor<B, 3>,
    input_ids: Tensor<B, 2, Int>,
    mask: Tensor<B, 2>,
    reduction: LogProbReduction,
) -> Tensor<B, 1> {
    let [batch, seq, _] = logits.dims();
    if seq < 2 {
        // An empty sum (and, for `Mean`, a mean over no tokens, as for an all-masked row).
        return Tensor::zeros([batch], (&logits.device(), logits.dtype()));
    }
    let mask = mask.cast(logits.dtype());
    let per_token = shifted_token_logprobs(logits, input_ids, mask.clone());
    reduce_token_logprobs(per_token, mask, reduction)
}

/// Reduces masked per-token log-probs `[batch, seq - 1]` (zeros where not counted) to one value
/// per sequence, with `mask` `[batch, seq]` aligned with the input ids (cast to the log-probs'
/// dtype).
pub(crate) fn reduce_token_logprobs<B: Backend>(
    per_token: Tensor<B, 2>,
    mask: Tensor<B, 2>,
    reduction: LogProbReduction,
) -> Tensor<B, 1> {
    let [batch, seq] = mask.dims();
    let summed = per_token.sum_dim(1).squeeze_dim::<1>(1);
    match reduction {
        LogProbReduction::Sum => summed,
        LogProbReduction::Mean => {
            let counted = mask
                .cast(summed.dtype())
                .slice([0..batch, 1..seq])
                .sum_dim(1)
                .squeeze_dim::<1>(1);
            summed / counted.clamp_min(1.0)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::Flex;

    type B = Flex;

    #[test]
    fn fewer_than_two_positions_score_nothing_instead_of_panicking() {
        let device = Default::default();
        for seq in [0, 1] {
            let logits = Tensor::<B, 3>::zeros([2, seq, 4], &device);
            let ids = Tensor::<B, 2, Int>::zeros([2, seq], &device);
            let mask = Tensor::<B, 2>::ones([2, seq], &device);
            let tok = shifted_token_logprobs(logits.clone(), ids.clone(), mask.clone());
            assert_eq!(tok.dims(), [2, 0]);
            for reduction in [LogProbReduction::Sum, LogProbReduction::Mean] {
                let lp = sequence_logprobs(logits.clone(), ids.clone(), mask.clone(), reduction);
                assert_eq!(lp.into_data().to_vec::<f32>().unwrap(), vec![0.0, 0.0]);
            }
        }
    }

    #[test]
    fn shift_scores_next_token_and_masks() {
        let device = Default::default();
        // logits favour token (t+1) % 3 at position t, strongly.
        let mut values = vec![0.0f32; 3 * 3];
        for t in 0..3 {
            values[t * 3 + (t + 1) % 3] = 5.0;
        }
        let logits = Tensor::<B, 1>::from_floats(values.as_slice(), &device).reshape([1, 3, 3]);
        let ids = Tensor::<B, 2, Int>::from_ints([[0, 1, 2]], &device);
        let mask = Tensor::<B, 2>::from_floats([[1.0, 0.0, 1.0]], &device);
        let per_token = shifted_token_logprobs(logits.clone(), ids.clone(), mask.clone());
        let v: Vec<f32> = per_token.into_data().to_vec().unwrap();
        let lp_high = 5.0 - (5.0f32.exp() + 2.0).ln();
        assert_eq!(v.len(), 2);
        assert_eq!(v[0], 0.0, "masked position must be exactly zero");
        assert!((v[1] - lp_high).abs() < 1e-6);
        let mean = sequence_logprobs(logits, ids, mask, LogProbReduction::Mean).into_scalar();
        assert!((mean - lp_high).abs() < 1e-6);
    }

    #[test]
    fn mean_of_fully_masked_row_is_zero() {
        let device = Default::default();
        let logits = Tensor::<B, 3>::zeros([2, 4, 5], &device);
        let ids = Tensor::<B, 2, Int>::zeros([2, 4], &device);
        let mask = Tensor::<B, 2>::zeros([2, 4], &device);
        let v: Vec<f32> = sequence_logprobs(logits, ids, mask, LogProbReduction::Mean)
            .into_data()
            .to_vec()
            .unwrap();
        assert_eq!(v, vec![0.0, 0.0]);
    }
}
