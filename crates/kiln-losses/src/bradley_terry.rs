//! The Bradley-Terry pairwise reward-model loss.
//!
//! `L = -log s(r_w - r_l - m) + c * (r_w + r_l)^2`, averaged over pairs (Bradley & Terry 1952;
//! as used for reward models by Ouyang et al. 2022 and RLHFlow, arXiv 2405.07863). `m` is an
//! optional per-pair margin (Llama-2's margin loss) and `c` the reward-centering coefficient
//! (Eisenstein et al. 2023; 0.01 recommended) that keeps scores near zero without changing the
//! preference probabilities.

use burn::config::Config;
use burn::tensor::activation::log_sigmoid;
use burn::tensor::backend::Backend;
use burn::tensor::{ElementConversion, FloatDType, Tensor};

use crate::error::check;

/// Configuration of the Bradley-Terry loss. `init` validates it.
#[derive(Config, Debug, PartialEq)]
pub struct BradleyTerryConfig {
    /// Reward-centering coefficient `c >= 0` (0 disables centering).
    #[config(default = 0.0)]
    pub center_rewards_coefficient: f64,
}

impl BradleyTerryConfig {
    /// Validates the configuration and builds the loss.
    ///
    /// # Errors
    /// [`Error::InvalidParameter`](crate::Error::InvalidParameter) when the centering coefficient
    /// is negative or not finite.
    pub fn init(&self) -> crate::Result<BradleyTerry> {
        let c = self.center_rewards_coefficient;
        check(
            "bradley_terry",
            "center_rewards_coefficient",
            c,
            c >= 0.0,
            "c >= 0",
        )?;
        Ok(BradleyTerry { center: c })
    }
}

/// A validated Bradley-Terry loss (weight-free).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BradleyTerry {
    center: f64,
}

impl BradleyTerry {
    /// Computes the loss for a batch of scored pairs, in the dtype of `chosen` (`rejected` and
    /// `margin` are cast to it).
    ///
    /// # Shapes
    /// - `chosen`, `rejected`: `[batch]` reward-model scores of the preferred / other response
    /// - `margin`: optional `[batch]` required score gap per pair
    /// - output: [`BradleyTerryOutput`] with `loss` `[1]` and `losses` `[batch]`
    pub fn forward<B: Backend>(
        &self,
        chosen: Tensor<B, 1>,
        rejected: Tensor<B, 1>,
        margin: Option<Tensor<B, 1>>,
    ) -> BradleyTerryOutput<B> {
        let dtype = chosen.dtype();
        let rejected = rejected.cast(dtype);
        let diff = chosen.clone() - rejected.clone();
        let shifted = match margin {
            Some(m) => diff.clone() - m.cast(dtype),
            None => diff.clone(),
        };
        let mut losses = log_sigmoid(shifted).neg();
        if self.center > 0.0 {
            let sum = chosen + rejected;
            losses = losses + (sum.clone() * sum).mul_scalar(self.center);
        }
        BradleyTerryOutput {
            loss: losses.clone().mean(),
            losses,
            score_margins: diff.detach(),
        }
    }
}

/// What [`BradleyTerry::forward`] returns.
#[derive(Debug, Clone)]
pub struct BradleyTerryOutput<B: Backend> {
    /// Mean loss, `[1]`: call `backward()` on this.
    pub loss: Tensor<B, 1>,
    /// Per-pair losses, `[batch]`.
    pub losses: Tensor<B, 1>,
    /// `r_w - r_l` per pair (without the margin), detached, `[batch]`.
    pub score_margins: Tensor<B, 1>,
}

impl<B: Backend> BradleyTerryOutput<B> {
    /// Pairwise accuracy and mean score margin (reads the tensors back from the device).
    pub fn metrics(&self) -> BradleyTerryMetrics {
        let dtype = FloatDType::from(self.score_margins.dtype());
        let correct = self.score_margins.clone().greater_elem(0.0).cast(dtype);
        BradleyTerryMetrics {
            accuracy: correct.mean().into_scalar().elem::<f64>(),
            mean_margin: self
                .score_margins
                .clone()
                .mean()
                .into_scalar()
                .elem::<f64>(),
        }
    }
}

/// Batch metrics of a reward model on preference pairs.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct BradleyTerryMetrics {
    /// Fraction of pairs with `r_w > r_l`.
    pub accuracy: f64,
    /// Mean `r_w - r_l`.
    pub mean_margin: f64,
}
