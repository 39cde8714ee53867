//! [`GradSync`]: the seam between the training loop and a collective engine.

use burn::tensor::Tensor;
use burn::tensor::backend::AutodiffBackend;

use crate::error::Result;

/// How the peers of a data-parallel run agree: a sum of a few scalars (weights, losses) and the
/// mean of their gradients. Every peer must make the same calls in the same order.
pub trait GradSync<B: AutodiffBackend>: Send + Sync {
    /// This peer's rank, `0..world`.
    fn rank(&self) -> usize;

    /// The number of peers.
    fn world(&self) -> usize;

    /// The element-wise sum of `values` over the peers.
    ///
    /// # Errors
    /// The engine's (a peer that left, a timeout).
    fn sum(&self, values: &[f64]) -> Result<Vec<f64>>;

    /// The element-wise mean over the peers of `flat`: every gradient of the model, flattened
    /// and concatenated in the model's own visiting order (the same on every peer and in every
    /// process, unlike parameter ids; see [`super::flat`]).
    ///
    /// # Errors
    /// The engine's.
    fn mean(&self, flat: Tensor<B::InnerBackend, 1>) -> Result<Tensor<B::InnerBackend, 1>>;
}
