//! The DPO family of preference losses: sigmoid (DPO, cDPO), robust DPO, IPO and hinge (SLiC).
//!
//! All variants are functions of the *implicit reward margin*
//! `h = (logp_pi(y_w) - logp_ref(y_w)) - (logp_pi(y_l) - logp_ref(y_l))`:
//!
//! | variant | per-pair loss | paper |
//! |---|---|---|
//! | [`DpoLoss::Sigmoid`] | `-log s(beta h)` | Rafailov et al. 2023 (DPO) |
//! | [`DpoLoss::Cdpo`] | `-(1-eps) log s(beta h) - eps log s(-beta h)` | Mitchell 2023 (cDPO, label smoothing) |
//! | [`DpoLoss::Robust`] | `[-(1-eps) log s(beta h) + eps log s(-beta h)] / (1 - 2 eps)` | Chowdhury et al. 2024 (rDPO) |
//! | [`DpoLoss::Ipo`] | `(h - 1/(2 beta))^2` | Azar et al. 2023 (IPO) |
//! | [`DpoLoss::Hinge`] | `max(0, 1 - beta h)` | Zhao et al. 2023 (SLiC-HF) |
//!
//! `s` is the logistic sigmoid and `log s(x)` is evaluated stably (never as `log(sigmoid(x))`).
//!
//! Plain sigmoid, robust DPO and hinge are monotone (non-increasing) in `h`. IPO and cDPO are not:
//! they have a minimum (IPO at `h = 1/(2 beta)`, cDPO at `beta h = ln((1-eps)/eps)`) beyond which
//! they push the margin back, which is how they regularise over-confident policies.
//!
//! IPO as TRL runs it uses length-averaged log-probs: compute them with
//! `kiln_model::LogProbReduction::Mean`.

use burn::config::Config;
use burn::tensor::activation::{log_sigmoid, relu};
use burn::tensor::backend::Backend;
use burn::tensor::{ElementConversion, FloatDType, Tensor};

use crate::error::check;

/// Which member of the DPO family to optimise.
///
/// On a command line ([`FromStr`](std::str::FromStr) / [`Display`](std::fmt::Display)):
/// `sigmoid`, `cdpo:EPS`, `robust:EPS`, `ipo`, `hinge`. In JSON (serde): `"Sigmoid"`,
/// `{"Cdpo": {"label_smoothing": 0.1}}`, `"Ipo"`, ... The default is [`DpoLoss::Sigmoid`].
#[derive(
    Debug, Clone, Copy, PartialEq, Default, burn::serde::Serialize, burn::serde::Deserialize,
)]
#[serde(crate = "burn::serde")]
pub enum DpoLoss {
    /// `-log s(beta h)`: DPO.
    #[default]
    Sigmoid,
    /// `-(1-eps) log s(beta h) - eps log s(-beta h)`: conservative DPO (cDPO), the sigmoid loss
    /// with label smoothing.
    Cdpo {
        /// Label smoothing `eps` in `[0, 0.5]` (probability that a preference label is flipped).
        label_smoothing: f64,
    },
    /// Robust DPO: `[-(1-eps) log s(beta h) + eps log s(-beta h)] / (1 - 2 eps)`, unbiased under
    /// label noise of rate `eps`.
    Robust {
        /// Assumed label-noise rate `eps` in `[0, 0.5)`.
        label_smoothing: f64,
    },
    /// IPO: `(h - 1/(2 beta))^2`.
    Ipo,
    /// Hinge (SLiC): `max(0, 1 - beta h)`.
    Hinge,
}

impl DpoLoss {
    /// A short lowercase name (`sigmoid`, `cdpo`, `robust`, `ipo`, `hinge`) for logs and file
    /// names.
    pub fn name(&self) -> &'static str {
        match self {
            DpoLoss::Sigmoid => "sigmoid",
            DpoLoss::Cdpo { .. } => "cdpo",
            DpoLoss::Robust { .. } => "robust",
            DpoLoss::Ipo => "ipo",
            DpoLoss::Hinge => "hinge",
        }
    }
}

