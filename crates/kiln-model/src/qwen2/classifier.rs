//! [`Qwen2ForSequenceClassification`]: Qwen2 with a one-label `score` head (a reward model).

use std::path::Path;

use burn::module::Module;
use burn::tensor::backend::Backend;
use burn::tensor::{Int, Tensor};

use super::causal_lm::qwen2;
use crate::checkpoint::{LoadOptions, MissingScore, SaveOptions};
use crate::config::DecoderConfig;
use crate::error::Result;
use crate::lora::LoraConfig;
use crate::model_type::ModelType;
use crate::traits::{HfModel, SequenceScorer};
use crate::{LlamaForSequenceClassification, Qwen2ForCausalLM};

/// Qwen2 with a `score` head (`[hidden] -> 1`, no bias), read at the last non-pad token (HF
/// `Qwen2ForSequenceClassification` with one label).
#[derive(Module, Debug)]
pub struct Qwen2ForSequenceClassification<B: Backend> {
    /// The decoder and score head, computed by the shared Llama-family implementation with q/k/v
    /// biases.
    pub inner: LlamaForSequenceClassification<B>,
}

impl<B: Backend> Qwen2ForSequenceClassification<B> {
    /// Random initialisation (`N(0, std)` matrices, unit norms, zero biases); `config.model_type`
    /// is set to `qwen2`.
    pub fn init(config: &DecoderConfig, std: f64, device: &B::Device) -> Self {
        Self {
            inner: LlamaForSequenceClassification::init(&qwen2(config), std, device),
        }
    }

    /// [`Self::init`] with every tensor drawn from its own stream of (`seed`, tensor name).
    pub fn init_seeded(config: &DecoderConfig, std: f64, seed: u64, device: &B::Device) -> Self {
        Self {
            inner: LlamaForSequenceClassification::init_seeded(&qwen2(config), std, seed, device),
        }
    }

    /// A reward model from a Qwen2 causal LM (e.g. the SFT model): the decoder kept, a fresh
    /// `N(0, std)` score head.
    pub fn from_causal_lm(lm: Qwen2ForCausalLM<B>, std: f64) -> Self {
        Self {
            inner: LlamaForSequenceClassification::from_causal_lm(lm.inner, std),
        }
    }

    /// The model's config (`model_type` `qwen2`).
    pub fn config(&self) -> &DecoderConfig {
        self.inner.config()
    }

    /// Loads a `Qwen2ForSequenceClassification` (1 label) directory in f32; a causal-LM
    /// checkpoint seeds one with `MissingScore::Init`.
    ///
    /// # Errors
    /// Those of [`LlamaForSequenceClassification::from_pretrained`], and
    /// [`Error::WrongModelType`](crate::Error::WrongModelType) for a checkpoint that is not `qwen2`.
    pub fn from_pretrained(
        dir: impl AsRef<Path>,
        device: &B::Device,
        missing_score: MissingScore,
    ) -> Result<Self> {
        let inner = LlamaForSequenceClassification::load_as(
            dir.as_ref(),
            device,
            missing_score,
            LoadOptions::default(),
            ModelType::Qwen2,
        )?;
        Ok(Self { inner })
    }

    /// Saves in Hugging Face layout (`architectures: ["Qwen2ForSequenceClassification"]`).
    ///
    /// # Errors
    /// As [`LlamaForSequenceClassification::save_pretrained`].
    pub fn save_pretrained(&self, dir: impl AsRef<Path>, opts: SaveOptions) -> Result<()> {
        self.inner.save_pretrained(dir, opts)
    }

    /// Attaches fresh LoRA adapters (score head trainable), see
    /// [`LlamaForSequenceClassification::with_lora`].
    ///
    /// # Errors
    /// As [`LlamaForSequenceClassification::with_lora`].
    pub fn with_lora(self, config: &LoraConfig, device: &B::Device) -> Result<Self> {
        Ok(Self {
            inner: self.inner.with_lora(config, device)?,
        })
    }

    /// Folds the adapters into the base weights.
    pub fn merge_adapters(self) -> Self {
        Self {
            inner: self.inner.merge_adapters(),
        }
    }

    /// Whether LoRA adapters are attached.
    pub fn has_adapters(&self) -> bool {
        self.inner.has_adapters()
    }

    /// The model without adapters (decoder shared and frozen; the current score head).
    pub fn without_adapters(&self) -> Self {
        Self {
            inner: self.inner.without_adapters(),
        }
    }

    /// Writes the adapters and the score head in PEFT's format (`task_type: SEQ_CLS`).
    ///
    /// # Errors
    /// As [`LlamaForSequenceClassification::save_adapter`].
    pub fn save_adapter(&self, dir: impl AsRef<Path>) -> Result<()> {
        self.inner.save_adapter(dir)
    }

    /// Loads a PEFT `SEQ_CLS` adapter (and its score head) onto this base model.
    ///
    /// # Errors
    /// As [`LlamaForSequenceClassification::load_adapter`].
    pub fn load_adapter(self, dir: impl AsRef<Path>, device: &B::Device) -> Result<Self> {
        Ok(Self {
            inner: self.inner.load_adapter(dir, device)?,
        })
    }
}

impl<B: Backend> SequenceScorer<B> for Qwen2ForSequenceClassification<B> {
    fn vocab_size(&self) -> usize {
        self.inner.vocab_size()
    }

    fn pad_token_id(&self) -> Option<u32> {
        self.inner.pad_token_id()
    }

    fn device(&self) -> B::Device {
        self.inner.device()
    }

    fn position_scores(
        &self,
        input_ids: Tensor<B, 2, Int>,
        attention_mask: Option<Tensor<B, 2, Int>>,
    ) -> Result<Tensor<B, 2>> {
        self.inner.position_scores(input_ids, attention_mask)
    }
}

impl<B: Backend> HfModel<B> for Qwen2ForSequenceClassification<B> {
    fn load_hf(dir: &Path, device: &B::Device) -> Result<Self> {
        crate::traits::load_dir(dir, device, |base, missing| {
            Self::from_pretrained(base, device, missing)
        })
    }

    fn save_hf(&self, dir: &Path, options: SaveOptions) -> Result<()> {
        self.inner.save_hf(dir, options)
    }
}
