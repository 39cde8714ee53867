//! A property-testing kit for preference losses (feature `testing`).
//!
//! Kiln's own loss tests are written with it, and it is public so that you can property-test your
//! own losses the same way:
//!
//! - [`reference`]: an f64 implementation of every Kiln loss, written independently of the tensor
//!   code (plain loops over `f64`), to compare against.
//! - [`strategies`]: proptest strategies for log-probs, preference batches, K-response reward sets
//!   and extreme values.
//! - [`checks`]: reusable property checks (closed-form agreement, monotonicity, swap identity,
//!   finiteness, gradients versus finite differences) that accept any function with the loss's
//!   signature and return a [`proptest::test_runner::TestCaseError`] on failure, so they compose
//!   with `?` inside `proptest!`.
//!
//! # Example: property-test a custom DPO-family loss
//!
//! A margin-shifted sigmoid loss `-log s(beta * h - gamma)` checked for agreement with its closed
//! form, monotonicity and gradient correctness:
//!
//! ```
//! use burn::backend::{Autodiff, Flex};
//! use burn::tensor::{activation::log_sigmoid, Tensor};
//! use kiln_losses::testing::{checks, reference, strategies};
//! use proptest::prelude::*;
//!
//! type B = Autodiff<Flex>;
//! const BETA: f64 = 0.5;
//! const GAMMA: f64 = 0.3;
//!
//! fn shifted(pc: Tensor<B, 1>, pr: Tensor<B, 1>, rc: Tensor<B, 1>, rr: Tensor<B, 1>) -> Tensor<B, 1> {
//!     let h = (pc - rc) - (pr - rr);
//!     log_sigmoid(h.mul_scalar(BETA).sub_scalar(GAMMA)).neg()
//! }
//!
//! proptest!(|(batch in strategies::preference_batch(1..16))| {
//!     checks::pair_loss_matches(shifted, &batch, |x| -reference::log_sigmoid(BETA * x.margin() - GAMMA), 1e-4)?;
//!     checks::pair_loss_monotone(shifted, &batch, 0.5)?;
//! });
//! proptest!(|(batch in strategies::small_preference_batch(1..8))| {
//!     checks::pair_loss_gradients_match_finite_differences(shifted, &batch, 1e-2, 2e-2)?;
//! });
//! ```

pub mod checks;
pub mod reference;
pub mod strategies;

pub use strategies::{PreferenceBatch, PreferencePair, RewardSets, ScoredPairs};