impl std::fmt::Display for DpoLoss {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DpoLoss::Sigmoid => f.write_str("sigmoid"),
            DpoLoss::Cdpo { label_smoothing } => write!(f, "cdpo:{label_smoothing}"),
            DpoLoss::Robust { label_smoothing } => write!(f, "robust:{label_smoothing}"),
            DpoLoss::Ipo => f.write_str("ipo"),
            DpoLoss::Hinge => f.write_str("hinge"),
        }
    }
}

impl std::str::FromStr for DpoLoss {
    type Err = crate::error::Error;

    /// `sigmoid | cdpo:EPS | robust:EPS | ipo | hinge` (`sigmoid:EPS` is accepted for cDPO too).
    /// The smoothing `EPS` is range-checked by [`DpoConfig::init`].
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (name, arg) = s.split_once(':').map_or((s, None), |(a, b)| (a, Some(b)));
        let bad = |expected: &'static str| crate::error::Error::Parse {
            what: "DPO loss",
            input: s.to_string(),
            expected,
        };
        let eps = |arg: Option<&str>| -> Result<f64, crate::error::Error> {
            arg.ok_or_else(|| bad("a label smoothing after the colon, e.g. cdpo:0.1"))?
                .parse()
                .map_err(|_| bad("a number after the colon, e.g. cdpo:0.1"))
        };
        let loss = match (name, arg) {
            ("sigmoid", None) => DpoLoss::Sigmoid,
            ("sigmoid" | "cdpo", a) => DpoLoss::Cdpo {
                label_smoothing: eps(a)?,
            },
            ("robust", a) => DpoLoss::Robust {
                label_smoothing: eps(a)?,
            },
            ("ipo", None) => DpoLoss::Ipo,
            ("hinge", None) => DpoLoss::Hinge,
            _ => return Err(bad("sigmoid, cdpo:EPS, robust:EPS, ipo or hinge")),
        };
        Ok(loss)
    }
}

/// Configuration of a DPO-family loss. `init` validates it.
#[derive(Config, Debug, PartialEq)]
pub struct DpoConfig {
    /// Temperature `beta > 0` of the implicit reward `beta * log(pi / ref)`.
    #[config(default = 0.1)]
    pub beta: f64,
    /// The loss variant.
    #[config(default = "DpoLoss::Sigmoid")]
    pub loss: DpoLoss,
    /// Reference-free mode: the reference log-probs are ignored (treated as 0), so
    /// `h = logp_pi(y_w) - logp_pi(y_l)` and the rewards are `beta * logp_pi(y)`.
    #[config(default = false)]
    pub reference_free: bool,
}

impl DpoConfig {
    /// Validates the configuration and builds the loss.
    ///
    /// # Errors
    /// [`Error::InvalidParameter`](crate::Error::InvalidParameter) when `beta` is not a positive
    /// finite number or a label smoothing lies outside its range.
    pub fn init(&self) -> crate::Result<Dpo> {
        check("dpo", "beta", self.beta, self.beta > 0.0, "beta > 0")?;
        match self.loss {
            DpoLoss::Cdpo { label_smoothing } => check(
                "dpo",
                "label_smoothing",
                label_smoothing,
                (0.0..=0.5).contains(&label_smoothing),
                "0 <= label_smoothing <= 0.5",
            )?,
            DpoLoss::Robust { label_smoothing } => check(
                "dpo",
                "label_smoothing",
                label_smoothing,
                (0.0..0.5).contains(&label_smoothing),
                "0 <= label_smoothing < 0.5",
            )?,
            DpoLoss::Sigmoid | DpoLoss::Ipo | DpoLoss::Hinge => {}
        }
        Ok(Dpo {
            beta: self.beta,
            loss: self.loss,
            reference_free: self.reference_free,
        })
    }
}

/// A validated DPO-family loss (weight-free: it holds no tensors and needs no device).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Dpo {
    beta: f64,
    loss: DpoLoss,
    reference_free: bool,
}

