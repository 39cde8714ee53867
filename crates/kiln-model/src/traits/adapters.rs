//! [`Adapters`]: LoRA adapters on a model, as the trainers and the policy store use them.

use std::path::Path;

use burn::tensor::backend::Backend;

use crate::error::Result;
use crate::lora::LoraConfig;
use crate::{
    LlamaForCausalLM, LlamaForSequenceClassification, Qwen2ForCausalLM,
    Qwen2ForSequenceClassification,
};

/// A model that carries LoRA adapters (PEFT's format on disk).
pub trait Adapters<B: Backend>: Sized {
    /// Attaches fresh adapters (PEFT init, `B = 0`) and freezes the base.
    ///
    /// # Errors
    /// An invalid config, or adapters already attached.
    fn with_lora(self, config: &LoraConfig, device: &B::Device) -> Result<Self>;

    /// The base model: adapters dropped, tensors shared (DPO's reference for a LoRA policy).
    fn without_adapters(&self) -> Self;

    /// Adapters folded into the weights: a plain model (no extra matmuls at inference).
    fn merge_adapters(self) -> Self;

    /// Whether adapters are attached.
    fn has_adapters(&self) -> bool;

    /// Writes the adapters in PEFT's format into `dir`.
    ///
    /// # Errors
    /// No adapters attached; I/O errors naming the file.
    fn save_adapter(&self, dir: &Path) -> Result<()>;

    /// Loads PEFT adapters from `dir` onto this base model (base frozen).
    ///
    /// # Errors
    /// Missing or misshaped adapter tensors (named), unsupported options.
    fn load_adapter(self, dir: &Path, device: &B::Device) -> Result<Self>;
}

macro_rules! adapters_by_inherent_methods {
    ($($ty:ident),*) => {$(
        impl<B: Backend> Adapters<B> for $ty<B> {
            fn with_lora(self, config: &LoraConfig, device: &B::Device) -> Result<Self> {
                $ty::with_lora(self, config, device)
            }
            fn without_adapters(&self) -> Self {
                $ty::without_adapters(self)
            }
            fn merge_adapters(self) -> Self {
                $ty::merge_adapters(self)
            }
            fn has_adapters(&self) -> bool {
                $ty::has_adapters(self)
            }
            fn save_adapter(&self, dir: &Path) -> Result<()> {
                $ty::save_adapter(self, dir)
            }
            fn load_adapter(self, dir: &Path, device: &B::Device) -> Result<Self> {
                $ty::load_adapter(self, dir, device)
            }
        }
    )*};
}

adapters_by_inherent_methods!(
    LlamaForCausalLM,
    LlamaForSequenceClassification,
    Qwen2ForCausalLM,
    Qwen2ForSequenceClassification
);
