//! [`HfModel`]: a model that reads and writes Hugging Face checkpoint directories, adapters
//! included; the one way Kiln loads a policy or reward model from disk.

use std::path::{Path, PathBuf};

use burn::tensor::backend::Backend;

use crate::checkpoint::{MissingScore, SaveOptions};
use crate::error::{Error, Result};
use crate::lora::{ADAPTER_CONFIG_FILE, LoraConfig};
use crate::traits::Adapters;
use crate::{LlamaForCausalLM, LlamaForSequenceClassification};

/// A model saved to and loaded from a Hugging Face checkpoint directory.
///
/// A directory holds a plain checkpoint (`config.json` + safetensors), or the frozen base's
/// checkpoint with PEFT adapters beside it (`adapter_config.json` + `adapter_model.safetensors`);
/// [`Self::load_hf`] attaches the adapters when they are there, [`Self::save_hf`] writes them
/// when the model has some. Trainers' checkpoints, the policy store and the examples all load
/// through this trait.
pub trait HfModel<B: Backend>: Sized {
    /// Loads `dir` (see [`resolve_model_dir`]: a full checkpoint, base + adapters in one
    /// directory, or PEFT adapters over `base_model_name_or_path`), weights in f32. A sequence
    /// classifier needs its `score` head in the checkpoint or in the adapter.
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
    dir.join(ADAPTER_CONFIG_FILE).exists()
}

/// Where the model of `dir` comes from: `(base checkpoint, adapter directory)`.
///
/// - `config.json` in `dir`: the base is `dir`; the adapters too when `adapter_config.json` is
///   beside it (a trainer's checkpoint of a LoRA model).
/// - only `adapter_config.json`: an adapter over `base_model_name_or_path` (PEFT's layout; a
///   relative path is tried from the working directory, as PEFT does, then from `dir`).
/// - neither: `dir` itself (loading then names the missing `config.json`).
///
/// # Errors
/// [`Error::Config`](crate::Error::Config) for an adapter-only directory whose config names no
/// base.
pub fn resolve_model_dir(dir: &Path) -> Result<(PathBuf, Option<PathBuf>)> {
    let adapter = has_adapter_files(dir).then(|| dir.to_path_buf());
    if dir.join("config.json").exists() || adapter.is_none() {
        return Ok((dir.to_path_buf(), adapter));
    }
    let path = dir.join(ADAPTER_CONFIG_FILE);
    let base = LoraConfig::from_adapter_config(&path)?
        .base_model_name_or_path
        .ok_or_else(|| Error::Config {
            path: path.clone(),
            message: "an adapter without config.json beside it must name its base model in \
                      `base_model_name_or_path`"
                .into(),
        })?;
    let base = PathBuf::from(base);
    let base = if base.is_absolute() || base.exists() {
        base
    } else {
        dir.join(base)
    };
    Ok((base, adapter))
}

/// [`HfModel::load_hf`] from a base loader: `load_base(base dir, missing score head)` reads the
/// checkpoint (a score head may be absent from the base of a classifier's adapter, which brings
/// its own), then the adapters are attached when there are some.
pub(crate) fn load_dir<B: Backend, M: Adapters<B>>(
    dir: &Path,
    device: &B::Device,
    load_base: impl FnOnce(&Path, MissingScore) -> Result<M>,
) -> Result<M> {
    let (base, adapter) = resolve_model_dir(dir)?;
    let missing = if adapter.is_some() && base != dir {
        MissingScore::Init { std: 0.0 }
    } else {
        MissingScore::Error
    };
    let model = load_base(&base, missing)?;
    match adapter {
        Some(a) => model.load_adapter(&a, device),
        None => Ok(model),
    }
}

/// [`HfModel::save_hf`] from a plain saver: with adapters, the base without them and the
/// adapters beside it.
pub(crate) fn save_dir<B: Backend, M: Adapters<B>>(
    model: &M,
    dir: &Path,
    save_plain: impl Fn(&M) -> Result<()>,
) -> Result<()> {
    if model.has_adapters() {
        save_plain(&model.without_adapters())?;
        return model.save_adapter(dir);
    }
    save_plain(model)
}

impl<B: Backend> HfModel<B> for LlamaForCausalLM<B> {
    fn load_hf(dir: &Path, device: &B::Device) -> Result<Self> {
        load_dir(dir, device, |base, _| Self::from_pretrained(base, device))
    }

    fn save_hf(&self, dir: &Path, options: SaveOptions) -> Result<()> {
        save_dir(self, dir, |m| m.save_pretrained(dir, options))
    }
}

impl<B: Backend> HfModel<B> for LlamaForSequenceClassification<B> {
    fn load_hf(dir: &Path, device: &B::Device) -> Result<Self> {
        load_dir(dir, device, |base, missing| {
            Self::from_pretrained(base, device, missing)
        })
    }

    fn save_hf(&self, dir: &Path, options: SaveOptions) -> Result<()> {
        save_dir(self, dir, |m| m.save_pretrained(dir, options))
    }
}
