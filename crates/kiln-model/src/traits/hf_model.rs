//! [`HfModel`]: a model that reads and writes Hugging Face checkpoint directories, adapters
//! included; the one way Kiln loads a policy or reward model from disk.

use std::path::Path;

use burn::tensor::backend::Backend;

use crate::checkpoint::{MissingScore, SaveOptions};
use crate::error::Result;
use crate::{LlamaForCausalLM, LlamaForSequenceClassification};

/// The file that marks a directory holding PEFT adapters.
pub const ADAPTER_CONFIG: &str = "adapter_config.json";

/// A model saved to and loaded from a Hugging Face checkpoint directory.
///
/// A directory holds a plain checkpoint (`config.json` + safetensors), or the frozen base's
/// checkpoint with PEFT adapters beside it (`adapter_config.json` + `adapter_model.safetensors`);
/// [`Self::load_hf`] attaches the adapters when they are there, [`Self::save_hf`] writes them
/// when the model has some. Trainers' checkpoints, the policy store and the examples all load
/// through this trait.
pub trait HfModel<B: Backend>: Sized {
    /// Loads `dir` (full checkpoint, or base + adapters), weights in f32. A sequence classifier
    /// needs its `score` head in the checkpoint.
    ///
    /// # Errors
    /// Missing files and tensors (named), misshaped tensors (with both shapes), a config of
    /// another architecture (naming its `model_type`).
    fn load_hf(dir: &Path, device: &B::Device) -> Result<Self>;

    /// Writes `config.json` and safetensors in `options`' dtype into `dir`; with adapters, the
    /// base without them and the adapters in PEFT's format.
    ///
    /// # Errors
    /// I/O errors naming the file.
    fn save_hf(&self, dir: &Path, options: SaveOptions) -> Result<()>;
}

/// Whether `dir` holds PEFT adapters.
pub fn has_adapter_files(dir: &Path) -> bool {
    dir.join(ADAPTER_CONFIG).exists()
}

impl<B: Backend> HfModel<B> for LlamaForCausalLM<B> {
    fn load_hf(dir: &Path, device: &B::Device) -> Result<Self> {
        let model = Self::from_pretrained(dir, device)?;
        if has_adapter_files(dir) {
            return model.load_adapter(dir, device);
        }
        Ok(model)
    }

    fn save_hf(&self, dir: &Path, options: SaveOptions) -> Result<()> {
        if self.has_adapters() {
            self.without_adapters().save_pretrained(dir, options)?;
            return self.save_adapter(dir);
        }
        self.save_pretrained(dir, options)
    }
}

impl<B: Backend> HfModel<B> for LlamaForSequenceClassification<B> {
    fn load_hf(dir: &Path, device: &B::Device) -> Result<Self> {
        let model = Self::from_pretrained(dir, device, MissingScore::Error)?;
        if has_adapter_files(dir) {
            return model.load_adapter(dir, device);
        }
        Ok(model)
    }

    fn save_hf(&self, dir: &Path, options: SaveOptions) -> Result<()> {
        if self.has_adapters() {
            self.without_adapters().save_pretrained(dir, options)?;
            return self.save_adapter(dir);
        }
        self.save_pretrained(dir, options)
    }
}
