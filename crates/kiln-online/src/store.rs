//! [`PolicyStore`]: the run's policies as full Hugging Face checkpoints or as PEFT LoRA adapters
//! over pi_0.

use std::marker::PhantomData;
use std::path::{Path, PathBuf};

use burn::tensor::backend::AutodiffBackend;
use kiln_model::{Adapters, HfModel, LoraConfig, SaveDtype, SaveOptions};
use kiln_train::Placement;

use crate::error::{Error, Result};
use crate::policy::Policy;

/// f32, so that save -> load is exact (a resumed run then equals an uninterrupted one).
pub fn exact_save_options() -> SaveOptions {
    SaveOptions {
        dtype: SaveDtype::F32,
        ..SaveOptions::default()
    }
}

/// How a run stores its policies: full checkpoints, or (with LoRA) PEFT adapters whose
/// `base_model_name_or_path` is pi_0's directory, so every iteration's policy is a few MB and
/// loads anywhere with `PeftModel.from_pretrained`.
#[derive(Debug, Clone)]
pub struct PolicyStore<B: AutodiffBackend, P: Policy<B>> {
    /// pi_0's directory (absolute): the SFT model; the LoRA base.
    pub base: PathBuf,
    /// The adapter settings when the policy trains LoRA adapters.
    pub lora: Option<LoraConfig>,
    /// Where models are loaded (the first of the placement's devices).
    pub device: B::Device,
    /// Where training and sharded work run: this process's devices (one peer each,
    /// [`kiln_train::data_parallel`] when there are several) and the cluster of processes, if any.
    pub placement: Placement<B>,
    _policy: PhantomData<P>,
}

impl<B: AutodiffBackend, P: Policy<B>> PolicyStore<B, P> {
    /// A store whose adapters sit over `base` (pi_0, recorded as an absolute path so adapters
    /// find it from anywhere).
    ///
    /// # Errors
    /// [`Error::Io`] when `base` does not exist.
    pub fn new(base: &Path, lora: Option<LoraConfig>, device: B::Device) -> Result<Self> {
        let base = std::fs::canonicalize(base).map_err(|e| Error::io(base, e))?;
        let lora = lora.map(|l| l.with_base_model_name_or_path(Some(base.display().to_string())));
        Ok(PolicyStore {
            base,
            lora,
            placement: Placement::devices(vec![device.clone()]),
            device,
            _policy: PhantomData,
        })
    }

    /// The same store training data-parallel on `devices` (one peer each; on a CPU, repeat its
    /// device: the peers share the cores). An empty list keeps one peer.
    pub fn with_devices(mut self, devices: Vec<B::Device>) -> Self {
        if let Some(first) = devices.first() {
            self.device = first.clone();
            self.placement = Placement::devices(devices);
        }
        self
    }

    /// The same store as one rank of a multi-process run: training is data-parallel over every
    /// peer of every process, generation, annotation and reference log-probs are sharded across
    /// the processes, and rank 0 writes the shared files.
    pub fn with_placement(mut self, placement: Placement<B>) -> Self {
        if let Some(first) = placement.local_devices().first() {
            self.device = first.clone();
        }
        self.placement = placement;
        self
    }

    /// A policy for inference from `dir` (a checkpoint or adapters over their base), adapters
    /// merged into the weights (no extra matmuls).
    ///
    /// # Errors
    /// Loading errors (missing files and tensors named).
    pub fn load(&self, dir: &Path) -> Result<P::Inference> {
        Ok(P::Inference::load_hf(dir, &self.device)?.merge_adapters())
    }

    /// A policy to train, warm-started from `dir`: an adapter directory continues its adapters;
    /// a full checkpoint trains every weight, or gets fresh adapters when the store uses LoRA
    /// (drawn from the backend's RNG: seed it first for a reproducible run).
    ///
    /// # Errors
    /// Loading errors; an invalid LoRA config.
    pub fn load_trainable(&self, dir: &Path) -> Result<P> {
        let model = P::load_hf(dir, &self.device)?;
        Ok(match &self.lora {
            Some(lora) if !model.has_adapters() => model.with_lora(lora, &self.device)?,
            _ => model,
        })
    }

    /// Writes a trained policy into `dir` (a fresh directory): its adapters, or every weight
    /// (f32).
    ///
    /// # Errors
    /// I/O errors naming the file.
    pub fn save(&self, model: &P, dir: &Path) -> Result<()> {
        if model.has_adapters() {
            model.save_adapter(dir)?;
        } else {
            model.save_hf(dir, exact_save_options())?;
        }
        Ok(())
    }

    /// Copies the policy in `from` to `dir` unchanged (an iteration with nothing to train on):
    /// hard links where the file system allows, else copies.
    ///
    /// # Errors
    /// I/O errors naming the file.
    pub fn carry_over(from: &Path, dir: &Path) -> Result<()> {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        for entry in std::fs::read_dir(from).map_err(|e| Error::io(from, e))? {
            let entry = entry.map_err(|e| Error::io(from, e))?;
            let path = entry.path();
            if path.is_file() {
                let dst = dir.join(entry.file_name());
                if std::fs::hard_link(&path, &dst).is_err() {
                    std::fs::copy(&path, &dst).map_err(|e| Error::io(&dst, e))?;
                }
            }
        }
        Ok(())
    }

    /// Whether two directories are the same policy (same canonical path).
    pub fn same(a: &Path, b: &Path) -> bool {
        std::fs::canonicalize(a).ok() == std::fs::canonicalize(b).ok()
    }
}
