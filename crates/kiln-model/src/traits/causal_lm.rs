//! [`CausalLm`]: the surface of a decoder-only language model that generation and training use.

use crate::logprobs::LmHead;
use burn::tensor::backend::Backend;
use burn::tensor::{Int, Tensor};

use crate::cache::KvCache;
use crate::error::Result;

/// A causal (decoder-only) language model: what [`kiln_sampling`'s `Generator`], the SFT, DPO and
/// RRHF trainers, evaluation and the pairwise preference model need, and nothing else.
///
/// Implementors provide the hidden states and the LM head's weight; logits, `forward` and the
/// log-prob helpers of [`LogProbs`](crate::LogProbs) are derived from them, so every
/// architecture is scored by the same (chunked) code.
///
/// [`kiln_sampling`'s `Generator`]: https://docs.rs/kiln-sampling
pub trait CausalLm<B: Backend> {
    /// Rows of the LM head (the number of token ids the model scores).
    fn vocab_size(&self) -> usize;

    /// The longest sequence the model's positions cover (`max_position_embeddings`).
    fn max_positions(&self) -> usize;

    /// `pad_token_id` of the model's config, if any.
    fn pad_token_id(&self) -> Option<u32>;

    /// The device holding the weights.
    fn device(&self) -> B::Device;

    /// An empty KV cache for [`Self::hidden_states_cached`].
    fn new_cache(&self) -> KvCache<B>;

    /// Final hidden states (after the final norm; the LM head's input) of the new tokens
    /// `input_ids`. `attention_mask` (1 = token, 0 = pad; left or right padding; `None` = no
    /// padding) covers the cached tokens followed by the new ones; with `cache` the new tokens
    /// attend to the cached ones and the cache is extended. Results equal a forward over the
    /// whole sequence.
    ///
    /// # Shapes
    /// - `input_ids`: `[batch, new]`; `attention_mask`: `[batch, cached + new]`
    ///   -> `[batch, new, hidden]`
    ///
    /// # Errors
    /// [`Error::MaskShape`](crate::Error::MaskShape) for a mask of another shape.
    fn hidden_states_cached(
        &self,
        input_ids: Tensor<B, 2, Int>,
        attention_mask: Option<Tensor<B, 2, Int>>,
        cache: Option<&mut KvCache<B>>,
    ) -> Result<Tensor<B, 3>>;

    /// The LM head's weight in its layout: a tied input embedding (`[vocab, hidden]`) or a
    /// separate head (`[hidden, vocab]`), for [`ChunkedLogProbs`](crate::ChunkedLogProbs).
    fn lm_head_weight(&self) -> LmHead<B>;

    /// Final hidden states of a whole sequence (no cache).
    ///
    /// # Shapes
    /// - `input_ids`, `attention_mask`: `[batch, seq]` -> `[batch, seq, hidden]`
    ///
    /// # Errors
    /// [`Error::MaskShape`](crate::Error::MaskShape) for a mask that is not `[batch, seq]`.
    fn hidden_states(
        &self,
        input_ids: Tensor<B, 2, Int>,
        attention_mask: Option<Tensor<B, 2, Int>>,
    ) -> Result<Tensor<B, 3>> {
        self.hidden_states_cached(input_ids, attention_mask, None)
    }

    /// Projects hidden states to vocabulary logits (one 2-D matmul).
    ///
    /// # Shapes
    /// - `hidden`: `[batch, seq, hidden]` -> `[batch, seq, vocab]`
    fn logits(&self, hidden: Tensor<B, 3>) -> Tensor<B, 3> {
        self.lm_head_weight().logits3(hidden)
    }

    /// Training forward: logits for every position.
    ///
    /// # Shapes
    /// - `input_ids`, `attention_mask`: `[batch, seq]` -> `[batch, seq, vocab]`
    ///
    /// # Errors
    /// [`Error::MaskShape`](crate::Error::MaskShape) for a mask that is not `[batch, seq]`.
    fn forward(
        &self,
        input_ids: Tensor<B, 2, Int>,
        attention_mask: Option<Tensor<B, 2, Int>>,
    ) -> Result<Tensor<B, 3>> {
        Ok(self.logits(self.hidden_states(input_ids, attention_mask)?))
    }

    /// Incremental forward: runs the new tokens against `cache` and extends it. The first call
    /// (empty cache) is the prefill. Results equal [`Self::forward`] on the whole sequence.
    ///
    /// # Shapes
    /// - `input_ids`: `[batch, new]`; `attention_mask`: `[batch, cache.len() + new]`
    ///   -> `[batch, new, vocab]`
    ///
    /// # Errors
    /// [`Error::MaskShape`](crate::Error::MaskShape) for a mask of another shape.
    fn forward_cached(
        &self,
        input_ids: Tensor<B, 2, Int>,
        attention_mask: Option<Tensor<B, 2, Int>>,
        cache: &mut KvCache<B>,
    ) -> Result<Tensor<B, 3>> {
        Ok(self.logits(self.hidden_states_cached(input_ids, attention_mask, Some(cache))?))
    }
}
