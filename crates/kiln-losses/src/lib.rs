//! Preference-optimisation losses for Kiln, generic over any burn backend.
//!
//! - [`sequence_logprobs`] / [`gather_logprobs`]: log-probs of target tokens under a causal LM
//!   (the next-token shift lives here, once).
//! - [`ChunkedLogProbs`] ([`ChunkedLogProbsConfig`], [`LmHead`], [`LogProbStrategy`]): the same
//!   log-probs straight from final hidden states and the LM head, chunk by chunk, without the
//!   `[batch, seq, vocab]` logits; for training, gradients computed by hand and handed back to
//!   autodiff through a surrogate (bounded memory for a 128k vocabulary).
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
//! let dpo = DpoConfig::new().with_beta(0.1).with_loss(DpoLoss::SIGMOID).init()?;
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

// Library code returns errors; tests may unwrap (the integration tests are other crates).
#![cfg_attr(
    not(test),
    deny(
        clippy::expect_used,
        clippy::unwrap_used,
        clippy::panic,
        clippy::unreachable,
        clippy::todo,
        clippy::unimplemented
    )
)]

pub mod bradley_terry;
pub mod chunked_logprobs;
pub mod dpo;
pub mod error;
pub mod logprobs;
pub mod rrhf;
#[cfg(feature = "testing")]
pub mod testing;

pub use bradley_terry::{
    BradleyTerry, BradleyTerryConfig, BradleyTerryMetrics, BradleyTerryOutput,
};
pub use chunked_logprobs::{
    ChunkedLogProbs, ChunkedLogProbsConfig, LmHead, LogProbStrategy, full_sequence_logprobs,
};
pub use dpo::{Dpo, DpoConfig, DpoLoss, DpoMetrics, DpoOutput};
pub use error::{Error, Result};
pub use logprobs::{LogProbReduction, gather_logprobs, sequence_logprobs, shifted_token_logprobs};
pub use rrhf::{Rrhf, RrhfConfig, RrhfOutput};
