//! [`GradSync`]: the seam between the training loop and a collective engine.

use std::ops::Range;

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

/// The indices of `0..len` that peer `rank` of `world` takes: contiguous shards whose sizes
/// differ by at most one (the first `len % world` shards are one longer).
pub fn shard(len: usize, rank: usize, world: usize) -> Range<usize> {
    let world = world.max(1);
    let (base, extra) = (len / world, len % world);
    let start = rank * base + rank.min(extra);
    let size = base + usize::from(rank < extra);
    start.min(len)..(start + size).min(len)
}

#[cfg(test)]
mod tests {
    use super::shard;

    #[test]
    fn shards_cover_the_batch_once_and_differ_by_at_most_one() {
        for len in 0..12 {
            for world in 1..5 {
                let parts: Vec<_> = (0..world).map(|r| shard(len, r, world)).collect();
                let all: Vec<usize> = parts.iter().flat_map(Clone::clone).collect();
                assert_eq!(all, (0..len).collect::<Vec<_>>(), "{len} / {world}");
                let sizes: Vec<usize> = parts.iter().map(|p| p.len()).collect();
                let (min, max) = (sizes.iter().min(), sizes.iter().max());
                assert!(max.zip(min).is_none_or(|(a, b)| a - b <= 1));
            }
        }
    }
}