impl Dpo {
    /// `beta`.
    pub fn beta(&self) -> f64 {
        self.beta
    }

    /// The variant.
    pub fn variant(&self) -> DpoLoss {
        self.loss
    }

    /// Whether reference log-probs are ignored.
    pub fn reference_free(&self) -> bool {
        self.reference_free
    }

    /// The per-pair loss as a function of the margin `h` (the table in the module docs).
    ///
    /// # Shapes
    /// - `h`: `[batch]` -> `[batch]`
    pub fn pair_losses<B: Backend>(&self, h: Tensor<B, 1>) -> Tensor<B, 1> {
        let beta = self.beta;
        match self.loss {
            DpoLoss::Sigmoid => log_sigmoid(h.mul_scalar(beta)).mul_scalar(-1.0),
            DpoLoss::Cdpo { label_smoothing } => {
                let z = h.mul_scalar(beta);
                let main = log_sigmoid(z.clone()).mul_scalar(-(1.0 - label_smoothing));
                if label_smoothing == 0.0 {
                    main
                } else {
                    main - log_sigmoid(z.neg()).mul_scalar(label_smoothing)
                }
            }
            DpoLoss::Robust { label_smoothing } => {
                let eps = label_smoothing;
                let z = h.mul_scalar(beta);
                let num = log_sigmoid(z.clone()).mul_scalar(-(1.0 - eps))
                    + log_sigmoid(z.neg()).mul_scalar(eps);
                num.div_scalar(1.0 - 2.0 * eps)
            }
            DpoLoss::Ipo => {
                let d = h.sub_scalar(1.0 / (2.0 * beta));
                d.clone() * d
            }
            DpoLoss::Hinge => relu(h.mul_scalar(-beta).add_scalar(1.0)),
        }
    }

    /// Computes the loss and TRL's metrics from sequence log-probs.
    ///
    /// The reference log-probs are detached: no gradient reaches the reference model. Everything
    /// is computed in the dtype of `policy_chosen`; the other inputs are cast to it (e.g. an f32
    /// table of precomputed reference log-probs with a bf16 policy).
    ///
    /// # Shapes
    /// - every input: `[batch]` (one log-prob per sequence, see
    ///   `kiln_model::sequence_logprobs`)
    /// - output: [`DpoOutput`] with `loss` `[1]` and per-pair tensors `[batch]`
    pub fn forward<B: Backend>(
        &self,
        policy_chosen: Tensor<B, 1>,
        policy_rejected: Tensor<B, 1>,
        reference_chosen: Tensor<B, 1>,
        reference_rejected: Tensor<B, 1>,
    ) -> DpoOutput<B> {
        let dtype = policy_chosen.dtype();
        let policy_rejected = policy_rejected.cast(dtype);
        let (reference_chosen, reference_rejected) =
            (reference_chosen.cast(dtype), reference_rejected.cast(dtype));
        let (chosen_ratio, rejected_ratio) = if self.reference_free {
            (policy_chosen.clone(), policy_rejected.clone())
        } else {
            (
                policy_chosen.clone() - reference_chosen.detach(),
                policy_rejected.clone() - reference_rejected.detach(),
            )
        };
        let chosen_rewards = chosen_ratio.clone().detach().mul_scalar(self.beta);
        let rejected_rewards = rejected_ratio.clone().detach().mul_scalar(self.beta);
        let losses = self.pair_losses(chosen_ratio - rejected_ratio);
        DpoOutput {
            loss: losses.clone().mean(),
            losses,
            chosen_rewards,
            rejected_rewards,
            policy_chosen_logps: policy_chosen.detach(),
            policy_rejected_logps: policy_rejected.detach(),
        }
    }
}

