//! [`SequenceScorer`]: a model that gives every sequence one scalar score (a reward model).

use burn::tensor::backend::Backend;
use burn::tensor::{Int, Tensor};

use crate::classifier::last_non_pad_index;
use crate::error::Result;

/// A sequence-classification model with one label: what the reward-model trainer and
/// `kiln-reward`'s annotators need.
pub trait SequenceScorer<B: Backend> {
    /// The number of token ids the model embeds.
    fn vocab_size(&self) -> usize;

    /// `pad_token_id` of the model's config: the score is read at the rightmost token that is
    /// not this id (the last token when `None`), as Hugging Face does.
    fn pad_token_id(&self) -> Option<u32>;

    /// The device holding the weights.
    fn device(&self) -> B::Device;

    /// Scores at every position (f32 for a bf16/f16 model, like HF's `logits.float()`).
    ///
    /// # Shapes
    /// - `input_ids`, `attention_mask`: `[batch, seq]` -> `[batch, seq]`
    ///
    /// # Errors
    /// [`Error::MaskShape`](crate::Error::MaskShape) for a mask that is not `[batch, seq]`.
    fn position_scores(
        &self,
        input_ids: Tensor<B, 2, Int>,
        attention_mask: Option<Tensor<B, 2, Int>>,
    ) -> Result<Tensor<B, 2>>;

    /// One score per sequence, read at the rightmost token whose id is not
    /// [`Self::pad_token_id`].
    ///
    /// # Shapes
    /// - `input_ids`, `attention_mask`: `[batch, seq]` -> `[batch]`
    ///
    /// # Errors
    /// [`Error::MaskShape`](crate::Error::MaskShape) for a mask that is not `[batch, seq]`.
    fn score(
        &self,
        input_ids: Tensor<B, 2, Int>,
        attention_mask: Option<Tensor<B, 2, Int>>,
    ) -> Result<Tensor<B, 1>> {
        let [b, _] = input_ids.dims();
        let idx = last_non_pad_index(input_ids.clone(), self.pad_token_id());
        let all = self.position_scores(input_ids, attention_mask)?;
        Ok(all.gather(1, idx.reshape([b, 1])).reshape([b]))
    }
}
