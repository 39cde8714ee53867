//! `LlamaModel`: embeddings, decoder layers and final norm (HF `model.*`).

use burn::module::Module;
use burn::nn::Embedding;
use burn::tensor::backend::Backend;
use burn::tensor::{Int, Tensor};

use crate::cache::KvCache;
use crate::config::DecoderConfig;
use crate::error::{Error, Result};
use crate::layer::LlamaDecoderLayer;
use crate::lora::LoraConfig;
use crate::mask::{self, positions_from_mask};
use crate::rms_norm::LlamaRmsNorm;
use crate::rope::RotaryEmbedding;

/// The Llama decoder stack without a head.
#[derive(Module, Debug)]
pub struct LlamaModel<B: Backend> {
    /// `model.embed_tokens`, `[vocab, hidden]`.
    pub embed_tokens: Embedding<B>,
    /// `model.layers.N`.
    pub layers: Vec<LlamaDecoderLayer<B>>,
    /// `model.norm`.
    pub norm: LlamaRmsNorm<B>,
    /// RoPE frequencies (derived from the config, not a parameter).
    #[module(skip)]
    pub rope: RotaryEmbedding,
    /// The config this model was built from.
    #[module(skip)]
    pub config: DecoderConfig,
    /// The LoRA config of the attached adapters (`None`: no adapters).
    #[module(skip)]
    pub lora: Option<LoraConfig>,
}

impl<B: Backend> LlamaModel<B> {
    /// The device holding the weights (that of `embed_tokens`).
    pub fn device(&self) -> B::Device {
        self.embed_tokens.weight.val().device()
    }

    /// Final hidden states of the new tokens `input_ids`.
    ///
    /// `attention_mask` (1 = token, 0 = padding) covers the cached tokens followed by the new ones;
    /// `None` means no padding. Positions are `cumsum(mask) - 1`, so left padding is transparent.
    /// With `cache`, the new tokens attend to the cached ones and the cache is extended.
    ///
    /// # Shapes
    /// - `input_ids`: `[batch, seq]`
    /// - `attention_mask`: `[batch, cached + seq]`
    /// - output: `[batch, seq, hidden]`
    ///
    /// # Errors
    /// [`Error::MaskShape`] when `attention_mask` is not `[batch, cached + seq]`.
    pub fn forward(
        &self,
        input_ids: Tensor<B, 2, Int>,
        attention_mask: Option<Tensor<B, 2, Int>>,
        mut cache: Option<&mut KvCache<B>>,
    ) -> Result<Tensor<B, 3>> {
        let [b, t] = input_ids.dims();
        let device = input_ids.device();
        let past = cache.as_ref().map_or(0, |c| c.len());
        let mask = attention_mask.unwrap_or_else(|| Tensor::ones([b, past + t], &device));
        if mask.dims() != [b, past + t] {
            return Err(Error::MaskShape {
                expected: [b, past + t],
                found: mask.dims(),
            });
        }
        let positions = positions_from_mask(mask.clone()).narrow(1, past, t);
        let attn_mask = mask::attention_mask(mask, t);
        let mut x = self.embed_tokens.forward(input_ids);
        let rope = self.rope.tables(positions, x.dtype());
        let rope_q = rope.repeat_heads(self.config.num_attention_heads);
        let rope_k = rope.repeat_heads(self.config.num_key_value_heads);
        for (i, layer) in self.layers.iter().enumerate() {
            let c = cache.as_deref_mut().map(|c| (c, i));
            x = layer.forward(x, (&rope_q, &rope_k), attn_mask.clone(), c);
        }
        Ok(self.norm.forward(x))
    }
}
