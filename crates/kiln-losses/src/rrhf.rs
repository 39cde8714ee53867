//! The RRHF ranking loss (Yuan et al. 2023, "RRHF: Rank Responses to Align Language Models with
//! Human Feedback without tears").
//!
//! For one prompt with responses `i = 1..K`, rewards `r_i` and length-normalised scores
//! `p_i = logp(y_i) / |y_i|^alpha`:
//!
//! `L = w * sum_{(i, j): r_i < r_j} max(0, p_i - p_j)  -  logp(y_best)`
//!
//! where `y_best` has the highest reward (the first one on ties). No reference model is needed.
//! Kiln follows the paper's definitions: `|y_i|` is the number of response tokens (the reference
//! code's in-place mask overwrite makes it the padded batch length instead) and the SFT term is the
//! summed log-likelihood of the best response. The batch loss is the mean over prompts.

use burn::config::Config;
use burn::tensor::activation::relu;
use burn::tensor::backend::Backend;
use burn::tensor::{FloatDType, Tensor};

use crate::error::check;

/// Configuration of the RRHF loss. `init` validates it.
#[derive(Config, Debug, PartialEq)]
pub struct RrhfConfig {
    /// Length-normalisation exponent `alpha >= 0` of `p_i = logp(y_i) / |y_i|^alpha` (1 in the paper).
    #[config(default = 1.0)]
    pub length_alpha: f64,
    /// Weight `w >= 0` of the ranking term (1 in the shipped scripts).
    #[config(default = 1.0)]
    pub rank_weight: f64,
}

impl RrhfConfig {
    /// Validates the configuration and builds the loss.
    ///
    /// # Errors
    /// [`Error::InvalidParameter`](crate::Error::InvalidParameter) for a negative or non-finite
    /// `length_alpha` or `rank_weight`.
    pub fn init(&self) -> crate::Result<Rrhf> {
        check(
            "rrhf",
            "length_alpha",
            self.length_alpha,
            self.length_alpha >= 0.0,
            "alpha >= 0",
        )?;
        check(
            "rrhf",
            "rank_weight",
            self.rank_weight,
            self.rank_weight >= 0.0,
            "w >= 0",
        )?;
        Ok(Rrhf {
            alpha: self.length_alpha,
            weight: self.rank_weight,
        })
    }
}

/// A validated RRHF loss (weight-free).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rrhf {
    alpha: f64,
    weight: f64,
}

impl Rrhf {
    /// Length-normalised scores `p_i = logp(y_i) / |y_i|^alpha` (lengths below 1 count as 1), in
    /// the dtype of `logps`.
    ///
    /// # Shapes
    /// - `logps`, `lengths`: `[prompts, k]` -> `[prompts, k]`
    pub fn scores<B: Backend>(&self, logps: Tensor<B, 2>, lengths: Tensor<B, 2>) -> Tensor<B, 2> {
        if self.alpha == 0.0 {
            return logps;
        }
        let lengths = lengths.cast(logps.dtype());
        logps / lengths.clamp_min(1.0).powf_scalar(self.alpha)
    }

    /// Computes the loss for a batch of prompts with `k` scored responses each, in the dtype of
    /// `logps` (`lengths` and `rewards` are cast to it).
    ///
    /// # Shapes
    /// - `logps`: `[prompts, k]` summed response log-probs under the policy
    ///   (`kiln_model::sequence_logprobs` with `Sum`)
    /// - `lengths`: `[prompts, k]` response lengths in tokens
    /// - `rewards`: `[prompts, k]` reward of each response
    /// - output: [`RrhfOutput`] with `loss` `[1]` and per-prompt terms `[prompts]`
    pub fn forward<B: Backend>(
        &self,
        logps: Tensor<B, 2>,
        lengths: Tensor<B, 2>,
        rewards: Tensor<B, 2>,
    ) -> RrhfOutput<B> {
        let dtype = logps.dtype();
        let scores = self.scores(logps.clone(), lengths);
        // pairs[p, i, j] = 1 where r_i < r_j (strictly: ties are excluded), in the scores' dtype.
        let rewards = rewards.detach();
        let pairs = rewards
            .clone()
            .unsqueeze_dim::<3>(2)
            .lower(rewards.clone().unsqueeze_dim::<3>(1))
            .cast(FloatDType::from(dtype));
        let diff = scores.clone().unsqueeze_dim::<3>(2) - scores.clone().unsqueeze_dim::<3>(1);
        let rank_losses = (relu(diff) * pairs).sum_dims_squeeze::<1, usize>(&[1, 2]);
        let best = rewards.argmax(1);
        let sft_losses = logps.gather(1, best).squeeze_dim::<1>(1).neg();
        let losses = rank_losses.clone().mul_scalar(self.weight) + sft_losses.clone();
        RrhfOutput {
            loss: losses.clone().mean(),
            losses,
            rank_losses,
            sft_losses,
            scores: scores.detach(),
        }
    }
}

/// What [`Rrhf::forward`] returns.
#[derive(Debug, Clone)]
pub struct RrhfOutput<B: Backend> {
    /// Mean loss over prompts, `[1]`: call `backward()` on this.
    pub loss: Tensor<B, 1>,
    /// Per-prompt total loss `w * rank + sft`, `[prompts]`.
    pub losses: Tensor<B, 1>,
    /// Per-prompt ranking term (unweighted), `[prompts]`.
    pub rank_losses: Tensor<B, 1>,
    /// Per-prompt SFT term `-logp(y_best)`, `[prompts]`.
    pub sft_losses: Tensor<B, 1>,
    /// Length-normalised scores `p_i`, detached, `[prompts, k]`.
    pub scores: Tensor<B, 2>,
}
