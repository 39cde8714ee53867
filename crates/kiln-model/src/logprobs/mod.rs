//! Log-probabilities of target tokens: the next-token shift done once ([`sequence_logprobs`]),
//! the chunked computation from hidden states and the LM head ([`ChunkedLogProbs`]), and
//! [`LogProbs`], the helpers trainers need, for every [`CausalLm`].
//!
//! Without autodiff (reference log-probs, evaluation, scoring) they use
//! [`ChunkedLogProbs`] by default: the LM head is applied to at most
//! `chunk_size` positions at once (only the counted ones for sequence log-probs), so the
//! `[batch, seq, vocab]` logits never exist. On an autodiff backend the plain methods keep the
//! differentiable full-logits path; trainers use [`LogProbs::sequence_logprob_loss`],
//! whose chunked strategy also bounds the memory of the backward pass.
//!
//! Every method returns [`Error::MaskShape`](crate::Error::MaskShape) for an attention mask that
//! is not `[batch, seq]`, as the forward pass does.

use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::{DType, FloatDType, Int, Tensor};
pub mod chunked;
pub mod sequence;

pub use chunked::{
    ChunkedLogProbs, ChunkedLogProbsConfig, LmHead, LogProbStrategy, full_sequence_logprobs,
};
pub use sequence::{LogProbReduction, gather_logprobs, sequence_logprobs, shifted_token_logprobs};

use crate::error::Result;
use crate::traits::CausalLm;

/// f16/bf16 logits upcast to f32 (HF's `logits.float()` before a loss); others unchanged.
fn upcast<B: Backend, const D: usize>(t: Tensor<B, D>) -> Tensor<B, D> {
    match t.dtype() {
        DType::F16 | DType::BF16 => t.cast(FloatDType::F32),
        _ => t,
    }
}

/// Chunked log-probs without autodiff, `None` (the differentiable full logits) with it.
fn inference_chunks<B: Backend>(device: &B::Device) -> Option<ChunkedLogProbs> {
    (!B::ad_enabled(device)).then(ChunkedLogProbs::default)
}

/// Log-prob helpers derived from [`CausalLm`]'s hidden states and LM head; implemented for every
/// causal LM, so all architectures are scored by the same code.
pub trait LogProbs<B: Backend>: CausalLm<B> {
    /// Log-probabilities of given labels at the same positions (no shift):
    /// `log_softmax(logits)[b, t, labels[b, t]]`, in f32 for a bf16/f16 model.
    ///
    /// # Shapes
    /// - `input_ids`, `labels`: `[batch, seq]`; `attention_mask`: `[batch, seq]` -> `[batch, seq]`
    fn label_logprobs(
        &self,
        input_ids: Tensor<B, 2, Int>,
        attention_mask: Option<Tensor<B, 2, Int>>,
        labels: Tensor<B, 2, Int>,
    ) -> Result<Tensor<B, 2>> {
        let hidden = self.hidden_states(input_ids, attention_mask)?;
        Ok(match inference_chunks::<B>(&hidden.device()) {
            Some(c) => c.label_logprobs(hidden, &self.lm_head_weight(), labels),
            None => gather_logprobs(upcast(self.logits(hidden)), labels),
        })
    }

    /// Per-token log-probs of the next token: entry `t` is `log p(input_ids[t+1] | ..t)`.
    ///
    /// # Shapes
    /// - `input_ids`, `attention_mask`: `[batch, seq]` -> `[batch, seq - 1]`
    fn next_token_logprobs(
        &self,
        input_ids: Tensor<B, 2, Int>,
        attention_mask: Option<Tensor<B, 2, Int>>,
    ) -> Result<Tensor<B, 2>> {
        let [_, t] = input_ids.dims();
        let hidden = self
            .hidden_states(input_ids.clone(), attention_mask)?
            .narrow(1, 0, t - 1);
        let labels = input_ids.narrow(1, 1, t - 1);
        Ok(match inference_chunks::<B>(&hidden.device()) {
            Some(c) => c.label_logprobs(hidden, &self.lm_head_weight(), labels),
            None => gather_logprobs(upcast(self.logits(hidden)), labels),
        })
    }

