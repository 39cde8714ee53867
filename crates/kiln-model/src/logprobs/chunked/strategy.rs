//! How sequence log-probs are computed from a causal LM's final hidden states: the full logits
//! (reference) or chunk by chunk (default).

use burn::tensor::backend::Backend;
use burn::tensor::{Int, Tensor};

use super::{ChunkedLogProbs, ChunkedLogProbsConfig, LmHead};
use crate::logprobs::sequence::{LogProbReduction, sequence_logprobs};

/// How sequence log-probs are computed from a causal LM's final hidden states. In JSON:
/// `"Full"` or `{"Chunked": {"chunk_size": 256}}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum LogProbStrategy {
    /// Materialise the `[batch, seq, vocab]` logits and their log-softmax (under autodiff both
    /// stay alive until backward): the reference path.
    Full,
    /// [`ChunkedLogProbs`]: bounded memory, same values and gradients. The default, with
    /// [`ChunkedLogProbs::default`] (256 positions per chunk).
    Chunked(ChunkedLogProbs),
}

impl Default for LogProbStrategy {
    fn default() -> Self {
        LogProbStrategy::Chunked(ChunkedLogProbs::default())
    }
}

impl LogProbStrategy {
    /// The chunked computation, or `None` for [`LogProbStrategy::Full`].
    pub fn chunked(&self) -> Option<ChunkedLogProbs> {
        match self {
            LogProbStrategy::Full => None,
            LogProbStrategy::Chunked(c) => Some(*c),
        }
    }

    /// A chunked strategy with `chunk_size` positions per chunk.
    ///
    /// # Errors
    /// [`Error::InvalidParameter`](crate::Error::InvalidParameter) for `chunk_size == 0`.
    pub fn chunks_of(chunk_size: usize) -> crate::Result<Self> {
        Ok(LogProbStrategy::Chunked(
            ChunkedLogProbsConfig::new()
                .with_chunk_size(chunk_size)
                .init()?,
        ))
    }
}

/// [`sequence_logprobs`] of the full logits `head(hidden)` (the [`LogProbStrategy::Full`] path).
///
/// # Shapes
/// - `hidden`: `[batch, seq, hidden]`; `input_ids`, `mask`: `[batch, seq]` -> `[batch]`
pub fn full_sequence_logprobs<B: Backend>(
    hidden: Tensor<B, 3>,
    head: &LmHead<B>,
    input_ids: Tensor<B, 2, Int>,
    mask: Tensor<B, 2>,
    reduction: LogProbReduction,
) -> Tensor<B, 1> {
    sequence_logprobs(head.logits3(hidden), input_ids, mask, reduction)
}
