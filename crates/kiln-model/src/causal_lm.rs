//! `LlamaForCausalLM`: the decoder stack plus a (tied or untied) LM head; the reference
//! implementation of [`CausalLm`].

use crate::logprobs::LmHead;
use burn::module::Module;
use burn::nn::Linear;
use burn::tensor::backend::Backend;
use burn::tensor::{Int, Tensor};

use crate::cache::KvCache;
use crate::config::DecoderConfig;
use crate::error::Result;
use crate::model::LlamaModel;
use crate::traits::CausalLm;
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
    pub fn init(config: &DecoderConfig, std: f64, device: &B::Device) -> Self {
        Self::init_from(config, std, None, device)
    }

    /// [`Self::init`] with every tensor drawn from its own stream of (`seed`, tensor name): the
    /// same seed gives the same weights whatever else draws from the backend's RNG meanwhile
    /// (parallel tests, other models).
    pub fn init_seeded(config: &DecoderConfig, std: f64, seed: u64, device: &B::Device) -> Self {
        Self::init_from(config, std, Some(seed), device)
    }

    fn init_from(config: &DecoderConfig, std: f64, seed: Option<u64>, device: &B::Device) -> Self {
        let mut src = RandomSource { std, device, seed };
        // RandomSource's error type is `Infallible`: every name gets the shape asked for.
        let Ok(model) = Self::build(config, &mut src);
        model
    }

    pub(crate) fn build<S: WeightSource<B>>(
        config: &DecoderConfig,
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
    pub fn config(&self) -> &DecoderConfig {
        &self.model.config
    }
}

impl<B: Backend> CausalLm<B> for LlamaForCausalLM<B> {
    fn vocab_size(&self) -> usize {
        self.model.config.vocab_size
    }

    fn max_positions(&self) -> usize {
        self.model.config.max_position_embeddings
    }

    fn pad_token_id(&self) -> Option<u32> {
        self.model.config.pad_token_id
    }

    fn device(&self) -> B::Device {
        self.model.device()
    }

    fn new_cache(&self) -> KvCache<B> {
        KvCache::new(self.model.layers.len())
    }

    fn hidden_states_cached(
        &self,
        input_ids: Tensor<B, 2, Int>,
        attention_mask: Option<Tensor<B, 2, Int>>,
        cache: Option<&mut KvCache<B>>,
    ) -> Result<Tensor<B, 3>> {
        self.model.forward(input_ids, attention_mask, cache)
    }

    fn lm_head_weight(&self) -> LmHead<B> {
        match &self.lm_head {
            Some(head) => LmHead::HiddenMajor(head.weight.val()),
            None => LmHead::VocabMajor(self.model.embed_tokens.weight.val()),
        }
    }
}
