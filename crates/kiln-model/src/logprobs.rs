//! Log-prob helpers on [`LlamaForCausalLM`] that trainers need (via `kiln_losses`).

use burn::tensor::backend::Backend;
use burn::tensor::{Int, Tensor};
use kiln_losses::LogProbReduction;

use crate::causal_lm::LlamaForCausalLM;

impl<B: Backend> LlamaForCausalLM<B> {
    /// Log-probabilities of given labels at the same positions (no shift):
    /// `log_softmax(logits)[b, t, labels[b, t]]`.
    ///
    /// # Shapes
    /// - `input_ids`, `labels`: `[batch, seq]`; `attention_mask`: `[batch, seq]` -> `[batch, seq]`
    pub fn label_logprobs(
        &self,
        input_ids: Tensor<B, 2, Int>,
        attention_mask: Option<Tensor<B, 2, Int>>,
        labels: Tensor<B, 2, Int>,
    ) -> Tensor<B, 2> {
        kiln_losses::gather_logprobs(self.forward(input_ids, attention_mask), labels)
    }

    /// Per-token log-probs of the next token: entry `t` is `log p(input_ids[t+1] | ..t)`.
    ///
    /// # Shapes
    /// - `input_ids`, `attention_mask`: `[batch, seq]` -> `[batch, seq - 1]`
    pub fn next_token_logprobs(
        &self,
        input_ids: Tensor<B, 2, Int>,
        attention_mask: Option<Tensor<B, 2, Int>>,
    ) -> Tensor<B, 2> {
        let [_, t] = input_ids.dims();
        let logits = self
            .forward(input_ids.clone(), attention_mask)
            .narrow(1, 0, t - 1);
        kiln_losses::gather_logprobs(logits, input_ids.narrow(1, 1, t - 1))
    }

    /// Sequence log-prob of the tokens selected by `target_mask` (e.g. the completion), with the
    /// next-token shift: `logits[:, t]` scores `input_ids[:, t+1]`, counted where
    /// `target_mask[:, t+1] == 1`.
    ///
    /// # Shapes
    /// - `input_ids`, `attention_mask`: `[batch, seq]`; `target_mask`: `[batch, seq]` 0/1 float
    ///   -> `[batch]`
    pub fn sequence_logprobs(
        &self,
        input_ids: Tensor<B, 2, Int>,
        attention_mask: Option<Tensor<B, 2, Int>>,
        target_mask: Tensor<B, 2>,
        reduction: LogProbReduction,
    ) -> Tensor<B, 1> {
        let logits = self.forward(input_ids.clone(), attention_mask);
        kiln_losses::sequence_logprobs(logits, input_ids, target_mask, reduction)
    }
}
