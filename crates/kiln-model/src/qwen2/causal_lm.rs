//! [`Qwen2ForCausalLM`]: Qwen2 with a (tied or untied) LM head.

use std::path::Path;

use crate::logprobs::LmHead;
use burn::module::Module;
use burn::tensor::backend::Backend;
use burn::tensor::{Int, Tensor};

use crate::LlamaForCausalLM;
use crate::cache::KvCache;
use crate::checkpoint::{LoadOptions, SaveOptions};
use crate::config::DecoderConfig;
use crate::error::Result;
use crate::lora::LoraConfig;
use crate::model_type::ModelType;
use crate::traits::{CausalLm, HfModel};

/// Qwen2 with a language-modelling head (HF `Qwen2ForCausalLM`).
#[derive(Module, Debug)]
pub struct Qwen2ForCausalLM<B: Backend> {
    /// The decoder and head, computed by the shared Llama-family implementation with q/k/v
    /// biases (its config's `model_type` is `qwen2`).
    pub inner: LlamaForCausalLM<B>,
}

impl<B: Backend> Qwen2ForCausalLM<B> {
    /// Random initialisation like HF (matrices `N(0, std)`, norms 1, biases 0) from the
    /// backend's RNG. `config.model_type` is set to `qwen2`.
    pub fn init(config: &DecoderConfig, std: f64, device: &B::Device) -> Self {
        Self {
            inner: LlamaForCausalLM::init(&qwen2(config), std, device),
        }
    }

    /// [`Self::init`] with every tensor drawn from its own stream of (`seed`, tensor name).
    pub fn init_seeded(config: &DecoderConfig, std: f64, seed: u64, device: &B::Device) -> Self {
        Self {
            inner: LlamaForCausalLM::init_seeded(&qwen2(config), std, seed, device),
        }
    }

    /// The model's config (`model_type` `qwen2`).
    pub fn config(&self) -> &DecoderConfig {
        self.inner.config()
    }

    /// Loads a Hugging Face `Qwen2ForCausalLM` directory in f32.
    ///
    /// # Errors
    /// Those of [`LlamaForCausalLM::from_pretrained`], and
    /// [`Error::WrongModelType`](crate::Error::WrongModelType) for a checkpoint that is not `qwen2`.
    pub fn from_pretrained(dir: impl AsRef<Path>, device: &B::Device) -> Result<Self> {
        Self::from_pretrained_with_options(dir, device, LoadOptions::default())
    }

    /// [`Self::from_pretrained`] with the weights in `options.dtype`.
    ///
    /// # Errors
    /// As [`Self::from_pretrained`].
    pub fn from_pretrained_with_options(
        dir: impl AsRef<Path>,
        device: &B::Device,
        options: LoadOptions,
    ) -> Result<Self> {
        let inner = LlamaForCausalLM::load_as(dir.as_ref(), device, options, ModelType::Qwen2)?;
        Ok(Self { inner })
    }

    /// Saves in Hugging Face layout (`architectures: ["Qwen2ForCausalLM"]`).
    ///
    /// # Errors
    /// As [`LlamaForCausalLM::save_pretrained`].
    pub fn save_pretrained(&self, dir: impl AsRef<Path>, opts: SaveOptions) -> Result<()> {
        self.inner.save_pretrained(dir, opts)
    }

    /// Attaches fresh LoRA adapters and freezes the base (see [`LlamaForCausalLM::with_lora`]).
    ///
    /// # Errors
    /// As [`LlamaForCausalLM::with_lora`].
    pub fn with_lora(self, config: &LoraConfig, device: &B::Device) -> Result<Self> {
        Ok(Self {
            inner: self.inner.with_lora(config, device)?,
        })
    }

    /// The base model without adapters (tensors shared, frozen): DPO's reference for a LoRA
    /// policy.
    pub fn without_adapters(&self) -> Self {
        Self {
            inner: self.inner.without_adapters(),
        }
    }

    /// Folds the adapters into the base weights (biases are untouched, as in PEFT).
    pub fn merge_adapters(self) -> Self {
        Self {
            inner: self.inner.merge_adapters(),
        }
    }

    /// Whether LoRA adapters are attached.
    pub fn has_adapters(&self) -> bool {
        self.inner.has_adapters()
    }

    /// The LoRA config of the attached adapters.
    pub fn lora_config(&self) -> Option<&LoraConfig> {
        self.inner.lora_config()
    }

    /// Writes the adapters in PEFT's format (see [`LlamaForCausalLM::save_adapter`]).
    ///
    /// # Errors
    /// As [`LlamaForCausalLM::save_adapter`].
    pub fn save_adapter(&self, dir: impl AsRef<Path>) -> Result<()> {
        self.inner.save_adapter(dir)
    }

    /// Loads a PEFT LoRA adapter onto this base model (see [`LlamaForCausalLM::load_adapter`]).
    ///
    /// # Errors
    /// As [`LlamaForCausalLM::load_adapter`].
    pub fn load_adapter(self, dir: impl AsRef<Path>, device: &B::Device) -> Result<Self> {
        Ok(Self {
            inner: self.inner.load_adapter(dir, device)?,
        })
    }
}

/// `config` with `model_type` `qwen2`.
pub(crate) fn qwen2(config: &DecoderConfig) -> DecoderConfig {
    DecoderConfig {
        model_type: ModelType::Qwen2,
        ..config.clone()
    }
}

impl<B: Backend> CausalLm<B> for Qwen2ForCausalLM<B> {
    fn vocab_size(&self) -> usize {
        self.inner.vocab_size()
    }

    fn max_positions(&self) -> usize {
        self.inner.max_positions()
    }

    fn pad_token_id(&self) -> Option<u32> {
        CausalLm::pad_token_id(&self.inner)
    }

    fn device(&self) -> B::Device {
        CausalLm::device(&self.inner)
    }

    fn new_cache(&self) -> KvCache<B> {
        self.inner.new_cache()
    }

    fn hidden_states_cached(
        &self,
        input_ids: Tensor<B, 2, Int>,
        attention_mask: Option<Tensor<B, 2, Int>>,
        cache: Option<&mut KvCache<B>>,
    ) -> Result<Tensor<B, 3>> {
        self.inner
            .hidden_states_cached(input_ids, attention_mask, cache)
    }

    fn lm_head_weight(&self) -> LmHead<B> {
        self.inner.lm_head_weight()
    }
}

impl<B: Backend> HfModel<B> for Qwen2ForCausalLM<B> {
    fn load_hf(dir: &Path, device: &B::Device) -> Result<Self> {
        crate::traits::load_dir(dir, device, |base, _| Self::from_pretrained(base, device))
    }

    fn save_hf(&self, dir: &Path, options: SaveOptions) -> Result<()> {
        self.inner.save_hf(dir, options)
    }
}
