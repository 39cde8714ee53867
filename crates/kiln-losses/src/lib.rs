//! Preference-optimisation losses for Kiln over sequence log-prob tensors, generic over any burn
//! backend. The log-probs themselves (the next-token shift, the chunked LM-head computation) come
//! from `kiln-model`; this crate depends on burn only.
//!
//! - [`Dpo`] ([`DpoConfig`], [`DpoLoss`]): the DPO family (sigmoid/cDPO, robust, IPO, hinge) with
//!   TRL-named metrics.
//! - [`BradleyTerry`] ([`BradleyTerryConfig`]): the pairwise reward-model loss with margins and
//!   reward centering.
//! - [`Rrhf`] ([`RrhfConfig`]): the RRHF ranking loss over K responses per prompt.
//! - `testing` (feature `testing`): proptest strategies, f64 reference losses and reusable property
//!   checks, to property-test your own losses.
//!
//! Losses are weight-free: a config is validated by `init()` (no device needed) and the loss's
//! `forward` works on batched tensors. `log s(x)` is always computed stably.
//!
//! # Example
//! ```
//! use burn::backend::{Autodiff, Flex};
//! use burn::tensor::Tensor;
//! use kiln_losses::{DpoConfig, DpoLoss};
//!
//! type B = Autodiff<Flex>;
//! let device = Default::default();
//! let dpo = DpoConfig::new().with_beta(0.1).with_loss(DpoLoss::Sigmoid).init()?;
//! let policy_chosen = Tensor::<B, 1>::from_floats([-10.0, -12.0], &device).require_grad();
//! let policy_rejected = Tensor::<B, 1>::from_floats([-11.0, -9.0], &device).require_grad();
//! let reference = Tensor::<B, 1>::from_floats([-10.5, -10.5], &device);
//! let out = dpo.forward(policy_chosen.clone(), policy_rejected, reference.clone(), reference);
//! let grads = out.loss.backward();
//! assert!(policy_chosen.grad(&grads).is_some());
//! let m = out.metrics();
//! assert_eq!(m.rewards_accuracies, 0.5);
//! # Ok::<(), kiln_losses::Error>(())
//! ```

pub mod bradley_terry;
pub mod dpo;
pub mod error;
pub mod rrhf;
#[cfg(feature = "testing")]
pub mod testing;

pub use bradley_terry::{
    BradleyTerry, BradleyTerryConfig, BradleyTerryMetrics, BradleyTerryOutput,
};
pub use dpo::{Dpo, DpoConfig, DpoLoss, DpoMetrics, DpoOutput};
pub use error::{Error, Result};
pub use rrhf::{Rrhf, RrhfConfig, RrhfOutput};