/// What [`Dpo::forward`] returns: the loss to back-propagate and the tensors behind the metrics.
#[derive(Debug, Clone)]
pub struct DpoOutput<B: Backend> {
    /// Mean loss over the batch, `[1]`: call `backward()` on this.
    pub loss: Tensor<B, 1>,
    /// Per-pair losses, `[batch]`.
    pub losses: Tensor<B, 1>,
    /// `beta * (logp_pi(y_w) - logp_ref(y_w))`, detached, `[batch]`.
    pub chosen_rewards: Tensor<B, 1>,
    /// `beta * (logp_pi(y_l) - logp_ref(y_l))`, detached, `[batch]`.
    pub rejected_rewards: Tensor<B, 1>,
    /// Policy log-probs of the chosen responses, detached, `[batch]`.
    pub policy_chosen_logps: Tensor<B, 1>,
    /// Policy log-probs of the rejected responses, detached, `[batch]`.
    pub policy_rejected_logps: Tensor<B, 1>,
}

impl<B: Backend> DpoOutput<B> {
    /// Batch means of the TRL metrics (reads the tensors back from the device).
    pub fn metrics(&self) -> DpoMetrics {
        let mean = |t: &Tensor<B, 1>| t.clone().mean().into_scalar().elem::<f64>();
        let correct = self
            .chosen_rewards
            .clone()
            .greater(self.rejected_rewards.clone())
            .cast(FloatDType::from(self.chosen_rewards.dtype()));
        DpoMetrics {
            rewards_chosen: mean(&self.chosen_rewards),
            rewards_rejected: mean(&self.rejected_rewards),
            rewards_accuracies: mean(&correct),
            rewards_margins: mean(&(self.chosen_rewards.clone() - self.rejected_rewards.clone())),
            logps_chosen: mean(&self.policy_chosen_logps),
            logps_rejected: mean(&self.policy_rejected_logps),
        }
    }
}

/// Batch-mean DPO metrics, named as TRL logs them (see [`DpoMetrics::named`]).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct DpoMetrics {
    /// `rewards/chosen`: mean `beta * (logp_pi(y_w) - logp_ref(y_w))`.
    pub rewards_chosen: f64,
    /// `rewards/rejected`: mean `beta * (logp_pi(y_l) - logp_ref(y_l))`.
    pub rewards_rejected: f64,
    /// `rewards/accuracies`: fraction of pairs whose chosen reward exceeds the rejected one.
    pub rewards_accuracies: f64,
    /// `rewards/margins`: mean chosen minus rejected reward.
    pub rewards_margins: f64,
    /// `logps/chosen`: mean policy log-prob of the chosen responses.
    pub logps_chosen: f64,
    /// `logps/rejected`: mean policy log-prob of the rejected responses.
    pub logps_rejected: f64,
}

impl DpoMetrics {
    /// The metrics under TRL's names, in TRL's order.
    pub fn named(&self) -> [(&'static str, f64); 6] {
        [
            ("rewards/chosen", self.rewards_chosen),
            ("rewards/rejected", self.rewards_rejected),
            ("rewards/accuracies", self.rewards_accuracies),
            ("rewards/margins", self.rewards_margins),
            ("logps/chosen", self.logps_chosen),
            ("logps/rejected", self.logps_rejected),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_line_forms_round_trip() {
        for (text, loss) in [
            ("sigmoid", DpoLoss::Sigmoid),
            (
                "cdpo:0.1",
                DpoLoss::Cdpo {
                    label_smoothing: 0.1,
                },
            ),
            (
                "robust:0.2",
                DpoLoss::Robust {
                    label_smoothing: 0.2,
                },
            ),
            ("ipo", DpoLoss::Ipo),
            ("hinge", DpoLoss::Hinge),
        ] {
            assert_eq!(text.parse::<DpoLoss>().unwrap(), loss);
            assert_eq!(loss.to_string(), text);
        }
        assert_eq!(
            "sigmoid:0.1".parse::<DpoLoss>().unwrap().to_string(),
            "cdpo:0.1"
        );
        for bad in ["", "dpo", "cdpo", "cdpo:x", "ipo:1", "robust"] {
            let err = bad.parse::<DpoLoss>().unwrap_err().to_string();
            assert!(err.contains(&format!("`{bad}`")), "{err}");
        }
    }
}