    /// Sequence log-prob of the tokens selected by `target_mask` (e.g. the completion), with the
    /// next-token shift: `logits[:, t]` scores `input_ids[:, t+1]`, counted where
    /// `target_mask[:, t+1] == 1`. Chunked without autodiff, the full (differentiable) logits on
    /// an autodiff backend; see [`Self::sequence_logprobs_using`].
    ///
    /// # Shapes
    /// - `input_ids`, `attention_mask`: `[batch, seq]`; `target_mask`: `[batch, seq]` 0/1 float
    ///   -> `[batch]`
    fn sequence_logprobs(
        &self,
        input_ids: Tensor<B, 2, Int>,
        attention_mask: Option<Tensor<B, 2, Int>>,
        target_mask: Tensor<B, 2>,
        reduction: LogProbReduction,
    ) -> Result<Tensor<B, 1>> {
        let device = input_ids.device();
        let strategy = match inference_chunks::<B>(&device) {
            Some(c) => LogProbStrategy::Chunked(c),
            None => LogProbStrategy::Full,
        };
        self.sequence_logprobs_using(input_ids, attention_mask, target_mask, reduction, strategy)
    }

    /// [`Self::sequence_logprobs`] with an explicit strategy. [`LogProbStrategy::Full`]
    /// materialises the `[batch, seq, vocab]` logits (upcast to f32 for a bf16/f16 model);
    /// [`LogProbStrategy::Chunked`] never does (on an autodiff backend it stays differentiable
    /// but keeps every chunk for backward: train with [`Self::sequence_logprob_loss`]).
    /// The result is f32 for a bf16/f16 model, else the model's dtype.
    ///
    /// # Shapes
    /// - as [`Self::sequence_logprobs`]
    fn sequence_logprobs_using(
        &self,
        input_ids: Tensor<B, 2, Int>,
        attention_mask: Option<Tensor<B, 2, Int>>,
        target_mask: Tensor<B, 2>,
        reduction: LogProbReduction,
        strategy: LogProbStrategy,
    ) -> Result<Tensor<B, 1>> {
        let hidden = self.hidden_states(input_ids.clone(), attention_mask)?;
        Ok(match strategy.chunked() {
            Some(c) => c.sequence_logprobs(
                hidden,
                &self.lm_head_weight(),
                input_ids,
                target_mask,
                reduction,
            ),
            None => sequence_logprobs(
                upcast(self.logits(hidden)),
                input_ids,
                target_mask,
                reduction,
            ),
        })
    }

    /// A training loss on sequence log-probs: `loss_fn` receives the `[batch]` log-probs of
    /// [`Self::sequence_logprobs`] (f32 for a bf16/f16 model) and returns the scalar loss and
    /// anything else (metrics). The returned loss has that value and, on `backward()`, the exact
    /// gradients of every trainable parameter.
    ///
    /// With [`LogProbStrategy::Chunked`] (the default) the gradient of the log-probs is
    /// computed by hand chunk by chunk ([`ChunkedLogProbs::sequence_loss`]): neither the
    /// forward nor the backward pass holds `[batch, seq, vocab]` tensors, and only the counted
    /// positions go through the LM head. [`LogProbStrategy::Full`] back-propagates through the
    /// full logits (the reference).
    ///
    /// # Shapes
    /// - `input_ids`, `attention_mask`, `target_mask`: `[batch, seq]`; `loss_fn`: `[batch]` ->
    ///   `[1]`; output `[1]`
    fn sequence_logprob_loss<T, F>(
        &self,
        input_ids: Tensor<B, 2, Int>,
        attention_mask: Option<Tensor<B, 2, Int>>,
        target_mask: Tensor<B, 2>,
        reduction: LogProbReduction,
        strategy: LogProbStrategy,
        loss_fn: F,
    ) -> Result<(Tensor<B, 1>, T)>
    where
        B: AutodiffBackend,
        F: FnOnce(Tensor<B, 1>) -> (Tensor<B, 1>, T),
    {
        Ok(match strategy.chunked() {
            Some(c) => {
                let hidden = self.hidden_states(input_ids.clone(), attention_mask)?;
                c.sequence_loss(
                    hidden,
                    &self.lm_head_weight(),
                    input_ids,
                    target_mask,
                    reduction,
                    loss_fn,
                )
            }
            None => loss_fn(self.sequence_logprobs_using(
                input_ids,
                attention_mask,
                target_mask,
                reduction,
                LogProbStrategy::Full,
            )?),
        })
    }
}

impl<B: Backend, M: CausalLm<B> + ?Sized> LogProbs<B> for M {}
