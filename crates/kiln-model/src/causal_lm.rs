//! `LlamaForCausalLM`: the decoder stack plus a (tied or untied) LM head, and log-prob helpers.

use burn::module::Module;
use burn::nn::Linear;
use burn::tensor::backend::Backend;
use burn::tensor::{Int, Tensor};
use kiln_losses::LmHead;

use crate::cache::KvCache;
use crate::config::LlamaConfig;
use crate::error::Result;
use crate::linear::linear3;
use crate::model::LlamaModel;
use crate::weights::{RandomSource, WeightSource, build_model, linear};

/// Llama with a language-modelling head (HF `LlamaForCausalLM`).
#[derive(Module, Debug)]
pub struct LlamaForCausalLM<B: Backend> {
    /// The decoder stack.
    pub model: LlamaModel<B>,
    /// `lm_head` (`[hidden] -> [vocab]`); `None` when tied to `model.embed_tokens`.
    pub lm_head: Option<Linear<B>>,
}

impl<B: Backend> LlamaForCausalLM<B> {
    /// Random initialisation like HF: matrices `N(0, std)` (HF uses 0.02), norm weights 1, drawn
    /// from the backend's RNG (`B::seed`); see [`Self::init_seeded`] for weights that depend on a
    /// seed only.
    pub fn init(config: &LlamaConfig, std: f64, device: &B::Device) -> Self {
        Self::init_from(config, std, None, device)
    }

    /// [`Self::init`] with every tensor drawn from its own stream of (`seed`, tensor name): the
    /// same seed gives the same weights whatever else draws from the backend's RNG meanwhile
    /// (parallel tests, other models).
    pub fn init_seeded(config: &LlamaConfig, std: f64, seed: u64, device: &B::Device) -> Self {
        Self::init_from(config, std, Some(seed), device)
    }

    fn init_from(config: &LlamaConfig, std: f64, seed: Option<u64>, device: &B::Device) -> Self {
        let mut src = RandomSource { std, device, seed };
        // RandomSource's error type is `Infallible`: every name gets the shape asked for.
        let Ok(model) = Self::build(config, &mut src);
        model
    }

    pub(crate) fn build<S: WeightSource<B>>(
        config: &LlamaConfig,
        src: &mut S,
    ) -> std::result::Result<Self, S::Error> {
        let model = build_model(config, src)?;
        let lm_head = if config.tie_word_embeddings {
            None
        } else {
            Some(linear(
                src,
                "lm_head",
                config.hidden_size,
                config.vocab_size,
            )?)
        };
        Ok(Self { model, lm_head })
    }

    /// The model's config.
    pub fn config(&self) -> &LlamaConfig {
        &self.model.config
    }

    /// An empty KV cache sized for this model.
    pub fn new_cache(&self) -> KvCache<B> {
        KvCache::new(self.model.layers.len())
    }

    /// The LM head's weight and layout: the tied input embedding (`[vocab, hidden]`) or
    /// `lm_head`'s weight (`[hidden, vocab]`), for [`kiln_losses::ChunkedLogProbs`].
    pub fn lm_head_weight(&self) -> LmHead<B> {
        match &self.lm_head {
            Some(head) => LmHead::HiddenMajor(head.weight.val()),
            None => LmHead::VocabMajor(self.model.embed_tokens.weight.val()),
        }
    }

    /// Final hidden states (after the final norm), the LM head's input.
    ///
    /// # Shapes
    /// - `input_ids`, `attention_mask`: `[batch, seq]` -> `[batch, seq, hidden]`
    ///
    /// # Errors
    /// [`Error::MaskShape`](crate::Error::MaskShape) for a mask that is not `[batch, seq]`.
    pub fn hidden_states(
        &self,
        input_ids: Tensor<B, 2, Int>,
        attention_mask: Option<Tensor<B, 2, Int>>,
    ) -> Result<Tensor<B, 3>> {
        self.model.forward(input_ids, attention_mask, None)
    }

    /// Projects hidden states to vocabulary logits.
    ///
    /// # Shapes
    /// - `hidden`: `[batch, seq, hidden]` -> `[batch, seq, vocab]`
    pub fn logits(&self, hidden: Tensor<B, 3>) -> Tensor<B, 3> {
        match &self.lm_head {
            Some(head) => linear3(head, hidden),
            None => {
                let [b, t, d] = hidden.dims();
                let w = self.model.embed_tokens.weight.val();
                let v = w.dims()[0];
                hidden
                    .reshape([b * t, d])
                    .matmul(w.transpose())
                    .reshape([b, t, v])
            }
        }
    }

    /// Training forward: logits for every position.
    ///
    /// # Shapes
    /// - `input_ids`: `[batch, seq]`; `attention_mask`: `[batch, seq]` (1 = token, 0 = pad;
    ///   left or right padding; `None` = no padding) -> `[batch, seq, vocab]`
    ///
    /// # Errors
    /// [`Error::MaskShape`](crate::Error::MaskShape) for a mask that is not `[batch, seq]`.
    pub fn forward(
        &self,
        input_ids: Tensor<B, 2, Int>,
        attention_mask: Option<Tensor<B, 2, Int>>,
    ) -> Result<Tensor<B, 3>> {
        Ok(self.logits(self.model.forward(input_ids, attention_mask, None)?))
    }

    /// Incremental forward: runs the new tokens against `cache` and extends it. The first call
    /// (empty cache) is the prefill. Results equal [`Self::forward`] on the whole sequence.
    ///
    /// # Shapes
    /// - `input_ids`: `[batch, new]`; `attention_mask`: `[batch, cache.len() + new]`
    ///   -> `[batch, new, vocab]`
    ///
    /// # Errors
    /// [`Error::MaskShape`](crate::Error::MaskShape) for a mask that is not
    /// `[batch, cache.len() + new]`.
    pub fn forward_cached(
        &self,
        input_ids: Tensor<B, 2, Int>,
        attention_mask: Option<Tensor<B, 2, Int>>,
        cache: &mut KvCache<B>,
    ) -> Result<Tensor<B, 3>> {
        Ok(self.logits(self.model.forward(input_ids, attention_mask, Some(cache))?))
    }
}
